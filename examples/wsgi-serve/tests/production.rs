//! `wsgi-serve` behind a process manager and a load balancer, end to end on both servers: UNIX
//! sockets, systemd socket activation and notifications.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{apps, each_server, serve_app};
use test_support::DEADLINE;
use test_support::serve::{Server, assert_fails_with, free_port, start};
use test_support::temp::temp_dir;

/// `GET target` over the UNIX socket at `path` on a connection of its own: the status and
/// the body.
fn unix_get(path: &Path, target: &str) -> (u16, String) {
    unix_get_with(path, target, &[])
}

/// `GET target` with `headers` over the UNIX socket at `path`, as a proxy in front would
/// send it: the status and the body.
fn unix_get_with(path: &Path, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = UnixStream::connect(path).expect("connect to the UNIX socket");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let lines: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\n{lines}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or("");
    (status, body.to_owned())
}

/// The path of a socket in `dir`.
fn socket_in(dir: &Path) -> PathBuf {
    dir.join("http.sock")
}

/// `--bind unix:PATH`: HTTP on a UNIX socket, next to a TCP address, the socket file made
/// with `--unix-mode` and removed when `wsgi-serve` exits.
#[test]
fn a_unix_socket_serves_http_with_the_mode_asked_for_and_is_removed_at_exit() {
    each_server(|kind| {
        let dir = temp_dir("unix");
        let path = socket_in(dir.path());
        let bind = format!("unix:{}", path.display());
        let mut server = start(serve_app(
            kind,
            &["--bind", &bind, "--unix-mode", "600"],
            "ops_app.py",
        ));
        assert_eq!(
            unix_get(&path, "/fast"),
            (200, "done /fast".into()),
            "{kind}"
        );
        // The TCP address `start` adds serves too.
        assert_eq!(server.get("/fast").0, 200, "{kind}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{kind}");
        server.signal("TERM");
        let status = server
            .wait_exit(DEADLINE)
            .expect("serve exits after SIGTERM");
        assert!(status.success(), "{kind}: {status:?}");
        assert!(!path.exists(), "{kind}: the socket file is left behind");
    });
}

/// A socket file left by a server that died (nothing accepts on it) is replaced; one that a
/// running server listens on is refused, and that server keeps its clients.
#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_refused() {
    each_server(|kind| {
        let dir = temp_dir("unix-stale");
        let path = socket_in(dir.path());
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a stale socket file to replace");
        let bind = format!("unix:{}", path.display());
        let _server = start(serve_app(kind, &["--bind", &bind], "ops_app.py"));
        assert_eq!(unix_get(&path, "/fast").0, 200, "{kind}");

        let second = serve_app(kind, &["--bind", &bind], "ops_app.py");
        assert_fails_with(second, &["unix:", "another program", "--bind"]);
        assert_eq!(
            unix_get(&path, "/fast").0,
            200,
            "{kind}: the first server lost its socket"
        );
    });
}

/// What nginx in front of a UNIX socket sends: the client's address and the scheme it used.
const FORWARDED_BY_NGINX: [(&str, &str); 2] = [
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
];

/// Starts `wsgi-serve` (on each server, in-process and with two worker processes) serving
/// `ops_app.py` on a UNIX socket, besides TCP, with `--trusted-proxy trusted`, and checks that
/// `/where` over the socket, with the headers nginx sets, answers `expected`; then runs `also`
/// with the server and what the case is called.
fn where_over_a_unix_socket(trusted: &str, expected: &str, also: impl Fn(&Server, &str)) {
    each_server(|kind| {
        for processes in ["0", "2"] {
            let dir = temp_dir("unix-proxy");
            let path = socket_in(dir.path());
            let bind = format!("unix:{}", path.display());
            let options = [
                "--bind",
                &bind,
                "--trusted-proxy",
                trusted,
                "--processes",
                processes,
            ];
            let server = start(serve_app(kind, &options, "ops_app.py"));
            let case = format!("{kind} --processes {processes}");
            assert_eq!(
                unix_get_with(&path, "/where", &FORWARDED_BY_NGINX),
                (200, expected.to_owned()),
                "{case}"
            );
            also(&server, &case);
        }
    });
}

