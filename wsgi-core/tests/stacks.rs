//! What an operator reads when requests hang: the request timeout's exception, which an
//! application's `except Exception:` does not swallow, and the log lines that carry the
//! Python stack of a timed-out request's thread and of every busy one
//! (`Engine::log_busy_threads`), in-process. (Worker processes: `wsgi-serve`'s tests.)

mod common;

use std::time::{Duration, Instant};

use common::{app_path, start};
use test_support::eventually;
use test_support::gate::Record;
use test_support::logs::{Captured, captured};

fn log() -> &'static Captured {
    captured()
}

/// The log event (its first line and the ones that follow it, up to the next event) that
/// contains `head`, once one does.
fn event_with(head: &str) -> String {
    eventually(&format!("a log event with {head:?}"), || {
        let text = log().text();
        let at = text.find(head)?;
        let start = text[..at].rfind('\n').map_or(0, |n| n + 1);
        let mut event = String::new();
        for (i, line) in text[start..].lines().enumerate() {
            // Each event starts with its timestamp, `2026-12-03T...`.
            let next_event = line.len() > 4 && line[..4].bytes().all(|b| b.is_ascii_digit());
            if i > 0 && next_event {
                break;
            }
            event.push_str(line);
            event.push('\n');
        }
        Some(event)
    })
}

#[test]
fn except_exception_does_not_swallow_the_timeout_and_the_line_has_the_stack() {
    log();
    let server = start(
        &app_path("production_app.py"),
        |b| b.threads(1).timeout(Duration::from_millis(300)),
        "",
    );
    let record = Record::new();
    let target = format!("/retrying?secs=60&{}", record.query());
    let response = server.get(&target);
    assert_eq!(response.status, 504, "{}", response.text());
    // The only thread is back at once: the retry loop did not catch the exception.
    let started = Instant::now();
    assert_eq!(server.get("/fast").text(), "fast");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(record.count("swallowed"), 0, "{:?}", record.lines());
    let line = event_with(&format!(
        "request timed out after 0.3 s; answering 504 and interrupting its thread: GET {target}, running for 0."
    ));
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains("its Python stack, most recent call last:\n  File \""),
        "{line}"
    );
    // The frame the thread was in, as `traceback` prints it.
    assert!(line.contains("production_app.py\", line "), "{line}");
    assert!(line.contains(", in application\n"), "{line}");
    // It went up through the application, by its name.
    event_with("wsgi_core.RequestTimeout");
}

#[test]
fn log_busy_threads_logs_each_busy_request_with_its_stack() {
    log();
    let server = start(&app_path("production_app.py"), |b| b.threads(2), "");
    let record = Record::new();
    let target = format!("/busy?secs=3&{}", record.query());
    let addr = server.addr;
    let busy = {
        let target = target.clone();
        std::thread::spawn(move || test_support::wire::get(addr, &target))
    };
    eventually("the request to occupy a thread", || {
        (server.engine.metrics().threads_busy == 1).then_some(())
    });
    server.engine.log_busy_threads();
    let line = event_with(&format!("busy Python thread: GET {target}, running for "));
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains(", in __iter__\n"), "{line}");
    event_with("1 of 2 Python threads busy");
    // The report took nothing from the request, nor from the server.
    assert_eq!(busy.join().unwrap().text(), "finished");
    assert_eq!(server.get("/fast").text(), "fast");
}
