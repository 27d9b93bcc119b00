//! The composer of a member, and the Join bar of someone previewing.

use crate::{
    client::Chat,
    components::{action_error, FormError, PageActions, RoomCommandFields},
    protocol::MAX_BODY_CHARS,
};
use leptos::{html, prelude::*};

/// The composer of room `room_id`. Without JavaScript it is a plain form
/// posting to the `post_message` server function; once hydrated, Enter sends
/// over the WebSocket and the text is kept whenever the message is refused.
#[component]
pub(super) fn Composer(room_id: i64, name: Memo<String>) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let text = NodeRef::<html::Textarea>::new();
    let error = RwSignal::new(None::<String>);
    let send = move || {
        let Some(area) = text.get() else { return };
        match chat.send_message(area.value()) {
            Ok(()) => {
                area.set_value("");
                error.set(None);
            }
            Err(err) => error.set(Some(err.message)),
        }
    };
    view! {
        <form
            class="composer"
            method="post"
            action="/api/post_message"
            on:submit=move |ev| {
                ev.prevent_default();
                send();
            }
        >
            <RoomCommandFields room_id />
            <textarea
                name="body"
                node_ref=text
                rows="2"
                aria-label="Message"
                placeholder=move || {
                    format!("Message # {} (Enter to send, Shift+Enter for a new line)", name.get())
                }
                on:keydown=move |ev| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        send();
                    }
                }
                on:input=move |_| {
                    chat.typing();
                    if error.get_untracked().is_some() {
                        let len = text.get().map(|a| a.value().chars().count()).unwrap_or(0);
                        if len <= MAX_BODY_CHARS {
                            error.set(None);
                        }
                    }
                }
            ></textarea>
            <button type="submit">"Send"</button>
            <FormError error=error />
        </form>
    }
}

/// Instead of the composer while previewing a public room: "Join # name".
#[component]
pub(super) fn JoinBar(room_id: i64, name: Memo<String>) -> impl IntoView {
    let join = expect_context::<PageActions>().join;
    let error = action_error(join);
    view! {
        <ActionForm action=join attr:class="join-room join-bar">
            <RoomCommandFields room_id />
            <p class="preview-note">"You are previewing this room."</p>
            <button type="submit">{move || format!("Join # {}", name.get())}</button>
            <FormError error=error />
        </ActionForm>
    }
}
