//! The chat end to end over real sockets (protocol v2, `/ws`):
//! ordering, durability, idempotency, isolation, presence, bad input,
//! restarts, and the server-rendered page.

mod common;

use common::TestApp;
use futures::SinkExt;
use serde_json::{json, Value};
use sqlx::Connection;
use std::time::Duration;

fn seq(frame: &Value) -> i64 {
    frame["seq"].as_i64().expect("seq")
}

/// The seqs of a `history` page's messages, in its order.
fn page_seqs(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(seq)
        .collect()
}

/// A `posted` event's (seq, body); `None` for any other frame.
fn posted(frame: &Value) -> Option<(i64, String)> {
    (frame["type"] == "event" && frame["kind"] == "posted").then(|| {
        (
            seq(frame),
            frame["message"]["body"].as_str().expect("body").to_owned(),
        )
    })
}

/// Whether `frame` is a `presence_changed` for the user called `name`.
fn presence_of(frame: &Value, name: &str, online: bool) -> bool {
    frame["type"] == "presence_changed"
        && frame["user"]["name"] == name
        && frame["online"] == online
}

#[tokio::test]
async fn every_member_sees_one_order_and_acks_come_after_commit() {
    let app = TestApp::spawn().await;
    let (_, mut a) = app.member("ann").await;
    let (_, mut b) = app.member("bob").await;
    let general = app.room_id("general").await;

    // Both send concurrently, interleaving in the room.
    const EACH: usize = 40;
    for i in 0..EACH {
        a.say(general, &format!("a{i}")).await;
        b.say(general, &format!("b{i}")).await;
    }

    let db = app.db().await;
    let mut views = Vec::new();
    for client in [&mut a, &mut b] {
        let mut view = Vec::new();
        let mut acks = 0;
        while view.len() < 2 * EACH || acks < EACH {
            let frame = client.recv().await;
            if let Some(post) = posted(&frame) {
                view.push(post);
            } else if frame["type"] == "ack" {
                acks += 1;
                // Ack means durable: a separate connection already sees the row.
                let stored: i64 =
                    sqlx::query_scalar("SELECT seq FROM messages WHERE client_id = ?")
                        .bind(frame["client_id"].as_str().unwrap())
                        .fetch_one(&db)
                        .await
                        .expect("acknowledged message is in the database");
                assert_eq!(stored, seq(&frame));
                assert_eq!(frame["room_id"], general);
            }
        }
        let seqs: Vec<i64> = view.iter().map(|(s, _)| *s).collect();
        // The sign-ups' silent joins of general took the seqs before.
        let base = seqs[0] - 1;
        assert_eq!(
            seqs,
            (base + 1..=base + 2 * EACH as i64).collect::<Vec<_>>(),
            "seq strictly increasing, no gap"
        );
        // Each sender's own messages keep their sending order.
        for prefix in ["a", "b"] {
            let mine: Vec<&str> = view
                .iter()
                .filter(|(_, body)| body.starts_with(prefix))
                .map(|(_, b)| b.as_str())
                .collect();
            let sent: Vec<String> = (0..EACH).map(|i| format!("{prefix}{i}")).collect();
            assert_eq!(mine, sent);
        }
        views.push(view);
    }
    assert_eq!(views[0], views[1], "every member sees the same order");
}

#[tokio::test]
async fn a_resent_message_is_acknowledged_again_and_stored_once() {
    let app = TestApp::spawn().await;
    let (ann, mut a) = app.member("ann").await;
    let (_, mut b) = app.member("bob").await;
    let general = app.room_id("general").await;

    let client_id = uuid::Uuid::new_v4().to_string();
    let send = json!({"type": "send", "room_id": general, "client_id": client_id, "body": "once"});
    a.send(send.clone()).await;
    let first = a.expect("ack").await;
    // After a reconnect (resuming from the message) the client resends:
    // same ack, nothing new stored or delivered.
    drop(a);
    let (mut a, _) = app
        .ws_with(&ann, json!({ general.to_string(): seq(&first) }))
        .await;
    a.send(send.clone()).await;
    a.send(send).await;
    let second = a.expect("ack").await;
    let third = a.expect("ack").await;
    assert_eq!(first, second);
    assert_eq!(first, third);

    let delivered = b.expect_event("posted").await;
    assert_eq!(delivered["message"]["client_id"], client_id);
    // The committer publishes before it acks: a resend published would be
    // queued for Bob before his pong.
    let after = b.until_pong().await;
    assert!(
        after.iter().all(|f| posted(f).is_none()),
        "delivered twice: {after:?}"
    );
    assert_eq!(app.stored(Some(&client_id)).await, 1);
}

#[tokio::test]
async fn rooms_are_isolated() {
    let app = TestApp::spawn().await;
    let (ann, cat) = (app.sign_in("ann").await, app.sign_in("cat").await);
    let general = app.room_id("general").await;
    // Cat keeps to a room of her own (events follow membership).
    let (status, created) = app.create_room(&cat, "elsewhere").await;
    assert_eq!(status, 200, "{created}");
    let elsewhere = created["id"].as_i64().expect("id");
    app.leave(&cat, general).await;
    let (mut a, mut c) = (app.ws(&ann).await, app.ws(&cat).await);
    a.open(general, None).await;
    c.open(elsewhere, None).await;
    a.say(general, "for general only").await;
    a.expect("ack").await;
    // Published before the ack: anything for Cat is queued before her pong.
    let seen = c.until_pong().await;
    assert!(
        seen.iter().all(|f| f["type"] != "event"),
        "cat got general's events: {seen:?}"
    );

    // The other room has its own sequence: after cat's join as its creator
    // (1), cat's message is 2.
    c.say(elsewhere, "first here").await;
    let m = c.expect_event("posted").await;
    assert_eq!((m["room_id"].as_i64(), seq(&m)), (Some(elsewhere), 2));
    c.expect("ack").await;
    let seen = a.until_pong().await;
    assert!(
        seen.iter().all(|f| f["room_id"] != elsewhere),
        "ann got elsewhere's frames: {seen:?}"
    );
}

