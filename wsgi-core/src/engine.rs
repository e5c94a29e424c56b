//! The engine: configuration, the request queue and the host-facing futures.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::access::AccessLine;
use crate::body::WsgiBody;
use crate::dispatch::{Dispatch, TrySendError};
use crate::environ::{CgiVars, Reject};
use crate::error::Error;
use crate::host::HostRequest;
use crate::input::{self, BodyBuffer, InputPump, InputSource, Unread};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::pipe::{self, Msg, PipeRx, PipeTx};
use crate::proxy::TrustedProxies;
use crate::python;
use crate::response::{Head, HeadBody, status_forbids_body};
use crate::watchdog::{self, Slot};

/// Python threads per engine unless configured.
///
/// Under the GIL only one thread runs Python at a time, so extra threads do not add CPU;
/// they let a request that waits (a database query, an HTTP call, `time.sleep`) leave the
/// interpreter to another. Eight covers typical I/O-bound Django or Flask views without
/// the cost of many runnable threads contending for the GIL; raise it for apps that mostly
/// wait, lower it to 1 for apps that are not thread-safe.
pub const DEFAULT_THREADS: usize = 8;

/// Requests that may wait for a free Python thread before new ones get 503.
pub const DEFAULT_QUEUE_DEPTH: usize = 1024;

/// Request bodies up to this size are read whole before the request is queued.
///
/// A small body then costs the Python thread no waiting and no hand-off per chunk (a
/// 64 KiB POST benchmark went from 16.6-20.4k to 20.2-27.2k requests/s), and a slow upload
/// holds only the host's task, not a Python thread. Larger bodies, bodies of unknown length and bodies
/// behind `Expect: 100-continue` are streamed to `wsgi.input` as the application reads.
pub const DEFAULT_BUFFER_BODY: u64 = 64 * 1024;

/// Bytes of response body buffered per request before the application is paused.
const PIPE_LIMIT: usize = 256 * 1024;

/// Builds an [`Engine`]: see [`Engine::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct EngineBuilder {
    pub(crate) app: String,
    pub(crate) threads: usize,
    pub(crate) queue_depth: usize,
    pub(crate) retry_after: u32,
    pub(crate) max_body: Option<u64>,
    pub(crate) buffer_body: u64,
    pub(crate) chdir: Option<PathBuf>,
    pub(crate) venv: Option<PathBuf>,
    pub(crate) strict_python_version: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_queue_wait: Option<Duration>,
    pub(crate) body_timeout: Option<Duration>,
    pub(crate) trusted_proxies: Vec<String>,
}

