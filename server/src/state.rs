//! The state every handler shares: one cheap-to-clone [`AppState`].

use crate::{
    auth::{self, limit::Limits, oidc::Oidc},
    chat::Chat,
    commit::Committer,
    config::Config,
    hub::Hub,
    store::Store,
};
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::sync::Arc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    /// The chat operations (every user action goes through them).
    pub chat: Chat,
    /// Fan-out to the WebSocket connections (`/ws`).
    pub hub: Hub,
    pub committer: Committer,
    pub leptos: LeptosOptions,
    /// Cancelled when the server is shutting down: connections close with 1012.
    pub shutdown: CancellationToken,
    /// Every WebSocket connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// The configured OpenID providers.
    pub oidc: Oidc,
    /// Password sign-in and sign-up rate limits.
    pub limits: Arc<Limits>,
    /// The hosts this server answers to and the origins it trusts.
    pub trust: Arc<auth::Trust>,
}

impl AppState {
    /// Closes (1008) every socket opened with this session: the server
    /// ended it (sign-out, a sign-in replacing it).
    pub fn end_session(&self, session: &[u8; 32]) {
        self.hub
            .end_sessions(&std::collections::HashSet::from([*session]));
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}
