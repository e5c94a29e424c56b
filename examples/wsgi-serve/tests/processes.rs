//! `wsgi-serve --processes`: Python in worker processes, end to end over real sockets on both
//! servers. A crash in the application (a segfault in C code, `os._exit`, `abort`) costs the
//! request that was running, which gets 502 as behind gunicorn or Passenger; the worker is
//! replaced, requests waiting in the host's queue are served by the replacement, and the
//! host itself never goes down.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{MISSING_IMPORT_REPORT, alive, apps, children, each_server, serve_app, serve_command};
use test_support::DEADLINE;
use test_support::gate::{Gate, Record};
use test_support::serve::{Server, assert_fails_with, free_port, start};
use test_support::temp::{TempDir, temp_dir};
use test_support::wire::{Conn, Request, send};

/// `wsgi-serve --processes 2` (of two threads each) on `worker_app.py`.
fn workers(server: &str, extra: &[&str]) -> Server {
    let mut options = vec!["--processes", "2"];
    options.extend_from_slice(extra);
    start(serve_app(server, &options, "worker_app.py"))
}

/// Sends one request on its own connection and returns the status and the body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let response = send(addr, &Request::new(method, path).body(body));
    (response.status, response.body)
}

/// The pid of the worker process that answered `/pid`.
fn worker_pid(server: &Server) -> u32 {
    let (status, body) = server.get("/pid");
    assert_eq!(status, 200, "{body}");
    body.split(' ')
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body:?}"))
}

/// Without and with `--preload`: a worker forked from the template crashes and is replaced
/// as one started afresh.
const SPAWN_OR_FORK: [&[&str]; 2] = [&[], &["--preload"]];

#[test]
fn a_crash_costs_its_own_request_and_the_worker_is_replaced() {
    for extra in SPAWN_OR_FORK {
        each_server(|kind| crash_costs_its_own_request(kind, extra));
    }
}

fn crash_costs_its_own_request(kind: &str, extra: &[&str]) {
    let server = workers(kind, extra);
    let (_, body) = server.get("/pid");
    assert!(
        body.ends_with(" True"),
        "wsgi.multiprocess with 2 workers: {body}"
    );
    for (path, death) in [
        ("/segv", "killed by signal 11 (SIGSEGV)"),
        ("/exit", "exit status 3"),
        ("/abort", "killed by signal 6 (SIGABRT)"),
    ] {
        let (status, body) = server.get(path);
        assert_eq!(status, 502, "{kind} {path}: {body}");
        // The other worker, then the replacement, go on serving; nothing is refused.
        for _ in 0..4 {
            let pid = worker_pid(&server);
            assert_ne!(pid, server.pid(), "Python ran in the host");
        }
        // Two lines from two tasks, in either order.
        let request_line = format!("GET {path}: the worker process died while running it");
        server.stderr_with(death);
        let log = server.stderr_with(&request_line);
        assert!(
            log.contains(&format!("worker process died: {death}")),
            "{kind}: the log names the death\n{log}"
        );
        assert!(
            log.contains(&request_line),
            "{kind}: the log names the request\n{log}"
        );
    }
    let log = server.stderr_with("worker process ready");
    assert!(!log.contains("panicked"), "{log}");
    let forked = !extra.is_empty();
    assert!(
        log.contains(&format!("forked={forked}")),
        "{kind}: the start says how the worker began\n{log}"
    );
}

/// `wsgi-serve` with no `--processes` runs one worker process: a segfault costs the request
/// that caused it, and the replacement serves the next one from another pid, never the host's.
#[test]
fn by_default_a_segfault_costs_one_request_and_not_the_server() {
    each_server(|kind| {
        let server = start(serve_app(kind, &[], "worker_app.py"));
        let (_, body) = server.get("/pid");
        assert!(
            body.ends_with(" False"),
            "wsgi.multiprocess with one worker: {body}"
        );
        let first = worker_pid(&server);
        assert_ne!(first, server.pid(), "{kind}: Python ran in the host");
        let (status, body) = server.get("/segv");
        assert_eq!(status, 502, "{kind}: {body}");
        let replacement = worker_pid(&server);
        assert_ne!(replacement, first, "{kind}: the worker was not replaced");
        assert_ne!(replacement, server.pid(), "{kind}: Python ran in the host");
        assert!(
            alive(server.pid()),
            "{kind}: the server died with its worker"
        );
    });
}

#[test]
fn requests_queued_behind_a_crash_are_served_by_the_replacement() {
    for extra in SPAWN_OR_FORK {
        each_server(|kind| queued_behind_a_crash(kind, extra));
    }
}

fn queued_behind_a_crash(kind: &str, extra: &[&str]) {
    let mut options = vec!["--processes", "1"];
    options.extend_from_slice(extra);
    let server = start(serve_app(kind, &options, "worker_app.py"));
    let before = worker_pid(&server);
    let addr = server.addr;
    std::thread::scope(|s| {
        // Both threads of the only worker die with it; `/pid` waits in the host's queue.
        let crashes: Vec<_> = (0..2)
            .map(|_| s.spawn(move || request(addr, "GET", "/crash-later?secs=1.5", b"")))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let queued = s.spawn(move || request(addr, "GET", "/pid", b""));
        for crash in crashes {
            let (status, body) = crash.join().unwrap();
            assert_eq!(status, 502, "{kind}: {}", String::from_utf8_lossy(&body));
        }
        let (status, body) = queued.join().unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{kind}: the queued request was lost: {body}");
        let after: u32 = body.split(' ').next().unwrap().parse().unwrap();
        assert_ne!(after, before, "{kind}: served by the worker that died?");
    });
}

