//! The authorisation matrix (plan v2 §5.1): every cell of the committed,
//! hand-written table `server/tests/fixtures/authz.csv` against the real
//! running server, over the three transports the table names:
//!
//! - `ws`: `/ws`, `hello`, `resume`, then the action's frame; the answer
//!   is its `error.code` or its success frame. Signed out, the upgrade itself
//!   is refused with 401 (`unauthorized`).
//! - `fn`: the JSON server function under `/api/` (the `code` of the error
//!   body, whose status must be `ErrorCode::http_status`). The `page`
//!   function answers data, not errors, for a room: its `not_found` is the
//!   `NotFound` view and its `sign_in` no user (table: "the data of the `page`
//!   server function is the sign-in form").
//! - `page`: an SSR `GET` with `Accept: text/html` (status and a marker in
//!   the HTML: the composer, the Join bar, the sign-in form, the 404 page, the
//!   member list, the directory), or a no-JS form `POST` (the `code=` of the
//!   redirect it answers with).
//!
//! Fixtures: a room of the cell's kind with an owner (a DM: two members), a
//! member and a banned user, and a signed-in outsider; each room starts with
//! one message. Public rooms are made through the API, private rooms, DMs and
//! bans with SQL, always before any of their users connects (the socket's
//! membership cache is loaded at `hello`). Cells whose action cannot change
//! the fixture share one per kind; every cell of a mutating action (post,
//! join, leave, rename, set_topic) gets a fresh one. `missing` is id 999999,
//! asked by the users of the public fixture.
//!
//! Every mismatch is collected and listed at the end. For every cell that
//! answers `not_found` for a room that exists, the same request for the
//! missing id must answer the same bytes, once the room's id (and slug) and
//! random UUIDs (client ids, the forms' fresh ones) are masked.
//!
//! Run with `--nocapture` to see the summary line.

mod common;

#[allow(dead_code)] // the loader's helpers serve the pure policy test too
#[path = "common/authz.rs"]
mod table;

use app::protocol::{room_key, ErrorCode};
use common::{Client, Remote, TestApp, READY, WAIT};
use futures::StreamExt;
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    fmt,
    sync::atomic::{AtomicUsize, Ordering},
};
use table::{Cell, Expected};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

/// The id no room has (plan v2 §5.1).
const MISSING: i64 = 999_999;

/// Room ids of this test's database start above this, so that a room's id
/// cannot be mistaken for another number (a user id, a count) when it is
/// masked in an answer.
const FIRST_ROOM_ID: i64 = 100_000;

/// Cells checked at once (each with its own connections).
const PARALLEL: usize = 8;

/// Actions that change their fixture when allowed: a fresh one per cell.
const MUTATING: [&str; 5] = ["post", "join", "leave", "rename", "set_topic"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Public,
    Private,
    Dm,
}

impl Kind {
    fn parse(kind: &str) -> Option<Kind> {
        match kind {
            "public" => Some(Kind::Public),
            "private" => Some(Kind::Private),
            "dm" => Some(Kind::Dm),
            "missing" => None,
            other => panic!("unknown kind `{other}`"),
        }
    }
}

#[derive(Debug, Clone)]
struct User {
    id: i64,
    name: String,
    cookie: String,
}

/// A room of one kind with its people, made before any of them connects.
#[derive(Debug, Clone)]
struct Fixture {
    room_id: i64,
    /// The room's name (a DM has none).
    name: Option<String>,
    slug: String,
    /// The message the room starts with.
    message_id: i64,
    message_seq: i64,
    marker: String,
    /// The owner; in a DM, the member's counterpart (a plain member).
    owner: User,
    member: User,
    banned: User,
    outsider: User,
}

impl Fixture {
    /// Who acts in a cell of `standing` (`None`: signed out).
    fn actor(&self, standing: &str) -> Option<&User> {
        match standing {
            "signed_out" => None,
            "outsider" => Some(&self.outsider),
            "member" => Some(&self.member),
            "owner" => Some(&self.owner),
            "banned" => Some(&self.banned),
            other => panic!("unknown standing `{other}`"),
        }
    }

    /// Who watches for the actor's `typing`: a member other than the actor.
    fn observer(&self, standing: &str) -> &User {
        match standing {
            "member" => &self.owner,
            _ => &self.member,
        }
    }
}

/// What a request asks about, for a fixture's room or for the missing id.
#[derive(Debug, Clone)]
struct Target {
    room_id: i64,
    slug: String,
    /// The directory filter.
    q: String,
    message_id: i64,
    message_seq: i64,
    marker: String,
    /// Someone the room's member list shows.
    listed: User,
    /// A member with the room open, to see the actor's `typing`.
    observer: Option<User>,
    /// The actor is banned from the room (its page shows no Join bar).
    banned: bool,
}

