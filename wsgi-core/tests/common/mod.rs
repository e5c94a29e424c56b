//! Test harness: serves a Python app from a bare hyper 1 server (no axum, no tower); the
//! tests talk to it with `test_support`'s raw client, so they see exactly the bytes on the
//! wire.
//!
//! The [`HyperRequest`] wrapper below is the whole integration cost for a new host:
//! one trait impl that hands the engine the request head, the body as a byte stream,
//! and the connection facts.

// Every test binary compiles this module but uses a different part of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;

use futures::TryStreamExt;
use http_body_util::BodyDataStream;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use test_support::gate::Record;
use test_support::wire::{Chunk, Conn, Framing, Request, Response};
use wsgi_core::{BoxError, ConnInfo, Engine, EngineBuilder, HostRequest};

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

    /// The `Host` of requests written by hand.
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn client(&self) -> Conn {
        Conn::connect(self.addr)
    }

    /// Sends `bytes` as they are and returns everything the server sends until it closes
    /// the connection.
    pub(crate) fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let mut client = self.client();
        client.send(bytes);
        client.read_to_end()
    }

    /// One request on a fresh `Connection: close` connection; the response however it
    /// ends (see `Response::complete`).
    pub(crate) fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut client = self.client();
        client.send(&request(method, target, headers, body).to_bytes(self.addr));
        client.read_possibly_cut_response(method)
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
        client.send(&request("GET", target, headers, b"").to_bytes(self.addr));
        let response = client.read_aborted_response("GET")?;
        assert_eq!(response.framing, framing, "{target}: {response:?}");
        assert!(
            !response.complete,
            "{target}: the response must be aborted, got {:?}",
            response.text()
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

/// Starts `/big` (about 100 s of body at 10 ms per 1 KiB chunk, recorded in `record`) and
/// reads its head and first chunk; dropping the returned connection leaves mid-stream.
pub(crate) fn start_a_long_stream(server: &TestServer, record: &Record) -> Conn {
    let mut client = server.client();
    let target = format!("/big?chunks=10000&size=1024&sleep=0.01&{}", record.query());
    client.send(&request("GET", &target, &[], b"").to_bytes(server.addr));
    assert_eq!(client.read_head().status, 200);
    assert!(matches!(client.next_chunk(), Chunk::Data(_)));
    client
}

/// Sends `GET /hello` on `client`, after a response whose `Content-Length` the app
/// exceeded: what follows must be a new response (or nothing, if the server closed the
/// connection), never the excess bytes.
pub(crate) fn assert_no_bytes_past_the_length(server: &TestServer, client: &mut Conn) {
    let _ = client.try_send(&request("GET", "/hello", &[], b"").to_bytes(server.addr));
    let rest = client.read_to_end();
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 200"),
        "stray bytes after the declared length: {:?}",
        String::from_utf8_lossy(&rest[..rest.len().min(60)])
    );
}

/// An HTTP/1.1 request with `headers` and `body` (`Content-Length` added for a body or a
/// POST, unless `headers` has a `Transfer-Encoding`).
pub(crate) fn request(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Request {
    Request::new(method, target).headers(headers).body(body)
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
            response.status,
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
