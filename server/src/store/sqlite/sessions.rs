//! [`Sessions`] on SQLite: sessions by token hash, and OpenID sign-ins in progress.

use super::{user, SqliteStore};
use crate::store::{OidcFlow, Result, Sessions, StoreError};
use app::protocol::Me;
use async_trait::async_trait;
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
        let token_hash = token_hash.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute((token_hash, user_id, now, expires_at))?;
            Ok(())
        })
        .await
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
        let token_hash = token_hash.to_owned();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
                .execute([token_hash])?;
            Ok(())
        })
        .await
    }

    async fn purge_sessions(&self, now: i64) -> Result<u64> {
        self.write(move |c| {
            let done = c
                .prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")?
                .execute([now])?;
            Ok(done as u64)
        })
        .await
    }

    async fn create_oidc_flow(&self, flow: &OidcFlow) -> Result<()> {
        let flow = flow.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO oidc_flows (state_hash, browser_hash, provider, nonce, pkce_verifier, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute((
                &flow.state_hash[..],
                &flow.browser_hash[..],
                &flow.provider,
                &flow.nonce,
                &flow.pkce_verifier,
                flow.expires_at,
            ))?;
            Ok(())
        })
        .await
    }

    async fn take_oidc_flow(&self, state_hash: &[u8]) -> Result<Option<OidcFlow>> {
        let state_hash = state_hash.to_owned();
        self.write(move |c| {
            // One statement: two callbacks racing with the same state cannot
            // both get it. Run to its end, not just its first row: SQLite
            // saves a DELETE … RETURNING only once every row has been read,
            // and an error saving it must not be lost.
            let mut delete = c.prepare_cached(
                "DELETE FROM oidc_flows WHERE state_hash = ?1
                 RETURNING state_hash, browser_hash, provider, nonce, pkce_verifier, expires_at",
            )?;
            let rows = delete
                .query_map([state_hash], |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let row = rows.into_iter().next();
            let Some((state, browser, provider, nonce, pkce_verifier, expires_at)) = row else {
                return Ok(None);
            };
            let hash = |column: &str, bytes: Vec<u8>| -> Result<[u8; 32]> {
                bytes.try_into().map_err(|_| {
                    StoreError::Database(sqlx::Error::Decode(
                        format!("{column} is not 32 bytes").into(),
                    ))
                })
            };
            Ok(Some(OidcFlow {
                state_hash: hash("state_hash", state)?,
                browser_hash: hash("browser_hash", browser)?,
                provider,
                nonce,
                pkce_verifier,
                expires_at,
            }))
        })
        .await
    }

    async fn purge_oidc_flows(&self, now: i64) -> Result<u64> {
        self.write(move |c| {
            let done = c
                .prepare_cached("DELETE FROM oidc_flows WHERE expires_at <= ?1")?
                .execute([now])?;
            Ok(done as u64)
        })
        .await
    }
}
