//! The browser's live chat state and its WebSocket connection (protocol v2).
//!
//! [`Chat`] is one per page (provided as context by `App`). It keeps the
//! whole client state, [`ChatState`], in one signal, and changes it only
//! through the two pure functions of [`reducer`]: `apply` for a frame from
//! the server, `intent` for what the user or the page does. What they ask
//! for in return ([`reducer::Effects`]: frames to send, the outbox to save,
//! a timer, a navigation) is done here. Components read the state through
//! memos, so a frame re-renders only what it changed.
//!
//! On the server it only holds the state for rendering; in the browser it
//! also owns the connection loop, which reconnects with capped, jittered
//! backoff. Every `hello` resumes each room from its cursor and resends
//! every message not yet acknowledged (same `client_id`, so nothing is
//! stored twice). The outbox is also kept in `localStorage`, so a reload
//! (or a crash of the tab) while offline loses nothing either.
//!
//! # Layout
//! - this module: [`Chat`], the glue between the signal, the reducer and
//!   the browser.
//! - [`state`] and [`reducer`]: the client as plain data and two pure
//!   functions, tested natively.
//! - `outbox` (browser only): the outbox's copy in `localStorage`.
//! - `transport` (browser only): the WebSocket loop.

use crate::{
    api::RoomPage,
    protocol::{v2::ServerFrame, ApiError, Me, RoomSummary},
};
use leptos::prelude::*;
use reducer::{Effects, Intent};
pub use state::{ChatState, Item, RoomEntry, Timeline};

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

fn now_ms() -> f64 {
    #[cfg(feature = "hydrate")]
    return js_sys::Date::now();
    #[cfg(not(feature = "hydrate"))]
    return 0.0;
}

