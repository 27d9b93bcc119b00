//! Protocol v2 (`/ws`): one event log per room, delivered per user.
//! Seqs are dense across every kind and the same for every member; resume
//! replays exactly what was missed (or says `gap`); membership decides which
//! rooms' events a connection gets, `open` which rooms' presence and typing.

mod common;

use common::{Client, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

/// Creates a room over v2 as the owner of `client`; returns its id.
async fn create(client: &mut Client, name: &str) -> i64 {
    let ack = client
        .command(json!({"type": "create_room", "name": name}))
        .await;
    ack["room_id"].as_i64().expect("room id")
}

/// Joins over v2; returns the ack.
async fn join(client: &mut Client, room_id: i64) -> Value {
    client
        .command(json!({"type": "join", "room_id": room_id}))
        .await
}

/// The room's events as stored: (seq, kind).
async fn stored(app: &TestApp, room_id: i64) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT seq, kind FROM room_events WHERE room_id = ? ORDER BY seq")
        .bind(room_id)
        .fetch_all(&app.db().await)
        .await
        .unwrap()
}

/// Collects `room_id`'s events on `client` until one with `seq` arrives.
async fn events_until(client: &mut Client, room_id: i64, seq: i64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let event = client.event(room_id).await;
        let at = event["seq"].as_i64().unwrap();
        seen.push(event);
        if at >= seq {
            return seen;
        }
    }
}

