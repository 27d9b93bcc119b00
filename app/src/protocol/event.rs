//! Room events (protocol v2): every change to a room is one [`Event`] with
//! the room's next `seq`, and clients apply a room's events in `seq` order.
//!
//! Every kind the product will have is defined here, even where nothing
//! emits it yet, so later features need no protocol version. A client skips
//! kinds it does not know: they parse as [`EventKind::Unknown`], with the
//! event's `room_id` and `seq` intact, so its cursor still advances.

use serde::{Deserialize, Serialize};

use super::types::{is_false, Message, Role, RoomKind, UserInfo};

/// One entry of a room's event log, as sent in an `event` frame:
/// `{"type":"event","room_id":7,"seq":42,"ts":…,"kind":"posted","message":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub room_id: i64,
    /// Dense per room: 1, 2, 3, … across all kinds.
    pub seq: i64,
    /// Commit time, milliseconds since the Unix epoch.
    pub ts: i64,
    /// What happened; its fields sit beside `room_id`, `seq` and `ts`.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an [`Event`] records. The tag (`kind`) is also the name stored in
/// `room_events.kind` ([`EventKind::name`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A message was posted; rendered from the message's current row, so a
    /// replay after an edit or delete shows the message as it is now.
    Posted {
        message: Message,
    },
    /// A message was edited (issue 15).
    Edited {
        message: Message,
    },
    /// A message was deleted: its text is gone everywhere.
    Deleted {
        message_id: i64,
        by: UserInfo,
    },
    ReactionAdded {
        message_id: i64,
        user: UserInfo,
        emoji: String,
    },
    ReactionRemoved {
        message_id: i64,
        user: UserInfo,
        emoji: String,
    },
    /// Someone joined. `silent` joins (everyone's automatic join of the
    /// default rooms) are shown as nothing.
    MemberJoined {
        user: UserInfo,
        role: Role,
        #[serde(default, skip_serializing_if = "is_false")]
        silent: bool,
    },
    MemberLeft {
        user: UserInfo,
    },
    MemberInvited {
        user: UserInfo,
        by: UserInfo,
    },
    InviteDeclined {
        user: UserInfo,
    },
    InviteWithdrawn {
        user: UserInfo,
        by: UserInfo,
    },
    MemberKicked {
        user: UserInfo,
        by: UserInfo,
    },
    MemberBanned {
        user: UserInfo,
        by: UserInfo,
    },
    MemberUnbanned {
        user: UserInfo,
        by: UserInfo,
    },
    RoleChanged {
        user: UserInfo,
        role: Role,
        by: UserInfo,
    },
    /// Muted until the given time (ms since the epoch); `None`: until unmuted.
    Muted {
        user: UserInfo,
        #[serde(default)]
        until: Option<i64>,
        by: UserInfo,
    },
    Renamed {
        name: String,
        old_name: String,
        by: UserInfo,
    },
    TopicChanged {
        topic: String,
        by: UserInfo,
    },
    /// The room changed kind (issue 12: public to private). The field is
    /// `room_kind`, not `kind`: `kind` is the tag of this very object.
    KindChanged {
        room_kind: RoomKind,
        by: UserInfo,
    },
    /// A kind this build does not know (a newer server's): skip it.
    #[serde(other)]
    Unknown,
}

impl EventKind {
    /// The kind's name: the `kind` tag on the wire and `room_events.kind` in
    /// the store. [`EventKind::Unknown`] is never stored; it names itself
    /// `unknown`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Posted { .. } => "posted",
            EventKind::Edited { .. } => "edited",
            EventKind::Deleted { .. } => "deleted",
            EventKind::ReactionAdded { .. } => "reaction_added",
            EventKind::ReactionRemoved { .. } => "reaction_removed",
            EventKind::MemberJoined { .. } => "member_joined",
            EventKind::MemberLeft { .. } => "member_left",
            EventKind::MemberInvited { .. } => "member_invited",
            EventKind::InviteDeclined { .. } => "invite_declined",
            EventKind::InviteWithdrawn { .. } => "invite_withdrawn",
            EventKind::MemberKicked { .. } => "member_kicked",
            EventKind::MemberBanned { .. } => "member_banned",
            EventKind::MemberUnbanned { .. } => "member_unbanned",
            EventKind::RoleChanged { .. } => "role_changed",
            EventKind::Muted { .. } => "muted",
            EventKind::Renamed { .. } => "renamed",
            EventKind::TopicChanged { .. } => "topic_changed",
            EventKind::KindChanged { .. } => "kind_changed",
            EventKind::Unknown => "unknown",
        }
    }
}