/// `--trusted-proxy unix`: a proxy on the UNIX socket (nginx's `proxy_pass
/// http://unix:...`) is believed, in-process and in worker processes, so `/where` shows the
/// client's address and scheme (`SCRIPT_NAME|PATH_INFO|REMOTE_ADDR|wsgi.url_scheme`). The
/// entry names UNIX sockets only: the same headers over TCP from 127.0.0.1 change nothing.
#[test]
fn a_proxy_on_a_unix_socket_is_believed_with_trusted_proxy_unix() {
    where_over_a_unix_socket("unix", "|/where|203.0.113.7|https", |server, case| {
        let over_tcp = test_support::wire::send(
            server.addr,
            &test_support::wire::Request::get("/where").headers(&FORWARDED_BY_NGINX),
        );
        assert_eq!(
            String::from_utf8_lossy(&over_tcp.body),
            "|/where|127.0.0.1|http",
            "{case}: a TCP peer trusted by `unix`"
        );
    });
}

/// Without `unix` in `--trusted-proxy`, a UNIX socket's peer is not believed, not even by a
/// list of every IP address: the headers reach the application as plain `HTTP_*` variables,
/// and it sees no `REMOTE_ADDR` (shown as `-`) and the socket's own scheme.
#[test]
fn a_proxy_on_a_unix_socket_is_not_believed_without_trusted_proxy_unix() {
    where_over_a_unix_socket("0.0.0.0/0,::/0", "|/where|-|http", |_, _| {});
}

/// A path that is not a socket is never removed to make room for one.
#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = temp_dir("unix-file");
    let path = socket_in(dir.path());
    std::fs::write(&path, "precious").unwrap();
    let bind = format!("unix:{}", path.display());
    assert_fails_with(
        serve_app("axum", &["--bind", &bind], "ops_app.py"),
        &["not a socket"],
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

/// Whether `systemd-socket-activate` (Debian's `systemd` package) is installed; says so
/// when it is not, and scripts/test makes it a failure (`WSGI_REQUIRE_SYSTEMD`).
fn socket_activate_available() -> bool {
    let found = Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var_os("WSGI_REQUIRE_SYSTEMD").is_some_and(|v| v == "1");
        assert!(!required, "systemd-socket-activate is not installed");
        eprintln!("SKIPPED: systemd-socket-activate is not installed (apt-get install systemd)");
    }
    found
}

