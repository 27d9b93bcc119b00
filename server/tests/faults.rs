//! Faults, with the real server binary as a child process: `kill -9` and
//! SIGTERM under load, and clients that stop reading. Clients speak
//! protocol v2: each reconnect resumes every room from the peer's cursor.

mod common;

use common::{open_db, Remote, ServerProcess};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio_tungstenite::tungstenite::Message;

const ROOMS: [&str; 3] = ["general", "fault-a", "fault-b"];
const PEERS_PER_ROOM: usize = 4;
/// Unacknowledged sends a peer allows itself before waiting.
const WINDOW: usize = 24;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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

/// One simulated client: sends to its room with its own `client_id`s, keeps
/// an outbox of what was not acknowledged, and checks every frame it
/// receives. It belongs to general (every user does) and to its room.
struct Peer {
    index: usize,
    /// The room it sends to.
    room: i64,
    user_id: i64,
    cookie: String,
    next: u32,
    /// Sent and not acknowledged: (client_id, body), in send order.
    outbox: Vec<(String, String)>,
    /// Every acknowledged client_id, with its seq and body.
    acked: HashMap<String, (i64, String)>,
    acked_order: Vec<String>,
    /// Per room it belongs to, the highest seq applied: the resume cursors.
    /// Published for the driver.
    cursors: Arc<Mutex<BTreeMap<i64, i64>>>,
    /// Per room, the seqs of its `posted` events, in arrival order.
    seen: BTreeMap<i64, Vec<i64>>,
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

    async fn session(&mut self, mut ws: Socket, shared: &Shared) {
        self.sessions += 1;
        // `hello` comes first; the resume follows it.
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                    if frame["type"] == "hello" {
                        break;
                    }
                    self.violations.push(format!("before hello: {text}"));
                }
                Some(Ok(Message::Close(close))) => {
                    self.close_codes.push(close.map_or(1005, |c| c.code.into()));
                    return;
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return,
            }
        }
        // Resume: from the cursors, then everything unacknowledged, then a
        // few already-acknowledged ones as if their acks had been lost.
        let cursors: BTreeMap<String, i64> = self
            .cursors
            .lock()
            .unwrap()
            .iter()
            .map(|(room, seq)| (room.to_string(), *seq))
            .collect();
        let mut frames = vec![json!({"type": "resume", "rooms": cursors})];
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
            Some("event") => {
                let room = frame["room_id"].as_i64().unwrap_or(-1);
                let seq = frame["seq"].as_i64().unwrap_or(-1);
                let mut cursors = self.cursors.lock().unwrap();
                let Some(last) = cursors.get_mut(&room) else {
                    self.violations
                        .push(format!("event of a room it is not in: {frame}"));
                    return;
                };
                // Every kind takes a seq: a room's events come dense, from
                // the cursor on, across replays and live.
                if seq != *last + 1 {
                    self.violations
                        .push(format!("room {room}: seq {seq} after {last}"));
                }
                if frame["kind"] == "posted" && seq > *last {
                    self.seen.entry(room).or_default().push(seq);
                }
                *last = (*last).max(seq);
            }
            Some("ack") => {
                let client_id = frame["client_id"].as_str().unwrap_or_default().to_owned();
                let seq = frame["seq"].as_i64().unwrap_or(-1);
                if frame["room_id"] != self.room {
                    self.violations
                        .push(format!("ack for another room: {frame}"));
                }
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
            // A `gap` would lose the no-gap promise: the backlog of a room
            // while the server is down stays far under N (sends stop).
            Some("resumed") if frame["gaps"] == json!([]) => {}
            Some("pong") => {}
            _ => self.violations.push(format!("unexpected frame: {frame}")),
        }
    }
}

