//! The OpenID Connect sign-in routes (`/auth/oidc/{provider}` and its
//! callback) and the plain page that says why a sign-in failed.

use crate::{
    auth::{self, oidc},
    AppState,
};
use app::api::ClientIp;
use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};

/// `POST /auth/oidc/{provider}`: "Sign in with …". Sends the browser to the
/// provider (303) with a fresh state, nonce and PKCE challenge.
pub(super) async fn start(
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
pub(super) async fn callback(
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
    let signed_in = match state
        .oidc
        .finish(&state.store, &provider, browser, callback)
        .await
    {
        Ok(signed_in) => signed_in,
        Err(err) => return error_page(&err),
    };
    let user = signed_in.user;
    let started = async {
        // A new user joins general before their first session exists.
        if signed_in.created {
            state.chat.join_defaults(&user.public()).await?;
        }
        auth::start_session(&state, user.id).await
    };
    let token = match started.await {
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
        match state.store.sessions.delete_session(&hash).await {
            Ok(()) => state.end_session(&hash),
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
