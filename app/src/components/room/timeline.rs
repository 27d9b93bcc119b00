//! The message stream: history, live lines, notices and "Load older".

use super::slice;
use crate::{
    client::{Chat, Item},
    components::{Avatar, Time},
    protocol::{Event, EventKind, UserInfo},
};
use leptos::{html, prelude::*};

/// How close to the top (in pixels) scrolling asks for older history.
const LOAD_OLDER_WITHIN: i32 = 300;
/// How close to the bottom (in pixels) counts as reading the newest line.
const AT_BOTTOM_WITHIN: i32 = 120;

#[component]
pub(super) fn MessageList(room_id: i64, name: Memo<String>) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let list = NodeRef::<html::Ol>::new();
    let items = slice(chat, room_id, Vec::new(), |t| t.items.clone());
    let has_more = slice(chat, room_id, false, |t| t.has_more);
    let loading_older = slice(chat, room_id, false, |t| t.loading_older || t.awaiting_page);
    // The list's height and oldest line when last laid out, to tell an
    // append from a page of older history put on top.
    let laid_out = StoredValue::new((0, None::<i64>));
    Effect::new(move || {
        let first = items.with(|items| items.iter().find_map(Item::seq));
        chat.status.track(); // history can only be asked for once online
        let Some(el) = list.get() else { return };
        let (height, top) = (el.scroll_height(), el.scroll_top());
        let (old_height, old_first) = laid_out.get_value();
        if matches!((first, old_first), (Some(now), Some(was)) if now < was) {
            // Older lines went in above: keep the lines being read in place.
            el.set_scroll_top(top + height - old_height);
        } else if old_height - top - el.client_height() < AT_BOTTOM_WITHIN
            || !chat.hydrated.get_untracked()
        {
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
        let Some(el) = list.get() else { return };
        if el.scroll_top() < LOAD_OLDER_WITHIN {
            chat.load_older();
        }
        let from_bottom = el.scroll_height() - el.scroll_top() - el.client_height();
        chat.at_bottom(from_bottom < AT_BOTTOM_WITHIN);
    };
    view! {
        <ol class="messages" node_ref=list aria-live="polite" on:scroll=on_scroll>
            <li class="history-edge">
                {move || {
                    if loading_older.get() {
                        view! { <span class="loading">"Loading older messages…"</span> }.into_any()
                    } else if !has_more.get() {
                        view! {
                            <span class="start">
                                {move || format!("This is the start of # {}.", name.get())}
                            </span>
                        }
                            .into_any()
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
            <For each=move || items.get() key=Item::key let:item>
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
        Item::Notice(event) => {
            let ts = event.ts;
            view! {
                <li class="notice" data-seq=event.seq>
                    {notice_text(&event)} " " <Time ts />
                </li>
            }
            .into_any()
        }
    }
}

/// What a membership or room notice says.
fn notice_text(event: &Event) -> String {
    match &event.kind {
        EventKind::MemberJoined { user, .. } => format!("{} joined the room", user.name),
        EventKind::MemberLeft { user } => format!("{} left the room", user.name),
        EventKind::MemberKicked { user, by, .. } => {
            format!("{} was removed by {}", user.name, by.name)
        }
        EventKind::MemberBanned { user, by, .. } => {
            format!("{} was banned by {}", user.name, by.name)
        }
        EventKind::Renamed { name, by, .. } => format!("{} renamed the room to # {name}", by.name),
        EventKind::TopicChanged { topic, by } if topic.is_empty() => {
            format!("{} cleared the topic", by.name)
        }
        EventKind::TopicChanged { topic, by } => format!("{} set the topic: {topic}", by.name),
        _ => String::new(),
    }
}
