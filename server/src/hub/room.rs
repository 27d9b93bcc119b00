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
    pub recipients: Conns,
    /// Connections previewing the (public) room: its live events too.
    pub previewers: Conns,
    /// Connections with the room open: presence and typing.
    pub open: Conns,
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
        for conn in self.recipients.iter() {
            users.entry(conn.user.id).or_insert(&conn.user);
        }
        let mut online: Vec<&UserInfo> = users.into_values().collect();
        online.sort_unstable_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        online
    }
}

/// Lists longer than this are indexed by connection id.
const INDEX_FROM: usize = 64;

/// One of a room's lists of connections. Every event walks it in full, so it
/// is a vector; a long one also keeps each connection's position, so adding
/// or removing one connection does not scan it. Every member of a room that
/// everyone belongs to (`# general`) is in one list: unindexed, 10,000
/// connections resuming made 50 million comparisons.
#[derive(Debug, Default)]
pub(super) struct Conns {
    list: Vec<Arc<Conn>>,
    /// Position in `list` by connection id: every connection of the list,
    /// or empty while the list is short (then it is scanned).
    at: HashMap<u64, usize>,
}

impl Conns {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Arc<Conn>> {
        self.list.iter()
    }

    fn position(&self, id: u64) -> Option<usize> {
        if self.at.is_empty() {
            self.list.iter().position(|c| c.id == id)
        } else {
            self.at.get(&id).copied()
        }
    }

    /// Adds `conn` unless it is there; returns whether it was added.
    pub fn add(&mut self, conn: &Arc<Conn>) -> bool {
        if self.position(conn.id).is_some() {
            return false;
        }
        self.list.push(conn.clone());
        if !self.at.is_empty() {
            self.at.insert(conn.id, self.list.len() - 1);
        } else if self.list.len() > INDEX_FROM {
            self.reindex();
        }
        true
    }

    /// Removes the connection `id`; returns whether it was there. Order does
    /// not matter, so the last connection takes its place.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(at) = self.position(id) else {
            return false;
        };
        self.list.swap_remove(at);
        if !self.at.is_empty() {
            self.at.remove(&id);
            if let Some(moved) = self.list.get(at) {
                self.at.insert(moved.id, at);
            }
            // As `reindex` does.
            if self.list.len() < INDEX_FROM / 2 {
                self.at = HashMap::new();
            }
        }
        true
    }

    /// Keeps the connections for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&Arc<Conn>) -> bool) {
        let before = self.list.len();
        self.list.retain(keep);
        if self.list.len() != before && !self.at.is_empty() {
            self.reindex();
        }
    }

    /// Rebuilds the index. It is built past [`INDEX_FROM`] connections and
    /// dropped only below half of that, so that a list hovering around the
    /// threshold does not build and drop it again and again.
    fn reindex(&mut self) {
        self.at = if self.list.len() >= INDEX_FROM / 2 {
            self.list
                .iter()
                .enumerate()
                .map(|(i, c)| (c.id, i))
                .collect()
        } else {
            HashMap::new()
        };
    }
}

/// Serialises a frame the hub makes itself (presence, typing, room lists).
pub(super) fn encode(frame: &ServerFrame) -> Utf8Bytes {
    Utf8Bytes::from(frame.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64) -> Arc<Conn> {
        let user = UserInfo {
            id: 1,
            name: "a".into(),
            picture: None,
        };
        Arc::new(Conn::new(id, user, [0; 32], 1).0)
    }

    /// The ids in the list, sorted, after checking the index agrees with it.
    fn ids(list: &Conns) -> Vec<u64> {
        if !list.at.is_empty() {
            assert_eq!(list.at.len(), list.list.len(), "index covers the list");
            for (i, c) in list.list.iter().enumerate() {
                assert_eq!(list.at.get(&c.id), Some(&i), "index of {}", c.id);
            }
        }
        let mut ids: Vec<u64> = list.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_list_adds_and_removes_alike_below_and_above_its_index() {
        let conns: Vec<_> = (0..200).map(conn).collect();
        let mut list = Conns::default();
        for c in &conns {
            assert!(list.add(c));
        }
        assert!(!list.at.is_empty(), "a long list is indexed");
        assert!(!list.add(&conns[7]), "a connection is in a list once");
        assert_eq!(ids(&list), (0..200).collect::<Vec<_>>());
        for id in (0..200).step_by(3) {
            assert!(list.remove(id));
            assert!(!list.remove(id), "removed once");
        }
        let mut left: Vec<u64> = (0..200).filter(|id| id % 3 != 0).collect();
        assert_eq!(ids(&list), left);
        list.retain(|c| c.id % 2 == 0);
        left.retain(|id| id % 2 == 0);
        assert_eq!(ids(&list), left);
        for id in left.clone() {
            if id > 100 {
                list.remove(id);
            }
        }
        left.retain(|&id| id <= 100);
        assert!(left.len() < 64 && left.len() >= 32, "{}", left.len());
        assert!(!list.at.is_empty(), "the index outlives a dip below 64");
        assert_eq!(ids(&list), left);
        for id in left.clone() {
            if id > 20 {
                list.remove(id);
            }
        }
        left.retain(|&id| id <= 20);
        assert!(list.at.is_empty(), "a short list drops its index");
        assert_eq!(ids(&list), left);
        assert!(list.add(&conns[3]));
        left.push(3);
        left.sort_unstable();
        assert_eq!(ids(&list), left);
    }
}
