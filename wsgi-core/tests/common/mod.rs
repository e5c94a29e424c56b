//! Test harness: serves a Python app from a bare hyper 1 server (no axum, no tower)
//! and talks to it over raw TCP, so the tests see exactly the bytes on the wire.
//!
//! The [`HyperRequest`] wrapper below is the whole integration cost for a new host:
//! one trait impl that hands the engine the request head, the body as a byte stream,
//! and the connection facts.

// Every test binary compiles this module but uses a different part of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use http_body_util::BodyDataStream;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use wsgi_core::{BoxError, ConnInfo, Engine, EngineBuilder, HostRequest};

/// How long any single wait in a test may take before it counts as a hang.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

pub(crate) fn app_path(file: &str) -> String {
    format!("{}/tests/apps/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// A hyper request plus what the accept loop knows about its connection.
///
/// This is the pluggability proof: a host only has to split its request into
/// `http::request::Parts` (with the URI exactly as the client sent it), a stream
/// of body bytes, and a [`ConnInfo`].
pub(crate) struct HyperRequest {
    request: hyper::Request<Incoming>,
    conn: ConnInfo,
}

type IncomingStream =
    futures::stream::MapErr<BodyDataStream<Incoming>, fn(hyper::Error) -> BoxError>;

impl HostRequest for HyperRequest {
    type Body = IncomingStream;

    fn into_parts(self) -> (http::request::Parts, Self::Body, ConnInfo) {
        let (parts, body) = self.request.into_parts();
        // A named fn pointer keeps `Body` a nameable type.
        let boxed: fn(hyper::Error) -> BoxError = |e| Box::new(e);
        (parts, body.into_data_stream().map_err(boxed), self.conn)
    }
}

/// A running server; dropping it stops accepting and drops open connections.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) engine: Engine,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Builds an engine for `app` (two Python threads unless `configure` says
/// otherwise) and serves it on 127.0.0.1 with `mount` as SCRIPT_NAME.
pub(crate) fn start(
    app: &str,
    configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
    mount: &str,
) -> TestServer {
    let engine = configure(Engine::builder(app).threads(2))
        .build()
        .unwrap_or_else(|e| panic!("loading {app}: {e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    runtime.spawn(accept_loop(listener, engine.clone(), mount.to_owned()));
    TestServer {
        addr,
        engine,
        runtime: Some(runtime),
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, engine: Engine, mount: String) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let conn = ConnInfo::new(Some(peer), stream.local_addr().ok()).with_mount(mount.clone());
        let engine = engine.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = engine.call(HyperRequest {
                    request,
                    conn: conn.clone(),
                });
                async move { Ok::<_, Infallible>(response.await) }
            });
            // Connection errors (client gone, aborted body) are what several tests
            // provoke on purpose; the tests check their effects instead.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl TestServer {
    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.as_ref().expect("runtime").block_on(future)
    }

    pub(crate) fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.as_ref().expect("runtime").spawn(future)
    }

    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends `bytes` as they are and returns everything the server sends until
    /// it closes the connection (or the deadline passes).
    pub(crate) fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let mut client = self.client();
        client.send(bytes);
        client.read_to_end()
    }

    /// One request on a fresh `Connection: close` connection.
    pub(crate) fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut client = self.client();
        client.send(&request_bytes(
            &self.host(),
            method,
            target,
            headers,
            body,
            true,
        ));
        client.read_response(method)
    }

    /// Like [`TestServer::request`] for a GET the server must abort; checks the
    /// abort and returns the partial response, if a head arrived at all.
    pub(crate) fn get_aborted(
        &self,
        target: &str,
        headers: &[(&str, &str)],
        framing: Framing,
    ) -> Option<Response> {
        let mut client = self.client();
        client.send(&request_bytes(
            &self.host(),
            "GET",
            target,
            headers,
            b"",
            true,
        ));
        let response = client.read_aborted_response("GET")?;
        assert_eq!(response.framing, framing, "{target}: {:?}", response.head);
        assert!(
            !response.complete,
            "{target}: the response must be aborted, got {:?}",
            response.text()
        );
        assert!(
            !response.timed_out,
            "{target}: the server hung instead of closing the connection"
        );
        Some(response)
    }

    pub(crate) fn get(&self, target: &str) -> Response {
        self.request("GET", target, &[], b"")
    }

    pub(crate) fn get_with(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", target, headers, b"")
    }

    pub(crate) fn post(&self, target: &str, body: &[u8]) -> Response {
        self.request("POST", target, &[], body)
    }
}

