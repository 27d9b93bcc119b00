//! Test harness: the real server on 127.0.0.1:0 over a fresh SQLite file,
//! real HTTP for sign-in, real WebSockets for everything live.

#![allow(dead_code)] // each test binary uses a different part of the harness

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use server::config::Config;
use std::{
    net::SocketAddr,
    ops::Deref,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Once,
    time::Duration,
};
use tokio::{net::TcpListener, net::TcpStream, sync::oneshot, task::JoinHandle};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a server may take to start answering.
pub const READY: Duration = Duration::from_secs(30);

/// An HTTP client whose requests fail after [`READY`] instead of waiting
/// forever: a hung request must fail the test that made it, with its name.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(READY)
        .build()
        .expect("HTTP client")
}

static TRACING: Once = Once::new();

/// Logs only when `TEST_LOG` is set.
fn init_tracing() {
    TRACING.call_once(|| {
        if let Some(filter) = std::env::var_os("TEST_LOG") {
            // `TEST_LOG=1` logs the server at debug; anything else is the
            // filter itself (`TEST_LOG=info,tower_http=debug,sqlx=debug`).
            let filter = filter.to_string_lossy();
            let filter = if filter == "1" {
                "info,server=debug"
            } else {
                &filter
            };
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .init();
        }
        // A panic in the server's own tasks (a connection, the committer)
        // kills only that task and would go unnoticed: count every panic
        // raised outside test code, and fail the test that sees one.
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info
                .location()
                .is_some_and(|at| !at.file().contains("tests/"))
            {
                SERVER_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// Panics raised outside test code since this test binary started.
static SERVER_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Fails the test if the server has panicked (in this binary, so far).
pub fn assert_no_server_panics() {
    let panics = SERVER_PANICS.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        panics, 0,
        "the server panicked {panics} time(s); see the output above"
    );
}

/// Where a server listens, and the HTTP and WebSocket calls tests make to it.
#[derive(Debug, Clone, Copy)]
pub struct Remote {
    pub addr: SocketAddr,
}

impl Remote {
    async fn wait_ready(&self) {
        // Generous: a debug build on a busy machine can be slow to start.
        let deadline = tokio::time::Instant::now() + READY;
        while tokio::time::Instant::now() < deadline {
            if let Ok(res) = reqwest::get(self.url("/readyz")).await {
                if res.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server at {} did not become ready", self.addr);
    }

    /// A figure from `/metrics` (panics when it is missing).
    pub async fn metric(&self, name: &str) -> u64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
            .trim()
            .parse()
            .expect("a number")
    }

    /// Waits (up to `WAIT`) until `/metrics` shows `name` at `value`.
    pub async fn wait_metric(&self, name: &str, value: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.metric(name).await;
            if now == value {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} stayed at {now}, not {value}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls a server function with a form body; returns (status, JSON body).
    pub async fn call(
        &self,
        cookie: Option<&str>,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = http()
            .post(self.url(&format!("/api/{endpoint}")))
            .header("Origin", self.origin())
            .form(form);
        if let Some(cookie) = cookie {
            req = req.header("Cookie", cookie);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        )
    }

    /// Signs up a local account; returns the `Cookie` header value.
    pub async fn sign_up(&self, name: &str, email: &str, password: &str) -> String {
        let (status, body, headers) = self
            .call(
                None,
                "sign_up",
                &[("name", name), ("email", email), ("password", password)],
            )
            .await;
        assert_eq!(status, 200, "sign up failed: {body}");
        session_cookie(&headers).expect("session cookie")
    }

    /// Signs in a guest; returns the `Cookie` header value.
    pub async fn sign_in(&self, name: &str) -> String {
        let (status, body, headers) = self.call(None, "sign_in_guest", &[("name", name)]).await;
        assert_eq!(status, 200, "sign in failed: {body}");
        session_cookie(&headers).expect("session cookie")
    }

    /// Creates a room through the server function, with a fresh `client_id`;
    /// returns (status, body): the room's summary, with its `id`, on success.
    pub async fn create_room(&self, cookie: &str, name: &str) -> (u16, Value) {
        let client_id = uuid::Uuid::new_v4().to_string();
        self.create_room_as(cookie, name, &client_id).await
    }

    /// Creates a room with the given `client_id` (a resend repeats it).
    pub async fn create_room_as(&self, cookie: &str, name: &str, client_id: &str) -> (u16, Value) {
        let (status, body, _) = self
            .call(
                Some(cookie),
                "create_room",
                &[("name", name), ("client_id", client_id)],
            )
            .await;
        (status, body)
    }

    /// Joins a room through the server function; returns (status, body):
    /// the room's summary on success.
    pub async fn join(&self, cookie: &str, room_id: i64) -> (u16, Value) {
        let client_id = uuid::Uuid::new_v4().to_string();
        let (status, body, _) = self
            .call(
                Some(cookie),
                "join_room",
                &[
                    ("room_id", room_id.to_string().as_str()),
                    ("client_id", client_id.as_str()),
                ],
            )
            .await;
        (status, body)
    }

    /// Leaves a room through the server function (panics if refused).
    pub async fn leave(&self, cookie: &str, room_id: i64) {
        let client_id = uuid::Uuid::new_v4().to_string();
        let (status, body, _) = self
            .call(
                Some(cookie),
                "leave_room",
                &[
                    ("room_id", room_id.to_string().as_str()),
                    ("client_id", client_id.as_str()),
                ],
            )
            .await;
        assert!(status < 400, "leave failed: {body}");
    }

    /// Fetches a page as HTML.
    pub async fn page(&self, cookie: &str, path: &str) -> String {
        http()
            .get(self.url(path))
            .header("Cookie", cookie)
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("page body")
    }

    /// Opens a WebSocket (`/ws`) as the session in `cookie` and reads
    /// `hello`; the connection is not resumed yet. Returns the client and
    /// the hello.
    pub async fn ws_hello(&self, cookie: &str) -> (Client, Value) {
        let mut client = self
            .try_ws(Some(cookie), Some(&self.origin()))
            .await
            .expect("upgrade");
        let hello = client.expect("hello").await;
        assert_eq!(hello["protocol"], 2, "{hello}");
        (client, hello)
    }

    /// A connection resumed with `cursors` (`{"<room id>": seq}`), once
    /// `resumed` has arrived: it gets its user's rooms' events from here.
    /// What came before `resumed` (the replays, `gap`s, errors) is kept for
    /// the test's next reads. Returns the client and the hello.
    pub async fn ws_with(&self, cookie: &str, cursors: Value) -> (Client, Value) {
        let (mut client, hello) = self.ws_hello(cookie).await;
        client.resume(cursors).await;
        (client, hello)
    }

    /// A connection resumed with no cursors (live from now).
    pub async fn ws(&self, cookie: &str) -> Client {
        self.ws_with(cookie, json!({})).await.0
    }

    /// Signs in a guest called `name` (a member of general from the start),
    /// connects, resumes and opens general: a member ready to talk.
    pub async fn member(&self, name: &str) -> (String, Client) {
        let cookie = self.sign_in(name).await;
        let (mut client, hello) = self.ws_with(&cookie, json!({})).await;
        let general = room_in(&hello, "general").expect("a new user is a member of general");
        client.open(general, None).await;
        (cookie, client)
    }

    /// Attempts an upgrade with the given cookie and Origin.
    pub async fn try_ws(
        &self,
        cookie: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        self.try_ws_as(cookie, origin, None).await
    }

    /// Attempts an upgrade with the given cookie, Origin and `Host` (the
    /// connection still goes to this server's address).
    pub async fn try_ws_as(
        &self,
        cookie: Option<&str>,
        origin: Option<&str>,
        host: Option<&str>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        self.try_ws_at("/ws", cookie, origin, host).await
    }

    /// Attempts an upgrade at `path` (with its query).
    pub async fn try_ws_at(
        &self,
        path: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
        host: Option<&str>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{}{path}", self.addr).into_client_request()?;
        if let Some(host) = host {
            request
                .headers_mut()
                .insert("Host", HeaderValue::from_str(host).unwrap());
        }
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert("Cookie", HeaderValue::from_str(cookie).unwrap());
        }
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", HeaderValue::from_str(origin).unwrap());
        }
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client {
            socket,
            pending: Default::default(),
        })
    }
}

/// A server running in this process.
pub struct TestApp {
    remote: Remote,
    pub db_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    runtime: Option<tokio::runtime::Runtime>,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// A server on a new, empty database.
    pub async fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("chat.db");
        let mut app = Self::spawn_on(db_path).await;
        app._dir = Some(dir);
        app
    }

    /// A server on a new database, with `tweak` applied to its configuration.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut app = Self::start(dir.path().join("chat.db"), tweak).await;
        app._dir = Some(dir);
        app
    }

    /// A server on the database at `db_path` (kept as it is).
    pub async fn spawn_on(db_path: PathBuf) -> Self {
        Self::start(db_path, |_| {}).await
    }

    async fn start(db_path: PathBuf, tweak: impl FnOnce(&mut Config)) -> Self {
        init_tracing();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("addr");
        let mut config = Config::for_test(addr, &format!("sqlite://{}", db_path.display()));
        // Tests create rooms as one user freely; the limit's own test sets it.
        config.rooms_per_user = 0;
        tweak(&mut config);
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        let task = runtime.spawn(async move {
            let listener = TcpListener::from_std(listener)?;
            server::run(listener, config, async {
                let _ = stopped.await;
            })
            .await
        });
        let app = Self {
            remote: Remote { addr },
            db_path,
            stop: Some(stop),
            task: Some(task),
            runtime: Some(runtime),
            _dir: None,
        };
        app.wait_ready().await;
        app
    }

    /// Stops the server gracefully and waits until it has; returns the
    /// database path and the directory keeping it (deleted when dropped).
    pub async fn shutdown(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        self.stop_server().await;
        (std::mem::take(&mut self.db_path), self._dir.take())
    }

    /// Asks the server to stop and waits (at most [`READY`]) until it has.
    async fn stop_server(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(READY, task)
                .await
                .expect("the server did not shut down")
                .expect("server task")
                .expect("server run");
        }
    }

    /// Stops the server, keeping its temp directory alive for a restart.
    pub async fn restart(mut self) -> TestApp {
        let dir = self._dir.take();
        let path = std::mem::take(&mut self.db_path);
        self.stop_server().await;
        let mut app = Self::spawn_on(path).await;
        app._dir = dir;
        app
    }

    /// How many messages are stored, in all or under one `client_id`.
    pub async fn stored(&self, client_id: Option<&str>) -> i64 {
        stored(&self.db().await, client_id).await
    }

    /// Reads the database directly (a second connection, as an auditor would).
    pub async fn db(&self) -> sqlx::SqlitePool {
        open_db(&self.db_path).await
    }

    /// The id of the room called `room` (exactly).
    pub async fn room_id(&self, room: &str) -> i64 {
        room_id_in(&self.db().await, room).await
    }

    /// Fetches `path` without following redirects: (status, `Location`, body).
    pub async fn get(&self, cookie: &str, path: &str) -> (u16, Option<String>, String) {
        let res = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(READY)
            .build()
            .expect("HTTP client")
            .get(self.url(path))
            .header("Cookie", cookie)
            .header("Accept", "text/html")
            .send()
            .await
            .expect("page");
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .map(|v| v.to_str().expect("ASCII location").to_owned());
        (status, location, res.text().await.expect("page body"))
    }

    /// A room's `seq` counter now. Every kind of event takes a seq (a
    /// sign-up's silent join of general, a creator's or joiner's join), so
    /// tests count their messages' seqs from here.
    pub async fn last_seq(&self, room: &str) -> i64 {
        sqlx::query_scalar("SELECT last_seq FROM rooms WHERE name = ?")
            .bind(room)
            .fetch_one(&self.db().await)
            .await
            .expect("room exists")
    }
}