impl EngineBuilder {
    /// Number of Python worker threads (default [`DEFAULT_THREADS`]).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// How many requests may wait for a free thread (default [`DEFAULT_QUEUE_DEPTH`]);
    /// beyond that, requests are answered 503 with `Retry-After`.
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.queue_depth = n;
        self
    }

    /// How long a request may wait in the queue before it is answered 503 instead of run
    /// (default: as long as it takes). A client that left while queued is never run.
    pub fn max_queue_wait(mut self, wait: Duration) -> Self {
        self.max_queue_wait = Some(wait);
        self
    }

    /// How long the application may take to produce a response (default: no limit).
    /// Past it the client gets 504 (or, if the body had started, an aborted body), and
    /// `TimeoutError` is raised in the application's thread so the view stops; the
    /// iterable's `close()` still runs. A thread blocked inside C code cannot be
    /// interrupted: it is logged and counted in [`MetricsSnapshot::stuck_threads`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long `wsgi.input` waits for the next piece of the request body before it raises
    /// `OSError` (default: no limit), so a client that stops mid-upload cannot hold a
    /// Python thread; the response is then 408 if nothing was sent.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = Some(timeout);
        self
    }

    /// Reverse proxies whose forwarding headers are believed: IP addresses or CIDR ranges
    /// (`"127.0.0.1"`, `"10.0.0.0/8"`, `"fd00::/8"`). For requests from them, `REMOTE_ADDR`
    /// comes from `Forwarded`/`X-Forwarded-For` (the rightmost address that is not a
    /// trusted proxy), `wsgi.url_scheme` from `X-Forwarded-Proto`, the host from
    /// `X-Forwarded-Host`, and `X-Forwarded-Prefix` is put before `SCRIPT_NAME`. From any
    /// other peer those headers change nothing. Default: none trusted.
    pub fn trusted_proxies<I, S>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.trusted_proxies = proxies.into_iter().map(Into::into).collect();
        self
    }

    /// The `Retry-After` value, in seconds, of 503 answers (default 1).
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = secs;
        self
    }

    /// The largest request body accepted, in bytes (default: no limit). A larger declared
    /// `Content-Length` is answered 413 before the application runs; a chunked body that
    /// grows past it raises `OSError` in `wsgi.input` and is answered 413.
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// Request bodies with a `Content-Length` of at most `bytes` are read whole by the host
    /// before the application is called (default [`DEFAULT_BUFFER_BODY`]; 0 turns it off).
    /// Memory is at most this much per request being received; a client that fails to
    /// send such a body is answered 400 without running the application. Bodies behind
    /// `Expect: 100-continue` are never buffered, so the application still decides
    /// whether the client should send them.
    pub fn buffer_body(mut self, bytes: u64) -> Self {
        self.buffer_body = bytes;
        self
    }

    /// Changes the process's working directory before the application is loaded, as
    /// gunicorn's `--chdir` does. This affects the whole process.
    pub fn chdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.chdir = Some(dir.into());
        self
    }

    /// Runs the application in the virtualenv at `dir` (default: `$VIRTUAL_ENV`, if set):
    /// its site-packages are importable and `sys.prefix` is the venv, as with the venv's
    /// own `python`. The venv must be made for the Python this binary embeds. One process
    /// has one interpreter, so every engine in it shares the venv.
    pub fn venv(mut self, dir: impl Into<PathBuf>) -> Self {
        self.venv = Some(dir.into());
        self
    }

    /// What to do when a `.python-version` file (pyenv's), in the application's directory
    /// or above it, names a Python `major.minor` other than the embedded one: log a warning
    /// and load the application anyway (`false`, the default), or refuse to build (`true`).
    pub fn strict_python_version(mut self, strict: bool) -> Self {
        self.strict_python_version = strict;
        self
    }

    /// Starts the interpreter if needed, loads the application and starts the threads.
    pub fn build(self) -> Result<Engine, Error> {
        if self.threads == 0 {
            return Err(Error::Config("threads must be at least 1".into()));
        }
        let proxies = TrustedProxies::parse(&self.trusted_proxies).map_err(Error::Config)?;
        if self.queue_depth == 0 {
            return Err(Error::Config("queue depth must be at least 1".into()));
        }
        // Resolved before `chdir`, as a user typing a relative path means it.
        let (venv, venv_origin) = match &self.venv {
            Some(dir) => (Some(dir.clone()), ""),
            None => (
                std::env::var_os("VIRTUAL_ENV")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
                " (from $VIRTUAL_ENV)",
            ),
        };
        let venv = venv.map(|v| std::path::absolute(&v).unwrap_or(v));
        if let Some(dir) = &self.chdir {
            std::env::set_current_dir(dir).map_err(|source| Error::Chdir {
                path: dir.clone(),
                source,
            })?;
        }
        // The `chdir` directory goes on `sys.path` too, as with gunicorn's `--chdir`.
        let chdir = self
            .chdir
            .as_ref()
            .and_then(|_| std::env::current_dir().ok());
        let app = python::load_app(
            &self.app,
            &python::LoadOptions {
                venv: venv.as_deref(),
                venv_origin,
                extra_path: chdir.as_deref(),
                strict_python_version: self.strict_python_version,
            },
        )?;
        let queue = Arc::new(Dispatch::new(self.queue_depth, self.threads));
        let shared = Arc::new(Shared {
            closing: AtomicBool::new(false),
            force_close: Arc::new(AtomicBool::new(false)),
            in_flight: Mutex::new(0),
            idle: Condvar::new(),
            completed: AtomicUsize::new(0),
            metrics: Arc::new(Metrics::default()),
            slots: (0..self.threads).map(|_| Slot::default()).collect(),
            next_id: AtomicU64::new(0),
            timeout: self.timeout,
            max_queue_wait: self.max_queue_wait,
            body_timeout: self.body_timeout,
            retry_after: self.retry_after,
        });
        let workers = python::spawn_workers(app, queue.clone(), shared.clone())?;
        if let Some(timeout) = self.timeout {
            let weak = Arc::downgrade(&shared);
            std::thread::Builder::new()
                .name("wsgi-watchdog".into())
                .spawn(move || watchdog::watch(weak, timeout))
                .map_err(Error::Thread)?;
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                queue,
                proxies,
                shared,
                config: self,
                workers: Mutex::new(workers),
            }),
        })
    }
}

