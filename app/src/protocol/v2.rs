//! Protocol v2, served at `/ws` (docs/protocol.md): rooms by id, one event
//! log per room, resume by cursor. One JSON text frame per tagged enum
//! value, `{"type": "...", ...}`. [`super`] re-exports these names.
//!
//! Numbers in client frames: every id, seq and timestamp is an integer in
//! `0..=`[`MAX_SAFE_INTEGER`] (2⁵³−1, what a JavaScript client parses
//! exactly). Anything else (negative, larger, fractional) fails to parse, so
//! the server answers `bad_frame` and acts on nothing. `limit` is a `u32`
//! that the server clamps to `1..=`[`MAX_HISTORY_PAGE`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ApiError, ErrorCode, Event, Me, Message, RoomSummary, UserInfo};

pub use super::{HISTORY_PAGE, MAX_HISTORY_PAGE};

/// This protocol's version, announced in `hello`.
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest id, seq or timestamp (2⁵³−1): JavaScript parses every integer up
/// to it exactly.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;
/// N: a room at most this many events behind is replayed on resume; one
/// further behind gets `gap` (and the client reloads its latest page).
pub const RESUME_LIMIT: u32 = 500;
/// Events one `resume` may replay, all rooms together; rooms beyond it get `gap`.
pub const RESUME_BUDGET: u32 = 5000;
/// Directory entries per page by default.
pub const DIRECTORY_PAGE: u32 = 50;
/// Most directory entries one request may ask for.
pub const MAX_DIRECTORY_PAGE: u32 = 100;
/// Rooms one user may belong to (and so the most rooms `hello` lists).
pub const MAX_MEMBERSHIPS: u32 = 1000;
/// Rooms one connection may have open; opening one more closes the oldest.
pub const MAX_OPEN: usize = 4;
/// Users one message may mention.
pub const MAX_MENTIONS: usize = 20;
/// Longest room topic, in characters (Unicode scalar values).
pub const MAX_TOPIC_CHARS: usize = 250;
/// Most users a `presence` snapshot lists; `more` counts the rest.
pub const PRESENCE_SNAPSHOT: u32 = 200;

/// Frames a client sends (v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Once per connection, after `hello`: per room, the last seq applied
    /// (`{"7": 41}`: JSON object keys are strings). A room left out is live
    /// from now on.
    Resume {
        #[serde(default, deserialize_with = "ranged::map")]
        rooms: BTreeMap<i64, i64>,
    },
    /// Get a room's presence and typing (and, for a public room one is not
    /// a member of, its live events: a preview). With `since`, the events
    /// after it are replayed first (at most [`RESUME_LIMIT`], else `gap`).
    Open {
        #[serde(deserialize_with = "ranged::one")]
        room_id: i64,
        #[serde(
            default,
            deserialize_with = "ranged::opt",
            skip_serializing_if = "Option::is_none"
        )]
        since: Option<i64>,
    },
    /// Stop presence and typing (and a preview's events) for a room.
    Close {
        #[serde(deserialize_with = "ranged::one")]
        room_id: i64,
    },
    /// A page of messages: the newest, those with `seq < before`, or those
    /// around the message with id `around`.
    History {
        #[serde(deserialize_with = "ranged::one")]
        room_id: i64,
        #[serde(
            default,
            deserialize_with = "ranged::opt",
            skip_serializing_if = "Option::is_none"
        )]
        before: Option<i64>,
        #[serde(
            default,
            deserialize_with = "ranged::opt",
            skip_serializing_if = "Option::is_none"
        )]
        around: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Post a message; answered with `ack` (or `error`) carrying `client_id`.
    Send {
        #[serde(deserialize_with = "ranged::one")]
        room_id: i64,
        client_id: String,
        body: String,
        /// Ids of the members it mentions (at most [`MAX_MENTIONS`]).
        #[serde(
            default,
            deserialize_with = "ranged::many",
            skip_serializing_if = "Vec::is_empty"
        )]
        mentions: Vec<i64>,
        #[serde(
            default,
            deserialize_with = "ranged::opt",
            skip_serializing_if = "Option::is_none"
        )]
        reply_to: Option<i64>,
    },
    /// Create a public room and become its owner.
    CreateRoom {
        client_id: String,
        name: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        topic: String,
    },
    Join {
        #[serde(deserialize_with = "ranged::one")]
        room_id: i64,
        client_id: String,
    },
    Leave {
        #[serde(deserialize_with = "ranged::one")]
        room_id: i64,
        client_id: String,
    },
    /// Owner only.
    Rename {
        #[serde(deserialize_with = "ranged::one")]
        room_id: i64,
        client_id: String,
        name: String,
    },
    /// Owner only.
    SetTopic {
        #[serde(deserialize_with = "ranged::one")]
        room_id: i64,
        client_id: String,
        topic: String,
    },
    /// Move the read marker to `seq` (clamped to the room's last seq).
    Read {
        #[serde(deserialize_with = "ranged::one")]
        room_id: i64,
        #[serde(deserialize_with = "ranged::one")]
        seq: i64,
    },
    /// The user is typing in an open room.
    Typing {
        #[serde(deserialize_with = "ranged::one")]
        room_id: i64,
    },
    /// Keep-alive; answered with `pong`.
    Ping,
}

