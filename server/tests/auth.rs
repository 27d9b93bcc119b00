//! Sign-in for real: local accounts, and OpenID Connect against a real
//! provider (the `oidc-provider` package) that `make test` starts on
//! 127.0.0.1 (`tools/oidc-provider/with-providers.sh`). Each refused
//! OpenID response is produced the way an attacker or a broken provider
//! would produce it: a tampered authorization request, a replayed or foreign
//! callback, a response from another issuer, a provider with a slow clock.

mod common;

use common::{room_in, session_cookie, TestApp};
use reqwest::{header, redirect, StatusCode, Url};
use serde_json::Value;

// ---- the provider -------------------------------------------------------------

/// The issuer in environment variable `var`, set by the provider wrapper.
fn issuer(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run these tests with the local OpenID providers up, \
             e.g. `make unit`, or `tools/oidc-provider/with-providers.sh cargo test -p server`"
        )
    })
}

const CLIENT_ID: &str = "chat";
const CLIENT_SECRET: &str = "chat-test-secret";

/// A server offering "Test" (the main provider, `/auth/oidc/test`) and
/// "Skewed" (a provider whose clock is slow: its ID tokens arrive expired).
async fn app_with_providers() -> TestApp {
    let main = issuer("CHAT_TEST_OIDC_ISSUER");
    let skewed = issuer("CHAT_TEST_OIDC_SKEWED_ISSUER");
    TestApp::spawn_with(|config| {
        config.oidc_issuer = vec![main, skewed];
        config.oidc_client_id = vec![CLIENT_ID.into(), CLIENT_ID.into()];
        config.oidc_client_secret = vec![
            server::config::Secret::new(CLIENT_SECRET),
            server::config::Secret::new(CLIENT_SECRET),
        ];
        config.oidc_name = vec!["Test".into(), "Skewed".into()];
    })
    .await
}

/// A browser: one cookie jar for the app and the providers, redirects
/// followed by hand so each hop can be inspected (or tampered with).
struct Browser {
    http: reqwest::Client,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
}

impl Browser {
    fn new() -> Self {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        Self {
            http: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(redirect::Policy::none())
                .build()
                .expect("client"),
            jar,
        }
    }

    /// Puts a `name=value` cookie of `app` in this browser.
    fn set_cookie(&self, app: &TestApp, pair: &str) {
        self.jar
            .add_cookie_str(&format!("{pair}; Path=/"), &app.url("/").parse().unwrap());
    }

    /// Clicks "Sign in with …": returns the provider's authorization URL.
    async fn start(&self, app: &TestApp, provider: &str) -> Url {
        let res = self
            .http
            .post(app.url(&format!("/auth/oidc/{provider}")))
            .header(header::ORIGIN, app.origin())
            .send()
            .await
            .expect("start");
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "start: {res:?}");
        location(&res)
    }

    /// Signs in at the provider as `login` (any password works there; a
    /// browser the provider remembers is not asked again) and returns where
    /// the provider sends the browser back: the app's callback.
    async fn log_in_at_provider(&self, authorize: Url, login: &str) -> Url {
        let res = self.http.get(authorize).send().await.expect("authorize");
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "authorize: {res:?}");
        let interaction = location(&res);
        if interaction.path().starts_with("/auth/oidc/") {
            // The provider remembers this browser: straight back to the app.
            return interaction;
        }
        let form = self
            .http
            .get(interaction.clone())
            .send()
            .await
            .expect("login form");
        let status = form.status();
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            form.text().await.unwrap_or_default()
        );
        let res = self
            .http
            .post(interaction)
            .form(&[("prompt", "login"), ("login", login), ("password", "any")])
            .send()
            .await
            .expect("log in");
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "log in: {res:?}");
        let resume = location(&res);
        let res = self.http.get(resume).send().await.expect("resume");
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "resume: {res:?}");
        location(&res)
    }

    /// Follows the provider's redirect to the app's callback.
    async fn callback(&self, url: Url) -> Outcome {
        let res = self.http.get(url).send().await.expect("callback");
        let status = res.status();
        let cookie = session_cookie(res.headers());
        let redirect = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res.text().await.expect("callback body");
        Outcome {
            status,
            cookie,
            redirect,
            body,
        }
    }

    /// The whole flow as a person clicks through it.
    async fn sign_in(&self, app: &TestApp, provider: &str, login: &str) -> Outcome {
        let authorize = self.start(app, provider).await;
        let callback = self.log_in_at_provider(authorize, login).await;
        self.callback(callback).await
    }
}

