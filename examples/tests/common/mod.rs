//! The harness shared by the tests in this directory: one test body, two hosts.
//!
//! [`start`] serves an [`Engine`] from a real axum server or a real actix-web server on
//! 127.0.0.1, mounted at the root or under a prefix, and the clients below speak HTTP/1.x
//! over raw TCP (so framing is visible) or HTTP/2 with prior knowledge. The
//! [`host_cases!`](crate::common::host_cases) macro turns one `fn(&Site)` into a test per
//! host and mount, so a behaviour cannot drift between the adapters unnoticed.

// Every test binary compiles this module but uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use wsgi_core::Engine;

/// How long any single wait may take before a test counts it as a hang. Generous: the
/// tests share two cores with the compiler and each other.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// Sends the engine's logs (access lines, `wsgi.errors`, tracebacks) to the test's captured
/// output, shown when it fails; `RUST_LOG` picks what (default `info`).
pub(crate) fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A test app under `examples/tests/apps/`.
pub(crate) fn test_app(file: &str) -> String {
    format!("{}/tests/apps/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// Whether a missing framework must fail the tests rather than skip them: set
/// `WSGI_REQUIRE_FRAMEWORKS` (scripts/test does) unless it is empty or `0`.
fn frameworks_required() -> bool {
    std::env::var_os("WSGI_REQUIRE_FRAMEWORKS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Loads `app`, which needs the Python package `package`. `None` (after saying why on
/// stderr) when that package cannot be imported and frameworks are not required; any
/// other failure panics.
pub(crate) fn framework_engine(package: &str, app: &str, threads: usize) -> Option<Engine> {
    init_logs();
    match Engine::builder(app).threads(threads).build() {
        Ok(engine) => Some(engine),
        Err(e) => {
            let message = e.to_string();
            let missing = message.contains(&format!("No module named '{package}'"));
            if missing && !frameworks_required() {
                eprintln!(
                    "SKIPPED: the Python package {package:?} is not importable, so the tests \
                     serving {app} do nothing. Install requirements-test.txt into the \
                     virtualenv named by VIRTUAL_ENV (scripts/test does), or set \
                     WSGI_REQUIRE_FRAMEWORKS=1 to make this a failure."
                );
                None
            } else {
                panic!("loading {app}: {message}");
            }
        }
    }
}

/// The Rust server hosting the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    /// `WsgiService` in an axum router, served by `axum::serve` (HTTP/1.1 and h2c).
    Axum,
    /// `WsgiApp` in an actix-web `App`, served by `HttpServer` (HTTP/1.1 and h2c).
    Actix,
}

/// A running server; dropping it stops it.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) host: Host,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

/// Serves `engine` from `host` on a fresh port of 127.0.0.1: at `mount` (its
/// `SCRIPT_NAME`, next to nothing else, so other paths get the host's own 404) or, for
/// `None`, as the handler of every path.
pub(crate) fn start(host: Host, engine: &Engine, mount: Option<&str>) -> Server {
    let engine = engine.clone();
    let mount = mount.map(str::to_owned);
    match host {
        Host::Axum => serve_axum(move |addr| {
            use axum::Router;
            use wsgi_axum::WsgiService;

            let service = WsgiService::new(engine).local_addr(addr);
            match mount {
                Some(prefix) => Router::new().nest_service(&prefix, service),
                None => Router::new().fallback_service(service),
            }
        }),
        Host::Actix => serve_actix(move |config| {
            use wsgi_actix::WsgiApp;

            match &mount {
                Some(prefix) => {
                    config.service(WsgiApp::new(prefix.clone(), engine.clone()));
                }
                None => {
                    config.default_service(WsgiApp::new("", engine.clone()));
                }
            }
        }),
    }
}

/// Serves the router that `make` builds for the bound address with `axum::serve` (with
/// `ConnectInfo`, so apps see `REMOTE_ADDR`), on a runtime of its own.
pub(crate) fn serve_axum(make: impl FnOnce(SocketAddr) -> axum::Router) -> Server {
    init_logs();
    use axum::serve::ListenerExt;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("axum-test-server")
        .enable_all()
        .build()
        .expect("tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let router = make(addr);
    // Small streamed chunks must not sit in Nagle's buffer.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    runtime.spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("axum::serve");
    });
    Server {
        addr,
        host: Host::Axum,
        stop: Some(Box::new(move || runtime.shutdown_background())),
    }
}

/// Serves an actix-web `App` that `configure` fills, with `HttpServer` (HTTP/1.x and h2c)
/// on a thread of its own.
pub(crate) fn serve_actix<F>(configure: F) -> Server
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
{
    init_logs();
    use actix_web::{App, HttpServer};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    // actix-web runs its own single-threaded runtimes; the test thread only talks TCP.
    let thread = std::thread::Builder::new()
        .name("actix-test-server".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || App::new().configure(configure.clone()))
                    .workers(2)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .listen_auto_h2c(listener)
                    .expect("actix listen")
                    .run();
                handle_tx.send(server.handle()).expect("send handle");
                server.await
            })
        })
        .expect("spawn the actix server thread");
    let handle = handle_rx
        .recv_timeout(DEADLINE)
        .expect("the actix server did not start");
    Server {
        addr,
        host: Host::Actix,
        stop: Some(Box::new(move || {
            futures::executor::block_on(handle.stop(false));
            let _ = thread.join();
        })),
    }
}

