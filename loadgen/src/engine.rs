//! The load itself: many clients on one thread, joined to rooms, senders on
//! a fixed schedule, every receiver accounting for every message.
//!
//! One current-thread tokio runtime runs every connection, so the shared
//! counters are plain `Cell`/`RefCell` (no atomics, no locks) and one 64 KiB
//! read buffer serves all connections: a socket is read 64 KiB at a time and
//! its frames parsed in place; only a frame cut by the end of a read is
//! copied (into the connection's carry buffer).
//!
//! Senders never wait for replies: each message's due time is fixed by the
//! schedule, everything due is written in one write per wake-up, and how
//! late that write was against the schedule is reported as `send_lag`. A
//! message's latency runs from that write to its arrival at each receiver,
//! on one monotonic clock. If the load generator or backpressure from the
//! server delays writes, the lag shows it (no coordinated omission hidden).

use crate::{
    adapter::{client_id, Kind},
    procfs::{self, Sample},
    stamp::{Finder, Stamp},
    track::{self, Arrival, Latency, SeqTracker},
    wire,
};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::{
    cell::{Cell, RefCell},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    rc::Rc,
    time::{Duration, Instant},
};
use tokio::{
    io::Interest,
    net::{TcpSocket, TcpStream},
    sync::{Notify, Semaphore},
};

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// One step of a schedule: every sender sends `rate` messages a second for `secs`.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub label: String,
    pub rate: f64,
    pub secs: f64,
}

/// A run's shape.
#[derive(Debug, Clone)]
pub struct Config {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub rooms: usize,
    pub clients_per_room: usize,
    pub senders_per_room: usize,
    pub steps: Vec<Step>,
    /// Stop raising the rate once a step's p99 passes this (a ramp).
    pub stop_p99_us: Option<u64>,
    /// Stop raising the rate once delivered/s grows less than this factor.
    pub stop_growth: Option<f64>,
    /// Longest wait for in-flight messages after the last step.
    pub drain: Duration,
    /// Time to let memory settle after everyone has joined (idle runs).
    pub settle: Duration,
    /// The server's pid, for CPU and RSS.
    pub server_pid: Option<u32>,
    /// Local addresses to connect from, round-robin (127.0.0.x gets past
    /// the ephemeral port range of one address).
    pub sources: Vec<Ipv4Addr>,
    pub room_prefix: String,
    /// The rooms' ids (project; the peers use names): room `r` is
    /// `room_ids[r]`.
    pub room_ids: Vec<i64>,
    /// Session cookies (project): client `i` uses `sessions[i]`, a user
    /// that is a member of the client's room and of no other room with
    /// traffic (protocol v2 fans events out per user).
    pub sessions: Vec<String>,
    pub connect_concurrency: usize,
}

/// Totals over a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Bodies of another run (e.g. replayed history); not counted.
    pub foreign: u64,
    /// Bodies that arrived in a room they were not sent to.
    pub misrouted: u64,
    pub latency: Latency,
    pub send_lag: Latency,
}

/// One step's measurements (by arrival time within the step's window).
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub label: String,
    pub rate_per_sender: f64,
    pub offered_deliveries_per_s: f64,
    pub secs: f64,
    pub delivered: u64,
    pub duplicated: u64,
    pub delivered_per_s: f64,
    pub latency: Latency,
    pub server_cpu_s: f64,
    pub server_cpu_us_per_delivery: f64,
    pub server_rss_kib: u64,
    pub loadgen_cpu_s: f64,
    pub loadgen_cpu_us_per_delivery: f64,
    /// Share of its core the load generator used (near 1: it was the limit).
    pub loadgen_busy: f64,
    /// Share of its core the server used.
    pub server_busy: f64,
    pub disconnects: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub server: Kind,
    pub rooms: usize,
    pub clients_per_room: usize,
    pub senders_per_room: usize,
    pub clients: usize,
    pub connected: usize,
    pub connect_errors: usize,
    pub first_connect_error: Option<String>,
    pub disconnects: u64,
    pub setup_s: f64,
    pub server_before: Option<Sample>,
    pub server_joined: Option<Sample>,
    pub server_after: Option<Sample>,
    /// (RSS with everyone joined − RSS before connecting) / connected.
    pub rss_per_connection_bytes: Option<f64>,
    pub loadgen_cpu_s: f64,
    pub loadgen_rss_kib: u64,
    pub steps: Vec<StepReport>,
    /// The ramp stopped before its last step.
    pub stopped_early: bool,
    pub stop_reason: Option<String>,
    pub totals: Totals,
}

