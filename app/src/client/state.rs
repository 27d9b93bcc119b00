//! The client's state on protocol v2, as plain data: no signals, no browser,
//! so [`super::reducer`] can be tested natively. The page mirrors it in a
//! signal (U2); nothing here knows it is displayed.

use std::collections::BTreeSet;

use crate::protocol::{room_key, Event, Me, Message, Role, RoomKind, RoomSummary, UserInfo};

use super::Status;

/// Everything the chat client knows.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatState {
    /// The signed-in user, from page data and then from `hello`.
    pub me: Option<Me>,
    pub status: Status,
    /// The rooms the user belongs to, in sidebar order ([`RoomEntry::order`]).
    pub rooms: Vec<RoomEntry>,
    /// The room on screen, member or previewer.
    pub open: Option<Timeline>,
    /// Sends not yet acknowledged, resent after every `hello`.
    pub outbox: Outbox,
    /// The last error not tied to a message.
    pub notice: Option<String>,
    /// The `resumed` marker arrived on this connection: the backlog is in.
    pub resumed: bool,
    /// The page is visible (not a background tab or a minimised window).
    pub visible: bool,
    /// A `read` waiting for its debounce to pass.
    pub read_due: Option<ReadDue>,
    /// When this tab last sent `typing` (ms), to send it at most every few seconds.
    pub typing_sent: f64,
}

impl Default for ChatState {
    fn default() -> Self {
        Self {
            me: None,
            status: Status::Idle,
            rooms: Vec::new(),
            open: None,
            outbox: Outbox::default(),
            notice: None,
            resumed: false,
            visible: true,
            read_due: None,
            typing_sent: f64::NEG_INFINITY,
        }
    }
}

impl ChatState {
    /// A fresh state for `me` (page data before any socket).
    pub fn new(me: Option<Me>) -> Self {
        Self {
            me,
            ..Self::default()
        }
    }

    /// The sidebar entry of a room the user belongs to.
    pub fn room(&self, room_id: i64) -> Option<&RoomEntry> {
        self.rooms.iter().find(|r| r.summary.id == room_id)
    }

    pub(crate) fn room_mut(&mut self, room_id: i64) -> Option<&mut RoomEntry> {
        self.rooms.iter_mut().find(|r| r.summary.id == room_id)
    }

    /// The open timeline, if it shows `room_id`.
    pub fn timeline(&self, room_id: i64) -> Option<&Timeline> {
        self.open.as_ref().filter(|t| t.room_id == room_id)
    }

    pub(crate) fn timeline_mut(&mut self, room_id: i64) -> Option<&mut Timeline> {
        self.open.as_mut().filter(|t| t.room_id == room_id)
    }

    /// Adds or replaces a room, keeping the sidebar order.
    pub(crate) fn upsert_room(&mut self, entry: RoomEntry) {
        self.rooms.retain(|r| r.summary.id != entry.summary.id);
        let at = self.rooms.partition_point(|r| r.order() < entry.order());
        self.rooms.insert(at, entry);
    }

    /// Re-sorts after a rename.
    pub(crate) fn sort_rooms(&mut self) {
        self.rooms.sort_by_cached_key(RoomEntry::order);
    }

    /// The user's id (0 before sign-in: matches nobody).
    pub fn my_id(&self) -> i64 {
        self.me.as_ref().map_or(0, |m| m.id)
    }
}

/// A room the user belongs to, as the sidebar shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomEntry {
    /// From `hello` or `room_added`, then kept current by events and `read`.
    pub summary: RoomSummary,
    /// The highest seq already reflected in `summary.unread` and
    /// `summary.last_seq`: events at or below it were counted by the server
    /// snapshot or by this client, and are never counted again.
    pub counted_upto: i64,
    /// Posts this client counted as unread (newest last), so a later
    /// `deleted` can take them back off. Bounded by [`MAX_COUNTED`].
    pub counted: Vec<Counted>,
}

/// Posts remembered per room for `deleted`; older ones are forgotten (the
/// next `hello` or `read` brings exact counts).
pub const MAX_COUNTED: usize = 1000;

/// One post this client added to a room's unread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub seq: i64,
    pub message_id: i64,
    /// It mentioned the user (so it also added to `mentions`).
    pub mention: bool,
}

impl RoomEntry {
    /// An entry whose counts are the snapshot's own.
    pub fn new(summary: RoomSummary) -> Self {
        Self {
            counted_upto: summary.last_seq,
            summary,
            counted: Vec::new(),
        }
    }

    /// Sidebar order: by folded name, then id (stable for equal names and
    /// for direct messages, which have none).
    pub fn order(&self) -> (String, i64) {
        (
            room_key(self.summary.name.as_deref().unwrap_or("")),
            self.summary.id,
        )
    }
}

/// The room on screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub room_id: i64,
    pub kind: RoomKind,
    /// The header: name and topic, kept current by `renamed`/`topic_changed`.
    pub name: Option<String>,
    pub topic: String,
    /// Messages and notices by seq, then this tab's pending sends.
    pub items: Vec<Item>,
    /// The last event seq applied: events at or below it are dropped, and
    /// `resume`/`open` ask for what follows it.
    pub cursor: i64,
    /// Messages older than the first one shown exist.
    pub has_more: bool,
    /// A page of older messages is on its way.
    pub loading_older: bool,
    /// After a `gap`: the latest page is on its way.
    pub awaiting_page: bool,
    /// Members known to this client (for mentions and the member list).
    pub members: Vec<UserInfo>,
    /// Ids of the members online.
    pub online: BTreeSet<i64>,
    /// Others typing, with when each notice lapses (ms).
    pub typing: Vec<(UserInfo, f64)>,
    /// The user's role here; `None` while previewing.
    pub role: Option<Role>,
    /// Scrolled to the newest line.
    pub at_bottom: bool,
}

