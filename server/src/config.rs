//! Typed configuration from flags and environment variables.

use clap::Parser;
use std::net::SocketAddr;

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

    /// Directory with the built site (WASM, JS, CSS, assets).
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: String,
}

impl Config {
    /// The configuration with every default, listening on `addr` and storing
    /// in `database_url` (for tests and tools).
    pub fn for_test(addr: SocketAddr, database_url: &str) -> Self {
        let mut config = Self::parse_from(["server"]);
        config.addr = addr;
        config.database_url = database_url.to_owned();
        config
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
