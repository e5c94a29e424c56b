//! The behaviours both adapters must share, checked with one test body on each host (axum
//! and actix-web), with the app at the root and mounted under `/py`. The app is
//! `tests/apps/adapter_probe.py`, standard library only.

mod common;

use std::sync::OnceLock;

use common::{Site, host_cases, sha256_hex};
use test_support::gate::{Gate, Record};
use test_support::h2::h2_request;
use test_support::rng::noise;
use test_support::wire::{Chunk, Conn, Framing, Request, contains, send};
use wsgi_core::Engine;

fn probe() -> Option<Engine> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    // Chunked bodies stream as the app reads, rather than arriving whole first (the default,
    // tested through `serve` in uploads.rs): these tests are about what each host does with
    // a body while the app runs.
    let engine = ENGINE
        .get_or_init(|| common::load("adapter_probe.py", |b| b.threads(4).stream_chunked(true)));
    Some(engine.clone())
}

host_cases!(probe, "/py";
    environ_names_the_mount_the_client_and_the_protocol,
    paths_outside_the_mount_never_reach_the_app,
    the_request_body_streams_into_wsgi_input,
    a_large_body_arrives_whole_in_many_reads,
    the_response_streams_as_the_app_yields,
    a_large_streamed_response_arrives_whole,
    a_client_that_goes_away_gets_the_iterable_closed,
    an_unread_request_body_is_never_taken_for_the_next_request,
    expect_100_continue_is_answered_before_the_body_is_sent,
    head_gets_the_headers_of_get_without_a_body,
    http_1_0_gets_no_chunked_encoding,
    keep_alive_connections_serve_one_request_after_another,
    an_app_exception_is_a_500_and_the_server_carries_on,
    h2c_with_prior_knowledge_is_http_2_end_to_end,
);

fn environ_names_the_mount_the_client_and_the_protocol(site: &Site) {
    let mut conn = site.open(Request::get("/some/where%20else?x=1&y=%C3%A9"));
    let client = conn.local_addr();
    let response = conn.read_response("GET");
    let env = response.expect(200, "application/json").json();
    assert_eq!(env["REQUEST_METHOD"], "GET");
    assert_eq!(env["SCRIPT_NAME"], site.mount);
    assert_eq!(env["PATH_INFO"], "/some/where else");
    assert_eq!(env["QUERY_STRING"], "x=1&y=%C3%A9");
    assert_eq!(
        env["REQUEST_URI"],
        site.url("/some/where%20else?x=1&y=%C3%A9"),
        "REQUEST_URI is the client's, not a router's stripped one"
    );
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["REMOTE_PORT"], client.port().to_string());
    let addr = site.server.addr;
    assert_eq!(env["HTTP_HOST"], addr.to_string());
    assert_eq!(env["SERVER_NAME"], "127.0.0.1");
    assert_eq!(env["SERVER_PORT"], addr.port().to_string());
    assert_eq!(env["wsgi.url_scheme"], "http");

    // The mount itself, with and without its slash: the app's root either way.
    let slash = site.get("/").json();
    assert_eq!(
        (slash["SCRIPT_NAME"].as_str(), slash["PATH_INFO"].as_str()),
        (Some(site.mount), Some("/"))
    );
    if !site.mount.is_empty() {
        let bare = site.get("").json();
        assert_eq!(
            (bare["SCRIPT_NAME"].as_str(), bare["PATH_INFO"].as_str()),
            (Some(site.mount), Some(""))
        );
    }
}

fn paths_outside_the_mount_never_reach_the_app(site: &Site) {
    let addr = site.server.addr;
    for outside in ["/elsewhere", "/pyx/environ"] {
        let response = send(addr, &Request::get(outside));
        if site.mount.is_empty() {
            // At the root, the app owns every path.
            let env = response.expect(200, "application/json").json();
            assert_eq!(env["PATH_INFO"], outside);
        } else {
            assert_eq!(response.status, 404, "{outside}: {response:?}");
            assert!(
                !contains(&response.body, "PATH_INFO"),
                "{outside} reached the app: {}",
                response.text()
            );
        }
    }
}

