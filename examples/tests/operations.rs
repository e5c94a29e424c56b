//! `serve`'s operational options, end to end over real sockets: request timeout, body buffering, metrics
//! endpoint, JSON logs, and graceful shutdown under load — on both servers.

mod serve_process;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use serve_process::{Server, TempDir, serve_command, start};

fn ops(server: &str, extra: &[&str]) -> Server {
    let mut command: Command = serve_command();
    command
        .args(["--server", server])
        .args(extra)
        .arg("ops_app.py");
    command.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps"));
    start(command)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn each_server(test: impl Fn(&str)) {
    for server in ["axum", "actix"] {
        test(server);
    }
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
        let mut metrics = String::new();
        // The counters settle just after the responses: poll until they do.
        for _ in 0..100 {
            let mut s = TcpStream::connect(&bind).expect("metrics listener");
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            metrics.clear();
            s.read_to_string(&mut metrics).unwrap();
            if metrics.contains("wsgi_responses_total{class=\"2xx\"} 2")
                && metrics.contains("wsgi_threads{state=\"idle\"} 2")
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(metrics.starts_with("HTTP/1.1 200"), "{kind}: {metrics}");
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
        let mark = std::env::temp_dir().join(format!("ops-inflight-{kind}-{}", std::process::id()));
        let _ = std::fs::remove_file(&mark);
        let target = format!("/slow?secs=1&mark={}", mark.display());
        let in_flight = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            write!(
                s,
                "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        });
        // The signal must come while the application is running the request.
        for _ in 0..400 {
            if mark.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        assert!(
            mark.exists(),
            "{kind}: the request never reached the app\n{}",
            server.stderr()
        );
        let _ = std::fs::remove_file(&mark);
        server.signal("TERM");
        let response = in_flight.join().unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{kind}: {response:?}\n{}",
            server.stderr()
        );
        assert!(response.ends_with("done /slow"), "{kind}: {response:?}");
        // A new connection after the signal is not served.
        assert!(
            TcpStream::connect(addr).map_or(true, |mut s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = write!(s, "GET /fast HTTP/1.1\r\nHost: t\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                !out.starts_with("HTTP/1.1 200")
            }),
            "{kind}: served a request after SIGTERM"
        );
        let status = server
            .wait_exit(Duration::from_secs(20))
            .expect("serve exits after draining");
        assert!(status.success(), "{kind}: {status}\n{}", server.stderr());
    });
}

/// Starts `POST /slow?secs=0&mark=...` declaring a 1000-byte body, sends 10 bytes of it
/// and returns the status `serve` answers with, and whether the app ran.
fn stalled_upload(server: &Server, dir: &TempDir) -> (String, bool) {
    let mark = dir.path().join("ran");
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /slow?secs=0&mark={} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789",
        mark.display()
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    (String::from_utf8_lossy(&head).into_owned(), mark.exists())
}

#[test]
fn buffer_body_decides_whether_the_app_waits_for_a_small_body() {
    each_server(|kind| {
        let dir = TempDir::new("buffer-body");
        // Buffered (the default): the app never runs; the body timeout answers 408.
        let server = ops(kind, &["--body-timeout", "0.3"]);
        let (head, ran) = stalled_upload(&server, &dir);
        assert_eq!(head, "HTTP/1.1 408", "{kind}");
        assert!(!ran, "{kind}: the app ran before its body arrived");
        // Streamed: the app runs at once and answers without reading the body.
        let server = ops(kind, &["--body-timeout", "0.3", "--buffer-body", "0"]);
        let (head, ran) = stalled_upload(&server, &dir);
        assert_eq!(head, "HTTP/1.1 200", "{kind}");
        assert!(ran, "{kind}: the app did not run");
    });
}

/// The scheduling policy of each thread of `pid`, by thread name (Linux `/proc`).
#[cfg(target_os = "linux")]
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
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
    for (option, io_policy) in [("batch", SCHED_BATCH), ("normal", SCHED_OTHER)] {
        let server = ops("axum", &["--sched", option]);
        assert_eq!(server.get("/fast").0, 200);
        let threads = thread_policies(server.pid());
        let python: Vec<_> = threads
            .iter()
            .filter(|(n, _)| n.starts_with("wsgi-python"))
            .collect();
        assert!(!python.is_empty(), "{threads:?}");
        assert!(
            python.iter().all(|(_, p)| *p == SCHED_BATCH),
            "{option}: {threads:?}"
        );
        let others: Vec<_> = threads
            .iter()
            .filter(|(n, _)| !n.starts_with("wsgi-python"))
            .collect();
        assert!(!others.is_empty(), "{threads:?}");
        assert!(
            others.iter().all(|(_, p)| *p == io_policy),
            "{option}: {threads:?}"
        );
    }
}