fn seqs_and_kinds(events: &[Value]) -> Vec<(i64, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn summary(hello: &Value, room_id: i64) -> Option<&Value> {
    hello["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == room_id)
}

/// `/ws` speaks v2; `/ws?v=2`, which clients dialled while v1 was served at
/// `/ws`, is the same protocol.
#[tokio::test]
async fn ws_and_ws_with_v_2_both_speak_v2() {
    let app = TestApp::spawn().await;
    let cookie = app.sign_in("ann").await;
    for path in ["/ws", "/ws?v=2"] {
        let mut client = app
            .try_ws_at(path, Some(&cookie), Some(&app.origin()), None)
            .await
            .unwrap_or_else(|e| panic!("upgrade at {path}: {e}"));
        let hello = client.expect("hello").await;
        assert_eq!(hello["protocol"], 2, "{path}: {hello}");
        client.resume(json!({})).await;
        client.send(json!({"type": "ping"})).await;
        client.expect("pong").await;
    }
}

#[tokio::test]
async fn seqs_are_dense_across_kinds_and_the_same_for_every_member() {
    let app = TestApp::spawn().await;
    let ann = app.sign_in("Ann").await;
    let bob = app.sign_in("Bob").await;
    let dan = app.sign_in("Dan").await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let mut d = app.ws(&dan).await;
    let room = create(&mut a, "Ordered").await;
    join(&mut b, room).await;

    // Two senders at once, while Dan joins and leaves and Ann renames the
    // room and sets its topic.
    for i in 0..20 {
        a.say(room, &format!("a{i}")).await;
        b.say(room, &format!("b{i}")).await;
    }
    join(&mut d, room).await;
    a.command(json!({"type": "rename", "room_id": room, "name": "Ordered 2"}))
        .await;
    d.command(json!({"type": "leave", "room_id": room})).await;
    a.command(json!({"type": "set_topic", "room_id": room, "topic": "t"}))
        .await;

    let log = stored(&app, room).await;
    let last = log.last().unwrap().0;
    assert_eq!(
        log.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>(),
        "dense"
    );
    // 1 owner join + Bob's join + 40 posts + Dan's join + rename + leave + topic.
    assert_eq!(last, 46);
    // Ann got everything from her own join (the creation) on; Bob
    // everything from his.
    let seen_a = events_until(&mut a, room, last).await;
    assert_eq!(seqs_and_kinds(&seen_a), log);
    let seen_b = events_until(&mut b, room, last).await;
    assert_eq!(seqs_and_kinds(&seen_b), log[1..].to_vec());
    // Every posted event carries its message, at the same seq as the row.
    for event in seen_a.iter().filter(|e| e["kind"] == "posted") {
        assert_eq!(event["message"]["seq"], event["seq"], "{event}");
        assert!(event["message"]["body"].is_string(), "{event}");
    }
    let renamed = seen_b.iter().find(|e| e["kind"] == "renamed").unwrap();
    assert_eq!(
        (
            &renamed["name"],
            &renamed["old_name"],
            &renamed["by"]["name"]
        ),
        (&json!("Ordered 2"), &json!("Ordered"), &json!("Ann"))
    );
}

/// Every new user joins general silently, through the committer like any
/// join: the members connected now get the `member_joined {silent: true}`
/// at general's next seq (no hole in their log), and the newcomer starts
/// with nothing unread.
#[tokio::test]
async fn a_new_users_silent_join_of_general_reaches_its_members_with_the_next_seq() {
    let app = TestApp::spawn().await;
    let ann = app.sign_in("Ann").await;
    let (mut a, hello) = app.ws_with(&ann, json!({})).await;
    let general = hello["rooms"][0]["id"].as_i64().unwrap();
    let before = hello["rooms"][0]["last_seq"].as_i64().unwrap();

    let newcomer = app.sign_in("Newcomer").await;
    let joined = a.event(general).await;
    assert_eq!(
        (
            joined["seq"].as_i64(),
            &joined["kind"],
            &joined["user"]["name"],
            &joined["silent"]
        ),
        (
            Some(before + 1),
            &json!("member_joined"),
            &json!("Newcomer"),
            &json!(true)
        ),
        "{joined}"
    );
    let log = stored(&app, general).await;
    assert_eq!(
        log.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (1..=before + 1).collect::<Vec<_>>(),
        "dense"
    );

    let (_n, hello) = app.ws_with(&newcomer, json!({})).await;
    let mine = summary(&hello, general).expect("the newcomer is in general");
    assert_eq!(
        (&mine["last_seq"], &mine["last_read_seq"], &mine["unread"]),
        (&json!(before + 1), &json!(before + 1), &json!(0)),
        "{hello}"
    );
}

#[tokio::test]
async fn resume_replays_exactly_what_was_missed_or_says_gap() {
    let app = TestApp::spawn().await;
    let ann = app.sign_in("Ann").await;
    let bob = app.sign_in("Bob").await;
    let mut a = app.ws(&ann).await;
    let room = create(&mut a, "Resume").await;
    let (mut b, hello) = app.ws_with(&bob, json!({})).await;
    assert!(summary(&hello, room).is_none());
    let joined = join(&mut b, room).await;
    let cursor = joined["seq"].as_i64().unwrap();
    drop(b);

    // 499 events while Bob is away: exactly those are replayed, then
    // `resumed`, then live.
    for i in 0..499 {
        a.say(room, &format!("m{i}")).await;
    }
    let last = cursor + 499;
    events_until(&mut a, room, last).await;
    let (mut b, hello) = app.ws_hello(&bob).await;
    assert_eq!(summary(&hello, room).unwrap()["last_seq"], last);
    b.send(json!({"type": "resume", "rooms": { room.to_string(): cursor }}))
        .await;
    let mut replayed = Vec::new();
    loop {
        let frame = b.recv().await;
        match frame["type"].as_str().unwrap() {
            "event" => replayed.push(frame["seq"].as_i64().unwrap()),
            "resumed" => {
                assert_eq!(frame["replayed"], 499);
                assert_eq!(frame["gaps"], json!([]));
                break;
            }
            "gap" => panic!("499 behind must replay: {frame}"),
            _ => {}
        }
    }
    assert_eq!(replayed, (cursor + 1..=last).collect::<Vec<_>>());
    a.say(room, "live").await;
    assert_eq!(b.event(room).await["seq"], last + 1);

    // 501 behind: `gap` with the room's last seq, no event at or below it.
    drop(b);
    for i in 0..500 {
        a.say(room, &format!("n{i}")).await;
    }
    let last = last + 501;
    events_until(&mut a, room, last).await;
    let (mut b, _) = app.ws_hello(&bob).await;
    b.send(json!({"type": "resume", "rooms": { room.to_string(): last - 501 }}))
        .await;
    let mut frames = Vec::new();
    loop {
        let frame = b.recv().await;
        let done = frame["type"] == "resumed";
        frames.push(frame);
        if done {
            break;
        }
    }
    assert_eq!(frames[0]["type"], "gap", "{frames:?}");
    assert_eq!(frames[0]["last_seq"], last);
    assert_eq!(frames.last().unwrap()["gaps"], json!([room]));
    assert!(frames.iter().all(|f| f["type"] != "event"), "{frames:?}");
    // The client reloads the latest page and continues live.
    b.send(json!({"type": "history", "room_id": room})).await;
    let page = b.expect("history").await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 50);
    assert_eq!(page["messages"][49]["seq"], last);
    a.say(room, "after the gap").await;
    assert_eq!(b.event(room).await["seq"], last + 1);

    // A second resume on one connection is refused.
    b.send(json!({"type": "resume", "rooms": {}})).await;
    assert_eq!(b.expect("error").await["code"], "bad_frame");
}

#[tokio::test]
async fn events_follow_membership_and_presence_and_typing_follow_open_rooms() {
    let app = TestApp::spawn_with(|c| c.ws_typing_every = Duration::ZERO).await;
    let ann = app.sign_in("Ann").await;
    let bob = app.sign_in("Bob").await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let one = create(&mut a, "One").await;
    let two = create(&mut a, "Two").await;
    join(&mut b, one).await;
    join(&mut b, two).await;
    a.open(one, None).await;

    // A post in a room that is not open still reaches every member.
    b.say(two, "in two").await;
    assert_eq!(a.event(two).await["message"]["body"], "in two");
    // Typing in Two (open only on Bob's side) does not reach Ann; in One it does.
    b.open(two, None).await;
    b.send(json!({"type": "typing", "room_id": two})).await;
    b.open(one, None).await;
    b.send(json!({"type": "typing", "room_id": one})).await;
    let frames = a.until_pong().await;
    let typing: Vec<&Value> = frames.iter().filter(|f| f["type"] == "typing").collect();
    assert!(typing.iter().all(|f| f["room_id"] == one), "{frames:?}");

    // Presence: opening Two shows Bob online there.
    let presence = a.open(two, None).await;
    let online: Vec<&str> = presence["online"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(online.contains(&"Bob"), "{presence}");

    // A second tab learns of a room joined in the first, then gets its events.
    let carol = app.sign_in("Carol").await;
    let mut c1 = app.ws(&carol).await;
    let mut c2 = app.ws(&carol).await;
    // Previewing is reading: a previewer's typing reaches no one.
    c1.open(one, None).await;
    c1.send(json!({"type": "typing", "room_id": one})).await;
    c1.assert_alive().await;
    b.send(json!({"type": "typing", "room_id": one})).await;
    let typing = a.expect("typing").await;
    assert_eq!(typing["user"]["name"], "Bob", "{typing}");
    join(&mut c1, one).await;
    let added = c2.expect("room_added").await;
    assert_eq!(added["room"]["id"], one);
    a.say(one, "hello carol").await;
    let posted = c2
        .expect_where("event", |f| f["room_id"] == one && f["kind"] == "posted")
        .await;
    assert_eq!(posted["message"]["body"], "hello carol");

    // A left room stops at once, on every tab.
    let left = c1.command(json!({"type": "leave", "room_id": one})).await;
    let left_at = left["seq"].as_i64().unwrap();
    c2.expect_where("room_removed", |f| f["room_id"] == one)
        .await;
    a.say(one, "after carol left").await;
    a.event(one).await;
    for tab in [&mut c1, &mut c2] {
        let frames = tab.until_pong().await;
        assert!(
            frames
                .iter()
                .all(|f| f["type"] != "event" || f["seq"].as_i64().unwrap() <= left_at),
            "{frames:?}"
        );
    }
}

#[tokio::test]
async fn hello_lists_your_rooms_only_and_does_not_grow_with_the_system() {
    let app = TestApp::spawn().await;
    let ann = app.sign_in("Ann").await;
    let mut a = app.ws(&ann).await;
    for i in 0..200 {
        create(&mut a, &format!("busy {i}")).await;
    }
    let newcomer = app.sign_in("New").await;
    let (mut n, hello) = app.ws_hello(&newcomer).await;
    let names: Vec<&str> = hello["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["general"]);
    assert!(hello.to_string().len() < 1024, "{hello}");
    n.send(json!({"type": "resume", "rooms": {}})).await;
    n.expect("resumed").await;
}

#[tokio::test]
async fn unread_and_mention_counts_survive_a_reload_and_read_markers_reach_every_tab() {
    let app = TestApp::spawn().await;
    let ann = app.sign_in("Ann").await;
    let bob = app.sign_in("Bob").await;
    let mut b = app.ws(&bob).await;
    let room = create(&mut b, "Unread").await;
    let (mut a1, hello) = app.ws_with(&ann, json!({})).await;
    let ann_id = hello["user"]["id"].as_i64().unwrap();
    let mut a2 = app.ws(&ann).await;
    join(&mut a1, room).await;
    b.say(room, "u0").await;
    // One post mentions Ann (and someone who is not in the room, ignored).
    b.send(json!({
        "type": "send", "room_id": room, "client_id": uuid::Uuid::new_v4().to_string(),
        "body": "@Ann u1", "mentions": [ann_id, 999_999],
    }))
    .await;
    b.say(room, "u2").await;
    // Bob's join was seq 1, Ann's 2, the posts 3..=5.
    events_until(&mut a2, room, 5).await;
    // Ann's own posts do not count.
    a1.say(room, "mine").await;
    events_until(&mut a1, room, 6).await;
    let (_, hello) = app.ws_hello(&ann).await;
    let seen = summary(&hello, room).unwrap();
    assert_eq!(
        (
            seen["unread"].as_u64(),
            seen["mentions"].as_u64(),
            seen["last_seq"].as_i64()
        ),
        (Some(3), Some(1), Some(6))
    );
    // The posted event names whom it mentions.
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT mentions FROM messages WHERE room_id = ? AND body = '@Ann u1'")
            .bind(room)
            .fetch_all(&app.db().await)
            .await
            .unwrap();
    assert_eq!(stored, [format!("[{ann_id},999999]")]);

    a1.send(json!({"type": "read", "room_id": room, "seq": 6}))
        .await;
    for tab in [&mut a1, &mut a2] {
        let read = tab.expect_where("read", |f| f["room_id"] == room).await;
        assert_eq!(
            (
                read["unread"].as_u64(),
                read["mentions"].as_u64(),
                read["last_read_seq"].as_i64()
            ),
            (Some(0), Some(0), Some(6))
        );
    }
    let (_, hello) = app.ws_hello(&ann).await;
    let seen = summary(&hello, room).unwrap();
    assert_eq!((&seen["unread"], &seen["mentions"]), (&json!(0), &json!(0)));
}

#[tokio::test]
async fn commands_over_v2_are_idempotent_and_checked_by_the_policy() {
    let app = TestApp::spawn().await;
    let ann = app.sign_in("Ann").await;
    let bob = app.sign_in("Bob").await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let room = create(&mut a, "Rules").await;

    // Not a member: posting is refused with the room's id and the client_id.
    let client_id = b.say(room, "let me in").await;
    let refused = b.expect("error").await;
    assert_eq!(
        (&refused["code"], &refused["room_id"], &refused["client_id"]),
        (&json!("not_member"), &json!(room), &json!(client_id))
    );
    // A room that does not exist and one in which Bob may not rename answer
    // with their codes.
    b.send(json!({"type": "join", "room_id": 999999, "client_id": uuid::Uuid::new_v4()}))
        .await;
    assert_eq!(b.expect("error").await["code"], "not_found");
    join(&mut b, room).await;
    b.send(json!({"type": "rename", "room_id": room, "client_id": uuid::Uuid::new_v4(), "name": "Mine"}))
        .await;
    assert_eq!(b.expect("error").await["code"], "forbidden");

    // The same send twice: one message, two identical acks.
    let id = uuid::Uuid::new_v4().to_string();
    let send = json!({"type": "send", "room_id": room, "client_id": id, "body": "once"});
    b.send(send.clone()).await;
    let first = b.expect("ack").await;
    b.send(send).await;
    let second = b.expect("ack").await;
    assert_eq!(first, second);
    assert_eq!(app.stored(Some(&id)).await, 1);

    // A reply must name a message of the same room.
    b.send(json!({"type": "send", "room_id": room, "client_id": uuid::Uuid::new_v4(), "body": "re", "reply_to": 424242}))
        .await;
    assert_eq!(b.expect("error").await["code"], "not_found");
    b.send(json!({"type": "send", "room_id": room, "client_id": uuid::Uuid::new_v4(), "body": "re", "reply_to": first["message_id"]}))
        .await;
    let ack = b.expect("ack").await;
    assert!(ack["message_id"].is_i64(), "{ack}");
}