/// What the app answered at its callback.
#[derive(Debug)]
struct Outcome {
    status: StatusCode,
    cookie: Option<String>,
    redirect: Option<String>,
    body: String,
}

impl Outcome {
    /// Asserts a sign-in succeeded; returns the session cookie.
    fn signed_in(&self) -> String {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        assert_eq!(self.redirect.as_deref(), Some("/"));
        self.cookie.clone().expect("session cookie")
    }

    /// Asserts the clear error page, mentioning `why`, and no session.
    fn refused(&self, status: StatusCode, why: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.cookie.is_none(), "no session on a refused sign-in");
        assert!(self.body.contains("Sign-in failed"), "{}", self.body);
        assert!(
            self.body.contains(r#"role="alert""#) && self.body.contains(why),
            "expected {why:?} in: {}",
            self.body
        );
    }
}

fn location(res: &reqwest::Response) -> Url {
    let value = res
        .headers()
        .get(header::LOCATION)
        .expect("Location")
        .to_str()
        .expect("Location text");
    res.url().join(value).expect("Location URL")
}

/// `url` with query parameter `name` set to `value`.
fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut out = url.clone();
    out.query_pairs_mut().clear();
    for (k, v) in pairs {
        let v = if k == name { value.to_owned() } else { v };
        out.query_pairs_mut().append_pair(&k, &v);
    }
    out
}

