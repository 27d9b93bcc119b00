//! [`Rooms`] on SQLite: rooms with their `seq` counters, members, and the
//! read side (access facts, summaries, the directory, member lists).

use super::{
    conflict_or, count, role, room_kind, rows_per_statement, standing, user_info, SqliteStore,
};
use crate::chat::policy::{Access, Standing};
use crate::store::{MemberState, Membership, Result, Role, RoomRow, Rooms, StoreError};
use app::protocol::{DirectoryEntry, DirectoryPage, MemberInfo, RoomSummary};
use async_trait::async_trait;
use sqlx::{sqlite::SqliteRow, Connection, Row};

#[async_trait]
impl Rooms for SqliteStore {
    async fn create_room(&self, name: &str, name_key: &str, by: i64, now: i64) -> Result<RoomRow> {
        let mut w = self.writer().await?;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await?;
        // The creator is its first member, so the count starts at 1. No
        // event yet: a `member_joined` comes with the v2 committer.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO rooms (kind, name, name_key, member_count, created_by, created_at)
             VALUES ('public', ?, ?, 1, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(name_key)
        .bind(by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_or)?;
        sqlx::query(
            "INSERT INTO members (room_id, user_id, role, joined_at, last_read_seq)
             VALUES (?, ?, 'owner', ?, 0)",
        )
        .bind(id)
        .bind(by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        w.ok();
        Ok(RoomRow {
            id,
            name: name.to_owned(),
            created_at: now,
            last_seq: 0,
            member_count: 1,
        })
    }

    async fn auto_join(&self) -> Result<Vec<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM rooms WHERE auto_join = 1 ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn rooms(&self) -> Result<Vec<RoomRow>> {
        // Public rooms only (a private room's name is its members' business).
        let rows = sqlx::query(
            "SELECT id, name, created_at, last_seq, member_count FROM rooms
             WHERE kind = 'public' ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RoomRow {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                    last_seq: row.try_get("last_seq")?,
                    member_count: row.try_get("member_count")?,
                })
            })
            .collect()
    }

    async fn membership(&self, room_id: i64, user_id: i64) -> Result<Option<Membership>> {
        let row = sqlx::query(
            "SELECT state, role, joined_at, last_read_seq FROM members
             WHERE room_id = ? AND user_id = ?",
        )
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let state: String = row.try_get("state")?;
        let role: String = row.try_get("role")?;
        let unknown = |what: &str, value: &str| {
            StoreError::Database(sqlx::Error::Decode(
                format!("unknown member {what} {value:?}").into(),
            ))
        };
        Ok(Some(Membership {
            state: MemberState::parse(&state).ok_or_else(|| unknown("state", &state))?,
            role: Role::parse(&role).ok_or_else(|| unknown("role", &role))?,
            joined_at: row.try_get("joined_at")?,
            last_read_seq: row.try_get("last_read_seq")?,
        }))
    }

