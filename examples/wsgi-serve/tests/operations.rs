//! `wsgi-serve`'s operational options, end to end over real sockets: request timeout, body buffering, metrics
//! endpoint, JSON logs, and graceful shutdown under load — on both servers.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{each_server, serve_app};
use test_support::gate::Record;
use test_support::h2::h2_request;
use test_support::serve::{Server, free_port, start};
use test_support::wire::{Conn, Request, Response, get};

fn ops(server: &str, extra: &[&str]) -> Server {
    start(serve_app(server, extra, "ops_app.py"))
}

#[test]
fn timeout_answers_504_and_the_thread_serves_again() {
    each_server(|kind| {
        let server = ops(kind, &["--timeout", "0.3"]);
        let (status, _) = server.get("/busy");
        assert_eq!(status, 504, "{kind}");
        assert_eq!(server.get("/fast"), (200, "done /fast".into()), "{kind}");
    });
}

#[test]
fn metrics_are_served_as_prometheus_text() {
    each_server(|kind| {
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        let server = ops(kind, &["--metrics-bind", &bind]);
        for _ in 0..2 {
            assert_eq!(server.get("/fast").0, 200);
        }
        let mut response = None;
        // The counters settle just after the responses: poll until they do.
        for _ in 0..100 {
            let scraped = get(bind.parse().unwrap(), "/metrics");
            let metrics = scraped.text();
            response = Some(scraped);
            if metrics.contains("wsgi_responses_total{class=\"2xx\"} 2")
                && metrics.contains("wsgi_threads{state=\"idle\"} 2")
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let response = response.expect("a scrape");
        assert_eq!(
            (response.version.as_str(), response.status),
            ("HTTP/1.1", 200),
            "{kind}: {response:?}"
        );
        let metrics = response.text();
        assert!(
            metrics.contains("wsgi_responses_total{class=\"2xx\"} 2"),
            "{kind}: {metrics}"
        );
        assert!(
            metrics.contains("wsgi_threads{state=\"idle\"} 2"),
            "{kind}: {metrics}"
        );
    });
}

#[test]
fn json_logs_carry_the_access_line() {
    let server = ops("axum", &["--log-format", "json"]);
    assert_eq!(server.get("/fast?x=1").0, 200);
    let mut line = None;
    for _ in 0..100 {
        line = server
            .stderr()
            .lines()
            .find(|l| l.contains("wsgi_core::access"))
            .map(str::to_owned);
        if line.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = line.expect("an access line in the log");
    let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    let message = event["fields"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("GET /fast?x=1 200 "), "{line}");
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    each_server(|kind| {
        let mut server = ops(kind, &["--grace", "20"]);
        let addr = server.addr;
        let record = Record::new();
        let target = format!("/slow?secs=1&{}", record.query());
        let in_flight = std::thread::spawn(move || get(addr, &target));
        // The signal must come while the application is running the request.
        record.wait_for("running");
        server.signal("TERM");
        let response = in_flight.join().unwrap();
        assert_eq!(
            (response.version.as_str(), response.status),
            ("HTTP/1.1", 200),
            "{kind}: {response:?}\n{}",
            server.stderr()
        );
        assert_eq!(response.text(), "done /slow", "{kind}: {response:?}");
        // A new connection after the signal is not served.
        assert!(
            Conn::try_connect(addr).map_or(true, |mut conn| {
                let _ = conn.try_send(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n");
                conn.try_read_head().is_none_or(|head| head.status != 200)
            }),
            "{kind}: served a request after SIGTERM"
        );
        let status = server
            .wait_exit(Duration::from_secs(20))
            .expect("serve exits after draining");
        assert!(status.success(), "{kind}: {status}\n{}", server.stderr());
    });
}

/// Starts `POST /slow?secs=0` declaring a 1000-byte body, sends 10 bytes of it and returns
/// the status line `wsgi-serve` answers with (version and code), and whether the app ran.
fn stalled_upload(server: &Server) -> (String, bool) {
    let record = Record::new();
    let mut conn = Conn::connect(server.addr);
    conn.send(
        format!(
            "POST /slow?secs=0&{} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789",
            record.query()
        )
        .as_bytes(),
    );
    let head = conn.read_head();
    (
        format!("{} {}", head.version, head.status),
        !record.lines().is_empty(),
    )
}

#[test]
fn buffer_body_decides_whether_the_app_waits_for_a_small_body() {
    each_server(|kind| {
        // Buffered (the default): the app never runs; the body timeout answers 408.
        let server = ops(kind, &["--body-timeout", "0.3"]);
        let (head, ran) = stalled_upload(&server);
        assert_eq!(head, "HTTP/1.1 408", "{kind}");
        assert!(!ran, "{kind}: the app ran before its body arrived");
        // Streamed: the app runs at once and answers without reading the body.
        let server = ops(kind, &["--body-timeout", "0.3", "--buffer-body", "0"]);
        let (head, ran) = stalled_upload(&server);
        assert_eq!(head, "HTTP/1.1 200", "{kind}");
        assert!(ran, "{kind}: the app did not run");
    });
}

/// The scheduling policy of each thread of `pid` and of its child processes (the worker
/// processes), by thread name (Linux `/proc`).
#[cfg(target_os = "linux")]
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let children = task
            .as_ref()
            .ok()
            .and_then(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            out.extend(thread_policies(child));
        }
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name; `policy` is field 41 of the whole line.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let policy = rest.split(' ').nth(41 - 3).and_then(|p| p.parse().ok());
        if let Some(policy) = policy {
            out.push((name.trim().to_owned(), policy));
        }
    }
    out
}

#[cfg(target_os = "linux")]
#[test]
fn sched_sets_the_policy_of_every_thread_and_python_threads_are_always_batch() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    for (option, io_policy, processes) in [
        ("batch", SCHED_BATCH, "0"),
        ("normal", SCHED_OTHER, "0"),
        ("batch", SCHED_BATCH, "1"),
        ("normal", SCHED_OTHER, "1"),
    ] {
        let server = ops("axum", &["--sched", option, "--processes", processes]);
        assert_eq!(server.get("/fast").0, 200);
        let threads = thread_policies(server.pid());
        let python: Vec<_> = threads
            .iter()
            .filter(|(n, _)| n.starts_with("wsgi-python"))
            .collect();
        assert!(!python.is_empty(), "{threads:?}");
        assert!(
            python.iter().all(|(_, p)| *p == SCHED_BATCH),
            "{option}, --processes {processes}: {threads:?}"
        );
        let others: Vec<_> = threads
            .iter()
            .filter(|(n, _)| !n.starts_with("wsgi-python"))
            .collect();
        assert!(!others.is_empty(), "{threads:?}");
        assert!(
            others.iter().all(|(_, p)| *p == io_policy),
            "{option}, --processes {processes}: {threads:?}"
        );
    }
}