fn the_request_body_streams_into_wsgi_input(site: &Site) {
    let mut conn =
        site.open(Request::post("/echo", "text/plain", "").header("Transfer-Encoding", "chunked"));
    // The chunks go out by hand, the second only after the first has been answered.
    conn.send(b"6\r\nhello\n\r\n");
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("transfer-encoding"),
        Some("chunked"),
        "a response of unknown length streams chunked: {head:?}"
    );
    // A host that collected the request body before calling the app would hang here.
    let first = conn.read_chunked_until(b"HELLO\n");
    conn.send(b"6\r\nworld\n\r\n0\r\n\r\n");
    let mut body = first;
    body.extend_from_slice(&conn.read_chunked_to_end());
    assert_eq!(String::from_utf8_lossy(&body), "HELLO\nWORLD\n");
}

fn a_large_body_arrives_whole_in_many_reads(site: &Site) {
    let data = noise(5 * 1024 * 1024 + 123, 7);
    let expected = sha256_hex(&data);
    for request in [
        Request::post("/digest", "application/octet-stream", data.clone()),
        Request::post("/digest", "application/octet-stream", data.clone()).chunked(100_000),
    ] {
        let chunked = request.chunked.is_some();
        let response = site.send(request);
        let digest = response.expect(200, "application/json").json();
        assert_eq!(digest["length"], data.len(), "chunked: {chunked}");
        assert_eq!(digest["sha256"], expected.as_str(), "chunked: {chunked}");
        assert!(
            digest["reads"].as_u64().unwrap_or(0) > 100,
            "the app read in 16 KiB pieces: {digest}"
        );
    }
}

fn the_response_streams_as_the_app_yields(site: &Site) {
    let gate = Gate::new();
    let mut conn = site.open(Request::get(&format!("/stream?{}", gate.query())));
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("transfer-encoding"),
        Some("chunked"),
        "{head:?}"
    );
    // The app yields "second" only after the gate opens, which happens only after the
    // client has seen "first": a buffering host fails here on the read deadline.
    let mut body = conn.read_chunked_until(b"first\n");
    gate.open();
    body.extend_from_slice(&conn.read_chunked_to_end());
    assert_eq!(String::from_utf8_lossy(&body), "first\nsecond\n");
}

fn a_large_streamed_response_arrives_whole(site: &Site) {
    let size = 8 * 1024 * 1024 + 3;
    let response = site.get(&format!("/pattern?size={size}"));
    response.expect(200, "application/octet-stream");
    assert_eq!(response.framing, Framing::Chunked);
    assert_eq!(response.body.len(), size);
    let wrong = response
        .body
        .iter()
        .enumerate()
        .position(|(i, &b)| usize::from(b) != i % 251);
    assert_eq!(wrong, None, "the first byte that differs");
}

fn a_client_that_goes_away_gets_the_iterable_closed(site: &Site) {
    let gate = Gate::new();
    let record = Record::new();
    let mut conn = site.open(Request::get(&format!(
        "/stream?{}&{}",
        gate.query(),
        record.query()
    )));
    assert_eq!(conn.read_head().status, 200);
    conn.read_chunked_until(b"first\n");
    drop(conn);
    // The app finds out when its next chunk cannot be delivered; the server must then
    // call its close(), as PEP 3333 asks on every path.
    gate.open();
    record.wait_for("closed");
}

fn an_unread_request_body_is_never_taken_for_the_next_request(site: &Site) {
    let addr = site.server.addr;
    let mut conn = Conn::connect(addr);
    // /fixed never reads wsgi.input. Both hosts then close the connection after the
    // response (hyper and actix-web drain only what they have already buffered) rather
    // than skip the body; either is safe, reading the body as a request is not.
    conn.send(
        &Request::post(
            &site.url("/fixed"),
            "application/octet-stream",
            noise(256 * 1024, 5),
        )
        .header("Connection", "keep-alive")
        .to_bytes(addr),
    );
    let first = conn.read_response("POST");
    assert_eq!(
        (first.status, first.text().as_str()),
        (200, "fixed length\n")
    );
    if conn
        .try_send(&Request::get(&site.url("/fixed")).to_bytes(addr))
        .is_err()
        || conn.closed()
    {
        return;
    }
    let second = conn.read_response("GET");
    assert_eq!(
        (second.status, second.text().as_str()),
        (200, "fixed length\n"),
        "the unread body was taken for the next request"
    );
}

fn expect_100_continue_is_answered_before_the_body_is_sent(site: &Site) {
    let addr = site.server.addr;
    let mut conn = Conn::connect(addr);
    conn.send(
        format!(
            "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 5\r\n\
             Expect: 100-continue\r\nConnection: close\r\n\r\n",
            site.url("/digest")
        )
        .as_bytes(),
    );
    // The client holds the body back until it hears 100 Continue.
    assert_eq!(conn.read_head().status, 100);
    conn.send(b"hello");
    let digest = conn.read_response("POST");
    let digest = digest.expect(200, "application/json").json();
    assert_eq!(digest["length"], 5);
    assert_eq!(digest["sha256"], sha256_hex(b"hello").as_str());
}

