//! The store contract: what every implementation of the store traits must
//! do, written once as `contract(store)` over the [`Store`] handle. It runs
//! here against a fresh SQLite file; a PostgreSQL store runs the same
//! function against a fresh database.
//!
//! It assumes only what the migrations promise every backend: an empty
//! database apart from the room `general`, which every new user joins (the
//! server joins them through the committer; [`guest`] does the same). Ids
//! are compared, never guessed.

use app::protocol::{
    ApiError, DirectoryEntry, ErrorCode, Event, EventKind, MemberInfo, Message, Role as WireRole,
    RoomKind, RoomSummary, UserInfo,
};
use server::chat::policy::{Access, Standing};
use server::commit::{
    plan::Command,
    write::{commit_batch, Entry, Receipt},
};
use server::store::{
    sqlite::{SqliteHook, SqliteStore},
    AppendedEvent, AroundPage, Claim, Done, MemberChange, MemberState, Membership, MessageRow,
    NewEvent, NewRoom, OidcFlow, Profile, ReadState, Role, RoomChange, RoomRow, Store, StoreError,
    StoredMessage,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// A fixed clock: the contract passes the time to every call.
const NOW: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

/// A committer's answer to one command.
type Answer = Result<Receipt, ApiError>;

/// A new guest, as others see them, joined to general as the server joins
/// every new user (`Chat::join_defaults`).
async fn guest(store: &Store, name: &str) -> UserInfo {
    let user = loner(store, name).await;
    ok(&join_general(store, &user).await);
    user
}

/// A new guest who belongs to no room (not even general).
async fn loner(store: &Store, name: &str) -> UserInfo {
    store
        .accounts
        .create_guest(name, NOW)
        .await
        .unwrap()
        .public()
}

/// The silent join of general a new user gets, under its fixed key.
async fn join_general(store: &Store, user: &UserInfo) -> Answer {
    let general = general(store).await.id;
    let answers = commit(
        store,
        &[entry(
            user,
            &server::chat::members::default_join_key(general),
            Command::Join {
                room_id: general,
                silent: true,
            },
        )],
    )
    .await;
    answers.into_iter().next().unwrap()
}

fn entry(actor: &UserInfo, key: &str, command: Command) -> Entry {
    Entry {
        actor: actor.clone(),
        client_id: Some(key.to_owned()),
        command,
    }
}

fn post(room_id: i64, body: &str) -> Command {
    Command::Post {
        room_id,
        body: body.into(),
        mentions: Vec::new(),
        reply_to: None,
    }
}

fn join(room_id: i64) -> Command {
    Command::Join {
        room_id,
        silent: false,
    }
}

/// A read marker move (it has no client_id).
fn mark_read(actor: &UserInfo, room_id: i64, seq: i64) -> Entry {
    Entry {
        actor: actor.clone(),
        client_id: None,
        command: Command::MarkRead { room_id, seq },
    }
}

/// Commits `batch` at `NOW` through the committer's write path.
async fn commit(store: &Store, batch: &[Entry]) -> Vec<Answer> {
    commit_at(store, batch, NOW).await
}

async fn commit_at(store: &Store, batch: &[Entry], ts: i64) -> Vec<Answer> {
    commit_batch(&*store.events, batch, ts).await
}

fn ok(answer: &Answer) -> &Receipt {
    answer.as_ref().expect("accepted")
}

fn code(answer: &Answer) -> ErrorCode {
    answer.as_ref().expect_err("refused").code
}

/// The seq of each answer's first event; every answer must be accepted.
fn seqs(answers: &[Answer]) -> Vec<Option<i64>> {
    answers.iter().map(|a| ok(a).seq).collect()
}

/// Creates a public room owned by `owner` through the committer (its
/// owner's `member_joined` takes seq 1); its id.
async fn create(store: &Store, owner: &UserInfo, name: &str, key: &str) -> i64 {
    let answers = commit(
        store,
        &[entry(
            owner,
            &format!("create-{key}"),
            Command::CreateRoom {
                name: name.into(),
                name_key: key.into(),
                topic: String::new(),
            },
        )],
    )
    .await;
    assert_eq!(ok(&answers[0]).seq, Some(1), "the owner's join");
    ok(&answers[0]).room_id
}

#[tokio::test]
async fn sqlite_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    contract(server::store::open(&url).await.unwrap()).await;
}

/// What the SQLite store writes beside the messages, read back with SQL: the
/// seq comes from the room's counter (which later event kinds advance too),
/// each post has a `posted` event without its text and a processed command.
#[tokio::test]
async fn sqlite_posts_take_the_room_counter_and_write_events_and_commands() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let store = server::store::open(&url).await.unwrap();
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    // Not joined to general: the only events are this test's.
    let ann = loner(&store, "ann").await;
    let room = store
        .rooms
        .create_room("r", "r", ann.id, NOW)
        .await
        .unwrap();
    let posted = commit(
        &store,
        &[
            entry(&ann, "k1", post(room.id, "a")),
            entry(&ann, "k2", post(room.id, "b")),
        ],
    )
    .await;
    assert_eq!(seqs(&posted), [Some(1), Some(2)]);
    // Three events of other kinds (a rename, say) take seqs 3..=5.
    sqlx::query("UPDATE rooms SET last_seq = last_seq + 3 WHERE id = ?")
        .bind(room.id)
        .execute(&db)
        .await
        .unwrap();
    let done = commit(&store, &[entry(&ann, "k3", post(room.id, "c"))]).await;
    assert_eq!(ok(&done[0]).seq, Some(6), "the counter, not MAX(seq) + 1");

    // The oldest message has seq 1 but a page can end above it with
    // nothing older, and a gap in seqs is no sign of more.
    let page = store.events.history(room.id, Some(6), 2).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(!page.has_more);
    let page = store.events.history(room.id, None, 1).await.unwrap();
    assert_eq!((page.messages[0].seq, page.has_more), (6, true));

    /// seq, kind, actor, message, payload.
    type Event = (i64, String, Option<i64>, Option<i64>, Option<String>);
    let events: Vec<Event> = sqlx::query_as(
        "SELECT seq, kind, actor_id, message_id, payload FROM room_events
         WHERE room_id = ? ORDER BY seq",
    )
    .bind(room.id)
    .fetch_all(&db)
    .await
    .unwrap();
    let messages: Vec<(i64, i64)> =
        sqlx::query_as("SELECT seq, id FROM messages WHERE room_id = ? ORDER BY seq")
            .bind(room.id)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(
        events,
        messages
            .iter()
            .map(|&(seq, id)| (seq, "posted".to_owned(), Some(ann.id), Some(id), None))
            .collect::<Vec<_>>()
    );
    let commands: Vec<(String, String, i64, String)> = sqlx::query_as(
        "SELECT client_id, kind, room_id, result FROM commands
         WHERE user_id = ? AND kind = 'post' ORDER BY client_id",
    )
    .bind(ann.id)
    .fetch_all(&db)
    .await
    .unwrap();
    let result = |seq: i64, id: i64| serde_json::json!({"room_id": room.id, "seq": seq, "message_id": id, "ts": NOW});
    let parsed: Vec<(String, String, i64, serde_json::Value)> = commands
        .into_iter()
        .map(|(c, k, r, json)| (c, k, r, serde_json::from_str(&json).unwrap()))
        .collect();
    let post_command = |client_id: &str, (seq, id): (i64, i64)| {
        (
            client_id.to_owned(),
            "post".to_owned(),
            room.id,
            result(seq, id),
        )
    };
    assert_eq!(
        parsed,
        [
            post_command("k1", messages[0]),
            post_command("k2", messages[1]),
            post_command("k3", messages[2]),
        ]
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT last_seq FROM rooms WHERE id = ?")
            .bind(room.id)
            .fetch_one(&db)
            .await
            .unwrap(),
        6
    );
}

/// Every aggregate's promises, on one fresh store.
pub async fn contract(store: Store) {
    health(&store).await;
    accounts(&store).await;
    sessions(&store).await;
    oidc_flows(&store).await;
    rooms(&store).await;
    events(&store).await;
    event_tx(&store).await;
    read_side(&store).await;
    directory(&store).await;
    member_list(&store).await;
    replay(&store).await;
    around(&store).await;
    mentions(&store).await;
}

async fn health(store: &Store) {
    store.health.ping().await.unwrap();
    store.health.probe_write(NOW).await.unwrap();
    store.health.probe_write(NOW + 1).await.unwrap();
}

/// The room `general` as stored now.
async fn general(store: &Store) -> RoomRow {
    let rooms = store.rooms.rooms().await.unwrap();
    rooms.into_iter().find(|r| r.name == "general").unwrap()
}