/// A loaded WSGI application with its pool of Python threads.
///
/// Cheap to clone: clones share the application and the pool. Hand requests to it with
/// [`Engine::call`] from any thread; the host's threads never take the GIL.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queue: Arc<Dispatch<Job>>,
    proxies: TrustedProxies,
    shared: Arc<Shared>,
    config: EngineBuilder,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Inner {
    /// Queues `job` for a Python thread: the future then waits for the response head.
    fn enqueue(
        &self,
        mut job: Job,
        rx: PipeRx,
        input: Option<InputPump>,
        head_only: bool,
    ) -> ResponseFuture {
        job.enqueued = Instant::now();
        match self.queue.try_send(job) {
            Ok(()) => ResponseFuture {
                state: State::Waiting {
                    rx,
                    input,
                    head_only,
                },
                access: None,
            },
            Err(TrySendError::Full) => {
                self.shared
                    .metrics
                    .rejected_overload
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "wsgi_core", depth = self.config.queue_depth, "request queue full; answered 503");
                ResponseFuture::ready(
                    self.shared
                        .unavailable("all Python threads are busy and the queue is full"),
                )
            }
            Err(TrySendError::Closed) => ResponseFuture::ready(
                self.shared
                    .unavailable("the Python worker threads have stopped"),
            ),
        }
    }
}

/// Whether a request may carry body bytes. Over HTTP/1, a request with neither
/// `Content-Length` nor `Transfer-Encoding` has none (RFC 9112, 6.3); HTTP/2 and later
/// may send a body without declaring its length.
fn has_body(parts: &http::request::Parts, content_length: Option<u64>) -> bool {
    match content_length {
        Some(len) => len > 0,
        None => {
            parts.version > http::Version::HTTP_11
                || parts.headers.contains_key(header::TRANSFER_ENCODING)
        }
    }
}

/// `Expect: 100-continue`: the client waits for a go-ahead, which the host gives when
/// the body is first read, so the application must be the one to read it.
fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::EXPECT)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the workers' loops once it is drained; they are detached
        // rather than joined so that dropping an engine never blocks the host.
        self.queue.close();
        self.workers.lock().map(|mut w| w.clear()).ok();
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    closing: AtomicBool,
    pub(crate) force_close: Arc<AtomicBool>,
    in_flight: Mutex<usize>,
    idle: Condvar,
    completed: AtomicUsize,
    pub(crate) metrics: Arc<Metrics>,
    /// One per Python thread: what it runs, for the watchdog.
    pub(crate) slots: Box<[Slot]>,
    next_id: AtomicU64,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_queue_wait: Option<Duration>,
    pub(crate) body_timeout: Option<Duration>,
    pub(crate) retry_after: u32,
}

