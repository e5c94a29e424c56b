//! A legacy Django app inside a real Rust service: the Rust side signs users in with a
//! signed session cookie, serves a JSON API and static files, and hands the signed-in user
//! to Django's admin under `/legacy` as `REMOTE_USER`. A user who signed in on the Rust
//! side opens `/legacy/admin/` already signed in; one without the cookie is sent to the
//! Rust login.
//!
//! Run with: `cargo run --example gateway [ADDR]` in a shell whose `VIRTUAL_ENV` has Django
//! (`scripts/test` makes `.venv` with it), then open <http://127.0.0.1:8000/legacy/admin/>
//! and sign in as `alice` / `wonderland`. `GATEWAY_PROCESSES=2` runs Django in two worker
//! processes instead of this one.

use std::net::SocketAddr;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use cookie::{Cookie, CookieJar, Key, SameSite};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use tower_http::services::ServeDir;
use wsgi_axum::{Engine, EnvironExtras, WsgiService};

/// The Django project, with `RemoteUserMiddleware` (`apps/django_app/gateway_wsgi.py`).
pub const DJANGO_APP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/apps/django_app/gateway_wsgi.py"
);
/// What `/static` serves.
pub const STATIC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/apps/gateway_static");
/// The session cookie's name.
pub const SESSION: &str = "gateway_session";

/// The demo's users and passwords. A real service checks a password hash (`argon2`) or
/// hands sign-in to an identity provider.
const USERS: [(&str, &str); 2] = [("alice", "wonderland"), ("bob", "builder")];

/// The Rust side's state: the key that signs session cookies.
#[derive(Clone)]
pub struct Gateway {
    key: Key,
}

impl Gateway {
    /// A gateway signing with `key` (`Key::generate()` signs out everyone at a restart; a
    /// deployment loads a key of 64 bytes from its secrets).
    pub fn new(key: Key) -> Self {
        Gateway { key }
    }

    /// The user whose session cookie `headers` carry, if its signature holds. A real
    /// service also signs an expiry into the value.
    pub fn user(&self, headers: &HeaderMap) -> Option<String> {
        let mut jar = CookieJar::new();
        for line in headers.get_all(header::COOKIE) {
            let Ok(line) = line.to_str() else { continue };
            for cookie in Cookie::split_parse(line).flatten() {
                jar.add_original(cookie.into_owned());
            }
        }
        let session = jar.signed(&self.key).get(SESSION)?;
        Some(session.value().to_owned())
    }

    /// The `Set-Cookie` value that signs `user` in.
    fn session_cookie(&self, user: &str) -> String {
        let mut jar = CookieJar::new();
        let cookie = Cookie::build((SESSION, user.to_owned()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax);
        jar.signed_mut(&self.key).add(cookie);
        let signed = jar.get(SESSION).expect("the cookie just added");
        signed.to_string()
    }
}

/// Rust routes, `/static` from disk, and Django under `/legacy` behind the middleware that
/// turns the session into `REMOTE_USER`.
pub fn router(django: Engine, gateway: Gateway) -> Router {
    // `Router::layer` wraps the routes added before it: the bridge covers `/legacy` only.
    let legacy = Router::new()
        .nest_service("/legacy", WsgiService::new(django))
        .layer(middleware::from_fn_with_state(gateway.clone(), bridge));
    Router::new()
        .route("/", get(|| async { Redirect::to("/legacy/admin/") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/api/me", get(me))
        .nest_service("/static", ServeDir::new(STATIC_DIR))
        .merge(legacy)
        .with_state(gateway)
}

/// Verifies the session and tells Django who the user is, or sends the browser to sign in.
async fn bridge(State(gateway): State<Gateway>, mut req: Request, next: Next) -> Response {
    let Some(user) = gateway.user(req.headers()) else {
        let here = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let next = utf8_percent_encode(here, NON_ALPHANUMERIC);
        return Redirect::to(&format!("/login?next={next}")).into_response();
    };
    let mut extras = EnvironExtras::new();
    // A name that is no native string (a NUL, beyond latin-1) is refused here, not passed
    // on mangled; the demo's names are plain ASCII.
    if let Err(e) = extras
        .set_remote_user(user.as_str())
        .and_then(|e| e.set_auth_type("Cookie"))
    {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    req.extensions_mut().insert(extras);
    next.run(req).await
}

#[derive(Deserialize)]
struct AfterLogin {
    next: Option<String>,
}

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
    next: Option<String>,
}

/// Where to go after signing in: a path of this site, never another site (`//evil`).
fn local(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path
        }
        _ => "/",
    }
}

async fn login_page(Query(query): Query<AfterLogin>) -> Html<String> {
    Html(login_form(local(query.next.as_deref()), ""))
}

fn login_form(next: &str, message: &str) -> String {
    // `next` is a local path; escaped all the same, as it goes into an attribute.
    let next = next
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;");
    format!(
        "<!doctype html><title>Sign in</title>\
         <link rel=\"stylesheet\" href=\"/static/gateway.css\">\
         <h1>Sign in (Rust)</h1><p>{message}</p>\
         <form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label>User <input name=\"user\"></label>\
         <label>Password <input name=\"password\" type=\"password\"></label>\
         <button>Sign in</button></form>"
    )
}

async fn login(State(gateway): State<Gateway>, Form(form): Form<Credentials>) -> Response {
    let known = USERS
        .iter()
        .any(|&(user, password)| user == form.user && password == form.password);
    if !known {
        let page = login_form(
            local(form.next.as_deref()),
            "Unknown user or wrong password.",
        );
        return (StatusCode::UNAUTHORIZED, Html(page)).into_response();
    }
    let cookie = gateway.session_cookie(&form.user);
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to(local(form.next.as_deref())),
    )
        .into_response()
}

async fn logout() -> Response {
    let gone = format!("{SESSION}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    ([(header::SET_COOKIE, gone)], Redirect::to("/login")).into_response()
}

/// The JSON API: who the session says the user is.
async fn me(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    match gateway.user(&headers) {
        Some(user) => (json, serde_json::json!({ "user": user }).to_string()).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            json,
            serde_json::json!({ "error": "not signed in" }).to_string(),
        )
            .into_response(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Worker processes (`EngineBuilder::processes`) are this binary started again.
    wsgi_axum::run_if_worker();
    serve()
}

#[tokio::main]
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8000".into());
    let processes = match std::env::var("GATEWAY_PROCESSES") {
        Ok(n) => n.parse()?,
        Err(_) => 0,
    };
    let django = Engine::builder(DJANGO_APP)
        .threads(4)
        .processes(processes)
        .build()?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let app = router(django, Gateway::new(Key::generate()));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
