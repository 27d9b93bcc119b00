//! The hub: per-user fan-out of room events, presence per user, typing per
//! open room, for the WebSocket connections of [`crate::ws`].
//!
//! The hub moves bytes: events arrive encoded (one shared [`Utf8Bytes`] per
//! event, reference-counted, never copied per recipient), and its API takes
//! ids, [`UserInfo`], [`RoomSummary`], [`RoomKind`] and [`Role`], never
//! table rows. It encodes only the small frames it makes itself
//! (`presence`, `presence_changed`, `typing`, `room_added`, `room_removed`).
//!
//! # Layout
//! - [`conn`]: [`Conn`] (bounded queue of [`Out`], pre-hello buffer, open
//!   rooms, kick) and the writer's replay [`Dedupe`].
//! - [`room`]: [`RoomHub`]: one room's `recipients` (resumed connections of
//!   members), `previewers` and `open` lists.
//! - [`user`]: [`UserHub`]: one user's connections and rooms, loaded from
//!   the hello snapshot plus the changes published while it was read.
//!
//! Nothing is created per room of the system: a [`RoomHub`] exists while
//! one of its lists is not empty, a [`UserHub`] while the user has a
//! connection. Idle memory grows with live connections, not with rooms.
//!
//! # Locks
//! Every lock is a `std::sync::Mutex` (or a `DashMap` shard) held for a few
//! instructions and never across an `.await`: every send under one is a
//! `try_send` into a bounded queue. A connection whose queue is full is
//! kicked with 1013 (slow consumer), dropped from the list being
//! walked, and resumes on reconnect; no one waits for it.
//!
//! Locks are taken in this order, never the reverse, so they cannot deadlock:
//! 1. the `users` map shard (only to look a user up, or to remove one);
//! 2. a user's lock: everything that changes which lists a connection is in
//!    (connect, hello, resume, open, close, membership, disconnect) holds it,
//!    so those steps for one user happen one at a time, in order;
//! 3. the `rooms` map shard (only to look a room up, or to remove one);
//! 4. a room's lock, one at a time, never two at once;
//! 5. a connection's pre-hello buffer or open list: leaves, no lock taken
//!    under them.
//!
//! The hot paths take only step 4: `publish` and `typing` lock one room.
//! A map shard is never locked while a user or room lock is held except in
//! that order: a room or user becoming empty is removed after its lock is
//! released (`remove_if` then locks it again to check, and marks it
//! `dead`, so whoever still holds the old `Arc` looks it up anew).

pub mod conn;
pub mod room;
pub mod user;

pub use conn::{Conn, Dedupe, Out, CONN_QUEUE, PRE_HELLO};
pub use room::RoomHub;
pub use user::{Change, Phase, UserHub};

use crate::metrics::{self, METRICS};
use app::protocol::{v2::ServerFrame, Role, RoomKind, RoomSummary, UserInfo};
use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use room::{encode, Live};
use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
};
use tokio::sync::mpsc;
use user::{Entry, UserState};

/// Why the hub refused a connection's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The connection is not registered (it has disconnected).
    #[error("the connection is gone")]
    Gone,
    /// `resume` and `open` need the user's rooms, known once `hello` is sent.
    #[error("hello has not been sent yet")]
    BeforeHello,
    /// `resume` is once per connection.
    #[error("resume is accepted once per connection")]
    AlreadyResumed,
    /// `open` of a room that is not previewable by a user who is not (or no
    /// longer) a member of it.
    #[error("not a member of this room")]
    NotMember,
}

/// What `resume` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// Rooms the connection now gets the events of (all the user's rooms).
    pub rooms: usize,
    /// Rooms it sent a cursor for that the user does not belong to: no
    /// marker was queued for them; the caller answers each with an error.
    pub not_member: Vec<i64>,
}

/// What `open` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The user is not a member: the connection previews the room (gets
    /// its live events while it is open).
    pub preview: bool,
    /// The oldest room, closed to keep at most `MAX_OPEN` open.
    pub closed: Option<i64>,
}

