//! `wsgi-serve` behind a real load balancer: two replicas behind haproxy, a client sending
//! requests all along, and a rolling deploy that stops and starts each replica in turn.
//! haproxy retries nothing (`retries 0`), so every request a stop cost would reach the
//! client: the readiness check and `--shutdown-delay` must take a replica out first.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::serve_app;
use test_support::DEADLINE;
use test_support::serve::{Server, collect_stderr, free_port, start};
use test_support::temp::temp_dir;
use test_support::wire::{Conn, Request};

/// The drain delay under test, as docs/deploy.md gives it: longer than haproxy takes to see
/// `/readyz` fail (`fall` × `inter`), with room for a busy machine.
const SHUTDOWN_DELAY: &str = "1.5s";

/// The deployment guide whose haproxy configuration this test runs, so that the one
/// documented is the one tested.
const DEPLOY_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/deploy.md");

/// The haproxy configuration of the deployment guide (HTTP keep-alive on both sides, round
/// robin, readiness checked every 250 ms on `/-/readyz`, a replica out after two failures
/// and in after two successes, no retries or redispatch, so that a request sent to a
/// replica that fails it fails for the client), with this test's addresses, and its log on
/// stderr instead of syslog.
fn haproxy_config(front: SocketAddr, replicas: [SocketAddr; 2]) -> String {
    let doc = std::fs::read_to_string(DEPLOY_DOC).expect("read docs/deploy.md");
    let config = doc
        .split_once("```haproxy\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(config, _)| config)
        .expect("an haproxy code block in docs/deploy.md");
    [
        (
            "log /dev/log local0",
            "log stderr format raw local0 info".to_owned(),
        ),
        ("bind :80", format!("bind {front}")),
        ("10.0.0.11:8000", replicas[0].to_string()),
        ("10.0.0.12:8000", replicas[1].to_string()),
    ]
    .into_iter()
    .fold(config.to_owned(), |config, (from, to)| {
        assert_eq!(
            config.matches(from).count(),
            1,
            "docs/deploy.md's haproxy configuration no longer has one {from:?} to replace"
        );
        config.replace(from, &to)
    })
}

/// Whether haproxy (Debian's `haproxy` package) is installed; says so when it is not, and
/// scripts/test makes it a failure (`WSGI_REQUIRE_HAPROXY`).
fn haproxy_available() -> bool {
    let found = Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var_os("WSGI_REQUIRE_HAPROXY").is_some_and(|v| v == "1");
        assert!(
            !required,
            "haproxy is not installed (apt-get install haproxy)"
        );
        eprintln!("SKIPPED: haproxy is not installed (apt-get install haproxy)");
    }
    found
}

/// A running haproxy, killed on drop; its log (one line per request) collected.
struct Haproxy {
    child: Child,
    log: Arc<Mutex<String>>,
    /// Holds the configuration file.
    _dir: test_support::temp::TempDir,
}

impl Haproxy {
    /// Starts haproxy in the foreground with `config`, and waits until `front` accepts.
    fn start(config: &str, front: SocketAddr) -> Haproxy {
        let dir = temp_dir("haproxy");
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn haproxy");
        let log = collect_stderr(&mut child);
        let mut haproxy = Haproxy {
            child,
            log,
            _dir: dir,
        };
        test_support::eventually("haproxy to listen", || {
            if let Ok(Some(status)) = haproxy.child.try_wait() {
                panic!("haproxy exited ({status}):\n{}", haproxy.log());
            }
            std::net::TcpStream::connect(front).ok()
        });
        haproxy
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One replica of the deploy: its name (in `$REPLICA`, which the app answers with) on
/// `server` (axum or actix) at `addr`, health on `/-/readyz`, with the drain delay.
fn replica(server: &str, addr: SocketAddr, name: &str) -> Server {
    let addr = addr.to_string();
    let mut command = serve_app(
        server,
        &[
            "--bind",
            &addr,
            "--health-path",
            "/-",
            "--shutdown-delay",
            SHUTDOWN_DELAY,
            "--grace",
            "5s",
        ],
        "ops_app.py",
    );
    command.env("REPLICA", name);
    let replica = start(command);
    // `start` adds a second address; the first is the one haproxy knows.
    assert_eq!(replica.addr.to_string(), addr, "{name} listens where asked");
    replica
}

/// What the client saw: when each request ended, and the replica that answered or what
/// went wrong.
#[derive(Default)]
struct Tally {
    answered: Vec<(Duration, String)>,
    failed: Vec<(Duration, String)>,
}

/// One request on `conn` (connected to `front` first if it is not): the replica that
/// answered, or what went wrong. `conn` is emptied when the connection cannot be used again.
fn exchange(conn: &mut Option<Conn>, front: SocketAddr, request: &[u8]) -> Result<String, String> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(Conn::try_connect(front).map_err(|e| format!("connect: {e}"))?),
    };
    let outcome = (|| -> Result<_, String> {
        c.try_send(request).map_err(|e| format!("send: {e}"))?;
        let head = c
            .try_read_head()
            .ok_or("the connection closed before a response")?;
        Ok(c.read_body(head, "GET"))
    })();
    let response = outcome.inspect_err(|_| *conn = None)?;
    if response.header("connection") == Some("close") || !response.complete {
        *conn = None;
    }
    match (response.status, response.complete) {
        (200, true) => Ok(response.text()),
        (status, complete) => Err(format!(
            "status {status}{}: {}",
            if complete { "" } else { ", cut short" },
            response.text()
        )),
    }
}