/// A server plus the prefix its app is mounted at (`""` at the root).
pub(crate) struct Site {
    pub(crate) server: Server,
    pub(crate) mount: &'static str,
}

impl Site {
    pub(crate) fn new(host: Host, engine: &Engine, mount: &'static str) -> Site {
        let server = start(host, engine, (!mount.is_empty()).then_some(mount));
        Site { server, mount }
    }

    pub(crate) fn host(&self) -> Host {
        self.server.host
    }

    /// `path` as a client reaches it: behind the mount prefix.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.mount)
    }

    /// Sends `request` (its target relative to the mount) on a fresh connection.
    pub(crate) fn send(&self, request: Request) -> Response {
        let request = Request {
            target: self.url(&request.target),
            ..request
        };
        send(self.server.addr, &request)
    }

    pub(crate) fn get(&self, path: &str) -> Response {
        self.send(Request::get(path))
    }

    /// Opens a connection and sends `request`, for reading the response piece by piece.
    pub(crate) fn open(&self, request: Request) -> Conn {
        let request = Request {
            target: self.url(&request.target),
            ..request
        };
        let mut conn = Conn::connect(self.server.addr);
        conn.send(&request.to_bytes(self.server.addr));
        conn
    }
}

/// Generates, for each named `fn(&Site)`, a module of four tests: axum and actix-web,
/// each with the app at the root and under `$prefix`. `$engine` names a function of the caller returning
/// `Option<Engine>`; `None` skips (it has said why).
#[allow(unused_macros)]
macro_rules! host_cases {
    ($engine:ident, $prefix:literal; $($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use crate::common::{Host, Site};

                fn run(host: Host, mount: &'static str) {
                    if let Some(engine) = super::$engine() {
                        super::$name(&Site::new(host, &engine, mount));
                    }
                }

                #[test]
                fn axum_root() {
                    run(Host::Axum, "");
                }

                #[test]
                fn axum_mounted() {
                    run(Host::Axum, $prefix);
                }

                #[test]
                fn actix_root() {
                    run(Host::Actix, "");
                }

                #[test]
                fn actix_mounted() {
                    run(Host::Actix, $prefix);
                }
            }
        )+
    };
}
#[allow(unused_imports)]
pub(crate) use host_cases;

/// An HTTP/1.x request; always sent with `Connection: close` unless it says otherwise.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) version: &'static str,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Send the body chunked, in pieces of this size, instead of with Content-Length.
    pub(crate) chunked: Option<usize>,
}