impl Target {
    fn new(fixture: &Fixture, standing: &str) -> Target {
        Target {
            room_id: fixture.room_id,
            slug: fixture.slug.clone(),
            q: fixture.name.clone().unwrap_or_default(),
            message_id: fixture.message_id,
            message_seq: fixture.message_seq,
            marker: fixture.marker.clone(),
            listed: fixture.owner.clone(),
            observer: Some(fixture.observer(standing).clone()),
            banned: standing == "banned",
        }
    }

    /// The same request about the missing id.
    fn missing(&self) -> Target {
        Target {
            room_id: MISSING,
            observer: None,
            banned: false,
            ..self.clone()
        }
    }
}

/// An answer, as the matrix reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Ok,
    Preview,
    SignIn,
    Listed,
    Hidden,
    /// An error code, as on the wire.
    Error(String),
    /// Something the table has no word for (described).
    Odd(String),
}

impl fmt::Display for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Got::Ok => f.write_str("ok"),
            Got::Preview => f.write_str("preview"),
            Got::SignIn => f.write_str("sign_in"),
            Got::Listed => f.write_str("listed"),
            Got::Hidden => f.write_str("hidden"),
            Got::Error(code) => f.write_str(code),
            Got::Odd(what) => write!(f, "unexpected: {what}"),
        }
    }
}

/// An answer and its bytes (what the invisible-vs-missing check compares).
#[derive(Debug)]
struct Answer {
    got: Got,
    raw: String,
}

impl Answer {
    fn new(got: Got, raw: impl Into<String>) -> Answer {
        Answer {
            got,
            raw: raw.into(),
        }
    }

    fn odd(what: impl Into<String>) -> Answer {
        let what = what.into();
        Answer::new(Got::Odd(what.clone()), what)
    }
}

fn code_name(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(Value::String(code)) => code,
        other => panic!("an error code serialises as a string, not {other:?}"),
    }
}

fn expected_name(expected: Expected) -> String {
    match expected {
        Expected::Ok => "ok".into(),
        Expected::Preview => "preview".into(),
        Expected::SignIn => "sign_in".into(),
        Expected::Listed => "listed".into(),
        Expected::Hidden => "hidden".into(),
        Expected::NotOffered => "n/a".into(),
        Expected::Error(code) => code_name(code),
    }
}

/// How a cell's answer compares with the table.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Right,
    /// More was allowed than the table says.
    WrongAllow,
    /// Less was allowed than the table says.
    WrongDeny,
    /// Another refusal than the table's, or an answer the table has no word for.
    Mismatch,
}

fn judge(expected: Expected, got: &Got) -> Verdict {
    let allows = |g: &Got| matches!(g, Got::Ok | Got::Preview | Got::Listed);
    let right = match (expected, got) {
        (Expected::Ok, Got::Ok)
        | (Expected::Preview, Got::Preview)
        | (Expected::SignIn, Got::SignIn)
        | (Expected::Listed, Got::Listed)
        | (Expected::Hidden, Got::Hidden) => true,
        (Expected::Error(code), Got::Error(got)) => code_name(code) == *got,
        _ => false,
    };
    if right {
        return Verdict::Right;
    }
    match (expected, got) {
        (Expected::Error(_) | Expected::SignIn | Expected::Hidden, g) if allows(g) => {
            Verdict::WrongAllow
        }
        (Expected::Preview, Got::Ok) => Verdict::WrongAllow,
        (Expected::Ok | Expected::Preview | Expected::Listed, Got::Error(_) | Got::SignIn)
        | (Expected::Ok, Got::Preview)
        | (Expected::Listed, Got::Hidden) => Verdict::WrongDeny,
        _ => Verdict::Mismatch,
    }
}

/// `text` with the room id `id` (where it stands as a number of its own),
/// `slug`, every UUID and the page's CSP nonce replaced by placeholders: a
/// nonce and a form's fresh `client_id` are random per answer, and say
/// nothing about the room.
fn masked(text: &str, id: i64, slug: &str) -> String {
    let mut text = mask_uuids(text);
    let nonce = text
        .split_once(r#"nonce=""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(nonce, _)| nonce.to_owned());
    if let Some(nonce) = nonce.filter(|n| !n.is_empty()) {
        text = text.replace(&nonce, "{nonce}");
    }
    let id = id.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(&id) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + id.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(|c| c.is_ascii_digit()) || after.is_some_and(|c| c.is_ascii_digit()) {
            out.push_str(&id);
        } else {
            out.push_str("{id}");
        }
        rest = &rest[at + id.len()..];
    }
    out.push_str(rest);
    if slug.is_empty() {
        out
    } else {
        out.replace(slug, "{slug}")
    }
}