#[tokio::test]
async fn presence_counts_a_user_once_across_tabs() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.sign_in("ann").await, app.sign_in("bob").await);
    let general = app.room_id("general").await;
    let names = |presence: &Value| -> Vec<String> {
        presence["online"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut a = app.ws(&ann).await;
    let presence = a.open(general, None).await;
    assert_eq!(names(&presence), ["ann"]);

    // Bob's first connection: he comes online, once.
    let mut b1 = app.ws(&bob).await;
    let presence = b1.open(general, None).await;
    assert_eq!(names(&presence), ["ann", "bob"]);
    a.expect_where("presence_changed", |f| presence_of(f, "bob", true))
        .await;

    // A second tab of bob: still one bob, no new notice (a notice would be
    // queued for ann when bob's tab resumed, so before her pong).
    let mut b2 = app.ws(&bob).await;
    let presence = b2.open(general, None).await;
    assert_eq!(names(&presence), ["ann", "bob"]);
    let seen = a.until_pong().await;
    assert!(
        seen.iter().all(|f| f["type"] != "presence_changed"),
        "no notice: {seen:?}"
    );

    // Closing one tab is not going offline; closing the last one is. Once
    // the server counts one connection fewer it has handled the close (and
    // queued any notice for ann).
    b2.socket.close(None).await.unwrap();
    app.wait_metric("chat_connections", 2).await;
    let seen = a.until_pong().await;
    assert!(
        seen.iter().all(|f| f["type"] != "presence_changed"),
        "no notice: {seen:?}"
    );
    b1.socket.close(None).await.unwrap();
    let offline = a.expect("presence_changed").await;
    assert_eq!(
        (
            offline["room_id"].as_i64(),
            offline["user"]["name"].as_str(),
            offline["online"].as_bool()
        ),
        (Some(general), Some("bob"), Some(false))
    );
}

/// v1 announced every new room to everyone; v2 announces a room to its
/// members (`room_added` in each of their tabs), and others find it in the
/// directory.
#[tokio::test]
async fn new_rooms_reach_their_creators_tabs_live_and_the_directory() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.sign_in("ann").await, app.sign_in("bob").await);
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let (status, created) = app.create_room(&ann, "Design").await;
    assert_eq!(status, 200, "{created}");
    let added = a.expect("room_added").await;
    assert_eq!(
        (
            &added["room"]["id"],
            &added["room"]["name"],
            &added["room"]["role"]
        ),
        (&created["id"], &json!("Design"), &json!("owner"))
    );
    let seen = b.until_pong().await;
    assert!(
        seen.iter().all(|f| f["type"] != "room_added"),
        "not bob's room: {seen:?}"
    );
    let (status, listed, _) = app.call(Some(&bob), "directory", &[("q", "des")]).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["rooms"][0]["name"], "Design", "{listed}");
    assert_eq!(listed["rooms"][0]["joined"], false, "{listed}");

    // Unique ignoring case.
    let (status, body) = app.create_room(&bob, "design").await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "room_exists");
    let (status, body) = app.create_room(&bob, &"x".repeat(65)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_name")));
}

#[tokio::test]
async fn bad_input_gets_an_error_and_the_connection_stays_usable() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.sign_in("ann").await, app.sign_in("bob").await);
    let general = app.room_id("general").await;
    // A room Ann is not a member of.
    let (status, created) = app.create_room(&bob, "other").await;
    assert_eq!(status, 200, "{created}");
    let other = created["id"].as_i64().expect("id");
    let nowhere = 999_999;
    let mut a = app.ws(&ann).await;
    a.open(general, None).await;

    let id = || uuid::Uuid::new_v4().to_string();
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "bad_frame"),
        (json!({"type": "launch_rockets"}).to_string(), "bad_frame"),
        (json!({"type": "send", "room_id": general}).to_string(), "bad_frame"),
        (json!({"type": "open", "room_id": nowhere}).to_string(), "not_found"),
        (json!({"type": "send", "room_id": nowhere, "client_id": id(), "body": "x"}).to_string(), "not_found"),
        (json!({"type": "send", "room_id": other, "client_id": id(), "body": "x"}).to_string(), "not_member"),
        (json!({"type": "send", "room_id": general, "client_id": "not-a-uuid", "body": "x"}).to_string(), "bad_client_id"),
        (json!({"type": "send", "room_id": general, "client_id": id(), "body": "  "}).to_string(), "empty_body"),
        (json!({"type": "send", "room_id": general, "client_id": id(), "body": "é".repeat(4001)}).to_string(), "body_too_long"),
        (json!({"type": "history", "room_id": nowhere}).to_string(), "not_found"),
        (json!({"type": "leave", "room_id": other, "client_id": id()}).to_string(), "not_member"),
    ];
    for (text, code) in cases {
        a.send_text(text.clone()).await;
        let error = a.expect("error").await;
        assert_eq!(error["code"], code, "for {text}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    a.socket
        .send(tokio_tungstenite::tungstenite::Message::binary(vec![
            1, 2, 3,
        ]))
        .await
        .unwrap();
    assert_eq!(a.expect("error").await["code"], "bad_frame");

    // Still usable, and nothing was stored.
    a.assert_alive().await;
    let id = a.say(general, &"é".repeat(4000)).await;
    assert_eq!(a.expect("ack").await["client_id"], id);
    assert_eq!(app.stored(None).await, 1);
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let app = TestApp::spawn().await;
    let ann = app.sign_in("ann").await;
    let mut a = app.ws(&ann).await;
    a.send_text("x".repeat(70 * 1024)).await;
    assert_eq!(a.closed_with().await, 1009);
    // The server is unharmed.
    let mut again = app.ws(&ann).await;
    again.assert_alive().await;
}

#[tokio::test]
async fn upgrades_need_a_session_and_an_allowed_origin() {
    use tokio_tungstenite::tungstenite::Error;
    let app = TestApp::spawn().await;
    let ann = app.sign_in("ann").await;
    let status = |r: Result<common::Client, Error>| match r {
        Err(Error::Http(res)) => res.status().as_u16(),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => 101,
    };
    assert_eq!(status(app.try_ws(None, Some(&app.origin())).await), 401);
    assert_eq!(
        status(
            app.try_ws(Some("chat_session=forged"), Some(&app.origin()))
                .await
        ),
        401
    );
    assert_eq!(
        status(app.try_ws(Some(&ann), Some("http://evil.example")).await),
        403
    );
    assert_eq!(status(app.try_ws(Some(&ann), None).await), 403);
    assert_eq!(
        status(app.try_ws(Some(&ann), Some(&app.origin())).await),
        101
    );

    // After sign-out the session is gone.
    let (code, _, _) = app.call(Some(&ann), "sign_out", &[]).await;
    assert_eq!(code, 200);
    assert_eq!(
        status(app.try_ws(Some(&ann), Some(&app.origin())).await),
        401
    );

    // Cross-site form posts are refused.
    let res = common::http()
        .post(app.url("/api/create_room"))
        .header("Origin", "http://evil.example")
        .form(&[("name", "pwned")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
}

#[tokio::test]
async fn guest_names_are_validated() {
    let app = TestApp::spawn().await;
    for bad in ["", "   ", &"n".repeat(33)] {
        let (status, body, _) = app.call(None, "sign_in_guest", &[("name", bad)]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("invalid_name")),
            "name {bad:?}"
        );
    }
    let cookie = app.sign_in(&format!("  {}  ", "n".repeat(32))).await;
    let (mut ws, hello) = app.ws_with(&cookie, json!({})).await;
    assert_eq!(hello["user"]["name"], "n".repeat(32), "trimmed");
    ws.assert_alive().await;
}

#[tokio::test]
async fn history_survives_a_restart_and_is_in_the_server_rendered_page() {
    let app = TestApp::spawn().await;
    let ann = app.sign_in("ann").await;
    let general = app.room_id("general").await;
    // Ann's sign-up (a silent join) took general's seqs before line 1.
    let base = app.last_seq("general").await;
    let mut a = app.ws(&ann).await;
    for i in 1..=60 {
        a.say(general, &format!("line <{i}>")).await;
    }
    for _ in 0..60 {
        a.expect("ack").await;
    }
    drop(a);

    let app = app.restart().await;
    // The session survives too: it lives in the database.
    let html = app.page(&ann, "/rooms/general").await;
    assert!(html.contains("data-room=\"general\""), "room pane rendered");
    assert!(html.contains("# general"), "room list rendered");
    // The latest 50 (11..=60), escaped as text; not the 10th.
    for i in 11..=60 {
        assert!(
            html.contains(&format!("line &lt;{i}&gt;")),
            "message {i} in SSR HTML"
        );
    }
    assert!(!html.contains("line &lt;10&gt;"));

    let mut a = app.ws(&ann).await;
    a.send(json!({"type": "history", "room_id": general, "before": base + 11, "limit": 10}))
        .await;
    let page = a.expect("history").await;
    let seqs = page_seqs(&page);
    assert_eq!(seqs, (base + 1..=base + 10).collect::<Vec<_>>());
    assert_eq!(page["has_more_before"], false);

    // New messages continue the sequence.
    a.say(general, "after restart").await;
    assert_eq!(seq(&a.expect("ack").await), base + 61);
}

#[tokio::test]
async fn resume_replays_what_was_missed_then_goes_live() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.sign_in("ann").await, app.sign_in("bob").await);
    let general = app.room_id("general").await;
    // The sign-ups' silent joins took general's seqs before m1.
    let base = app.last_seq("general").await;
    let mut a = app.ws(&ann).await;
    for i in 1..=5 {
        a.say(general, &format!("m{i}")).await;
        a.expect("ack").await;
    }
    let (mut b, _) = app
        .ws_with(&bob, json!({ general.to_string(): base + 2 }))
        .await;
    a.say(general, "m6").await;
    let mut seqs = Vec::new();
    while seqs.len() < 4 {
        seqs.push(seq(&b.expect_event("posted").await));
    }
    assert_eq!(seqs, [3, 4, 5, 6].map(|n| base + n));
    // Nothing twice: m6 was published before Ann's ack, so a repeat would
    // be queued for Bob before his pong.
    a.expect("ack").await;
    let after = b.until_pong().await;
    assert!(
        after.iter().all(|f| f["type"] != "event"),
        "repeated: {after:?}"
    );
}

