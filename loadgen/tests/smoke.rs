//! A tiny run of each adapter against the real server it speaks to: a few
//! clients for about a second, every delivery accounted for. (Speed is
//! measured by `make bench`, never asserted here.)
//!
//! The peers need their dependencies: `make bench-peers` installs them
//! into bench/work (Python `websockets` in a venv, npm `socket.io`).

use loadgen::{
    adapter::Kind,
    engine::{self, Report, Step},
    prepare,
};
use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The baseline servers: `$PEERS`, else `../shared/peers` beside the
/// checkout, else the copy in `bench/peers` (a clone elsewhere has no `../shared`).
fn peers() -> PathBuf {
    if let Some(dir) = std::env::var_os("PEERS") {
        return PathBuf::from(dir);
    }
    let shared = workspace().join("../shared/peers");
    if shared.join("seed_ws_chat.py").exists() {
        shared
    } else {
        workspace().join("bench/peers")
    }
}

fn config(
    kind: Kind,
    addr: SocketAddr,
    sessions: Vec<String>,
    room_ids: Vec<i64>,
) -> engine::Config {
    engine::Config {
        kind,
        addr,
        rooms: 2,
        clients_per_room: 3,
        senders_per_room: 2,
        steps: vec![Step {
            label: "smoke".into(),
            rate: 20.0,
            secs: 1.0,
        }],
        stop_p99_us: None,
        stop_growth: None,
        // The run waits after the last step until every expected delivery
        // has arrived, up to this long: generous, so a busy machine is never
        // mistaken for a lost message (a healthy run ends the drain early).
        drain: Duration::from_secs(30),
        settle: Duration::ZERO,
        server_pid: None,
        sources: vec![[127, 0, 0, 2].into(), [127, 0, 0, 3].into()],
        room_prefix: "smoke-".into(),
        room_ids,
        sessions,
        connect_concurrency: 4,
    }
}

/// Every message sent reached every client of its room exactly once.
fn assert_complete(report: &Report) {
    let t = &report.totals;
    eprintln!(
        "{}: {} connected in {:.3} s, sent {}, delivered {}/{}, lost {}, dup {}, misrouted {}, \
         foreign {}, p50 {} µs, p99 {} µs",
        report.server.name(),
        report.connected,
        report.setup_s,
        t.sent,
        t.delivered,
        t.expected,
        t.lost,
        t.duplicated,
        t.misrouted,
        t.foreign,
        t.latency.p50_us,
        t.latency.p99_us
    );
    assert_eq!(report.connect_errors, 0, "{:?}", report.first_connect_error);
    assert_eq!(report.connected, 6);
    assert!(t.sent >= 20, "about 20 msg/s from each of 4 senders: {t:?}");
    assert_eq!(t.expected, t.sent * 3, "three receivers per room: {t:?}");
    assert_eq!(t.delivered, t.expected, "{t:?}");
    assert_eq!((t.lost, t.duplicated, t.misrouted), (0, 0, 0), "{t:?}");
    assert_eq!(t.latency.count, t.delivered, "every delivery timed");
    assert_eq!(report.disconnects, 0);
}

/// Kills the child when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn spawn_peer(program: &Path, script: &Path) -> (Peer, SocketAddr) {
    assert!(
        (program.is_relative() || program.exists()) && script.exists(),
        "{} or {} missing: run `make bench-peers`",
        program.display(),
        script.display()
    );
    let port = free_port();
    let child = Command::new(program)
        .arg(script)
        .env("PORT", port.to_string())
        .spawn()
        .expect("start the peer");
    let peer = Peer(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "peer did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (peer, addr)
}

#[test]
fn project_adapter_delivers_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("chat.db").display());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    // The real server, on its own runtime and thread.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let config = server::config::Config::for_test(addr, &db);
            addr_tx.send(addr).unwrap();
            server::run(listener, config, std::future::pending::<()>())
                .await
                .unwrap();
        });
    });
    let addr = addr_rx.recv().expect("server address");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "server did not listen");
        std::thread::sleep(Duration::from_millis(25));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sessions, room_ids) = tokio::task::LocalSet::new().block_on(&rt, async {
        // One guest per client (v2 fans out per user), each room created by
        // its first client's user.
        let sessions = prepare::sessions(addr, 6, None).await.expect("sign in");
        assert_eq!(sessions.len(), 6);
        let creators = [sessions[0].clone(), sessions[3].clone()];
        let room_ids = prepare::rooms(addr, &creators, "smoke-")
            .await
            .expect("rooms");
        prepare::memberships(addr, &sessions, &room_ids, 3)
            .await
            .expect("join");
        // A second preparation (the next scenario of a bench run) finds the
        // same rooms (409, then resolved) and joins again harmlessly.
        let again = prepare::rooms(addr, &creators, "smoke-")
            .await
            .expect("rooms again");
        assert_eq!(again, room_ids);
        assert_ne!(room_ids[0], room_ids[1]);
        prepare::memberships(addr, &sessions, &room_ids, 3)
            .await
            .expect("join again");
        (sessions, room_ids)
    });
    drop(rt);
    assert_complete(&engine::run(config(Kind::Project, addr, sessions, room_ids)).expect("run"));
}

#[test]
fn python_adapter_delivers_everything() {
    let (_peer, addr) = spawn_peer(
        &workspace().join("bench/work/venv/bin/python"),
        &peers().join("seed_ws_chat.py"),
    );
    assert_complete(&engine::run(config(Kind::Python, addr, Vec::new(), Vec::new())).expect("run"));
}

#[test]
fn socketio_adapter_delivers_everything() {
    let (_peer, addr) = spawn_peer(
        Path::new("node"),
        &workspace().join("bench/work/peers/socketio_chat.js"),
    );
    assert_complete(
        &engine::run(config(Kind::Socketio, addr, Vec::new(), Vec::new())).expect("run"),
    );
}
