//! Rooms, fan-out and presence: who is subscribed where, and getting each
//! event to them.
//!
//! Every room is independent: its subscribers, presence and last delivered
//! `seq` sit behind its own short `std::sync::Mutex`, never held across an
//! `.await` (every operation under it is a `try_send` into a bounded queue),
//! so rooms never contend with one another and no global lock is on the
//! delivery path. The room and connection maps are sharded (`DashMap`).
//!
//! An event is serialised once and shared by every recipient (`Utf8Bytes` is
//! reference-counted). Each connection has a bounded queue; a connection
//! whose queue is full is dropped from live fan-out and closed with a reason
//! (1013), and resumes from the store when it reconnects.

pub mod v2;

use crate::{
    metrics::{self, METRICS},
    store::RoomRow,
    ws::Close,
};
use app::protocol::{room_key, Me, RoomInfo, ServerFrame, SystemEvent, UserInfo, PROTOCOL_VERSION};
use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU16, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};
use tokio::sync::{mpsc, Notify};

/// Frames a connection may have queued before it counts as too slow.
pub const CONN_QUEUE: usize = 1024;

/// Serialises a frame once, for sharing among recipients.
pub fn encode(frame: &ServerFrame) -> Utf8Bytes {
    // Serialising these plain structs cannot fail.
    Utf8Bytes::from(serde_json::to_string(frame).unwrap_or_default())
}

/// What a connection's writer is asked to send.
#[derive(Debug)]
pub enum Out {
    /// A serialised frame.
    Frame(Utf8Bytes),
    /// Replay `after < seq <= upto` of `room` from the store. Queued under
    /// the room's lock when subscribing, so it sits before every live frame
    /// of that room (whose seqs are all above `upto`): no gap, no duplicate.
    Replay {
        room: Arc<Room>,
        after: i64,
        upto: i64,
    },
}

/// One WebSocket connection as the hub sees it.
#[derive(Debug)]
pub struct Conn {
    pub id: u64,
    /// The user as others see them: presence, typing and notices are made
    /// from this, and it has no email to leak.
    pub user: UserInfo,
    /// Hash of the session token the connection was opened with.
    session: [u8; 32],
    tx: mpsc::Sender<Out>,
    kicked: Notify,
    /// Wire code of the first kick's [`Close`] (0: none yet).
    kick_code: AtomicU16,
}

impl Conn {
    /// Queues a frame without waiting. A full queue means the client is not
    /// reading: it is closed as a slow consumer rather than stalling anyone.
    pub fn push(&self, out: Out) -> bool {
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::add(&METRICS.slow_consumer_drops, 1);
                self.kick(Close::SlowConsumer);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a reply to this connection's own request, waiting for room.
    pub async fn reply(&self, frame: &ServerFrame) {
        // A closed queue means the writer is gone and the connection closing.
        let _ = self.tx.send(Out::Frame(encode(frame))).await;
    }

    /// Asks the writer to close the socket with `close`. The first kick wins.
    pub fn kick(&self, close: Close) {
        if self
            .kick_code
            .compare_exchange(0, close.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.kicked.notify_one();
        }
    }

    /// Whether the connection has been asked to close.
    pub fn is_kicked(&self) -> bool {
        self.kick_code.load(Ordering::Acquire) != 0
    }

    /// Resolves once the connection has been kicked; returns its close.
    pub async fn kicked(&self) -> Close {
        self.kicked.notified().await;
        // Only `kick` stores a code, and it stores a `Close`'s.
        Close::from_code(self.kick_code.load(Ordering::Acquire)).unwrap_or(Close::Normal)
    }
}

/// A room's live state.
#[derive(Debug)]
pub struct Room {
    pub id: i64,
    pub name: Arc<str>,
    pub created_at: i64,
    live: Mutex<Live>,
}

#[derive(Debug, Default)]
struct Live {
    /// Highest `seq` delivered live (or known committed when loaded).
    last_seq: i64,
    subs: Vec<Arc<Conn>>,
    /// Online users and how many of their connections are subscribed.
    online: HashMap<i64, (UserInfo, u32)>,
}

impl Live {
    /// Online users, by name then id.
    fn online_users(&self) -> Vec<UserInfo> {
        let mut users: Vec<UserInfo> = self.online.values().map(|(u, _)| u.clone()).collect();
        users.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        users
    }
}

impl Room {
    fn new(row: &RoomRow) -> Self {
        Self {
            id: row.id,
            name: row.name.as_str().into(),
            created_at: row.created_at,
            live: Mutex::new(Live {
                last_seq: row.last_seq,
                ..Live::default()
            }),
        }
    }