#[test]
fn workers_of_one_thread_read_their_own_requests_and_lose_none_to_a_crash() {
    each_server(|kind| {
        // With one thread a worker takes its requests itself (no intake thread).
        let server = start(serve_app(
            kind,
            &["--processes", "2", "--threads", "1"],
            "worker_app.py",
        ));
        let addr = server.addr;
        std::thread::scope(|s| {
            let crash = s.spawn(move || request(addr, "GET", "/crash-later?secs=1", b""));
            std::thread::sleep(Duration::from_millis(200));
            // More requests than threads: they wait in the host, then go to the other
            // worker or the replacement.
            let others: Vec<_> = (0..8)
                .map(|_| s.spawn(move || request(addr, "GET", "/pid", b"")))
                .collect();
            let (status, body) = crash.join().unwrap();
            assert_eq!(status, 502, "{kind}: {}", String::from_utf8_lossy(&body));
            for other in others {
                let (status, body) = other.join().unwrap();
                assert_eq!(status, 200, "{kind}: {}", String::from_utf8_lossy(&body));
            }
        });
        assert_stops_within(server, Duration::from_secs(2), kind);
    });
}

/// Sends `signal` (a name `kill` knows) to process `pid`.
fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Whether every thread of process `pid` is stopped (state `T` in `/proc`).
fn stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T'))
        })
    })
}

#[test]
fn a_request_handed_to_a_worker_that_dies_before_reading_it_is_served_by_the_replacement() {
    each_server(|kind| {
        let server = start(serve_app(kind, &["--processes", "1"], "worker_app.py"));
        let before = worker_pid(&server);
        // A stopped worker reads nothing: the request the host hands it stays unread in its
        // socket until it is killed. No frame tells the host that; the socket's end does.
        kill("STOP", before);
        // The signal stops each thread as it next runs: wait until all have stopped.
        let deadline = Instant::now() + DEADLINE;
        while !stopped(before) {
            assert!(
                Instant::now() < deadline,
                "{kind}: worker {before} never stopped"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let addr = server.addr;
        let answer = std::thread::spawn(move || request(addr, "GET", "/pid", b""));
        std::thread::sleep(Duration::from_millis(300));
        kill("KILL", before);
        let (status, body) = answer.join().unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{kind}: the unread request was lost: {body}");
        let after: u32 = body.split(' ').next().unwrap().parse().unwrap();
        let log = server.stderr_with("killed by signal 9");
        assert_ne!(
            after, before,
            "{kind}: served by the worker that was killed?\n{log}"
        );
        assert!(!log.contains("died while running it"), "{kind}: {log}");
    });
}

/// A response is complete before its iterable's `close()` is called, and a worker must
/// not hold it back for that call (a generator's `finally:` cleaning up, a framework closing
/// its database connections): in-process, the host has it at once. close() here waits for
/// a gate the test opens only once it has the whole response; a worker that waited for
/// close() would let the test see the response only after the app's gate timed out.
/// A slow client stalls the application in its worker, as in-process: what the host holds
/// for a response is bounded, so a generator blocks in its worker once the client stops
/// reading, and goes on, with nothing lost, once it reads again.
#[test]
fn a_slow_client_stalls_the_generator_in_its_worker() {
    each_server(|kind| {
        let server = workers(kind, &[]);
        let record = Record::new();
        let chunks = 1000;
        let mut conn = Conn::connect(server.addr);
        let request = Request::get(&format!("/many?n={chunks}&{}", record.query()));
        conn.send(&request.to_bytes(server.addr));
        let head = conn.read_head();
        assert_eq!(head.status, 200, "{kind}");
        // The client reads nothing more: the generator must stop, far before its end.
        let yielded = || {
            record
                .lines()
                .iter()
                .filter_map(|l| l.strip_prefix("yielded ")?.parse::<usize>().ok())
                .max()
                .unwrap_or(0)
        };
        let stalled_at = test_support::eventually("the generator to stall", || {
            let before = yielded();
            std::thread::sleep(Duration::from_millis(500));
            let after = yielded();
            (after > 0 && after == before).then_some(after)
        });
        assert!(
            stalled_at < chunks / 2 && record.count("yielded all") == 0,
            "{kind}: the generator ran on to chunk {stalled_at} of {chunks} with nobody reading"
        );
        let body = conn.read_chunked_to_end();
        assert_eq!(body.len(), chunks * 65536, "{kind}");
        assert!(
            body.chunks(65536)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&b| b == (i % 256) as u8)),
            "{kind}: the body arrived out of order"
        );
        record.wait_for("yielded all");
    });
}

#[test]
fn a_complete_response_does_not_wait_for_its_iterables_close() {
    let file = std::fs::read(apps().join("worker_app.py")).unwrap();
    each_server(|kind| {
        let server = start(serve_app(kind, &["--processes", "1"], "worker_app.py"));
        for (variant, status, body) in [
            ("", 200, b"complete body".as_slice()),
            // The application's error: the server's 500, then close().
            ("&raise=1", 500, b"Internal Server Error\n".as_slice()),
            // wsgi.file_wrapper: the file is sent, then its close() called.
            ("&file=1", 200, file.as_slice()),
        ] {
            let gate = Gate::new();
            let record = Record::new();
            let target = format!("/slow-close?{}&{}{variant}", gate.query(), record.query());
            let (got, received) = request(server.addr, "GET", &target, b"");
            assert_eq!(got, status, "{kind} {variant}");
            assert!(received == body, "{kind} {variant}: the body differs");
            // close() has not returned: it waits for the gate.
            let lines = record.lines();
            assert!(
                lines.iter().all(|l| l == "closing"),
                "{kind} {variant}: {lines:?}"
            );
            gate.open();
            record.wait_for("closed");
        }
    });
}

