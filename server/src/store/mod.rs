//! Durable storage, as one trait per aggregate, so SQLite (the zero-setup
//! default) and PostgreSQL can be siblings implementing the same traits.
//! Everything here is called off the per-delivery hot path: fan-out never
//! touches the store.
//!
//! - [`Accounts`]: users and how they sign in (guest, local, OpenID identity).
//! - [`Sessions`]: sessions and OpenID sign-ins in progress.
//! - [`Rooms`]: rooms, their `seq` counters and members.
//! - [`Events`]: the commit path (messages, their `posted` events and the
//!   processed commands) and what it wrote (history, replay).
//! - [`Health`]: whether the database answers and can be written.
//!
//! [`Store`] holds one of each; [`open`] makes it from a `DATABASE_URL`.

pub mod sqlite;

use crate::chat::policy::{Access, Standing};
use app::protocol::{
    DirectoryPage, Event, Me, MemberInfo, Message, RoomKind, RoomSummary, UserInfo,
};
use async_trait::async_trait;
use std::{collections::HashSet, fmt, sync::Arc};

/// Storage failures the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. a room name that exists).
    #[error("already exists")]
    Conflict,
    /// A write names a row that does not exist (e.g. a post to a room that
    /// is gone): like a broken foreign key, it is about the rows written.
    #[error("{0} does not exist")]
    Missing(&'static str),
    /// The database failed or cannot be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A hook of the committing transaction failed: the batch was rolled
    /// back. Never a constraint error, whatever the hook's cause: the
    /// commands are not at fault, so they are answered `unavailable`.
    #[error("commit hook failed: {0}")]
    Hook(String),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the failure is about the rows written (they break a
    /// constraint: a room or user that does not exist, a duplicate), not
    /// about the database: the same write without those rows can succeed.
    pub fn is_constraint(&self) -> bool {
        match self {
            StoreError::Conflict | StoreError::Missing(_) => true,
            StoreError::Database(sqlx::Error::Database(db)) => {
                !matches!(db.kind(), sqlx::error::ErrorKind::Other)
            }
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A room as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRow {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    /// The room's `seq` counter: the `seq` of its latest event (0 when none).
    pub last_seq: i64,
    /// Members whose state is joined.
    pub member_count: i64,
}

/// What a member may do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Moderator,
    Member,
}

/// Where a user stands in a room they have a membership row in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Joined,
    Invited,
    Banned,
}

/// A user's membership of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub state: MemberState,
    pub role: Role,
    /// When the current state began.
    pub joined_at: i64,
    /// The highest `seq` the member has read.
    pub last_read_seq: i64,
}

impl Role {
    /// The name stored in `members.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Moderator => "moderator",
            Role::Member => "member",
        }
    }

    /// The role stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Role::Owner, Role::Moderator, Role::Member]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

impl MemberState {
    /// The name stored in `members.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Joined => "joined",
            MemberState::Invited => "invited",
            MemberState::Banned => "banned",
        }
    }

    /// The state stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [
            MemberState::Joined,
            MemberState::Invited,
            MemberState::Banned,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// A page of history: messages in ascending `seq`, and whether older ones
/// exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    pub messages: Vec<StoredMessage>,
    pub has_more: bool,
}

/// A page of messages around one message (`Events::around`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AroundPage {
    pub messages: Vec<StoredMessage>,
    /// Older messages exist before the page.
    pub has_before: bool,
    /// Newer messages exist after the page.
    pub has_after: bool,
}

/// A stored message as it is now, with its author as everyone sees them
/// (no email).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: i64,
    /// The `seq` of its `posted` event.
    pub seq: i64,
    pub author: UserInfo,
    /// Empty once deleted.
    pub body: String,
    pub client_id: String,
    /// Commit time.
    pub ts: i64,
    /// When the body was last edited.
    pub edited_at: Option<i64>,
    /// Deleted: the body is gone, the message keeps its place.
    pub deleted: bool,
    /// The message it answers (None also when that one is gone).
    pub reply_to: Option<i64>,
    /// The users it mentions, as stored.
    pub mentions: Vec<i64>,
}

impl StoredMessage {
    /// The message as the protocol sends it: every stored field, unchanged.
    pub fn into_v2(self) -> Message {
        Message {
            id: self.id,
            seq: self.seq,
            author: self.author,
            body: self.body,
            ts: self.ts,
            client_id: self.client_id,
            edited_at: self.edited_at,
            deleted: self.deleted,
            reply_to: self.reply_to,
            mentions: self.mentions,
        }
    }
}

/// What an identity provider says about a user, refreshed at each sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub email: Option<String>,
    pub picture: Option<String>,
}

/// A local account's user and password hash.
#[derive(Debug, Clone)]
pub struct LocalAccount {
    pub user: Me,
    /// The argon2id PHC string.
    pub password_hash: String,
}

