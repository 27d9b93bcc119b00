//! Pages and panes.
//!
//! Every form here is a real `<form>` posting to a server function, so the app
//! works before (and without) the WASM bundle; once hydrated, the composer
//! sends over the WebSocket instead and the rest use server actions.

mod room;

use crate::{
    api::{load_page, CreateRoom, PageData, SignInGuest, SignOut},
    client::{Chat, Status},
    protocol::{MAX_DISPLAY_NAME_CHARS, MAX_ROOM_NAME_CHARS},
    room_href,
};
use leptos::prelude::*;
use leptos_router::{
    components::A,
    hooks::{use_params_map, use_query_map},
};
pub use room::RoomPane;

/// The one page: sign-in when signed out, otherwise the three panes.
#[component]
pub fn ChatPage() -> impl IntoView {
    let params = use_params_map();
    // The router hands over the segment already percent-decoded.
    let room = move || params.with(|p| p.get("name"));
    let sign_in = ServerAction::<SignInGuest>::new();
    let sign_out = ServerAction::<SignOut>::new();
    let create = ServerAction::<CreateRoom>::new();
    let page = Resource::new(
        move || (room(), sign_in.version().get(), sign_out.version().get()),
        |(room, _, _)| load_page(room),
    );
    let chat = expect_context::<Chat>();
    Effect::new(move || chat.hydrated.set(true));

    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(data) if data.me.is_some() => {
                        view! { <Layout data sign_out create /> }.into_any()
                    }
                    Ok(_) => view! { <SignIn action=sign_in /> }.into_any(),
                    Err(err) => {
                        view! { <p class="fatal" role="alert">{err.message}</p> }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// The `?error=` a plain (no-JavaScript) form post came back with.
fn query_error() -> Signal<Option<String>> {
    let query = use_query_map();
    Signal::derive(move || query.with(|q| q.get("error")))
}

/// The message to show for an action: its last failure, else the page's `?error=`.
fn action_error<I, O>(action: ServerAction<I>) -> Signal<Option<String>>
where
    I: server_fn::ServerFn<Output = O, Error = crate::protocol::ApiError>
        + Clone
        + Send
        + Sync
        + 'static,
    O: Clone + Send + Sync + 'static,
{
    let from_query = query_error();
    Signal::derive(move || match action.value().get() {
        Some(Err(err)) => Some(err.message),
        Some(Ok(_)) => None,
        None => from_query.get(),
    })
}

#[component]
fn SignIn(action: ServerAction<SignInGuest>) -> impl IntoView {
    let error = action_error(action);
    view! {
        <main class="signin">
            <h1>"Chat"</h1>
            <ActionForm action>
                <label for="display-name">"Display name"</label>
                <input
                    id="display-name"
                    name="name"
                    autocomplete="nickname"
                    autofocus
                    placeholder=format!("1–{MAX_DISPLAY_NAME_CHARS} characters")
                />
                <button type="submit">"Sign in as guest"</button>
                <Show when=move || error.get().is_some()>
                    <p class="error" role="alert">{move || error.get()}</p>
                </Show>
            </ActionForm>
        </main>
    }
}

#[component]
fn Layout(
    data: PageData,
    sign_out: ServerAction<SignOut>,
    create: ServerAction<CreateRoom>,
) -> impl IntoView {
    let chat = expect_context::<Chat>();
    chat.me.set(data.me.clone());
    chat.rooms.set(data.rooms.clone());
    Effect::new(move || chat.start());
    // Stop on a sign-out made while this layout is shown (the action's
    // version may be above zero from an earlier sign-out on this page).
    let signed_out_before = sign_out.version().get_untracked();
    Effect::new(move || {
        if sign_out.version().get() > signed_out_before {
            chat.stop();
        }
    });
    let me = data.me.map(|u| u.name).unwrap_or_default();

    view! {
        <div class="chat">
            <aside class="sidebar">
                <header class="me">
                    <span class="me-name" data-testid="me">{me}</span>
                    <ActionForm action=sign_out>
                        <button type="submit" class="link">"Sign out"</button>
                    </ActionForm>
                </header>
                <RoomList create />
            </aside>
            {match (data.room, data.missing_room) {
                (Some(room), _) => view! { <RoomPane room /> }.into_any(),
                (None, Some(missing)) => view! { <MissingRoom name=missing /> }.into_any(),
                (None, None) => {
                    view! {
                        <main class="pane empty">
                            <p>"Pick a room on the left, or create one."</p>
                        </main>
                    }
                        .into_any()
                }
            }}
            <StatusBadge />
        </div>
    }
}

#[component]
fn RoomList(create: ServerAction<CreateRoom>) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let error = action_error(create);
    let input = NodeRef::<leptos::html::Input>::new();
    // A created room opens; clear the field for the next one.
    Effect::new(move || {
        if let (Some(Ok(_)), Some(input)) = (create.value().get(), input.get_untracked()) {
            input.set_value("");
        }
    });
    view! {
        <nav class="rooms" aria-label="Rooms">
            <h2>"Rooms"</h2>
            <ul>
                <For each=move || chat.rooms.get() key=|room| room.name.clone() let:room>
                    <li>
                        <A href=room_href(&room.name)>{format!("# {}", room.name)}</A>
                    </li>
                </For>
            </ul>
        </nav>
        <ActionForm action=create attr:class="create-room">
            <label for="new-room">"New room"</label>
            <input
                id="new-room"
                node_ref=input
                name="name"
                placeholder=format!("1–{MAX_ROOM_NAME_CHARS} characters")
            />
            <button type="submit">"Create"</button>
            <Show when=move || error.get().is_some()>
                <p class="error" role="alert">{move || error.get()}</p>
            </Show>
        </ActionForm>
    }
}

#[component]
fn MissingRoom(name: String) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <main class="pane empty">
            <p role="alert">{format!("There is no room named “{name}”.")}</p>
            <p>"Create it with the form on the left."</p>
        </main>
    }
}

#[component]
fn StatusBadge() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let label = move || match chat.status.get() {
        Status::Idle => "",
        Status::Connecting => "connecting…",
        Status::Online => "live",
        Status::Reconnecting => "reconnecting…",
        Status::Offline => "offline: messages will be sent when the network is back",
    };
    view! {
        <div class="status" data-status=move || format!("{:?}", chat.status.get()).to_lowercase()>
            {label}
        </div>
    }
}

/// Shown for any path the router does not know.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <main class="pane empty">
            <h1>"Not found"</h1>
            <a href="/">"Back to the chat"</a>
        </main>
    }
}
