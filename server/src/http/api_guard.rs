//! The guard in front of the server functions (`/api/*`).
//!
//! server_fn decodes arguments itself and answers every failure, its own or
//! the function's, with status 500; it ignores the `Content-Type`, drops
//! unknown fields, reads bodies up to axum's 2 MB default and replaces
//! percent-encoded bytes that are not UTF-8. So this layer reads and checks
//! the body first (size, type, encoding, field names), and afterwards gives
//! every server-function error answer the status of its code
//! ([`ErrorCode::http_status`]): one place for both, whatever raised the error.

use app::{
    api::form_fields,
    protocol::{ApiError, ErrorCode},
};
use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{header, response, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use leptos::server_fn::error::SERVER_FN_ERROR_HEADER;
use percent_encoding::percent_decode_str;

/// Largest request body a server function accepts, in bytes. The largest
/// legitimate one is `post_message` with a 4000-character body: at most 4
/// UTF-8 bytes a character, each percent-encoded as 3 characters, is 48 000
/// bytes, plus a room name (at most 768 bytes encoded) and a client id. 64 KiB
/// (also the WebSocket frame limit) covers that with a margin and keeps what
/// one request can make the server buffer small.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How much of an oversized body is read (and dropped) before the 413 goes
/// out: closing a connection with unread data makes the kernel reset it, and
/// the client may then lose the answer. Bodies declared larger are refused
/// unread.
const DRAIN_BYTES: usize = 1024 * 1024;

/// The only body encoding the server functions take (`PostUrl`).
const FORM: &str = "application/x-www-form-urlencoded";

/// Middleware for the whole router; acts on `/api/*` only.
pub async fn guard(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if !path.starts_with("/api/") {
        return next.run(request).await;
    }
    // Only POST reaches a server function; axum answers other methods 405.
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    match checked(request, &path).await {
        Ok(request) => with_status(next.run(request).await).await,
        Err(err) => error_response(&path, &err),
    }
}

/// The request with its body read and checked, or the error to answer.
async fn checked(request: Request, path: &str) -> Result<Request, ApiError> {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = read_body(body).await?;
    content_type(&parts.headers, bytes.is_empty())?;
    // A path no server function has is left to leptos_axum to refuse.
    if let Some(fields) = form_fields(path) {
        check_form(&bytes, fields)?;
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Reads at most [`MAX_BODY_BYTES`]; drains up to [`DRAIN_BYTES`] of a larger
/// body so the 413 reaches the client.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| {
            ApiError::new(
                ErrorCode::BadFrame,
                format!("The request body could not be read: {err}"),
            )
        })?;
        seen = seen.saturating_add(chunk.len());
        if seen > DRAIN_BYTES {
            return Err(too_large());
        }
        if seen <= MAX_BODY_BYTES {
            kept.extend_from_slice(&chunk);
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(kept.into())
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!("The request body is over the limit of {MAX_BODY_BYTES} bytes."),
    )
}

/// Only a form body is accepted; an empty body needs no type.
fn content_type(headers: &HeaderMap, empty: bool) -> Result<(), ApiError> {
    let essence = headers.get(header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
    });
    match essence {
        None if empty => Ok(()),
        Some(e) if e.eq_ignore_ascii_case(FORM) => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::BadContentType,
            format!("Send the arguments as {FORM}."),
        )),
    }
}

/// Every key must be one of `fields` (ignoring a `[..]` suffix, which serde_qs
/// reads as nesting and then refuses where a string is expected), and every
/// key and value must decode to UTF-8, which serde_qs would otherwise patch
/// over with U+FFFD.
fn check_form(body: &[u8], fields: &[&str]) -> Result<(), ApiError> {
    let bad = |message: String| ApiError::new(ErrorCode::BadFrame, message);
    let text =
        std::str::from_utf8(body).map_err(|_| bad("The request body is not UTF-8.".to_owned()))?;
    let decode = |part: &str| {
        percent_decode_str(&part.replace('+', " "))
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| bad("A form field does not decode to UTF-8.".to_owned()))
    };
    for pair in text.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key)?;
        decode(value)?;
        let name = key.split('[').next().unwrap_or_default();
        if !fields.contains(&name) {
            let expected = match fields {
                [] => "none".to_owned(),
                _ => fields.join(", "),
            };
            return Err(bad(format!(
                "Unknown field `{name}` (fields taken: {expected})."
            )));
        }
    }
    Ok(())
}

/// An error answer shaped like server_fn's own: the JSON [`ApiError`] with the
/// `serverfnerror` header, and the status of its code.
fn error_response(path: &str, err: &ApiError) -> Response {
    let body = serde_json::to_string(err).unwrap_or_default();
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Ok(path) = HeaderValue::from_str(path) {
        response.headers_mut().insert(SERVER_FN_ERROR_HEADER, path);
    }
    let (mut parts, body) = response.into_parts();
    apply(&mut parts, err);
    Response::from_parts(parts, body)
}

/// Gives a server function's error answer the status of its code. Redirects
/// (plain HTML forms sent back with `?error=`) are left as they are.
async fn with_status(response: Response) -> Response {
    if !response.headers().contains_key(SERVER_FN_ERROR_HEADER)
        || response.status().is_redirection()
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The server's own small JSON, already in memory.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(err) => {
            tracing::error!(cause = %err, "could not read a server function's error");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if let Ok(err) = serde_json::from_slice::<ApiError>(&bytes) {
        apply(&mut parts, &err);
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The status of `err`'s code, and `Retry-After` (whole seconds, rounded up)
/// when it says when to retry.
fn apply(parts: &mut response::Parts, err: &ApiError) {
    parts.status =
        StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(millis) = err.retry_after {
        parts.headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(millis.div_ceil(1000)),
        );
    }
}
