//! [`Events`] on SQLite: the committing transaction, and history and
//! replay read back from the messages it wrote.

use super::SqliteStore;
use crate::store::{Committed, Events, NewMessage, Original, Result, StoredMessage};
use app::protocol::UserInfo;
use async_trait::async_trait;
use sqlx::{Connection, Row};

/// No author email: messages are shown to everyone.
const MESSAGE_COLUMNS: &str = "m.id, m.seq, m.author_id, u.name AS author_name, \
     u.picture AS author_picture, m.body, m.client_id, m.created_at";

/// A message from a row of [`MESSAGE_COLUMNS`].
fn message(row: &sqlx::sqlite::SqliteRow) -> Result<StoredMessage> {
    Ok(StoredMessage {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        author: UserInfo {
            id: row.try_get("author_id")?,
            name: row.try_get("author_name")?,
            picture: row.try_get("author_picture")?,
        },
        body: row.try_get("body")?,
        client_id: row.try_get("client_id")?,
        ts: row.try_get("created_at")?,
    })
}

#[async_trait]
impl Events for SqliteStore {
    async fn commit_posts(&self, batch: &[NewMessage<'_>]) -> Result<Vec<Committed>> {
        let mut w = self.writer().await?;
        // BEGIN IMMEDIATE takes the write lock up front, so the transaction
        // never has to upgrade a read lock (which SQLite may refuse with BUSY).
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await?;
        let mut results = Vec::with_capacity(batch.len());
        for m in batch {
            // The next seq is read inside the writing transaction: the
            // (room_id, seq) index makes MAX a single b-tree probe.
            let inserted: Option<(i64, i64)> = sqlx::query_as(
                "INSERT INTO messages (room_id, seq, author_id, body, client_id, created_at)
                 SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5 FROM messages WHERE room_id = ?1
                 ON CONFLICT (room_id, client_id) DO NOTHING
                 RETURNING id, seq",
            )
            .bind(m.room_id)
            .bind(m.author_id)
            .bind(m.body)
            .bind(m.client_id)
            .bind(m.ts)
            .fetch_optional(&mut *tx)
            .await?;
            let committed = match inserted {
                Some((id, seq)) => Committed {
                    id,
                    seq,
                    ts: m.ts,
                    duplicate: None,
                },
                None => {
                    let (id, seq, ts, author_id, body): (i64, i64, i64, i64, String) =
                        sqlx::query_as(
                            "SELECT id, seq, created_at, author_id, body FROM messages
                         WHERE room_id = ? AND client_id = ?",
                        )
                        .bind(m.room_id)
                        .bind(m.client_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    Committed {
                        id,
                        seq,
                        ts,
                        duplicate: Some(Original { author_id, body }),
                    }
                }
            };
            results.push(committed);
        }
        tx.commit().await?;
        w.ok();
        Ok(results)
    }

    async fn history(
        &self,
        room_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.author_id
             WHERE m.room_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(room_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut messages = rows.iter().map(message).collect::<Result<Vec<_>>>()?;
        messages.reverse();
        Ok(messages)
    }

    async fn range(
        &self,
        room_id: i64,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.author_id
             WHERE m.room_id = ? AND m.seq > ? AND m.seq <= ? ORDER BY m.seq LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(room_id)
            .bind(after)
            .bind(upto)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(message).collect()
    }
}
