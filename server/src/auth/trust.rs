//! Which `Host` names the server answers to and which page origins it
//! trusts, decided once from the configuration.
//!
//! Neither decision may depend on the request's own `Host`: with DNS
//! rebinding an attacker's name resolves to this server, so a page of
//! `http://evil.example` sends `Host: evil.example` and
//! `Origin: http://evil.example`, which agree with each other. Refusing
//! unknown hosts stops such a page from reading anything (pages, server
//! functions, `/ws`); comparing origins with the configured ones stops other
//! sites' pages from acting with a visitor's cookie.

use crate::config::Config;
use axum::http::{header, uri::Authority, HeaderMap, Uri};
use std::str::FromStr;

/// Host names accepted on every listener bound to loopback.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The allowed hosts and trusted origins of one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// Lower-case host names (IPv6 in brackets), without ports.
    hosts: Vec<String>,
    /// Normalised origins: `scheme://host[:port]`, default port left out.
    origins: Vec<String>,
}

impl Trust {
    /// The rules `config` asks for: the public URL's host and origin,
    /// `CHAT_ALLOWED_HOSTS`, `CHAT_ALLOWED_ORIGINS`, and on a loopback (or
    /// every-interface) listener the loopback names on the listen port, so a
    /// local run works at both `http://127.0.0.1:3000` and
    /// `http://localhost:3000`. A malformed entry is an error naming it.
    pub fn new(config: &Config) -> Result<Self, String> {
        let public = config.public_url();
        let public_origin = origin_of(&public)
            .ok_or_else(|| format!("CHAT_PUBLIC_URL {public:?} is not an http(s) URL"))?;
        let mut hosts = vec![host_of_origin(&public_origin)];
        let mut origins = vec![public_origin];
        for entry in &config.allowed_hosts {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            hosts.push(
                host_name(entry)
                    .ok_or_else(|| format!("CHAT_ALLOWED_HOSTS entry {entry:?} is not a host"))?,
            );
        }
        for entry in &config.allowed_origins {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            origins.push(origin_of(entry).ok_or_else(|| {
                format!("CHAT_ALLOWED_ORIGINS entry {entry:?} is not an http(s) origin")
            })?);
        }
        // Every-interface listeners include loopback; a loopback name can
        // only be typed by someone on this machine, never rebound by a page.
        let ip = config.addr.ip();
        if ip.is_loopback() || ip.is_unspecified() {
            let port = config.addr.port();
            for name in LOOPBACK_HOSTS {
                hosts.push(name.to_owned());
                origins.extend(origin_of(&format!("http://{name}:{port}")));
            }
        }
        hosts.sort();
        hosts.dedup();
        origins.sort();
        origins.dedup();
        Ok(Self { hosts, origins })
    }

    /// Whether the configuration leaves the server reachable from other
    /// machines under no name but its listen address, so every request
    /// sent by a name would be refused: worth a warning at start.
    pub fn unnamed_exposure(config: &Config) -> bool {
        config.addr.ip().is_unspecified()
            && config.public_url.is_none()
            && config.allowed_hosts.iter().all(|h| h.trim().is_empty())
    }

    /// Whether a request's `Host` (`host[:port]`) is one this server
    /// answers to. Ports are not compared (as in Django's `ALLOWED_HOSTS`):
    /// rebinding is about names, and the port is the listener's anyway.
    pub fn host_allowed(&self, host: &str) -> bool {
        host_name(host).is_some_and(|name| self.hosts.contains(&name))
    }

    /// Whether `origin` is a page origin this server trusts.
    pub fn origin_trusted(&self, origin: &str) -> bool {
        origin_of(origin).is_some_and(|origin| self.origins.contains(&origin))
    }

    /// Whether a browser request comes from a trusted page. A request
    /// without `Origin` is refused: every browser sends one on a WebSocket
    /// upgrade, and other clients can set it.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|origin| self.origin_trusted(origin))
    }
}

