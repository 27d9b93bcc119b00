//! [`Accounts`] on SQLite: users, local accounts and linked identities.

use super::{conflict_or, user, SqliteStore};
use crate::store::{Accounts, LocalAccount, Profile, Result};
use app::protocol::Me;
use async_trait::async_trait;
use sqlx::{Connection, Row, SqliteConnection};

/// Makes a new user a member of every `auto_join` room (general), in the
/// transaction that creates the user, as a silent `Join` would: the room's
/// counter advances by one for a `member_joined {role: member, silent:
/// true}` event, `member_count` follows, and the command is recorded under
/// the fixed key `00000000-0000-4000-8000-{room_id:012x}` (plan v2 §3,
/// `join_defaults`). The read marker starts at that event, so a new user
/// has nothing unread.
///
/// Done here rather than through the committer so that a user never exists
/// without their general membership (one transaction); the committer's hooks
/// do not see these joins (a silent join carries nothing to index).
async fn join_auto_rooms(conn: &mut SqliteConnection, user_id: i64, now: i64) -> Result<()> {
    let rooms: Vec<(i64, i64)> = sqlx::query_as(
        "UPDATE rooms SET last_seq = last_seq + 1, member_count = member_count + 1
         WHERE auto_join = 1 RETURNING id, last_seq",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (room_id, seq) in rooms {
        sqlx::query(
            "INSERT INTO members (room_id, user_id, joined_at, last_read_seq) VALUES (?, ?, ?, ?)",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(now)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO room_events (room_id, seq, kind, actor_id, target_id, payload, ts)
             VALUES (?, ?, 'member_joined', ?, ?, '{\"role\":\"member\",\"silent\":true}', ?)",
        )
        .bind(room_id)
        .bind(seq)
        .bind(user_id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO commands (user_id, client_id, kind, room_id, result, created_at)
             VALUES (?, ?, 'join', ?, json_object('room_id', ?, 'seq', ?, 'ts', ?), ?)",
        )
        .bind(user_id)
        .bind(format!("00000000-0000-4000-8000-{room_id:012x}"))
        .bind(room_id)
        .bind(room_id)
        .bind(seq)
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Accounts for SqliteStore {
    async fn create_guest(&self, name: &str, now: i64) -> Result<Me> {
        let mut w = self.writer().await?;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (name, kind, created_at) VALUES (?, 'guest', ?) RETURNING id",
        )
        .bind(name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        join_auto_rooms(&mut tx, id, now).await?;
        tx.commit().await?;
        w.ok();
        Ok(Me {
            id,
            name: name.to_owned(),
            ..Me::default()
        })
    }

    async fn create_local_account(
        &self,
        name: &str,
        email: &str,
        email_key: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Me> {
        let mut w = self.writer().await?;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (name, kind, email, created_at) VALUES (?, 'local', ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(email)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO local_accounts (email_key, user_id, password_hash, created_at)
             VALUES (?, ?, ?, ?)",
        )
        .bind(email_key)
        .bind(id)
        .bind(password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or)?;
        join_auto_rooms(&mut tx, id, now).await?;
        tx.commit().await?;
        w.ok();
        Ok(Me {
            id,
            name: name.to_owned(),
            email: Some(email.to_owned()),
            picture: None,
        })
    }

    async fn local_account(&self, email_key: &str) -> Result<Option<LocalAccount>> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.email, u.picture, a.password_hash
             FROM local_accounts a JOIN users u ON u.id = a.user_id WHERE a.email_key = ?",
        )
        .bind(email_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(LocalAccount {
                user: user(&row)?,
                password_hash: row.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    async fn sign_in_identity(
        &self,
        issuer: &str,
        subject: &str,
        profile: &Profile,
        now: i64,
    ) -> Result<Me> {
        let mut w = self.writer().await?;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await?;
        let linked: Option<i64> =
            sqlx::query_scalar("SELECT user_id FROM identities WHERE issuer = ? AND subject = ?")
                .bind(issuer)
                .bind(subject)
                .fetch_optional(&mut *tx)
                .await?;
        let id = match linked {
            Some(id) => {
                sqlx::query("UPDATE users SET name = ?, email = ?, picture = ? WHERE id = ?")
                    .bind(&profile.name)
                    .bind(&profile.email)
                    .bind(&profile.picture)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE identities SET last_login_at = ? WHERE issuer = ? AND subject = ?",
                )
                .bind(now)
                .bind(issuer)
                .bind(subject)
                .execute(&mut *tx)
                .await?;
                id
            }
            None => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO users (name, kind, email, picture, created_at)
                     VALUES (?, 'oidc', ?, ?, ?) RETURNING id",
                )
                .bind(&profile.name)
                .bind(&profile.email)
                .bind(&profile.picture)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO identities (issuer, subject, user_id, created_at, last_login_at)
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(issuer)
                .bind(subject)
                .bind(id)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                join_auto_rooms(&mut tx, id, now).await?;
                id
            }
        };
        tx.commit().await?;
        w.ok();
        Ok(Me {
            id,
            name: profile.name.clone(),
            email: profile.email.clone(),
            picture: profile.picture.clone(),
        })
    }
}
