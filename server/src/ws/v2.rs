//! Protocol v2 on `/ws` (docs/protocol.md): `hello` with the user's
//! rooms, then `resume`, after which the connection gets the events of every
//! room its user belongs to; `open` adds a room's presence and typing (or
//! previews a public room). Every frame is handled by one `chat::` operation;
//! rights are decided by `chat::policy` there and in the committer.

use super::{
    read_loop, wind_down,
    writer::{write_loop, Link, Sink, Writer, REPLAY_PAGE},
    Churn, Close, Ended, Handler, Kick,
};
use crate::{
    chat::{
        messages::{page_size, HistoryQuery, Post},
        policy::{self, Action},
        Chat,
    },
    commit::{plan::Command, Reply},
    hub::{Conn, Dedupe, HubError, Out},
    AppState,
};
use app::protocol::{
    v2::{ClientFrame, ServerFrame, PROTOCOL_VERSION, RESUME_BUDGET, RESUME_LIMIT},
    ApiError, ErrorCode, EventKind, Me, Role, RoomKind,
};
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use std::{collections::BTreeMap, sync::Arc, time::Instant};

impl Link for Conn {
    fn id(&self) -> u64 {
        self.id
    }
    fn kicked(&self) -> impl std::future::Future<Output = Close> + Send + '_ {
        Conn::kicked(self)
    }
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

fn encode(frame: &ServerFrame) -> Utf8Bytes {
    Utf8Bytes::from(frame.encode())
}

