//! After COMMIT, in batch order: the frames an accepted command makes, then
//! its answer.
//!
//! Protocol v2 (`hub::v2`): every event goes to the room's recipients and
//! previewers, encoded once. A join (or creation) first makes the user's
//! connections recipients (`room_added`), then publishes `member_joined`; a
//! leave publishes `member_left`, then removes them (`room_removed`); a read
//! marker is a per-user `read` frame.
//!
//! Protocol v1 (until S13): only `posted` reaches sockets, as the v1
//! `message` frame, to the v1 hub's subscribers of the room; a created room
//! is added to the v1 hub's list.

use super::{
    plan::{Command, EventKind as Planned, RoomView},
    write::{Answer, Effects, Entry},
    Receipt, Reply,
};
use crate::{
    hub::{encode, v2, Hub, Out},
    store::RoomRow,
};
use app::protocol::{
    v2::ServerFrame as Frame2, ChatMessage, Event, EventKind, Message, RoomSummary, ServerFrame,
    UserInfo,
};
use axum::extract::ws::Utf8Bytes;

/// Publishes a committed batch and answers its senders.
pub fn publish(
    hub: &Hub,
    hub2: &v2::Hub,
    entries: Vec<Entry>,
    replies: Vec<Reply>,
    answers: Vec<Answer>,
) {
    // Read markers go out last: their counts are as of the end of the
    // batch, so they must follow every event of the batch they count.
    let mut reads = Vec::new();
    for ((entry, reply), answer) in entries.into_iter().zip(replies).zip(answers) {
        match answer {
            Ok((receipt, effects)) => {
                if !receipt.duplicate {
                    publish_v1(hub, &entry, &receipt);
                    publish_v2(hub2, &entry, &receipt, &effects);
                    reads.extend(effects.read);
                }
                answer_ok(hub, entry, reply, receipt);
            }
            Err(error) => match reply {
                Reply::Socket(conn) => {
                    let room = entry.command.room_id().and_then(|id| hub.room_by_id(id));
                    let frame = error.frame(room.map(|r| r.name.to_string()), entry.client_id);
                    conn.push(Out::Frame(encode(&frame)));
                }
                Reply::Socket2(conn) => {
                    let frame = Frame2::error(error, entry.command.room_id(), entry.client_id);
                    conn.push(v2::Out::Frame(Utf8Bytes::from(frame.encode())));
                }
                Reply::Caller(tx) => {
                    let _ = tx.send(Err(error)); // the caller may have gone
                }
            },
        }
    }
    for read in reads {
        let frame = Frame2::Read {
            room_id: read.room_id,
            last_read_seq: read.last_read_seq,
            unread: u32::try_from(read.unread).unwrap_or(u32::MAX),
            mentions: u32::try_from(read.mention_count).unwrap_or(u32::MAX),
        };
        hub2.to_user(read.user_id, &Utf8Bytes::from(frame.encode()));
    }
}

/// The answer to an accepted (or repeated) command.
fn answer_ok(hub: &Hub, entry: Entry, reply: Reply, receipt: Receipt) {
    match reply {
        Reply::Socket(conn) => {
            // A resend is acknowledged as it was stored, in the room it was
            // stored in.
            let stored_in = hub
                .room_by_id(receipt.room_id)
                .map(|r| r.name.to_string())
                .unwrap_or_default();
            let ack = encode(&ServerFrame::Ack {
                room: stored_in,
                client_id: entry.client_id.unwrap_or_default(),
                seq: receipt.seq.unwrap_or_default(),
                id: receipt.message_id.unwrap_or_default(),
                ts: receipt.ts,
            });
            conn.push(Out::Frame(ack));
        }
        // A read marker (no client_id) is answered by its `read` frame.
        Reply::Socket2(_) if entry.client_id.is_none() => {}
        Reply::Socket2(conn) => {
            let ack = Frame2::Ack {
                client_id: entry.client_id.unwrap_or_default(),
                room_id: receipt.room_id,
                seq: receipt.seq,
                message_id: receipt.message_id,
                ts: receipt.ts,
            };
            conn.push(v2::Out::Frame(Utf8Bytes::from(ack.encode())));
        }
        Reply::Caller(tx) => {
            let _ = tx.send(Ok(receipt)); // the caller may have gone
        }
    }
}

fn publish_v1(hub: &Hub, entry: &Entry, receipt: &Receipt) {
    match &entry.command {
        // A new room is known to the v1 hub before its creator hears of it,
        // whether or not the creator is still waiting.
        Command::CreateRoom { name, .. } => {
            hub.add_room(&RoomRow {
                id: receipt.room_id,
                name: name.clone(),
                created_at: receipt.ts,
                last_seq: receipt.seq.unwrap_or_default(),
                member_count: 1,
            });
        }
        Command::Post { body, .. } => {
            let room = hub.room_by_id(receipt.room_id);
            if let (Some(room), Some(seq), Some(id)) = (&room, receipt.seq, receipt.message_id) {
                // Serialised once, into the frame every subscriber shares.
                let frame = encode(&ServerFrame::Message(ChatMessage {
                    room: room.name.to_string(),
                    seq,
                    id,
                    author: entry.actor.clone(),
                    body: body.clone(),
                    ts: receipt.ts,
                    client_id: entry.client_id.clone().unwrap_or_default(),
                }));
                hub.publish(room, seq, &frame);
            }
        }
        _ => {}
    }
}

fn publish_v2(hub: &v2::Hub, entry: &Entry, receipt: &Receipt, effects: &Effects) {
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
        let frame = Utf8Bytes::from(Frame2::Event(event).encode());
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
