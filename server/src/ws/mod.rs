//! WebSocket connections: the upgrade (auth + Origin), then one reader that
//! handles client frames and one writer ([`writer`]) that drains the
//! connection's queue. Every close code sent is a [`Close`].

pub mod close;
mod v2;
mod writer;

pub use close::Close;

use crate::{
    auth,
    chat::messages::{page_size, HistoryQuery, Post},
    commit::Reply,
    http::server_fns::{unknown_room, v1_message},
    hub::{Conn, Room},
    AppState,
};
use app::protocol::{ApiError, ClientFrame, ErrorCode, Me, ServerFrame, MAX_FRAME_BYTES};
use axum::{
    extract::{
        ws::{Message, WebSocket, WebSocketUpgrade},
        RawQuery, State,
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use futures::{stream::SplitStream, StreamExt};
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};
use writer::{write_loop, CLOSE_TIMEOUT};

/// `GET /ws`: refuses (401/403, never 101) without a valid session cookie
/// and an allowed `Origin`; otherwise upgrades. `?v=2` speaks protocol v2
/// (docs/protocol-v2.md); without it, v1 (until S13).
pub async fn upgrade(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let v2 = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|pair| pair == "v=2"));
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
            if v2 {
                v2::connection(socket, state, user, session).await;
            } else {
                connection(socket, state, user, session).await;
            }
            drop(tracked);
        })
}

