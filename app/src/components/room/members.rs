//! Who is in the room, and who of them is online.

use super::slice;
use crate::{
    client::Chat,
    components::Avatar,
    protocol::{MemberInfo, UserInfo},
};
use leptos::prelude::*;

/// The online members and the member list, each member with an online dot
/// (live: `presence` on open, then `presence_changed`, joins and leaves).
/// `roles` are the page's first page of members, for their roles.
#[component]
pub(super) fn Members(room_id: i64, roles: Vec<MemberInfo>) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let people = slice(chat, room_id, Vec::new(), |t| {
        t.members
            .iter()
            .map(|u| (u.clone(), t.online.contains(&u.id)))
            .collect::<Vec<(UserInfo, bool)>>()
    });
    let online = Memo::new(move |_| {
        people.with(|p| {
            let mut online: Vec<UserInfo> = p
                .iter()
                .filter(|(_, on)| *on)
                .map(|(u, _)| u.clone())
                .collect();
            online.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
            online
        })
    });
    let role_of = move |id: i64| {
        roles
            .iter()
            .find(|m| m.user.id == id)
            .map_or("member", |m| m.role.as_str())
    };
    view! {
        <aside class="online" aria-label="People">
            <h2>"Online " <span class="count">{move || online.with(Vec::len)}</span></h2>
            <ul data-testid="online">
                <For each=move || online.get() key=|u| u.clone() let:user>
                    <li>
                        <Avatar user=user.clone() />
                        <span class="name">{user.name}</span>
                        {my_email(chat, user.id).map(|e| view! { <span class="email">{e}</span> })}
                    </li>
                </For>
            </ul>
            <h2>"Members " <span class="count">{move || people.with(Vec::len)}</span></h2>
            <ul class="members" data-testid="members">
                <For each=move || people.get() key=|p| p.clone() let:person>
                    <li data-role=role_of(person.0.id) data-online=person.1.to_string()>
                        <Avatar user=person.0.clone() />
                        <span class="name">{person.0.name}</span>
                        <span class="visually-hidden">
                            {if person.1 { ", online" } else { ", offline" }}
                        </span>
                    </li>
                </For>
            </ul>
        </aside>
    }
}

/// The signed-in user's email when `id` is theirs: the online list shows
/// it on their own line only (others' emails never reach the browser).
fn my_email(chat: Chat, id: i64) -> Option<String> {
    chat.me().filter(|m| m.id == id).and_then(|m| m.email)
}