/// A thread still in its iterable's `close()` gets no new request while its worker has idle
/// threads: the host waits for the worker to say the thread is free, not only for the
/// response's end. close() here waits for a gate the test opens only after the other
/// requests are answered; handed to that thread, they would wait until the app's gate timed
/// out, which the record would show.
#[test]
fn a_thread_in_close_takes_no_request_while_others_are_idle() {
    each_server(|kind| {
        let server = start(serve_app(kind, &["--processes", "1"], "worker_app.py"));
        let gate = Gate::new();
        let record = Record::new();
        let target = format!("/slow-close?{}&{}", gate.query(), record.query());
        let (status, body) = request(server.addr, "GET", &target, b"");
        assert_eq!(status, 200, "{kind}: {}", String::from_utf8_lossy(&body));
        record.wait_for("closing");
        // The thread that answered last is the one the host would pick first.
        for _ in 0..4 {
            worker_pid(&server);
        }
        assert_eq!(record.lines(), ["closing"], "{kind}: close() ended early");
        gate.open();
        record.wait_for("closed");
        // Free again, the thread serves as before.
        for _ in 0..4 {
            worker_pid(&server);
        }
    });
}

/// A worker that dies in the iterable's `close()` (a C extension crashing in cleanup) has
/// already handed over the complete response: the client gets it whole, the log blames no
/// response for the death, and a request sent meanwhile, while that thread is still in
/// close() and the other is busy, waits in the host's queue and is served by the replacement.
#[test]
fn a_worker_dying_in_close_leaves_its_complete_response_whole() {
    each_server(|kind| {
        let server = start(serve_app(kind, &["--processes", "1"], "worker_app.py"));
        let addr = server.addr;
        for (round, (variant, status, body)) in [
            ("", 200, "complete body"),
            ("&raise=1", 500, "Internal Server Error\n"),
        ]
        .into_iter()
        .enumerate()
        {
            let before = worker_pid(&server);
            // One of the worker's two threads is kept busy, so what follows goes to the other.
            let hold = Gate::new();
            let holding = Record::new();
            let target = format!("/hold?{}&{}", hold.query(), holding.query());
            let held = std::thread::spawn(move || request(addr, "GET", &target, b""));
            holding.wait_for("holding");
            let dies = Gate::new();
            let target = format!("/die-in-close?{}{variant}", dies.query());
            let (got, received) = request(addr, "GET", &target, b"");
            assert_eq!(got, status, "{kind} {variant}");
            assert_eq!(String::from_utf8_lossy(&received), body, "{kind} {variant}");
            // Both threads are busy (one held, one in close()): this waits in the host's
            // queue; give it time to get there.
            let next = std::thread::spawn(move || request(addr, "GET", "/pid", b""));
            std::thread::sleep(Duration::from_millis(300));
            dies.open();
            let (got, answered) = next.join().unwrap();
            let answered = String::from_utf8_lossy(&answered);
            assert_eq!(got, 200, "{kind} {variant}: {answered}");
            let after: u32 = answered.split(' ').next().unwrap().parse().unwrap();
            assert_ne!(
                after, before,
                "{kind} {variant}: served by the worker that died?"
            );
            // The held request was running when its worker died.
            assert_eq!(held.join().unwrap().0, 502, "{kind} {variant}");
            // The replacement starts once the dead worker's slots have ended, so whatever
            // they logged is in the log by then.
            assert!(
                wait_for_lines(&server, "worker process ready", round + 2),
                "{kind} {variant}\n{}",
                server.stderr()
            );
            let log = server.stderr();
            assert!(
                log.contains("GET /hold: the worker process died while running it"),
                "{kind} {variant}\n{log}"
            );
            assert!(
                !log.contains("GET /die-in-close: the worker process died"),
                "{kind} {variant}: the complete response was reported cut or 502\n{log}"
            );
            assert_eq!(
                count(&log, "worker process died: exit status 7"),
                round + 1,
                "{kind} {variant}\n{log}"
            );
        }
    });
}

