//! The `gateway` showcase end to end over HTTP: sign in on the Rust side, open Django's
//! admin under `/legacy` already signed in; without the cookie (or with a forged one, or a
//! `Remote-User:` header) the browser is sent to the Rust login. With Django in this
//! process and in a worker process (`EngineBuilder::processes(1)`).
//!
//! Without libtest's harness, like `identity.rs`: a worker process is this binary started
//! again, so `main` hands over to `wsgi_core::run_if_worker` first. Django's settings are
//! process-wide: this binary serves no other Django project.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../gateway.rs"]
mod gateway;

use cookie::Key;
use test_support::hosts::serve_axum;
use test_support::wire::{Request, Response, send};
use wsgi_core::Engine;

fn django(processes: usize) -> Engine {
    Engine::builder(gateway::DJANGO_APP)
        .threads(2)
        .processes(processes)
        .build()
        .unwrap_or_else(|e| panic!("loading {}: {e}", gateway::DJANGO_APP))
}

/// `name=value` of the session cookie a response sets.
fn session_of(response: &Response) -> String {
    let set = response
        .header_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with(gateway::SESSION))
        .unwrap_or_else(|| panic!("no session cookie: {response:?}"));
    set.split(';').next().unwrap().to_owned()
}

fn sign_in(addr: std::net::SocketAddr, user: &str, password: &str, next: &str) -> Response {
    send(
        addr,
        &Request::form(
            "/login",
            &[("user", user), ("password", password), ("next", next)],
        ),
    )
}

fn the_admin_opens_for_a_user_signed_in_on_the_rust_side(processes: usize) {
    let engine = django(processes);
    let server =
        serve_axum(move |_| gateway::router(engine, gateway::Gateway::new(Key::generate())));
    let addr = server.addr;

    // No cookie: the Rust side sends the browser to its login, Django never sees it.
    let away = send(addr, &Request::get("/legacy/admin/"));
    assert_eq!(away.status, 303, "{away:?}");
    assert_eq!(
        away.header("location"),
        Some("/login?next=%2Flegacy%2Fadmin%2F")
    );
    let form = send(addr, &Request::get("/login?next=/legacy/admin/"));
    assert!(
        form.text().contains("value=\"/legacy/admin/\""),
        "{}",
        form.text()
    );

    // A wrong password gets no cookie.
    let refused = sign_in(addr, "alice", "guess", "/legacy/admin/");
    assert_eq!(refused.status, 401);
    assert!(refused.header("set-cookie").is_none());

    // Signed in: back to the admin, which greets the user Rust named.
    let signed_in = sign_in(addr, "alice", "wonderland", "/legacy/admin/");
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    assert_eq!(signed_in.header("location"), Some("/legacy/admin/"));
    let session = session_of(&signed_in);
    let admin = send(
        addr,
        &Request::get("/legacy/admin/").header("Cookie", &session),
    );
    assert_eq!(admin.status, 200, "{}", admin.text());
    let page = admin.text();
    assert!(page.contains("Site administration"), "{page}");
    assert!(page.contains("<strong>alice</strong>"), "{page}");
    // Django's own static files, through the engine, under the mount.
    let users = send(
        addr,
        &Request::get("/legacy/admin/auth/user/").header("Cookie", &session),
    );
    assert_eq!(users.status, 200);
    assert!(users.text().contains("alice"));

    // The Rust API and static files answer next to it.
    let me = send(addr, &Request::get("/api/me").header("Cookie", &session));
    assert_eq!(me.json()["user"], "alice");
    assert_eq!(send(addr, &Request::get("/api/me")).status, 401);
    let css = send(addr, &Request::get("/static/gateway.css"));
    assert_eq!(
        (css.status, css.header("content-type")),
        (200, Some("text/css"))
    );
}

fn a_forged_session_or_a_remote_user_header_signs_nobody_in(processes: usize) {
    let engine = django(processes);
    let server =
        serve_axum(move |_| gateway::router(engine, gateway::Gateway::new(Key::generate())));
    let addr = server.addr;

    let header_only = send(
        addr,
        &Request::get("/legacy/admin/").header("Remote-User", "alice"),
    );
    assert_eq!(header_only.status, 303, "a header is no session");

    let bob = session_of(&sign_in(addr, "bob", "builder", "/"));
    // The same signature over another name does not hold.
    let forged = format!(
        "{}eve",
        bob.strip_suffix("bob").expect("the value ends in the name")
    );
    let refused = send(
        addr,
        &Request::get("/legacy/admin/").header("Cookie", &forged),
    );
    assert_eq!(refused.status, 303, "a forged cookie: {refused:?}");

    // bob's own session, with a Remote-User header naming alice: Django sees bob.
    let admin = send(
        addr,
        &Request::get("/legacy/admin/")
            .header("Cookie", &bob)
            .header("Remote-User", "alice"),
    );
    assert_eq!(admin.status, 200);
    assert!(
        admin.text().contains("<strong>bob</strong>"),
        "{}",
        admin.text()
    );
}

type Case = fn(usize);

const CASES: [(&str, Case); 2] = [
    (
        "the_admin_opens_for_a_user_signed_in_on_the_rust_side",
        the_admin_opens_for_a_user_signed_in_on_the_rust_side,
    ),
    (
        "a_forged_session_or_a_remote_user_header_signs_nobody_in",
        a_forged_session_or_a_remote_user_header_signs_nobody_in,
    ),
];

fn main() {
    wsgi_core::run_if_worker();
    if test_support::framework_venv("django").is_none() {
        return;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    for processes in [0, 1] {
        for (name, case) in CASES {
            let full = format!("processes_{processes}::{name}");
            if !filters.is_empty() && !filters.iter().any(|f| full.contains(f.as_str())) {
                continue;
            }
            match std::panic::catch_unwind(|| case(processes)) {
                Ok(()) => println!("test {full} ... ok"),
                Err(_) => {
                    println!("test {full} ... FAILED");
                    failed.push(full);
                }
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailed: {failed:?}");
        std::process::exit(1);
    }
}
