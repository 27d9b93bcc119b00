//! The chat service: one function per user operation, called alike by the
//! WebSocket dispatcher, the server functions and the no-JS forms; each one
//! asks [`policy`] first, and policy alone decides rights.
//!
//! Reads (history, pages, the directory, member lists) look the caller's
//! standing up with one query (`Rooms::access`) and ask
//! [`policy::authorize`]. Commands (post, create, join, leave, rename, topic,
//! read markers) go to the committer, which asks the same policy inside the
//! committing transaction, where the answer cannot go stale; they are not
//! checked twice.
//!
//! # Layout
//! - [`policy`]: who may do what in which room, as pure functions over facts
//!   the caller looked up (no I/O). The committed table
//!   `server/tests/fixtures/authz.csv` states the same rules cell by cell.
//! - [`messages`]: post, history, history around a message.
//! - [`rooms`]: create, rename, topic, the directory, names, your rooms.
//! - [`members`]: join, leave, read markers, member lists.

pub mod members;
pub mod messages;
pub mod policy;
pub mod rooms;

use crate::{
    auth::limit::Limiter,
    commit::{plan::Command, write::Receipt, Committer},
    store::Store,
    unavailable,
};
use app::protocol::{validate_client_id, ApiError, RoomKind, UserInfo};
use policy::{Access, Action};
use std::{sync::Arc, time::Duration};

/// The window `Config::rooms_per_user` counts room creations over.
pub const CREATE_WINDOW: Duration = Duration::from_secs(600);

/// The chat service; cheap to clone.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    committer: Committer,
    /// Room creations per user (`None`: no limit).
    creations: Option<Limiter>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat").finish_non_exhaustive()
    }
}

impl Chat {
    /// The service over `store`, committing through `committer`; one user
    /// may create `rooms_per_user` rooms per [`CREATE_WINDOW`] (0: any
    /// number).
    pub fn new(store: Store, committer: Committer, rooms_per_user: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                committer,
                creations: (rooms_per_user > 0)
                    .then(|| Limiter::new(rooms_per_user, CREATE_WINDOW)),
            }),
        }
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The caller's standing in `room_id`, if the room exists.
    async fn access(&self, user: &UserInfo, room_id: i64) -> Result<Option<Access>, ApiError> {
        self.store()
            .rooms
            .access(room_id, user.id)
            .await
            .map_err(unavailable)
    }

    /// Looks the caller's standing up and asks the policy; the room's
    /// standing when allowed.
    async fn authorize(
        &self,
        user: &UserInfo,
        room_id: i64,
        action: Action,
    ) -> Result<Access, ApiError> {
        let access = self.access(user, room_id).await?;
        policy::authorize(access.as_ref(), action)?;
        // `authorize` refuses a missing room, so this is always Some.
        access.ok_or_else(|| policy::Denied::NotFound.into())
    }

    /// Whether `user` may do `action` in `room_id` (the answer every
    /// transport gives when not).
    pub async fn may(&self, user: &UserInfo, room_id: i64, action: Action) -> Result<(), ApiError> {
        self.may_in(user, room_id, action).await.map(|_| ())
    }

    /// [`Chat::may`], answering the room's kind when allowed.
    pub async fn may_in(
        &self,
        user: &UserInfo,
        room_id: i64,
        action: Action,
    ) -> Result<RoomKind, ApiError> {
        self.authorize(user, room_id, action).await.map(|a| a.kind)
    }

    /// Queues a command built by one of the `*_command` functions (or a
    /// read marker, without `client_id`); the committer answers `reply`
    /// after COMMIT. Waits only while the committer's queue is full.
    pub async fn submit(
        &self,
        user: &UserInfo,
        client_id: Option<&str>,
        command: Command,
        reply: crate::commit::Reply,
    ) -> Result<(), ApiError> {
        let client_id = client_id.map(validate_client_id).transpose()?;
        self.inner
            .committer
            .submit(crate::commit::Submitted {
                actor: user.clone(),
                client_id,
                command,
                reply,
                queued_at: std::time::Instant::now(),
            })
            .await
    }

    /// Commits one command for `user` under `client_id` and waits for it.
    async fn command(
        &self,
        user: &UserInfo,
        client_id: &str,
        command: Command,
    ) -> Result<Receipt, ApiError> {
        let client_id = validate_client_id(client_id)?;
        self.inner
            .committer
            .call(user.clone(), Some(client_id), command)
            .await
    }
}
