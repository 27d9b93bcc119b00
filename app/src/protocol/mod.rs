//! The wire protocol between browser and server, defined once for both sides.
//!
//! Every WebSocket frame is a JSON text frame holding one of the tagged enums
//! of [`v2`] (`{"type": "...", ...}`). `docs/protocol.md` describes each frame
//! for authors of non-Rust clients; keep the two in step.
//!
//! # Layout
//! - this module: the limits on text and HTTP fields.
//! - [`v2`]: protocol v2's frames ([`ClientFrame`], [`ServerFrame`]) and limits.
//! - [`types`]: the values frames carry (users, rooms, messages, members).
//! - [`event`]: room events, one log per room.
//! - [`error`]: [`ErrorCode`] and [`ApiError`], shared with server functions.
//! - [`validate`]: the checks both sides run on names, bodies and ids.
//!
//! Everything is re-exported here, so `app::protocol::ErrorCode`,
//! `app::protocol::ServerFrame` and `app::protocol::v2::ServerFrame` name
//! the same items as their modules do.

pub mod error;
pub mod event;
pub mod types;
pub mod v2;
pub mod validate;

pub use error::*;
pub use event::*;
pub use types::*;
pub use v2::{
    ClientFrame, ServerFrame, DIRECTORY_PAGE, MAX_DIRECTORY_PAGE, MAX_MEMBERSHIPS, MAX_MENTIONS,
    MAX_OPEN, MAX_SAFE_INTEGER, MAX_TOPIC_CHARS, PRESENCE_SNAPSHOT, PROTOCOL_VERSION,
    RESUME_BUDGET, RESUME_LIMIT,
};
pub use validate::*;

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

#[cfg(test)]
mod tests {
    use super::*;

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
        let hello = ServerFrame::Hello {
            protocol: PROTOCOL_VERSION,
            user: me.clone(),
            rooms: Vec::new(),
            resume_limit: RESUME_LIMIT,
        }
        .encode();
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
    fn the_top_level_names_are_v2s() {
        assert_eq!(PROTOCOL_VERSION, 2);
        let frame: ClientFrame = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert_eq!(frame, v2::ClientFrame::Ping);
        assert_eq!(ServerFrame::Pong.encode(), r#"{"type":"pong"}"#);
    }
}
