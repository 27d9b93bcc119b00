//! The server's side of the app's server functions (`app::api::Backend`):
//! each one finds the session's user and calls one `chat::` operation (or
//! an `auth::` one for signing in). No rights are decided here.

use crate::{
    auth,
    chat::{messages::HistoryQuery, policy::Action},
    store::StoreError,
    unavailable, AppState,
};
use app::{
    api::{Backend, PageData, PageRoute, ProviderLink, RoomPage, SignInOptions, View},
    protocol::{
        validate_display_name, validate_email, validate_new_password, ApiError, DirectoryPage,
        ErrorCode, Me, Message, RoomSummary, UserInfo, HISTORY_PAGE, MAX_PASSWORD_BYTES,
    },
    urls::room_href_v2,
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

    async fn require_user(&self, session: Option<&str>) -> Result<UserInfo, ApiError> {
        let me = self.user(session).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "Your session has expired; sign in again.",
            )
        })?;
        Ok(me.public())
    }

    /// A room's page for `user`: a member's view, or a preview of a public
    /// room (`not_found` for a room they may not see, or none). Rights are
    /// `chat::`'s: the summary needs `Preview`, the history `ReadHistory`,
    /// the members `SeeMembers`, the Join bar `Join`. Who is online comes
    /// from the hub.
    async fn room_page(&self, user: &UserInfo, room_id: i64) -> Result<RoomPage, ApiError> {
        let chat = &self.0.chat;
        let summary = chat.summary(user, room_id).await?;
        let can_join = if summary.role.is_some() {
            false
        } else {
            match chat.may(user, room_id, Action::Join).await {
                Ok(()) => true,
                // Refused (banned): the page offers no Join bar.
                Err(err) if err.code != ErrorCode::Unavailable => false,
                Err(err) => return Err(err),
            }
        };
        let page = chat
            .history(user, room_id, HistoryQuery::Latest, HISTORY_PAGE)
            .await?;
        let members = chat.members(user, room_id, None, None).await?;
        let online = self.0.hub.online(room_id);
        Ok(RoomPage {
            summary,
            messages: page.messages,
            has_more: page.has_more_before,
            members,
            online,
            can_join,
        })
    }

    /// What the main pane of `route` shows.
    async fn view(&self, user: &UserInfo, route: &PageRoute) -> Result<View, ApiError> {
        let not_found = |err: ApiError| match err.code {
            ErrorCode::NotFound => Ok(View::NotFound),
            _ => Err(err),
        };
        match route {
            PageRoute::Home => Ok(View::Home),
            PageRoute::Room(id) => self
                .room_page(user, *id)
                .await
                .map(View::Room)
                .or_else(not_found),
            PageRoute::Named(name) => match self.0.chat.resolve_name(Some(user), name).await {
                // The slug is decorative: the one of the name asked for does.
                Ok(id) => Ok(View::Redirect(room_href_v2(id, name))),
                Err(err) => not_found(err),
            },
            PageRoute::Browse { q, after } => {
                let page = self
                    .0
                    .chat
                    .directory(Some(user), q, after.as_deref(), None)
                    .await?;
                Ok(View::Browse { page, q: q.clone() })
            }
        }
    }
}

#[async_trait]
impl Backend for AppBackend {
    async fn page(&self, session: Option<&str>, route: &PageRoute) -> Result<PageData, ApiError> {
        let Some(me) = self.user(session).await? else {
            return Ok(PageData {
                me: None,
                rooms: Vec::new(),
                view: View::Home,
                sign_in: self.sign_in_options(),
            });
        };
        let user = me.public();
        let view = self.view(&user, route).await?;
        let rooms = self.0.chat.my_rooms(&user).await?;
        Ok(PageData {
            me: Some(me),
            rooms,
            view,
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
        self.0.chat.join_defaults(&user.public()).await?;
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
        self.0.chat.join_defaults(&user.public()).await?;
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
        self.0.end_session(&hash);
        Ok(())
    }

    async fn create_room(
        &self,
        session: Option<&str>,
        client_id: Option<&str>,
        name: &str,
        topic: &str,
    ) -> Result<RoomSummary, ApiError> {
        let user = self.require_user(session).await?;
        // A caller that sends no client_id gets a fresh one, so each post
        // of such a form is its own command.
        let fresh;
        let client_id = match client_id {
            Some(id) => id,
            None => {
                fresh = uuid::Uuid::new_v4().hyphenated().to_string();
                &fresh
            }
        };
        self.0.chat.create_room(&user, client_id, name, topic).await
    }

    async fn join_room(
        &self,
        session: Option<&str>,
        room_id: i64,
        client_id: &str,
    ) -> Result<RoomSummary, ApiError> {
        let user = self.require_user(session).await?;
        self.0.chat.join(&user, room_id, client_id).await
    }

    async fn leave_room(
        &self,
        session: Option<&str>,
        room_id: i64,
        client_id: &str,
    ) -> Result<(), ApiError> {
        let user = self.require_user(session).await?;
        self.0.chat.leave(&user, room_id, client_id).await
    }

    async fn rename_room(
        &self,
        session: Option<&str>,
        room_id: i64,
        client_id: &str,
        name: &str,
    ) -> Result<RoomSummary, ApiError> {
        let user = self.require_user(session).await?;
        self.0
            .chat
            .rename_room(&user, room_id, client_id, name)
            .await
    }

    async fn set_topic(
        &self,
        session: Option<&str>,
        room_id: i64,
        client_id: &str,
        topic: &str,
    ) -> Result<RoomSummary, ApiError> {
        let user = self.require_user(session).await?;
        self.0
            .chat
            .set_topic(&user, room_id, client_id, topic)
            .await
    }

    async fn directory(
        &self,
        session: Option<&str>,
        q: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<DirectoryPage, ApiError> {
        let user = self.require_user(session).await?;
        self.0.chat.directory(Some(&user), q, after, limit).await
    }

    async fn resolve_room(&self, session: Option<&str>, name: &str) -> Result<i64, ApiError> {
        let user = self.require_user(session).await?;
        self.0.chat.resolve_name(Some(&user), name).await
    }

    async fn post_message(
        &self,
        session: Option<&str>,
        room_id: i64,
        client_id: &str,
        body: &str,
    ) -> Result<Message, ApiError> {
        let user = self.require_user(session).await?;
        // Members post; the committer asks the policy (an outsider of a
        // public room gets `not_member`: posting joins nothing). A resend
        // is answered with the message as it was stored the first time.
        let (_, message) = self
            .0
            .chat
            .post_and_wait(&user, room_id, client_id, body)
            .await?;
        Ok(message)
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
