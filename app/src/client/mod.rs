//! The browser's live chat state and its WebSocket connection.
//!
//! [`Chat`] is one per page (provided as context by `App`). On the server it
//! only holds signals for rendering; in the browser it also owns a connection
//! loop that reconnects with capped, jittered backoff and, on every (re)connect,
//! resubscribes the open room from the last `seq` it has and resends every
//! message not yet acknowledged (same `client_id`, so nothing is stored twice).
//! The outbox is also kept in `localStorage`, so a reload (or a crash of the
//! tab) while offline loses nothing either.
//!
//! # Layout
//! - this module: [`Chat`], today's (protocol v1) signals and intents.
//! - `outbox` (browser only): the outbox's copy in `localStorage`.
//! - `transport` (browser only): the WebSocket loop.
//! - [`state`] and [`reducer`]: the protocol v2 client as plain data and two
//!   pure functions, tested natively; not wired into the page yet.

use crate::protocol::{
    validate_body, ApiError, ChatMessage, ClientFrame, ErrorCode, Me, RoomInfo, ServerFrame,
    SystemEvent, UserInfo, HISTORY_PAGE,
};
use leptos::prelude::*;

#[cfg(feature = "hydrate")]
mod outbox;
pub mod reducer;
pub mod state;
#[cfg(feature = "hydrate")]
mod transport;

/// Connection state shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not started (server rendering, or signed out).
    Idle,
    Connecting,
    Online,
    /// Lost; a reconnect is scheduled.
    Reconnecting,
    /// The browser has no network; reconnects as soon as it is back.
    Offline,
}

/// One line in the message pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A committed message.
    Message(ChatMessage),
    /// A message sent by this tab that has no `seq` yet.
    Pending {
        client_id: String,
        body: String,
        author: UserInfo,
        /// Why the server refused it, if it did.
        failed: Option<String>,
    },
    /// A join or leave notice.
    Notice {
        key: u64,
        user: String,
        event: SystemEvent,
        ts: i64,
    },
}

impl Item {
    /// A key that is stable for the life of the line.
    pub fn key(&self) -> String {
        match self {
            Item::Message(m) => format!("m{}", m.seq),
            // `<For>` re-renders a line only when its key changes: a
            // pending line that fails (or is retried) must change key.
            Item::Pending {
                client_id, failed, ..
            } => format!("p{client_id}{}", if failed.is_some() { "!" } else { "" }),
            Item::Notice { key, .. } => format!("n{key}"),
        }
    }
}

/// The live state of the room on screen.
#[derive(Debug, Clone, Copy)]
pub struct RoomState {
    pub name: RwSignal<String>,
    pub items: RwSignal<Vec<Item>>,
    pub online: RwSignal<Vec<UserInfo>>,
    /// Highest `seq` seen: the resume cursor.
    pub last_seq: RwSignal<i64>,
    /// Others typing here, with when the notice lapses (ms since the epoch).
    pub typing: RwSignal<Vec<(UserInfo, f64)>>,
    /// Whether messages older than the first one shown exist.
    pub has_more: RwSignal<bool>,
    /// A page of older messages has been asked for and not yet answered.
    pub loading_older: RwSignal<bool>,
}

impl RoomState {
    pub fn new(
        name: String,
        messages: Vec<ChatMessage>,
        has_more: bool,
        online: Vec<UserInfo>,
    ) -> Self {
        let last_seq = messages.last().map_or(0, |m| m.seq);
        Self {
            name: RwSignal::new(name),
            items: RwSignal::new(messages.into_iter().map(Item::Message).collect()),
            online: RwSignal::new(online),
            last_seq: RwSignal::new(last_seq),
            typing: RwSignal::new(Vec::new()),
            has_more: RwSignal::new(has_more),
            loading_older: RwSignal::new(false),
        }
    }

    /// The oldest message shown: where the next page of history ends.
    pub fn first_seq(&self) -> Option<i64> {
        self.items.with_untracked(|items| first_seq(items))
    }