impl Shared {
    /// The 503 answer to a request that cannot be served now.
    pub(crate) fn unavailable(&self, why: &str) -> Head {
        let mut head = Head::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("Service Unavailable: {why}\n"),
        );
        head.headers
            .insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after));
        head
    }
}

/// Counts a request as in flight from queueing until its response is finished on the
/// Python side (including the iterable's `close()`).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: &Arc<Shared>) -> Self {
        *shared.in_flight.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut n = self.0.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        self.0.completed.fetch_add(1, Ordering::Relaxed);
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// One request on its way to a Python thread.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) enqueued: Instant,
    pub(crate) vars: CgiVars,
    pub(crate) input: InputSource,
    pub(crate) content_length: Option<u64>,
    pub(crate) tx: Arc<PipeTx>,
    pub(crate) in_flight: InFlight,
}

impl Engine {
    /// Configures an engine for the application `app`:
    /// a directory holding a `passenger_wsgi.py` (Passenger's convention: its `application`),
    /// `path/to/file.py` (its `application` callable), `path/to/file.py:callable`,
    /// `package.module:callable`, or a factory called with literal arguments, as gunicorn
    /// accepts: `package.module:create_app()`, `package.module:create_app('prod', debug=False)`.
    /// The application's directory (a module's: the working directory) goes first on
    /// `sys.path`.
    pub fn builder(app: impl Into<String>) -> EngineBuilder {
        EngineBuilder {
            app: app.into(),
            threads: DEFAULT_THREADS,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            retry_after: 1,
            max_body: None,
            buffer_body: DEFAULT_BUFFER_BODY,
            chdir: None,
            venv: None,
            strict_python_version: false,
            timeout: None,
            max_queue_wait: None,
            body_timeout: None,
            trusted_proxies: Vec::new(),
        }
    }

    /// The number of Python threads serving this engine.
    pub fn threads(&self) -> usize {
        self.inner.config.threads
    }

    /// Runs one request through the application.
    ///
    /// The returned future resolves once the application has committed its status and
    /// headers; the body then streams. It never fails: problems become responses
    /// (404 outside the mount, 413, 500, 503) and log lines. Dropping the future or the
    /// body tells the application the client has gone.
    pub fn call<R: HostRequest>(&self, request: R) -> ResponseFuture {
        let (parts, body, conn) = request.into_parts();
        let access = AccessLine::start(
            &parts.method,
            &parts.uri,
            conn.peer_addr,
            &self.inner.shared.metrics,
        );
        self.dispatch(parts, body, &conn).with_access(Some(access))
    }

