//! `serve --processes`: Python in worker processes, end to end over real sockets on both
//! servers. A crash in the application (a segfault in C code, `os._exit`, `abort`) costs the
//! request that was running, which gets 502 as behind gunicorn or Passenger; the worker is
//! replaced, requests waiting in the host's queue are served by the replacement, and the
//! host itself never goes down.

mod serve_process;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serve_process::{Server, assert_fails_with, serve_command, start};

fn apps() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps")
}

/// `serve --processes 2` (of two threads each) on `worker_app.py`.
fn workers(server: &str, extra: &[&str]) -> Server {
    let mut command: Command = serve_command();
    command
        .args(["--server", server, "--processes", "2"])
        .args(extra)
        .arg("worker_app.py")
        .current_dir(apps());
    start(command)
}

fn each_server(test: impl Fn(&str)) {
    for server in ["axum", "actix"] {
        test(server);
    }
}

/// Sends one request on its own connection and returns the status and the body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect to serve");
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .and_then(|()| stream.write_all(body))
    .expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, raw[end + 4..].to_vec())
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

#[test]
fn a_crash_costs_its_own_request_and_the_worker_is_replaced() {
    each_server(|kind| {
        let server = workers(kind, &[]);
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
            let log = server.stderr_with(death);
            assert!(
                log.contains(&format!("worker process died: {death}")),
                "{kind}: the log names the death\n{log}"
            );
            assert!(
                log.contains(&format!(
                    "GET {path}: the worker process died while running it"
                )),
                "{kind}: the log names the request\n{log}"
            );
        }
        let log = server.stderr_with("worker process ready");
        assert!(!log.contains("panicked"), "{log}");
    });
}

#[test]
fn requests_queued_behind_a_crash_are_served_by_the_replacement() {
    each_server(|kind| {
        let mut command: Command = serve_command();
        command
            .args(["--server", kind, "--processes", "1"])
            .arg("worker_app.py")
            .current_dir(apps());
        let server = start(command);
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
    });
}

#[test]
fn bodies_stream_both_ways_and_the_workers_log_reaches_the_host() {
    each_server(|kind| {
        let server = workers(kind, &[]);
        // Larger than --buffer-body, so it reaches the worker piece by piece.
        let upload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (status, echoed) = request(server.addr, "POST", "/echo", &upload);
        assert_eq!(status, 200);
        assert!(echoed == upload, "{kind}: the echo differs");
        let (status, body) = server.get("/stream");
        assert_eq!(status, 200);
        // Chunked: the pieces, in order, with the chunk framing between them.
        let mut at = 0;
        for i in 0..5 {
            let piece = format!("piece {i}\n");
            at += body[at..]
                .find(&piece)
                .unwrap_or_else(|| panic!("{kind}: {piece:?} missing in order in {body:?}"));
        }
        let (status, _) = server.get("/note?text=written-in-a-worker");
        assert_eq!(status, 200);
        // The access line names the text too, and may come first: wait for the worker's.
        let log = server.stderr_with("written-in-a-worker worker_pid=");
        let line = log
            .lines()
            .find(|l| l.contains("written-in-a-worker") && !l.contains(wsgi_core::ACCESS_TARGET))
            .unwrap_or_else(|| panic!("{kind}: wsgi.errors did not reach the log\n{log}"));
        assert!(line.contains("worker_pid="), "{kind}: {line}");
    });
}

#[test]
fn a_timeout_answers_504_and_interrupts_the_thread_in_its_worker() {
    each_server(|kind| {
        let server = workers(kind, &["--timeout", "1"]);
        let (status, _) = server.get("/busy");
        assert_eq!(status, 504, "{kind}");
        // The interrupted thread raised TimeoutError in its worker process.
        let log = server.stderr_with("TimeoutError");
        assert!(log.contains("TimeoutError"), "{kind}\n{log}");
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
    assert_fails_with(
        command,
        &[
            "could not import",
            "Traceback",
            "ModuleNotFoundError",
            "wsgi_startup_missing_dependency",
            "sys.path searched",
        ],
    );
}

/// Whether a process exists (and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat
                .rsplit(") ")
                .next()
                .and_then(|rest| rest.chars().next());
            state != Some('Z')
        })
        .unwrap_or(false)
}

/// The processes whose parent is `parent`.
fn children(parent: u32) -> BTreeSet<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid ...`; comm may hold spaces, so split after it.
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
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
fn metrics_count_each_workers_requests_and_deaths() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_bind = format!("127.0.0.1:{port}");
    let server = workers("axum", &["--metrics-bind", &metrics_bind]);
    assert_eq!(server.get("/segv").0, 502);
    worker_pid(&server);
    let scrape = || {
        let (status, body) = request(metrics_bind.parse().unwrap(), "GET", "/metrics", b"");
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape();
        let ready = text
            .lines()
            .filter(|l| l.starts_with("wsgi_worker_ready{"))
            .collect::<Vec<_>>();
        if ready.len() == 2 && ready.iter().all(|l| l.ends_with(" 1")) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the dead worker was not replaced:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let deaths: u64 = text
        .lines()
        .filter(|l| l.starts_with("wsgi_worker_deaths_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(deaths, 1, "{text}");
    let requests: u64 = text
        .lines()
        .filter(|l| l.starts_with("wsgi_worker_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(requests >= 1, "{text}");
}
