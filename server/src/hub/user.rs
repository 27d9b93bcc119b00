//! One signed-in user's live state: their connections and, once loaded,
//! the rooms they belong to.

use super::{conn::Conn, lock};
use app::protocol::{Role, RoomKind};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

/// A user with at least one connection.
#[derive(Debug)]
pub struct UserHub {
    pub id: i64,
    state: Mutex<UserState>,
}

/// A membership change, as the committer publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added {
        room_id: i64,
        kind: RoomKind,
        role: Role,
    },
    Removed {
        room_id: i64,
    },
}

/// Whether the user's rooms are known yet.
#[derive(Debug, PartialEq, Eq)]
pub enum Phase {
    /// The first connection is reading its hello snapshot; changes
    /// published meanwhile wait here, in order.
    Loading(Vec<Change>),
    /// `rooms` is the snapshot with every change since applied.
    Ready,
}

/// One connection of the user.
#[derive(Debug)]
pub(super) struct Entry {
    pub conn: Arc<Conn>,
    /// It sent `resume`: it is among its rooms' recipients.
    pub resumed: bool,
    /// Rooms joined while it was not resumed yet, with the `last_seq` of
    /// their `room_added`: if its `resume` has no cursor for one (the
    /// `room_added` may arrive after the client sent `resume`), it replays
    /// from there instead of going live with a hole.
    pub added: Vec<(i64, i64)>,
}

/// Everything behind the user's lock.
#[derive(Debug)]
pub(super) struct UserState {
    pub conns: Vec<Entry>,
    pub rooms: HashMap<i64, (RoomKind, Role)>,
    pub phase: Phase,
    /// Set, under this lock, when the hub removes the user from its map.
    pub dead: bool,
}

impl UserHub {
    pub(super) fn new(id: i64) -> Self {
        Self {
            id,
            state: Mutex::new(UserState::default()),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, UserState> {
        lock(&self.state)
    }
}

impl Default for UserState {
    fn default() -> Self {
        Self {
            conns: Vec::new(),
            rooms: HashMap::new(),
            phase: Phase::Loading(Vec::new()),
            dead: false,
        }
    }
}

impl UserState {
    /// Records a membership change: applied now when ready, kept for
    /// [`UserState::load`] while loading.
    pub fn change(&mut self, change: Change) {
        match &mut self.phase {
            Phase::Loading(pending) => pending.push(change),
            Phase::Ready => apply(&mut self.rooms, change),
        }
    }

    /// Takes the hello snapshot if still loading: its rooms, then every
    /// change published since the user hub was created, in order. Changes
    /// are idempotent (a join the snapshot already has is re-inserted, a
    /// leave it already lacks removes nothing), so the result is right
    /// whether the snapshot was read before, between or after them.
    /// Returns whether it loaded (a later connection's snapshot is not
    /// needed: the state is already current).
    pub fn load(&mut self, snapshot: impl IntoIterator<Item = (i64, RoomKind, Role)>) -> bool {
        let Phase::Loading(pending) = std::mem::replace(&mut self.phase, Phase::Ready) else {
            return false;
        };
        self.rooms = snapshot
            .into_iter()
            .map(|(room_id, kind, role)| (room_id, (kind, role)))
            .collect();
        for change in pending {
            apply(&mut self.rooms, change);
        }
        true
    }

    /// Whether the user is online: at least one resumed connection.
    pub fn online(&self) -> bool {
        self.conns.iter().any(|e| e.resumed)
    }

    /// The entry of connection `id`.
    pub fn entry(&mut self, id: u64) -> Option<&mut Entry> {
        self.conns.iter_mut().find(|e| e.conn.id == id)
    }
}

fn apply(rooms: &mut HashMap<i64, (RoomKind, Role)>, change: Change) {
    match change {
        Change::Added {
            room_id,
            kind,
            role,
        } => {
            rooms.insert(room_id, (kind, role));
        }
        Change::Removed { room_id } => {
            rooms.remove(&room_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: RoomKind = RoomKind::Public;

    fn rooms(ids: &[i64]) -> Vec<(i64, RoomKind, Role)> {
        ids.iter().map(|&id| (id, PUBLIC, Role::Member)).collect()
    }

    fn ids(state: &UserState) -> Vec<i64> {
        let mut ids: Vec<i64> = state.rooms.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// A join and a leave (and a join then leave of one room) published
    /// while the first connection reads its snapshot. Whenever the snapshot
    /// was read among them, loading ends with every change applied once.
    #[test]
    fn loading_applies_the_pending_changes_whenever_the_snapshot_was_read() {
        let changes = [
            Change::Added {
                room_id: 2,
                kind: PUBLIC,
                role: Role::Member,
            },
            Change::Removed { room_id: 1 },
            Change::Added {
                room_id: 4,
                kind: RoomKind::Private,
                role: Role::Owner,
            },
            Change::Removed { room_id: 4 },
        ];
        for read_after in 0..=changes.len() {
            // The store as the snapshot saw it: rooms 1 and 3, plus the
            // changes committed before it was read.
            let mut store = UserState {
                phase: Phase::Ready,
                rooms: rooms(&[1, 3])
                    .into_iter()
                    .map(|(r, k, o)| (r, (k, o)))
                    .collect(),
                ..UserState::default()
            };
            for &change in &changes[..read_after] {
                store.change(change);
            }
            let snapshot: Vec<_> = store.rooms.iter().map(|(&r, &(k, o))| (r, k, o)).collect();

            let mut user = UserState::default();
            for &change in &changes {
                user.change(change);
            }
            assert!(user.rooms.is_empty(), "nothing applies while loading");
            assert!(user.load(snapshot));
            assert_eq!(user.phase, Phase::Ready);
            assert_eq!(
                ids(&user),
                [2, 3],
                "snapshot read after {read_after} changes"
            );
        }
    }

    #[test]
    fn once_ready_changes_apply_at_once_and_a_later_snapshot_is_not_needed() {
        let mut user = UserState::default();
        assert!(user.load(rooms(&[1])));
        user.change(Change::Added {
            room_id: 5,
            kind: PUBLIC,
            role: Role::Owner,
        });
        assert_eq!(user.rooms.get(&5), Some(&(PUBLIC, Role::Owner)));
        // A second connection's snapshot, read before the join, changes nothing.
        assert!(!user.load(rooms(&[1])));
        assert_eq!(ids(&user), [1, 5]);
        user.change(Change::Removed { room_id: 1 });
        assert_eq!(ids(&user), [5]);
    }
}