/// One value of every kind, for tests on both sides of the wire.
#[cfg(test)]
pub(crate) fn every_kind() -> Vec<EventKind> {
    let ann = UserInfo {
        id: 1,
        name: "Ann".into(),
        ..UserInfo::default()
    };
    let bob = UserInfo {
        id: 2,
        name: "Bob".into(),
        picture: Some("https://id.example/bob.png".into()),
    };
    let message = Message {
        id: 10,
        seq: 4,
        author: ann.clone(),
        body: "hello @Bob".into(),
        ts: 1_700_000_000_000,
        client_id: "6f9619ff-8b86-d011-b42d-00c04fc964ff".into(),
        edited_at: None,
        deleted: false,
        reply_to: Some(9),
        mentions: vec![2],
    };
    let by = || bob.clone();
    let user = || ann.clone();
    vec![
        EventKind::Posted {
            message: message.clone(),
        },
        EventKind::Edited {
            message: Message {
                edited_at: Some(1_700_000_000_500),
                ..message
            },
        },
        EventKind::Deleted {
            message_id: 10,
            by: by(),
        },
        EventKind::ReactionAdded {
            message_id: 10,
            user: user(),
            emoji: "👍".into(),
        },
        EventKind::ReactionRemoved {
            message_id: 10,
            user: user(),
            emoji: "👍".into(),
        },
        EventKind::MemberJoined {
            user: user(),
            role: Role::Member,
            silent: false,
        },
        EventKind::MemberJoined {
            user: user(),
            role: Role::Owner,
            silent: true,
        },
        EventKind::MemberLeft { user: user() },
        EventKind::MemberInvited {
            user: user(),
            by: by(),
        },
        EventKind::InviteDeclined { user: user() },
        EventKind::InviteWithdrawn {
            user: user(),
            by: by(),
        },
        EventKind::MemberKicked {
            user: user(),
            by: by(),
        },
        EventKind::MemberBanned {
            user: user(),
            by: by(),
        },
        EventKind::MemberUnbanned {
            user: user(),
            by: by(),
        },
        EventKind::RoleChanged {
            user: user(),
            role: Role::Moderator,
            by: by(),
        },
        EventKind::Muted {
            user: user(),
            until: Some(1_700_000_060_000),
            by: by(),
        },
        EventKind::Muted {
            user: user(),
            until: None,
            by: by(),
        },
        EventKind::Renamed {
            name: "Team".into(),
            old_name: "team chat".into(),
            by: by(),
        },
        EventKind::TopicChanged {
            topic: "Plans".into(),
            by: by(),
        },
        EventKind::KindChanged {
            room_kind: RoomKind::Private,
            by: by(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn every_kind_round_trips_flat_with_its_stored_name() {
        let kinds = every_kind();
        let mut names: Vec<&str> = kinds.iter().map(EventKind::name).collect();
        names.dedup();
        // Every variant but Unknown appears (MemberJoined and Muted twice).
        assert_eq!(names.len(), 18, "{names:?}");
        for (seq, kind) in (1..).zip(kinds) {
            let event = Event {
                room_id: 7,
                seq,
                ts: 1_700_000_000_000 + seq,
                kind,
            };
            let value = serde_json::to_value(&event).unwrap();
            // Flat: the kind's tag and fields sit beside room_id and seq.
            assert_eq!(value["room_id"], 7, "{value}");
            assert_eq!(value["seq"], seq, "{value}");
            assert_eq!(value["kind"], event.kind.name(), "{value}");
            let back: Event = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(back, event, "{value}");
        }
    }

    #[test]
    fn silent_is_left_out_unless_set() {
        let kind = EventKind::MemberJoined {
            user: UserInfo::default(),
            role: Role::Member,
            silent: false,
        };
        let value = serde_json::to_value(&kind).unwrap();
        assert!(value.get("silent").is_none(), "{value}");
        let kind = EventKind::MemberJoined {
            user: UserInfo::default(),
            role: Role::Member,
            silent: true,
        };
        assert_eq!(serde_json::to_value(&kind).unwrap()["silent"], true);
    }

    #[test]
    fn an_unknown_kind_still_parses_with_its_room_and_seq() {
        let text = r#"{"room_id":7,"seq":42,"ts":5,"kind":"poll_created",
                       "question":"lunch?","options":["yes","no"]}"#;
        let event: Event = serde_json::from_str(text).unwrap();
        assert_eq!(
            event,
            Event {
                room_id: 7,
                seq: 42,
                ts: 5,
                kind: EventKind::Unknown
            }
        );
        // A known kind with fields missing is an error, not Unknown.
        let broken = json!({"room_id": 7, "seq": 1, "ts": 5, "kind": "posted"});
        assert!(serde_json::from_value::<Event>(broken).is_err());
        // The kind is required.
        let untagged: Value = json!({"room_id": 7, "seq": 1, "ts": 5});
        assert!(serde_json::from_value::<Event>(untagged).is_err());
    }
}
