//! Where `WsgiApp` sits in an actix-web `App` decides `SCRIPT_NAME` and `PATH_INFO`: at the
//! top level, inside (possibly dynamic) scopes, or as the default service. Spoken to over
//! TCP, as a client would, with `test_support`'s raw client.
//!
//! The behaviours both adapters share are tested against axum and actix-web alike in
//! `examples/tests/`; these are the ones only actix-web's routing has.

use std::collections::HashMap;
use std::sync::OnceLock;

use actix_web::web;
use test_support::hosts::{Server, serve_actix};
use test_support::wire::{Conn, get as get_response};
use wsgi_actix::WsgiApp;
use wsgi_core::Engine;

fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let app = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/environ_app.py");
            Engine::builder(app)
                .threads(2)
                .build()
                .unwrap_or_else(|e| panic!("loading {app}: {e}"))
        })
        .clone()
}

/// `GET target`; the status and the `KEY=value` lines of the body.
fn get(server: &Server, target: &str) -> (u16, HashMap<String, String>) {
    let response = get_response(server.addr, target);
    (response.status, test_support::key_values(&response.text()))
}

/// `SCRIPT_NAME` and `PATH_INFO` for `target`, which the app must answer.
fn split(server: &Server, target: &str) -> (String, String) {
    let (status, env) = get(server, target);
    assert_eq!(status, 200, "{target}: {env:?}");
    (env["SCRIPT_NAME"].clone(), env["PATH_INFO"].clone())
}

fn pair(script_name: &str, path_info: &str) -> (String, String) {
    (script_name.to_owned(), path_info.to_owned())
}

#[test]
fn a_top_level_mount_is_script_name_on_a_segment_boundary() {
    let engine = engine();
    let server = serve_actix(move |config| {
        config.service(WsgiApp::new("/py/", engine.clone()));
    });
    assert_eq!(split(&server, "/py"), pair("/py", ""));
    assert_eq!(split(&server, "/py/"), pair("/py", "/"));
    assert_eq!(split(&server, "/py/a/b%20c?x=1"), pair("/py", "/a/b c"));
    let (_, env) = get(&server, "/py/a/b%20c?x=1");
    assert_eq!(env["QUERY_STRING"], "x=1");
    assert_eq!(env["REQUEST_URI"], "/py/a/b%20c?x=1");
    assert_eq!(get(&server, "/pyx").0, 404, "/pyx is not under /py");
    assert_eq!(get(&server, "/").0, 404);
}

#[test]
fn scopes_add_their_path_to_script_name() {
    let engine = engine();
    let server = serve_actix(move |config| {
        config
            .service(web::scope("/api").service(WsgiApp::new("/v1", engine.clone())))
            .service(web::scope("/t/{tenant}").service(WsgiApp::new("/app", engine.clone())));
    });
    assert_eq!(split(&server, "/api/v1/users"), pair("/api/v1", "/users"));
    assert_eq!(split(&server, "/api/v1"), pair("/api/v1", ""));
    // A dynamic segment is part of the mount as the client spelled it.
    assert_eq!(
        split(&server, "/t/acme/app/page"),
        pair("/t/acme/app", "/page")
    );
    assert_eq!(get(&server, "/api/v2/users").0, 404);
}

#[test]
fn an_empty_mount_inside_a_scope_gives_the_app_the_rest_of_the_path() {
    let engine = engine();
    let server = serve_actix(move |config| {
        config.service(web::scope("/legacy").service(WsgiApp::new("", engine.clone())));
    });
    assert_eq!(split(&server, "/legacy/a"), pair("/legacy", "/a"));
    assert_eq!(split(&server, "/legacy"), pair("/legacy", ""));
}

#[test]
fn the_default_service_takes_what_the_rust_routes_do_not() {
    let engine = engine();
    let server = serve_actix(move |config| {
        config
            .route("/rust", web::get().to(|| async { "from rust" }))
            .default_service(WsgiApp::new("", engine.clone()));
    });
    let rust = get_response(server.addr, "/rust");
    assert_eq!(rust.text(), "from rust", "{rust:?}");

    assert_eq!(split(&server, "/anything/else"), pair("", "/anything/else"));
    assert_eq!(split(&server, "/"), pair("", "/"));
}

#[test]
fn http_1_0_requests_say_so() {
    let engine = engine();
    let server = serve_actix(move |config| {
        config.default_service(WsgiApp::new("", engine.clone()));
    });
    let mut conn = Conn::connect(server.addr);
    conn.send(b"GET /x HTTP/1.0\r\n\r\n");
    let reply = conn.read_response("GET");
    assert!(
        reply.text().contains("SERVER_PROTOCOL=HTTP/1.0\n"),
        "{reply:?}"
    );
}