    pub fn info(&self) -> RoomInfo {
        RoomInfo {
            name: self.name.to_string(),
            created_at: self.created_at,
        }
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        // A panic while holding this lock would be a bug in the few lines
        // below; the state stays consistent enough to keep serving.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Users online in the room.
    pub fn online(&self) -> Vec<UserInfo> {
        self.live().online_users()
    }

    /// Sends a shared frame to every subscriber; drops the ones too slow to take it.
    fn deliver(live: &mut Live, frame: &Utf8Bytes) {
        live.subs
            .retain(|conn| conn.push(Out::Frame(frame.clone())));
        metrics::add(&METRICS.deliveries, live.subs.len() as u64);
    }
}

/// The hub: a cheap `Clone` handle.
#[derive(Debug, Clone, Default)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Rooms by case-folded name.
    rooms: DashMap<String, Arc<Room>>,
    /// The same rooms by id, for the committer, which knows ids only.
    by_id: DashMap<i64, Arc<Room>>,
    conns: DashMap<u64, Arc<Conn>>,
    next_conn: AtomicU64,
}

impl Hub {
    /// A hub knowing `rooms`.
    pub fn new(rooms: &[RoomRow]) -> Self {
        let hub = Self::default();
        for row in rooms {
            let room = Arc::new(Room::new(row));
            hub.inner.by_id.insert(row.id, room.clone());
            hub.inner.rooms.insert(room_key(&row.name), room);
        }
        hub
    }

    /// Adds a new room and announces it to every connection.
    pub fn add_room(&self, row: &RoomRow) -> Arc<Room> {
        let room = Arc::new(Room::new(row));
        self.inner.rooms.insert(room_key(&row.name), room.clone());
        self.inner.by_id.insert(row.id, room.clone());
        let frame = encode(&ServerFrame::Rooms {
            rooms: vec![room.info()],
        });
        for conn in self.inner.conns.iter() {
            conn.push(Out::Frame(frame.clone()));
        }
        room
    }

    /// The room called `name` (ignoring case).
    pub fn room(&self, name: &str) -> Option<Arc<Room>> {
        self.inner.rooms.get(&room_key(name)).map(|r| r.clone())
    }

    /// The room with this id.
    pub fn room_by_id(&self, id: i64) -> Option<Arc<Room>> {
        self.inner.by_id.get(&id).map(|r| r.clone())
    }

    /// Every room, oldest first.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<(i64, i64, RoomInfo)> = self
            .inner
            .rooms
            .iter()
            .map(|r| (r.created_at, r.id, r.info()))
            .collect();
        rooms.sort_by_key(|(created, id, _)| (*created, *id));
        rooms.into_iter().map(|(_, _, info)| info).collect()
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.inner.conns.len()
    }

    /// Registers a connection of `me`; returns it and the queue its writer
    /// drains. Only the `hello` sees `me` whole; the hub keeps the public view.
    pub fn connect(&self, me: Me, session: [u8; 32]) -> (Arc<Conn>, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        let conn = Arc::new(Conn {
            id: self.inner.next_conn.fetch_add(1, Ordering::Relaxed),
            user: me.public(),
            session,
            tx,
            kicked: Notify::new(),
            kick_code: AtomicU16::new(0),
        });
        // `hello` goes first: queue it before anyone can see the connection.
        conn.push(Out::Frame(encode(&ServerFrame::Hello {
            protocol: PROTOCOL_VERSION,
            user: me,
        })));
        self.inner.conns.insert(conn.id, conn.clone());
        metrics::add(&METRICS.connections_opened, 1);
        (conn, rx)
    }

