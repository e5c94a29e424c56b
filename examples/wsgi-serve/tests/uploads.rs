//! Request bodies received whole before the app runs, end to end through `wsgi-serve` on both
//! servers: large bodies through an unlinked temporary file, slow uploaders that hold no
//! Python thread, streaming where it is kept (`--buffer-body 0`, `--stream-chunked`,
//! `Expect: 100-continue`), and 413 and 408 answered by the host. The app is
//! `tests/apps/upload_app.py`.
//!
//! Passenger and nginx (`client_body_buffer_size`, then `client_body_temp_path`, with
//! `proxy_request_buffering on`, the default) do the same: the whole body is read into memory
//! or a temporary file before the application sees the request, so an upload at modem speed
//! costs the server a buffer, not an application process. gunicorn's sync workers and
//! mod_wsgi hand the socket to the application at once, and a slow upload holds its worker
//! for as long as the client takes.
//!
//! Linux only: the tests and the app look for the spooled file in `/proc/PID/fd`.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{each_server, serve_app};
use sha2::{Digest, Sha256};
use test_support::DEADLINE;
use test_support::gate::Record;
use test_support::serve::{Server, start};
use test_support::temp::{TempDir, temp_dir};
use test_support::wire::{Conn, chunk, get};

/// `wsgi-serve` on `server` (axum or actix) running `upload_app.py` with two Python threads,
/// spooling to `spool`.
fn uploads(server: &str, spool: &TempDir, extra: &[&str]) -> Server {
    let spool = spool.path().to_str().expect("a UTF-8 path");
    let mut options = vec!["--spool-dir", spool];
    options.extend_from_slice(extra);
    start(serve_app(server, &options, "upload_app.py"))
}

/// `len` bytes that are not all alike, so a misplaced piece changes the digest.
fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a body is framed on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked,
}

/// One upload on its own connection, sent in pieces as the test decides.
struct Upload {
    conn: Conn,
    framing: Framing,
}

impl Upload {
    /// Connects and sends the head of `POST target` for a body of `len` bytes.
    fn begin(server: &Server, target: &str, len: usize, framing: Framing) -> Upload {
        Upload::begin_with(server, target, len, framing, "")
    }

    fn begin_with(
        server: &Server,
        target: &str,
        len: usize,
        framing: Framing,
        extra_headers: &str,
    ) -> Upload {
        let mut conn = Conn::connect(server.addr);
        let framing_header = match framing {
            Framing::Length => format!("Content-Length: {len}"),
            Framing::Chunked => "Transfer-Encoding: chunked".to_owned(),
        };
        conn.send(
            format!(
                "POST {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{framing_header}\r\n\
                 {extra_headers}\r\n"
            )
            .as_bytes(),
        );
        Upload { conn, framing }
    }

    /// Sends `bytes` of the body in pieces of `piece` bytes, pausing `pause` after each.
    fn send(&mut self, bytes: &[u8], piece: usize, pause: Duration) {
        for part in bytes.chunks(piece) {
            match self.framing {
                Framing::Chunked => self.conn.send(&chunk(part)),
                Framing::Length => self.conn.send(part),
            }
            std::thread::sleep(pause);
        }
    }

    /// Ends the body (for a chunked one) and reads the response: status and body.
    fn finish(mut self) -> (u16, String) {
        if self.framing == Framing::Chunked {
            self.conn.send(b"0\r\n\r\n");
        }
        self.response()
    }

    /// Reads the response (the server closes the connection after it).
    fn response(mut self) -> (u16, String) {
        let response = self.conn.read_response("POST");
        (response.status, response.text())
    }
}

/// The open file descriptors of process `pid` whose target lies in `dir`.
fn fds_into(pid: u32, dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .map(|target| target.display().to_string())
        .collect()
}

/// Asserts that the spooled files are gone: none left in `dir`, none open in `wsgi-serve`.
/// The descriptor may be closed just after the response went out, so this waits for it.
fn assert_spool_is_clean(server: &Server, dir: &TempDir, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut open = fds_into(server.pid(), dir.path());
    while !open.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        open = fds_into(server.pid(), dir.path());
    }
    assert_eq!(
        open,
        Vec::<String>::new(),
        "{what}: spooled files still open"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        left.is_empty(),
        "{what}: left in the spool directory: {left:?}"
    );
}

/// Parses the `/upload` answer: "LEN SHA256 SPOOL_FDS".
fn upload_answer(text: &str) -> (usize, String, usize) {
    let fields: Vec<&str> = text.split(' ').collect();
    assert_eq!(fields.len(), 3, "{text:?}");
    (
        fields[0].parse().unwrap(),
        fields[1].to_owned(),
        fields[2].parse().unwrap(),
    )
}