/// An OpenID sign-in in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcFlow {
    /// SHA-256 of the `state` sent to the provider.
    pub state_hash: [u8; 32],
    /// SHA-256 of the flow cookie of the browser that started it.
    pub browser_hash: [u8; 32],
    /// The configured provider's id.
    pub provider: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub expires_at: i64,
}

/// A sign-in with an identity provider: the user, and whether this sign-in
/// created them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub user: Me,
    pub created: bool,
}

/// Users and the ways they sign in. A user created here belongs to no room
/// yet: the caller joins them to the `auto_join` rooms through the committer
/// ([`crate::chat::Chat::join_defaults`]), so those joins take their `seq`
/// and reach the rooms' connected members like every other event.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates a guest user.
    async fn create_guest(&self, name: &str, now: i64) -> Result<Me>;
    /// Creates a user with a local account; [`StoreError::Conflict`] when
    /// `email_key` is taken.
    async fn create_local_account(
        &self,
        name: &str,
        email: &str,
        email_key: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Me>;
    /// The local account under `email_key`.
    async fn local_account(&self, email_key: &str) -> Result<Option<LocalAccount>>;
    /// The user linked to `(issuer, subject)`, with `profile` stored as their
    /// current name, email and picture; created (and linked) on first sign-in.
    async fn sign_in_identity(
        &self,
        issuer: &str,
        subject: &str,
        profile: &Profile,
        now: i64,
    ) -> Result<SignedIn>;
}

/// Sessions, and OpenID sign-ins on their way to becoming one.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Stores a session for `user_id` under the hash of its token.
    async fn create_session(
        &self,
        user_id: i64,
        token_hash: &[u8],
        now: i64,
        expires_at: i64,
    ) -> Result<()>;
    /// The user of an unexpired session.
    async fn session_user(&self, token_hash: &[u8], now: i64) -> Result<Option<Me>>;
    /// Which of `token_hashes` name a session that exists and has not
    /// expired at `now` (any number of them: the store batches the lookup).
    async fn live_sessions(&self, token_hashes: &[[u8; 32]], now: i64)
        -> Result<HashSet<[u8; 32]>>;
    /// Ends a session.
    async fn delete_session(&self, token_hash: &[u8]) -> Result<()>;
    /// Deletes sessions that expired before `now`; returns how many.
    async fn purge_sessions(&self, now: i64) -> Result<u64>;
    /// Stores a sign-in in progress.
    async fn create_oidc_flow(&self, flow: &OidcFlow) -> Result<()>;
    /// Removes and returns the sign-in started with this `state` (expired or
    /// not): a `state` can be used once.
    async fn take_oidc_flow(&self, state_hash: &[u8]) -> Result<Option<OidcFlow>>;
    /// Deletes sign-ins in progress that expired before `now`; returns how many.
    async fn purge_oidc_flows(&self, now: i64) -> Result<u64>;
}

/// Rooms and their members.
#[async_trait]
pub trait Rooms: Send + Sync {
    /// Creates a public room owned by `by`, its one member;
    /// [`StoreError::Conflict`] when a public room has `name_key`.
    async fn create_room(&self, name: &str, name_key: &str, by: i64, now: i64) -> Result<RoomRow>;
    /// Every public room with its `seq` counter, oldest first.
    async fn rooms(&self) -> Result<Vec<RoomRow>>;
    /// The rooms every new user joins (general), by id.
    async fn auto_join(&self) -> Result<Vec<i64>>;
    /// `user_id`'s membership of `room_id`, if they have one.
    async fn membership(&self, room_id: i64, user_id: i64) -> Result<Option<Membership>>;
    /// The facts `chat::policy` decides on: the room's kind and where
    /// `user_id` stands in it (one query); `None` when the room does not exist.
    async fn access(&self, room_id: i64, user_id: i64) -> Result<Option<Access>>;
    /// The rooms `user_id` is a joined member of, each as they see it
    /// (role, read marker, unread and mention counts), in a stable order:
    /// name key, then id (DMs, which have no name, first by id). One snapshot.
    async fn my_rooms(&self, user_id: i64) -> Result<Vec<RoomSummary>>;
    /// One room as `user_id` sees it (role `None` and counts 0 when they are
    /// not a member); `None` when it does not exist. No rights check.
    async fn summary(&self, room_id: i64, user_id: i64) -> Result<Option<RoomSummary>>;
    /// The public room whose name key is `name_key`.
    async fn public_by_name(&self, name_key: &str) -> Result<Option<i64>>;
    /// Public rooms whose name key contains `q_key` literally (all when
    /// empty), in name-key order after the cursor `after` (an opaque string
    /// a previous page returned as `next`), at most `limit`; `next` is set
    /// only when more rooms follow. `joined` says whether `viewer` is a
    /// joined member. Any string is a valid cursor: an unknown or forged one
    /// continues after it in name-key order, never an error.
    async fn directory(
        &self,
        viewer: i64,
        q_key: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<DirectoryPage>;
    /// Joined members, in join order (`joined_at`, then user id), after the
    /// user id `after` in that order, at most `limit`. A cursor who is not
    /// a joined member (any more) has no place in that order: the list
    /// starts over, so nobody is skipped.
    async fn members(
        &self,
        room_id: i64,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MemberInfo>>;
    /// The `last_seq` of each room among `ids` that exists, as (id, last_seq).
    async fn last_seqs(&self, ids: &[i64]) -> Result<Vec<(i64, i64)>>;
}

/// What `commands` holds for a (user, `client_id`) key when a batch claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Not processed before: the batch may process it.
    New,
    /// Processed before: repeats are answered from `result`, and the key
    /// may not be spent on another kind of command.
    Done {
        kind: String,
        room_id: Option<i64>,
        result: Option<String>,
    },
}

/// A room as the committing transaction reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomState {
    pub id: i64,
    pub kind: RoomKind,
    pub name: Option<String>,
    pub name_key: Option<String>,
    pub topic: String,
    pub last_seq: i64,
    pub member_count: i64,
}

