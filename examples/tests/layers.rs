//! Middleware an axum or actix-web team puts in front of the legacy app, over real sockets:
//! tower-http's compression, tracing, timeout, request-id, CORS and static files around
//! `WsgiService`, actix-web's `Compress` and `Logger` around `WsgiApp`. What each does to a
//! streamed WSGI body is what the tests check. The app is `tests/apps/layers_app.py`.

mod common;

use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, header};
use test_support::gate::{Gate, Record};
use test_support::hosts::{self, serve_actix, serve_axum};
use test_support::wire::{Chunk, Conn, Request, Response, send};
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use wsgi_axum::WsgiService;
use wsgi_core::Engine;

fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    // The log is read by the tests of tracing and of actix-web's Logger.
    test_support::logs::captured();
    ENGINE
        .get_or_init(|| common::load("layers_app.py", |b| b.threads(4)))
        .clone()
}

/// The app under `/py` of an axum router, with `layer` around the router.
fn axum_with<L>(layer: L) -> hosts::Server
where
    // What `Router::layer` asks of a layer.
    L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
    L::Service: tower::Service<axum::extract::Request> + Clone + Send + Sync + 'static,
    <L::Service as tower::Service<axum::extract::Request>>::Response:
        axum::response::IntoResponse + 'static,
    <L::Service as tower::Service<axum::extract::Request>>::Error:
        Into<std::convert::Infallible> + 'static,
    <L::Service as tower::Service<axum::extract::Request>>::Future: Send + 'static,
{
    let engine = engine();
    serve_axum(move |addr| {
        Router::new()
            .nest_service("/py", WsgiService::new(engine).local_addr(addr))
            .layer(layer)
    })
}

/// `size` bytes of `i % 251`, what `/pattern` yields.
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// A decoder of a body in a content coding, fed as the body arrives.
enum Decoder {
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    Br(Box<brotli::DecompressorWriter<Vec<u8>>>),
}

impl Decoder {
    fn new(coding: &str) -> Decoder {
        match coding {
            "gzip" => Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new()))),
            "br" => Decoder::Br(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096))),
            other => panic!("no decoder for {other}"),
        }
    }

    /// Takes `data` and decodes all it can.
    fn feed(&mut self, data: &[u8]) {
        match self {
            Decoder::Gzip(d) => d.write_all(data).and_then(|()| d.flush()),
            Decoder::Br(d) => d.write_all(data).and_then(|()| d.flush()),
        }
        .expect("a well-formed compressed body");
    }

    /// What it has decoded so far.
    fn decoded(&self) -> &[u8] {
        match self {
            Decoder::Gzip(d) => d.get_ref(),
            Decoder::Br(d) => d.get_ref(),
        }
    }
}

/// `/stream` asked for in `coding`: the head says so, the first line decodes before the app
/// has made the second (it waits for a gate only the client opens), and the whole body
/// decodes to the app's bytes.
fn assert_streams_compressed(server: &hosts::Server, coding: &str) {
    let gate = Gate::new();
    let record = Record::new();
    let mut conn = Conn::connect(server.addr);
    let request = Request::get(&format!("/py/stream?{}&{}", gate.query(), record.query()))
        .header("Accept-Encoding", coding);
    conn.send(&request.to_bytes(server.addr));
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-encoding"), Some(coding), "{head:?}");
    assert_eq!(
        head.header("transfer-encoding"),
        Some("chunked"),
        "{head:?}"
    );
    let mut decoder = Decoder::new(coding);
    // A layer that buffered the body would never show "first" here: the test fails on the
    // read deadline instead.
    while !decoder.decoded().ends_with(b"first\n") {
        match conn.next_chunk() {
            Chunk::Data(data) => decoder.feed(&data),
            other => panic!("the body ended before its first line: {other:?}"),
        }
    }
    gate.open();
    loop {
        match conn.next_chunk() {
            Chunk::Data(data) => decoder.feed(&data),
            Chunk::End => break,
            Chunk::Truncated(_) => panic!("the compressed body was cut"),
        }
    }
    assert_eq!(
        String::from_utf8_lossy(decoder.decoded()),
        "first\nsecond\n"
    );
    record.wait_for("closed");
}

