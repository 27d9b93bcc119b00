//! Server functions: the HTTP side of the app (page data and the forms that
//! work without JavaScript). Each one delegates to a [`Backend`] that the
//! server crate provides through Leptos context, so storage and auth stay in
//! `server/` while the routes stay here.

use crate::protocol::{
    ApiError, DirectoryPage, ErrorCode, Me, MemberInfo, Message, RoomSummary, UserInfo,
};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::{
    codec::JsonEncoding,
    error::{FromServerFnError, ServerFnErrorErr},
};

/// Everything a page needs to render, in one round trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageData {
    /// The signed-in user, if any (the only user here with an email).
    pub me: Option<Me>,
    /// The rooms the user belongs to, in the server's order (empty when
    /// signed out).
    pub rooms: Vec<RoomSummary>,
    /// What the main pane shows.
    pub view: View,
    /// The ways to sign in this server offers.
    pub sign_in: SignInOptions,
}

/// What the main pane of a page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum View {
    /// No room chosen.
    Home,
    /// A room: its member's view, or a preview for anyone else.
    Room(RoomPage),
    /// The directory of public rooms, filtered by `q`.
    Browse { page: DirectoryPage, q: String },
    /// No such room, or one the user may not see (the two look the same).
    NotFound,
    /// The page lives at another path (`/rooms/<name>` → `/r/<id>/<slug>`).
    Redirect(String),
}

/// Which page is asked for, as the server function's arguments say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRoute {
    /// `/`.
    Home,
    /// `/r/<id>/<slug>` (an id that does not parse is `Room(0)`: no room).
    Room(i64),
    /// `/rooms/<name>`: the public room with that name, by redirect.
    Named(String),
    /// `/browse?q=&after=`.
    Browse { q: String, after: Option<String> },
}

impl PageRoute {
    /// The route from `load_page`'s arguments (`room_id` first, then
    /// `room`, then `browse`; none of them is the home page).
    pub fn from_args(
        room_id: Option<i64>,
        room: Option<String>,
        browse: Option<bool>,
        q: Option<String>,
        after: Option<String>,
    ) -> Self {
        match (room_id, room, browse) {
            (Some(id), _, _) => PageRoute::Room(id),
            (None, Some(name), _) => PageRoute::Named(name),
            (None, None, Some(true)) => PageRoute::Browse {
                q: q.unwrap_or_default(),
                after: after.filter(|a| !a.is_empty()),
            },
            _ => PageRoute::Home,
        }
    }
}

/// The ways to sign in, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInOptions {
    /// Guest sign-in with a display name.
    pub guest: bool,
    /// Local accounts (email and password).
    pub local: bool,
    /// OpenID providers, in button order.
    pub providers: Vec<ProviderLink>,
}

/// A "Sign in with …" button: posts to `/auth/oidc/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderLink {
    pub id: String,
    pub name: String,
}

/// One room as its page shows it: the latest history, the members, and
/// who is online. `summary.role` is `None` while the user only previews it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomPage {
    pub summary: RoomSummary,
    /// The latest messages, ascending by `seq`.
    pub messages: Vec<Message>,
    /// Whether older messages exist.
    pub has_more: bool,
    /// The first page of members, in join order.
    pub members: Vec<MemberInfo>,
    /// Who is online, as others see them (no emails).
    pub online: Vec<UserInfo>,
    /// Whether a previewer may join (the Join bar): not when banned. Always
    /// false for a member, who has nothing to join.
    pub can_join: bool,
}

impl RoomPage {
    /// Whether the user only previews the room (not a member).
    pub fn is_preview(&self) -> bool {
        self.summary.role.is_none()
    }
}

impl FromServerFnError for ApiError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        let code = match value {
            ServerFnErrorErr::Args(_)
            | ServerFnErrorErr::MissingArg(_)
            | ServerFnErrorErr::Deserialization(_) => ErrorCode::BadFrame,
            ServerFnErrorErr::Request(_) => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        ApiError::new(code, value.to_string())
    }
}

