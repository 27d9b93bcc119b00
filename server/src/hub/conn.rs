//! One connection as the hub sees it: its bounded queue, the rooms it has
//! open, the pre-hello buffer and the kick that closes it.

use super::lock;
use crate::{
    metrics::{self, METRICS},
    ws::close::Close,
};
use app::protocol::{v2::MAX_OPEN, UserInfo};
use axum::extract::ws::Utf8Bytes;
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU16, Ordering},
        Mutex,
    },
};
use tokio::sync::{mpsc, Notify};

/// Frames a connection may have queued before it counts as too slow (a
/// burst of 1024 frames is far beyond what a reading client lets pile up).
pub const CONN_QUEUE: usize = 1024;

/// Per-user frames held for a connection whose `hello` is not sent yet; one
/// more closes it with 1013. `hello` follows one snapshot read, so only
/// what happens during that read lands here.
pub const PRE_HELLO: usize = 64;

/// What a connection's writer is asked to send.
#[derive(Debug)]
pub enum Out {
    /// A frame for this connection alone, or a per-user or per-open-room one.
    Frame(Utf8Bytes),
    /// A live event of `room_id`: the writer drops it when a replay already
    /// sent `seq` (see [`super::Dedupe`]).
    Event {
        room_id: i64,
        seq: i64,
        frame: Utf8Bytes,
    },
    /// Replay `room_id`'s events after `after` from the store, at most N
    /// (else `gap`). Queued under the room's lock as the connection becomes
    /// a recipient, so it sits before every live event the hub queues for
    /// that room afterwards.
    Replay { room_id: i64, after: i64 },
}

/// One WebSocket connection.
#[derive(Debug)]
pub struct Conn {
    pub id: u64,
    /// The user as others see them (no email): presence and typing are
    /// made from this.
    pub user: UserInfo,
    /// Hash of the session token the connection was opened with.
    session: [u8; 32],
    tx: mpsc::Sender<Out>,
    /// Set once `hello` is queued; until then frames wait in `early`.
    /// Checked before `early` is locked, so the hot path pays one load.
    greeted: AtomicBool,
    early: Mutex<Vec<Out>>,
    /// Rooms open on this connection, oldest first (at most [`MAX_OPEN`]).
    /// Changed only under the user's lock; locked on its own briefly, never
    /// while taking another lock.
    open: Mutex<VecDeque<i64>>,
    kicked: Notify,
    /// Close code of the first kick (0: none yet).
    kick_code: AtomicU16,
}

impl Conn {
    /// A connection with a queue of `capacity`; the receiver is the writer's.
    pub(super) fn new(
        id: u64,
        user: UserInfo,
        session: [u8; 32],
        capacity: usize,
    ) -> (Self, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let conn = Self {
            id,
            user,
            session,
            tx,
            greeted: AtomicBool::new(false),
            early: Mutex::new(Vec::new()),
            open: Mutex::new(VecDeque::new()),
            kicked: Notify::new(),
            kick_code: AtomicU16::new(0),
        };
        (conn, rx)
    }

    /// Hash of the session token this connection was opened with.
    pub fn session(&self) -> &[u8; 32] {
        &self.session
    }

    /// Queues without waiting. A full queue means the client is not
    /// reading: it is kicked with 1013 (slow consumer) rather than stalling
    /// anyone, and `false` tells fan-out to drop it from its lists.
    pub fn push(&self, out: Out) -> bool {
        if !self.greeted.load(Ordering::Acquire) {
            let mut early = lock(&self.early);
            // `hello` may have flushed the buffer since the load above.
            if !self.greeted.load(Ordering::Acquire) {
                if early.len() >= PRE_HELLO {
                    self.too_slow();
                    return false;
                }
                early.push(out);
                return true;
            }
        }
        self.send_now(out)
    }

