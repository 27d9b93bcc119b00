//! [`Events`] on SQLite: the committing transaction, and history and
//! replay read back from the messages it wrote.
//!
//! A batch costs a fixed number of statements whatever its size (plan v2
//! §1, "Writing and reading it"): one lookup of the commands it repeats, one
//! `UPDATE rooms … RETURNING` reserving every room's seqs, then one
//! multi-row insert each into `messages`, `room_events` and `commands`, each
//! split only when it would exceed SQLite's limit on bound values.

use super::{SqliteStore, MAX_VARIABLES};
use crate::store::{
    Committed, Events, HistoryPage, NewMessage, Original, Result, StoreError, StoredMessage,
};
use app::protocol::UserInfo;
use async_trait::async_trait;
use sqlx::{Connection, Row, SqliteConnection};
use std::collections::{BTreeMap, HashMap};

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

/// `rows` copies of `row` (a parenthesised list of placeholders), for a
/// multi-row `VALUES`.
fn values(row: &str, rows: usize) -> String {
    vec![row; rows].join(", ")
}

/// How many rows of `per_row` bound values fit in one statement.
fn rows_per_statement(per_row: usize) -> usize {
    MAX_VARIABLES / per_row
}

/// The answer a processed post keeps in `commands.result` (the same JSON
/// object migration 0004 writes for v1's messages).
fn post_result(room_id: i64, seq: i64, message_id: i64, ts: i64) -> String {
    format!(r#"{{"room_id":{room_id},"seq":{seq},"message_id":{message_id},"ts":{ts}}}"#)
}

/// A post of the batch that is stored now.
struct NewRow {
    /// Its place in the batch.
    at: usize,
    seq: i64,
    id: i64,
}

/// What the batch does with one of its rows.
enum Plan {
    /// Repeats a command processed in an earlier batch.
    Known(Committed),
    /// Repeats the row at this place earlier in the batch.
    Repeat(usize),
    /// Stored now: index into the new rows.
    New(usize),
}

#[async_trait]
impl Events for SqliteStore {
    async fn commit_posts(&self, batch: &[NewMessage<'_>]) -> Result<Vec<Committed>> {
        let mut w = self.writer().await?;
        // BEGIN IMMEDIATE takes the write lock up front, so the transaction
        // never has to upgrade a read lock (which SQLite may refuse with BUSY).
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await?;
        let results = commit_posts(&mut tx, batch).await?;
        tx.commit().await?;
        w.ok();
        Ok(results)
    }

    async fn history(&self, room_id: i64, before: Option<i64>, limit: u32) -> Result<HistoryPage> {
        // One row more than asked says whether older ones exist: seqs are
        // shared by every event kind, so a gap below is no proof of the end.
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.author_id
             WHERE m.room_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(room_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let has_more = rows.len() > limit as usize;
        let mut messages = rows
            .iter()
            .take(limit as usize)
            .map(message)
            .collect::<Result<Vec<_>>>()?;
        messages.reverse();
        Ok(HistoryPage { messages, has_more })
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

/// The batch's writes, in the caller's transaction; results in batch order.
async fn commit_posts(
    conn: &mut SqliteConnection,
    batch: &[NewMessage<'_>],
) -> Result<Vec<Committed>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    // The first place in the batch of each (author, client_id).
    let mut first: HashMap<(i64, &str), usize> = HashMap::with_capacity(batch.len());
    for (at, m) in batch.iter().enumerate() {
        first.entry((m.author_id, m.client_id)).or_insert(at);
    }
    let firsts: Vec<usize> = (0..batch.len())
        .filter(|&at| first[&(batch[at].author_id, batch[at].client_id)] == at)
        .collect();
    let mut known = processed(conn, batch, &firsts).await?;

    let mut plan = Vec::with_capacity(batch.len());
    let mut new_rows = Vec::new();
    // Posts per room, in id order: the order rooms are locked in.
    let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
    for (at, m) in batch.iter().enumerate() {
        let first = first[&(m.author_id, m.client_id)];
        if first != at {
            plan.push(Plan::Repeat(first));
        } else if let Some(original) = known.remove(&at) {
            plan.push(Plan::Known(original));
        } else {
            *counts.entry(m.room_id).or_default() += 1;
            plan.push(Plan::New(new_rows.len()));
            new_rows.push(NewRow { at, seq: 0, id: 0 });
        }
    }

    let reserved = reserve_seqs(conn, &counts).await?;
    let mut next: HashMap<i64, i64> = reserved.iter().map(|(&id, r)| (id, r.0)).collect();
    for row in &mut new_rows {
        let seq = next
            .get_mut(&batch[row.at].room_id)
            .ok_or(StoreError::Missing("room"))?;
        row.seq = *seq;
        *seq += 1;
    }
    insert_messages(conn, batch, &mut new_rows).await?;
    insert_posted(conn, batch, &new_rows).await?;
    insert_commands(conn, batch, &new_rows).await?;

    let mut results: Vec<Committed> = Vec::with_capacity(batch.len());
    for (at, step) in plan.into_iter().enumerate() {
        let committed = match step {
            Plan::Known(original) => original,
            Plan::New(i) => Committed {
                id: new_rows[i].id,
                seq: new_rows[i].seq,
                ts: batch[at].ts,
                duplicate: None,
            },
            // The first is earlier in the batch, so its result is known.
            Plan::Repeat(first) => {
                let earlier = results[first].clone();
                let original = match earlier.duplicate {
                    Some(original) => original,
                    None => {
                        let room_id = batch[first].room_id;
                        let (_, room) =
                            reserved.get(&room_id).ok_or(StoreError::Missing("room"))?;
                        Original {
                            room_id,
                            room: room.clone(),
                            body: batch[first].body.to_owned(),
                        }
                    }
                };
                Committed {
                    duplicate: Some(original),
                    ..earlier
                }
            }
        };
        results.push(committed);
    }
    Ok(results)
}

/// The commands of `batch` (at the places `firsts`) that were processed
/// before, by place: the original message each repeats.
///
/// The lookup joins a `VALUES` list, which SQLite answers with one primary
/// key search per row; `(user_id, client_id) IN (VALUES …)` would scan the
/// whole table.
async fn processed(
    conn: &mut SqliteConnection,
    batch: &[NewMessage<'_>],
    firsts: &[usize],
) -> Result<HashMap<usize, Committed>> {
    let mut known = HashMap::new();
    for chunk in firsts.chunks(rows_per_statement(3)) {
        let sql = format!(
            "SELECT v.column1 AS at, c.kind, c.room_id, r.name AS room, m.body,
                    c.result ->> '$.message_id' AS message_id,
                    c.result ->> '$.seq' AS seq, c.result ->> '$.ts' AS ts
             FROM (VALUES {}) AS v
             JOIN commands c ON c.user_id = v.column2 AND c.client_id = v.column3
             LEFT JOIN messages m ON m.id = c.result ->> '$.message_id'
             LEFT JOIN rooms r ON r.id = c.room_id",
            values("(?, ?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for &at in chunk {
            query = query
                .bind(at as i64)
                .bind(batch[at].author_id)
                .bind(batch[at].client_id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            // Only posts exist under the v1 wire. A client_id spent on
            // another kind of command refuses the row: the committer's
            // row-by-row retry keeps it from failing the others.
            if row.try_get::<String, _>("kind")? != "post" {
                return Err(StoreError::Conflict);
            }
            // The original may be gone with its room.
            let (Some(room), Some(body)) = (
                row.try_get::<Option<String>, _>("room")?,
                row.try_get::<Option<String>, _>("body")?,
            ) else {
                return Err(StoreError::Missing("message"));
            };
            let at: i64 = row.try_get("at")?;
            known.insert(
                at as usize,
                Committed {
                    id: row.try_get("message_id")?,
                    seq: row.try_get("seq")?,
                    ts: row.try_get("ts")?,
                    duplicate: Some(Original {
                        room_id: row.try_get("room_id")?,
                        room,
                        body,
                    }),
                },
            );
        }
    }
    Ok(known)
}

/// Advances each room's `seq` counter by its count, in one statement (per
/// chunk), rooms in id order; returns each room's first reserved `seq` and
/// its name. A room that does not exist is [`StoreError::Missing`].
///
/// The counter is the only source of seqs, never `MAX(seq) + 1`: it is
/// shared by every event kind and is what several PostgreSQL nodes agree on.
async fn reserve_seqs(
    conn: &mut SqliteConnection,
    counts: &BTreeMap<i64, i64>,
) -> Result<HashMap<i64, (i64, String)>> {
    let mut reserved = HashMap::with_capacity(counts.len());
    let rooms: Vec<(i64, i64)> = counts.iter().map(|(&id, &n)| (id, n)).collect();
    for chunk in rooms.chunks(rows_per_statement(2)) {
        let sql = format!(
            "UPDATE rooms SET last_seq = last_seq + v.column2 FROM (VALUES {}) AS v
             WHERE rooms.id = v.column1 RETURNING rooms.id, rooms.last_seq, rooms.name",
            values("(?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for &(id, n) in chunk {
            query = query.bind(id).bind(n);
        }
        // RETURNING order is unspecified: map by id.
        for row in query.fetch_all(&mut *conn).await? {
            let id: i64 = row.try_get("id")?;
            let last: i64 = row.try_get("last_seq")?;
            let name: Option<String> = row.try_get("name")?;
            let first = last - counts.get(&id).copied().unwrap_or(0) + 1;
            reserved.insert(id, (first, name.unwrap_or_default()));
        }
    }
    if reserved.len() < counts.len() {
        return Err(StoreError::Missing("room"));
    }
    Ok(reserved)
}

/// Inserts the new messages and records their ids in `rows`.
async fn insert_messages(
    conn: &mut SqliteConnection,
    batch: &[NewMessage<'_>],
    rows: &mut [NewRow],
) -> Result<()> {
    let mut ids: HashMap<(i64, i64), i64> = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(rows_per_statement(6)) {
        let sql = format!(
            "INSERT INTO messages (room_id, seq, author_id, body, client_id, created_at)
             VALUES {} RETURNING id, room_id, seq",
            values("(?, ?, ?, ?, ?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let m = &batch[row.at];
            query = query
                .bind(m.room_id)
                .bind(row.seq)
                .bind(m.author_id)
                .bind(m.body)
                .bind(m.client_id)
                .bind(m.ts);
        }
        // RETURNING order is unspecified: map by (room, seq), which is unique.
        for row in query.fetch_all(&mut *conn).await? {
            ids.insert(
                (row.try_get("room_id")?, row.try_get("seq")?),
                row.try_get("id")?,
            );
        }
    }
    for row in rows.iter_mut() {
        row.id = *ids
            .get(&(batch[row.at].room_id, row.seq))
            .ok_or(StoreError::Missing("message"))?;
    }
    Ok(())
}

/// Inserts a `posted` event per new message. It references the message and
/// never copies its text.
async fn insert_posted(
    conn: &mut SqliteConnection,
    batch: &[NewMessage<'_>],
    rows: &[NewRow],
) -> Result<()> {
    for chunk in rows.chunks(rows_per_statement(5)) {
        let sql = format!(
            "INSERT INTO room_events (room_id, seq, kind, actor_id, message_id, ts) VALUES {}",
            values("(?, ?, 'posted', ?, ?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let m = &batch[row.at];
            query = query
                .bind(m.room_id)
                .bind(row.seq)
                .bind(m.author_id)
                .bind(row.id)
                .bind(m.ts);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Records each new post as processed under (author, `client_id`), with the
/// answer a repeat gets.
async fn insert_commands(
    conn: &mut SqliteConnection,
    batch: &[NewMessage<'_>],
    rows: &[NewRow],
) -> Result<()> {
    for chunk in rows.chunks(rows_per_statement(5)) {
        let sql = format!(
            "INSERT INTO commands (user_id, client_id, kind, room_id, result, created_at) VALUES {}",
            values("(?, ?, 'post', ?, ?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let m = &batch[row.at];
            query = query
                .bind(m.author_id)
                .bind(m.client_id)
                .bind(m.room_id)
                .bind(post_result(m.room_id, row.seq, row.id, m.ts))
                .bind(m.ts);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}
