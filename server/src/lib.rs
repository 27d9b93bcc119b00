//! The chat server: one binary serving the pages, the WebSocket hub and the store.
//!
//! # Layout
//! - [`config`]: flags and environment.
//! - [`state`]: [`AppState`], what every handler shares.
//! - [`http`]: the router and the checks every request passes (Host, Origin,
//!   client address); pages via leptos_axum SSR and server functions.
//!   - `http/api_guard.rs`: the guard in front of the server functions.
//!   - `http/ops.rs`: `/healthz`, `/readyz`, `/metrics`.
//!   - `http/oidc.rs`: the OpenID sign-in routes and their error page.
//!   - `http/server_fns.rs`: the server side of the app's server functions,
//!     each a thin call into [`chat`].
//! - [`chat`]: one function per user operation, and `chat::policy`, the one
//!   place that decides rights.
//! - [`ws`]: one task pair per WebSocket: the upgrade and the read loop
//!   (`ws/mod.rs`), the protocol's handshake, resume and frames
//!   (`ws/v2.rs`, docs/protocol.md), a writer draining the connection's
//!   bounded queue (`ws/writer.rs`), and the close codes it may end with
//!   ([`ws::close`]).
//! - [`hub`]: per-user fan-out of room events, presence and typing; each
//!   event serialised once and shared.
//! - [`commit`]: the batch committer, where messages get their `seq` and become
//!   durable before anyone is told about them.
//! - [`store`]: one trait per aggregate (accounts, sessions, rooms, events,
//!   health), the [`store::Store`] handle over them, and the SQLite
//!   implementation (`store/sqlite/`, one file per aggregate).
//! - [`auth`]: sessions, guest sign-in, local accounts (argon2id, rate limits),
//!   OpenID Connect providers, and Origin checks.
//! - [`metrics`]: counters served at `/metrics`.
//! - [`net`]: the listener; every accepted socket gets `TCP_NODELAY`.
//!
//! This file holds [`run`], which wires them together and shuts them down
//! in order, and the housekeeping tasks.

pub mod auth;
pub mod chat;
pub mod commit;
pub mod config;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod net;
pub mod state;
pub mod store;
pub mod ws;

pub use state::AppState;

use crate::{
    auth::{limit::Limits, oidc::Oidc},
    commit::Committer,
    config::Config,
    hub::Hub,
    store::Store,
};
use app::protocol::ApiError;
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Logs a store failure and turns it into the error clients see.
pub fn unavailable(err: store::StoreError) -> ApiError {
    tracing::error!(cause = %err, "store failure");
    ApiError::unavailable("The database is unavailable right now; try again shortly.")
}

/// How often expired sessions and abandoned sign-ins are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Ticks every `period`, the first time one `period` from now.
///
/// Never at once (as `tokio::time::interval` would): a housekeeping task that
/// runs the moment the server starts races whatever else touches the same
/// rows then, a test included, and a restart loop would run it every time.
pub fn housekeeping_schedule(period: Duration) -> tokio::time::Interval {
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // After a stall (a suspended laptop), run once, not once per missed period.
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every
}

/// Deletes expired sessions and abandoned sign-ins once an hour (expired ones
/// are already refused; this only keeps the tables small).
async fn purge_sessions(store: Store, shutdown: CancellationToken) {
    let mut every = housekeeping_schedule(PURGE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {
                match store.sessions.purge_sessions(now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(sessions = n, "expired sessions purged"),
                    Err(err) => tracing::warn!(cause = %err, "session purge failed"),
                }
                if let Err(err) = store.sessions.purge_oidc_flows(now_ms()).await {
                    tracing::warn!(cause = %err, "sign-in purge failed");
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// Serves on `listener` until `shutdown` resolves, then shuts down gracefully:
/// stops accepting, closes every WebSocket with 1012 (clients reconnect and
/// resume), and commits every message already accepted.
pub async fn run(
    listener: TcpListener,
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The address actually bound is the one to derive from (the default
    // public URL, the loopback origins): asked for port 0, the kernel picked.
    config.addr = listener.local_addr()?;
    let providers = config
        .oidc_providers()
        .map_err(|why| anyhow::anyhow!("sign-in configuration: {why}"))?;
    let oidc = Oidc::new(providers, &config.public_url())?;
    let trust = auth::Trust::new(&config).map_err(|why| anyhow::anyhow!("configuration: {why}"))?;
    if auth::Trust::unnamed_exposure(&config) {
        tracing::warn!(
            addr = %config.addr,
            "listening on every interface with neither CHAT_PUBLIC_URL nor CHAT_ALLOWED_HOSTS: \
             requests naming this host will be refused; set CHAT_PUBLIC_URL"
        );
    }
    let store = store::open(&config.database_url).await?;
    let hub = Hub::new();
    let stop_commits = CancellationToken::new();
    let (committer, commit_task) =
        Committer::spawn(store.events.clone(), hub.clone(), stop_commits.clone());
    let chat = chat::Chat::new(store.clone(), committer.clone(), config.rooms_per_user);
    let state = AppState {
        leptos: config.leptos_options(),
        config: Arc::new(config),
        chat,
        store,
        hub,
        committer,
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        oidc,
        limits: Arc::new(Limits::default()),
        trust: Arc::new(trust),
    };
    tokio::spawn(purge_sessions(state.store.clone(), state.shutdown.clone()));
    tokio::spawn(auth::sweep::run(
        state.store.clone(),
        state.hub.clone(),
        state
            .config
            .session_check_every
            .unwrap_or(Duration::from_secs(state.config.ws_ping_secs.max(1))),
        state.shutdown.clone(),
    ));
    let app = http::router(state.clone());
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let token = state.shutdown.clone();
    // The peer address feeds the per-address sign-in rate limits.
    axum::serve(
        net::listener(listener),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down");
        token.cancel();
    })
    .await?;
    state.tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    stop_commits.cancel();
    commit_task.await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn housekeeping_first_runs_one_period_after_start() {
        let period = Duration::from_secs(3600);
        let mut every = housekeeping_schedule(period);
        let start = tokio::time::Instant::now();
        // With paused time the clock only moves to the next timer, so this
        // measures the schedule, not the machine's speed.
        every.tick().await;
        assert_eq!(start.elapsed(), period);
        every.tick().await;
        assert_eq!(start.elapsed(), period * 2);
    }
}