/// Socket activation: `systemd-socket-activate` binds a TCP address and a UNIX socket and
/// starts `wsgi-serve` with them (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`) once a client
/// connects. `wsgi-serve` serves both, and the application does not inherit the variables, so
/// a subprocess of it cannot take the sockets for its own.
#[test]
fn sockets_passed_by_systemd_are_served_and_their_variables_not_inherited() {
    if !socket_activate_available() {
        return;
    }
    each_server(|kind| {
        let dir = temp_dir("activate");
        let path = socket_in(dir.path());
        let tcp = format!("127.0.0.1:{}", free_port());
        let mut command = test_support::serve::command("systemd-socket-activate", &apps());
        command
            .args(["-l", &tcp, "-l"])
            .arg(&path)
            .args([
                "--fdname=web:web",
                env!("CARGO_BIN_EXE_wsgi-serve"),
                "--server",
                kind,
            ])
            .arg("ops_app.py");
        // The program starts at the first connection: one is made while `start` waits.
        let addr = tcp.parse().unwrap();
        let first = std::thread::spawn(move || {
            let started = Instant::now();
            loop {
                if let Ok(mut conn) = test_support::wire::Conn::try_connect(addr) {
                    conn.send(
                        &test_support::wire::Request::get("/env?name=LISTEN_FDS").to_bytes(addr),
                    );
                    return conn.read_response("GET");
                }
                assert!(
                    started.elapsed() < DEADLINE,
                    "systemd-socket-activate never listened"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // `start` adds `--bind 127.0.0.1:0`, which the passed sockets replace.
        let server = start(command);
        assert_eq!(
            server.addr, addr,
            "{kind}: serve listens on the passed socket"
        );
        let response = first.join().unwrap();
        assert_eq!(
            (response.status, response.text()),
            (200, "<unset>".into()),
            "{kind}"
        );
        for name in ["LISTEN_PID", "LISTEN_FDNAMES"] {
            assert_eq!(
                server.get(&format!("/env?name={name}")).1,
                "<unset>",
                "{kind}: {name}"
            );
        }
        assert_eq!(
            unix_get(&path, "/fast"),
            (200, "done /fast".into()),
            "{kind}"
        );
        assert!(
            server
                .stderr_with("--bind is ignored")
                .contains("--bind is ignored"),
            "{kind}: {}",
            server.stderr()
        );
    });
}

/// The datagrams a fake service manager received, each split into its `KEY=value` lines.
struct Manager {
    socket: UnixDatagram,
    path: PathBuf,
    seen: Vec<String>,
}

impl Manager {
    fn new(dir: &Path) -> Manager {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Manager {
            socket,
            path,
            seen: Vec::new(),
        }
    }

    /// Waits until a line starting with `prefix` arrives (or has), returns it.
    fn wait_for(&mut self, prefix: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.starts_with(prefix)) {
                return line.clone();
            }
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.extend(text.lines().map(str::to_owned));
            }
            assert!(
                started.elapsed() < DEADLINE,
                "no {prefix:?} from serve; got {:?}",
                self.seen
            );
        }
    }

    /// Forgets what arrived so far.
    fn clear(&mut self) {
        self.seen.clear();
    }
}

/// `sd_notify`: `READY=1` and a `STATUS=` once the application is loaded and `wsgi-serve`
/// listens, `WATCHDOG=1` every half `WATCHDOG_USEC` (which the application does not
/// inherit), `STOPPING=1` when SIGTERM arrives.
#[test]
fn the_service_manager_hears_ready_status_watchdog_and_stopping() {
    each_server(|kind| {
        let dir = temp_dir("notify");
        let mut manager = Manager::new(dir.path());
        let mut command = serve_app(kind, &[], "ops_app.py");
        command
            .env("NOTIFY_SOCKET", &manager.path)
            .env("WATCHDOG_USEC", "200000");
        let mut server = start(command);
        manager.wait_for("READY=1");
        let status = manager.wait_for("STATUS=");
        assert!(status.contains("threads busy"), "{kind}: {status}");
        for _ in 0..2 {
            manager.clear();
            manager.wait_for("WATCHDOG=1");
        }
        assert_eq!(server.get("/env?name=WATCHDOG_USEC").1, "<unset>", "{kind}");
        server.signal("TERM");
        manager.wait_for("STOPPING=1");
        assert!(
            server.wait_exit(DEADLINE).is_some_and(|s| s.success()),
            "{kind}"
        );
    });
}

/// `GET target` on a fresh connection, and how long the answer took.
fn timed_get(addr: std::net::SocketAddr, target: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let response = test_support::wire::get(addr, target);
    (response.status, response.text(), started.elapsed())
}

/// `/livez` and `/readyz` are answered by the host, on the metrics listener and (with
/// `--health-path`) on the application's, while every Python thread is busy with a 5 s
/// request: a health check queued behind Python would time out and take a healthy, busy
/// server out of its load balancer.
#[test]
fn health_is_answered_by_the_host_while_every_python_thread_is_busy() {
    each_server(|kind| {
        let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let server = start(serve_app(
            kind,
            &[
                "--metrics-bind",
                &metrics.to_string(),
                "--health-path",
                "/-",
            ],
            "ops_app.py",
        ));
        // `start` gives the server two Python threads; both are kept busy.
        let record = test_support::gate::Record::new();
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let (addr, query) = (server.addr, record.query());
                std::thread::spawn(move || {
                    test_support::wire::get(addr, &format!("/slow?secs=5&{query}")).status
                })
            })
            .collect();
        record.wait_until("both threads busy", |lines| lines.len() >= 2);
        for (addr, prefix) in [(metrics, ""), (server.addr, "/-")] {
            let (status, body, took) = timed_get(addr, &format!("{prefix}/livez"));
            assert_eq!(
                (status, body.as_str()),
                (200, "ok\n"),
                "{kind} {prefix}/livez"
            );
            assert!(
                took < Duration::from_secs(1),
                "{kind}: /livez took {took:?}"
            );
            let (status, body, took) = timed_get(addr, &format!("{prefix}/readyz"));
            assert_eq!(
                (status, body.as_str()),
                (200, "ready\n"),
                "{kind} {prefix}/readyz"
            );
            assert!(
                took < Duration::from_secs(1),
                "{kind}: /readyz took {took:?}"
            );
        }
        // Without --health-path, those paths are the application's.
        for request in busy {
            assert_eq!(request.join().unwrap(), 200, "{kind}");
        }
        assert_eq!(server.get("/livez"), (200, "done /livez".into()), "{kind}");
    });
}