/// The id of the room called `room` (exactly) in `db`.
pub async fn room_id_in(db: &sqlx::SqlitePool, room: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM rooms WHERE name = ?")
        .bind(room)
        .fetch_one(db)
        .await
        .expect("room exists")
}

/// The id of the room called `name` in a `hello`'s room list.
pub fn room_in(hello: &Value, name: &str) -> Option<i64> {
    hello["rooms"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)?["id"]
        .as_i64()
}

/// Opens the SQLite file at `path` as a second, independent connection.
pub async fn open_db(path: &Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open db")
}

impl Deref for TestApp {
    type Target = Remote;

    fn deref(&self) -> &Remote {
        &self.remote
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        if !std::thread::panicking() {
            assert_no_server_panics();
        }
    }
}

/// The real server binary as a child process, so a test can `kill -9` it,
/// send it SIGTERM, start it again on the same port and database, and read
/// its memory from `/proc`.
pub struct ServerProcess {
    remote: Remote,
    pub db_path: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the binary on a new database and a port it picks itself (it
    /// binds port 0 and logs the address), so no other process can take
    /// the port between choosing and binding it.
    pub async fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self {
            remote: Remote {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            db_path: dir.path().join("chat.db"),
            child: None,
            dir,
        };
        server.start().await;
        server
    }

    /// Starts the binary again (same port, same database: clients reconnect
    /// to the address they know) and waits until ready.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("server log");
        let logged_before = log.metadata().expect("log size").len() as usize;
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .env("LEPTOS_SITE_ADDR", self.addr.to_string())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", self.db_path.display()),
            )
            .env("RUST_LOG", "info,sqlx=warn")
            // Fault tests create many rooms as one user.
            .env("CHAT_ROOMS_PER_USER", "0")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the server binary");
        self.child = Some(child);
        if self.addr.port() == 0 {
            self.remote.addr = self.listening_addr(logged_before).await;
        }
        self.wait_ready().await;
    }

    /// The address the child logs as listening on, from its log after
    /// `offset` (waits for the line; panics with the log if it exits first).
    async fn listening_addr(&mut self, offset: usize) -> SocketAddr {
        let deadline = tokio::time::Instant::now() + READY;
        loop {
            let log = std::fs::read(self.log_path()).expect("read server log");
            let log = String::from_utf8_lossy(log.get(offset..).unwrap_or_default());
            let addr = log
                .lines()
                .filter(|line| line.contains("listening"))
                .find_map(|line| line.split_once("addr=")?.1.split_whitespace().next())
                .map(|addr| addr.parse().expect("a socket address after addr="));
            if let Some(addr) = addr {
                return addr;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok()?) {
                panic!("the server exited ({status}) before listening:\n{log}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not log its address:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Where the child's output goes.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no chance to flush, close or say goodbye.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let exited = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(
            exited.success(),
            "server exited with {exited} after SIGTERM"
        );
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        assert!(!log.contains("panicked at"), "the server panicked:\n{log}");
    }

    /// The id of the room called `room` (exactly), from the database file.
    pub async fn room_id(&self, room: &str) -> i64 {
        room_id_in(&open_db(&self.db_path).await, room).await
    }

    /// A figure from `/proc/<pid>/status`, in KiB (`VmRSS`, `VmHWM` = peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }
}

impl Deref for ServerProcess {
    type Target = Remote;

    fn deref(&self) -> &Remote {
        &self.remote
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `chat_session=…` pair a response sets, if it sets one.
pub fn session_cookie(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|pair| pair.starts_with("chat_session=") && pair.len() > "chat_session=".len())
}

/// How many messages `db` holds, in all or under one `client_id` (of any
/// author). Also checks what the store writes with every message: its
/// `posted` event at its seq, its processed command under (author,
/// client_id), and a room counter at or above it.
pub async fn stored(db: &sqlx::SqlitePool, client_id: Option<&str>) -> i64 {
    let unaccounted: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages m JOIN rooms r ON r.id = m.room_id
         WHERE r.last_seq < m.seq
            OR NOT EXISTS (SELECT 1 FROM room_events e WHERE e.room_id = m.room_id
                           AND e.seq = m.seq AND e.kind = 'posted' AND e.message_id = m.id)
            OR NOT EXISTS (SELECT 1 FROM commands c
                           WHERE c.user_id = m.author_id AND c.client_id = m.client_id)",
    )
    .fetch_one(db)
    .await
    .expect("check messages");
    assert_eq!(
        unaccounted, 0,
        "messages without their posted event, command or seq"
    );
    sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE ?1 IS NULL OR client_id = ?1")
        .bind(client_id)
        .fetch_one(db)
        .await
        .expect("count messages")
}

/// A WebSocket client speaking JSON frames.
pub struct Client {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read past by [`Client::command`], handed out first.
    pending: std::collections::VecDeque<Value>,
}

impl Client {
    pub async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.socket.send(Message::text(text)).await.expect("send");
    }

    /// The next text frame, as JSON.
    pub async fn recv(&mut self) -> Value {
        self.recv_by(tokio::time::Instant::now() + WAIT)
            .await
            .expect("timed out waiting for a frame")
    }

    /// The next text frame, as JSON, if one arrives before `deadline`: one
    /// deadline for the whole wait, so pings and other non-text frames cannot
    /// extend it.
    async fn recv_by(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        if let Some(frame) = self.pending.pop_front() {
            return Some(frame);
        }
        self.recv_from_socket(deadline).await
    }

    /// The next text frame from the socket itself (not the pending ones).
    async fn recv_from_socket(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?
                .expect("socket ended")
                .expect("socket error");
            match message {
                Message::Text(text) => {
                    return Some(serde_json::from_str(&text).expect("JSON frame"))
                }
                Message::Close(frame) => panic!("socket closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Skips frames until one of type `kind` arrives, within [`WAIT`] in all
    /// (a stream of other frames cannot keep it waiting forever).
    pub async fn expect(&mut self, kind: &str) -> Value {
        self.expect_where(kind, |_| true).await
    }

    /// Skips frames until one of type `kind` satisfying `pred` arrives, within
    /// [`WAIT`] in all.
    pub async fn expect_where(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            let Some(frame) = self.recv_by(deadline).await else {
                panic!("no matching {kind:?} frame within {WAIT:?}; skipped: {skipped:?}");
            };
            if frame["type"] == kind && pred(&frame) {
                return frame;
            }
            if skipped.len() < 20 {
                skipped.push(frame);
            }
        }
    }

    /// A barrier: sends a ping and returns every text frame that arrived
    /// before its pong. The server handles a connection's frames in order
    /// and queues its replies in order, so whatever it queued for this
    /// connection before handling the ping is in the result.
    pub async fn until_pong(&mut self) -> Vec<Value> {
        self.send(json!({"type": "ping"})).await;
        let mut frames = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == "pong" {
                return frames;
            }
            frames.push(frame);
        }
    }

    /// Asserts the connection still answers.
    pub async fn assert_alive(&mut self) {
        self.send(json!({"type": "ping"})).await;
        self.expect("pong").await;
    }

    /// Sends `resume` with `cursors` (`{"<room id>": seq}`) and waits for
    /// `resumed`, which is returned; the frames before it (replayed events,
    /// `gap`s, errors, live frames) are kept for the test's next reads.
    pub async fn resume(&mut self, cursors: Value) -> Value {
        self.send(json!({"type": "resume", "rooms": cursors})).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut before = std::collections::VecDeque::new();
        let resumed = loop {
            let frame = self
                .recv_from_socket(deadline)
                .await
                .expect("no resumed within the wait");
            if frame["type"] == "resumed" {
                break frame;
            }
            before.push_back(frame);
        };
        self.pending.append(&mut before);
        resumed
    }

    /// Sends a message to a room by id with a fresh client id; returns the id.
    pub async fn say(&mut self, room_id: i64, body: &str) -> String {
        let client_id = uuid::Uuid::new_v4().to_string();
        self.send(
            json!({"type": "send", "room_id": room_id, "client_id": client_id, "body": body}),
        )
        .await;
        client_id
    }

    /// A command with a fresh client id (`frame` without it), answered
    /// by its `ack`, which is returned (an `error` for it panics).
    pub async fn command(&mut self, mut frame: Value) -> Value {
        let client_id = uuid::Uuid::new_v4().to_string();
        frame["client_id"] = json!(client_id);
        self.send(frame).await;
        // Frames before the answer are kept for the test's next reads.
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut before = std::collections::VecDeque::new();
        let reply = loop {
            let reply = self
                .recv_from_socket(deadline)
                .await
                .expect("no answer to the command");
            if reply["client_id"] == client_id.as_str() {
                break reply;
            }
            before.push_back(reply);
        };
        self.pending.append(&mut before);
        assert_eq!(reply["type"], "ack", "{reply}");
        reply
    }

    /// Opens a room and returns its `presence` snapshot (a member's room
    /// replays nothing: `since` counts for previews only).
    pub async fn open(&mut self, room_id: i64, since: Option<i64>) -> Value {
        let mut frame = json!({"type": "open", "room_id": room_id});
        if let Some(since) = since {
            frame["since"] = json!(since);
        }
        self.send(frame).await;
        self.expect_where("presence", |f| f["room_id"] == room_id)
            .await
    }

    /// The next `event` frame of `room_id` (others are skipped).
    pub async fn event(&mut self, room_id: i64) -> Value {
        self.expect_where("event", |f| f["room_id"] == room_id)
            .await
    }

    /// The next `event` frame of kind `kind`, in any room (others are skipped).
    pub async fn expect_event(&mut self, kind: &str) -> Value {
        self.expect_where("event", |f| f["kind"] == kind).await
    }

    /// Waits for the close frame; returns its code.
    pub async fn closed_with(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("timed out waiting for close")
            {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
                Some(Ok(Message::Close(None))) | None => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("socket error before close: {err}"),
            }
        }
    }
}
