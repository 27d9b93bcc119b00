//! The server's side of the app's server functions (`app::api::Backend`).

use crate::{
    auth,
    commit::plan::Command,
    store::{HistoryPage, RoomRow, StoreError},
    unavailable, AppState,
};
use app::{
    api::{Backend, PageData, ProviderLink, RoomPage, SignInOptions},
    protocol::{
        room_key, validate_body, validate_client_id, validate_display_name, validate_email,
        validate_new_password, validate_room_name, ApiError, ChatMessage, ErrorCode, Me, RoomInfo,
        HISTORY_PAGE, MAX_PASSWORD_BYTES,
    },
};
use async_trait::async_trait;
use std::{net::IpAddr, time::Duration};

/// Implements the server functions over the app state.
pub struct AppBackend(pub AppState);

impl AppBackend {
    async fn user(&self, session: Option<&str>) -> Result<Option<Me>, ApiError> {
        match session {
            Some(token) => auth::user_for_token(&self.0.store, token)
                .await
                .map_err(unavailable),
            None => Ok(None),
        }
    }

    /// The sign-in options this configuration offers.
    fn sign_in_options(&self) -> SignInOptions {
        SignInOptions {
            guest: self.0.config.guest_sign_in,
            local: self.0.config.local_accounts,
            providers: self
                .0
                .oidc
                .providers()
                .iter()
                .map(|p| ProviderLink {
                    id: p.id.clone(),
                    name: p.name.clone(),
                })
                .collect(),
        }
    }

    /// Starts a session for `user`; returns its token.
    async fn start_session(&self, user: &Me) -> Result<String, ApiError> {
        auth::start_session(&self.0, user.id).await
    }

