//! Who is in the room, and who of them is online.

use crate::{
    client::{Chat, RoomState},
    components::Avatar,
    protocol::MemberInfo,
};
use leptos::prelude::*;

/// The online list (live, from the v1 presence frames) and the members.
#[component]
pub(super) fn Members(state: RoomState, members: Vec<MemberInfo>) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let count = members.len();
    view! {
        <aside class="online" aria-label="Online">
            <h2>"Online " <span class="count">{move || state.online.with(Vec::len)}</span></h2>
            <ul data-testid="online">
                <For each=move || state.online.get() key=|u| u.id let:user>
                    <li>
                        <Avatar user=user.clone() />
                        <span class="name">{user.name}</span>
                        {my_email(chat, user.id).map(|e| view! { <span class="email">{e}</span> })}
                    </li>
                </For>
            </ul>
            <h2>"Members " <span class="count">{count}</span></h2>
            <ul class="members" data-testid="members">
                {members
                    .into_iter()
                    .map(|m| {
                        view! {
                            <li data-role=m.role.as_str()>
                                <Avatar user=m.user.clone() />
                                <span class="name">{m.user.name}</span>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </aside>
    }
}

/// The signed-in user's email when `id` is theirs: the online list shows
/// it on their own line only (others' emails never reach the browser).
fn my_email(chat: Chat, id: i64) -> Option<String> {
    chat.me.with_untracked(|me| {
        me.as_ref()
            .filter(|m| m.id == id)
            .and_then(|m| m.email.clone())
    })
}
