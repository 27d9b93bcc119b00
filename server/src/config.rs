//! Typed configuration from flags and environment variables.

use clap::{ArgAction, Parser};
use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

/// The chat server.
#[derive(Debug, Clone, Parser)]
#[command(name = "server", version, about)]
pub struct Config {
    /// Address to listen on (cargo-leptos sets LEPTOS_SITE_ADDR).
    #[arg(long, env = "LEPTOS_SITE_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Where messages, users and sessions are stored.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/chat.db")]
    pub database_url: String,

    /// Extra origins allowed to open WebSockets and post forms, besides the
    /// server's own (comma-separated, e.g. `https://chat.example.com`).
    #[arg(long, env = "CHAT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Extra host names the server answers to (comma-separated, like
    /// Django's `ALLOWED_HOSTS`), besides the public URL's host and, on a
    /// loopback listener, `localhost`, `127.0.0.1` and `[::1]`. Requests for
    /// any other `Host` are refused (400), which defeats DNS rebinding.
    #[arg(long, env = "CHAT_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Mark the session cookie `Secure` (set when served over https).
    #[arg(long, env = "CHAT_SECURE_COOKIES", default_value_t = false)]
    pub secure_cookies: bool,

    /// How long a session lasts, in hours.
    #[arg(long, env = "CHAT_SESSION_HOURS", default_value_t = 24 * 30)]
    pub session_hours: i64,

    /// Seconds between WebSocket pings. A connection silent for two
    /// intervals (plus a second) is closed as dead, and leaves presence.
    #[arg(long, env = "CHAT_WS_PING_SECS", default_value_t = 30)]
    pub ws_ping_secs: u64,

    /// Bytes of each WebSocket's read buffer. Small, because the buffer is
    /// allocated and zero-filled per connection (the WebSocket library's
    /// default, 128 KiB, makes every idle connection cost that much RSS);
    /// it grows on demand for a larger frame.
    #[arg(long, env = "CHAT_WS_READ_BUFFER", default_value_t = 4096)]
    pub ws_read_buffer: usize,

    /// Rooms one user may create per 10 minutes; 0: no limit (a load
    /// generator's setup, say).
    #[arg(long, env = "CHAT_ROOMS_PER_USER", default_value_t = 10)]
    pub rooms_per_user: usize,

    /// The window in which a connection may send `open` and `close` at
    /// most 30 times (each one notifies a whole room). Not a flag: tests set it.
    #[arg(skip = Duration::from_secs(10))]
    pub ws_churn_window: Duration,

    /// Least time between two relayed `typing` frames of one connection.
    /// Not a flag: tests set it.
    #[arg(skip = Duration::from_secs(1))]
    pub ws_typing_every: Duration,

    /// How often the sessions of open sockets are checked (an expired or
    /// deleted one's sockets are closed); `None`: every ping interval.
    /// Not a flag: tests set it, without also shortening the ping timeout.
    #[arg(skip)]
    pub session_check_every: Option<Duration>,

    /// Directory with the built site (WASM, JS, CSS, assets).
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: String,

    /// The URL people open, e.g. `https://chat.example.com` (no trailing
    /// slash). Sign-in redirect URIs are made from it; an `https:` URL also
    /// makes cookies `Secure`. Default: `http://` + the listen address.
    #[arg(long, env = "CHAT_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Offer guest sign-in (a display name, no account).
    #[arg(long, env = "CHAT_GUEST_SIGN_IN", default_value_t = true, action = ArgAction::Set)]
    pub guest_sign_in: bool,

    /// Offer local accounts (email and password).
    #[arg(long, env = "CHAT_LOCAL_ACCOUNTS", default_value_t = true, action = ArgAction::Set)]
    pub local_accounts: bool,

    /// Take the client address for rate limits from the last `X-Forwarded-For`
    /// entry (only behind a reverse proxy that sets it).
    #[arg(long, env = "CHAT_TRUST_FORWARDED_FOR", default_value_t = false, action = ArgAction::Set)]
    pub trust_forwarded_for: bool,

    /// Google: the OAuth client id ("Sign in with Google" shows when set).
    #[arg(long, env = "CHAT_GOOGLE_CLIENT_ID")]
    pub google_client_id: Option<String>,
    /// Google: the OAuth client secret.
    #[arg(long, env = "CHAT_GOOGLE_CLIENT_SECRET", hide_env_values = true)]
    pub google_client_secret: Option<Secret>,