/// Frames the server sends (v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame: the user (the one frame with their email), the rooms
    /// they belong to with last seq and counts, from one snapshot.
    Hello {
        protocol: u32,
        user: Me,
        rooms: Vec<RoomSummary>,
        /// N: how far behind a room may be and still be replayed.
        resume_limit: u32,
    },
    /// Everything `resume` asked for is queued before this.
    Resumed { replayed: u32, gaps: Vec<i64> },
    /// A room event, in the room's seq order.
    Event(Event),
    /// The room is too far behind to replay: drop its timeline and reload
    /// its latest page; events continue after `last_seq`.
    Gap { room_id: i64, last_seq: i64 },
    /// The command with this `client_id` is committed.
    Ack {
        client_id: String,
        room_id: i64,
        /// The seq of the event it made (absent when it made none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
        /// The message a `send` made.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<i64>,
        ts: i64,
    },
    /// A request failed. The connection stays usable.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room_id: Option<i64>,
        /// With `rate_limited` and `unavailable`: milliseconds to wait.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// Reply to `history`: messages in ascending seq.
    History {
        room_id: i64,
        messages: Vec<Message>,
        has_more_before: bool,
        has_more_after: bool,
    },
    /// Who is online among an opened room's members (at most
    /// [`PRESENCE_SNAPSHOT`]; `more` counts the rest).
    Presence {
        room_id: i64,
        online: Vec<UserInfo>,
        more: u32,
    },
    /// A member of an open room came online or went offline.
    PresenceChanged {
        room_id: i64,
        user: UserInfo,
        online: bool,
    },
    /// Someone is typing in an open room.
    Typing { room_id: i64, user: UserInfo },
    /// The user now belongs to this room (joined or created it, in any tab).
    RoomAdded { room: RoomSummary },
    /// The user no longer belongs to this room.
    RoomRemoved { room_id: i64 },
    /// The user's read marker and counts for a room (from any tab).
    Read {
        room_id: i64,
        last_read_seq: i64,
        unread: u32,
        mentions: u32,
    },
    /// Reply to `ping`.
    Pong,
    /// A frame type this build does not know (a newer server's): skip it.
    #[serde(other)]
    Unknown,
}

impl ServerFrame {
    /// The frame as the JSON text sent on the wire.
    ///
    /// Serialising these types cannot fail: every field is a string, a
    /// number, a bool, an enum or a struct of those, with derived `Serialize`
    /// impls and no maps with non-string keys (`resume`'s map is a client
    /// frame), which are the only ways `serde_json::to_string` can return an
    /// error. The fallback keeps that a promise checked in debug builds
    /// rather than a panic in release ones: the peer then gets an
    /// `internal` error frame.
    pub fn encode(&self) -> String {
        match serde_json::to_string(self) {
            Ok(text) => text,
            Err(err) => {
                debug_assert!(false, "a protocol frame failed to serialise: {err}");
                ENCODE_FAILED.to_owned()
            }
        }
    }

    /// The `error` frame for `err`, about a room and/or a command.
    pub fn error(err: ApiError, room_id: Option<i64>, client_id: Option<String>) -> Self {
        ServerFrame::Error {
            code: err.code,
            message: err.message,
            client_id,
            room_id,
            retry_after: err.retry_after,
        }
    }
}

/// What [`ServerFrame::encode`] sends if serialising ever failed.
const ENCODE_FAILED: &str =
    r#"{"type":"error","code":"internal","message":"The server could not encode a frame."}"#;

/// Deserialisers that refuse numbers outside `0..=MAX_SAFE_INTEGER`.
mod ranged {
    use super::MAX_SAFE_INTEGER;
    use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
    use std::{collections::BTreeMap, fmt};