    fn local_accounts_on(&self) -> Result<(), ApiError> {
        if self.0.config.local_accounts {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                "Local accounts are turned off on this server.",
            ))
        }
    }

    async fn require_user(&self, session: Option<&str>) -> Result<Me, ApiError> {
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
                sign_in: self.sign_in_options(),
            });
        };
        let (room, missing_room) = match room.map(|name| (name, self.0.hub.room(name))) {
            Some((_, Some(room))) => {
                let HistoryPage { messages, has_more } = self
                    .0
                    .store
                    .events
                    .history(room.id, None, HISTORY_PAGE)
                    .await
                    .map_err(unavailable)?;
                let page = RoomPage {
                    info: room.info(),
                    has_more,
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
            sign_in: self.sign_in_options(),
        })
    }

    async fn sign_in_guest(&self, name: &str) -> Result<String, ApiError> {
        if !self.0.config.guest_sign_in {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "Guest sign-in is turned off on this server.",
            ));
        }
        let name = validate_display_name(name)?;
        let user = self
            .0
            .store
            .accounts
            .create_guest(&name, crate::now_ms())
            .await
            .map_err(unavailable)?;
        let token = self.start_session(&user).await?;
        tracing::info!(user = user.id, "guest signed in");
        Ok(token)
    }

    async fn sign_up(
        &self,
        client: Option<IpAddr>,
        name: &str,
        email: &str,
        password: &str,
    ) -> Result<String, ApiError> {
        self.local_accounts_on()?;
        let name = validate_display_name(name)?;
        let email = validate_email(email)?;
        validate_new_password(password)?;
        // Every sign-up costs a password hash: bound them per address.
        let ip = ip_key(client);
        if let Err(wait) = self.0.limits.ip_sign_ups.check(&ip) {
            return Err(rate_limited(wait));
        }
        self.0.limits.ip_sign_ups.record(&ip);
        let hash = auth::password::hash(password.to_owned()).await?;
        let user = match self
            .0
            .store
            .accounts
            .create_local_account(&name, &email, &email_key(&email), &hash, crate::now_ms())
            .await
        {
            Ok(user) => user,
            Err(StoreError::Conflict) => {
                return Err(ApiError::new(
                    ErrorCode::AccountExists,
                    "An account with that email exists already; sign in instead.",
                ))
            }
            Err(err) => return Err(unavailable(err)),
        };
        let token = self.start_session(&user).await?;
        tracing::info!(user = user.id, "local account created");
        Ok(token)
    }

    async fn sign_in_password(
        &self,
        client: Option<IpAddr>,
        email: &str,
        password: &str,
    ) -> Result<String, ApiError> {
        self.local_accounts_on()?;
        let wrong = || ApiError::new(ErrorCode::BadCredentials, "Wrong email or password.");
        let account_key = email_key(email.trim());
        let ip = ip_key(client);
        let limits = &self.0.limits;
        // Limited before any work, so a flood costs no hashing.
        let account_wait = limits.account_failures.check(&account_key).err();
        let ip_wait = limits.ip_failures.check(&ip).err();
        // Both may be limited: the retry hint must cover the longer wait.
        if let Some(wait) = account_wait.max(ip_wait) {
            tracing::warn!(%ip, "password sign-in rate-limited");
            return Err(rate_limited(wait));
        }
        // No account has a longer password; it is not worth hashing.
        let too_long = password.len() > MAX_PASSWORD_BYTES;
        let account = if too_long || account_key.is_empty() {
            None
        } else {
            self.0
                .store
                .accounts
                .local_account(&account_key)
                .await
                .map_err(unavailable)?
        };
        let attempt = if too_long { "" } else { password };
        let matches = auth::password::verify(
            attempt.to_owned(),
            account.as_ref().map(|a| a.password_hash.clone()),
        )
        .await?;
        let Some(account) = account.filter(|_| matches) else {
            limits.account_failures.record(&account_key);
            limits.ip_failures.record(&ip);
            return Err(wrong());
        };
        limits.account_failures.clear(&account_key);
        let token = self.start_session(&account.user).await?;
        tracing::info!(user = account.user.id, "signed in with a password");
        Ok(token)
    }

    async fn sign_out(&self, session: &str) -> Result<(), ApiError> {
        let hash = auth::token_hash(session);
        self.0
            .store
            .sessions
            .delete_session(&hash)
            .await
            .map_err(unavailable)?;
        self.0.hub.end_session(&hash);
        Ok(())
    }

    async fn create_room(&self, session: Option<&str>, name: &str) -> Result<RoomInfo, ApiError> {
        let user = self.require_user(session).await?;
        let name = validate_room_name(name)?;
        // The v1 server function has no client_id: a fresh one, made here,
        // so each call is its own command (S7 makes the client send one).
        let client_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let receipt = self
            .0
            .committer
            .call(
                user.public(),
                Some(client_id),
                Command::CreateRoom {
                    name: name.clone(),
                    name_key: room_key(&name),
                    topic: String::new(),
                },
            )
            .await
            .map_err(|err| match err.code {
                ErrorCode::RoomExists => ApiError::new(
                    ErrorCode::RoomExists,
                    format!("A room named “{name}” exists already."),
                ),
                _ => err,
            })?;
        let row = RoomRow {
            id: receipt.room_id,
            name,
            created_at: receipt.ts,
            last_seq: receipt.seq.unwrap_or_default(),
            member_count: 1,
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
        let author = user.public();
        crate::commit::join_v1(&self.0.store, &self.0.committer, &author, room.id).await?;
        let receipt = self
            .0
            .committer
            .call(
                author.clone(),
                Some(client_id.clone()),
                Command::Post {
                    room_id: room.id,
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
            return Ok(ChatMessage {
                room: room.name.to_string(),
                seq,
                id,
                author,
                body: body.to_owned(),
                ts: receipt.ts,
                client_id,
            });
        }
        // A resend: answered with what was stored the first time, wherever.
        let stored = self
            .0
            .store
            .events
            .range(receipt.room_id, seq - 1, seq, 1)
            .await
            .map_err(unavailable)?;
        let (Some(original), Some(stored_in)) = (
            stored.into_iter().next(),
            self.0.hub.room_by_id(receipt.room_id),
        ) else {
            return Err(ApiError::new(
                ErrorCode::Internal,
                "The original message is gone.",
            ));
        };
        Ok(original.into_message(&stored_in.name))
    }

    fn session_cookie(&self, token: Option<&str>) -> String {
        auth::cookie(
            token,
            self.0.config.session_hours * 3600,
            self.0.config.secure_cookies(),
        )
    }
}

/// The key an email's account is stored and rate-limited under.
fn email_key(email: &str) -> String {
    email.to_lowercase()
}

/// The key a client address is rate-limited under (all unknown ones share one).
fn ip_key(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

fn rate_limited(wait: Duration) -> ApiError {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    ApiError::rate_limited(
        format!("Too many attempts; try again in {minutes} minute(s)."),
        wait,
    )
}