/// `--shutdown-delay`: after SIGTERM, `/readyz` answers 503 at once, yet for the delay new
/// connections are still accepted and served, and an idle keep-alive connection still takes
/// a request; every HTTP/1.1 response then says `Connection: close`. After the delay the
/// listener closes and `wsgi-serve` drains and exits 0.
#[test]
fn during_the_shutdown_delay_requests_are_served_with_connection_close_and_readyz_is_503() {
    each_server(|kind| {
        let mut server = start(serve_app(
            kind,
            &["--shutdown-delay", "2", "--health-path", "/-"],
            "ops_app.py",
        ));
        let addr = server.addr;
        let keep_alive = test_support::wire::Request::get("/fast").keep_alive();
        let mut idle = test_support::wire::Conn::connect(addr);
        idle.send(&keep_alive.to_bytes(addr));
        let first = idle.read_response("GET");
        assert_eq!(first.status, 200, "{kind}");
        assert_eq!(
            first.header("connection"),
            None,
            "{kind}: closing before any stop"
        );

        let signalled = Instant::now();
        server.signal("TERM");
        // The signal arrives a moment after `kill` returns.
        let body = test_support::eventually("/readyz to answer 503", || {
            let (status, body, _) = timed_get(addr, "/-/readyz");
            (status == 503).then_some(body)
        });
        assert_eq!(body, "draining\n", "{kind}");
        let response = test_support::wire::send(addr, &keep_alive);
        assert_eq!(
            response.status, 200,
            "{kind}: a new connection during the delay"
        );
        assert_eq!(response.header("connection"), Some("close"), "{kind}");
        idle.send(&keep_alive.to_bytes(addr));
        let again = idle.read_response("GET");
        assert_eq!(
            again.status, 200,
            "{kind}: the idle connection during the delay"
        );
        assert_eq!(again.header("connection"), Some("close"), "{kind}");
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "{kind}: the checks outlasted the delay"
        );

        let status = server
            .wait_exit(DEADLINE)
            .expect("serve exits after the delay");
        assert!(status.success(), "{kind}: {status:?}");
        assert!(
            signalled.elapsed() >= Duration::from_secs(2),
            "{kind}: exited before the delay was over"
        );
    });
}

/// `--shutdown-delay` on HTTP/2 (h2c), which has no `Connection: close`. With axum, an
/// HTTP/2 connection open when SIGTERM comes is sent a graceful GOAWAY (`NO_ERROR`) at once,
/// while the delay runs: the request in flight on it is still answered after the GOAWAY,
/// and the server then closes it. A connection opened during the delay is served too, and
/// sent away after its request, as HTTP/1 gets `Connection: close`.
///
/// actix-web cannot do this: actix-http 3's HTTP/2 dispatcher never sends GOAWAY (it has no
/// graceful shutdown of a connection, nor a way for the application to ask for one), so its
/// HTTP/2 clients keep their connection through the delay, and every request on it is
/// answered; this test holds it to that, so that it fails the day actix-http learns to.
#[test]
fn during_the_shutdown_delay_http2_connections_get_goaway_and_their_requests_are_answered() {
    use test_support::gate::Record;
    use test_support::h2::H2Connection;

    const DELAY: Duration = Duration::from_secs(4);
    each_server(|kind| {
        let mut server = start(serve_app(kind, &["--shutdown-delay", "4"], "ops_app.py"));
        let addr = server.addr;
        let open = H2Connection::connect(addr);
        let first = open.get("/fast");
        assert_eq!((first.status, first.version), (200, hyper::Version::HTTP_2));
        let record = Record::new();
        let in_flight = open.send(&format!("/slow?secs=1&{}", record.query()));
        record.wait_for("running");

        let signalled = Instant::now();
        server.signal("TERM");
        let (answer, answered_at) = in_flight.wait().expect("the request in flight");
        assert_eq!(answer.status, 200, "{kind}: the request in flight");
        let late = H2Connection::connect(addr);
        assert_eq!(
            late.get("/fast").status,
            200,
            "{kind}: a new connection during the delay"
        );
        if kind == "axum" {
            let goaway = open.goaways().first().copied().unwrap_or_else(|| {
                panic!("{kind}: no GOAWAY on the open connection during the delay")
            });
            assert_eq!(goaway.error_code, 0, "{kind}: a graceful GOAWAY");
            assert!(
                goaway.at < answered_at,
                "{kind}: the GOAWAY came after the request in flight was answered"
            );
            test_support::eventually("the new connection's GOAWAY", || {
                (!late.goaways().is_empty()).then_some(())
            });
            test_support::eventually("the server to close the connection", || {
                open.has_ended().then_some(())
            });
        } else {
            assert!(open.goaways().is_empty(), "{kind}: {:?}", open.goaways());
            assert_eq!(
                open.get("/fast").status,
                200,
                "{kind}: a new request on the open connection during the delay"
            );
        }
        assert!(
            signalled.elapsed() < DELAY,
            "{kind}: the checks outlasted the delay"
        );
        drop((open, late));
        let status = server
            .wait_exit(DEADLINE)
            .expect("serve exits after the delay");
        assert!(status.success(), "{kind}: {status:?}");
        assert!(
            signalled.elapsed() >= DELAY,
            "{kind}: exited before the delay was over"
        );
    });
}
