//! The open room: header, message stream, composer (or the Join bar of a
//! preview) and its people.
//!
//! # Layout
//! - `header`: name, topic, Leave.
//! - `timeline`: the messages and notices.
//! - `composer`: the composer, and the Join bar of a preview.
//! - `members`: who is online, and the members.

mod composer;
mod header;
mod members;
mod timeline;

use crate::{
    api::RoomPage,
    client::{Chat, Timeline},
};
use composer::{Composer, JoinBar};
use header::RoomHeader;
use leptos::prelude::*;
use members::Members;
use timeline::{typing_text, MessageList};

/// A slice of the open timeline of `room_id`, as a memo (`fallback` while
/// another room, or none, is open).
pub(super) fn slice<T: Clone + PartialEq + Send + Sync + 'static>(
    chat: Chat,
    room_id: i64,
    fallback: T,
    f: impl Fn(&Timeline) -> T + Send + Sync + 'static,
) -> Memo<T> {
    Memo::new(move |_| {
        chat.state
            .with(|s| s.timeline(room_id).map(&f))
            .unwrap_or_else(|| fallback.clone())
    })
}

/// The header, message pane, composer and people of one room: live for a
/// member (its events come by membership), and for someone previewing a
/// public room (the Join bar instead of the composer, or for a user
/// banned from it a note) while it is open.
#[component]
pub fn RoomPane(room: RoomPage) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let room_id = room.summary.id;
    // A user banned from the room may read it, not join it: no Join bar.
    // (A member may always join again after leaving.)
    let can_join = room.can_join || room.summary.role.is_some();
    let ticket = chat.open(&room);
    // Only a browser has a room to close. A server render's state goes with
    // its request, and closing it there could empty the timeline before the
    // page is written out (owners are disposed in no fixed order).
    #[cfg(feature = "hydrate")]
    on_cleanup(move || chat.close(room_id, ticket));
    #[cfg(not(feature = "hydrate"))]
    let _ = ticket;
    let name = slice(chat, room_id, room.summary.display_name().to_owned(), |t| {
        t.name.clone().unwrap_or_default()
    });
    let member = slice(chat, room_id, room.summary.role.is_some(), |t| {
        t.role.is_some()
    });
    let typing = slice(chat, room_id, String::new(), |t| typing_text(&t.typing));

    view! {
        <main class="pane" data-room=move || name.get() data-room-id=room_id>
            <RoomHeader room_id name member />
            <MessageList room_id name />
            <p class="typing" aria-live="polite">{move || typing.get()}</p>
            {move || {
                if member.get() {
                    view! { <Composer room_id name /> }.into_any()
                } else if can_join {
                    view! { <JoinBar room_id name /> }.into_any()
                } else {
                    view! { <p class="preview-note">"You may read this room, not join it."</p> }
                        .into_any()
                }
            }}
        </main>
        <Members room_id roles=room.members />
    }
}
