//! WebSocket connections: the upgrade (auth + Origin), then one reader that
//! handles client frames ([`v2`], protocol v2: docs/protocol.md) and one
//! writer ([`writer`]) that drains the connection's queue. Every close code
//! sent is a [`Close`].

pub mod close;
mod v2;
mod writer;

pub use close::Close;

use crate::{auth, AppState};
use app::protocol::{ApiError, ErrorCode, MAX_FRAME_BYTES};
use axum::{
    extract::{
        ws::{Message, WebSocket, WebSocketUpgrade},
        State,
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use futures::{stream::SplitStream, StreamExt};
use std::time::{Duration, Instant};
use writer::CLOSE_TIMEOUT;

/// `GET /ws`: refuses (401/403, never 101) without a valid session cookie
/// and an allowed `Origin`; otherwise upgrades and speaks protocol v2
/// (docs/protocol.md). The query string is ignored, so `/ws?v=2` (what
/// clients dialled while v2 was new) is the same.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !state.trust.origin_allowed(&headers) {
        return (StatusCode::FORBIDDEN, "Origin not allowed").into_response();
    }
    let token = auth::session_token(&headers).unwrap_or_default();
    let user = match auth::user_for_token(&state.store, token).await {
        Ok(Some(user)) if !token.is_empty() => user,
        Ok(_) => return (StatusCode::UNAUTHORIZED, "Sign in first").into_response(),
        Err(err) => {
            tracing::error!(cause = %err, "session lookup failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "Database unavailable").into_response();
        }
    };
    let session = auth::token_hash(token);
    // Counted from now, not from when the upgrade completes, so shutdown also
    // waits for a connection whose upgrade finishes while it is under way.
    let tracked = state.tasks.token();
    ws.max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .read_buffer_size(state.config.ws_read_buffer.max(256))
        .on_upgrade(move |socket| async move {
            v2::connection(socket, state, user, session).await;
            drop(tracked);
        })
}

/// A connection the reader can close.
pub(crate) trait Kick: Send + Sync {
    fn id(&self) -> u64;
    fn kick(&self, close: Close);
    fn is_kicked(&self) -> bool;
}

/// What a reader does with the frames a client sends (one per protocol).
trait Handler: Send {
    fn link(&self) -> &dyn Kick;
    /// Acts on one text frame.
    fn text(&mut self, text: &str) -> impl std::future::Future<Output = ()> + Send;
    /// Answers a frame that could not be acted on.
    fn error(&self, err: ApiError) -> impl std::future::Future<Output = ()> + Send;
}

/// Reads frames until the client closes, goes silent, or sends something
/// fatal (a frame over the size limit: 1009).
async fn read_loop<H: Handler>(
    handler: &mut H,
    stream: &mut SplitStream<WebSocket>,
    state: &AppState,
) {
    // The writer pings every interval and a live peer always answers, so
    // this much silence means the peer is gone (sleep, lost network).
    let ping = Duration::from_secs(state.config.ws_ping_secs.max(1));
    let silence = ping * 2 + Duration::from_secs(1);
    // One timer for the connection's life, moved on only when it fires: a
    // timer armed per frame would cost a timer-wheel insert and removal for
    // every frame read.
    let mut heard = tokio::time::Instant::now();
    let deadline = tokio::time::sleep(silence);
    tokio::pin!(deadline);
    loop {
        let next = tokio::select! {
            biased;
            next = stream.next() => next,
            () = &mut deadline => {
                if heard.elapsed() < silence {
                    deadline.as_mut().reset(heard + silence);
                    continue;
                }
                tracing::info!(conn = handler.link().id(), "peer silent; closing");
                handler.link().kick(Close::Gone);
                return;
            }
        };
        let Some(message) = next else { return };
        heard = tokio::time::Instant::now();
        // A kicked connection (e.g. its session ended) is closing: nothing
        // more it sends may act.
        if handler.link().is_kicked() {
            return;
        }
        match message {
            Ok(Message::Text(text)) => handler.text(&text).await,
            Ok(Message::Binary(_)) => {
                handler
                    .error(ApiError::new(
                        ErrorCode::BadFrame,
                        "Binary frames are not supported; send JSON text frames.",
                    ))
                    .await
            }
            Ok(Message::Close(_)) => return,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Err(err) => {
                if is_too_big(err) {
                    handler.link().kick(Close::TooBig);
                }
                return;
            }
        }
    }
}

/// After the reader or writer ended a connection: the close handshake,
/// bounded (the connection is already out of the hub).
async fn wind_down<T>(
    ended: Ended,
    link: &dyn Kick,
    writer: &mut tokio::task::JoinHandle<T>,
    stream: &mut SplitStream<WebSocket>,
) {
    if ended == Ended::Reader {
        // The client went away (or sent something fatal).
        link.kick(Close::Normal);
    }
    // Let the writer send its close frame, but do not wait long on a peer
    // that is gone. (A finished JoinHandle must not be polled again.)
    if ended != Ended::Writer
        && tokio::time::timeout(Duration::from_secs(5), &mut *writer)
            .await
            .is_err()
    {
        writer.abort();
    }
    if ended != Ended::Reader {
        drain(stream).await;
    }
}

/// Counts room switches (`open` and `close`) of one
/// connection in a fixed window: each one notifies a whole room, so a loop
/// of them must not flood everyone else.
pub(crate) struct Churn {
    since: Instant,
    count: u32,
}

impl Churn {
    /// Switches allowed per connection per window (`Config::ws_churn_window`).
    pub(crate) const LIMIT: u32 = 30;

    pub(crate) fn new() -> Self {
        Self {
            since: Instant::now(),
            count: 0,
        }
    }

    /// Counts one switch; `rate_limited` (with `retry_after`) past the limit.
    /// `what` names the frames counted, for the message.
    pub(crate) fn count(&mut self, window: Duration, what: &str) -> Result<(), ApiError> {
        if self.since.elapsed() >= window {
            self.since = Instant::now();
            self.count = 0;
        }
        self.count += 1;
        if self.count > Self::LIMIT {
            return Err(ApiError::rate_limited(
                format!("At most {} {what} per {} s.", Self::LIMIT, window.as_secs()),
                window.saturating_sub(self.since.elapsed()),
            ));
        }
        Ok(())
    }
}

/// Which side of a connection ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The client closed, went silent, or sent something fatal.
    Reader,
    /// The writer closed the socket (a kick, a write failure or timeout).
    Writer,
    /// The server is shutting down; the writer is sending 1012.
    Shutdown,
}

/// After our close frame: reads and discards until the peer's Close (or the
/// end of the stream), for at most [`CLOSE_TIMEOUT`].
///
/// Dropping a socket whose peer is still sending leaves unread data, so the
/// kernel resets the connection instead of closing it, and the reset can
/// destroy our close frame before the peer has read it: a busy client would
/// see 1006 instead of the code. Once the peer's Close is in, it sends nothing
/// more and the socket closes cleanly.
async fn drain(stream: &mut SplitStream<WebSocket>) {
    let until_close = async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, until_close).await;
}

/// Whether a read failed because a frame or message was over the limit.
fn is_too_big(err: axum::Error) -> bool {
    matches!(
        err.into_inner()
            .downcast::<tungstenite::Error>()
            .map(|e| *e),
        Ok(tungstenite::Error::Capacity(_))
    )
}
