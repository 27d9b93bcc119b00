//! The WebSocket close codes this server sends, each with the reason the
//! client reads: one table instead of raw numbers in several files.

/// Why the server closes a connection (RFC 6455 §7.4 codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Close {
    /// The client went away or closed first; nothing to tell it.
    Normal = 1000,
    /// The peer stopped answering pings.
    Gone = 1001,
    /// The connection's session ended (sign-out, expiry).
    SignedOut = 1008,
    /// A frame or message was over the size limit.
    TooBig = 1009,
    /// The server could not do what it promised (a replay failed).
    Internal = 1011,
    /// The server is shutting down; reconnect and resume.
    Restart = 1012,
    /// The connection could not keep up with its room's traffic.
    SlowConsumer = 1013,
}

impl Close {
    /// Every code, for looking one up by number.
    const ALL: [Close; 7] = [
        Close::Normal,
        Close::Gone,
        Close::SignedOut,
        Close::TooBig,
        Close::Internal,
        Close::Restart,
        Close::SlowConsumer,
    ];

    /// The code on the wire.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The close with wire code `code`, if it is one of ours.
    pub fn from_code(code: u16) -> Option<Close> {
        Close::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The reason sent with the code (empty for a normal close).
    pub const fn reason(self) -> &'static str {
        match self {
            Close::Normal => "",
            Close::Gone => "no answer to pings",
            Close::SignedOut => "signed out",
            Close::TooBig => "frame too large (limit 65536 bytes)",
            Close::Internal => "server error; reconnect and resume",
            Close::Restart => "server restarting; reconnect and resume",
            Close::SlowConsumer => "too slow to keep up; reconnect and resume",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::protocol::MAX_FRAME_BYTES;

    #[test]
    fn codes_round_trip_and_name_the_frame_limit() {
        for close in Close::ALL {
            assert_eq!(Close::from_code(close.code()), Some(close));
        }
        assert_eq!(Close::from_code(0), None);
        assert!(Close::TooBig
            .reason()
            .contains(&format!("limit {MAX_FRAME_BYTES} bytes")));
    }
}
