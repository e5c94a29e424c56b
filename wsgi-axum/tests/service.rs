//! `WsgiService` behind a real axum server, spoken to over TCP.

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::get as get_route;
use common::{DEADLINE, engine, find, get, send_on, send_raw, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsgi_axum::WsgiService;

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<WsgiService>();
    // axum needs futures to be Send only; the engine's holds a request-body stream, not Sync.
    assert_send::<wsgi_axum::ResponseFuture>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nest_service_sets_script_name_from_the_nested_path() {
    let addr = serve(Router::new().nest_service("/py", WsgiService::new(engine()))).await;

    let root = get(addr, "/py").await;
    assert_eq!(root.status, 200, "{root:?}");
    let env = root.environ();
    assert_eq!(env["SCRIPT_NAME"], "/py");
    assert_eq!(env["PATH_INFO"], "");

    let slash = get(addr, "/py/").await.environ();
    assert_eq!(
        (slash["SCRIPT_NAME"].as_str(), slash["PATH_INFO"].as_str()),
        ("/py", "/")
    );

    let deep = get(addr, "/py/a/b%20c?x=1&y").await.environ();
    assert_eq!(deep["SCRIPT_NAME"], "/py");
    assert_eq!(deep["PATH_INFO"], "/a/b c");
    assert_eq!(deep["QUERY_STRING"], "x=1&y");
    assert_eq!(
        deep["REQUEST_URI"], "/py/a/b%20c?x=1&y",
        "REQUEST_URI must be the client's, not the router's stripped one"
    );

    let outside = get(addr, "/pyx").await;
    assert_eq!(outside.status, 404, "/pyx is not under /py: {outside:?}");
    assert!(
        !outside.environ().contains_key("SCRIPT_NAME"),
        "the app must not see /pyx"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nest_service_under_a_path_parameter_mounts_the_text_the_client_sent() {
    let inner = Router::new().nest_service("/{version}", WsgiService::new(engine()));
    let addr = serve(Router::new().nest("/api", inner)).await;

    let env = get(addr, "/api/v2/users?all").await.environ();
    assert_eq!(env["SCRIPT_NAME"], "/api/v2");
    assert_eq!(env["PATH_INFO"], "/users");
    assert_eq!(env["REQUEST_URI"], "/api/v2/users?all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_service_leaves_the_whole_path_to_the_app() {
    let addr = serve(Router::new().route_service("/r/{*rest}", WsgiService::new(engine()))).await;

    let env = get(addr, "/r/x/y").await.environ();
    assert_eq!(env["SCRIPT_NAME"], "");
    assert_eq!(env["PATH_INFO"], "/r/x/y");
    assert_eq!(get(addr, "/elsewhere").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_service_answers_what_rust_routes_do_not() {
    let router = Router::new()
        .route("/rust", get_route(|| async { "from rust" }))
        .fallback_service(WsgiService::new(engine()));
    let addr = serve(router).await;

    let rust = get(addr, "/rust").await;
    assert_eq!(
        (rust.status, rust.body.as_slice()),
        (200, b"from rust".as_slice())
    );

    let env = get(addr, "/anything/else").await.environ();
    assert_eq!(env["SCRIPT_NAME"], "");
    assert_eq!(env["PATH_INFO"], "/anything/else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_mount_with_fallback_service_lets_the_engine_answer_404_outside_it() {
    let router = Router::new()
        .route("/rust", get_route(|| async { "from rust" }))
        .fallback_service(WsgiService::new(engine()).mount("/app/"));
    let addr = serve(router).await;

    let env = get(addr, "/app/page").await.environ();
    assert_eq!(
        (env["SCRIPT_NAME"].as_str(), env["PATH_INFO"].as_str()),
        ("/app", "/page")
    );
    let bare = get(addr, "/app").await.environ();
    assert_eq!(
        (bare["SCRIPT_NAME"].as_str(), bare["PATH_INFO"].as_str()),
        ("/app", "")
    );

    assert_eq!(get(addr, "/apple").await.status, 404);
    assert_eq!(get(addr, "/").await.status, 404);
    assert_eq!(get(addr, "/rust").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_info_becomes_remote_addr_and_port() {
    let addr = serve(Router::new().fallback_service(WsgiService::new(engine()))).await;

    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let client = stream.local_addr().expect("client addr");
    let reply = send_on(
        &mut stream,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let env = reply.environ();
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["REMOTE_PORT"], client.port().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_addr_names_the_server_when_the_request_has_no_host() {
    let listener = common::bind().await;
    let local = listener.local_addr().expect("local addr");
    let service = WsgiService::new(engine()).local_addr(local);
    let addr = common::serve_on(listener, Router::new().fallback_service(service));

    let env = send_raw(addr, b"GET / HTTP/1.0\r\n\r\n").await.environ();
    assert_eq!(env["SERVER_NAME"], "127.0.0.1");
    assert_eq!(env["SERVER_PORT"], local.port().to_string());
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways() {
    let addr = serve(Router::new().nest_service("/py", WsgiService::new(engine()))).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            b"POST /py/echo?echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
              Connection: close\r\n\r\n6\r\nhello\n\r\n",
        )
        .await
        .expect("write head and first chunk");

    // The second line is sent only once the answer to the first has arrived: a server that
    // collected the request body, or buffered the response, would hang here.
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 1024];
        while find(&seen, b"HELLO\n").is_none() {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "connection closed early: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first line was not echoed before the request body ended");

    stream
        .write_all(b"6\r\nworld\n\r\n0\r\n\r\n")
        .await
        .expect("write rest");
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut seen))
        .await
        .expect("reply did not end")
        .expect("read");
    let reply = common::parse(&seen);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("transfer-encoding"),
        Some("chunked"),
        "a response of unknown length streams"
    );
    assert_eq!(String::from_utf8_lossy(&reply.body), "HELLO\nWORLD\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_exception_is_a_500_response_not_a_service_error() {
    let addr = serve(Router::new().nest_service("/py", WsgiService::new(engine()))).await;

    let reply = get(addr, "/py/x?boom").await;
    assert_eq!(reply.status, 500, "{reply:?}");
    // The server keeps serving after it.
    let again = tokio::time::timeout(Duration::from_secs(5), get(addr, "/py/x")).await;
    assert_eq!(again.expect("server still answers").status, 200);
}
