//! Upgrading a database written by the v1 server (the committed fixture
//! `tests/fixtures/v1/chat.db`, see its README) to the v2 schema, with the
//! server's own `store::open`: no user, session, account, room or message
//! is lost, and the upgraded file works. The checks are those of the
//! fixture's `dry_run.sql` that matter to users.
//!
//! The committed file is never opened: SQLite would write `-wal`/`-shm`
//! files beside it, and `open` would migrate it. Every check runs on copies.

mod common;

use app::protocol::UserInfo;
use common::TestApp;
use serde_json::Value;
use server::commit::{
    plan::Command,
    write::{commit_batch, Entry},
};
use server::store::{MemberState, Role, Store};
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// Where the fixture lives.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

async fn rows<T>(db: &SqlitePool, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
{
    sqlx::query_as(sql)
        .fetch_all(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn scalar(db: &SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Everything a second `open` could change: the schema, the applied
/// migrations, the id sequences and every table's rows.
async fn snapshot(db: &SqlitePool) -> Vec<String> {
    let mut out: Vec<String> = rows::<(String, String)>(
        db,
        "SELECT name, COALESCE(sql, '') FROM sqlite_schema ORDER BY name",
    )
    .await
    .into_iter()
    .map(|(name, sql)| format!("schema {name}: {sql}"))
    .collect();
    for (version, checksum) in rows::<(i64, Vec<u8>)>(
        db,
        "SELECT version, checksum FROM _sqlx_migrations ORDER BY version",
    )
    .await
    {
        out.push(format!("migration {version}: {}", hex::encode(checksum)));
    }
    for (name, seq) in rows::<(String, i64)>(db, "SELECT name, seq FROM sqlite_sequence").await {
        out.push(format!("sequence {name}: {seq}"));
    }
    for table in [
        "users",
        "sessions",
        "local_accounts",
        "identities",
        "rooms",
        "messages",
        "room_events",
        "members",
        "mentions",
        "commands",
    ] {
        // Every column of every row, as one digest per table.
        let cols: Vec<String> = rows::<(String,)>(
            db,
            &format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
        )
        .await
        .into_iter()
        .map(|(c,)| format!("quote({c})"))
        .collect();
        let lines: Vec<(String,)> = rows(
            db,
            &format!(
                "SELECT {} FROM {table} ORDER BY 1",
                cols.join(" || '|' || ")
            ),
        )
        .await;
        let mut hash = Sha256::new();
        for (line,) in &lines {
            hash.update(line.as_bytes());
            hash.update(b"\n");
        }
        out.push(format!(
            "table {table}: {} rows, {}",
            lines.len(),
            hex::encode(hash.finalize())
        ));
    }
    out
}

#[tokio::test]
async fn a_v1_database_upgrades_keeping_every_user_room_and_message() {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture().join("expected.json")).expect("expected.json"),
    )
    .expect("expected.json is JSON");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let v1_path = dir.path().join("v1.db");
    std::fs::copy(fixture().join("chat.db"), &path).expect("copy the fixture");
    std::fs::copy(fixture().join("chat.db"), &v1_path).expect("copy the fixture");
    let url = format!("sqlite://{}", path.display());
    let v1 = common::open_db(&v1_path).await;
    assert_eq!(
        scalar(&v1, "SELECT MAX(version) FROM _sqlx_migrations").await,
        2,
        "the fixture is a v1 database"
    );

    // The server's own open runs migrations 0003 and 0004.
    let store = server::store::open(&url).await.expect("open the v1 file");
    // A second connection, as an auditor's.
    let db = common::open_db(&path).await;

    // Schema: every migration applied, v1's pinned checksums unchanged,
    // references and pages sound.
    let applied: Vec<(i64, bool, Vec<u8>)> = rows(
        &db,
        "SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version",
    )
    .await;
    assert_eq!(
        applied.iter().map(|m| (m.0, m.1)).collect::<Vec<_>>(),
        [(1, true), (2, true), (3, true), (4, true)]
    );
    for (m, want) in applied
        .iter()
        .zip(expected["migrations"].as_array().unwrap())
    {
        assert_eq!(
            hex::encode_upper(&m.2),
            want["checksum"].as_str().unwrap(),
            "migration {} was edited after it shipped",
            m.0
        );
    }
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM pragma_foreign_key_check").await,
        0
    );
    assert_eq!(
        rows::<(String,)>(&db, "PRAGMA integrity_check").await,
        [("ok".to_owned(),)]
    );

    check_accounts(&store, &db, &v1, &expected).await;
    let figures = check_rooms_and_messages(&store, &db, &v1, &expected).await;

    // A second open of the migrated file changes nothing.
    let before = snapshot(&db).await;
    drop(store);
    let store = server::store::open(&url).await.expect("open again");
    assert_eq!(snapshot(&db).await, before, "a second open is a no-op");

    check_writes_after_the_upgrade(&store, &expected).await;
    drop(store);
    check_the_server_on_it(path, &expected).await;

    println!(
        "migration: {} users, {} rooms, {} messages kept; {} events, {} memberships",
        figures.users, figures.rooms, figures.messages, figures.events, figures.members
    );
}

/// Users, sessions (the recorded tokens still sign their users in) and the
/// local account (its password still works), row for row.
async fn check_accounts(store: &Store, db: &SqlitePool, v1: &SqlitePool, expected: &Value) {
    type User = (i64, String, String, Option<String>, Option<String>, i64);
    let users_sql = "SELECT id, name, kind, email, picture, created_at FROM users ORDER BY id";
    let users: Vec<User> = rows(db, users_sql).await;
    assert_eq!(users, rows::<User>(v1, users_sql).await);
    let want: Vec<(i64, String, String, Option<String>, i64)> = expected["user_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["id"].as_i64().unwrap(),
                u["name"].as_str().unwrap().to_owned(),
                u["kind"].as_str().unwrap().to_owned(),
                u["email"].as_str().map(str::to_owned),
                u["created_at"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        users
            .iter()
            .map(|u| (u.0, u.1.clone(), u.2.clone(), u.3.clone(), u.5))
            .collect::<Vec<_>>(),
        want
    );

    type Session = (Vec<u8>, i64, i64, i64);
    let sessions_sql =
        "SELECT token_hash, user_id, created_at, expires_at FROM sessions ORDER BY token_hash";
    assert_eq!(
        rows::<Session>(db, sessions_sql).await,
        rows::<Session>(v1, sessions_sql).await
    );
    let tokens = expected["session_tokens"].as_object().unwrap();
    assert_eq!(tokens.len() as i64, expected["sessions"].as_i64().unwrap());
    for (name, token) in tokens {
        let hash = server::auth::token_hash(token.as_str().unwrap());
        let me = store
            .sessions
            .session_user(&hash, server::now_ms())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{name}'s session is gone"));
        let id = want.iter().find(|u| &u.1 == name).unwrap().0;
        assert_eq!((me.id, &me.name), (id, name));
    }

    type Local = (String, i64, String, i64);
    let local_sql =
        "SELECT email_key, user_id, password_hash, created_at FROM local_accounts ORDER BY 1";
    assert_eq!(
        rows::<Local>(db, local_sql).await,
        rows::<Local>(v1, local_sql).await
    );
    let cat = store
        .accounts
        .local_account(expected["cat_email"].as_str().unwrap())
        .await
        .unwrap()
        .expect("Cat's local account");
    assert_eq!(cat.user.name, "Cat Local");
    assert!(server::auth::password::verify(
        expected["cat_password"].as_str().unwrap().to_owned(),
        Some(cat.password_hash),
    )
    .await
    .unwrap());
}

/// What the upgrade made, for the closing line.
struct Figures {
    users: i64,
    rooms: usize,
    messages: i64,
    events: i64,
    members: i64,
}

/// Rooms (ids, names, counters), messages (row for row and the digest),
/// one `posted` event per message, memberships by the backfill rule, and
/// the processed commands.
async fn check_rooms_and_messages(
    store: &Store,
    db: &SqlitePool,
    v1: &SqlitePool,
    expected: &Value,
) -> Figures {
    let want_rooms = expected["rooms"].as_array().unwrap();
    let rooms = store.rooms.rooms().await.unwrap();
    assert_eq!(
        rooms
            .iter()
            .map(|r| (r.id, r.name.as_str(), r.created_at, r.last_seq))
            .collect::<Vec<_>>(),
        want_rooms
            .iter()
            .map(|r| (
                r["id"].as_i64().unwrap(),
                r["name"].as_str().unwrap(),
                r["created_at"].as_i64().unwrap(),
                r["last_seq"].as_i64().unwrap()
            ))
            .collect::<Vec<_>>(),
        "every room kept, with its id, name and last seq"
    );
    let created_by: Vec<(i64, Option<i64>)> =
        rows(db, "SELECT id, created_by FROM rooms ORDER BY id").await;
    assert_eq!(
        created_by,
        rows::<(i64, Option<i64>)>(v1, "SELECT id, created_by FROM rooms ORDER BY id").await
    );

    // Ids are never handed out again (AUTOINCREMENT): the sequences start
    // at v1's largest ids.
    for table in ["rooms", "messages"] {
        assert_eq!(
            scalar(
                db,
                &format!("SELECT seq FROM sqlite_sequence WHERE name = '{table}'")
            )
            .await,
            scalar(v1, &format!("SELECT MAX(id) FROM {table}")).await,
            "sqlite_sequence of {table}"
        );
    }

    // Messages, every column v1 had, row for row; and the fixture's digest.
    type Message = (i64, i64, i64, i64, String, String, i64);
    let messages_sql = "SELECT id, room_id, seq, author_id, body, client_id, created_at
                        FROM messages ORDER BY id";
    let messages: Vec<Message> = rows(db, messages_sql).await;
    assert_eq!(messages, rows::<Message>(v1, messages_sql).await);
    assert_eq!(
        messages.len() as i64,
        expected["messages"].as_i64().unwrap()
    );
    let mut by_room_seq = messages.clone();
    by_room_seq.sort_by_key(|m| (m.1, m.2));
    let mut digest = Sha256::new();
    for (_, room, seq, author, body, client_id, _) in &by_room_seq {
        digest.update(format!("{room}|{seq}|{author}|{client_id}|{body}\n").as_bytes());
    }
    assert_eq!(
        hex::encode(digest.finalize()),
        expected["messages_digest"].as_str().unwrap()
    );
    // And through the store: a room's latest page.
    let big = store.events.history(5, None, 50).await.unwrap();
    assert_eq!(
        (
            big.messages.len(),
            big.messages[49].body.as_str(),
            big.has_more
        ),
        (50, "big 620", true)
    );

    // Events: exactly one `posted` per message, at its seq, dense 1..=last_seq.
    /// room, seq, kind, actor, message.
    type Event = (i64, i64, String, Option<i64>, Option<i64>);
    let events: Vec<Event> = rows(
        db,
        "SELECT room_id, seq, kind, actor_id, message_id FROM room_events ORDER BY room_id, seq",
    )
    .await;
    let want_events: Vec<Event> = by_room_seq
        .iter()
        .map(|m| (m.1, m.2, "posted".to_owned(), Some(m.3), Some(m.0)))
        .collect();
    assert_eq!(events, want_events);
    for room in &rooms {
        let seqs: Vec<i64> = events
            .iter()
            .filter(|e| e.0 == room.id)
            .map(|e| e.1)
            .collect();
        assert_eq!(
            seqs,
            (1..=room.last_seq).collect::<Vec<_>>(),
            "room {}",
            room.id
        );
    }

    // Memberships: creators own their rooms, posters are members, everyone
    // is in general; nothing unread; member_count counts them.
    let general = rooms.iter().find(|r| r.name == "general").unwrap();
    let last_seq = |id: i64| rooms.iter().find(|r| r.id == id).unwrap().last_seq;
    let mut want: BTreeMap<(i64, i64), Role> = BTreeMap::new();
    for user in expected["user_list"].as_array().unwrap() {
        let id = user["id"].as_i64().unwrap();
        want.insert((general.id, id), Role::Member);
        for room in user["posted_in"].as_array().unwrap() {
            want.insert((room.as_i64().unwrap(), id), Role::Member);
        }
    }
    for room in want_rooms {
        if let Some(owner) = room["created_by"].as_i64() {
            want.insert((room["id"].as_i64().unwrap(), owner), Role::Owner);
        }
    }
    let members: Vec<(i64, i64)> =
        rows(db, "SELECT room_id, user_id FROM members ORDER BY 1, 2").await;
    assert_eq!(
        members,
        want.keys().copied().collect::<Vec<_>>(),
        "memberships"
    );
    for (&(room_id, user_id), &role) in &want {
        let membership = store.rooms.membership(room_id, user_id).await.unwrap();
        assert_eq!(
            membership.map(|m| (m.state, m.role, m.last_read_seq)),
            Some((MemberState::Joined, role, last_seq(room_id))),
            "user {user_id} in room {room_id}"
        );
    }
    for room in &rooms {
        let count = want.keys().filter(|(r, _)| *r == room.id).count() as i64;
        assert_eq!(room.member_count, count, "member_count of room {}", room.id);
    }

    // Commands: one per distinct (author, client_id); v1's reused one is
    // kept for the room of its first message.
    let commands = scalar(db, "SELECT COUNT(*) FROM commands").await;
    assert_eq!(commands, expected["distinct_commands"].as_i64().unwrap());
    let same = &expected["same_client_id"];
    let kept: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT user_id, room_id FROM commands WHERE client_id = ? ORDER BY user_id",
    )
    .bind(same["client_id"].as_str().unwrap())
    .fetch_all(db)
    .await
    .unwrap();
    let first = &same["kept_in_commands"];
    assert_eq!(
        kept,
        [(
            first["author_id"].as_i64().unwrap(),
            first["room_id"].as_i64().unwrap()
        )]
    );

    Figures {
        users: scalar(db, "SELECT COUNT(*) FROM users").await,
        rooms: rooms.len(),
        messages: messages.len() as i64,
        events: events.len() as i64,
        members: members.len() as i64,
    }
}

/// Writes on the upgraded file: a post takes its room's next seq and a new
/// id, v1's reused client_id answers as its first message, a new user joins
/// general.
async fn check_writes_after_the_upgrade(store: &Store, expected: &Value) {
    let rooms = store.rooms.rooms().await.unwrap();
    let room = |name: &str| rooms.iter().find(|r| r.name == name).unwrap().clone();
    let (team, general) = (room("Team Chat"), room("general"));
    // Only the ids matter to the committer's write path.
    let user = |id: i64| UserInfo {
        id,
        ..UserInfo::default()
    };
    let post = |actor: i64, client_id: &str, room_id: i64, body: &str| Entry {
        actor: user(actor),
        client_id: Some(client_id.to_owned()),
        command: Command::Post {
            room_id,
            body: body.to_owned(),
            mentions: Vec::new(),
            reply_to: None,
        },
    };
    let bob = 2;
    let done = commit_batch(
        &*store.events,
        &[post(
            bob,
            "6f1a7e0c-6d55-4a43-9c7b-2e4d3f6a0b11",
            team.id,
            "after the upgrade",
        )],
        server::now_ms(),
    )
    .await;
    let done = done[0].as_ref().expect("bob posted in Team Chat: a member");
    assert_eq!(done.seq, Some(team.last_seq + 1));
    assert_eq!(
        done.message_id,
        Some(expected["messages"].as_i64().unwrap() + 1),
        "message ids continue after v1's"
    );

    let same = &expected["same_client_id"];
    let first = &same["kept_in_commands"];
    let ann = first["author_id"].as_i64().unwrap();
    for room_id in [team.id, general.id] {
        let again = commit_batch(
            &*store.events,
            &[post(
                ann,
                same["client_id"].as_str().unwrap(),
                room_id,
                "same id, a third time",
            )],
            server::now_ms(),
        )
        .await;
        let again = again[0].as_ref().expect("answered");
        assert!(again.duplicate, "a duplicate");
        let message_id = first["message_id"].as_i64().unwrap();
        assert_eq!(
            (again.room_id, again.message_id, again.seq),
            (
                general.id,
                Some(message_id),
                Some(first["seq"].as_i64().unwrap())
            ),
            "the original, in general"
        );
        // The original is stored unchanged.
        let original = store
            .events
            .around(general.id, message_id, 1)
            .await
            .unwrap()
            .expect("the original is in general");
        assert_eq!(original.messages[0].body, "same id, general");
    }
    let rooms_after = store.rooms.rooms().await.unwrap();
    assert_eq!(
        rooms_after.iter().map(|r| r.last_seq).collect::<Vec<_>>(),
        rooms
            .iter()
            .map(|r| r.last_seq + i64::from(r.id == team.id))
            .collect::<Vec<_>>(),
        "duplicates take no seq"
    );

    // general is still the room every new user joins; the server's silent
    // join of a new user takes general's next seq and leaves nothing unread.
    assert_eq!(store.rooms.auto_join().await.unwrap(), [general.id]);
    let new = store
        .accounts
        .create_guest("After", server::now_ms())
        .await
        .unwrap();
    let joined = commit_batch(
        &*store.events,
        &[Entry {
            actor: new.public(),
            client_id: Some(server::chat::members::default_join_key(general.id)),
            command: Command::Join {
                room_id: general.id,
                silent: true,
            },
        }],
        server::now_ms(),
    )
    .await;
    assert!(joined[0].is_ok(), "{joined:?}");
    let membership = store
        .rooms
        .membership(general.id, new.id)
        .await
        .unwrap()
        .expect("a new user is in general");
    // Its silent `member_joined` took general's next seq; nothing unread.
    assert_eq!(
        (membership.role, membership.last_read_seq),
        (Role::Member, general.last_seq + 1)
    );
}

/// The server itself on the upgraded file: Cat signs in with her password,
/// Ann's cookie still works and her v1 reused client_id answers as its
/// first message, and the room page shows the history.
async fn check_the_server_on_it(path: PathBuf, expected: &Value) {
    let app = TestApp::spawn_on(path).await;
    let (status, body, _) = app
        .call(
            None,
            "sign_in_password",
            &[
                ("email", expected["cat_email"].as_str().unwrap()),
                ("password", expected["cat_password"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ann = format!(
        "chat_session={}",
        expected["session_tokens"]["Ann Guest"].as_str().unwrap()
    );
    let same = &expected["same_client_id"];
    // Ann created Team Chat in v1, so is its owner (and a member) now.
    let team_chat = app.room_id("Team Chat").await.to_string();
    let (status, body, _) = app
        .call(
            Some(&ann),
            "post_message",
            &[
                ("room_id", &team_chat),
                ("client_id", same["client_id"].as_str().unwrap()),
                ("body", "same id, over HTTP"),
            ],
        )
        .await;
    let first = &same["kept_in_commands"];
    // The message kept from v1 (in general: its id and seq say which).
    assert_eq!(
        (status, body["seq"].as_i64(), body["id"].as_i64()),
        (200, first["seq"].as_i64(), first["message_id"].as_i64()),
        "{body}"
    );
    // The old URL by name still opens the room (by redirect to its id).
    let page = app.page(&ann, "/rooms/Team%20Chat").await;
    assert!(page.contains("team 12"), "Team Chat's history on its page");
    // The sidebar lists the rooms Ann belongs to after the backfill, and
    // only those.
    let ann_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE name = 'Ann Guest'")
        .fetch_one(&app.db().await)
        .await
        .unwrap();
    let rooms: Vec<(String, bool)> = sqlx::query_as(
        "SELECT name, EXISTS (SELECT 1 FROM members m WHERE m.room_id = rooms.id
                 AND m.user_id = ? AND m.state = 'joined')
         FROM rooms WHERE kind = 'public' ORDER BY id",
    )
    .bind(ann_id)
    .fetch_all(&app.db().await)
    .await
    .unwrap();
    assert!(rooms.iter().any(|(_, member)| *member));
    for (name, member) in rooms {
        let link = format!("# {}</a>", name.replace('&', "&amp;").replace('<', "&lt;"));
        assert_eq!(
            page.contains(&link),
            member,
            "{name} listed iff Ann is a member"
        );
    }
}
