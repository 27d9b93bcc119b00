//! The values frames carry: users, rooms, messages, members, directory pages.
//!
//! Shared by both protocol versions where they overlap (users, room kinds,
//! roles); [`Message`], [`RoomSummary`], [`MemberInfo`] and the directory
//! types are v2's.

use serde::{Deserialize, Serialize};

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

/// For `skip_serializing_if`: a `false` flag is left out of the JSON.
pub(crate) fn is_false(flag: &bool) -> bool {
    !*flag
}

/// A message as it is now (v2): history pages and `posted`/`edited` events
/// carry this, rendered from the message's current row.
///
/// Fields at their default (not edited, not deleted, no reply, no mentions)
/// are left out of the JSON, and read back as those defaults: most messages
/// are plain, and every byte is paid once per recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Stable id, unique across rooms.
    pub id: i64,
    /// The room's `seq` of the message's `posted` event.
    pub seq: i64,
    pub author: UserInfo,
    /// As typed; empty once the message is deleted.
    pub body: String,
    /// Commit time, milliseconds since the Unix epoch.
    pub ts: i64,
    /// The author's `client_id` for the `send` that made it.
    pub client_id: String,
    /// When the body was last edited (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// Deleted: the body is gone, the line (and its seq) stays.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
    /// The id of the message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    /// Ids of the users it mentions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<i64>,
}

/// A room as the sidebar (and `hello`) shows it to one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    pub id: i64,
    pub kind: RoomKind,
    /// Absent only for direct messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub topic: String,
    /// The room's newest event seq when this summary was read.
    pub last_seq: i64,
    /// Members (joined, not invited or banned).
    pub member_count: u32,
    /// The user's role; absent while they only preview the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The user's read marker: every event up to it counts as read.
    #[serde(default)]
    pub last_read_seq: i64,
    /// Others' undeleted posts above the read marker (capped at 1000).
    #[serde(default)]
    pub unread: u32,
    /// Of those, the ones mentioning the user.
    #[serde(default)]
    pub mentions: u32,
}

impl RoomSummary {
    /// The name to show: `#` rooms have one, direct messages do not.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// One member of a room, as the member list shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub user: UserInfo,
    pub role: Role,
    /// When they joined (ms since the epoch).
    pub joined_at: i64,
}

/// A public room as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub topic: String,
    pub member_count: u32,
    /// Whether the viewer is a member already.
    #[serde(default)]
    pub joined: bool,
}

/// One page of the directory, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryPage {
    pub rooms: Vec<DirectoryEntry>,
    /// Opaque cursor for the next page (`after=`); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> UserInfo {
        UserInfo {
            id: 1,
            name: "Ann".into(),
            ..UserInfo::default()
        }
    }

    #[test]
    fn a_plain_message_leaves_its_defaults_out() {
        let plain = Message {
            id: 9,
            seq: 3,
            author: ann(),
            body: "hi".into(),
            ts: 5,
            client_id: "c".into(),
            edited_at: None,
            deleted: false,
            reply_to: None,
            mentions: vec![],
        };
        let json = serde_json::to_string(&plain).unwrap();
        assert_eq!(
            json,
            r#"{"id":9,"seq":3,"author":{"id":1,"name":"Ann"},"body":"hi","ts":5,"client_id":"c"}"#
        );
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), plain);

        let full = Message {
            edited_at: Some(6),
            deleted: true,
            reply_to: Some(8),
            mentions: vec![2, 3],
            ..plain
        };
        let value = serde_json::to_value(&full).unwrap();
        assert_eq!(value["edited_at"], 6);
        assert_eq!(value["deleted"], true);
        assert_eq!(value["reply_to"], 8);
        assert_eq!(value["mentions"], serde_json::json!([2, 3]));
        assert_eq!(serde_json::from_value::<Message>(value).unwrap(), full);
    }

    #[test]
    fn summaries_leave_out_what_a_dm_or_a_preview_lacks() {
        let preview = RoomSummary {
            id: 4,
            kind: RoomKind::Dm,
            name: None,
            topic: String::new(),
            last_seq: 10,
            member_count: 2,
            role: None,
            last_read_seq: 0,
            unread: 0,
            mentions: 0,
        };
        let value = serde_json::to_value(&preview).unwrap();
        assert!(value.get("name").is_none());
        assert!(value.get("role").is_none());
        assert_eq!(value["kind"], "dm");
        assert_eq!(
            serde_json::from_value::<RoomSummary>(value).unwrap(),
            preview
        );
        let page = DirectoryPage {
            rooms: vec![DirectoryEntry {
                id: 1,
                name: "general".into(),
                topic: "hi".into(),
                member_count: 3,
                joined: true,
            }],
            next: None,
        };
        let json = serde_json::to_string(&page).unwrap();
        assert!(!json.contains("next"));
        assert_eq!(serde_json::from_str::<DirectoryPage>(&json).unwrap(), page);
        let member = MemberInfo {
            user: ann(),
            role: Role::Owner,
            joined_at: 7,
        };
        let json = serde_json::to_string(&member).unwrap();
        assert!(json.contains(r#""role":"owner""#));
        assert_eq!(serde_json::from_str::<MemberInfo>(&json).unwrap(), member);
    }
}
