//! [`Rooms`] on SQLite: rooms with their `seq` counters, and members.

use super::{conflict_or, SqliteStore};
use crate::store::{MemberState, Membership, Result, Role, RoomRow, Rooms, StoreError};
use async_trait::async_trait;
use sqlx::{Connection, Row};

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

    async fn rooms(&self) -> Result<Vec<RoomRow>> {
        // Public rooms only: the v1 wire lists every room to everyone.
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

    async fn access(
        &self,
        _room_id: i64,
        _user_id: i64,
    ) -> Result<Option<crate::chat::policy::Access>> {
        todo!("S7a: access")
    }

    async fn my_rooms(&self, _user_id: i64) -> Result<Vec<app::protocol::RoomSummary>> {
        todo!("S7a: my_rooms")
    }

    async fn summary(
        &self,
        _room_id: i64,
        _user_id: i64,
    ) -> Result<Option<app::protocol::RoomSummary>> {
        todo!("S7a: summary")
    }

    async fn public_by_name(&self, _name_key: &str) -> Result<Option<i64>> {
        todo!("S7a: public_by_name")
    }

    async fn directory(
        &self,
        _viewer: i64,
        _q_key: &str,
        _after: Option<&str>,
        _limit: u32,
    ) -> Result<app::protocol::DirectoryPage> {
        todo!("S7a: directory")
    }

    async fn members(
        &self,
        _room_id: i64,
        _after: Option<i64>,
        _limit: u32,
    ) -> Result<Vec<app::protocol::MemberInfo>> {
        todo!("S7a: members")
    }

    async fn last_seqs(&self, _ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        todo!("S7a: last_seqs")
    }
}
