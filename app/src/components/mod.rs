//! Pages and panes.
//!
//! Every form here is a real `<form>` posting to a server function, so the app
//! works before (and without) the WASM bundle; once hydrated, the composer
//! sends over the WebSocket instead and the rest use server actions.

mod room;

use crate::{
    api::{
        load_page, CreateRoom, PageData, SignInGuest, SignInOptions, SignInPassword, SignOut,
        SignUp,
    },
    client::{Chat, Status},
    protocol::{UserInfo, MAX_DISPLAY_NAME_CHARS, MAX_ROOM_NAME_CHARS, MIN_PASSWORD_CHARS},
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
    let sign_in_password = ServerAction::<SignInPassword>::new();
    let sign_up = ServerAction::<SignUp>::new();
    let sign_out = ServerAction::<SignOut>::new();
    let create = ServerAction::<CreateRoom>::new();
    // Reload the page data after a successful sign-in only: a refused one
    // keeps the form (and what was typed) as it is.
    let signed_in = RwSignal::new(0u32);
    count_successes(sign_in, signed_in);
    count_successes(sign_in_password, signed_in);
    count_successes(sign_up, signed_in);
    let page = Resource::new(
        move || (room(), signed_in.get(), sign_out.version().get()),
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

/// The signed-out page: provider buttons, local accounts and guest sign-in,
/// as configured. Every form works without JavaScript: provider buttons post
/// to `/auth/oidc/<id>` (which redirects to the provider), the rest post to
/// server functions (a failure comes back as `?error=`, shown at the top).
#[component]
fn SignIn(
    options: SignInOptions,
    guest: ServerAction<SignInGuest>,
    password: ServerAction<SignInPassword>,
    sign_up: ServerAction<SignUp>,
) -> impl IntoView {
    let from_query = query_error();
    let nothing = options.providers.is_empty() && !options.local && !options.guest;
    view! {
        <main class="signin">
            <h1>"Chat"</h1>
            <FormError error=from_query />
            {(!options.providers.is_empty())
                .then(|| {
                    view! {
                        <section class="providers" aria-label="Sign in with a provider">
                            {options
                                .providers
                                .into_iter()
                                .map(|p| {
                                    view! {
                                        <form method="post" action=format!("/auth/oidc/{}", p.id)>
                                            <button type="submit" class="provider">
                                                {format!("Sign in with {}", p.name)}
                                            </button>
                                        </form>
                                    }
                                })
                                .collect_view()}
                        </section>
                    }
                })}
            {options.local.then(|| view! { <LocalAccount password sign_up /> })}
            {options.guest.then(|| view! { <GuestSignIn action=guest /> })}
            {nothing.then(|| view! { <p>"Sign-in is not configured on this server."</p> })}
        </main>
    }
}

#[component]
fn LocalAccount(
    password: ServerAction<SignInPassword>,
    sign_up: ServerAction<SignUp>,
) -> impl IntoView {
    let sign_in_error = failure(password);
    let sign_up_error = failure(sign_up);
    view! {
        <section class="local" aria-label="Email and password">
            <h2>"Sign in with email"</h2>
            <ActionForm action=password attr:class="signin-password">
                <label for="signin-email">"Email"</label>
                <input id="signin-email" name="email" type="email" autocomplete="username" />
                <label for="signin-password">"Password"</label>
                <input
                    id="signin-password"
                    name="password"
                    type="password"
                    autocomplete="current-password"
                />
                <button type="submit">"Sign in"</button>
                <FormError error=sign_in_error />
            </ActionForm>
            <details class="signup">
                <summary>"New here? Create an account"</summary>
                <ActionForm action=sign_up attr:class="signup-form">
                    <DisplayNameField id="signup-name" />
                    <label for="signup-email">"Email"</label>
                    <input id="signup-email" name="email" type="email" autocomplete="email" />
                    <label for="signup-password">"Password"</label>
                    <input
                        id="signup-password"
                        name="password"
                        type="password"
                        autocomplete="new-password"
                        placeholder=format!("at least {MIN_PASSWORD_CHARS} characters")
                    />
                    <button type="submit">"Create account"</button>
                    <FormError error=sign_up_error />
                </ActionForm>
            </details>
        </section>
    }
}

#[component]
fn GuestSignIn(action: ServerAction<SignInGuest>) -> impl IntoView {
    let error = failure(action);
    view! {
        <section class="guest" aria-label="Guest">
            <ActionForm action>
                <DisplayNameField id="display-name" />
                <button type="submit">"Sign in as guest"</button>
                <FormError error=error />
            </ActionForm>
        </section>
    }
}

/// A user's picture, or their initials when they have none. The initials
/// are drawn by CSS (`data-initials`), so they are not part of the text
/// next to them.
#[component]
pub(crate) fn Avatar(user: UserInfo) -> impl IntoView {
    match user.picture {
        Some(url) => view! {
            <img class="avatar" src=url alt="" loading="lazy" referrerpolicy="no-referrer" />
        }
        .into_any(),
        None => view! {
            <span class="avatar" aria-hidden="true" data-initials=user.initials()></span>
        }
        .into_any(),
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
    let me = data.me.unwrap_or_default();
    let email = me.email.clone();

    view! {
        <div class="chat">
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
            <FormError error=error />
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

/// A form's error line, shown while there is one.
#[component]
pub(crate) fn FormError(#[prop(into)] error: Signal<Option<String>>) -> impl IntoView {
    view! {
        <Show when=move || error.get().is_some()>
            <p class="error" role="alert">{move || error.get()}</p>
        </Show>
    }
}

/// The labelled display-name input of the guest and sign-up forms.
#[component]
fn DisplayNameField(id: &'static str) -> impl IntoView {
    view! {
        <label for=id>"Display name"</label>
        <input
            id=id
            name="name"
            autocomplete="nickname"
            placeholder=format!("1–{MAX_DISPLAY_NAME_CHARS} characters")
        />
    }
}
