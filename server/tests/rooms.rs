//! Rooms by id over the server functions (`chat::` operations): create,
//! join, leave, rename and topic, each idempotent per `client_id`; the
//! directory; room names; and what the committer wrote for them.

mod common;

use common::TestApp;
use serde_json::Value;

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Calls a server function and returns (status, body).
async fn call(app: &TestApp, cookie: Option<&str>, f: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let (status, body, _) = app.call(cookie, f, form).await;
    (status, body)
}

/// The id of the public room called `name`.
async fn room_id(app: &TestApp, cookie: &str, name: &str) -> i64 {
    let (status, body) = call(app, Some(cookie), "resolve_room", &[("name", name)]).await;
    assert_eq!(status, 200, "resolve {name}: {body}");
    body.as_i64().expect("an id")
}

/// The room's events as (seq, kind), in seq order.
async fn events(app: &TestApp, room: i64) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT seq, kind FROM room_events WHERE room_id = ? ORDER BY seq")
        .bind(room)
        .fetch_all(&app.db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn room_commands_work_by_id_and_each_is_idempotent_per_client_id() {
    let app = TestApp::spawn().await;
    let ann = app.sign_in("Ann").await;
    let bob = app.sign_in("Bob").await;
    let carol = app.sign_in("Carol").await;

    // Create, and resend the same command: one room.
    let create = uuid();
    let form = [
        ("name", "Tea"),
        ("client_id", create.as_str()),
        ("topic", "cups"),
    ];
    let (status, first) = call(&app, Some(&ann), "create_room", &form).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = call(&app, Some(&ann), "create_room", &form).await;
    assert_eq!((status, &again), (200, &first));
    let tea = room_id(&app, &ann, "TEA").await;
    let rooms: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rooms WHERE name_key = 'tea'")
        .fetch_one(&app.db().await)
        .await
        .unwrap();
    assert_eq!(rooms, 1);

    // Join: Bob becomes a member; a resend and a second join change nothing.
    let tea_id = tea.to_string();
    let join = uuid();
    let (status, joined) = call(
        &app,
        Some(&bob),
        "join_room",
        &[("room_id", &tea_id), ("client_id", &join)],
    )
    .await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["role"], "member");
    assert_eq!(joined["member_count"], 2);
    assert_eq!(joined["topic"], "cups");
    for client_id in [join.clone(), uuid()] {
        let (status, body) = call(
            &app,
            Some(&bob),
            "join_room",
            &[("room_id", &tea_id), ("client_id", &client_id)],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["member_count"], 2);
    }

    // A client_id spent on one kind of command cannot be spent on another.
    let (status, body) = call(
        &app,
        Some(&ann),
        "join_room",
        &[("room_id", &tea_id), ("client_id", &create)],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("bad_client_id"))
    );

    // Only the owner renames and sets the topic.
    let (status, body) = call(
        &app,
        Some(&bob),
        "rename_room",
        &[
            ("room_id", &tea_id),
            ("client_id", &uuid()),
            ("name", "Bob's"),
        ],
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let rename = uuid();
    let rename_form = [
        ("room_id", tea_id.as_str()),
        ("client_id", rename.as_str()),
        ("name", "Coffee"),
    ];
    let (status, renamed) = call(&app, Some(&ann), "rename_room", &rename_form).await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["name"], "Coffee");
    assert_eq!(renamed["role"], "owner");
    let (status, _) = call(&app, Some(&ann), "rename_room", &rename_form).await;
    assert_eq!(status, 200);
    assert_eq!(room_id(&app, &bob, "coffee").await, tea);
    let (status, body) = call(&app, Some(&bob), "resolve_room", &[("name", "Tea")]).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = call(
        &app,
        Some(&bob),
        "set_topic",
        &[
            ("room_id", &tea_id),
            ("client_id", &uuid()),
            ("topic", "mine"),
        ],
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, body) = call(
        &app,
        Some(&ann),
        "set_topic",
        &[
            ("room_id", &tea_id),
            ("client_id", &uuid()),
            ("topic", "beans"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["topic"], "beans");

    // Leaving needs membership; a left member can come back.
    let (status, body) = call(
        &app,
        Some(&carol),
        "leave_room",
        &[("room_id", &tea_id), ("client_id", &uuid())],
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_member")));
    let leave = uuid();
    let leave_form = [("room_id", tea_id.as_str()), ("client_id", leave.as_str())];
    for _ in 0..2 {
        let (status, body) = call(&app, Some(&bob), "leave_room", &leave_form).await;
        assert_eq!(status, 200, "{body}");
    }

    // Rooms that do not exist, and callers without a session.
    let (status, missing) = call(
        &app,
        Some(&bob),
        "join_room",
        &[("room_id", "999999"), ("client_id", &uuid())],
    )
    .await;
    assert_eq!((status, missing["code"].as_str()), (404, Some("not_found")));
    let (status, body) = call(
        &app,
        None,
        "join_room",
        &[("room_id", &tea_id), ("client_id", &uuid())],
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));

    // What was committed: one event per effect, seqs dense across kinds,
    // and the member count kept.
    let kinds: Vec<(i64, String)> = events(&app, tea).await;
    let expected = [
        "member_joined",
        "member_joined",
        "renamed",
        "topic_changed",
        "member_left",
    ];
    assert_eq!(
        kinds,
        expected
            .iter()
            .enumerate()
            .map(|(i, k)| (i as i64 + 1, k.to_string()))
            .collect::<Vec<_>>()
    );
    let (count, joined): (i64, i64) = sqlx::query_as(
        "SELECT member_count, (SELECT COUNT(*) FROM members m
                               WHERE m.room_id = r.id AND m.state = 'joined')
         FROM rooms r WHERE id = ?",
    )
    .bind(tea)
    .fetch_one(&app.db().await)
    .await
    .unwrap();
    assert_eq!((count, joined), (1, 1));
}