fn head_gets_the_headers_of_get_without_a_body(site: &Site) {
    let get = site.get("/fixed");
    get.expect(200, "text/plain");
    assert_eq!(get.body, b"fixed length\n");
    assert_eq!(get.framing, Framing::Length(13));

    let mut conn = site.open(Request::head("/fixed"));
    let head = conn.read_response("HEAD");
    head.expect(200, "text/plain");
    assert_eq!(head.header("content-length"), Some("13"), "{head:?}");
    assert_eq!(head.header("x-probe"), Some("fixed"));
    assert_eq!(
        conn.next_until_close(),
        Chunk::End,
        "no body bytes may follow a HEAD response"
    );

    // Nor a streamed one, whose length nobody knows.
    let mut conn = site.open(Request::head("/pattern?size=100000"));
    let head = conn.read_response("HEAD");
    head.expect(200, "application/octet-stream");
    assert_eq!(conn.next_until_close(), Chunk::End, "{head:?}");
}

fn http_1_0_gets_no_chunked_encoding(site: &Site) {
    let env = site
        .send(Request::get("/environ").version("HTTP/1.0"))
        .json();
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/1.0");

    let gate = Gate::new();
    // Opened up front: this test is about framing, not timing.
    gate.open();
    let response =
        site.send(Request::get(&format!("/stream?{}", gate.query())).version("HTTP/1.0"));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("transfer-encoding"),
        None,
        "HTTP/1.0 has no chunked encoding: {response:?}"
    );
    assert_eq!(response.framing, Framing::Close, "{response:?}");
    assert_eq!(response.text(), "first\nsecond\n");
}

fn keep_alive_connections_serve_one_request_after_another(site: &Site) {
    let addr = site.server.addr;
    let mut conn = Conn::connect(addr);
    conn.send(
        &Request::get(&site.url("/fixed"))
            .header("Connection", "keep-alive")
            .to_bytes(addr),
    );
    let first = conn.read_response("GET");
    assert_eq!(
        (first.status, first.body.as_slice()),
        (200, b"fixed length\n".as_slice())
    );
    conn.send(&Request::post(&site.url("/digest"), "text/plain", "abc").to_bytes(addr));
    let second = conn.read_response("POST");
    let digest = second.expect(200, "application/json").json();
    assert_eq!(digest["length"], 3);
    assert_eq!(digest["sha256"], sha256_hex(b"abc").as_str());
}

fn an_app_exception_is_a_500_and_the_server_carries_on(site: &Site) {
    let failed = site.get("/boom");
    assert_eq!(failed.status, 500, "{failed:?}");
    failed.assert_length_matches();
    assert!(
        !contains(&failed.body, "Traceback"),
        "tracebacks go to the log, not to the client: {}",
        failed.text()
    );
    let after = site.get("/fixed");
    assert_eq!(
        (after.status, after.text().as_str()),
        (200, "fixed length\n")
    );
}

fn h2c_with_prior_knowledge_is_http_2_end_to_end(site: &Site) {
    let addr = site.server.addr;
    let response = h2_request(addr, &site.url("/h2/path?q=1"), None, None);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.version, hyper::Version::HTTP_2);
    let env: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/2");
    assert_eq!(env["SCRIPT_NAME"], site.mount);
    assert_eq!(env["PATH_INFO"], "/h2/path");
    assert_eq!(env["QUERY_STRING"], "q=1");
    assert_eq!(env["REQUEST_URI"], site.url("/h2/path?q=1"));
    assert_eq!(env["HTTP_HOST"], addr.to_string(), "from :authority");
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");

    // Streaming both ways holds over HTTP/2 too.
    let gate = Gate::new();
    let streamed = h2_request(
        addr,
        &site.url(&format!("/stream?{}", gate.query())),
        None,
        Some((&gate, b"first\n")),
    );
    assert_eq!(String::from_utf8_lossy(&streamed.body), "first\nsecond\n");

    let data = noise(300_000, 3);
    let digest = h2_request(addr, &site.url("/digest"), Some(data.clone()), None);
    let digest: serde_json::Value = serde_json::from_slice(&digest.body).expect("JSON");
    assert_eq!(digest["length"], data.len());
    assert_eq!(digest["sha256"], sha256_hex(&data).as_str());
}
