//! The few plain HTTP/1.1 requests the project's adapter needs: guest
//! sign-in, room creation, resolution and joining, and posting (for the
//! page scenario's history).

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response: status, headers (lower-cased names) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// POSTs a form to a server function (`/api/<name>`), as a non-browser
/// client: `Origin` is the server's own, no `Accept: text/html`.
pub async fn post_form(
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> Result<Response> {
    let body = form
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n{cookie}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_response(&raw)
}

/// Signs in a guest called `name`; returns the `chat_session=<token>` pair.
pub async fn sign_in_guest(addr: SocketAddr, name: &str) -> Result<String> {
    let res = post_form(addr, "/api/sign_in_guest", None, &[("name", name)]).await?;
    if res.status != 200 {
        bail!("sign-in answered {}: {}", res.status, res.body);
    }
    res.headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next())
        .find(|pair| pair.starts_with("chat_session="))
        .map(str::to_owned)
        .context("sign-in answered without a chat_session cookie")
}

/// Creates a room; one that exists already (409) is fine.
pub async fn create_room(addr: SocketAddr, cookie: &str, name: &str) -> Result<()> {
    let res = post_form(addr, "/api/create_room", Some(cookie), &[("name", name)]).await?;
    match res.status {
        200 | 409 => Ok(()),
        status => bail!("create_room {name} answered {status}: {}", res.body),
    }
}

/// The id of the public room called `name`.
pub async fn resolve_room(addr: SocketAddr, cookie: &str, name: &str) -> Result<i64> {
    let res = post_form(addr, "/api/resolve_room", Some(cookie), &[("name", name)]).await?;
    if res.status != 200 {
        bail!("resolve_room {name} answered {}: {}", res.status, res.body);
    }
    res.body
        .trim()
        .parse()
        .with_context(|| format!("resolve_room {name} answered {:?}", res.body))
}

/// Makes the session's user a member of room `room_id` (a member already
/// stays one: joins are idempotent).
pub async fn join_room(addr: SocketAddr, cookie: &str, room_id: i64) -> Result<()> {
    let client_id = crate::adapter::client_id(rand::random(), rand::random(), 0);
    let client_id = std::str::from_utf8(&client_id)?;
    let room = room_id.to_string();
    let form = [("room_id", room.as_str()), ("client_id", client_id)];
    let res = post_form(addr, "/api/join_room", Some(cookie), &form).await?;
    match res.status {
        200 => Ok(()),
        status => bail!("join_room {room_id} answered {status}: {}", res.body),
    }
}

fn parse_response(raw: &[u8]) -> Result<Response> {
    let end = crate::wire::response_head_end(raw).context("no complete HTTP response")?;
    let head = std::str::from_utf8(&raw[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let mut body = raw[end..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = memchr::memmem::find(raw, b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
    out
}

/// Percent-encodes a form value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let raw = b"HTTP/1.1 200 OK\r\nSet-Cookie: chat_session=ab; Path=/\r\n\
                    transfer-encoding: chunked\r\n\r\n4\r\nnull\r\n0\r\n\r\n";
        let res = parse_response(raw).unwrap();
        assert_eq!(res.status, 200);
        assert_eq!(res.header("set-cookie"), Some("chat_session=ab; Path=/"));
        assert_eq!(res.body, "null");
        assert_eq!(urlencode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
