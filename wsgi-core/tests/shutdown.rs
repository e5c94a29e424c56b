//! Graceful shutdown: in-flight requests finish within the grace period, new
//! ones get 503, and the report counts what happened.

mod common;

use std::time::Duration;

use common::{TestServer, app_path, start};
use test_support::gate::{Gate, Record};
use test_support::wire::{Request, Response, send};
use wsgi_core::ShutdownReport;

fn server() -> TestServer {
    start(&app_path("slow_app.py"), |b| b, "")
}

/// Starts a gated request in the background and waits until the app runs it.
fn start_slow(
    server: &TestServer,
    record: &Record,
    gate: &Gate,
    target: &str,
) -> std::thread::JoinHandle<Response> {
    let request = Request::get(&format!("{target}&{}&{}", record.query(), gate.query()));
    let addr = server.addr;
    let handle = std::thread::spawn(move || send(addr, &request));
    record.wait_for("start A");
    handle
}

fn wait_report(
    server: &TestServer,
    handle: tokio::task::JoinHandle<ShutdownReport>,
) -> ShutdownReport {
    server
        .block_on(async { tokio::time::timeout(test_support::DEADLINE, handle).await })
        .expect("shutdown did not finish in time")
        .expect("shutdown task")
}

#[test]
fn in_flight_requests_finish_within_grace_and_new_ones_get_503() {
    let server = server();
    let record = Record::new();
    let gate = Gate::new();
    let in_flight = start_slow(&server, &record, &gate, "/?tag=A");

    let shutdown = server.spawn(server.engine.shutdown(Duration::from_secs(30)));
    // Shutdown has begun once the engine refuses work; poll instead of sleeping.
    let refused = test_support::eventually("new requests to be refused", || {
        let response = server.get("/?tag=probe");
        (response.status == 503).then_some(response)
    });
    assert_eq!(refused.status, 503);
    assert!(
        !shutdown.is_finished(),
        "shutdown must wait for the in-flight request"
    );

    gate.open();
    let response = in_flight.join().expect("in-flight request");
    assert_eq!((response.status, response.text().as_str()), (200, "done A"));
    let report = wait_report(&server, shutdown);
    assert!(report.completed >= 1, "{report:?}");
    assert_eq!(report.aborted, 0, "{report:?}");
}

#[test]
fn requests_still_running_after_the_grace_are_reported_aborted() {
    let server = server();
    let record = Record::new();
    let gate = Gate::new();
    let _in_flight = start_slow(&server, &record, &gate, "/?tag=A&max=30");
    let shutdown = server.spawn(server.engine.shutdown(Duration::from_millis(500)));
    let report = wait_report(&server, shutdown);
    assert_eq!(report.aborted, 1, "{report:?}");
    assert_eq!(report.completed, 0, "{report:?}");
}

#[test]
fn an_idle_engine_shuts_down_at_once_and_then_refuses_requests() {
    let server = server();
    assert_eq!(server.get("/?tag=warmup").status, 200);
    let shutdown = server.spawn(server.engine.shutdown(Duration::from_secs(30)));
    let report = wait_report(&server, shutdown);
    assert_eq!(report.aborted, 0, "{report:?}");
    let response = server.get("/?tag=late");
    assert_eq!(response.status, 503);
}
