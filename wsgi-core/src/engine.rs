//! The host-facing engine: turns a host's request into a queued [`Job`], applies the
//! limits, and resolves to the response the runner produces. Where the application runs
//! is the runner's business ([`crate::runner`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Method, Response, StatusCode, header};

use crate::access::AccessLine;
use crate::body::WsgiBody;
use crate::config::{EngineBuilder, Resolved};
use crate::environ::{CgiVars, Reject};
use crate::error::Error;
use crate::extras::EnvironExtras;
use crate::host::HostRequest;
use crate::input::{self, BodyBuffer, InputPump, InputSource, Unread};
use crate::job::Job;
use crate::lifecycle::reason::RestartReason;
use crate::metrics::MetricsSnapshot;
use crate::pipe::{self, Msg, PipeRx};
use crate::proxy::TrustedProxies;
use crate::python::{self, PythonInfo};
use crate::response::{Head, HeadBody, status_forbids_body};
use crate::runner::threads::Threads;
use crate::runner::{Refused, Runner};
use crate::spool::{BodySpool, Spooler};
use crate::state::{InFlight, Shared};
use crate::watchdog;

/// How long a shutdown waits for worker processes to run their `atexit` handlers and exit.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Bytes of response body buffered per request before the application is paused.
const PIPE_LIMIT: usize = 256 * 1024;

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
    runner: Arc<dyn Runner>,
    proxies: TrustedProxies,
    shared: Arc<Shared>,
    /// Receives large request bodies into temporary files; `None` when bodies stream.
    spooler: Option<Spooler>,
    config: EngineBuilder,
}

impl Engine {
    /// Starts the runner for a checked configuration, and the watchdog if there is a
    /// timeout.
    pub(crate) fn start(resolved: Resolved) -> Result<Engine, Error> {
        let Resolved {
            app,
            proxies,
            limits,
            spool_dir,
            lifecycle,
            pool,
            builder,
        } = resolved;
        let spooler = spool_dir
            .map(|dir| {
                Spooler::start(dir.clone()).map_err(|source| Error::SpoolDir { path: dir, source })
            })
            .transpose()?;
        // A worker-process engine has a group of slots for each worker the pool may run, and
        // one spare, for replacements.
        let shared = Arc::new(Shared::new(
            builder.threads * (pool.max + usize::from(pool.max > 0)).max(1),
            limits,
        ));
        let runner: Arc<dyn Runner> = match builder.processes {
            0 => Arc::new(Threads::start(&app, builder.queue_depth, shared.clone())?),
            #[cfg(target_os = "linux")]
            _ => Arc::new(crate::process::host::Processes::start(
                &app,
                pool,
                builder.threads,
                builder.queue_depth,
                shared.clone(),
                lifecycle,
            )?),
            #[cfg(not(target_os = "linux"))]
            _ => {
                let _ = (lifecycle, pool);
                return Err(Error::ProcessesUnsupported);
            }
        };
        if let Some(timeout) = limits.timeout {
            watchdog::start(Arc::downgrade(&shared), Arc::downgrade(&runner), timeout)?;
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                runner,
                proxies,
                shared,
                spooler,
                config: builder,
            }),
        })
    }
}

