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
//! two pools they share: readers, and the one writing connection lent by
//! [`Writer`].

mod accounts;
mod events;
mod rooms;
mod sessions;

use super::{AppendedEvent, Health, MemberState, Result, Role as StoredRole, StoreError};
use crate::chat::policy::Standing;
use app::protocol::{Me, Role, RoomKind, UserInfo};
use async_trait::async_trait;
use sqlx::{
    pool::PoolConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Row, Sqlite, SqliteConnection, SqlitePool,
};
use std::{
    fmt,
    ops::{Deref, DerefMut},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

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
    /// queue here rather than spin on the file lock. See [`Writer`].
    writer: SqlitePool,
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
#[async_trait]
pub trait SqliteHook: Send + Sync {
    /// Writes what `events` call for, on the transaction's connection.
    async fn before_commit(
        &self,
        conn: &mut SqliteConnection,
        events: &[AppendedEvent],
    ) -> Result<()>;
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

/// Pages the WAL may hold before a commit copies them back into the database
/// (SQLite's default is 1,000, about 4 MiB). The committer's batches touch
/// the same hot pages (room counters, index tails) again and again; a longer
/// WAL copies each of them once per checkpoint instead of once per 1,000
/// pages. Scenario 3 of `make bench` (2,000 rooms): 27.5k instead of 22.7k
/// deliveries/s and 32.5 instead of 34.8 µs of CPU per delivery, medians of
/// 3 (`bench/results/2026-12-02-committer-thread.md`). The WAL file then
/// grows to about 80 MiB.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 20_000;

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
        // Every write goes through `Writer`, which closes the connection after
        // any failed write, so no hook has to check connections on release.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                options
                    .clone()
                    .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
                    // A multi-row statement in a transaction (each insert
                    // of a batch) keeps a statement journal, a copy of every
                    // page it changes, so a constraint error can undo that
                    // statement alone. Past 64 KiB SQLite spills it to a
                    // temporary file, a `pwrite` per page: 7 % of the
                    // server's CPU in scenario 3 of `make bench`. In memory
                    // it is bounded by the pages one statement of one batch
                    // touches.
                    .pragma("temp_store", "memory"),
            )
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            writer,
            hooks: hooks.into(),
        })
    }

    /// The writing connection (waiting while another write holds it).
    async fn writer(&self) -> Result<Writer> {
        Ok(Writer {
            conn: self.writer.acquire().await?,
            ok: false,
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

/// `rows` copies of `row` (a parenthesised list of placeholders), for a
/// multi-row `VALUES`.
fn values(row: &str, rows: usize) -> String {
    vec![row; rows].join(", ")
}

/// How many rows of `per_row` bound values fit in one statement.
fn rows_per_statement(per_row: usize) -> usize {
    MAX_VARIABLES / per_row
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
impl Health for SqliteStore {
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