/// A room to create; its events (the owner's join) take seqs
/// `1..=last_seq`, so it needs no reservation.
#[derive(Debug, Clone, Copy)]
pub struct NewRoom<'a> {
    pub kind: RoomKind,
    pub name: &'a str,
    pub name_key: &'a str,
    pub topic: &'a str,
    pub created_by: i64,
    pub last_seq: i64,
    pub ts: i64,
}

/// A message row to insert at a reserved `seq`.
#[derive(Debug, Clone, Copy)]
pub struct MessageRow<'a> {
    pub room_id: i64,
    pub seq: i64,
    pub author_id: i64,
    pub body: &'a str,
    pub client_id: &'a str,
    pub reply_to: Option<i64>,
    /// JSON array of user ids.
    pub mentions: Option<&'a str>,
    pub ts: i64,
}

/// An event to append to a room's log (plan v2 §2's row shapes: a
/// `posted` event references its message and never copies its text).
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    pub room_id: i64,
    pub seq: i64,
    pub kind: &'a str,
    pub actor_id: Option<i64>,
    pub target_id: Option<i64>,
    pub message_id: Option<i64>,
    /// JSON, kind-specific.
    pub payload: Option<&'a str>,
    pub ts: i64,
}

/// An event appended in the committing transaction, as hooks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendedEvent {
    pub room_id: i64,
    pub seq: i64,
    pub kind: String,
    pub actor_id: Option<i64>,
    pub message_id: Option<i64>,
}

/// A membership change; `member_count` follows in the same statement set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberChange {
    pub room_id: i64,
    pub user_id: i64,
    /// `Some(role)`: joins with that role; `None`: leaves.
    pub join: Option<app::protocol::Role>,
    /// The seq of the join or leave event; a join has read up to it.
    pub seq: i64,
    pub ts: i64,
}

/// A change to a room's name or topic.
#[derive(Debug, Clone, Copy)]
pub struct RoomChange<'a> {
    pub room_id: i64,
    /// (name, name_key)
    pub name: Option<(&'a str, &'a str)>,
    pub topic: Option<&'a str>,
}

/// A member's read marker after `mark_read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    pub room_id: i64,
    pub user_id: i64,
    pub last_read_seq: i64,
    /// Others' undeleted posts above the marker (at most 1000).
    pub unread: i64,
    pub mention_count: i64,
}

/// A processed command to record under (user, `client_id`).
#[derive(Debug, Clone, Copy)]
pub struct Done<'a> {
    pub user_id: i64,
    pub client_id: &'a str,
    pub kind: &'a str,
    pub room_id: Option<i64>,
    /// The JSON answer a repeat gets.
    pub result: &'a str,
    pub ts: i64,
}

