//! Faults, with the real server binary as a child process: `kill -9` and
//! SIGTERM under load, and clients that stop reading.

mod common;

use common::{open_db, Remote, ServerProcess};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio_tungstenite::tungstenite::Message;

const ROOMS: [&str; 3] = ["general", "fault-a", "fault-b"];
const PEERS_PER_ROOM: usize = 4;
/// Unacknowledged sends a peer allows itself before waiting.
const WINDOW: usize = 24;

/// What the test driver and the peers share.
#[derive(Default)]
struct Shared {
    /// Distinct messages acknowledged, across all peers.
    acks: AtomicUsize,
    /// Sends not yet acknowledged, across all peers.
    pending: AtomicI64,
    sending: AtomicBool,
    done: AtomicBool,
}

/// One simulated client: sends with its own `client_id`s, keeps an outbox
/// of what was not acknowledged, and checks every frame it receives.
struct Peer {
    index: usize,
    room: &'static str,
    cookie: String,
    next: u32,
    /// Sent and not acknowledged: (client_id, body), in send order.
    outbox: Vec<(String, String)>,
    /// Every acknowledged client_id, with its seq and body.
    acked: HashMap<String, (i64, String)>,
    acked_order: Vec<String>,
    /// Highest seq seen in the room: the resume cursor.
    last_seq: i64,
    /// The seqs of the messages it was sent, in arrival order.
    seen: Vec<i64>,
    /// Published for the driver.
    progress: Arc<AtomicI64>,
    /// Anything that breaks an invariant, described.
    violations: Vec<String>,
    /// Sends made again after a reconnect (outbox, plus acked ones resent on purpose).
    resent: usize,
    close_codes: Vec<u16>,
    sessions: usize,
}

impl Peer {
    async fn run(mut self, remote: Remote, shared: Arc<Shared>) -> Self {
        while !shared.done.load(Ordering::SeqCst) {
            match remote
                .try_ws(Some(&self.cookie), Some(&remote.origin()))
                .await
            {
                Ok(client) => self.session(client.socket, &shared).await,
                // The server is down (killed, restarting): try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        self
    }

    async fn session(
        &mut self,
        mut ws: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        shared: &Shared,
    ) {
        self.sessions += 1;
        // Resume: from the cursor, then everything unacknowledged, then a
        // few already-acknowledged ones as if their acks had been lost.
        let mut frames =
            vec![json!({"type": "subscribe", "room": self.room, "since": self.last_seq})];
        let again = self.acked_order.iter().rev().take(3);
        let resend = self
            .outbox
            .iter()
            .map(|(id, body)| (id, body))
            .chain(again.map(|id| (id, &self.acked[id].1)));
        for (client_id, body) in resend {
            if self.sessions > 1 {
                self.resent += 1;
            }
            frames.push(send_frame(self.room, client_id, body));
        }
        for frame in frames {
            if ws.send(Message::text(frame.to_string())).await.is_err() {
                return;
            }
        }
        let mut tick = tokio::time::interval(Duration::from_millis(3));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if shared.done.load(Ordering::SeqCst) {
                        let _ = ws.close(None).await;
                        return;
                    }
                    if shared.sending.load(Ordering::SeqCst) && self.outbox.len() < WINDOW {
                        self.next += 1;
                        let client_id = uuid::Uuid::new_v4().to_string();
                        let body = format!("peer {} message {}", self.index, self.next);
                        let frame = send_frame(self.room, &client_id, &body);
                        self.outbox.push((client_id, body));
                        shared.pending.fetch_add(1, Ordering::SeqCst);
                        if ws.send(Message::text(frame.to_string())).await.is_err() {
                            return;
                        }
                    }
                }
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                        Ok(frame) => self.on_frame(&frame, shared),
                        Err(err) => self.violations.push(format!("bad JSON {err}: {text}")),
                    },
                    Some(Ok(Message::Close(close))) => {
                        self.close_codes.push(close.map_or(1005, |c| c.code.into()));
                        return;
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => return,
                },
            }
        }
    }

    fn on_frame(&mut self, frame: &Value, shared: &Shared) {
        match frame["type"].as_str() {
            Some("message") => {
                let seq = frame["seq"].as_i64().unwrap_or(-1);
                if frame["room"] != self.room {
                    self.violations
                        .push(format!("message from another room: {frame}"));
                } else if seq <= self.last_seq {
                    self.violations
                        .push(format!("duplicate seq {seq} after {}", self.last_seq));
                } else {
                    // Since v2 other event kinds (joins) take seqs between
                    // messages, and v1 frames carry messages only: gaps are
                    // checked after the run, against the stored messages.
                    self.seen.push(seq);
                }
                self.last_seq = self.last_seq.max(seq);
                self.progress.store(self.last_seq, Ordering::SeqCst);
            }
            Some("ack") => {
                let client_id = frame["client_id"].as_str().unwrap_or_default().to_owned();
                let seq = frame["seq"].as_i64().unwrap_or(-1);
                if let Some((first, _)) = self.acked.get(&client_id) {
                    if *first != seq {
                        self.violations.push(format!(
                            "{client_id} acknowledged as seq {first}, then as {seq}"
                        ));
                    }
                    return;
                }
                let Some(at) = self.outbox.iter().position(|(id, _)| *id == client_id) else {
                    self.violations
                        .push(format!("ack for something never sent: {frame}"));
                    return;
                };
                let (_, body) = self.outbox.remove(at);
                self.acked.insert(client_id.clone(), (seq, body));
                self.acked_order.push(client_id);
                shared.acks.fetch_add(1, Ordering::SeqCst);
                shared.pending.fetch_sub(1, Ordering::SeqCst);
            }
            // Refused while the store was unreachable or the server stopping:
            // it stays in the outbox and goes again on the next connection.
            Some("error") if frame["code"] == "unavailable" => {}
            Some("hello" | "rooms" | "presence" | "system" | "pong" | "typing") => {}
            _ => self.violations.push(format!("unexpected frame: {frame}")),
        }
    }
}

