//! Sign-in with OpenID Connect providers (Google, Microsoft, any issuer):
//! authorization code flow with PKCE (S256), discovery-based.
//!
//! `start` makes a `state`, a `nonce` and a PKCE verifier, keeps them in the
//! store under the state's hash, bound to the browser by a random flow
//! cookie, and sends the browser to the provider. `finish` (the callback)
//! takes that row (so a `state` works once), checks it belongs to this
//! browser, this provider and is fresh, checks the response's `iss`, redeems
//! the code with the verifier, validates the ID token (signature, `iss`,
//! `aud`, `exp`, `nonce`), reads the profile, and links the identity
//! (issuer, subject) to a user.

use super::{new_token, token_hash};
use crate::{
    config::OidcProvider,
    store::{OidcFlow, Profile, SignedIn, Store},
};
use app::protocol::MAX_DISPLAY_NAME_CHARS;
use axum::http::StatusCode;
use openidconnect::{
    core::{
        CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreProviderMetadata,
        CoreUserInfoClaims,
    },
    reqwest, AccessTokenHash, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, TokenResponse,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Name of the cookie binding sign-ins in progress to a browser.
pub const FLOW_COOKIE: &str = "chat_oidc";
/// How long a sign-in may take at the provider.
pub const FLOW_TTL: Duration = Duration::from_secs(10 * 60);
/// How long discovered metadata (and signing keys) are reused.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Time limit for each request to a provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest picture URL kept.
const MAX_PICTURE_URL: usize = 2048;

/// The profile claims of one source (the ID token or userinfo).
#[derive(Debug, Default)]
struct Claimed {
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    preferred_username: Option<String>,
    email: Option<String>,
    picture: Option<String>,
}

/// [`Claimed`] from anything with the standard claim getters (ID token
/// claims and userinfo claims have the same ones, but no common trait).
macro_rules! claimed {
    ($c:expr) => {{
        let c = $c;
        Claimed {
            name: c
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            given_name: c
                .given_name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            family_name: c
                .family_name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            preferred_username: c.preferred_username().map(|u| u.as_str().to_owned()),
            email: c.email().map(|e| e.as_str().to_owned()),
            picture: c
                .picture()
                .and_then(|p| p.get(None))
                .map(|p| p.as_str().to_owned()),
        }
    }};
}

/// Why a sign-in was refused, for the error page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    pub status: StatusCode,
    pub message: String,
}

impl FlowError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn upstream(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, message)
    }
}

/// What the provider sent back to the callback.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    /// RFC 9207: the issuer that answered (mix-up defence).
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// The configured providers and what was discovered about them; cheap to clone.
#[derive(Clone)]
pub struct Oidc(Arc<Shared>);

struct Shared {
    providers: Vec<OidcProvider>,
    /// `<public url>/auth/oidc/`; a provider's callback is `<this><id>/callback`.
    callback_base: String,
    http: reqwest::Client,
    // A std Mutex: only a clone in or out, never held across `.await`.
    metadata: Mutex<HashMap<String, (Instant, CoreProviderMetadata)>>,
}

impl Oidc {
    /// Providers to offer; sign-ins come back to `public_url`.
    pub fn new(providers: Vec<OidcProvider>, public_url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // Following redirects would let a provider's answer steer
            // requests elsewhere (SSRF); OpenID endpoints do not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()?;
        Ok(Self(Arc::new(Shared {
            providers,
            callback_base: format!("{public_url}/auth/oidc/"),
            http,
            metadata: Mutex::new(HashMap::new()),
        })))
    }

    /// The providers, in button order.
    pub fn providers(&self) -> &[OidcProvider] {
        &self.0.providers
    }

    fn provider(&self, id: &str) -> Result<&OidcProvider, FlowError> {
        self.0.providers.iter().find(|p| p.id == id).ok_or_else(|| {
            FlowError::new(
                StatusCode::NOT_FOUND,
                "There is no sign-in provider by that name here.",
            )
        })
    }