/// The committer's transaction: one per batch, every write of the batch in
/// it, in the order the committer calls these (plan v2 §3). Dropped without
/// [`EventTx::commit`], it rolls back.
#[async_trait]
pub trait EventTx: Send {
    /// What `commands` holds for each key, in input order.
    async fn claim(&mut self, keys: &[(i64, &str)]) -> Result<Vec<Claim>>;
    /// The rooms among `ids` that exist.
    async fn rooms(&mut self, ids: &[i64]) -> Result<Vec<RoomState>>;
    /// The (room, user) pairs that have a membership row, with the standing
    /// it gives (absent pairs are outsiders).
    async fn standings(&mut self, pairs: &[(i64, i64)]) -> Result<Vec<(i64, i64, Standing)>>;
    /// The keys among `keys` that a public room has as its name.
    async fn names_taken(&mut self, keys: &[&str]) -> Result<Vec<String>>;
    /// Creates rooms; their ids in input order.
    async fn insert_rooms(&mut self, rooms: &[NewRoom<'_>]) -> Result<Vec<i64>>;
    /// Advances each room's counter by its count (rooms in id order) and
    /// returns (room, first reserved seq); a missing room is
    /// [`StoreError::Missing`].
    async fn reserve_seqs(&mut self, counts: &[(i64, i64)]) -> Result<Vec<(i64, i64)>>;
    /// Inserts messages; their ids in input order.
    async fn insert_messages(&mut self, rows: &[MessageRow<'_>]) -> Result<Vec<i64>>;
    /// Records whom each message (`rows` as inserted, with their ids)
    /// mentions: the named users who are joined members of its room (the
    /// `mentions` table), counted in `mention_count` for those who have not
    /// read past it; anyone else named is ignored. Called after the batch's
    /// membership changes, so a join earlier in the batch counts.
    async fn record_mentions(&mut self, rows: &[MessageRow<'_>], ids: &[i64]) -> Result<()>;
    /// Appends events (and hands them to the hooks at commit).
    async fn append_events(&mut self, events: &[NewEvent<'_>]) -> Result<()>;
    /// Applies joins and leaves, keeping `member_count`.
    async fn apply_members(&mut self, changes: &[MemberChange]) -> Result<()>;
    /// Applies renames and topic changes.
    async fn update_rooms(&mut self, changes: &[RoomChange<'_>]) -> Result<()>;
    /// Moves read markers forward (clamped to the room's `last_seq`), for
    /// members only, and recomputes their mention counts.
    async fn mark_read(&mut self, marks: &[(i64, i64, i64)]) -> Result<Vec<ReadState>>;
    /// Records processed commands.
    async fn record(&mut self, done: &[Done<'_>]) -> Result<()>;
    /// Runs the backend's hooks with this batch's events, then commits. A
    /// hook's error rolls the whole batch back.
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// The commit path, and reading back what it wrote.
#[async_trait]
pub trait Events: Send + Sync {
    /// Starts the committer's transaction (`BEGIN IMMEDIATE` on SQLite).
    async fn begin(&self) -> Result<Box<dyn EventTx>>;
    /// The newest `limit` messages with `seq < before` (any when `None`), in
    /// ascending `seq`, and whether there are older ones.
    async fn history(&self, room_id: i64, before: Option<i64>, limit: u32) -> Result<HistoryPage>;
    /// The room's events with `seq > after`, ascending, at most `limit`,
    /// rendered for the wire: a `posted` event carries its message as it is
    /// now (from the `messages` row), every other kind its payload.
    async fn replay(&self, room_id: i64, after: i64, limit: u32) -> Result<Vec<Event>>;
    /// A page of messages centred on `message_id` in `room_id`: up to
    /// `limit / 2` before it, the message, and the rest after it, ascending,
    /// with whether older and newer messages exist. `None` when the message
    /// is not in that room.
    async fn around(&self, room_id: i64, message_id: i64, limit: u32)
        -> Result<Option<AroundPage>>;
    /// Messages with `after < seq <= upto`, ascending, at most `limit`.
    async fn range(
        &self,
        room_id: i64,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>>;
}

/// Whether the database works, for readiness.
#[async_trait]
pub trait Health: Send + Sync {
    /// Whether the store answers.
    async fn ping(&self) -> Result<()>;
    /// Whether the store can durably write: commits one tiny row. Used by
    /// readiness after a write failed, since a read can succeed on a
    /// database that cannot be written.
    async fn probe_write(&self, now: i64) -> Result<()>;
}

/// The store: one implementation of each aggregate, cheap to clone.
///
/// Code names the aggregate it uses (`store.sessions.session_user(…)`), so
/// what a module touches is visible.
#[derive(Clone)]
pub struct Store {
    pub accounts: Arc<dyn Accounts>,
    pub sessions: Arc<dyn Sessions>,
    pub rooms: Arc<dyn Rooms>,
    pub events: Arc<dyn Events>,
    pub health: Arc<dyn Health>,
}

impl Store {
    /// A store whose every aggregate is served by `backend`.
    pub fn new<B>(backend: B) -> Self
    where
        B: Accounts + Sessions + Rooms + Events + Health + 'static,
    {
        let backend = Arc::new(backend);
        Self {
            accounts: backend.clone(),
            sessions: backend.clone(),
            rooms: backend.clone(),
            events: backend.clone(),
            health: backend,
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Opens the store a `DATABASE_URL` names, creating and migrating it.
pub async fn open(url: &str) -> Result<Store> {
    Ok(Store::new(sqlite::SqliteStore::open(url).await?))
}