/// An HTTP/1.1 request; Content-Length is added for a non-empty body or a POST.
pub(crate) fn request_bytes(
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let chunked = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
    if !chunked && (!body.is_empty() || method == "POST") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// How the response body was delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body by definition (HEAD, 1xx, 204, 304).
    NoBody,
    Length(u64),
    Chunked,
    /// Delimited by the server closing the connection.
    Close,
}

#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) version: String,
    pub(crate) status: u16,
    pub(crate) reason: String,
    /// Names lower-cased; values as raw bytes (they may be latin-1).
    pub(crate) headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.header_bytes(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub(crate) fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub(crate) fn header_all(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    fn framing(&self, method: &str) -> Framing {
        if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            return Framing::NoBody;
        }
        if self
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            return Framing::Chunked;
        }
        match self.header("content-length") {
            Some(cl) => Framing::Length(cl.trim().parse().expect("numeric Content-Length")),
            None => Framing::Close,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) head: Head,
    pub(crate) body: Vec<u8>,
    pub(crate) framing: Framing,
    /// The body ended the way its framing says it must: all Content-Length
    /// bytes, or the terminating zero-size chunk. False means an aborted response.
    pub(crate) complete: bool,
    /// The deadline passed while the server kept the connection open without
    /// finishing the body: a hang, which no test expects.
    pub(crate) timed_out: bool,
}