/// Serves one v2 connection until it closes.
#[tracing::instrument(skip_all, fields(user = me.id, v = 2))]
pub(super) async fn connection(socket: WebSocket, state: AppState, me: Me, session: [u8; 32]) {
    let (conn, queue) = state.hub.connect(me.public(), session);
    let (sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(write_loop(
        sink,
        queue,
        conn.clone(),
        state.clone(),
        V2Writer {
            state: state.clone(),
            user_id: me.id,
            dedupe: Dedupe::default(),
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
    // The snapshot is read after `connect`: membership changes committed
    // from now on reach the user hub's pending list (subscribe, then read).
    match state.chat.my_rooms(&conn.user).await {
        Ok(rooms) => {
            let memberships: Vec<_> = rooms
                .iter()
                .map(|r| (r.id, r.kind, r.role.unwrap_or(Role::Member)))
                .collect();
            let hello = encode(&ServerFrame::Hello {
                protocol: PROTOCOL_VERSION,
                user: me,
                rooms,
                resume_limit: RESUME_LIMIT,
            });
            if state.hub.hello(&conn, memberships, hello).is_err() {
                conn.kick(Close::Internal);
            }
        }
        Err(err) => {
            // Nothing can be served without the rooms: say why, then close
            // (without touching the user's rooms, which other tabs use).
            state
                .hub
                .refuse(&conn, encode(&ServerFrame::error(err, None, None)));
        }
    }

    let mut session = Session {
        conn: conn.clone(),
        state: state.clone(),
        resumed: false,
        typed_at: None,
        churn: Churn::new(),
    };
    let ended = tokio::select! {
        () = read_loop(&mut session, &mut stream, &state) => Ended::Reader,
        _ = &mut writer => Ended::Writer,
        () = state.shutdown.cancelled() => Ended::Shutdown,
    };
    state.hub.disconnect(&conn);
    wind_down(ended, &*conn, &mut writer, &mut stream).await;
}

/// The reader's state.
struct Session {
    conn: Arc<Conn>,
    state: AppState,
    resumed: bool,
    /// When a `typing` frame was last relayed.
    typed_at: Option<Instant>,
    /// Opens and closes in the current window.
    churn: Churn,
}

impl Handler for Session {
    fn link(&self) -> &dyn Kick {
        &*self.conn
    }

    async fn text(&mut self, text: &str) {
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(err) => {
                return self
                    .error(ApiError::new(
                        ErrorCode::BadFrame,
                        format!("Malformed frame: {err}"),
                    ))
                    .await
            }
        };
        self.handle(frame).await
    }

    async fn error(&self, err: ApiError) {
        self.conn
            .reply(encode(&ServerFrame::error(err, None, None)))
            .await;
    }
}

impl Session {
    async fn reply(&self, frame: ServerFrame) {
        self.conn.reply(encode(&frame)).await;
    }

    async fn fail(&self, err: ApiError, room_id: Option<i64>, client_id: Option<String>) {
        self.reply(ServerFrame::error(err, room_id, client_id))
            .await
    }

    /// Queues a command; its ack (or error) comes from the committer.
    async fn submit(&self, client_id: String, command: Result<Command, ApiError>) {
        let room_id = command.as_ref().ok().and_then(Command::room_id);
        let submitted = match command {
            Ok(command) => {
                let reply = Reply::Socket(self.conn.clone());
                self.state
                    .chat
                    .submit(&self.conn.user, Some(&client_id), command, reply)
                    .await
            }
            Err(err) => Err(err),
        };
        if let Err(err) = submitted {
            self.fail(err, room_id, Some(client_id)).await;
        }
    }

    async fn handle(&mut self, frame: ClientFrame) {
        let user = self.conn.user.clone();
        match frame {
            ClientFrame::Resume { rooms } => {
                if let Err(err) = self.resume(rooms).await {
                    self.fail(err, None, None).await;
                }
            }
            ClientFrame::Open { room_id, since } => {
                let opened = match self
                    .churn
                    .count(self.state.config.ws_churn_window, "opens and closes")
                {
                    Ok(()) => self.open(room_id, since).await,
                    Err(err) => Err(err),
                };
                if let Err(err) = opened {
                    self.fail(err, Some(room_id), None).await;
                }
            }
            ClientFrame::Close { room_id } => match self
                .churn
                .count(self.state.config.ws_churn_window, "opens and closes")
            {
                Ok(()) => {
                    self.state.hub.close(&self.conn, room_id);
                }
                Err(err) => self.fail(err, Some(room_id), None).await,
            },
            ClientFrame::History {
                room_id,
                before,
                around,
                limit,
            } => {
                let query = match (around, before) {
                    (Some(id), _) => HistoryQuery::Around(id),
                    (None, Some(seq)) => HistoryQuery::Before(seq),
                    (None, None) => HistoryQuery::Latest,
                };
                let size = page_size(limit.map(i64::from));
                match self.state.chat.history(&user, room_id, query, size).await {
                    Ok(page) => {
                        self.reply(ServerFrame::History {
                            room_id,
                            messages: page.messages,
                            has_more_before: page.has_more_before,
                            has_more_after: page.has_more_after,
                        })
                        .await
                    }
                    Err(err) => self.fail(err, Some(room_id), None).await,
                }
            }
            ClientFrame::Send {
                room_id,
                client_id,
                body,
                mentions,
                reply_to,
            } => {
                let post = Post {
                    room_id,
                    client_id: client_id.clone(),
                    body,
                    mentions,
                    reply_to,
                };
                let reply = Reply::Socket(self.conn.clone());
                if let Err(err) = self.state.chat.post(&user, post, reply).await {
                    self.fail(err, Some(room_id), Some(client_id)).await;
                }
            }
            ClientFrame::CreateRoom {
                client_id,
                name,
                topic,
            } => {
                let command = self.state.chat.create_command(&user, &name, &topic);
                // A socket does not wait for the commit: every request that
                // passes the checks counts against the limit.
                if command.is_ok() {
                    self.state.chat.count_creation(&user);
                }
                self.submit(client_id, command).await
            }
            ClientFrame::Join { room_id, client_id } => {
                let command = Command::Join {
                    room_id,
                    silent: false,
                };
                self.submit(client_id, Ok(command)).await
            }
            ClientFrame::Leave { room_id, client_id } => {
                self.submit(client_id, Ok(Command::Leave { room_id })).await
            }
            ClientFrame::Rename {
                room_id,
                client_id,
                name,
            } => {
                let command = Chat::rename_command(room_id, &name);
                self.submit(client_id, command).await
            }
            ClientFrame::SetTopic {
                room_id,
                client_id,
                topic,
            } => {
                let command = Chat::topic_command(room_id, &topic);
                self.submit(client_id, command).await
            }
            ClientFrame::Read { room_id, seq } => {
                let command = Command::MarkRead { room_id, seq };
                let reply = Reply::Socket(self.conn.clone());
                if let Err(err) = self.state.chat.submit(&user, None, command, reply).await {
                    self.fail(err, Some(room_id), None).await;
                }
            }
            // Ephemeral: a member's typing frame for a room that is not
            // open here is dropped, and so is one within a second of the
            // last. Anyone else is refused as the policy says (`not_member`
            // for a previewer, `not_found` for a room they may not see), so
            // typing answers like every other room frame.
            ClientFrame::Typing { room_id } => {
                let every = self.state.config.ws_typing_every;
                let mut member = self.state.hub.membership(user.id, room_id).is_some();
                if !member {
                    // Not in the hub's view: the store has the last word (a
                    // member it has not heard of yet types from now on).
                    match self.state.chat.may(&user, room_id, Action::Typing).await {
                        Ok(()) => member = true,
                        Err(err) => return self.fail(err, Some(room_id), None).await,
                    }
                }
                if member
                    && self.typed_at.is_none_or(|t| t.elapsed() >= every)
                    && self.state.hub.typing(&self.conn, room_id)
                {
                    self.typed_at = Some(Instant::now());
                }
            }
            ClientFrame::Ping => self.reply(ServerFrame::Pong).await,
        }
    }

    /// `resume`: once per connection. Rooms at most [`RESUME_LIMIT`]
    /// events behind are replayed, within a total of [`RESUME_BUDGET`];
    /// the others get `gap` (the client reloads their latest page).
    async fn resume(&mut self, cursors: BTreeMap<i64, i64>) -> Result<(), ApiError> {
        if self.resumed {
            return Err(ApiError::new(
                ErrorCode::BadFrame,
                "resume is accepted once per connection.",
            ));
        }
        let hub = &self.state.hub;
        let user = &self.conn.user;
        let mine: Vec<i64> = cursors
            .keys()
            .copied()
            .filter(|&room| hub.membership(user.id, room).is_some())
            .collect();
        let last: BTreeMap<i64, i64> = self
            .state
            .store
            .rooms
            .last_seqs(&mine)
            .await
            .map_err(crate::unavailable)?
            .into_iter()
            .collect();
        let mut cursors = cursors;
        let mut budget = i64::from(RESUME_BUDGET);
        let (mut replayed, mut gaps) = (0i64, Vec::new());
        for (&room_id, &last_seq) in &last {
            let Some(cursor) = cursors.get_mut(&room_id) else {
                continue;
            };
            let behind = last_seq - *cursor;
            if behind < 0 || behind > i64::from(RESUME_LIMIT) || behind > budget {
                // Too far behind (or ahead: a cursor this room never had):
                // the client reloads the latest page and continues from here.
                self.reply(ServerFrame::Gap { room_id, last_seq }).await;
                *cursor = last_seq;
                gaps.push(room_id);
            } else {
                budget -= behind;
                replayed += behind;
            }
        }
        let resumed = match hub.resume(&self.conn, &cursors) {
            Ok(resumed) => resumed,
            Err(HubError::Gone) => return Ok(()),
            Err(err) => return Err(ApiError::new(ErrorCode::BadFrame, err.to_string())),
        };
        self.resumed = true;
        for room_id in resumed.not_member {
            let err = match self
                .state
                .chat
                .may(user, room_id, Action::ReceiveEvents)
                .await
            {
                // A member the hub did not know of yet (joined meanwhile):
                // its events come live from `room_added` on.
                Ok(()) => continue,
                Err(err) => err,
            };
            self.fail(err, Some(room_id), None).await;
        }
        self.reply(ServerFrame::Resumed {
            replayed: u32::try_from(replayed).unwrap_or(u32::MAX),
            gaps,
        })
        .await;
        Ok(())
    }

    /// `open`: presence and typing of a room the user may open (a public
    /// room they are not in is previewed), replaying after `since` first.
    ///
    /// `since` is honoured when the room is not open on this connection
    /// yet, for members too: their timeline may have been loaded before
    /// events that reached the connection while no room showed them. The
    /// replay may repeat events already sent live; clients drop repeats by
    /// seq. An open room is already streamed, so opening it again replays
    /// nothing.
    async fn open(&self, room_id: i64, since: Option<i64>) -> Result<(), ApiError> {
        let kind = self
            .state
            .chat
            .may_in(&self.conn.user, room_id, Action::Open)
            .await?;
        // A member's events come by membership; `since` still replays what
        // its timeline lacks (a page loaded before the events that followed
        // it), deduplicated against the live stream. Opening an open room
        // again replays nothing.
        let since = since.filter(|_| !self.conn.is_open(room_id));
        match self
            .state
            .hub
            .open(&self.conn, room_id, since, kind == RoomKind::Public)
        {
            Ok(_) | Err(HubError::Gone) => Ok(()),
            // Left since the check: answered as the policy answers outsiders.
            Err(HubError::NotMember) => Err(policy::Denied::NotFound.into()),
            Err(err) => Err(ApiError::new(ErrorCode::BadFrame, err.to_string())),
        }
    }
}

/// The v2 writer: frames, live events (deduplicated against replays) and
/// replays from the room's event log.
struct V2Writer {
    state: AppState,
    /// The connection's user: a replay leaves out what the room did while
    /// they were not in it.
    user_id: i64,
    dedupe: Dedupe,
}

impl Writer for V2Writer {
    type Out = Out;

    async fn write(&mut self, sink: &mut Sink, out: Out) -> Result<(), Close> {
        match out {
            Out::Frame(frame) => feed(sink, frame).await,
            Out::Event {
                room_id,
                seq,
                frame,
            } => {
                if self.dedupe.keep(room_id, seq) {
                    feed(sink, frame).await
                } else {
                    Ok(())
                }
            }
            Out::Replay { room_id, after } => self.replay(sink, room_id, after).await,
        }
    }
}

/// Whether a member's replay sends an event of `kind`, given whether they
/// were in the room just before it (`member`, updated). A user sees their
/// own leave, kick or ban, then nothing of the room until they join again
/// (their `member_joined` included): a replay read after a leave in another
/// tab must not show what came after it (DESIGN: events go to members only;
/// for a private room, anything else is a leak).
fn seen_by(user_id: i64, member: &mut bool, kind: &EventKind) -> bool {
    let before = *member;
    match kind {
        EventKind::MemberLeft { user }
        | EventKind::MemberKicked { user, .. }
        | EventKind::MemberBanned { user, .. }
            if user.id == user_id =>
        {
            *member = false;
        }
        EventKind::MemberJoined { user, .. } if user.id == user_id => *member = true,
        _ => {}
    }
    before || *member
}

async fn feed(sink: &mut Sink, frame: Utf8Bytes) -> Result<(), Close> {
    sink.feed(Message::Text(frame))
        .await
        .map_err(|_| Close::Normal)
}

impl V2Writer {
    /// Sends the room's events after `after` from the store, or `gap` when
    /// there are more than [`RESUME_LIMIT`]; live events of the room queued
    /// behind this replay are then sent only above what it covered.
    async fn replay(&mut self, sink: &mut Sink, room_id: i64, after: i64) -> Result<(), Close> {
        let store = &self.state.store;
        let failed = |err: crate::store::StoreError| {
            // A replay with a hole would break the no-gap promise: close
            // instead, and the client resumes on reconnect.
            tracing::error!(cause = %err, room = room_id, "replay failed");
            Close::Internal
        };
        let last_seq = store
            .rooms
            .last_seqs(&[room_id])
            .await
            .map_err(failed)?
            .first()
            .map_or(0, |&(_, seq)| seq);
        if last_seq - after > i64::from(RESUME_LIMIT) || after > last_seq {
            feed(sink, encode(&ServerFrame::Gap { room_id, last_seq })).await?;
            self.dedupe.replayed(room_id, last_seq);
            return Ok(());
        }
        let mut cursor = after;
        // A replay is queued for a room the user belonged to; it is read
        // from the store later, and they may have left it meanwhile.
        let mut member = true;
        loop {
            let page = store
                .events
                .replay(room_id, cursor, REPLAY_PAGE)
                .await
                .map_err(failed)?;
            let full = page.len() >= REPLAY_PAGE as usize;
            for event in page {
                cursor = event.seq;
                if seen_by(self.user_id, &mut member, &event.kind) {
                    feed(sink, encode(&ServerFrame::Event(event))).await?;
                }
            }
            if !full {
                break;
            }
        }
        self.dedupe.replayed(room_id, cursor);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::protocol::UserInfo;

    fn user(id: i64) -> UserInfo {
        UserInfo {
            id,
            name: format!("u{id}"),
            picture: None,
        }
    }

    fn post() -> EventKind {
        EventKind::Unknown
    }

    /// What a replay to user 1 sends of `kinds`, starting as a member.
    fn sent(kinds: &[EventKind]) -> Vec<usize> {
        let mut member = true;
        kinds
            .iter()
            .enumerate()
            .filter(|(_, kind)| seen_by(1, &mut member, kind))
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn a_replay_stops_showing_the_room_at_the_users_own_leave_until_they_join_again() {
        let left = EventKind::MemberLeft { user: user(1) };
        let kicked = EventKind::MemberKicked {
            user: user(1),
            by: user(2),
        };
        let banned = EventKind::MemberBanned {
            user: user(1),
            by: user(2),
        };
        let joined = EventKind::MemberJoined {
            user: user(1),
            role: Role::Member,
            silent: false,
        };
        let other_left = EventKind::MemberLeft { user: user(2) };
        // Someone else leaving changes nothing.
        assert_eq!(sent(&[post(), other_left, post()]), [0, 1, 2]);
        // Their own leave is shown; what follows is not.
        assert_eq!(sent(&[post(), left.clone(), post(), post()]), [0, 1]);
        assert_eq!(sent(&[kicked, post()]), [0]);
        assert_eq!(sent(&[banned, post()]), [0]);
        // Joining again shows the room from the join on.
        assert_eq!(sent(&[post(), left, post(), joined, post()]), [0, 1, 3, 4]);
    }
}
