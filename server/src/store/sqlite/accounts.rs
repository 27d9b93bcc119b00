//! [`Accounts`] on SQLite: users, local accounts and linked identities.

use super::{user, writer::conflict_or, SqliteStore};
use crate::store::{Accounts, LocalAccount, Profile, Result, SignedIn};
use app::protocol::Me;
use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior};
use sqlx::Row;

#[async_trait]
impl Accounts for SqliteStore {
    async fn create_guest(&self, name: &str, now: i64) -> Result<Me> {
        let name = name.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO users (name, kind, created_at) VALUES (?1, 'guest', ?2)",
            )?
            .execute((&name, now))?;
            Ok(Me {
                id: c.last_insert_rowid(),
                name,
                ..Me::default()
            })
        })
        .await
    }

    async fn create_local_account(
        &self,
        name: &str,
        email: &str,
        email_key: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Me> {
        let (name, email) = (name.to_owned(), email.to_owned());
        let (email_key, password_hash) = (email_key.to_owned(), password_hash.to_owned());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO users (name, kind, email, created_at) VALUES (?1, 'local', ?2, ?3)",
            )?
            .execute((&name, &email, now))?;
            let id = tx.last_insert_rowid();
            tx.prepare_cached(
                "INSERT INTO local_accounts (email_key, user_id, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute((&email_key, id, &password_hash, now))
            .map_err(conflict_or)?;
            tx.commit()?;
            Ok(Me {
                id,
                name,
                email: Some(email),
                picture: None,
            })
        })
        .await
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
        let (issuer, subject, profile) = (issuer.to_owned(), subject.to_owned(), profile.clone());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let linked: Option<i64> = tx
                .prepare_cached("SELECT user_id FROM identities WHERE issuer = ?1 AND subject = ?2")?
                .query_row((&issuer, &subject), |row| row.get(0))
                .optional()?;
            let (id, created) = match linked {
                Some(id) => {
                    tx.prepare_cached(
                        "UPDATE users SET name = ?1, email = ?2, picture = ?3 WHERE id = ?4",
                    )?
                    .execute((&profile.name, &profile.email, &profile.picture, id))?;
                    tx.prepare_cached(
                        "UPDATE identities SET last_login_at = ?1 WHERE issuer = ?2 AND subject = ?3",
                    )?
                    .execute((now, &issuer, &subject))?;
                    (id, false)
                }
                None => {
                    tx.prepare_cached(
                        "INSERT INTO users (name, kind, email, picture, created_at)
                         VALUES (?1, 'oidc', ?2, ?3, ?4)",
                    )?
                    .execute((&profile.name, &profile.email, &profile.picture, now))?;
                    let id = tx.last_insert_rowid();
                    tx.prepare_cached(
                        "INSERT INTO identities (issuer, subject, user_id, created_at, last_login_at)
                         VALUES (?1, ?2, ?3, ?4, ?4)",
                    )?
                    .execute((&issuer, &subject, id, now))?;
                    (id, true)
                }
            };
            tx.commit()?;
            Ok(SignedIn {
                user: Me {
                    id,
                    name: profile.name,
                    email: profile.email,
                    picture: profile.picture,
                },
                created,
            })
        })
        .await
    }
}
