//! The connection's writer: drains its bounded queue to the socket,
//! coalescing whatever is already queued into one flush, replays from the
//! store when asked, pings, and ends with a close frame ([`finish`]).

use super::Close;
use crate::AppState;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{stream::SplitSink, SinkExt};
use std::{sync::Arc, time::Duration};
use tokio::sync::mpsc;

/// Frames the writer sends before one flush (one syscall for a burst).
const MAX_COALESCE: usize = 256;
/// Longest a burst of writes may take before the peer counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the close handshake may take.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages per store read while replaying.
pub(super) const REPLAY_PAGE: u32 = 500;

pub(super) type Sink = SplitSink<WebSocket, Message>;

/// A connection the writer serves: it can be asked to close.
pub(super) trait Link: Send + Sync + 'static {
    fn id(&self) -> u64;
    /// Resolves once the connection has been kicked; the close code.
    fn kicked(&self) -> impl std::future::Future<Output = Close> + Send + '_;
}

/// Writes one kind of queued item to the socket (without flushing).
pub(super) trait Writer: Send {
    type Out: Send;
    /// `Err` carries the close to end with.
    fn write(
        &mut self,
        sink: &mut Sink,
        out: Self::Out,
    ) -> impl std::future::Future<Output = Result<(), Close>> + Send;
}

pub(super) async fn write_loop<L: Link, W: Writer>(
    mut sink: Sink,
    mut queue: mpsc::Receiver<W::Out>,
    conn: Arc<L>,
    state: AppState,
    mut writer: W,
) {
    let every = Duration::from_secs(state.config.ws_ping_secs.max(1));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // Waited on for the connection's life, not made anew for every frame:
    // each new one registers with (and then leaves) a waiter list.
    let kicked = conn.kicked();
    let shutdown = state.shutdown.cancelled();
    tokio::pin!(kicked, shutdown);
    let close = loop {
        let first = tokio::select! {
            biased;
            close = &mut kicked => break close,
            () = &mut shutdown => break Close::Restart,
            _ = ping.tick() => {
                if sink.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                    return;
                }
                continue;
            }
            out = queue.recv() => match out {
                Some(out) => out,
                None => break Close::Normal,
            },
        };
        let outcome = {
            // Coalesce: everything already queued goes out with one flush.
            let burst = async {
                let mut next = Some(first);
                let mut written = 0;
                while let Some(out) = next.take() {
                    writer.write(&mut sink, out).await?;
                    written += 1;
                    if written < MAX_COALESCE {
                        next = queue.try_recv().ok();
                    }
                }
                sink.flush().await.map_err(|_| Close::Normal)
            };
            tokio::pin!(burst);
            // Nearly every burst is written at once (the socket has room); only
            // one that has to wait arms the write timeout, so the common case
            // costs no timer.
            match futures::poll!(&mut burst) {
                std::task::Poll::Ready(result) => result,
                // A peer that stops reading blocks the write once the socket
                // buffers are full: a kick, shutdown or the write timeout must
                // still end it. `finish` then tries the close frame, briefly.
                std::task::Poll::Pending => tokio::select! {
                    result = &mut burst => result,
                    close = &mut kicked => Err(close),
                    () = &mut shutdown => Err(Close::Restart),
                    () = tokio::time::sleep(WRITE_TIMEOUT) => {
                        tracing::info!(conn = conn.id(), "write timed out; dropping connection");
                        return;
                    }
                },
            }
        };
        if let Err(close) = outcome {
            return finish(sink, close).await;
        }
    };
    finish(sink, close).await;
}

/// Sends the close frame for `close` and closes the socket, briefly.
pub(super) async fn finish(mut sink: Sink, close: Close) {
    let send = async {
        let frame = CloseFrame {
            code: close.code(),
            reason: Utf8Bytes::from_static(close.reason()),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
        let _ = sink.close().await;
    };
    // A peer that does not read cannot take the close frame either.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, send).await;
}