#[tokio::test]
async fn the_directory_pages_public_rooms_by_name_with_counts_and_joined() {
    let app = TestApp::spawn().await;
    let ann = app.sign_in("Ann").await;
    let bob = app.sign_in("Bob").await;
    for letter in ["g", "c", "a", "e", "b", "f", "d"] {
        let name = format!("Dir {letter}");
        assert_eq!(app.create_room(&ann, &name).await.0, 200);
    }
    assert_eq!(app.create_room(&ann, "1_0 other").await.0, 200);
    assert_eq!(app.create_room(&ann, "100 other").await.0, 200);
    let c = room_id(&app, &bob, "dir c").await.to_string();
    let (status, _) = call(
        &app,
        Some(&bob),
        "join_room",
        &[("room_id", &c), ("client_id", &uuid())],
    )
    .await;
    assert_eq!(status, 200);

    // Three pages of three, in name order, the last without `next`.
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    for page in 0..3 {
        let mut form = vec![("q", "DIR "), ("limit", "3")];
        if let Some(after) = &after {
            form.push(("after", after));
        }
        let (status, body) = call(&app, Some(&bob), "directory", &form).await;
        assert_eq!(status, 200, "{body}");
        let rooms = body["rooms"].as_array().unwrap();
        assert_eq!(rooms.len(), if page < 2 { 3 } else { 1 }, "{body}");
        for room in rooms {
            names.push(room["name"].as_str().unwrap().to_owned());
            let is_c = room["name"] == "Dir c";
            assert_eq!(room["joined"], is_c, "{room}");
            assert_eq!(room["member_count"], if is_c { 2 } else { 1 }, "{room}");
        }
        after = body["next"].as_str().map(str::to_owned);
        assert_eq!(after.is_some(), page < 2, "{body}");
    }
    let expected: Vec<String> = "abcdefg".chars().map(|c| format!("Dir {c}")).collect();
    assert_eq!(names, expected);

    // `_` is a character like any other, not a wildcard.
    let (_, body) = call(&app, Some(&bob), "directory", &[("q", "1_")]).await;
    let found: Vec<&str> = body["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["1_0 other"]);
    // No filter: every public room, general included.
    let (_, body) = call(&app, Some(&bob), "directory", &[]).await;
    assert_eq!(body["rooms"].as_array().unwrap().len(), 10, "{body}");

    let (status, body) = call(&app, None, "directory", &[]).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
}

#[tokio::test]
async fn room_creation_is_limited_per_user() {
    let app = TestApp::spawn_with(|config| config.rooms_per_user = 2).await;
    let ann = app.sign_in("Ann").await;
    let bob = app.sign_in("Bob").await;
    assert_eq!(app.create_room(&ann, "one").await.0, 200);
    assert_eq!(app.create_room(&ann, "two").await.0, 200);
    let (status, body, headers) = app
        .call(Some(&ann), "create_room", &[("name", "three")])
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    assert!(body["retry_after"].as_u64().unwrap() > 0, "{body}");
    assert!(headers.contains_key("retry-after"));
    // The limit is per user.
    assert_eq!(app.create_room(&bob, "three").await.0, 200);
}
