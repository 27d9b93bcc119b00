//! Messages: posting (queued, or awaited by server functions and forms) and
//! reading history pages.

use super::{policy::Action, Chat};
use crate::{
    commit::{plan::Command, Reply, Submitted},
    store::{AroundPage, HistoryPage},
    unavailable,
};
use app::protocol::{
    v2::MAX_MENTIONS, validate_body, validate_client_id, ApiError, ErrorCode, Message, UserInfo,
    HISTORY_PAGE, MAX_HISTORY_PAGE,
};

/// A message to post, as a client sent it.
#[derive(Debug, Clone, Default)]
pub struct Post {
    pub room_id: i64,
    pub client_id: String,
    pub body: String,
    pub mentions: Vec<i64>,
    pub reply_to: Option<i64>,
}

/// Which page of a room's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// The newest messages.
    Latest,
    /// The newest messages with `seq` below this one.
    Before(i64),
    /// The messages around the message with this id.
    Around(i64),
}

/// A page of history, ascending by `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<Message>,
    /// Older messages exist.
    pub has_more_before: bool,
    /// Newer messages exist (only ever true for [`HistoryQuery::Around`]).
    pub has_more_after: bool,
}

/// A page size as asked for, clamped to `1..=MAX_HISTORY_PAGE`.
pub fn page_size(limit: Option<i64>) -> u32 {
    limit.map_or(HISTORY_PAGE, |l| {
        // In 1..=MAX_HISTORY_PAGE after the clamp, so the conversion holds.
        u32::try_from(l.clamp(1, i64::from(MAX_HISTORY_PAGE))).unwrap_or(MAX_HISTORY_PAGE)
    })
}

impl Chat {
    /// Validates a post and queues it; the committer answers `reply`
    /// (after COMMIT) with the ack or the refusal. Waits only while the
    /// committer's queue is full (backpressure). Rights are checked by the
    /// committer, in the transaction.
    ///
    /// `mentions` are user ids: repeats and the author are dropped, at most
    /// [`MAX_MENTIONS`] are kept. `reply_to` must be a message of the same
    /// room (`not_found` otherwise).
    pub async fn post(&self, user: &UserInfo, post: Post, reply: Reply) -> Result<(), ApiError> {
        let client_id = validate_client_id(&post.client_id)?;
        validate_body(&post.body)?;
        let mut mentions = post.mentions;
        mentions.retain(|&id| id != user.id);
        mentions.sort_unstable();
        mentions.dedup();
        if mentions.len() > MAX_MENTIONS {
            return Err(ApiError::new(
                ErrorCode::BadFrame,
                format!("A message may mention at most {MAX_MENTIONS} people."),
            ));
        }
        if let Some(parent) = post.reply_to {
            let found = self
                .store()
                .events
                .around(post.room_id, parent, 1)
                .await
                .map_err(unavailable)?;
            if found.is_none() {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    "The message replied to is not in this room.",
                ));
            }
        }
        self.inner
            .committer
            .submit(Submitted {
                actor: user.clone(),
                client_id: Some(client_id),
                command: Command::Post {
                    room_id: post.room_id,
                    body: post.body,
                    mentions,
                    reply_to: post.reply_to,
                },
                reply,
                queued_at: std::time::Instant::now(),
            })
            .await
    }

    /// Posts and waits for the commit: the id of the room it is stored in
    /// and the stored message. A resend of a `client_id` the user has posted
    /// before is answered with the message stored the first time, wherever
    /// it was posted.
    pub async fn post_and_wait(
        &self,
        user: &UserInfo,
        room_id: i64,
        client_id: &str,
        body: &str,
    ) -> Result<(i64, Message), ApiError> {
        validate_body(body)?;
        let client_id = validate_client_id(client_id)?;
        let receipt = self
            .command(
                user,
                &client_id,
                Command::Post {
                    room_id,
                    body: body.to_owned(),
                    mentions: Vec::new(),
                    reply_to: None,
                },
            )
            .await?;
        let (Some(seq), Some(id)) = (receipt.seq, receipt.message_id) else {
            return Err(ApiError::new(
                ErrorCode::Internal,
                "The post has no message.",
            ));
        };
        if !receipt.duplicate {
            return Ok((
                receipt.room_id,
                Message {
                    id,
                    seq,
                    author: user.clone(),
                    body: body.to_owned(),
                    ts: receipt.ts,
                    client_id,
                    edited_at: None,
                    deleted: false,
                    reply_to: None,
                    mentions: Vec::new(),
                },
            ));
        }
        let stored = self
            .store()
            .events
            .range(receipt.room_id, seq - 1, seq, 1)
            .await
            .map_err(unavailable)?;
        stored
            .into_iter()
            .next()
            .map(|m| (receipt.room_id, m.into_v2()))
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "The original message is gone."))
    }

    /// A page of a room's history, for a caller who may read it.
    pub async fn history(
        &self,
        user: &UserInfo,
        room_id: i64,
        query: HistoryQuery,
        limit: u32,
    ) -> Result<Page, ApiError> {
        self.authorize(user, room_id, Action::ReadHistory).await?;
        self.read_page(room_id, query, limit).await
    }

    /// A page of history, without a rights check (the caller made one).
    pub(super) async fn read_page(
        &self,
        room_id: i64,
        query: HistoryQuery,
        limit: u32,
    ) -> Result<Page, ApiError> {
        let events = &self.store().events;
        let limit = limit.clamp(1, MAX_HISTORY_PAGE);
        let (messages, has_more_before, has_more_after) = match query {
            HistoryQuery::Latest | HistoryQuery::Before(_) => {
                let before = match query {
                    HistoryQuery::Before(seq) => Some(seq),
                    _ => None,
                };
                let HistoryPage { messages, has_more } = events
                    .history(room_id, before, limit)
                    .await
                    .map_err(unavailable)?;
                (messages, has_more, false)
            }
            HistoryQuery::Around(message_id) => {
                let AroundPage {
                    messages,
                    has_before,
                    has_after,
                } = events
                    .around(room_id, message_id, limit)
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(|| {
                        ApiError::new(ErrorCode::NotFound, "There is no such message here.")
                    })?;
                (messages, has_before, has_after)
            }
        };
        Ok(Page {
            messages: messages.into_iter().map(|m| m.into_v2()).collect(),
            has_more_before,
            has_more_after,
        })
    }
}
