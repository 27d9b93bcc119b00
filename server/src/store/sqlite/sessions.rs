//! [`Sessions`] on SQLite: sessions by token hash, and OpenID sign-ins in progress.

use super::{user, SqliteStore};
use crate::store::{OidcFlow, Result, Sessions, StoreError};
use app::protocol::Me;
use async_trait::async_trait;
use sqlx::Row;
use std::collections::HashSet;

/// Session hashes looked up per statement by `live_sessions`.
const LIVE_SESSIONS_BATCH: usize = 500;

#[async_trait]
impl Sessions for SqliteStore {
    async fn create_session(
        &self,
        user_id: i64,
        token_hash: &[u8],
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let mut w = self.writer().await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *w)
        .await?;
        w.ok();
        Ok(())
    }

    async fn session_user(&self, token_hash: &[u8], now: i64) -> Result<Option<Me>> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.email, u.picture FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ? AND s.expires_at > ?",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user).transpose()
    }

    async fn live_sessions(
        &self,
        token_hashes: &[[u8; 32]],
        now: i64,
    ) -> Result<HashSet<[u8; 32]>> {
        let mut live = HashSet::new();
        // One statement per batch, well under SQLite's limit on bound values.
        for batch in token_hashes.chunks(LIVE_SESSIONS_BATCH) {
            let marks = vec!["?"; batch.len()].join(",");
            let sql = format!(
                "SELECT token_hash FROM sessions WHERE expires_at > ? AND token_hash IN ({marks})"
            );
            let mut query = sqlx::query_scalar::<_, Vec<u8>>(&sql).bind(now);
            for hash in batch {
                query = query.bind(&hash[..]);
            }
            for hash in query.fetch_all(&self.pool).await? {
                if let Ok(hash) = <[u8; 32]>::try_from(hash) {
                    live.insert(hash);
                }
            }
        }
        Ok(live)
    }

    async fn delete_session(&self, token_hash: &[u8]) -> Result<()> {
        let mut w = self.writer().await?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&mut *w)
            .await?;
        w.ok();
        Ok(())
    }

    async fn purge_sessions(&self, now: i64) -> Result<u64> {
        let mut w = self.writer().await?;
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *w)
            .await?;
        w.ok();
        Ok(done.rows_affected())
    }

    async fn create_oidc_flow(&self, flow: &OidcFlow) -> Result<()> {
        let mut w = self.writer().await?;
        sqlx::query(
            "INSERT INTO oidc_flows (state_hash, browser_hash, provider, nonce, pkce_verifier, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&flow.state_hash[..])
        .bind(&flow.browser_hash[..])
        .bind(&flow.provider)
        .bind(&flow.nonce)
        .bind(&flow.pkce_verifier)
        .bind(flow.expires_at)
        .execute(&mut *w)
        .await?;
        w.ok();
        Ok(())
    }

    async fn take_oidc_flow(&self, state_hash: &[u8]) -> Result<Option<OidcFlow>> {
        let mut w = self.writer().await?;
        // One statement: two callbacks racing with the same state cannot both get it.
        let rows = sqlx::query(
            "DELETE FROM oidc_flows WHERE state_hash = ?
             RETURNING state_hash, browser_hash, provider, nonce, pkce_verifier, expires_at",
        )
        .bind(state_hash)
        .fetch_all(&mut *w)
        .await?;
        w.ok();
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let hash = |column: &str| -> Result<[u8; 32]> {
            let bytes: Vec<u8> = row.try_get(column)?;
            bytes.try_into().map_err(|_| {
                StoreError::Database(sqlx::Error::Decode(
                    format!("{column} is not 32 bytes").into(),
                ))
            })
        };
        Ok(Some(OidcFlow {
            state_hash: hash("state_hash")?,
            browser_hash: hash("browser_hash")?,
            provider: row.try_get("provider")?,
            nonce: row.try_get("nonce")?,
            pkce_verifier: row.try_get("pkce_verifier")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }

    async fn purge_oidc_flows(&self, now: i64) -> Result<u64> {
        let mut w = self.writer().await?;
        let done = sqlx::query("DELETE FROM oidc_flows WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *w)
            .await?;
        w.ok();
        Ok(done.rows_affected())
    }
}