// What starts things lives here; `crate::config` only describes them.
impl EngineBuilder {
    /// Starts the interpreter if needed, loads the application and starts the threads.
    ///
    /// The errors say what went wrong in the application's terms, with Python's exception
    /// kept as their [`source`](std::error::Error::source):
    ///
    /// ```
    /// use wsgi_core::{Engine, Error, MissingModule};
    ///
    /// // `wsgiref`'s demo application ships with Python.
    /// let engine = Engine::builder("wsgiref.simple_server:demo_app").threads(2).build()?;
    /// assert_eq!(engine.threads(), 2);
    ///
    /// match Engine::builder("no_such_module:application").build() {
    ///     Err(Error::AppImport { missing: Some(MissingModule::App(name)), exception, .. }) => {
    ///         assert_eq!(name, "no_such_module");
    ///         assert_eq!(exception.type_name, "ModuleNotFoundError");
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), Error>(())
    /// ```
    pub fn build(self) -> Result<Engine, Error> {
        let resolved = self.resolve()?;
        Engine::start(resolved)
    }

    /// Starts the embedded interpreter the engine will run on, in its virtualenv, and
    /// describes it, without importing the application: for a program that logs which
    /// Python it serves with before a slow import. [`build`](Self::build) does the same
    /// itself, so calling this first is optional; calling it after Python has started
    /// without the virtualenv activates the virtualenv then.
    ///
    /// With [`processes`](Self::processes), Python runs in the worker processes and this
    /// would start an interpreter in the host that it does not otherwise need.
    ///
    /// ```no_run
    /// let builder = wsgi_core::Engine::builder("app:application").venv(".venv");
    /// let python = builder.start_python()?;
    /// println!("serving with {python}");
    /// let engine = builder.build()?;
    /// # Ok::<(), wsgi_core::Error>(())
    /// ```
    pub fn start_python(&self) -> Result<PythonInfo, Error> {
        let (venv, origin) = self.resolved_venv();
        python::start(venv.as_deref(), origin)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // What is queued still runs; the runner's threads end when it is done.
        self.runner.close();
    }
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
        match self.runner.submit(job) {
            Ok(()) => ResponseFuture {
                state: State::Waiting {
                    rx,
                    input,
                    head_only,
                },
                access: None,
            },
            Err(Refused::Full) => {
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
            Err(Refused::NotReady) => {
                self.shared
                    .metrics
                    .rejected_overload
                    .fetch_add(1, Ordering::Relaxed);
                ResponseFuture::ready(
                    self.shared
                        .unavailable("no worker process is ready to take requests"),
                )
            }
            Err(Refused::Closed) => ResponseFuture::ready(
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

impl Engine {
    /// Configures an engine for the application `app`:
    /// a directory holding a `passenger_wsgi.py` (Passenger's convention: its `application`),
    /// `path/to/file.py` (its `application` callable), `path/to/file.py:callable`,
    /// `package.module:callable`, or a factory called with literal arguments, as gunicorn
    /// accepts: `package.module:create_app()`, `package.module:create_app('prod', debug=False)`.
    /// The application's directory (a module's: the [base
    /// directory](EngineBuilder::base_dir), by default the working directory) goes first on
    /// `sys.path`.
    ///
    /// ```
    /// use wsgi_core::Engine;
    ///
    /// let passenger = Engine::builder("/srv/site"); // /srv/site/passenger_wsgi.py
    /// let flask = Engine::builder("app.py:app");
    /// let django = Engine::builder("mysite.wsgi:application").base_dir("/srv/mysite");
    /// let factory = Engine::builder("myapp:create_app('prod', debug=False)");
    /// ```
    pub fn builder(app: impl Into<String>) -> EngineBuilder {
        EngineBuilder::new(app.into())
    }

    /// The number of Python threads serving this engine, per worker process in
    /// worker-process mode.
    ///
    /// ```
    /// let engine = wsgi_core::Engine::builder("wsgiref.simple_server:demo_app").build()?;
    /// assert_eq!(engine.threads(), wsgi_core::DEFAULT_THREADS);
    /// # Ok::<(), wsgi_core::Error>(())
    /// ```
    pub fn threads(&self) -> usize {
        self.inner.config.threads
    }

    /// The number of worker processes running the application, the minimum of an elastic
    /// pool (see [`EngineBuilder::max_processes`]; how many run now is
    /// [`PoolSnapshot::workers`](crate::PoolSnapshot::workers)); `0` when it runs in this
    /// process (see [`EngineBuilder::processes`]).
    ///
    /// ```
    /// let engine = wsgi_core::Engine::builder("wsgiref.simple_server:demo_app").build()?;
    /// assert_eq!(engine.processes(), 0);
    /// # Ok::<(), wsgi_core::Error>(())
    /// ```
    pub fn processes(&self) -> usize {
        self.inner.config.processes
    }

    /// Runs one request through the application.
    ///
    /// The returned future resolves once the application has committed its status and
    /// headers; the body then streams. It never fails: problems become responses
    /// (404 outside the mount, 413, 500, 503) and log lines. Dropping the future or the
    /// body tells the application the client has gone.
    ///
    /// A host implements [`HostRequest`]; an [`http::Request`] whose body is a stream of
    /// bytes, with its [`ConnInfo`](crate::ConnInfo), is one already:
    ///
    /// ```
    /// use bytes::Bytes;
    /// use futures::executor::block_on;
    /// use http_body_util::BodyExt as _;
    /// use wsgi_core::{ConnInfo, Engine};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::builder("wsgiref.simple_server:demo_app").threads(1).build()?;
    /// let body = futures::stream::empty::<Result<Bytes, std::io::Error>>();
    /// let request = http::Request::get("/hello").body(body)?;
    /// let response = block_on(engine.call((request, ConnInfo::new(None, None))));
    /// assert_eq!(response.status(), 200);
    /// let text = block_on(response.into_body().collect())?.to_bytes();
    /// assert!(text.starts_with(b"Hello world!"));
    /// # Ok(())
    /// # }
    /// ```
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
        mut parts: http::request::Parts,
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
        // The variables keep the URI (nothing below reads it): its text is theirs to share.
        let uri = std::mem::take(&mut parts.uri);
        let mut vars = match CgiVars::new(uri, &parts, conn, &inner.proxies) {
            Ok(vars) => vars,
            Err(Reject::NotMounted) => {
                return ResponseFuture::ready(Head::plain(StatusCode::NOT_FOUND, "Not Found\n"));
            }
        };
        // Taken, not cloned: nothing else reads the request's extensions.
        if let Some(extras) = parts.extensions.remove::<EnvironExtras>() {
            vars.extras = extras;
        }
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
            id: inner.shared.next_id(),
            enqueued: Instant::now(),
            vars,
            input: InputSource::empty(),
            content_length,
            tx: Arc::new(tx),
            in_flight: InFlight::new(&inner.shared),
            slot: None,
            remote: None,
        };
        if !has_body(&parts, content_length) {
            return self.inner.enqueue(job, rx, None, head_only);
        }
        let streamed = expects_continue(&parts.headers)
            || (content_length.is_none() && inner.config.stream_chunked);
        // Decided before `body` is handed to one of them.
        let spooler = inner.spooler.as_ref().filter(|_| !streamed);
        let reading = match (content_length, spooler) {
            (Some(len), Some(_)) if len <= inner.config.buffer_body => {
                Reading::Memory(BodyBuffer::new(body, len, inner.shared.body_timeout))
            }
            (_, Some(spooler)) => Reading::Spool(BodySpool::new(
                spooler,
                body,
                content_length,
                inner.config.buffer_body,
                inner.config.max_body,
                inner.shared.body_timeout,
            )),
            (_, None) => {
                let (pump, source) = input::channel(body, inner.config.max_body);
                job.input = source;
                return self.inner.enqueue(job, rx, Some(pump), head_only);
            }
        };
        ResponseFuture {
            state: State::Buffering(Box::new(Buffering {
                reading,
                job,
                rx,
                head_only,
                engine: self.inner.clone(),
            })),
            access: None,
        }
    }

    fn unavailable(&self, why: &str) -> Head {
        self.inner.shared.unavailable(why)
    }

    /// A snapshot of this engine's counters (for `/metrics`, dashboards and tests).
    ///
    /// ```
    /// let app = "wsgiref.simple_server:demo_app";
    /// let engine = wsgi_core::Engine::builder(app).threads(2).build()?;
    /// let metrics = engine.metrics();
    /// assert_eq!(metrics.in_flight, 0);
    /// assert_eq!(metrics.threads_busy + metrics.threads_idle, 2);
    /// # Ok::<(), wsgi_core::Error>(())
    /// ```
    pub fn metrics(&self) -> MetricsSnapshot {
        let shared = &self.inner.shared;
        let in_flight = shared.in_flight();
        let pool = self.inner.runner.pool();
        // The threads of the workers that run now, which an elastic pool changes.
        let processes = pool.as_ref().map_or(1, |p| p.workers.max(1));
        shared.metrics.snapshot(
            self.inner.config.threads * processes,
            in_flight,
            self.inner.runner.queued(),
            self.inner.runner.workers(),
            pool,
        )
    }

    /// Replaces every worker process, one at a time, without dropping a request: each new
    /// worker loads the application (the new code, after a deploy) and reports ready before
    /// it gets requests, then the old one finishes its own and exits. A new worker that
    /// fails to load leaves the old one serving, and the error is logged. With
    /// [`preload`](EngineBuilder::preload), a new template loads the new code first, and the
    /// new workers are forked from it (if it cannot load it, no worker is replaced). Returns
    /// at once;
    /// the replacements happen in the background. Counted as `api` in
    /// [`WorkerSnapshot::restarts`](crate::WorkerSnapshot::restarts).
    ///
    /// # Errors
    ///
    /// [`Error::RestartUnsupported`] when Python runs in this process (no
    /// [`processes`](EngineBuilder::processes)).
    ///
    /// ```
    /// let engine = wsgi_core::Engine::builder("wsgiref.simple_server:demo_app").build()?;
    /// assert!(engine.restart().is_err(), "in-process Python cannot be restarted");
    /// # Ok::<(), wsgi_core::Error>(())
    /// ```
    pub fn restart(&self) -> Result<(), Error> {
        self.restart_for(RestartReason::Api)
    }

    /// [`restart`](Self::restart), as a program does on SIGHUP: counted as `signal`.
    ///
    /// # Errors
    ///
    /// As [`restart`](Self::restart).
    ///
    /// ```no_run
    /// # async fn on_sighup(engine: wsgi_core::Engine) -> std::io::Result<()> {
    /// let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    /// while hup.recv().await.is_some() {
    ///     if let Err(e) = engine.restart_on_signal() {
    ///         eprintln!("SIGHUP: {e}");
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn restart_on_signal(&self) -> Result<(), Error> {
        self.restart_for(RestartReason::Signal)
    }

    /// Logs what every busy Python thread is doing, for a server that hangs or is slow:
    /// one INFO line (target `wsgi_core`) per busy thread with its request line, how long it
    /// has run and its Python stack, most recent call last; then `N of M Python threads
    /// busy`. With worker processes each worker logs its own threads, and its lines carry its
    /// `worker_pid` (a worker replaced but still finishing its requests too). `wsgi-serve`
    /// calls it on SIGUSR1.
    ///
    /// Returns at once: the stacks are taken on a thread of their own once it has the GIL
    /// (a worker's), so calling it from a host's I/O thread is fine. A thread blocked in C
    /// code shows the Python line that called into it; one with no Python code running
    /// (the engine sending its response, reading its body) is said to be so.
    ///
    /// ```no_run
    /// # async fn on_sigusr1(engine: wsgi_core::Engine) -> std::io::Result<()> {
    /// use tokio::signal::unix::{SignalKind, signal};
    ///
    /// let mut usr1 = signal(SignalKind::user_defined1())?;
    /// while usr1.recv().await.is_some() {
    ///     engine.log_busy_threads();
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn log_busy_threads(&self) {
        self.inner.runner.log_busy_threads();
    }

    fn restart_for(&self, reason: RestartReason) -> Result<(), Error> {
        if self.inner.runner.restart(reason) {
            Ok(())
        } else {
            Err(Error::RestartUnsupported)
        }
    }

    /// Stops taking requests (new ones get 503), lets in-flight requests finish for up to
    /// `grace`, then aborts the rest: their responses are cut and their iterables closed.
    ///
    /// With worker processes, the workers then exit through their `atexit` handlers (the
    /// future waits up to 5 s more for them). In-process, the interpreter is never
    /// finalised, so the application's `atexit` handlers do not run: use worker processes
    /// if they must.
    ///
    /// The future does its waiting on a helper thread, so it works on any executor.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let engine = wsgi_core::Engine::builder("wsgiref.simple_server:demo_app").build()?;
    /// // Once the host has stopped accepting connections:
    /// let report = futures::executor::block_on(engine.shutdown(Duration::from_secs(30)));
    /// assert_eq!(report.aborted, 0);
    /// # Ok::<(), wsgi_core::Error>(())
    /// ```
    pub fn shutdown(&self, grace: Duration) -> ShutdownFuture {
        let shared = self.inner.shared.clone();
        shared.closing.store(true, Ordering::Release);
        let (tx, rx) = futures::channel::oneshot::channel();
        let started = shared.completed();
        let runner = self.inner.runner.clone();
        let spawned = std::thread::Builder::new()
            .name("wsgi-shutdown".into())
            .spawn(move || {
                let aborted = shared.wait_idle(grace);
                if aborted > 0 {
                    tracing::warn!(target: "wsgi_core", aborted, "grace period over; aborting in-flight requests");
                    shared.force_close.store(true, Ordering::Release);
                    runner.abort();
                }
                // Worker processes leave through their `atexit` handlers before the program
                // exits (and takes them with it).
                runner.stop(STOP_WAIT);
                let _ = tx.send(ShutdownReport {
                    completed: shared.completed().saturating_sub(started),
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

/// How a body is received before its request is queued.
#[derive(Debug)]
enum Reading {
    /// A small body of declared length, in memory.
    Memory(BodyBuffer),
    /// Any other body, in memory until it outgrows `buffer_body`, then in a file.
    Spool(BodySpool),
}

impl Reading {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<InputSource, Unread>> {
        match self {
            Reading::Memory(buffer) => buffer.poll(cx),
            Reading::Spool(spool) => spool.poll(cx),
        }
    }
}

/// The answer to a request whose body could not be received, with the reason logged.
fn unread_answer(why: Unread) -> Head {
    match why {
        Unread::Failed(why) => {
            tracing::info!(target: "wsgi_core", "could not read the request body: {why}; answered 400");
            Head::plain(
                StatusCode::BAD_REQUEST,
                "Bad Request: the request body could not be read\n",
            )
        }
        Unread::TimedOut(after) => {
            tracing::info!(target: "wsgi_core", "the client sent no request body data for {:.1} s; answered 408", after.as_secs_f64());
            Head::plain(StatusCode::REQUEST_TIMEOUT, "Request Timeout\n")
        }
        Unread::TooLarge(max) => {
            tracing::info!(target: "wsgi_core", max, "request body larger than max_body; answered 413");
            Head::plain(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large\n")
        }
        Unread::Spool(e) => {
            tracing::error!(target: "wsgi_core", "cannot write the request body to its temporary file: {e}; answered 500");
            Head::plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
        }
    }
}

#[derive(Debug)]
struct Buffering {
    reading: Reading,
    job: Job,
    rx: PipeRx,
    head_only: bool,
    engine: Arc<Inner>,
}

#[derive(Debug)]
enum State {
    Ready(Option<Head>),
    /// Receiving the body whole before the request is queued.
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
            let next = match buffering.reading.poll(cx) {
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
                Poll::Ready(Err(why)) => State::Ready(Some(unread_answer(why))),
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
                    // Abandoned at the end of a shutdown's grace period, which the engine
                    // logged: no application fault.
                    Poll::Ready(_) if rx.force_closed() => Head::plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Service Unavailable: the server stopped before the application answered\n",
                    ),
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