#[tracing::instrument(skip_all, fields(user = user.id))]
async fn connection(socket: WebSocket, state: AppState, user: Me, session: [u8; 32]) {
    let (conn, queue) = state.hub.connect(user, session);
    let (sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(write_loop(
        sink,
        queue,
        conn.clone(),
        state.clone(),
        writer::V1 {
            state: state.clone(),
        },
    ));
    // A sign-out between the upgrade's check and `connect` would have missed
    // this connection: check again now that it is registered.
    if !matches!(
        state
            .store
            .sessions
            .session_user(&session, crate::now_ms())
            .await,
        Ok(Some(_))
    ) {
        conn.kick(Close::SignedOut);
    }

    conn.reply(&ServerFrame::Rooms {
        rooms: state.hub.rooms(),
    })
    .await;

    let mut session = Session {
        conn: conn.clone(),
        state: state.clone(),
        rooms: HashMap::new(),
        typed_at: None,
        churn: Churn::new(),
    };
    // Once shutdown begins, frames are no longer acted on: every send taken
    // before it reaches the committer, which commits all it accepted before
    // the process exits; later ones are resent by the client after the 1012.
    let ended = tokio::select! {
        () = read_loop(&mut session, &mut stream, &state) => Ended::Reader,
        _ = &mut writer => Ended::Writer,
        () = state.shutdown.cancelled() => Ended::Shutdown,
    };
    session.leave_all();
    state.hub.disconnect(&conn);
    wind_down(ended, &*conn, &mut writer, &mut stream).await;
}

/// A connection the reader can close.
pub(crate) trait Kick: Send + Sync {
    fn id(&self) -> u64;
    fn kick(&self, close: Close);
    fn is_kicked(&self) -> bool;
}

impl Kick for Conn {
    fn id(&self) -> u64 {
        self.id
    }
    fn kick(&self, close: Close) {
        Conn::kick(self, close)
    }
    fn is_kicked(&self) -> bool {
        Conn::is_kicked(self)
    }
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
    loop {
        let message = match tokio::time::timeout(silence, stream.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(_) => {
                tracing::info!(conn = handler.link().id(), "peer silent; closing");
                handler.link().kick(Close::Gone);
                return;
            }
        };
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

/// Counts room switches (v1: subscribe/unsubscribe; v2: open/close) of one
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

/// The reader's state: the connection and the rooms it has joined.
struct Session {
    conn: Arc<Conn>,
    state: AppState,
    /// Joined rooms by id.
    rooms: HashMap<i64, Arc<Room>>,
    /// When a `typing` frame was last relayed (at most one a second).
    typed_at: Option<Instant>,
    /// Subscribes and unsubscribes in the current window: each one notifies
    /// a whole room, so a loop of them must not flood everyone else.
    churn: Churn,
}

impl Handler for Session {
    fn link(&self) -> &dyn Kick {
        &*self.conn
    }

    async fn text(&mut self, text: &str) {
        self.handle_text(text).await
    }

    async fn error(&self, err: ApiError) {
        self.conn.reply(&err.frame(None, None)).await;
    }
}

impl Session {
    async fn handle_text(&mut self, text: &str) {
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(err) => {
                return self
                    .error(ApiError::new(
                        ErrorCode::BadFrame,
                        format!("Malformed frame: {err}"),
                    ))
                    .await;
            }
        };
        if matches!(
            frame,
            ClientFrame::Subscribe { .. } | ClientFrame::Unsubscribe { .. }
        ) {
            let window = self.state.config.ws_churn_window;
            if let Err(err) = self.churn.count(window, "subscribes and unsubscribes") {
                return self.error(err).await;
            }
        }
        match frame {
            ClientFrame::Subscribe { room, since } => match self.state.hub.room(&room) {
                Some(found) => {
                    // v1 subscribing is membership: a public room is joined
                    // first (through the committer, with its event), so the
                    // committer's policy check lets the user's sends in.
                    let joined = crate::commit::join_v1(
                        &self.state.store,
                        &self.state.committer,
                        &self.conn.user,
                        found.id,
                    )
                    .await;
                    if let Err(err) = joined {
                        return self.conn.reply(&err.frame(Some(room), None)).await;
                    }
                    let room = found;
                    let again = self.rooms.insert(room.id, room.clone()).is_some();
                    self.state.hub.subscribe(&room, &self.conn, since, again);
                }
                None => {
                    self.conn
                        .reply(&unknown_room(&room).frame(Some(room), None))
                        .await
                }
            },
            ClientFrame::Unsubscribe { room } => match self.joined(&room) {
                Ok(joined) => {
                    self.rooms.remove(&joined.id);
                    self.state.hub.unsubscribe(&joined, &self.conn);
                }
                Err(err) => self.conn.reply(&err.frame(Some(room), None)).await,
            },
            ClientFrame::Send {
                room,
                client_id,
                body,
            } => {
                if let Err(err) = self.send(&room, &client_id, body).await {
                    self.conn
                        .reply(&err.frame(Some(room), Some(client_id)))
                        .await;
                }
            }
            ClientFrame::History {
                room,
                before,
                limit,
            } => {
                let reply = match self.history(&room, before, limit).await {
                    Ok(frame) => frame,
                    Err(err) => err.frame(Some(room), None),
                };
                self.conn.reply(&reply).await;
            }
            ClientFrame::Typing { .. }
                if self
                    .typed_at
                    .is_some_and(|t| t.elapsed() < self.state.config.ws_typing_every) => {}
            ClientFrame::Typing { room } => match self.joined(&room) {
                Ok(joined) => {
                    self.typed_at = Some(Instant::now());
                    self.state.hub.relay(
                        &joined,
                        &ServerFrame::Typing {
                            room: joined.name.to_string(),
                            user: self.conn.user.clone(),
                        },
                    );
                }
                Err(err) => self.conn.reply(&err.frame(Some(room), None)).await,
            },
            ClientFrame::Ping => self.conn.reply(&ServerFrame::Pong).await,
        }
    }

    /// The joined room called `name`.
    fn joined(&self, name: &str) -> Result<Arc<Room>, ApiError> {
        let room = self
            .state
            .hub
            .room(name)
            .ok_or_else(|| unknown_room(name))?;
        if self.rooms.contains_key(&room.id) {
            Ok(room)
        } else {
            Err(ApiError::new(
                ErrorCode::NotJoined,
                format!("Subscribe to “{name}” first."),
            ))
        }
    }

    async fn send(&self, room: &str, client_id: &str, body: String) -> Result<(), ApiError> {
        let room = self.joined(room)?;
        let post = Post {
            room_id: room.id,
            client_id: client_id.to_owned(),
            body,
            ..Post::default()
        };
        let reply = Reply::Socket(self.conn.clone());
        self.state.chat.post(&self.conn.user, post, reply).await
    }

    async fn history(
        &self,
        room: &str,
        before: Option<i64>,
        limit: Option<i64>,
    ) -> Result<ServerFrame, ApiError> {
        let room = self
            .state
            .hub
            .room(room)
            .ok_or_else(|| unknown_room(room))?;
        let query = before.map_or(HistoryQuery::Latest, HistoryQuery::Before);
        let page = self
            .state
            .chat
            .history(&self.conn.user, room.id, query, page_size(limit))
            .await?;
        Ok(ServerFrame::History {
            room: room.name.to_string(),
            messages: page
                .messages
                .into_iter()
                .map(|m| v1_message(m, &room.name))
                .collect(),
            has_more: page.has_more_before,
        })
    }

    fn leave_all(&mut self) {
        for (_, room) in self.rooms.drain() {
            self.state.hub.unsubscribe(&room, &self.conn);
        }
    }
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