/// What the server functions need from the server. Implemented in `server`.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Page data for the session's user and the page `route` names.
    async fn page(&self, session: Option<&str>, route: &PageRoute) -> Result<PageData, ApiError>;
    /// Creates a guest user and a session; returns the session token.
    async fn sign_in_guest(&self, name: &str) -> Result<String, ApiError>;
    /// Creates a local account and a session; returns the session token.
    async fn sign_up(
        &self,
        client: Option<std::net::IpAddr>,
        name: &str,
        email: &str,
        password: &str,
    ) -> Result<String, ApiError>;
    /// Checks a local account's password and starts a session; returns the
    /// session token. Wrong email or password get one and the same error.
    async fn sign_in_password(
        &self,
        client: Option<std::net::IpAddr>,
        email: &str,
        password: &str,
    ) -> Result<String, ApiError>;
    /// Ends a session.
    async fn sign_out(&self, session: &str) -> Result<(), ApiError>;
    /// Creates a room owned by the caller (idempotent per `client_id`; none:
    /// a fresh one, for a form that sends none).
    async fn create_room(
        &self,
        session: Option<&str>,
        client_id: Option<&str>,
        name: &str,
        topic: &str,
    ) -> Result<RoomSummary, ApiError>;
    /// Joins a public room (idempotent).
    async fn join_room(
        &self,
        session: Option<&str>,
        room_id: i64,
        client_id: &str,
    ) -> Result<RoomSummary, ApiError>;
    /// Leaves a room.
    async fn leave_room(
        &self,
        session: Option<&str>,
        room_id: i64,
        client_id: &str,
    ) -> Result<(), ApiError>;
    /// Renames a room (owner only).
    async fn rename_room(
        &self,
        session: Option<&str>,
        room_id: i64,
        client_id: &str,
        name: &str,
    ) -> Result<RoomSummary, ApiError>;
    /// Sets a room's topic (owner only).
    async fn set_topic(
        &self,
        session: Option<&str>,
        room_id: i64,
        client_id: &str,
        topic: &str,
    ) -> Result<RoomSummary, ApiError>;
    /// A page of the directory of public rooms.
    async fn directory(
        &self,
        session: Option<&str>,
        q: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<DirectoryPage, ApiError>;
    /// The id of the public room with this name.
    async fn resolve_room(&self, session: Option<&str>, name: &str) -> Result<i64, ApiError>;
    /// Posts a message to a room the caller is a member of, through the same
    /// commit pipeline as the WebSocket (it joins nothing); answers with the
    /// message as stored (for a resend of a `client_id`: as first stored).
    async fn post_message(
        &self,
        session: Option<&str>,
        room_id: i64,
        client_id: &str,
        body: &str,
    ) -> Result<Message, ApiError>;
    /// The `Set-Cookie` value that stores `token` (or clears it when `None`).
    fn session_cookie(&self, token: Option<&str>) -> String;
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::*;
    use http::{header, request::Parts, HeaderValue};
    use std::sync::Arc;

    /// The backend provided by the server, as a shared trait object.
    pub type SharedBackend = Arc<dyn Backend>;

    /// The client's address, put in request extensions by the server
    /// (which knows whether to believe `X-Forwarded-For`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ClientIp(pub std::net::IpAddr);

    /// The address the request came from, if the server recorded it.
    pub fn client_ip() -> Option<std::net::IpAddr> {
        use_context::<Parts>()?
            .extensions
            .get::<ClientIp>()
            .map(|ip| ip.0)
    }

    pub fn backend() -> Result<SharedBackend, ApiError> {
        use_context::<SharedBackend>()
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "backend missing from context"))
    }

    /// The session token from the request's cookie, if any.
    pub fn session_token() -> Option<String> {
        let parts = use_context::<Parts>()?;
        super::session_cookie(&parts.headers).map(str::to_owned)
    }

    /// Signs the browser in with `token`, ending the session it had before
    /// (if any) so that one is not left valid behind the new cookie.
    pub async fn replace_session(backend: &SharedBackend, token: &str) {
        if let Some(old) = session_token() {
            // Best effort (the server logs a failure): an old session that
            // cannot be deleted now still expires, and the browser no
            // longer holds its token.
            backend.sign_out(&old).await.ok();
        }
        set_cookie(&backend.session_cookie(Some(token)));
    }

    pub fn set_cookie(value: &str) {
        if let (Some(res), Ok(value)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            HeaderValue::from_str(value),
        ) {
            res.append_header(header::SET_COOKIE, value);
        }
    }

    /// Gives the response the HTTP status of `err` (rather than a blanket 500).
    pub fn set_status(err: &ApiError) {
        if let (Some(res), Ok(status)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            http::StatusCode::from_u16(err.code.http_status()),
        ) {
            res.set_status(status);
        }
    }

    /// Answers the page being rendered with a 302 to `path` (whatever the
    /// request accepts: a page GET is never a server-function call).
    pub fn redirect_page(path: &str) {
        if let (Some(res), Ok(location)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            HeaderValue::from_str(path),
        ) {
            res.set_status(http::StatusCode::FOUND);
            res.insert_header(header::LOCATION, location);
        }
    }

    /// A plain HTML form (no JavaScript) cannot show an error itself, so it is
    /// sent back to the page it came from with `?error=<message>` for the page
    /// to show and `&code=<error code>` for whatever needs the exact refusal
    /// (the code as on the wire: `not_found`, `banned`, …). Clients running
    /// the WASM app get the error as the function's result.
    pub fn fail<T>(err: ApiError) -> Result<T, ApiError> {
        set_status(&err);
        if let Some(parts) = use_context::<Parts>() {
            let plain_form = parts
                .headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html"));
            if plain_form {
                let back = parts
                    .headers
                    .get(header::REFERER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|r| http::Uri::try_from(r).ok())
                    .map(|uri| uri.path().to_owned())
                    .unwrap_or_else(|| "/".to_owned());
                leptos_axum::redirect(&format!(
                    "{back}?error={}&code={}",
                    crate::percent_encode(&err.message),
                    error_code(err.code),
                ));
            }
        }
        Err(err)
    }
}

