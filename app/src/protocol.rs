//! The wire protocol between browser and server, defined once for both sides.
//!
//! Every WebSocket frame is a JSON text frame holding one of the tagged enums
//! below (`{"type": "...", ...}`). `docs/protocol.md` describes each frame for
//! authors of non-Rust clients; keep the two in step.

use serde::{Deserialize, Serialize};

/// Version of this protocol, announced by the server in its `hello` frame.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest WebSocket frame (and message) the server accepts, in bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Longest message body, in characters (Unicode scalar values).
pub const MAX_BODY_CHARS: usize = 4000;
/// Display names are 1 to this many characters after trimming.
pub const MAX_DISPLAY_NAME_CHARS: usize = 32;
/// Room names are 1 to this many characters after trimming.
pub const MAX_ROOM_NAME_CHARS: usize = 64;
/// Messages the server renders (and returns by default) per page of history.
pub const HISTORY_PAGE: u32 = 50;
/// Most messages one `history` request may ask for.
pub const MAX_HISTORY_PAGE: u32 = 200;
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "chat_session";

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Join a room: receive its messages, presence and notices. The server
    /// first replays every message with `seq > since` from the store, then
    /// goes live, with no gap and no duplicate between the two.
    Subscribe {
        room: String,
        /// Replay `seq > since` first; below 0 counts as 0. Any signed
        /// 64-bit integer; one outside that range is `bad_frame`.
        #[serde(default)]
        since: Option<i64>,
    },
    /// Leave a room's live stream.
    Unsubscribe { room: String },
    /// Post a message. `client_id` is a UUID the client makes; resending the
    /// same one to the same room is answered with the original `ack`.
    Send {
        room: String,
        client_id: String,
        body: String,
    },
    /// Ask for up to `limit` messages older than `before` (newest page when absent).
    History {
        room: String,
        /// Only `seq < before` (so 1 or less gives an empty page). Any signed
        /// 64-bit integer.
        #[serde(default)]
        before: Option<i64>,
        /// Clamped to `1..=MAX_HISTORY_PAGE`. Any signed 64-bit integer, like
        /// every number in a client frame, so a client needs one rule.
        #[serde(default)]
        limit: Option<i64>,
    },
    /// The user is typing in a room.
    Typing { room: String },
    /// Keep-alive; answered with `pong`.
    Ping,
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every connection: the connection's own user, the one
    /// frame that carries their email.
    Hello { protocol: u32, user: Me },
    /// A committed message, in per-room `seq` order.
    Message(ChatMessage),
    /// The message with this `client_id` is durably stored with this `seq`.
    Ack {
        room: String,
        client_id: String,
        seq: i64,
        id: i64,
        ts: i64,
    },
    /// A request failed. The connection stays usable.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// With `rate_limited`: milliseconds until the request may succeed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// Everyone online in a room, sent to a subscriber when it joins.
    Presence { room: String, users: Vec<UserInfo> },
    /// A user came online in (`joined`) or went offline from (`left`) a room.
    System {
        room: String,
        event: SystemEvent,
        user: UserInfo,
        ts: i64,
    },
    /// Rooms to add to (or update in) the client's room list.
    Rooms { rooms: Vec<RoomInfo> },
    /// Reply to `history`: messages in ascending `seq`.
    History {
        room: String,
        messages: Vec<ChatMessage>,
        has_more: bool,
    },
    /// Someone is typing in a room.
    Typing { room: String, user: UserInfo },
    /// Reply to `ping`.
    Pong,
}

/// A message as stored and delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub room: String,
    pub seq: i64,
    pub id: i64,
    pub author: UserInfo,
    pub body: String,
    /// Commit time, milliseconds since the Unix epoch.
    pub ts: i64,
    pub client_id: String,
}

/// A user as others see them. It has no email on purpose: every frame
/// about other people is built from this type, so none can carry one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: i64,
    pub name: String,
    /// An `https:` (or `http:`) picture URL from the identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
}

/// The signed-in user as they see themselves: [`UserInfo`] plus their
/// email, which is shown to them alone (their `hello` and page data).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Me {
    pub id: i64,
    pub name: String,
    /// The account's email (local accounts, and providers that share it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// An `https:` (or `http:`) picture URL from the identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
}

impl Me {
    /// How others see this user: everything but the email.
    pub fn public(&self) -> UserInfo {
        UserInfo {
            id: self.id,
            name: self.name.clone(),
            picture: self.picture.clone(),
        }
    }
}

impl UserInfo {
    /// Up to two initials of the name, for an avatar without a picture.
    pub fn initials(&self) -> String {
        let mut words = self
            .name
            .split_whitespace()
            .filter_map(|w| w.chars().next());
        let first = words.next();
        let last = words.next_back();
        first
            .into_iter()
            .chain(last)
            .flat_map(char::to_uppercase)
            .collect()
    }
}

