//! What a connection's writer is handed, and the writer's replay dedupe.

use axum::extract::ws::Utf8Bytes;

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
