//! What the project's clients need before they connect: signed-in guests
//! (cached in a file, so later runs against the same database reuse them)
//! and rooms.

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

/// Creates rooms `prefix0 .. prefix{count-1}` (existing ones are fine).
pub async fn rooms(addr: SocketAddr, cookie: &str, prefix: &str, count: usize) -> Result<()> {
    let gate = Rc::new(Semaphore::new(PARALLEL));
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let gate = gate.clone();
            let cookie = cookie.to_owned();
            let name = format!("{prefix}{i}");
            async move {
                let _permit = gate.acquire().await;
                http::create_room(addr, &cookie, &name).await
            }
        })
        .collect();
    futures_join(tasks).await.map(|_| ())
}

/// Posts `count` messages to `room` over HTTP (history for the page scenario).
pub async fn history(addr: SocketAddr, cookie: &str, room: &str, count: usize) -> Result<()> {
    for i in 0..count {
        let id = crate::adapter::client_id(rand::random(), 0, i as u32);
        let id = std::str::from_utf8(&id)?;
        let body = format!("Message {i} of the page benchmark's history, about sixty-four b");
        let res = http::post_form(
            addr,
            "/api/post_message",
            Some(cookie),
            &[("room", room), ("client_id", id), ("body", &body)],
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