fn send_frame(room: &str, client_id: &str, body: &str) -> Value {
    json!({"type": "send", "room": room, "client_id": client_id, "body": body})
}

/// Waits (up to a minute) until `done` holds, checking every 20 ms.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..3000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_acknowledged_messages_survive_kill_9_and_sigterm_exactly_once() {
    let mut server = ServerProcess::spawn().await;
    let shared = Arc::new(Shared::default());
    let founder = server.sign_in("founder").await;
    for room in &ROOMS[1..] {
        let (status, body) = server.create_room(&founder, room).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut tasks = Vec::new();
    let mut progress = Vec::new();
    for (r, room) in ROOMS.iter().enumerate() {
        for p in 0..PEERS_PER_ROOM {
            let index = r * PEERS_PER_ROOM + p;
            let cursor = Arc::new(AtomicI64::new(0));
            progress.push((*room, cursor.clone()));
            let peer = Peer {
                index,
                room,
                cookie: server.sign_in(&format!("peer {index}")).await,
                next: 0,
                outbox: Vec::new(),
                acked: HashMap::new(),
                acked_order: Vec::new(),
                last_seq: 0,
                seen: Vec::new(),
                progress: cursor,
                violations: Vec::new(),
                resent: 0,
                close_codes: Vec::new(),
                sessions: 0,
            };
            tasks.push(tokio::spawn(peer.run(*server, shared.clone())));
        }
    }
    shared.sending.store(true, Ordering::SeqCst);

    // Mid-load, the hard way: no flush, no close frames.
    until("1500 acks", || shared.acks.load(Ordering::SeqCst) >= 1500).await;
    server.kill();
    let acked_before_kill = shared.acks.load(Ordering::SeqCst);
    let pending_at_kill = shared.pending.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.start().await;

    // Then the polite way: SIGTERM stops accepting, commits and closes with 1012.
    until("3000 acks", || shared.acks.load(Ordering::SeqCst) >= 3000).await;
    server.terminate().await;
    server.start().await;

    until("4500 acks", || shared.acks.load(Ordering::SeqCst) >= 4500).await;
    shared.sending.store(false, Ordering::SeqCst);
    until("every send acknowledged", || {
        shared.pending.load(Ordering::SeqCst) == 0
    })
    .await;

    // Every peer must catch up to its room's last message.
    let db = open_db(&server.db_path).await;
    let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
        "SELECT r.name, m.seq, m.client_id, m.body FROM messages m JOIN rooms r ON r.id = m.room_id",
    )
    .fetch_all(&db)
    .await
    .expect("read messages");
    let mut last: HashMap<&str, i64> = HashMap::new();
    for (room, seq, ..) in &rows {
        let entry = last
            .entry(ROOMS.iter().find(|r| *r == room).expect("known room"))
            .or_default();
        *entry = (*entry).max(*seq);
    }
    until("every peer has caught up", || {
        progress
            .iter()
            .all(|(room, cursor)| cursor.load(Ordering::SeqCst) == last[room])
    })
    .await;
    shared.done.store(true, Ordering::SeqCst);
    let mut peers = Vec::new();
    for task in tasks {
        peers.push(task.await.expect("peer task"));
    }

    // The audit, against the database file itself.
    let by_client_id: HashMap<&str, Vec<(&str, i64)>> =
        rows.iter()
            .fold(HashMap::new(), |mut map, (room, seq, id, _)| {
                map.entry(id.as_str())
                    .or_default()
                    .push((room.as_str(), *seq));
                map
            });
    let mut bodies: HashMap<&str, usize> = HashMap::new();
    for (.., body) in &rows {
        *bodies.entry(body).or_default() += 1;
    }
    let duplicated = bodies.values().filter(|n| **n > 1).count()
        + by_client_id.values().filter(|v| v.len() > 1).count();
    let (mut acknowledged, mut lost, mut moved, mut resent, mut closed_1012) = (0, 0, 0, 0, 0);
    let mut violations = Vec::new();
    for peer in &peers {
        acknowledged += peer.acked.len();
        resent += peer.resent;
        closed_1012 += peer.close_codes.iter().filter(|c| **c == 1012).count();
        for (client_id, (seq, _)) in &peer.acked {
            match by_client_id.get(client_id.as_str()).map(Vec::as_slice) {
                None => lost += 1,
                Some([(room, stored)]) if *room == peer.room && stored == seq => {}
                Some(other) => {
                    moved += 1;
                    violations.push(format!("{client_id} acked as {seq}, stored as {other:?}"));
                }
            }
        }
        // A peer that started from 0 and never skipped a message saw
        // exactly its room's stored messages, in order: no gap, no repeat.
        let mut stored: Vec<i64> = rows
            .iter()
            .filter(|r| r.0 == peer.room)
            .map(|r| r.1)
            .collect();
        stored.sort_unstable();
        if peer.seen != stored {
            violations.push(format!(
                "peer {}: saw {} messages, {} stored in {} (first difference at {:?})",
                peer.index,
                peer.seen.len(),
                stored.len(),
                peer.room,
                peer.seen.iter().zip(&stored).position(|(a, b)| a != b)
            ));
        }
        assert!(
            peer.outbox.is_empty(),
            "peer {} still has unacknowledged sends",
            peer.index
        );
        violations.extend(
            peer.violations
                .iter()
                .map(|v| format!("peer {}: {v}", peer.index)),
        );
    }
    // Each room's event log is dense from 1 (since v2 every kind takes a
    // seq: the sign-ups' silent joins of general, the founder's and the
    // subscribers' joins), each stored message is the `posted` event at its
    // seq, and nothing is stored that no one sent.
    let events: Vec<(String, i64, String, Option<i64>)> = sqlx::query_as(
        "SELECT r.name, e.seq, e.kind, m.seq FROM room_events e
         JOIN rooms r ON r.id = e.room_id LEFT JOIN messages m ON m.id = e.message_id",
    )
    .fetch_all(&db)
    .await
    .expect("events");
    for room in ROOMS {
        let mut seqs: Vec<i64> = events.iter().filter(|e| e.0 == room).map(|e| e.1).collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "{room}'s seqs"
        );
    }
    let posted = events
        .iter()
        .filter(|e| e.2 == "posted" && e.3 == Some(e.1))
        .count();
    assert_eq!(posted, rows.len(), "every message is its posted event");
    assert_eq!(
        rows.len(),
        acknowledged,
        "stored messages that were never acknowledged"
    );

    println!(
        "fault test: {acknowledged} acknowledged ({acked_before_kill} before kill -9, with \
         {pending_at_kill} in flight), {lost} lost, {duplicated} duplicated, {moved} stored \
         under another seq; {resent} resends after restarts acknowledged once; \
         {closed_1012} sockets closed with 1012 on SIGTERM; {} rows in the store",
        rows.len()
    );
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!((lost, duplicated, moved), (0, 0, 0));
    assert!(acknowledged >= 4500 && acked_before_kill >= 1500);
    assert!(closed_1012 > 0, "no socket saw 1012 on SIGTERM");
    assert!(
        peers.iter().all(|p| p.sessions >= 3),
        "every peer reconnected twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_stalled_readers_keep_the_servers_memory_bounded_and_stall_no_one() {
    const MESSAGES: usize = 24_000;
    const STALLED: usize = 8;
    let server = ServerProcess::spawn().await;
    let (_, mut reader) = server.member("reader").await;
    let mut stalled = Vec::new();
    for i in 0..STALLED {
        let (_, client) = server.member(&format!("stalled {i}")).await;
        stalled.push(client); // subscribed, and never read from again
    }
    let (_, mut sender) = server.member("sender").await;
    let baseline = server.memory_kib("VmRSS");
    // The sign-ups' silent joins of general took the seqs before the posts.
    let base: i64 = sqlx::query_scalar("SELECT last_seq FROM rooms WHERE name = 'general'")
        .fetch_one(&open_db(&server.db_path).await)
        .await
        .expect("general");

    // ~3.5 KB messages: 84 MB through the room. If stalled connections
    // buffered without bound, the server would hold most of it.
    let body = "x".repeat(3500);
    // How far the reading member has read, published as it goes.
    let (read_tx, read_upto) = tokio::sync::watch::channel(0_i64);
    let reading = tokio::spawn(async move {
        let mut next = 1;
        while next <= MESSAGES as i64 {
            let frame = reader.expect("message").await;
            assert_eq!(
                frame["seq"],
                base + next,
                "the reading member sees every message in order"
            );
            read_tx.send_replace(next);
            next += 1;
        }
        reader
    });
    let mut acked = 0;
    for chunk in 0..MESSAGES / 200 {
        for _ in 0..200 {
            sender.say("general", &body).await;
        }
        // Wait for this chunk's acks before the next (and skip the echoes),
        // and for the reading member to have read it: however slowly it is
        // scheduled, it never falls a queue's worth (1,024 frames) behind,
        // so only the stalled ones can be dropped.
        while acked < (chunk + 1) * 200 {
            let frame = sender.recv().await;
            match frame["type"].as_str() {
                Some("ack") => acked += 1,
                Some("error") => panic!("send refused: {frame}"),
                _ => {}
            }
        }
        let chunk_end = ((chunk + 1) * 200) as i64;
        tokio::time::timeout(
            common::WAIT,
            read_upto.clone().wait_for(|&n| n >= chunk_end),
        )
        .await
        .expect("the reading member keeps up")
        .expect("reader running");
    }
    let mut reader = reading.await.expect("reader");
    reader.assert_alive().await;
    let peak = server.memory_kib("VmHWM");
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    // Each was dropped from fan-out as too slow. It is told so with a 1013
    // close when its socket has room for one; a socket whose buffers are
    // full cannot take even that, and is cut off after a bounded wait.
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    let drops: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("chat_slow_consumer_drops_total "))
        .and_then(|n| n.trim().parse().ok())
        .expect("drop counter");
    let mut ends = Vec::new();
    for client in stalled {
        ends.push(ending(client).await);
    }
    println!(
        "slow consumers: {MESSAGES} messages of 3.5 KB; server RSS {baseline} KiB before, \
         peak {peak} KiB (+{growth_mib} MiB); {drops} dropped as too slow; stalled \
         readers ended with {ends:?}"
    );
    assert_eq!(
        drops, STALLED,
        "every stalled reader, and only those, dropped"
    );
    assert!(
        ends.iter().all(|e| e == "1013" || e == "reset"),
        "stalled readers cut off: {ends:?}"
    );
    assert!(
        growth_mib < 40,
        "server memory grew by {growth_mib} MiB with {STALLED} stalled readers"
    );
}