impl Timeline {
    /// A timeline from a page of the room (SSR or `history`), its summary,
    /// and the event seq the page is current to.
    pub fn new(summary: &RoomSummary, messages: Vec<Message>, has_more: bool, cursor: i64) -> Self {
        let mut timeline = Self {
            room_id: summary.id,
            kind: summary.kind,
            name: summary.name.clone(),
            topic: summary.topic.clone(),
            items: Vec::new(),
            cursor,
            has_more,
            loading_older: false,
            awaiting_page: false,
            members: Vec::new(),
            online: BTreeSet::new(),
            typing: Vec::new(),
            role: summary.role,
            at_bottom: true,
        };
        timeline.merge(messages);
        timeline
    }

    /// Where committed lines end and pending ones begin.
    pub fn first_pending(&self) -> usize {
        self.items
            .iter()
            .position(|i| matches!(i, Item::Pending { .. }))
            .unwrap_or(self.items.len())
    }

    /// The oldest message shown: where the next page of history ends.
    pub fn first_seq(&self) -> Option<i64> {
        self.items.iter().find_map(|i| match i {
            Item::Message(m) => Some(m.seq),
            _ => None,
        })
    }

    /// Puts a line where its seq belongs among the committed lines,
    /// replacing one with the same seq (a page and an event may both carry
    /// a message).
    pub(crate) fn upsert(&mut self, item: Item) {
        let Some(seq) = item.seq() else { return };
        let end = self.first_pending();
        let committed = &self.items[..end];
        match committed.binary_search_by_key(&seq, |i| i.seq().unwrap_or(i64::MAX)) {
            Ok(at) => self.items[at] = item,
            Err(at) => self.items.insert(at, item),
        }
    }

    /// Merges a page of messages by seq.
    pub(crate) fn merge(&mut self, messages: Vec<Message>) {
        for message in messages {
            self.upsert(Item::Message(message));
        }
    }

    /// Whether a committed line with this seq is shown (committed lines
    /// are in seq order).
    pub fn has_seq(&self, seq: i64) -> bool {
        self.items[..self.first_pending()]
            .binary_search_by_key(&seq, |i| i.seq().unwrap_or(i64::MAX))
            .is_ok()
    }

    /// The body and failure of this tab's pending send `client_id`, if shown.
    pub(crate) fn pending_mut(
        &mut self,
        client_id: &str,
    ) -> Option<(&mut String, &mut Option<String>)> {
        self.items.iter_mut().find_map(|i| match i {
            Item::Pending {
                client_id: id,
                body,
                failed,
                ..
            } if id == client_id => Some((body, failed)),
            _ => None,
        })
    }

    /// The message with this id, if shown.
    pub(crate) fn message_mut(&mut self, id: i64) -> Option<&mut Message> {
        self.items.iter_mut().find_map(|i| match i {
            Item::Message(m) if m.id == id => Some(m),
            _ => None,
        })
    }
}

/// One line of a timeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A committed message, as it is now (edited or deleted in place).
    Message(Message),
    /// A membership or room notice (joined, left, renamed, topic).
    Notice(Event),
    /// A message sent from this tab (or an earlier page) with no seq yet.
    Pending {
        client_id: String,
        body: String,
        author: UserInfo,
        /// Why the server refused it, if it did.
        failed: Option<String>,
    },
}

impl Item {
    /// The seq of a committed line.
    pub fn seq(&self) -> Option<i64> {
        match self {
            Item::Message(m) => Some(m.seq),
            Item::Notice(e) => Some(e.seq),
            Item::Pending { .. } => None,
        }
    }

    /// A key that is stable for the life of the line.
    pub fn key(&self) -> String {
        match self {
            Item::Message(m) => format!("m{}", m.seq),
            Item::Notice(e) => format!("n{}", e.seq),
            // A pending line that fails (or is retried) must change key, so
            // a keyed list re-renders it.
            Item::Pending {
                client_id, failed, ..
            } => format!("p{client_id}{}", if failed.is_some() { "!" } else { "" }),
        }
    }
}

/// Sends not yet acknowledged, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbox {
    pub entries: Vec<OutboxEntry>,
}

/// One unacknowledged send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxEntry {
    pub client_id: String,
    pub room_id: i64,
    pub body: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<i64>,
}

impl Outbox {
    /// Adds an entry unless one with its `client_id` is there already.
    pub fn push(&mut self, entry: OutboxEntry) -> bool {
        if self.contains(&entry.client_id) {
            return false;
        }
        self.entries.push(entry);
        true
    }

    /// Removes the entry with this `client_id`; whether there was one.
    pub fn remove(&mut self, client_id: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.client_id != client_id);
        self.entries.len() != before
    }

    pub fn contains(&self, client_id: &str) -> bool {
        self.entries.iter().any(|e| e.client_id == client_id)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A `read` to send once its debounce has passed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadDue {
    pub room_id: i64,
    pub seq: i64,
    /// When to send it (ms).
    pub at: f64,
}
