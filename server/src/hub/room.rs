//! One room's live lists: who gets its events, who previews it, who has it
//! open. Exists only while one of the lists is not empty.

use super::{
    conn::{Conn, Out},
    lock,
};
use app::protocol::{
    v2::{ServerFrame, PRESENCE_SNAPSHOT},
    UserInfo,
};
use axum::extract::ws::Utf8Bytes;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

/// A room with someone listening.
#[derive(Debug)]
pub struct RoomHub {
    pub id: i64,
    live: Mutex<Live>,
}

/// The lists, behind the room's one lock.
#[derive(Debug, Default)]
pub(super) struct Live {
    /// Resumed connections of members: the room's live events.
    pub recipients: Vec<Arc<Conn>>,
    /// Connections previewing the (public) room: its live events too.
    pub previewers: Vec<Arc<Conn>>,
    /// Connections with the room open: presence and typing.
    pub open: Vec<Arc<Conn>>,
    /// Set, under this lock, when the hub removes the room from its map:
    /// whoever locks it afterwards must look the room up again.
    pub dead: bool,
}

impl RoomHub {
    pub(super) fn new(id: i64) -> Self {
        Self {
            id,
            live: Mutex::new(Live::default()),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Live> {
        lock(&self.live)
    }
}

impl Live {
    /// No one listens: the room can go.
    pub fn is_empty(&self) -> bool {
        self.recipients.is_empty() && self.previewers.is_empty() && self.open.is_empty()
    }

    /// Delivers one event to recipients and previewers (the bytes are
    /// shared, not copied); drops the connections too slow to take it.
    /// Returns how many got it.
    pub fn publish(&mut self, room_id: i64, seq: i64, frame: &Utf8Bytes) -> usize {
        let event = || Out::Event {
            room_id,
            seq,
            frame: frame.clone(),
        };
        self.recipients.retain(|conn| conn.push(event()));
        self.previewers.retain(|conn| conn.push(event()));
        self.recipients.len() + self.previewers.len()
    }

    /// Sends a frame to the connections with the room open, but `skip`.
    pub fn tell_open(&mut self, frame: &Utf8Bytes, skip: Option<u64>) {
        self.open
            .retain(|conn| Some(conn.id) == skip || conn.push(Out::Frame(frame.clone())));
    }

    /// The `presence` snapshot: distinct users among the recipients (the
    /// online members), by name then id, at most [`PRESENCE_SNAPSHOT`],
    /// with `more` counting the rest.
    pub fn presence(&self, room_id: i64) -> Utf8Bytes {
        let online = self.online();
        let shown = online.len().min(PRESENCE_SNAPSHOT as usize);
        let more = u32::try_from(online.len() - shown).unwrap_or(u32::MAX);
        encode(&ServerFrame::Presence {
            room_id,
            online: online.into_iter().take(shown).cloned().collect(),
            more,
        })
    }

    /// The online members: distinct users among the recipients, by name
    /// then id.
    pub fn online(&self) -> Vec<&UserInfo> {
        let mut users: HashMap<i64, &UserInfo> = HashMap::new();
        for conn in &self.recipients {
            users.entry(conn.user.id).or_insert(&conn.user);
        }
        let mut online: Vec<&UserInfo> = users.into_values().collect();
        online.sort_unstable_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        online
    }
}

/// Adds `conn` to `list` unless it is there; returns whether it was added.
pub(super) fn add(list: &mut Vec<Arc<Conn>>, conn: &Arc<Conn>) -> bool {
    if list.iter().any(|c| c.id == conn.id) {
        return false;
    }
    list.push(conn.clone());
    true
}

/// Removes the connection `id` from `list`; returns whether it was there.
/// Order in the lists does not matter, so a swap keeps it O(1) after the find.
pub(super) fn remove(list: &mut Vec<Arc<Conn>>, id: u64) -> bool {
    match list.iter().position(|c| c.id == id) {
        Some(at) => {
            list.swap_remove(at);
            true
        }
        None => false,
    }
}

/// Serialises a frame the hub makes itself (presence, typing, room lists).
pub(super) fn encode(frame: &ServerFrame) -> Utf8Bytes {
    Utf8Bytes::from(frame.encode())
}
