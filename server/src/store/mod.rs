//! Durable storage, as one trait per aggregate, so SQLite (the zero-setup
//! default) and PostgreSQL can be siblings implementing the same traits.
//! Everything here is called off the per-delivery hot path: fan-out never
//! touches the store.
//!
//! - [`Accounts`]: users and how they sign in (guest, local, OpenID identity).
//! - [`Sessions`]: sessions and OpenID sign-ins in progress.
//! - [`Rooms`]: rooms, and the last `seq` of each.
//! - [`Events`]: the commit path and what it wrote (history, replay).
//! - [`Health`]: whether the database answers and can be written.
//!
//! [`Store`] holds one of each; [`open`] makes it from a `DATABASE_URL`.

pub mod sqlite;

use app::protocol::{ChatMessage, Me, RoomInfo, UserInfo};
use async_trait::async_trait;
use std::{collections::HashSet, fmt, sync::Arc};

/// Storage failures the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. a room name that exists).
    #[error("already exists")]
    Conflict,
    /// The database failed or cannot be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
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
            StoreError::Conflict => true,
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
    /// Highest committed `seq` (0 when empty).
    pub last_seq: i64,
}

impl RoomRow {
    pub fn info(&self) -> RoomInfo {
        RoomInfo {
            name: self.name.clone(),
            created_at: self.created_at,
        }
    }
}

/// A message to commit, borrowed from the request that carries it.
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    pub room_id: i64,
    pub author_id: i64,
    pub body: &'a str,
    pub client_id: &'a str,
    pub ts: i64,
}

/// The outcome of committing one [`NewMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub id: i64,
    pub seq: i64,
    pub ts: i64,
    /// The `client_id` was already stored: this is the original message,
    /// which must be acknowledged again but not delivered again.
    pub duplicate: Option<Original>,
}

/// What was stored first under a repeated `client_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub author_id: i64,
    pub body: String,
}

/// A stored message with its author, as everyone sees them (no email).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: i64,
    pub seq: i64,
    pub author: UserInfo,
    pub body: String,
    pub client_id: String,
    pub ts: i64,
}

impl StoredMessage {
    pub fn into_message(self, room: &str) -> ChatMessage {
        ChatMessage {
            room: room.to_owned(),
            seq: self.seq,
            id: self.id,
            author: self.author,
            body: self.body,
            ts: self.ts,
            client_id: self.client_id,
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

/// Users and the ways they sign in.
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
    ) -> Result<Me>;
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

/// Rooms.
#[async_trait]
pub trait Rooms: Send + Sync {
    /// Creates a room; [`StoreError::Conflict`] when `name_key` is taken.
    async fn create_room(&self, name: &str, name_key: &str, by: i64, now: i64) -> Result<RoomRow>;
    /// Every room with its last `seq`, oldest first.
    async fn rooms(&self) -> Result<Vec<RoomRow>>;
}

/// The commit path, and reading back what it wrote.
#[async_trait]
pub trait Events: Send + Sync {
    /// Commits a batch of posts in one transaction, assigning each new
    /// message the next `seq` of its room. Results are in the batch's order.
    /// A repeated `(room, client_id)` is answered with the original message.
    async fn commit_posts(&self, batch: &[NewMessage<'_>]) -> Result<Vec<Committed>>;
    /// Up to `limit` messages with `seq < before` (all when `None`), newest
    /// `limit` of them, returned in ascending `seq`.
    async fn history(
        &self,
        room_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>>;
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