/// A large streamed body in `coding`, decoded whole.
fn assert_large_body_decodes(server: &hosts::Server, coding: &str) {
    let size = 3 * 1024 * 1024 + 7;
    let response = send(
        server.addr,
        &Request::get(&format!("/py/pattern?size={size}")).header("Accept-Encoding", coding),
    );
    assert_eq!(response.header("content-encoding"), Some(coding));
    assert!(
        response.body.len() < size / 10,
        "compressed: {}",
        response.body.len()
    );
    let mut body = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(&response.body[..]).read_to_end(&mut body),
        _ => brotli::Decompressor::new(&response.body[..], 4096).read_to_end(&mut body),
    }
    .unwrap();
    assert!(
        body == pattern(size),
        "the decoded body differs from the app's"
    );
}

#[test]
fn compression_layer_gzips_and_brotlis_a_streamed_body_that_still_streams() {
    let server = axum_with(CompressionLayer::new());
    for coding in ["gzip", "br"] {
        assert_streams_compressed(&server, coding);
        assert_large_body_decodes(&server, coding);
    }
    // Without Accept-Encoding the body goes as the app made it.
    let plain = send(server.addr, &Request::get("/py/pattern?size=1000"));
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, pattern(1000));
}

#[test]
fn actix_compress_gzips_and_brotlis_a_streamed_body_that_still_streams() {
    let engine = engine();
    let server = serve_actix(move |config| {
        use actix_web::{middleware::Compress, web};
        config.service(
            web::scope("")
                .wrap(Compress::default())
                .service(wsgi_actix::WsgiApp::new("/py", engine.clone())),
        );
    });
    for coding in ["gzip", "br"] {
        assert_streams_compressed(&server, coding);
        assert_large_body_decodes(&server, coding);
    }
}

/// Request ids made (or kept) by tower-http, around a `TraceLayer` that logs each request
/// at `info` with its headers, as an access log with the id.
fn traced() -> hosts::Server {
    axum_with(
        tower::ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(
                        DefaultMakeSpan::new()
                            .level(tracing::Level::INFO)
                            .include_headers(true),
                    )
                    .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
            )
            .layer(PropagateRequestIdLayer::x_request_id()),
    )
}

#[test]
fn request_id_layers_put_the_id_in_the_environ_the_response_and_the_log() {
    let server = traced();
    let response = send(server.addr, &Request::get("/py/environ"));
    let id = response.header("x-request-id").expect("an id").to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(response.json()["HTTP_X_REQUEST_ID"], id.as_str());
    test_support::logs::captured().wait_for_line_with(&[&id, "finished processing request"]);

    // A client's own id is kept, not replaced.
    let response = send(
        server.addr,
        &Request::get("/py/environ").header("X-Request-Id", "client-42"),
    );
    assert_eq!(response.header("x-request-id"), Some("client-42"));
    assert_eq!(response.json()["HTTP_X_REQUEST_ID"], "client-42");
}

#[test]
fn trace_layer_sees_the_apps_status_and_a_500_as_a_failure() {
    let server = traced();
    let response = send(
        server.addr,
        &Request::get("/py/boom").header("X-Request-Id", "boom-7"),
    );
    assert_eq!(response.status, 500);
    let line = test_support::logs::captured().wait_for_line_with(&["boom-7", "response failed"]);
    assert!(line.contains("500"), "{line}");
    // A streamed body: the response is logged when the head is out, the body streams on.
    let gate = Gate::new();
    let mut conn = Conn::connect(server.addr);
    conn.send(
        &Request::get(&format!("/py/stream?{}", gate.query()))
            .header("X-Request-Id", "stream-8")
            .to_bytes(server.addr),
    );
    assert_eq!(conn.read_head().status, 200);
    conn.read_chunked_until(b"first\n");
    test_support::logs::captured().wait_for_line_with(&[
        "stream-8",
        "finished processing request",
        "status=200",
    ]);
    gate.open();
    assert_eq!(conn.read_chunked_to_end(), b"second\n");
}