    /// The provider's discovery document and keys, from the cache unless
    /// stale or `fresh` is asked for.
    async fn metadata(
        &self,
        provider: &OidcProvider,
        fresh: bool,
    ) -> Result<CoreProviderMetadata, FlowError> {
        if !fresh {
            let cache = self.0.metadata.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, metadata)) = cache.get(&provider.id) {
                if at.elapsed() < METADATA_TTL {
                    return Ok(metadata.clone());
                }
            }
        }
        let issuer = IssuerUrl::new(provider.issuer.clone()).map_err(|err| {
            tracing::error!(provider = %provider.id, cause = %err, "bad issuer URL");
            FlowError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{} is misconfigured here (issuer URL).", provider.name),
            )
        })?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.0.http)
            .await
            .map_err(|err| {
                tracing::warn!(provider = %provider.id, cause = %error_chain(&err), "discovery failed");
                FlowError::upstream(format!(
                    "{} cannot be reached right now; try again in a moment.",
                    provider.name
                ))
            })?;
        self.0
            .metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(provider.id.clone(), (Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    fn client(
        &self,
        provider: &OidcProvider,
        metadata: CoreProviderMetadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        FlowError,
    > {
        let redirect =
            RedirectUrl::new(format!("{}{}/callback", self.0.callback_base, provider.id)).map_err(
                |err| {
                    tracing::error!(cause = %err, "bad redirect URL (CHAT_PUBLIC_URL?)");
                    FlowError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Sign-in is misconfigured here (public URL).",
                    )
                },
            )?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.client_id.clone()),
            Some(ClientSecret::new(
                provider.client_secret.expose().to_owned(),
            )),
        )
        .set_redirect_uri(redirect))
    }

    /// Begins a sign-in with provider `id` for the browser holding flow
    /// cookie `browser` (a new one is made when it has none). Returns the
    /// provider's authorization URL and the browser's flow cookie value.
    pub async fn start(
        &self,
        store: &Store,
        id: &str,
        browser: Option<&str>,
    ) -> Result<(String, String), FlowError> {
        let provider = self.provider(id)?;
        let metadata = self.metadata(provider, false).await?;
        let client = self.client(provider, metadata)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let browser = match browser {
            Some(token) if is_token(token) => token.to_owned(),
            _ => new_token(),
        };
        let expires_at = crate::now_ms() + FLOW_TTL.as_millis() as i64;
        store
            .sessions
            .create_oidc_flow(&OidcFlow {
                state_hash: token_hash(state.secret()),
                browser_hash: token_hash(&browser),
                provider: provider.id.clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                expires_at,
            })
            .await
            .map_err(|err| {
                tracing::error!(cause = %err, "cannot store a sign-in");
                FlowError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The database is unavailable right now; try again shortly.",
                )
            })?;
        Ok((url.to_string(), browser))
    }

    /// Completes a sign-in at provider `id`'s callback; returns the signed-in user.
    pub async fn finish(
        &self,
        store: &Store,
        id: &str,
        browser: Option<&str>,
        callback: Callback,
    ) -> Result<SignedIn, FlowError> {
        let provider = self.provider(id)?;
        let restart = "Start the sign-in again from the sign-in page.";
        let state = callback
            .state
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                FlowError::bad(format!("The sign-in response has no state. {restart}"))
            })?;
        let unavailable = |err: crate::store::StoreError| {
            tracing::error!(cause = %err, "cannot read a sign-in");
            FlowError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is unavailable right now; try again shortly.",
            )
        };
        // Taken, not read: whatever happens next, this state is spent.
        let flow = store
            .sessions
            .take_oidc_flow(&token_hash(state))
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                FlowError::bad(format!(
                    "This sign-in response is unknown or was already used. {restart}"
                ))
            })?;
        if browser.map(token_hash) != Some(flow.browser_hash) {
            return Err(FlowError::bad(format!(
                "This sign-in was started in another browser (or its cookie is gone). {restart}"
            )));
        }
        if flow.expires_at <= crate::now_ms() {
            return Err(FlowError::bad(format!(
                "This sign-in took too long. {restart}"
            )));
        }
        if flow.provider != provider.id {
            return Err(FlowError::bad(format!(
                "This sign-in was started with another provider. {restart}"
            )));
        }
        if let Some(error) = &callback.error {
            let detail = callback
                .error_description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            return Err(FlowError::new(
                StatusCode::FORBIDDEN,
                format!("{} did not sign you in: {error}{detail}.", provider.name),
            ));
        }
        // RFC 9207: a response naming another issuer came from somewhere else
        // (a mix-up attack); its code must not be sent to this provider.
        if let Some(iss) = &callback.iss {
            if !same_issuer(iss, &provider.issuer) {
                tracing::warn!(provider = %provider.id, iss = %iss, "callback from another issuer");
                return Err(FlowError::bad(format!(
                    "The sign-in response came from another issuer ({iss}), not {}. {restart}",
                    provider.name
                )));
            }
        }
        let code = callback.code.filter(|c| !c.is_empty()).ok_or_else(|| {
            FlowError::bad(format!("The sign-in response has no code. {restart}"))
        })?;

        let metadata = self.metadata(provider, false).await?;
        let client = self.client(provider, metadata)?;
        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|_| FlowError::upstream(format!("{} has no token endpoint.", provider.name)))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier))
            .request_async(&self.0.http)
            .await
            .map_err(|err| match err {
                RequestTokenError::ServerResponse(resp) => {
                    let detail = resp
                        .error_description()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default();
                    tracing::warn!(provider = %provider.id, error = %resp.error(), detail = %detail, "code refused");
                    let status = match resp.error() {
                        CoreErrorResponseType::InvalidGrant => StatusCode::BAD_REQUEST,
                        _ => StatusCode::BAD_GATEWAY,
                    };
                    FlowError::new(
                        status,
                        format!(
                            "{} refused the sign-in code: {}{detail}. {restart}",
                            provider.name,
                            resp.error()
                        ),
                    )
                }
                other => {
                    tracing::warn!(provider = %provider.id, cause = %error_chain(&other), "token request failed");
                    FlowError::upstream(format!(
                        "{} could not be asked for a token right now; try again.",
                        provider.name
                    ))
                }
            })?;
        let id_token = token
            .id_token()
            .ok_or_else(|| FlowError::upstream(format!("{} sent no ID token.", provider.name)))?;
        let nonce = Nonce::new(flow.nonce);
        let mut client = client;
        let first = id_token
            .claims(&client.id_token_verifier(), &nonce)
            .cloned();
        let claims = match first {
            Ok(claims) => claims,
            // Keys rotate: look again once before refusing a signature.
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                client = self.client(provider, self.metadata(provider, true).await?)?;
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|err| refused_token(provider, &err))?
                    .clone()
            }
            Err(err) => return Err(refused_token(provider, &err)),
        };
        let verifier = client.id_token_verifier();
        if let Some(expected) = claims.access_token_hash() {
            let actual = id_token
                .signing_alg()
                .ok()
                .zip(id_token.signing_key(&verifier).ok())
                .and_then(|(alg, key)| {
                    AccessTokenHash::from_token(token.access_token(), alg, key).ok()
                });
            if actual.as_ref() != Some(expected) {
                return Err(FlowError::bad(format!(
                    "{}'s ID token does not match its access token. {restart}",
                    provider.name
                )));
            }
        }

        // The ID token may carry the profile; userinfo usually has more.
        let userinfo: Option<CoreUserInfoClaims> = match client
            .user_info(token.access_token().clone(), Some(claims.subject().clone()))
        {
            Ok(request) => match request.request_async(&self.0.http).await {
                Ok(info) => Some(info),
                Err(err) => {
                    tracing::warn!(provider = %provider.id, cause = %error_chain(&err), "userinfo failed; using the ID token");
                    None
                }
            },
            Err(_) => None,
        };
        let mut sources = Vec::with_capacity(2);
        if let Some(info) = &userinfo {
            sources.push(claimed!(info));
        }
        sources.push(claimed!(&claims));
        let profile = profile(&sources);
        let subject = claims.subject().as_str();
        let signed_in = store
            .accounts
            .sign_in_identity(claims.issuer().as_str(), subject, &profile, crate::now_ms())
            .await
            .map_err(unavailable)?;
        tracing::info!(user = signed_in.user.id, provider = %provider.id, "signed in with OpenID");
        Ok(signed_in)
    }
}