    /// Puts a page of older history above what is shown.
    fn prepend(&self, older: Vec<ChatMessage>, has_more: bool) {
        self.loading_older.set(false);
        self.has_more.set(has_more);
        self.items.update(|items| {
            let first = first_seq(items);
            let older = older
                .into_iter()
                .filter(|m| first.is_none_or(|first| m.seq < first))
                .map(Item::Message);
            items.splice(0..0, older);
        });
    }

    fn apply_message(&self, message: ChatMessage) {
        if message.seq <= self.last_seq.get_untracked() {
            return; // already shown (replay overlap or duplicate delivery)
        }
        self.last_seq.set(message.seq);
        let author = message.author.id;
        if self
            .typing
            .with_untracked(|t| t.iter().any(|(u, _)| u.id == author))
        {
            self.typing.update(|t| t.retain(|(u, _)| u.id != author));
        }
        self.items.update(|items| {
            // Our own message replaces its pending line. Committed messages
            // go before the pending ones, which stay at the end until acked.
            items.retain(
                |i| !matches!(i, Item::Pending { client_id, .. } if *client_id == message.client_id),
            );
            let at = first_pending(items);
            items.insert(at, Item::Message(message));
        });
    }
}

/// How often a typing tab says so, and how long others show it.
const TYPING_RESEND_MS: f64 = 2500.0;
const TYPING_SHOWN_MS: f64 = 4000.0;

fn now_ms() -> f64 {
    #[cfg(feature = "hydrate")]
    return js_sys::Date::now();
    #[cfg(not(feature = "hydrate"))]
    return 0.0;
}

/// Drops lapsed typing notices once the newest one has lapsed.
fn expire_typing_later(state: RoomState) {
    #[cfg(feature = "hydrate")]
    gloo_timers::callback::Timeout::new(TYPING_SHOWN_MS as u32 + 50, move || {
        let now = now_ms();
        // The room may be gone (navigated away): try_update is a no-op then.
        state
            .typing
            .try_update(|typing| typing.retain(|(_, until)| *until > now));
    })
    .forget();
    #[cfg(not(feature = "hydrate"))]
    let _ = state;
}

/// The lowest `seq` among `items`.
pub fn first_seq(items: &[Item]) -> Option<i64> {
    items.iter().find_map(|i| match i {
        Item::Message(m) => Some(m.seq),
        _ => None,
    })
}

/// Where committed lines end and this tab's pending ones begin.
fn first_pending(items: &[Item]) -> usize {
    items
        .iter()
        .position(|i| matches!(i, Item::Pending { .. }))
        .unwrap_or(items.len())
}

/// An unacknowledged send: (room, client_id, body).
type OutboxEntry = (String, String, String);

/// The page's chat client. `Copy`: every field is an arena handle.
#[derive(Debug, Clone, Copy)]
pub struct Chat {
    pub status: RwSignal<Status>,
    /// Set once the page is hydrated; server-rendered text that depends on
    /// the browser (local times) switches over when it flips.
    pub hydrated: RwSignal<bool>,
    /// The signed-in user (with their email, which only they see).
    pub me: RwSignal<Option<Me>>,
    pub rooms: RwSignal<Vec<RoomInfo>>,
    pub active: RwSignal<Option<RoomState>>,
    /// The last error not tied to a message.
    pub notice: RwSignal<Option<String>>,
    /// Sends not yet acknowledged, resent on reconnect: (room, client_id, body).
    outbox: RwSignal<Vec<OutboxEntry>>,
    notice_seq: StoredValue<u64>,
    /// When this tab last said it was typing (ms), to send it at most every few seconds.
    typing_sent: StoredValue<f64>,
    #[cfg(feature = "hydrate")]
    conn: StoredValue<Option<transport::Conn>, LocalStorage>,
}

impl Default for Chat {
    fn default() -> Self {
        Self::new()
    }
}

impl Chat {
    pub fn new() -> Self {
        Self {
            status: RwSignal::new(Status::Idle),
            hydrated: RwSignal::new(false),
            me: RwSignal::new(None),
            rooms: RwSignal::new(Vec::new()),
            active: RwSignal::new(None),
            notice: RwSignal::new(None),
            outbox: RwSignal::new(Vec::new()),
            notice_seq: StoredValue::new(0),
            typing_sent: StoredValue::new(0.0),
            #[cfg(feature = "hydrate")]
            conn: StoredValue::new_local(None),
        }
    }