fn send_frame(room_id: i64, client_id: &str, body: &str) -> Value {
    json!({"type": "send", "room_id": room_id, "client_id": client_id, "body": body})
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
    let general = server.room_id("general").await;
    let mut room_ids = vec![general];
    for room in &ROOMS[1..] {
        let (status, body) = server.create_room(&founder, room).await;
        assert_eq!(status, 200, "{body}");
        room_ids.push(body["id"].as_i64().expect("room id"));
    }
    let name_of = |id: i64| {
        ROOMS[room_ids
            .iter()
            .position(|r| *r == id)
            .expect("a known room")]
    };
    // Every peer signs in (a silent join of general, not published live)
    // and joins its room before any connects: from then on each room's
    // events all reach its members.
    let mut peers = Vec::new();
    for (r, &room) in room_ids.iter().enumerate() {
        for p in 0..PEERS_PER_ROOM {
            let index = r * PEERS_PER_ROOM + p;
            let cookie = server.sign_in(&format!("peer {index}")).await;
            let (status, joined) = server.join(&cookie, room).await;
            assert_eq!(status, 200, "{joined}");
            let (_, hello) = server.ws_hello(&cookie).await;
            let user_id = hello["user"]["id"].as_i64().expect("user id");
            // From 0: a peer applies each of its rooms' events from the first.
            let cursors = BTreeMap::from([(general, 0), (room, 0)]);
            peers.push(Peer {
                index,
                room,
                user_id,
                cookie,
                next: 0,
                outbox: Vec::new(),
                acked: HashMap::new(),
                acked_order: Vec::new(),
                cursors: Arc::new(Mutex::new(cursors)),
                seen: BTreeMap::new(),
                violations: Vec::new(),
                resent: 0,
                close_codes: Vec::new(),
                sessions: 0,
            });
        }
    }
    let progress: Vec<_> = peers.iter().map(|p| p.cursors.clone()).collect();
    let tasks: Vec<_> = peers
        .into_iter()
        .map(|peer| tokio::spawn(peer.run(*server, shared.clone())))
        .collect();
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

    // Every peer must catch up to each of its rooms' last event.
    let db = open_db(&server.db_path).await;
    let last: HashMap<i64, i64> = sqlx::query_as("SELECT id, last_seq FROM rooms")
        .fetch_all(&db)
        .await
        .expect("read rooms")
        .into_iter()
        .collect();
    until("every peer has caught up", || {
        progress.iter().all(|cursors| {
            cursors
                .lock()
                .unwrap()
                .iter()
                .all(|(room, seq)| *seq == last[room])
        })
    })
    .await;
    shared.done.store(true, Ordering::SeqCst);
    let mut peers = Vec::new();
    for task in tasks {
        peers.push(task.await.expect("peer task"));
    }

    // The audit, against the database file itself.
    let rows: Vec<(i64, i64, i64, String, String)> =
        sqlx::query_as("SELECT room_id, seq, author_id, client_id, body FROM messages")
            .fetch_all(&db)
            .await
            .expect("read messages");
    let commands: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT user_id, client_id, kind FROM commands")
            .fetch_all(&db)
            .await
            .expect("read commands");
    let events: Vec<(i64, i64, String, Option<i64>)> = sqlx::query_as(
        "SELECT e.room_id, e.seq, e.kind, m.seq FROM room_events e
         LEFT JOIN messages m ON m.id = e.message_id",
    )
    .fetch_all(&db)
    .await
    .expect("read events");
    // (author, client_id) → where it was stored, and how often it was recorded.
    let mut stored: HashMap<(i64, &str), Vec<(i64, i64)>> = HashMap::new();
    for (room, seq, author, client_id, _) in &rows {
        stored
            .entry((*author, client_id.as_str()))
            .or_default()
            .push((*room, *seq));
    }
    let mut recorded: HashMap<(i64, &str), usize> = HashMap::new();
    for (user, client_id, kind) in &commands {
        if kind == "post" {
            *recorded.entry((*user, client_id.as_str())).or_default() += 1;
        }
    }
    let mut bodies: HashMap<&str, usize> = HashMap::new();
    for (.., body) in &rows {
        *bodies.entry(body).or_default() += 1;
    }
    let duplicated = bodies.values().filter(|n| **n > 1).count()
        + stored.values().filter(|v| v.len() > 1).count()
        + recorded.values().filter(|n| **n > 1).count();
    let (mut acknowledged, mut lost, mut moved, mut resent, mut closed_1012) = (0, 0, 0, 0, 0);
    let mut violations = Vec::new();
    for peer in &peers {
        acknowledged += peer.acked.len();
        resent += peer.resent;
        closed_1012 += peer.close_codes.iter().filter(|c| **c == 1012).count();
        for (client_id, (seq, _)) in &peer.acked {
            let key = (peer.user_id, client_id.as_str());
            if recorded.get(&key) != Some(&1) {
                violations.push(format!(
                    "{client_id} acked, recorded {:?} times in commands",
                    recorded.get(&key)
                ));
            }
            match stored.get(&key).map(Vec::as_slice) {
                None => lost += 1,
                Some([(room, at)]) if *room == peer.room && at == seq => {}
                Some(other) => {
                    moved += 1;
                    violations.push(format!("{client_id} acked as {seq}, stored as {other:?}"));
                }
            }
        }
        // A peer that started from 0 and never skipped an event saw
        // exactly each of its rooms' stored messages, in order: no gap, no
        // repeat.
        for (&room, _) in peer.cursors.lock().unwrap().iter() {
            let mut messages: Vec<i64> = rows.iter().filter(|r| r.0 == room).map(|r| r.1).collect();
            messages.sort_unstable();
            let saw = peer.seen.get(&room).cloned().unwrap_or_default();
            if saw != messages {
                violations.push(format!(
                    "peer {}: saw {} messages, {} stored in {} (first difference at {:?})",
                    peer.index,
                    saw.len(),
                    messages.len(),
                    name_of(room),
                    saw.iter().zip(&messages).position(|(a, b)| a != b)
                ));
            }
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
    // Each room's event log is dense from 1 (every kind takes a seq: the
    // sign-ups' silent joins of general, the founder's and the peers'
    // joins), each stored message is the `posted` event at its seq, there
    // are no more `posted` events than messages, and nothing is stored that
    // no one sent.
    for &room in &room_ids {
        let mut seqs: Vec<i64> = events.iter().filter(|e| e.0 == room).map(|e| e.1).collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "{}'s seqs",
            name_of(room)
        );
    }
    let posted_rows = events.iter().filter(|e| e.2 == "posted").count();
    let posted = events
        .iter()
        .filter(|e| e.2 == "posted" && e.3 == Some(e.1))
        .count();
    assert_eq!(posted, rows.len(), "every message is its posted event");
    assert!(
        posted_rows <= rows.len(),
        "{posted_rows} posted events for {} messages",
        rows.len()
    );
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
        stalled.push(client); // a member, resumed, and never read from again
    }
    let (_, mut sender) = server.member("sender").await;
    let general = server.room_id("general").await;
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
            let frame = reader.expect_event("posted").await;
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
            sender.say(general, &body).await;
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
    // Every room and socket exists before any socket starts sending: set up
    // behind 60 flooding senders, each creation would wait its turn in a
    // committer queue thousands of sends deep.
    let mut clients = Vec::new();
    for i in 0..SOCKETS {
        // A room each: a shared one would fan every send out 60 times and
        // turn busy sockets into slow consumers (1013).
        let cookie = server.sign_in(&format!("busy {i}")).await;
        let (status, body) = server.create_room(&cookie, &format!("busy-{i}")).await;
        assert_eq!(status, 200, "{body}");
        let room = body["id"].as_i64().expect("room id");
        // Its creator is a member: the room's events reach the socket.
        clients.push((server.ws(&cookie).await, room));
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(client, room)| tokio::spawn(busy_socket(client, room, acked.clone())))
        .collect();
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
async fn busy_socket(client: common::Client, room: i64, acked: Arc<AtomicUsize>) -> String {
    let (mut tx, mut rx) = client.socket.split();
    // Its own task, so a send waiting on a full socket never stops the reads.
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 0u64.. {
            tick.tick().await;
            let frame = send_frame(room, &uuid::Uuid::new_v4().to_string(), &format!("m{n}"));
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
                let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                if first_ack && frame["type"] == "ack" {
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
