//! The environ bridge end to end: a Rust middleware in front of the app authenticates the
//! request and says who the user is through `wsgi_core::EnvironExtras`, on axum (an
//! `axum::middleware::from_fn` layer) and on actix-web (a `wrap_fn`), with the app in this
//! process and in a worker process (`EngineBuilder::processes(1)`). The app is
//! `tests/apps/identity_app.py`.
//!
//! Without libtest's harness (`harness = false`): a worker process is this binary started
//! again, so `main` must hand over to `wsgi_core::run_if_worker` before anything else, as
//! any program using worker processes does. Arguments that are not flags filter the cases
//! by name, as libtest's do.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use common::{Host, test_app};
use test_support::hosts::{self, serve_actix, serve_axum};
use test_support::wire::{Request, Response, send};
use wsgi_core::{Engine, EnvironExtras};

/// Where the app runs.
#[derive(Clone, Copy, Debug)]
enum Mode {
    InProcess,
    WorkerProcess,
}

fn engine(mode: Mode) -> Engine {
    static IN_PROCESS: OnceLock<Engine> = OnceLock::new();
    static WORKER: OnceLock<Engine> = OnceLock::new();
    let (cell, processes) = match mode {
        Mode::InProcess => (&IN_PROCESS, 0),
        Mode::WorkerProcess => (&WORKER, 1),
    };
    cell.get_or_init(|| {
        let app = test_app("identity_app.py");
        Engine::builder(&app)
            .threads(2)
            .processes(processes)
            .build()
            .unwrap_or_else(|e| panic!("loading {app}: {e}"))
    })
    .clone()
}

/// What the test's gateway makes of a request: `Authorization: Bearer <user>` is trusted
/// as is (a real one verifies a signature). The user's bytes go as they came, so a UTF-8
/// name reaches the app as PEP 3333 passes bytes.
fn identity(authorization: Option<&[u8]>) -> Option<EnvironExtras> {
    let user = authorization?.strip_prefix(b"Bearer ")?;
    let mut extras = EnvironExtras::new();
    extras
        .set_remote_user(user)
        .ok()?
        .set_auth_type("Bearer")
        .ok()?
        .set("myservice.tenant", "acme")
        .ok()?;
    Some(extras)
}

/// The app under `/legacy` behind the identity middleware of `host`.
fn start(host: Host, mode: Mode) -> hosts::Server {
    let engine = engine(mode);
    match host {
        Host::Axum => serve_axum(move |_| {
            use axum::Router;
            use axum::extract::Request;
            use axum::middleware::{Next, from_fn};

            async fn bridge(mut req: Request, next: Next) -> axum::response::Response {
                let auth = req.headers().get("authorization").map(|v| v.as_bytes());
                if let Some(extras) = identity(auth) {
                    req.extensions_mut().insert(extras);
                }
                next.run(req).await
            }

            Router::new()
                .nest_service("/legacy", wsgi_axum::WsgiService::new(engine))
                .layer(from_fn(bridge))
        }),
        Host::Actix => serve_actix(move |config| {
            use actix_web::dev::Service as _;
            use actix_web::{HttpMessage as _, web};

            let bridged = web::scope("")
                .wrap_fn(|req, srv| {
                    let auth = req.headers().get("authorization").map(|v| v.as_bytes());
                    if let Some(extras) = identity(auth) {
                        req.extensions_mut().insert(extras);
                    }
                    srv.call(req)
                })
                .service(wsgi_actix::WsgiApp::new("/legacy", engine.clone()));
            config.service(bridged);
        }),
    }
}

fn ask(server: &hosts::Server, request: Request) -> serde_json::Value {
    let response: Response = send(server.addr, &request);
    response.expect(200, "application/json").json()
}

fn a_middleware_sets_remote_user_auth_type_and_a_key_of_its_own(host: Host, mode: Mode) {
    let server = start(host, mode);
    let env = ask(
        &server,
        Request::get("/legacy/whoami").header("Authorization", "Bearer alice"),
    );
    assert_eq!(env["REMOTE_USER"], "alice", "{env}");
    assert_eq!(env["AUTH_TYPE"], "Bearer");
    assert_eq!(env["myservice.tenant"], "acme");
    assert_eq!(env["SCRIPT_NAME"], "/legacy");
    assert_eq!(env["PATH_INFO"], "/whoami");
    let ours = u64::from(std::process::id());
    match mode {
        Mode::InProcess => assert_eq!(env["pid"], ours),
        Mode::WorkerProcess => assert_ne!(env["pid"], ours, "the app ran in a worker process"),
    }
    // A request the middleware does not vouch for carries none of it.
    let anonymous = ask(&server, Request::get("/legacy/whoami"));
    for key in ["REMOTE_USER", "AUTH_TYPE", "myservice.tenant"] {
        assert!(anonymous.get(key).is_none(), "{key}: {anonymous}");
    }
}

fn a_remote_user_header_from_the_client_never_becomes_remote_user(host: Host, mode: Mode) {
    let server = start(host, mode);
    let forged = ask(
        &server,
        Request::get("/legacy/").header("Remote-User", "mallory"),
    );
    assert!(forged.get("REMOTE_USER").is_none(), "{forged}");
    assert_eq!(
        forged["HTTP_REMOTE_USER"], "mallory",
        "a header stays HTTP_*"
    );
    let both = ask(
        &server,
        Request::get("/legacy/")
            .header("Remote-User", "mallory")
            .header("Authorization", "Bearer alice"),
    );
    assert_eq!(both["REMOTE_USER"], "alice", "{both}");
}

fn a_utf8_user_name_arrives_as_pep_3333_bytes(host: Host, mode: Mode) {
    let server = start(host, mode);
    let env = ask(
        &server,
        Request::get("/legacy/").header("Authorization", "Bearer Łukasz"),
    );
    assert_eq!(env["remote_user_utf8"], "Łukasz", "{env}");
    // As a native string: one code point per byte.
    let latin1: String = "Łukasz".bytes().map(char::from).collect();
    assert_eq!(env["REMOTE_USER"], latin1.as_str());
}

type Case = fn(Host, Mode);

const CASES: [(&str, Case); 3] = [
    (
        "a_middleware_sets_remote_user_auth_type_and_a_key_of_its_own",
        a_middleware_sets_remote_user_auth_type_and_a_key_of_its_own,
    ),
    (
        "a_remote_user_header_from_the_client_never_becomes_remote_user",
        a_remote_user_header_from_the_client_never_becomes_remote_user,
    ),
    (
        "a_utf8_user_name_arrives_as_pep_3333_bytes",
        a_utf8_user_name_arrives_as_pep_3333_bytes,
    ),
];

fn main() {
    wsgi_core::run_if_worker();
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    let mut ran = 0;
    for mode in [Mode::InProcess, Mode::WorkerProcess] {
        for host in [Host::Axum, Host::Actix] {
            for (name, case) in CASES {
                let full = format!("{mode:?}::{host:?}::{name}");
                if !filters.is_empty() && !filters.iter().any(|f| full.contains(f.as_str())) {
                    continue;
                }
                ran += 1;
                match catch_unwind(AssertUnwindSafe(|| case(host, mode))) {
                    Ok(()) => println!("test {full} ... ok"),
                    Err(_) => {
                        println!("test {full} ... FAILED");
                        failed.push(full);
                    }
                }
            }
        }
    }
    println!("\n{ran} cases, {} failed", failed.len());
    if !failed.is_empty() {
        for name in &failed {
            println!("    {name}");
        }
        std::process::exit(1);
    }
}