#[tokio::test]
async fn the_no_javascript_form_posts_through_the_same_pipeline() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.sign_in("ann").await, app.sign_in("bob").await);
    let mut b = app.ws(&bob).await;
    b.open(app.room_id("general").await, None).await;
    let id = uuid::Uuid::new_v4().to_string();
    let general = app.room_id("general").await.to_string();
    let (status, body, _) = app
        .call(
            Some(&ann),
            "post_message",
            &[
                ("room_id", &general),
                ("client_id", &id),
                ("body", "from a form"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // After the two sign-ups' silent joins of general.
    assert_eq!(body["seq"], app.last_seq("general").await);
    let live = b.expect_event("posted").await;
    assert_eq!(
        (
            live["message"]["body"].as_str(),
            live["message"]["author"]["name"].as_str()
        ),
        (Some("from a form"), Some("ann"))
    );
    assert_eq!(live["seq"], body["seq"]);

    let (status, body, _) = app
        .call(
            Some(&ann),
            "post_message",
            &[
                ("room_id", &general),
                ("client_id", &id),
                ("body", &"x".repeat(4001)),
            ],
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("body_too_long"))
    );
    let (status, body, _) = app
        .call(
            None,
            "post_message",
            &[("room_id", &general), ("client_id", &id), ("body", "hi")],
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
}

/// A client_id is unique per author, across rooms (v2's processed commands,
/// keyed by user and client_id). v1 keyed it by room: it refused another
/// author's client_id in the same room with `bad_client_id`, and stored a
/// second message when the same author reused one in another room.
#[tokio::test]
async fn a_client_id_is_its_authors_and_a_repeat_in_any_room_answers_the_original() {
    let app = TestApp::spawn().await;
    let (ann, mut a) = app.member("ann").await;
    let (_, mut b) = app.member("bob").await;
    let general = app.room_id("general").await;
    // The sign-ups' silent joins took general's seqs before.
    let base = app.last_seq("general").await;
    let id = a.say(general, "ann's").await;
    let first = a.expect("ack").await;
    // Another author's client_id is no concern of Bob's: a new message.
    b.send(json!({"type": "send", "room_id": general, "client_id": id, "body": "bob's"}))
        .await;
    let ack = b.expect("ack").await;
    assert_eq!(
        (ack["room_id"].as_i64(), ack["seq"].as_i64()),
        (Some(general), Some(base + 2))
    );
    // Ann repeating hers in another room is a resend of her first message:
    // acknowledged as it was stored, in general, and published nowhere.
    let (status, created) = app.create_room(&ann, "other").await;
    assert_eq!(status, 200, "{created}");
    let other = created["id"].as_i64().expect("id");
    a.open(other, None).await;
    a.send(json!({"type": "send", "room_id": other, "client_id": id, "body": "again"}))
        .await;
    // The committer publishes before it acks: anything published is here.
    let ack = loop {
        let frame = a.recv().await;
        assert!(
            !(posted(&frame).is_some() && frame["room_id"] == other),
            "a resend was delivered: {frame}"
        );
        if frame["type"] == "ack" && frame["client_id"] == id.as_str() {
            break frame;
        }
    };
    assert_eq!(
        (ack["room_id"].as_i64(), ack["seq"].as_i64()),
        (Some(general), Some(base + 1))
    );
    // Over HTTP, a resend answers with what was stored the first time (the
    // message of general's ack, not a new one in other).
    let other = app.room_id("other").await.to_string();
    let (status, body, _) = app
        .call(
            Some(&ann),
            "post_message",
            &[("room_id", &other), ("client_id", &id), ("body", "changed")],
        )
        .await;
    assert_eq!(
        (
            status,
            body["id"].as_i64(),
            body["body"].as_str(),
            body["seq"].as_i64(),
            body["client_id"].as_str()
        ),
        (
            200,
            first["message_id"].as_i64(),
            Some("ann's"),
            Some(base + 1),
            Some(id.as_str())
        ),
        "{body}"
    );
    assert!(first["message_id"].is_i64(), "{first}");
    assert_eq!(app.stored(Some(&id)).await, 2, "ann's and bob's");
}

#[tokio::test]
async fn opening_again_announces_nothing() {
    let app = TestApp::spawn().await;
    let (_, mut a) = app.member("ann").await;
    let (_, mut b) = app.member("bob").await;
    let general = app.room_id("general").await;
    a.expect_where("presence_changed", |f| presence_of(f, "bob", true))
        .await;
    // The sign-ups' silent joins took general's seqs before.
    let base = app.last_seq("general").await;
    let first = b.say(general, "one").await;
    b.expect_where("ack", |f| f["client_id"] == first).await;

    // Bob's only connection opens general again (asking for a replay from
    // 0, which a member's open does not do: resume did): a new presence
    // comes to him, and nothing to anyone else.
    let presence = b.open(general, Some(0)).await;
    assert_eq!(presence["online"].as_array().unwrap().len(), 2);
    // Frames to Ann keep their order, so a `presence_changed` caused by the
    // open would reach her before the message Bob sends after it.
    let second = b.say(general, "two").await;
    loop {
        let frame = a.recv().await;
        assert_ne!(frame["type"], "presence_changed", "announced: {frame}");
        if posted(&frame).is_some() && frame["message"]["client_id"] == second {
            break;
        }
    }
    // Bob's live stream went on, with nothing repeated.
    let live = loop {
        let frame = b.expect_event("posted").await;
        assert!(seq(&frame) > base + 1, "repeated: {frame}");
        if frame["message"]["client_id"] == second {
            break frame;
        }
    };
    assert_eq!(seq(&live), base + 2);
}

#[tokio::test]
async fn signing_out_closes_that_sessions_sockets() {
    let app = TestApp::spawn().await;
    let (ann, ann_elsewhere) = (app.sign_in("ann").await, app.sign_in("ann").await);
    let (mut tab, mut other) = (app.ws(&ann).await, app.ws(&ann_elsewhere).await);
    let (status, _, _) = app.call(Some(&ann), "sign_out", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(tab.closed_with().await, 1008);
    // Another session of the same person is unaffected.
    other.assert_alive().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_stalls_no_one() {
    let app = TestApp::spawn().await;
    let (ann, bob, cat) = (
        app.sign_in("ann").await,
        app.sign_in("bob").await,
        app.sign_in("cat").await,
    );
    let general = app.room_id("general").await;
    // All three are members of general: its events reach them all.
    let (mut sender, mut reader, mut stalled) =
        (app.ws(&ann).await, app.ws(&bob).await, app.ws(&cat).await);
    // The sign-ups' silent joins took general's seqs before.
    let base = app.last_seq("general").await;

    // Far more than the stalled client's queue plus both kernels' socket
    // buffers can hold: its queue must overflow.
    const COUNT: usize = 3000;
    let end = base + COUNT as i64;
    let body = "x".repeat(4000);
    // The sender reads its acks as it goes (a sender that never read would
    // itself be a slow consumer).
    let drive = async {
        for _ in 0..COUNT / 100 {
            for _ in 0..100 {
                sender.say(general, &body).await;
            }
            for _ in 0..100 {
                sender.expect("ack").await;
            }
        }
    };
    // The reading member gets every message, in order, while the other stalls.
    let read = async {
        for expected in base + 1..=end {
            assert_eq!(seq(&reader.expect_event("posted").await), expected);
        }
    };
    tokio::join!(drive, read);

    // When the stalled client finally reads, it finds what fit, then a close
    // telling it to resume; or, when its socket was too full to take even
    // the close frame in the server's close timeout, the connection just
    // ends (cut off: reset or EOF).
    let mut last = base;
    let code = loop {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        match tokio::time::timeout(common::WAIT, stalled.socket.next())
            .await
            .expect("frames, close or end")
        {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if let Some((at, _)) = posted(&frame) {
                    assert_eq!(at, last + 1, "what was delivered has no gap");
                    last = at;
                }
            }
            Some(Ok(Message::Close(close))) => {
                break Some(close.map_or(1005, |c| u16::from(c.code)))
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!(
        matches!(code, Some(1013) | None),
        "closed as a slow consumer (1013) or cut off, not {code:?}"
    );
    assert!(last < end, "the stalled client was cut off before the end");
    // It resumes from where it stopped, with nothing missing: replayed when
    // at most N behind, else a `gap` and the pages of history back to it.
    let (mut resumed, _) = app
        .ws_with(&cat, json!({ general.to_string(): last }))
        .await;
    let mut got = std::collections::BTreeSet::new();
    let mut gap = None;
    for frame in resumed.until_pong().await {
        if let Some((at, _)) = posted(&frame) {
            assert!(got.insert(at), "replayed twice: {at}");
        } else if frame["type"] == "gap" {
            gap = frame["last_seq"].as_i64();
        }
    }
    if let Some(gap) = gap {
        assert!(got.is_empty(), "events with a gap: {got:?}");
        assert_eq!(gap, end);
        let mut before = None::<i64>;
        while before.is_none_or(|b| b > last + 1) {
            let mut frame = json!({"type": "history", "room_id": general, "limit": 200});
            if let Some(b) = before {
                frame["before"] = json!(b);
            }
            resumed.send(frame).await;
            let seqs = page_seqs(&resumed.expect("history").await);
            before = Some(*seqs.first().expect("a page back to the cursor"));
            got.extend(seqs.into_iter().filter(|&s| s > last));
        }
    }
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        (last + 1..=end).collect::<Vec<_>>(),
        "from {last} (gap: {gap:?})"
    );
}

#[tokio::test]
async fn an_expired_session_is_refused_and_purged() {
    let app = TestApp::spawn().await;
    let ann = app.sign_in("ann").await;
    let db = app.db().await;
    sqlx::query("UPDATE sessions SET expires_at = 1")
        .execute(&db)
        .await
        .unwrap();
    let refused = app.try_ws(Some(&ann), Some(&app.origin())).await;
    assert!(
        matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 401)
    );
    // The page asks the expired user to sign in again.
    assert!(app
        .page(&ann, "/rooms/general")
        .await
        .contains("Sign in as guest"));
    let store = server::store::open(&format!("sqlite://{}", app.db_path.display()))
        .await
        .unwrap();
    assert_eq!(
        store
            .sessions
            .purge_sessions(server::now_ms())
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_database_that_cannot_be_written_gets_a_clear_error_and_a_retry_succeeds() {
    let app = TestApp::spawn().await;
    let (_, mut a) = app.member("ann").await;
    let general = app.room_id("general").await;
    // Ann's sign-up (a silent join) took general's seq before.
    let base = app.last_seq("general").await;
    // Another process holds the write lock past the server's busy timeout.
    let mut blocker =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", app.db_path.display()))
            .await
            .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let client_id = a.say(general, "kept by the client").await;
    let error = a.expect("error").await;
    assert_eq!(
        (
            error["code"].as_str(),
            error["client_id"].as_str(),
            error["room_id"].as_i64(),
            error["retry_after"].as_u64()
        ),
        (
            Some("unavailable"),
            Some(client_id.as_str()),
            Some(general),
            Some(1000)
        )
    );
    a.assert_alive().await;

    // Once the database is back, the same send is stored, once.
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    a.send(json!({"type": "send", "room_id": general, "client_id": client_id, "body": "kept by the client"}))
        .await;
    assert_eq!(a.expect("ack").await["seq"], base + 1);
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_closed_and_goes_offline() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let app = TestApp::spawn_with(|config| config.ws_ping_secs = 1).await;
    let (_, a) = app.member("ann").await;
    // Ann's socket is read all along, from here on (reading answers the
    // server's pings), so however slow the rest of the setup, only Bob can
    // fall silent. Her text frames come through `frames`.
    let (mut to_ann, mut from_ann) = a.socket.split();
    let (tx, mut frames) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let reading = tokio::spawn(async move {
        while let Some(Ok(message)) = from_ann.next().await {
            if let Message::Text(text) = message {
                let _ = tx.send(serde_json::from_str(&text).expect("JSON frame"));
            }
        }
    });
    async fn next(
        frames: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        loop {
            let frame = tokio::time::timeout(common::WAIT, frames.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {kind} on Ann's socket"))
                .expect("Ann's socket ended");
            if frame["type"] == kind && pred(&frame) {
                return frame;
            }
        }
    }
    let (_, mut gone) = app.member("bob").await;
    next(&mut frames, "presence_changed", |f| {
        presence_of(f, "bob", true)
    })
    .await;
    // Bob's side goes silent: he goes offline.
    let offline = next(&mut frames, "presence_changed", |f| f["online"] == false).await;
    assert_eq!(offline["user"]["name"], "bob");
    // Its close frame (1001) may be unreadable: reading makes the client
    // answer the pings it ignored, on a socket the server has closed.
    let closed = tokio::time::timeout(common::WAIT, async {
        loop {
            match gone.socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the server closed the silent connection");
    assert!(
        matches!(closed, Some(1001) | None),
        "closed with {closed:?}"
    );
    // Ann, who answered every ping, is still connected.
    to_ann
        .send(Message::text(json!({"type": "ping"}).to_string()))
        .await
        .expect("Ann's socket is open");
    next(&mut frames, "pong", |_| true).await;
    reading.abort();
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let app = TestApp::spawn().await;
    let (_, mut a) = app.member("ann").await;
    a.say(app.room_id("general").await, "counted").await;
    a.expect("ack").await;
    let text = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
            .parse()
            .unwrap()
    };
    // Gauges are this server's; counters are process-wide (tests share it).
    assert_eq!(value("chat_connections"), 1);
    // Ann's connection receives general's events and has it open.
    assert_eq!(value("chat_live_rooms"), 1);
    assert!(value("chat_messages_committed_total") >= 1);
    assert!(value("chat_commit_batches_total") >= 1);
    assert!(value("chat_deliveries_total") >= 1);
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1012_after_committing() {
    let app = TestApp::spawn().await;
    let (_, mut a) = app.member("ann").await;
    let id = a
        .say(app.room_id("general").await, "in flight at shutdown")
        .await;
    let stopping = tokio::spawn(app.shutdown());
    // Whatever happens first, the message is acknowledged or the socket
    // closes with 1012; either way a message that was acked is stored.
    let mut acked = false;
    let code = loop {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        match tokio::time::timeout(common::WAIT, a.socket.next())
            .await
            .expect("close")
        {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                acked |= frame["type"] == "ack" && frame["client_id"] == id;
            }
            Some(Ok(Message::Close(Some(close)))) => break u16::from(close.code),
            other => panic!("unexpected {other:?}"),
        }
    };
    let (db_path, _dir) = stopping.await.unwrap();
    assert_eq!(code, 1012);
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", db_path.display()))
        .await
        .unwrap();
    let stored = common::stored(&db, Some(&id)).await;
    assert!(
        stored == 1 || !acked,
        "an acknowledged message must be stored"
    );
}

#[tokio::test]
async fn a_client_that_writes_but_never_reads_is_cut_off_and_goes_offline() {
    let app = TestApp::spawn().await;
    let (_, mut sender) = app.member("ann").await;
    let (_, mut stalled) = app.member("bob").await;
    let general = app.room_id("general").await;
    sender
        .expect_where("presence_changed", |f| presence_of(f, "bob", true))
        .await;
    let body = "x".repeat(4000);
    let flood = async {
        // Bob keeps talking (each ping wants a reply) and never reads, so
        // his socket fills, his writer blocks and his reader waits on it.
        for _ in 0..20_000 {
            if stalled
                .socket
                .send(tokio_tungstenite::tungstenite::Message::text(
                    r#"{"type":"ping"}"#,
                ))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let bob_left = |frame: &Value| presence_of(frame, "bob", false);
    let talk = async {
        // Bob can be cut off while ann is still talking (his queue overflows
        // as soon as the server outpaces his socket): his going offline may
        // arrive among the acks, so it is kept rather than skipped with the
        // rest.
        let mut left = None;
        for _ in 0..30 {
            for _ in 0..100 {
                sender.say(general, &body).await;
            }
            let mut acks = 0;
            while acks < 100 {
                let frame = sender.recv().await;
                if frame["type"] == "ack" {
                    acks += 1;
                } else if bob_left(&frame) {
                    left = Some(frame);
                }
            }
        }
        if let Some(frame) = left {
            return frame;
        }
        // Bob is cut off as too slow once his queue overflows; if the socket
        // buffers took it all, once a write has been blocked for the server's
        // write timeout (30 s). Either way he goes offline: wait longer than
        // that.
        tokio::time::timeout(Duration::from_secs(60), async {
            use futures::StreamExt;
            use tokio_tungstenite::tungstenite::Message;
            loop {
                match sender.socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let frame: Value = serde_json::from_str(&text).unwrap();
                        if bob_left(&frame) {
                            return frame;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("the sender's socket ended: {other:?}"),
                }
            }
        })
        .await
        .expect("bob went offline")
    };
    let (_, left) = tokio::join!(
        tokio::time::timeout(std::time::Duration::from_secs(60), flood),
        talk
    );
    assert_eq!(left["user"]["name"], "bob");
}

#[tokio::test]
async fn typing_and_open_churn_are_throttled() {
    // Windows far longer than the test, however slow the machine: what is
    // tested is the counting, not the clock.
    let app = TestApp::spawn_with(|config| {
        config.ws_churn_window = Duration::from_secs(3600);
        config.ws_typing_every = Duration::from_secs(3600);
    })
    .await;
    let (_, mut a) = app.member("ann").await;
    let (_, mut b) = app.member("bob").await;
    let general = app.room_id("general").await;
    a.expect_where("presence_changed", |f| presence_of(f, "bob", true))
        .await;
    for _ in 0..5 {
        b.send(json!({"type": "typing", "room_id": general})).await;
    }
    // Bob's pong: all five handled (relayed ones are queued for ann by
    // then). Ann's pong comes after whatever was queued for her.
    b.until_pong().await;
    let typing = a
        .until_pong()
        .await
        .into_iter()
        .filter(|f| f["type"] == "typing")
        .count();
    assert_eq!(typing, 1, "one typing frame relayed of five");

    // Bob's `open` of general (in `member`) was the first in the window.
    let mut limited = None;
    for i in 0..40 {
        let kind = if i % 2 == 0 { "close" } else { "open" };
        b.send(json!({"type": kind, "room_id": general})).await;
        b.send(json!({"type": "ping"})).await;
        loop {
            let frame = b.recv().await;
            if frame["type"] == "pong" {
                break;
            }
            if frame["type"] == "error" && frame["code"] == "rate_limited" {
                // The window (an hour here) began with the first churn:
                // what is left of it, not more.
                let retry = frame["retry_after"].as_u64().expect("retry_after");
                assert!((1..=3_600_000).contains(&retry), "retry_after {retry}");
                assert_eq!(frame["room_id"], general);
                limited = Some(i);
            }
        }
        if limited.is_some() {
            break;
        }
    }
    assert_eq!(
        limited,
        Some(29),
        "the 30th churn in the window is the last one allowed"
    );
}

/// 3 senders × 150 messages (450, under N = 500): 8 readers resume from
/// different cursors while sends commit, one closes its socket halfway and
/// resumes on a new one, and each sees exactly `(cursor, 450]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_then_live_has_no_seam_under_concurrent_sends() {
    const SENDERS: usize = 3;
    const EACH: usize = 150;
    const TOTAL: i64 = (SENDERS * EACH) as i64;
    let app = TestApp::spawn().await;
    let general = app.room_id("general").await;
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let (_, client) = app.member(&format!("sender {i}")).await;
        senders.push(client);
    }
    // A member that reads everything as it is published: once it has seen
    // seq n, the room's events up to n are committed and published, so a
    // reader resuming from cursor n gets every later seq and no earlier one.
    let (_, mut watcher) = app.member("watcher").await;
    // Every sign-up is a silent join of general, which takes a seq: the
    // readers sign up before the sends, so the messages' seqs are dense
    // from `base`.
    let mut cookies = Vec::new();
    for r in 0..8_i64 {
        cookies.push(app.sign_in(&format!("reader {r}")).await);
    }
    let base = app.last_seq("general").await;
    let end = base + TOTAL;
    let (publish, published) = tokio::sync::watch::channel(0_i64);
    let watching = tokio::spawn(async move {
        let mut last = 0;
        while last < end {
            last = seq(&watcher.event(general).await);
            publish.send_replace(last);
        }
    });
    let sending = senders.into_iter().map(|mut client| {
        tokio::spawn(async move {
            for n in 0..EACH {
                client.say(general, &format!("m{n}")).await;
                if n % 10 == 9 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            for _ in 0..EACH {
                client.expect("ack").await;
            }
        })
    });
    let sending: Vec<_> = sending.collect();

    // Readers resume while messages commit, each from a different cursor
    // (as soon as the room has reached it: a cursor ahead of the room is not
    // something a client can hold), and one of them closes its socket
    // halfway and resumes on a new one from the last seq it applied. Each
    // must see exactly the seqs after its cursor, once each, in order,
    // across replay and live.
    let mut readers = Vec::new();
    for (r, cookie) in (0..8_i64).zip(cookies) {
        let since = base + r * 20;
        tokio::time::timeout(
            common::WAIT,
            published.clone().wait_for(|&seq| seq >= since),
        )
        .await
        .expect("the room reaches the reader's cursor")
        .expect("watcher running");
        let remote = *app;
        readers.push(tokio::spawn(async move {
            let cursor = |at: i64| json!({ general.to_string(): at });
            let (mut client, _) = remote.ws_with(&cookie, cursor(since)).await;
            let mut seen = Vec::new();
            let mut last = since;
            let mut came_back = false;
            while last < end {
                let event = client.event(general).await;
                assert_eq!(event["kind"], "posted", "{event}");
                last = seq(&event);
                seen.push(last);
                if r == 3 && !came_back && last == since + 150 {
                    client.socket.close(None).await.expect("close");
                    client = remote.ws_with(&cookie, cursor(last)).await.0;
                    came_back = true;
                }
            }
            (since, seen)
        }));
    }
    for task in sending {
        task.await.expect("sender");
    }
    watching.await.expect("watcher");
    for reader in readers {
        let (since, seen) = reader.await.expect("reader");
        assert_eq!(
            seen,
            (since + 1..=end).collect::<Vec<_>>(),
            "reader from {since}"
        );
    }
}

/// The HTTP status of an upgrade attempt (101 when it succeeded).
fn upgrade_status(attempt: Result<common::Client, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match attempt {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => 101,
    }
}

/// `GET path` sent to the server with the given `Host`; returns (status, body).
async fn get_as(app: &TestApp, host: &str, cookie: Option<&str>, path: &str) -> (u16, String) {
    let mut req = common::http().get(app.url(path)).header("Host", host);
    if let Some(cookie) = cookie {
        req = req.header("Cookie", cookie);
    }
    let res = req.send().await.expect("request");
    (res.status().as_u16(), res.text().await.expect("body"))
}

/// A server function called with the given `Host` and `Origin`.
async fn call_as(
    app: &TestApp,
    host: &str,
    origin: &str,
    cookie: Option<&str>,
    endpoint: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = common::http()
        .post(app.url(&format!("/api/{endpoint}")))
        .header("Host", host)
        .header("Origin", origin)
        .form(form);
    if let Some(cookie) = cookie {
        req = req.header("Cookie", cookie);
    }
    req.send().await.expect("request")
}

#[tokio::test]
async fn requests_for_a_host_the_server_does_not_answer_to_are_refused() {
    let app = TestApp::spawn().await;
    let (ann, mut a) = app.member("ann").await;
    a.say(app.room_id("general").await, "internal secret").await;
    a.expect("ack").await;

    // What a page whose name was rebound to this server sends: its own name
    // as both Host and Origin, which agree with each other.
    for evil in ["evil.example", &format!("evil.example:{}", app.addr.port())] {
        let origin = format!("http://{evil}");
        let res = call_as(
            &app,
            evil,
            &origin,
            None,
            "sign_in_guest",
            &[("name", "mal")],
        )
        .await;
        assert_eq!(res.status().as_u16(), 400, "sign-in via {evil}");
        assert!(common::session_cookie(res.headers()).is_none());
        assert_eq!(
            upgrade_status(app.try_ws_as(Some(&ann), Some(&origin), Some(evil)).await),
            400,
            "upgrade via {evil}"
        );
        let (status, body) = get_as(&app, evil, Some(&ann), "/rooms/general").await;
        assert_eq!(status, 400, "page via {evil}");
        assert!(!body.contains("internal secret"));
        let res = call_as(
            &app,
            evil,
            &origin,
            Some(&ann),
            "page",
            &[("room", "general")],
        )
        .await;
        assert_eq!(res.status().as_u16(), 400, "page data via {evil}");
    }

    // Load balancers probe by address: the health endpoints answer anyway.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            get_as(&app, "10.1.2.3:3000", None, path).await.0,
            200,
            "{path}"
        );
    }
    // The server's own name works as before.
    let html = app.page(&ann, "/rooms/general").await;
    assert!(html.contains("internal secret"));
    assert_eq!(
        upgrade_status(app.try_ws(Some(&ann), Some(&app.origin())).await),
        101
    );
}

/// Signs in a guest through the server reached as `host` from a page of
/// `origin`, and checks the page answers under that name; returns the cookie.
async fn sign_in_under(app: &TestApp, host: &str, origin: &str, name: &str) -> String {
    let res = call_as(app, host, origin, None, "sign_in_guest", &[("name", name)]).await;
    assert_eq!(res.status().as_u16(), 200, "sign-in under {host}");
    let cookie = common::session_cookie(res.headers()).expect("session cookie");
    assert_eq!(get_as(app, host, Some(&cookie), "/").await.0, 200);
    cookie
}

#[tokio::test]
async fn a_loopback_server_answers_to_localhost_as_well() {
    let app = TestApp::spawn().await;
    let port = app.addr.port();
    let host = format!("localhost:{port}");
    let origin = format!("http://{host}");
    let cookie = sign_in_under(&app, &host, &origin, "lo").await;
    let mut ws = app
        .try_ws_as(Some(&cookie), Some(&origin), Some(&host))
        .await
        .expect("upgrade via localhost");
    ws.expect("hello").await;
    ws.assert_alive().await;
    // So does the IPv6 loopback.
    let v6 = format!("[::1]:{port}");
    assert_eq!(
        upgrade_status(
            app.try_ws_as(Some(&cookie), Some(&format!("http://{v6}")), Some(&v6))
                .await
        ),
        101
    );

    // Another local port is another site, whatever the Host.
    let other = "http://localhost:1";
    assert_eq!(
        upgrade_status(app.try_ws_as(Some(&cookie), Some(other), Some(&host)).await),
        403
    );
    let res = call_as(
        &app,
        &host,
        other,
        Some(&cookie),
        "create_room",
        &[("name", "x")],
    )
    .await;
    assert_eq!(res.status().as_u16(), 403);
}

#[tokio::test]
async fn allowed_hosts_add_names_the_server_answers_to() {
    let app = TestApp::spawn_with(|config| {
        config.allowed_hosts = vec!["chat.internal".into()];
        // A page served under that name needs its origin trusted too.
        config.allowed_origins = vec![format!("http://chat.internal:{}", config.addr.port())];
    })
    .await;
    let host = format!("chat.internal:{}", app.addr.port());
    let origin = format!("http://{host}");
    let cookie = sign_in_under(&app, &host, &origin, "in").await;
    assert_eq!(
        upgrade_status(
            app.try_ws_as(Some(&cookie), Some(&origin), Some(&host))
                .await
        ),
        101
    );
    // Only the names listed.
    assert_eq!(get_as(&app, "other.internal", None, "/").await.0, 400);
    assert_eq!(get_as(&app, "internal", None, "/").await.0, 400);
}

/// Reads frames until one of `kind` satisfying `pred`, keeping every frame
/// read in `log`.
async fn read_until(
    client: &mut common::Client,
    log: &mut Vec<Value>,
    kind: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let frame = client.recv().await;
        log.push(frame.clone());
        if frame["type"] == kind && pred(&frame) {
            return frame;
        }
    }
}

fn any(_: &Value) -> bool {
    true
}

#[tokio::test]
async fn other_peoples_emails_are_never_sent() {
    const EMAIL: &str = "lou.private@example.test";
    let app = TestApp::spawn().await;
    let (bob, mut b) = app.member("bob").await;
    let general = app.room_id("general").await;
    // Where general stood before Lou: a tab resuming from here is replayed
    // all Lou did (rendered from the store, not from the live frames).
    let before_lou = app.last_seq("general").await;
    let lou = app.sign_up("Lou", EMAIL, "correct horse").await;
    // Lou sees their own email, in their hello and their page data.
    let (mut l, hello) = app.ws_hello(&lou).await;
    assert_eq!(hello["user"]["email"], EMAIL);
    let (status, mine, _) = app.call(Some(&lou), "page", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(mine["me"]["email"], EMAIL);

    // Everything Bob hears about Lou.
    let mut seen = Vec::new();
    l.resume(json!({})).await;
    read_until(&mut b, &mut seen, "presence_changed", |f| {
        presence_of(f, "Lou", true)
    })
    .await;
    l.open(general, None).await;
    l.say(general, "hello from lou").await;
    read_until(&mut b, &mut seen, "event", |f| f["kind"] == "posted").await;
    l.send(json!({"type": "typing", "room_id": general})).await;
    read_until(&mut b, &mut seen, "typing", any).await;
    b.send(json!({"type": "history", "room_id": general})).await;
    let history = read_until(&mut b, &mut seen, "history", any).await;
    assert_eq!(history["messages"][0]["author"]["name"], "Lou");
    // Opening again lists Lou as online; another tab of Bob's resuming from
    // before Lou is replayed Lou's silent join and message.
    b.send(json!({"type": "open", "room_id": general})).await;
    let presence = read_until(&mut b, &mut seen, "presence", any).await;
    assert!(presence["online"].to_string().contains("Lou"));
    let (mut b2, _) = app.ws_hello(&bob).await;
    b2.send(json!({"type": "resume", "rooms": { general.to_string(): before_lou }}))
        .await;
    read_until(&mut b2, &mut seen, "resumed", any).await;
    let replayed: Vec<&Value> = seen
        .iter()
        .filter(|f| f["type"] == "event" && f["seq"].as_i64() > Some(before_lou))
        .collect();
    assert!(
        replayed.iter().any(|f| f["kind"] == "member_joined")
            && replayed.iter().filter(|f| f["kind"] == "posted").count() >= 2,
        "live and replayed: {replayed:?}"
    );
    l.socket.close(None).await.expect("close");
    read_until(&mut b, &mut seen, "presence_changed", |f| {
        presence_of(f, "Lou", false)
    })
    .await;
    for frame in &seen {
        assert!(!frame.to_string().contains(EMAIL), "leaked in {frame}");
    }

    // Nor in what Bob's page is made of: its data and its HTML.
    let mut l = app.ws(&lou).await;
    l.open(general, None).await;
    let general = general.to_string();
    let (status, page, _) = app
        .call(Some(&bob), "page", &[("room_id", general.as_str())])
        .await;
    assert_eq!(status, 200);
    let page = page.to_string();
    assert!(
        page.contains("hello from lou") && page.contains("\"Lou\""),
        "{page}"
    );
    assert!(!page.contains(EMAIL), "leaked in page data: {page}");
    let html = app.page(&bob, "/rooms/general").await;
    assert!(html.contains("hello from lou"));
    assert!(!html.contains(EMAIL), "leaked in the page");
}

/// The hash the database keeps for the session in `cookie`.
fn session_hash(cookie: &str) -> Vec<u8> {
    let token = cookie
        .strip_prefix("chat_session=")
        .expect("session cookie");
    server::auth::token_hash(token).to_vec()
}

/// Sends a message once the session of `client` has ended behind its back,
/// then reads until the server closes the socket: the close must be 1008,
/// and nothing (no `ack`) may follow it.
async fn closes_when_its_session_ends(
    app: &TestApp,
    cookie: &str,
    client: &mut common::Client,
    general: i64,
) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    client.say(general, "sent as the session ends").await;
    let code = loop {
        match tokio::time::timeout(common::WAIT, client.socket.next())
            .await
            .expect("the socket of an ended session is closed")
        {
            Some(Ok(Message::Close(Some(close)))) => break u16::from(close.code),
            Some(Ok(_)) => continue,
            other => panic!("ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, 1008);
    loop {
        match tokio::time::timeout(common::WAIT, client.socket.next())
            .await
            .expect("the stream ends after the close")
        {
            Some(Ok(Message::Text(text))) => panic!("frame after the close: {text}"),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        }
    }
    // HTTP agrees: the session is gone.
    let (status, _, _) = app
        .call(Some(cookie), "create_room", &[("name", "too late")])
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn an_open_socket_is_closed_when_its_session_expires() {
    session_ends_behind_the_sockets_back("UPDATE sessions SET expires_at = 1 WHERE token_hash = ?")
        .await;
}

#[tokio::test]
async fn an_open_socket_is_closed_when_its_session_is_deleted() {
    session_ends_behind_the_sockets_back("DELETE FROM sessions WHERE token_hash = ?").await;
}

/// Ends Ann's session with `sql` (bound to its hash) while her socket is
/// open: the socket is closed with 1008, Bob sees her go offline, his lives on.
async fn session_ends_behind_the_sockets_back(sql: &str) {
    // Sessions are checked every 100 ms; pings keep their default, so a
    // socket left unread during the setup is not taken for a dead one.
    let app =
        TestApp::spawn_with(|config| config.session_check_every = Some(Duration::from_millis(100)))
            .await;
    let (ann, mut a) = app.member("ann").await;
    let (_, mut b) = app.member("bob").await;
    let general = app.room_id("general").await;
    sqlx::query(sql)
        .bind(session_hash(&ann))
        .execute(&app.db().await)
        .await
        .unwrap();
    let ann_left = b.expect_where("presence_changed", |f| presence_of(f, "ann", false));
    tokio::join!(
        closes_when_its_session_ends(&app, &ann, &mut a, general),
        ann_left
    );
    b.assert_alive().await;
}

/// `html` with every UUID (the forms' fresh `client_id`s) and the
/// per-response script nonce blanked out.
fn without_uuids(html: &str) -> String {
    let mut html = html.to_owned();
    for attr in ["nonce=\"", "crossorigin=\""] {
        let mut from = 0;
        while let Some(at) = html[from..].find(attr) {
            let start = from + at + attr.len();
            let Some(len) = html[start..].find('"') else {
                break;
            };
            html.replace_range(start..start + len, "<nonce>");
            from = start;
        }
    }
    let html = html.as_str();
    let is_uuid = |s: &[u8]| {
        s.len() == 36
            && s.iter().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
    };
    let bytes = html.as_bytes();
    let mut out = String::with_capacity(html.len());
    let mut i = 0;
    while i < bytes.len() {
        if i + 36 <= bytes.len() && is_uuid(&bytes[i..i + 36]) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let c = html[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[tokio::test]
async fn rooms_open_by_id_old_names_redirect_and_outsiders_preview() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.sign_in("ann").await, app.sign_in("bob").await);
    let (status, created) = app.create_room(&ann, "Team Chat").await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_i64().expect("created room's id");
    assert_eq!(created["role"], "owner");
    let mut a = app.ws(&ann).await;
    a.say(id, "hello <team>").await;
    a.expect("ack").await;

    // The old URL redirects (302) to the page by id, whatever the case.
    for path in ["/rooms/Team%20Chat", "/rooms/team%20CHAT"] {
        let (status, location, _) = app.get(&bob, path).await;
        assert_eq!(
            (status, location.as_deref()),
            (302, Some(format!("/r/{id}/team-chat").as_str())),
            "{path}"
        );
    }
    // Any slug opens it. Bob is no member: a preview, with the history,
    // the members and the Join form, and no composer.
    for path in [
        format!("/r/{id}/team-chat"),
        format!("/r/{id}/x"),
        format!("/r/{id}"),
    ] {
        let (status, _, html) = app.get(&bob, &path).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            html.contains("hello &lt;team&gt;"),
            "history on {path}: {html}"
        );
        assert!(html.contains("Join # Team Chat"), "join form on {path}");
        assert!(
            !html.contains("class=\"composer\""),
            "no composer on {path}"
        );
    }
    let (status, page, _) = app
        .call(Some(&bob), "page", &[("room_id", id.to_string().as_str())])
        .await;
    assert_eq!(status, 200);
    let room = &page["view"]["Room"];
    assert_eq!(room["summary"]["id"], id);
    assert!(room["summary"].get("role").is_none(), "a preview: {room}");
    assert_eq!(room["members"][0]["user"]["name"], "ann");
    assert_eq!(room["messages"][0]["body"], "hello <team>");
    let mine: Vec<&str> = page["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(mine, ["general"], "only Bob's rooms");

    // A name that is no public room and an id that is no room are the same
    // 404 page, saying nothing of what was asked for.
    let (missing, _, by_name) = app.get(&bob, "/rooms/nowhere").await;
    let (unknown, _, by_id) = app.get(&bob, "/r/999999/x").await;
    assert_eq!((missing, unknown), (404, 404));
    assert!(!by_name.contains("nowhere"));
    assert_eq!(without_uuids(&by_name), without_uuids(&by_id));
    let (status, page, _) = app.call(Some(&bob), "page", &[("room", "nowhere")]).await;
    assert_eq!((status, &page["view"]), (200, &json!("NotFound")));

    // Bob joins; the page is then a member's, and his rooms list it.
    let (status, joined, _) = app
        .call(
            Some(&bob),
            "join_room",
            &[
                ("room_id", id.to_string().as_str()),
                ("client_id", uuid::Uuid::new_v4().to_string().as_str()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    let (_, _, html) = app.get(&bob, &format!("/r/{id}/team-chat")).await;
    assert!(html.contains("class=\"composer\""), "composer once joined");
    assert!(!html.contains("Join # Team Chat"));
    let (_, page, _) = app
        .call(Some(&bob), "page", &[("browse", "true"), ("q", "team")])
        .await;
    let listed = &page["view"]["Browse"]["page"]["rooms"];
    assert_eq!(listed[0]["name"], "Team Chat", "{page}");
    assert_eq!(listed[0]["member_count"], 2);
    assert_eq!(listed[0]["joined"], true);
    assert!(page["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .any(|r| r["id"] == id));
    // The directory page is server-rendered.
    let (status, _, html) = app.get(&bob, "/browse?q=team").await;
    assert_eq!(status, 200);
    assert!(html.contains("# Team Chat") && html.contains("2 members"));

    // Without JavaScript: Leave goes home, Join opens the room (302s), and
    // the sidebar follows.
    let plain = |endpoint: &str, form: Vec<(&'static str, String)>| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client")
            .post(app.url(&format!("/api/{endpoint}")))
            .header("Origin", app.origin())
            .header("Accept", "text/html")
            .header("Cookie", bob.as_str())
            .form(&form)
            .send()
    };
    let form = || {
        vec![
            ("room_id", id.to_string()),
            ("client_id", uuid::Uuid::new_v4().to_string()),
        ]
    };
    let left = plain("leave_room", form()).await.expect("leave");
    assert_eq!(
        (
            left.status().as_u16(),
            left.headers()["location"].to_str().ok()
        ),
        (302, Some("/"))
    );
    let (_, page, _) = app.call(Some(&bob), "page", &[]).await;
    assert!(!page["rooms"].to_string().contains("Team Chat"), "{page}");
    let joined = plain("join_room", form()).await.expect("join");
    assert_eq!(
        (
            joined.status().as_u16(),
            joined.headers()["location"].to_str().ok()
        ),
        (302, Some(format!("/r/{id}/team-chat").as_str()))
    );
    let (_, page, _) = app.call(Some(&bob), "page", &[]).await;
    assert!(page["rooms"].to_string().contains("Team Chat"), "{page}");
}
