//! The HTTP surface: the router and the checks every request passes (Host,
//! Origin, client address). Pages (SSR), server functions and static files
//! come from leptos_axum; `/ws` from [`crate::ws`]; the operational routes
//! from [`ops`]; the OpenID sign-in routes from [`oidc`].

use crate::{ws, AppState};
use app::{
    api::{ClientIp, SharedBackend},
    shell, App,
};
use axum::{
    extract::{ConnectInfo, Request, State},
    http::{header, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use server_fns::AppBackend;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tower_http::trace::TraceLayer;

mod api_guard;
mod oidc;
mod ops;
pub mod server_fns;

/// Builds the whole router over `state`.
pub fn router(state: AppState) -> Router {
    let backend: SharedBackend = Arc::new(AppBackend(state.clone()));
    let context = move || provide_context(backend.clone());
    let routes = generate_route_list(App);
    let options = state.leptos.clone();
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/auth/oidc/{provider}", post(oidc::start))
        .route("/auth/oidc/{provider}/callback", get(oidc::callback))
        .leptos_routes_with_context(&state, routes, context.clone(), move || {
            shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, shell))
        // Innermost: a cross-origin post is refused before its body is read.
        .layer(middleware::from_fn(api_guard::guard))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            same_origin_posts,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), client_ip))
        .layer(middleware::from_fn_with_state(state.clone(), allowed_host))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
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
            if !state.trust.origin_trusted(origin) {
                return (StatusCode::FORBIDDEN, "Cross-origin request refused").into_response();
            }
        }
    }
    next.run(request).await
}

/// Paths answered whatever the `Host`. Load balancers and Prometheus probe
/// by IP address, and these three only say "alive", "ready" and counters:
/// nothing a rebound page could use to read or change anyone's data.
const ANY_HOST_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Refuses (400, before any handler runs) requests for a host this server
/// does not answer to: a page whose name was rebound to this server's
/// address sends its own name as `Host`, and must not read anything.
async fn allowed_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if ANY_HOST_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    // HTTP/2 names the host in the URI; an absolute-form HTTP/1 request may
    // name it in both places. Every name given must be allowed.
    let header = request.headers().get(header::HOST).map(|v| v.to_str());
    let uri = request.uri().authority().map(|a| a.as_str());
    let allowed = match (header, uri) {
        (None, None) | (Some(Err(_)), _) => false,
        (header, uri) => header
            .and_then(Result::ok)
            .into_iter()
            .chain(uri)
            .all(|host| state.trust.host_allowed(host)),
    };
    if !allowed {
        tracing::debug!(host = ?request.headers().get(header::HOST), "unknown host refused");
        return (StatusCode::BAD_REQUEST, "Unknown host").into_response();
    }
    next.run(request).await
}

/// Records the client's address ([`ClientIp`]) for rate limits: the peer's,
/// or with `--trust-forwarded-for` the last `X-Forwarded-For` entry (the one
/// the trusted proxy added; earlier ones are the client's to forge).
async fn client_ip(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let forwarded = state
        .config
        .trust_forwarded_for
        .then(|| {
            request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
        })
        .flatten();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(ip) = forwarded.or(peer) {
        request.extensions_mut().insert(ClientIp(ip));
    }
    next.run(request).await
}
