//! Small pieces every page uses: avatars, form errors, the display-name
//! field, the connection badge, "not found" and times.

use crate::{
    client::{Chat, Status},
    protocol::{UserInfo, MAX_DISPLAY_NAME_CHARS},
};
use leptos::prelude::*;

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
pub(crate) fn DisplayNameField(id: &'static str) -> impl IntoView {
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

/// The connection's state, in a corner.
#[component]
pub(crate) fn StatusBadge() -> impl IntoView {
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

/// Shown for any path the router does not know, and for a room that does
/// not exist or that the user may not see (the two look the same: 404, and
/// nothing about what was asked for).
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

/// A timestamp: UTC while server-rendered, the reader's local time once hydrated.
#[component]
pub(crate) fn Time(ts: i64) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let text = move || {
        if chat.hydrated.get() {
            local_hhmm(ts)
        } else {
            utc_hhmm(ts)
        }
    };
    view! { <time class="time" datetime=ts.to_string()>{text}</time> }
}

fn utc_hhmm(ts: i64) -> String {
    let minutes = ts.div_euclid(60_000);
    format!(
        "{:02}:{:02} UTC",
        minutes.div_euclid(60).rem_euclid(24),
        minutes.rem_euclid(60)
    )
}

#[cfg(feature = "hydrate")]
fn local_hhmm(ts: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ts as f64));
    format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
}

#[cfg(not(feature = "hydrate"))]
fn local_hhmm(ts: i64) -> String {
    utc_hhmm(ts)
}

/// A fresh `client_id` for a form: one per render, so a resend of the same
/// form is harmless and the next form is a new command.
pub(crate) fn fresh_client_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The hidden fields of a command on a room (join, leave, rename, topic):
/// its id and a fresh `client_id`.
#[component]
pub(crate) fn RoomCommandFields(room_id: i64) -> impl IntoView {
    view! {
        <input type="hidden" name="room_id" value=room_id />
        <input type="hidden" name="client_id" value=fresh_client_id() />
    }
}
