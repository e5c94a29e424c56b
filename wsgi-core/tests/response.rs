//! start_response and the response body: validation, exc_info, write(), lazy
//! headers, real streaming with backpressure, Content-Length handling, aborted
//! responses, and responses that must not carry a body.

mod common;

use std::time::Duration;

use common::{TestServer, app_path, assert_no_bytes_past_the_length, request, start};
use test_support::gate::{Gate, Record};
use test_support::wire::{Chunk, Framing};

fn server() -> TestServer {
    start(&app_path("response_app.py"), |b| b, "")
}

#[test]
fn list_and_tuple_results_get_a_content_length() {
    let server = server();
    let response = server.get("/hello");
    assert_eq!(response.status, 200);
    assert_eq!(response.framing, Framing::Length(5));
    assert_eq!(response.text(), "hello");
    let response = server.get("/tuple");
    assert_eq!(response.framing, Framing::Length(4));
    assert_eq!(response.text(), "abcd");
}

#[test]
fn streaming_sends_the_first_chunk_before_the_generator_finishes() {
    let server = server();
    let gate = Gate::new();
    let mut client = server.client();
    let target = format!("/gate?{}", gate.query());
    client.send(&request("GET", &target, &[], b"").to_bytes(server.addr));
    let head = client.read_head();
    assert_eq!(head.status, 200);
    // The generator does not go on until the gate opens, which happens only
    // after this client has seen the first chunk.
    assert_eq!(
        client.next_chunk(),
        Chunk::Data(b"first".to_vec()),
        "the first chunk did not arrive while the generator was still running"
    );
    gate.open();
    assert_eq!(client.next_chunk(), Chunk::Data(b"second".to_vec()));
    assert_eq!(client.next_chunk(), Chunk::End);
}

#[test]
fn write_output_goes_out_before_the_iterable() {
    let server = server();
    let response = server.get("/write");
    assert_eq!(response.status, 200);
    assert!(response.complete);
    assert_eq!(response.text(), "from-write;again;from-iter");
}

#[test]
fn exc_info_before_headers_are_sent_replaces_status_and_headers() {
    let server = server();
    let response = server.get("/exc_info_before");
    assert_eq!(response.status, 418);
    assert_eq!(response.header("x-replaced"), Some("yes"));
    assert_eq!(response.header("x-original"), None);
    assert_eq!(response.text(), "replaced");
}

#[test]
fn a_second_start_response_without_exc_info_raises() {
    let server = server();
    let response = server.get("/second_call");
    assert_eq!(response.status, 200, "the first call's status stays");
    assert!(
        response.text().starts_with("raised:"),
        "got {:?}",
        response.text()
    );
}

#[test]
fn exc_info_after_the_body_started_reraises_and_aborts_the_response() {
    let server = server();
    let record = Record::new();
    let target = format!("/exc_info_after?{}", record.query());
    if let Some(response) = server.get_aborted(&target, &[], Framing::Chunked) {
        assert_eq!(response.status, 200);
        assert!(
            b"part1".starts_with(&response.body),
            "got {:?}",
            response.text()
        );
    }
    let lines = record.wait_for("close");
    assert!(lines.contains(&"reraised:True".to_owned()), "{lines:?}");
}

/// Must match `BAD_CALLS` in response_app.py.
const INVALID_CALLS: &[&str] = &[
    "status_no_reason",
    "status_not_numeric",
    "status_two_digits",
    "status_too_low",
    "status_too_high",
    "status_bytes",
    "status_crlf",
    "headers_tuple",
    "headers_dict",
    "headers_str",
    "header_short",
    "header_long",
    "header_value_int",
    "header_name_bytes",
    "header_value_bytes",
    "header_name_space",
    "header_name_colon",
    "header_name_empty",
    "header_name_non_ascii",
    "value_crlf",
    "value_lf",
    "value_cr",
    "value_not_latin1",
    "hop_connection",
    "hop_keep_alive",
    "hop_proxy_connection",
    "hop_te",
    "hop_transfer_encoding",
    "hop_upgrade",
];

