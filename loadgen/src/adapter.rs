//! What differs between the servers benchmarked: the upgrade path and
//! headers, how a client joins a room, and the frame that sends a message.
//! Everything else (connections, schedule, accounting) is shared.
//!
//! The project speaks protocol v2 (`docs/protocol.md`): its clients are
//! members of their room before they connect (joined over HTTP in
//! `prepare`), so setting up a connection is `hello` → `resume` → `resumed`
//! (`resume` only once `hello` has arrived, as the protocol asks), and
//! sends name the room by its numeric id. The peers join by name.

use crate::{sio, stamp::BODY_LEN, wire};
use anyhow::{bail, Result};
use serde::Serialize;

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// This project: `docs/protocol.md` (session cookie, Origin, `/ws`).
    Project,
    /// `../shared/peers/seed_ws_chat.py` (Python `websockets`).
    Python,
    /// `../shared/peers/socketio_chat.js` (Node, Socket.IO 4).
    Socketio,
}

impl Kind {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Project => "project",
            Kind::Python => "python",
            Kind::Socketio => "socketio",
        }
    }

    /// The upgrade request's path.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Project => "/ws",
            Kind::Python => "/",
            Kind::Socketio => sio::PATH,
        }
    }

    /// Extra upgrade headers: the project needs its session and its own
    /// origin; the peers check neither.
    pub fn headers(self, host: &str, cookie: Option<&str>) -> String {
        match (self, cookie) {
            (Kind::Project, Some(cookie)) => {
                format!("Origin: http://{host}\r\nCookie: {cookie}\r\n")
            }
            (Kind::Project, None) => format!("Origin: http://{host}\r\n"),
            _ => String::new(),
        }
    }

    /// Frames to send right after the upgrade.
    pub fn start(self, room: &str, name: &str, out: &mut Vec<u8>, mask: [u8; 4]) {
        match self {
            // `resume` waits for `hello` (docs/protocol.md §3.3).
            Kind::Project => {}
            Kind::Python => wire::encode(
                out,
                wire::OP_TEXT,
                format!(r#"{{"type":"join","room":"{room}","username":"{name}"}}"#).as_bytes(),
                mask,
            ),
            // The join waits for the namespace connect (an event sent before
            // it would be dropped by the server).
            Kind::Socketio => wire::encode(out, wire::OP_TEXT, sio::CONNECT, mask),
        }
    }

    /// Handles one text frame while joining; may queue frames in `out`.
    /// `Ok(true)` once the client is in its room.
    pub fn setup_frame(
        self,
        payload: &[u8],
        room: &str,
        name: &str,
        out: &mut Vec<u8>,
        mask: [u8; 4],
    ) -> Result<bool> {
        let has = |needle: &[u8]| memchr::memmem::find(payload, needle).is_some();
        match self {
            // `hello` is answered with `resume`; anything else before
            // `resumed` is ignored.
            Kind::Project => {
                if payload.starts_with(br#"{"type":"error""#) {
                    bail!("server error: {}", String::from_utf8_lossy(payload));
                }
                if payload.starts_with(br#"{"type":"hello""#) {
                    wire::encode(out, wire::OP_TEXT, RESUME, mask);
                }
                Ok(payload.starts_with(br#"{"type":"resumed""#))
            }
            Kind::Python => Ok(has(br#""type": "init""#)),
            Kind::Socketio => match sio::classify(payload) {
                sio::Packet::Connected => {
                    let mut event = Vec::new();
                    sio::event(
                        &mut event,
                        "join",
                        format!(r#"{{"room":"{room}","username":"{name}"}}"#).as_bytes(),
                    );
                    wire::encode(out, wire::OP_TEXT, &event, mask);
                    Ok(false)
                }
                sio::Packet::Ping => {
                    wire::encode(out, wire::OP_TEXT, sio::PONG, mask);
                    Ok(false)
                }
                sio::Packet::ConnectError(why) => {
                    bail!("connect refused: {}", String::from_utf8_lossy(why))
                }
                sio::Packet::Event { name: b"init", .. } => Ok(true),
                _ => Ok(false),
            },
        }
    }

    /// Appends the frame that sends `body` to the connection's room: the
    /// project names it by `room_id` (the peers need no room: a connection
    /// is in one). `client_id` is only used by the project (its sends are
    /// idempotent per UUID).
    pub fn send(
        self,
        out: &mut Vec<u8>,
        mask: [u8; 4],
        room_id: i64,
        client_id: &[u8; 36],
        body: &[u8; BODY_LEN],
    ) {
        wire::encode_with(out, mask, |out| match self {
            Kind::Project => {
                use std::io::Write;
                out.extend_from_slice(br#"{"type":"send","room_id":"#);
                let _ = write!(out, "{room_id}");
                out.extend_from_slice(br#","client_id":""#);
                out.extend_from_slice(client_id);
                out.extend_from_slice(br#"","body":""#);
                out.extend_from_slice(body);
                out.extend_from_slice(br#""}"#);
            }
            Kind::Python => {
                out.extend_from_slice(br#"{"type":"message","text":""#);
                out.extend_from_slice(body);
                out.extend_from_slice(br#""}"#);
            }
            Kind::Socketio => {
                out.extend_from_slice(br#"42["message",{"text":""#);
                out.extend_from_slice(body);
                out.extend_from_slice(br#""}]"#);
            }
        });
    }
}

/// The project's `resume`: no cursors, every room live from now on.
const RESUME: &[u8] = br#"{"type":"resume","rooms":{}}"#;

/// A UUID-shaped `client_id` unique per (run nonce, sender, seq), written
/// without allocating.
pub fn client_id(nonce: u32, sender: u32, seq: u32) -> [u8; 36] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00000000-0000-4000-8000-000000000000";
    let mut put = |range: std::ops::Range<usize>, mut v: u64| {
        for i in range.rev() {
            out[i] = DIGITS[(v & 15) as usize];
            v >>= 4;
        }
    };
    put(0..8, u64::from(nonce));
    put(9..13, u64::from(sender >> 16));
    put(15..18, u64::from(sender & 0xfff));
    put(20..23, u64::from((sender >> 12) & 0xf));
    put(24..36, u64::from(seq));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_of(frame: &[u8]) -> Vec<u8> {
        let (len, at) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        let mask = &frame[at..at + 4];
        frame[at + 4..at + 4 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect()
    }

    #[test]
    fn client_ids_are_distinct_uuids() {
        let a = client_id(0xdeadbeef, 0x0001_2345, 7);
        let text = std::str::from_utf8(&a).unwrap();
        assert_eq!(text, "deadbeef-0001-4345-8002-000000000007");
        let mut seen = std::collections::HashSet::new();
        for sender in [0, 1, 0xfff, 0x1000, 0x12345, u32::MAX] {
            for seq in [0, 1, u32::MAX] {
                assert!(seen.insert(client_id(1, sender, seq)), "{sender} {seq}");
            }
        }
    }

    #[test]
    fn send_frames_are_valid_json() {
        let body = crate::stamp::Stamp {
            run: 1,
            sender: 2,
            seq: 3,
            sent_us: 4,
        }
        .encode();
        let id = client_id(1, 2, 3);
        for kind in [Kind::Project, Kind::Python, Kind::Socketio] {
            let mut out = Vec::new();
            kind.send(&mut out, [1, 2, 3, 4], 9_007_199_254_740_991, &id, &body);
            let payload = payload_of(&out);
            let json = match kind {
                Kind::Socketio => payload[2..].to_vec(),
                _ => payload.clone(),
            };
            let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
            if kind == Kind::Project {
                assert_eq!(value["type"], "send");
                assert_eq!(value["room_id"], 9_007_199_254_740_991_i64);
                assert_eq!(value["client_id"], std::str::from_utf8(&id).unwrap());
            }
            let text = match kind {
                Kind::Project => value["body"].as_str().unwrap().to_owned(),
                Kind::Python => value["text"].as_str().unwrap().to_owned(),
                Kind::Socketio => value[1]["text"].as_str().unwrap().to_owned(),
            };
            assert_eq!(text.as_bytes(), &body, "{kind:?}");
        }
    }

    #[test]
    fn project_resumes_after_hello_and_is_set_up_by_resumed() {
        let mut out = Vec::new();
        Kind::Project.start("r", "u", &mut out, [0; 4]);
        assert!(out.is_empty(), "resume waits for hello");
        let hello =
            br#"{"type":"hello","protocol":2,"user":{"id":1},"rooms":[],"resume_limit":500}"#;
        let done = Kind::Project
            .setup_frame(hello, "r", "u", &mut out, [0; 4])
            .unwrap();
        assert!(!done);
        assert_eq!(payload_of(&out), br#"{"type":"resume","rooms":{}}"#);
        out.clear();
        for other in [
            &br#"{"type":"event","room_id":1}"#[..],
            br#"{"type":"room_added"}"#,
        ] {
            let done = Kind::Project
                .setup_frame(other, "r", "u", &mut out, [0; 4])
                .unwrap();
            assert!(!done && out.is_empty());
        }
        let done = Kind::Project
            .setup_frame(
                br#"{"type":"resumed","replayed":0,"gaps":[]}"#,
                "r",
                "u",
                &mut out,
                [0; 4],
            )
            .unwrap();
        assert!(done);
        let error = br#"{"type":"error","code":"bad_frame","message":"x"}"#;
        assert!(Kind::Project
            .setup_frame(error, "r", "u", &mut out, [0; 4])
            .is_err());
    }

    #[test]
    fn socketio_join_waits_for_the_namespace() {
        let mut out = Vec::new();
        Kind::Socketio.start("r", "u", &mut out, [0; 4]);
        assert_eq!(payload_of(&out), b"40");
        out.clear();
        let joined = Kind::Socketio
            .setup_frame(br#"0{"sid":"x"}"#, "r", "u", &mut out, [0; 4])
            .unwrap();
        assert!(!joined && out.is_empty());
        let joined = Kind::Socketio
            .setup_frame(br#"40{"sid":"y"}"#, "r", "u", &mut out, [0; 4])
            .unwrap();
        assert!(!joined);
        assert_eq!(
            payload_of(&out),
            br#"42["join",{"room":"r","username":"u"}]"#
        );
        let joined = Kind::Socketio
            .setup_frame(br#"42["init",{"room":"r"}]"#, "r", "u", &mut out, [0; 4])
            .unwrap();
        assert!(joined);
    }
}
