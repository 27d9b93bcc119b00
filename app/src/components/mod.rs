//! Pages and panes.
//!
//! Every form here is a real `<form>` posting to a server function, so the app
//! works before (and without) the WASM bundle; once hydrated, the composer
//! sends over the WebSocket instead and the rest use server actions.
//!
//! # Layout
//! - this module: [`ChatPage`] (page data by route) and the layout.
//! - `common`: avatars, form errors, the status badge, [`NotFound`], times.
//! - `signin`: the signed-out page.
//! - `sidebar`: your rooms, "Browse rooms", the create form.
//! - `directory`: the Browse rooms page.
//! - `room`: the open room (header, timeline, composer, members).

mod common;
mod directory;
mod room;
mod sidebar;
mod signin;

use crate::{
    api::{
        load_page, CreateRoom, JoinRoom, LeaveRoom, PageData, RenameRoom, SetTopic, SignInGuest,
        SignInPassword, SignOut, SignUp, View,
    },
    client::Chat,
};
pub use common::NotFound;
pub(crate) use common::{
    fresh_client_id, Avatar, DisplayNameField, FormError, RoomCommandFields, StatusBadge, Time,
};
use directory::Directory;
use leptos::prelude::*;
use leptos_router::hooks::{use_location, use_params_map, use_query_map};
pub use room::RoomPane;
use sidebar::Sidebar;
use signin::SignIn;

/// The server actions of the room forms (join, leave, create), shared by
/// every form of the page; a success reloads the page data, so the sidebar
/// lists a room just joined or created, and drops one just left.
#[derive(Clone, Copy)]
pub(crate) struct PageActions {
    pub join: ServerAction<JoinRoom>,
    pub leave: ServerAction<LeaveRoom>,
    pub create: ServerAction<CreateRoom>,
    pub rename: ServerAction<RenameRoom>,
    pub topic: ServerAction<SetTopic>,
}

/// `load_page`'s arguments for the current URL: `/r/:id/:slug?` (an id that
/// is not a number names no room: 0), `/rooms/:name`, `/browse?q=&after=`,
/// else the home page.
type RouteArgs = (
    Option<i64>,
    Option<String>,
    Option<bool>,
    Option<String>,
    Option<String>,
);

/// The one page: sign-in when signed out, otherwise the sidebar and the
/// pane the route asks for.
#[component]
pub fn ChatPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let location = use_location();
    // The router hands over segments already percent-decoded.
    let route = move || -> RouteArgs {
        let browse = location.pathname.with(|p| p == "/browse");
        params.with(|p| {
            let room_id = p.get("id").map(|id| id.parse::<i64>().unwrap_or(0));
            let name = p.get("name");
            if browse {
                query.with(|q| (None, None, Some(true), q.get("q"), q.get("after")))
            } else {
                (room_id, name, None, None, None)
            }
        })
    };
    let sign_in = ServerAction::<SignInGuest>::new();
    let sign_in_password = ServerAction::<SignInPassword>::new();
    let sign_up = ServerAction::<SignUp>::new();
    let sign_out = ServerAction::<SignOut>::new();
    let actions = PageActions {
        join: ServerAction::new(),
        leave: ServerAction::new(),
        create: ServerAction::new(),
        rename: ServerAction::new(),
        topic: ServerAction::new(),
    };
    provide_context(actions);
    // Reload the page data after a successful sign-in only: a refused one
    // keeps the form (and what was typed) as it is. The same for the room
    // forms.
    let signed_in = RwSignal::new(0u32);
    count_successes(sign_in, signed_in);
    count_successes(sign_in_password, signed_in);
    count_successes(sign_up, signed_in);
    let changed = RwSignal::new(0u32);
    count_successes(actions.join, changed);
    count_successes(actions.leave, changed);
    count_successes(actions.create, changed);
    count_successes(actions.rename, changed);
    count_successes(actions.topic, changed);
    let page = Resource::new(
        move || {
            (
                route(),
                signed_in.get(),
                sign_out.version().get(),
                changed.get(),
            )
        },
        |((room_id, room, browse, q, after), _, _, _)| load_page(room_id, room, browse, q, after),
    );
    let chat = expect_context::<Chat>();
    Effect::new(move || chat.hydrated.set(true));

    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(data) if data.me.is_some() => {
                        view! { <Layout data sign_out /> }.into_any()
                    }
                    Ok(data) => {
                        view! {
                            <SignIn
                                options=data.sign_in
                                guest=sign_in
                                password=sign_in_password
                                sign_up
                            />
                        }
                            .into_any()
                    }
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

/// Adds one to `counter` whenever `action` succeeds.
fn count_successes<I, O>(action: ServerAction<I>, counter: RwSignal<u32>)
where
    I: server_fn::ServerFn<Output = O, Error = crate::protocol::ApiError>
        + Clone
        + Send
        + Sync
        + 'static,
    O: Clone + Send + Sync + 'static,
{
    Effect::new(move || {
        if matches!(action.value().get(), Some(Ok(_))) {
            counter.update(|n| *n += 1);
        }
    });
}

/// The last failure of an action, as text.
fn failure<I, O>(action: ServerAction<I>) -> Signal<Option<String>>
where
    I: server_fn::ServerFn<Output = O, Error = crate::protocol::ApiError>
        + Clone
        + Send
        + Sync
        + 'static,
    O: Clone + Send + Sync + 'static,
{
    Signal::derive(move || match action.value().get() {
        Some(Err(err)) => Some(err.message),
        _ => None,
    })
}

#[component]
fn Layout(data: PageData, sign_out: ServerAction<SignOut>) -> impl IntoView {
    let chat = expect_context::<Chat>();
    chat.seed(data.me.clone(), data.rooms);
    Effect::new(move || chat.start());
    // Stop on a sign-out made while this layout is shown (the action's
    // version may be above zero from an earlier sign-out on this page).
    let signed_out_before = sign_out.version().get_untracked();
    Effect::new(move || {
        if sign_out.version().get() > signed_out_before {
            chat.stop();
        }
    });
    let me = data.me.unwrap_or_default();

    view! {
        <div class="chat">
            <Sidebar me sign_out />
            {match data.view {
                View::Room(room) => view! { <RoomPane room /> }.into_any(),
                View::Browse { page, q } => view! { <Directory page q /> }.into_any(),
                View::NotFound => view! { <NotFound /> }.into_any(),
                View::Redirect(href) => view! { <Redirect href /> }.into_any(),
                View::Home => {
                    view! {
                        <main class="pane empty">
                            <p>"Pick a room on the left, browse the rooms, or create one."</p>
                        </main>
                    }
                        .into_any()
                }
            }}
            <StatusBadge />
        </div>
    }
}

/// Sends the browser on to `href`: a 302 when rendered on the server, a
/// navigation (replacing this entry) in the browser.
#[component]
fn Redirect(href: String) -> impl IntoView {
    #[cfg(feature = "ssr")]
    crate::api::redirect_page(&href);
    #[cfg(feature = "hydrate")]
    {
        let navigate = leptos_router::hooks::use_navigate();
        let to = href.clone();
        request_animation_frame(move || {
            navigate(
                &to,
                leptos_router::NavigateOptions {
                    replace: true,
                    ..Default::default()
                },
            )
        });
    }
    view! {
        <main class="pane empty">
            <a href=href>"Opening the room…"</a>
        </main>
    }
}