#[test]
fn start_response_raises_on_invalid_status_and_headers() {
    let server = server();
    let mut accepted = Vec::new();
    for case in INVALID_CALLS {
        let response = server.get(&format!("/start_response?case={case}"));
        assert_eq!(
            response.status,
            200,
            "{case}: the corrected call failed: {}",
            response.text()
        );
        assert_eq!(
            response.header("x-injected"),
            None,
            "{case}: header injection"
        );
        if !response.text().starts_with("raised:") {
            accepted.push(*case);
        }
    }
    assert!(
        accepted.is_empty(),
        "start_response accepted invalid arguments: {accepted:?}"
    );
}

#[test]
fn start_response_accepts_valid_edge_cases() {
    let server = server();
    let response = server.get("/start_response?case=ok_tab");
    assert_eq!(response.text(), "accepted");
    assert_eq!(response.header_bytes("x-tab"), Some(&b"a\tb"[..]));

    let response = server.get("/start_response?case=ok_latin1");
    assert_eq!(response.text(), "accepted");
    assert_eq!(
        response.header_bytes("x-latin"),
        Some(&b"caf\xe9"[..]),
        "latin-1 bytes on the wire"
    );

    let response = server.get("/start_response?case=ok_reason_spaces");
    assert_eq!(response.text(), "accepted");
    assert_eq!(response.status, 299);

    // Hop-by-hop in RFC 2616 (which PEP 3333 cites), end-to-end in RFC 9110.
    let response = server.get("/start_response?case=ok_proxy_authenticate");
    assert_eq!(response.text(), "accepted");
    assert_eq!(response.status, 407);
    assert_eq!(
        response.header("proxy-authenticate"),
        Some("Basic realm=\"gateway\"")
    );
    assert_eq!(response.header("proxy-authorization"), Some("Basic eDp5"));
    assert_eq!(response.header("trailer"), Some("X-A"));
}

#[test]
fn a_generator_may_call_start_response_lazily() {
    let server = server();
    let response = server.get("/lazy");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-lazy"), Some("yes"));
    assert_eq!(response.text(), "lazy-body");
    assert!(response.complete);

    let response = server.get("/lazy_empty");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-lazy"), Some("empty"));
    assert_eq!(response.text(), "");
    assert!(response.complete);
}

#[test]
fn failures_before_anything_is_sent_become_500_and_the_server_keeps_serving() {
    let server = server();
    for target in [
        "/raise_before",
        "/raise_after_start",
        "/raise_first_chunk",
        "/str_chunk",
        "/str_chunk_generator",
        "/none",
        "/no_start_response",
    ] {
        let response = server.get(target);
        assert_eq!(response.status, 500, "{target}: {}", response.text());
        assert!(
            response.complete,
            "{target}: the 500 itself must be complete"
        );
        let next = server.get("/hello");
        assert_eq!(
            (next.status, next.text().as_str()),
            (200, "hello"),
            "after {target}"
        );
    }
}

#[test]
fn an_exception_mid_stream_aborts_the_chunked_response() {
    let server = server();
    if let Some(response) = server.get_aborted("/raise_midstream", &[], Framing::Chunked) {
        assert_eq!(response.status, 200);
        assert!(response.body.iter().all(|&b| b == b'x') && response.body.len() <= 1000);
    }
}

#[test]
fn an_exception_after_data_was_sent_leaves_the_chunked_stream_unterminated() {
    let server = server();
    let gate = Gate::new();
    let mut client = server.client();
    let target = format!("/raise_after_gate?{}", gate.query());
    client.send(&request("GET", &target, &[], b"").to_bytes(server.addr));
    let head = client.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(client.next_chunk(), Chunk::Data(vec![b'x'; 1000]));
    gate.open();
    assert_eq!(
        client.next_chunk(),
        Chunk::Truncated(Vec::new()),
        "no terminating chunk may follow (a server that hangs instead of closing the \
         connection fails the read)"
    );
}

#[test]
fn fewer_bytes_than_content_length_after_data_was_sent_closes_early() {
    let server = server();
    let gate = Gate::new();
    let mut client = server.client();
    let target = format!("/content_length?declared=100&send=10&{}", gate.query());
    client.send(&request("GET", &target, &[], b"").to_bytes(server.addr));
    let head = client.read_head();
    assert_eq!(head.header("content-length"), Some("100"));
    gate.open();
    // A server that hangs instead of closing the connection fails the read.
    let response = client.read_body(head, "GET");
    assert!(
        !response.complete,
        "the connection must close before 100 bytes"
    );
    assert!(response.body.len() <= 10, "{:?}", response.text());
}