/// A plain member of `general`, joined at `at`, who had read it all when
/// joining: the marker is at `joined_seq`, the seq of their own silent
/// `member_joined`.
async fn assert_in_general(store: &Store, user_id: i64, at: i64, joined_seq: i64) {
    let general = general(store).await;
    let membership = store.rooms.membership(general.id, user_id).await.unwrap();
    assert_eq!(
        membership,
        Some(Membership {
            state: MemberState::Joined,
            role: Role::Member,
            joined_at: at,
            last_read_seq: joined_seq,
        }),
        "user {user_id} in general, read up to their own join"
    );
}

async fn accounts(store: &Store) {
    let a = &store.accounts;
    let before = general(store).await;
    let general_id = before.id;
    assert_eq!(store.rooms.auto_join().await.unwrap(), [general_id]);

    // Guests: a new user each time, even under the same name; no email.
    let ann = a.create_guest("ann", NOW).await.unwrap();
    let ann2 = a.create_guest("ann", NOW).await.unwrap();
    assert_ne!(ann.id, ann2.id);
    assert_eq!((ann.name.as_str(), ann.email.as_deref()), ("ann", None));

    // Local accounts: found by their email key, with the hash as given.
    let bob = a
        .create_local_account(
            "Bob",
            "Bob@Example.com",
            "bob@example.com",
            "$argon2id$x",
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(bob.email.as_deref(), Some("Bob@Example.com"));
    let found = a.local_account("bob@example.com").await.unwrap().unwrap();
    assert_eq!(found.user, bob);
    assert_eq!(found.password_hash, "$argon2id$x");
    assert!(a
        .local_account("nobody@example.com")
        .await
        .unwrap()
        .is_none());
    // A taken email key is a conflict, and creates no user.
    let again = a
        .create_local_account(
            "Bob 2",
            "bob@example.com",
            "bob@example.com",
            "$argon2id$y",
            NOW,
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    let found = a.local_account("bob@example.com").await.unwrap().unwrap();
    assert_eq!(
        (found.user.id, found.password_hash.as_str()),
        (bob.id, "$argon2id$x")
    );

    // Identities: the same (issuer, subject) is the same user, with the
    // profile refreshed; another subject, or another issuer, another user.
    // Only the first sign-in says it created the user.
    let profile = |name: &str, email: Option<&str>| Profile {
        name: name.to_owned(),
        email: email.map(str::to_owned),
        picture: Some(format!("https://pics.example/{name}")),
    };
    let issuer = "https://id.example";
    let first = a
        .sign_in_identity(issuer, "sub-1", &profile("Cat", Some("cat@x.example")), NOW)
        .await
        .unwrap();
    assert!(first.created);
    let cat = first.user;
    assert_eq!(cat.email.as_deref(), Some("cat@x.example"));
    let cat_again = a
        .sign_in_identity(issuer, "sub-1", &profile("Catherine", None), NOW + 1)
        .await
        .unwrap();
    assert!(!cat_again.created);
    let cat_again = cat_again.user;
    assert_eq!(cat_again.id, cat.id);
    assert_eq!(
        (cat_again.name.as_str(), cat_again.email.as_deref()),
        ("Catherine", None)
    );
    assert_eq!(
        cat_again.picture.as_deref(),
        Some("https://pics.example/Catherine")
    );
    let other = a
        .sign_in_identity(issuer, "sub-2", &profile("Cat", None), NOW)
        .await
        .unwrap();
    let elsewhere = a
        .sign_in_identity("https://other.example", "sub-1", &profile("Cat", None), NOW)
        .await
        .unwrap();
    assert!(other.created && elsewhere.created);
    let (other, elsewhere) = (other.user, elsewhere.user);
    let ids: HashSet<i64> = [cat.id, other.id, elsewhere.id, ann.id, bob.id]
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 5, "every new identity is a new user");

    // Creating users writes nothing to any room: the silent joins go
    // through the committer, so that they take a seq like every event.
    let users = [&ann, &ann2, &bob, &cat, &other, &elsewhere];
    for user in users {
        assert_eq!(
            store.rooms.membership(general_id, user.id).await.unwrap(),
            None
        );
    }
    let unchanged = general(store).await;
    assert_eq!(
        (unchanged.last_seq, unchanged.member_count),
        (before.last_seq, before.member_count)
    );

    // The silent join: one event each, a plain member who has read it all;
    // the same key again answers the same and takes no seq.
    let mut seq = before.last_seq;
    for user in users {
        let answer = join_general(store, &user.public()).await;
        seq += 1;
        assert_eq!(ok(&answer).seq, Some(seq));
        assert_in_general(store, user.id, NOW, seq).await;
    }
    let repeat = join_general(store, &ann.public()).await;
    assert_eq!(
        ok(&repeat).seq,
        Some(before.last_seq + 1),
        "ann's first answer"
    );
    let joined = general(store).await;
    assert_eq!(
        (joined.last_seq, joined.member_count),
        (seq, before.member_count + 6)
    );

    // With nothing unread whatever came before: the marker is at the join.
    let posted = commit(
        store,
        &[entry(
            &ann.public(),
            "accounts-1",
            post(general_id, "before dan"),
        )],
    )
    .await;
    seq += 1; // the post
    assert_eq!(seqs(&posted), [Some(seq)]);
    let dan = guest(store, "dan").await;
    seq += 1;
    assert_in_general(store, dan.id, NOW, seq).await;
    assert_eq!(general(store).await.member_count, before.member_count + 7);
}

async fn sessions(store: &Store) {
    let s = &store.sessions;
    let ann = store.accounts.create_guest("ann", NOW).await.unwrap();
    let bob = store.accounts.create_guest("bob", NOW).await.unwrap();
    let (a1, a2, b1, unknown) = ([1u8; 32], [2u8; 32], [3u8; 32], [4u8; 32]);
    s.create_session(ann.id, &a1, NOW, NOW + HOUR)
        .await
        .unwrap();
    s.create_session(ann.id, &a2, NOW, NOW + 2 * HOUR)
        .await
        .unwrap();
    s.create_session(bob.id, &b1, NOW, NOW + 3 * HOUR)
        .await
        .unwrap();

    // Lookup: the session's user, whole (the store is the one place that
    // may hand out an email).
    assert_eq!(s.session_user(&a1, NOW).await.unwrap(), Some(ann.clone()));
    assert_eq!(s.session_user(&b1, NOW).await.unwrap(), Some(bob.clone()));
    assert_eq!(s.session_user(&unknown, NOW).await.unwrap(), None);

    // Expiry: a session is valid strictly before `expires_at`.
    assert_eq!(
        s.session_user(&a1, NOW + HOUR - 1).await.unwrap(),
        Some(ann.clone())
    );
    assert_eq!(s.session_user(&a1, NOW + HOUR).await.unwrap(), None);

    // Many at once: only those that exist and have not expired.
    let live = s
        .live_sessions(&[a1, a2, b1, unknown], NOW + HOUR)
        .await
        .unwrap();
    assert_eq!(live, HashSet::from([a2, b1]));
    assert!(s.live_sessions(&[], NOW).await.unwrap().is_empty());
    // More than one statement's worth of hashes.
    let many: Vec<[u8; 32]> = (0..1200u32)
        .map(|i| {
            let mut h = [9u8; 32];
            h[..4].copy_from_slice(&i.to_be_bytes());
            h
        })
        .chain([b1])
        .collect();
    assert_eq!(
        s.live_sessions(&many, NOW).await.unwrap(),
        HashSet::from([b1])
    );

    // Delete: gone at once; deleting again is no error.
    s.delete_session(&a2).await.unwrap();
    assert_eq!(s.session_user(&a2, NOW).await.unwrap(), None);
    s.delete_session(&a2).await.unwrap();

    // Purge: only what expired by then, counted.
    assert_eq!(s.purge_sessions(NOW).await.unwrap(), 0);
    assert_eq!(s.purge_sessions(NOW + 2 * HOUR).await.unwrap(), 1); // a1
    assert_eq!(s.session_user(&b1, NOW).await.unwrap(), Some(bob));
    assert_eq!(s.purge_sessions(NOW + 3 * HOUR).await.unwrap(), 1); // b1
    assert!(s
        .live_sessions(&[a1, a2, b1], NOW)
        .await
        .unwrap()
        .is_empty());
}

async fn oidc_flows(store: &Store) {
    let s = &store.sessions;
    let flow = |n: u8, expires_at: i64| OidcFlow {
        state_hash: [n; 32],
        browser_hash: [n + 100; 32],
        provider: "test".to_owned(),
        nonce: format!("nonce-{n}"),
        pkce_verifier: format!("verifier-{n}"),
        expires_at,
    };
    s.create_oidc_flow(&flow(1, NOW + HOUR)).await.unwrap();
    s.create_oidc_flow(&flow(2, NOW - 1)).await.unwrap();
    // Taken once, whole, expired or not; then gone.
    assert_eq!(
        s.take_oidc_flow(&[1; 32]).await.unwrap(),
        Some(flow(1, NOW + HOUR))
    );
    assert_eq!(s.take_oidc_flow(&[1; 32]).await.unwrap(), None);
    s.create_oidc_flow(&flow(3, NOW + HOUR)).await.unwrap();
    assert_eq!(s.purge_oidc_flows(NOW).await.unwrap(), 1);
    assert_eq!(s.take_oidc_flow(&[2; 32]).await.unwrap(), None);
    assert_eq!(
        s.take_oidc_flow(&[3; 32]).await.unwrap(),
        Some(flow(3, NOW + HOUR))
    );
}

async fn rooms(store: &Store) {
    let r = &store.rooms;
    let ann = store.accounts.create_guest("ann", NOW).await.unwrap();
    let before = r.rooms().await.unwrap();
    assert!(
        before.iter().any(|room| room.name == "general"),
        "the migrations create general: {before:?}"
    );

    let later = NOW + 10 * HOUR;
    let tea = r.create_room("Tea", "tea", ann.id, later).await.unwrap();
    assert_eq!(
        (
            tea.name.as_str(),
            tea.created_at,
            tea.last_seq,
            tea.member_count
        ),
        ("Tea", later, 0, 1)
    );
    // Its creator owns it and is its one member; no one else is in it.
    assert_eq!(
        r.membership(tea.id, ann.id).await.unwrap(),
        Some(Membership {
            state: MemberState::Joined,
            role: Role::Owner,
            joined_at: later,
            last_read_seq: 0,
        })
    );
    let bob = store.accounts.create_guest("bob", NOW).await.unwrap();
    assert_eq!(r.membership(tea.id, bob.id).await.unwrap(), None);
    // The name key carries uniqueness, whatever the displayed name; a
    // refused room leaves nothing behind.
    let dup = r.create_room("TEA", "tea", bob.id, later + 1).await;
    assert!(matches!(dup, Err(StoreError::Conflict)), "{dup:?}");
    assert_eq!(r.membership(tea.id, bob.id).await.unwrap(), None);
    let cake = r
        .create_room("Cake", "cake", ann.id, later + 1)
        .await
        .unwrap();
    assert_ne!(tea.id, cake.id);

    // Listed oldest first (created_at, then id), each once, as stored.
    let after = r.rooms().await.unwrap();
    assert_eq!(after.len(), before.len() + 2);
    assert!(r
        .membership(i64::from(i32::MAX), ann.id)
        .await
        .unwrap()
        .is_none());
    let at = |id: i64| after.iter().position(|room| room.id == id).unwrap();
    assert_eq!(after[at(tea.id)], tea);
    assert_eq!(after[at(cake.id)], cake);
    assert!(at(tea.id) < at(cake.id));
    let order: Vec<(i64, i64)> = after.iter().map(|r| (r.created_at, r.id)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

async fn events(store: &Store) {
    let e = &store.events;
    let ann = guest(store, "ann").await;
    let bob = guest(store, "bob").await;
    let one = store
        .rooms
        .create_room("one", "one", ann.id, NOW)
        .await
        .unwrap();
    let two = store
        .rooms
        .create_room("two", "two", ann.id, NOW)
        .await
        .unwrap();
    // Bob joins both: seq 1 in each (a room made by `create_room` has no
    // event yet), so posts start at 2.
    let joins = commit(
        store,
        &[
            entry(&bob, "j1", join(one.id)),
            entry(&bob, "j2", join(two.id)),
        ],
    )
    .await;
    assert_eq!(seqs(&joins), [Some(1), Some(1)]);

    // One batch: seqs dense per room, results in the batch's order.
    let done = commit(
        store,
        &[
            entry(&ann, "c1", post(one.id, "one-1")),
            entry(&bob, "c2", post(two.id, "two-1")),
            entry(&bob, "c3", post(one.id, "one-2")),
        ],
    )
    .await;
    assert_eq!(seqs(&done), [Some(2), Some(2), Some(3)]);
    let done: Vec<Receipt> = done.iter().map(|a| ok(a).clone()).collect();
    assert!(done.iter().all(|c| c.ts == NOW && !c.duplicate));
    assert_eq!(
        done.iter()
            .map(|c| c.message_id)
            .collect::<HashSet<_>>()
            .len(),
        3
    );
    assert!(done.iter().all(|c| c.message_id.is_some()));

    // A later batch continues each room's seq. A repeated (author,
    // client_id) answers with the original, wherever it was stored, takes no
    // seq and stores nothing, whatever the repeat says. Another author's
    // client_id is theirs alone: no duplicate.
    let more = commit(
        store,
        &[
            entry(&ann, "c1", post(one.id, "resent")),
            entry(&ann, "c4", post(one.id, "one-3")),
            entry(&ann, "c3", post(one.id, "one-4")),
            // v1 stored this: a client_id was unique per room, not per user.
            entry(&ann, "c1", post(two.id, "two-2?")),
        ],
    )
    .await;
    let original_c1 = Receipt {
        duplicate: true,
        ..done[0].clone()
    };
    assert_eq!(original_c1.room_id, one.id, "the original's room");
    assert_eq!(ok(&more[0]), &original_c1);
    assert_eq!((ok(&more[1]).seq, ok(&more[1]).duplicate), (Some(4), false));
    assert_eq!((ok(&more[2]).seq, ok(&more[2]).duplicate), (Some(5), false));
    assert_ne!(ok(&more[2]).message_id, done[2].message_id);
    assert_eq!(ok(&more[3]), &original_c1);

    // Repeats inside one batch: a later one answers with the first, in the
    // first one's room.
    let twice = commit(
        store,
        &[
            entry(&bob, "c5", post(one.id, "one-5")),
            entry(&bob, "c5", post(one.id, "one-5")),
            entry(&bob, "c8", post(two.id, "two-2")),
            entry(&bob, "c8", post(one.id, "elsewhere")),
        ],
    )
    .await;
    assert_eq!(
        (ok(&twice[0]).seq, ok(&twice[0]).duplicate),
        (Some(6), false)
    );
    assert_eq!(
        ok(&twice[1]),
        &Receipt {
            duplicate: true,
            ..ok(&twice[0]).clone()
        }
    );
    assert_eq!(
        (
            ok(&twice[2]).room_id,
            ok(&twice[2]).seq,
            ok(&twice[2]).duplicate
        ),
        (two.id, Some(3), false)
    );
    assert_eq!(
        ok(&twice[3]),
        &Receipt {
            duplicate: true,
            ..ok(&twice[2]).clone()
        },
        "answered in the first one's room"
    );

    // A row that breaks a constraint (a reply to no message) fails its
    // transaction as a constraint error, so the committer retries the others
    // alone: the bad row is not stored, its seq not spent and its client_id
    // not used up. A post to a room that does not exist is refused.
    let bad = commit(
        store,
        &[
            entry(
                &ann,
                "c6",
                Command::Post {
                    room_id: one.id,
                    body: "lost with its transaction".into(),
                    mentions: Vec::new(),
                    reply_to: Some(i64::MAX),
                },
            ),
            entry(&ann, "c7", post(i64::from(i32::MAX), "nowhere")),
        ],
    )
    .await;
    assert_eq!(code(&bad[0]), ErrorCode::Internal);
    assert_eq!(code(&bad[1]), ErrorCode::NotFound);
    let again = commit(store, &[entry(&ann, "c6", post(one.id, "one-6"))]).await;
    assert_eq!(
        (ok(&again[0]).seq, ok(&again[0]).duplicate),
        (Some(7), false)
    );

    // History: the newest `limit` below `before`, ascending, with authors,
    // and whether older ones exist.
    let bodies = |page: &[StoredMessage]| page.iter().map(|m| m.body.clone()).collect::<Vec<_>>();
    let latest = e.history(one.id, None, 2).await.unwrap();
    assert_eq!(bodies(&latest.messages), ["one-5", "one-6"]);
    assert!(latest.has_more);
    let first = &latest.messages[0];
    assert_eq!(
        (first.seq, first.author.id, first.author.name.as_str()),
        (6, bob.id, "bob")
    );
    assert_eq!((first.client_id.as_str(), first.ts), ("c5", NOW));
    let older = e.history(one.id, Some(first.seq), 4).await.unwrap();
    assert_eq!(
        bodies(&older.messages),
        ["one-1", "one-2", "one-3", "one-4"]
    );
    assert!(!older.has_more, "the page reaches the first message");
    let none = e.history(one.id, Some(2), 2).await.unwrap();
    assert!(none.messages.is_empty() && !none.has_more);
    let all = e.history(one.id, None, 50).await.unwrap();
    assert_eq!(
        bodies(&all.messages),
        ["one-1", "one-2", "one-3", "one-4", "one-5", "one-6"]
    );
    assert!(!all.has_more);
    assert_eq!(
        bodies(&e.history(two.id, None, 50).await.unwrap().messages),
        ["two-1", "two-2"]
    );

    // Range: after < seq <= upto, ascending, at most `limit`.
    let range = e.range(one.id, 2, 5, 2).await.unwrap();
    assert_eq!(bodies(&range), ["one-2", "one-3"]);
    assert_eq!(bodies(&e.range(one.id, 6, 7, 10).await.unwrap()), ["one-6"]);
    assert!(e.range(one.id, 7, 10, 10).await.unwrap().is_empty());

    // Each room's seq counter, as the rooms list gives it.
    let rooms = store.rooms.rooms().await.unwrap();
    let last = |id: i64| rooms.iter().find(|r| r.id == id).unwrap().last_seq;
    assert_eq!((last(one.id), last(two.id)), (7, 3));

    // A batch larger than one statement may bind: seqs still dense per
    // room, every row its own message, results in the batch's order.
    let big = store
        .rooms
        .create_room("big", "big", ann.id, NOW)
        .await
        .unwrap();
    let joined = commit(store, &[entry(&bob, "j3", join(big.id))]).await;
    assert_eq!(seqs(&joined), [Some(1)]);
    let rows: Vec<(i64, Entry)> = (0..6000)
        .map(|i| {
            let key = format!("big-{i}");
            let room_id = if i % 3 == 0 { two.id } else { big.id };
            let author = if i % 2 == 0 { &ann } else { &bob };
            (room_id, entry(author, &key, post(room_id, &key)))
        })
        .collect();
    let batch: Vec<Entry> = rows.iter().map(|(_, e)| e.clone()).collect();
    let done = commit(store, &batch).await;
    let (mut in_two, mut in_big) = (3, 1);
    for ((room_id, _), answer) in rows.iter().zip(&done) {
        let next = if *room_id == two.id {
            &mut in_two
        } else {
            &mut in_big
        };
        *next += 1;
        assert_eq!(
            (ok(answer).room_id, ok(answer).seq, ok(answer).duplicate),
            (*room_id, Some(*next), false)
        );
    }
    assert_eq!(
        done.iter()
            .map(|a| ok(a).message_id)
            .collect::<HashSet<_>>()
            .len(),
        6000
    );
    let page = e.history(big.id, None, 1).await.unwrap();
    assert_eq!(
        (page.messages[0].seq, page.messages[0].body.as_str()),
        (in_big, "big-5999")
    );
    // Repeating all of it stores nothing and answers each with its original.
    let again = commit(store, &batch).await;
    assert!(again.iter().zip(&done).all(|(a, d)| ok(a)
        == &Receipt {
            duplicate: true,
            ..ok(d).clone()
        }));
    let rooms = store.rooms.rooms().await.unwrap();
    let last = |id: i64| rooms.iter().find(|r| r.id == id).unwrap().last_seq;
    assert_eq!((last(two.id), last(big.id)), (in_two, in_big));
}

/// The committer's transaction: every step of a batch, read back, and a
/// dropped transaction leaves nothing behind.
async fn event_tx(store: &Store) {
    let ann = store.accounts.create_guest("tx-ann", NOW).await.unwrap();
    let bob = store.accounts.create_guest("tx-bob", NOW).await.unwrap();

    // A creation: the room and its owner's join, at seq 1.
    let mut tx = store.events.begin().await.unwrap();
    assert_eq!(
        tx.names_taken(&["general", "tx-room"]).await.unwrap(),
        ["general"]
    );
    let ids = tx
        .insert_rooms(&[NewRoom {
            kind: RoomKind::Public,
            name: "Tx-Room",
            name_key: "tx-room",
            topic: "",
            created_by: ann.id,
            last_seq: 1,
            ts: NOW,
        }])
        .await
        .unwrap();
    let room = ids[0];
    tx.append_events(&[NewEvent {
        room_id: room,
        seq: 1,
        kind: "member_joined",
        actor_id: Some(ann.id),
        target_id: Some(ann.id),
        message_id: None,
        payload: Some(r#"{"role":"owner","silent":false}"#),
        ts: NOW,
    }])
    .await
    .unwrap();
    tx.apply_members(&[MemberChange {
        room_id: room,
        user_id: ann.id,
        join: Some(WireRole::Owner),
        seq: 1,
        ts: NOW,
    }])
    .await
    .unwrap();
    tx.record(&[Done {
        user_id: ann.id,
        client_id: "c-create",
        kind: "create_room",
        room_id: Some(room),
        result: "{}",
        ts: NOW,
    }])
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // Bob joins and posts; ann renames, sets the topic and marks read.
    let mut tx = store.events.begin().await.unwrap();
    assert_eq!(
        tx.claim(&[(ann.id, "c-create"), (bob.id, "c-create")])
            .await
            .unwrap(),
        [
            Claim::Done {
                kind: "create_room".into(),
                room_id: Some(room),
                result: Some("{}".into()),
            },
            Claim::New
        ]
    );
    let rooms = tx.rooms(&[room, i64::MAX]).await.unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(
        (
            rooms[0].last_seq,
            rooms[0].member_count,
            rooms[0].name.as_deref()
        ),
        (1, 1, Some("Tx-Room"))
    );
    assert_eq!(
        tx.standings(&[(room, ann.id), (room, bob.id)])
            .await
            .unwrap(),
        [(room, ann.id, Standing::Member(WireRole::Owner))]
    );
    assert_eq!(
        tx.reserve_seqs(&[(room, 4)]).await.unwrap(),
        [(room, 2)],
        "seqs 2..=5"
    );
    tx.apply_members(&[MemberChange {
        room_id: room,
        user_id: bob.id,
        join: Some(WireRole::Member),
        seq: 2,
        ts: NOW,
    }])
    .await
    .unwrap();
    let message = tx
        .insert_messages(&[MessageRow {
            room_id: room,
            seq: 3,
            author_id: bob.id,
            body: "hello",
            client_id: "c-post",
            reply_to: None,
            mentions: None,
            ts: NOW,
        }])
        .await
        .unwrap()[0];
    let event = |seq, kind, actor: i64, message_id, payload| NewEvent {
        room_id: room,
        seq,
        kind,
        actor_id: Some(actor),
        target_id: None,
        message_id,
        payload,
        ts: NOW,
    };
    tx.append_events(&[
        NewEvent {
            target_id: Some(bob.id),
            ..event(
                2,
                "member_joined",
                bob.id,
                None,
                Some(r#"{"role":"member","silent":false}"#),
            )
        },
        event(3, "posted", bob.id, Some(message), None),
        event(
            4,
            "renamed",
            ann.id,
            None,
            Some(r#"{"name":"Tx","old_name":"Tx-Room"}"#),
        ),
        event(5, "topic_changed", ann.id, None, Some(r#"{"topic":"t"}"#)),
    ])
    .await
    .unwrap();
    tx.update_rooms(&[
        RoomChange {
            room_id: room,
            name: Some(("Tx", "tx")),
            topic: None,
        },
        RoomChange {
            room_id: room,
            name: None,
            topic: Some("t"),
        },
    ])
    .await
    .unwrap();
    assert_eq!(
        tx.mark_read(&[(room, ann.id, 99), (room, i64::MAX, 1)])
            .await
            .unwrap(),
        [ReadState {
            room_id: room,
            user_id: ann.id,
            last_read_seq: 5,
            unread: 0,
            mention_count: 0
        }],
        "clamped to the room's end; non-members ignored"
    );
    tx.commit().await.unwrap();

    let mut tx = store.events.begin().await.unwrap();
    let state = tx.rooms(&[room]).await.unwrap().remove(0);
    assert_eq!(
        (
            state.name.as_deref(),
            state.name_key.as_deref(),
            state.topic.as_str()
        ),
        (Some("Tx"), Some("tx"), "t")
    );
    assert_eq!((state.last_seq, state.member_count), (5, 2));
    // A leave moves member_count; leaving twice does not.
    let leave = MemberChange {
        room_id: room,
        user_id: bob.id,
        join: None,
        seq: 6,
        ts: NOW,
    };
    tx.apply_members(&[leave, leave]).await.unwrap();
    assert_eq!(tx.rooms(&[room]).await.unwrap()[0].member_count, 1);
    assert!(tx.standings(&[(room, bob.id)]).await.unwrap().is_empty());
    // A missing room cannot reserve seqs.
    assert!(tx
        .reserve_seqs(&[(i64::MAX, 1)])
        .await
        .unwrap_err()
        .is_constraint());
    drop(tx);

    // Dropped: bob is still a member.
    let mut tx = store.events.begin().await.unwrap();
    assert_eq!(tx.rooms(&[room]).await.unwrap()[0].member_count, 2);
    let page = store.events.history(room, None, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].seq, 3);
    drop(tx);
}

/// Access facts, the sidebar's summaries and name lookups, from state the
/// committer wrote.
async fn read_side(store: &Store) {
    let r = &store.rooms;
    let ann = guest(store, "rs-ann").await;
    let bob = guest(store, "rs-bob").await;
    let cat = guest(store, "rs-cat").await;
    // Created in the opposite order of their names: ids do not sort them.
    let zed = create(store, &ann, "RS-Zed", "rs-zed").await;
    let alpha = create(store, &ann, "RS-Alpha", "rs-alpha").await;
    let general = general(store).await.id;
    // zed: 1 ann joins (create), 2 bob joins, then posts 3..=7.
    let answers = commit(
        store,
        &[
            entry(&bob, "j-zed", join(zed)),
            entry(&ann, "a1", post(zed, "a1")),
            entry(&bob, "b1", post(zed, "b1")),
            entry(&ann, "a2", post(zed, "a2")),
            entry(&bob, "b2", post(zed, "b2")),
            entry(&bob, "b3", post(zed, "b3")),
        ],
    )
    .await;
    assert_eq!(
        seqs(&answers),
        (2..=7).map(Some).collect::<Vec<_>>(),
        "dense seqs"
    );

    // Access: the room's kind and where the user stands; None for no room.
    let public = |standing| {
        Some(Access {
            kind: RoomKind::Public,
            standing,
        })
    };
    assert_eq!(
        r.access(zed, ann.id).await.unwrap(),
        public(Standing::Member(WireRole::Owner))
    );
    assert_eq!(
        r.access(zed, bob.id).await.unwrap(),
        public(Standing::Member(WireRole::Member))
    );
    assert_eq!(
        r.access(zed, cat.id).await.unwrap(),
        public(Standing::Outsider)
    );
    assert_eq!(r.access(i64::from(i32::MAX), ann.id).await.unwrap(), None);

    // my_rooms: joined rooms in name-key order; unread counts others' posts
    // above the read marker only (a join has read up to itself).
    let mine = r.my_rooms(ann.id).await.unwrap();
    assert_eq!(
        mine.iter().map(|s| s.id).collect::<Vec<_>>(),
        [general, alpha, zed],
        "'general' < 'rs-alpha' < 'rs-zed', whatever the ids"
    );
    let zed_for_ann = RoomSummary {
        id: zed,
        kind: RoomKind::Public,
        name: Some("RS-Zed".into()),
        topic: String::new(),
        last_seq: 7,
        member_count: 2,
        role: Some(WireRole::Owner),
        last_read_seq: 1,
        unread: 3,
        mentions: 0,
    };
    assert_eq!(mine[2], zed_for_ann, "bob's b1, b2, b3; not ann's own");
    let bobs = r.my_rooms(bob.id).await.unwrap();
    assert_eq!(
        bobs.iter().map(|s| s.id).collect::<Vec<_>>(),
        [general, zed]
    );
    assert_eq!(
        (bobs[1].role, bobs[1].last_read_seq, bobs[1].unread),
        (Some(WireRole::Member), 2, 2),
        "ann's a1 and a2, above bob's join"
    );
    assert!(r
        .my_rooms(cat.id)
        .await
        .unwrap()
        .iter()
        .all(|s| s.id != zed));

    // The marker moves: only what is above it stays unread.
    let marked = commit(store, &[mark_read(&ann, zed, 6), mark_read(&bob, zed, 4)]).await;
    assert!(marked.iter().all(|a| a.is_ok()));
    let mine = r.my_rooms(ann.id).await.unwrap();
    assert_eq!((mine[2].last_read_seq, mine[2].unread), (6, 1), "b3");
    let bobs = r.my_rooms(bob.id).await.unwrap();
    assert_eq!((bobs[1].last_read_seq, bobs[1].unread), (4, 1), "a2");

    // Unread stops counting at 1000.
    let batch: Vec<Entry> = std::iter::once(entry(&bob, "j-alpha", join(alpha)))
        .chain((0..1001).map(|i| entry(&bob, &format!("many-{i}"), post(alpha, "x"))))
        .collect();
    assert!(commit(store, &batch).await.iter().all(|a| a.is_ok()));
    let mine = r.my_rooms(ann.id).await.unwrap();
    assert_eq!(
        (
            mine[1].id,
            mine[1].unread,
            mine[1].last_seq,
            mine[1].member_count
        ),
        (alpha, 1000, 1003, 2)
    );

    // summary: the same shape for one room; for a non-member no role and
    // nothing unread, whatever the room holds.
    let zed_for_ann = RoomSummary {
        last_read_seq: 6,
        unread: 1,
        ..zed_for_ann
    };
    assert_eq!(
        r.summary(zed, ann.id).await.unwrap(),
        Some(zed_for_ann.clone())
    );
    assert_eq!(
        r.summary(zed, cat.id).await.unwrap(),
        Some(RoomSummary {
            role: None,
            last_read_seq: 0,
            unread: 0,
            mentions: 0,
            ..zed_for_ann
        })
    );
    assert_eq!(r.summary(i64::from(i32::MAX), ann.id).await.unwrap(), None);

    // A member who left is an outsider again, and the room leaves their list.
    let left = commit(
        store,
        &[entry(&bob, "l-alpha", Command::Leave { room_id: alpha })],
    )
    .await;
    assert!(left[0].is_ok());
    assert_eq!(
        r.access(alpha, bob.id).await.unwrap(),
        public(Standing::Outsider)
    );
    assert!(r
        .my_rooms(bob.id)
        .await
        .unwrap()
        .iter()
        .all(|s| s.id != alpha));
    assert_eq!(r.summary(alpha, bob.id).await.unwrap().unwrap().role, None);

    // Public rooms by name key; a rename moves the key.
    assert_eq!(r.public_by_name("rs-zed").await.unwrap(), Some(zed));
    assert_eq!(r.public_by_name("RS-Zed").await.unwrap(), None, "keys only");
    assert_eq!(r.public_by_name("rs-nothing").await.unwrap(), None);
    let renamed = commit(
        store,
        &[entry(
            &ann,
            "rename-alpha",
            Command::Rename {
                room_id: alpha,
                name: "ZZ-Omega".into(),
                name_key: "zz-omega".into(),
            },
        )],
    )
    .await;
    assert!(renamed[0].is_ok());
    assert_eq!(r.public_by_name("rs-alpha").await.unwrap(), None);
    assert_eq!(r.public_by_name("zz-omega").await.unwrap(), Some(alpha));
    // The order follows the new key: 'general' < 'rs-zed' < 'zz-omega'.
    let mine = r.my_rooms(ann.id).await.unwrap();
    assert_eq!(
        mine.iter().map(|s| s.id).collect::<Vec<_>>(),
        [general, zed, alpha]
    );

    // last_seqs: the rooms that exist, however many are asked at once.
    let mut asked: Vec<i64> = (1..=40_000).map(|i| i64::from(i32::MAX) - i).collect();
    asked.extend([zed, alpha]);
    let mut got = r.last_seqs(&asked).await.unwrap();
    got.sort_unstable();
    let mut want = vec![(zed, 7), (alpha, 1005)];
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(r.last_seqs(&[]).await.unwrap().is_empty());
}

/// The directory: public rooms whose key contains the query literally, in
/// key order, paged by an opaque cursor.
async fn directory(store: &Store) {
    let r = &store.rooms;
    let ann = guest(store, "dq-ann").await;
    let bob = guest(store, "dq-bob").await;
    // '%' sorts before '-': "dq%x" comes first.
    let mut ids = std::collections::HashMap::new();
    for key in ["dq-e", "dq-c", "dq%x", "dq-a", "dq-d", "dq-b"] {
        ids.insert(key, create(store, &ann, &key.to_uppercase(), key).await);
    }
    assert!(commit(store, &[entry(&bob, "dq-join", join(ids["dq-b"]))]).await[0].is_ok());
    let keys = |rooms: &[DirectoryEntry]| {
        rooms
            .iter()
            .map(|e| {
                let key = ids.iter().find(|(_, id)| **id == e.id).map(|(k, _)| *k);
                key.unwrap_or("?")
            })
            .collect::<Vec<_>>()
    };

    // Three pages of two; `next` only while more follow.
    let page1 = r.directory(bob.id, "dq", None, 2).await.unwrap();
    assert_eq!(keys(&page1.rooms), ["dq%x", "dq-a"]);
    let next = page1.next.clone().expect("more after page 1");
    let page2 = r.directory(bob.id, "dq", Some(&next), 2).await.unwrap();
    assert_eq!(keys(&page2.rooms), ["dq-b", "dq-c"]);
    let next = page2.next.clone().expect("more after page 2");
    let page3 = r.directory(bob.id, "dq", Some(&next), 2).await.unwrap();
    assert_eq!(keys(&page3.rooms), ["dq-d", "dq-e"]);
    assert_eq!(page3.next, None, "the last page");
    // Each entry as stored, and `joined` for the viewer.
    assert_eq!(
        page2.rooms[0],
        DirectoryEntry {
            id: ids["dq-b"],
            name: "DQ-B".into(),
            topic: String::new(),
            member_count: 2,
            joined: true,
        }
    );
    assert!(!page2.rooms[1].joined);
    let as_ann = r.directory(ann.id, "dq", None, 10).await.unwrap();
    assert_eq!(as_ann.rooms.len(), 6);
    assert!(as_ann.rooms.iter().all(|e| e.joined), "ann owns them all");
    assert_eq!(as_ann.next, None);

    // The query is literal: '%' and '_' are no wildcards.
    let pct = r.directory(bob.id, "q%", None, 10).await.unwrap();
    assert_eq!(keys(&pct.rooms), ["dq%x"]);
    assert!(r
        .directory(bob.id, "q_", None, 10)
        .await
        .unwrap()
        .rooms
        .is_empty());
    assert_eq!(
        keys(&r.directory(bob.id, "q-c", None, 10).await.unwrap().rooms),
        ["dq-c"]
    );
    // An empty query lists every public room, general too, in key order.
    let everything = r.directory(bob.id, "", None, 1000).await.unwrap();
    assert!(everything.rooms.iter().any(|e| e.name == "general"));
    assert_eq!(
        everything
            .rooms
            .iter()
            .filter(|e| ids.values().any(|id| *id == e.id))
            .count(),
        6
    );
    assert_eq!(everything.next, None);

    // Any cursor is read as a place in key order, never an error.
    let odd = r.directory(bob.id, "dq", Some("dq-bb"), 10).await.unwrap();
    assert_eq!(keys(&odd.rooms), ["dq-c", "dq-d", "dq-e"]);
    let start = r.directory(bob.id, "dq", Some(""), 1).await.unwrap();
    assert_eq!(keys(&start.rooms), ["dq%x"]);
    assert!(start.next.is_some());
    let past = r
        .directory(bob.id, "dq", Some("\u{10FFFF}"), 10)
        .await
        .unwrap();
    assert!(past.rooms.is_empty() && past.next.is_none());
}

/// Member lists: joined members in join order, paged by user id.
async fn member_list(store: &Store) {
    let r = &store.rooms;
    let u1 = guest(store, "ml-1").await;
    let u2 = store
        .accounts
        .sign_in_identity(
            "https://id.example",
            "ml-2",
            &Profile {
                name: "ml-2".into(),
                email: Some("ml2@x.example".into()),
                picture: Some("https://pics.example/ml-2".into()),
            },
            NOW,
        )
        .await
        .unwrap()
        .user
        .public();
    let u3 = guest(store, "ml-3").await;
    let u4 = guest(store, "ml-4").await;
    let outsider = guest(store, "ml-5").await;
    // u3 creates it at T; u4 joins at T+1; u1 and u2 at T+2: neither id nor
    // arrival order alone gives the list.
    let t = NOW + HOUR;
    let created = commit_at(
        store,
        &[entry(
            &u3,
            "ml-create",
            Command::CreateRoom {
                name: "ML".into(),
                name_key: "ml".into(),
                topic: String::new(),
            },
        )],
        t,
    )
    .await;
    let room = ok(&created[0]).room_id;
    assert!(commit_at(store, &[entry(&u4, "ml-j", join(room))], t + 1).await[0].is_ok());
    let joined = commit_at(
        store,
        &[
            entry(&u2, "ml-j", join(room)),
            entry(&u1, "ml-j", join(room)),
        ],
        t + 2,
    )
    .await;
    assert!(joined.iter().all(|a| a.is_ok()));
    let info = |user: &UserInfo, role, joined_at| MemberInfo {
        user: user.clone(),
        role,
        joined_at,
    };
    let all = vec![
        info(&u3, WireRole::Owner, t),
        info(&u4, WireRole::Member, t + 1),
        info(&u1, WireRole::Member, t + 2),
        info(&u2, WireRole::Member, t + 2),
    ];
    assert_eq!(r.members(room, None, 10).await.unwrap(), all);
    assert_eq!(r.members(room, None, 2).await.unwrap(), all[..2]);
    assert_eq!(r.members(room, Some(u4.id), 2).await.unwrap(), all[2..]);
    assert_eq!(r.members(room, Some(u1.id), 2).await.unwrap(), all[3..]);
    assert!(r.members(room, Some(u2.id), 2).await.unwrap().is_empty());
    // A cursor that is no member has no place: the list starts over.
    assert_eq!(
        r.members(room, Some(outsider.id), 1).await.unwrap(),
        all[..1]
    );
    // Who left is no longer listed.
    assert!(commit(
        store,
        &[entry(&u1, "ml-l", Command::Leave { room_id: room })]
    )
    .await[0]
        .is_ok());
    assert_eq!(
        r.members(room, None, 10).await.unwrap(),
        [all[0].clone(), all[1].clone(), all[3].clone()]
    );
    assert!(r
        .members(i64::from(i32::MAX), None, 10)
        .await
        .unwrap()
        .is_empty());
}

/// A post counts for the members it mentions who have not read past it,
/// including one who joined earlier in the same batch, and not for anyone
/// who is not a member when it is posted (nor its author).
async fn mentions(store: &Store) {
    let ann = guest(store, "mn-ann").await;
    let bob = guest(store, "mn-bob").await;
    let cat = guest(store, "mn-cat").await;
    let room = create(store, &ann, "Mentions", "mentions").await;
    let answers = commit(
        store,
        &[
            entry(&bob, "mn-1", join(room)),
            entry(
                &ann,
                "mn-2",
                Command::Post {
                    room_id: room,
                    body: "@mn-bob @mn-cat".into(),
                    mentions: vec![bob.id, cat.id],
                    reply_to: None,
                },
            ),
            entry(&cat, "mn-3", join(room)),
        ],
    )
    .await;
    assert_eq!(seqs(&answers), [Some(2), Some(3), Some(4)]);
    let mentions = |user_id: i64| async move {
        let rooms = store.rooms.my_rooms(user_id).await.unwrap();
        rooms.into_iter().find(|r| r.id == room).unwrap().mentions
    };
    assert_eq!(mentions(bob.id).await, 1, "joined before the post");
    assert_eq!(mentions(cat.id).await, 0, "joined after it");
    assert_eq!(mentions(ann.id).await, 0, "the author");
}

/// Replay renders every kind the committer writes, from the log and the
/// messages as they are now, seqs dense.
async fn replay(store: &Store) {
    let e = &store.events;
    let ann = guest(store, "rp-ann").await;
    let bob = store
        .accounts
        .sign_in_identity(
            "https://id.example",
            "rp-bob",
            &Profile {
                name: "rp-bob".into(),
                email: None,
                picture: Some("https://pics.example/rp-bob".into()),
            },
            NOW,
        )
        .await
        .unwrap()
        .user
        .public();
    let cat = guest(store, "rp-cat").await;
    let room = create(store, &ann, "RP", "rp").await;
    let answers = commit(
        store,
        &[
            entry(
                &bob,
                "rp-1",
                Command::Join {
                    room_id: room,
                    silent: true,
                },
            ),
            entry(
                &bob,
                "rp-2",
                Command::Post {
                    room_id: room,
                    body: "hi @rp-ann".into(),
                    mentions: vec![ann.id],
                    reply_to: None,
                },
            ),
            entry(
                &ann,
                "rp-3",
                Command::Rename {
                    room_id: room,
                    name: "RP 2".into(),
                    name_key: "rp 2".into(),
                },
            ),
            entry(
                &ann,
                "rp-4",
                Command::SetTopic {
                    room_id: room,
                    topic: "plans".into(),
                },
            ),
            entry(&bob, "rp-5", Command::Leave { room_id: room }),
            entry(&cat, "rp-6", join(room)),
        ],
    )
    .await;
    assert_eq!(seqs(&answers), (2..=7).map(Some).collect::<Vec<_>>());
    let hi = ok(&answers[1]).message_id.unwrap();
    let reply = commit(
        store,
        &[entry(
            &cat,
            "rp-7",
            Command::Post {
                room_id: room,
                body: "hello".into(),
                mentions: Vec::new(),
                reply_to: Some(hi),
            },
        )],
    )
    .await;
    let reply_id = ok(&reply[0]).message_id.unwrap();
    let at = |seq, kind| Event {
        room_id: room,
        seq,
        ts: NOW,
        kind,
    };
    let message = |id, seq, author: &UserInfo, body: &str, client_id: &str| Message {
        id,
        seq,
        author: author.clone(),
        body: body.into(),
        ts: NOW,
        client_id: client_id.into(),
        edited_at: None,
        deleted: false,
        reply_to: None,
        mentions: Vec::new(),
    };
    let want = vec![
        at(
            1,
            EventKind::MemberJoined {
                user: ann.clone(),
                role: WireRole::Owner,
                silent: false,
            },
        ),
        at(
            2,
            EventKind::MemberJoined {
                user: bob.clone(),
                role: WireRole::Member,
                silent: true,
            },
        ),
        at(
            3,
            EventKind::Posted {
                message: Message {
                    mentions: vec![ann.id],
                    ..message(hi, 3, &bob, "hi @rp-ann", "rp-2")
                },
            },
        ),
        at(
            4,
            EventKind::Renamed {
                name: "RP 2".into(),
                old_name: "RP".into(),
                by: ann.clone(),
            },
        ),
        at(
            5,
            EventKind::TopicChanged {
                topic: "plans".into(),
                by: ann.clone(),
            },
        ),
        at(6, EventKind::MemberLeft { user: bob.clone() }),
        at(
            7,
            EventKind::MemberJoined {
                user: cat.clone(),
                role: WireRole::Member,
                silent: false,
            },
        ),
        at(
            8,
            EventKind::Posted {
                message: Message {
                    reply_to: Some(hi),
                    ..message(reply_id, 8, &cat, "hello", "rp-7")
                },
            },
        ),
    ];
    assert_eq!(e.replay(room, 0, 100).await.unwrap(), want);
    assert_eq!(e.replay(room, 3, 2).await.unwrap(), want[3..5]);
    assert_eq!(e.replay(room, 7, 100).await.unwrap(), want[7..]);
    assert!(e.replay(room, 8, 100).await.unwrap().is_empty());
    assert!(e
        .replay(i64::from(i32::MAX), 0, 100)
        .await
        .unwrap()
        .is_empty());

    // A sign-up's silent join of general, as the committer writes it.
    let before = general(store).await;
    let dan = guest(store, "rp-dan").await;
    assert_eq!(
        e.replay(before.id, before.last_seq, 10).await.unwrap(),
        [Event {
            room_id: before.id,
            seq: before.last_seq + 1,
            ts: NOW,
            kind: EventKind::MemberJoined {
                user: dan,
                role: WireRole::Member,
                silent: true,
            },
        }]
    );
}

/// Pages around one message: half before, the message, the rest after.
async fn around(store: &Store) {
    let e = &store.events;
    let ann = guest(store, "ar-ann").await;
    let room = create(store, &ann, "AR", "ar").await;
    let other = create(store, &ann, "AR 2", "ar 2").await;
    let batch: Vec<Entry> = (1..=7)
        .map(|i| entry(&ann, &format!("ar-{i}"), post(room, &format!("p{i}"))))
        .chain([entry(&ann, "ar-other", post(other, "elsewhere"))])
        .collect();
    let answers = commit(store, &batch).await;
    let id = |i: usize| ok(&answers[i - 1]).message_id.unwrap();
    let page = |p: &AroundPage| {
        (
            p.messages
                .iter()
                .map(|m| m.body.clone())
                .collect::<Vec<_>>(),
            p.has_before,
            p.has_after,
        )
    };
    let around = |i: usize, limit: u32| async move {
        page(
            &e.around(room, id(i), limit)
                .await
                .unwrap()
                .expect("in the room"),
        )
    };
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // At the start: nothing before; the rest after.
    assert_eq!(around(1, 4).await, (strings(&["p1", "p2"]), false, true));
    // In the middle: two before, one after.
    assert_eq!(
        around(4, 4).await,
        (strings(&["p2", "p3", "p4", "p5"]), true, true)
    );
    assert_eq!(
        around(4, 7).await,
        (
            strings(&["p1", "p2", "p3", "p4", "p5", "p6", "p7"]),
            false,
            false
        )
    );
    // At the end: nothing after.
    assert_eq!(
        around(7, 4).await,
        (strings(&["p5", "p6", "p7"]), true, false)
    );
    // The messages are whole.
    let full = e.around(room, id(4), 1).await.unwrap().unwrap();
    assert_eq!(full.messages.len(), 1);
    let m = &full.messages[0];
    assert_eq!(
        (m.id, m.seq, m.author.id, m.client_id.as_str(), m.ts),
        (id(4), 5, ann.id, "ar-4", NOW)
    );
    // Not in that room (or nowhere): None.
    assert_eq!(e.around(other, id(4), 4).await.unwrap(), None);
    assert_eq!(e.around(room, id(8), 4).await.unwrap(), None);
    assert_eq!(e.around(room, i64::MAX, 4).await.unwrap(), None);
}

/// A hook that records what it was given, and fails when told to.
struct Recorder {
    seen: Mutex<Vec<AppendedEvent>>,
    fail: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl SqliteHook for Recorder {
    async fn before_commit(
        &self,
        conn: &mut sqlx::SqliteConnection,
        events: &[AppendedEvent],
    ) -> server::store::Result<()> {
        self.seen.lock().unwrap().extend_from_slice(events);
        // The hook writes in the batch's transaction.
        sqlx::query("UPDATE write_probe SET at = at WHERE id = 1")
            .execute(&mut *conn)
            .await?;
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Missing("hook"));
        }
        Ok(())
    }
}

/// A failing hook rolls back the batch: messages and events together.
#[tokio::test]
async fn sqlite_hook_failure_rolls_back_messages_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let hook = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
        fail: false.into(),
    });
    let store = Store::new(
        SqliteStore::open_with_hooks(&url, vec![hook.clone() as Arc<dyn SqliteHook>])
            .await
            .unwrap(),
    );
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    // Not joined to general: the hook sees this test's events only.
    let ann = loner(&store, "ann").await;
    let room = store
        .rooms
        .create_room("r", "r", ann.id, NOW)
        .await
        .unwrap();
    let kept = commit(&store, &[entry(&ann, "k1", post(room.id, "kept"))]).await;
    assert_eq!(seqs(&kept), [Some(1)]);
    {
        let seen = hook.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].seq, seen[0].kind.as_str()), (1, "posted"));
    }

    hook.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let lost = commit(
        &store,
        &[
            entry(&ann, "k2", post(room.id, "lost")),
            entry(&ann, "k3", post(room.id, "lost too")),
        ],
    )
    .await;
    assert!(
        lost.iter().all(|a| code(a) == ErrorCode::Unavailable),
        "{lost:?}"
    );
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(room.id)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM messages WHERE room_id = ?").await,
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM room_events WHERE room_id = ?").await,
        1
    );
    assert_eq!(count("SELECT last_seq FROM rooms WHERE id = ?").await, 1);
    assert_eq!(
        count("SELECT COUNT(*) FROM commands WHERE room_id = ?").await,
        1,
        "the keys are free for a retry"
    );

    // The writer recovers: the next batch (the retry) commits.
    hook.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let retry = commit(&store, &[entry(&ann, "k2", post(room.id, "lost"))]).await;
    assert_eq!(
        (ok(&retry[0]).seq, ok(&retry[0]).duplicate),
        (Some(2), false)
    );
}