/// Per-window counters (arrivals between two step boundaries).
struct Window {
    hist: Histogram<u64>,
    delivered: u64,
    duplicated: u64,
}

impl Window {
    fn new() -> Self {
        Self {
            hist: track::histogram(),
            delivered: 0,
            duplicated: 0,
        }
    }
}

/// State shared by every task of a run (one thread: no locks).
struct Shared {
    cfg: Config,
    run: u16,
    nonce: u32,
    t0: Instant,
    finder: Finder,
    /// Index of the window arrivals count in (0: before the first step).
    window: Cell<usize>,
    windows: RefCell<Vec<Window>>,
    /// Per (client, sender-in-room).
    trackers: RefCell<Vec<SeqTracker>>,
    /// Messages written, per sender.
    sent: RefCell<Vec<u32>>,
    lag: RefCell<Histogram<u64>>,
    /// Steps the senders may run (lowered when a ramp stops).
    active_steps: Cell<usize>,
    start_at: Cell<Option<Instant>>,
    started: Notify,
    joined_per_room: RefCell<Vec<u32>>,
    /// Per client: whether it joined (only joined clients count as receivers).
    joined: RefCell<Vec<bool>>,
    ready: Cell<usize>,
    failed: Cell<usize>,
    first_error: RefCell<Option<String>>,
    setup_done: Notify,
    disconnects: Cell<u64>,
    foreign: Cell<u64>,
    misrouted: Cell<u64>,
    closing: Cell<bool>,
    scratch: RefCell<Vec<u8>>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn room_name(&self, room: usize) -> String {
        format!("{}{room}", self.cfg.room_prefix)
    }
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    client: usize,
    room: usize,
    /// The room's id (project only; 0 for the peers).
    room_id: i64,
    mask: [u8; 4],
    /// Bytes of a frame cut by the end of a read.
    carry: RefCell<Vec<u8>>,
    writing: Cell<bool>,
    /// Frames queued while another task was mid-write.
    pending: RefCell<Vec<u8>>,
}

impl Conn {
    /// Writes all of `data`. A second writer arriving mid-write queues its
    /// bytes behind the first's, so frames never interleave.
    async fn write(&self, data: &[u8]) -> std::io::Result<()> {
        if self.writing.get() {
            self.pending.borrow_mut().extend_from_slice(data);
            return Ok(());
        }
        self.writing.set(true);
        let result = async {
            write_all(&self.stream, data).await?;
            loop {
                let more = std::mem::take(&mut *self.pending.borrow_mut());
                if more.is_empty() {
                    return Ok(());
                }
                write_all(&self.stream, &more).await?;
            }
        }
        .await;
        self.writing.set(false);
        result
    }
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs `cfg` to the end on a new current-thread runtime (call from a
/// thread that is not inside a runtime).
pub fn run(cfg: Config) -> Result<Report> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&rt, run_local(cfg));
    // Dropping the runtime drops every connection task: sockets close.
    drop(local);
    drop(rt);
    report
}