    fn send_now(&self, out: Out) -> bool {
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.too_slow();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Kicks the connection with 1013, counting it once: until it is gone,
    /// its other lists (its open rooms' presence, its user's frames) can
    /// find the queue full again.
    fn too_slow(&self) {
        if self.kick_first(Close::SlowConsumer) {
            metrics::add(&METRICS.slow_consumer_drops, 1);
        }
    }

    /// Queues a reply to this connection's own request, waiting for room
    /// (the reader slows down rather than the connection being kicked).
    pub async fn reply(&self, frame: Utf8Bytes) {
        if !self.greeted.load(Ordering::Acquire) {
            // Before `hello`: the bounded buffer, never an await under its lock.
            self.push(Out::Frame(frame));
            return;
        }
        // A closed queue means the writer is gone and the connection closing.
        let _ = self.tx.send(Out::Frame(frame)).await;
    }

    /// Queues `hello`, then everything that waited for it, in order.
    /// Under the buffer's lock, so no frame can slip between them.
    pub(super) fn greet(&self, hello: Utf8Bytes) {
        let mut early = lock(&self.early);
        if self.greeted.load(Ordering::Acquire) {
            return;
        }
        // `greeted` is set only after the flush: a push that sees it set
        // must not overtake the frames still being moved to the queue.
        let waiting = std::mem::take(&mut *early);
        if self.send_now(Out::Frame(hello)) {
            for out in waiting {
                if !self.send_now(out) {
                    break;
                }
            }
        }
        self.greeted.store(true, Ordering::Release);
    }

    /// Whether `hello` has been queued.
    pub fn greeted(&self) -> bool {
        self.greeted.load(Ordering::Acquire)
    }

    /// Asks the writer to close the socket with `close`. The first kick wins.
    pub fn kick(&self, close: Close) {
        self.kick_first(close);
    }

    /// [`Conn::kick`]; `true` when this kick was the first.
    fn kick_first(&self, close: Close) -> bool {
        let first = self
            .kick_code
            .compare_exchange(0, close.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            self.kicked.notify_one();
        }
        first
    }

    /// The close code the connection was kicked with, if it was.
    pub fn kick_code(&self) -> Option<Close> {
        // Only `kick` stores a code, and it stores a `Close`'s.
        Close::from_code(self.kick_code.load(Ordering::Acquire))
    }

    /// Whether the connection has been asked to close.
    pub fn is_kicked(&self) -> bool {
        self.kick_code().is_some()
    }

    /// Resolves once the connection has been kicked; returns the close code.
    pub async fn kicked(&self) -> Close {
        self.kicked.notified().await;
        self.kick_code().unwrap_or(Close::Normal)
    }

    /// Whether `room_id` is open on this connection.
    pub fn is_open(&self, room_id: i64) -> bool {
        lock(&self.open).contains(&room_id)
    }

    /// The rooms open on this connection, oldest first.
    pub fn open_rooms(&self) -> Vec<i64> {
        lock(&self.open).iter().copied().collect()
    }

    /// Marks `room_id` open (newest); returns the room closed to stay within
    /// [`MAX_OPEN`], if any. Opening an open room makes it the newest.
    pub(super) fn mark_open(&self, room_id: i64) -> Option<i64> {
        let mut open = lock(&self.open);
        open.retain(|&r| r != room_id);
        open.push_back(room_id);
        if open.len() > MAX_OPEN {
            open.pop_front()
        } else {
            None
        }
    }

    /// Marks `room_id` closed; returns whether it was open.
    pub(super) fn mark_closed(&self, room_id: i64) -> bool {
        let mut open = lock(&self.open);
        let before = open.len();
        open.retain(|&r| r != room_id);
        open.len() != before
    }

    /// Closes every room; returns them.
    pub(super) fn close_all(&self) -> Vec<i64> {
        std::mem::take(&mut *lock(&self.open)).into()
    }
}

/// The writer's side of a replay: after replaying a room up to `upto`, the
/// live events of that room queued behind the `Replay` marker with
/// `seq <= upto` were already sent (or skipped by a `gap`) and are dropped.
///
/// The hub queues a room's live events in seq order, so once one above
/// `upto` arrives no later one can be at or below it, and the entry goes:
/// the list is empty while the connection is simply live, and holds at most
/// one entry per room replaying.
#[derive(Debug, Default)]
pub struct Dedupe {
    upto: Vec<(i64, i64)>,
}

impl Dedupe {
    /// Records that `room_id` has been sent up to `upto`: the larger of the
    /// replay's `after` and the last seq it sent (or the `gap`'s `last_seq`).
    pub fn replayed(&mut self, room_id: i64, upto: i64) {
        match self.upto.iter_mut().find(|(room, _)| *room == room_id) {
            Some((_, at)) => *at = (*at).max(upto),
            None => self.upto.push((room_id, upto)),
        }
    }

    /// Whether a live event of `room_id` with `seq` should be sent. The
    /// first one above the room's cursor ends the room's entry.
    pub fn keep(&mut self, room_id: i64, seq: i64) -> bool {
        let Some(at) = self.upto.iter().position(|(room, _)| *room == room_id) else {
            return true;
        };
        if seq <= self.upto[at].1 {
            return false;
        }
        self.upto.swap_remove(at);
        if self.upto.is_empty() {
            // Give the memory back: an idle connection keeps no buffer.
            self.upto = Vec::new();
        }
        true
    }

    /// Rooms still deduplicating.
    pub fn len(&self) -> usize {
        self.upto.len()
    }

