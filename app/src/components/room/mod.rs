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
    client::{Chat, RoomState},
    protocol::ChatMessage,
};
use composer::{Composer, JoinBar};
use header::RoomHeader;
use leptos::prelude::*;
use members::Members;
use timeline::{typing_text, MessageList};

/// The header, message pane, composer and people of one room. A member's
/// room goes live (protocol v1: subscribed by name); a preview shows the
/// server-rendered page with the Join bar instead of the composer (no bar
/// for a user banned from the room: they may read it, not join it).
#[component]
pub fn RoomPane(room: RoomPage) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let preview = room.is_preview();
    let can_join = room.can_join;
    let name = room.summary.display_name().to_owned();
    let room_id = room.summary.id;
    let messages = room
        .messages
        .into_iter()
        .map(|m| ChatMessage::from_v2(m, &name))
        .collect();
    let state = RoomState::new(name.clone(), messages, room.has_more, room.online);
    // A v1 subscribe joins a public room: a preview must not subscribe.
    if !preview {
        Effect::new(move || chat.open(state));
        let name = name.clone();
        on_cleanup(move || chat.close(&name));
    }

    view! {
        <main class="pane" data-room=name.clone() data-room-id=room_id>
            <RoomHeader summary=room.summary />
            <MessageList state name=name.clone() />
            <p class="typing" aria-live="polite">{move || typing_text(&state.typing.get())}</p>
            {if preview && can_join {
                view! { <JoinBar room_id name=name.clone() /> }.into_any()
            } else if preview {
                view! { <p class="preview-note">"You may read this room, not join it."</p> }
                    .into_any()
            } else {
                view! { <Composer room_id name=name.clone() /> }.into_any()
            }}
        </main>
        <Members state members=room.members />
    }
}
