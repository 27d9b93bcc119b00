//! The client's logic on protocol v2 as two pure functions: [`apply`] turns a
//! server frame into state, [`intent`] turns what the user (or the page)
//! does into state. Both return [`Effects`], the frames to send and other
//! things only the caller can do (save the outbox, set a timer, navigate).
//!
//! Time comes in as `now_ms`, so debounces and expiry are tested without
//! clocks: a caller that is asked to wake at `wake_at` calls
//! `intent(Intent::Tick)` then.
//!
//! Unread counting. `hello` (and `room_added`) bring the server's counts
//! from one snapshot together with `last_seq`; the entry's `counted_upto`
//! starts there, so events replayed up to it (the open room resumes from
//! its older timeline cursor) are not counted twice. Above it, a post from
//! someone else above the read marker adds one, unless the user is looking
//! at it (room open, page visible, scrolled to the bottom): then a `read`
//! is sent, debounced, and the server's `read` answer sets the counts.

use std::collections::BTreeMap;

use crate::protocol::{
    v2::{ClientFrame, ServerFrame},
    validate_body, validate_room_name, validate_topic, ApiError, ErrorCode, Event, EventKind,
    Message, RoomKind, RoomSummary, UserInfo, HISTORY_PAGE,
};

use super::{
    state::{ChatState, Counted, Item, OutboxEntry, ReadDue, RoomEntry, Timeline, MAX_COUNTED},
    Status,
};

/// How long a `read` waits for more reading to join it (ms).
pub const READ_DEBOUNCE_MS: f64 = 1000.0;
/// How often a typing tab says so (ms).
pub const TYPING_RESEND_MS: f64 = 2500.0;
/// How long others' typing is shown (ms).
pub const TYPING_SHOWN_MS: f64 = 4000.0;

/// What the caller must do after a state change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// Frames to send, in order (only ever produced while online).
    pub send: Vec<ClientFrame>,
    /// The outbox changed: persist it.
    pub save_outbox: bool,
    /// Go to this path (the open room went away).
    pub navigate: Option<String>,
    /// Call `intent(Intent::Tick)` at this time (ms) or later.
    pub wake_at: Option<f64>,
    /// An intent that was refused before reaching the server (the composer
    /// keeps its text and shows this).
    pub refused: Option<ApiError>,
}

impl Effects {
    fn wake(&mut self, at: f64) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// What the user or the page does.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// The transport's state changed (it never reports `Online`: `hello` does).
    Status(Status),
    /// Show a room: its summary (`role: None` to preview), a page of its
    /// latest messages, and the event seq that page is current to.
    Open {
        summary: RoomSummary,
        messages: Vec<Message>,
        has_more: bool,
        cursor: i64,
        /// The first page of members, and who of everyone is online (from
        /// the page; `presence` on `open` then keeps them current).
        members: Vec<UserInfo>,
        online: Vec<UserInfo>,
    },
    /// Send a refused message again, with its original `client_id`.
    Retry {
        client_id: String,
    },
    /// Leave the room on screen.
    Close,
    /// Post in the open room. `client_id` is a fresh UUID from the caller.
    Send {
        client_id: String,
        body: String,
        mentions: Vec<i64>,
    },
    /// Scrolled to the top: ask for the page above.
    LoadOlder,
    /// A key pressed in the composer.
    Typing,
    /// The page became visible or hidden.
    Visible(bool),
    /// The timeline is (or no longer is) scrolled to the newest line.
    AtBottom(bool),
    Join {
        room_id: i64,
        client_id: String,
    },
    Leave {
        room_id: i64,
        client_id: String,
    },
    CreateRoom {
        client_id: String,
        name: String,
        topic: String,
    },
    Rename {
        room_id: i64,
        client_id: String,
        name: String,
    },
    SetTopic {
        room_id: i64,
        client_id: String,
        topic: String,
    },
    /// Sends saved by an earlier page or another tab: adopt them.
    AdoptOutbox(Vec<OutboxEntry>),
    /// A time asked for in [`Effects::wake_at`] has come.
    Tick,
}

/// Applies one frame from the server.
pub fn apply(s: &mut ChatState, frame: ServerFrame, now_ms: f64) -> Effects {
    let mut fx = Effects::default();
    match frame {
        ServerFrame::Hello { user, rooms, .. } => hello(s, user, rooms, now_ms, &mut fx),
        ServerFrame::Resumed { .. } => s.resumed = true,
        ServerFrame::Event(event) => on_event(s, event, now_ms, &mut fx),
        ServerFrame::Gap { room_id, last_seq } => gap(s, room_id, last_seq, &mut fx),
        ServerFrame::Ack { client_id, .. } => {
            fx.save_outbox = s.outbox.remove(&client_id);
        }
        ServerFrame::Error {
            message,
            client_id,
            room_id,
            ..
        } => error(s, message, client_id, room_id, &mut fx),
        ServerFrame::History {
            room_id,
            messages,
            has_more_before,
            has_more_after,
        } => history(s, room_id, messages, has_more_before, has_more_after),
        ServerFrame::Presence {
            room_id, online, ..
        } => {
            if let Some(t) = s.timeline_mut(room_id) {
                t.online = online.iter().map(|u| u.id).collect();
                for user in online {
                    add_member(t, user);
                }
            }
        }
        ServerFrame::PresenceChanged {
            room_id,
            user,
            online,
        } => {
            if let Some(t) = s.timeline_mut(room_id) {
                if online {
                    t.online.insert(user.id);
                    add_member(t, user);
                } else {
                    t.online.remove(&user.id);
                }
            }
        }
        ServerFrame::Typing { room_id, user } => {
            let me = s.my_id();
            if let Some(t) = s.timeline_mut(room_id).filter(|_| user.id != me) {
                let until = now_ms + TYPING_SHOWN_MS;
                t.typing.retain(|(u, _)| u.id != user.id);
                t.typing.push((user, until));
                fx.wake(until);
            }
        }
        ServerFrame::RoomAdded { room } => room_added(s, room),
        ServerFrame::RoomRemoved { room_id } => room_removed(s, room_id, &mut fx),
        ServerFrame::Read {
            room_id,
            last_read_seq,
            unread,
            mentions,
        } => {
            if let Some(entry) = s.room_mut(room_id) {
                entry.summary.last_read_seq = last_read_seq;
                entry.summary.unread = unread;
                entry.summary.mentions = mentions;
                entry.counted.retain(|c| c.seq > last_read_seq);
            }
            // Read here or in another tab: nothing left to send.
            if s.read_due
                .is_some_and(|d| d.room_id == room_id && d.seq <= last_read_seq)
            {
                s.read_due = None;
            }
        }
        ServerFrame::Pong | ServerFrame::Unknown => {}
    }
    fx
}

