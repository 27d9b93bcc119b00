//! The sidebar: who is signed in, the rooms they belong to, "Browse rooms"
//! and the form that creates a room.

use super::{action_error, fresh_client_id, Avatar, FormError, PageActions};
use crate::{
    api::SignOut,
    protocol::{Me, RoomSummary, MAX_ROOM_NAME_CHARS},
    urls::room_href_v2,
};
use leptos::prelude::*;
use leptos_router::components::A;

/// The signed-in user, their rooms (in the server's order), the directory
/// link and the create form.
#[component]
pub(crate) fn Sidebar(
    me: Me,
    rooms: Vec<RoomSummary>,
    sign_out: ServerAction<SignOut>,
) -> impl IntoView {
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
            <RoomList rooms />
            <CreateRoom />
        </aside>
    }
}

/// The rooms the user belongs to, each linking to its page by id.
#[component]
fn RoomList(rooms: Vec<RoomSummary>) -> impl IntoView {
    view! {
        <nav class="rooms" aria-label="Rooms">
            <h2>"Rooms"</h2>
            <ul>
                {rooms
                    .into_iter()
                    .map(|room| {
                        let name = room.display_name().to_owned();
                        view! {
                            <li data-room-id=room.id>
                                <A href=room_href_v2(room.id, &name)>{format!("# {name}")}</A>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
            <a class="browse" href="/browse">
                "Browse rooms"
            </a>
        </nav>
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
