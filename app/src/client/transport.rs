//! The WebSocket connection loop (browser only): backoff, heartbeat and
//! offline handling.

use super::{reducer::Intent, Chat, Status};
use crate::protocol::v2::{ClientFrame, ServerFrame};
use futures::{channel::mpsc, SinkExt, StreamExt};
use gloo_net::websocket::{futures::WebSocket, Message, WebSocketError};
use leptos::prelude::*;

/// Close code the server uses when the connection's session has ended.
const SIGNED_OUT: u16 = 1008;
/// How often the client pings, and how much silence means the socket is dead.
const HEARTBEAT_MS: u32 = 15_000;
const SILENCE_MS: f64 = 40_000.0;
use std::{cell::Cell, rc::Rc};

/// A running connection loop: the writer side of the current socket and
/// a flag that stops the loop.
pub struct Conn {
    tx: Option<mpsc::UnboundedSender<String>>,
    stopped: Rc<Cell<bool>>,
}

pub fn send(chat: Chat, frame: &ClientFrame) {
    // Only send while online: anything that matters is replayed by
    // `resume` on the next hello, so a frame sent into a half-open
    // socket is never the only copy.
    if chat.status.try_get_untracked() != Some(Status::Online) {
        return;
    }
    let Ok(text) = serde_json::to_string(frame) else {
        return;
    };
    chat.conn.with_value(|conn| {
        if let Some(tx) = conn.as_ref().and_then(|c| c.tx.as_ref()) {
            let _ = tx.unbounded_send(text); // closed: the loop is reconnecting
        }
    });
}

pub fn stop(chat: Chat) {
    chat.conn.update_value(|conn| {
        if let Some(conn) = conn.take() {
            conn.stopped.set(true);
            drop(conn.tx); // ends the writer, which closes the socket
        }
    });
}

pub fn start(chat: Chat) {
    if chat.conn.with_value(Option::is_some) {
        return;
    }
    let stopped = Rc::new(Cell::new(false));
    chat.conn.set_value(Some(Conn {
        tx: None,
        stopped: stopped.clone(),
    }));
    leptos::task::spawn_local(run(chat, stopped));
}

fn url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Some(format!("{scheme}://{}/ws", location.host().ok()?))
}

/// Whether the browser believes it has a network.
fn online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}

/// Resolves when the window next fires `event` (`online`, `offline`).
async fn window_event(event: &'static str) {
    let Some(window) = web_sys::window() else {
        return futures::future::pending().await;
    };
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    // Dropping the listener (when this future is dropped) unregisters it.
    let _listener = gloo_events::EventListener::once(&window, event, move |_| {
        let _ = tx.send(());
    });
    let _ = rx.await;
}

async fn run(chat: Chat, stopped: Rc<Cell<bool>>) {
    let mut attempt: u32 = 0;
    while !stopped.get() {
        if !online() {
            // No point dialling without a network: wait for it (checking
            // now and then in case the event is missed), then go at once.
            set_status(chat, Status::Offline);
            let back = window_event("online");
            let recheck = gloo_timers::future::TimeoutFuture::new(10_000);
            futures::pin_mut!(back);
            futures::future::select(back, recheck).await;
            attempt = 0;
            continue;
        }
        set_status(
            chat,
            if attempt == 0 {
                Status::Connecting
            } else {
                Status::Reconnecting
            },
        );
        if let Some(socket) = url().and_then(|url| WebSocket::open(&url).ok()) {
            let (mut sink, mut stream) = socket.split();
            let (tx, mut rx) = mpsc::unbounded::<String>();
            chat.conn.update_value(|c| {
                if let Some(c) = c {
                    c.tx = Some(tx);
                }
            });
            let writer = async move {
                while let Some(text) = rx.next().await {
                    if sink.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                let _ = sink.close().await;
            };
            let last_heard = Cell::new(js_sys::Date::now());
            let reader = async {
                while let Some(message) = stream.next().await {
                    last_heard.set(js_sys::Date::now());
                    let text = match message {
                        Ok(Message::Text(text)) => text,
                        Ok(Message::Bytes(_)) => continue,
                        Err(WebSocketError::ConnectionClose(close)) if close.code == SIGNED_OUT => {
                            // This session was signed out (maybe in another
                            // tab): show the sign-in page instead of retrying.
                            stopped.set(true);
                            if let Some(window) = web_sys::window() {
                                let _ = window.location().set_href("/");
                            }
                            break;
                        }
                        Err(_) => break,
                    };
                    match serde_json::from_str::<ServerFrame>(&text) {
                        Ok(frame) => {
                            if matches!(frame, ServerFrame::Hello { .. }) {
                                attempt = 0;
                            }
                            chat.apply(frame);
                        }
                        Err(err) => leptos::logging::warn!("unreadable frame: {err}"),
                    }
                }
            };
            // Browsers hide the server's pings, so a socket left half-open
            // (sleep, lost network) would look alive forever: ping, and
            // reconnect when nothing at all has come back for a while.
            let heartbeat = async {
                loop {
                    gloo_timers::future::TimeoutFuture::new(HEARTBEAT_MS).await;
                    if js_sys::Date::now() - last_heard.get() > SILENCE_MS {
                        break;
                    }
                    chat.send_frame(&ClientFrame::Ping);
                }
            };
            // Losing the network ends the socket at once rather than
            // leaving sends to vanish into it until the heartbeat notices.
            let offline = window_event("offline");
            futures::pin_mut!(writer, reader, heartbeat, offline);
            futures::future::select(
                futures::future::select(writer, offline),
                futures::future::select(reader, heartbeat),
            )
            .await;
            chat.conn.update_value(|c| {
                if let Some(c) = c {
                    c.tx = None;
                }
            });
        }
        if stopped.get() {
            break;
        }
        if !online() {
            continue;
        }
        set_status(chat, Status::Reconnecting);
        // An upgrade refused for an ended session looks like any failed
        // connect from here: after a few, ask whether we are signed in.
        if attempt >= 3 && attempt.is_multiple_of(3) {
            if let Ok(page) = crate::api::load_page(None, None, None, None, None).await {
                if page.me.is_none() {
                    if let Some(window) = web_sys::window() {
                        let _ = window.location().set_href("/");
                    }
                    break;
                }
            }
        }
        // Capped exponential backoff with full jitter, so a restarted
        // server is not hit by every client at the same instant.
        let cap = 250.0 * f64::from(2u32.pow(attempt.min(5)));
        let delay = (cap.min(8000.0) * (0.5 + js_sys::Math::random() / 2.0)) as u32;
        attempt = attempt.saturating_add(1);
        gloo_timers::future::TimeoutFuture::new(delay).await;
    }
    // A loop stopped by sign-out leaves the state to `stop()` (and to the
    // loop a new sign-in may have started meanwhile).
    if !stopped.get() {
        set_status(chat, Status::Idle);
    }
}

/// Tells the reducer what became of the connection (`hello` says `Online`).
fn set_status(chat: Chat, status: Status) {
    let _ = chat.dispatch(Intent::Status(status));
}
