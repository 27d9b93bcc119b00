//! The v2 batch transaction (`commit::write`) against a real SQLite store:
//! what one batch writes, how repeats and refusals are answered, and that a
//! failing hook answers `unavailable` with nothing stored.

use app::protocol::{ErrorCode, UserInfo};
use server::commit::{
    plan::Command,
    write::{commit_batch, Entry, Receipt},
};
use server::store::{
    sqlite::{SqliteHook, SqliteStore},
    AppendedEvent, Store, StoreError,
};
use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};

const NOW: i64 = 1_700_000_000_000;

/// Fails commits while its flag is set; counts the transactions that
/// reached commit (one per transaction the committer used).
struct Failing(AtomicBool, AtomicUsize);

#[async_trait::async_trait]
impl SqliteHook for Failing {
    async fn before_commit(
        &self,
        _: &mut sqlx::SqliteConnection,
        _: &[AppendedEvent],
    ) -> server::store::Result<()> {
        if self.0.load(Ordering::SeqCst) {
            return Err(StoreError::Missing("hook"));
        }
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Db {
    store: Store,
    db: sqlx::SqlitePool,
    hook: Arc<Failing>,
    _dir: tempfile::TempDir,
}

async fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let hook = Arc::new(Failing(false.into(), 0.into()));
    let store = Store::new(
        SqliteStore::open_with_hooks(&url, vec![hook.clone() as Arc<dyn SqliteHook>])
            .await
            .unwrap(),
    );
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    Db {
        store,
        db,
        hook,
        _dir: dir,
    }
}

/// A new guest, joined to general as the server joins every new user.
async fn user(store: &Store, name: &str) -> UserInfo {
    let user = store
        .accounts
        .create_guest(name, NOW)
        .await
        .unwrap()
        .public();
    let general = store.rooms.auto_join().await.unwrap()[0];
    let joined = commit_batch(
        &*store.events,
        &[Entry {
            actor: user.clone(),
            client_id: Some(server::chat::members::default_join_key(general)),
            command: Command::Join {
                room_id: general,
                silent: true,
            },
        }],
        NOW,
    )
    .await;
    assert!(joined[0].is_ok(), "{joined:?}");
    user
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

fn ok(answer: &Result<Receipt, app::protocol::ApiError>) -> &Receipt {
    answer.as_ref().expect("accepted")
}

fn code(answer: &Result<Receipt, app::protocol::ApiError>) -> ErrorCode {
    answer.as_ref().expect_err("refused").code
}

#[tokio::test]
async fn a_batch_writes_rooms_members_messages_events_and_commands() {
    let Db {
        store, db, _dir, ..
    } = db().await;
    let (ann, bob, cat) = (
        user(&store, "ann").await,
        user(&store, "bob").await,
        user(&store, "cat").await,
    );
    let create = |name: &str| Command::CreateRoom {
        name: name.into(),
        name_key: name.to_lowercase(),
        topic: String::new(),
    };
    let answers = commit_batch(&*store.events, &[entry(&ann, "c1", create("Design"))], NOW).await;
    let room = ok(&answers[0]).room_id;
    assert_eq!(ok(&answers[0]).seq, Some(1), "the owner's join");

    let answers = commit_batch(
        &*store.events,
        &[
            entry(
                &bob,
                "b1",
                Command::Join {
                    room_id: room,
                    silent: false,
                },
            ),
            entry(&bob, "b2", post(room, "hello")),
            entry(&bob, "b2", post(room, "hello")),
            entry(&cat, "k1", post(room, "not yet")),
            entry(
                &ann,
                "c2",
                Command::Rename {
                    room_id: room,
                    name: "Draw".into(),
                    name_key: "draw".into(),
                },
            ),
            entry(
                &bob,
                "b3",
                Command::SetTopic {
                    room_id: room,
                    topic: "t".into(),
                },
            ),
            entry(&ann, "c3", create("draw")),
        ],
        NOW,
    )
    .await;
    assert_eq!(ok(&answers[0]).seq, Some(2));
    let posted = ok(&answers[1]).clone();
    assert_eq!((posted.seq, posted.duplicate), (Some(3), false));
    assert_eq!(
        ok(&answers[2]),
        &Receipt {
            duplicate: true,
            ..posted.clone()
        }
    );
    assert_eq!(code(&answers[3]), ErrorCode::NotMember);
    assert_eq!(ok(&answers[4]).seq, Some(4));
    assert_eq!(code(&answers[5]), ErrorCode::Forbidden);
    assert_eq!(
        code(&answers[6]),
        ErrorCode::RoomExists,
        "renamed to in this batch"
    );

    type Row = (
        i64,
        String,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
    );
    let events: Vec<Row> = sqlx::query_as(
        "SELECT seq, kind, actor_id, target_id, message_id, payload FROM room_events
         WHERE room_id = ? ORDER BY seq",
    )
    .bind(room)
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            (
                1,
                "member_joined".into(),
                Some(ann.id),
                Some(ann.id),
                None,
                Some(r#"{"role":"owner","silent":false}"#.into())
            ),
            (
                2,
                "member_joined".into(),
                Some(bob.id),
                Some(bob.id),
                None,
                Some(r#"{"role":"member","silent":false}"#.into())
            ),
            (
                3,
                "posted".into(),
                Some(bob.id),
                None,
                posted.message_id,
                None
            ),
            (
                4,
                "renamed".into(),
                Some(ann.id),
                None,
                None,
                Some(r#"{"name":"Draw","old_name":"Design"}"#.into())
            ),
        ]
    );
    let (name, last_seq, members): (String, i64, i64) =
        sqlx::query_as("SELECT name, last_seq, member_count FROM rooms WHERE id = ?")
            .bind(room)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((name.as_str(), last_seq, members), ("Draw", 4, 2));

    // Later batches: a resend is answered from the stored result; the key
    // spent on another kind of command is refused; a post after a leave in
    // one batch is refused.
    let answers = commit_batch(
        &*store.events,
        &[
            entry(&bob, "b2", post(room, "hello")),
            entry(&bob, "b2", Command::Leave { room_id: room }),
            entry(&bob, "b4", Command::Leave { room_id: room }),
            entry(&bob, "b5", post(room, "gone")),
            Entry {
                actor: ann.clone(),
                client_id: None,
                command: Command::MarkRead {
                    room_id: room,
                    seq: 99,
                },
            },
        ],
        NOW,
    )
    .await;
    assert_eq!(
        ok(&answers[0]),
        &Receipt {
            duplicate: true,
            ..posted
        }
    );
    assert_eq!(code(&answers[1]), ErrorCode::BadClientId);
    assert_eq!(ok(&answers[2]).seq, Some(5));
    assert_eq!(code(&answers[3]), ErrorCode::NotMember);
    assert_eq!(ok(&answers[4]).seq, None);
    let (last_seq, members): (i64, i64) =
        sqlx::query_as("SELECT last_seq, member_count FROM rooms WHERE id = ?")
            .bind(room)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((last_seq, members), (5, 1));
    let read: i64 =
        sqlx::query_scalar("SELECT last_read_seq FROM members WHERE room_id = ? AND user_id = ?")
            .bind(room)
            .bind(ann.id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(read, 5, "clamped to the room's end");
    let commands: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM commands WHERE room_id = ?")
        .bind(room)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        commands, 5,
        "c1 b1 b2 c2 b4; refusals and marks are not recorded"
    );
}

#[tokio::test]
async fn a_failing_hook_answers_unavailable_and_stores_nothing() {
    let Db {
        store,
        db,
        hook,
        _dir,
    } = db().await;
    let ann = user(&store, "ann").await;
    let general: i64 = sqlx::query_scalar("SELECT id FROM rooms WHERE auto_join = 1")
        .fetch_one(&db)
        .await
        .unwrap();
    let before: i64 = sqlx::query_scalar("SELECT last_seq FROM rooms WHERE id = ?")
        .bind(general)
        .fetch_one(&db)
        .await
        .unwrap();
    hook.0.store(true, Ordering::SeqCst);
    let answers = commit_batch(
        &*store.events,
        &[
            entry(&ann, "a1", post(general, "one")),
            entry(&ann, "a2", post(general, "two")),
        ],
        NOW,
    )
    .await;
    assert!(answers.iter().all(|a| code(a) == ErrorCode::Unavailable));
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&db)
        .await
        .unwrap();
    let after: i64 = sqlx::query_scalar("SELECT last_seq FROM rooms WHERE id = ?")
        .bind(general)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!((stored, after), (0, before));

    hook.0.store(false, Ordering::SeqCst);
    let answers = commit_batch(
        &*store.events,
        &[entry(&ann, "a1", post(general, "one"))],
        NOW,
    )
    .await;
    assert_eq!(ok(&answers[0]).seq, Some(before + 1), "the retry commits");
}

#[tokio::test]
async fn a_join_reads_up_to_its_own_event_not_the_batch_end() {
    let Db {
        store, db, _dir, ..
    } = db().await;
    let (ann, bob) = (user(&store, "ann").await, user(&store, "bob").await);
    let answers = commit_batch(
        &*store.events,
        &[entry(
            &ann,
            "a0",
            Command::CreateRoom {
                name: "R".into(),
                name_key: "r".into(),
                topic: String::new(),
            },
        )],
        NOW,
    )
    .await;
    let room = ok(&answers[0]).room_id;
    let answers = commit_batch(
        &*store.events,
        &[
            entry(
                &bob,
                "b1",
                Command::Join {
                    room_id: room,
                    silent: false,
                },
            ),
            entry(&ann, "a1", post(room, "for bob")),
        ],
        NOW,
    )
    .await;
    let (joined, posted) = (ok(&answers[0]).seq, ok(&answers[1]).seq);
    assert_eq!((joined, posted), (Some(2), Some(3)));
    let read: i64 =
        sqlx::query_scalar("SELECT last_read_seq FROM members WHERE room_id = ? AND user_id = ?")
            .bind(room)
            .bind(bob.id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(Some(read), joined, "ann's post stays unread for bob");
}

#[tokio::test]
async fn a_rename_frees_its_name_for_a_creation_in_the_same_transaction() {
    let Db {
        store, hook, _dir, ..
    } = db().await;
    let (ann, bob) = (user(&store, "ann").await, user(&store, "bob").await);
    let create = |name: &str| Command::CreateRoom {
        name: name.into(),
        name_key: name.to_lowercase(),
        topic: String::new(),
    };
    let answers = commit_batch(&*store.events, &[entry(&ann, "a0", create("design"))], NOW).await;
    let room = ok(&answers[0]).room_id;
    let before = hook.1.load(Ordering::SeqCst);
    let answers = commit_batch(
        &*store.events,
        &[
            entry(
                &ann,
                "a1",
                Command::Rename {
                    room_id: room,
                    name: "draw".into(),
                    name_key: "draw".into(),
                },
            ),
            entry(&bob, "b1", create("Design")),
        ],
        NOW,
    )
    .await;
    assert_eq!(ok(&answers[0]).seq, Some(2));
    assert_ne!(ok(&answers[1]).room_id, room);
    assert_eq!(
        hook.1.load(Ordering::SeqCst) - before,
        1,
        "one transaction, not the one-by-one fallback"
    );
}

#[tokio::test]
async fn a_constraint_error_falls_back_to_one_command_per_transaction() {
    let Db {
        store,
        db,
        hook,
        _dir,
    } = db().await;
    let (ann, cat) = (user(&store, "ann").await, user(&store, "cat").await);
    let answers = commit_batch(
        &*store.events,
        &[entry(
            &ann,
            "a0",
            Command::CreateRoom {
                name: "R".into(),
                name_key: "r".into(),
                topic: String::new(),
            },
        )],
        NOW,
    )
    .await;
    let room = ok(&answers[0]).room_id;
    let before = hook.1.load(Ordering::SeqCst);
    let answers = commit_batch(
        &*store.events,
        &[
            entry(&ann, "a1", post(room, "one")),
            entry(
                &ann,
                "a2",
                Command::Post {
                    room_id: room,
                    body: "a reply to nothing".into(),
                    mentions: Vec::new(),
                    reply_to: Some(i64::MAX),
                },
            ),
            entry(&ann, "a1", post(room, "one")),
            entry(&cat, "c1", post(room, "not a member")),
            entry(&ann, "a3", post(room, "two")),
        ],
        NOW,
    )
    .await;
    let first = ok(&answers[0]).clone();
    assert_eq!((first.seq, first.duplicate), (Some(2), false));
    assert_eq!(
        code(&answers[1]),
        ErrorCode::Internal,
        "the broken foreign key"
    );
    assert_eq!(
        ok(&answers[2]),
        &Receipt {
            duplicate: true,
            ..first.clone()
        },
        "the repeat answered from the first's result"
    );
    assert_eq!(code(&answers[3]), ErrorCode::NotMember);
    assert_eq!(
        ok(&answers[4]).seq,
        Some(3),
        "dense: the failed post took no seq"
    );
    assert!(
        hook.1.load(Ordering::SeqCst) - before > 1,
        "committed one by one"
    );

    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM room_events WHERE room_id = ? ORDER BY seq")
            .bind(room)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(seqs, [1, 2, 3]);
    let last_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM rooms WHERE id = ?")
        .bind(room)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(last_seq, 3);
    let bodies: Vec<String> =
        sqlx::query_scalar("SELECT body FROM messages WHERE room_id = ? ORDER BY seq")
            .bind(room)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(bodies, ["one", "two"]);
    let mut recorded: Vec<(i64, String)> =
        sqlx::query_as("SELECT user_id, client_id FROM commands WHERE room_id = ?")
            .bind(room)
            .fetch_all(&db)
            .await
            .unwrap();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            (ann.id, "a0".to_owned()),
            (ann.id, "a1".to_owned()),
            (ann.id, "a3".to_owned())
        ],
        "neither the failed command nor the refusal is recorded"
    );
}
