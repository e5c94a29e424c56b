//! `wsgi.input`: every read method and size over bodies delivered whole, byte by
//! byte and in random pieces, EOF handling, chunked bodies, `Expect: 100-continue`,
//! a client vanishing mid-upload, and keep-alive after an unread body.

mod common;

use std::time::Duration;

use common::{TestServer, app_path, start};
use test_support::gate::Record;
use test_support::rng::Rng;
use test_support::wire::{Conn, Response};

fn server() -> TestServer {
    start(&app_path("input_app.py"), |b| b, "")
}

/// Every body streamed to `wsgi.input` as the app reads, however small.
fn streaming_server() -> TestServer {
    start(&app_path("input_app.py"), |b| b.buffer_body(0), "")
}

#[derive(Debug, Clone, Copy)]
enum Delivery {
    Whole,
    ByteByByte,
    RandomPieces(u64),
}

/// Bytes with a newline about every 40 bytes and an unterminated last line.
fn body_with_lines(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut body: Vec<u8> = rng
        .bytes(len)
        .into_iter()
        .map(|b| if b % 40 == 0 { b'\n' } else { b })
        .collect();
    if let Some(last) = body.last_mut() {
        *last = b'x';
    }
    body
}

fn send_in(client: &mut Conn, bytes: &[u8], delivery: Delivery) {
    match delivery {
        Delivery::Whole => client.send(bytes),
        Delivery::ByteByByte => {
            for byte in bytes {
                client.send(std::slice::from_ref(byte));
                std::thread::sleep(Duration::from_micros(300));
            }
        }
        Delivery::RandomPieces(seed) => {
            let mut rng = Rng::new(seed);
            let mut rest = bytes;
            while !rest.is_empty() {
                let n = rng.range(1, 3000).min(rest.len());
                client.send(&rest[..n]);
                rest = &rest[n..];
                if rng.range(0, 9) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

fn target(mode: &str, size: Option<&str>) -> String {
    match size {
        Some(size) => format!("/?mode={mode}&size={size}"),
        None => format!("/?mode={mode}"),
    }
}

/// POSTs `body` (head sent whole, body as `delivery` says) and returns the response.
fn post(server: &TestServer, target: &str, body: &[u8], delivery: Delivery) -> Response {
    let mut client = server.client();
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.host(),
        body.len()
    );
    client.send(head.as_bytes());
    send_in(&mut client, body, delivery);
    client.read_final_response("POST")
}

fn assert_echo(response: &Response, sent: &[u8], what: &str, content_length: Option<usize>) {
    assert_eq!(response.status, 200, "{what}: {}", response.text());
    assert!(response.complete, "{what}: incomplete response");
    assert_eq!(response.header("x-violations"), Some("none"), "{what}");
    assert_eq!(
        response.header("x-eof"),
        Some("ok"),
        "{what}: reads after the end"
    );
    let expected_cl = content_length.map_or("None".to_owned(), |n| format!("'{n}'"));
    assert_eq!(
        response.header("x-content-length"),
        Some(expected_cl.as_str()),
        "{what}"
    );
    assert_eq!(response.body.len(), sent.len(), "{what}: body length");
    assert!(
        response.body == sent,
        "{what}: body differs from what was sent"
    );
}

/// Every (method, size) pair; `None` calls the method without an argument.
const CASES: &[(&str, Option<&str>)] = &[
    ("read", Some("1")),
    ("read", Some("7")),
    ("read", Some("65536")),
    ("read", Some("-1")),
    ("readall", None),
    ("read_none", None),
    ("readline", Some("1")),
    ("readline", Some("7")),
    ("readline", Some("65536")),
    ("readline", Some("-1")),
    ("readline", None),
    ("readlines", Some("1")),
    ("readlines", Some("7")),
    ("readlines", Some("65536")),
    ("readlines", Some("-1")),
    ("readlines", None),
    ("iter", None),
    ("mixed", None),
];

fn run_matrix(server: &TestServer, delivery: Delivery, small: usize, large: usize) {
    let mut rng = Rng::new(0x5eed);
    for &(mode, size) in CASES {
        // One-byte reads over a large body only add run time, not coverage.
        let len = if size == Some("1") { small } else { large };
        let body = body_with_lines(&mut rng, len);
        let what = format!("{mode}({size:?}) over {len} bytes sent {delivery:?}");
        let response = post(server, &target(mode, size), &body, delivery);
        assert_echo(&response, &body, &what, Some(body.len()));
    }
}

// Small bodies (up to `DEFAULT_BUFFER_BODY`) are read whole before the app runs, larger
// ones are streamed; each delivery runs both ways, and once more with streaming only.

#[test]
fn every_read_method_and_size_over_a_whole_body() {
    run_matrix(&server(), Delivery::Whole, 4096, 200_000);
    run_matrix(&streaming_server(), Delivery::Whole, 4096, 4096);
}

#[test]
fn every_read_method_and_size_over_a_body_sent_byte_by_byte() {
    run_matrix(&server(), Delivery::ByteByByte, 200, 200);
    run_matrix(&streaming_server(), Delivery::ByteByByte, 200, 200);
}

#[test]
fn every_read_method_and_size_over_a_body_in_random_pieces() {
    run_matrix(&server(), Delivery::RandomPieces(42), 4096, 200_000);
    run_matrix(&streaming_server(), Delivery::RandomPieces(7), 4096, 9000);
}

#[test]
fn bodies_at_and_just_over_the_buffering_limit_read_the_same() {
    let server = server();
    let limit = usize::try_from(wsgi_core::DEFAULT_BUFFER_BODY).unwrap();
    let mut rng = Rng::new(0xb0d7);
    for len in [limit, limit + 1] {
        for &(mode, size) in CASES.iter().filter(|(_, size)| *size != Some("1")) {
            let body = body_with_lines(&mut rng, len);
            let what = format!("{mode}({size:?}) over {len} bytes");
            let response = post(
                &server,
                &target(mode, size),
                &body,
                Delivery::RandomPieces(3),
            );
            assert_echo(&response, &body, &what, Some(len));
        }
    }
}

/// Sends the head of an upload of `len` bytes and the first `sent` of them.
fn start_upload(server: &TestServer, record: &Record, len: usize, sent: usize) -> Conn {
    let mut client = server.client();
    client.send(
        format!(
            "POST /?mode=upload&{} HTTP/1.1\r\nHost: {}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
            record.query(),
            server.host()
        )
        .as_bytes(),
    );
    client.send(&vec![b'u'; sent]);
    client
}

/// Sends half of a 1000-byte upload, checks that the app has not started, then sends the
/// rest and checks that the app read all of it.
fn assert_the_body_arrives_whole_first(server: &TestServer) {
    let record = Record::new();
    let mut client = start_upload(server, &record, 1000, 500);
    // The negative half of this test: nothing may start while the body is incomplete.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        record.lines(),
        Vec::<String>::new(),
        "the app ran before its body arrived"
    );
    assert_eq!(server.engine.metrics().threads_busy, 0);
    client.send(&[b'u'; 500]);
    let response = client.read_final_response("POST");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(record.lines(), vec!["started", "eof:1000"]);
}

#[test]
fn a_small_body_arrives_whole_before_the_app_is_called() {
    assert_the_body_arrives_whole_first(&server());
}

/// Over the buffering limit the body goes to a temporary file, and the app still waits
/// for all of it (nginx and Passenger buffer whole bodies the same way).
#[test]
fn a_larger_body_is_spooled_and_arrives_whole_before_the_app_is_called() {
    assert_the_body_arrives_whole_first(&start(
        &app_path("input_app.py"),
        |b| b.buffer_body(999),
        "",
    ));
}

#[test]
fn with_buffering_off_a_body_is_streamed_while_the_app_runs() {
    let server = streaming_server();
    let record = Record::new();
    let mut client = start_upload(&server, &record, 1000, 500);
    record.wait_for("started");
    client.send(&[b'u'; 500]);
    let response = client.read_final_response("POST");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(record.lines(), vec!["started", "eof:1000"]);
}

#[test]
fn empty_body_reads_as_eof() {
    let server = server();
    for &(mode, size) in CASES {
        let response = post(&server, &target(mode, size), b"", Delivery::Whole);
        assert_echo(
            &response,
            b"",
            &format!("{mode}({size:?}) of nothing"),
            Some(0),
        );
    }
}

#[test]
fn input_ends_at_content_length_on_a_keep_alive_connection() {
    let server = server();
    let mut client = server.client();
    let host = server.host();
    // Two requests in one write: the first body must end exactly at its
    // Content-Length, and the second request must not leak into it.
    let pipelined = format!(
        "POST /?mode=read&size=65536 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10\r\n\r\n0123456789\
         POST /?mode=read&size=65536 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    );
    client.send(pipelined.as_bytes());
    let first = client.read_response("POST");
    assert_echo(&first, b"0123456789", "first pipelined request", Some(10));
    let second = client.read_response("POST");
    assert_echo(&second, b"abc", "second pipelined request", Some(3));
}

fn chunked_encoding(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let n = rng.range(1, 5000).min(rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn chunked_request_bodies_are_read_to_their_end() {
    let server = server();
    let mut rng = Rng::new(7);
    let cases: &[(&str, Option<&str>)] = &[
        ("read", Some("7")),
        ("read", Some("65536")),
        ("read", Some("-1")),
        ("readall", None),
        ("readline", None),
        ("readline", Some("7")),
        ("readlines", Some("100")),
        ("iter", None),
    ];
    for (index, &(mode, size)) in cases.iter().enumerate() {
        let body = body_with_lines(&mut rng, 100_000);
        let mut client = server.client();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            target(mode, size),
            server.host()
        );
        client.send(head.as_bytes());
        let encoded = chunked_encoding(&mut rng, &body);
        send_in(
            &mut client,
            &encoded,
            Delivery::RandomPieces(index as u64 + 1),
        );
        let response = client.read_final_response("POST");
        assert_echo(&response, &body, &format!("chunked {mode}({size:?})"), None);
    }
}

#[test]
fn expect_100_continue_is_sent_when_the_app_reads() {
    let server = server();
    let mut client = server.client();
    client.send(
        format!(
            "POST /?mode=read&size=7 HTTP/1.1\r\nHost: {}\r\nContent-Length: 11\r\n\
             Expect: 100-continue\r\nConnection: close\r\n\r\n",
            server.host()
        )
        .as_bytes(),
    );
    let interim = client.read_head();
    assert_eq!(
        interim.status, 100,
        "expected 100 Continue before sending the body"
    );
    client.send(b"hello world");
    let response = client.read_final_response("POST");
    assert_echo(&response, b"hello world", "after 100 Continue", Some(11));
}

#[test]
fn expect_100_continue_is_not_sent_when_the_app_does_not_read() {
    let server = server();
    let mut client = server.client();
    client.send(
        format!(
            "POST /?mode=none HTTP/1.1\r\nHost: {}\r\nContent-Length: 11\r\n\
             Expect: 100-continue\r\nConnection: close\r\n\r\n",
            server.host()
        )
        .as_bytes(),
    );
    let head = client.read_head();
    assert_eq!(
        head.status, 200,
        "the app never read, so no 100 Continue was due"
    );
    assert_eq!(head.header("x-mode"), Some("none"));
}

#[test]
fn client_vanishing_mid_upload_raises_oserror_in_the_app() {
    let server = streaming_server();
    let record = Record::new();
    let mut client = server.client();
    client.send(
        format!(
            "POST /?mode=upload&{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 100000\r\n\r\n",
            record.query(),
            server.host()
        )
        .as_bytes(),
    );
    client.send(&[b'u'; 1000]);
    record.wait_for("started");
    drop(client);
    let lines = record.wait_until("the upload outcome", |lines| lines.len() >= 2);
    assert!(
        lines[1].starts_with("oserror:"),
        "the app should see an OSError when the client vanishes, got {:?}",
        lines[1]
    );
}

#[test]
fn an_unread_body_does_not_corrupt_the_next_request() {
    let server = server();
    let host = server.host();
    let mut client = server.client();
    // The body looks like a request: if the server parsed it as one, the
    // second response would come from mode=iter.
    let smuggled = format!("GET /?mode=iter HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let first = format!(
        "POST /?mode=none HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    client.send(first.as_bytes());
    let response = client.read_response("POST");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-mode"), Some("none"));

    let second = format!(
        "POST /?mode=read&size=7 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\n\r\nnext"
    );
    client.send(second.as_bytes());
    let response = client.read_response("POST");
    assert_eq!(response.header("x-mode"), Some("read"), "{response:?}");
    assert_echo(&response, b"next", "request after an unread body", Some(4));
}

#[test]
fn max_body_rejects_a_larger_content_length_with_413() {
    let server = start(&app_path("input_app.py"), |b| b.max_body(1000), "");
    let response = post(
        &server,
        "/?mode=read&size=7",
        &[b'a'; 5000],
        Delivery::Whole,
    );
    assert_eq!(response.status, 413, "{}", response.text());
    let response = post(&server, "/?mode=read&size=7", &[b'a'; 500], Delivery::Whole);
    assert_echo(&response, &[b'a'; 500], "body under max_body", Some(500));
}