async fn run_local(cfg: Config) -> Result<Report> {
    let clients = cfg.rooms * cfg.clients_per_room;
    if cfg.kind == Kind::Project {
        if cfg.sessions.len() < clients {
            bail!(
                "the project needs one session per client: {} for {clients}",
                cfg.sessions.len()
            );
        }
        if cfg.room_ids.len() != cfg.rooms {
            bail!(
                "the project needs every room's id: {} for {}",
                cfg.room_ids.len(),
                cfg.rooms
            );
        }
    }
    let senders = cfg.rooms * cfg.senders_per_room;
    let steps = cfg.steps.len();
    let sh = Rc::new(Shared {
        run: rand::random(),
        nonce: rand::random(),
        t0: Instant::now(),
        finder: Finder::default(),
        window: Cell::new(0),
        windows: RefCell::new((0..steps + 2).map(|_| Window::new()).collect()),
        trackers: RefCell::new(vec![SeqTracker::default(); clients * cfg.senders_per_room]),
        sent: RefCell::new(vec![0; senders]),
        lag: RefCell::new(track::histogram()),
        active_steps: Cell::new(steps),
        start_at: Cell::new(None),
        started: Notify::new(),
        joined_per_room: RefCell::new(vec![0; cfg.rooms]),
        joined: RefCell::new(vec![false; clients]),
        ready: Cell::new(0),
        failed: Cell::new(0),
        first_error: RefCell::new(None),
        setup_done: Notify::new(),
        disconnects: Cell::new(0),
        foreign: Cell::new(0),
        misrouted: Cell::new(0),
        closing: Cell::new(false),
        scratch: RefCell::new(vec![0; READ_CHUNK]),
        cfg,
    });
    let pid = sh.cfg.server_pid;
    let server_before = pid.and_then(|p| procfs::sample(Some(p)));
    let setup_started = Instant::now();

    let gate = Rc::new(Semaphore::new(sh.cfg.connect_concurrency.max(1)));
    for client in 0..clients {
        tokio::task::spawn_local(client_task(sh.clone(), client, gate.clone()));
    }
    while sh.ready.get() + sh.failed.get() < clients {
        sh.setup_done.notified().await;
    }
    let setup_s = setup_started.elapsed().as_secs_f64();
    if sh.ready.get() == 0 && clients > 0 {
        bail!(
            "no client could connect: {}",
            sh.first_error.borrow().clone().unwrap_or_default()
        );
    }
    tokio::time::sleep(sh.cfg.settle).await;
    let server_joined = pid.and_then(|p| procfs::sample(Some(p)));

    // The schedule.
    let start = Instant::now() + Duration::from_millis(50);
    sh.start_at.set(Some(start));
    sh.started.notify_waiters();
    let mut reports = Vec::new();
    let mut stop_reason = None;
    let mut at = start;
    tokio::time::sleep_until(at.into()).await;
    let mut before = (
        pid.and_then(|p| procfs::sample(Some(p))),
        procfs::sample(None),
        Instant::now(),
        sh.disconnects.get(),
    );
    for (k, step) in sh.cfg.steps.iter().enumerate() {
        sh.window.set(k + 1);
        at += Duration::from_secs_f64(step.secs);
        tokio::time::sleep_until(at.into()).await;
        sh.window.set(k + 2);
        let after = (
            pid.and_then(|p| procfs::sample(Some(p))),
            procfs::sample(None),
            Instant::now(),
            sh.disconnects.get(),
        );
        let report = step_report(&sh, k, step, &before, &after);
        before = after;
        if let Some(reason) = ramp_stop(&sh.cfg, &reports, &report) {
            if k + 1 < steps {
                sh.active_steps.set(k + 1);
                stop_reason = Some(reason);
            }
            reports.push(report);
            break;
        }
        reports.push(report);
    }

    // Drain: wait until every expected delivery arrived, or the time is up.
    let deadline = Instant::now() + sh.cfg.drain;
    while Instant::now() < deadline && unique_delivered(&sh) < expected(&sh) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sh.closing.set(true);
    let totals = totals(&sh);
    let server_after = pid.and_then(|p| procfs::sample(Some(p)));
    let own = procfs::sample(None).unwrap_or_default();
    let connected = sh.ready.get();
    let rss_per_connection_bytes = match (server_before, server_joined) {
        (Some(b), Some(j)) if connected > 0 => {
            Some((j.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / connected as f64)
        }
        _ => None,
    };
    let first_connect_error = sh.first_error.borrow().clone();
    Ok(Report {
        server: sh.cfg.kind,
        rooms: sh.cfg.rooms,
        clients_per_room: sh.cfg.clients_per_room,
        senders_per_room: sh.cfg.senders_per_room,
        clients,
        connected,
        connect_errors: sh.failed.get(),
        first_connect_error,
        disconnects: sh.disconnects.get(),
        setup_s,
        server_before,
        server_joined,
        server_after,
        rss_per_connection_bytes,
        loadgen_cpu_s: own.cpu_s,
        loadgen_rss_kib: own.rss_kib,
        stopped_early: stop_reason.is_some(),
        stop_reason,
        steps: reports,
        totals,
    })
}

type Mark = (Option<Sample>, Option<Sample>, Instant, u64);

fn step_report(sh: &Shared, k: usize, step: &Step, before: &Mark, after: &Mark) -> StepReport {
    let windows = sh.windows.borrow();
    let w = &windows[k + 1];
    let secs = after.2.duration_since(before.2).as_secs_f64();
    let cpu = |b: &Option<Sample>, a: &Option<Sample>| match (b, a) {
        (Some(b), Some(a)) => a.cpu_s - b.cpu_s,
        _ => 0.0,
    };
    let server_cpu_s = cpu(&before.0, &after.0);
    let loadgen_cpu_s = cpu(&before.1, &after.1);
    let per = |cpu: f64| {
        if w.delivered > 0 {
            cpu * 1e6 / w.delivered as f64
        } else {
            0.0
        }
    };
    let receivers = sh.cfg.clients_per_room as f64;
    StepReport {
        label: step.label.clone(),
        rate_per_sender: step.rate,
        offered_deliveries_per_s: step.rate
            * (sh.cfg.rooms * sh.cfg.senders_per_room) as f64
            * receivers,
        secs,
        delivered: w.delivered,
        duplicated: w.duplicated,
        delivered_per_s: w.delivered as f64 / secs.max(1e-9),
        latency: Latency::of(&w.hist),
        server_cpu_s,
        server_cpu_us_per_delivery: per(server_cpu_s),
        server_rss_kib: after.0.map_or(0, |s| s.rss_kib),
        loadgen_cpu_s,
        loadgen_cpu_us_per_delivery: per(loadgen_cpu_s),
        loadgen_busy: loadgen_cpu_s / secs.max(1e-9),
        server_busy: server_cpu_s / secs.max(1e-9),
        disconnects: after.3 - before.3,
    }
}

/// Whether a ramp should stop after `last`; the reason if so.
fn ramp_stop(cfg: &Config, earlier: &[StepReport], last: &StepReport) -> Option<String> {
    if last.label == "warmup" {
        return None;
    }
    if last.disconnects > 0 {
        return Some(format!("{} clients disconnected", last.disconnects));
    }
    if let Some(limit) = cfg.stop_p99_us {
        if last.latency.p99_us > limit {
            return Some(format!(
                "p99 {} µs passed {} µs",
                last.latency.p99_us, limit
            ));
        }
    }
    if let Some(growth) = cfg.stop_growth {
        let best = earlier
            .iter()
            .filter(|s| s.label != "warmup")
            .map(|s| s.delivered_per_s)
            .fold(0.0, f64::max);
        if best > 0.0 && last.delivered_per_s < best * growth {
            return Some(format!(
                "delivered/s {:.0} grew less than {:.0}% over {:.0}",
                last.delivered_per_s,
                (growth - 1.0) * 100.0,
                best
            ));
        }
    }
    None
}

fn expected(sh: &Shared) -> u64 {
    let joined = sh.joined_per_room.borrow();
    let spr = sh.cfg.senders_per_room.max(1);
    sh.sent
        .borrow()
        .iter()
        .enumerate()
        .map(|(s, &n)| u64::from(n) * u64::from(joined[s / spr]))
        .sum()
}

fn unique_delivered(sh: &Shared) -> u64 {
    sh.trackers.borrow().iter().map(SeqTracker::unique).sum()
}

fn totals(sh: &Shared) -> Totals {
    let windows = sh.windows.borrow();
    let mut all = track::histogram();
    let mut duplicated = 0;
    for w in windows.iter() {
        all.add(&w.hist).ok();
        duplicated += w.duplicated;
    }
    let expected = expected(sh);
    let delivered = unique_delivered(sh);
    // Loss: for every receiver, the sent seqs of each sender of its room
    // that never arrived (receivers that never joined are not counted).
    let spr = sh.cfg.senders_per_room;
    let sent = sh.sent.borrow();
    let trackers = sh.trackers.borrow();
    let mut lost = 0;
    for (i, tracker) in trackers.iter().enumerate() {
        let client = i / spr.max(1);
        let room = client / sh.cfg.clients_per_room;
        let sender = room * spr + i % spr.max(1);
        if sh.joined.borrow()[client] {
            lost += tracker.missing(sent[sender]);
        }
    }
    Totals {
        sent: sent.iter().map(|&n| u64::from(n)).sum(),
        expected,
        delivered,
        lost,
        duplicated,
        foreign: sh.foreign.get(),
        misrouted: sh.misrouted.get(),
        latency: Latency::of(&all),
        send_lag: Latency::of(&sh.lag.borrow()),
    }
}

async fn client_task(sh: Rc<Shared>, client: usize, gate: Rc<Semaphore>) {
    let permit = gate.acquire().await;
    let conn = match connect(&sh, client).await {
        Ok(conn) => Rc::new(conn),
        Err(err) => {
            sh.failed.set(sh.failed.get() + 1);
            sh.first_error
                .borrow_mut()
                .get_or_insert_with(|| format!("client {client}: {err:#}"));
            sh.setup_done.notify_one();
            return;
        }
    };
    drop(permit);
    sh.joined.borrow_mut()[conn.client] = true;
    sh.joined_per_room.borrow_mut()[conn.room] += 1;
    sh.ready.set(sh.ready.get() + 1);
    sh.setup_done.notify_one();
    let local = client % sh.cfg.clients_per_room;
    if local < sh.cfg.senders_per_room {
        let sender = conn.room * sh.cfg.senders_per_room + local;
        tokio::task::spawn_local(send_task(sh.clone(), conn.clone(), sender));
    }
    if read_task(&sh, &conn).await.is_err() && !sh.closing.get() {
        sh.disconnects.set(sh.disconnects.get() + 1);
    }
}

/// Connects, upgrades and joins the client's room (the project's user is a
/// member already: its connection resumes).
async fn connect(sh: &Shared, client: usize) -> Result<Conn> {
    let cfg = &sh.cfg;
    let room = client / cfg.clients_per_room;
    let socket = TcpSocket::new_v4()?;
    if !cfg.sources.is_empty() {
        let source = cfg.sources[client % cfg.sources.len()];
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    }
    let stream = socket
        .connect(cfg.addr)
        .await
        .with_context(|| format!("connect {}", cfg.addr))?;
    stream.set_nodelay(true)?;
    let host = cfg.addr.to_string();
    let cookie = cfg.sessions.get(client).map(String::as_str);
    let request = wire::handshake_request(
        &host,
        cfg.kind.path(),
        &wire::handshake_key(rand::random()),
        &cfg.kind.headers(&host, cookie),
    );
    write_all(&stream, request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        stream.readable().await?;
        let mut chunk = [0u8; 4096];
        match stream.try_read(&mut chunk) {
            Ok(0) => bail!("closed during the upgrade"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
        if let Some(end) = wire::response_head_end(&buf) {
            break end;
        }
        if buf.len() > 64 * 1024 {
            bail!("upgrade response too long");
        }
    };
    if !wire::is_switching_protocols(&buf[..head_end]) {
        let text = String::from_utf8_lossy(&buf);
        bail!(
            "upgrade refused: {}",
            text.lines().next().unwrap_or_default()
        );
    }
    buf.drain(..head_end);
    let conn = Conn {
        stream,
        client,
        room,
        room_id: cfg.room_ids.get(room).copied().unwrap_or(0),
        mask: rand::random(),
        carry: RefCell::new(Vec::new()),
        writing: Cell::new(false),
        pending: RefCell::new(Vec::new()),
    };
    let room_name = sh.room_name(room);
    let name = format!("u{client}");
    let mut out = Vec::new();
    cfg.kind.start(&room_name, &name, &mut out, conn.mask);
    conn.write(&out).await?;
    // Read frames until the join is confirmed; what follows stays in `buf`.
    loop {
        let mut joined = false;
        loop {
            out.clear();
            let Some((frame, used)) = wire::parse(&buf).map_err(|e| anyhow::anyhow!("{e:?}"))?
            else {
                break;
            };
            let payload = &buf[frame.start..frame.end];
            match frame.opcode {
                wire::OP_TEXT => {
                    joined = cfg
                        .kind
                        .setup_frame(payload, &room_name, &name, &mut out, conn.mask)?;
                }
                wire::OP_PING => wire::encode(&mut out, wire::OP_PONG, payload, conn.mask),
                wire::OP_CLOSE => bail!("closed while joining: {:?}", close_reason(payload)),
                _ => {}
            }
            buf.drain(..used);
            if !out.is_empty() {
                conn.write(&out).await?;
            }
            if joined {
                break;
            }
        }
        if joined {
            break;
        }
        conn.stream.readable().await?;
        let mut chunk = vec![0u8; READ_CHUNK];
        match conn.stream.try_read(&mut chunk) {
            Ok(0) => bail!("closed while joining"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.shrink_to_fit();
    *conn.carry.borrow_mut() = buf;
    Ok(conn)
}

fn close_reason(payload: &[u8]) -> (u16, String) {
    if payload.len() < 2 {
        return (1005, String::new());
    }
    (
        u16::from_be_bytes([payload[0], payload[1]]),
        String::from_utf8_lossy(&payload[2..]).into_owned(),
    )
}

/// Reads until the connection ends; `Err` when the server closed it.
async fn read_task(sh: &Shared, conn: &Conn) -> Result<()> {
    let mut replies = Vec::new();
    // Frames that arrived with the join confirmation.
    if !conn.carry.borrow().is_empty() {
        let carry = std::mem::take(&mut *conn.carry.borrow_mut());
        process(sh, conn, &carry, &mut replies)?;
    }
    loop {
        if !replies.is_empty() {
            conn.write(&replies).await?;
            replies.clear();
        }
        conn.stream.readable().await?;
        loop {
            let mut scratch = sh.scratch.borrow_mut();
            let mut n = 0;
            // A read shorter than the buffer drained the socket: report it
            // as WouldBlock so tokio clears readiness now, instead of a
            // second read() per wake-up just to learn that. Safe with
            // edge-triggered epoll: bytes arriving after this read raise a
            // new event.
            let drained = conn.stream.try_io(Interest::READABLE, || {
                n = conn.stream.try_read(&mut scratch)?;
                if n > 0 && n < scratch.len() {
                    Err(std::io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            });
            match drained {
                Ok(()) if n == 0 => bail!("closed by the server"),
                Ok(()) => process(sh, conn, &scratch[..n], &mut replies)?,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if n > 0 {
                        process(sh, conn, &scratch[..n], &mut replies)?;
                    }
                    break;
                }
                Err(e) => return Err(e.into()),
            }
            if !replies.is_empty() {
                break;
            }
        }
    }
}

/// Handles the bytes of one read: complete frames in place, the cut one
/// carried over to the next read.
fn process(sh: &Shared, conn: &Conn, data: &[u8], replies: &mut Vec<u8>) -> Result<()> {
    let mut carry = conn.carry.borrow_mut();
    let now = sh.now_us();
    if carry.is_empty() {
        let used = frames(sh, conn, data, now, replies)?;
        carry.extend_from_slice(&data[used..]);
    } else {
        carry.extend_from_slice(data);
        let used = frames(sh, conn, &carry, now, replies)?;
        carry.drain(..used);
    }
    Ok(())
}

/// Handles every complete frame at the front of `buf`; returns bytes used.
fn frames(sh: &Shared, conn: &Conn, buf: &[u8], now: u64, replies: &mut Vec<u8>) -> Result<usize> {
    let mut at = 0;
    while let Some((frame, used)) = wire::parse(&buf[at..]).map_err(|e| anyhow::anyhow!("{e:?}"))? {
        let payload = &buf[at + frame.start..at + frame.end];
        match frame.opcode {
            wire::OP_TEXT | wire::OP_CONT | wire::OP_BINARY => {
                if let Some(stamp) = sh.finder.find(payload) {
                    deliver(sh, conn, stamp, now);
                } else if sh.cfg.kind == Kind::Socketio && payload == b"2" {
                    wire::encode(replies, wire::OP_TEXT, crate::sio::PONG, conn.mask);
                }
            }
            wire::OP_PING => wire::encode(replies, wire::OP_PONG, payload, conn.mask),
            wire::OP_CLOSE => bail!("closed by the server: {:?}", close_reason(payload)),
            _ => {}
        }
        at += used;
    }
    Ok(at)
}

fn deliver(sh: &Shared, conn: &Conn, stamp: Stamp, now: u64) {
    if stamp.run != sh.run {
        sh.foreign.set(sh.foreign.get() + 1);
        return;
    }
    let spr = sh.cfg.senders_per_room;
    let sender = stamp.sender as usize;
    if spr == 0 || sender / spr != conn.room {
        sh.misrouted.set(sh.misrouted.get() + 1);
        return;
    }
    let arrival = sh.trackers.borrow_mut()[conn.client * spr + sender % spr].record(stamp.seq);
    let mut windows = sh.windows.borrow_mut();
    let w = &mut windows[sh.window.get()];
    match arrival {
        Arrival::New => {
            w.delivered += 1;
            track::record(&mut w.hist, now.saturating_sub(stamp.sent_us));
        }
        Arrival::Duplicate => w.duplicated += 1,
    }
}

/// Sends on the fixed schedule until the steps end.
async fn send_task(sh: Rc<Shared>, conn: Rc<Conn>, sender: usize) {
    loop {
        let wait = sh.started.notified();
        if sh.start_at.get().is_some() {
            break;
        }
        wait.await;
    }
    let Some(start) = sh.start_at.get() else {
        return;
    };
    // Senders are spread over the period so they do not all fire at once.
    let offset: f64 = rand::random();
    let mut seq = 0u32;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut step_start = start;
    for (k, step) in sh.cfg.steps.iter().enumerate() {
        let step_end = step_start + Duration::from_secs_f64(step.secs);
        if k >= sh.active_steps.get() {
            return;
        }
        if step.rate > 0.0 {
            let period = 1.0 / step.rate;
            let mut i = 0u64;
            loop {
                let due =
                    |i: u64| step_start + Duration::from_secs_f64(period * (i as f64 + offset));
                if due(i) >= step_end || k >= sh.active_steps.get() {
                    break;
                }
                let now = Instant::now();
                if due(i) > now {
                    tokio::time::sleep_until(due(i).into()).await;
                    continue;
                }
                buf.clear();
                let sent_us = sh.now_us();
                {
                    let mut lag = sh.lag.borrow_mut();
                    while due(i) <= now && due(i) < step_end {
                        let stamp = Stamp {
                            run: sh.run,
                            sender: sender as u32,
                            seq,
                            sent_us,
                        };
                        let id = client_id(sh.nonce, sender as u32, seq);
                        sh.cfg
                            .kind
                            .send(&mut buf, conn.mask, conn.room_id, &id, &stamp.encode());
                        track::record(&mut lag, now.duration_since(due(i)).as_micros() as u64);
                        seq += 1;
                        i += 1;
                    }
                }
                if conn.write(&buf).await.is_err() {
                    return;
                }
                sh.sent.borrow_mut()[sender] = seq;
            }
        }
        step_start = step_end;
    }
}