/// A 1 MiB body sent slowly arrives whole, through a temporary file: the app runs only
/// after the last byte (not while the upload crawls), reads the whole body intact, and
/// `wsgi-serve` holds a descriptor into the spool directory meanwhile (in-process, the app
/// reads from it; a worker process is fed from it). Afterwards nothing is left in the
/// directory, nor open. The same for a chunked body, which no length announced.
#[test]
fn a_large_body_arrives_whole_through_an_unlinked_temporary_file() {
    each_server(|kind| {
        for processes in ["0", "1"] {
            let spool = temp_dir("spool");
            let server = uploads(kind, &spool, &["--processes", processes]);
            for (framing, len) in [
                (Framing::Length, (1 << 20) + 7),
                (Framing::Chunked, 200_000),
            ] {
                let what = format!(
                    "{kind}, --processes {processes}, {}",
                    if framing == Framing::Chunked {
                        "chunked"
                    } else {
                        "sized"
                    }
                );
                let record = Record::new();
                let target = format!(
                    "/upload?{}&spool={}",
                    record.query(),
                    spool.path().display()
                );
                let sent = body(len);
                let (most, last) = sent.split_at(len - 1000);
                let mut upload = Upload::begin(&server, &target, len, framing);
                upload.send(most, 16 * 1024, Duration::from_millis(2));
                test_support::eventually(&format!("{what}: a spooled file open"), || {
                    (!fds_into(server.pid(), spool.path()).is_empty()).then_some(())
                });
                assert_eq!(
                    record.lines(),
                    Vec::<String>::new(),
                    "{what}: the app ran before the body was complete"
                );
                upload.send(last, 1000, Duration::ZERO);
                let (status, answer) = upload.finish();
                assert_eq!(status, 200, "{what}: {answer}\n{}", server.stderr());
                assert_eq!(record.lines(), ["started"], "{what}");
                let (got, digest, spool_fds) = upload_answer(&answer);
                assert_eq!((got, digest), (len, sha256(&sent)), "{what}");
                if processes == "0" {
                    assert!(
                        spool_fds >= 1,
                        "{what}: the body did not come from a spooled file"
                    );
                }
                assert_spool_is_clean(&server, &spool, &what);
            }
        }
    });
}

/// Four clients upload 1 MiB each in small pieces with pauses to a server with two Python
/// threads. Half-way through, with every upload still in progress, a `GET /hello` is
/// answered, and none of the uploads has reached the app yet; then the uploads finish and
/// arrive intact. Had the uploads streamed to `wsgi.input`, two of them would hold both
/// threads until their clients finished, and the hello would wait behind them.
#[test]
fn slow_uploaders_do_not_hold_the_python_threads() {
    each_server(|kind| {
        let spool = temp_dir("spool");
        let server = uploads(kind, &spool, &[]);
        let record = Record::new();
        const LEN: usize = 1 << 20;
        let (halfway_tx, halfway) = mpsc::channel();
        let mut resume = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..4 {
            let target = format!("/upload?{}", record.query());
            let mut upload = Upload::begin(&server, &target, LEN, Framing::Length);
            let (go_tx, go) = mpsc::channel::<()>();
            resume.push(go_tx);
            let halfway_tx = halfway_tx.clone();
            clients.push(std::thread::spawn(move || {
                let sent = body(LEN);
                let (first, second) = sent.split_at(LEN / 2);
                upload.send(first, 8 * 1024, Duration::from_millis(2));
                halfway_tx.send(()).unwrap();
                // Held here until the test has had its hello answered.
                let _ = go.recv();
                upload.send(second, 8 * 1024, Duration::from_millis(2));
                let (status, answer) = upload.finish();
                (status, answer, sha256(&sent))
            }));
        }
        for _ in 0..4 {
            halfway
                .recv_timeout(DEADLINE)
                .expect("every uploader gets half-way");
        }

        let hello = get(server.addr, "/hello");
        assert!(
            hello.status == 200 && hello.text() == "hello",
            "{kind}: hello not answered while four uploads were in progress: {hello:?}\n{}",
            server.stderr()
        );
        let started = record.lines();
        assert!(
            started.is_empty(),
            "{kind}: uploads reached the app half-way: {started:?}"
        );

        drop(resume);
        for client in clients {
            let (status, answer, digest) = client.join().unwrap();
            assert_eq!(status, 200, "{kind}: {answer}");
            let (len, got, _) = upload_answer(&answer);
            assert_eq!((len, got), (LEN, digest), "{kind}");
        }
        assert_spool_is_clean(&server, &spool, kind);
    });
}