    fn dispatch<B>(
        &self,
        parts: http::request::Parts,
        body: B,
        conn: &crate::host::ConnInfo,
    ) -> ResponseFuture
    where
        B: futures::Stream<Item = Result<bytes::Bytes, crate::host::BoxError>> + Send + 'static,
    {
        let inner = &self.inner;
        if inner.shared.closing.load(Ordering::Acquire) {
            return ResponseFuture::ready(self.unavailable("the server is shutting down"));
        }
        let vars = match CgiVars::new(&parts, conn, &inner.proxies) {
            Ok(vars) => vars,
            Err(Reject::NotMounted) => {
                return ResponseFuture::ready(Head::plain(StatusCode::NOT_FOUND, "Not Found\n"));
            }
        };
        let content_length = match parts.headers.get(header::CONTENT_LENGTH) {
            None => None,
            Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
                Some(n) => Some(n),
                None => {
                    return ResponseFuture::ready(Head::plain(
                        StatusCode::BAD_REQUEST,
                        "Invalid Content-Length\n",
                    ));
                }
            },
        };
        if let (Some(max), Some(len)) = (inner.config.max_body, content_length)
            && len > max
        {
            tracing::info!(target: "wsgi_core", len, max, "request body larger than max_body; answered 413");
            return ResponseFuture::ready(Head::plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large\n",
            ));
        }
        let head_only = parts.method == Method::HEAD;
        let (tx, rx) = pipe::pipe(PIPE_LIMIT, inner.shared.force_close.clone());
        let mut job = Job {
            id: inner.shared.next_id.fetch_add(1, Ordering::Relaxed),
            enqueued: Instant::now(),
            vars,
            input: InputSource::empty(),
            content_length,
            tx: Arc::new(tx),
            in_flight: InFlight::new(&inner.shared),
        };
        if !has_body(&parts, content_length) {
            return self.inner.enqueue(job, rx, None, head_only);
        }
        match content_length {
            Some(len) if len <= inner.config.buffer_body && !expects_continue(&parts.headers) => {
                ResponseFuture {
                    state: State::Buffering(Box::new(Buffering {
                        buffer: BodyBuffer::new(body, len, inner.shared.body_timeout),
                        job,
                        rx,
                        head_only,
                        engine: self.inner.clone(),
                    })),
                    access: None,
                }
            }
            _ => {
                let (pump, source) = input::channel(body, inner.config.max_body);
                job.input = source;
                self.inner.enqueue(job, rx, Some(pump), head_only)
            }
        }
    }

    fn unavailable(&self, why: &str) -> Head {
        self.inner.shared.unavailable(why)
    }

    /// A snapshot of this engine's counters (for `/metrics`, dashboards and tests).
    pub fn metrics(&self) -> MetricsSnapshot {
        let shared = &self.inner.shared;
        let in_flight = *shared.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        shared
            .metrics
            .snapshot(self.inner.config.threads, in_flight, self.inner.queue.len())
    }

    /// Stops taking requests (new ones get 503), lets in-flight requests finish for up to
    /// `grace`, then aborts the rest: their responses are cut and their iterables closed.
    ///
    /// The future does its waiting on a helper thread, so it works on any executor.
    pub fn shutdown(&self, grace: Duration) -> ShutdownFuture {
        let shared = self.inner.shared.clone();
        shared.closing.store(true, Ordering::Release);
        let (tx, rx) = futures::channel::oneshot::channel();
        let started = shared.completed.load(Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("wsgi-shutdown".into())
            .spawn(move || {
                let deadline = Instant::now() + grace;
                let mut n = shared.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                while *n > 0 {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    n = shared.idle.wait_timeout(n, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                }
                let aborted = *n;
                drop(n);
                if aborted > 0 {
                    tracing::warn!(target: "wsgi_core", aborted, "grace period over; aborting in-flight requests");
                    shared.force_close.store(true, Ordering::Release);
                }
                let _ = tx.send(ShutdownReport {
                    completed: shared.completed.load(Ordering::Relaxed).saturating_sub(started),
                    aborted,
                });
            });
        ShutdownFuture(spawned.ok().map(|_| rx))
    }
}

/// What [`Engine::shutdown`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Requests that finished after shutdown began.
    pub completed: usize,
    /// Requests still running when the grace period ended.
    pub aborted: usize,
}

/// Resolves when shutdown's waiting is over; see [`Engine::shutdown`].
#[derive(Debug)]
#[must_use = "shutdown waits only when the future is awaited"]
pub struct ShutdownFuture(Option<futures::channel::oneshot::Receiver<ShutdownReport>>);

impl Future for ShutdownFuture {
    type Output = ShutdownReport;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ShutdownReport> {
        match &mut self.0 {
            None => Poll::Ready(ShutdownReport::default()),
            Some(rx) => Pin::new(rx).poll(cx).map(|r| r.unwrap_or_default()),
        }
    }
}

/// The response to [`Engine::call`]; resolves when the status and headers are known.
#[derive(Debug)]
#[must_use = "the request runs only while its response future is polled or kept"]
pub struct ResponseFuture {
    state: State,
    access: Option<Box<AccessLine>>,
}

#[derive(Debug)]
struct Buffering {
    buffer: BodyBuffer,
    job: Job,
    rx: PipeRx,
    head_only: bool,
    engine: Arc<Inner>,
}

