//! The one writing connection: rusqlite, used synchronously by whoever holds
//! it, with every statement prepared once and kept.
//!
//! Reads stay on sqlx's pool, whose connections each run on a thread of
//! their own: every statement there is a round trip between the caller's
//! thread and that one, two context switches. A batch of the committer is a
//! dozen statements, so on sqlx it cost two dozen switches, about 1.3 µs of
//! CPU per delivery at moderate load (`perf stat` in
//! `bench/results/2026-12-02-session8.md`). Here the batch runs on the
//! committer's own thread, start to COMMIT, with no hand-off at all. The
//! other writes (sign-ins, sessions) are rare and run in `spawn_blocking`.
//!
//! Unless a write succeeds ([`Writer::ok`] after its last step), the
//! connection is closed (rolling back whatever it left open) and the next
//! write opens a new one: after a fault SQLite can leave a connection unable
//! to write long after the disk recovered (a WAL file it had to reopen
//! read-only answers every later write with "attempt to write a readonly
//! database"). A new connection costs little.

use super::super::{Result, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::{path::PathBuf, sync::Arc, time::Duration};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Pages the WAL may hold before a commit copies them back into the database
/// (SQLite's default is 1,000, about 4 MiB). The committer's batches touch
/// the same hot pages (room counters, index tails) again and again; a longer
/// WAL copies each of them once per checkpoint instead of once per 1,000
/// pages. Scenario 3 of `make bench` (2,000 rooms): 27.5k instead of 22.7k
/// deliveries/s and 32.5 instead of 34.8 µs of CPU per delivery, medians of
/// 3 (`bench/results/2026-12-02-committer-thread.md`). The WAL file then
/// grows to about 80 MiB.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 20_000;

/// Statements kept prepared: every statement the writes use, with room to
/// spare (rusqlite's default keeps 16).
const STATEMENT_CACHE: usize = 64;

/// How long a write waits for the writing connection (another write holds
/// it: a COMMIT stuck in fsync on a sick disk, say) before failing, as
/// sqlx's pool did.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a write waits for SQLite's file lock (held by a checkpoint, or
/// by another process such as a test reading the file) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writing connection's slot: the file it writes, and the connection
/// when one is open.
#[derive(Debug)]
struct Slot {
    path: PathBuf,
    conn: Option<Connection>,
}

/// Where writers queue for the one writing connection.
#[derive(Debug, Clone)]
pub(super) struct WriterPool(Arc<Mutex<Slot>>);

impl WriterPool {
    /// A pool for the database file at `path`, opening its connection now
    /// so that a file that cannot be written fails at start.
    pub(super) fn open(path: PathBuf) -> Result<Self> {
        let conn = connect(&path)?;
        Ok(Self(Arc::new(Mutex::new(Slot {
            path,
            conn: Some(conn),
        }))))
    }

    /// The writing connection, waiting while another write holds it (at
    /// most [`ACQUIRE_TIMEOUT`]).
    pub(super) async fn acquire(&self) -> Result<Writer> {
        let slot = tokio::time::timeout(ACQUIRE_TIMEOUT, self.0.clone().lock_owned())
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))?;
        Ok(Writer { slot, ok: false })
    }
}

/// The writing connection, lent for one write: see the module's doc.
pub(super) struct Writer {
    slot: OwnedMutexGuard<Slot>,
    ok: bool,
}

impl Writer {
    /// The connection, opened again if the last write failed.
    pub(super) fn conn(&mut self) -> Result<&mut Connection> {
        let slot = &mut *self.slot;
        match &mut slot.conn {
            Some(conn) => Ok(conn),
            empty => Ok(empty.insert(connect(&slot.path)?)),
        }
    }

    /// Marks the write as done: the connection is kept for the next one.
    pub(super) fn ok(&mut self) {
        self.ok = true;
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.ok {
            // Closing rolls back a transaction left open.
            self.slot.conn = None;
        }
    }
}

/// A new writing connection to `path`, set up as every write expects.
fn connect(path: &std::path::Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // The file is in WAL mode already (the read pool set it, and it
    // persists); set here too, so this connection never depends on that.
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    // `temp_store`: a statement in a transaction keeps a statement journal
    // (a copy of every page it changes, so a constraint error can undo that
    // statement alone). Past 64 KiB SQLite spills it to a temporary file, a
    // `pwrite` per page: 7 % of the server's CPU in scenario 3 of `make
    // bench` with multi-row inserts. In memory it is bounded by the pages one
    // statement touches.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};
         PRAGMA temp_store = MEMORY;"
    ))?;
    Ok(conn)
}

/// Whether `err` is a broken uniqueness rule (a name or key that exists).
pub(super) fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// [`StoreError::Conflict`] for a broken uniqueness rule, else the error.
pub(super) fn conflict_or(err: rusqlite::Error) -> StoreError {
    if is_unique_violation(&err) {
        StoreError::Conflict
    } else {
        err.into()
    }
}