/// `text` with every UUID (8-4-4-4-12 hex digits) replaced by `{uuid}`.
fn mask_uuids(text: &str) -> String {
    const SHAPE: &[u8] = b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    let bytes = text.as_bytes();
    let fits = |at: usize| {
        bytes.len() >= at + SHAPE.len()
            && SHAPE.iter().enumerate().all(|(i, &s)| {
                let b = bytes[at + i];
                if s == b'-' {
                    b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            })
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if fits(at) {
            out.extend_from_slice(b"{uuid}");
            at += SHAPE.len();
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII was replaced")
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The running server, its database, and what every cell shares.
struct World {
    remote: Remote,
    db: sqlx::SqlitePool,
    /// Follows no redirect: the matrix reads them.
    http: reqwest::Client,
    next: AtomicUsize,
}

impl World {
    fn next(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// `POST /api/<f>` as the JSON client does: (status, headers, body).
    async fn call(
        &self,
        cookie: Option<&str>,
        f: &str,
        form: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut req = self
            .http
            .post(self.remote.url(&format!("/api/{f}")))
            .header("Origin", self.remote.origin())
            .form(form);
        if let Some(cookie) = cookie {
            req = req.header("Cookie", cookie);
        }
        let res = req.send().await.expect("server function request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        (status, headers, res.text().await.expect("body"))
    }

    /// A server function call that must succeed; its JSON answer.
    async fn must(&self, cookie: Option<&str>, f: &str, form: &[(&str, &str)]) -> Value {
        let (status, _, body) = self.call(cookie, f, form).await;
        assert_eq!(status, 200, "fixture: {f} {form:?} answered {body}");
        serde_json::from_str(&body).expect("JSON answer")
    }

    async fn sign_in(&self, name: String) -> User {
        let (status, headers, body) = self.call(None, "sign_in_guest", &[("name", &name)]).await;
        assert_eq!(status, 200, "fixture: sign in {name}: {body}");
        let cookie = common::session_cookie(&headers).expect("session cookie");
        let id = sqlx::query_scalar("SELECT id FROM users WHERE name = ?")
            .bind(&name)
            .fetch_one(&self.db)
            .await
            .expect("the new user");
        User { id, name, cookie }
    }

    /// A fixture room of `kind` with its people; nobody is connected yet.
    async fn fixture(&self, kind: Kind) -> Fixture {
        let n = self.next();
        let (owner, member, banned, outsider) = tokio::join!(
            self.sign_in(format!("Owner {n}")),
            self.sign_in(format!("Member {n}")),
            self.sign_in(format!("Banned {n}")),
            self.sign_in(format!("Outsider {n}")),
        );
        let now = server::now_ms();
        let (room_id, name) = match kind {
            Kind::Public => {
                let name = format!("Public {n}");
                let room = self
                    .must(
                        Some(&owner.cookie),
                        "create_room",
                        &[("name", &name), ("client_id", &uuid())],
                    )
                    .await;
                let room_id = room["id"].as_i64().expect("room id");
                let id = room_id.to_string();
                self.must(
                    Some(&member.cookie),
                    "join_room",
                    &[("room_id", &id), ("client_id", &uuid())],
                )
                .await;
                (room_id, Some(name))
            }
            Kind::Private => {
                let name = format!("Private {n}");
                let room_id: i64 = sqlx::query_scalar(
                    "INSERT INTO rooms (kind, name, name_key, member_count, created_by, created_at)
                     VALUES ('private', ?, ?, 2, ?, ?) RETURNING id",
                )
                .bind(&name)
                .bind(room_key(&name))
                .bind(owner.id)
                .bind(now)
                .fetch_one(&self.db)
                .await
                .expect("insert a private room");
                self.add_member(room_id, &owner, "joined", "owner").await;
                self.add_member(room_id, &member, "joined", "member").await;
                (room_id, Some(name))
            }
            Kind::Dm => {
                let (a, b) = (owner.id.min(member.id), owner.id.max(member.id));
                let room_id: i64 = sqlx::query_scalar(
                    "INSERT INTO rooms (kind, member_count, dm_key, created_at)
                     VALUES ('dm', 2, ?, ?) RETURNING id",
                )
                .bind(format!("{a},{b}"))
                .bind(now)
                .fetch_one(&self.db)
                .await
                .expect("insert a DM");
                self.add_member(room_id, &owner, "joined", "member").await;
                self.add_member(room_id, &member, "joined", "member").await;
                (room_id, None)
            }
        };
        self.add_member(room_id, &banned, "banned", "member").await;
        let marker = format!("Marker message {n}");
        let id = room_id.to_string();
        let message = self
            .must(
                Some(&owner.cookie),
                "post_message",
                &[("room_id", &id), ("client_id", &uuid()), ("body", &marker)],
            )
            .await;
        Fixture {
            room_id,
            slug: app::urls::room_slug(name.as_deref().unwrap_or_default()),
            name,
            message_id: message["id"].as_i64().expect("message id"),
            message_seq: message["seq"].as_i64().expect("message seq"),
            marker,
            owner,
            member,
            banned,
            outsider,
        }
    }

    async fn add_member(&self, room_id: i64, user: &User, state: &str, role: &str) {
        sqlx::query(
            "INSERT INTO members (room_id, user_id, state, role, joined_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(room_id)
        .bind(user.id)
        .bind(state)
        .bind(role)
        .bind(server::now_ms())
        .execute(&self.db)
        .await
        .expect("insert a member");
    }

    /// Asks the server for one cell's action about `target`.
    async fn ask(&self, cell: &Cell, actor: Option<&User>, target: &Target) -> Answer {
        match cell.transport {
            "ws" => self.over_ws(cell.action, actor, target).await,
            "fn" => self.over_fn(cell.action, actor, target).await,
            "page" => self.over_page(cell.action, actor, target).await,
            other => panic!("unknown transport `{other}`"),
        }
    }

    // --- ws ---------------------------------------------------------------

    /// A v2 connection after `hello` (the upgrade's refusal: `Err(status)`).
    async fn connect(&self, cookie: Option<&str>) -> Result<Client, Answer> {
        match self
            .remote
            .try_ws_at("/ws", cookie, Some(&self.remote.origin()), None)
            .await
        {
            Ok(mut client) => match next_frame(&mut client, |f| f["type"] == "hello").await {
                Some(_) => Ok(client),
                None => Err(Answer::odd("no hello")),
            },
            Err(tungstenite::Error::Http(res)) => {
                let status = res.status().as_u16();
                let body = res
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let got = if status == 401 {
                    Got::Error("unauthorized".into())
                } else {
                    Got::Odd(format!("upgrade refused with {status}: {body}"))
                };
                Err(Answer::new(got, format!("{status}\n{body}")))
            }
            Err(err) => Err(Answer::odd(format!("upgrade failed: {err}"))),
        }
    }

    /// A v2 connection after `hello` and `resume {rooms}` (`resumed` read).
    async fn resumed(&self, cookie: Option<&str>, rooms: Value) -> Result<Client, Answer> {
        let mut client = self.connect(cookie).await?;
        client.send(json!({"type": "resume", "rooms": rooms})).await;
        match next_frame(&mut client, |f| f["type"] == "resumed").await {
            Some(_) => Ok(client),
            None => Err(Answer::odd("no resumed")),
        }
    }

    async fn over_ws(&self, action: &str, actor: Option<&User>, t: &Target) -> Answer {
        let cookie = actor.map(|a| a.cookie.as_str());
        let room = t.room_id;
        if action == "resume" {
            let mut client = match self.connect(cookie).await {
                Ok(client) => client,
                Err(answer) => return answer,
            };
            client
                .send(json!({"type": "resume", "rooms": {room.to_string(): 0}}))
                .await;
            // From cursor 0 a member gets the room's events (every fixture
            // room has at least its message's), then `resumed`.
            let mut replayed = false;
            return loop {
                match next_frame(&mut client, |f| {
                    f["type"] == "resumed"
                        || ((f["type"] == "error" || f["type"] == "event") && f["room_id"] == room)
                })
                .await
                {
                    Some((_, frame)) if frame["type"] == "event" => replayed = true,
                    Some((raw, frame)) if frame["type"] == "error" => {
                        break error_frame(raw, &frame)
                    }
                    Some((raw, _)) if replayed => break Answer::new(Got::Ok, raw),
                    Some((raw, _)) => {
                        break Answer::odd(format!("resumed without the room's events: {raw}"))
                    }
                    None => break Answer::odd("no answer to resume"),
                }
            };
        }
        let mut client = match self.resumed(cookie, json!({})).await {
            Ok(client) => client,
            Err(answer) => return answer,
        };
        let client_id = uuid();
        let n = self.next();
        // The frame, and the type of the frame that says it succeeded.
        let (frame, success) = match action {
            "history" => (
                json!({"type": "history", "room_id": room, "before": t.message_seq + 1}),
                "history",
            ),
            "around" => (
                json!({"type": "history", "room_id": room, "around": t.message_id}),
                "history",
            ),
            "open" => (json!({"type": "open", "room_id": room}), "presence"),
            "post" => (
                json!({"type": "send", "room_id": room, "client_id": client_id, "body": format!("Posted {n}")}),
                "ack",
            ),
            "join" => (
                json!({"type": "join", "room_id": room, "client_id": client_id}),
                "ack",
            ),
            "leave" => (
                json!({"type": "leave", "room_id": room, "client_id": client_id}),
                "ack",
            ),
            "rename" => (
                json!({"type": "rename", "room_id": room, "client_id": client_id, "name": format!("Renamed {n}")}),
                "ack",
            ),
            "set_topic" => (
                json!({"type": "set_topic", "room_id": room, "client_id": client_id, "topic": format!("Topic {n}")}),
                "ack",
            ),
            "mark_read" => (
                json!({"type": "read", "room_id": room, "seq": t.message_seq}),
                "read",
            ),
            "create_room" => (
                json!({"type": "create_room", "client_id": client_id, "name": format!("Made {n}")}),
                "ack",
            ),
            "typing" => return self.typing(client, actor, t).await,
            other => panic!("`{other}` is not offered over ws, yet the table has a cell for it"),
        };
        let command = frame.get("client_id").is_some();
        client.send(frame).await;
        let answer = next_frame(&mut client, |f| {
            let ours = if command {
                f["client_id"] == client_id.as_str()
            } else {
                f["client_id"].is_null()
                    && (f["room_id"] == room || (f["type"] == "error" && f["room_id"].is_null()))
            };
            ours && (f["type"] == success || f["type"] == "error")
        })
        .await;
        match answer {
            Some((raw, frame)) if frame["type"] == "error" => error_frame(raw, &frame),
            Some((raw, frame)) => {
                let shown = |f: &Value| {
                    f["messages"]
                        .as_array()
                        .is_some_and(|m| m.iter().any(|m| m["id"] == t.message_id))
                };
                if success == "history" && !shown(&frame) {
                    Answer::odd(format!("a history page without the room's message: {raw}"))
                } else {
                    Answer::new(Got::Ok, raw)
                }
            }
            None => Answer::odd(format!("no {success} nor error within {WAIT:?}")),
        }
    }

    /// `typing` in a room the actor has opened (or tried to): an error, or
    /// the `typing` frame relayed to a member watching the room.
    async fn typing(&self, mut client: Client, actor: Option<&User>, t: &Target) -> Answer {
        let room = t.room_id;
        let mut observer = match &t.observer {
            Some(user) => {
                let mut watcher = match self.resumed(Some(&user.cookie), json!({})).await {
                    Ok(watcher) => watcher,
                    Err(answer) => return Answer::odd(format!("observer: {}", answer.raw)),
                };
                watcher.send(json!({"type": "open", "room_id": room})).await;
                if next_frame(&mut watcher, |f| {
                    f["type"] == "presence" && f["room_id"] == room
                })
                .await
                .is_none()
                {
                    return Answer::odd("the observer could not open the room");
                }
                Some(watcher)
            }
            None => None,
        };
        // Open first (members type in rooms open here); its answer is read
        // and left aside: the typing frame's answer is what counts.
        client.send(json!({"type": "open", "room_id": room})).await;
        if next_frame(&mut client, |f| {
            (f["type"] == "presence" || f["type"] == "error") && f["room_id"] == room
        })
        .await
        .is_none()
        {
            return Answer::odd("no answer to open");
        }
        client
            .send(json!({"type": "typing", "room_id": room}))
            .await;
        // Frames of a connection are handled in order: whatever typing
        // answers (or relays) is queued before the pong.
        client.send(json!({"type": "ping"})).await;
        let Some((raw, frame)) = next_frame(&mut client, |f| {
            f["type"] == "pong" || (f["type"] == "error" && f["room_id"] == room)
        })
        .await
        else {
            return Answer::odd("no pong after typing");
        };
        if frame["type"] == "error" {
            return error_frame(raw, &frame);
        }
        let Some(watcher) = observer.as_mut() else {
            return Answer::odd("typing answered nothing, and nobody watched");
        };
        // The relay was queued for the watcher before the actor's pong.
        watcher.send(json!({"type": "ping"})).await;
        // Other cells' actors may type in a shared fixture room meanwhile.
        let actor_id = actor.map(|a| a.id);
        let actor_typed = |f: &Value| {
            f["type"] == "typing" && f["room_id"] == room && f["user"]["id"].as_i64() == actor_id
        };
        match next_frame(watcher, |f| f["type"] == "pong" || actor_typed(f)).await {
            Some((raw, frame)) if actor_typed(&frame) => Answer::new(Got::Ok, raw),
            _ => Answer::odd("typing was neither refused nor relayed"),
        }
    }

    // --- fn -----------------------------------------------------------------

    /// The server function and form fields of a state-changing `action`
    /// (the same over fn and as a plain form), each with a fresh
    /// `client_id`; `None` for an action that is not a command.
    fn command_form(
        &self,
        action: &str,
        t: &Target,
    ) -> Option<(&'static str, Vec<(&'static str, String)>)> {
        let room = t.room_id.to_string();
        let client_id = uuid();
        let n = self.next();
        Some(match action {
            "post" => (
                "post_message",
                vec![
                    ("room_id", room),
                    ("client_id", client_id),
                    ("body", format!("Posted {n}")),
                ],
            ),
            "join" => (
                "join_room",
                vec![("room_id", room), ("client_id", client_id)],
            ),
            "leave" => (
                "leave_room",
                vec![("room_id", room), ("client_id", client_id)],
            ),
            "rename" => (
                "rename_room",
                vec![
                    ("room_id", room),
                    ("client_id", client_id),
                    ("name", format!("Renamed {n}")),
                ],
            ),
            "set_topic" => (
                "set_topic",
                vec![
                    ("room_id", room),
                    ("client_id", client_id),
                    ("topic", format!("Topic {n}")),
                ],
            ),
            "create_room" => (
                "create_room",
                vec![("name", format!("Made {n}")), ("client_id", client_id)],
            ),
            _ => return None,
        })
    }

    async fn over_fn(&self, action: &str, actor: Option<&User>, t: &Target) -> Answer {
        let cookie = actor.map(|a| a.cookie.as_str());
        let (f, form) = match action {
            "history" | "preview_page" | "members" => {
                ("page", vec![("room_id", t.room_id.to_string())])
            }
            "directory" => ("directory", vec![("q", t.q.clone())]),
            other => self.command_form(other, t).unwrap_or_else(|| {
                panic!("`{other}` is not offered over fn, yet the table has a cell for it")
            }),
        };
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, body) = self.call(cookie, f, &form).await;
        let raw = format!("{status}\n{body}");
        let Ok(value) = serde_json::from_str::<Value>(&body) else {
            return Answer::odd(format!("not JSON: {raw}"));
        };
        if status != 200 {
            return match value["code"].as_str() {
                Some(code) => match serde_json::from_value::<ErrorCode>(json!(code)) {
                    Ok(parsed) if parsed.http_status() == status => {
                        Answer::new(Got::Error(code.to_owned()), raw)
                    }
                    _ => Answer::odd(format!("code {code} with status {status}")),
                },
                None => Answer::odd(raw),
            };
        }
        let got = match f {
            "page" => {
                if value["me"].is_null() {
                    Got::SignIn
                } else if value["view"] == "NotFound" {
                    Got::Error("not_found".into())
                } else {
                    let page = &value["view"]["Room"];
                    match action {
                        _ if page.is_null() => Got::Odd(format!("not a room page: {body}")),
                        "history" => {
                            let shown = page["messages"]
                                .as_array()
                                .is_some_and(|m| m.iter().any(|m| m["id"] == t.message_id));
                            if shown {
                                Got::Ok
                            } else {
                                Got::Odd("a room page without the room's message".into())
                            }
                        }
                        "preview_page" if page["summary"]["role"].is_null() => Got::Preview,
                        "preview_page" => Got::Ok,
                        _ => {
                            let shown = page["members"]
                                .as_array()
                                .is_some_and(|m| m.iter().any(|m| m["user"]["id"] == t.listed.id));
                            if shown {
                                Got::Ok
                            } else {
                                Got::Odd("a member list without the room's owner".into())
                            }
                        }
                    }
                }
            }
            "directory" => {
                let listed = value["rooms"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["id"] == t.room_id));
                if listed {
                    Got::Listed
                } else {
                    Got::Hidden
                }
            }
            _ => Got::Ok,
        };
        Answer::new(got, raw)
    }

    // --- page ---------------------------------------------------------------

    async fn over_page(&self, action: &str, actor: Option<&User>, t: &Target) -> Answer {
        let room_path = format!("/r/{}/{}", t.room_id, t.slug);
        match action {
            "history" => {
                let path = format!("{room_path}?before={}", t.message_seq + 1);
                self.get_page(action, actor, &path, t).await
            }
            "members" | "room_page" => self.get_page(action, actor, &room_path, t).await,
            "directory" => {
                let path = format!("/browse?q={}", app::percent_encode(&t.q));
                self.get_page(action, actor, &path, t).await
            }
            _ => self.post_form(action, actor, &room_path, t).await,
        }
    }

    async fn get_page(&self, action: &str, actor: Option<&User>, path: &str, t: &Target) -> Answer {
        let mut req = self
            .http
            .get(self.remote.url(path))
            .header("Accept", "text/html");
        if let Some(actor) = actor {
            req = req.header("Cookie", &actor.cookie);
        }
        let res = req.send().await.expect("page request");
        let status = res.status().as_u16();
        let html = res.text().await.expect("page body");
        let raw = format!("{status}\n{html}");
        let got = if html.contains(r#"class="signin""#) {
            if status == 200 {
                Got::SignIn
            } else {
                Got::Odd(format!("the sign-in page with status {status}"))
            }
        } else if status == 404 && html.contains("Not found") {
            Got::Error("not_found".into())
        } else if status != 200 {
            Got::Odd(format!("status {status}"))
        } else {
            match action {
                "directory" => match section(&html, r#"data-testid="directory""#, "</ul>") {
                    None => Got::Odd("no directory on the page".into()),
                    Some(list) if list.contains(&format!(r#"data-room-id="{}""#, t.room_id)) => {
                        Got::Listed
                    }
                    Some(_) => Got::Hidden,
                },
                _ if !html.contains(&format!(r#"data-room-id="{}""#, t.room_id)) => {
                    Got::Odd("not the room's page".into())
                }
                "history" if html.contains(&t.marker) => Got::Ok,
                "history" => Got::Odd("the room's page without its message".into()),
                "members" => match section(&html, r#"data-testid="members""#, "</ul>") {
                    Some(list) if list.contains(&t.listed.name) => Got::Ok,
                    _ => Got::Odd("no member list with the room's owner".into()),
                },
                _ => {
                    let composer = html.contains(r#"class="composer""#);
                    let join_bar = html.contains("join-bar");
                    match (composer, join_bar) {
                        (true, false) => Got::Ok,
                        (false, bar) if bar != t.banned => Got::Preview,
                        (false, true) => Got::Odd("a preview with a Join bar".into()),
                        (false, false) => Got::Odd("a preview without a Join bar".into()),
                        (true, true) => Got::Odd("both the composer and a Join bar".into()),
                    }
                }
            }
        };
        Answer::new(got, raw)
    }

    /// A plain HTML form's POST, sent from the room's page.
    async fn post_form(
        &self,
        action: &str,
        actor: Option<&User>,
        room_path: &str,
        t: &Target,
    ) -> Answer {
        let (f, form) = self.command_form(action, t).unwrap_or_else(|| {
            panic!("`{action}` is not offered as a page, yet the table has a cell for it")
        });
        let mut req = self
            .http
            .post(self.remote.url(&format!("/api/{f}")))
            .header("Origin", self.remote.origin())
            .header("Accept", "text/html")
            .header("Referer", self.remote.url(room_path))
            .form(&form);
        if let Some(actor) = actor {
            req = req.header("Cookie", &actor.cookie);
        }
        let res = req.send().await.expect("form request");
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = res.text().await.expect("form answer");
        let raw = format!("{status}\n{location}\n{body}");
        if status != 302 {
            return Answer::odd(format!("a form answered {status}, not a redirect: {raw}"));
        }
        let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let code = query.split('&').find_map(|pair| pair.strip_prefix("code="));
        let got = match code {
            Some(code) => Got::Error(code.to_owned()),
            None if query.contains("error=") => {
                Got::Odd(format!("an error without a code: {location}"))
            }
            None => Got::Ok,
        };
        Answer::new(got, raw)
    }
}

/// The text between `start` (which must occur) and the next `end`.
fn section<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = html.find(start)?;
    let rest = &html[from..];
    Some(&rest[..rest.find(end).unwrap_or(rest.len())])
}

/// An `error` frame as an answer.
fn error_frame(raw: String, frame: &Value) -> Answer {
    match frame["code"].as_str() {
        Some(code) => Answer::new(Got::Error(code.to_owned()), raw),
        None => Answer::odd(format!("an error frame without a code: {raw}")),
    }
}

/// The next text frame satisfying `pred` (others are skipped) within
/// [`WAIT`]; `None` when none comes or the socket ends.
async fn next_frame(client: &mut Client, pred: impl Fn(&Value) -> bool) -> Option<(String, Value)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let message = tokio::time::timeout_at(deadline, client.socket.next())
            .await
            .ok()??
            .ok()?;
        match message {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).ok()?;
                if pred(&frame) {
                    return Some((text.to_string(), frame));
                }
            }
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// One cell's result.
struct Checked {
    cell: Cell,
    expected: Expected,
    got: Got,
    verdict: Verdict,
    /// For a `not_found` of a room that exists: `Ok` when the missing id
    /// answers the same bytes, else what differs (`None`: not compared).
    invisible: Option<Result<(), String>>,
}

async fn check(
    world: &World,
    shared: &BTreeMap<&str, Fixture>,
    cell: Cell,
    e: Expected,
) -> Checked {
    let kind = Kind::parse(cell.kind);
    let fixture = match kind {
        Some(kind) if MUTATING.contains(&cell.action) && cell.standing != "signed_out" => {
            world.fixture(kind).await
        }
        Some(_) => shared[cell.kind].clone(),
        // Missing: the public fixture's people ask about id 999999.
        None => shared["public"].clone(),
    };
    let actor = fixture.actor(cell.standing).cloned();
    let mut target = Target::new(&fixture, cell.standing);
    if kind.is_none() {
        target = target.missing();
        target.q = format!("Nothing {}", world.next());
    }
    let answer = world.ask(&cell, actor.as_ref(), &target).await;
    let verdict = judge(e, &answer.got);
    let hidden_room = kind.is_some()
        && e == Expected::Error(ErrorCode::NotFound)
        && answer.got == Got::Error("not_found".into());
    let invisible = if hidden_room {
        let missing = target.missing();
        let other = world.ask(&cell, actor.as_ref(), &missing).await;
        let (a, b) = (
            masked(&answer.raw, target.room_id, &target.slug),
            masked(&other.raw, MISSING, &missing.slug),
        );
        Some(if a == b {
            Ok(())
        } else {
            Err(format!("room:\n{a}\nmissing:\n{b}"))
        })
    } else {
        None
    };
    Checked {
        cell,
        expected: e,
        got: answer.got,
        verdict,
        invisible,
    }
}

#[tokio::test]
async fn every_cell_of_the_authorisation_table_holds_over_every_transport() {
    let table = table::parse(include_str!("fixtures/authz.csv"), &table::V2)
        .unwrap_or_else(|errors| panic!("server/tests/fixtures/authz.csv:\n{}", errors.join("\n")));
    let app = TestApp::spawn().await;
    let db = app.db().await;
    // Nobody joins general on signing in here: each user's page data (their
    // rooms) then changes only through their own fixture, never through the
    // sign-ins of concurrent cells, so the two requests of the
    // invisible-vs-missing check see the same page around the answer.
    sqlx::query("UPDATE rooms SET auto_join = 0")
        .execute(&db)
        .await
        .unwrap();
    // Rooms made from now on get ids above FIRST_ROOM_ID (general keeps 1).
    let bumped = sqlx::query("UPDATE sqlite_sequence SET seq = ? WHERE name = 'rooms'")
        .bind(FIRST_ROOM_ID)
        .execute(&db)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(bumped, 1, "rooms has its AUTOINCREMENT sequence");
    let world = World {
        remote: *app,
        db,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(READY)
            .build()
            .expect("HTTP client"),
        next: AtomicUsize::new(1),
    };
    let started = std::time::Instant::now();
    let (public, private, dm) = tokio::join!(
        world.fixture(Kind::Public),
        world.fixture(Kind::Private),
        world.fixture(Kind::Dm),
    );
    let shared: BTreeMap<&str, Fixture> =
        BTreeMap::from([("public", public), ("private", private), ("dm", dm)]);

    let offered: Vec<(Cell, Expected)> = table
        .cells
        .iter()
        .filter(|(_, e)| **e != Expected::NotOffered)
        .map(|(c, e)| (*c, *e))
        .collect();
    let not_offered = table.cells.len() - offered.len();
    let mut results: Vec<Checked> = futures::stream::iter(offered)
        .map(|(cell, e)| check(&world, &shared, cell, e))
        .buffer_unordered(PARALLEL)
        .collect()
        .await;

    let mut report = Vec::new();
    let (mut wrong_allows, mut wrong_denies, mut mismatches, mut identical) = (0, 0, 0, 0);
    results.sort_by_key(|r| r.cell);
    for r in &results {
        let what = match r.verdict {
            Verdict::Right => None,
            Verdict::WrongAllow => {
                wrong_allows += 1;
                Some("wrong allow")
            }
            Verdict::WrongDeny => {
                wrong_denies += 1;
                Some("wrong deny")
            }
            Verdict::Mismatch => {
                mismatches += 1;
                Some("mismatch")
            }
        };
        if let Some(what) = what {
            report.push(format!(
                "{what}: {}: expected {}, got {}",
                r.cell,
                expected_name(r.expected),
                r.got
            ));
        }
        match &r.invisible {
            Some(Ok(())) => identical += 1,
            Some(Err(diff)) => report.push(format!(
                "invisible differs from missing: {}:\n{diff}",
                r.cell
            )),
            None => {}
        }
    }
    println!(
        "authorisation matrix: {} cells ({} rows), {not_offered} n/a, {wrong_allows} wrong allows, \
         {wrong_denies} wrong denies; {identical} invisible answers identical to missing",
        table.cells.len(),
        table.rows,
    );
    eprintln!(
        "  ({} cells asked in {:.1?})",
        results.len(),
        started.elapsed()
    );
    assert!(
        report.is_empty(),
        "{} of {} cells disagree with server/tests/fixtures/authz.csv \
         ({wrong_allows} wrong allows, {wrong_denies} wrong denies, {mismatches} other mismatches):\n{}",
        report.len(),
        results.len(),
        report.join("\n")
    );
}