/// A client thread: requests one after the other on a keep-alive connection to `front`
/// (a new one when haproxy closes it), about 100 a second, until `stop`.
fn client(front: SocketAddr, began: Instant, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let request = Request::get("/env?name=REPLICA")
        .keep_alive()
        .to_bytes(front);
    let mut conn = None;
    while !stop.load(Ordering::Relaxed) {
        let outcome = exchange(&mut conn, front, &request);
        let at = began.elapsed();
        let mut tally = tally.lock().unwrap();
        match outcome {
            Ok(replica) => tally.answered.push((at, replica)),
            Err(why) => tally.failed.push((at, why)),
        }
        drop(tally);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The rolling deploy of issue 23: with `--shutdown-delay 1.5s`, a replica's `/readyz`
/// fails at SIGTERM, haproxy takes it out while it still serves what comes, and only then
/// does it close its listener and drain; its successor is started on the same port and
/// taken in by haproxy's checks before the other replica goes the same way. Four client
/// threads on keep-alive connections through haproxy send a few hundred requests a second
/// throughout, and not one fails. One replica runs on axum, the other on actix-web.
#[test]
fn a_rolling_deploy_behind_haproxy_without_retries_loses_no_request() {
    if !haproxy_available() {
        return;
    }
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let addrs: [SocketAddr; 2] =
        [0, 1].map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap());
    let servers = ["axum", "actix"];
    let mut replicas = [
        Some(replica(servers[0], addrs[0], "a1")),
        Some(replica(servers[1], addrs[1], "b1")),
    ];
    let haproxy = Haproxy::start(&haproxy_config(front, addrs), front);

    let began = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, tally) = (stop.clone(), tally.clone());
            std::thread::spawn(move || client(front, began, stop, tally))
        })
        .collect();
    let served_by = |name: &str| {
        let tally = tally.lock().unwrap();
        tally.answered.iter().any(|(_, r)| r == name)
    };
    test_support::eventually("both replicas to answer through haproxy", || {
        (served_by("a1") && served_by("b1")).then_some(())
    });

    let mut events = Vec::new();
    for (slot, successor) in [(0, "a2"), (1, "b2")] {
        std::thread::sleep(Duration::from_millis(500));
        let mut old = replicas[slot].take().unwrap();
        events.push((began.elapsed(), format!("SIGTERM to replica {slot}")));
        old.signal("TERM");
        let status = old.wait_exit(DEADLINE).expect("the replica exits");
        events.push((began.elapsed(), format!("replica {slot} exited: {status}")));
        assert!(
            status.success(),
            "replica {slot}: {status}\n{}",
            old.stderr()
        );
        replicas[slot] = Some(replica(servers[slot], addrs[slot], successor));
        events.push((began.elapsed(), format!("{successor} listening")));
        test_support::eventually("the new replica to answer through haproxy", || {
            served_by(successor).then_some(())
        });
        events.push((began.elapsed(), format!("{successor} answered")));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("a client thread panicked");
    }
    let elapsed = began.elapsed();

    let tally = tally.lock().unwrap();
    let sent = tally.answered.len() + tally.failed.len();
    eprintln!(
        "rolling deploy behind haproxy: {sent} requests in {elapsed:.1?} ({:.0}/s), {} failed",
        sent as f64 / elapsed.as_secs_f64(),
        tally.failed.len()
    );
    let mut timeline: Vec<_> = events
        .iter()
        .map(|(at, what)| (*at, what.clone()))
        .chain(
            tally
                .failed
                .iter()
                .map(|(at, why)| (*at, format!("FAILED: {why}"))),
        )
        .collect();
    timeline.sort();
    assert!(
        tally.failed.is_empty(),
        "{} of {sent} requests failed; timeline:\n{}\nhaproxy's log of them:\n{}",
        tally.failed.len(),
        timeline
            .iter()
            .map(|(at, what)| format!("{at:>10.3?} {what}"))
            .collect::<Vec<_>>()
            .join("\n"),
        haproxy
            .log()
            .lines()
            // An httplog line with a status other than 200, and haproxy's own notices.
            .filter(|l| !l.contains(" 200 "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A few hundred a second, as the issue's trial sent.
    assert!(
        sent as f64 / elapsed.as_secs_f64() > 150.0,
        "the client sent only {sent} requests in {elapsed:?}"
    );
    for name in ["a1", "b1", "a2", "b2"] {
        assert!(
            tally.answered.iter().any(|(_, r)| r == name),
            "{name} answered nothing"
        );
    }
}
