//! The sidebar: who is signed in, the rooms they belong to, "Browse rooms"
//! and the form that creates a room.

use super::{action_error, fresh_client_id, Avatar, FormError, PageActions};
use crate::{
    api::SignOut,
    client::Chat,
    protocol::{Me, MAX_ROOM_NAME_CHARS},
    urls::room_href_v2,
};
use leptos::prelude::*;
use leptos_router::components::A;

/// The signed-in user, their rooms, the directory link and the create form.
#[component]
pub(crate) fn Sidebar(me: Me, sign_out: ServerAction<SignOut>) -> impl IntoView {
    let email = me.email.clone();
    view! {
        <aside class="sidebar">
            <header class="me">
                <Avatar user=me.public() />
                <span class="me-who">
                    <span class="me-name" data-testid="me">{me.name}</span>
                    {email
                        .map(|email| {
                            view! {
                                <span class="me-email" data-testid="me-email">
                                    {email}
                                </span>
                            }
                        })}
                </span>
                <ActionForm action=sign_out>
                    <button type="submit" class="link">"Sign out"</button>
                </ActionForm>
            </header>
            <RoomList />
            <CreateRoom />
        </aside>
    }
}

/// One line of the room list: what it shows, and so when it must change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RoomLine {
    id: i64,
    name: String,
    unread: u32,
    mentions: u32,
}

/// The rooms the user belongs to (live: joins in other tabs, renames,
/// unread and mention counts), each linking to its page by id.
#[component]
fn RoomList() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let lines = Memo::new(move |_| {
        chat.state.with(|s| {
            s.rooms
                .iter()
                .map(|r| RoomLine {
                    id: r.summary.id,
                    name: r.summary.display_name().to_owned(),
                    unread: r.summary.unread,
                    mentions: r.summary.mentions,
                })
                .collect::<Vec<_>>()
        })
    });
    view! {
        <nav class="rooms" aria-label="Rooms">
            <h2>"Rooms"</h2>
            <ul>
                <For each=move || lines.get() key=|line| line.clone() let:line>
                    <RoomItem line />
                </For>
            </ul>
            <a class="browse" href="/browse">
                "Browse rooms"
            </a>
        </nav>
    }
}

/// A room's link, and its unread and mention badges beside it (outside
/// the link, whose name stays the room's).
#[component]
fn RoomItem(line: RoomLine) -> impl IntoView {
    let RoomLine {
        id,
        name,
        unread,
        mentions,
    } = line;
    view! {
        <li data-room-id=id data-unread=unread data-mentions=mentions>
            <A href=room_href_v2(id, &name)>{format!("# {name}")}</A>
            {(mentions > 0)
                .then(|| {
                    view! {
                        <span class="badge mentions" title=format!("{mentions} mentioning you")>
                            {format!("@{mentions}")}
                        </span>
                    }
                })}
            {(unread > 0)
                .then(|| {
                    view! {
                        <span class="badge unread" title=format!("{unread} unread")>
                            {unread}
                        </span>
                    }
                })}
        </li>
    }
}

/// Creates a room (posting `create_room` with a fresh `client_id`); the
/// server then opens it.
#[component]
fn CreateRoom() -> impl IntoView {
    let create = expect_context::<PageActions>().create;
    let error = action_error(create);
    view! {
        <ActionForm action=create attr:class="create-room">
            <label for="new-room">"New room"</label>
            <input
                id="new-room"
                name="name"
                placeholder=format!("1–{MAX_ROOM_NAME_CHARS} characters")
            />
            <input type="hidden" name="client_id" value=fresh_client_id() />
            <button type="submit">"Create"</button>
            <FormError error=error />
        </ActionForm>
    }
}