impl Response {
    pub(crate) fn status(&self) -> u16 {
        self.head.status
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.head.header(name)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One step of reading a chunked body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chunk {
    Data(Vec<u8>),
    /// The terminating zero-size chunk and trailers were read.
    End,
    /// The stream ended inside the body; holds the partial chunk data.
    Truncated(Vec<u8>),
}

/// A raw TCP client with just enough HTTP/1.1 parsing to check framing.
pub(crate) struct Client {
    pub(crate) stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    timed_out: bool,
}

impl Client {
    pub(crate) fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Client {
            stream,
            buf: Vec::new(),
            eof: false,
            timed_out: false,
        }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
        self.stream.flush().expect("flush");
    }

    /// Sends without panicking; the server may already have closed the socket.
    pub(crate) fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads more bytes into the buffer; false at EOF, reset or timeout.
    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                self.timed_out = true;
                self.eof = true;
                false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            // A reset or abort is how an aborted response may end.
            Err(_) => {
                self.eof = true;
                false
            }
        }
    }

    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out
    }

    pub(crate) fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Reads up to and including the next CRLF; `None` if the stream ended first.
    fn read_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let mut line = self.take(pos + 2);
                line.truncate(pos);
                return Some(line);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn read_exact_or_less(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n && self.fill() {}
        let n = n.min(self.buf.len());
        self.take(n)
    }

    /// Parses a status line and headers. Panics if the bytes are not a response
    /// head: that is how stray body bytes left on a keep-alive connection show up.
    pub(crate) fn read_head(&mut self) -> Head {
        let end = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            assert!(
                self.fill(),
                "connection ended (timed out: {}) before a complete response head; got {:?}",
                self.timed_out,
                String::from_utf8_lossy(&self.buf)
            );
        };
        let raw = self.take(end + 4);
        let text = &raw[..end];
        let mut lines = text
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let status_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
        assert!(
            status_line.starts_with("HTTP/1."),
            "expected a status line, got {:?} (stray bytes on the connection?)",
            String::from_utf8_lossy(&raw)
        );
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let reason = parts.next().unwrap_or_default().to_owned();
        let headers = lines
            .map(|line| {
                let colon = line.iter().position(|&b| b == b':').unwrap_or_else(|| {
                    panic!("bad header line {:?}", String::from_utf8_lossy(line))
                });
                let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
                let value = line[colon + 1..].trim_ascii().to_vec();
                (name, value)
            })
            .collect();
        Head {
            version,
            status,
            reason,
            headers,
        }
    }

    /// The next piece of a chunked body.
    pub(crate) fn read_chunk(&mut self) -> Chunk {
        let Some(size_line) = self.read_line() else {
            return Chunk::Truncated(Vec::new());
        };
        let size_text = String::from_utf8_lossy(&size_line).into_owned();
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
        if size == 0 {
            loop {
                match self.read_line() {
                    Some(trailer) if trailer.is_empty() => return Chunk::End,
                    Some(_) => {}
                    None => return Chunk::Truncated(Vec::new()),
                }
            }
        }
        let data = self.read_exact_or_less(size);
        if data.len() < size {
            return Chunk::Truncated(data);
        }
        let crlf = self.read_exact_or_less(2);
        if crlf.len() < 2 {
            return Chunk::Truncated(data);
        }
        assert_eq!(crlf, b"\r\n", "chunk data not followed by CRLF");
        Chunk::Data(data)
    }

    /// Reads the body that `head` announces.
    pub(crate) fn read_body(&mut self, head: &Head, method: &str) -> Response {
        let framing = head.framing(method);
        let (body, complete) = match framing {
            Framing::NoBody => (Vec::new(), true),
            Framing::Length(n) => {
                let n = usize::try_from(n).expect("length fits");
                let body = self.read_exact_or_less(n);
                let complete = body.len() == n;
                (body, complete)
            }
            Framing::Chunked => {
                let mut body = Vec::new();
                let complete = loop {
                    match self.read_chunk() {
                        Chunk::Data(data) => body.extend_from_slice(&data),
                        Chunk::End => break true,
                        Chunk::Truncated(partial) => {
                            body.extend_from_slice(&partial);
                            break false;
                        }
                    }
                };
                (body, complete)
            }
            Framing::Close => {
                while self.fill() {}
                (std::mem::take(&mut self.buf), !self.timed_out)
            }
        };
        Response {
            head: head.clone(),
            body,
            framing,
            complete,
            timed_out: self.timed_out,
        }
    }

    /// One complete response (an interim 1xx response counts as one).
    pub(crate) fn read_response(&mut self, method: &str) -> Response {
        let head = self.read_head();
        self.read_body(&head, method)
    }

    /// Like [`Client::read_response`] for a response the server must abort. A
    /// connection closed before a complete head is `None`: hyper drops what it
    /// has buffered when the body fails before the first flush, so an abort can
    /// reach the client as early as that.
    pub(crate) fn read_aborted_response(&mut self, method: &str) -> Option<Response> {
        while !self.buf.windows(4).any(|w| w == b"\r\n\r\n") {
            if !self.fill() {
                assert!(
                    !self.timed_out,
                    "the server hung instead of closing the connection"
                );
                return None;
            }
        }
        Some(self.read_response(method))
    }

    /// The next final response, skipping any 1xx.
    pub(crate) fn read_final_response(&mut self, method: &str) -> Response {
        loop {
            let response = self.read_response(method);
            if response.status() >= 200 {
                return response;
            }
        }
    }
}

/// A deterministic xorshift generator so "random" bodies and splits repeat.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `low..=high`.
    pub(crate) fn range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low + 1) as u64) as usize
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

fn unique_path(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("wsgi-core-test-{}-{n}-{tag}", std::process::id()))
}

/// A file the Python app appends event lines to (`X-Record-File`).
pub(crate) struct RecordFile {
    pub(crate) path: PathBuf,
}