/// Applies one thing the user or the page did.
pub fn intent(s: &mut ChatState, i: Intent, now_ms: f64) -> Effects {
    let mut fx = Effects::default();
    match i {
        Intent::Status(status) => {
            s.status = status;
            if status != Status::Online {
                // Whatever was on its way went with the socket; `hello` asks again.
                s.resumed = false;
                s.read_due = None;
                if let Some(t) = &mut s.open {
                    t.loading_older = false;
                    t.typing.clear();
                }
            }
        }
        Intent::Open {
            summary,
            messages,
            has_more,
            cursor,
            members,
            online,
        } => {
            open(s, summary, messages, has_more, cursor, now_ms, &mut fx);
            if let Some(t) = &mut s.open {
                t.online = online.iter().map(|u| u.id).collect();
                for user in members.into_iter().chain(online) {
                    add_member(t, user);
                }
            }
        }
        Intent::Retry { client_id } => {
            let Some(body) = s
                .open
                .as_mut()
                .and_then(|t| t.pending_mut(&client_id))
                .and_then(|(body, failed)| failed.is_some().then(|| body.clone()))
            else {
                return fx;
            };
            send_message(s, client_id.clone(), body, Vec::new(), &mut fx);
            // Pending again only once it is on its way (a refusal, e.g.
            // after leaving the room, keeps it marked as not sent).
            if s.outbox.contains(&client_id) {
                if let Some((_, failed)) = s.open.as_mut().and_then(|t| t.pending_mut(&client_id)) {
                    *failed = None;
                }
            }
        }
        Intent::Close => {
            if let Some(t) = s.open.take() {
                send(s, &mut fx, ClientFrame::Close { room_id: t.room_id });
                if s.read_due.is_some_and(|d| d.room_id == t.room_id) {
                    flush_read(s, &mut fx);
                }
            }
        }
        Intent::Send {
            client_id,
            body,
            mentions,
        } => send_message(s, client_id, body, mentions, &mut fx),
        Intent::LoadOlder => {
            let online = s.status == Status::Online;
            let Some(t) = s.open.as_mut() else {
                return fx;
            };
            if !t.has_more || t.loading_older || t.awaiting_page || !online {
                return fx;
            }
            t.loading_older = true;
            let frame = ClientFrame::History {
                room_id: t.room_id,
                before: t.first_seq(),
                around: None,
                limit: Some(HISTORY_PAGE),
            };
            send(s, &mut fx, frame);
        }
        Intent::Typing => {
            let Some(room_id) = s
                .open
                .as_ref()
                .filter(|t| t.role.is_some())
                .map(|t| t.room_id)
            else {
                return fx;
            };
            if s.status == Status::Online && now_ms - s.typing_sent >= TYPING_RESEND_MS {
                s.typing_sent = now_ms;
                send(s, &mut fx, ClientFrame::Typing { room_id });
            }
        }
        Intent::Visible(visible) => {
            s.visible = visible;
            mark_read_if_looking(s, now_ms, &mut fx);
        }
        Intent::AtBottom(at_bottom) => {
            if let Some(t) = &mut s.open {
                t.at_bottom = at_bottom;
            }
            mark_read_if_looking(s, now_ms, &mut fx);
        }
        Intent::Join { room_id, client_id } => {
            command(s, &mut fx, ClientFrame::Join { room_id, client_id })
        }
        Intent::Leave { room_id, client_id } => {
            command(s, &mut fx, ClientFrame::Leave { room_id, client_id })
        }
        Intent::CreateRoom {
            client_id,
            name,
            topic,
        } => match (validate_room_name(&name), validate_topic(&topic)) {
            (Ok(name), Ok(topic)) => command(
                s,
                &mut fx,
                ClientFrame::CreateRoom {
                    client_id,
                    name,
                    topic,
                },
            ),
            (Err(err), _) | (_, Err(err)) => fx.refused = Some(err),
        },
        Intent::Rename {
            room_id,
            client_id,
            name,
        } => match validate_room_name(&name) {
            Ok(name) => command(
                s,
                &mut fx,
                ClientFrame::Rename {
                    room_id,
                    client_id,
                    name,
                },
            ),
            Err(err) => fx.refused = Some(err),
        },
        Intent::SetTopic {
            room_id,
            client_id,
            topic,
        } => match validate_topic(&topic) {
            Ok(topic) => command(
                s,
                &mut fx,
                ClientFrame::SetTopic {
                    room_id,
                    client_id,
                    topic,
                },
            ),
            Err(err) => fx.refused = Some(err),
        },
        Intent::AdoptOutbox(entries) => {
            let mut added = false;
            for entry in entries {
                added |= s.outbox.push(entry);
            }
            if added {
                show_pending(s);
            }
        }
        Intent::Tick => {
            if let Some(t) = &mut s.open {
                t.typing.retain(|(_, until)| *until > now_ms);
                if let Some(next) = t.typing.iter().map(|(_, until)| *until).reduce(f64::min) {
                    fx.wake(next);
                }
            }
            match s.read_due {
                Some(due) if due.at <= now_ms => flush_read(s, &mut fx),
                Some(due) => fx.wake(due.at),
                None => {}
            }
        }
    }
    fx
}

/// Queues a frame if there is a connection to take it. Offline, nothing is
/// lost: `hello` rebuilds what matters (resume, open, the outbox).
fn send(s: &ChatState, fx: &mut Effects, frame: ClientFrame) {
    if s.status == Status::Online {
        fx.send.push(frame);
    }
}

/// A command the user asked for (join, leave, create, rename, topic): sent
/// now, or refused as offline so the form can say so.
fn command(s: &mut ChatState, fx: &mut Effects, frame: ClientFrame) {
    if s.status == Status::Online {
        fx.send.push(frame);
    } else {
        fx.refused = Some(ApiError::new(
            ErrorCode::Unavailable,
            "Not connected; try again in a moment.",
        ));
    }
}

fn hello(
    s: &mut ChatState,
    user: crate::protocol::Me,
    rooms: Vec<RoomSummary>,
    now_ms: f64,
    fx: &mut Effects,
) {
    s.me = Some(user);
    s.status = Status::Online;
    s.resumed = false;
    s.read_due = None;
    s.rooms = rooms.into_iter().map(RoomEntry::new).collect();
    s.sort_rooms();

    let mut cursors: BTreeMap<i64, i64> = s
        .rooms
        .iter()
        .map(|r| (r.summary.id, r.summary.last_seq))
        .collect();
    let mut then = Vec::new();
    let summaries: Vec<(i64, RoomSummary)> = s
        .rooms
        .iter()
        .map(|r| (r.summary.id, r.summary.clone()))
        .collect();
    if let Some(t) = &mut s.open {
        let summary = summaries
            .iter()
            .find(|(id, _)| *id == t.room_id)
            .map(|(_, s)| s);
        t.loading_older = false;
        t.typing.clear();
        match summary {
            Some(summary) => {
                // A member: the open room resumes from what it shows, the
                // others from the snapshot (their timelines are not kept).
                t.role = summary.role;
                t.name.clone_from(&summary.name);
                t.topic.clone_from(&summary.topic);
                t.kind = summary.kind;
                cursors.insert(t.room_id, t.cursor);
                then.push(ClientFrame::Open {
                    room_id: t.room_id,
                    since: None,
                });
            }
            None => {
                // Previewing (or no longer a member): events come with `open`.
                t.role = None;
                then.push(ClientFrame::Open {
                    room_id: t.room_id,
                    since: Some(t.cursor),
                });
            }
        }
        if t.awaiting_page {
            then.push(latest_page(t.room_id));
        }
    }
    fx.send.push(ClientFrame::Resume { rooms: cursors });
    fx.send.extend(then);
    for entry in &s.outbox.entries {
        fx.send.push(ClientFrame::Send {
            room_id: entry.room_id,
            client_id: entry.client_id.clone(),
            body: entry.body.clone(),
            mentions: entry.mentions.clone(),
            reply_to: None,
        });
    }
    mark_read_if_looking(s, now_ms, fx);
}

fn latest_page(room_id: i64) -> ClientFrame {
    ClientFrame::History {
        room_id,
        before: None,
        around: None,
        limit: Some(HISTORY_PAGE),
    }
}

fn on_event(s: &mut ChatState, event: Event, now_ms: f64, fx: &mut Effects) {
    let me = s.my_id();
    let looking = s.visible
        && s.timeline(event.room_id)
            .is_some_and(|t| t.at_bottom && t.role.is_some());
    let mut read_upto = None;
    let mut renamed = false;
    if let Some(entry) = s.room_mut(event.room_id) {
        // The sidebar's own cursor: each event counts once.
        if event.seq > entry.counted_upto {
            let above_marker = event.seq > entry.summary.last_read_seq;
            entry.counted_upto = event.seq;
            entry.summary.last_seq = entry.summary.last_seq.max(event.seq);
            let summary = &mut entry.summary;
            match &event.kind {
                EventKind::Posted { message } if message.author.id != me && above_marker => {
                    if looking {
                        read_upto = Some(event.seq);
                    } else {
                        let mention = message.mentions.contains(&me);
                        summary.unread = summary.unread.saturating_add(1);
                        if mention {
                            summary.mentions = summary.mentions.saturating_add(1);
                        }
                        if entry.counted.len() >= MAX_COUNTED {
                            entry.counted.remove(0);
                        }
                        entry.counted.push(Counted {
                            seq: event.seq,
                            message_id: message.id,
                            mention,
                        });
                    }
                }
                EventKind::Deleted { message_id, .. } => {
                    if let Some(at) = entry
                        .counted
                        .iter()
                        .position(|c| c.message_id == *message_id)
                    {
                        let counted = entry.counted.remove(at);
                        summary.unread = summary.unread.saturating_sub(1);
                        if counted.mention {
                            summary.mentions = summary.mentions.saturating_sub(1);
                        }
                    }
                }
                EventKind::MemberJoined { .. } => {
                    summary.member_count = summary.member_count.saturating_add(1)
                }
                EventKind::MemberLeft { .. }
                | EventKind::MemberKicked { .. }
                | EventKind::MemberBanned { .. } => {
                    summary.member_count = summary.member_count.saturating_sub(1)
                }
                EventKind::RoleChanged { user, role, .. } if user.id == me => {
                    summary.role = Some(*role)
                }
                EventKind::Renamed { name, .. } => {
                    summary.name = Some(name.clone());
                    renamed = true;
                }
                EventKind::TopicChanged { topic, .. } => summary.topic.clone_from(topic),
                EventKind::KindChanged { room_kind, .. } => summary.kind = *room_kind,
                _ => {}
            }
        }
    }
    if renamed {
        s.sort_rooms();
    }
    let room_id = event.room_id;
    if let Some(t) = s.timeline_mut(room_id) {
        if event.seq > t.cursor {
            t.cursor = event.seq;
            apply_to_timeline(t, event, me);
        } else if !t.has_seq(event.seq) {
            // A replay behind live events (`open {since}` on a connection
            // that already gets the room by membership): fill the hole,
            // without rolling the header or members back to older state.
            fill_hole(t, event, me);
        }
    }
    if let Some(seq) = read_upto {
        schedule_read(s, seq, now_ms, fx);
    } else if s.timeline(room_id).is_some() {
        // Replayed posts counted by the snapshot: read once they are shown.
        mark_read_if_looking(s, now_ms, fx);
    }
}

