//! The message stream: history, live lines, notices and "Load older".

use crate::{
    client::{first_seq, Chat, Item, RoomState},
    components::{Avatar, Time},
    protocol::{SystemEvent, UserInfo},
};
use leptos::{html, prelude::*};

/// How close to the top (in pixels) scrolling asks for older history.
const LOAD_OLDER_WITHIN: i32 = 300;

#[component]
pub(super) fn MessageList(state: RoomState, name: String) -> impl IntoView {
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
pub(super) fn typing_text(typing: &[(UserInfo, f64)]) -> String {
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
