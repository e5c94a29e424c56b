//! `WsgiService` behind a real axum server, spoken to over TCP with `test_support`'s raw
//! client, so the tests see what a client would see on the wire.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Router;
use axum::routing::get as get_route;
use test_support::hosts::{Server, serve_axum};
use test_support::wire::{Conn, Response};
use wsgi_axum::{Engine, WsgiService};

/// One engine per test binary: the interpreter is process-wide anyway, and loading the app
/// once keeps the tests fast.
fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let app = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/app.py");
            // Chunked bodies stream as the app reads (not received whole first, the
            // default): these tests are about the host moving bodies while the app runs.
            Engine::builder(app)
                .threads(2)
                .stream_chunked(true)
                .build()
                .unwrap_or_else(|e| panic!("loading {app}: {e}"))
        })
        .clone()
}

/// Serves `router` on a fresh port of 127.0.0.1.
fn serve(router: Router) -> Server {
    serve_axum(|_| router)
}

/// `GET target` on a fresh connection.
fn get(addr: SocketAddr, target: &str) -> Response {
    test_support::wire::get(addr, target)
}

/// The `KEY=value` lines the test app reports.
fn environ(response: &Response) -> HashMap<String, String> {
    test_support::key_values(&response.text())
}

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<WsgiService>();
    // axum needs futures to be Send only; the engine's holds a request-body stream, not Sync.
    assert_send::<wsgi_axum::ResponseFuture>();
}

#[test]
fn nest_service_sets_script_name_from_the_nested_path() {
    let server = serve(Router::new().nest_service("/py", WsgiService::new(engine())));
    let addr = server.addr;

    let root = get(addr, "/py");
    assert_eq!(root.status, 200, "{root:?}");
    let env = environ(&root);
    assert_eq!(env["SCRIPT_NAME"], "/py");
    assert_eq!(env["PATH_INFO"], "");

    let slash = environ(&get(addr, "/py/"));
    assert_eq!(
        (slash["SCRIPT_NAME"].as_str(), slash["PATH_INFO"].as_str()),
        ("/py", "/")
    );

    let deep = environ(&get(addr, "/py/a/b%20c?x=1&y"));
    assert_eq!(deep["SCRIPT_NAME"], "/py");
    assert_eq!(deep["PATH_INFO"], "/a/b c");
    assert_eq!(deep["QUERY_STRING"], "x=1&y");
    assert_eq!(
        deep["REQUEST_URI"], "/py/a/b%20c?x=1&y",
        "REQUEST_URI must be the client's, not the router's stripped one"
    );

    let outside = get(addr, "/pyx");
    assert_eq!(outside.status, 404, "/pyx is not under /py: {outside:?}");
    assert!(
        !environ(&outside).contains_key("SCRIPT_NAME"),
        "the app must not see /pyx"
    );
}

#[test]
fn nest_service_under_a_path_parameter_mounts_the_text_the_client_sent() {
    let inner = Router::new().nest_service("/{version}", WsgiService::new(engine()));
    let server = serve(Router::new().nest("/api", inner));
    let addr = server.addr;

    let env = environ(&get(addr, "/api/v2/users?all"));
    assert_eq!(env["SCRIPT_NAME"], "/api/v2");
    assert_eq!(env["PATH_INFO"], "/users");
    assert_eq!(env["REQUEST_URI"], "/api/v2/users?all");
}

#[test]
fn route_service_leaves_the_whole_path_to_the_app() {
    let server = serve(Router::new().route_service("/r/{*rest}", WsgiService::new(engine())));
    let addr = server.addr;

    let env = environ(&get(addr, "/r/x/y"));
    assert_eq!(env["SCRIPT_NAME"], "");
    assert_eq!(env["PATH_INFO"], "/r/x/y");
    assert_eq!(get(addr, "/elsewhere").status, 404);
}

#[test]
fn fallback_service_answers_what_rust_routes_do_not() {
    let router = Router::new()
        .route("/rust", get_route(|| async { "from rust" }))
        .fallback_service(WsgiService::new(engine()));
    let server = serve(router);
    let addr = server.addr;

    let rust = get(addr, "/rust");
    assert_eq!(
        (rust.status, rust.body.as_slice()),
        (200, b"from rust".as_slice())
    );

    let env = environ(&get(addr, "/anything/else"));
    assert_eq!(env["SCRIPT_NAME"], "");
    assert_eq!(env["PATH_INFO"], "/anything/else");
}

#[test]
fn explicit_mount_with_fallback_service_lets_the_engine_answer_404_outside_it() {
    let router = Router::new()
        .route("/rust", get_route(|| async { "from rust" }))
        .fallback_service(WsgiService::new(engine()).mount("/app/"));
    let server = serve(router);
    let addr = server.addr;

    let env = environ(&get(addr, "/app/page"));
    assert_eq!(
        (env["SCRIPT_NAME"].as_str(), env["PATH_INFO"].as_str()),
        ("/app", "/page")
    );
    let bare = environ(&get(addr, "/app"));
    assert_eq!(
        (bare["SCRIPT_NAME"].as_str(), bare["PATH_INFO"].as_str()),
        ("/app", "")
    );

    assert_eq!(get(addr, "/apple").status, 404);
    assert_eq!(get(addr, "/").status, 404);
    assert_eq!(get(addr, "/rust").status, 200);
}

#[test]
fn connect_info_becomes_remote_addr_and_port() {
    let server = serve(Router::new().fallback_service(WsgiService::new(engine())));

    let mut conn = Conn::connect(server.addr);
    let client = conn.local_addr();
    conn.send(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let env = environ(&conn.read_response("GET"));
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["REMOTE_PORT"], client.port().to_string());
}

#[test]
fn local_addr_names_the_server_when_the_request_has_no_host() {
    let server = serve_axum(|local| {
        let service = WsgiService::new(engine()).local_addr(local);
        Router::new().fallback_service(service)
    });
    let local = server.addr;

    let mut conn = Conn::connect(local);
    conn.send(b"GET / HTTP/1.0\r\n\r\n");
    let env = environ(&conn.read_response("GET"));
    assert_eq!(env["SERVER_NAME"], "127.0.0.1");
    assert_eq!(env["SERVER_PORT"], local.port().to_string());
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/1.0");
}

#[test]
fn bodies_stream_both_ways() {
    let server = serve(Router::new().nest_service("/py", WsgiService::new(engine())));
    let mut conn = Conn::connect(server.addr);
    conn.send(
        b"POST /py/echo?echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n6\r\nhello\n\r\n",
    );
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("transfer-encoding"),
        Some("chunked"),
        "a response of unknown length streams"
    );

    // The second line is sent only once the answer to the first has arrived: a server that
    // collected the request body, or buffered the response, would hang here (and fail the
    // read's deadline).
    let mut body = conn.read_chunked_until(b"HELLO\n");
    conn.send(b"6\r\nworld\n\r\n0\r\n\r\n");
    body.extend_from_slice(&conn.read_chunked_to_end());
    assert_eq!(String::from_utf8_lossy(&body), "HELLO\nWORLD\n");
}

#[test]
fn an_app_exception_is_a_500_response_not_a_service_error() {
    let server = serve(Router::new().nest_service("/py", WsgiService::new(engine())));
    let addr = server.addr;

    let reply = get(addr, "/py/x?boom");
    assert_eq!(reply.status, 500, "{reply:?}");
    // The server keeps serving after it.
    assert_eq!(get(addr, "/py/x").status, 200, "the server still answers");
}