#[derive(Debug)]
enum State {
    Ready(Option<Head>),
    /// Reading a small body whole before the request is queued.
    Buffering(Box<Buffering>),
    Waiting {
        rx: PipeRx,
        input: Option<InputPump>,
        head_only: bool,
    },
    Done,
}

impl ResponseFuture {
    fn ready(head: Head) -> Self {
        ResponseFuture {
            state: State::Ready(Some(head)),
            access: None,
        }
    }

    fn with_access(mut self, access: Option<Box<AccessLine>>) -> Self {
        self.access = access;
        self
    }
}

fn into_response(
    head: Head,
    body: WsgiBody,
    access: Option<Box<AccessLine>>,
) -> Response<WsgiBody> {
    let access = access.map(|mut line| {
        line.status = head.status;
        line
    });
    let mut response = Response::new(body.with_access(access));
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    if let Some(reason) = head.reason {
        response.extensions_mut().insert(reason);
    }
    response
}

impl Future for ResponseFuture {
    type Output = Response<WsgiBody>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<WsgiBody>> {
        let ResponseFuture {
            state: this,
            access,
        } = &mut *self;
        if let State::Buffering(buffering) = this {
            let next = match buffering.buffer.poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(source)) => {
                    let State::Buffering(buffering) = std::mem::replace(this, State::Done) else {
                        unreachable!()
                    };
                    let Buffering {
                        mut job,
                        rx,
                        head_only,
                        engine,
                        ..
                    } = *buffering;
                    job.input = source;
                    engine.enqueue(job, rx, None, head_only).state
                }
                Poll::Ready(Err(Unread::Failed(why))) => {
                    tracing::info!(target: "wsgi_core", "could not read the request body: {why}; answered 400");
                    State::Ready(Some(Head::plain(
                        StatusCode::BAD_REQUEST,
                        "Bad Request: the request body could not be read\n",
                    )))
                }
                Poll::Ready(Err(Unread::TimedOut(after))) => {
                    tracing::info!(target: "wsgi_core", "the client sent no request body data for {:.1} s; answered 408", after.as_secs_f64());
                    State::Ready(Some(Head::plain(
                        StatusCode::REQUEST_TIMEOUT,
                        "Request Timeout\n",
                    )))
                }
            };
            *this = next;
        }
        match this {
            State::Ready(head) => {
                let head = head.take().expect("ResponseFuture polled after completion");
                let body = match head.body {
                    HeadBody::Full(ref b) => WsgiBody::full(b.clone()),
                    HeadBody::Stream => WsgiBody::empty(),
                };
                *this = State::Done;
                Poll::Ready(into_response(head, body, access.take()))
            }
            State::Buffering { .. } => unreachable!("left above"),
            State::Waiting {
                rx,
                input,
                head_only,
            } => {
                if let Some(pump) = input {
                    pump.poll(cx);
                }
                let head = match rx.poll_recv(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Msg::Head(head))) => head,
                    Poll::Ready(_) => {
                        tracing::error!(target: "wsgi_core", "Python worker ended a request without a response");
                        Head::plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
                    }
                };
                let no_body = *head_only || status_forbids_body(head.status);
                let State::Waiting { rx, input, .. } = std::mem::replace(this, State::Done) else {
                    unreachable!()
                };
                let body = match head.body {
                    HeadBody::Full(_) if no_body => WsgiBody::empty(),
                    HeadBody::Full(ref bytes) => WsgiBody::full(bytes.clone()),
                    // Dropping the pipe tells the application to stop and close.
                    HeadBody::Stream if no_body => WsgiBody::empty(),
                    HeadBody::Stream => {
                        let length = crate::response::declared_length(&head.headers)
                            .ok()
                            .flatten();
                        WsgiBody::stream(rx, input, length)
                    }
                };
                Poll::Ready(into_response(head, body, access.take()))
            }
            State::Done => panic!("ResponseFuture polled after completion"),
        }
    }
}