impl Request {
    pub(crate) fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            version: "HTTP/1.1",
            headers: Vec::new(),
            body: Vec::new(),
            chunked: None,
        }
    }

    pub(crate) fn get(target: &str) -> Request {
        Request::new("GET", target)
    }

    pub(crate) fn head(target: &str) -> Request {
        Request::new("HEAD", target)
    }

    pub(crate) fn post(target: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Request {
        Request::new("POST", target)
            .header("Content-Type", content_type)
            .body(body)
    }

    /// A POST of `fields`, urlencoded as a browser sends a form.
    pub(crate) fn form(target: &str, fields: &[(&str, &str)]) -> Request {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        Request::post(target, "application/x-www-form-urlencoded", body)
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    pub(crate) fn version(mut self, version: &'static str) -> Request {
        self.version = version;
        self
    }

    pub(crate) fn chunked(mut self, piece: usize) -> Request {
        self.chunked = Some(piece.max(1));
        self
    }

    /// The request on the wire; `addr` is the `Host` unless the request names one.
    pub(crate) fn to_bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let mut head = format!("{} {} {}\r\n", self.method, self.target, self.version);
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if !has("host") {
            head.push_str(&format!("Host: {addr}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !has("connection") {
            head.push_str("Connection: close\r\n");
        }
        // A Transfer-Encoding the test set itself means it frames the body by hand.
        let framed_by_hand = has("transfer-encoding");
        match self.chunked {
            Some(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
            None if framed_by_hand => {}
            None if !self.body.is_empty() || self.method == "POST" => {
                head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
            }
            None => {}
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        match self.chunked {
            Some(piece) => {
                for part in self.body.chunks(piece) {
                    bytes.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    bytes.extend_from_slice(part);
                    bytes.extend_from_slice(b"\r\n");
                }
                bytes.extend_from_slice(b"0\r\n\r\n");
            }
            None => bytes.extend_from_slice(&self.body),
        }
        bytes
    }
}

/// Sends `request` on a fresh connection and reads the whole response.
pub(crate) fn send(addr: SocketAddr, request: &Request) -> Response {
    let mut conn = Conn::connect(addr);
    conn.send(&request.to_bytes(addr));
    conn.read_response(&request.method)
}

/// How the response body was delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body by definition (HEAD, 1xx, 204, 304).
    NoBody,
    Length(usize),
    Chunked,
    /// Delimited by the server closing the connection.
    Close,
}

/// A response as the client saw it.
#[derive(Clone)]
pub(crate) struct Response {
    pub(crate) version: String,
    pub(crate) status: u16,
    /// Names lower-cased, in the order received.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) framing: Framing,
}

impl std::fmt::Debug for Response {
    /// The body as text, cut short: assertion messages stay readable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let shown: String = text.chars().take(2000).collect();
        f.debug_struct("Response")
            .field("version", &self.version)
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("framing", &self.framing)
            .field("body_len", &self.body.len())
            .field("body", &shown)
            .finish()
    }
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics, showing the response, if it is not.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {:?}", self.status, self.text()))
    }

    /// Asserts the status and that `Content-Type` starts with `content_type`.
    pub(crate) fn expect(&self, status: u16, content_type: &str) -> &Response {
        assert_eq!(self.status, status, "{self:?}");
        let actual = self.header("content-type").unwrap_or_default();
        assert!(
            actual.starts_with(content_type),
            "Content-Type {actual:?}, expected {content_type:?}: {self:?}"
        );
        self
    }

    /// A response with a body of known length must announce it exactly.
    pub(crate) fn assert_length_matches(&self) {
        if let Framing::Length(n) = self.framing {
            assert_eq!(n, self.body.len(), "Content-Length and body disagree");
        }
    }
}

/// A client connection with just enough HTTP/1.x parsing to check framing and to read a
/// body as it arrives.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    /// Decoding state of a chunked body: bytes left in the current chunk.
    chunk_left: Option<usize>,
}

/// One step of reading a body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Data(Vec<u8>),
    End,
}