#[cfg(feature = "ssr")]
pub use ssr::{redirect_page, ClientIp, SharedBackend};

/// An error code as the wire spells it (`not_found`), for a URL's `code=`.
pub fn error_code(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(code)) => code,
        // A unit variant always serialises as its name.
        _ => "internal".to_owned(),
    }
}

/// The form fields the server function at `path` (e.g. `/api/sign_in_guest`)
/// takes, or `None` when no server function here has that path. The server
/// refuses any other field: the generated argument structs cannot carry
/// `#[serde(deny_unknown_fields)]` (the `#[server]` macro passes no struct
/// attributes through), and serde would otherwise drop unknown fields silently.
/// A new server function must be listed here (a server test checks that).
#[cfg(feature = "ssr")]
pub fn form_fields(path: &str) -> Option<&'static [&'static str]> {
    use server_fn::ServerFn;
    [
        (LoadPage::PATH, struct_fields::<LoadPage>()),
        (SignInGuest::PATH, struct_fields::<SignInGuest>()),
        (SignUp::PATH, struct_fields::<SignUp>()),
        (SignInPassword::PATH, struct_fields::<SignInPassword>()),
        (SignOut::PATH, struct_fields::<SignOut>()),
        (CreateRoom::PATH, struct_fields::<CreateRoom>()),
        (PostMessage::PATH, struct_fields::<PostMessage>()),
        (JoinRoom::PATH, struct_fields::<JoinRoom>()),
        (LeaveRoom::PATH, struct_fields::<LeaveRoom>()),
        (RenameRoom::PATH, struct_fields::<RenameRoom>()),
        (SetTopic::PATH, struct_fields::<SetTopic>()),
        (Directory::PATH, struct_fields::<Directory>()),
        (ResolveRoom::PATH, struct_fields::<ResolveRoom>()),
    ]
    .into_iter()
    .find_map(|(p, fields)| (p == path).then_some(fields))
}

/// The field names a derived `Deserialize` struct expects, read from what it
/// passes to `deserialize_struct` (so they cannot drift from the struct).
#[cfg(feature = "ssr")]
fn struct_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Deserializer, Visitor};

    /// Stops deserialising once the field names are known.
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names read")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }

    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // Always `Err(Stop)`: the probe only records what it was asked for.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// The session token in a request's `Cookie` headers (shared with the
