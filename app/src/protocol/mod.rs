//! The wire protocol between browser and server, defined once for both sides.
//!
//! Every WebSocket frame is a JSON text frame holding one of the tagged enums
//! below (`{"type": "...", ...}`). `docs/protocol.md` describes each frame for
//! authors of non-Rust clients; keep the two in step.
//!
//! # Layout
//! - this module: protocol v1's frames and the limits both versions share.
//! - [`types`]: the values frames carry (users, rooms, v2 messages, members).
//! - [`event`]: v2 room events, one log per room.
//! - [`v2`]: protocol v2's frames and limits, beside v1's until v1 is retired.
//! - [`error`]: [`ErrorCode`] and [`ApiError`], shared with server functions.
//! - [`validate`]: the checks both sides run on names, bodies and ids.
//!
//! Everything but v2's frames is re-exported here, so `app::protocol::ErrorCode` and
//! `app::protocol::validate_body` name the same items as their modules do.

use serde::{Deserialize, Serialize};

pub mod error;
pub mod event;
pub mod types;
pub mod v2;
pub mod validate;

pub use error::*;
pub use event::*;
pub use types::*;
pub use validate::*;

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
/// Longest email address (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Shortest password a local account may have.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password (it is hashed on every sign-in: keep the work bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;

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

impl ServerFrame {
    /// The frame as the JSON text sent on the wire.
    ///
    /// Serialising these types cannot fail: every field is a string, a
    /// number, a bool, an enum or a struct of those, with derived `Serialize`
    /// impls and no maps with non-string keys, which are the only ways
    /// `serde_json::to_string` can return an error. The fallback keeps that
    /// a promise checked in debug builds rather than a panic in release
    /// ones: the peer then gets an `internal` error frame.
    pub fn encode(&self) -> String {
        encode_or_internal(self)
    }
}

/// `serde_json::to_string`, with an `internal` error frame as the (never
/// expected) fallback; shared by the encoders of every protocol version.
pub(crate) fn encode_or_internal<T: Serialize>(frame: &T) -> String {
    match serde_json::to_string(frame) {
        Ok(text) => text,
        Err(err) => {
            debug_assert!(false, "a protocol frame failed to serialise: {err}");
            ENCODE_FAILED.to_owned()
        }
    }
}

/// What [`ServerFrame::encode`] sends if serialising ever failed.
const ENCODE_FAILED: &str =
    r#"{"type":"error","code":"internal","message":"The server could not encode a frame."}"#;

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

impl ChatMessage {
    /// A v2 message as the v1 wire shows it, in the room named `room`.
    pub fn from_v2(m: Message, room: &str) -> Self {
        ChatMessage {
            room: room.to_owned(),
            seq: m.seq,
            id: m.id,
            author: m.author,
            body: m.body,
            ts: m.ts,
            client_id: m.client_id,
        }
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
    fn encode_is_the_json_of_the_frame() {
        let frames = [
            ServerFrame::Pong,
            ServerFrame::Hello {
                protocol: PROTOCOL_VERSION,
                user: Me {
                    id: 1,
                    name: "Ann \"quoted\" \u{1F600}".into(),
                    ..Me::default()
                },
            },
            ApiError::rate_limited("slow", std::time::Duration::from_millis(5))
                .frame(Some("r".into()), Some("c".into())),
        ];
        for frame in frames {
            let text = frame.encode();
            assert_eq!(text, serde_json::to_string(&frame).unwrap());
            assert_eq!(serde_json::from_str::<ServerFrame>(&text).unwrap(), frame);
        }
        // The fallback is itself a frame every client can read.
        let fallback: ServerFrame = serde_json::from_str(ENCODE_FAILED).unwrap();
        assert!(matches!(
            fallback,
            ServerFrame::Error {
                code: ErrorCode::Internal,
                ..
            }
        ));
    }
}