/// The error page text for an ID token that failed validation.
fn refused_token(provider: &OidcProvider, err: &ClaimsVerificationError) -> FlowError {
    tracing::warn!(provider = %provider.id, cause = %err, "ID token refused");
    let why = match err {
        ClaimsVerificationError::Expired(_) => "it has expired",
        ClaimsVerificationError::InvalidNonce(_) => {
            "its nonce is not the one this sign-in sent (a replayed or swapped response)"
        }
        ClaimsVerificationError::InvalidIssuer(_) => "it was issued by another issuer",
        ClaimsVerificationError::InvalidAudience(_) => "it was issued to another application",
        ClaimsVerificationError::SignatureVerification(_) => "its signature does not verify",
        _ => "it is not valid",
    };
    FlowError::bad(format!(
        "{}'s ID token was refused: {why}. Start the sign-in again from the sign-in page.",
        provider.name
    ))
}

/// Name, email and picture: userinfo first, then the ID token.
fn profile(sources: &[Claimed]) -> Profile {
    let first = |f: &dyn Fn(&Claimed) -> Option<String>| {
        sources.iter().filter_map(f).find(|s| !s.trim().is_empty())
    };
    let email = first(&|c| c.email.clone()).or_else(|| {
        // Entra ID often has no `email` but a sign-in name that is one.
        first(&|c| c.preferred_username.clone())
            .filter(|u| app::protocol::validate_email(u).is_ok())
    });
    let name = first(&|c| c.name.clone())
        .or_else(|| {
            first(&|c| {
                let family = c.family_name.as_deref().map(|f| format!(" {f}"));
                Some(c.given_name.clone()? + family.as_deref().unwrap_or(""))
            })
        })
        .or_else(|| first(&|c| c.preferred_username.clone()))
        .or_else(|| email.clone())
        .unwrap_or_else(|| "Unnamed".to_owned());
    let picture = first(&|c| {
        c.picture.clone().filter(|p| {
            (p.starts_with("https://") || p.starts_with("http://")) && p.len() <= MAX_PICTURE_URL
        })
    });
    Profile {
        name: display_name(&name),
        email,
        picture,
    }
}

