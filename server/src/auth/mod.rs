//! Who is signed in: sessions, the ways to start one, and which hosts and
//! origins are trusted ([`trust`]).
//!
//! A session is a random 256-bit token in an HttpOnly, SameSite=Lax cookie;
//! the database keeps only its SHA-256, with an expiry. Sessions start from a
//! guest sign-in, a local account ([`password`], rate-limited by [`limit`]) or
//! an OpenID provider ([`oidc`]). Sockets of sessions that expire or vanish
//! are closed by [`sweep`].

pub mod limit;
pub mod oidc;
pub mod password;
pub mod sweep;
pub mod trust;

pub use trust::Trust;

use crate::store::{Store, StoreError};
use app::protocol::{ApiError, Me, SESSION_COOKIE};
use axum::http::{header, HeaderMap};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh session token (64 hex characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the database stores for a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The session token in a request's `Cookie` headers.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    app::api::session_cookie(headers)
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// The user of a session token, if the session exists and has not expired.
pub async fn user_for_token(store: &Store, token: &str) -> Result<Option<Me>, StoreError> {
    store
        .sessions
        .session_user(&token_hash(token), crate::now_ms())
        .await
}

/// Stores a new session for `user_id`; returns its token.
pub async fn start_session(state: &crate::AppState, user_id: i64) -> Result<String, ApiError> {
    let token = new_token();
    let now = crate::now_ms();
    let expires = now + state.config.session_hours * 3_600_000;
    state
        .store
        .sessions
        .create_session(user_id, &token_hash(&token), now, expires)
        .await
        .map_err(crate::unavailable)?;
    Ok(token)
}

/// The `Set-Cookie` value for a session (or one that clears it).
pub fn cookie(token: Option<&str>, max_age_secs: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(token) => format!(
            "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}"
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn finds_the_session_cookie_among_others() {
        let h = headers(&[(header::COOKIE, "a=1; chat_session=abc; b=2")]);
        assert_eq!(session_token(&h), Some("abc"));
        assert_eq!(session_token(&headers(&[(header::COOKIE, "a=1")])), None);
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert!(cookie(Some(&a), 60, false).contains("HttpOnly; SameSite=Lax"));
        assert!(cookie(None, 60, true).ends_with("Secure"));
    }
}
