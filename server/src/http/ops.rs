//! The operational routes: `/healthz` (alive), `/readyz` (can serve and
//! commit) and `/metrics` (Prometheus). They answer whatever the `Host`
//! ([`super::ANY_HOST_PATHS`]).

use crate::AppState;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// `/healthz`: the process is up and serving HTTP.
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// `/readyz`: ready when the store answers and messages can be committed
/// (the committer runs, and its last commit succeeded or a write probe does).
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(err) = state.store.health.ping().await {
        tracing::warn!(cause = %err, "not ready");
        return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
    }
    match state.committer.ready(&*state.store.health).await {
        Ok(()) => "ready".into_response(),
        Err(why) => {
            tracing::warn!(why, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
        }
    }
}

/// `/metrics`: Prometheus text format.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::render(state.hub.connections(), state.hub.live_rooms()),
    )
        .into_response()
}