/// server's WebSocket upgrade, so both read the cookie the same way).
#[cfg(feature = "ssr")]
pub fn session_cookie(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == crate::protocol::SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Loads what a page shows: the user, their rooms, and the main pane (see
/// [`PageRoute::from_args`] for which arguments name which page).
#[server(endpoint = "page")]
pub async fn load_page(
    room_id: Option<i64>,
    room: Option<String>,
    browse: Option<bool>,
    q: Option<String>,
    after: Option<String>,
) -> Result<PageData, ApiError> {
    let route = PageRoute::from_args(room_id, room, browse, q, after);
    let page = ssr::backend()?
        .page(ssr::session_token().as_deref(), &route)
        .await;
    page.inspect_err(ssr::set_status)
}

/// Signs in as a guest with a display name.
#[server(endpoint = "sign_in_guest")]
pub async fn sign_in_guest(name: String) -> Result<(), ApiError> {
    let backend = ssr::backend()?;
    match backend.sign_in_guest(&name).await {
        Ok(token) => {
            ssr::replace_session(&backend, &token).await;
            Ok(())
        }
        Err(err) => ssr::fail(err),
    }
}

/// Creates a local account (email and password) and signs in.
#[server(endpoint = "sign_up")]
pub async fn sign_up(name: String, email: String, password: String) -> Result<(), ApiError> {
    let backend = ssr::backend()?;
    match backend
        .sign_up(ssr::client_ip(), &name, &email, &password)
        .await
    {
        Ok(token) => {
            ssr::replace_session(&backend, &token).await;
            Ok(())
        }
        Err(err) => ssr::fail(err),
    }
}

/// Signs in with a local account's email and password.
#[server(endpoint = "sign_in_password")]
pub async fn sign_in_password(email: String, password: String) -> Result<(), ApiError> {
    let backend = ssr::backend()?;
    match backend
        .sign_in_password(ssr::client_ip(), &email, &password)
        .await
    {
        Ok(token) => {
            ssr::replace_session(&backend, &token).await;
            Ok(())
        }
        Err(err) => ssr::fail(err),
    }
}

/// Signs out and forgets the session.
#[server(endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), ApiError> {
    let backend = ssr::backend()?;
    if let Some(token) = ssr::session_token() {
        if let Err(err) = backend.sign_out(&token).await {
            return ssr::fail(err);
        }
    }
    ssr::set_cookie(&backend.session_cookie(None));
    leptos_axum::redirect("/");
    Ok(())
}

/// Creates a room and opens it (at `/r/<id>/<slug>`). `client_id` makes a
/// resend harmless (a client that sends none gets a fresh one); `topic` may
/// be left out.
#[server(endpoint = "create_room")]
pub async fn create_room(
    name: String,
    client_id: Option<String>,
    topic: Option<String>,
) -> Result<RoomSummary, ApiError> {
    let backend = ssr::backend()?;
    match backend
        .create_room(
            ssr::session_token().as_deref(),
            client_id.as_deref(),
            &name,
            topic.as_deref().unwrap_or_default(),
        )
        .await
    {
        Ok(room) => {
            leptos_axum::redirect(&crate::urls::room_href_v2(room.id, room.display_name()));
            Ok(room)
        }
        Err(err) => ssr::fail(err),
    }
}

/// Posts a message from the plain HTML composer (the no-JavaScript path) to
/// the room with id `room_id`, of which the caller must be a member.
#[server(endpoint = "post_message")]
pub async fn post_message(
    room_id: i64,
    client_id: String,
    body: String,
) -> Result<Message, ApiError> {
    let backend = ssr::backend()?;
    match backend
        .post_message(ssr::session_token().as_deref(), room_id, &client_id, &body)
        .await
    {
        Ok(message) => Ok(message),
        Err(err) => ssr::fail(err),
    }
}

/// Joins a public room, then opens it.
#[server(endpoint = "join_room")]
pub async fn join_room(room_id: i64, client_id: String) -> Result<RoomSummary, ApiError> {
    let backend = ssr::backend()?;
    let joined = backend
        .join_room(ssr::session_token().as_deref(), room_id, &client_id)
        .await;
    match joined {
        Ok(room) => {
            leptos_axum::redirect(&crate::urls::room_href_v2(room.id, room.display_name()));
            Ok(room)
        }
        Err(err) => ssr::fail(err),
    }
}

/// Leaves a room, then goes home.
#[server(endpoint = "leave_room")]
pub async fn leave_room(room_id: i64, client_id: String) -> Result<(), ApiError> {
    let backend = ssr::backend()?;
    let left = backend
        .leave_room(ssr::session_token().as_deref(), room_id, &client_id)
        .await;
    match left {
        Ok(()) => {
            leptos_axum::redirect("/");
            Ok(())
        }
        Err(err) => ssr::fail(err),
    }
}

/// Renames a room (its owner only).
#[server(endpoint = "rename_room")]
pub async fn rename_room(
    room_id: i64,
    client_id: String,
    name: String,
) -> Result<RoomSummary, ApiError> {
    let backend = ssr::backend()?;
    let renamed = backend
        .rename_room(ssr::session_token().as_deref(), room_id, &client_id, &name)
        .await;
    renamed.map(back_to_room).or_else(ssr::fail)
}

/// Sends a plain form post (and the app) back to the room's page, at the
/// path of its name now.
#[cfg(feature = "ssr")]
fn back_to_room(room: RoomSummary) -> RoomSummary {
    leptos_axum::redirect(&crate::urls::room_href_v2(room.id, room.display_name()));
    room
}

/// Sets a room's topic (its owner only).
#[server(endpoint = "set_topic")]
pub async fn set_topic(
    room_id: i64,
    client_id: String,
    topic: String,
) -> Result<RoomSummary, ApiError> {
    let backend = ssr::backend()?;
    let set = backend
        .set_topic(ssr::session_token().as_deref(), room_id, &client_id, &topic)
        .await;
    set.map(back_to_room).or_else(ssr::fail)
}

/// A page of the directory of public rooms whose name contains `q`.
#[server(endpoint = "directory")]
pub async fn directory(
    q: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
) -> Result<DirectoryPage, ApiError> {
    let backend = ssr::backend()?;
    let page = backend
        .directory(
            ssr::session_token().as_deref(),
            q.as_deref().unwrap_or_default(),
            after.as_deref(),
            limit,
        )
        .await;
    page.or_else(ssr::fail)
}

/// The id of the public room called `name`.
#[server(endpoint = "resolve_room")]
pub async fn resolve_room(name: String) -> Result<i64, ApiError> {
    let backend = ssr::backend()?;
    let id = backend
        .resolve_room(ssr::session_token().as_deref(), &name)
        .await;
    id.or_else(ssr::fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_spelled_as_on_the_wire() {
        assert_eq!(error_code(ErrorCode::NotFound), "not_found");
        assert_eq!(error_code(ErrorCode::Unauthorized), "unauthorized");
        assert_eq!(error_code(ErrorCode::NotMember), "not_member");
    }

    #[test]
    fn page_routes_come_from_the_first_argument_given() {
        let route = |id, name: Option<&str>, browse, q: Option<&str>, after: Option<&str>| {
            PageRoute::from_args(
                id,
                name.map(str::to_owned),
                browse,
                q.map(str::to_owned),
                after.map(str::to_owned),
            )
        };
        assert_eq!(route(None, None, None, None, None), PageRoute::Home);
        assert_eq!(
            route(Some(7), Some("x"), Some(true), None, None),
            PageRoute::Room(7)
        );
        assert_eq!(
            route(None, Some("Team Chat"), Some(true), None, None),
            PageRoute::Named("Team Chat".into())
        );
        assert_eq!(
            route(None, None, Some(true), Some("tea"), Some("")),
            PageRoute::Browse {
                q: "tea".into(),
                after: None
            }
        );
        assert_eq!(
            route(None, None, Some(true), None, Some("k")),
            PageRoute::Browse {
                q: String::new(),
                after: Some("k".into())
            }
        );
        assert_eq!(
            route(None, None, Some(false), Some("q"), None),
            PageRoute::Home
        );
    }
}
