//! What the project's clients need before they connect: signed-in guests
//! (cached in a file, so later runs against the same database reuse them),
//! rooms, and each client's user a member of its room.
//!
//! One user per client: protocol v2 fans a room's events out to every
//! connection of every member, so a user shared by clients of different
//! rooms would give each of those connections every room's traffic.

use crate::http;
use anyhow::{Context, Result};
use std::{net::SocketAddr, path::Path, rc::Rc};
use tokio::sync::Semaphore;

/// Requests in flight while preparing.
const PARALLEL: usize = 16;

/// At least `count` session cookies, from `cache` and then new guests
/// (appended to `cache`).
pub async fn sessions(addr: SocketAddr, count: usize, cache: Option<&Path>) -> Result<Vec<String>> {
    let mut cookies: Vec<String> = match cache {
        Some(path) if path.exists() => std::fs::read_to_string(path)?
            .lines()
            .filter(|l| l.starts_with("chat_session="))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    if cookies.len() >= count {
        cookies.truncate(count);
        return Ok(cookies);
    }
    let gate = Rc::new(Semaphore::new(PARALLEL));
    let tasks: Vec<_> = (cookies.len()..count)
        .map(|i| {
            let gate = gate.clone();
            async move {
                let _permit = gate.acquire().await;
                http::sign_in_guest(addr, &format!("bench{i}")).await
            }
        })
        .collect();
    let fresh = futures_join(tasks).await?;
    if let Some(path) = cache {
        let mut text = fresh.join("\n");
        text.push('\n');
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("write {}", path.display()))?;
    }
    cookies.extend(fresh);
    Ok(cookies)
}

/// Creates rooms `prefix0 .. prefix{n-1}`, room `i` by the user of
/// `creators[i]` (existing ones are fine); returns their ids, in that order.
/// (`create_room` answers no id, so each is resolved by name.)
///
/// A creator becomes the room's owner and member: pass a user of the
/// room's own clients (say its first), never one user for every room, or
/// that user's client would receive every room's events.
pub async fn rooms(addr: SocketAddr, creators: &[String], prefix: &str) -> Result<Vec<i64>> {
    let gate = Rc::new(Semaphore::new(PARALLEL));
    let tasks: Vec<_> = creators
        .iter()
        .enumerate()
        .map(|(i, cookie)| {
            let gate = gate.clone();
            let cookie = cookie.clone();
            let name = format!("{prefix}{i}");
            async move {
                let _permit = gate.acquire().await;
                http::create_room(addr, &cookie, &name).await?;
                http::resolve_room(addr, &cookie, &name).await
            }
        })
        .collect();
    futures_join(tasks).await
}

/// Makes client `i`'s user (`sessions[i]`) a member of its room,
/// `room_ids[i / clients_per_room]`. Joins are idempotent, so a run against
/// a database prepared before only re-asserts them.
pub async fn memberships(
    addr: SocketAddr,
    sessions: &[String],
    room_ids: &[i64],
    clients_per_room: usize,
) -> Result<()> {
    let clients = room_ids.len() * clients_per_room;
    anyhow::ensure!(
        sessions.len() >= clients,
        "one user per client: {} sessions for {clients} clients",
        sessions.len()
    );
    let gate = Rc::new(Semaphore::new(PARALLEL));
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let gate = gate.clone();
            let cookie = sessions[i].clone();
            let room_id = room_ids[i / clients_per_room];
            async move {
                let _permit = gate.acquire().await;
                http::join_room(addr, &cookie, room_id).await
            }
        })
        .collect();
    futures_join(tasks).await.map(|_| ())
}

/// Posts `count` messages to room `room_id`, of which the session's user is
/// a member, over HTTP (history for the page scenario).
pub async fn history(addr: SocketAddr, cookie: &str, room_id: i64, count: usize) -> Result<()> {
    let room = room_id.to_string();
    for i in 0..count {
        let id = crate::adapter::client_id(rand::random(), 0, i as u32);
        let id = std::str::from_utf8(&id)?;
        let body = format!("Message {i} of the page benchmark's history, about sixty-four b");
        let res = http::post_form(
            addr,
            "/api/post_message",
            Some(cookie),
            &[("room_id", &room), ("client_id", id), ("body", &body)],
        )
        .await?;
        anyhow::ensure!(
            res.status == 200,
            "post_message answered {}: {}",
            res.status,
            res.body
        );
    }
    Ok(())
}

/// Runs futures concurrently on the current `LocalSet`; the first error wins.
async fn futures_join<T: 'static>(
    tasks: Vec<impl std::future::Future<Output = Result<T>> + 'static>,
) -> Result<Vec<T>> {
    let handles: Vec<_> = tasks.into_iter().map(tokio::task::spawn_local).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await??);
    }
    Ok(out)
}
