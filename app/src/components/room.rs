//! The open room: message stream, composer and who is online.

use super::{Avatar, FormError};
use crate::{
    api::RoomPage,
    client::{first_seq, Chat, Item, RoomState},
    protocol::{SystemEvent, UserInfo, MAX_BODY_CHARS},
};
use leptos::{html, prelude::*};

/// The message pane, composer and online list of one room.
#[component]
pub fn RoomPane(room: RoomPage) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let name = room.info.name.clone();
    let state = RoomState::new(name.clone(), room.messages, room.has_more, room.online);
    Effect::new(move || chat.open(state));
    {
        let name = name.clone();
        on_cleanup(move || chat.close(&name));
    }

    view! {
        <main class="pane" data-room=name.clone()>
            <header class="pane-head">
                <h1>{format!("# {name}")}</h1>
            </header>
            <MessageList state name=name.clone() />
            <p class="typing" aria-live="polite">{move || typing_text(&state.typing.get())}</p>
            <Composer name=name.clone() />
        </main>
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

/// How close to the top (in pixels) scrolling asks for older history.
const LOAD_OLDER_WITHIN: i32 = 300;

#[component]
fn MessageList(state: RoomState, name: String) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let list = NodeRef::<html::Ol>::new();
    // The list's height and oldest message when last laid out, to tell an
    // append from a page of older history put on top.
    let laid_out = StoredValue::new((0, None::<i64>));
    Effect::new(move || {
        let first = state.items.with(|items| first_seq(items));
        chat.status.track(); // history can only be asked for once online
        let Some(el) = list.get() else { return };
        let (height, top) = (el.scroll_height(), el.scroll_top());
        let (old_height, old_first) = laid_out.get_value();
        if matches!((first, old_first), (Some(now), Some(was)) if now < was) {
            // Older lines went in above: keep the lines being read in place.
            el.set_scroll_top(top + height - old_height);
        } else if old_height - top - el.client_height() < 120 || !chat.hydrated.get_untracked() {
            // Keep the newest line in view as lines arrive, unless the reader
            // had scrolled up to read older ones.
            el.set_scroll_top(height);
        }
        laid_out.set_value((el.scroll_height(), first));
        // A short page that cannot scroll would never ask for more.
        if el.scroll_height() <= el.client_height() {
            chat.load_older();
        }
    });
    let on_scroll = move |_| {
        if list
            .get()
            .is_some_and(|el| el.scroll_top() < LOAD_OLDER_WITHIN)
        {
            chat.load_older();
        }
    };
    view! {
        <ol class="messages" node_ref=list aria-live="polite" on:scroll=on_scroll>
            <li class="history-edge">
                {move || {
                    if !state.has_more.get() {
                        view! { <span class="start">{format!("This is the start of # {name}.")}</span> }
                            .into_any()
                    } else if state.loading_older.get() {
                        view! { <span class="loading">"Loading older messages…"</span> }.into_any()
                    } else {
                        view! {
                            <button
                                type="button"
                                class="link older"
                                disabled=move || !chat.hydrated.get()
                                on:click=move |_| chat.load_older()
                            >
                                "Load older messages"
                            </button>
                        }
                            .into_any()
                    }
                }}
            </li>
            <For each=move || state.items.get() key=Item::key let:item>
                <Line item />
            </For>
        </ol>
    }
}

/// "Ann is typing…", "Ann and Bob are typing…", "Several people are typing…".
fn typing_text(typing: &[(UserInfo, f64)]) -> String {
    match typing {
        [] => String::new(),
        [(a, _)] => format!("{} is typing…", a.name),
        [(a, _), (b, _)] => format!("{} and {} are typing…", a.name, b.name),
        _ => "Several people are typing…".to_owned(),
    }
}

#[component]
fn Line(item: Item) -> impl IntoView {
    match item {
        Item::Message(m) => view! {
            <li class="msg" data-seq=m.seq>
                <Avatar user=m.author.clone() />
                <span class="author">{m.author.name}</span>
                <Time ts=m.ts />
                <p class="body">{m.body}</p>
            </li>
        }
        .into_any(),
        Item::Pending {
            client_id,
            author,
            body,
            failed,
        } => {
            let chat = expect_context::<Chat>();
            let class = if failed.is_some() {
                "msg failed"
            } else {
                "msg pending"
            };
            view! {
                <li class=class>
                    <span class="author">{author.name}</span>
                    <span class="time">
                        {if failed.is_some() { "not sent" } else { "sending…" }}
                    </span>
                    <p class="body">{body}</p>
                    {failed
                        .map(|why| {
                            view! {
                                <p class="error" role="alert">
                                    {why} " "
                                    <button
                                        type="button"
                                        class="retry"
                                        on:click=move |_| chat.retry(&client_id)
                                    >
                                        "Retry"
                                    </button>
                                </p>
                            }
                        })}
                </li>
            }
            .into_any()
        }
        Item::Notice {
            user, event, ts, ..
        } => {
            let text = match event {
                SystemEvent::Joined => format!("{user} joined"),
                SystemEvent::Left => format!("{user} left"),
            };
            view! {
                <li class="notice">
                    {text} " " <Time ts />
                </li>
            }
            .into_any()
        }
    }
}

/// A timestamp: UTC while server-rendered, the reader's local time once hydrated.
#[component]
fn Time(ts: i64) -> impl IntoView {
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

/// The composer. Without JavaScript it is a plain form posting to the
/// `post_message` server function; once hydrated, Enter sends over the
/// WebSocket and the text is kept whenever the message is refused.
#[component]
fn Composer(name: String) -> impl IntoView {
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
            <input type="hidden" name="room" value=name.clone() />
            <input type="hidden" name="client_id" value=uuid::Uuid::new_v4().to_string() />
            <textarea
                name="body"
                node_ref=text
                rows="2"
                aria-label="Message"
                placeholder=format!("Message # {name} (Enter to send, Shift+Enter for a new line)")
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
