//! [`Rooms`] on SQLite.

use super::{conflict_or, returned, SqliteStore};
use crate::store::{Result, RoomRow, Rooms};
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl Rooms for SqliteStore {
    async fn create_room(&self, name: &str, name_key: &str, by: i64, now: i64) -> Result<RoomRow> {
        let mut w = self.writer().await?;
        let id = returned(
            sqlx::query_scalar(
                "INSERT INTO rooms (name, name_key, created_by, created_at) VALUES (?, ?, ?, ?) RETURNING id",
            )
            .bind(name)
            .bind(name_key)
            .bind(by)
            .bind(now)
            .fetch_all(&mut *w)
            .await
            .map_err(conflict_or)?,
        )?;
        w.ok();
        Ok(RoomRow {
            id,
            name: name.to_owned(),
            created_at: now,
            last_seq: 0,
        })
    }

    async fn rooms(&self) -> Result<Vec<RoomRow>> {
        let rows = sqlx::query(
            "SELECT r.id, r.name, r.created_at,
                    COALESCE((SELECT MAX(seq) FROM messages m WHERE m.room_id = r.id), 0) AS last_seq
             FROM rooms r ORDER BY r.created_at, r.id",
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
                })
            })
            .collect()
    }
}