#[test]
fn fewer_bytes_than_content_length_aborts_the_response() {
    let server = server();
    if let Some(response) = server.get_aborted(
        "/content_length?declared=100&send=10",
        &[],
        Framing::Length(100),
    ) {
        assert_eq!(response.status, 200);
        assert!(response.body.len() <= 10);
    }
}

#[test]
fn never_more_than_content_length_bytes_are_sent() {
    let server = server();
    let mut client = server.client();
    client.send(
        &request("GET", "/content_length?declared=5&send=10", &[], b"")
            .keep_alive()
            .to_bytes(server.addr),
    );
    let response = client.read_response("GET");
    assert_eq!(response.framing, Framing::Length(5));
    assert_eq!(response.text(), "01234");
    // Never the 5 excess bytes.
    assert_no_bytes_past_the_length(&server, &mut client);
}

/// Sends `method target` on a keep-alive connection, then GET /hello on the
/// same connection: any body bytes of the first response would break the
/// second response's status line.
fn assert_no_body_then_next_request_ok(
    server: &TestServer,
    method: &str,
    target: &str,
    status: u16,
) {
    let mut client = server.client();
    client.send(
        &request(method, target, &[], b"")
            .keep_alive()
            .to_bytes(server.addr),
    );
    let response = client.read_response(method);
    assert_eq!(response.status, status, "{method} {target}");
    assert!(response.body.is_empty());
    client.send(&request("GET", "/hello", &[], b"").to_bytes(server.addr));
    let next = client.read_response("GET");
    assert_eq!(next.text(), "hello", "after {method} {target}");
    assert!(
        client.read_to_end().is_empty(),
        "stray bytes after {method} {target}"
    );
}

#[test]
fn head_204_and_304_responses_carry_no_body() {
    let server = server();
    assert_no_body_then_next_request_ok(&server, "HEAD", "/hello", 200);
    assert_no_body_then_next_request_ok(&server, "HEAD", "/tracked", 200);
    assert_no_body_then_next_request_ok(&server, "GET", "/status?code=204", 204);
    assert_no_body_then_next_request_ok(&server, "GET", "/status?code=304", 304);
}

#[test]
fn an_http_1_0_client_never_gets_chunked_encoding() {
    let server = server();
    let raw = server.raw(b"GET /tracked?n=3 HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(
        text.starts_with("http/1.0 200") || text.starts_with("http/1.1 200"),
        "{text}"
    );
    assert!(!text.contains("transfer-encoding"), "{text}");
    assert!(text.ends_with("\r\n\r\nchunk0;chunk1;chunk2;"), "{text}");
}

#[test]
fn repeated_headers_stay_separate_lines() {
    let server = server();
    let response = server.get("/cookies");
    assert_eq!(
        response.header_all("set-cookie"),
        ["a=1; Path=/", "b=2; Path=/"]
    );
    let multi = response.header_all("x-multi").join(",");
    assert_eq!(multi.replace(' ', ""), "one,two");
}

#[test]
fn many_tiny_chunks_arrive_intact() {
    let server = server();
    let response = server.get("/tiny?n=3000");
    assert!(response.complete);
    let expected: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    assert!(response.body == expected, "tiny chunks reassembled wrongly");
}

#[test]
fn a_slow_reader_pauses_the_generator() {
    const CHUNKS: usize = 1024;
    const SIZE: usize = 65536;
    let server = server();
    let record = Record::new();
    let mut client = server.client();
    let target = format!("/big?chunks={CHUNKS}&size={SIZE}&{}", record.query());
    client.send(&request("GET", &target, &[], b"").to_bytes(server.addr));
    record.wait_for("p");
    // Read nothing for a while: socket buffers fill, then the generator must stop.
    std::thread::sleep(Duration::from_millis(1500));
    let produced = record.count("p");
    assert!(
        produced < CHUNKS / 2,
        "the generator ran ahead of a client that read nothing: {produced} of {CHUNKS} chunks produced"
    );
    let response = client.read_response("GET");
    assert!(response.complete);
    assert_eq!(response.body.len(), CHUNKS * SIZE);
    let lines = record.wait_for("close");
    assert_eq!(lines.iter().filter(|l| *l == "p").count(), CHUNKS);
    assert!(lines.contains(&"end".to_owned()));
}