#[test]
fn timeout_layer_answers_504_and_the_app_that_answers_late_gets_close_called() {
    let server = axum_with(TimeoutLayer::with_status_code(
        StatusCode::GATEWAY_TIMEOUT,
        Duration::from_millis(300),
    ));
    let gate = Gate::new();
    let record = Record::new();
    let target = format!("/py/late?{}&{}", gate.query(), record.query());
    let response = send(server.addr, &Request::get(&target));
    assert_eq!(response.status, 504, "{response:?}");
    // The app is still waiting to start its response; when it does, nobody wants it.
    record.wait_for("called /late");
    gate.open();
    // The engine takes the first piece (a WSGI head goes out with the first body bytes),
    // finds the response gone and closes the iterable without asking for more.
    let lines = record.wait_for("closed");
    assert_eq!(lines, ["called /late", "started", "yield", "closed"]);
}

#[test]
fn timeout_layer_bounds_the_head_not_a_streamed_body() {
    let server = axum_with(TimeoutLayer::with_status_code(
        StatusCode::GATEWAY_TIMEOUT,
        Duration::from_millis(300),
    ));
    let gate = Gate::new();
    let mut conn = Conn::connect(server.addr);
    conn.send(&Request::get(&format!("/py/stream?{}", gate.query())).to_bytes(server.addr));
    assert_eq!(conn.read_head().status, 200);
    conn.read_chunked_until(b"first\n");
    std::thread::sleep(Duration::from_millis(600));
    gate.open();
    assert_eq!(conn.read_chunked_to_end(), b"second\n");
}

#[test]
fn cors_preflight_is_answered_by_rust_without_reaching_python() {
    let server = axum_with(
        CorsLayer::new()
            .allow_origin(HeaderValue::from_static("https://app.example"))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE]),
    );
    let record = Record::new();
    let target = format!("/py/environ?{}", record.query());
    let preflight = send(
        server.addr,
        &Request::new("OPTIONS", &target)
            .header("Origin", "https://app.example")
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type"),
    );
    assert_eq!(preflight.status, 200, "{preflight:?}");
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        preflight
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST")),
        "{preflight:?}"
    );
    // The real request reaches the app, and its answer carries the CORS header.
    let real = send(
        server.addr,
        &Request::get(&target).header("Origin", "https://app.example"),
    );
    assert_eq!(real.status, 200);
    assert_eq!(
        real.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(real.json()["HTTP_ORIGIN"], "https://app.example");
    assert_eq!(
        record.lines(),
        ["called /environ"],
        "only the real request reached Python"
    );
}

#[test]
fn serve_dir_answers_static_next_to_the_app() {
    let engine = engine();
    let dir = common::test_app("static");
    let server = serve_axum(move |addr| {
        Router::new()
            .nest_service("/static", ServeDir::new(&dir))
            .nest_service("/py", WsgiService::new(engine).local_addr(addr))
    });
    let css: Response = send(server.addr, &Request::get("/static/css/site.css"));
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css"));
    let on_disk = std::fs::read(common::test_app("static/css/site.css")).unwrap();
    assert_eq!(css.body, on_disk);
    assert_eq!(
        send(server.addr, &Request::get("/static/none.css")).status,
        404
    );
    let env = send(server.addr, &Request::get("/py/environ")).json();
    assert_eq!(env["SCRIPT_NAME"], "/py");
}

#[test]
fn actix_logger_logs_each_request_the_app_answered() {
    let engine = engine();
    let server = serve_actix(move |config| {
        use actix_web::{middleware::Logger, web};
        config.service(
            web::scope("")
                .wrap(Logger::new("actix-access %r %s %{X-Request-Id}i"))
                .service(wsgi_actix::WsgiApp::new("/py", engine.clone())),
        );
    });
    let response = send(
        server.addr,
        &Request::get("/py/environ").header("X-Request-Id", "actix-9"),
    );
    assert_eq!(response.status, 200);
    let line = test_support::logs::captured()
        .wait_for_line_with(&["actix-access GET /py/environ HTTP/1.1 200 actix-9"]);
    assert!(line.contains("actix_web::middleware::logger"), "{line}");
}
