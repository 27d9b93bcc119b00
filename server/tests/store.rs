//! The store contract: what every implementation of the store traits must
//! do, written once as `contract(store)` over the [`Store`] handle. It runs
//! here against a fresh SQLite file; a PostgreSQL store runs the same
//! function against a fresh database.
//!
//! It assumes only what the migrations promise every backend: an empty
//! database apart from the room `general`. Ids are compared, never guessed.

use server::store::{
    Committed, NewMessage, OidcFlow, Original, Profile, Store, StoreError, StoredMessage,
};
use std::collections::HashSet;

/// A fixed clock: the contract passes the time to every call.
const NOW: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn sqlite_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    contract(server::store::open(&url).await.unwrap()).await;
}

/// Every aggregate's promises, on one fresh store.
pub async fn contract(store: Store) {
    health(&store).await;
    accounts(&store).await;
    sessions(&store).await;
    oidc_flows(&store).await;
    rooms(&store).await;
    events(&store).await;
}

async fn health(store: &Store) {
    store.health.ping().await.unwrap();
    store.health.probe_write(NOW).await.unwrap();
    store.health.probe_write(NOW + 1).await.unwrap();
}

async fn accounts(store: &Store) {
    let a = &store.accounts;

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
    let profile = |name: &str, email: Option<&str>| Profile {
        name: name.to_owned(),
        email: email.map(str::to_owned),
        picture: Some(format!("https://pics.example/{name}")),
    };
    let issuer = "https://id.example";
    let cat = a
        .sign_in_identity(issuer, "sub-1", &profile("Cat", Some("cat@x.example")), NOW)
        .await
        .unwrap();
    assert_eq!(cat.email.as_deref(), Some("cat@x.example"));
    let cat_again = a
        .sign_in_identity(issuer, "sub-1", &profile("Catherine", None), NOW + 1)
        .await
        .unwrap();
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
    let ids: HashSet<i64> = [cat.id, other.id, elsewhere.id, ann.id, bob.id]
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 5, "every new identity is a new user");
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
        (tea.name.as_str(), tea.created_at, tea.last_seq),
        ("Tea", later, 0)
    );
    // The name key carries uniqueness, whatever the displayed name.
    let dup = r.create_room("TEA", "tea", ann.id, later + 1).await;
    assert!(matches!(dup, Err(StoreError::Conflict)), "{dup:?}");
    let cake = r
        .create_room("Cake", "cake", ann.id, later + 1)
        .await
        .unwrap();
    assert_ne!(tea.id, cake.id);

    // Listed oldest first (created_at, then id), each once, as stored.
    let after = r.rooms().await.unwrap();
    assert_eq!(after.len(), before.len() + 2);
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
    let ann = store.accounts.create_guest("ann", NOW).await.unwrap();
    let bob = store.accounts.create_guest("bob", NOW).await.unwrap();
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
    let post =
        |room_id: i64, author_id: i64, body: &'static str, client_id: &'static str| NewMessage {
            room_id,
            author_id,
            body,
            client_id,
            ts: NOW,
        };

    // One batch: seqs dense from 1 per room, results in the batch's order.
    let done = e
        .commit_posts(&[
            post(one.id, ann.id, "one-1", "c1"),
            post(two.id, bob.id, "two-1", "c2"),
            post(one.id, bob.id, "one-2", "c3"),
        ])
        .await
        .unwrap();
    let seqs: Vec<i64> = done.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [1, 1, 2]);
    assert!(done.iter().all(|c| c.ts == NOW && c.duplicate.is_none()));
    assert_eq!(done.iter().map(|c| c.id).collect::<HashSet<_>>().len(), 3);

    // A later batch continues each room's seq; a repeated (room, client_id)
    // answers with the original and its author, whoever resends it and
    // whatever it says (the committer refuses another author's), and takes
    // no seq.
    let more = e
        .commit_posts(&[
            post(one.id, ann.id, "resent", "c1"),
            post(one.id, ann.id, "one-3", "c4"),
            post(one.id, ann.id, "not mine", "c3"),
            // v1: a client_id is unique per room, not per user.
            post(two.id, ann.id, "two-2", "c1"),
        ])
        .await
        .unwrap();
    assert_eq!(
        more[0],
        Committed {
            id: done[0].id,
            seq: 1,
            ts: NOW,
            duplicate: Some(Original {
                author_id: ann.id,
                body: "one-1".to_owned()
            }),
        }
    );
    assert_eq!((more[1].seq, more[1].duplicate.as_ref()), (3, None));
    assert_eq!(
        more[2].duplicate,
        Some(Original {
            author_id: bob.id,
            body: "one-2".to_owned()
        })
    );
    assert_eq!((more[3].seq, more[3].duplicate.as_ref()), (2, None));

    // Repeats inside one batch: the second answers with the first.
    let twice = e
        .commit_posts(&[
            post(one.id, bob.id, "one-4", "c5"),
            post(one.id, bob.id, "one-4", "c5"),
        ])
        .await
        .unwrap();
    assert_eq!((twice[0].seq, twice[1].seq), (4, 4));
    assert_eq!(twice[0].id, twice[1].id);
    assert!(twice[0].duplicate.is_none() && twice[1].duplicate.is_some());

    // A row that breaks a constraint (no such room) fails the batch as a
    // constraint error, so the committer can retry the others alone; the
    // good row of that batch is not stored.
    let bad = e
        .commit_posts(&[
            post(one.id, ann.id, "lost with the batch", "c6"),
            post(i64::from(i32::MAX), ann.id, "nowhere", "c7"),
        ])
        .await
        .unwrap_err();
    assert!(bad.is_constraint(), "{bad}");

    // History: the newest `limit` below `before`, ascending, with authors.
    let bodies = |page: &[StoredMessage]| page.iter().map(|m| m.body.clone()).collect::<Vec<_>>();
    let latest = e.history(one.id, None, 2).await.unwrap();
    assert_eq!(bodies(&latest), ["one-3", "one-4"]);
    assert_eq!(
        (
            latest[0].seq,
            latest[0].author.id,
            latest[0].author.name.as_str()
        ),
        (3, ann.id, "ann")
    );
    assert_eq!(latest[1].client_id, "c5");
    assert_eq!(latest[1].ts, NOW);
    let older = e.history(one.id, Some(latest[0].seq), 2).await.unwrap();
    assert_eq!(bodies(&older), ["one-1", "one-2"]);
    assert!(e
        .history(one.id, Some(older[0].seq), 2)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        bodies(&e.history(one.id, None, 50).await.unwrap()),
        ["one-1", "one-2", "one-3", "one-4"]
    );
    assert_eq!(
        bodies(&e.history(two.id, None, 50).await.unwrap()),
        ["two-1", "two-2"]
    );

    // Replay: after < seq <= upto, ascending, at most `limit`.
    let range = e.range(one.id, 1, 4, 2).await.unwrap();
    assert_eq!(bodies(&range), ["one-2", "one-3"]);
    assert_eq!(bodies(&e.range(one.id, 3, 4, 10).await.unwrap()), ["one-4"]);
    assert!(e.range(one.id, 4, 10, 10).await.unwrap().is_empty());

    // Each room's last seq, as the rooms list gives it.
    let rooms = store.rooms.rooms().await.unwrap();
    let last = |id: i64| rooms.iter().find(|r| r.id == id).unwrap().last_seq;
    assert_eq!((last(one.id), last(two.id)), (4, 2));
}