/// A unique provider login for this test, e.g. "ada.x3f2a9c01".
fn login(first: &str) -> String {
    format!(
        "{first}.x{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// The name the test provider gives a login: "ada.x3f2a9c01" -> "Ada X3f2a9c01".
fn provider_name(login: &str) -> String {
    login
        .split('.')
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---- OpenID Connect: the happy path -----------------------------------------

#[tokio::test]
async fn signing_in_with_a_provider_brings_name_email_and_picture_and_keeps_the_account() {
    let app = app_with_providers().await;
    let who = login("ada");
    let browser = Browser::new();
    let cookie = browser.sign_in(&app, "test", &who).await.signed_in();

    let (mut client, hello) = app.ws_hello(&cookie).await;
    let user = &hello["user"];
    let name = provider_name(&who);
    assert_eq!(user["name"], Value::from(name.clone()));
    assert_eq!(user["email"], Value::from(format!("{who}@example.test")));
    let picture = user["picture"].as_str().expect("picture");
    assert!(
        picture.starts_with(&issuer("CHAT_TEST_OIDC_ISSUER")),
        "{picture}"
    );

    // The server-rendered page shows who is signed in.
    let html = app.page(&cookie, "/").await;
    assert!(html.contains(&name), "{html}");
    assert!(html.contains(&format!("{who}@example.test")));

    // A first sign-in makes a member of general: the hello lists it.
    let general = room_in(&hello, "general").expect("general in the hello");

    // Talk, sign out, sign in again (another browser): the same account,
    // with its history.
    client.resume(serde_json::json!({})).await;
    client.say(general, "hello from ada").await;
    client.expect("ack").await;
    let (status, _, _) = app.call(Some(&cookie), "sign_out", &[]).await;
    assert!(status == 200 || status == 302 || status == 303, "{status}");

    let again = Browser::new().sign_in(&app, "test", &who).await.signed_in();
    assert_ne!(again, cookie);
    let (mut client, hello) = app.ws_with(&again, serde_json::json!({})).await;
    assert_eq!(room_in(&hello, "general"), Some(general), "still a member");
    let presence = client.open(general, None).await;
    assert_eq!(presence["online"][0]["id"], user["id"], "same user");
    let html = app.page(&again, "/rooms/general").await;
    assert!(html.contains("hello from ada"), "history kept");

    let db = app.db().await;
    let (issuer_stored, links): (String, i64) = sqlx::query_as(
        "SELECT issuer, (SELECT COUNT(*) FROM identities) FROM identities WHERE subject = ?",
    )
    .bind(&who)
    .fetch_one(&db)
    .await
    .expect("identity");
    assert_eq!(issuer_stored, issuer("CHAT_TEST_OIDC_ISSUER"));
    assert_eq!(links, 1);
}

#[tokio::test]
async fn the_sign_in_page_offers_configured_providers_only() {
    let app = app_with_providers().await;
    let html = reqwest::get(app.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Sign in with Test"));
    assert!(html.contains(r#"action="/auth/oidc/test""#));
    assert!(!html.contains("Sign in with Google"));
    assert!(!html.contains("Sign in with Microsoft"));

    let plain = TestApp::spawn().await;
    let html = reqwest::get(plain.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("/auth/oidc/"), "no providers configured");
    assert!(html.contains("Sign in as guest"));
    assert!(html.contains("Create account"));
}

// ---- OpenID Connect: refusals -------------------------------------------------

#[tokio::test]
async fn an_unknown_state_is_refused() {
    let app = app_with_providers().await;
    let browser = Browser::new();
    // This browser has started a sign-in, but not this one.
    browser.start(&app, "test").await;
    let forged = Url::parse(&app.url("/auth/oidc/test/callback?code=abc&state=made-up")).unwrap();
    browser
        .callback(forged)
        .await
        .refused(StatusCode::BAD_REQUEST, "unknown or was already used");
    let no_state = Url::parse(&app.url("/auth/oidc/test/callback?code=abc")).unwrap();
    browser
        .callback(no_state)
        .await
        .refused(StatusCode::BAD_REQUEST, "has no state");
}

#[tokio::test]
async fn a_replayed_callback_is_refused() {
    let app = app_with_providers().await;
    let browser = Browser::new();
    let authorize = browser.start(&app, "test").await;
    let callback = browser.log_in_at_provider(authorize, &login("rey")).await;
    browser.callback(callback.clone()).await.signed_in();
    // The same response again (state and code): the state is spent.
    browser
        .callback(callback)
        .await
        .refused(StatusCode::BAD_REQUEST, "unknown or was already used");
}

#[tokio::test]
async fn a_callback_in_another_browser_is_refused() {
    let app = app_with_providers().await;
    let victim = Browser::new();
    let authorize = victim.start(&app, "test").await;
    let callback = victim.log_in_at_provider(authorize, &login("vic")).await;
    // Someone else's browser opens the callback (login CSRF, a leaked link).
    Browser::new()
        .callback(callback.clone())
        .await
        .refused(StatusCode::BAD_REQUEST, "another browser");
    // And the state was spent by that attempt.
    victim
        .callback(callback)
        .await
        .refused(StatusCode::BAD_REQUEST, "unknown or was already used");
}

#[tokio::test]
async fn a_wrong_nonce_is_refused() {
    let app = app_with_providers().await;
    let browser = Browser::new();
    let authorize = browser.start(&app, "test").await;
    // The authorization request is altered on its way: the ID token comes
    // back with a nonce this sign-in never sent.
    let tampered = with_param(&authorize, "nonce", "a-nonce-from-elsewhere");
    let callback = browser.log_in_at_provider(tampered, &login("nia")).await;
    browser
        .callback(callback)
        .await
        .refused(StatusCode::BAD_REQUEST, "nonce");
}

#[tokio::test]
async fn a_pkce_verifier_mismatch_is_refused() {
    let app = app_with_providers().await;
    let browser = Browser::new();
    let authorize = browser.start(&app, "test").await;
    // The code is bound to someone else's challenge (RFC 7636's example), so
    // the server's verifier does not match it and the provider refuses it.
    let tampered = with_param(
        &authorize,
        "code_challenge",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    );
    let callback = browser.log_in_at_provider(tampered, &login("pia")).await;
    browser
        .callback(callback)
        .await
        .refused(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn a_response_from_another_issuer_is_refused() {
    let app = app_with_providers().await;
    let other = Url::parse(&issuer("CHAT_TEST_OIDC_OTHER_ISSUER")).unwrap();
    let browser = Browser::new();

    // Mix-up: the sign-in is sent to another provider, which answers the
    // callback with its own code (and says who it is, RFC 9207 `iss`).
    let mut authorize = browser.start(&app, "test").await;
    authorize.set_port(other.port()).unwrap();
    let callback = browser.log_in_at_provider(authorize, &login("mix")).await;
    assert!(callback.query().unwrap().contains("iss="));
    browser
        .callback(callback)
        .await
        .refused(StatusCode::BAD_REQUEST, "another issuer");

    // Without `iss`, the other issuer's code is worthless at this provider.
    let mut authorize = browser.start(&app, "test").await;
    authorize.set_port(other.port()).unwrap();
    let callback = browser.log_in_at_provider(authorize, &login("mix")).await;
    let mut stripped = callback.clone();
    stripped.query_pairs_mut().clear().extend_pairs(
        callback
            .query_pairs()
            .filter(|(k, _)| k != "iss")
            .collect::<Vec<_>>(),
    );
    browser
        .callback(stripped)
        .await
        .refused(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn an_expired_id_token_is_refused() {
    let app = app_with_providers().await;
    // "Skewed" runs five minutes slow with one-minute ID tokens.
    Browser::new()
        .sign_in(&app, "skewed", &login("old"))
        .await
        .refused(StatusCode::BAD_REQUEST, "expired");
}

#[tokio::test]
async fn a_denied_sign_in_and_unknown_providers_get_clear_pages() {
    let app = app_with_providers().await;
    let browser = Browser::new();
    let authorize = browser.start(&app, "test").await;
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let denied = Url::parse(&app.url(&format!(
        "/auth/oidc/test/callback?error=access_denied&error_description=nope&state={state}"
    )))
    .unwrap();
    browser
        .callback(denied)
        .await
        .refused(StatusCode::FORBIDDEN, "access_denied");

    let res = browser
        .http
        .post(app.url("/auth/oidc/nowhere"))
        .header(header::ORIGIN, app.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await.unwrap().contains("no sign-in provider"));

    // Starting a sign-in is a POST: another site's page cannot.
    let res = browser
        .http
        .post(app.url("/auth/oidc/test"))
        .header(header::ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn signing_in_again_ends_the_session_the_browser_had() {
    let app = app_with_providers().await;
    let guest = app.sign_in("Gus").await;
    let (mut socket, hello) = app.ws_with(&guest, serde_json::json!({})).await;
    // A guest is a member of general from the start.
    assert!(room_in(&hello, "general").is_some(), "{hello}");

    // The guest's browser signs in with a provider: the guest session ends.
    let browser = Browser::new();
    browser.set_cookie(&app, &guest);
    let signed_in = browser
        .sign_in(&app, "test", &login("gus"))
        .await
        .signed_in();
    assert_eq!(socket.closed_with().await, 1008);
    assert!(app.try_ws(Some(&guest), Some(&app.origin())).await.is_err());

    // And from there to a local account: the provider session ends.
    let mut socket = app.ws(&signed_in).await;
    let (status, body, _) = app
        .call(
            Some(&signed_in),
            "sign_up",
            &[
                ("name", "Gus"),
                ("email", "gus@example.test"),
                ("password", "long enough"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(socket.closed_with().await, 1008);
}

// ---- local accounts -----------------------------------------------------------

#[tokio::test]
async fn local_accounts_sign_up_and_sign_in_with_an_argon2id_hash() {
    let app = TestApp::spawn().await;
    let cookie = app
        .sign_up("Lou", "Lou@Example.test", "correct horse")
        .await;
    // The email is the owner's to see: in their hello, not in presence.
    // A sign-up makes a member of general: the hello lists it.
    let (mut client, hello) = app.ws_hello(&cookie).await;
    assert_eq!(hello["user"]["email"], "Lou@Example.test");
    let general = room_in(&hello, "general").expect("general in the hello");
    client.resume(serde_json::json!({})).await;
    let presence = client.open(general, None).await;
    assert_eq!(presence["online"][0]["name"], "Lou");
    assert_eq!(presence["online"][0].get("email"), None);

    // Signing in (email case does not matter) gives a new session.
    let (status, body, headers) = app
        .call(
            None,
            "sign_in_password",
            &[("email", "lou@example.TEST"), ("password", "correct horse")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(session_cookie(&headers).is_some());

    // Same email again: refused, whatever the case.
    let (status, body, _) = app
        .call(
            None,
            "sign_up",
            &[
                ("name", "Other"),
                ("email", "LOU@example.test"),
                ("password", "another one"),
            ],
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "account_exists");

    // Only an argon2id hash is stored, with at least m=19 MiB, t=2, p=1.
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM local_accounts")
        .fetch_one(&app.db().await)
        .await
        .unwrap();
    assert!(!stored.contains("correct horse"));
    let params = stored
        .strip_prefix("$argon2id$v=19$")
        .expect("argon2id v1.3")
        .split('$')
        .next()
        .unwrap();
    let value = |key: &str| -> u32 {
        params
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {params}"))
    };
    assert!(value("m") >= 19 * 1024, "{params}");
    assert!(value("t") >= 2, "{params}");
    assert_eq!(value("p"), 1, "{params}");
}

#[tokio::test]
async fn bad_sign_ups_are_refused_with_reasons() {
    let app = TestApp::spawn().await;
    for (email, password, code) in [
        ("not-an-email", "long enough", "invalid_account"),
        ("a@b.example", "short", "invalid_account"),
        ("", "long enough", "invalid_account"),
    ] {
        let (status, body, _) = app
            .call(
                None,
                "sign_up",
                &[("name", "X"), ("email", email), ("password", password)],
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["code"], code);
    }
    let (status, body, _) = app
        .call(
            None,
            "sign_up",
            &[
                ("name", " "),
                ("email", "x@y.example"),
                ("password", "long enough"),
            ],
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_name")));
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_error() {
    let app = TestApp::spawn().await;
    app.sign_up("Wes", "wes@example.test", "the right one")
        .await;
    let mut answers = Vec::new();
    for (email, password) in [
        ("wes@example.test", "the wrong one"),
        ("nobody@example.test", "the right one"),
    ] {
        let (status, body, headers) = app
            .call(
                None,
                "sign_in_password",
                &[("email", email), ("password", password)],
            )
            .await;
        assert!(session_cookie(&headers).is_none());
        answers.push((status, body));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0].1["message"], "Wrong email or password.");
}

#[tokio::test]
async fn repeated_failures_are_rate_limited_per_account() {
    let app = TestApp::spawn().await;
    app.sign_up("Ray", "ray@example.test", "the right one")
        .await;
    app.sign_up("Sue", "sue@example.test", "the right one")
        .await;
    let attempt = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.call(
                None,
                "sign_in_password",
                &[("email", email), ("password", password)],
            )
            .await
        }
    };
    for _ in 0..5 {
        assert_eq!(attempt("ray@example.test", "guess").await.0, 401);
    }
    // Now even the right password waits.
    let (status, body, headers) = attempt("ray@example.test", "the right one").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "rate_limited");
    assert!(session_cookie(&headers).is_none());
    // When to retry: the oldest failure leaves the 15-minute window then.
    let retry_ms = body["retry_after"].as_u64().expect("retry_after");
    assert!(
        (14 * 60_000..=15 * 60_000).contains(&retry_ms),
        "retry_after {retry_ms}"
    );
    let retry_s: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry_s, retry_ms.div_ceil(1000));
    // Another account from the same address is not affected.
    assert_eq!(attempt("sue@example.test", "the right one").await.0, 200);
}

#[tokio::test]
async fn repeated_failures_are_rate_limited_per_address() {
    let app = TestApp::spawn().await;
    app.sign_up("Tom", "tom@example.test", "the right one")
        .await;
    for i in 0..20 {
        let email = format!("guess{i}@example.test");
        let (status, _, _) = app
            .call(
                None,
                "sign_in_password",
                &[("email", &email), ("password", "guess")],
            )
            .await;
        assert_eq!(status, 401);
    }
    let (status, body, _) = app
        .call(
            None,
            "sign_in_password",
            &[("email", "tom@example.test"), ("password", "the right one")],
        )
        .await;
    assert_eq!(status, 429, "{body}");
}

#[tokio::test]
async fn signing_out_closes_a_local_accounts_sockets() {
    let app = TestApp::spawn().await;
    let cookie = app
        .sign_up("Uli", "uli@example.test", "the right one")
        .await;
    let mut client = app.ws(&cookie).await;
    let (status, _, _) = app.call(Some(&cookie), "sign_out", &[]).await;
    assert!(status < 400, "{status}");
    assert_eq!(client.closed_with().await, 1008);
    // And the session is gone.
    assert!(app
        .try_ws(Some(&cookie), Some(&app.origin()))
        .await
        .is_err());
}

#[tokio::test]
async fn guest_sign_in_and_local_accounts_can_be_turned_off() {
    let app = TestApp::spawn_with(|config| {
        config.guest_sign_in = false;
        config.local_accounts = false;
    })
    .await;
    let (status, body, headers) = app.call(None, "sign_in_guest", &[("name", "Val")]).await;
    assert_eq!(status, 403, "{body}");
    assert!(session_cookie(&headers).is_none());
    let (status, _, _) = app
        .call(
            None,
            "sign_up",
            &[
                ("name", "V"),
                ("email", "v@example.test"),
                ("password", "long enough"),
            ],
        )
        .await;
    assert_eq!(status, 403);
    let html = reqwest::get(app.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("Sign in as guest"));
    assert!(!html.contains("Create account"));
    assert!(html.contains("not configured"));
}

#[tokio::test]
async fn cross_origin_sign_ins_are_refused() {
    let app = TestApp::spawn().await;
    let res = reqwest::Client::new()
        .post(app.url("/api/sign_in_password"))
        .header(header::ORIGIN, "http://evil.example")
        .form(&[("email", "a@b.example"), ("password", "whatever1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = reqwest::Client::new()
        .post(app.url("/api/sign_up"))
        .header(header::ORIGIN, "http://evil.example")
        .form(&[
            ("name", "E"),
            ("email", "e@b.example"),
            ("password", "whatever1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}