/// A provider's name as a display name: no control characters, at most
/// [`MAX_DISPLAY_NAME_CHARS`] characters.
fn display_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed: String = clean.trim().chars().take(MAX_DISPLAY_NAME_CHARS).collect();
    match trimmed.trim() {
        "" => "Unnamed".to_owned(),
        name => name.to_owned(),
    }
}

/// Issuer URLs compare equal ignoring one trailing slash.
fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Whether a flow cookie looks like one this server made.
fn is_token(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An error with its causes, for logs.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The `Set-Cookie` value for the flow cookie. Lax, so it comes back on the
/// provider's top-level redirect to the callback.
pub fn flow_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{FLOW_COOKIE}={token}; Path=/auth/oidc/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        FLOW_TTL.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_cleaned_and_bounded() {
        assert_eq!(display_name("  Ada\nLovelace "), "Ada Lovelace");
        assert_eq!(display_name(&"x".repeat(40)).chars().count(), 32);
        assert_eq!(display_name("\u{7}"), "Unnamed");
    }

    #[test]
    fn the_profile_prefers_userinfo_and_falls_back_sensibly() {
        let userinfo = Claimed {
            name: Some("Ada Lovelace".into()),
            picture: Some("javascript:alert(1)".into()),
            ..Claimed::default()
        };
        let token = Claimed {
            name: Some("A. L.".into()),
            email: Some("ada@example.test".into()),
            picture: Some("https://img.example/ada.png".into()),
            ..Claimed::default()
        };
        let p = profile(&[userinfo, token]);
        assert_eq!(p.name, "Ada Lovelace");
        assert_eq!(p.email.as_deref(), Some("ada@example.test"));
        assert_eq!(p.picture.as_deref(), Some("https://img.example/ada.png"));

        let entra = Claimed {
            given_name: Some("Grace".into()),
            family_name: Some("Hopper".into()),
            preferred_username: Some("grace@contoso.example".into()),
            ..Claimed::default()
        };
        let p = profile(&[entra]);
        assert_eq!(p.name, "Grace Hopper");
        assert_eq!(p.email.as_deref(), Some("grace@contoso.example"));
        assert_eq!(profile(&[]).name, "Unnamed");
    }

    #[test]
    fn issuers_and_flow_cookies() {
        assert!(same_issuer("https://a.example/", "https://a.example"));
        assert!(!same_issuer("https://a.example", "https://b.example"));
        assert!(is_token(&new_token()));
        assert!(!is_token("abc"));
        let cookie = flow_cookie("t", true);
        assert!(cookie.contains("HttpOnly; SameSite=Lax; Secure"));
    }
}