    async fn access(&self, room_id: i64, user_id: i64) -> Result<Option<Access>> {
        let row = sqlx::query(
            "SELECT r.kind, m.state, m.role FROM rooms r
             LEFT JOIN members m ON m.room_id = r.id AND m.user_id = ?
             WHERE r.id = ?",
        )
        .bind(user_id)
        .bind(room_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let kind = room_kind(row.try_get("kind")?)?;
        // No row: never joined, or left (leaving deletes the row).
        let standing = match (
            row.try_get::<Option<&str>, _>("state")?,
            row.try_get::<Option<&str>, _>("role")?,
        ) {
            (Some(state), Some(role)) => standing(state, role)?,
            _ => Standing::Outsider,
        };
        Ok(Some(Access { kind, standing }))
    }

    async fn my_rooms(&self, user_id: i64) -> Result<Vec<RoomSummary>> {
        // One statement, so one snapshot. DMs (no name key) first, by id.
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM members m JOIN rooms r ON r.id = m.room_id
             WHERE m.user_id = ? AND m.state = 'joined'
             ORDER BY r.name_key IS NOT NULL, r.name_key, r.id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(summary).collect()
    }

    async fn summary(&self, room_id: i64, user_id: i64) -> Result<Option<RoomSummary>> {
        // Not joined (no row, invited, banned): the membership columns are
        // NULL, which `summary` reads as no role and nothing unread.
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM rooms r
             LEFT JOIN members m ON m.room_id = r.id AND m.user_id = ? AND m.state = 'joined'
             WHERE r.id = ?"
        );
        let row = sqlx::query(&sql)
            .bind(user_id)
            .bind(user_id)
            .bind(room_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(summary).transpose()
    }

    async fn public_by_name(&self, name_key: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM rooms WHERE kind = 'public' AND name_key = ?")
                .bind(name_key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn directory(
        &self,
        viewer: i64,
        q_key: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<DirectoryPage> {
        // The cursor is the last name key shown: public name keys are unique
        // (rooms_public_name), so "after it" is exact, and that index is
        // searched from the cursor on, in order (a `? IS NULL OR` would
        // make SQLite scan it from the start). instr, not LIKE: '%' and
        // '_' are literal.
        let sql = format!(
            "SELECT r.id, r.name, r.name_key, r.topic, r.member_count,
                    EXISTS (SELECT 1 FROM members m WHERE m.room_id = r.id
                            AND m.user_id = ? AND m.state = 'joined') AS joined
             FROM rooms r
             WHERE r.kind = 'public' AND instr(r.name_key, ?) > 0 {}
             ORDER BY r.name_key LIMIT ?",
            if after.is_some() {
                "AND r.name_key > ?"
            } else {
                ""
            }
        );
        let mut query = sqlx::query(&sql).bind(viewer).bind(q_key);
        if let Some(after) = after {
            query = query.bind(after);
        }
        let rows = query
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let more = rows.len() > limit as usize;
        let mut rooms = Vec::with_capacity(rows.len().min(limit as usize));
        let mut last_key = None;
        for row in rows.iter().take(limit as usize) {
            rooms.push(DirectoryEntry {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                topic: row.try_get("topic")?,
                member_count: count(row.try_get("member_count")?),
                joined: row.try_get("joined")?,
            });
            last_key = Some(row.try_get::<String, _>("name_key")?);
        }
        Ok(DirectoryPage {
            rooms,
            next: if more { last_key } else { None },
        })
    }

    async fn members(
        &self,
        room_id: i64,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MemberInfo>> {
        // A cursor member who has left since (their row is gone) has no
        // position: the list starts over rather than skip anyone.
        let rows = sqlx::query(
            "WITH c AS (SELECT joined_at, user_id FROM members
                        WHERE room_id = ? AND user_id = ? AND state = 'joined')
             SELECT u.id AS user_id, u.name AS user_name, u.picture AS user_picture,
                    m.role, m.joined_at
             FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.room_id = ? AND m.state = 'joined'
               AND (NOT EXISTS (SELECT 1 FROM c)
                    OR (m.joined_at, m.user_id) > (SELECT joined_at, user_id FROM c))
             ORDER BY m.joined_at, m.user_id LIMIT ?",
        )
        .bind(room_id)
        .bind(after)
        .bind(room_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(MemberInfo {
                    user: user_info(row, "user_")?,
                    role: role(row.try_get("role")?)?,
                    joined_at: row.try_get("joined_at")?,
                })
            })
            .collect()
    }

    async fn last_seqs(&self, ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(rows_per_statement(1)) {
            let sql = format!(
                "SELECT id, last_seq FROM rooms WHERE id IN ({}) ORDER BY id",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut query = sqlx::query(&sql);
            for &id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                found.push((row.try_get("id")?, row.try_get("last_seq")?));
            }
        }
        Ok(found)
    }
}

/// The columns of a [`RoomSummary`]: the room `r` and the user's joined
/// membership `m` (NULL when they are not a member). Binds the user's id
/// once, for `unread`: others' undeleted posts above the read marker,
/// counted up to 1000 by a range scan of `UNIQUE (room_id, seq)` that stops
/// there.
const SUMMARY_COLUMNS: &str = "r.id, r.kind, r.name, r.topic, r.last_seq, r.member_count,
     m.role, m.last_read_seq, m.mention_count,
     CASE WHEN m.user_id IS NULL THEN 0 ELSE
         (SELECT COUNT(*) FROM (SELECT 1 FROM messages x
              WHERE x.room_id = r.id AND x.seq > m.last_read_seq
                AND x.author_id <> ? AND x.deleted_at IS NULL
              LIMIT 1000))
     END AS unread";

/// A room as one user sees it, from a row of [`SUMMARY_COLUMNS`].
fn summary(row: &SqliteRow) -> Result<RoomSummary> {
    Ok(RoomSummary {
        id: row.try_get("id")?,
        kind: room_kind(row.try_get("kind")?)?,
        name: row.try_get("name")?,
        topic: row.try_get("topic")?,
        last_seq: row.try_get("last_seq")?,
        member_count: count(row.try_get("member_count")?),
        role: row
            .try_get::<Option<&str>, _>("role")?
            .map(role)
            .transpose()?,
        last_read_seq: row.try_get::<Option<i64>, _>("last_read_seq")?.unwrap_or(0),
        unread: count(row.try_get("unread")?),
        mentions: count(row.try_get::<Option<i64>, _>("mention_count")?.unwrap_or(0)),
    })
}