/// A fresh SQLite store and a pool on its file, for rows no command writes
/// yet.
async fn sqlite() -> (Store, sqlx::SqlitePool, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let store = server::store::open(&url).await.unwrap();
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    (store, db, dir)
}

/// Summaries, access and the directory over rows no command writes yet
/// (a DM, a private room, invitations, bans, mention counts, a deleted
/// post), written with SQL.
#[tokio::test]
async fn sqlite_read_side_reads_dms_invitations_bans_mentions_and_deletions() {
    let (store, db, _dir) = sqlite().await;
    let r = &store.rooms;
    let (ann, bob, cat) = (
        guest(&store, "ann").await,
        guest(&store, "bob").await,
        guest(&store, "cat").await,
    );
    let general = general(&store).await.id;
    let room = create(&store, &ann, "Room", "room").await;
    let dm: i64 = sqlx::query_scalar(
        "INSERT INTO rooms (kind, dm_key, member_count, created_at)
         VALUES ('dm', ?, 2, ?) RETURNING id",
    )
    .bind(format!("{},{}", ann.id, bob.id))
    .bind(NOW)
    .fetch_one(&db)
    .await
    .unwrap();
    let secret: i64 = sqlx::query_scalar(
        "INSERT INTO rooms (kind, name, name_key, created_at)
         VALUES ('private', 'Room Secret', 'room secret', ?) RETURNING id",
    )
    .bind(NOW)
    .fetch_one(&db)
    .await
    .unwrap();
    for (room_id, user_id, state) in [
        (dm, ann.id, "joined"),
        (dm, bob.id, "joined"),
        (secret, cat.id, "invited"),
        (room, cat.id, "banned"),
    ] {
        sqlx::query("INSERT INTO members (room_id, user_id, state, joined_at) VALUES (?, ?, ?, ?)")
            .bind(room_id)
            .bind(user_id)
            .bind(state)
            .bind(NOW)
            .execute(&db)
            .await
            .unwrap();
    }

    // DMs have no name: first, by id.
    let mine = r.my_rooms(ann.id).await.unwrap();
    assert_eq!(
        mine.iter().map(|s| s.id).collect::<Vec<_>>(),
        [dm, general, room]
    );
    assert_eq!(
        (mine[0].kind, mine[0].name.as_deref()),
        (RoomKind::Dm, None)
    );

    // Invited and banned: their standing, no role, not in their list, not
    // listed as members, not `joined` in the directory.
    let access = |kind, standing| Some(Access { kind, standing });
    assert_eq!(
        r.access(secret, cat.id).await.unwrap(),
        access(RoomKind::Private, Standing::Invited)
    );
    assert_eq!(
        r.access(room, cat.id).await.unwrap(),
        access(RoomKind::Public, Standing::Banned)
    );
    assert_eq!(
        r.access(dm, cat.id).await.unwrap(),
        access(RoomKind::Dm, Standing::Outsider)
    );
    assert_eq!(
        r.access(dm, bob.id).await.unwrap(),
        access(RoomKind::Dm, Standing::Member(WireRole::Member))
    );
    for id in [secret, room] {
        let seen = r.summary(id, cat.id).await.unwrap().unwrap();
        assert_eq!(
            (seen.role, seen.last_read_seq, seen.unread),
            (None, 0, 0),
            "room {id}"
        );
    }
    assert_eq!(
        r.my_rooms(cat.id)
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        [general]
    );
    assert_eq!(
        r.members(room, None, 10).await.unwrap().len(),
        1,
        "ann only"
    );
    // A private room is not in the directory, nor found by name.
    let listed = r.directory(cat.id, "room", None, 10).await.unwrap();
    assert_eq!(listed.rooms.len(), 1);
    assert_eq!((listed.rooms[0].id, listed.rooms[0].joined), (room, false));
    assert_eq!(r.public_by_name("room secret").await.unwrap(), None);

    // Bob posts three (seqs 3..=5); the second is deleted, so two count.
    assert!(commit(&store, &[entry(&bob, "j", join(room))]).await[0].is_ok());
    let posted = commit(
        &store,
        &[
            entry(&bob, "p1", post(room, "p1")),
            entry(&bob, "p2", post(room, "p2")),
            entry(&bob, "p3", post(room, "p3")),
        ],
    )
    .await;
    assert_eq!(seqs(&posted), [Some(3), Some(4), Some(5)]);
    let id = |i: usize| ok(&posted[i]).message_id.unwrap();
    sqlx::query("UPDATE messages SET body = '', deleted_at = ? WHERE id = ?")
        .bind(NOW + 1)
        .bind(id(1))
        .execute(&db)
        .await
        .unwrap();
    let zoom = |s: Option<RoomSummary>| {
        let s = s.unwrap();
        (s.last_read_seq, s.unread, s.mentions)
    };
    assert_eq!(zoom(r.summary(room, ann.id).await.unwrap()), (1, 2, 0));

    // Mentions of ann in p1 and p3: the count the marker keeps.
    for (seq, message_id) in [(3, id(0)), (5, id(2))] {
        sqlx::query("INSERT INTO mentions (user_id, room_id, seq, message_id) VALUES (?, ?, ?, ?)")
            .bind(ann.id)
            .bind(room)
            .bind(seq)
            .bind(message_id)
            .execute(&db)
            .await
            .unwrap();
    }
    assert!(commit(&store, &[mark_read(&ann, room, 1)]).await[0].is_ok());
    assert_eq!(zoom(r.summary(room, ann.id).await.unwrap()), (1, 2, 2));
    assert_eq!(
        r.my_rooms(ann.id).await.unwrap()[2].mentions,
        2,
        "my_rooms reads the same count"
    );
    assert!(commit(&store, &[mark_read(&ann, room, 4)]).await[0].is_ok());
    assert_eq!(zoom(r.summary(room, ann.id).await.unwrap()), (4, 1, 1));
}

