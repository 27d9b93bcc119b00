//! The HTTP surface: pages (SSR), server functions, `/ws`, health, static files.

use crate::{
    auth::{self, oidc},
    backend::AppBackend,
    ws, AppState,
};
use app::{
    api::{ClientIp, SharedBackend},
    shell, App,
};
use axum::{
    extract::{ConnectInfo, Path, Query, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Router,
};
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tower_http::trace::TraceLayer;

mod api_guard;

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
        .route("/auth/oidc/{provider}", post(oidc_start))
        .route("/auth/oidc/{provider}/callback", get(oidc_callback))
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

/// `/readyz`: ready when the store answers and messages can be committed
/// (the committer runs, and its last commit succeeded or a write probe does).
async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(err) = state.store.ping().await {
        tracing::warn!(cause = %err, "not ready");
        return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
    }
    match state.committer.ready(&state.store).await {
        Ok(()) => "ready".into_response(),
        Err(why) => {
            tracing::warn!(why, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
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

/// `POST /auth/oidc/{provider}`: "Sign in with …". Sends the browser to the
/// provider (303) with a fresh state, nonce and PKCE challenge.
async fn oidc_start(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    client: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
) -> Response {
    // Each start stores a row until it expires: bound them per address.
    let ip = client.map_or_else(|| "unknown".to_owned(), |c| c.0 .0.to_string());
    if state.limits.ip_flow_starts.check(&ip).is_err() {
        return error_page(&oidc::FlowError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "Too many sign-ins started from here; try again in a few minutes.".into(),
        });
    }
    state.limits.ip_flow_starts.record(&ip);
    let browser = auth::cookie_value(&headers, oidc::FLOW_COOKIE);
    match state.oidc.start(&state.store, &provider, browser).await {
        Ok((url, browser)) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            let cookie = oidc::flow_cookie(&browser, state.config.secure_cookies());
            if let (Ok(location), Ok(cookie)) =
                (HeaderValue::from_str(&url), HeaderValue::from_str(&cookie))
            {
                response.headers_mut().insert(header::LOCATION, location);
                response.headers_mut().append(header::SET_COOKIE, cookie);
                response
            } else {
                error_page(&oidc::FlowError {
                    status: StatusCode::BAD_GATEWAY,
                    message: "The provider's sign-in address cannot be used.".into(),
                })
            }
        }
        Err(err) => error_page(&err),
    }
}

/// `GET /auth/oidc/{provider}/callback`: the provider sends the browser back
/// here. Signs in and goes to the app, or shows why not.
async fn oidc_callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    query: Result<Query<oidc::Callback>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Query(callback)) = query else {
        return error_page(&oidc::FlowError {
            status: StatusCode::BAD_REQUEST,
            message: "The sign-in response is malformed. Start the sign-in again.".into(),
        });
    };
    let browser = auth::cookie_value(&headers, oidc::FLOW_COOKIE);
    let user = match state
        .oidc
        .finish(&state.store, &provider, browser, callback)
        .await
    {
        Ok(user) => user,
        Err(err) => return error_page(&err),
    };
    let token = match auth::start_session(&state, user.id).await {
        Ok(token) => token,
        Err(err) => {
            return error_page(&oidc::FlowError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: err.message,
            })
        }
    };
    // A browser signed in as someone else ends that session first.
    if let Some(old) = auth::session_token(&headers) {
        let hash = auth::token_hash(old);
        match state.store.delete_session(&hash).await {
            Ok(()) => state.hub.end_session(&hash),
            Err(err) => tracing::warn!(cause = %err, "could not end the previous session"),
        }
    }
    let cookie = auth::cookie(
        Some(&token),
        state.config.session_hours * 3600,
        state.config.secure_cookies(),
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// A plain page saying why a sign-in failed, with the way back.
fn error_page(err: &oidc::FlowError) -> Response {
    let message = escape_html(&err.message);
    let body = format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1" />
<title>Sign-in failed · Chat</title>
<link rel="icon" type="image/svg+xml" href="/favicon.svg" />
<link rel="stylesheet" href="/pkg/chat.css" />
</head>
<body>
<main class="signin">
<h1>Sign-in failed</h1>
<p class="error" role="alert" data-testid="signin-failed">{message}</p>
<p><a href="/">Back to sign-in</a></p>
</main>
</body>
</html>
"#
    );
    (err.status, Html(body)).into_response()
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