/// The page's chat client. `Copy`: every field is an arena handle.
#[derive(Debug, Clone, Copy)]
pub struct Chat {
    /// Everything the client knows; changed only by [`reducer`].
    pub state: RwSignal<ChatState>,
    /// Set once the page is hydrated; server-rendered text that depends on
    /// the browser (local times) switches over when it flips.
    pub hydrated: RwSignal<bool>,
    /// The connection's state.
    pub status: Memo<Status>,
    /// A `hello` has come on this page: the room list is the live one from
    /// then on, and page data no longer replaces it.
    live: StoredValue<bool>,
    /// How many times a room pane has opened a room on this page: a pane
    /// closes its room only if no pane opened one after it.
    opens: StoredValue<u64>,
    /// The earliest time a `Tick` is already scheduled for (ms).
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    wake: StoredValue<f64>,
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
        let state = RwSignal::new(ChatState::default());
        Self {
            state,
            hydrated: RwSignal::new(false),
            status: Memo::new(move |_| state.with(|s| s.status)),
            live: StoredValue::new(false),
            opens: StoredValue::new(0),
            wake: StoredValue::new(f64::INFINITY),
            #[cfg(feature = "hydrate")]
            conn: StoredValue::new_local(None),
        }
    }

    /// The signed-in user and their rooms from page data. Once the socket
    /// has said `hello`, its room list (kept current by events) wins: page
    /// data read before an event would undo it.
    pub fn seed(&self, me: Option<Me>, rooms: Vec<RoomSummary>) {
        let live = self.live.get_value();
        self.state.update(|s| {
            if s.me.as_ref().map(|m| m.id) != me.as_ref().map(|m| m.id) {
                *s = ChatState::new(me);
            } else if let Some(me) = me {
                s.me = Some(me);
            }
            if !live {
                s.rooms = rooms.into_iter().map(RoomEntry::new).collect();
                s.sort_rooms();
            }
        });
    }

    /// The signed-in user (with their email, which only they see).
    pub fn me(&self) -> Option<Me> {
        self.state.with_untracked(|s| s.me.clone())
    }

    /// Applies one frame from the server.
    pub fn apply(&self, frame: ServerFrame) {
        match frame {
            // Nothing to change: do not wake every view of the state.
            ServerFrame::Pong | ServerFrame::Unknown => return,
            ServerFrame::Hello { .. } => self.live.set_value(true),
            _ => {}
        }
        self.run(|s| reducer::apply(s, frame, now_ms()));
    }

    /// Applies what the user or the page did; returns why it was refused
    /// before reaching the server, if it was.
    pub fn dispatch(&self, intent: Intent) -> Result<(), ApiError> {
        match self.run(|s| reducer::intent(s, intent, now_ms())) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Changes the state and carries out the effects. A no-op once the
    /// page's owner is gone (cleanups may run after it).
    fn run(&self, change: impl FnOnce(&mut ChatState) -> Effects) -> Option<ApiError> {
        let before = self
            .state
            .try_with_untracked(|s| s.outbox.entries.clone())?;
        let fx = self.state.try_update(change)?;
        if fx.save_outbox {
            self.save_outbox(before);
        }
        for frame in &fx.send {
            self.send_frame(frame);
        }
        if let Some(at) = fx.wake_at {
            self.wake_at(at);
        }
        if let Some(path) = &fx.navigate {
            navigate(path);
        }
        fx.refused
    }

    /// Shows `room` (a member's view or a preview) from its page; returns
    /// the ticket its pane closes it with.
    pub fn open(&self, room: &RoomPage) -> u64 {
        let ticket = self.opens.try_update_value(|n| {
            *n += 1;
            *n
        });
        let _ = self.dispatch(Intent::Open {
            summary: room.summary.clone(),
            messages: room.messages.clone(),
            has_more: room.has_more,
            // The summary was read before the page: events after it are
            // replayed by `open` (duplicates are dropped by seq).
            cursor: room.summary.last_seq,
            members: room.members.iter().map(|m| m.user.clone()).collect(),
            online: room.online.clone(),
        });
        ticket.unwrap_or_default()
    }

    /// Closes `room_id` if it is the room on screen and no pane opened a
    /// room after the one holding `ticket`. Runs from a component's cleanup,
    /// which may come after the owner of the state is gone (a whole page
    /// torn down, as SSR does after every render): then there is nothing to
    /// close. Cleanups of a replaced pane may also run after its successor
    /// opened the same room: the ticket keeps them from closing it.
    pub fn close(&self, room_id: i64, ticket: u64) {
        if self.opens.try_get_value() != Some(ticket) {
            return;
        }
        let open = self
            .state
            .try_with_untracked(|s| s.timeline(room_id).is_some())
            .unwrap_or(false);
        if open {
            let _ = self.dispatch(Intent::Close);
        }
    }

    /// Queues a message for the open room. Returns the reason when it cannot
    /// be sent at all (the composer then keeps the text).
    pub fn send_message(&self, body: String) -> Result<(), ApiError> {
        self.dispatch(Intent::Send {
            client_id: uuid::Uuid::new_v4().to_string(),
            body,
            mentions: Vec::new(),
        })
    }

    /// Sends a refused message again, with its original `client_id` (so it
    /// can never be stored twice).
    pub fn retry(&self, client_id: &str) {
        let _ = self.dispatch(Intent::Retry {
            client_id: client_id.to_owned(),
        });
    }

    /// Asks for the page of history above the oldest message shown.
    pub fn load_older(&self) {
        let _ = self.dispatch(Intent::LoadOlder);
    }

    /// Tells the open room that this user is typing (throttled).
    pub fn typing(&self) {
        let _ = self.dispatch(Intent::Typing);
    }

    /// The timeline is (or is no longer) scrolled to the newest line.
    pub fn at_bottom(&self, at_bottom: bool) {
        let changed = self
            .state
            .with_untracked(|s| s.open.as_ref().is_some_and(|t| t.at_bottom != at_bottom));
        if changed {
            let _ = self.dispatch(Intent::AtBottom(at_bottom));
        }
    }

    /// Starts the connection loop (browser only; idempotent). Also adopts
    /// sends saved by an earlier page (or another tab) and not yet
    /// acknowledged: they are resent once online, and a resend of a stored
    /// message is only acknowledged again.
    pub fn start(&self) {
        #[cfg(feature = "hydrate")]
        {
            if self.conn.with_value(Option::is_some) {
                return;
            }
            if let Some(me) = self.me() {
                let _ = self.dispatch(Intent::AdoptOutbox(outbox::load(me.id)));
            }
            self.watch_visibility();
            transport::start(*self);
        }
    }

    /// Stops the connection loop on sign-out, forgetting unsent messages
    /// (they must not outlive the session in this browser).
    pub fn stop(&self) {
        #[cfg(feature = "hydrate")]
        {
            transport::stop(*self);
            if let Some(me) = self.me() {
                outbox::update(me.id, Vec::clear);
            }
        }
        self.live.set_value(false);
        self.state.update(|s| *s = ChatState::default());
    }

    /// Persists the outbox's change since `before`: adds and removals are
    /// applied to the stored copy (which other tabs share), never a
    /// wholesale overwrite of it.
    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    fn save_outbox(&self, before: Vec<state::OutboxEntry>) {
        #[cfg(feature = "hydrate")]
        {
            let Some((me, now)) = self
                .state
                .with_untracked(|s| s.me.as_ref().map(|m| (m.id, s.outbox.entries.clone())))
            else {
                return;
            };
            outbox::update(me, |saved| {
                saved.retain(|e| {
                    !before.iter().any(|b| b.client_id == e.client_id)
                        || now.iter().any(|n| n.client_id == e.client_id)
                });
                for entry in &now {
                    if !saved.iter().any(|e| e.client_id == entry.client_id) {
                        saved.push(entry.clone());
                    }
                }
            });
        }
    }

    /// Calls `Tick` at `at` (ms) or soon after, unless one is due sooner.
    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    fn wake_at(&self, at: f64) {
        #[cfg(feature = "hydrate")]
        {
            let now = now_ms();
            let scheduled = self.wake.get_value();
            if scheduled > now && scheduled <= at {
                return; // that tick comes first and asks again
            }
            self.wake.set_value(at);
            let chat = *self;
            let delay = (at - now).clamp(0.0, 60_000.0) as u32 + 5;
            gloo_timers::callback::Timeout::new(delay, move || {
                if chat.wake.try_get_value().is_none() {
                    return; // the page is gone
                }
                chat.wake.set_value(f64::INFINITY);
                let _ = chat.dispatch(Intent::Tick);
            })
            .forget();
        }
    }

    /// Tells the reducer whether the page is visible, now and on change.
    #[cfg(feature = "hydrate")]
    fn watch_visibility(&self) {
        let Some(document) = web_sys::window().and_then(|w| w.document()) else {
            return;
        };
        let visible =
            |d: &web_sys::Document| d.visibility_state() == web_sys::VisibilityState::Visible;
        let _ = self.dispatch(Intent::Visible(visible(&document)));
        let chat = *self;
        let doc = document.clone();
        gloo_events::EventListener::new(&document, "visibilitychange", move |_| {
            let _ = chat.dispatch(Intent::Visible(visible(&doc)));
        })
        .forget();
    }

    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    fn send_frame(&self, frame: &crate::protocol::v2::ClientFrame) {
        #[cfg(feature = "hydrate")]
        transport::send(*self, frame);
    }
}

