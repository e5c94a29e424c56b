//! The bounded queue: a full queue answers 503 with Retry-After, and a request
//! whose client left while it waited is never run.

mod common;

use std::time::Duration;

use common::{Gate, RecordFile, app_path, request_bytes, start};

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let server = start(
        &app_path("slow_app.py"),
        |b| b.threads(1).queue_depth(1).retry_after(7),
        "",
    );
    let record = RecordFile::new("queue-full");
    let gate = Gate::new("queue-full");
    let addr = server.addr;
    let host = server.host();
    let request = |tag: &str| {
        request_bytes(
            &host,
            "GET",
            &format!("/?tag={tag}"),
            &[record.header(), gate.header()],
            b"",
            true,
        )
    };
    let busy = {
        let bytes = request("A");
        std::thread::spawn(move || {
            let mut client = common::Client::connect(addr);
            client.send(&bytes);
            client.read_response("GET")
        })
    };
    record.wait_for_line("start A");
    // The one thread is busy until the gate opens: of these three, at most one
    // fits in the queue.
    let waiting: Vec<_> = ["B1", "B2", "B3"]
        .into_iter()
        .map(|tag| {
            let bytes = request(tag);
            std::thread::spawn(move || {
                let mut client = common::Client::connect(addr);
                client.send(&bytes);
                client.read_response("GET")
            })
        })
        .collect();
    // The rejected ones answer without waiting for the gate.
    common::eventually("two requests to be rejected", || {
        (waiting.iter().filter(|h| h.is_finished()).count() >= 2).then_some(())
    });
    gate.open();
    assert_eq!(busy.join().expect("request A").status(), 200);
    let responses: Vec<_> = waiting
        .into_iter()
        .map(|h| h.join().expect("request B"))
        .collect();
    let rejected: Vec<_> = responses.iter().filter(|r| r.status() == 503).collect();
    assert!(
        rejected.len() >= 2,
        "statuses: {:?}",
        responses.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    for response in &rejected {
        assert_eq!(response.header("retry-after").as_deref(), Some("7"));
    }
    for response in responses.iter().filter(|r| r.status() != 503) {
        assert_eq!(response.status(), 200);
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
    let record = RecordFile::new("queue-left");
    let gate = Gate::new("queue-left");
    let host = server.host();
    let addr = server.addr;
    let busy = {
        let bytes = request_bytes(
            &host,
            "GET",
            "/?tag=A",
            &[record.header(), gate.header()],
            b"",
            true,
        );
        std::thread::spawn(move || {
            let mut client = common::Client::connect(addr);
            client.send(&bytes);
            client.read_response("GET")
        })
    };
    record.wait_for_line("start A");

    let mut leaving = server.client();
    leaving.send(&request_bytes(
        &host,
        "GET",
        "/?tag=B",
        &[record.header()],
        b"",
        true,
    ));
    // Give the request time to be queued, then leave.
    std::thread::sleep(Duration::from_millis(500));
    drop(leaving);
    std::thread::sleep(Duration::from_millis(500));

    gate.open();
    assert_eq!(busy.join().expect("request A").status(), 200);
    let response = server.get_with("/?tag=C", &[record.header()]);
    assert_eq!(response.text(), "done C");
    let lines = record.lines();
    assert!(
        !lines.contains(&"start B".to_owned()),
        "the app ran for a client that had left: {lines:?}"
    );
}
