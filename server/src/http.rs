//! The HTTP surface: pages (SSR), server functions, `/ws`, health, static files.

use crate::{auth, backend::AppBackend, ws, AppState};
use app::{api::SharedBackend, shell, App};
use axum::{
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::sync::Arc;
use tower_http::trace::TraceLayer;

/// Builds the whole router over `state`.
pub fn router(state: AppState) -> Router {
    let backend: SharedBackend = Arc::new(AppBackend(state.clone()));
    let context = move || provide_context(backend.clone());
    let routes = generate_route_list(App);
    let options = state.leptos.clone();
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .leptos_routes_with_context(&state, routes, context.clone(), move || {
            shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, shell))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            same_origin_posts,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// `/readyz`: ready when the store answers.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(err) => {
            tracing::warn!(cause = %err, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// `/metrics`: Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::render(state.hub.connections(), state.hub.rooms().len()),
    )
        .into_response()
}

/// Refuses state-changing requests sent by pages of another origin (CSRF).
/// Browsers send `Origin` on every cross-origin POST; a request without one
/// did not come from another site's page.
async fn same_origin_posts(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        if let Some(origin) = request.headers().get(axum::http::header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            if !auth::trusted_origin(request.headers(), origin, &state.config.allowed_origins) {
                return (StatusCode::FORBIDDEN, "Cross-origin request refused").into_response();
            }
        }
    }
    next.run(request).await
}