/// Sends the first 1000 bytes of a 100,000-byte body, waits for the app to have read its
/// first 10, then the rest: the app saw the body before the client had finished.
fn assert_streams(server: &Server, framing: Framing, headers: &str, what: &str) {
    let record = Record::new();
    let sent = body(100_000);
    let target = format!("/first?{}", record.query());
    let mut upload = Upload::begin_with(server, &target, sent.len(), framing, headers);
    upload.send(&sent[..1000], 1000, Duration::ZERO);
    let first: String = sent[..10].iter().map(|b| format!("{b:02x}")).collect();
    let deadline = Instant::now() + DEADLINE;
    while record.lines().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        record.lines(),
        [format!("first {first}")],
        "{what}: the app did not see the first bytes before the client finished\n{}",
        server.stderr()
    );
    upload.send(&sent[1000..], 16 * 1024, Duration::ZERO);
    assert_eq!(upload.finish(), (200, "100000".to_owned()), "{what}");
}

/// Streaming is kept where it is asked for: every body with `--buffer-body 0`, chunked
/// bodies with `--stream-chunked` (bodies with a length are still received first).
#[test]
fn buffer_body_0_and_stream_chunked_still_stream() {
    each_server(|kind| {
        let spool = temp_dir("spool");
        let server = uploads(kind, &spool, &["--buffer-body", "0"]);
        assert_streams(
            &server,
            Framing::Length,
            "",
            &format!("{kind}, --buffer-body 0"),
        );
        assert_streams(
            &server,
            Framing::Chunked,
            "",
            &format!("{kind}, --buffer-body 0"),
        );
        let server = uploads(kind, &spool, &["--stream-chunked"]);
        assert_streams(
            &server,
            Framing::Chunked,
            "",
            &format!("{kind}, --stream-chunked"),
        );
    });
}

/// A client that sends `Expect: 100-continue` waits for the app to read before it sends its
/// body, so such a body cannot be received first: `100 Continue` comes, from the app's
/// first read, before any of the body was sent.
#[test]
fn expect_100_continue_still_streams() {
    each_server(|kind| {
        let spool = temp_dir("spool");
        let server = uploads(kind, &spool, &[]);
        let sent = body(100_000);
        let mut upload = Upload::begin_with(
            &server,
            "/first",
            sent.len(),
            Framing::Length,
            "Expect: 100-continue\r\n",
        );
        let interim = upload.conn.read_head();
        assert_eq!(
            (
                interim.version.as_str(),
                interim.status,
                interim.reason.as_str()
            ),
            ("HTTP/1.1", 100, "Continue"),
            "{kind}"
        );
        assert!(interim.headers.pairs().is_empty(), "{kind}: {interim:?}");
        upload.send(&sent, 16 * 1024, Duration::ZERO);
        assert_eq!(upload.finish(), (200, "100000".to_owned()), "{kind}");
    });
}

/// A chunked body that grows past `--max-body` is answered 413, and one that stalls past
/// `--body-timeout` 408, by the host while it receives them: the app never runs. Any
/// spooled file is gone afterwards.
#[test]
fn over_limit_and_stalled_bodies_are_answered_by_the_host() {
    each_server(|kind| {
        let spool = temp_dir("spool");
        let record = Record::new();
        let target = format!("/upload?{}", record.query());

        let server = uploads(kind, &spool, &["--max-body", "100K"]);
        // Exactly one byte over the limit, and no more, so the host has read all that was
        // sent when it answers (unread bytes would make the close a reset).
        let over = body(100 * 1024 + 1);
        let mut upload = Upload::begin(&server, &target, 0, Framing::Chunked);
        upload.conn.send(format!("{:x}\r\n", over.len()).as_bytes());
        upload.conn.send(&over);
        let (status, answer) = upload.response();
        assert_eq!(status, 413, "{kind}: {answer}\n{}", server.stderr());
        assert!(
            record.lines().is_empty(),
            "{kind}: the app ran for a body over the limit"
        );
        assert_spool_is_clean(&server, &spool, &format!("{kind}, 413"));

        let server = uploads(kind, &spool, &["--body-timeout", "0.5"]);
        for framing in [Framing::Length, Framing::Chunked] {
            // Well past the memory limit, so the stall happens with a file already open.
            let mut upload = Upload::begin(&server, &target, 1 << 20, framing);
            upload.send(&body(200 * 1024), 16 * 1024, Duration::ZERO);
            let (status, answer) = upload.response();
            assert_eq!(status, 408, "{kind}: {answer}\n{}", server.stderr());
            assert!(
                record.lines().is_empty(),
                "{kind}: the app ran for a stalled body"
            );
        }
        assert_spool_is_clean(&server, &spool, &format!("{kind}, 408"));
    });
}