impl Conn {
    pub(crate) fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Conn {
            stream,
            buf: Vec::new(),
            eof: false,
            chunk_left: None,
        }
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local addr")
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
        self.stream.flush().expect("flush");
    }

    /// Sends without panicking: the server may have closed the connection.
    pub(crate) fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Whether the server closed the connection without sending anything more.
    pub(crate) fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }

    /// Reads more bytes; false at EOF. A read that times out is a hang: it panics.
    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return false;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "no data from the server for {DEADLINE:?}; so far: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )
                }
                Err(_) => {
                    // A reset ends the stream like EOF; the framing check catches truncation.
                    self.eof = true;
                    return false;
                }
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    fn read_line(&mut self) -> Vec<u8> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let mut line = self.take(pos + 2);
                line.truncate(pos);
                return line;
            }
            assert!(self.fill(), "connection closed inside a line");
        }
    }

    /// Reads a status line and headers.
    pub(crate) fn read_head(&mut self) -> (String, u16, Vec<(String, String)>) {
        let end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos;
            }
            assert!(
                self.fill(),
                "connection closed before a complete response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let raw = self.take(end + 4);
        let text = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (version, status, headers)
    }

    /// The next piece of a chunked body, as soon as any of it has arrived.
    pub(crate) fn next_chunked(&mut self) -> Piece {
        loop {
            match self.chunk_left {
                None => {
                    let line = String::from_utf8_lossy(&self.read_line()).into_owned();
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                    if size == 0 {
                        while !self.read_line().is_empty() {}
                        return Piece::End;
                    }
                    self.chunk_left = Some(size);
                }
                Some(0) => {
                    assert_eq!(self.read_line(), b"", "chunk data not followed by CRLF");
                    self.chunk_left = None;
                }
                Some(left) => {
                    if self.buf.is_empty() {
                        assert!(self.fill(), "connection closed inside a chunk");
                    }
                    let n = left.min(self.buf.len());
                    self.chunk_left = Some(left - n);
                    return Piece::Data(self.take(n));
                }
            }
        }
    }

    /// The next piece of a body delimited by the connection closing.
    pub(crate) fn next_until_close(&mut self) -> Piece {
        if self.buf.is_empty() && !self.fill() {
            return Piece::End;
        }
        let n = self.buf.len();
        Piece::Data(self.take(n))
    }

    /// Reads a chunked body until its decoded bytes contain `needle`; returns them.
    pub(crate) fn read_chunked_until(&mut self, needle: &[u8]) -> Vec<u8> {
        let mut seen = Vec::new();
        while find(&seen, needle).is_none() {
            match self.next_chunked() {
                Piece::Data(data) => seen.extend_from_slice(&data),
                Piece::End => panic!(
                    "body ended without {:?}: {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
        seen
    }

    /// Reads the rest of a chunked body.
    pub(crate) fn read_chunked_to_end(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        while let Piece::Data(data) = self.next_chunked() {
            body.extend_from_slice(&data);
        }
        body
    }

    /// Reads one whole response to a request of `method`.
    pub(crate) fn read_response(&mut self, method: &str) -> Response {
        let (version, status, headers) = self.read_head();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let framing =
            if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
                Framing::NoBody
            } else if header("transfer-encoding")
                .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
            {
                Framing::Chunked
            } else if let Some(length) = header("content-length") {
                Framing::Length(length.parse().expect("numeric Content-Length"))
            } else {
                Framing::Close
            };
        let body = match framing {
            Framing::NoBody => Vec::new(),
            Framing::Length(n) => {
                while self.buf.len() < n {
                    assert!(
                        self.fill(),
                        "connection closed after {} of {n} body bytes",
                        self.buf.len()
                    );
                }
                self.take(n)
            }
            Framing::Chunked => self.read_chunked_to_end(),
            Framing::Close => {
                while self.fill() {}
                std::mem::take(&mut self.buf)
            }
        };
        Response {
            version,
            status,
            headers,
            body,
            framing,
        }
    }
}

/// The response to an HTTP/2 request.
#[derive(Debug)]
pub(crate) struct H2Response {
    pub(crate) status: u16,
    pub(crate) version: hyper::Version,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// A `GET` (or, with a body, a `POST`) over HTTP/2 with prior knowledge (h2c): the
/// connection starts with the HTTP/2 preface, no upgrade. If `gate` is given, the
/// response body must contain `first` before the gate is opened: HTTP/2 streams too.
pub(crate) fn h2_request(
    addr: SocketAddr,
    target: &str,
    body: Option<Vec<u8>>,
    gate: Option<(&Gate, &[u8])>,
) -> H2Response {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let work = async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .expect("h2c handshake");
            tokio::spawn(connection);
            let method = if body.is_some() { "POST" } else { "GET" };
            let request = hyper::Request::builder()
                .method(method)
                .uri(format!("http://{addr}{target}"))
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .expect("request");
            let response = sender.send_request(request).await.expect("h2 response");
            let (parts, mut incoming) = response.into_parts();
            let mut seen = Vec::new();
            if let Some((gate, first)) = gate {
                while find(&seen, first).is_none() {
                    let frame = incoming
                        .frame()
                        .await
                        .unwrap_or_else(|| panic!("h2 body ended before {first:?}: {seen:?}"))
                        .expect("h2 body frame");
                    if let Ok(data) = frame.into_data() {
                        seen.extend_from_slice(&data);
                    }
                }
                gate.open();
            }
            let rest = incoming.collect().await.expect("h2 body").to_bytes();
            seen.extend_from_slice(&rest);
            H2Response {
                status: parts.status.as_u16(),
                version: parts.version,
                headers: parts.headers,
                body: seen,
            }
        };
        tokio::time::timeout(DEADLINE, work)
            .await
            .expect("the HTTP/2 exchange did not finish in time")
    })
}

