//! SQLite: the embedded default. One file, WAL mode, one writer at a time.
//!
//! Durability: `journal_mode=WAL` with `synchronous=FULL`, so a transaction
//! is on disk (fsynced WAL) before `commit` returns, and an acknowledged
//! message survives a crash of the process or of the machine. The cost is one
//! fsync per commit, which the batch committer spreads over every message
//! that arrived while the previous batch was being written.

use super::{
    Committed, LocalAccount, NewMessage, OidcFlow, Original, Profile, Result, RoomRow, Store,
    StoreError, StoredMessage,
};
use app::protocol::{Me, UserInfo};
use async_trait::async_trait;
use sqlx::{
    pool::PoolConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Connection, Row, Sqlite, SqliteConnection, SqlitePool,
};
use std::{
    collections::HashSet,
    ops::{Deref, DerefMut},
    str::FromStr,
    time::Duration,
};

/// Session hashes looked up per statement by `live_sessions`.
const LIVE_SESSIONS_BATCH: usize = 500;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads, several at once (WAL readers do not block the writer).
    pool: SqlitePool,
    /// Writes: one connection, since SQLite has one writer anyway; writes
    /// queue here rather than spin on the file lock. See [`Writer`].
    writer: SqlitePool,
}

/// The writing connection, lent for one write. Unless the write succeeds
/// ([`Writer::ok`] after its last step), the connection is closed instead of
/// reused: after a fault SQLite can leave a connection unable to write long
/// after the disk recovered. A WAL file it had to reopen read-only answers
/// every later write with "attempt to write a readonly database"; a COMMIT
/// that failed was rolled back by SQLite itself, so the ROLLBACK sqlx queues
/// fails and sqlx still counts a transaction open ("begin_with at non-zero
/// transaction depth"). A new connection costs little.
struct Writer {
    conn: PoolConnection<Sqlite>,
    ok: bool,
}

impl Writer {
    /// Marks the write as done: the connection is kept for the next one.
    fn ok(&mut self) {
        self.ok = true;
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.ok {
            self.conn.close_on_drop();
        }
    }
}

impl Deref for Writer {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

/// No author email: messages are shown to everyone.
const MESSAGE_COLUMNS: &str = "m.id, m.seq, m.author_id, u.name AS author_name, \
     u.picture AS author_picture, m.body, m.client_id, m.created_at";

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and migrates it.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(e.into()))?;
            }
        }
        // Every write goes through `Writer`, which closes the connection after
        // any failed write, so no hook has to check connections on release.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(Self { pool, writer })
    }

    /// The writing connection (waiting while another write holds it).
    async fn writer(&self) -> Result<Writer> {
        Ok(Writer {
            conn: self.writer.acquire().await?,
            ok: false,
        })
    }

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
}

/// A signed-in user from a row with `id`, `name`, `email` and `picture`.
fn user(row: &sqlx::sqlite::SqliteRow) -> Result<Me> {
    Ok(Me {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        picture: row.try_get("picture")?,
    })
}

/// The one row a single-row `INSERT … RETURNING` gave back.
///
/// Outside an explicit transaction such a statement must be read with
/// `fetch_all`: SQLite makes the change at the first step but commits it when
/// the statement completes, and `fetch_one` stops at the first row, so a
/// failed commit (a write error, a full disk) would go unreported while the
/// caller goes on as if the row were stored.
fn returned<T>(rows: Vec<T>) -> Result<T> {
    rows.into_iter()
        .next()
        .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
}

fn conflict_or(err: sqlx::Error) -> StoreError {
    if is_unique_violation(&err) {
        StoreError::Conflict
    } else {
        err.into()
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_guest(&self, name: &str, now: i64) -> Result<Me> {
        let mut w = self.writer().await?;
        let id: i64 = returned(
            sqlx::query_scalar(
                "INSERT INTO users (name, kind, created_at) VALUES (?, 'guest', ?) RETURNING id",
            )
            .bind(name)
            .bind(now)
            .fetch_all(&mut *w)
            .await?,
        )?;
        w.ok();
        Ok(Me {
            id,
            name: name.to_owned(),
            ..Me::default()
        })
    }

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

    async fn commit(&self, batch: &[NewMessage<'_>]) -> Result<Vec<Committed>> {
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
        let mut messages = rows.iter().map(Self::message).collect::<Result<Vec<_>>>()?;
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
        rows.iter().map(Self::message).collect()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn probe_write(&self, now: i64) -> Result<()> {
        let mut w = self.writer().await?;
        sqlx::query(
            "INSERT INTO write_probe (id, at) VALUES (1, ?)
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )
        .bind(now)
        .execute(&mut *w)
        .await?;
        w.ok();
        Ok(())
    }
}
