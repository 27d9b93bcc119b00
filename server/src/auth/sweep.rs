//! Ends the sockets of sessions that ended without the server ending them:
//! expired, or deleted from the database by someone else. Sessions the
//! server ends itself (sign-out, a sign-in replacing one) close their
//! sockets at once ([`crate::AppState::end_session`]); the hourly purge only deletes
//! sessions that already expired, which this sweep has closed by then.

use crate::{hub::Hub, store::Store};
use std::{collections::HashSet, time::Duration};
use tokio_util::sync::CancellationToken;

/// Open sockets, by the session they were opened with.
pub trait Sockets {
    /// The distinct sessions of open connections.
    fn sessions(&self) -> Vec<[u8; 32]>;
    /// Closes (1008) the connections of `ended`; returns how many.
    fn end_sessions(&self, ended: &HashSet<[u8; 32]>) -> usize;
}

impl Sockets for Hub {
    fn sessions(&self) -> Vec<[u8; 32]> {
        Hub::sessions(self)
    }
    fn end_sessions(&self, ended: &HashSet<[u8; 32]>) -> usize {
        Hub::end_sessions(self, ended)
    }
}

/// Sweeps every `every` (the ping interval: a dead session's socket lives
/// at most that long), first one interval after start, until `shutdown`.
pub async fn run(store: Store, hub: Hub, every: Duration, shutdown: CancellationToken) {
    let mut ticks = crate::housekeeping_schedule(every);
    loop {
        tokio::select! {
            _ = ticks.tick() => match sweep(&store, &hub).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(connections = n, "sockets of ended sessions closed"),
                // Not knowing is not "gone": the next sweep decides.
                Err(err) => tracing::warn!(cause = %err, "session sweep failed; no one closed"),
            },
            () = shutdown.cancelled() => return,
        }
    }
}

/// Checks the sessions of every open connection (each distinct session
/// once, looked up in batches) and closes, with 1008, the connections of
/// those that are gone; returns how many. A failed lookup closes none.
pub async fn sweep(store: &Store, hub: &impl Sockets) -> Result<usize, crate::store::StoreError> {
    let open = hub.sessions();
    if open.is_empty() {
        return Ok(0);
    }
    let live = store.sessions.live_sessions(&open, crate::now_ms()).await?;
    // Only sessions that were checked: a connection opened since is left
    // to the next sweep.
    let ended: HashSet<[u8; 32]> = open.into_iter().filter(|s| !live.contains(s)).collect();
    if ended.is_empty() {
        return Ok(0);
    }
    Ok(hub.end_sessions(&ended))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{auth::token_hash, store};

    #[tokio::test]
    async fn closes_the_sockets_of_ended_sessions_and_no_one_when_the_store_fails() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("chat.db").display());
        let store = store::open(&url).await.unwrap();
        let hub = Hub::new();
        let mut conns = Vec::new();
        for name in ["ann", "bob"] {
            let me = store.accounts.create_guest(name, 0).await.unwrap();
            let hash = token_hash(name);
            store
                .sessions
                .create_session(me.id, &hash, 0, crate::now_ms() + 60_000)
                .await
                .unwrap();
            conns.push((hash, hub.connect(me.public(), hash)));
        }
        assert_eq!(sweep(&store, &hub).await.unwrap(), 0);

        // Without the table every lookup fails: the sweep must not read
        // that as "every session is gone".
        let db = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("ALTER TABLE sessions RENAME TO sessions_away")
            .execute(&db)
            .await
            .unwrap();
        assert!(sweep(&store, &hub).await.is_err());
        assert!(conns.iter().all(|(_, (conn, _))| !conn.is_kicked()));
        sqlx::query("ALTER TABLE sessions_away RENAME TO sessions")
            .execute(&db)
            .await
            .unwrap();

        store.sessions.delete_session(&conns[0].0).await.unwrap();
        assert_eq!(sweep(&store, &hub).await.unwrap(), 1);
        assert!(conns[0].1 .0.is_kicked());
        assert!(!conns[1].1 .0.is_kicked());
    }
}