/// A room as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub name: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// What a `system` frame announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemEvent {
    Joined,
    Left,
}

/// What kind of room: who may see it and how one gets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    /// Listed in the directory; anyone signed in may read, preview and join.
    Public,
    /// Seen only by its members and the people invited to it.
    Private,
    /// A direct conversation between a fixed set of people; it has no name.
    Dm,
}

impl RoomKind {
    /// The name stored in `rooms.kind` and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Public => "public",
            RoomKind::Private => "private",
            RoomKind::Dm => "dm",
        }
    }
}

/// A member's role in a room; ordered by what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Moderator,
    Owner,
}

impl Role {
    /// The name stored in `members.role` and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Owner => "owner",
        }
    }
}

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
    /// No room by that name.
    UnknownRoom,
    /// The room must be subscribed to (joined) first.
    NotJoined,
    /// A message body is empty.
    EmptyBody,
    /// A message body is longer than [`MAX_BODY_CHARS`].
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
            ErrorCode::Forbidden
            | ErrorCode::NotJoined
            | ErrorCode::NotMember
            | ErrorCode::Banned => 403,
            ErrorCode::UnknownRoom | ErrorCode::NotFound => 404,
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
    /// With [`ErrorCode::RateLimited`]: milliseconds until a retry may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `code` and a message for people.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
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

    /// The `error` frame for this error.
    pub fn frame(self, room: Option<String>, client_id: Option<String>) -> ServerFrame {
        ServerFrame::Error {
            code: self.code,
            message: self.message,
            client_id,
            room,
            retry_after: self.retry_after,
        }
    }
}

/// Checks a display name and returns it trimmed.
pub fn validate_display_name(name: &str) -> Result<String, ApiError> {
    validate_name(name, MAX_DISPLAY_NAME_CHARS, "Display name")
}

/// Checks a room name and returns it trimmed.
pub fn validate_room_name(name: &str) -> Result<String, ApiError> {
    let name = validate_name(name, MAX_ROOM_NAME_CHARS, "Room name")?;
    // Room names appear in URLs (/rooms/<name>): a slash would split the
    // path, browsers resolve "." and ".." segments away, and leptos_router
    // percent-decodes a path parameter twice when rendering on the server,
    // so a '%' could name another room after a reload.
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '%')) {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("Room name cannot contain '{c}'."),
        ));
    }
    if name.chars().all(|c| c == '.') {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            "Room name cannot be only dots.",
        ));
    }
    Ok(name)
}

fn validate_name(name: &str, max: usize, what: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("{what} cannot be empty."),
        ));
    }
    if name.chars().count() > max {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("{what} must be at most {max} characters."),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("{what} cannot contain control characters."),
        ));
    }
    Ok(name.to_owned())
}

/// Checks a message body. Bodies are kept as typed (no trimming), but one
/// that is only white space counts as empty.
pub fn validate_body(body: &str) -> Result<(), ApiError> {
    if body.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::EmptyBody,
            "Message cannot be empty.",
        ));
    }
    let chars = body.chars().count();
    if chars > MAX_BODY_CHARS {
        return Err(ApiError::new(
            ErrorCode::BodyTooLong,
            format!("Message is {chars} characters long; the limit is {MAX_BODY_CHARS}."),
        ));
    }
    Ok(())
}

/// Longest email address (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Shortest password a local account may have.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password (it is hashed on every sign-in: keep the work bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Checks an email address and returns it trimmed. Deliberately loose (one
/// `@` with something on both sides, no spaces): the address is an account
/// name here, never mailed to.
pub fn validate_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    let bad = |why: &str| Err(ApiError::new(ErrorCode::InvalidAccount, why));
    if email.is_empty() {
        return bad("Email cannot be empty.");
    }
    if email.chars().count() > MAX_EMAIL_CHARS {
        return bad("Email is too long.");
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(email.to_owned())
        }
        _ => bad("That does not look like an email address."),
    }
}

/// Checks a new password's length (in characters, at most
/// [`MAX_PASSWORD_BYTES`] bytes).
pub fn validate_new_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::new(
            ErrorCode::InvalidAccount,
            format!("Password must be at least {MIN_PASSWORD_CHARS} characters."),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::new(
            ErrorCode::InvalidAccount,
            format!("Password must be at most {MAX_PASSWORD_BYTES} bytes."),
        ));
    }
    Ok(())
}

