//! The chat app: everything the browser and the server both compile.
//!
//! # Layout
//! - [`protocol`]: the WebSocket wire types, limits and validation shared by both sides.
//! - [`api`]: server functions (page data, sign-in, room creation, the no-JS composer)
//!   and the `Backend` trait the server implements for them.
//! - [`client`]: the browser's live state and its WebSocket connection.
//! - [`components`]: the pages and panes.
//! - [`urls`]: the app's paths (`/r/<id>/<slug>`; `/rooms/<name>` redirects there).
//!
//! Feature `ssr` builds the server side, `hydrate` the WASM side.

#![recursion_limit = "256"]

pub mod api;
pub mod client;
pub mod components;
pub mod protocol;
pub mod urls;

pub use urls::{percent_encode, room_href};

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The app's root: routes and the shared live-chat state.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_context(client::Chat::new());

    // Async SSR: the server waits for page data so the room list and history
    // are in the HTML itself, readable (and postable) without JavaScript.
    view! {
        <Stylesheet id="leptos" href="/pkg/chat.css" />
        <Title text="Chat" />
        <Router>
            <Routes fallback=components::NotFound>
                <Route path=path!("/") view=components::ChatPage ssr=SsrMode::Async />
                <Route path=path!("/r/:id/:slug?") view=components::ChatPage ssr=SsrMode::Async />
                <Route
                    path=path!("/rooms/:name")
                    view=components::ChatPage
                    ssr=SsrMode::Async
                />
                <Route path=path!("/browse") view=components::ChatPage ssr=SsrMode::Async />
            </Routes>
        </Router>
    }
}
