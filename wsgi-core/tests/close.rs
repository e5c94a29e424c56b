//! The iterable's `close()` runs exactly once on every path: normal completion,
//! exceptions, HEAD, and a client that disconnects (also while the generator is
//! parked because the client stopped reading).

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, app_path, request, start, start_a_long_stream};
use test_support::gate::Record;
use test_support::wire::Framing;

fn server() -> TestServer {
    start(&app_path("response_app.py"), |b| b, "")
}

/// Waits for the first `close`, then a little longer to catch a second one.
fn assert_closed_once(record: &Record) -> Vec<String> {
    record.wait_for("close");
    std::thread::sleep(Duration::from_millis(300));
    let lines = record.lines();
    assert_eq!(
        lines.iter().filter(|l| *l == "close").count(),
        1,
        "close() must run exactly once: {lines:?}"
    );
    lines
}

#[test]
fn close_runs_once_after_the_last_chunk() {
    let server = server();
    let record = Record::new();
    let response = server.get(&format!("/tracked?n=3&{}", record.query()));
    assert_eq!(response.text(), "chunk0;chunk1;chunk2;");
    assert!(response.complete);
    let lines = assert_closed_once(&record);
    assert_eq!(
        lines,
        ["end", "close"],
        "close() must come after the last chunk"
    );
}

#[test]
fn close_runs_once_after_an_exception_mid_stream() {
    let server = server();
    let record = Record::new();
    server.get_aborted(
        &format!("/raise_midstream?{}", record.query()),
        &[],
        Framing::Chunked,
    );
    assert_closed_once(&record);
}

#[test]
fn close_runs_once_after_an_exception_in_the_first_chunk() {
    let server = server();
    let record = Record::new();
    let response = server.get(&format!("/raise_first_chunk?{}", record.query()));
    assert_eq!(response.status, 500);
    assert_closed_once(&record);
}

#[test]
fn close_runs_once_for_head() {
    let server = server();
    let record = Record::new();
    let target = format!("/tracked?n=3&{}", record.query());
    let response = server.request("HEAD", &target, &[], b"");
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
    assert_closed_once(&record);
}

#[test]
fn close_runs_once_after_exc_info_reraise() {
    let server = server();
    let record = Record::new();
    server.get_aborted(
        &format!("/exc_info_after?{}", record.query()),
        &[],
        Framing::Chunked,
    );
    assert_closed_once(&record);
}

#[test]
fn close_runs_promptly_when_the_client_disconnects() {
    let server = server();
    let record = Record::new();
    // About 100 s of body: it only ends early if the server notices the client leaving.
    let client = start_a_long_stream(&server, &record);
    let left = Instant::now();
    drop(client);
    let lines = assert_closed_once(&record);
    assert!(
        left.elapsed() < Duration::from_secs(10),
        "close() came late"
    );
    assert!(
        !lines.contains(&"end".to_owned()),
        "the generator ran to its end: {lines:?}"
    );
}

#[test]
fn close_runs_when_the_client_disconnects_while_the_generator_is_parked() {
    let server = server();
    let record = Record::new();
    let mut client = server.client();
    // 64 GiB: far more than any buffer, so the generator must be parked.
    let target = format!("/big?chunks=1048576&size=65536&{}", record.query());
    client.send(&request("GET", &target, &[], b"").to_bytes(server.addr));
    // Wait until production stalls: the generator is parked on backpressure.
    let mut last = 0;
    record.wait_until("the generator to stall", |lines| {
        let produced = lines.len();
        let stalled = produced > 0 && produced == last;
        last = produced;
        if !stalled {
            std::thread::sleep(Duration::from_millis(300));
        }
        stalled
    });
    drop(client);
    let lines = assert_closed_once(&record);
    assert!(!lines.contains(&"end".to_owned()));
}