/// Checks that a `client_id` is a UUID, and returns it in canonical form.
pub fn validate_client_id(client_id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(client_id)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| ApiError::new(ErrorCode::BadClientId, "client_id must be a UUID."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_use_a_type_tag() {
        let frame: ClientFrame =
            serde_json::from_str(r#"{"type":"send","room":"a","client_id":"x","body":"hi"}"#)
                .unwrap();
        assert_eq!(
            frame,
            ClientFrame::Send {
                room: "a".into(),
                client_id: "x".into(),
                body: "hi".into()
            }
        );
        let json = serde_json::to_string(&ServerFrame::Pong).unwrap();
        assert_eq!(json, r#"{"type":"pong"}"#);
        let subscribe: ClientFrame =
            serde_json::from_str(r#"{"type":"subscribe","room":"a"}"#).unwrap();
        assert_eq!(
            subscribe,
            ClientFrame::Subscribe {
                room: "a".into(),
                since: None
            }
        );
    }

    #[test]
    fn message_frame_is_flat() {
        let frame = ServerFrame::Message(ChatMessage {
            room: "r".into(),
            seq: 3,
            id: 9,
            author: UserInfo {
                id: 1,
                name: "ann".into(),
                ..UserInfo::default()
            },
            body: "hi".into(),
            ts: 5,
            client_id: "c".into(),
        });
        let value: serde_json::Value = serde_json::to_value(&frame).unwrap();
        assert_eq!(value["type"], "message");
        assert_eq!(value["seq"], 3);
        assert_eq!(value["author"]["name"], "ann");
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_display_name("  ann ").unwrap(), "ann");
        assert_eq!(
            validate_display_name("   ").unwrap_err().code,
            ErrorCode::InvalidName
        );
        assert!(validate_display_name(&"é".repeat(32)).is_ok());
        assert!(validate_display_name(&"é".repeat(33)).is_err());
        assert!(validate_room_name(&"r".repeat(64)).is_ok());
        assert!(validate_room_name(&"r".repeat(65)).is_err());
        assert!(validate_room_name("a/b").is_err());
        assert!(validate_room_name("..").is_err());
        assert!(validate_room_name("50% off").is_err());
        assert!(validate_room_name("...").is_err());
        assert!(validate_room_name("a.b").is_ok());
    }

    #[test]
    fn bodies_are_bounded_in_characters() {
        assert_eq!(validate_body(" \n").unwrap_err().code, ErrorCode::EmptyBody);
        assert!(validate_body(&"ü".repeat(MAX_BODY_CHARS)).is_ok());
        assert_eq!(
            validate_body(&"ü".repeat(MAX_BODY_CHARS + 1))
                .unwrap_err()
                .code,
            ErrorCode::BodyTooLong
        );
    }

    #[test]
    fn users_without_email_or_picture_serialise_as_before() {
        let ann = UserInfo {
            id: 1,
            name: "Ann Lee".into(),
            ..UserInfo::default()
        };
        assert_eq!(
            serde_json::to_string(&ann).unwrap(),
            r#"{"id":1,"name":"Ann Lee"}"#
        );
        assert_eq!(ann.initials(), "AL");
        let one = UserInfo {
            name: "ada byron lovelace".into(),
            ..UserInfo::default()
        };
        assert_eq!(one.initials(), "AL");
        assert_eq!(UserInfo::default().initials(), "");
    }

    #[test]
    fn only_me_carries_an_email() {
        let me = Me {
            id: 1,
            name: "Ann".into(),
            email: Some("ann@example.test".into()),
            picture: Some("https://id.example/ann.png".into()),
        };
        let hello = serde_json::to_string(&ServerFrame::Hello {
            protocol: PROTOCOL_VERSION,
            user: me.clone(),
        })
        .unwrap();
        assert!(hello.contains("ann@example.test"));
        let public = serde_json::to_string(&me.public()).unwrap();
        assert_eq!(
            public,
            r#"{"id":1,"name":"Ann","picture":"https://id.example/ann.png"}"#
        );
        // Older servers' frames with an email still parse (and drop it).
        let old: UserInfo =
            serde_json::from_str(r#"{"id":1,"name":"Ann","email":"ann@example.test"}"#).unwrap();
        assert_eq!(old.name, "Ann");
    }

    #[test]
    fn emails_and_passwords_are_checked() {
        assert_eq!(validate_email(" a@b.c ").unwrap(), "a@b.c");
        for bad in ["", "ab", "@b", "a@", "a b@c", "a@b@c"] {
            assert_eq!(
                validate_email(bad).unwrap_err().code,
                ErrorCode::InvalidAccount,
                "{bad}"
            );
        }
        assert!(validate_new_password("1234567").is_err());
        assert!(validate_new_password("12345678").is_ok());
        assert!(validate_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }

    #[test]
    fn client_ids_must_be_uuids() {
        let id = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
        assert_eq!(
            validate_client_id(id).unwrap(),
            "6f9619ff-8b86-d011-b42d-00c04fc964ff"
        );
        assert!(validate_client_id("nope").is_err());
    }
}
