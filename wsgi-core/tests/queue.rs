//! The bounded queue: a full queue answers 503 with Retry-After, and a request
//! whose client left while it waited is never run.

mod common;

use std::time::Duration;

use common::{app_path, start};
use test_support::gate::{Gate, Record};
use test_support::wire::{Conn, Request, send};

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let server = start(
        &app_path("slow_app.py"),
        |b| b.threads(1).queue_depth(1).retry_after(7),
        "",
    );
    let record = Record::new();
    let gate = Gate::new();
    let addr = server.addr;
    let request =
        |tag: &str| Request::get(&format!("/?tag={tag}&{}&{}", record.query(), gate.query()));
    let busy = {
        let request = request("A");
        std::thread::spawn(move || send(addr, &request))
    };
    record.wait_for("start A");
    // The one thread is busy until the gate opens: of these three, at most one
    // fits in the queue.
    let waiting: Vec<_> = ["B1", "B2", "B3"]
        .into_iter()
        .map(|tag| {
            let request = request(tag);
            std::thread::spawn(move || send(addr, &request))
        })
        .collect();
    // The rejected ones answer without waiting for the gate.
    test_support::eventually("two requests to be rejected", || {
        (waiting.iter().filter(|h| h.is_finished()).count() >= 2).then_some(())
    });
    gate.open();
    assert_eq!(busy.join().expect("request A").status, 200);
    let responses: Vec<_> = waiting
        .into_iter()
        .map(|h| h.join().expect("request B"))
        .collect();
    let rejected: Vec<_> = responses.iter().filter(|r| r.status == 503).collect();
    assert!(
        rejected.len() >= 2,
        "statuses: {:?}",
        responses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for response in &rejected {
        assert_eq!(response.header("retry-after"), Some("7"));
    }
    for response in responses.iter().filter(|r| r.status != 503) {
        assert_eq!(response.status, 200);
    }
    let started = record
        .lines()
        .iter()
        .filter(|l| l.starts_with("start B"))
        .count();
    assert!(started <= 1, "rejected requests ran: {:?}", record.lines());
}

#[test]
fn a_request_whose_client_left_while_queued_is_not_run() {
    let server = start(
        &app_path("slow_app.py"),
        |b| b.threads(1).queue_depth(4),
        "",
    );
    let record = Record::new();
    let gate = Gate::new();
    let addr = server.addr;
    let busy = {
        let request = Request::get(&format!("/?tag=A&{}&{}", record.query(), gate.query()));
        std::thread::spawn(move || send(addr, &request))
    };
    record.wait_for("start A");

    let mut leaving = Conn::connect(addr);
    leaving.send(&Request::get(&format!("/?tag=B&{}", record.query())).to_bytes(addr));
    // Give the request time to be queued, then leave.
    std::thread::sleep(Duration::from_millis(500));
    drop(leaving);
    std::thread::sleep(Duration::from_millis(500));

    gate.open();
    assert_eq!(busy.join().expect("request A").status, 200);
    let response = server.get(&format!("/?tag=C&{}", record.query()));
    assert_eq!(response.text(), "done C");
    let lines = record.lines();
    assert!(
        !lines.contains(&"start B".to_owned()),
        "the app ran for a client that had left: {lines:?}"
    );
}
