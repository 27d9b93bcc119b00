//! Engine.IO v4 / Socket.IO v5 packet framing over a raw WebSocket
//! (websocket transport only, `?EIO=4&transport=websocket`).
//!
//! Each WebSocket text frame is one Engine.IO packet: a type digit
//! (`0` open, `1` close, `2` ping, `3` pong, `4` message) and data. A
//! message's data is a Socket.IO packet: a type digit (`0` connect, `1`
//! disconnect, `2` event, `4` connect error, ...), an optional `/namespace,`,
//! an optional ack id, then JSON. So `40` connects to the main namespace and
//! `42["message",{"text":"hi"}]` emits an event. The server pings (`2`)
//! every `pingInterval`; a client that does not answer `3` is dropped.

/// The query that selects Engine.IO v4 over a plain WebSocket.
pub const PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// Connect to the main namespace.
pub const CONNECT: &[u8] = b"40";

/// The answer to a ping.
pub const PONG: &[u8] = b"3";

/// A classified packet; slices borrow from the frame payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Engine.IO open, with its JSON handshake (`sid`, `pingInterval`, ...).
    Open(&'a [u8]),
    /// Engine.IO close.
    Close,
    /// Engine.IO ping: answer [`PONG`].
    Ping,
    /// Engine.IO pong.
    Pong,
    /// Socket.IO connect acknowledged (namespace joined).
    Connected,
    /// Socket.IO connect refused.
    ConnectError(&'a [u8]),
    /// Socket.IO disconnect.
    Disconnect,
    /// Socket.IO event `name`; `args` is the rest of the JSON array.
    Event { name: &'a [u8], args: &'a [u8] },
    /// Anything else (noop, acks, binary packets).
    Other,
}

/// Classifies one Engine.IO packet (one WebSocket text frame's payload).
pub fn classify(payload: &[u8]) -> Packet<'_> {
    match payload.first() {
        Some(b'0') => Packet::Open(&payload[1..]),
        Some(b'1') => Packet::Close,
        Some(b'2') => Packet::Ping,
        Some(b'3') => Packet::Pong,
        Some(b'4') => socket_io(&payload[1..]),
        _ => Packet::Other,
    }
}

fn socket_io(packet: &[u8]) -> Packet<'_> {
    let Some((&kind, mut rest)) = packet.split_first() else {
        return Packet::Other;
    };
    // Optional namespace: "/chat," (the main namespace "/" is left out).
    if rest.first() == Some(&b'/') {
        match memchr::memchr(b',', rest) {
            Some(comma) => rest = &rest[comma + 1..],
            None => rest = &[],
        }
    }
    match kind {
        b'0' => Packet::Connected,
        b'1' => Packet::Disconnect,
        b'4' => Packet::ConnectError(rest),
        b'2' => {
            // Optional ack id before the array.
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let array = &rest[digits..];
            if !array.starts_with(b"[\"") {
                return Packet::Other;
            }
            let Some(close) = memchr::memchr(b'"', &array[2..]) else {
                return Packet::Other;
            };
            Packet::Event {
                name: &array[2..2 + close],
                args: &array[2 + close + 1..],
            }
        }
        _ => Packet::Other,
    }
}

/// Appends the payload of an event emit: `42["name",<json>]`.
pub fn event(out: &mut Vec<u8>, name: &str, json: &[u8]) {
    out.extend_from_slice(b"42[\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(json);
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_engine_io_packets() {
        let open = br#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert!(matches!(classify(open), Packet::Open(json) if json.starts_with(b"{\"sid\"")));
        assert_eq!(classify(b"1"), Packet::Close);
        assert_eq!(classify(b"2"), Packet::Ping);
        assert_eq!(classify(b"3"), Packet::Pong);
        assert_eq!(classify(b"6"), Packet::Other);
        assert_eq!(classify(b""), Packet::Other);
    }

    #[test]
    fn classifies_socket_io_packets() {
        assert_eq!(classify(br#"40{"sid":"x"}"#), Packet::Connected);
        assert_eq!(classify(br#"40/admin,{"sid":"x"}"#), Packet::Connected);
        assert_eq!(classify(b"41"), Packet::Disconnect);
        assert_eq!(
            classify(br#"44{"message":"Not authorized"}"#),
            Packet::ConnectError(br#"{"message":"Not authorized"}"#)
        );
        assert_eq!(
            classify(br#"42["message",{"room":"r","text":"hi"}]"#),
            Packet::Event {
                name: b"message",
                args: br#",{"room":"r","text":"hi"}]"#
            }
        );
        // Namespace and ack id before the array.
        assert_eq!(
            classify(br#"42/chat,17["init",{}]"#),
            Packet::Event {
                name: b"init",
                args: b",{}]"
            }
        );
        assert_eq!(classify(b"42{}"), Packet::Other);
        assert_eq!(
            classify(br#"43["x"]"#),
            Packet::Other,
            "acks are not events"
        );
    }

    #[test]
    fn encodes_events() {
        let mut out = Vec::new();
        event(&mut out, "join", br#"{"room":"r1","username":"u1"}"#);
        assert_eq!(out, br#"42["join",{"room":"r1","username":"u1"}]"#);
        assert!(matches!(
            classify(&out),
            Packet::Event { name: b"join", .. }
        ));
    }
}