    /// Whether no room is deduplicating (the connection is simply live).
    pub fn is_empty(&self) -> bool {
        self.upto.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn frame(text: &'static str) -> Out {
        Out::Frame(Utf8Bytes::from_static(text))
    }

    fn texts(rx: &mut mpsc::Receiver<Out>) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(out) = rx.try_recv() {
            match out {
                Out::Frame(text) => seen.push(text.as_str().to_owned()),
                other => seen.push(format!("{other:?}")),
            }
        }
        seen
    }

    fn conn(capacity: usize) -> (Conn, mpsc::Receiver<Out>) {
        Conn::new(1, UserInfo::default(), [0; 32], capacity)
    }

    #[test]
    fn frames_before_hello_wait_for_it_and_keep_their_order() {
        let (conn, mut rx) = conn(8);
        assert!(conn.push(frame("a")));
        assert!(conn.push(frame("b")));
        assert!(texts(&mut rx).is_empty(), "nothing may precede hello");
        conn.greet(Utf8Bytes::from_static("hello"));
        assert!(conn.push(frame("c")));
        assert_eq!(texts(&mut rx), ["hello", "a", "b", "c"]);
        // A second hello is ignored.
        conn.greet(Utf8Bytes::from_static("hello"));
        assert!(texts(&mut rx).is_empty());
        assert!(!conn.is_kicked());
    }

    #[test]
    fn the_pre_hello_buffer_is_bounded_and_overflow_is_1013() {
        let (conn, _rx) = conn(CONN_QUEUE);
        for _ in 0..PRE_HELLO {
            assert!(conn.push(frame("x")));
        }
        assert!(!conn.is_kicked());
        assert!(!conn.push(frame("one too many")));
        assert_eq!(conn.kick_code(), Some(Close::SlowConsumer));
        assert_eq!(conn.kicked().now_or_never(), Some(Close::SlowConsumer));
    }

    #[test]
    fn a_full_queue_kicks_with_1013_and_the_first_kick_wins() {
        let (conn, mut rx) = conn(2);
        conn.greet(Utf8Bytes::from_static("hello"));
        assert!(conn.push(frame("a")));
        assert!(!conn.push(frame("b")), "queue of 2 holds hello and a");
        assert_eq!(conn.kick_code(), Some(Close::SlowConsumer));
        conn.kick(Close::SignedOut);
        assert_eq!(conn.kick_code(), Some(Close::SlowConsumer));
        assert_eq!(texts(&mut rx), ["hello", "a"]);
    }

    #[test]
    fn a_closed_queue_is_not_a_slow_consumer() {
        let (conn, rx) = conn(2);
        conn.greet(Utf8Bytes::from_static("hello"));
        drop(rx);
        assert!(!conn.push(frame("a")));
        assert!(!conn.is_kicked());
    }

    #[test]
    fn open_rooms_keep_the_newest_max_open() {
        let (conn, _rx) = conn(2);
        for room in 1..=MAX_OPEN as i64 {
            assert_eq!(conn.mark_open(room), None);
        }
        // Reopening 1 makes it the newest, so 2 is the oldest now.
        assert_eq!(conn.mark_open(1), None);
        assert_eq!(conn.mark_open(9), Some(2));
        assert_eq!(conn.open_rooms(), [3, 4, 1, 9]);
        assert!(conn.mark_closed(4));
        assert!(!conn.mark_closed(4));
        assert_eq!(conn.close_all(), [3, 1, 9]);
        assert!(conn.open_rooms().is_empty());
    }

    #[test]
    fn dedupe_drops_what_the_replay_sent_and_prunes_at_the_first_live_event_above() {
        let mut dedupe = Dedupe::default();
        assert!(dedupe.keep(7, 1), "no replay: everything is live");
        dedupe.replayed(7, 10);
        dedupe.replayed(8, 3);
        assert_eq!(dedupe.len(), 2);
        assert!(!dedupe.keep(7, 9));
        assert!(!dedupe.keep(7, 10));
        assert!(dedupe.keep(8, 4), "another room's cursor is its own");
        assert_eq!(
            dedupe.len(),
            1,
            "room 8 pruned at its first live event above"
        );
        assert!(dedupe.keep(7, 11));
        assert!(dedupe.is_empty());
        assert_eq!(
            dedupe.upto.capacity(),
            0,
            "a live connection keeps no buffer"
        );
        // Pruned: the room is simply live again.
        assert!(dedupe.keep(7, 12));
    }

    #[test]
    fn dedupe_keeps_the_furthest_cursor_of_two_replays() {
        let mut dedupe = Dedupe::default();
        dedupe.replayed(7, 10);
        dedupe.replayed(7, 4);
        assert_eq!(dedupe.len(), 1);
        assert!(!dedupe.keep(7, 10));
        dedupe.replayed(7, 12);
        assert!(!dedupe.keep(7, 12));
        assert!(dedupe.keep(7, 13));
        assert!(dedupe.is_empty());
    }
}
