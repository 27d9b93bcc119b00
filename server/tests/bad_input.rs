//! Bad input to the server functions (`POST /api/*`): missing, unknown,
//! mistyped or oversized arguments get a 4xx answer with the documented
//! `{"code": ..., "message": ...}` body, never a 500, and change nothing.

mod common;

use common::{Remote, TestApp};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server functions' arguments limit (`server::http` keeps it private).
const LIMIT: usize = 64 * 1024;

/// Every server function with arguments that would succeed.
fn endpoints() -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let id = || uuid::Uuid::new_v4().to_string();
    vec![
        ("page", vec![("room", "general".into())]),
        ("sign_in_guest", vec![("name", "ann".into())]),
        (
            "sign_up",
            vec![
                ("name", "ann".into()),
                ("email", format!("{}@example.com", id())),
                ("password", "correct horse".into()),
            ],
        ),
        (
            "sign_in_password",
            vec![
                ("email", "nobody@example.com".into()),
                ("password", "whatever1".into()),
            ],
        ),
        ("sign_out", vec![]),
        (
            "create_room",
            vec![("name", format!("room {}", &id()[..8]))],
        ),
        (
            "post_message",
            vec![
                // general: the first room of every database (migration 0001).
                ("room_id", "1".into()),
                ("client_id", id()),
                ("body", "hello".into()),
            ],
        ),
    ]
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", app::percent_encode(k), app::percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// An answer, read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the documented error answer: `status`, and JSON `code` and `message`.
    #[track_caller]
    fn assert_error(&self, status: u16, code: &str, what: &str) {
        assert_eq!(
            (self.status, self.body["code"].as_str()),
            (status, Some(code)),
            "{what}: {self:?}"
        );
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: no message in {self:?}"
        );
        assert!(
            self.header("serverfnerror").is_some(),
            "{what}: no serverfnerror header in {self:?}"
        );
    }
}