    /// Microsoft Entra ID: the application (client) id ("Sign in with
    /// Microsoft" shows when set).
    #[arg(long, env = "CHAT_MICROSOFT_CLIENT_ID")]
    pub microsoft_client_id: Option<String>,
    /// Microsoft Entra ID: a client secret of the application.
    #[arg(long, env = "CHAT_MICROSOFT_CLIENT_SECRET", hide_env_values = true)]
    pub microsoft_client_secret: Option<Secret>,
    /// Microsoft Entra ID: the directory (tenant) id, or `consumers` for
    /// personal Microsoft accounts.
    #[arg(long, env = "CHAT_MICROSOFT_TENANT")]
    pub microsoft_tenant: Option<String>,

    /// Other OpenID Connect providers: issuer URLs (comma-separated; the
    /// next three lists pair up with this one, position by position).
    #[arg(long, env = "CHAT_OIDC_ISSUER", value_delimiter = ',')]
    pub oidc_issuer: Vec<String>,
    /// Their client ids.
    #[arg(long, env = "CHAT_OIDC_CLIENT_ID", value_delimiter = ',')]
    pub oidc_client_id: Vec<String>,
    /// Their client secrets.
    #[arg(
        long,
        env = "CHAT_OIDC_CLIENT_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub oidc_client_secret: Vec<Secret>,
    /// Their names on the sign-in page ("Sign in with <name>"); each name's
    /// lower-case letters and digits also name its redirect URI
    /// (`/auth/oidc/<id>/callback`).
    #[arg(long, env = "CHAT_OIDC_NAME", value_delimiter = ',')]
    pub oidc_name: Vec<String>,
}

/// A secret from the configuration; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// An OpenID Connect provider to offer on the sign-in page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    /// Names the provider in URLs: `/auth/oidc/<id>` and its callback.
    pub id: String,
    /// Shown as "Sign in with <name>".
    pub name: String,
    /// The issuer URL, exactly as the provider's ID tokens carry it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
}

/// Personal Microsoft accounts live in this tenant; its `consumers` alias
/// has no fixed issuer, so the id itself is used.
const MICROSOFT_CONSUMERS_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

impl Config {
    /// The configuration with every default, listening on `addr` and storing
    /// in `database_url` (for tests and tools).
    pub fn for_test(addr: SocketAddr, database_url: &str) -> Self {
        let mut config = Self::parse_from(["server"]);
        config.addr = addr;
        config.database_url = database_url.to_owned();
        config
    }