    /// Makes `room` the room on screen and subscribes to it from its cursor.
    pub fn open(&self, room: RoomState) {
        let previous = self.active.get_untracked();
        let name = room.name.get_untracked();
        if let Some(prev) = previous {
            let prev_name = prev.name.get_untracked();
            if prev_name != name {
                self.send_frame(&ClientFrame::Unsubscribe { room: prev_name });
            }
        }
        self.show_pending(room);
        self.active.set(Some(room));
        self.send_frame(&ClientFrame::Subscribe {
            room: name,
            since: Some(room.last_seq.get_untracked()),
        });
    }

    /// Shows this room's unacknowledged sends (typed here earlier, or in
    /// another tab or before a reload) as pending lines.
    fn show_pending(&self, room: RoomState) {
        let name = room.name.get_untracked();
        let author = self.author();
        self.outbox.with_untracked(|outbox| {
            room.items.update(|items| {
                for (_, client_id, body) in outbox.iter().filter(|(r, ..)| *r == name) {
                    let shown = items.iter().any(|i| match i {
                        Item::Pending { client_id: id, .. } => id == client_id,
                        Item::Message(m) => m.client_id == *client_id,
                        Item::Notice { .. } => false,
                    });
                    if !shown {
                        items.push(Item::Pending {
                            client_id: client_id.clone(),
                            body: body.clone(),
                            author: author.clone(),
                            failed: None,
                        });
                    }
                }
            })
        });
    }

    fn author(&self) -> UserInfo {
        self.me.get_untracked().unwrap_or_default().public()
    }

    /// Asks for the page of history above the oldest message shown, if
    /// there is one and it is not already on its way.
    pub fn load_older(&self) {
        let Some(room) = self.active.get_untracked() else {
            return;
        };
        if !room.has_more.get_untracked()
            || room.loading_older.get_untracked()
            || self.status.get_untracked() != Status::Online
        {
            return;
        }
        room.loading_older.set(true);
        self.send_frame(&ClientFrame::History {
            room: room.name.get_untracked(),
            before: room.first_seq(),
            limit: Some(i64::from(HISTORY_PAGE)),
        });
    }

    /// Leaves `name` if it is the room on screen.
    ///
    /// Runs from a component's cleanup, which may come after the owner of
    /// these signals is gone (a whole page torn down, as SSR does after every
    /// render): then there is nothing to leave.
    pub fn close(&self, name: &str) {
        let is_active = self
            .active
            .try_with_untracked(|a| {
                a.is_some_and(|r| r.name.try_with_untracked(|n| n == name) == Some(true))
            })
            .unwrap_or(false);
        if is_active {
            self.active.set(None);
            self.send_frame(&ClientFrame::Unsubscribe {
                room: name.to_owned(),
            });
        }
    }

    /// Queues a message for the open room. Returns the reason when it cannot
    /// be sent at all (the composer then keeps the text).
    pub fn send_message(&self, body: String) -> Result<(), ApiError> {
        validate_body(&body)?;
        let Some(room) = self.active.get_untracked() else {
            return Err(ApiError::new(ErrorCode::NotJoined, "Open a room first."));
        };
        let author = self.author();
        let client_id = uuid::Uuid::new_v4().to_string();
        let name = room.name.get_untracked();
        room.items.update(|items| {
            items.push(Item::Pending {
                client_id: client_id.clone(),
                body: body.clone(),
                author,
                failed: None,
            })
        });
        self.post(name, client_id, body);
        Ok(())
    }

    /// Keeps a send in the outbox until it is settled (acked or refused)
    /// and sends it if online; `resume` resends it otherwise.
    fn post(&self, room: String, client_id: String, body: String) {
        let entry = (room.clone(), client_id.clone(), body.clone());
        self.save_outbox(|saved| saved.push(entry.clone()));
        self.outbox.update(|o| o.push(entry));
        self.send_frame(&ClientFrame::Send {
            room,
            client_id,
            body,
        });
    }

