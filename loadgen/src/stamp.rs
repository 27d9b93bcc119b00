//! The 64-byte message body every benchmark message carries: who sent it,
//! its sequence number and when it was written, in fixed-width hex so a
//! receiver finds and decodes it in place in any server's JSON (no escaping
//! ever applies: the body is `#LG` plus hex digits and dots).

/// Bytes in every body, as the scenarios specify.
pub const BODY_LEN: usize = 64;

/// Marks the start of a body inside a server frame.
pub const MAGIC: &[u8; 3] = b"#LG";

/// Hex digits after the magic: run 4, sender 8, seq 8, send time 16.
const FIELDS: usize = 4 + 8 + 8 + 16;

/// What a body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which load-generator run sent it (stale messages replayed from a
    /// server's history belong to another run and are not counted).
    pub run: u16,
    /// Sender id (global across the run).
    pub sender: u32,
    /// The sender's sequence number, from 0.
    pub seq: u32,
    /// Microseconds since the run's clock started, when the frame was written.
    pub sent_us: u64,
}

impl Stamp {
    /// The 64-byte body.
    pub fn encode(&self) -> [u8; BODY_LEN] {
        let mut out = [b'.'; BODY_LEN];
        out[..3].copy_from_slice(MAGIC);
        hex(&mut out[3..7], self.run as u64);
        hex(&mut out[7..15], self.sender as u64);
        hex(&mut out[15..23], self.seq as u64);
        hex(&mut out[23..39], self.sent_us);
        out
    }

    /// Decodes the body starting at `at` (the magic), if it is one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let fields = bytes.get(MAGIC.len()..MAGIC.len() + FIELDS)?;
        if !bytes.starts_with(MAGIC) {
            return None;
        }
        Some(Self {
            run: unhex(&fields[0..4])? as u16,
            sender: unhex(&fields[4..12])? as u32,
            seq: unhex(&fields[12..20])? as u32,
            sent_us: unhex(&fields[20..36])?,
        })
    }
}

/// Finds the body in a frame's payload.
pub struct Finder(memchr::memmem::Finder<'static>);

impl Default for Finder {
    fn default() -> Self {
        Self(memchr::memmem::Finder::new(MAGIC))
    }
}

impl Finder {
    /// The stamp in `payload`, if it carries one.
    pub fn find(&self, payload: &[u8]) -> Option<Stamp> {
        let at = self.0.find(payload)?;
        Stamp::decode(&payload[at..])
    }
}

fn hex(out: &mut [u8], mut value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(value & 15) as usize];
        value >>= 4;
    }
}

fn unhex(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u64::from(v);
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_inside_json() {
        let stamp = Stamp {
            run: 0xbeef,
            sender: 1_999,
            seq: 123_456,
            sent_us: 98_765_432_101,
        };
        let body = stamp.encode();
        assert_eq!(body.len(), BODY_LEN);
        let text = std::str::from_utf8(&body).unwrap();
        // Nothing JSON would escape.
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        let frame = format!(r#"{{"type":"message","room":"r","body":"{text}","seq":4}}"#);
        assert_eq!(Finder::default().find(frame.as_bytes()), Some(stamp));
    }

    #[test]
    fn ignores_frames_without_a_body() {
        let finder = Finder::default();
        assert_eq!(finder.find(br#"{"type":"presence","users":[]}"#), None);
        assert_eq!(finder.find(b"#LG12"), None, "truncated");
        assert_eq!(finder.find(b"#LGzzzz0000000000000000"), None);
    }
}
