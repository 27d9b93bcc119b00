//! The room's header: its name and topic, and the Leave form for members.

use super::slice;
use crate::{
    client::Chat,
    components::{action_error, FormError, PageActions, RoomCommandFields},
    protocol::{v2::MAX_TOPIC_CHARS, Role, MAX_ROOM_NAME_CHARS},
};
use leptos::prelude::*;

/// Name and topic (live: renames and topic changes show at once), and
/// (for members) Leave.
#[component]
pub(super) fn RoomHeader(room_id: i64, name: Memo<String>, member: Memo<bool>) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let topic = slice(chat, room_id, String::new(), |t| t.topic.clone());
    let owner = slice(chat, room_id, false, |t| t.role == Some(Role::Owner));
    view! {
        <header class="pane-head">
            <h1>{move || format!("# {}", name.get())}</h1>
            {move || {
                let topic = topic.get();
                (!topic.is_empty()).then(|| view! { <p class="topic">{topic}</p> })
            }}
            {move || member.get().then(|| view! { <LeaveForm room_id /> })}
            {move || owner.get().then(|| view! { <RoomSettings room_id name topic /> })}
        </header>
    }
}

/// Leaves the room (posting `leave_room`); the server then goes home.
#[component]
fn LeaveForm(room_id: i64) -> impl IntoView {
    let leave = expect_context::<PageActions>().leave;
    let error = action_error(leave);
    view! {
        <ActionForm action=leave attr:class="leave-room">
            <RoomCommandFields room_id />
            <button type="submit" class="link">"Leave"</button>
            <FormError error=error />
        </ActionForm>
    }
}

/// The owner's settings: rename the room, set its topic. Plain forms
/// (posting `rename_room` and `set_topic`) that come back to the room.
#[component]
fn RoomSettings(room_id: i64, name: Memo<String>, topic: Memo<String>) -> impl IntoView {
    let actions = expect_context::<PageActions>();
    let rename_error = action_error(actions.rename);
    let topic_error = action_error(actions.topic);
    view! {
        <details class="room-settings">
            <summary>"Room settings"</summary>
            <ActionForm action=actions.rename attr:class="rename-room">
                <RoomCommandFields room_id />
                <label for="room-name">"Name"</label>
                <input
                    id="room-name"
                    name="name"
                    prop:value=move || name.get()
                    maxlength=MAX_ROOM_NAME_CHARS
                    required
                />
                <button type="submit">"Rename"</button>
                <FormError error=rename_error />
            </ActionForm>
            <ActionForm action=actions.topic attr:class="set-topic">
                <RoomCommandFields room_id />
                <label for="room-topic">"Topic"</label>
                <input
                    id="room-topic"
                    name="topic"
                    prop:value=move || topic.get()
                    maxlength=MAX_TOPIC_CHARS
                />
                <button type="submit">"Set topic"</button>
                <FormError error=topic_error />
            </ActionForm>
        </details>
    }
}
