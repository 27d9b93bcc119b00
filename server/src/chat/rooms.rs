//! Rooms: creating, renaming, setting the topic; the directory of public
//! rooms; finding a public room by name; the rooms a user belongs to.

use super::{
    policy::{self, Action, GlobalAction},
    Chat,
};
use crate::{commit::plan::Command, unavailable};
use app::protocol::v2::{DIRECTORY_PAGE, MAX_DIRECTORY_PAGE};
use app::protocol::{
    room_key, validate_room_name, validate_topic, ApiError, DirectoryPage, ErrorCode, RoomSummary,
    UserInfo,
};

impl Chat {
    /// Checks a room creation against the caller's limit
    /// (`Config::rooms_per_user` per [`super::CREATE_WINDOW`]); the command
    /// to commit. The caller counts it ([`Chat::count_creation`]).
    pub fn create_command(
        &self,
        user: &UserInfo,
        name: &str,
        topic: &str,
    ) -> Result<Command, ApiError> {
        policy::authorize_global(Some(user), GlobalAction::CreateRoom)?;
        let name = validate_room_name(name)?;
        let topic = validate_topic(topic)?;
        if let Some(limiter) = &self.inner.creations {
            let key = user.id.to_string();
            if let Err(wait) = limiter.check(&key) {
                return Err(ApiError::rate_limited(
                    format!(
                        "You have created as many rooms as you may for now; try again in {} minute(s).",
                        wait.as_secs().div_ceil(60).max(1)
                    ),
                    wait,
                ));
            }
        }
        Ok(Command::CreateRoom {
            name_key: room_key(&name),
            name,
            topic,
        })
    }

    /// Checks a new room name; the command to commit.
    pub fn rename_command(room_id: i64, name: &str) -> Result<Command, ApiError> {
        let name = validate_room_name(name)?;
        Ok(Command::Rename {
            room_id,
            name_key: room_key(&name),
            name,
        })
    }

    /// Checks a topic; the command to commit.
    pub fn topic_command(room_id: i64, topic: &str) -> Result<Command, ApiError> {
        Ok(Command::SetTopic {
            room_id,
            topic: validate_topic(topic)?,
        })
    }

    /// Creates a public room owned by `user` (idempotent per `client_id`):
    /// the room as its owner sees it.
    pub async fn create_room(
        &self,
        user: &UserInfo,
        client_id: &str,
        name: &str,
        topic: &str,
    ) -> Result<RoomSummary, ApiError> {
        let command = self.create_command(user, name, topic)?;
        let receipt = self
            .command(user, client_id, command)
            .await
            .map_err(|err| named_exists(err, name))?;
        // Only rooms made count: a resend is answered, never limited.
        if !receipt.duplicate {
            self.count_creation(user);
        }
        self.summary_of(user, receipt.room_id).await
    }

    /// Counts one room creation of `user` against their limit.
    pub fn count_creation(&self, user: &UserInfo) {
        if let Some(limiter) = &self.inner.creations {
            limiter.record(&user.id.to_string());
        }
    }

    /// Renames a room (its owner only); the room as `user` now sees it.
    pub async fn rename_room(
        &self,
        user: &UserInfo,
        room_id: i64,
        client_id: &str,
        name: &str,
    ) -> Result<RoomSummary, ApiError> {
        let command = Self::rename_command(room_id, name)?;
        self.command(user, client_id, command)
            .await
            .map_err(|err| named_exists(err, name))?;
        self.summary_of(user, room_id).await
    }

    /// Sets a room's topic (its owner only; empty clears it).
    pub async fn set_topic(
        &self,
        user: &UserInfo,
        room_id: i64,
        client_id: &str,
        topic: &str,
    ) -> Result<RoomSummary, ApiError> {
        let command = Self::topic_command(room_id, topic)?;
        self.command(user, client_id, command).await?;
        self.summary_of(user, room_id).await
    }

    /// A page of the directory of public rooms whose name contains `q`
    /// (ignoring case), in name order; `after` is the `next` of the previous
    /// page. `limit` is clamped to `1..=MAX_DIRECTORY_PAGE` (default
    /// [`DIRECTORY_PAGE`]).
    pub async fn directory(
        &self,
        user: Option<&UserInfo>,
        q: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<DirectoryPage, ApiError> {
        let user = policy::signed_in(user)?;
        policy::authorize_global(Some(user), GlobalAction::ListDirectory)?;
        let limit = limit.unwrap_or(DIRECTORY_PAGE).clamp(1, MAX_DIRECTORY_PAGE);
        self.store()
            .rooms
            .directory(user.id, &room_key(q), after, limit)
            .await
            .map_err(unavailable)
    }

    /// The id of the public room called `name` (old `/rooms/<name>` links).
    /// A signed-out caller is refused before the lookup, so the answer says
    /// nothing about which names exist.
    pub async fn resolve_name(&self, user: Option<&UserInfo>, name: &str) -> Result<i64, ApiError> {
        policy::signed_in(user)?;
        let id = self
            .store()
            .rooms
            .public_by_name(&room_key(name))
            .await
            .map_err(unavailable)?;
        id.ok_or_else(|| policy::Denied::NotFound.into())
    }

    /// The rooms `user` belongs to, with their unread and mention counts.
    pub async fn my_rooms(&self, user: &UserInfo) -> Result<Vec<RoomSummary>, ApiError> {
        self.store()
            .rooms
            .my_rooms(user.id)
            .await
            .map_err(unavailable)
    }

    /// One room as `user` sees it, if they may preview it.
    pub async fn summary(&self, user: &UserInfo, room_id: i64) -> Result<RoomSummary, ApiError> {
        self.authorize(user, room_id, Action::Preview).await?;
        self.summary_of(user, room_id).await
    }

    /// One room as `user` sees it, without a rights check (after a command
    /// the committer allowed).
    pub(super) async fn summary_of(
        &self,
        user: &UserInfo,
        room_id: i64,
    ) -> Result<RoomSummary, ApiError> {
        self.store()
            .rooms
            .summary(room_id, user.id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| policy::Denied::NotFound.into())
    }
}

/// `room_exists`, saying which name.
pub fn named_exists(err: ApiError, name: &str) -> ApiError {
    match err.code {
        ErrorCode::RoomExists => ApiError::new(
            ErrorCode::RoomExists,
            format!("A room named “{}” exists already.", name.trim()),
        ),
        _ => err,
    }
}