impl RecordFile {
    pub(crate) fn new(tag: &str) -> RecordFile {
        let path = unique_path(tag);
        let _ = std::fs::remove_file(&path);
        RecordFile { path }
    }

    pub(crate) fn header(&self) -> (&'static str, &str) {
        ("X-Record-File", self.path_str())
    }

    pub(crate) fn path_str(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }

    /// Polls until `done(lines)` holds; returns the lines, or panics with them
    /// after [`DEADLINE`].
    pub(crate) fn wait_until(
        &self,
        what: &str,
        mut done: impl FnMut(&[String]) -> bool,
    ) -> Vec<String> {
        let start = Instant::now();
        loop {
            let lines = self.lines();
            if done(&lines) {
                return lines;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; record file has {lines:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn wait_for_line(&self, line: &str) -> Vec<String> {
        self.wait_until(&format!("line {line:?}"), |lines| {
            lines.iter().any(|l| l == line)
        })
    }
}

impl Drop for RecordFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A file whose existence releases a Python app waiting on it (`X-Gate-File`).
pub(crate) struct Gate {
    pub(crate) path: PathBuf,
}

impl Gate {
    pub(crate) fn new(tag: &str) -> Gate {
        let path = unique_path(tag);
        let _ = std::fs::remove_file(&path);
        Gate { path }
    }

    pub(crate) fn header(&self) -> (&'static str, &str) {
        ("X-Gate-File", self.path.to_str().expect("utf-8 temp path"))
    }

    pub(crate) fn open(&self) {
        std::fs::write(&self.path, b"open").expect("create gate file");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // Release any app still waiting, then clean up.
        self.open();
        std::thread::sleep(Duration::from_millis(50));
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A scratch file with known content, removed on drop.
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
}

impl TempFile {
    pub(crate) fn with_content(tag: &str, content: &[u8]) -> TempFile {
        let path = unique_path(tag);
        std::fs::write(&path, content).expect("write temp file");
        TempFile { path }
    }

    pub(crate) fn path_str(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Polls `check` until it returns `Some`, panicking after [`DEADLINE`].
pub(crate) fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The environ as `environ_app.py` reports it: key -> (Python type name, value).
/// `str` values are decoded as latin-1, so `'\xe9'` is `'\u{e9}'` here.
#[derive(Debug, Clone)]
pub(crate) struct Environ {
    pub(crate) entries: std::collections::BTreeMap<String, (String, String)>,
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

impl Environ {
    pub(crate) fn parse(response: &Response) -> Environ {
        assert_eq!(
            response.status(),
            200,
            "environ app failed: {}",
            response.text()
        );
        let text = std::str::from_utf8(&response.body).expect("ascii environ dump");
        let entries = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let mut fields = line.split('\t');
                let key = String::from_utf8(unhex(fields.next().expect("key"))).expect("utf-8 key");
                let kind = fields.next().expect("kind").to_owned();
                let raw = unhex(fields.next().expect("value"));
                let value = if kind == "str" {
                    raw.iter().map(|&b| char::from(b)).collect()
                } else {
                    String::from_utf8(raw).expect("utf-8 repr")
                };
                (key, (kind, value))
            })
            .collect();
        Environ { entries }
    }

    /// The value of a `str` key; panics if the key holds another type.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|(kind, value)| {
            assert_eq!(
                kind, "str",
                "environ[{key:?}] is a {kind}, not str: {value}"
            );
            value.as_str()
        })
    }

    pub(crate) fn str(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("environ has no {key:?}; keys: {:?}", self.entries.keys()))
    }

    /// `(type name, repr)` of any key.
    pub(crate) fn typed(&self, key: &str) -> (&str, &str) {
        let (kind, value) = self
            .entries
            .get(key)
            .unwrap_or_else(|| panic!("environ has no {key:?}; keys: {:?}", self.entries.keys()));
        (kind, value)
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }
}