    fn check<E: de::Error>(n: i64) -> Result<i64, E> {
        if (0..=MAX_SAFE_INTEGER).contains(&n) {
            Ok(n)
        } else {
            Err(E::custom(format_args!(
                "{n} is outside 0..=9007199254740991"
            )))
        }
    }

    pub fn one<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        check(i64::deserialize(d)?)
    }

    pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<i64>::deserialize(d)?.map(check).transpose()
    }

    pub fn many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
        Vec::<i64>::deserialize(d)?.into_iter().map(check).collect()
    }

    /// `{"7": 41}`. Keys are parsed by hand: inside an internally tagged
    /// enum serde buffers the frame, and its buffer does not turn the
    /// string key `"7"` into an integer the way serde_json itself does.
    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<i64, i64>, D::Error> {
        d.deserialize_map(Cursors)
    }

    struct Cursors;

    impl<'de> Visitor<'de> for Cursors {
        type Value = BTreeMap<i64, i64>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of room id to seq")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut rooms = BTreeMap::new();
            while let Some(key) = map.next_key::<Key>()? {
                let seq = check(map.next_value::<i64>()?)?;
                rooms.insert(check(key.0)?, seq);
            }
            Ok(rooms)
        }
    }

    /// A room id written as a JSON string (`"7"`) or, leniently, a number.
    struct Key(i64);

    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct KeyVisitor;
            impl Visitor<'_> for KeyVisitor {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a room id in decimal")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                    // Plain decimal digits only: no sign, space or exponent.
                    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(E::invalid_value(de::Unexpected::Str(s), &self));
                    }
                    s.parse().map(Key).map_err(E::custom)
                }
                fn visit_i64<E: de::Error>(self, n: i64) -> Result<Key, E> {
                    Ok(Key(n))
                }
                fn visit_u64<E: de::Error>(self, n: u64) -> Result<Key, E> {
                    i64::try_from(n).map(Key).map_err(E::custom)
                }
            }
            d.deserialize_any(KeyVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{event::every_kind, Role, RoomKind};
    use serde_json::{json, Value};

    fn ann() -> UserInfo {
        UserInfo {
            id: 1,
            name: "Ann".into(),
            ..UserInfo::default()
        }
    }

    fn summary() -> RoomSummary {
        RoomSummary {
            id: 7,
            kind: RoomKind::Public,
            name: Some("general".into()),
            topic: "Say hi".into(),
            last_seq: 41,
            member_count: 3,
            role: Some(Role::Owner),
            last_read_seq: 40,
            unread: 1,
            mentions: 0,
        }
    }

    fn message() -> Message {
        Message {
            id: 10,
            seq: 41,
            author: ann(),
            body: "hi".into(),
            ts: 5,
            client_id: "c".into(),
            edited_at: None,
            deleted: false,
            reply_to: None,
            mentions: vec![],
        }
    }

    fn client_frames() -> Vec<ClientFrame> {
        let id = || "6f9619ff-8b86-d011-b42d-00c04fc964ff".to_string();
        vec![
            ClientFrame::Resume {
                rooms: BTreeMap::from([(7, 41), (MAX_SAFE_INTEGER, 0)]),
            },
            ClientFrame::Resume {
                rooms: BTreeMap::new(),
            },
            ClientFrame::Open {
                room_id: 7,
                since: Some(40),
            },
            ClientFrame::Open {
                room_id: 7,
                since: None,
            },
            ClientFrame::Close { room_id: 7 },
            ClientFrame::History {
                room_id: 7,
                before: Some(30),
                around: None,
                limit: Some(50),
            },
            ClientFrame::History {
                room_id: 7,
                before: None,
                around: Some(10),
                limit: None,
            },
            ClientFrame::Send {
                room_id: 7,
                client_id: id(),
                body: "hi @Bob".into(),
                mentions: vec![2],
                reply_to: Some(10),
            },
            ClientFrame::Send {
                room_id: 7,
                client_id: id(),
                body: "hi".into(),
                mentions: vec![],
                reply_to: None,
            },
            ClientFrame::CreateRoom {
                client_id: id(),
                name: "Team".into(),
                topic: "Plans".into(),
            },
            ClientFrame::Join {
                room_id: 7,
                client_id: id(),
            },
            ClientFrame::Leave {
                room_id: 7,
                client_id: id(),
            },
            ClientFrame::Rename {
                room_id: 7,
                client_id: id(),
                name: "Team 2".into(),
            },
            ClientFrame::SetTopic {
                room_id: 7,
                client_id: id(),
                topic: "".into(),
            },
            ClientFrame::Read {
                room_id: 7,
                seq: 41,
            },
            ClientFrame::Typing { room_id: 7 },
            ClientFrame::Ping,
        ]
    }

    fn server_frames() -> Vec<ServerFrame> {
        let mut frames = vec![
            ServerFrame::Hello {
                protocol: PROTOCOL_VERSION,
                user: Me {
                    id: 1,
                    name: "Ann".into(),
                    email: Some("ann@example.test".into()),
                    picture: None,
                },
                rooms: vec![summary()],
                resume_limit: RESUME_LIMIT,
            },
            ServerFrame::Resumed {
                replayed: 3,
                gaps: vec![8],
            },
            ServerFrame::Gap {
                room_id: 8,
                last_seq: 900,
            },
            ServerFrame::Ack {
                client_id: "c".into(),
                room_id: 7,
                seq: Some(42),
                message_id: Some(11),
                ts: 6,
            },
            ServerFrame::Ack {
                client_id: "c".into(),
                room_id: 7,
                seq: None,
                message_id: None,
                ts: 6,
            },
            ServerFrame::error(
                ApiError::rate_limited("slow down", std::time::Duration::from_millis(1500)),
                Some(7),
                Some("c".into()),
            ),
            ServerFrame::error(
                ApiError::new(ErrorCode::NotFound, "No such room."),
                None,
                None,
            ),
            ServerFrame::History {
                room_id: 7,
                messages: vec![message()],
                has_more_before: true,
                has_more_after: false,
            },
            ServerFrame::Presence {
                room_id: 7,
                online: vec![ann()],
                more: 2,
            },
            ServerFrame::PresenceChanged {
                room_id: 7,
                user: ann(),
                online: false,
            },
            ServerFrame::Typing {
                room_id: 7,
                user: ann(),
            },
            ServerFrame::RoomAdded { room: summary() },
            ServerFrame::RoomRemoved { room_id: 7 },
            ServerFrame::Read {
                room_id: 7,
                last_read_seq: 41,
                unread: 0,
                mentions: 0,
            },
            ServerFrame::Pong,
        ];
        frames.extend((1..).zip(every_kind()).map(|(seq, kind)| {
            ServerFrame::Event(Event {
                room_id: 7,
                seq,
                ts: 100 + seq,
                kind,
            })
        }));
        frames
    }

    #[test]
    fn every_client_frame_round_trips() {
        for frame in client_frames() {
            let text = serde_json::to_string(&frame).unwrap();
            let back: ClientFrame = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{text} does not parse back: {e}"));
            assert_eq!(back, frame, "{text}");
        }
    }

    #[test]
    fn every_server_frame_round_trips_through_encode() {
        let frames = server_frames();
        // Every frame type but Unknown is covered.
        let mut types: Vec<String> = frames
            .iter()
            .map(|f| {
                serde_json::to_value(f).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        types.dedup();
        assert_eq!(types.len(), 14, "{types:?}");
        for frame in frames {
            let text = frame.encode();
            assert_eq!(text, serde_json::to_string(&frame).unwrap());
            let back: ServerFrame = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{text} does not parse back: {e}"));
            assert_eq!(back, frame, "{text}");
        }
    }

    #[test]
    fn the_encode_fallback_is_a_frame_every_client_can_read() {
        let fallback: ServerFrame = serde_json::from_str(ENCODE_FAILED).unwrap();
        assert!(matches!(
            fallback,
            ServerFrame::Error {
                code: ErrorCode::Internal,
                ..
            }
        ));
    }

    #[test]
    fn an_event_frame_is_flat() {
        let frame = ServerFrame::Event(Event {
            room_id: 7,
            seq: 41,
            ts: 5,
            kind: crate::protocol::EventKind::Posted { message: message() },
        });
        let value = serde_json::to_value(&frame).unwrap();
        assert_eq!(value["type"], "event");
        assert_eq!(value["kind"], "posted");
        assert_eq!(value["room_id"], 7);
        assert_eq!(value["message"]["id"], 10);
        // Plain messages leave out what they do not have.
        assert!(value["message"].get("deleted").is_none(), "{value}");
        assert!(value["message"].get("mentions").is_none(), "{value}");
    }

    #[test]
    fn unknown_frame_types_and_event_kinds_are_skippable() {
        let frame: ServerFrame =
            serde_json::from_str(r#"{"type":"poll_results","room_id":7,"votes":[1,2]}"#).unwrap();
        assert_eq!(frame, ServerFrame::Unknown);
        let frame: ServerFrame = serde_json::from_str(
            r#"{"type":"event","room_id":7,"seq":42,"ts":5,"kind":"poll_created","question":"?"}"#,
        )
        .unwrap();
        assert_eq!(
            frame,
            ServerFrame::Event(Event {
                room_id: 7,
                seq: 42,
                ts: 5,
                kind: crate::protocol::EventKind::Unknown,
            })
        );
        // Clients may not invent frame types: those are bad frames.
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"poll","room_id":7}"#).is_err());
    }

    #[test]
    fn resume_cursors_are_an_object_with_string_keys() {
        let frame = ClientFrame::Resume {
            rooms: BTreeMap::from([(7, 41), (12, 0)]),
        };
        assert_eq!(
            serde_json::to_string(&frame).unwrap(),
            r#"{"type":"resume","rooms":{"7":41,"12":0}}"#
        );
        let parsed: ClientFrame =
            serde_json::from_str(r#"{"type":"resume","rooms":{"7":41,"12":0}}"#).unwrap();
        assert_eq!(parsed, frame);
        let empty: ClientFrame = serde_json::from_str(r#"{"type":"resume"}"#).unwrap();
        assert_eq!(
            empty,
            ClientFrame::Resume {
                rooms: BTreeMap::new()
            }
        );
        for bad in [
            r#"{"type":"resume","rooms":{"x":1}}"#,
            r#"{"type":"resume","rooms":{"-7":1}}"#,
            r#"{"type":"resume","rooms":{"+7":1}}"#,
            r#"{"type":"resume","rooms":{" 7":1}}"#,
            r#"{"type":"resume","rooms":{"7":-1}}"#,
            r#"{"type":"resume","rooms":{"7":1.5}}"#,
            r#"{"type":"resume","rooms":{"9007199254740992":1}}"#,
            r#"{"type":"resume","rooms":[[7,1]]}"#,
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_defaults_are_skipped_and_optional() {
        let send = ClientFrame::Send {
            room_id: 7,
            client_id: "c".into(),
            body: "hi".into(),
            mentions: vec![],
            reply_to: None,
        };
        assert_eq!(
            serde_json::to_string(&send).unwrap(),
            r#"{"type":"send","room_id":7,"client_id":"c","body":"hi"}"#
        );
        let open: ClientFrame = serde_json::from_str(r#"{"type":"open","room_id":7}"#).unwrap();
        assert_eq!(
            open,
            ClientFrame::Open {
                room_id: 7,
                since: None
            }
        );
        let open: ClientFrame =
            serde_json::from_str(r#"{"type":"open","room_id":7,"since":null}"#).unwrap();
        assert_eq!(
            open,
            ClientFrame::Open {
                room_id: 7,
                since: None
            }
        );
        let ack = ServerFrame::Ack {
            client_id: "c".into(),
            room_id: 7,
            seq: None,
            message_id: None,
            ts: 6,
        };
        assert_eq!(
            ack.encode(),
            r#"{"type":"ack","client_id":"c","room_id":7,"ts":6}"#
        );
    }

    #[test]
    fn numbers_beyond_what_javascript_parses_exactly_are_refused() {
        let max = MAX_SAFE_INTEGER;
        let ok = json!({"type": "read", "room_id": max, "seq": max});
        assert_eq!(
            serde_json::from_value::<ClientFrame>(ok).unwrap(),
            ClientFrame::Read {
                room_id: max,
                seq: max
            }
        );
        let too_big: [Value; 7] = [
            json!({"type": "read", "room_id": max + 1, "seq": 1}),
            json!({"type": "read", "room_id": 1, "seq": max + 1}),
            json!({"type": "open", "room_id": 1, "since": max + 1}),
            json!({"type": "history", "room_id": 1, "around": max + 1}),
            json!({"type": "send", "room_id": 1, "client_id": "c", "body": "b", "mentions": [max + 1]}),
            json!({"type": "send", "room_id": 1, "client_id": "c", "body": "b", "reply_to": max + 1}),
            json!({"type": "resume", "rooms": {"1": max + 1}}),
        ];
        for frame in too_big {
            assert!(
                serde_json::from_value::<ClientFrame>(frame.clone()).is_err(),
                "{frame}"
            );
        }
        for text in [
            r#"{"type":"typing","room_id":-1}"#,
            r#"{"type":"history","room_id":1,"before":-5}"#,
            r#"{"type":"history","room_id":1,"limit":-5}"#,
            r#"{"type":"close","room_id":1e3}"#,
            r#"{"type":"close","room_id":18446744073709551615}"#,
        ] {
            assert!(serde_json::from_str::<ClientFrame>(text).is_err(), "{text}");
        }
    }
}
