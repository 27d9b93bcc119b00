//! "Browse rooms" (`/browse?q=&after=`): the directory of public rooms,
//! rendered on the server, so the filter, paging, previews and joins all
//! work without JavaScript.

use super::{action_error, FormError, PageActions, RoomCommandFields};
use crate::{
    protocol::{DirectoryEntry, DirectoryPage},
    urls::{percent_encode, room_href_v2},
};
use leptos::prelude::*;

/// The directory page: a GET filter form, one row per room, and "More".
#[component]
pub(crate) fn Directory(page: DirectoryPage, q: String) -> impl IntoView {
    let join = expect_context::<PageActions>().join;
    let error = action_error(join);
    let more = page.next.map(|next| {
        format!(
            "/browse?q={}&after={}",
            percent_encode(&q),
            percent_encode(&next)
        )
    });
    let empty = page.rooms.is_empty();
    view! {
        <main class="pane directory">
            <header class="pane-head">
                <h1>"Browse rooms"</h1>
            </header>
            <form class="browse-filter" method="get" action="/browse" role="search">
                <label for="browse-q">"Filter"</label>
                <input id="browse-q" name="q" type="search" value=q />
                <button type="submit">"Filter"</button>
            </form>
            <FormError error=error />
            <ul class="directory" data-testid="directory">
                {page.rooms.into_iter().map(|room| view! { <Row room /> }).collect_view()}
            </ul>
            {empty.then(|| view! { <p class="none">"No rooms match."</p> })}
            {more.map(|href| view! { <a class="more" href=href>"More"</a> })}
        </main>
    }
}

/// One public room: name, topic, member count, a link to it, and Join
/// (or "Joined").
#[component]
fn Row(room: DirectoryEntry) -> impl IntoView {
    let join = expect_context::<PageActions>().join;
    let href = room_href_v2(room.id, &room.name);
    let count = match room.member_count {
        1 => "1 member".to_owned(),
        n => format!("{n} members"),
    };
    view! {
        <li data-room-id=room.id>
            <span class="name">{format!("# {}", room.name)}</span>
            <span class="topic">{room.topic}</span>
            <span class="member-count" data-testid="member-count">
                {count}
            </span>
            {if room.joined {
                view! {
                    <a class="open" href=href>
                        "Open"
                    </a>
                    <span class="joined">"Joined"</span>
                }
                    .into_any()
            } else {
                view! {
                    <a class="preview" href=href>
                        "Preview"
                    </a>
                    <ActionForm action=join attr:class="join-room">
                        <RoomCommandFields room_id=room.id />
                        <button type="submit">"Join"</button>
                    </ActionForm>
                }
                    .into_any()
            }}
        </li>
    }
}