fn apply_to_timeline(t: &mut Timeline, event: Event, me: i64) {
    match &event.kind {
        EventKind::Posted { message } => {
            let message = message.clone();
            t.typing.retain(|(u, _)| u.id != message.author.id);
            insert_message(t, message, me);
        }
        EventKind::Edited { message } => {
            if let Some(shown) = t.message_mut(message.id) {
                *shown = message.clone();
            }
        }
        EventKind::Deleted { message_id, .. } => {
            if let Some(shown) = t.message_mut(*message_id) {
                shown.deleted = true;
                shown.body.clear();
                shown.mentions.clear();
            }
        }
        EventKind::MemberJoined { user, silent, .. } => {
            add_member(t, user.clone());
            if !silent {
                t.upsert(Item::Notice(event));
            }
        }
        EventKind::MemberLeft { user }
        | EventKind::MemberKicked { user, .. }
        | EventKind::MemberBanned { user, .. } => {
            let id = user.id;
            t.members.retain(|u| u.id != id);
            t.online.remove(&id);
            t.upsert(Item::Notice(event));
        }
        EventKind::RoleChanged { user, role, .. } if user.id == me => t.role = Some(*role),
        EventKind::Renamed { name, .. } => {
            t.name = Some(name.clone());
            t.upsert(Item::Notice(event));
        }
        EventKind::TopicChanged { topic, .. } => {
            t.topic.clone_from(topic);
            t.upsert(Item::Notice(event));
        }
        EventKind::KindChanged { room_kind, .. } => t.kind = *room_kind,
        // Reactions, invitations, mutes: shown by later issues. Unknown
        // kinds are skipped; the cursor has moved past them either way.
        _ => {}
    }
}

/// Puts an event older than the timeline's cursor where it belongs: posts
/// and notices only (edits, deletions and state changes below the cursor
/// are already reflected, or superseded).
fn fill_hole(t: &mut Timeline, event: Event, me: i64) {
    match &event.kind {
        EventKind::Posted { message } => insert_message(t, message.clone(), me),
        EventKind::MemberJoined { silent: false, .. }
        | EventKind::MemberLeft { .. }
        | EventKind::MemberKicked { .. }
        | EventKind::MemberBanned { .. }
        | EventKind::Renamed { .. }
        | EventKind::TopicChanged { .. } => t.upsert(Item::Notice(event)),
        _ => {}
    }
}

/// Shows a committed message; the user's own replaces its pending line.
fn insert_message(t: &mut Timeline, message: Message, me: i64) {
    if message.author.id == me {
        t.items.retain(
            |i| !matches!(i, Item::Pending { client_id, .. } if *client_id == message.client_id),
        );
    }
    t.upsert(Item::Message(message));
}

fn add_member(t: &mut Timeline, user: crate::protocol::UserInfo) {
    match t.members.iter_mut().find(|u| u.id == user.id) {
        Some(known) => *known = user,
        None => t.members.push(user),
    }
}

fn gap(s: &mut ChatState, room_id: i64, last_seq: i64, fx: &mut Effects) {
    if let Some(entry) = s.room_mut(room_id) {
        // What was skipped is not counted here: the next `hello` or `read`
        // brings the server's counts.
        entry.counted_upto = entry.counted_upto.max(last_seq);
        entry.summary.last_seq = entry.summary.last_seq.max(last_seq);
    }
    if let Some(t) = s.timeline_mut(room_id) {
        t.items.retain(|i| matches!(i, Item::Pending { .. }));
        t.cursor = last_seq;
        t.has_more = false;
        t.loading_older = false;
        t.awaiting_page = true;
        send(s, fx, latest_page(room_id));
    }
}

fn history(
    s: &mut ChatState,
    room_id: i64,
    messages: Vec<Message>,
    has_more_before: bool,
    has_more_after: bool,
) {
    let me = s.my_id();
    let Some(t) = s.timeline_mut(room_id) else {
        return;
    };
    if t.awaiting_page {
        // Only the latest page (nothing after it) fills a timeline cleared
        // by `gap`; an older page asked for before the gap is stale.
        if has_more_after {
            return;
        }
        t.awaiting_page = false;
    } else if t.loading_older {
        t.loading_older = false;
    } else {
        return; // not asked for by this timeline
    }
    t.has_more = has_more_before;
    for message in messages {
        insert_message(t, message, me);
    }
}

fn error(
    s: &mut ChatState,
    message: String,
    client_id: Option<String>,
    room_id: Option<i64>,
    fx: &mut Effects,
) {
    if let Some(client_id) = client_id.filter(|id| s.outbox.contains(id)) {
        // A refused send is not retried: it stays on screen, marked.
        s.outbox.remove(&client_id);
        fx.save_outbox = true;
        if let Some((_, failed)) = s.open.as_mut().and_then(|t| t.pending_mut(&client_id)) {
            *failed = Some(message);
        }
        return;
    }
    if let Some(t) = room_id.and_then(|id| s.timeline_mut(id)) {
        t.loading_older = false;
    }
    s.notice = Some(message);
}

fn room_added(s: &mut ChatState, room: RoomSummary) {
    if let Some(t) = s.timeline_mut(room.id) {
        t.role = room.role;
    }
    match s.room_mut(room.id) {
        // A repeat (another tab's join, a replayed frame) must not reset
        // counts this client already moved past.
        Some(entry) if entry.counted_upto > room.last_seq => {
            entry.summary.role = room.role;
            entry.summary.kind = room.kind;
        }
        _ => {
            let entry = RoomEntry::new(room);
            s.upsert_room(entry);
        }
    }
}

fn room_removed(s: &mut ChatState, room_id: i64, fx: &mut Effects) {
    s.rooms.retain(|r| r.summary.id != room_id);
    if s.read_due.is_some_and(|d| d.room_id == room_id) {
        s.read_due = None;
    }
    let Some(t) = s.timeline_mut(room_id) else {
        return;
    };
    t.role = None;
    if t.kind != RoomKind::Public {
        // Only members may see it: nothing is left to show.
        s.open = None;
        fx.navigate = Some("/".to_owned());
    }
}

fn open(
    s: &mut ChatState,
    summary: RoomSummary,
    messages: Vec<Message>,
    has_more: bool,
    cursor: i64,
    now_ms: f64,
    fx: &mut Effects,
) {
    let previous = s.open.take();
    if let Some(previous) = previous.as_ref().filter(|p| p.room_id != summary.id) {
        send(
            s,
            fx,
            ClientFrame::Close {
                room_id: previous.room_id,
            },
        );
    }
    let mut timeline = Timeline::new(&summary, messages, has_more, cursor);
    // The same room again (its page reloaded): what arrived after the new
    // page was read is kept, since an open room is not replayed twice.
    if let Some(previous) = previous.filter(|p| p.room_id == summary.id && p.cursor > cursor) {
        for item in previous.items {
            if item.seq().is_some_and(|seq| seq > cursor) {
                timeline.upsert(item);
            }
        }
        timeline.cursor = previous.cursor;
    }
    if let Some(entry) = s.room(summary.id) {
        timeline.role = entry.summary.role;
    }
    let room_id = timeline.room_id;
    s.open = Some(timeline);
    show_pending(s);
    send(
        s,
        fx,
        ClientFrame::Open {
            room_id,
            since: Some(cursor),
        },
    );
    mark_read_if_looking(s, now_ms, fx);
}

/// Shows the open room's unacknowledged sends as pending lines.
fn show_pending(s: &mut ChatState) {
    let author = s.me.as_ref().map(|m| m.public()).unwrap_or_default();
    let Some(t) = &mut s.open else { return };
    for entry in s.outbox.entries.iter().filter(|e| e.room_id == t.room_id) {
        let shown = t.items.iter().any(|i| match i {
            Item::Pending { client_id, .. } => *client_id == entry.client_id,
            Item::Message(m) => m.author.id == author.id && m.client_id == entry.client_id,
            Item::Notice(_) => false,
        });
        if !shown {
            t.items.push(Item::Pending {
                client_id: entry.client_id.clone(),
                body: entry.body.clone(),
                author: author.clone(),
                failed: None,
            });
        }
    }
}