/// The value of the sample `name` in the Prometheus text served at `addr`.
fn metric(addr: &str, name: &str) -> Option<f64> {
    let addr: SocketAddr = addr.parse().ok()?;
    let mut conn = Conn::try_connect(addr).ok()?;
    conn.try_send(&Request::get("/metrics").to_bytes(addr))
        .ok()?;
    let text = conn.read_response("GET").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Whether `stderr` has a line with every one of `words`.
fn has_line(stderr: &str, words: &[&str]) -> bool {
    stderr.lines().any(|l| words.iter().all(|w| l.contains(w)))
}

/// A stderr that nobody reads stops taking lines once its pipe is full. Requests go on
/// being answered all the same (before the log was written from its own thread, the I/O
/// thread blocked in `write(2)` and the server stopped answering); the lines that did not fit
/// are counted in the metrics, and reported in the log once stderr is read again and at exit.
#[cfg(unix)]
#[test]
fn a_stalled_stderr_never_holds_requests_up_and_dropped_lines_are_counted() {
    each_server(|kind| {
        let metrics_bind = format!("127.0.0.1:{}", free_port());
        let (reader, writer) = std::io::pipe().expect("a pipe");
        let mut command: Command = serve_app(
            kind,
            &["--log-buffer", "4", "--metrics-bind", &metrics_bind],
            "ops_app.py",
        );
        command.stderr(writer);
        let mut server = start(command);
        // Long targets make long access lines: 300 of them are about 600 KiB, far more
        // than the pipe, the writer's buffer and four queued lines hold.
        let target = format!("/fast?pad={}", "x".repeat(2000));
        for i in 0..300 {
            let (status, body) = server.get(&target);
            assert_eq!(
                (status, body.as_str()),
                (200, "done /fast"),
                "{kind}: request {i}"
            );
        }
        let dropped = metric(&metrics_bind, "wsgi_log_lines_dropped_total").unwrap_or(0.0);
        assert!(dropped > 0.0, "{kind}: no dropped lines counted");

        // Read stderr again: the log says how many lines it lost.
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let drain = std::thread::spawn(move || {
            let mut reader = reader;
            let mut buf = vec![0; 64 * 1024];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        for _ in 0..200 {
            if has_line(&log.lock().unwrap(), &["log lines dropped", "total="]) {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        server.signal("TERM");
        let status = server
            .wait_exit(Duration::from_secs(20))
            .expect("serve exits");
        assert!(status.success(), "{kind}: {status}");
        drain.join().unwrap();
        let log = log.lock().unwrap();
        assert!(
            has_line(&log, &["WARN", "log lines dropped", "total="]),
            "{kind}: no report of dropped lines in the log:\n{log}"
        );
        assert!(
            has_line(&log, &["log lines were dropped in all"]),
            "{kind}: no count of dropped lines at exit:\n{log}"
        );
    });
}

/// `GET /fast` on a keep-alive connection.
const KEEP_ALIVE_FAST: &[u8] = b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n";

/// Sends `GET /fast` on the kept-alive `conn` and reads the response; `None` if the server
/// closed the connection instead.
fn fast_again(conn: &mut Conn) -> Option<Response> {
    if conn.try_send(KEEP_ALIVE_FAST).is_err() || conn.closed() {
        return None;
    }
    Some(conn.read_response("GET"))
}

/// After SIGTERM no new request starts, even on a keep-alive connection that was open
/// before; the request in flight finishes with `Connection: close`, and the process exits
/// once it is done instead of serving open connections until `--grace` ends (actix-web
/// before 4.14.1 / actix-http 3.13.3 went on serving them; hyper never did).
#[test]
fn sigterm_ends_keep_alive_connections_and_exits_after_the_last_response() {
    each_server(|kind| {
        let mut server = ops(kind, &["--grace", "60"]);
        let addr = server.addr;
        // An open keep-alive connection, idle between requests.
        let mut idle = Conn::connect(addr);
        let first = fast_again(&mut idle).expect("a first response");
        assert_eq!(
            (first.version.as_str(), first.status),
            ("HTTP/1.1", 200),
            "{kind}: {first:?}"
        );

        // A keep-alive request in flight when the signal comes.
        let record = Record::new();
        let mut busy = Conn::connect(addr);
        busy.send(
            format!(
                "GET /slow?secs=1.5&{} HTTP/1.1\r\nHost: t\r\n\r\n",
                record.query()
            )
            .as_bytes(),
        );
        record.wait_for("running");
        server.signal("TERM");
        for _ in 0..400 {
            if server.stderr().contains("draining") {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }

        // The idle connection is closed: a request sent on it may still be read by a
        // server that has not yet seen the signal, but within a few tries it is refused.
        let mut served_after_signal = 0;
        let closed = (0..30).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            match fast_again(&mut idle) {
                Some(_) => {
                    served_after_signal += 1;
                    false
                }
                None => true,
            }
        });
        assert!(
            closed,
            "{kind}: {served_after_signal} requests served on a kept-alive connection after \
             SIGTERM\n{}",
            server.stderr()
        );

        // The request in flight completes, told that the connection closes, and then it does.
        let response = busy.read_response("GET");
        assert_eq!(
            (response.version.as_str(), response.status),
            ("HTTP/1.1", 200),
            "{kind}: {response:?}"
        );
        assert_eq!(response.text(), "done /slow", "{kind}");
        assert_eq!(
            response
                .header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("close"),
            "{kind}: the in-flight response does not say the connection closes: {response:?}"
        );
        assert!(busy.closed(), "{kind}: bytes after the in-flight response");

        // Nothing is left to wait for: the process exits long before `--grace` ends.
        let status = server
            .wait_exit(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{kind}: still running\n{}", server.stderr()));
        assert!(status.success(), "{kind}: {status}\n{}", server.stderr());
    });
}

/// `GET target` with `headers`: the response's status and body.
fn exchange(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let response = test_support::wire::send(addr, &Request::get(target).headers(headers));
    (response.status, response.text())
}

/// The README promises HTTP/1.1 and HTTP/2 with prior knowledge on `--bind`, whichever
/// server hosts the app (actix-web's `listen` speaks HTTP/1 only; `wsgi-serve` uses
/// `listen_auto_h2c`, as axum's server detects the HTTP/2 preface itself).
#[test]
fn the_bind_address_speaks_http_1_1_and_h2c() {
    each_server(|kind| {
        let server = ops(kind, &[]);
        assert_eq!(server.get("/fast"), (200, "done /fast".into()), "{kind}");
        let response = h2_request(server.addr, "/fast", None, None);
        let body = String::from_utf8_lossy(&response.body);
        assert_eq!(
            (
                format!("{:?}", response.version).as_str(),
                response.status,
                body.as_ref()
            ),
            ("HTTP/2.0", 200, "done /fast"),
            "{kind}"
        );
    });
}

/// `--mount PREFIX`: the app is served under the prefix only, with it as `SCRIPT_NAME`, and
/// other paths get 404; `--trusted-proxy` makes the forwarding headers of that peer count.
#[test]
fn mount_and_trusted_proxy_reach_the_engine() {
    each_server(|kind| {
        let server = ops(kind, &["--mount", "/py", "--trusted-proxy", "127.0.0.1"]);
        let get = |target: &str, headers: &[(&str, &str)]| exchange(server.addr, target, headers);
        let (status, body) = get("/py/where", &[]);
        assert_eq!(
            (status, body.as_str()),
            (200, "/py|/where|127.0.0.1|http"),
            "{kind}"
        );
        for outside in ["/where", "/pyx/where", "/"] {
            assert_eq!(get(outside, &[]).0, 404, "{kind}: {outside}");
        }
        let forwarded = [
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
        ];
        let (status, body) = get("/py/where", &forwarded);
        assert_eq!(
            (status, body.as_str()),
            (200, "/py|/where|203.0.113.7|https"),
            "{kind}"
        );
    });
}

/// The access line is `METHOD URI STATUS BYTES bytes DURATION ms PEER`, as the README says,
/// and `--log-level warn` turns it off (the app's WARN line written after the request is
/// there, the request's access line is not).
#[test]
fn the_access_line_has_the_documented_format_and_warn_turns_it_off() {
    each_server(|kind| {
        let server = ops(kind, &[]);
        let mut conn = Conn::connect(server.addr);
        let peer = conn.local_addr();
        conn.send(&Request::get("/fast?x=1").to_bytes(server.addr));
        let response = conn.read_response("GET");
        assert_eq!(response.text(), "done /fast", "{kind}: {response:?}");
        let log = server.stderr_with("GET /fast?x=1");
        let line = log
            .lines()
            .find(|l| l.contains("wsgi_core::access") && l.contains("GET /fast?x=1"))
            .unwrap_or_else(|| panic!("{kind}: no access line in\n{log}"));
        let message = line.split("wsgi_core::access: ").nth(1).unwrap_or_default();
        let fields: Vec<&str> = message.split(' ').collect();
        assert_eq!(fields.len(), 8, "{kind}: {line}");
        assert_eq!(
            (
                fields[0], fields[1], fields[2], fields[3], fields[4], fields[6]
            ),
            ("GET", "/fast?x=1", "200", "10", "bytes", "ms"),
            "{kind}: {line}"
        );
        assert!(fields[5].parse::<f64>().is_ok(), "{kind}: {line}");
        assert_eq!(fields[7], peer.to_string(), "{kind}: {line}");

        let server = ops(kind, &["--log-level", "warn"]);
        assert_eq!(server.get("/fast?quiet=1").0, 200, "{kind}");
        assert_eq!(server.get("/note?text=after-the-request").0, 200, "{kind}");
        let log = server.stderr_with("after-the-request");
        assert!(log.contains("after-the-request"), "{kind}: {log}");
        assert!(!log.contains("wsgi_core::access"), "{kind}: {log}");
    });
}

/// A second SIGTERM or Ctrl-C during the grace period cuts the wait short: the request still
/// running is cut (its client does not get the whole response) and `wsgi-serve` exits 0 long
/// before the request, or the grace period, would have ended.
#[test]
fn a_second_signal_cuts_the_wait_short() {
    each_server(|kind| {
        let mut server = ops(kind, &["--grace", "120"]);
        let record = Record::new();
        let mut busy = Conn::connect(server.addr);
        busy.send(
            &Request::get(&format!("/slow?secs=100&{}", record.query())).to_bytes(server.addr),
        );
        record.wait_for("running");
        server.signal("TERM");
        let log = server.stderr_with("draining");
        assert!(log.contains("draining"), "{kind}: {log}");
        server.signal("INT");
        let status = server
            .wait_exit(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{kind}: still running\n{}", server.stderr()));
        assert!(status.success(), "{kind}: {status}\n{}", server.stderr());
        let response = String::from_utf8_lossy(&busy.read_to_end()).into_owned();
        assert!(
            !response.contains("done /slow"),
            "{kind}: the request ran to its end: {response:?}"
        );
    });
}

/// A client's malformed request line, URI or header gets 400 from actix-web, which used to
/// log `ERROR actix_http::h1::dispatcher: stream error: ...` without the peer: the client's
/// mistake read as the server's. It is a DEBUG line under `wsgi_serve::client` now, naming the
/// peer, and the server goes on serving.
#[test]
fn a_malformed_request_to_actix_is_logged_at_debug_with_its_peer_never_as_an_error() {
    let server = ops("actix", &["--log-level", "info,wsgi_serve::client=debug"]);
    let malformed: [&[u8]; 3] = [
        b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /fast HTTP/1.1\r\nHost: x\r\nNo Colon Here\r\n\r\n",
    ];
    let mut peers = Vec::new();
    for request in malformed {
        let mut conn = Conn::connect(server.addr);
        peers.push(conn.local_addr().to_string());
        conn.send(request);
        assert_eq!(
            conn.read_head().status,
            400,
            "{:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(server.get("/fast"), (200, "done /fast".into()));
    for peer in &peers {
        let log = server.stderr_with(peer);
        assert!(
            has_line(&log, &["DEBUG", "wsgi_serve::client", "client error", peer]),
            "no DEBUG line naming {peer}:\n{log}"
        );
    }
    let log = server.stderr();
    assert!(
        !log.lines().any(|l| l.contains(" ERROR ")),
        "a client's mistake logged as an ERROR:\n{log}"
    );
}