/// The hub: a cheap `Clone` handle.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    users: DashMap<i64, Arc<UserHub>>,
    rooms: DashMap<i64, Arc<RoomHub>>,
    next_conn: AtomicU64,
    conns: AtomicUsize,
    /// Capacity of each connection's queue.
    queue: usize,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty hub with queues of [`CONN_QUEUE`].
    pub fn new() -> Self {
        Self::with_queue(CONN_QUEUE)
    }

    /// An empty hub whose connections queue at most `capacity` items.
    pub fn with_queue(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                users: DashMap::new(),
                rooms: DashMap::new(),
                next_conn: AtomicU64::new(1),
                conns: AtomicUsize::new(0),
                queue: capacity.max(1),
            }),
        }
    }

    /// Registers a connection of `user` for per-user frames before its
    /// hello snapshot is read (subscribe, then read). Frames for it wait in
    /// the pre-hello buffer until [`Hub::hello`]. The first connection of a
    /// user creates its [`UserHub`], loading.
    pub fn connect(&self, user: UserInfo, session: [u8; 32]) -> (Arc<Conn>, mpsc::Receiver<Out>) {
        let id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let (conn, rx) = Conn::new(id, user, session, self.inner.queue);
        let conn = Arc::new(conn);
        loop {
            let hub = self.user_or_new(conn.user.id);
            let mut state = hub.lock();
            if state.dead {
                continue; // removed meanwhile: a fresh one goes in the map
            }
            state.conns.push(Entry {
                conn: conn.clone(),
                resumed: false,
                added: Vec::new(),
            });
            break;
        }
        self.inner.conns.fetch_add(1, Ordering::Relaxed);
        metrics::add(&METRICS.connections_opened, 1);
        (conn, rx)
    }

    /// Sends `hello` (made from `rooms`, the snapshot read after
    /// [`Hub::connect`]), then the frames that waited for it. If the user's
    /// rooms are still loading, `rooms` plus the changes published since
    /// become them (see [`UserHub`]).
    pub fn hello(
        &self,
        conn: &Conn,
        rooms: impl IntoIterator<Item = (i64, RoomKind, Role)>,
        hello: Utf8Bytes,
    ) -> Result<(), HubError> {
        self.with_user(conn.user.id, |state| {
            if state.entry(conn.id).is_none() {
                return Err(HubError::Gone);
            }
            state.load(rooms);
            conn.greet(hello);
            Ok(())
        })
        .unwrap_or(Err(HubError::Gone))
    }

    /// Sends `frame` in place of `hello` (why the connection cannot be
    /// served) and closes the connection with 1011. The user's rooms are
    /// not loaded: their other connections are not affected.
    pub fn refuse(&self, conn: &Conn, frame: Utf8Bytes) {
        conn.greet(frame);
        conn.kick(crate::ws::close::Close::Internal);
    }

    /// Makes the connection a recipient of every room its user belongs to,
    /// one room lock at a time, queuing `Replay { after }` under that lock
    /// for the rooms in `cursors` (so no live event of the room can precede
    /// it). A room without a cursor is live from now, except one joined
    /// since the connection registered: it replays from its `room_added`'s
    /// `last_seq`. The user's first resumed connection makes them online.
    ///
    /// For a room the caller answers with `gap` (budget spent), it sends the
    /// `gap { last_seq }` frame first and passes `last_seq` as the cursor.
    pub fn resume(
        &self,
        conn: &Arc<Conn>,
        cursors: &BTreeMap<i64, i64>,
    ) -> Result<Resumed, HubError> {
        self.with_user(conn.user.id, |state| {
            let first = !state.online();
            let Some(entry) = state.entry(conn.id) else {
                return Err(HubError::Gone);
            };
            if !conn.greeted() {
                return Err(HubError::BeforeHello);
            }
            if entry.resumed {
                return Err(HubError::AlreadyResumed);
            }
            entry.resumed = true;
            let added = std::mem::take(&mut entry.added);
            let not_member = cursors
                .keys()
                .filter(|room_id| !state.rooms.contains_key(room_id))
                .copied()
                .collect();
            for &room_id in state.rooms.keys() {
                let since_added = added
                    .iter()
                    .find(|(room, _)| *room == room_id)
                    .map(|&(_, seq)| seq);
                self.with_room(room_id, true, |live| {
                    // A preview already streams the room live: it becomes the
                    // membership's stream without a hole or a replay.
                    let previewing = live.previewers.remove(conn.id);
                    live.recipients.add(conn);
                    let after = cursors
                        .get(&room_id)
                        .copied()
                        .or(since_added.filter(|_| !previewing));
                    if let Some(after) = after {
                        conn.push(Out::Replay { room_id, after });
                    }
                    if first {
                        live.tell_open(&presence_changed(room_id, &conn.user, true), None);
                    }
                });
            }
            Ok(Resumed {
                rooms: state.rooms.len(),
                not_member,
            })
        })
        .unwrap_or(Err(HubError::Gone))
    }

    /// Forgets a connection: out of every list; the user's last resumed
    /// connection makes them offline; their last connection removes the
    /// [`UserHub`], and rooms left empty go too.
    pub fn disconnect(&self, conn: &Conn) {
        let found = self.with_user(conn.user.id, |state| {
            let Some(at) = state.conns.iter().position(|e| e.conn.id == conn.id) else {
                return false;
            };
            let entry = state.conns.swap_remove(at);
            for room_id in conn.close_all() {
                self.leave_open(conn.id, room_id);
            }
            if entry.resumed {
                let last = !state.online();
                for &room_id in state.rooms.keys() {
                    self.with_room(room_id, false, |live| {
                        live.recipients.remove(conn.id);
                        if last {
                            live.tell_open(&presence_changed(room_id, &conn.user, false), None);
                        }
                    });
                }
            }
            true
        });
        if found == Some(true) {
            self.inner.conns.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Opens a room on the connection: its presence and typing, replaying
    /// after `since` first when given; a room the user is not a member of
    /// is previewed (its live events too) when `previewable` (public), and
    /// refused ([`HubError::NotMember`]) otherwise. The caller has
    /// authorised it.
    /// Opening one more than `MAX_OPEN` closes the oldest. Replies with the
    /// `presence` snapshot.
    pub fn open(
        &self,
        conn: &Arc<Conn>,
        room_id: i64,
        since: Option<i64>,
        previewable: bool,
    ) -> Result<Opened, HubError> {
        self.with_user(conn.user.id, |state| {
            if state.entry(conn.id).is_none() {
                return Err(HubError::Gone);
            }
            if !conn.greeted() {
                return Err(HubError::BeforeHello);
            }
            let member = state.rooms.contains_key(&room_id);
            // Decided under the user's lock, which a leave takes too: a
            // member who left since the caller's check is no previewer of a
            // room that has none.
            if !member && !previewable {
                return Err(HubError::NotMember);
            }
            let closed = conn.mark_open(room_id);
            if let Some(oldest) = closed {
                self.leave_open(conn.id, oldest);
            }
            self.with_room(room_id, true, |live| {
                live.open.add(conn);
                if !member {
                    live.previewers.add(conn);
                }
                conn.push(Out::Frame(live.presence(room_id)));
                if let Some(after) = since {
                    conn.push(Out::Replay { room_id, after });
                }
            });
            Ok(Opened {
                preview: !member,
                closed,
            })
        })
        .unwrap_or(Err(HubError::Gone))
    }

    /// The room's online members (as `presence` lists them, at most
    /// [`app::protocol::v2::PRESENCE_SNAPSHOT`]), for a server-rendered page.
    pub fn online(&self, room_id: i64) -> Vec<UserInfo> {
        self.with_room(room_id, false, |live| {
            live.online()
                .into_iter()
                .take(app::protocol::v2::PRESENCE_SNAPSHOT as usize)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
    }

    /// Closes a room on the connection (and ends its preview); returns
    /// whether it was open.
    pub fn close(&self, conn: &Conn, room_id: i64) -> bool {
        self.with_user(conn.user.id, |_| {
            let was_open = conn.mark_closed(room_id);
            if was_open {
                self.leave_open(conn.id, room_id);
            }
            was_open
        })
        .unwrap_or(false)
    }

    /// Relays that the connection's user is typing to the other connections
    /// with the room open. Returns `false` (sending nothing) unless the room
    /// is open on this connection.
    pub fn typing(&self, conn: &Conn, room_id: i64) -> bool {
        if !conn.is_open(room_id) {
            return false;
        }
        let frame = encode(&ServerFrame::Typing {
            room_id,
            user: conn.user.clone(),
        });
        self.with_room(room_id, false, |live| live.tell_open(&frame, Some(conn.id)));
        true
    }

    /// Delivers a committed event (encoded once) to the room's recipients
    /// and previewers. The committer calls it in commit order, so each
    /// connection gets a room's events in seq order. Returns how many got it.
    pub fn publish(&self, room_id: i64, seq: i64, frame: &Utf8Bytes) -> usize {
        let delivered = self
            .with_room(room_id, false, |live| live.publish(room_id, seq, frame))
            .unwrap_or(0);
        metrics::add(&METRICS.deliveries, delivered as u64);
        delivered
    }

    /// The user joined (or created) `room`: `room_added` to each of their
    /// connections, and their resumed connections become recipients (a
    /// preview becomes the member's stream). Call before publishing the
    /// `member_joined` event, so they get it. An online user's arrival is a
    /// `presence_changed` for the room's open lists.
    pub fn member_added(&self, user_id: i64, room: &RoomSummary) {
        let room_id = room.id;
        let change = Change::Added {
            room_id,
            kind: room.kind,
            // A summary for a member always has a role; none would be a bug
            // upstream, and `member` is the least it can mean.
            role: room.role.unwrap_or(Role::Member),
        };
        let frame = encode(&ServerFrame::RoomAdded { room: room.clone() });
        self.with_user(user_id, |state| {
            let was_member = state.rooms.contains_key(&room_id);
            state.change(change);
            let mut resumed = Vec::new();
            for entry in &mut state.conns {
                entry.conn.push(Out::Frame(frame.clone()));
                if entry.resumed {
                    resumed.push(entry.conn.clone());
                } else {
                    entry.added.retain(|(room, _)| *room != room_id);
                    entry.added.push((room_id, room.last_seq));
                }
            }
            let Some(user) = resumed.first().map(|c| c.user.clone()) else {
                return;
            };
            self.with_room(room_id, true, |live| {
                for conn in &resumed {
                    live.previewers.remove(conn.id);
                    live.recipients.add(conn);
                }
                if !was_member {
                    live.tell_open(&presence_changed(room_id, &user, true), None);
                }
            });
        });
    }

    /// The user left (or lost) the room: their connections leave its lists
    /// (they stop previewing it too: the client opens it again if it may)
    /// and each gets `room_removed`. Call after publishing the event that
    /// says so, so they get it.
    pub fn member_removed(&self, user_id: i64, room_id: i64) {
        let frame = encode(&ServerFrame::RoomRemoved { room_id });
        self.with_user(user_id, |state| {
            let was_member = state.rooms.contains_key(&room_id);
            state.change(Change::Removed { room_id });
            let online = state
                .conns
                .iter()
                .find(|e| e.resumed)
                .map(|e| e.conn.user.clone());
            let mut ids = Vec::with_capacity(state.conns.len());
            for entry in &mut state.conns {
                entry.conn.push(Out::Frame(frame.clone()));
                entry.added.retain(|(room, _)| *room != room_id);
                entry.conn.mark_closed(room_id);
                ids.push(entry.conn.id);
            }
            self.with_room(room_id, false, |live| {
                for &id in &ids {
                    live.recipients.remove(id);
                    live.previewers.remove(id);
                    live.open.remove(id);
                }
                if let Some(user) = online.filter(|_| was_member) {
                    live.tell_open(&presence_changed(room_id, &user, false), None);
                }
            });
        });
    }

    /// Sends a per-user frame (e.g. `read`) to every connection of the
    /// user; returns how many took it.
    pub fn to_user(&self, user_id: i64, frame: &Utf8Bytes) -> usize {
        self.with_user(user_id, |state| {
            state
                .conns
                .iter()
                .filter(|e| e.conn.push(Out::Frame(frame.clone())))
                .count()
        })
        .unwrap_or(0)
    }

    /// The user's membership as the hub knows it (`None` while their first
    /// hello snapshot is loading, or when they have no connection).
    pub fn membership(&self, user_id: i64, room_id: i64) -> Option<(RoomKind, Role)> {
        self.with_user(user_id, |state| state.rooms.get(&room_id).copied())
            .flatten()
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.inner.conns.load(Ordering::Relaxed)
    }

    /// Number of rooms with a live list (`chat_live_rooms`).
    pub fn live_rooms(&self) -> usize {
        self.inner.rooms.len()
    }

    /// Number of users with a connection.
    pub fn live_users(&self) -> usize {
        self.inner.users.len()
    }

    /// The distinct sessions open connections were opened with.
    pub fn sessions(&self) -> Vec<[u8; 32]> {
        let mut sessions = HashSet::new();
        for user in self.inner.users.iter() {
            sessions.extend(user.lock().conns.iter().map(|e| *e.conn.session()));
        }
        sessions.into_iter().collect()
    }

    /// Kicks (1008) every connection opened with one of `ended`; returns
    /// how many (sign-out and expiry are rare, so a scan is fine).
    pub fn end_sessions(&self, ended: &HashSet<[u8; 32]>) -> usize {
        let mut closed = 0;
        for user in self.inner.users.iter() {
            for entry in &user.lock().conns {
                if ended.contains(entry.conn.session()) {
                    entry.conn.kick(crate::ws::close::Close::SignedOut);
                    closed += 1;
                }
            }
        }
        closed
    }

    /// Ends the previewing and open state of a connection in a room.
    fn leave_open(&self, conn_id: u64, room_id: i64) {
        self.with_room(room_id, false, |live| {
            live.open.remove(conn_id);
            live.previewers.remove(conn_id);
        });
    }

    fn user_or_new(&self, user_id: i64) -> Arc<UserHub> {
        if let Some(hub) = self.inner.users.get(&user_id) {
            return hub.clone();
        }
        self.inner
            .users
            .entry(user_id)
            .or_insert_with(|| Arc::new(UserHub::new(user_id)))
            .clone()
    }

    /// Runs `f` under the user's lock, if the user has a connection; then
    /// removes the user hub if it has none left.
    fn with_user<R>(&self, user_id: i64, f: impl FnOnce(&mut UserState) -> R) -> Option<R> {
        loop {
            let hub = self.inner.users.get(&user_id)?.clone();
            let mut state = hub.lock();
            if state.dead {
                continue;
            }
            let out = f(&mut state);
            let empty = state.conns.is_empty();
            drop(state);
            if empty {
                self.inner.users.remove_if(&user_id, |_, hub| {
                    let mut state = hub.lock();
                    let gone = state.conns.is_empty() && !state.dead;
                    state.dead |= gone;
                    gone
                });
            }
            return Some(out);
        }
    }

    /// Runs `f` under the room's lock (creating the room hub if `create`,
    /// else only if it exists); then removes the room hub if its lists are
    /// empty.
    fn with_room<R>(
        &self,
        room_id: i64,
        create: bool,
        f: impl FnOnce(&mut Live) -> R,
    ) -> Option<R> {
        loop {
            let room = match self.inner.rooms.get(&room_id) {
                Some(room) => room.clone(),
                None if create => self
                    .inner
                    .rooms
                    .entry(room_id)
                    .or_insert_with(|| Arc::new(RoomHub::new(room_id)))
                    .clone(),
                None => return None,
            };
            let mut live = room.lock();
            if live.dead {
                continue;
            }
            let out = f(&mut live);
            let empty = live.is_empty();
            drop(live);
            if empty {
                self.inner.rooms.remove_if(&room_id, |_, room| {
                    let mut live = room.lock();
                    let gone = live.is_empty() && !live.dead;
                    live.dead |= gone;
                    gone
                });
            }
            return Some(out);
        }
    }
}

/// A `presence_changed` frame.
fn presence_changed(room_id: i64, user: &UserInfo, online: bool) -> Utf8Bytes {
    encode(&ServerFrame::PresenceChanged {
        room_id,
        user: user.clone(),
        online,
    })
}

/// Locks a hub mutex. A panic while holding one would be a bug in a few
/// lines of list edits; the lists stay usable, so serving goes on.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::close::Close;
    use app::protocol::{
        v2::{MAX_OPEN, PRESENCE_SNAPSHOT, PROTOCOL_VERSION},
        Me,
    };
    use futures::FutureExt;

    type Rx = mpsc::Receiver<Out>;

    /// What a connection's writer would be handed, decoded for comparing.
    /// (Test-only and short-lived: unboxed so tests can match on frames.)
    #[allow(clippy::large_enum_variant)]
    #[derive(Debug, PartialEq)]
    enum Seen {
        Frame(ServerFrame),
        Event(i64, i64),
        Replay(i64, i64),
    }

    fn seen(rx: &mut Rx) -> Vec<Seen> {
        let mut seen = Vec::new();
        while let Ok(out) = rx.try_recv() {
            seen.push(match out {
                Out::Frame(text) => Seen::Frame(serde_json::from_str(text.as_str()).unwrap()),
                Out::Event { room_id, seq, .. } => Seen::Event(room_id, seq),
                Out::Replay { room_id, after } => Seen::Replay(room_id, after),
            });
        }
        seen
    }

    fn user(id: i64, name: &str) -> UserInfo {
        UserInfo {
            id,
            name: name.into(),
            picture: None,
        }
    }

    fn hello(user: &UserInfo) -> Utf8Bytes {
        encode(&ServerFrame::Hello {
            protocol: PROTOCOL_VERSION,
            user: Me {
                id: user.id,
                name: user.name.clone(),
                email: None,
                picture: None,
            },
            rooms: vec![],
            resume_limit: 500,
        })
    }

    fn summary(room_id: i64, last_seq: i64) -> RoomSummary {
        RoomSummary {
            id: room_id,
            kind: RoomKind::Public,
            name: Some(format!("room{room_id}")),
            topic: String::new(),
            last_seq,
            member_count: 1,
            role: Some(Role::Member),
            last_read_seq: last_seq,
            unread: 0,
            mentions: 0,
        }
    }

    fn memberships(rooms: &[i64]) -> Vec<(i64, RoomKind, Role)> {
        rooms
            .iter()
            .map(|&id| (id, RoomKind::Public, Role::Member))
            .collect()
    }

    fn event(text: &str) -> Utf8Bytes {
        Utf8Bytes::from(text.to_owned())
    }

    /// Connected and greeted with `rooms`, not resumed; queue drained.
    fn greeted(hub: &Hub, who: &UserInfo, rooms: &[i64]) -> (Arc<Conn>, Rx) {
        let (conn, mut rx) = hub.connect(who.clone(), [who.id as u8; 32]);
        hub.hello(&conn, memberships(rooms), hello(who)).unwrap();
        assert_eq!(seen(&mut rx).len(), 1, "hello");
        (conn, rx)
    }

    /// Connected, greeted and resumed live (no cursors); queue drained.
    fn online(hub: &Hub, who: &UserInfo, rooms: &[i64]) -> (Arc<Conn>, Rx) {
        let (conn, mut rx) = greeted(hub, who, rooms);
        hub.resume(&conn, &BTreeMap::new()).unwrap();
        seen(&mut rx);
        (conn, rx)
    }

    fn presence_changed(room_id: i64, user: &UserInfo, online: bool) -> Seen {
        Seen::Frame(ServerFrame::PresenceChanged {
            room_id,
            user: user.clone(),
            online,
        })
    }

    fn frame_of(out: Out) -> Utf8Bytes {
        match out {
            Out::Event { frame, .. } => frame,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn events_reach_recipients_and_previewers_sharing_one_buffer() {
        let hub = Hub::new();
        let (ann, bob, cat, dan) = (
            user(1, "Ann"),
            user(2, "Bob"),
            user(3, "Cat"),
            user(4, "Dan"),
        );
        let (_a, mut ann_rx) = online(&hub, &ann, &[1]);
        let (_b, mut bob_rx) = greeted(&hub, &bob, &[1]); // member, not resumed
        let (c, mut cat_rx) = online(&hub, &cat, &[]);
        let (_d, mut dan_rx) = online(&hub, &dan, &[2]);
        let opened = hub.open(&c, 1, None, true).unwrap();
        assert_eq!(
            opened,
            Opened {
                preview: true,
                closed: None
            }
        );
        seen(&mut cat_rx);

        let frame = event(r#"{"type":"event","room_id":1,"seq":5}"#);
        assert_eq!(hub.publish(1, 5, &frame), 2);
        let to_ann = frame_of(ann_rx.try_recv().unwrap());
        let to_cat = frame_of(cat_rx.try_recv().unwrap());
        assert_eq!(to_ann.as_str().as_ptr(), frame.as_str().as_ptr());
        assert_eq!(to_cat.as_str().as_ptr(), frame.as_str().as_ptr());
        assert!(seen(&mut ann_rx).is_empty());
        assert!(seen(&mut cat_rx).is_empty());
        assert!(
            seen(&mut bob_rx).is_empty(),
            "not resumed: no live events yet"
        );
        assert!(seen(&mut dan_rx).is_empty(), "not a member of room 1");

        let rooms = hub.live_rooms();
        assert_eq!(hub.publish(9, 1, &frame), 0);
        assert_eq!(hub.live_rooms(), rooms, "publishing creates no room hub");
    }

    #[test]
    fn a_full_queue_closes_the_connection_with_1013_and_drops_it_from_fan_out() {
        let hub = Hub::with_queue(4);
        let (ann, slo) = (user(1, "Ann"), user(2, "Slo"));
        let (_a, mut ann_rx) = online(&hub, &ann, &[1]);
        let (slow, mut slow_rx) = online(&hub, &slo, &[1]);
        for seq in 1..=4 {
            assert_eq!(hub.publish(1, seq, &event("e")), 2);
            assert_eq!(seen(&mut ann_rx), [Seen::Event(1, seq)]);
        }
        assert!(!slow.is_kicked());
        assert_eq!(hub.publish(1, 5, &event("e")), 1, "slow is full");
        assert_eq!(slow.kick_code(), Some(Close::SlowConsumer));
        assert_eq!(slow.kicked().now_or_never(), Some(Close::SlowConsumer));
        assert_eq!(seen(&mut ann_rx), [Seen::Event(1, 5)], "ann is not held up");
        let queued: Vec<Seen> = (1..=4).map(|seq| Seen::Event(1, seq)).collect();
        assert_eq!(seen(&mut slow_rx), queued);
        // Its queue has room again, but it is out of the room's fan-out.
        assert_eq!(hub.publish(1, 6, &event("e")), 1);
        assert!(seen(&mut slow_rx).is_empty());
        assert_eq!(seen(&mut ann_rx), [Seen::Event(1, 6)]);
    }

    #[test]
    fn a_join_and_a_leave_during_loading_are_applied_after_the_snapshot() {
        let hub = Hub::new();
        let ann = user(1, "Ann");
        let (conn, mut rx) = hub.connect(ann.clone(), [1; 32]);
        // While the hello snapshot is read: a join of 2, a leave of 1.
        hub.member_added(ann.id, &summary(2, 7));
        hub.member_removed(ann.id, 1);
        assert!(seen(&mut rx).is_empty(), "nothing before hello");
        assert_eq!(hub.membership(ann.id, 3), None, "still loading");
        // The snapshot was read before both: rooms 1 and 3.
        hub.hello(&conn, memberships(&[1, 3]), hello(&ann)).unwrap();
        assert_eq!(
            seen(&mut rx)[1..],
            [
                Seen::Frame(ServerFrame::RoomAdded {
                    room: summary(2, 7)
                }),
                Seen::Frame(ServerFrame::RoomRemoved { room_id: 1 }),
            ]
        );
        assert_eq!(hub.membership(ann.id, 1), None);
        assert!(hub.membership(ann.id, 2).is_some());
        assert!(hub.membership(ann.id, 3).is_some());

        // Room 2 has no cursor (its room_added may have come after the
        // client's resume): it replays from the room_added's last_seq.
        let resumed = hub
            .resume(&conn, &BTreeMap::from([(3, 0), (1, 4)]))
            .unwrap();
        assert_eq!(
            resumed,
            Resumed {
                rooms: 2,
                not_member: vec![1]
            }
        );
        let mut markers = seen(&mut rx);
        markers.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(markers, [Seen::Replay(2, 7), Seen::Replay(3, 0)]);
        assert_eq!(hub.publish(1, 5, &event("e")), 0);
        assert_eq!(hub.publish(2, 8, &event("e")), 1);
        assert_eq!(seen(&mut rx), [Seen::Event(2, 8)]);
    }

    #[test]
    fn a_later_connection_of_a_ready_user_keeps_the_current_rooms() {
        let hub = Hub::new();
        let ann = user(1, "Ann");
        let (_first, _rx) = online(&hub, &ann, &[1]);
        hub.member_added(ann.id, &summary(2, 3));
        // A second connection's snapshot read before that join.
        let (second, mut rx) = greeted(&hub, &ann, &[1]);
        assert!(hub.membership(ann.id, 2).is_some());
        hub.resume(&second, &BTreeMap::from([(1, 0)])).unwrap();
        assert_eq!(seen(&mut rx), [Seen::Replay(1, 0)]);
        assert_eq!(hub.publish(2, 4, &event("e")), 2);
        assert_eq!(seen(&mut rx), [Seen::Event(2, 4)]);
    }

    #[test]
    fn presence_changes_on_the_first_and_last_resumed_connection_only() {
        let hub = Hub::new();
        let (ann, wat) = (user(1, "Ann"), user(2, "Wat"));
        let (w, mut w_rx) = online(&hub, &wat, &[1]);
        hub.open(&w, 1, None, true).unwrap();
        assert_eq!(
            seen(&mut w_rx),
            [Seen::Frame(ServerFrame::Presence {
                room_id: 1,
                online: vec![wat.clone()],
                more: 0
            })]
        );

        let (c1, _rx1) = greeted(&hub, &ann, &[1, 2]);
        assert!(seen(&mut w_rx).is_empty(), "greeted is not online");
        hub.resume(&c1, &BTreeMap::new()).unwrap();
        assert_eq!(seen(&mut w_rx), [presence_changed(1, &ann, true)]);
        let (c2, _rx2) = online(&hub, &ann, &[1, 2]);
        assert!(seen(&mut w_rx).is_empty(), "already online");

        hub.open(&w, 1, None, true).unwrap();
        assert_eq!(
            seen(&mut w_rx),
            [Seen::Frame(ServerFrame::Presence {
                room_id: 1,
                online: vec![ann.clone(), wat.clone()],
                more: 0
            })],
            "distinct users, by name"
        );

        hub.disconnect(&c1);
        assert!(seen(&mut w_rx).is_empty(), "still online on c2");
        hub.disconnect(&c2);
        assert_eq!(seen(&mut w_rx), [presence_changed(1, &ann, false)]);
        assert_eq!(hub.live_users(), 1);
        assert_eq!(hub.connections(), 1);
    }

    #[test]
    fn the_presence_snapshot_is_capped_and_counts_the_rest() {
        let hub = Hub::new();
        let extra = 3;
        let everyone: Vec<UserInfo> = (0..PRESENCE_SNAPSHOT as i64 + extra)
            .map(|id| user(id + 10, &format!("user{id:04}")))
            .collect();
        let mut conns: Vec<_> = everyone.iter().map(|u| online(&hub, u, &[1])).collect();
        // A second connection of the first user: users are counted once.
        conns.push(online(&hub, &everyone[0], &[1]));
        let (first, rx) = &mut conns[0];
        hub.open(first, 1, None, true).unwrap();
        let got = seen(rx);
        let [Seen::Frame(ServerFrame::Presence {
            room_id: 1,
            online,
            more,
        })] = &got[..]
        else {
            panic!("expected one presence snapshot, got {got:?}");
        };
        assert_eq!(online.len(), PRESENCE_SNAPSHOT as usize);
        assert_eq!(*more, extra as u32);
        assert_eq!(online[..], everyone[..PRESENCE_SNAPSHOT as usize]);
    }

    #[test]
    fn typing_reaches_only_the_other_connections_with_the_room_open() {
        let hub = Hub::new();
        let (ann, bob, cat, pat) = (
            user(1, "Ann"),
            user(2, "Bob"),
            user(3, "Cat"),
            user(4, "Pat"),
        );
        let (a, mut a_rx) = online(&hub, &ann, &[1]);
        let (b, mut b_rx) = online(&hub, &bob, &[1]);
        let (c, mut c_rx) = online(&hub, &cat, &[1]); // member, room not open
        let (p, mut p_rx) = online(&hub, &pat, &[]); // previews room 1
        for conn in [&a, &b, &p] {
            hub.open(conn, 1, None, true).unwrap();
        }
        for rx in [&mut a_rx, &mut b_rx, &mut p_rx] {
            seen(rx);
        }
        let typing = |who: &UserInfo| {
            vec![Seen::Frame(ServerFrame::Typing {
                room_id: 1,
                user: who.clone(),
            })]
        };

        assert!(hub.typing(&a, 1));
        assert_eq!(seen(&mut b_rx), typing(&ann));
        assert_eq!(seen(&mut p_rx), typing(&ann));
        assert!(seen(&mut a_rx).is_empty(), "not echoed to the typist");
        assert!(seen(&mut c_rx).is_empty(), "room not open");

        assert!(!hub.typing(&c, 1), "cat has not opened room 1");
        assert!(seen(&mut a_rx).is_empty());
        assert!(seen(&mut b_rx).is_empty());

        assert!(hub.close(&b, 1));
        assert!(!hub.close(&b, 1));
        assert!(hub.typing(&a, 1));
        assert!(seen(&mut b_rx).is_empty(), "closed");
        assert_eq!(seen(&mut p_rx), typing(&ann));
    }

    #[test]
    fn opening_beyond_max_open_closes_the_oldest() {
        let hub = Hub::new();
        let (ann, pat) = (user(1, "Ann"), user(2, "Pat"));
        let (a, _a_rx) = online(&hub, &ann, &[1]);
        hub.open(&a, 1, None, true).unwrap();
        let (p, mut p_rx) = online(&hub, &pat, &[]);
        let rooms: Vec<i64> = (1..=MAX_OPEN as i64 + 1).collect();
        for &room in &rooms[..MAX_OPEN] {
            assert_eq!(hub.open(&p, room, None, true).unwrap().closed, None);
        }
        assert_eq!(
            hub.open(&p, rooms[MAX_OPEN], None, true).unwrap(),
            Opened {
                preview: true,
                closed: Some(1)
            }
        );
        assert_eq!(p.open_rooms(), rooms[1..]);
        seen(&mut p_rx);
        assert!(hub.typing(&a, 1));
        assert_eq!(hub.publish(1, 1, &event("e")), 1, "only ann");
        assert!(seen(&mut p_rx).is_empty(), "no typing, no preview events");
        assert_eq!(hub.publish(2, 1, &event("e")), 1);
        assert_eq!(seen(&mut p_rx), [Seen::Event(2, 1)]);
        // Reopening 3 makes it the newest: the next open closes 2.
        hub.open(&p, 3, None, true).unwrap();
        assert_eq!(hub.open(&p, 9, None, true).unwrap().closed, Some(2));
    }

    #[test]
    fn room_hubs_exist_only_while_someone_listens() {
        let hub = Hub::new();
        let (ann, pat) = (user(1, "Ann"), user(2, "Pat"));
        assert_eq!(hub.live_rooms(), 0);
        let (a, _a_rx) = greeted(&hub, &ann, &[1, 2, 3]);
        assert_eq!(hub.live_rooms(), 0, "not resumed yet");
        hub.resume(&a, &BTreeMap::new()).unwrap();
        assert_eq!(hub.live_rooms(), 3);
        let (p, _p_rx) = online(&hub, &pat, &[]);
        hub.open(&p, 4, None, true).unwrap();
        assert_eq!(hub.live_rooms(), 4);
        assert!(hub.close(&p, 4));
        assert_eq!(hub.live_rooms(), 3);
        hub.member_removed(ann.id, 3);
        assert_eq!(hub.live_rooms(), 2);
        hub.open(&p, 1, None, true).unwrap();
        hub.disconnect(&a);
        assert_eq!(hub.live_rooms(), 1, "pat still previews room 1");
        hub.disconnect(&p);
        assert_eq!(hub.live_rooms(), 0);
        assert_eq!(hub.live_users(), 0);
        assert_eq!(hub.connections(), 0);
        // A kicked connection dropped by fan-out takes its room with it.
        let slow_hub = Hub::with_queue(1);
        let (_s, _s_rx) = online(&slow_hub, &ann, &[5]);
        assert_eq!(slow_hub.live_rooms(), 1);
        slow_hub.publish(5, 1, &event("e"));
        slow_hub.publish(5, 2, &event("e"));
        assert_eq!(slow_hub.live_rooms(), 0);
    }

    #[test]
    fn frames_for_the_user_before_hello_follow_it() {
        let hub = Hub::new();
        let ann = user(1, "Ann");
        let (conn, mut rx) = hub.connect(ann.clone(), [1; 32]);
        let read = encode(&ServerFrame::Read {
            room_id: 1,
            last_read_seq: 4,
            unread: 0,
            mentions: 0,
        });
        assert_eq!(hub.to_user(ann.id, &read), 1);
        assert!(seen(&mut rx).is_empty());
        assert_eq!(hub.open(&conn, 1, None, true), Err(HubError::BeforeHello));
        assert_eq!(
            hub.resume(&conn, &BTreeMap::new()),
            Err(HubError::BeforeHello)
        );
        hub.hello(&conn, memberships(&[1]), hello(&ann)).unwrap();
        let got = seen(&mut rx);
        assert!(matches!(got[0], Seen::Frame(ServerFrame::Hello { .. })));
        assert_eq!(
            got[1..],
            [Seen::Frame(serde_json::from_str(read.as_str()).unwrap())]
        );
        for _ in 0..PRE_HELLO + 1 {
            hub.to_user(ann.id, &read);
        }
        assert!(!conn.is_kicked(), "after hello the queue's bound applies");
    }

    #[test]
    fn resume_is_once_and_its_markers_precede_live_events() {
        let hub = Hub::new();
        let ann = user(1, "Ann");
        let (conn, mut rx) = greeted(&hub, &ann, &[1]);
        hub.resume(&conn, &BTreeMap::from([(1, 3)])).unwrap();
        assert_eq!(
            hub.resume(&conn, &BTreeMap::new()),
            Err(HubError::AlreadyResumed)
        );
        hub.publish(1, 4, &event("e"));
        assert_eq!(seen(&mut rx), [Seen::Replay(1, 3), Seen::Event(1, 4)]);
        hub.disconnect(&conn);
        assert_eq!(hub.open(&conn, 1, None, true), Err(HubError::Gone));
        assert_eq!(hub.publish(1, 5, &event("e")), 0);
    }

    #[test]
    fn joining_turns_a_preview_into_membership_and_leaving_ends_both() {
        let hub = Hub::new();
        let (ann, wat) = (user(1, "Ann"), user(2, "Wat"));
        let (w, mut w_rx) = online(&hub, &wat, &[5]);
        hub.open(&w, 5, None, true).unwrap();
        let (c1, mut rx1) = online(&hub, &ann, &[1]);
        let (c2, mut rx2) = greeted(&hub, &ann, &[1]);
        assert!(hub.open(&c1, 5, Some(2), true).unwrap().preview);
        assert!(matches!(
            seen(&mut rx1)[..],
            [
                Seen::Frame(ServerFrame::Presence { .. }),
                Seen::Replay(5, 2)
            ]
        ));
        seen(&mut w_rx);

        hub.member_added(ann.id, &summary(5, 10));
        let added = || {
            Seen::Frame(ServerFrame::RoomAdded {
                room: summary(5, 10),
            })
        };
        // c1 has room 5 open, so it hears of its own user there too.
        assert_eq!(seen(&mut rx1), [added(), presence_changed(5, &ann, true)]);
        assert_eq!(seen(&mut rx2), [added()]);
        assert_eq!(seen(&mut w_rx), [presence_changed(5, &ann, true)]);
        assert_eq!(
            hub.membership(ann.id, 5),
            Some((RoomKind::Public, Role::Member))
        );
        assert_eq!(hub.publish(5, 11, &event("e")), 2, "ann once, wat");
        assert_eq!(seen(&mut rx1), [Seen::Event(5, 11)]);
        assert_eq!(seen(&mut w_rx), [Seen::Event(5, 11)]);
        // c2 resumes without a cursor for 5: it replays from the room_added.
        hub.resume(&c2, &BTreeMap::new()).unwrap();
        assert_eq!(seen(&mut rx2), [Seen::Replay(5, 10)]);

        hub.member_removed(ann.id, 5);
        let removed = || vec![Seen::Frame(ServerFrame::RoomRemoved { room_id: 5 })];
        assert_eq!(seen(&mut rx1), removed());
        assert_eq!(seen(&mut rx2), removed());
        assert_eq!(seen(&mut w_rx), [presence_changed(5, &ann, false)]);
        assert!(!c1.is_open(5), "leaving ends the preview too");
        assert_eq!(hub.publish(5, 12, &event("e")), 1, "wat only");
        assert!(seen(&mut rx1).is_empty());
        assert!(!hub.typing(&c1, 5));
    }

    /// A member who left a room that has no previews (private, DM) between
    /// the caller's rights check and `open` is refused, not made a
    /// previewer: the room's events and presence stay with its members.
    #[test]
    fn a_room_without_previews_is_not_opened_by_someone_who_left_it() {
        let hub = Hub::new();
        let (ann, wat) = (user(1, "Ann"), user(2, "Wat"));
        let (w, mut w_rx) = online(&hub, &wat, &[5]);
        hub.open(&w, 5, None, false).unwrap();
        let (a, mut rx) = online(&hub, &ann, &[5]);
        seen(&mut w_rx);
        seen(&mut rx);
        // The check passed while Ann was a member; the leave lands first.
        hub.member_removed(ann.id, 5);
        seen(&mut rx);
        assert_eq!(hub.open(&a, 5, Some(1), false), Err(HubError::NotMember));
        assert!(!a.is_open(5));
        assert!(seen(&mut rx).is_empty(), "no presence, no replay");
        assert_eq!(hub.publish(5, 9, &event("e")), 1, "wat only");
        assert!(seen(&mut rx).is_empty());
        // A member opens it as before.
        assert!(!hub.open(&w, 5, None, false).unwrap().preview);
    }

    #[test]
    fn ended_sessions_are_kicked_with_1008() {
        let hub = Hub::new();
        let (ann, bob) = (user(1, "Ann"), user(2, "Bob"));
        let (a, _a_rx) = online(&hub, &ann, &[1]);
        let (b, _b_rx) = online(&hub, &bob, &[1]);
        let mut sessions = hub.sessions();
        sessions.sort_unstable();
        assert_eq!(sessions, [[1; 32], [2; 32]]);
        assert_eq!(hub.end_sessions(&HashSet::from([[1; 32]])), 1);
        assert_eq!(a.kick_code(), Some(Close::SignedOut));
        assert!(!b.is_kicked());
    }

    /// Many threads connecting, resuming, opening, publishing and leaving
    /// the same users and rooms at once: when they are done, nothing is
    /// left behind (no lost room or user hub, no connection in a list).
    #[test]
    fn concurrent_churn_leaves_nothing_behind() {
        let hub = Hub::new();
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let hub = hub.clone();
                scope.spawn(move || {
                    for round in 0..300_i64 {
                        let who = user(round % 3, "U");
                        let room = (round + thread) % 5;
                        let (conn, _rx) = hub.connect(who.clone(), [0; 32]);
                        hub.hello(&conn, memberships(&[room, 7]), hello(&who))
                            .unwrap();
                        hub.resume(&conn, &BTreeMap::new()).unwrap();
                        hub.open(&conn, (room + 1) % 5, None, true).unwrap();
                        hub.publish(room, round, &event("e"));
                        if round % 2 == 0 {
                            hub.member_added(who.id, &summary(8, 0));
                        } else {
                            hub.member_removed(who.id, 8);
                        }
                        hub.typing(&conn, (room + 1) % 5);
                        hub.disconnect(&conn);
                    }
                });
            }
        });
        assert_eq!(hub.connections(), 0);
        assert_eq!(hub.live_users(), 0);
        assert_eq!(hub.live_rooms(), 0);
    }
}