fn send_message(
    s: &mut ChatState,
    client_id: String,
    body: String,
    mentions: Vec<i64>,
    fx: &mut Effects,
) {
    if let Err(err) = validate_body(&body) {
        fx.refused = Some(err);
        return;
    }
    let Some(room_id) = s
        .open
        .as_ref()
        .filter(|t| t.role.is_some())
        .map(|t| t.room_id)
    else {
        fx.refused = Some(ApiError::new(
            ErrorCode::NotMember,
            "Join the room to post in it.",
        ));
        return;
    };
    let mentions = if mentions.is_empty() {
        let t = s.open.as_ref().map_or(&[][..], |t| &t.members[..]);
        mentioned(&body, t, s.my_id())
    } else {
        mentions
    };
    let entry = OutboxEntry {
        client_id: client_id.clone(),
        room_id,
        body: body.clone(),
        mentions: mentions.clone(),
    };
    if !s.outbox.push(entry) {
        return; // the same send twice: it is on its way already
    }
    fx.save_outbox = true;
    show_pending(s);
    // Whatever was typed has been sent: the next keystroke says so again.
    s.typing_sent = f64::NEG_INFINITY;
    send(
        s,
        fx,
        ClientFrame::Send {
            room_id,
            client_id,
            body,
            mentions,
            reply_to: None,
        },
    );
}

/// The members `body` mentions as `@Name` (any case; the longest name that
/// matches at each `@`, ending at a non-alphanumeric character or the end),
/// without `me`, each once.
pub fn mentioned(body: &str, members: &[UserInfo], me: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    for (at, _) in body.match_indices('@') {
        let rest = &body[at + 1..];
        let best = members
            .iter()
            .filter(|m| !m.name.is_empty())
            .filter(|m| {
                let n = m.name.len();
                rest.get(..n)
                    .is_some_and(|head| head.to_lowercase() == m.name.to_lowercase())
                    && !rest[n..].starts_with(char::is_alphanumeric)
            })
            .max_by_key(|m| m.name.len());
        if let Some(member) = best.filter(|m| m.id != me) {
            if !ids.contains(&member.id) {
                ids.push(member.id);
            }
        }
    }
    ids
}

/// If the user is looking at the open room and it has unread posts up to
/// what is shown, schedules a `read`.
fn mark_read_if_looking(s: &mut ChatState, now_ms: f64, fx: &mut Effects) {
    if !s.visible {
        return;
    }
    let Some(t) = s.open.as_ref().filter(|t| t.at_bottom) else {
        return;
    };
    let Some(entry) = s.room(t.room_id) else {
        return; // previewing: there is no marker to move
    };
    let summary = &entry.summary;
    if (summary.unread > 0 || summary.mentions > 0) && t.cursor > summary.last_read_seq {
        let seq = t.cursor;
        schedule_read(s, seq, now_ms, fx);
    }
}

/// Marks the open room read up to `seq`, at most once per debounce period.
fn schedule_read(s: &mut ChatState, seq: i64, now_ms: f64, fx: &mut Effects) {
    let Some(room_id) = s.open.as_ref().map(|t| t.room_id) else {
        return;
    };
    match &mut s.read_due {
        Some(due) if due.room_id == room_id => due.seq = due.seq.max(seq),
        _ => {
            flush_read(s, fx);
            s.read_due = Some(ReadDue {
                room_id,
                seq,
                at: now_ms + READ_DEBOUNCE_MS,
            });
        }
    }
    if let Some(due) = s.read_due {
        fx.wake(due.at);
    }
}

