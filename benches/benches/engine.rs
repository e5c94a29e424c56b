//! Criterion micro-benchmarks of `Engine::call`, through the engine's public entry point and
//! without sockets: each iteration builds an `http::Request` with an in-memory body stream,
//! hands it to the engine with a `ConnInfo`, waits for the response on the benchmark thread
//! (`futures::executor::block_on`) and drains its body frame by frame. What is timed is
//! therefore everything the engine adds to a request: the CGI variables and the environ, the
//! hand-over to a Python thread and back, `start_response`, the body pipe and, for `echo`,
//! `wsgi.input` pulling the request body.
//!
//! The apps are the load benchmark's (`benches/load/apps/`), each engine has one Python
//! thread. `benches/floor.py` times the same Python work called directly from Python, the
//! floor these figures are compared with (see `benches/README.md`).
//!
//! Flask's `/json` and Django's `/plain` (a view returning a plain `HttpResponse`) are
//! benchmarked only when the framework is importable: from `$VIRTUAL_ENV` if set, otherwise
//! from `benches/load/.venv` if `load/run.sh` made it. Otherwise each is skipped with a note
//! on stderr.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use wsgi_core::{ConnInfo, Engine};

/// The in-memory request body: a ready list of chunks.
type BodyStream = futures::stream::Iter<std::vec::IntoIter<Result<Bytes, Infallible>>>;

/// A typical browser request's ten headers (`floor.py` builds the same environ).
const HEADERS: [(&str, &str); 10] = [
    ("host", "127.0.0.1:8000"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("accept-language", "en-US,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br"),
    ("connection", "keep-alive"),
    (
        "cookie",
        "sessionid=0123456789abcdef; csrftoken=fedcba9876543210",
    ),
    ("upgrade-insecure-requests", "1"),
    ("cache-control", "max-age=0"),
    ("referer", "http://127.0.0.1:8000/index.html"),
];

/// Bytes in the `stream` app's response: 100 chunks of 10,240.
const STREAM_BYTES: usize = 100 * 10240;

/// Bytes in the `echo` request body, delivered in chunks of [`ECHO_CHUNK`].
const ECHO_BYTES: usize = 64 * 1024;

/// The size of the chunks a host's body stream yields for `echo`.
const ECHO_CHUNK: usize = 16 * 1024;

fn app(file: &str) -> String {
    format!("{}/load/apps/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// The virtualenv to run the apps in: none of ours when `$VIRTUAL_ENV` is set (the engine
/// then uses it), else the load benchmark's if it exists.
fn venv() -> Option<PathBuf> {
    if std::env::var_os("VIRTUAL_ENV").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/load/.venv"));
    dir.join("pyvenv.cfg").is_file().then_some(dir)
}

fn engine(file: &str) -> Result<Engine, wsgi_core::Error> {
    let mut builder = Engine::builder(app(file)).threads(1);
    if let Some(dir) = venv() {
        builder = builder.venv(dir);
    }
    builder.build()
}

fn request(method: Method, uri: &str, body: Vec<Bytes>) -> http::Request<BodyStream> {
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in HEADERS {
        builder = builder.header(name, value);
    }
    if !body.is_empty() {
        let length: usize = body.iter().map(Bytes::len).sum();
        builder = builder
            .header("content-type", "application/octet-stream")
            .header("content-length", length);
    }
    let chunks: Vec<Result<Bytes, Infallible>> = body.into_iter().map(Ok).collect();
    builder
        .body(futures::stream::iter(chunks))
        .expect("a valid request")
}

fn conn() -> ConnInfo {
    ConnInfo::new(
        Some(SocketAddr::from(([127, 0, 0, 1], 54321))),
        Some(SocketAddr::from(([127, 0, 0, 1], 8000))),
    )
}

/// One full request: the call, then the body drained; returns the status and body length.
fn call(engine: &Engine, request: http::Request<BodyStream>) -> (StatusCode, usize) {
    block_on(async {
        let response = engine.call((request, conn())).await;
        let status = response.status();
        let mut body = response.into_body();
        let mut length = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("the response body ends cleanly");
            if let Some(data) = frame.data_ref() {
                length += black_box(data).len();
            }
        }
        (status, length)
    })
}

/// Runs one request outside the measurement and checks its answer.
fn check(engine: &Engine, request: http::Request<BodyStream>, length: usize, what: &str) {
    let (status, got) = call(engine, request);
    assert_eq!(status, StatusCode::OK, "{what}: status");
    assert_eq!(got, length, "{what}: body length");
}

fn hello(c: &mut Criterion) {
    let engine = engine("hello.py").expect("loading hello.py");
    let get = || request(Method::GET, "/hello?name=world", Vec::new());
    check(&engine, get(), 13, "hello");
    c.bench_function("engine/hello_10_headers", |b| {
        b.iter_batched(get, |req| call(&engine, req), BatchSize::SmallInput);
    });
}

fn stream(c: &mut Criterion) {
    let engine = engine("stream.py").expect("loading stream.py");
    let get = || request(Method::GET, "/stream", Vec::new());
    check(&engine, get(), STREAM_BYTES, "stream");
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Bytes(STREAM_BYTES as u64));
    group.bench_function("stream_100_chunks", |b| {
        b.iter_batched(get, |req| call(&engine, req), BatchSize::SmallInput);
    });
    group.finish();
}

fn echo(c: &mut Criterion) {
    let engine = engine("echo.py").expect("loading echo.py");
    let chunk = Bytes::from(vec![b'x'; ECHO_CHUNK]);
    let post = || {
        let body = vec![chunk.clone(); ECHO_BYTES / ECHO_CHUNK];
        request(Method::POST, "/echo", body)
    };
    // The app answers the length it read, "65536": five bytes.
    check(&engine, post(), ECHO_BYTES.to_string().len(), "echo");
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Bytes(ECHO_BYTES as u64));
    group.bench_function("echo_read_64k", |b| {
        b.iter_batched(post, |req| call(&engine, req), BatchSize::SmallInput);
    });
    group.finish();
}

/// A framework's view, benchmarked only if its app loads (the framework is importable).
fn framework(c: &mut Criterion, name: &str, file: &str, uri: &'static str) {
    let engine = match engine(file) {
        Ok(engine) => engine,
        Err(e) => {
            let why = e.to_string();
            let why = why.lines().next().unwrap_or_default();
            eprintln!("engine/{name}: skipped, {file} does not load ({why})");
            return;
        }
    };
    let get = || request(Method::GET, uri, Vec::new());
    let (status, length) = call(&engine, get());
    assert_eq!(status, StatusCode::OK, "{name}: status");
    assert!(length > 0, "{name}: empty body");
    c.bench_function(&format!("engine/{name}"), |b| {
        b.iter_batched(get, |req| call(&engine, req), BatchSize::SmallInput);
    });
}

fn flask(c: &mut Criterion) {
    framework(c, "flask_json", "flask_app.py", "/json");
}

fn django(c: &mut Criterion) {
    framework(c, "django_plain", "django_app.py", "/plain");
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = hello, stream, echo, flask, django
}
criterion_main!(benches);
