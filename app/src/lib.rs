//! The chat app: everything the browser and the server both compile.
//!
//! # Layout
//! - [`protocol`]: the WebSocket wire types, limits and validation shared by both sides.
//! - [`api`]: server functions (page data, sign-in, room creation, the no-JS composer)
//!   and the `Backend` trait the server implements for them.
//! - [`client`]: the browser's live state and its WebSocket connection.
//! - [`components`]: the pages and panes.
//!
//! Feature `ssr` builds the server side, `hydrate` the WASM side.

#![recursion_limit = "256"]

pub mod api;
pub mod client;
pub mod components;
pub mod protocol;

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
                <Route
                    path=path!("/rooms/:name")
                    view=components::ChatPage
                    ssr=SsrMode::Async
                />
            </Routes>
        </Router>
    }
}

/// The path of a room's page.
pub fn room_href(name: &str) -> String {
    format!("/rooms/{}", percent_encode(name))
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a
/// path segment or a query value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; invalid escapes and invalid UTF-8 are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        for s in ["Team Chat", "100%", "ünï/cödé?#&", "", "%zz"] {
            assert_eq!(percent_decode(&percent_encode(s)), s);
        }
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41%42"), "AB");
        assert_eq!(room_href("a b"), "/rooms/a%20b");
    }
}
