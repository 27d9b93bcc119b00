//! Membership: joining and leaving rooms, read markers, member lists.

use super::{policy::Action, Chat};
use crate::{commit::plan::Command, unavailable};
use app::protocol::{ApiError, ErrorCode, MemberInfo, RoomSummary, UserInfo};

/// The `client_id` of a user's automatic join of the `auto_join` room
/// `room_id` ([`Chat::join_defaults`]).
pub fn default_join_key(room_id: i64) -> String {
    format!("00000000-0000-4000-8000-{room_id:012x}")
}

/// Most members one `members` call returns.
pub const MEMBERS_PAGE: u32 = 100;

impl Chat {
    /// Joins a room (idempotent: a member joining again changes nothing and
    /// announces nothing); the room as `user` now sees it.
    pub async fn join(
        &self,
        user: &UserInfo,
        room_id: i64,
        client_id: &str,
    ) -> Result<RoomSummary, ApiError> {
        self.command(
            user,
            client_id,
            Command::Join {
                room_id,
                silent: false,
            },
        )
        .await?;
        self.summary_of(user, room_id).await
    }

    /// Joins a new user to every `auto_join` room (general), silently: a
    /// `member_joined {silent: true}` through the committer like any join,
    /// so it takes the room's next `seq` and reaches the members connected
    /// now, and the new user's read marker starts at it (nothing unread).
    /// Each join is recorded under the fixed key
    /// `00000000-0000-4000-8000-{room_id:012x}`, so calling this again for
    /// the same user changes nothing. A user banned from such a room stays
    /// out of it. Called once, when the user is created.
    pub async fn join_defaults(&self, user: &UserInfo) -> Result<(), ApiError> {
        let rooms = self.store().rooms.auto_join().await.map_err(unavailable)?;
        for room_id in rooms {
            let joined = self
                .inner
                .committer
                .call(
                    user.clone(),
                    Some(default_join_key(room_id)),
                    Command::Join {
                        room_id,
                        silent: true,
                    },
                )
                .await;
            if let Err(err) = joined {
                if err.code != ErrorCode::Banned {
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Leaves a room.
    pub async fn leave(
        &self,
        user: &UserInfo,
        room_id: i64,
        client_id: &str,
    ) -> Result<(), ApiError> {
        self.command(user, client_id, Command::Leave { room_id })
            .await
            .map(|_| ())
    }

    /// Moves `user`'s read marker in a room forward to `seq` (clamped to the
    /// room's newest event); the room as they now see it.
    pub async fn mark_read(
        &self,
        user: &UserInfo,
        room_id: i64,
        seq: i64,
    ) -> Result<RoomSummary, ApiError> {
        self.inner
            .committer
            .call(user.clone(), None, Command::MarkRead { room_id, seq })
            .await?;
        self.summary_of(user, room_id).await
    }

    /// A page of a room's members, in join order, after the member with user
    /// id `after`.
    pub async fn members(
        &self,
        user: &UserInfo,
        room_id: i64,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<MemberInfo>, ApiError> {
        self.authorize(user, room_id, Action::SeeMembers).await?;
        self.store()
            .rooms
            .members(
                room_id,
                after,
                limit.unwrap_or(MEMBERS_PAGE).clamp(1, MEMBERS_PAGE),
            )
            .await
            .map_err(unavailable)
    }
}