/// Goes to `path` (the open room went away).
#[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
fn navigate(path: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(window) = web_sys::window() {
        let _ = window.location().set_href(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{RoomKind, UserInfo};

    fn page(id: i64) -> RoomPage {
        RoomPage {
            summary: RoomSummary {
                id,
                kind: RoomKind::Public,
                name: Some("general".into()),
                topic: String::new(),
                last_seq: 0,
                member_count: 1,
                role: Some(crate::protocol::Role::Member),
                last_read_seq: 0,
                unread: 0,
                mentions: 0,
            },
            messages: vec![],
            has_more: false,
            members: vec![],
            online: vec![UserInfo::default()],
            can_join: false,
        }
    }

    /// SSR drops a rendered page's owners in no fixed order: the room pane's
    /// cleanup can run after the page-wide state it closes is disposed.
    #[test]
    fn closing_a_room_after_the_page_is_gone_does_nothing() {
        let owner = Owner::new();
        let (chat, ticket) = owner.with(|| {
            let chat = Chat::new();
            let ticket = chat.open(&page(1));
            (chat, ticket)
        });
        chat.close(1, ticket);
        assert!(
            chat.state.with_untracked(|s| s.open.is_none()),
            "closed while alive"
        );
        let ticket = owner.with(|| chat.open(&page(1)));
        owner.cleanup();
        drop(owner);
        chat.close(1, ticket);
        chat.close(2, ticket);
    }

    /// A replaced pane's cleanup may run after the new pane opened the same
    /// room (SSR disposes owners in no fixed order): it must not close it.
    #[test]
    fn a_replaced_panes_cleanup_does_not_close_its_successors_room() {
        let owner = Owner::new();
        owner.with(|| {
            let chat = Chat::new();
            let old = chat.open(&page(1));
            let new = chat.open(&page(1));
            chat.close(1, old);
            assert!(chat.state.with_untracked(|s| s.timeline(1).is_some()));
            chat.close(1, new);
            assert!(chat.state.with_untracked(|s| s.open.is_none()));
        });
    }

    /// Page data fills the sidebar until the socket's `hello`; after it, a
    /// page loaded later must not undo what events changed.
    #[test]
    fn page_data_seeds_the_rooms_only_before_hello() {
        let owner = Owner::new();
        owner.with(|| {
            let chat = Chat::new();
            let me = Me {
                id: 1,
                name: "Ann".into(),
                ..Me::default()
            };
            let mut general = page(1).summary;
            chat.seed(Some(me.clone()), vec![general.clone()]);
            assert_eq!(chat.state.with_untracked(|s| s.rooms.len()), 1);
            chat.apply(ServerFrame::Hello {
                protocol: 2,
                user: me.clone(),
                rooms: vec![],
                resume_limit: 500,
            });
            general.unread = 5;
            chat.seed(Some(me), vec![general]);
            assert!(chat.state.with_untracked(|s| s.rooms.is_empty()));
        });
    }
}