/// Replay and pages around a message show messages as they are now (edited,
/// deleted), and a replay skips the kinds this build cannot render.
#[tokio::test]
async fn sqlite_replay_shows_messages_as_they_are_now_and_skips_unknown_kinds() {
    let (store, db, _dir) = sqlite().await;
    let e = &store.events;
    let ann = guest(&store, "ann").await;
    let room = create(&store, &ann, "Room", "room").await;
    let posted = commit(
        &store,
        &[
            entry(&ann, "p1", post(room, "first")),
            entry(&ann, "p2", post(room, "second")),
        ],
    )
    .await;
    let (first, second) = (
        ok(&posted[0]).message_id.unwrap(),
        ok(&posted[1]).message_id.unwrap(),
    );
    sqlx::query("UPDATE messages SET body = 'first, edited', edited_at = ? WHERE id = ?")
        .bind(NOW + 5)
        .bind(first)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE messages SET body = '', deleted_at = ? WHERE id = ?")
        .bind(NOW + 6)
        .bind(second)
        .execute(&db)
        .await
        .unwrap();
    let events = e.replay(room, 1, 10).await.unwrap();
    let messages: Vec<Message> = events
        .into_iter()
        .map(|ev| match ev.kind {
            EventKind::Posted { message } => message,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        messages
            .iter()
            .map(|m| (m.id, m.body.as_str(), m.edited_at, m.deleted))
            .collect::<Vec<_>>(),
        [
            (first, "first, edited", Some(NOW + 5), false),
            (second, "", None, true)
        ]
    );
    // History and the page around a message read the same rows.
    let page = e.around(room, first, 4).await.unwrap().unwrap();
    assert_eq!(
        page.messages
            .into_iter()
            .map(|m| m.into_v2())
            .collect::<Vec<_>>(),
        messages
    );
    let history = e.history(room, None, 10).await.unwrap();
    assert_eq!(
        (history.messages[0].edited_at, history.messages[1].deleted),
        (Some(NOW + 5), true)
    );

    // Seqs 4 and 5: a kind the committer does not write yet and one no
    // build knows. Both are skipped; what follows is replayed.
    sqlx::query("UPDATE rooms SET last_seq = last_seq + 2 WHERE id = ?")
        .bind(room)
        .execute(&db)
        .await
        .unwrap();
    for (seq, kind) in [(4, "reaction_added"), (5, "hologram")] {
        sqlx::query(
            "INSERT INTO room_events (room_id, seq, kind, actor_id, payload, ts)
             VALUES (?, ?, ?, ?, '{}', ?)",
        )
        .bind(room)
        .bind(seq)
        .bind(kind)
        .bind(ann.id)
        .bind(NOW)
        .execute(&db)
        .await
        .unwrap();
    }
    let after = commit(&store, &[entry(&ann, "p3", post(room, "third"))]).await;
    assert_eq!(seqs(&after), [Some(6)]);
    let events = e.replay(room, 0, 10).await.unwrap();
    assert_eq!(
        events.iter().map(|ev| ev.seq).collect::<Vec<_>>(),
        [1, 2, 3, 6]
    );
    assert!(matches!(&events[3].kind, EventKind::Posted { message } if message.body == "third"));
}