    /// Forgets a send the server has answered.
    fn settle(&self, client_id: &str) {
        if self
            .outbox
            .with_untracked(|o| o.iter().any(|(_, id, _)| id == client_id))
        {
            self.save_outbox(|saved| saved.retain(|(_, id, _)| id != client_id));
            self.outbox
                .update(|o| o.retain(|(_, id, _)| id != client_id));
        }
    }

    /// Changes the copy of the outbox kept in the browser's storage.
    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    fn save_outbox(&self, change: impl FnOnce(&mut Vec<OutboxEntry>)) {
        #[cfg(feature = "hydrate")]
        if let Some(me) = self.me.get_untracked() {
            outbox::update(me.id, change);
        }
    }

    /// Sends a refused message again, with its original `client_id` (so it
    /// can never be stored twice).
    pub fn retry(&self, client_id: &str) {
        let Some(room) = self.active.get_untracked() else {
            return;
        };
        let mut body = None;
        room.items.update(|items| {
            for item in items.iter_mut() {
                if let Item::Pending {
                    client_id: id,
                    body: text,
                    failed,
                    ..
                } = item
                {
                    if id == client_id && failed.take().is_some() {
                        body = Some(text.clone());
                    }
                }
            }
        });
        let Some(body) = body else { return };
        self.post(room.name.get_untracked(), client_id.to_owned(), body);
    }

    /// Tells the open room that this user is typing (throttled).
    pub fn typing(&self) {
        let now = now_ms();
        if now - self.typing_sent.get_value() < TYPING_RESEND_MS {
            return;
        }
        if let Some(room) = self.active.get_untracked() {
            self.typing_sent.set_value(now);
            self.send_frame(&ClientFrame::Typing {
                room: room.name.get_untracked(),
            });
        }
    }

    /// Applies one frame from the server to the state.
    pub fn apply(&self, frame: ServerFrame) {
        let active = self.active.get_untracked();
        let is_active = |room: &str| active.filter(|a| a.name.with_untracked(|n| n == room));
        match frame {
            ServerFrame::Hello { user, .. } => {
                self.me.set(Some(user));
                self.status.set(Status::Online);
                self.resume();
            }
            ServerFrame::Message(message) => {
                let client_id = message.client_id.clone();
                if let Some(room) = is_active(&message.room) {
                    room.apply_message(message);
                }
                self.settle(&client_id);
            }
            ServerFrame::Ack { client_id, .. } => {
                self.settle(&client_id);
            }
            ServerFrame::Error {
                message,
                client_id: Some(client_id),
                room,
                ..
            } => {
                self.settle(&client_id);
                if let Some(state) = room.as_deref().and_then(is_active) {
                    state.items.update(|items| {
                        for item in items.iter_mut() {
                            if let Item::Pending {
                                client_id: id,
                                failed,
                                ..
                            } = item
                            {
                                if *id == client_id {
                                    *failed = Some(message.clone());
                                }
                            }
                        }
                    });
                }
            }
            ServerFrame::Error { message, room, .. } => {
                if let Some(state) = room.as_deref().and_then(is_active) {
                    state.loading_older.set(false);
                }
                self.notice.set(Some(message))
            }
            ServerFrame::Presence { room, users } => {
                if let Some(state) = is_active(&room) {
                    state.online.set(users);
                }
            }
            ServerFrame::System {
                room,
                event,
                user,
                ts,
            } => {
                if let Some(state) = is_active(&room) {
                    state.online.update(|online| match event {
                        SystemEvent::Joined if !online.contains(&user) => online.push(user.clone()),
                        SystemEvent::Joined => {}
                        SystemEvent::Left => online.retain(|u| u.id != user.id),
                    });
                    let key = self.notice_seq.get_value() + 1;
                    self.notice_seq.set_value(key);
                    state.items.update(|items| {
                        let at = first_pending(items);
                        items.insert(
                            at,
                            Item::Notice {
                                key,
                                user: user.name,
                                event,
                                ts,
                            },
                        );
                    });
                }
            }
            ServerFrame::Rooms { rooms } => self.rooms.update(|list| {
                for room in rooms {
                    match list.iter_mut().find(|r| r.name == room.name) {
                        Some(existing) => *existing = room,
                        None => list.push(room),
                    }
                }
            }),
            ServerFrame::Typing { room, user } => {
                let mine = self
                    .me
                    .with_untracked(|me| me.as_ref().is_some_and(|m| m.id == user.id));
                if let (Some(state), false) = (is_active(&room), mine) {
                    let until = now_ms() + TYPING_SHOWN_MS;
                    state.typing.update(|typing| {
                        typing.retain(|(u, _)| u.id != user.id);
                        typing.push((user, until));
                    });
                    expire_typing_later(state);
                }
            }
            ServerFrame::History {
                room,
                messages,
                has_more,
            } => {
                if let Some(state) = is_active(&room) {
                    state.prepend(messages, has_more);
                }
            }
            ServerFrame::Pong => {}
        }
    }

