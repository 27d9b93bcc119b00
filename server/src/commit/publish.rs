//! After COMMIT, in batch order: the frames an accepted command makes, then
//! its answer.
//!
//! Every event goes to the room's recipients and previewers ([`crate::hub`]),
//! encoded once. A join (or creation) first makes the user's connections
//! recipients (`room_added`), then publishes `member_joined`; a leave
//! publishes `member_left`, then removes them (`room_removed`); a read
//! marker is a per-user `read` frame.

use super::{
    plan::{Command, EventKind as Planned, RoomView},
    write::{Answer, Effects, Entry},
    Receipt, Reply,
};
use crate::hub::{Hub, Out};
use app::protocol::{v2::ServerFrame, Event, EventKind, Message, RoomSummary, UserInfo};
use axum::extract::ws::Utf8Bytes;

/// Publishes a committed batch and answers its senders.
pub fn publish(hub: &Hub, entries: Vec<Entry>, replies: Vec<Reply>, answers: Vec<Answer>) {
    // Read markers go out last: their counts are as of the end of the
    // batch, so they must follow every event of the batch they count.
    let mut reads = Vec::new();
    for ((entry, reply), answer) in entries.into_iter().zip(replies).zip(answers) {
        match answer {
            Ok((receipt, effects)) => {
                if !receipt.duplicate {
                    publish_events(hub, &entry, &receipt, &effects);
                    reads.extend(effects.read);
                }
                answer_ok(entry, reply, receipt);
            }
            Err(error) => match reply {
                Reply::Socket(conn) => {
                    let frame = ServerFrame::error(error, entry.command.room_id(), entry.client_id);
                    conn.push(Out::Frame(Utf8Bytes::from(frame.encode())));
                }
                Reply::Caller(tx) => {
                    let _ = tx.send(Err(error)); // the caller may have gone
                }
            },
        }
    }
    for read in reads {
        let frame = ServerFrame::Read {
            room_id: read.room_id,
            last_read_seq: read.last_read_seq,
            unread: u32::try_from(read.unread).unwrap_or(u32::MAX),
            mentions: u32::try_from(read.mention_count).unwrap_or(u32::MAX),
        };
        hub.to_user(read.user_id, &Utf8Bytes::from(frame.encode()));
    }
}

/// The answer to an accepted (or repeated) command.
fn answer_ok(entry: Entry, reply: Reply, receipt: Receipt) {
    match reply {
        // A read marker (no client_id) is answered by its `read` frame.
        Reply::Socket(_) if entry.client_id.is_none() => {}
        Reply::Socket(conn) => {
            // A resend is acknowledged as it was stored, in the room it was
            // stored in.
            let ack = ServerFrame::Ack {
                client_id: entry.client_id.unwrap_or_default(),
                room_id: receipt.room_id,
                seq: receipt.seq,
                message_id: receipt.message_id,
                ts: receipt.ts,
            };
            conn.push(Out::Frame(Utf8Bytes::from(ack.encode())));
        }
        Reply::Caller(tx) => {
            let _ = tx.send(Ok(receipt)); // the caller may have gone
        }
    }
}

/// The events of one accepted command, in order, with the membership
/// changes they make to the hub's lists.
fn publish_events(hub: &Hub, entry: &Entry, receipt: &Receipt, effects: &Effects) {
    let actor = &entry.actor;
    for (room_id, seq, kind) in &effects.events {
        let (room_id, seq) = (*room_id, *seq);
        if let Planned::MemberJoined { user_id, role, .. } = kind {
            if let Some(view) = &effects.room {
                // Joined up to its own join: the room's events after it
                // reach the member's connections that have not resumed yet
                // by replay from here.
                hub.member_added(*user_id, &summary(room_id, seq, view, *role));
            }
        }
        let event = Event {
            room_id,
            seq,
            ts: receipt.ts,
            kind: render(entry, receipt, kind, actor),
        };
        let frame = Utf8Bytes::from(ServerFrame::Event(event).encode());
        hub.publish(room_id, seq, &frame);
        if let Planned::MemberLeft { user_id } = kind {
            hub.member_removed(*user_id, room_id);
        }
    }
}

/// The room as a member who just joined it sees it: everything up to the
/// join read.
fn summary(room_id: i64, seq: i64, view: &RoomView, role: app::protocol::Role) -> RoomSummary {
    RoomSummary {
        id: room_id,
        kind: view.kind,
        name: view.name.clone(),
        topic: view.topic.clone(),
        last_seq: seq,
        member_count: u32::try_from(view.member_count).unwrap_or(0),
        role: Some(role),
        last_read_seq: seq,
        unread: 0,
        mentions: 0,
    }
}

/// A committed event as the wire shows it. The command's actor is the user
/// every event kind emitted today is about.
fn render(entry: &Entry, receipt: &Receipt, kind: &Planned, actor: &UserInfo) -> EventKind {
    match kind {
        Planned::Posted => {
            let (body, mentions, reply_to) = match &entry.command {
                Command::Post {
                    body,
                    mentions,
                    reply_to,
                    ..
                } => (body.clone(), mentions.clone(), *reply_to),
                _ => Default::default(),
            };
            EventKind::Posted {
                message: Message {
                    id: receipt.message_id.unwrap_or_default(),
                    seq: receipt.seq.unwrap_or_default(),
                    author: actor.clone(),
                    body,
                    ts: receipt.ts,
                    client_id: entry.client_id.clone().unwrap_or_default(),
                    edited_at: None,
                    deleted: false,
                    reply_to,
                    mentions,
                },
            }
        }
        Planned::MemberJoined { role, silent, .. } => EventKind::MemberJoined {
            user: actor.clone(),
            role: *role,
            silent: *silent,
        },
        Planned::MemberLeft { .. } => EventKind::MemberLeft {
            user: actor.clone(),
        },
        Planned::Renamed { name, old_name } => EventKind::Renamed {
            name: name.clone(),
            old_name: old_name.clone().unwrap_or_default(),
            by: actor.clone(),
        },
        Planned::TopicChanged { topic } => EventKind::TopicChanged {
            topic: topic.clone(),
            by: actor.clone(),
        },
    }
}