#[test]
fn bodies_stream_both_ways_and_the_workers_log_reaches_the_host() {
    each_server(|kind| {
        let server = workers(kind, &[]);
        // Larger than --buffer-body, and than one piece of the spooled body, so it reaches
        // the worker piece by piece; then the same chunked, streamed as it arrives.
        let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (status, echoed) = request(server.addr, "POST", "/echo", &upload);
        assert_eq!(status, 200);
        assert!(echoed == upload, "{kind}: the echo differs");
        let chunked = Request::new("POST", "/echo")
            .body(&upload[..200_000])
            .chunked(7000);
        let response = send(server.addr, &chunked);
        assert_eq!(response.status, 200);
        assert!(
            response.body == upload[..200_000],
            "{kind}: the chunked echo differs"
        );
        let (status, body) = server.get("/stream");
        assert_eq!(status, 200);
        // Streamed: the pieces, in order.
        let mut at = 0;
        for i in 0..5 {
            let piece = format!("piece {i}\n");
            at += body[at..]
                .find(&piece)
                .unwrap_or_else(|| panic!("{kind}: {piece:?} missing in order in {body:?}"));
        }
        let (status, _) = server.get("/note?text=written-in-a-worker");
        assert_eq!(status, 200);
        // The access line names the text too, and may be written first: wait for the
        // wsgi.errors line itself.
        let started = Instant::now();
        let line = loop {
            let log = server.stderr();
            let found = log
                .lines()
                .find(|l| l.contains("written-in-a-worker") && !l.contains("wsgi_core::access"))
                .map(str::to_owned);
            if let Some(line) = found {
                break line;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{kind}: wsgi.errors did not reach the log\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(line.contains("worker_pid="), "{kind}: {line}");
    });
}

#[test]
fn a_timeout_answers_504_and_interrupts_the_thread_in_its_worker() {
    each_server(|kind| {
        let server = workers(kind, &["--timeout", "1"]);
        let (status, _) = server.get("/busy");
        assert_eq!(status, 504, "{kind}");
        // The interrupted thread raised the timeout's exception in its worker process.
        let log = server.stderr_with("wsgi_core.RequestTimeout");
        assert!(log.contains("wsgi_core.RequestTimeout"), "{kind}\n{log}");
        // No worker died for it.
        assert!(!log.contains("worker process died"), "{kind}\n{log}");
        for _ in 0..4 {
            worker_pid(&server);
        }
    });
}

#[test]
fn an_import_error_is_reported_by_the_host_as_without_workers() {
    let mut command = serve_command();
    command.args(["--processes", "2"]).arg("missing_import.py");
    assert_fails_with(command, &MISSING_IMPORT_REPORT);
}

#[test]
fn workers_do_not_outlive_a_killed_host() {
    let mut server = workers("axum", &[]);
    let pids = children(server.pid());
    assert_eq!(pids.len(), 2, "two worker processes: {pids:?}");
    assert!(pids.contains(&worker_pid(&server)), "{pids:?}");
    server.signal("KILL");
    server.wait_exit(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&pid| alive(pid)) {
        assert!(
            Instant::now() < deadline,
            "workers {pids:?} outlived their host"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_count_each_workers_requests_and_restarts() {
    let metrics_bind = format!("127.0.0.1:{}", free_port());
    let server = workers("axum", &["--metrics-bind", &metrics_bind]);
    assert_eq!(server.get("/segv").0, 502);
    worker_pid(&server);
    let scrape = || {
        let (status, body) = request(metrics_bind.parse().unwrap(), "GET", "/metrics", b"");
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    };
    let crashes = |text: &str| -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with("wsgi_worker_restarts_total{") && l.contains("reason=\"crash\"")
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    // The death is counted once the host has reaped the worker, and its replacement is
    // ready a little later.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape();
        let ready = text
            .lines()
            .filter(|l| l.starts_with("wsgi_worker_ready{"))
            .collect::<Vec<_>>();
        if crashes(&text) > 0 && ready.len() == 2 && ready.iter().all(|l| l.ends_with(" 1")) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the dead worker was not replaced:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(crashes(&text), 1, "{text}");
    for worker in ["0", "1"] {
        let ready = format!("wsgi_worker_state{{worker=\"{worker}\",state=\"ready\"}} 1");
        assert!(text.contains(&ready), "{ready}\n{text}");
    }
    let requests: u64 = text
        .lines()
        .filter(|l| l.starts_with("wsgi_worker_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(requests >= 1, "{text}");
}

/// Sends SIGTERM to `server` and asserts that it exits, cleanly, within `limit`.
fn assert_stops_within(mut server: Server, limit: Duration, what: &str) {
    server.signal("TERM");
    let signalled = Instant::now();
    let status = server.wait_exit(DEADLINE);
    let took = signalled.elapsed();
    assert!(
        status.is_some_and(|s| s.success()) && took < limit,
        "{what}: exit {status:?} {took:?} after SIGTERM\n{}",
        server.stderr()
    );
}

/// The value of the unlabelled gauge `name` in a Prometheus scrape of `bind`.
fn gauge(bind: &str, name: &str) -> u64 {
    let (status, body) = request(bind.parse().unwrap(), "GET", "/metrics", b"");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Django leaves a reference cycle through `start_response` whenever it handles an
/// exception inside a request (a 404 page), and the cycle lives until a garbage collection
/// that an idle worker may never run. A worker thread is free when its response is complete
/// and `close()` has returned, whatever the application keeps alive.
#[test]
fn a_reference_cycle_holding_start_response_does_not_hold_its_thread() {
    each_server(|kind| {
        let bind = format!("127.0.0.1:{}", free_port());
        // Two threads each (`start`'s default).
        let options = ["--processes", "2", "--metrics-bind", &bind];
        let server = start(serve_app(kind, &options, "cycle_app.py"));
        for i in 0..50 {
            let (status, body) = server.get("/cycle");
            assert_eq!(status, 200, "{kind}: request {i}: {body}");
        }
        test_support::eventually("wsgi_in_flight 0", || {
            (gauge(&bind, "wsgi_in_flight") == 0).then_some(())
        });
        assert_stops_within(server, Duration::from_secs(1), kind);
    });
}

/// The same with Django itself: its 404 page is an exception handled inside the request.
#[test]
fn django_404_pages_do_not_hold_their_threads() {
    let Some(venv) = test_support::framework_venv("django") else {
        return;
    };
    let venv = venv.to_str().expect("a UTF-8 VIRTUAL_ENV");
    each_server(|kind| {
        let bind = format!("127.0.0.1:{}", free_port());
        let options = ["--processes", "2", "--metrics-bind", &bind, "--venv", venv];
        let site = common::examples_app("django_site.py");
        let server = start(serve_app(kind, &options, site.to_str().unwrap()));
        for i in 0..50 {
            let (status, body) = server.get(&format!("/no-such-page-{i}/"));
            assert_eq!(status, 404, "{kind}: request {i}: {body}");
        }
        test_support::eventually("wsgi_in_flight 0", || {
            (gauge(&bind, "wsgi_in_flight") == 0).then_some(())
        });
        assert_stops_within(server, Duration::from_secs(1), kind);
    });
}

/// The Flask site of `flask.rs` served from worker processes, on both servers: routing,
/// forms, a session cookie signed in one worker and read in another, `send_file` through
/// `wsgi.file_wrapper`, and the app's own error handlers. (`flask.rs` serves it in-process.)
#[test]
fn flask_serves_from_worker_processes() {
    let Some(venv) = test_support::framework_venv("flask") else {
        return;
    };
    let venv = venv.to_str().expect("a UTF-8 VIRTUAL_ENV");
    let site = common::examples_app("flask_site.py");
    each_server(|kind| {
        let server = start(serve_app(
            kind,
            &["--processes", "2", "--venv", venv],
            site.to_str().unwrap(),
        ));
        let (status, body) = server.get("/api/items/42?tag=a&tag=b%20c");
        assert_eq!(status, 200, "{kind}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["name"], "item 42", "{kind}: {body}");
        assert_eq!(
            json["tags"],
            serde_json::json!(["a", "b c"]),
            "{kind}: {body}"
        );

        let form = Request::form("/form", &[("name", "Zoë & co"), ("colour", "red")]);
        let response = send(server.addr, &form);
        assert_eq!(response.status, 200, "{kind}: {response:?}");
        assert_eq!(response.json()["name"], "Zoë & co", "{kind}: {response:?}");

        let login = Request::form("/login", &[("user", "ann"), ("theme", "dark")]);
        let response = send(server.addr, &login);
        assert_eq!(response.status, 302, "{kind}: {response:?}");
        let cookies: Vec<&str> = response
            .header_all("set-cookie")
            .into_iter()
            .filter_map(|c| c.split(';').next())
            .collect();
        let cookie = cookies.join("; ");
        // Several requests, so both workers see the cookie the first one signed.
        for _ in 0..4 {
            let whoami = send(
                server.addr,
                &Request::get("/whoami").header("Cookie", &cookie),
            );
            assert_eq!(whoami.status, 200, "{kind}: {whoami:?}");
            let json = whoami.json();
            assert_eq!(json["user"], "ann", "{kind}: {json}");
            assert_eq!(json["theme"], "dark", "{kind}: {json}");
        }

        let download = send(server.addr, &Request::get("/download"));
        assert_eq!(download.status, 200, "{kind}: {:?}", download.headers);
        let expected: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
        assert!(
            download.body == expected,
            "{kind}: /download's bytes differ"
        );

        let (status, body) = server.get("/boom");
        assert_eq!(status, 500, "{kind}: {body}");
        let (status, body) = server.get("/no-such-page");
        assert_eq!(status, 404, "{kind}: {body}");
    });
}

/// The djdemo Django project of `django.rs` served from worker processes, on both servers:
/// its ORM on SQLite, templates (the admin's login page) and a `FileResponse` through
/// `wsgi.file_wrapper`. (`django.rs` serves it in-process.)
#[test]
fn django_serves_from_worker_processes() {
    let Some(venv) = test_support::framework_venv("django") else {
        return;
    };
    let venv = venv.to_str().expect("a UTF-8 VIRTUAL_ENV");
    each_server(|kind| {
        let options = ["--processes", "2", "--venv", venv];
        let site = common::examples_app("django_site.py");
        let server = start(serve_app(kind, &options, site.to_str().unwrap()));
        let (status, body) = server.get("/api/status/?q=1");
        assert_eq!(status, 200, "{kind}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["framework"], "django", "{kind}: {body}");
        assert_eq!(
            json["query"]["q"],
            serde_json::json!(["1"]),
            "{kind}: {body}"
        );

        let (status, body) = server.get("/admin/login/");
        assert_eq!(status, 200, "{kind}: {body}");
        assert!(
            body.contains("<title>Log in | Django site admin</title>"),
            "{kind}: {body}"
        );

        let download = send(server.addr, &Request::get("/download/"));
        assert_eq!(download.status, 200, "{kind}: {:?}", download.headers);
        assert!(
            download.text().starts_with("0,0\n1,1\n2,4\n"),
            "{kind}: {:?}",
            download.text().get(..100)
        );
    });
}

/// A `start_response`, `write` or `wsgi.input` that the application keeps past its request
/// raises when called: the response it belonged to is over, and in a worker process the
/// socket it would use carries the next request.
#[test]
fn start_response_write_and_input_kept_past_their_request_raise() {
    for processes in ["0", "1"] {
        let options = ["--processes", processes];
        let server = start(serve_app("axum", &options, "cycle_app.py"));
        assert_eq!(server.get("/keep").0, 200);
        let (status, body) = server.get("/call-kept");
        assert_eq!(status, 200, "--processes {processes}: {body}");
        for call in ["start_response", "write"] {
            let expected = format!(
                "{call} RuntimeError: start_response() or write() called after the request ended"
            );
            assert!(
                body.contains(&expected),
                "--processes {processes}: {expected:?} in\n{body}"
            );
        }
        assert!(
            body.contains("read OSError: wsgi.input read after the request ended"),
            "--processes {processes}:\n{body}"
        );
        // The calls reached nothing: the next request is answered as usual.
        assert_eq!(server.get("/cycle").0, 200);
    }
}

// Replacement: restart.txt, SIGHUP, --max-requests, --max-rss, shutdown. Every replacement
// starts the new worker, waits until it is ready, and only then retires the old one, so a
// client sending requests all along sees no failure (gunicorn's SIGHUP and Passenger's
// restart.txt route to workers still importing the app; users report dropped requests).

/// `recycle_app.py` copied into a directory of its own, with a `tmp/` for restart.txt.
fn recycle_dir() -> TempDir {
    let dir = temp_dir("recycle");
    std::fs::copy(
        apps().join("recycle_app.py"),
        dir.path().join("recycle_app.py"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    dir
}

fn recycling(kind: &str, dir: &TempDir, extra: &[&str]) -> Server {
    let mut command: Command = serve_command();
    command
        .args(["--server", kind, "--processes", "2"])
        .args(extra)
        .arg("recycle_app.py")
        .current_dir(dir.path());
    start(command)
}

/// Sends `/pid` again and again from `clients` threads until `done` says stop; returns the
/// pids that answered and the failures.
fn load_while(
    addr: SocketAddr,
    clients: usize,
    done: impl Fn() -> bool + Sync,
) -> (BTreeSet<u32>, Vec<String>) {
    let pids = std::sync::Mutex::new(BTreeSet::new());
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                while !done() {
                    match std::panic::catch_unwind(|| request(addr, "GET", "/pid", b"")) {
                        Ok((200, body)) => {
                            let pid = String::from_utf8_lossy(&body).parse().unwrap_or(0);
                            pids.lock().unwrap().insert(pid);
                        }
                        Ok((status, body)) => failures
                            .lock()
                            .unwrap()
                            .push(format!("{status} {}", String::from_utf8_lossy(&body))),
                        Err(_) => failures.lock().unwrap().push("connection failed".into()),
                    }
                }
            });
        }
    });
    (pids.into_inner().unwrap(), failures.into_inner().unwrap())
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Waits until the log holds `n` lines with `needle`.
fn wait_for_lines(server: &Server, needle: &str, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if count(&server.stderr(), needle) >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

const REPLACED: &str = "worker process replaced";

#[test]
fn touching_restart_txt_replaces_every_worker_without_a_failed_request() {
    each_server(|kind| {
        let dir = recycle_dir();
        let server = recycling(kind, &dir, &[]);
        let before = children(server.pid());
        let started = Instant::now();
        let touched = std::sync::atomic::AtomicBool::new(false);
        let (pids, failures) = load_while(server.addr, 3, || {
            if !touched.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() > Duration::from_millis(500)
            {
                std::fs::write(dir.path().join("tmp/restart.txt"), b"").unwrap();
                touched.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let log = server.stderr();
            count(&log, REPLACED) >= 2 || started.elapsed() > Duration::from_secs(30)
        });
        let log = server.stderr();
        assert_eq!(
            count(&log, REPLACED),
            2,
            "{kind}: both workers replaced\n{log}"
        );
        assert!(log.contains("reason=\"restart_file\""), "{kind}\n{log}");
        assert_eq!(
            failures,
            Vec::<String>::new(),
            "{kind}: requests failed during the restart"
        );
        let after = children(server.pid());
        assert!(
            wait_for_lines(&server, "replaced worker process ended", 2),
            "{kind}\n{log}"
        );
        let after: BTreeSet<u32> = after.difference(&before).copied().collect();
        assert!(
            after.len() >= 2,
            "{kind}: new workers {after:?} (before {before:?})"
        );
        assert!(
            pids.len() >= 3,
            "{kind}: old and new workers answered: {pids:?}"
        );
    });
}

#[test]
fn sighup_replaces_the_workers() {
    let dir = recycle_dir();
    let server = recycling("axum", &dir, &["--no-restart-file"]);
    let before = children(server.pid());
    server.signal("HUP");
    assert!(wait_for_lines(&server, REPLACED, 2), "{}", server.stderr());
    assert!(server.stderr().contains("reason=\"signal\""));
    assert!(wait_for_lines(&server, "replaced worker process ended", 2));
    let after = children(server.pid());
    assert!(before.is_disjoint(&after), "{before:?} then {after:?}");
    assert_eq!(after.len(), 2, "{after:?}");
}

#[test]
fn max_requests_with_jitter_replaces_workers_and_loses_nothing() {
    let dir = recycle_dir();
    let server = recycling(
        "axum",
        &dir,
        &[
            "--max-requests",
            "15",
            "--max-requests-jitter",
            "10",
            "--min-lifetime",
            "0",
        ],
    );
    let served = AtomicU64::new(0);
    let (pids, failures) = load_while(server.addr, 3, || {
        served.fetch_add(1, Ordering::Relaxed) >= 300
    });
    assert_eq!(failures, Vec::<String>::new());
    // Each worker passed its budget (15 to 25 requests) many times over; replacements go one
    // at a time, so they may still be under way when the load ends.
    let replaced = |log: &str| {
        log.lines()
            .filter(|l| l.contains(REPLACED) && l.contains("reason=\"max_requests\""))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while replaced(&server.stderr()) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.stderr();
    assert!(replaced(&log) >= 2, "{log}");
    assert!(pids.len() >= 3, "old and new workers answered: {pids:?}");
    let budgets: BTreeSet<&str> = log
        .lines()
        .filter_map(|l| l.split("max_requests=").nth(1)?.split(' ').next())
        .collect();
    assert!(
        budgets.len() >= 2,
        "the jitter draws budgets per worker: {budgets:?}"
    );
}

/// Resident memory of `pid`, in MiB; 0 once it is gone.
fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|statm| statm.split(' ').nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| (pages * 4096) >> 20)
}

#[test]
fn a_leaking_app_stays_under_max_rss_and_loses_no_request() {
    let dir = recycle_dir();
    let server = recycling("axum", &dir, &["--max-rss", "80", "--min-lifetime", "0"]);
    let mut peak = 0;
    for i in 0..400 {
        let (status, body) = request(server.addr, "GET", "/leak", b"");
        assert_eq!(
            status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&body)
        );
        for pid in children(server.pid()) {
            peak = peak.max(rss_mib(pid));
        }
    }
    let log = server.stderr();
    // 400 MiB leaked over two workers: without the limit each would pass 200 MiB.
    assert!(count(&log, "reason=\"rss\"") >= 4, "{log}");
    // The limit, plus what the requests leak while the worker's report travels to the host
    // (a few milliseconds, longer on a loaded machine).
    assert!(peak <= 80 + 40, "a worker reached {peak} MiB\n{log}");
}

#[test]
fn a_leaking_app_stays_bounded_under_max_requests() {
    let dir = recycle_dir();
    let server = recycling(
        "axum",
        &dir,
        &["--max-requests", "20", "--min-lifetime", "0"],
    );
    let mut peak = 0;
    for i in 0..400 {
        let (status, _) = request(server.addr, "GET", "/leak", b"");
        assert_eq!(status, 200, "request {i}");
        for pid in children(server.pid()) {
            peak = peak.max(rss_mib(pid));
        }
    }
    // A worker leaks 1 MiB per request it serves: without recycling each would pass
    // 200 MiB here; with it, about its interpreter plus 20 MiB.
    assert!(
        peak < 100,
        "a worker reached {peak} MiB\n{}",
        server.stderr()
    );
    assert!(count(&server.stderr(), "reason=\"max_requests\"") >= 4);
}

/// The sum of `wsgi_worker_restarts_total` for `reason` in a `/metrics` text.
fn restarts(metrics: &str, reason: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("wsgi_worker_restarts_total{")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn max_requests_replaces_a_leaking_worker_in_its_first_seconds_with_the_default_min_lifetime() {
    // Issue 21: 500 requests at 100/s to one worker with `--max-requests 100` all went to
    // one pid (+502 MiB), the 10 s minimum lifetime holding the request limit back; gunicorn
    // used six pids (+9.5 MiB). Here at 200/s, so the whole run fits in a worker's first 10 s.
    let dir = recycle_dir();
    let metrics_bind = format!("127.0.0.1:{}", free_port());
    let mut command = serve_command();
    command
        .args(["--processes", "1", "--max-requests", "100"])
        .args(["--metrics-bind", &metrics_bind])
        .arg("recycle_app.py")
        .current_dir(dir.path());
    let server = start(command);
    let first = children(server.pid());
    assert_eq!(first.len(), 1, "{first:?}");
    let baseline = rss_mib(*first.first().unwrap());
    assert!(baseline > 0);
    let (mut pids, mut failures, mut peak) = (BTreeSet::new(), Vec::new(), 0);
    let started = Instant::now();
    for i in 0..500 {
        // Paced: a request waits for its turn, and after a replacement the next ones catch up.
        let turn = started + Duration::from_millis(5) * i;
        std::thread::sleep(turn.saturating_duration_since(Instant::now()));
        let (status, body) = request(server.addr, "GET", "/leak", b"");
        let body = String::from_utf8_lossy(&body);
        match body.parse::<u32>() {
            Ok(pid) if status == 200 => {
                pids.insert(pid);
                peak = peak.max(rss_mib(pid));
            }
            _ => failures.push(format!("request {i}: {status} {body}")),
        }
    }
    let elapsed = started.elapsed();
    let (status, metrics) = request(metrics_bind.parse().unwrap(), "GET", "/metrics", b"");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    assert_eq!(failures, Vec::<String>::new(), "{}", server.stderr());
    // Requests 1-100 on the first worker, 101-200 on the second, ...: five pids.
    assert!(
        pids.len() >= 5,
        "{} pids in {elapsed:?}: {pids:?}\n{}",
        pids.len(),
        server.stderr()
    );
    assert!(restarts(&metrics, "max_requests") >= 4, "{metrics}");
    // A worker keeps at most its 100 MiB, not the run's 500.
    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < 150,
        "a worker grew by {growth} MiB ({baseline} -> {peak}) in {elapsed:?}"
    );
}

#[test]
fn a_worker_over_max_rss_right_after_start_up_is_not_replaced_in_a_loop() {
    // The app keeps 64 MiB from its import; each new worker is over 40 MiB at once. With no
    // minimum lifetime it was replaced at every check, a few times a second; now the second
    // start over the limit is reported and the next replacements wait 2 s, then 4 s, ...
    let metrics_bind = format!("127.0.0.1:{}", free_port());
    let options = [
        "--processes",
        "1",
        "--max-rss",
        "40",
        "--min-lifetime",
        "0",
        "--metrics-bind",
        &metrics_bind,
    ];
    let server = start(serve_app("axum", &options, "big_start_app.py"));
    let (mut pids, mut failures) = (BTreeSet::new(), Vec::new());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let (status, body) = request(server.addr, "GET", "/", b"");
        let body = String::from_utf8_lossy(&body);
        match body.parse::<u32>() {
            Ok(pid) if status == 200 => {
                pids.insert(pid);
            }
            _ => failures.push(format!("{status} {body}")),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, metrics) = request(metrics_bind.parse().unwrap(), "GET", "/metrics", b"");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    let log = server.stderr();
    assert_eq!(failures, Vec::<String>::new(), "{log}");
    // The first worker at once, the second after 2 s, the third after 4 s more.
    let replaced = restarts(&metrics, "rss");
    assert!((1..=3).contains(&replaced), "{replaced} in 6 s\n{log}");
    assert!(pids.len() >= 2, "{pids:?}");
    assert_eq!(
        count(&log, "right after start-up, over max_rss 40 MiB"),
        1,
        "reported once\n{log}"
    );
}

#[test]
fn a_replacement_that_fails_to_import_leaves_the_old_worker_serving() {
    let dir = recycle_dir();
    let server = recycling("axum", &dir, &[]);
    let before = children(server.pid());
    // A deploy that breaks the import, then the restart.
    let app = dir.path().join("recycle_app.py");
    let code = std::fs::read_to_string(&app).unwrap();
    std::fs::write(
        &app,
        format!("import wsgi_no_such_module_for_the_test\n{code}"),
    )
    .unwrap();
    std::fs::write(dir.path().join("tmp/restart.txt"), b"").unwrap();
    assert!(
        wait_for_lines(&server, "the replacement worker process failed to start", 1),
        "{}",
        server.stderr()
    );
    let log = server.stderr();
    assert!(
        log.contains("wsgi_no_such_module_for_the_test"),
        "the import error is logged\n{log}"
    );
    for _ in 0..6 {
        let pid = worker_pid(&server);
        assert!(
            before.contains(&pid),
            "{pid} is not one of the old workers {before:?}"
        );
    }
}

/// A stop is not a failed start: SIGTERM while a SIGHUP's replacement still imports the
/// application stops the replacement at once, says so without an ERROR, and exits.
#[test]
fn sigterm_during_a_roll_stops_it_without_an_error() {
    let mut command = serve_app("axum", &["--processes", "2"], "slow_import_app.py");
    command.env("SLOW_IMPORT_SECS", "3");
    let server = start(command);
    server.signal("HUP");
    server.stderr_with("replacing the worker process");
    // Well inside the replacement's import.
    std::thread::sleep(Duration::from_millis(300));
    let log = server.stderr();
    assert_stops_within(server, Duration::from_secs(1), "a roll under way");
    assert!(!log.contains(" ERROR "), "{log}");
}

/// With `--grace` shorter than a request, the request is abandoned at the end of the grace
/// period as in-process: the client has its answer then (a 503: the server stopped before
/// the application answered), not when the application would have finished, and serve
/// exits without waiting for it. Nothing is logged as an application or worker failure.
#[test]
fn a_request_longer_than_the_grace_is_abandoned_at_its_end() {
    each_server(|kind| {
        let mut server = workers(kind, &["--grace", "1s"]);
        let addr = server.addr;
        std::thread::scope(|s| {
            let client = s.spawn(move || {
                let sent = Instant::now();
                let outcome =
                    std::panic::catch_unwind(|| request(addr, "GET", "/block?secs=6", b"").0);
                (outcome.ok(), sent.elapsed())
            });
            // Time for the request to reach its worker.
            std::thread::sleep(Duration::from_millis(500));
            server.signal("TERM");
            let signalled = Instant::now();
            let status = server.wait_exit(DEADLINE);
            let took = signalled.elapsed();
            let (status_code, answered) = client.join().unwrap();
            let log = server.stderr();
            assert!(
                status.is_some_and(|s| s.success()) && took < Duration::from_secs(3),
                "{kind}: exit {status:?} {took:?} after SIGTERM\n{log}"
            );
            assert!(
                matches!(status_code, None | Some(503)) && answered < Duration::from_secs(4),
                "{kind}: the client got {status_code:?} after {answered:?}\n{log}"
            );
            assert!(!log.contains(" ERROR "), "{kind}:\n{log}");
        });
    });
}

#[test]
fn workers_run_their_atexit_handlers_when_serve_stops() {
    let dir = recycle_dir();
    let mut server = recycling("axum", &dir, &[]);
    let pids = children(server.pid());
    assert_eq!(pids.len(), 2);
    worker_pid(&server);
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("serve exits");
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    for pid in pids {
        assert!(
            dir.path().join(format!("atexit-{pid}")).exists(),
            "worker {pid} did not run its atexit handlers\n{}",
            server.stderr()
        );
    }
}

#[test]
fn max_lifetime_replaces_a_worker_that_served_nothing() {
    let dir = recycle_dir();
    let server = recycling(
        "axum",
        &dir,
        &[
            "--max-lifetime",
            "1",
            "--max-lifetime-jitter",
            "500ms",
            "--min-lifetime",
            "0",
        ],
    );
    assert!(
        wait_for_lines(&server, "reason=\"lifetime\"", 2),
        "{}",
        server.stderr()
    );
    worker_pid(&server);
}

#[test]
fn a_thread_stuck_past_its_timeout_gets_its_worker_replaced() {
    let server = workers("axum", &["--timeout", "1"]);
    let (status, _) = server.get("/block?secs=60");
    assert_eq!(status, 504);
    // The thread sleeps in C and ignores RequestTimeout; its capacity comes back with a new
    // worker, while the old one is left to finish (and killed after the drain grace).
    assert!(
        wait_for_lines(&server, "reason=\"timeout\"", 1),
        "{}",
        server.stderr()
    );
    assert!(wait_for_lines(&server, REPLACED, 1), "{}", server.stderr());
    // The stuck line, written by the worker, says where the thread is blocked.
    let head = "ignored the timeout's wsgi_core.RequestTimeout (blocked in C code?); the other \
                threads keep serving: GET /block?secs=60, running for ";
    let log = server.stderr_with(head);
    let at = log
        .find(head)
        .unwrap_or_else(|| panic!("no stuck line:\n{log}"));
    let stuck = &log[at..];
    assert!(
        stuck.contains(", in application\n    time.sleep(float(query.get(\"secs\", \"30\")))"),
        "{stuck}"
    );
    assert!(
        log[..at]
            .lines()
            .last()
            .is_some_and(|l| l.contains("ERROR")),
        "{log}"
    );
    for _ in 0..4 {
        worker_pid(&server);
    }
}

#[test]
fn always_restart_txt_gives_each_request_a_fresh_worker() {
    let dir = recycle_dir();
    let server = recycling("axum", &dir, &[]);
    std::fs::write(dir.path().join("tmp/always_restart.txt"), b"").unwrap();
    // Noticed within a second; from then on each worker is replaced after its request.
    std::thread::sleep(Duration::from_millis(1500));
    let pids: Vec<u32> = (0..4).map(|_| worker_pid(&server)).collect();
    let distinct: BTreeSet<u32> = pids[1..].iter().copied().collect();
    assert_eq!(distinct.len(), 3, "a fresh worker per request: {pids:?}");
    assert!(server.stderr().contains("reason=\"always_restart\""));
    std::fs::remove_file(dir.path().join("tmp/always_restart.txt")).unwrap();
}

#[test]
fn a_worker_that_never_finishes_importing_is_killed_after_the_start_timeout() {
    let mut command = serve_command();
    command
        .args(["--processes", "1", "--start-timeout", "1"])
        .arg("slow_import.py");
    let started = Instant::now();
    assert_fails_with(
        command,
        &["did not load the application within 1 s", "--start-timeout"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "serve waited for the import"
    );
}