    /// After a (re)connect: subscribe the open room from its cursor, then
    /// resend what was never acknowledged.
    fn resume(&self) {
        if let Some(room) = self.active.get_untracked() {
            // A history request lost with the old socket is asked again on scroll.
            room.loading_older.set(false);
            self.send_frame(&ClientFrame::Subscribe {
                room: room.name.get_untracked(),
                since: Some(room.last_seq.get_untracked()),
            });
        }
        let active = self.active.get_untracked().map(|r| r.name.get_untracked());
        let outbox = self.outbox.get_untracked();
        let mut rooms: Vec<&String> = Vec::new();
        for (room, ..) in &outbox {
            if !rooms.contains(&room) {
                rooms.push(room);
            }
        }
        for room in rooms {
            // Sends need a joined room: join one that is not on screen just
            // long enough to hand over what was typed there.
            let elsewhere = active.as_ref() != Some(room);
            if elsewhere {
                self.send_frame(&ClientFrame::Subscribe {
                    room: room.clone(),
                    since: None,
                });
            }
            for (_, client_id, body) in outbox.iter().filter(|(r, ..)| r == room) {
                self.send_frame(&ClientFrame::Send {
                    room: room.clone(),
                    client_id: client_id.clone(),
                    body: body.clone(),
                });
            }
            if elsewhere {
                self.send_frame(&ClientFrame::Unsubscribe { room: room.clone() });
            }
        }
    }

    /// Starts the connection loop (browser only; idempotent).
    /// Also adopts sends saved by an earlier page (or another tab) and
    /// not yet acknowledged: they are resent once online, and a resend of
    /// a stored message is only acknowledged again.
    pub fn start(&self) {
        #[cfg(feature = "hydrate")]
        {
            if let Some(me) = self.me.get_untracked() {
                let saved = outbox::load(me.id);
                self.outbox.update(|outbox| {
                    for entry in saved {
                        if !outbox.contains(&entry) {
                            outbox.push(entry);
                        }
                    }
                });
            }
            if let Some(room) = self.active.get_untracked() {
                self.show_pending(room);
            }
            transport::start(*self);
        }
    }

    /// Stops the connection loop on sign-out, forgetting unsent messages
    /// (they must not outlive the session in this browser).
    pub fn stop(&self) {
        #[cfg(feature = "hydrate")]
        transport::stop(*self);
        self.save_outbox(Vec::clear);
        self.outbox.update(Vec::clear);
        self.status.set(Status::Idle);
    }

    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    fn send_frame(&self, frame: &ClientFrame) {
        #[cfg(feature = "hydrate")]
        transport::send(*self, frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SSR drops a rendered page's owners in no fixed order: the room pane's
    /// cleanup can run after the page-wide state it closes is disposed.
    #[test]
    fn closing_a_room_after_the_page_is_gone_does_nothing() {
        let page = Owner::new();
        let chat = page.with(|| {
            let chat = Chat::new();
            chat.active.set(Some(RoomState::new(
                "general".into(),
                vec![],
                false,
                vec![],
            )));
            chat
        });
        chat.close("general");
        assert!(chat.active.get_untracked().is_none(), "closed while alive");
        page.with(|| {
            chat.active.set(Some(RoomState::new(
                "general".into(),
                vec![],
                false,
                vec![],
            )));
        });
        page.cleanup();
        drop(page);
        chat.close("general");
        chat.close("random");
    }
}
