//! SQLite: the embedded default. One file, WAL mode, one writer at a time.
//!
//! Durability: `journal_mode=WAL` with `synchronous=FULL`, so a transaction
//! is on disk (fsynced WAL) before `commit` returns, and an acknowledged
//! message survives a crash of the process or of the machine. The cost is one
//! fsync per commit, which the batch committer spreads over every message
//! that arrived while the previous batch was being written.
//!
//! One [`SqliteStore`] implements every aggregate, one file each
//! ([`accounts`], [`sessions`], [`rooms`], [`events`]; [`Health`] here), over
//! what they share: sqlx's pool of readers, and the one writing connection
//! ([`writer`]), which is rusqlite's, used synchronously.

mod accounts;
mod events;
mod rooms;
mod sessions;
mod writer;

pub use rusqlite;

use super::{AppendedEvent, Health, MemberState, Result, Role as StoredRole, StoreError};
use crate::chat::policy::Standing;
use app::protocol::{Me, Role, RoomKind, UserInfo};
use async_trait::async_trait;
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Row, SqlitePool,
};
use std::{fmt, str::FromStr, sync::Arc, time::Duration};
use writer::{Writer, WriterPool};

/// Most values one statement may bind: SQLite's `SQLITE_MAX_VARIABLE_NUMBER`
/// (32766 since 3.32; the bundled library keeps the default). Multi-row
/// statements are split to stay under it.
const MAX_VARIABLES: usize = 32_766;

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    /// Reads, several at once (WAL readers do not block the writer).
    pool: SqlitePool,
    /// Writes: one connection, since SQLite has one writer anyway; writes
    /// queue here rather than spin on the file lock. See [`writer`].
    writer: WriterPool,
    /// Run in every committer transaction, before its COMMIT.
    hooks: Arc<[Arc<dyn SqliteHook>]>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("pool", &self.pool)
            .field("writer", &self.writer)
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

/// A caller's own writes, added to the committing transaction (search
/// indexing will be one): it runs with the batch's events just before
/// COMMIT, and an error rolls the whole batch back, messages and events
/// together, so what it writes is never out of step with the log.
///
/// It runs synchronously on the committer's thread, as the whole batch
/// does: keep it to statements on `conn`.
pub trait SqliteHook: Send + Sync {
    /// Writes what `events` call for, on the transaction's connection.
    fn before_commit(&self, conn: &rusqlite::Connection, events: &[AppendedEvent]) -> Result<()>;
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and migrates it.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with_hooks(url, Vec::new()).await
    }

    /// [`SqliteStore::open`], with hooks run in every committer transaction.
    pub async fn open_with_hooks(url: &str, hooks: Vec<Arc<dyn SqliteHook>>) -> Result<Self> {
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
        // The writer opens the file by its path: a database only in memory
        // would be a different one for it and for the readers.
        let path = options.get_filename().to_owned();
        let name = path.to_string_lossy();
        if name.is_empty() || name.starts_with(':') || name.starts_with("file:") {
            return Err(StoreError::Database(sqlx::Error::Configuration(
                format!("DATABASE_URL must name a SQLite file, not {url}").into(),
            )));
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let writer = tokio::task::spawn_blocking(move || WriterPool::open(path))
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))??;
        Ok(Self {
            pool,
            writer,
            hooks: hooks.into(),
        })
    }

    /// The writing connection (waiting while another write holds it).
    async fn writer(&self) -> Result<Writer> {
        self.writer.acquire().await
    }

    /// Runs `write` on the writing connection, on a thread where blocking is
    /// allowed (a COMMIT waits for fsync); the connection is kept only if it
    /// succeeds.
    async fn write<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        let mut w = self.writer().await?;
        tokio::task::spawn_blocking(move || {
            let out = write(w.conn()?)?;
            w.ok();
            Ok(out)
        })
        .await
        .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
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

/// A user as others see them (no email), from a row's `{prefix}id`,
/// `{prefix}name` and `{prefix}picture` columns: every query that shows a
/// user selects those three from `users` under one prefix.
fn user_info(row: &sqlx::sqlite::SqliteRow, prefix: &str) -> Result<UserInfo> {
    Ok(UserInfo {
        id: row.try_get(format!("{prefix}id").as_str())?,
        name: row.try_get(format!("{prefix}name").as_str())?,
        picture: row.try_get(format!("{prefix}picture").as_str())?,
    })
}

/// The role stored in `members.role` as `name`.
fn role(name: &str) -> Result<Role> {
    Ok(match StoredRole::parse(name) {
        Some(StoredRole::Owner) => Role::Owner,
        Some(StoredRole::Moderator) => Role::Moderator,
        Some(StoredRole::Member) => Role::Member,
        None => return Err(StoreError::Missing("member role")),
    })
}

/// The standing a membership row gives (a user without one is an outsider:
/// leaving deletes the row).
fn standing(state: &str, role_name: &str) -> Result<Standing> {
    Ok(match MemberState::parse(state) {
        Some(MemberState::Joined) => Standing::Member(role(role_name)?),
        Some(MemberState::Invited) => Standing::Invited,
        Some(MemberState::Banned) => Standing::Banned,
        None => return Err(StoreError::Missing("member state")),
    })
}

/// The room kind stored in `rooms.kind` as `kind`.
fn room_kind(kind: &str) -> Result<RoomKind> {
    [RoomKind::Public, RoomKind::Private, RoomKind::Dm]
        .into_iter()
        .find(|k| k.as_str() == kind)
        .ok_or(StoreError::Missing("room kind"))
}

/// A stored count (never negative: the schema checks it) as the wire's `u32`,
/// saturating.
fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// How many rows of `per_row` bound values fit in one statement.
fn rows_per_statement(per_row: usize) -> usize {
    MAX_VARIABLES / per_row
}

#[async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn probe_write(&self, now: i64) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO write_probe (id, at) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            )?
            .execute((1, now))?;
            Ok(())
        })
        .await
    }
}