/// `scheme://host[:port]` of an http(s) URL, lower-case, without a default
/// port; `None` for anything else (other schemes, user info, no host).
fn origin_of(url: &str) -> Option<String> {
    let uri = Uri::from_str(url.trim()).ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = normal_host(authority.host())?;
    Some(match authority.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The host name of a normalised origin.
fn host_of_origin(origin: &str) -> String {
    let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
    match authority.rsplit_once(':') {
        // A colon after the closing bracket (or in a plain name) starts the port.
        Some((host, port)) if !port.contains(']') => host.to_owned(),
        _ => authority.to_owned(),
    }
}

/// The lower-case host name of `host[:port]`, or `None` when it is not one.
fn host_name(host: &str) -> Option<String> {
    let authority = Authority::from_str(host.trim()).ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    normal_host(authority.host())
}

/// Lower case, without the trailing dot of a fully qualified name.
fn normal_host(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use clap::Parser;

    fn config(args: &[&str]) -> Config {
        Config::parse_from(std::iter::once("server").chain(args.iter().copied()))
    }

    #[test]
    fn origins_are_normalised() {
        assert_eq!(
            origin_of("HTTP://Chat.Example.com:80/").as_deref(),
            Some("http://chat.example.com")
        );
        assert_eq!(
            origin_of("https://chat.example.com:8443/path").as_deref(),
            Some("https://chat.example.com:8443")
        );
        assert_eq!(
            origin_of("http://[::1]:3000").as_deref(),
            Some("http://[::1]:3000")
        );
        for bad in [
            "null",
            "",
            "ftp://a.example",
            "http://u@a.example",
            "a.example",
        ] {
            assert_eq!(origin_of(bad), None, "{bad}");
        }
        assert_eq!(host_of_origin("http://[::1]:3000"), "[::1]");
        assert_eq!(host_of_origin("http://[::1]"), "[::1]");
        assert_eq!(host_of_origin("https://a.example:8443"), "a.example");
        assert_eq!(host_name("A.Example.:8080").as_deref(), Some("a.example"));
        assert_eq!(host_name("u@a.example"), None);
        assert_eq!(host_name(""), None);
    }

    #[test]
    fn a_loopback_listener_answers_to_its_loopback_names() {
        let trust = Trust::new(&config(&[])).unwrap();
        for host in [
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST",
            "[::1]:3000",
        ] {
            assert!(trust.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:3000",
            "127.0.0.1.evil.example",
            "",
        ] {
            assert!(!trust.host_allowed(host), "{host}");
        }
        for origin in [
            "http://127.0.0.1:3000",
            "http://localhost:3000",
            "http://[::1]:3000",
        ] {
            assert!(trust.origin_trusted(origin), "{origin}");
        }
        // Another local port is another site.
        for origin in [
            "http://localhost:5173",
            "https://localhost:3000",
            "http://evil.example",
        ] {
            assert!(!trust.origin_trusted(origin), "{origin}");
        }
    }

    #[test]
    fn a_public_server_answers_to_its_public_name_and_the_listed_ones() {
        let trust = Trust::new(&config(&[
            "--addr=10.0.0.5:3000",
            "--public-url=https://Chat.Example.com/",
            "--allowed-hosts=chat.internal, ",
            "--allowed-origins=https://app.example.com",
        ]))
        .unwrap();
        assert!(trust.host_allowed("chat.example.com"));
        assert!(trust.host_allowed("chat.internal:3000"));
        assert!(!trust.host_allowed("localhost:3000"), "not on loopback");
        assert!(!trust.host_allowed("10.0.0.5:3000"), "not named");
        assert!(trust.origin_trusted("https://chat.example.com"));
        assert!(trust.origin_trusted("https://chat.example.com:443"));
        assert!(trust.origin_trusted("https://app.example.com"));
        assert!(!trust.origin_trusted("http://chat.example.com"));
        assert!(!trust.origin_trusted("http://chat.internal:3000"));

        let mut headers = HeaderMap::new();
        assert!(!trust.origin_allowed(&headers), "no Origin, no trust");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://chat.example.com"),
        );
        assert!(trust.origin_allowed(&headers));
    }

    #[test]
    fn bad_entries_and_unnamed_exposure_are_reported() {
        assert!(Trust::new(&config(&["--allowed-origins=null"]))
            .unwrap_err()
            .contains("CHAT_ALLOWED_ORIGINS"));
        assert!(Trust::new(&config(&["--allowed-hosts=a b"]))
            .unwrap_err()
            .contains("CHAT_ALLOWED_HOSTS"));
        assert!(Trust::new(&config(&["--public-url=chat.example.com"])).is_err());
        assert!(Trust::unnamed_exposure(&config(&["--addr=0.0.0.0:3000"])));
        assert!(!Trust::unnamed_exposure(&config(&[
            "--addr=0.0.0.0:3000",
            "--allowed-hosts=chat.internal"
        ])));
        assert!(!Trust::unnamed_exposure(&config(&[])));
        // Listening everywhere still answers locally.
        let trust = Trust::new(&config(&["--addr=0.0.0.0:8080"])).unwrap();
        assert!(trust.host_allowed("localhost:8080"));
        assert!(trust.origin_trusted("http://localhost:8080"));
    }
}
