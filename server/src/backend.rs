//! The server's side of the app's server functions (`app::api::Backend`).

use crate::{
    auth,
    commit::{Reply, SendRequest},
    hub::room_key,
    store::StoreError,
    unavailable, AppState,
};
use app::{
    api::{Backend, PageData, RoomPage},
    protocol::{
        validate_body, validate_client_id, validate_display_name, validate_room_name, ApiError,
        ChatMessage, ErrorCode, RoomInfo, UserInfo, HISTORY_PAGE,
    },
};
use async_trait::async_trait;
use tokio::sync::oneshot;

/// Implements the server functions over the app state.
pub struct AppBackend(pub AppState);

impl AppBackend {
    async fn user(&self, session: Option<&str>) -> Result<Option<UserInfo>, ApiError> {
        match session {
            Some(token) => auth::user_for_token(&self.0.store, token)
                .await
                .map_err(unavailable),
            None => Ok(None),
        }
    }

    async fn require_user(&self, session: Option<&str>) -> Result<UserInfo, ApiError> {
        self.user(session).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "Your session has expired; sign in again.",
            )
        })
    }
}

#[async_trait]
impl Backend for AppBackend {
    async fn page(&self, session: Option<&str>, room: Option<&str>) -> Result<PageData, ApiError> {
        let Some(me) = self.user(session).await? else {
            return Ok(PageData {
                me: None,
                rooms: Vec::new(),
                room: None,
                missing_room: None,
            });
        };
        let (room, missing_room) = match room.map(|name| (name, self.0.hub.room(name))) {
            Some((_, Some(room))) => {
                let messages = self
                    .0
                    .store
                    .history(room.id, None, HISTORY_PAGE)
                    .await
                    .map_err(unavailable)?;
                let page = RoomPage {
                    info: room.info(),
                    has_more: messages.first().is_some_and(|m| m.seq > 1),
                    messages: messages
                        .into_iter()
                        .map(|m| m.into_message(&room.name))
                        .collect(),
                    online: room.online(),
                };
                (Some(page), None)
            }
            Some((name, None)) => (None, Some(name.to_owned())),
            None => (None, None),
        };
        Ok(PageData {
            me: Some(me),
            rooms: self.0.hub.rooms(),
            room,
            missing_room,
        })
    }

    async fn sign_in_guest(&self, name: &str) -> Result<String, ApiError> {
        let name = validate_display_name(name)?;
        let now = crate::now_ms();
        let user = self
            .0
            .store
            .create_guest(&name, now)
            .await
            .map_err(unavailable)?;
        let token = auth::new_token();
        let expires = now + self.0.config.session_hours * 3_600_000;
        self.0
            .store
            .create_session(user.id, &auth::token_hash(&token), now, expires)
            .await
            .map_err(unavailable)?;
        tracing::info!(user = user.id, "guest signed in");
        Ok(token)
    }

    async fn sign_out(&self, session: &str) -> Result<(), ApiError> {
        let hash = auth::token_hash(session);
        self.0
            .store
            .delete_session(&hash)
            .await
            .map_err(unavailable)?;
        self.0.hub.end_session(&hash);
        Ok(())
    }

    async fn create_room(&self, session: Option<&str>, name: &str) -> Result<RoomInfo, ApiError> {
        let user = self.require_user(session).await?;
        let name = validate_room_name(name)?;
        let row = match self
            .0
            .store
            .create_room(&name, &room_key(&name), user.id, crate::now_ms())
            .await
        {
            Ok(row) => row,
            Err(StoreError::Conflict) => {
                return Err(ApiError::new(
                    ErrorCode::RoomExists,
                    format!("A room named “{name}” exists already."),
                ))
            }
            Err(err) => return Err(unavailable(err)),
        };
        Ok(self.0.hub.add_room(&row).info())
    }

    async fn post_message(
        &self,
        session: Option<&str>,
        room: &str,
        client_id: &str,
        body: &str,
    ) -> Result<ChatMessage, ApiError> {
        let user = self.require_user(session).await?;
        let room = self.0.hub.room(room).ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownRoom,
                format!("There is no room named “{room}”."),
            )
        })?;
        validate_body(body)?;
        let client_id = validate_client_id(client_id)?;
        let (tx, rx) = oneshot::channel();
        self.0
            .committer
            .submit(SendRequest {
                room,
                author: user,
                body: body.to_owned(),
                client_id,
                reply: Reply::Http(tx),
            })
            .await?;
        rx.await.unwrap_or_else(|_| {
            Err(ApiError::new(
                ErrorCode::Unavailable,
                "The server is shutting down; try again.",
            ))
        })
    }

    fn session_cookie(&self, token: Option<&str>) -> String {
        auth::cookie(
            token,
            self.0.config.session_hours * 3600,
            self.0.config.secure_cookies,
        )
    }
}