    /// Closes every connection opened with the session whose token hashes to
    /// `session` (sign-out is rare, so a scan is fine).
    pub fn end_session(&self, session: &[u8; 32]) {
        self.end_sessions(&HashSet::from([*session]));
    }

    /// The distinct sessions open connections were opened with.
    pub fn sessions(&self) -> Vec<[u8; 32]> {
        let sessions: HashSet<[u8; 32]> = self.inner.conns.iter().map(|c| c.session).collect();
        sessions.into_iter().collect()
    }

    /// Closes every connection opened with one of `ended`; returns how many.
    pub fn end_sessions(&self, ended: &HashSet<[u8; 32]>) -> usize {
        let mut closed = 0;
        for conn in self
            .inner
            .conns
            .iter()
            .filter(|c| ended.contains(&c.session))
        {
            conn.kick(Close::SignedOut);
            closed += 1;
        }
        closed
    }

    /// Forgets a connection (after it has unsubscribed from its rooms).
    pub fn disconnect(&self, conn: &Conn) {
        self.inner.conns.remove(&conn.id);
    }

    /// Subscribes `conn` to `room`, replaying `seq > since` first when asked
    /// (subscribing again only replays and resends presence).
    /// The new subscriber gets the room's presence; the room hears that the
    /// user joined if this is their first connection in it.
    ///
    /// `again` says whether this connection already holds a subscription
    /// (counted in presence): the caller knows, even when fan-out has since
    /// dropped the connection as too slow.
    pub fn subscribe(&self, room: &Arc<Room>, conn: &Arc<Conn>, since: Option<i64>, again: bool) {
        let mut live = room.live();
        if !live.subs.iter().any(|c| c.id == conn.id) {
            live.subs.push(conn.clone());
        }
        let resubscribe = again;
        if let Some(since) = since {
            let after = since.max(0);
            if after < live.last_seq {
                conn.push(Out::Replay {
                    room: room.clone(),
                    after,
                    upto: live.last_seq,
                });
            }
        }
        let entry = live
            .online
            .entry(conn.user.id)
            .or_insert_with(|| (conn.user.clone(), 0));
        if !resubscribe {
            entry.1 += 1;
        }
        let first = entry.1 == 1 && !resubscribe;
        conn.push(Out::Frame(encode(&ServerFrame::Presence {
            room: room.name.to_string(),
            users: live.online_users(),
        })));
        if first {
            let frame = encode(&ServerFrame::System {
                room: room.name.to_string(),
                event: SystemEvent::Joined,
                user: conn.user.clone(),
                ts: crate::now_ms(),
            });
            Room::deliver(&mut live, &frame);
        }
    }

    /// Removes `conn` from `room`; the room hears that the user left if this
    /// was their last connection in it. Call once per `subscribe`.
    pub fn unsubscribe(&self, room: &Room, conn: &Conn) {
        let mut live = room.live();
        live.subs.retain(|c| c.id != conn.id);
        let gone = match live.online.get_mut(&conn.user.id) {
            Some(entry) => {
                entry.1 = entry.1.saturating_sub(1);
                entry.1 == 0
            }
            None => false,
        };
        if gone {
            live.online.remove(&conn.user.id);
            let frame = encode(&ServerFrame::System {
                room: room.name.to_string(),
                event: SystemEvent::Left,
                user: conn.user.clone(),
                ts: crate::now_ms(),
            });
            Room::deliver(&mut live, &frame);
        }
    }

    /// Delivers a committed message. Called by the committer in commit
    /// order, so every subscriber sees a room's messages in `seq` order.
    pub fn publish(&self, room: &Room, seq: i64, frame: &Utf8Bytes) {
        let mut live = room.live();
        if seq <= live.last_seq {
            return; // already covered by a subscriber's replay
        }
        live.last_seq = seq;
        Room::deliver(&mut live, frame);
    }

    /// Sends a transient frame (e.g. typing) to a room's subscribers.
    pub fn relay(&self, room: &Room, frame: &ServerFrame) {
        let frame = encode(frame);
        Room::deliver(&mut room.live(), &frame);
    }
}
