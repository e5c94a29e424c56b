//! A real axum server on 127.0.0.1:0 and a raw HTTP/1.1 client, so the tests see what a
//! client would see on the wire.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsgi_axum::Engine;

/// How long any single wait may take before the test counts it as a hang.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// One engine per test binary: the interpreter is process-wide anyway, and loading the app
/// once keeps the tests fast.
pub(crate) fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let app = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/app.py");
            // Chunked bodies stream as the app reads (not received whole first, the
            // default): these tests are about the host moving bodies while the app runs.
            Engine::builder(app)
                .threads(2)
                .stream_chunked(true)
                .build()
                .unwrap_or_else(|e| panic!("loading {app}: {e}"))
        })
        .clone()
}

/// A listener on a fresh port of 127.0.0.1.
pub(crate) async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// Serves `router` with `ConnectInfo` on `listener` in the background.
pub(crate) fn serve_on(listener: TcpListener, router: Router) -> SocketAddr {
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("axum::serve");
    });
    addr
}

/// Serves `router` on a fresh port and returns its address.
pub(crate) async fn serve(router: Router) -> SocketAddr {
    serve_on(bind().await, router)
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The `KEY=value` lines the test app reports.
    pub(crate) fn environ(&self) -> HashMap<String, String> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` (which must ask for `Connection: close`) and reads the reply to EOF.
pub(crate) async fn send_raw(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    send_on(&mut stream, raw).await
}

/// Like [`send_raw`], on a stream the caller connected (to know its local port).
pub(crate) async fn send_on(stream: &mut TcpStream, raw: &[u8]) -> Reply {
    stream.write_all(raw).await.expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut buf))
        .await
        .expect("the server did not finish its reply in time")
        .expect("read reply");
    parse(&buf)
}

/// `GET target` with a `Host` header.
pub(crate) async fn get(addr: SocketAddr, target: &str) -> Reply {
    let raw = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    send_raw(addr, raw.as_bytes()).await
}

pub(crate) fn parse(buf: &[u8]) -> Reply {
    let split = find(buf, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let raw_body = &buf[split + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Decodes a complete chunked body; panics on a truncated one, which the tests treat as a
/// failed response.
pub(crate) fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = find(raw, b"\r\n").expect("chunk size line");
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