/// Sends `head` (request line excluded, each header ending in CRLF) and
/// `body` as they are, over a fresh connection, and reads the answer. Raw, so
/// a test controls every byte (bodies that are not UTF-8, lying lengths,
/// chunked encoding).
async fn raw(remote: &Remote, endpoint: &str, head: &str, body: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(remote.addr)
        .await
        .expect("connect");
    let request = format!(
        "POST /api/{endpoint} HTTP/1.1\r\nHost: {}\r\nOrigin: {}\r\nConnection: close\r\n{head}\r\n",
        remote.addr,
        remote.origin()
    );
    stream.write_all(request.as_bytes()).await.expect("head");
    stream.write_all(body).await.expect("body");
    let mut answer = Vec::new();
    tokio::time::timeout(common::WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .expect("read answer");
    parse_answer(&answer)
}

fn parse_answer(answer: &[u8]) -> Answer {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = std::str::from_utf8(&answer[..split]).expect("head is text");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = answer[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&data[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || data.len() < end + 2 + size {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[(end + 4 + size).min(data.len())..];
    }
}

/// A form post of `body` (a raw string) with the session in `cookie`.
async fn post_form(app: &Remote, cookie: &str, endpoint: &str, body: &[u8]) -> Answer {
    let head = format!(
        "Cookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    raw(app, endpoint, &head, body).await
}

/// Asserts the session in `cookie` is still signed in (bad input to
/// `sign_out` must not have run it).
async fn assert_signed_in(app: &Remote, cookie: &str) {
    let (status, body, _) = app.call(Some(cookie), "page", &[]).await;
    assert_eq!(status, 200);
    assert!(body["me"].is_object(), "signed out by bad input: {body}");
}

#[tokio::test]
async fn missing_arguments_are_422_bad_frame() {
    let app = TestApp::spawn().await;
    let cookie = app.sign_in("ann").await;
    for (endpoint, args) in endpoints() {
        // `page` and `sign_out` have no required field.
        if matches!(endpoint, "page" | "sign_out") {
            continue;
        }
        for missing in 0..args.len() {
            let mut some = args.clone();
            let (field, _) = some.remove(missing);
            let answer = post_form(&app, &cookie, endpoint, form(&some).as_bytes()).await;
            answer.assert_error(422, "bad_frame", &format!("{endpoint} without {field}"));
        }
        let answer = post_form(&app, &cookie, endpoint, b"").await;
        answer.assert_error(422, "bad_frame", &format!("{endpoint} with an empty body"));
    }
    assert_eq!(app.stored(None).await, 0);
    assert_signed_in(&app, &cookie).await;
}

#[tokio::test]
async fn unknown_arguments_are_422_bad_frame() {
    let app = TestApp::spawn().await;
    let cookie = app.sign_in("ann").await;
    for (endpoint, mut args) in endpoints() {
        args.push(("colour", "blue".into()));
        let answer = post_form(&app, &cookie, endpoint, form(&args).as_bytes()).await;
        answer.assert_error(422, "bad_frame", &format!("{endpoint} with colour"));
        assert!(
            answer.body["message"].as_str().unwrap().contains("colour"),
            "{answer:?}"
        );
    }
    assert_eq!(app.stored(None).await, 0);
    assert_signed_in(&app, &cookie).await;
}

#[tokio::test]
async fn mistyped_arguments_are_422_bad_frame() {
    let app = TestApp::spawn().await;
    let cookie = app.sign_in("ann").await;
    for (endpoint, args) in endpoints() {
        let encoded = form(&args);
        let mut bodies: Vec<(String, Vec<u8>)> = vec![
            // JSON sent as if it were a form.
            (
                "JSON labelled as a form".into(),
                serde_json::to_vec(
                    &args
                        .iter()
                        .cloned()
                        .collect::<std::collections::HashMap<_, _>>(),
                )
                .unwrap(),
            ),
            // Raw bytes that are not UTF-8.
            ("a raw non-UTF-8 byte".into(), {
                let mut b = encoded.clone().into_bytes();
                b.extend_from_slice(if args.is_empty() { b"\xff=1" } else { b"x\xff" });
                b
            }),
        ];
        if let Some((field, value)) = args.first() {
            let rest = form(&args[1..]);
            let join = |s: String| {
                if rest.is_empty() {
                    s
                } else {
                    format!("{s}&{rest}")
                }
            };
            bodies.push((
                "an array where a string is expected".into(),
                join(format!("{field}[]=a&{field}[]=b")).into_bytes(),
            ));
            bodies.push((
                "a map where a string is expected".into(),
                join(format!("{field}[x]={}", app::percent_encode(value))).into_bytes(),
            ));
            bodies.push((
                "a field given twice".into(),
                join(format!("{field}=a&{field}=b")).into_bytes(),
            ));
            bodies.push((
                "a percent-encoded byte that is not UTF-8".into(),
                join(format!("{field}=%FF")).into_bytes(),
            ));
        }
        for (what, body) in bodies {
            let answer = post_form(&app, &cookie, endpoint, &body).await;
            answer.assert_error(422, "bad_frame", &format!("{endpoint}: {what}"));
        }

        // Not a form at all.
        for content_type in [
            "application/json",
            "text/plain",
            "multipart/form-data; boundary=x",
        ] {
            let body = if content_type == "application/json" {
                serde_json::to_string(
                    &args
                        .iter()
                        .cloned()
                        .collect::<std::collections::HashMap<_, _>>(),
                )
                .unwrap()
            } else {
                encoded.clone()
            };
            let head = format!(
                "Cookie: {cookie}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
                body.len()
            );
            let answer = raw(&app, endpoint, &head, body.as_bytes()).await;
            answer.assert_error(
                415,
                "bad_content_type",
                &format!("{endpoint} as {content_type}"),
            );
        }
    }
    assert_eq!(app.stored(None).await, 0);
    assert_signed_in(&app, &cookie).await;
}

#[tokio::test]
async fn oversized_bodies_are_413_too_large() {
    let app = TestApp::spawn().await;
    let cookie = app.sign_in("ann").await;
    for (endpoint, args) in endpoints() {
        let field = args.first().map_or("x", |(f, _)| f);
        let body = format!("{field}={}", "a".repeat(LIMIT));
        assert!(body.len() > LIMIT);

        let answer = post_form(&app, &cookie, endpoint, body.as_bytes()).await;
        answer.assert_error(413, "too_large", &format!("{endpoint} with Content-Length"));

        // Chunked: no length up front, so the limit is found while reading.
        let mut chunked = Vec::new();
        for piece in body.as_bytes().chunks(8 * 1024) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let head = format!(
            "Cookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n"
        );
        let answer = raw(&app, endpoint, &head, &chunked).await;
        answer.assert_error(413, "too_large", &format!("{endpoint} chunked"));

        // A huge declared length is refused before any of it is read.
        let head = format!(
            "Cookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            3 * 1024 * 1024
        );
        let answer = raw(&app, endpoint, &head, b"").await;
        answer.assert_error(413, "too_large", &format!("{endpoint} declaring 3 MiB"));
    }
    assert_eq!(app.stored(None).await, 0);
    assert_signed_in(&app, &cookie).await;
}

#[tokio::test]
async fn the_largest_legitimate_message_fits_the_limit() {
    let app = TestApp::spawn().await;
    let cookie = app.sign_in("ann").await;
    // Four UTF-8 bytes a character, each percent-encoded: the worst case.
    let body = "𝄞".repeat(app::protocol::MAX_BODY_CHARS);
    let client_id = uuid::Uuid::new_v4().to_string();
    let general = app.room_id("general").await.to_string();
    let (status, answer, _) = app
        .call(
            Some(&cookie),
            "post_message",
            &[
                ("room_id", &general),
                ("client_id", &client_id),
                ("body", &body),
            ],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["body"].as_str(), Some(body.as_str()));
}

#[tokio::test]
async fn errors_raised_by_a_function_keep_their_status_and_plain_forms_still_redirect() {
    let app = TestApp::spawn().await;
    let cookie = app.sign_in("ann").await;
    let (status, body, _) = app
        .call(
            Some(&cookie),
            "post_message",
            &[
                ("room_id", "999999"),
                ("client_id", &uuid::Uuid::new_v4().to_string()),
                ("body", "x"),
            ],
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    // A browser without JavaScript is sent back to the page it came from.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(app.url("/api/sign_in_guest"))
        .header("Origin", app.origin())
        .header("Accept", "text/html")
        .header("Referer", app.url("/rooms/general"))
        .form(&[("name", "  ")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 302);
    let location = res.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("/rooms/general?error="), "{location}");
}

#[tokio::test]
async fn every_server_function_has_its_fields_listed() {
    // The guard can only refuse unknown fields of functions it knows.
    let paths: Vec<String> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _)| path.to_owned())
        .collect();
    assert!(paths.len() >= 7, "{paths:?}");
    for path in paths {
        assert!(
            app::api::form_fields(&path).is_some(),
            "{path} is missing from app::api::form_fields"
        );
    }
    assert_eq!(
        app::api::form_fields("/api/post_message"),
        Some(&["room_id", "client_id", "body"][..])
    );
    assert_eq!(app::api::form_fields("/api/sign_out"), Some(&[][..]));
}

/// A new connection of `cookie` resuming general from `cursor` (any JSON):
/// the seqs of the `posted` events replayed, and whether a `gap` came, up to
/// `resumed`; or the error a cursor out of range gets (and then resumes
/// with no cursor, to show the refused frame was not acted on).
async fn replayed(
    app: &TestApp,
    cookie: &str,
    general: i64,
    cursor: Value,
) -> Result<(Vec<i64>, bool), String> {
    let (mut client, _) = app.ws_hello(cookie).await;
    client
        .send_text(format!(
            r#"{{"type":"resume","rooms":{{"{general}":{cursor}}}}}"#
        ))
        .await;
    let mut seqs = Vec::new();
    let mut gap = false;
    loop {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("event") if frame["kind"] == "posted" => seqs.push(frame["seq"].as_i64().unwrap()),
            Some("gap") => gap = true,
            Some("resumed") => return Ok((seqs, gap)),
            Some("error") => {
                let code = frame["code"].as_str().unwrap().to_owned();
                client.resume(json!({})).await;
                return Err(code);
            }
            _ => {}
        }
    }
}

/// Sends a `history` request for general; returns the page's seqs and
/// `has_more_before`.
async fn page(
    client: &mut common::Client,
    general: i64,
    before: Value,
    limit: Value,
) -> (Vec<i64>, bool) {
    client
        .send(json!({"type": "history", "room_id": general, "before": before, "limit": limit}))
        .await;
    let frame = client.expect("history").await;
    let seqs = frame["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    (seqs, frame["has_more_before"].as_bool().unwrap())
}

/// v1 took any signed 64-bit number and clamped it; v2 takes ids, seqs and
/// cursors in 0..=2^53-1 (what a JavaScript client parses exactly) and
/// `limit` in 0..=2^32-1, refuses anything else with `bad_frame`, and clamps
/// within range as documented.
#[tokio::test]
async fn numbers_in_frames_are_bounded_and_clamped_as_documented() {
    const SENT: i64 = 201;
    const MAX: i64 = 9_007_199_254_740_991; // 2^53 - 1
    let app = TestApp::spawn().await;
    let (ann, mut a) = app.member("ann").await;
    let general = app.room_id("general").await;
    for i in 0..SENT {
        a.say(general, &format!("m{i}")).await;
    }
    for _ in 0..SENT {
        a.expect("ack").await;
    }
    // Ann's sign-up (a silent join of general) took the seqs before hers.
    let base = app.last_seq("general").await - SENT;
    let all: Vec<i64> = (base + 1..=base + SENT).collect();
    let newest = |n: i64| (base + SENT - n + 1..=base + SENT).collect::<Vec<i64>>();

    // A resume cursor: from 0 everything, at the last seq nothing, above it
    // (a seq the room never had) a `gap`; outside the range `bad_frame`.
    for (cursor, want) in [
        (Value::from(0), Ok((all.clone(), false))),
        (Value::from(base + SENT - 2), Ok((newest(2), false))),
        (Value::from(base + SENT), Ok((vec![], false))),
        (Value::from(base + SENT + 1), Ok((vec![], true))),
        (Value::from(MAX), Ok((vec![], true))),
        (Value::from(-1), Err("bad_frame".to_owned())),
        (Value::from(i64::MIN), Err("bad_frame".to_owned())),
        (Value::from(MAX + 1), Err("bad_frame".to_owned())),
    ] {
        assert_eq!(
            replayed(&app, &ann, general, cursor.clone()).await,
            want,
            "cursor {cursor}"
        );
    }

    // `before`: only seqs below it, so 1 or less is an empty page.
    for (before, want, more) in [
        (Value::Null, newest(50), true),
        (Value::from(MAX), newest(50), true),
        (
            Value::from(base + 4),
            vec![base + 1, base + 2, base + 3],
            false,
        ),
        (Value::from(1), vec![], false),
        (Value::from(0), vec![], false),
    ] {
        assert_eq!(
            page(&mut a, general, before.clone(), Value::Null).await,
            (want, more),
            "before {before}"
        );
    }

    // `limit`: clamped to 1..=200.
    for (limit, want) in [
        (Value::from(0), newest(1)),
        (Value::from(2), newest(2)),
        (Value::from(200), newest(200)),
        (Value::from(500), newest(200)),
        (Value::from(u32::MAX), newest(200)),
    ] {
        assert_eq!(
            page(&mut a, general, Value::Null, limit.clone()).await,
            (want, true),
            "limit {limit}"
        );
    }

    // Outside the ranges, or not an integer: `bad_frame`.
    let mut bad = Vec::new();
    for number in [
        "-1",
        "-9223372036854775808", // -2^63
        "9007199254740992",     // 2^53
        "9223372036854775808",  // 2^63
        "18446744073709551616", // 2^64
        "1.5",
        "1.0",
        "1e3",
        "\"7\"",
    ] {
        bad.push(format!(
            r#"{{"type":"open","room_id":{general},"since":{number}}}"#
        ));
        bad.push(format!(r#"{{"type":"open","room_id":{number}}}"#));
        bad.push(format!(
            r#"{{"type":"history","room_id":{general},"before":{number}}}"#
        ));
    }
    for number in ["-1", "4294967296", "1.5", "\"7\""] {
        bad.push(format!(
            r#"{{"type":"history","room_id":{general},"limit":{number}}}"#
        ));
    }
    for text in bad {
        a.send_text(text.clone()).await;
        let error = a.expect("error").await;
        assert_eq!(error["code"], "bad_frame", "{text}: {error}");
    }
    a.assert_alive().await;
}