/// A name no other test, in this process or another, uses at the same time.
fn unique_token() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A flag file that releases an app waiting in `wait_for_gate` (tests/apps) or in the
/// Django export (`?gate=TOKEN`): the app removes it once seen.
pub(crate) struct Gate {
    pub(crate) token: String,
    path: PathBuf,
}

impl Gate {
    pub(crate) fn new() -> Gate {
        let token = unique_token();
        let path = std::env::temp_dir().join(format!("wsgi-gate-{token}"));
        Gate { token, path }
    }

    pub(crate) fn open(&self) {
        std::fs::write(&self.path, b"open").expect("create the gate file");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // A test that failed before opening its gate must not leave a Python thread waiting.
        if std::thread::panicking() {
            self.open();
        }
    }
}

/// A file the app appends lines to (`?record=TOKEN`), for what the client cannot see.
pub(crate) struct Record {
    pub(crate) token: String,
    path: PathBuf,
}

impl Record {
    pub(crate) fn new() -> Record {
        let token = unique_token();
        let path = std::env::temp_dir().join(format!("wsgi-record-{token}"));
        Record { token, path }
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Polls until the app has recorded `line`.
    pub(crate) fn wait_for(&self, line: &str) {
        let start = std::time::Instant::now();
        while !self.lines().iter().any(|l| l == line) {
            assert!(
                start.elapsed() < DEADLINE,
                "the app never recorded {line:?}; it has {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The cookies a browser would keep, by name (paths and expiry ignored: one site).
#[derive(Debug, Default)]
pub(crate) struct Cookies(BTreeMap<String, String>);

impl Cookies {
    /// Takes the `Set-Cookie` headers of `response`.
    pub(crate) fn update(&mut self, response: &Response) {
        for value in response.header_all("set-cookie") {
            let pair = value.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                let (name, value) = (name.trim(), value.trim());
                if value.is_empty() || value == "\"\"" {
                    self.0.remove(name);
                } else {
                    self.0.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `request` with these cookies in a `Cookie` header.
    pub(crate) fn apply(&self, request: Request) -> Request {
        if self.0.is_empty() {
            return request;
        }
        let header = self
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        request.header("Cookie", &header)
    }
}

/// One part of a `multipart/form-data` body.
pub(crate) enum Part<'a> {
    Field(&'a str, &'a str),
    /// Field name, file name, content type, content.
    File(&'a str, &'a str, &'a str, &'a [u8]),
}

/// A `multipart/form-data` body and its Content-Type.
pub(crate) fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "wsgi-rs-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::Field(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}")
                        .as_bytes(),
                );
            }
            Part::File(name, filename, content_type, content) => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                         Content-Type: {content_type}\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(content);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Percent-encodes everything but unreserved characters, as forms do (space as `%20`).
pub(crate) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The hex SHA-256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic bytes that do not compress or repeat in short cycles (xorshift).
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `find`, as text, for assertion messages.
pub(crate) fn contains(hay: &[u8], needle: &str) -> bool {
    find(hay, needle.as_bytes()).is_some()
}