/// How a connection that stopped reading ends once it reads again: its close
/// code, or "reset" when the server had to cut it off without one.
async fn ending(mut client: common::Client) -> String {
    loop {
        match tokio::time::timeout(common::WAIT, client.socket.next()).await {
            Err(_) => return "still open".to_owned(),
            Ok(Some(Ok(Message::Close(close)))) => {
                return close.map_or(1005, |c| c.code.into()).to_string()
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return "reset".to_owned(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_sigterm_closes_every_busy_socket_with_1012() {
    const SOCKETS: usize = 60;
    let mut server = ServerProcess::spawn().await;
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..SOCKETS {
        // A room each: a shared one would fan every send out 60 times and
        // turn busy sockets into slow consumers (1013).
        let room = format!("busy-{i}");
        let cookie = server.sign_in(&format!("busy {i}")).await;
        let (status, body) = server.create_room(&cookie, &room).await;
        assert_eq!(status, 200, "{body}");
        let mut client = server.ws(&cookie).await;
        client.subscribe(&room, None).await;
        tasks.push(tokio::spawn(busy_socket(client, room, acked.clone())));
    }
    until("every socket has had an ack", || {
        acked.load(Ordering::SeqCst) == SOCKETS
    })
    .await;
    server.terminate().await;

    let mut ends: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        *ends.entry(task.await.expect("socket task")).or_default() += 1;
    }
    let saw_1012 = ends.get("1012").copied().unwrap_or(0);
    let none = ends.get("none").copied().unwrap_or(0);
    println!(
        "SIGTERM with {SOCKETS} sockets sending every 1 ms: {saw_1012} saw 1012, {} another \
         code, {none} no close frame ({ends:?})",
        SOCKETS - saw_1012 - none
    );
    assert_eq!(
        saw_1012, SOCKETS,
        "every busy socket closed with 1012: {ends:?}"
    );
}

/// Sends a message every millisecond until the server closes the socket,
/// while reading everything it sends; returns the close code it saw, or
/// "none" when the connection ended without a close frame.
async fn busy_socket(client: common::Client, room: String, acked: Arc<AtomicUsize>) -> String {
    let (mut tx, mut rx) = client.socket.split();
    // Its own task, so a send waiting on a full socket never stops the reads.
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 0u64.. {
            tick.tick().await;
            let frame = send_frame(&room, &uuid::Uuid::new_v4().to_string(), &format!("m{n}"));
            // Fails once the close handshake has begun: the socket is done.
            if tx.send(Message::text(frame.to_string())).await.is_err() {
                return;
            }
        }
    });
    let mut first_ack = true;
    let end = loop {
        match rx.next().await {
            Some(Ok(Message::Text(text))) => {
                if first_ack && text.contains(r#""type":"ack""#) {
                    first_ack = false;
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            }
            Some(Ok(Message::Close(close))) => {
                break close.map_or(1005, |c| c.code.into()).to_string()
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break "none".to_owned(),
        }
    };
    // Reading on sends the client's half of the close handshake, as a
    // browser would, until the server ends the connection.
    let _ = tokio::time::timeout(common::WAIT, async { while rx.next().await.is_some() {} }).await;
    sender.abort();
    end
}