/// Sends the due `read` now (if online; otherwise `hello` schedules anew).
fn flush_read(s: &mut ChatState, fx: &mut Effects) {
    if let Some(due) = s.read_due.take() {
        send(
            s,
            fx,
            ClientFrame::Read {
                room_id: due.room_id,
                seq: due.seq,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Me, Role, UserInfo};

    const ANN: i64 = 1;
    const BOB: i64 = 2;

    fn user(id: i64) -> UserInfo {
        UserInfo {
            id,
            name: ["", "Ann", "Bob", "Cat"][id as usize].into(),
            ..UserInfo::default()
        }
    }

    fn me() -> Me {
        Me {
            id: ANN,
            name: "Ann".into(),
            ..Me::default()
        }
    }

    fn room(id: i64, name: &str, last_seq: i64) -> RoomSummary {
        RoomSummary {
            id,
            kind: RoomKind::Public,
            name: Some(name.into()),
            topic: String::new(),
            last_seq,
            member_count: 2,
            role: Some(Role::Member),
            last_read_seq: last_seq,
            unread: 0,
            mentions: 0,
        }
    }

    fn message(room_id: i64, seq: i64, author: i64) -> Message {
        Message {
            id: room_id * 1000 + seq,
            seq,
            author: user(author),
            body: format!("message {seq}"),
            ts: seq,
            client_id: format!("c-{room_id}-{seq}"),
            edited_at: None,
            deleted: false,
            reply_to: None,
            mentions: vec![],
        }
    }

    fn event(room_id: i64, seq: i64, kind: EventKind) -> ServerFrame {
        ServerFrame::Event(Event {
            room_id,
            seq,
            ts: seq,
            kind,
        })
    }

    fn posted(room_id: i64, seq: i64, author: i64) -> ServerFrame {
        event(
            room_id,
            seq,
            EventKind::Posted {
                message: message(room_id, seq, author),
            },
        )
    }

    fn hello(rooms: Vec<RoomSummary>) -> ServerFrame {
        ServerFrame::Hello {
            protocol: 2,
            user: me(),
            rooms,
            resume_limit: 500,
        }
    }

    /// Online, with general (1, last seq 10) and random (2, last seq 20).
    fn online() -> ChatState {
        let mut s = ChatState::new(Some(me()));
        apply(
            &mut s,
            hello(vec![room(2, "random", 20), room(1, "general", 10)]),
            0.0,
        );
        s
    }

    /// Opens a room the user belongs to, showing messages up to `cursor`.
    fn open_room(s: &mut ChatState, room_id: i64, cursor: i64) -> Effects {
        let summary = s.room(room_id).unwrap().summary.clone();
        let messages = (1..=cursor).map(|seq| message(room_id, seq, BOB)).collect();
        intent(
            s,
            Intent::Open {
                summary,
                messages,
                has_more: false,
                cursor,
                members: vec![],
                online: vec![],
            },
            0.0,
        )
    }

    /// Opens general (cursor 10, no messages) with the page's people.
    fn open_general_with(s: &mut ChatState, members: Vec<UserInfo>, online: Vec<UserInfo>) {
        let summary = s.room(1).unwrap().summary.clone();
        intent(
            s,
            Intent::Open {
                summary,
                messages: vec![],
                has_more: false,
                cursor: 10,
                members,
                online,
            },
            0.0,
        );
    }

    fn unread(s: &ChatState, room_id: i64) -> (u32, u32) {
        let summary = &s.room(room_id).unwrap().summary;
        (summary.unread, summary.mentions)
    }

    fn seqs(s: &ChatState) -> Vec<i64> {
        s.open
            .as_ref()
            .unwrap()
            .items
            .iter()
            .filter_map(Item::seq)
            .collect()
    }

    #[test]
    fn hello_replaces_the_rooms_in_name_order_and_resumes_from_last_seq() {
        let mut s = ChatState::new(None);
        s.rooms.push(RoomEntry::new(room(9, "gone", 3)));
        let fx = apply(
            &mut s,
            hello(vec![
                room(2, "Random", 20),
                room(1, "general", 10),
                room(3, "apple", 5),
            ]),
            0.0,
        );
        assert_eq!(s.status, Status::Online);
        assert_eq!(s.me, Some(me()));
        let order: Vec<i64> = s.rooms.iter().map(|r| r.summary.id).collect();
        assert_eq!(order, [3, 1, 2], "by folded name, the old list replaced");
        assert!(s.rooms.iter().all(|r| r.counted_upto == r.summary.last_seq));
        assert_eq!(
            fx.send,
            [ClientFrame::Resume {
                rooms: BTreeMap::from([(1, 10), (2, 20), (3, 5)])
            }]
        );
    }

    #[test]
    fn hello_resumes_the_open_room_from_its_timeline_cursor() {
        let mut s = online();
        open_room(&mut s, 1, 7);
        let fx = apply(
            &mut s,
            hello(vec![room(1, "general", 12), room(2, "random", 20)]),
            0.0,
        );
        assert_eq!(
            fx.send[..2],
            [
                ClientFrame::Resume {
                    rooms: BTreeMap::from([(1, 7), (2, 20)])
                },
                ClientFrame::Open {
                    room_id: 1,
                    since: None
                },
            ]
        );
        // Seqs 8..=12 are replayed into the timeline but were counted by
        // the snapshot: no double counting.
        s.room_mut(1).unwrap().summary.unread = 2;
        for seq in 8..=12 {
            apply(&mut s, posted(1, seq, BOB), 0.0);
        }
        assert_eq!(seqs(&s), (1..=12).collect::<Vec<_>>());
        assert_eq!(unread(&s, 1), (2, 0));
        apply(&mut s, posted(1, 13, BOB), 0.0);
        assert_eq!(s.room(1).unwrap().counted_upto, 13);
    }

    #[test]
    fn hello_reopens_a_previewed_room_with_since_and_resends_the_outbox() {
        let mut s = online();
        let preview = RoomSummary {
            role: None,
            ..room(5, "lobby", 4)
        };
        intent(
            &mut s,
            Intent::Open {
                summary: preview,
                messages: vec![],
                has_more: false,
                cursor: 4,
                members: vec![],
                online: vec![],
            },
            0.0,
        );
        s.outbox.push(OutboxEntry {
            client_id: "x".into(),
            room_id: 2,
            body: "typed offline".into(),
            mentions: vec![BOB],
        });
        intent(&mut s, Intent::Status(Status::Reconnecting), 0.0);
        let fx = apply(&mut s, hello(vec![room(2, "random", 20)]), 0.0);
        assert_eq!(
            fx.send,
            [
                ClientFrame::Resume {
                    rooms: BTreeMap::from([(2, 20)])
                },
                ClientFrame::Open {
                    room_id: 5,
                    since: Some(4)
                },
                ClientFrame::Send {
                    room_id: 2,
                    client_id: "x".into(),
                    body: "typed offline".into(),
                    mentions: vec![BOB],
                    reply_to: None,
                },
            ]
        );
        assert_eq!(s.open.as_ref().unwrap().role, None);
    }

    #[test]
    fn others_posts_in_a_background_room_count_as_unread_and_mentions() {
        let mut s = online();
        apply(&mut s, posted(2, 21, BOB), 0.0);
        let mut mention = message(2, 22, BOB);
        mention.mentions = vec![ANN];
        apply(
            &mut s,
            event(2, 22, EventKind::Posted { message: mention }),
            0.0,
        );
        assert_eq!(unread(&s, 2), (2, 1));
        assert_eq!(s.room(2).unwrap().summary.last_seq, 22);
        assert_eq!(unread(&s, 1), (0, 0), "other rooms untouched");
    }

    #[test]
    fn own_posts_from_another_tab_are_not_unread() {
        let mut s = online();
        apply(&mut s, posted(2, 21, ANN), 0.0);
        assert_eq!(unread(&s, 2), (0, 0));
        assert_eq!(s.room(2).unwrap().counted_upto, 21);
    }

    #[test]
    fn an_event_is_counted_once_even_if_delivered_twice() {
        let mut s = online();
        apply(&mut s, posted(2, 21, BOB), 0.0);
        apply(&mut s, posted(2, 21, BOB), 0.0);
        apply(&mut s, posted(2, 20, BOB), 0.0);
        assert_eq!(unread(&s, 2), (1, 0));
    }

    #[test]
    fn posts_at_or_below_the_read_marker_are_not_counted() {
        let mut s = online();
        // Another tab read ahead of what this one has counted.
        let entry = s.room_mut(2).unwrap();
        entry.summary.last_read_seq = 25;
        for seq in 21..=25 {
            apply(&mut s, posted(2, seq, BOB), 0.0);
        }
        assert_eq!(unread(&s, 2), (0, 0));
        apply(&mut s, posted(2, 26, BOB), 0.0);
        assert_eq!(unread(&s, 2), (1, 0));
    }

    #[test]
    fn timeline_drops_events_at_or_below_its_cursor() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        apply(&mut s, posted(1, 9, BOB), 0.0);
        apply(&mut s, posted(1, 10, BOB), 0.0);
        // A rename at or below the cursor is old news too.
        apply(
            &mut s,
            event(
                1,
                10,
                EventKind::Renamed {
                    name: "stale".into(),
                    old_name: "general".into(),
                    by: user(BOB),
                },
            ),
            0.0,
        );
        assert_eq!(seqs(&s), (1..=10).collect::<Vec<_>>());
        assert_eq!(s.open.as_ref().unwrap().name.as_deref(), Some("general"));
        apply(&mut s, posted(1, 11, BOB), 0.0);
        assert_eq!(s.open.as_ref().unwrap().cursor, 11);
        assert_eq!(seqs(&s).last(), Some(&11));
    }

    #[test]
    fn reading_the_open_room_sends_a_debounced_read_instead_of_counting() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        let fx = apply(&mut s, posted(1, 11, BOB), 1000.0);
        assert_eq!(unread(&s, 1), (0, 0));
        assert!(fx.send.is_empty(), "debounced, not sent at once");
        assert_eq!(fx.wake_at, Some(1000.0 + READ_DEBOUNCE_MS));
        let fx = apply(&mut s, posted(1, 12, BOB), 1500.0);
        assert_eq!(fx.wake_at, Some(2000.0), "joins the pending read");
        assert!(intent(&mut s, Intent::Tick, 1999.0).send.is_empty());
        let fx = intent(&mut s, Intent::Tick, 2000.0);
        assert_eq!(
            fx.send,
            [ClientFrame::Read {
                room_id: 1,
                seq: 12
            }]
        );
        assert!(intent(&mut s, Intent::Tick, 3000.0).send.is_empty(), "once");
    }

    #[test]
    fn a_hidden_page_or_a_scrolled_up_timeline_counts_and_reads_when_looked_at() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        intent(&mut s, Intent::Visible(false), 0.0);
        apply(&mut s, posted(1, 11, BOB), 0.0);
        assert_eq!(unread(&s, 1), (1, 0));
        intent(&mut s, Intent::AtBottom(false), 0.0);
        intent(&mut s, Intent::Visible(true), 0.0);
        apply(&mut s, posted(1, 12, BOB), 0.0);
        assert_eq!(unread(&s, 1), (2, 0));
        assert!(s.read_due.is_none());
        let fx = intent(&mut s, Intent::AtBottom(true), 100.0);
        assert_eq!(fx.wake_at, Some(100.0 + READ_DEBOUNCE_MS));
        let fx = intent(&mut s, Intent::Tick, 100.0 + READ_DEBOUNCE_MS);
        assert_eq!(
            fx.send,
            [ClientFrame::Read {
                room_id: 1,
                seq: 12
            }]
        );
        // The counts change when the server says so, in every tab.
        assert_eq!(unread(&s, 1), (2, 0));
    }

    #[test]
    fn a_deleted_post_that_was_counted_is_uncounted_once() {
        let mut s = online();
        let mut mention = message(2, 21, BOB);
        mention.mentions = vec![ANN];
        let id = mention.id;
        apply(
            &mut s,
            event(2, 21, EventKind::Posted { message: mention }),
            0.0,
        );
        apply(&mut s, posted(2, 22, BOB), 0.0);
        assert_eq!(unread(&s, 2), (2, 1));
        let deleted = |seq| {
            event(
                2,
                seq,
                EventKind::Deleted {
                    message_id: id,
                    by: user(BOB),
                },
            )
        };
        apply(&mut s, deleted(23), 0.0);
        assert_eq!(unread(&s, 2), (1, 0));
        apply(&mut s, deleted(24), 0.0);
        assert_eq!(unread(&s, 2), (1, 0), "not twice");
        // A post that was never counted (below the snapshot) changes nothing.
        apply(
            &mut s,
            event(
                2,
                25,
                EventKind::Deleted {
                    message_id: 2000 + 5,
                    by: user(BOB),
                },
            ),
            0.0,
        );
        assert_eq!(unread(&s, 2), (1, 0));
    }

    #[test]
    fn a_deleted_message_loses_its_text_on_screen() {
        let mut s = online();
        open_room(&mut s, 1, 3);
        apply(
            &mut s,
            event(
                1,
                4,
                EventKind::Deleted {
                    message_id: 1002,
                    by: user(BOB),
                },
            ),
            0.0,
        );
        let t = s.open.as_ref().unwrap();
        let Item::Message(m) = &t.items[1] else {
            panic!("{:?}", t.items[1])
        };
        assert!(m.deleted && m.body.is_empty(), "{m:?}");
        assert_eq!(t.cursor, 4);
    }

    #[test]
    fn a_read_frame_from_another_tab_sets_the_counts_and_cancels_a_due_read() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        apply(&mut s, posted(1, 11, BOB), 0.0);
        assert!(s.read_due.is_some());
        apply(&mut s, posted(2, 21, BOB), 0.0);
        apply(&mut s, posted(2, 22, BOB), 0.0);
        apply(
            &mut s,
            ServerFrame::Read {
                room_id: 2,
                last_read_seq: 21,
                unread: 1,
                mentions: 0,
            },
            0.0,
        );
        assert_eq!(unread(&s, 2), (1, 0));
        assert_eq!(s.room(2).unwrap().summary.last_read_seq, 21);
        // Seq 21 is read now: deleting it leaves the server's count alone.
        apply(
            &mut s,
            event(
                2,
                23,
                EventKind::Deleted {
                    message_id: 2021,
                    by: user(BOB),
                },
            ),
            0.0,
        );
        assert_eq!(unread(&s, 2), (1, 0));
        assert!(s.read_due.is_some(), "another room's read is still due");
        apply(
            &mut s,
            ServerFrame::Read {
                room_id: 1,
                last_read_seq: 11,
                unread: 0,
                mentions: 0,
            },
            0.0,
        );
        assert!(s.read_due.is_none());
        assert!(intent(&mut s, Intent::Tick, 5000.0).send.is_empty());
        // A later post above the new marker counts again.
        intent(&mut s, Intent::Close, 0.0);
        apply(&mut s, posted(1, 12, BOB), 0.0);
        assert_eq!(unread(&s, 1), (1, 0));
    }

    #[test]
    fn a_gap_clears_the_timeline_asks_for_the_latest_page_and_merges_it() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        intent(
            &mut s,
            Intent::Send {
                client_id: "mine".into(),
                body: "still pending".into(),
                mentions: vec![],
            },
            0.0,
        );
        let fx = apply(
            &mut s,
            ServerFrame::Gap {
                room_id: 1,
                last_seq: 700,
            },
            0.0,
        );
        assert_eq!(fx.send, [latest_page(1)]);
        let t = s.open.as_ref().unwrap();
        assert_eq!(t.cursor, 700);
        assert!(t.awaiting_page);
        assert_eq!(t.items.len(), 1, "only the pending line is kept");
        // A live event overtakes the page; the page then fills in around it.
        apply(&mut s, posted(1, 701, BOB), 0.0);
        let page: Vec<Message> = (651..=701).map(|seq| message(1, seq, BOB)).collect();
        apply(
            &mut s,
            ServerFrame::History {
                room_id: 1,
                messages: page,
                has_more_before: true,
                has_more_after: false,
            },
            0.0,
        );
        assert_eq!(seqs(&s), (651..=701).collect::<Vec<_>>());
        let t = s.open.as_ref().unwrap();
        assert!(!t.awaiting_page && t.has_more);
        assert!(matches!(t.items.last(), Some(Item::Pending { .. })));
        assert_eq!(s.room(1).unwrap().counted_upto, 701);
    }

    #[test]
    fn an_older_page_asked_for_before_a_gap_is_ignored() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        s.open.as_mut().unwrap().has_more = true;
        let fx = intent(&mut s, Intent::LoadOlder, 0.0);
        assert_eq!(fx.send.len(), 1);
        apply(
            &mut s,
            ServerFrame::Gap {
                room_id: 1,
                last_seq: 900,
            },
            0.0,
        );
        apply(
            &mut s,
            ServerFrame::History {
                room_id: 1,
                messages: vec![message(1, 0, BOB)],
                has_more_before: false,
                has_more_after: true,
            },
            0.0,
        );
        assert!(seqs(&s).is_empty());
        assert!(s.open.as_ref().unwrap().awaiting_page);
    }

    #[test]
    fn older_pages_are_asked_once_and_merged_by_seq() {
        let mut s = online();
        let summary = s.room(1).unwrap().summary.clone();
        intent(
            &mut s,
            Intent::Open {
                summary,
                messages: (6..=10).map(|seq| message(1, seq, BOB)).collect(),
                has_more: true,
                cursor: 10,
                members: vec![],
                online: vec![],
            },
            0.0,
        );
        let fx = intent(&mut s, Intent::LoadOlder, 0.0);
        assert_eq!(
            fx.send,
            [ClientFrame::History {
                room_id: 1,
                before: Some(6),
                around: None,
                limit: Some(HISTORY_PAGE),
            }]
        );
        assert!(
            intent(&mut s, Intent::LoadOlder, 0.0).send.is_empty(),
            "once"
        );
        // Overlapping page (seq 6 again): merged, not duplicated.
        apply(
            &mut s,
            ServerFrame::History {
                room_id: 1,
                messages: (2..=6).map(|seq| message(1, seq, BOB)).collect(),
                has_more_before: true,
                has_more_after: true,
            },
            0.0,
        );
        assert_eq!(seqs(&s), (2..=10).collect::<Vec<_>>());
        let t = s.open.as_ref().unwrap();
        assert!(t.has_more && !t.loading_older);
        // An unasked page is not merged.
        apply(
            &mut s,
            ServerFrame::History {
                room_id: 1,
                messages: vec![message(1, 1, BOB)],
                has_more_before: false,
                has_more_after: true,
            },
            0.0,
        );
        assert_eq!(seqs(&s).first(), Some(&2));
    }

    #[test]
    fn own_posted_replaces_the_pending_line_and_ack_clears_the_outbox() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        let fx = intent(
            &mut s,
            Intent::Send {
                client_id: "mine".into(),
                body: "hello".into(),
                mentions: vec![],
            },
            0.0,
        );
        assert!(fx.save_outbox);
        assert_eq!(
            fx.send,
            [ClientFrame::Send {
                room_id: 1,
                client_id: "mine".into(),
                body: "hello".into(),
                mentions: vec![],
                reply_to: None,
            }]
        );
        // Someone else's post lands before it: the pending line stays last.
        apply(&mut s, posted(1, 11, BOB), 0.0);
        let t = s.open.as_ref().unwrap();
        assert!(matches!(&t.items[11], Item::Pending { client_id, .. } if client_id == "mine"));
        let mut own = message(1, 12, ANN);
        own.client_id = "mine".into();
        apply(
            &mut s,
            event(1, 12, EventKind::Posted { message: own }),
            0.0,
        );
        let t = s.open.as_ref().unwrap();
        assert!(t.items.iter().all(|i| !matches!(i, Item::Pending { .. })));
        assert_eq!(seqs(&s).last(), Some(&12));
        assert!(s.outbox.contains("mine"), "the ack clears the outbox");
        let fx = apply(
            &mut s,
            ServerFrame::Ack {
                client_id: "mine".into(),
                room_id: 1,
                seq: Some(12),
                message_id: Some(1012),
                ts: 12,
            },
            0.0,
        );
        assert!(fx.save_outbox);
        assert!(s.outbox.is_empty());
        // A repeated ack has nothing to save.
        let fx = apply(
            &mut s,
            ServerFrame::Ack {
                client_id: "mine".into(),
                room_id: 1,
                seq: Some(12),
                message_id: Some(1012),
                ts: 12,
            },
            0.0,
        );
        assert!(!fx.save_outbox);
    }

    #[test]
    fn a_refused_send_is_marked_failed_and_settled() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        intent(
            &mut s,
            Intent::Send {
                client_id: "mine".into(),
                body: "hello".into(),
                mentions: vec![],
            },
            0.0,
        );
        let fx = apply(
            &mut s,
            ServerFrame::error(
                ApiError::new(ErrorCode::NotMember, "Join first."),
                Some(1),
                Some("mine".into()),
            ),
            0.0,
        );
        assert!(fx.save_outbox);
        assert!(s.outbox.is_empty());
        let t = s.open.as_ref().unwrap();
        assert!(matches!(
            t.items.last(),
            Some(Item::Pending { failed: Some(why), .. }) if why == "Join first."
        ));
        assert_eq!(s.notice, None);
        // An error about nothing pending is a notice.
        apply(
            &mut s,
            ServerFrame::error(ApiError::new(ErrorCode::Internal, "Oops."), None, None),
            0.0,
        );
        assert_eq!(s.notice.as_deref(), Some("Oops."));
    }

    #[test]
    fn sends_are_validated_and_need_membership_and_wait_for_hello_offline() {
        let mut s = online();
        let preview = RoomSummary {
            role: None,
            ..room(5, "lobby", 4)
        };
        intent(
            &mut s,
            Intent::Open {
                summary: preview,
                messages: vec![],
                has_more: false,
                cursor: 4,
                members: vec![],
                online: vec![],
            },
            0.0,
        );
        let send = |body: &str| Intent::Send {
            client_id: "c".into(),
            body: body.into(),
            mentions: vec![],
        };
        let fx = intent(&mut s, send("hi"), 0.0);
        assert_eq!(fx.refused.unwrap().code, ErrorCode::NotMember);
        assert!(s.outbox.is_empty());
        open_room(&mut s, 1, 10);
        let fx = intent(&mut s, send("  "), 0.0);
        assert_eq!(fx.refused.unwrap().code, ErrorCode::EmptyBody);
        intent(&mut s, Intent::Status(Status::Reconnecting), 0.0);
        let fx = intent(&mut s, send("later"), 0.0);
        assert!(fx.send.is_empty() && fx.save_outbox && fx.refused.is_none());
        assert!(s.outbox.contains("c"));
        let fx = apply(&mut s, hello(vec![room(1, "general", 10)]), 0.0);
        assert!(fx
            .send
            .iter()
            .any(|f| matches!(f, ClientFrame::Send { client_id, .. } if client_id == "c")));
    }

    #[test]
    fn room_added_is_idempotent_and_turns_a_preview_into_membership() {
        let mut s = online();
        let preview = RoomSummary {
            role: None,
            ..room(5, "lobby", 4)
        };
        intent(
            &mut s,
            Intent::Open {
                summary: preview,
                messages: vec![],
                has_more: false,
                cursor: 4,
                members: vec![],
                online: vec![],
            },
            0.0,
        );
        let added = ServerFrame::RoomAdded {
            room: room(5, "lobby", 5),
        };
        apply(&mut s, added.clone(), 0.0);
        apply(&mut s, posted(5, 6, BOB), 0.0);
        s.open = None;
        apply(&mut s, posted(5, 7, BOB), 0.0);
        assert_eq!(unread(&s, 5), (1, 0));
        // The same frame again (another tab's join echoed) resets nothing.
        apply(&mut s, added, 0.0);
        let ids: Vec<i64> = s.rooms.iter().map(|r| r.summary.id).collect();
        assert_eq!(ids, [1, 5, 2], "general, lobby, random");
        assert_eq!(unread(&s, 5), (1, 0));
        assert_eq!(s.room(5).unwrap().counted_upto, 7);
    }

    #[test]
    fn room_added_gives_the_open_preview_its_role() {
        let mut s = online();
        let preview = RoomSummary {
            role: None,
            ..room(5, "lobby", 4)
        };
        intent(
            &mut s,
            Intent::Open {
                summary: preview,
                messages: vec![],
                has_more: false,
                cursor: 4,
                members: vec![],
                online: vec![],
            },
            0.0,
        );
        apply(
            &mut s,
            ServerFrame::RoomAdded {
                room: room(5, "lobby", 5),
            },
            0.0,
        );
        assert_eq!(s.open.as_ref().unwrap().role, Some(Role::Member));
    }

    #[test]
    fn room_removed_drops_the_room_and_leaves_a_public_one_as_a_preview() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        apply(&mut s, posted(1, 11, BOB), 0.0);
        let fx = apply(&mut s, ServerFrame::RoomRemoved { room_id: 1 }, 0.0);
        assert!(s.room(1).is_none());
        assert!(s.read_due.is_none(), "no read for a room left");
        assert_eq!(s.open.as_ref().unwrap().role, None);
        assert_eq!(fx.navigate, None);
        // A private room is not even previewable: go home.
        let private = RoomSummary {
            kind: RoomKind::Private,
            ..room(3, "secret", 1)
        };
        apply(&mut s, ServerFrame::RoomAdded { room: private }, 0.0);
        open_room(&mut s, 3, 1);
        let fx = apply(&mut s, ServerFrame::RoomRemoved { room_id: 3 }, 0.0);
        assert!(s.open.is_none());
        assert_eq!(fx.navigate.as_deref(), Some("/"));
        // Removing a room not listed is harmless.
        apply(&mut s, ServerFrame::RoomRemoved { room_id: 99 }, 0.0);
        assert_eq!(s.rooms.len(), 1);
    }

    #[test]
    fn renamed_and_topic_changed_update_sidebar_and_header() {
        let mut s = online();
        open_room(&mut s, 2, 20);
        apply(
            &mut s,
            event(
                2,
                21,
                EventKind::Renamed {
                    name: "Announcements".into(),
                    old_name: "random".into(),
                    by: user(BOB),
                },
            ),
            0.0,
        );
        apply(
            &mut s,
            event(
                2,
                22,
                EventKind::TopicChanged {
                    topic: "News only".into(),
                    by: user(BOB),
                },
            ),
            0.0,
        );
        let ids: Vec<i64> = s.rooms.iter().map(|r| r.summary.id).collect();
        assert_eq!(ids, [2, 1], "re-sorted: announcements < general");
        let summary = &s.room(2).unwrap().summary;
        assert_eq!(summary.name.as_deref(), Some("Announcements"));
        assert_eq!(summary.topic, "News only");
        let t = s.open.as_ref().unwrap();
        assert_eq!(t.name.as_deref(), Some("Announcements"));
        assert_eq!(t.topic, "News only");
        assert_eq!(seqs(&s)[20..], [21, 22], "both shown as notices");
        assert_eq!(unread(&s, 2), (0, 0), "notices are not unread");
    }

    #[test]
    fn membership_events_update_members_and_silent_joins_show_nothing() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        let joined = |seq, silent| {
            event(
                1,
                seq,
                EventKind::MemberJoined {
                    user: user(3),
                    role: Role::Member,
                    silent,
                },
            )
        };
        apply(&mut s, joined(11, true), 0.0);
        assert_eq!(seqs(&s).len(), 10, "silent: no line");
        apply(
            &mut s,
            event(1, 12, EventKind::MemberLeft { user: user(3) }),
            0.0,
        );
        apply(&mut s, joined(13, false), 0.0);
        assert_eq!(seqs(&s)[10..], [12, 13]);
        let t = s.open.as_ref().unwrap();
        assert_eq!(t.members, [user(3)]);
        assert_eq!(s.room(1).unwrap().summary.member_count, 2 + 1 - 1 + 1);
    }

    #[test]
    fn unknown_frames_and_kinds_are_ignored_but_advance_the_cursor() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        let before = s.clone();
        let fx = apply(&mut s, ServerFrame::Unknown, 0.0);
        assert_eq!(fx, Effects::default());
        assert_eq!(s, before);
        let unknown: ServerFrame = serde_json::from_str(
            r#"{"type":"event","room_id":1,"seq":11,"ts":5,"kind":"poll_created","q":"?"}"#,
        )
        .unwrap();
        apply(&mut s, unknown, 0.0);
        assert_eq!(s.open.as_ref().unwrap().cursor, 11);
        assert_eq!(seqs(&s).len(), 10, "nothing shown");
        assert_eq!(unread(&s, 1), (0, 0));
        assert_eq!(s.room(1).unwrap().counted_upto, 11);
    }

    #[test]
    fn opening_another_room_closes_the_first_and_asks_from_the_page_cursor() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        let fx = open_room(&mut s, 2, 20);
        assert_eq!(
            fx.send,
            [
                ClientFrame::Close { room_id: 1 },
                ClientFrame::Open {
                    room_id: 2,
                    since: Some(20)
                }
            ]
        );
        // Opening a room with unread posts marks it read (debounced).
        apply(&mut s, posted(1, 11, BOB), 0.0);
        let fx = open_room(&mut s, 1, 11);
        assert_eq!(fx.wake_at, Some(READ_DEBOUNCE_MS));
        let fx = intent(&mut s, Intent::Tick, READ_DEBOUNCE_MS);
        assert_eq!(
            fx.send,
            [ClientFrame::Read {
                room_id: 1,
                seq: 11
            }]
        );
    }

    #[test]
    fn typing_is_throttled_out_and_expires_in() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        assert_eq!(
            intent(&mut s, Intent::Typing, 0.0).send,
            [ClientFrame::Typing { room_id: 1 }]
        );
        assert!(intent(&mut s, Intent::Typing, 1000.0).send.is_empty());
        assert_eq!(
            intent(&mut s, Intent::Typing, TYPING_RESEND_MS).send.len(),
            1
        );
        let fx = apply(
            &mut s,
            ServerFrame::Typing {
                room_id: 1,
                user: user(BOB),
            },
            100.0,
        );
        assert_eq!(fx.wake_at, Some(100.0 + TYPING_SHOWN_MS));
        apply(
            &mut s,
            ServerFrame::Typing {
                room_id: 1,
                user: user(ANN),
            },
            100.0,
        );
        assert_eq!(s.open.as_ref().unwrap().typing.len(), 1, "not my own");
        intent(&mut s, Intent::Tick, 100.0 + TYPING_SHOWN_MS - 1.0);
        assert_eq!(s.open.as_ref().unwrap().typing.len(), 1);
        intent(&mut s, Intent::Tick, 100.0 + TYPING_SHOWN_MS);
        assert!(s.open.as_ref().unwrap().typing.is_empty());
        // A post from the typist ends the notice at once.
        apply(
            &mut s,
            ServerFrame::Typing {
                room_id: 1,
                user: user(BOB),
            },
            0.0,
        );
        apply(&mut s, posted(1, 11, BOB), 0.0);
        assert!(s.open.as_ref().unwrap().typing.is_empty());
    }

    #[test]
    fn presence_tracks_who_is_online_in_the_open_room() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        apply(
            &mut s,
            ServerFrame::Presence {
                room_id: 1,
                online: vec![user(ANN), user(BOB)],
                more: 0,
            },
            0.0,
        );
        apply(
            &mut s,
            ServerFrame::PresenceChanged {
                room_id: 1,
                user: user(BOB),
                online: false,
            },
            0.0,
        );
        apply(
            &mut s,
            ServerFrame::PresenceChanged {
                room_id: 2,
                user: user(3),
                online: true,
            },
            0.0,
        );
        let t = s.open.as_ref().unwrap();
        assert_eq!(t.online.iter().copied().collect::<Vec<_>>(), [ANN]);
        assert_eq!(t.members.len(), 2, "offline members stay listed");
    }

    #[test]
    fn adopted_outbox_entries_show_as_pending_in_their_room_once() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        let entry = |id: &str, room_id| OutboxEntry {
            client_id: id.into(),
            room_id,
            body: "saved".into(),
            mentions: vec![],
        };
        intent(
            &mut s,
            Intent::AdoptOutbox(vec![entry("a", 1), entry("b", 2), entry("a", 1)]),
            0.0,
        );
        assert_eq!(s.outbox.entries.len(), 2);
        let pending: Vec<String> = s
            .open
            .as_ref()
            .unwrap()
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Pending { client_id, .. } => Some(client_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(pending, ["a"]);
    }

    #[test]
    fn commands_are_validated_and_refused_offline() {
        let mut s = online();
        let fx = intent(
            &mut s,
            Intent::CreateRoom {
                client_id: "c".into(),
                name: "  Team  ".into(),
                topic: "Plans".into(),
            },
            0.0,
        );
        assert_eq!(
            fx.send,
            [ClientFrame::CreateRoom {
                client_id: "c".into(),
                name: "Team".into(),
                topic: "Plans".into(),
            }]
        );
        let fx = intent(
            &mut s,
            Intent::SetTopic {
                room_id: 1,
                client_id: "c".into(),
                topic: "x".repeat(251),
            },
            0.0,
        );
        assert_eq!(fx.refused.unwrap().code, ErrorCode::InvalidTopic);
        intent(&mut s, Intent::Status(Status::Offline), 0.0);
        let fx = intent(
            &mut s,
            Intent::Join {
                room_id: 5,
                client_id: "c".into(),
            },
            0.0,
        );
        assert!(fx.send.is_empty());
        assert_eq!(fx.refused.unwrap().code, ErrorCode::Unavailable);
    }

    #[test]
    fn retry_sends_a_refused_message_again_under_its_client_id() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        let id = "6f1c1f8e-0000-4000-8000-000000000001".to_owned();
        intent(
            &mut s,
            Intent::Send {
                client_id: id.clone(),
                body: "held back".into(),
                mentions: vec![],
            },
            0.0,
        );
        let fx = apply(
            &mut s,
            ServerFrame::Error {
                code: ErrorCode::Unavailable,
                message: "The database is unavailable.".into(),
                client_id: Some(id.clone()),
                room_id: Some(1),
                retry_after: None,
            },
            0.0,
        );
        assert!(fx.save_outbox && s.outbox.is_empty());
        let failed = |s: &ChatState| {
            s.open.as_ref().unwrap().items.iter().any(
                |i| matches!(i, Item::Pending { failed: Some(_), client_id, .. } if *client_id == id),
            )
        };
        assert!(failed(&s));

        let fx = intent(
            &mut s,
            Intent::Retry {
                client_id: id.clone(),
            },
            0.0,
        );
        assert!(!failed(&s), "pending again");
        assert!(s.outbox.contains(&id) && fx.save_outbox);
        assert!(matches!(
            fx.send.as_slice(),
            [ClientFrame::Send { client_id, body, .. }] if *client_id == id && body == "held back"
        ));
        let pending = s.open.as_ref().unwrap().items.iter();
        assert_eq!(pending.filter(|i| i.seq().is_none()).count(), 1, "one line");
        // A retry of something not refused does nothing.
        let fx = intent(&mut s, Intent::Retry { client_id: id }, 0.0);
        assert!(fx.send.is_empty());
    }

    #[test]
    fn reopening_the_open_room_from_an_older_page_keeps_what_arrived_since() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        apply(&mut s, posted(1, 11, BOB), 0.0);
        apply(&mut s, posted(1, 12, BOB), 0.0);
        // The page reloads (after a join, say), read when seq was 11.
        let fx = open_room(&mut s, 1, 11);
        assert_eq!(seqs(&s), (1..=12).collect::<Vec<_>>());
        assert_eq!(s.open.as_ref().unwrap().cursor, 12);
        assert!(
            !fx.send
                .iter()
                .any(|f| matches!(f, ClientFrame::Close { .. })),
            "the same room is not closed"
        );
        // Another room is a fresh timeline, and the first is closed.
        let fx = open_room(&mut s, 2, 20);
        assert_eq!(seqs(&s), (1..=20).collect::<Vec<_>>());
        assert!(fx.send.contains(&ClientFrame::Close { room_id: 1 }));
    }

    #[test]
    fn opening_with_page_people_fills_members_and_online() {
        let mut s = online();
        open_general_with(&mut s, vec![user(ANN), user(BOB)], vec![user(BOB), user(3)]);
        let t = s.open.as_ref().unwrap();
        let ids: Vec<i64> = t.members.iter().map(|u| u.id).collect();
        assert_eq!(ids, [ANN, BOB, 3]);
        assert_eq!(t.online.iter().copied().collect::<Vec<_>>(), [BOB, 3]);
    }

    #[test]
    fn mentions_are_found_by_at_name_among_the_rooms_members() {
        let named = |id, name: &str| UserInfo {
            id,
            name: name.into(),
            ..UserInfo::default()
        };
        let members = [
            named(ANN, "Ann"),
            named(BOB, "Bob"),
            named(3, "Bob Lee"),
            named(4, "Zoë"),
        ];
        assert_eq!(mentioned("hi @bob and @Bob Lee!", &members, ANN), [BOB, 3]);
        assert_eq!(
            mentioned("@zoë, @ZOË.", &members, ANN),
            [4],
            "once, any case"
        );
        assert_eq!(mentioned("@Bobby @Ann", &members, ANN), Vec::<i64>::new());
        assert_eq!(mentioned("mail ann@Bob", &members, ANN), [BOB]);

        let mut s = online();
        open_general_with(&mut s, members.to_vec(), vec![]);
        let fx = intent(
            &mut s,
            Intent::Send {
                client_id: "6f1c1f8e-0000-4000-8000-000000000002".into(),
                body: "@Bob Lee look".into(),
                mentions: vec![],
            },
            0.0,
        );
        assert!(matches!(
            fx.send.as_slice(),
            [ClientFrame::Send { mentions, .. }] if *mentions == [3]
        ));
    }

    #[test]
    fn replayed_posts_fill_holes_behind_live_ones() {
        let mut s = online();
        // The page was read at 10; 11 and 12 came while no room was open
        // (the sidebar counted them), then 13 arrives live before the
        // replay that `open {since: 10}` asked for.
        apply(&mut s, posted(1, 11, BOB), 0.0);
        apply(&mut s, posted(1, 12, BOB), 0.0);
        open_room(&mut s, 1, 10);
        apply(&mut s, posted(1, 13, BOB), 0.0);
        for seq in 11..=13 {
            apply(&mut s, posted(1, seq, BOB), 0.0);
        }
        assert_eq!(seqs(&s), (1..=13).collect::<Vec<_>>(), "no hole, no repeat");
        assert_eq!(s.open.as_ref().unwrap().cursor, 13);
    }

    #[test]
    fn posts_replayed_into_the_room_being_read_are_marked_read() {
        let mut s = online();
        open_room(&mut s, 1, 10);
        intent(&mut s, Intent::Status(Status::Reconnecting), 0.0);
        // Offline, 5 posts came: the snapshot counts them.
        let mut general = room(1, "general", 15);
        general.last_read_seq = 10;
        general.unread = 5;
        let fx = apply(&mut s, hello(vec![general, room(2, "random", 20)]), 0.0);
        assert_eq!(fx.wake_at, None, "nothing shown yet to read");
        for seq in 11..=15 {
            apply(&mut s, posted(1, seq, BOB), 0.0);
        }
        assert_eq!(unread(&s, 1), (5, 0), "counted once, by the snapshot");
        assert_eq!(s.read_due.map(|d| d.seq), Some(15));
        let fx = intent(&mut s, Intent::Tick, READ_DEBOUNCE_MS);
        assert_eq!(
            fx.send,
            [ClientFrame::Read {
                room_id: 1,
                seq: 15
            }]
        );
    }
}
