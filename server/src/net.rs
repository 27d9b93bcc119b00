//! The listening socket, and what every accepted connection is set up with.

use axum::serve::{ListenerExt, TapIo};
use tokio::net::{TcpListener, TcpStream};

/// The listener the server serves on: every accepted socket gets `TCP_NODELAY`.
pub fn listener(tcp: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    tcp.tap_io(set_nodelay as fn(&mut TcpStream))
}

/// Turns off Nagle's algorithm. Frames are small and written whole (the writer
/// already coalesces bursts into one flush); with Nagle on, a frame written
/// while an earlier one is unacknowledged waits for the peer's delayed ACK,
/// up to 40 ms on Linux, and every delivery pays it under load.
fn set_nodelay(stream: &mut TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        // Only slower, never wrong: serve the connection anyway.
        tracing::warn!(cause = %err, "cannot set TCP_NODELAY on an accepted socket");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let bound = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = bound.local_addr().expect("address");
        let mut served = listener(bound);
        let (accepted, connected) =
            tokio::join!(Listener::accept(&mut served), TcpStream::connect(addr));
        let _client = connected.expect("connect");
        let (socket, _) = accepted;
        assert!(
            socket.nodelay().expect("read TCP_NODELAY"),
            "an accepted socket without TCP_NODELAY"
        );
    }
}
