//! The room's header: its name and topic, and the Leave form for members.

use crate::{
    components::{action_error, fresh_client_id, FormError, PageActions},
    protocol::RoomSummary,
};
use leptos::prelude::*;

/// Name, topic, and (for members) Leave.
#[component]
pub(super) fn RoomHeader(summary: RoomSummary) -> impl IntoView {
    let name = summary.display_name().to_owned();
    let topic = summary.topic.clone();
    let member = summary.role.is_some();
    view! {
        <header class="pane-head">
            <h1>{format!("# {name}")}</h1>
            {(!topic.is_empty()).then(|| view! { <p class="topic">{topic}</p> })}
            {member.then(|| view! { <LeaveForm room_id=summary.id /> })}
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
            <input type="hidden" name="room_id" value=room_id />
            <input type="hidden" name="client_id" value=fresh_client_id() />
            <button type="submit" class="link">"Leave"</button>
            <FormError error=error />
        </ActionForm>
    }
}
