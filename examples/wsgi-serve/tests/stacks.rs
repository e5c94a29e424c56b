//! What an operator reads when requests hang, in-process (`--processes 0`) and in a worker
//! process (`--processes 1`): `--timeout` raises `wsgi_core.RequestTimeout`, which an
//! application's `except Exception:` does not swallow, and its log line carries the
//! thread's Python stack; SIGUSR1 logs every busy thread's request line and stack, and the
//! server keeps serving.

mod common;

use std::time::{Duration, Instant};

use common::serve_app;
use test_support::gate::Record;
use test_support::serve::{Server, start};

/// `wsgi-serve` with `--processes N` (`"0"`: in-process) on `stacks_app.py`. The engine does
/// the same on either server: axum only.
fn stacks(processes: &str, extra: &[&str]) -> Server {
    let mut options = vec!["--processes", processes];
    options.extend_from_slice(extra);
    start(serve_app("axum", &options, "stacks_app.py"))
}

/// Runs `test` in-process and with one worker process.
fn each_mode(test: impl Fn(&str)) {
    for processes in ["0", "1"] {
        test(processes);
    }
}

/// The log event (its first line and the lines after it, up to the next event's timestamp)
/// with `head`, once the server has logged it.
fn event_with(server: &Server, head: &str) -> String {
    let log = server.stderr_with(head);
    let Some(at) = log.find(head) else {
        panic!("no log event with {head:?}:\n{log}");
    };
    let start = log[..at].rfind('\n').map_or(0, |n| n + 1);
    let mut event = String::new();
    for (i, line) in log[start..].lines().enumerate() {
        let next_event = line.len() > 4 && line[..4].bytes().all(|b| b.is_ascii_digit());
        if i > 0 && next_event {
            break;
        }
        event.push_str(line);
        event.push('\n');
    }
    event
}

#[test]
fn a_timeout_is_not_swallowed_by_except_exception_and_its_line_has_the_stack() {
    each_mode(|processes| {
        let server = stacks(processes, &["--threads", "1", "--timeout", "0.5"]);
        let record = Record::new();
        let target = format!("/retrying?secs=60&{}", record.query());
        let (status, body) = server.get(&target);
        assert_eq!(status, 504, "--processes {processes}: {body}");
        // The only thread is free again at once: the retry loop did not catch the exception.
        let started = Instant::now();
        assert_eq!(server.get("/fast"), (200, "fast".into()), "{processes}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "--processes {processes}: the thread came back after {:?}",
            started.elapsed()
        );
        let event = event_with(
            &server,
            &format!(
                "request timed out after 0.5 s; answering 504 and interrupting its thread: \
                 GET {target}, running for 0."
            ),
        );
        assert!(event.contains(" WARN "), "{processes}: {event}");
        // The thread's Python stack, as `traceback` prints it, down to the app's function.
        assert!(
            event.contains("its Python stack, most recent call last:\n  File \""),
            "{processes}: {event}"
        );
        assert!(
            event.contains("stacks_app.py\", line "),
            "{processes}: {event}"
        );
        assert!(
            event.contains(", in retrying_work\n"),
            "{processes}: {event}"
        );
        if processes != "0" {
            // Logged by the worker, which knows its threads.
            assert!(event.contains("worker_pid="), "{processes}: {event}");
        }
        // The exception went up through the application by its name...
        let log = server.stderr_with("wsgi_core.RequestTimeout");
        assert!(
            log.contains("wsgi_core.RequestTimeout"),
            "{processes}:\n{log}"
        );
        // ... and nothing caught it on the way but the handler that names it (imported from
        // the `wsgi_core` module the server registers), which re-raised it.
        let lines = record.lines();
        assert_eq!(record.count("swallowed"), 0, "{processes}: {lines:?}");
        assert_eq!(record.count("cleaned up"), 1, "{processes}: {lines:?}");
        assert!(
            !log.contains("swallowed the request timeout"),
            "{processes}:\n{log}"
        );
    });
}

#[test]
fn sigusr1_logs_each_busy_request_with_its_stack_and_serving_goes_on() {
    each_mode(|processes| {
        let server = stacks(processes, &["--threads", "2"]);
        let record = Record::new();
        let target = format!("/sleeping?secs=3&{}", record.query());
        let addr = server.addr;
        let sleeping = {
            let target = target.clone();
            std::thread::spawn(move || test_support::wire::get(addr, &target))
        };
        record.wait_for("running");
        server.signal("USR1");
        let event = event_with(
            &server,
            &format!("busy Python thread: GET {target}, running for "),
        );
        assert!(event.contains(" INFO "), "{processes}: {event}");
        assert!(
            event.contains("its Python stack, most recent call last:\n  File \""),
            "{processes}: {event}"
        );
        // Sleeping in C: the stack ends on the Python line that called into it.
        assert!(
            event.contains(", in sleeping_view\n"),
            "{processes}: {event}"
        );
        assert!(event.contains("time.sleep(secs)"), "{processes}: {event}");
        let summary = event_with(&server, "1 of 2 Python threads busy");
        if processes != "0" {
            assert!(event.contains("worker_pid="), "{processes}: {event}");
            assert!(summary.contains("worker_pid="), "{processes}: {summary}");
        }
        assert!(
            server
                .stderr()
                .contains("SIGUSR1 received: logging the busy Python threads' stacks"),
            "{processes}"
        );
        // The request and the server went on as if nothing happened.
        let response = sleeping.join().unwrap();
        assert_eq!(
            (response.status, response.text()),
            (200, "slept".into()),
            "{processes}"
        );
        assert_eq!(server.get("/fast"), (200, "fast".into()), "{processes}");
        if processes != "0" {
            // A SIGUSR1 sent to a worker directly (`pkill -USR1`, `systemctl kill`) does not
            // end it: the host asks its workers itself.
            let (_, pid) = server.get("/pid");
            let status = std::process::Command::new("kill")
                .args(["-USR1", &pid])
                .status()
                .expect("run kill");
            assert!(status.success());
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(server.get("/pid"), (200, pid), "{processes}");
            assert!(
                !server.stderr().contains("worker process died"),
                "{processes}:\n{}",
                server.stderr()
            );
        }
    });
}
