//! Operational limits: request timeout, queue wait, slow uploads, and the metrics that
//! report them. Limits are configured small so the tests do not sleep long.

mod common;

use std::time::{Duration, Instant};

use common::{app_path, start};
use test_support::eventually;
use test_support::gate::Record;
use test_support::wire::Conn;
use wsgi_core::EngineBuilder;

fn app() -> String {
    app_path("production_app.py")
}

#[test]
fn a_request_past_its_timeout_gets_504_and_frees_its_thread() {
    let server = start(
        &app(),
        |b| b.threads(1).timeout(Duration::from_millis(300)),
        "",
    );
    let record = Record::new();
    let started = Instant::now();
    let response = server.get(&format!("/busy?secs=60&{}", record.query()));
    assert_eq!(response.status, 504, "{}", response.text());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout did not fire"
    );
    // The view was interrupted and its iterable closed, so the only thread serves again.
    record.wait_for("interrupted");
    record.wait_for("closed");
    assert_eq!(server.get("/fast").text(), "fast");
    let metrics = server.engine.metrics();
    assert_eq!(metrics.timeouts, 1);
    assert_eq!(metrics.stuck_threads, 0);
}

#[test]
fn a_request_that_waited_too_long_in_the_queue_gets_503() {
    let server = start(
        &app(),
        |b| b.threads(1).max_queue_wait(Duration::from_millis(200)),
        "",
    );
    let addr = server.addr;
    let busy = std::thread::spawn(move || test_support::wire::get(addr, "/busy?secs=1"));
    eventually("the busy request to occupy the thread", || {
        (server.engine.metrics().threads_busy == 1).then_some(())
    });
    let queued = server.get("/fast");
    assert_eq!(queued.status, 503, "{}", queued.text());
    assert!(queued.header("retry-after").is_some());
    assert!(busy.join().unwrap().text().contains("finished"));
    assert!(server.engine.metrics().rejected_overload >= 1);
}

#[test]
fn a_client_that_stops_mid_upload_gets_408_and_frees_the_thread() {
    // Streamed (no buffering): the Python thread waits in wsgi.input and must be freed.
    stops_mid_upload(|b| b.buffer_body(0));
}

#[test]
fn a_client_that_stops_mid_way_through_a_buffered_body_gets_408() {
    // Buffered by the host: the app never runs, the host's wait must still end.
    stops_mid_upload(|b| b.buffer_body(1000));
}

#[test]
fn a_client_that_stops_mid_way_through_a_spooled_body_gets_408() {
    // Over the buffering limit, so bound for a temporary file: the same answer.
    stops_mid_upload(|b| b.buffer_body(10));
}

fn stops_mid_upload(configure: fn(EngineBuilder) -> EngineBuilder) {
    let server = start(
        &app(),
        |b| configure(b.threads(1).body_timeout(Duration::from_millis(300))),
        "",
    );
    let mut conn = Conn::connect(server.addr);
    conn.send(b"POST /read HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789");
    let head = conn.read_head();
    assert_eq!(
        (head.version.as_str(), head.status),
        ("HTTP/1.1", 408),
        "{head:?}"
    );
    assert_eq!(server.get("/fast").text(), "fast");
}

#[test]
fn metrics_count_responses() {
    let server = start(&app(), |b| b.threads(2), "");
    for _ in 0..3 {
        assert_eq!(server.get("/fast").status, 200);
    }
    let metrics = eventually("three 2xx responses to be counted", || {
        let m = server.engine.metrics();
        (m.responses_by_class[1] >= 3).then_some(m)
    });
    assert_eq!(metrics.threads_busy + metrics.threads_idle, 2);
    assert!(metrics.duration_count >= 3);
    assert!(
        metrics
            .duration_buckets
            .last()
            .is_some_and(|&(_, n)| n >= 3),
        "{metrics:?}"
    );
}
