//! Error codes and the error type shared by WebSocket `error` frames and
//! server functions.

use serde::{Deserialize, Serialize};

/// Error codes shared by WebSocket `error` frames and server-function errors.
/// Clients match on these; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a frame this protocol knows.
    BadFrame,
    /// No valid session: sign in again.
    Unauthorized,
    /// The request came from a page this server does not trust.
    Forbidden,
    /// A message body is empty.
    EmptyBody,
    /// A message body is longer than [`MAX_BODY_CHARS`](super::MAX_BODY_CHARS).
    BodyTooLong,
    /// A `client_id` is not a UUID.
    BadClientId,
    /// A display name or room name is empty or too long.
    InvalidName,
    /// A room with that name (ignoring case) exists already.
    RoomExists,
    /// Wrong email or password (deliberately not saying which).
    BadCredentials,
    /// An email or password that cannot be used for an account.
    InvalidAccount,
    /// An account with that email exists already.
    AccountExists,
    /// No such room, or one you may not see: both answer alike, byte for byte.
    NotFound,
    /// The action needs membership: join the room first.
    NotMember,
    /// You are banned from this room.
    Banned,
    /// You belong to as many rooms as one account may.
    TooManyRooms,
    /// A room topic that is too long or holds characters it may not.
    InvalidTopic,
    /// Too many requests of this kind; slow down.
    RateLimited,
    /// An HTTP request body over the server functions' size limit.
    TooLarge,
    /// An HTTP request body that is not `application/x-www-form-urlencoded`.
    BadContentType,
    /// The server cannot reach its store right now; retry later.
    Unavailable,
    /// Anything else; the server logged it.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this error maps to, in one exhaustive place.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadFrame
            | ErrorCode::EmptyBody
            | ErrorCode::BodyTooLong
            | ErrorCode::BadClientId
            | ErrorCode::InvalidName
            | ErrorCode::InvalidAccount
            | ErrorCode::InvalidTopic => 422,
            ErrorCode::Unauthorized | ErrorCode::BadCredentials => 401,
            ErrorCode::Forbidden | ErrorCode::NotMember | ErrorCode::Banned => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::RoomExists | ErrorCode::AccountExists | ErrorCode::TooManyRooms => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::BadContentType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// An error with a code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// With [`ErrorCode::RateLimited`] and [`ErrorCode::Unavailable`]:
    /// milliseconds until a retry may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// The wait an `unavailable` answer asks for, in milliseconds (a client
/// backs off further while it repeats).
pub const UNAVAILABLE_RETRY_MS: u64 = 1000;

impl ApiError {
    /// An error with `code` and a message for people.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// An `unavailable` error: nothing was done, retry after
    /// [`UNAVAILABLE_RETRY_MS`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(UNAVAILABLE_RETRY_MS),
            ..Self::new(ErrorCode::Unavailable, message)
        }
    }

    /// A `rate_limited` error saying when to retry (rounded up to the next
    /// millisecond, so a client waiting that long is never early).
    pub fn rate_limited(message: impl Into<String>, wait: std::time::Duration) -> Self {
        let millis = wait.as_nanos().div_ceil(1_000_000);
        Self {
            retry_after: Some(u64::try_from(millis).unwrap_or(u64::MAX)),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }
}