    /// The URL the site is reached at, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.addr),
        }
    }

    /// Whether cookies get `Secure`: asked for, or the site is on https.
    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies || self.public_url().starts_with("https://")
    }

    /// The OpenID providers this configuration names, in button order:
    /// Google, Microsoft, then the generic ones. An incomplete or ambiguous
    /// configuration is an error that says what to fix.
    pub fn oidc_providers(&self) -> Result<Vec<OidcProvider>, String> {
        let mut providers = Vec::new();
        if let Some(client_id) = &self.google_client_id {
            let secret = self
                .google_client_secret
                .clone()
                .ok_or("CHAT_GOOGLE_CLIENT_ID is set but CHAT_GOOGLE_CLIENT_SECRET is not")?;
            providers.push(OidcProvider {
                id: "google".into(),
                name: "Google".into(),
                issuer: "https://accounts.google.com".into(),
                client_id: client_id.clone(),
                client_secret: secret,
            });
        }
        if let Some(client_id) = &self.microsoft_client_id {
            let secret = self
                .microsoft_client_secret
                .clone()
                .ok_or("CHAT_MICROSOFT_CLIENT_ID is set but CHAT_MICROSOFT_CLIENT_SECRET is not")?;
            let tenant = match self.microsoft_tenant.as_deref().map(str::trim) {
                None | Some("") => {
                    return Err(
                        "CHAT_MICROSOFT_CLIENT_ID is set but CHAT_MICROSOFT_TENANT is not \
                        (the directory (tenant) id, or `consumers`)"
                            .into(),
                    )
                }
                Some("consumers") => MICROSOFT_CONSUMERS_TENANT,
                Some(t @ ("common" | "organizations")) => {
                    return Err(format!(
                        "CHAT_MICROSOFT_TENANT={t} is not supported: its ID tokens carry each \
                         user's own tenant as issuer, which cannot be checked against one \
                         issuer; use the directory (tenant) id"
                    ))
                }
                Some(t) => t,
            };
            providers.push(OidcProvider {
                id: "microsoft".into(),
                name: "Microsoft".into(),
                issuer: format!("https://login.microsoftonline.com/{tenant}/v2.0"),
                client_id: client_id.clone(),
                client_secret: secret,
            });
        }
        let n = self.oidc_issuer.len();
        if self.oidc_client_id.len() != n
            || self.oidc_client_secret.len() != n
            || self.oidc_name.len() != n
        {
            return Err(format!(
                "CHAT_OIDC_ISSUER, CHAT_OIDC_CLIENT_ID, CHAT_OIDC_CLIENT_SECRET and CHAT_OIDC_NAME \
                 must list the same number of providers (they list {n}, {}, {} and {})",
                self.oidc_client_id.len(),
                self.oidc_client_secret.len(),
                self.oidc_name.len()
            ));
        }
        for i in 0..n {
            let name = self.oidc_name[i].trim().to_owned();
            let id: String = name
                .to_lowercase()
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join("-");
            if id.is_empty() {
                return Err(format!(
                    "CHAT_OIDC_NAME {name:?} needs a letter or digit (it names the redirect URI)"
                ));
            }
            let issuer = self.oidc_issuer[i].trim().to_owned();
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return Err(format!("CHAT_OIDC_ISSUER {issuer:?} is not an http(s) URL"));
            }
            providers.push(OidcProvider {
                id,
                name,
                issuer,
                client_id: self.oidc_client_id[i].trim().to_owned(),
                client_secret: self.oidc_client_secret[i].clone(),
            });
        }
        for (i, p) in providers.iter().enumerate() {
            if providers[..i].iter().any(|q| q.id == p.id) {
                return Err(format!(
                    "two OpenID providers would both be /auth/oidc/{}: give them distinct names",
                    p.id
                ));
            }
        }
        Ok(providers)
    }

    /// Leptos's own options, derived from this configuration.
    pub fn leptos_options(&self) -> leptos::config::LeptosOptions {
        let env = std::env::var("LEPTOS_ENV").unwrap_or_else(|_| "DEV".to_owned());
        leptos::config::LeptosOptions::builder()
            .output_name("chat")
            .site_root(self.site_root.as_str())
            .site_pkg_dir(std::env::var("LEPTOS_SITE_PKG_DIR").unwrap_or_else(|_| "pkg".to_owned()))
            .site_addr(self.addr)
            .env(if env.eq_ignore_ascii_case("prod") {
                leptos::config::Env::PROD
            } else {
                leptos::config::Env::DEV
            })
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::parse_from(std::iter::once("server").chain(args.iter().copied()))
    }

    #[test]
    fn providers_come_from_flags_and_are_checked() {
        assert_eq!(parse(&[]).oidc_providers(), Ok(vec![]));
        let config = parse(&[
            "--google-client-id=g",
            "--google-client-secret=gs",
            "--microsoft-client-id=m",
            "--microsoft-client-secret=ms",
            "--microsoft-tenant=consumers",
            "--oidc-issuer=https://id.example.com,http://127.0.0.1:9",
            "--oidc-client-id=a,b",
            "--oidc-client-secret=sa,sb",
            "--oidc-name=Example SSO,Test",
        ]);
        let providers = config.oidc_providers().unwrap();
        let ids: Vec<&str> = providers.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["google", "microsoft", "example-sso", "test"]);
        assert_eq!(
            providers[1].issuer,
            format!("https://login.microsoftonline.com/{MICROSOFT_CONSUMERS_TENANT}/v2.0")
        );
        assert!(
            !format!("{config:?}").contains("gs"),
            "secrets are not printed"
        );

        assert!(parse(&["--google-client-id=g"]).oidc_providers().is_err());
        assert!(
            parse(&["--microsoft-client-id=m", "--microsoft-client-secret=s"])
                .oidc_providers()
                .unwrap_err()
                .contains("TENANT")
        );
        assert!(parse(&[
            "--microsoft-client-id=m",
            "--microsoft-client-secret=s",
            "--microsoft-tenant=common"
        ])
        .oidc_providers()
        .is_err());
        assert!(parse(&["--oidc-issuer=https://a", "--oidc-name=A"])
            .oidc_providers()
            .is_err());
        assert!(parse(&[
            "--oidc-issuer=https://a,https://b",
            "--oidc-client-id=a,b",
            "--oidc-client-secret=a,b",
            "--oidc-name=Same,same"
        ])
        .oidc_providers()
        .unwrap_err()
        .contains("distinct"));
    }

    #[test]
    fn https_public_urls_make_cookies_secure() {
        assert!(!parse(&[]).secure_cookies());
        assert_eq!(parse(&[]).public_url(), "http://127.0.0.1:3000");
        let config = parse(&["--public-url=https://chat.example.com/"]);
        assert_eq!(config.public_url(), "https://chat.example.com");
        assert!(config.secure_cookies());
        assert!(!parse(&["--guest-sign-in=false"]).guest_sign_in);
    }
}
