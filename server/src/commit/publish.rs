//! After COMMIT, in batch order: the frames an accepted command makes, then
//! its answer.
//!
//! Until the v2 hub is wired (S9), only `posted` reaches sockets, as the v1
//! `message` frame, to the v1 hub's subscribers of the room. Every other
//! event kind is stored and replayable but published nowhere yet.

use super::{plan::Command, write::Entry, Receipt, Reply};
use crate::{
    hub::{encode, Hub, Out},
    store::RoomRow,
};
use app::protocol::{ApiError, ChatMessage, ServerFrame};

/// Publishes a committed batch and answers its senders.
pub fn publish(
    hub: &Hub,
    entries: Vec<Entry>,
    replies: Vec<Reply>,
    answers: Vec<Result<Receipt, ApiError>>,
) {
    for ((entry, reply), answer) in entries.into_iter().zip(replies).zip(answers) {
        let room = entry.command.room_id().and_then(|id| hub.room_by_id(id));
        match answer {
            Ok(receipt) => {
                // A new room is known to the v1 hub before its creator hears
                // of it, whether or not the creator is still waiting.
                if let (Command::CreateRoom { name, .. }, false) =
                    (&entry.command, receipt.duplicate)
                {
                    hub.add_room(&RoomRow {
                        id: receipt.room_id,
                        name: name.clone(),
                        created_at: receipt.ts,
                        last_seq: receipt.seq.unwrap_or_default(),
                        member_count: 1,
                    });
                }
                if let (Command::Post { body, .. }, false) = (&entry.command, receipt.duplicate) {
                    // Serialised once, into the frame every subscriber shares.
                    if let (Some(room), Some(seq), Some(id)) =
                        (&room, receipt.seq, receipt.message_id)
                    {
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
                match reply {
                    Reply::Socket(conn) => {
                        // A resend is acknowledged as it was stored, in the
                        // room it was stored in.
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
                    Reply::Caller(tx) => {
                        let _ = tx.send(Ok(receipt)); // the caller may have gone
                    }
                }
            }
            Err(error) => match reply {
                Reply::Socket(conn) => {
                    let frame = error.frame(room.map(|r| r.name.to_string()), entry.client_id);
                    conn.push(Out::Frame(encode(&frame)));
                }
                Reply::Caller(tx) => {
                    let _ = tx.send(Err(error)); // the caller may have gone
                }
            },
        }
    }
}
