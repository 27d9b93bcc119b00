//! [`Accounts`] on SQLite: users, local accounts and linked identities.

use super::{conflict_or, user, SqliteStore};
use crate::store::{Accounts, LocalAccount, Profile, Result, SignedIn};
use app::protocol::Me;
use async_trait::async_trait;
use sqlx::{Connection, Row};

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
    ) -> Result<SignedIn> {
        let mut w = self.writer().await?;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await?;
        let linked: Option<i64> =
            sqlx::query_scalar("SELECT user_id FROM identities WHERE issuer = ? AND subject = ?")
                .bind(issuer)
                .bind(subject)
                .fetch_optional(&mut *tx)
                .await?;
        let (id, created) = match linked {
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
                (id, false)
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
                (id, true)
            }
        };
        tx.commit().await?;
        w.ok();
        Ok(SignedIn {
            user: Me {
                id,
                name: profile.name.clone(),
                email: profile.email.clone(),
                picture: profile.picture.clone(),
            },
            created,
        })
    }
}
