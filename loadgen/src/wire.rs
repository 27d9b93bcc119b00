//! Client-side WebSocket framing (RFC 6455), minimal and allocation-free on
//! the receive path: server frames are unmasked and parsed in place from the
//! read buffer; client frames are masked as the RFC requires.
//!
//! Only what a benchmark client needs: text/binary/control frames, no
//! extensions (so no compression is ever negotiated), no fragmentation on
//! send. A fragmented server message is reported frame by frame
//! (continuation frames carry opcode 0); none of the servers benchmarked
//! fragments small messages.

/// Frame opcodes.
pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// One parsed frame: where its payload sits in the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub fin: bool,
    /// Payload start, relative to the slice given to [`parse`].
    pub start: usize,
    /// Payload end (exclusive).
    pub end: usize,
}

/// Why a buffer cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The server masked a frame (forbidden for server frames).
    Masked,
    /// A 64-bit length that does not fit in memory.
    TooLong,
}

/// Parses one frame from the front of `buf`. `Ok(None)`: not all of it has
/// arrived yet. On success returns the frame and the bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0F;
    if buf[1] & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, header) = match buf[1] & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    let len = usize::try_from(len).map_err(|_| FrameError::TooLong)?;
    let end = header + len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((
        Frame {
            opcode,
            fin,
            start: header,
            end,
        },
        end,
    )))
}

/// Appends one complete, masked client frame carrying `payload` to `out`.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends a masked text frame whose payload is written by `fill` straight
/// into `out` (no intermediate buffer); the payload must stay under 64 KiB.
pub fn encode_with(out: &mut Vec<u8>, mask: [u8; 4], fill: impl FnOnce(&mut Vec<u8>)) {
    let head = out.len();
    // Reserve the longest header this function writes (2 + 2 + 4), fix it up after.
    out.extend_from_slice(&[0u8; 8]);
    let start = out.len();
    fill(out);
    let len = out.len() - start;
    assert!(len <= u16::MAX as usize, "frame too long for encode_with");
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
    let mut header = [0u8; 8];
    header[0] = 0x80 | OP_TEXT;
    let used = if len < 126 {
        header[1] = 0x80 | len as u8;
        header[2..6].copy_from_slice(&mask);
        6
    } else {
        header[1] = 0x80 | 126;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        header[4..8].copy_from_slice(&mask);
        8
    };
    // Move the payload left over the unused header bytes.
    let gap = 8 - used;
    if gap > 0 {
        out.copy_within(start.., start - gap);
        out.truncate(out.len() - gap);
    }
    out[head..head + used].copy_from_slice(&header[..used]);
}

/// The HTTP/1.1 upgrade request for `path` on `host`, with extra header
/// lines (each ending in `\r\n`). No `Sec-WebSocket-Extensions`: compression
/// stays off whatever the server's default.
pub fn handshake_request(host: &str, path: &str, key: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A `Sec-WebSocket-Key`: 16 bytes, base64.
pub fn handshake_key(bytes: [u8; 16]) -> String {
    base64(&bytes)
}

/// Where the response head ends in `buf` (index after `\r\n\r\n`), if it has.
pub fn response_head_end(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4)
}

/// Whether a response head accepts the upgrade.
pub fn is_switching_protocols(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/1.1 101")
}

fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        // Re-parse a client frame by clearing the mask bit and unmasking.
        let opcode = frame[0] & 0x0F;
        let (len, mut at) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let mask = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
        at += 4;
        assert_eq!(frame.len(), at + len, "one whole frame");
        let payload = frame[at..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        (opcode, payload)
    }

    #[test]
    fn parses_server_frames_of_every_length_form() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 70000] {
            let payload = vec![b'x'; len];
            let mut buf = vec![0x81];
            if len < 126 {
                buf.push(len as u8);
            } else if len <= 65535 {
                buf.push(126);
                buf.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                buf.push(127);
                buf.extend_from_slice(&(len as u64).to_be_bytes());
            }
            buf.extend_from_slice(&payload);
            buf.extend_from_slice(&[0x89, 0]); // a ping after it
            let (frame, used) = parse(&buf).unwrap().unwrap();
            assert_eq!(frame.opcode, OP_TEXT);
            assert!(frame.fin);
            assert_eq!(frame.end - frame.start, len);
            let (ping, used2) = parse(&buf[used..]).unwrap().unwrap();
            assert_eq!((ping.opcode, used2), (OP_PING, 2));
            // Every strict prefix is incomplete, never an error or a wrong frame.
            for cut in [0, 1, 3, used - 1].into_iter().filter(|&c| c < used) {
                assert_eq!(parse(&buf[..cut]), Ok(None), "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn refuses_masked_server_frames() {
        assert_eq!(parse(&[0x81, 0x80, 1, 2, 3, 4]), Err(FrameError::Masked));
    }

    #[test]
    fn encodes_masked_client_frames() {
        for len in [0usize, 1, 125, 126, 1000, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            encode(&mut out, OP_TEXT, &payload, [9, 8, 7, 6]);
            assert_eq!(out[1] & 0x80, 0x80, "mask bit set");
            assert_eq!(unmask(&out), (OP_TEXT, payload));
        }
    }

    #[test]
    fn encode_with_matches_encode() {
        for len in [0usize, 10, 125, 126, 4000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut a = b"prefix".to_vec();
            encode(&mut a, OP_TEXT, &payload, [1, 2, 3, 4]);
            let mut b = b"prefix".to_vec();
            encode_with(&mut b, [1, 2, 3, 4], |out| out.extend_from_slice(&payload));
            assert_eq!(a, b, "len {len}");
        }
    }

    #[test]
    fn handshake_pieces() {
        // RFC 6455 section 1.3's sample nonce.
        assert_eq!(
            handshake_key(*b"the sample nonce"),
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00";
        let end = response_head_end(head).unwrap();
        assert!(is_switching_protocols(&head[..end]));
        assert_eq!(&head[end..], b"\x81\x00");
        assert!(!is_switching_protocols(b"HTTP/1.1 403 Forbidden\r\n\r\n"));
        let req = handshake_request("127.0.0.1:3000", "/ws", "k", "Origin: x\r\n");
        assert!(req.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"));
        assert!(req.ends_with("Origin: x\r\n\r\n"));
        assert!(!req.contains("Extensions"));
    }
}
