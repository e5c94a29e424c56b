//! Configuration: the builder every option goes through, its defaults, and what it
//! resolves to before anything starts.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::lifecycle::elastic::Elastic;
use crate::lifecycle::policy::{Recycle, RecycleError};
use crate::proxy::TrustedProxies;
use crate::state::Limits;

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

/// Request bodies up to this size are kept in memory; larger ones go to a temporary file.
///
/// Either way the body is read whole before the request is queued, so a slow upload holds
/// only the host's task, not a Python thread, and a small body costs the Python thread no
/// waiting and no hand-off per chunk (the measured gain is in the
/// repository's `benches/README.md`). Bodies behind `Expect: 100-continue` are streamed to
/// `wsgi.input` as the application reads.
pub const DEFAULT_BUFFER_BODY: u64 = 64 * 1024;

/// How long a replaced worker process may take to finish its requests before it is killed.
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(30);

/// How long a new worker process may take to load the application (Passenger's
/// `passenger_start_timeout` default).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a worker process must have been ready before its memory may get it replaced
/// (see [`EngineBuilder::min_lifetime`]).
pub const DEFAULT_MIN_LIFETIME: Duration = crate::lifecycle::policy::DEFAULT_MIN_LIFETIME;

/// How long a worker process above the pool's minimum may go without a request before it
/// retires (see [`EngineBuilder::max_processes`]; Passenger's `passenger_pool_idle_time`
/// default).
pub const DEFAULT_POOL_IDLE_TIME: Duration = crate::lifecycle::elastic::DEFAULT_IDLE_AFTER;

/// Builds an [`Engine`](crate::Engine): see [`Engine::builder`](crate::Engine::builder).
#[derive(Debug, Clone)]
#[must_use]
pub struct EngineBuilder {
    pub(crate) app: String,
    pub(crate) threads: usize,
    pub(crate) processes: usize,
    pub(crate) max_processes: Option<usize>,
    pub(crate) pool_idle_time: Duration,
    pub(crate) preload: bool,
    pub(crate) post_fork: Option<String>,
    pub(crate) recycle: Recycle,
    pub(crate) restart_files: bool,
    pub(crate) drain_grace: Duration,
    pub(crate) start_timeout: Duration,
    pub(crate) queue_depth: usize,
    pub(crate) retry_after: u32,
    pub(crate) max_body: Option<u64>,
    pub(crate) buffer_body: u64,
    pub(crate) spool_dir: Option<PathBuf>,
    pub(crate) stream_chunked: bool,
    pub(crate) base_dir: Option<PathBuf>,
    pub(crate) venv: Option<PathBuf>,
    pub(crate) strict_python_version: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_queue_wait: Option<Duration>,
    pub(crate) body_timeout: Option<Duration>,
    pub(crate) trusted_proxies: Vec<String>,
}

impl EngineBuilder {
    /// Number of Python worker threads (default [`DEFAULT_THREADS`]).
    ///
    /// ```
    /// // An application that is not thread-safe gets one thread.
    /// let builder = wsgi_core::Engine::builder("legacy_app.py").threads(1);
    /// ```
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Runs the application in `n` worker processes of [`threads`](Self::threads) Python
    /// threads each, instead of in this process (the default, `0`).
    ///
    /// Each worker is this binary started again, so its `main` must call
    /// [`run_if_worker`](crate::run_if_worker) first; this process then never starts
    /// Python. A worker that dies (a segfault in a C extension, `os._exit`, the OOM killer)
    /// costs only the request it was running, which gets 502 (or an aborted body if its
    /// response had begun); it is replaced, with a growing delay if it keeps dying young,
    /// and requests wait in this process's queue meanwhile. A request no worker had
    /// started goes to another. `wsgi.multiprocess` is true when `n > 1`. Linux only:
    /// elsewhere [`build`](Self::build) fails with [`Error::ProcessesUnsupported`].
    ///
    /// ```no_run
    /// fn main() -> Result<(), wsgi_core::Error> {
    ///     wsgi_core::run_if_worker();
    ///     let engine = wsgi_core::Engine::builder("app.py").processes(2).threads(4).build()?;
    ///     # drop(engine);
    ///     Ok(())
    /// }
    /// ```
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = n;
        self
    }

    /// Lets the pool of worker processes grow from [`processes`](Self::processes), its
    /// minimum, up to `n` workers when requests wait, and shrink back when workers idle
    /// (default: `processes`, a fixed pool). Passenger's `passenger_min_instances` and
    /// `passenger_max_pool_size`; uWSGI's `cheaper` and `workers`.
    ///
    /// The pool grows by one worker when the oldest request waiting in the host's queue
    /// has waited 50 ms for a free thread (a measured wait, not a guess at load), one start
    /// at a time and at most one every 100 ms; with [`preload`](Self::preload) a new worker
    /// is forked in milliseconds, without it it takes the application's import time. A
    /// worker above the minimum that has had no request for
    /// [`pool_idle_time`](Self::pool_idle_time) retires: it takes no new request, finishes
    /// what it runs and exits, as a replaced worker does; the one idle the longest goes
    /// first, never while requests wait, never below the minimum. Crashes, recycling and
    /// restarts work on every running worker as in a fixed pool. Each start and retirement is
    /// logged and counted by reason in
    /// [`MetricsSnapshot::pool`](crate::MetricsSnapshot::pool).
    ///
    /// [`build`](Self::build) fails with [`Error::Config`] when `n` is below
    /// `processes`, or when `processes` is 0 (an elastic pool needs at least one worker).
    ///
    /// ```no_run
    /// fn main() -> Result<(), wsgi_core::Error> {
    ///     wsgi_core::run_if_worker();
    ///     // One worker while quiet, up to eight under load, forked from a template.
    ///     let engine = wsgi_core::Engine::builder("app.py")
    ///         .processes(1)
    ///         .max_processes(8)
    ///         .preload(true)
    ///         .build()?;
    ///     # drop(engine);
    ///     Ok(())
    /// }
    /// ```
    pub fn max_processes(mut self, n: usize) -> Self {
        self.max_processes = Some(n);
        self
    }

    /// How long a worker process above the pool's minimum may go without a request before
    /// it retires (default [`DEFAULT_POOL_IDLE_TIME`], Passenger's
    /// `passenger_pool_idle_time`; uWSGI's `cheaper-idle`). Matters only with
    /// [`max_processes`](Self::max_processes); must be more than 0.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = wsgi_core::Engine::builder("app.py")
    ///     .processes(2)
    ///     .max_processes(6)
    ///     .pool_idle_time(Duration::from_secs(60));
    /// ```
    pub fn pool_idle_time(mut self, idle: Duration) -> Self {
        self.pool_idle_time = idle;
        self
    }

    /// Imports the application once, in a template process, and forks each worker process
    /// from it (default `false`: each worker is this binary started again and imports the
    /// application itself). Workers then start in milliseconds and share the memory of the
    /// loaded application with the template, copy-on-write: the template calls
    /// `gc.collect()` then `gc.freeze()` before it forks, so that the garbage collector of a
    /// worker does not write to (and so copy) every object it inherited. Needs
    /// [`processes`](Self::processes); at most 250 [`threads`](Self::threads) per worker.
    ///
    /// The template never serves. `fork` copies only the calling thread, so an application
    /// that starts a thread while it is imported (a scheduler, a connection pool's
    /// reaper, a native library's thread pool) cannot be preloaded: [`build`](Self::build)
    /// fails with [`Error::PreloadThreads`]. Start such threads, and open connections and
    /// seed random generators, in a [`post_fork`](Self::post_fork) hook instead.
    ///
    /// Crashes, the recycling options and the metrics work as without it. Restarts that
    /// stand for new code (`tmp/restart.txt`, [`Engine::restart`](crate::Engine::restart),
    /// SIGHUP to `wsgi-serve`) first start a new template, which imports the new code, then
    /// replace the workers with ones forked from it, one by one as usual; should the new
    /// template fail to import, the old workers keep serving and the error is logged. A
    /// template that dies is started again; workers forked from it serve on.
    ///
    /// ```no_run
    /// fn main() -> Result<(), wsgi_core::Error> {
    ///     wsgi_core::run_if_worker();
    ///     let engine = wsgi_core::Engine::builder("mysite.wsgi:application")
    ///         .processes(4)
    ///         .preload(true)
    ///         .post_fork("mysite.hooks:after_fork")
    ///         .build()?;
    ///     # drop(engine);
    ///     Ok(())
    /// }
    /// ```
    pub fn preload(mut self, preload: bool) -> Self {
        self.preload = preload;
        self
    }

    /// A Python callable, `module:callable` (a dotted attribute path after the colon), that
    /// each worker process calls without arguments once the application is loaded and before
    /// it takes a request: with [`preload`](Self::preload) in the worker right after the
    /// fork, where a worker opens its own database connections, reseeds random generators
    /// and starts its threads (gunicorn's `post_fork`); without it, after the worker's own
    /// import, so that the same hook serves both ways. The module is imported where the
    /// application is (in the template with preload), with the application's directory on
    /// `sys.path`. A hook that cannot be imported fails the start as an import error does;
    /// one that raises makes the worker fail to start, with [`Error::PostFork`]. Needs
    /// [`processes`](Self::processes).
    ///
    /// ```
    /// // hooks.py next to the application:
    /// //
    /// //     def after_fork():
    /// //         db.connect()
    /// let builder = wsgi_core::Engine::builder("app.py")
    ///     .processes(2)
    ///     .preload(true)
    ///     .post_fork("hooks:after_fork");
    /// ```
    pub fn post_fork(mut self, hook: impl Into<String>) -> Self {
        self.post_fork = Some(hook.into());
        self
    }

    /// Replaces each worker process after it has answered `n` requests, plus a random
    /// `0..=`[`max_requests_jitter`](Self::max_requests_jitter) drawn per worker (gunicorn's
    /// `max_requests`, Passenger's `passenger_max_requests`): the cure for an application
    /// that leaks. Default: never. Needs [`processes`](Self::processes).
    ///
    /// `n` means `n` from a worker's first request, however young it is: a request count
    /// cannot make workers restart in a loop, so [`min_lifetime`](Self::min_lifetime) does
    /// not hold it back.
    ///
    /// No request is lost: the worker takes no new request once its budget is spent (they
    /// wait in the queue or go to other workers, so a leak stays bounded), a new worker
    /// loads the application and gets requests once it is ready, and the old one finishes
    /// what it runs and exits (see [`drain_grace`](Self::drain_grace)). The same goes for
    /// [`max_rss`](Self::max_rss); other replacements (lifetime, restart file, SIGHUP)
    /// keep the old worker serving until the new one is ready.
    ///
    /// ```
    /// let builder = wsgi_core::Engine::builder("app.py")
    ///     .processes(2)
    ///     .max_requests(10_000)
    ///     .max_requests_jitter(1_000);
    /// ```
    pub fn max_requests(mut self, n: u64) -> Self {
        self.recycle.max_requests = Some(n);
        self
    }

    /// The jitter of [`max_requests`](Self::max_requests), so that workers started together
    /// are not replaced together (default 0).
    pub fn max_requests_jitter(mut self, n: u64) -> Self {
        self.recycle.max_requests_jitter = n;
        self
    }

    /// Replaces each worker process once it has been ready this long, plus a random
    /// `0..=`[`max_lifetime_jitter`](Self::max_lifetime_jitter) (Granian's
    /// `--workers-lifetime`, uWSGI's `max-worker-lifetime`). Default: never. Needs
    /// [`processes`](Self::processes).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = wsgi_core::Engine::builder("app.py")
    ///     .processes(2)
    ///     .max_lifetime(Duration::from_secs(6 * 3600))
    ///     .max_lifetime_jitter(Duration::from_secs(600));
    /// ```
    pub fn max_lifetime(mut self, age: Duration) -> Self {
        self.recycle.max_lifetime = Some(age);
        self
    }

    /// The jitter of [`max_lifetime`](Self::max_lifetime) (default 0).
    pub fn max_lifetime_jitter(mut self, jitter: Duration) -> Self {
        self.recycle.max_lifetime_jitter = jitter;
        self
    }

    /// Replaces a worker process whose resident memory reaches `bytes` (Granian's
    /// `--workers-max-rss`, uWSGI's `reload-on-rss`), checked by the worker after each request
    /// and sampled by the host four times a second. The worker then takes no new request and
    /// is drained, never killed mid-request.
    ///
    /// With [`preload`](Self::preload), a worker's private memory (`Private_Clean +
    /// Private_Dirty` of `/proc/<pid>/smaps_rollup`) reaches `bytes` instead: its resident
    /// set counts in full the pages it still shares with the template, which replacing it
    /// would not free, so an application that takes more than the limit to import would
    /// have every worker replaced for memory it shares. Private rather than proportional
    /// (PSS): it is what a replacement gives back, and it depends on this worker alone, where
    /// every worker's PSS rises when a sibling or the template exits. A worker whose
    /// resident set is over the limit reads `smaps_rollup` (milliseconds, a page-table walk)
    /// at most once a second, so pages it copies on write may be seen up to a second late.
    /// Default: no limit. Needs [`processes`](Self::processes).
    ///
    /// A worker is not replaced for memory before [`min_lifetime`](Self::min_lifetime). When
    /// a worker is over the limit right after start-up after one that was too (the
    /// application needs more than the limit just to start, so replacing it cannot help),
    /// an error says so once, and each next worker is replaced for memory only after a
    /// wait that doubles from twice `min_lifetime` (at least 2 s) to 5 minutes, until one
    /// starts under the limit.
    ///
    /// ```
    /// let builder = wsgi_core::Engine::builder("app.py").processes(2).max_rss(512 << 20);
    /// ```
    pub fn max_rss(mut self, bytes: u64) -> Self {
        self.recycle.max_rss = Some(bytes);
        self
    }

    /// How long a worker process must have been ready before [`max_rss`](Self::max_rss)
    /// may replace it (uWSGI's `min-worker-lifetime`; default 10 s), so that a worker over
    /// the limit right after start-up (a large import) is not replaced in a loop that serves
    /// nothing. [`max_lifetime`](Self::max_lifetime) must be at least this long.
    /// [`max_requests`](Self::max_requests) is not held back: a request count cannot loop.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = wsgi_core::Engine::builder("app.py")
    ///     .processes(2)
    ///     .max_rss(512 << 20)
    ///     .min_lifetime(Duration::from_secs(60));
    /// ```
    pub fn min_lifetime(mut self, age: Duration) -> Self {
        self.recycle.min_lifetime = age;
        self
    }

    /// Whether touching `tmp/restart.txt` in the application's directory restarts the
    /// worker processes, one by one and without dropping a request, as with Passenger
    /// (default `true` with [`processes`](Self::processes); Python in this process cannot
    /// be restarted). A file there at start-up restarts nothing; each later change of its
    /// modification time (or of the file) does, within about a second. While
    /// `tmp/always_restart.txt` exists, every request gets a fresh worker (development).
    ///
    /// ```
    /// let builder = wsgi_core::Engine::builder("app.py").processes(2).restart_files(false);
    /// ```
    pub fn restart_files(mut self, watch: bool) -> Self {
        self.restart_files = watch;
        self
    }

    /// How long a worker process being replaced may take to finish the requests it is
    /// running before it is killed (default [`DEFAULT_DRAIN_GRACE`]).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = wsgi_core::Engine::builder("app.py")
    ///     .processes(2)
    ///     .drain_grace(Duration::from_secs(60));
    /// ```
    pub fn drain_grace(mut self, grace: Duration) -> Self {
        self.drain_grace = grace;
        self
    }

    /// How long a new worker process may take to import the application and report ready
    /// before it is killed (default [`DEFAULT_START_TIMEOUT`], Passenger's
    /// `passenger_start_timeout`). At start-up, [`build`](Self::build) then fails with
    /// [`Error::WorkerStartTimeout`]; for a replacement, the old worker keeps serving.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = wsgi_core::Engine::builder("app.py")
    ///     .processes(2)
    ///     .start_timeout(Duration::from_secs(300));
    /// ```
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.start_timeout = limit;
        self
    }

    /// How many requests may wait for a free thread (default [`DEFAULT_QUEUE_DEPTH`]);
    /// beyond that, requests are answered 503 with `Retry-After`.
    ///
    /// ```
    /// // Shed load early: at most 100 requests wait for a thread.
    /// let builder = wsgi_core::Engine::builder("app.py").queue_depth(100);
    /// ```
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.queue_depth = n;
        self
    }

    /// How long a request may wait in the queue before it is answered 503 instead of run
    /// (default: as long as it takes). A client that left while queued is never run.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // A request not started within 2 s is answered 503 rather than served late.
    /// let builder = wsgi_core::Engine::builder("app.py").max_queue_wait(Duration::from_secs(2));
    /// ```
    pub fn max_queue_wait(mut self, wait: Duration) -> Self {
        self.max_queue_wait = Some(wait);
        self
    }

    /// How long the application may take to produce a response (default: no limit).
    /// Past it the client gets 504 (or, if the body had started, an aborted body), and
    /// `wsgi_core.RequestTimeout` is raised in the application's thread so the view stops;
    /// the iterable's `close()` still runs. The exception derives from `BaseException`, not
    /// `Exception` (as mod_wsgi's `mod_wsgi.RequestTimeout`), so that the application's
    /// `except Exception:` does not swallow it; the engine registers the `wsgi_core` module
    /// before the application is imported, so it can `from wsgi_core import RequestTimeout`
    /// to clean up (then re-raise). The request is logged (WARN) with its thread's Python
    /// stack at that moment. A thread blocked inside C code cannot be interrupted: it is
    /// logged (ERROR, with its stack) and counted in
    /// [`MetricsSnapshot::stuck_threads`](crate::MetricsSnapshot::stuck_threads).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = wsgi_core::Engine::builder("app.py").timeout(Duration::from_secs(30));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long a client may go without sending any of its request body (default: no
    /// limit). A body the host receives before the application runs (see
    /// [`buffer_body`](Self::buffer_body)) is answered 408 without running the application;
    /// for a streamed one, `wsgi.input` raises `OSError`, so a client that stops mid-upload
    /// cannot hold a Python thread, and the response is 408 if the app had not started one.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = wsgi_core::Engine::builder("app.py").body_timeout(Duration::from_secs(10));
    /// ```
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = Some(timeout);
        self
    }

    /// Reverse proxies whose forwarding headers are believed: IP addresses or CIDR ranges
    /// (`"127.0.0.1"`, `"10.0.0.0/8"`, `"fd00::/8"`), and `"unix"` for every peer on a UNIX
    /// socket (a connection whose [`ConnInfo::unix_socket`](crate::ConnInfo::unix_socket)
    /// the host set). For requests from them, `REMOTE_ADDR` comes from
    /// `Forwarded`/`X-Forwarded-For` (the rightmost address that is not a trusted proxy),
    /// `wsgi.url_scheme` from `X-Forwarded-Proto`, the host from `X-Forwarded-Host`, and
    /// `X-Forwarded-Prefix` is put before `SCRIPT_NAME`. From any other peer those headers
    /// change nothing. Default: none trusted.
    ///
    /// A UNIX-socket peer has no address, so no IP range (not even `0.0.0.0/0`) names it:
    /// only `"unix"` does. Unlike gunicorn, which believes every UNIX-socket peer whatever
    /// `forwarded_allow_ips` says, nothing is trusted without being named, since whoever may
    /// open the socket file (its mode and owner decide) would otherwise choose the
    /// `REMOTE_ADDR` and scheme the application sees.
    ///
    /// ```
    /// // Behind a load balancer on the local network, and an nginx on the same host that
    /// // connects over TCP or to a UNIX socket.
    /// let builder = wsgi_core::Engine::builder("app.py")
    ///     .trusted_proxies(["10.0.0.0/8", "127.0.0.1", "unix"]);
    /// ```
    pub fn trusted_proxies<I, S>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.trusted_proxies = proxies.into_iter().map(Into::into).collect();
        self
    }

    /// The `Retry-After` value, in seconds, of 503 answers (default 1).
    ///
    /// ```
    /// let builder = wsgi_core::Engine::builder("app.py").queue_depth(64).retry_after(5);
    /// ```
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = secs;
        self
    }

    /// The largest request body accepted, in bytes (default: no limit). A larger declared
    /// `Content-Length` is answered 413 before the application runs, and so is a chunked
    /// body that grows past it while the host receives it; a streamed one (see
    /// [`stream_chunked`](Self::stream_chunked)) raises `OSError` in `wsgi.input` and is
    /// answered 413.
    ///
    /// ```
    /// // Uploads up to 10 MiB.
    /// let builder = wsgi_core::Engine::builder("app.py").max_body(10 << 20);
    /// ```
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// Request bodies are received whole by the host before the application is called, as
    /// nginx and Passenger do, so a slow upload holds no Python thread: those up to `bytes`
    /// in memory (default [`DEFAULT_BUFFER_BODY`]), larger ones in an unlinked temporary
    /// file in the [`spool_dir`](Self::spool_dir). A client that fails to send its body is
    /// answered 400 (408 after the [`body_timeout`](Self::body_timeout)) without running
    /// the application. 0 turns buffering off: every body streams to `wsgi.input` as the
    /// application reads it. Bodies behind `Expect: 100-continue` always stream, so the
    /// application still decides whether the client should send them.
    ///
    /// ```
    /// // Every body streams to `wsgi.input` as the application reads it.
    /// let builder = wsgi_core::Engine::builder("app.py").buffer_body(0);
    /// ```
    pub fn buffer_body(mut self, bytes: u64) -> Self {
        self.buffer_body = bytes;
        self
    }

    /// The directory for the temporary files of request bodies larger than
    /// [`buffer_body`](Self::buffer_body) (default: the system's, [`std::env::temp_dir`]).
    /// The files are unlinked as they are made, so nothing is left there even after a
    /// crash; the directory needs room for the uploads being received at once.
    pub fn spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(dir.into());
        self
    }

    /// Streams request bodies of undeclared length (chunked, or HTTP/2 without
    /// `Content-Length`) to `wsgi.input` as the application reads them, instead of
    /// receiving them whole first (default `false`). For applications that consume a
    /// long-running upload as it arrives; such a request holds its Python thread for as
    /// long as the client takes.
    pub fn stream_chunked(mut self, stream: bool) -> Self {
        self.stream_chunked = stream;
        self
    }

    /// The directory the application string is resolved against (default: the working
    /// directory when [`build`](Self::build) runs); it also goes on `sys.path`, after the
    /// application file's own directory, so modules next to it are importable.
    ///
    /// The process's working directory does not change: the application's `os.getcwd()`
    /// and relative file names still mean the directory the process runs in. A program
    /// that wants gunicorn's `--chdir` changes directory itself before it builds the
    /// engine, as `serve --chdir` does.
    ///
    /// ```
    /// // Imports `mysite/wsgi.py` from /srv/mysite, whatever the working directory.
    /// let builder = wsgi_core::Engine::builder("mysite.wsgi:application").base_dir("/srv/mysite");
    /// ```
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// Runs the application in the virtualenv at `dir` (default: `$VIRTUAL_ENV`, if set):
    /// its site-packages are importable and `sys.prefix` is the venv, as with the venv's
    /// own `python`. The venv must be made for the Python this binary embeds. One process
    /// has one interpreter, so every engine in it shares the venv.
    ///
    /// ```
    /// let builder = wsgi_core::Engine::builder("/srv/site").venv("/srv/site/.venv");
    /// ```
    pub fn venv(mut self, dir: impl Into<PathBuf>) -> Self {
        self.venv = Some(dir.into());
        self
    }

    /// What to do when a `.python-version` file (pyenv's), in the application's directory
    /// or above it, names a Python `major.minor` other than the embedded one: log a warning
    /// and load the application anyway (`false`, the default), or refuse to build (`true`).
    ///
    /// ```
    /// let builder = wsgi_core::Engine::builder("app.py").strict_python_version(true);
    /// ```
    pub fn strict_python_version(mut self, strict: bool) -> Self {
        self.strict_python_version = strict;
        self
    }

    /// The virtualenv to activate, absolute, and where it came from (for messages).
    pub(crate) fn resolved_venv(&self) -> (Option<PathBuf>, &'static str) {
        let (venv, origin) = match &self.venv {
            Some(dir) => (Some(dir.clone()), ""),
            None => (
                std::env::var_os("VIRTUAL_ENV")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
                " (from $VIRTUAL_ENV)",
            ),
        };
        (venv.map(|v| std::path::absolute(&v).unwrap_or(v)), origin)
    }

    /// Checks every option and resolves paths, before anything starts.
    pub(crate) fn resolve(self) -> Result<Resolved, Error> {
        if self.threads == 0 {
            return Err(Error::Config {
                option: "threads",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        let proxies = TrustedProxies::parse(&self.trusted_proxies)?;
        if self.queue_depth == 0 {
            return Err(Error::Config {
                option: "queue_depth",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if self.processes > 0 && !cfg!(target_os = "linux") {
            return Err(Error::ProcessesUnsupported);
        }
        self.check_preload()?;
        let pool = self.pool()?;
        let (venv, venv_origin) = self.resolved_venv();
        let spool_dir = (self.buffer_body > 0).then(|| {
            let dir = self.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
            std::path::absolute(&dir).unwrap_or(dir)
        });
        // Absolute, so that it means the same wherever the application is loaded.
        let base_dir = match &self.base_dir {
            Some(dir) => Some(base_dir(dir)?),
            None => None,
        };
        // Parsed and located here, so a typo or a missing file fails before Python starts.
        let spec_base = match &base_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().unwrap_or_default(),
        };
        let spec = crate::spec::parse_spec(&self.app, &spec_base)?;
        let located = spec.locate(&spec_base)?;
        let lifecycle = self.lifecycle(located.module_dir)?;
        let app = AppConfig {
            app: self.app.clone(),
            venv,
            venv_origin: venv_origin.to_owned(),
            base_dir,
            strict_python_version: self.strict_python_version,
            multiprocess: pool.max > 1,
            preload: self.preload,
            post_fork: self.post_fork.clone(),
        };
        let limits = Limits {
            timeout: self.timeout,
            max_queue_wait: self.max_queue_wait,
            body_timeout: self.body_timeout,
            retry_after: self.retry_after,
        };
        Ok(Resolved {
            app,
            proxies,
            limits,
            lifecycle,
            pool,
            spool_dir,
            builder: self,
        })
    }
}

/// How worker processes are replaced (see [`crate::process::host`]).
#[derive(Debug, Clone)]
pub(crate) struct Lifecycle {
    pub(crate) recycle: Recycle,
    /// The application's directory, whose `tmp/restart.txt` restarts the workers; `None`
    /// when restart files are off.
    pub(crate) restart_dir: Option<PathBuf>,
    /// How long a worker being replaced may take to finish its requests.
    pub(crate) drain_grace: Duration,
    /// How long a new worker may take to load the application.
    pub(crate) start_timeout: Duration,
}

/// Most threads a preloaded worker may have: its descriptors (one socket per thread, and
/// three more) travel to the template in one message, and Linux passes at most 253
/// descriptors at a time (`SCM_MAX_FD`).
pub(crate) const MAX_PRELOAD_THREADS: usize = 250;

impl EngineBuilder {
    /// Checks the options of preloading: they need worker processes.
    fn check_preload(&self) -> Result<(), Error> {
        let needs_processes = "used with worker processes (`processes(n)`)";
        if self.processes == 0 {
            if self.preload {
                return Err(Error::Config {
                    option: "preload",
                    value: "true".into(),
                    expected: needs_processes,
                });
            }
            if let Some(hook) = &self.post_fork {
                return Err(Error::Config {
                    option: "post_fork",
                    value: format!("{hook:?}"),
                    expected: needs_processes,
                });
            }
        }
        if let Some(hook) = &self.post_fork
            && !hook
                .split_once(':')
                .is_some_and(|(module, callable)| !module.is_empty() && !callable.is_empty())
        {
            return Err(Error::Config {
                option: "post_fork",
                value: format!("{hook:?}"),
                expected: "`module:callable`",
            });
        }
        if self.preload && self.threads > MAX_PRELOAD_THREADS {
            return Err(Error::Config {
                option: "threads",
                value: self.threads.to_string(),
                expected: "at most 250 with preload",
            });
        }
        Ok(())
    }

    /// The pool's bounds and pace, checked: `min..=max` workers (both `processes` for a
    /// fixed pool, and 0 in-process).
    fn pool(&self) -> Result<Elastic, Error> {
        let (min, max) = (self.processes, self.max_processes.unwrap_or(self.processes));
        if self.max_processes.is_some() && min == 0 {
            return Err(Error::Config {
                option: "max_processes",
                value: max.to_string(),
                expected: "used with `processes(n)`, the pool's minimum, of at least 1",
            });
        }
        if max < min {
            return Err(Error::Config {
                option: "max_processes",
                value: format!("{max} (processes is {min})"),
                expected: "at least processes, the pool's minimum",
            });
        }
        if self.pool_idle_time.is_zero() {
            return Err(Error::Config {
                option: "pool_idle_time",
                value: format!("{:?}", self.pool_idle_time),
                expected: "more than 0",
            });
        }
        let mut pool = Elastic::new(min, max);
        pool.idle_after = self.pool_idle_time;
        Ok(pool)
    }

    /// Checks the recycling options: they need worker processes, and must agree.
    fn lifecycle(&self, app_dir: PathBuf) -> Result<Lifecycle, Error> {
        let recycle = &self.recycle;
        if self.processes == 0 && recycle.is_enabled() {
            let (option, value) = if let Some(n) = recycle.max_requests {
                ("max_requests", n.to_string())
            } else if let Some(age) = recycle.max_lifetime {
                ("max_lifetime", format!("{age:?}"))
            } else {
                ("max_rss", recycle.max_rss.unwrap_or_default().to_string())
            };
            return Err(Error::Config {
                option,
                value,
                expected: "used with worker processes (`processes(n)`): Python in this \
                           process cannot be replaced",
            });
        }
        recycle.validate().map_err(|e| {
            let (option, expected) = match e {
                RecycleError::JitterWithoutLimit { jitter, .. } => {
                    (jitter, "used together with the limit it spreads")
                }
                RecycleError::Zero { option } => {
                    (option, "more than 0 (leave it out for no limit)")
                }
                RecycleError::LifetimeBelowMinimum { .. } => {
                    ("max_lifetime", "at least min_lifetime")
                }
            };
            Error::Config {
                option,
                value: e.to_string(),
                expected,
            }
        })?;
        Ok(Lifecycle {
            recycle: recycle.clone(),
            restart_dir: (self.processes > 0 && self.restart_files).then_some(app_dir),
            drain_grace: self.drain_grace,
            start_timeout: self.start_timeout,
        })
    }
}

/// What it takes to load the application, wherever Python runs.
#[derive(Debug, Clone)]
pub(crate) struct AppConfig {
    /// The application string, already checked by [`crate::spec`].
    pub(crate) app: String,
    /// The virtualenv to activate, absolute.
    pub(crate) venv: Option<PathBuf>,
    /// Where the venv path came from, for messages, e.g. `" (from $VIRTUAL_ENV)"`.
    pub(crate) venv_origin: String,
    /// The directory the application string is resolved against, absolute, which also
    /// goes on `sys.path` after the application's own; `None`: the working directory, which
    /// is then on `sys.path` only for a module.
    pub(crate) base_dir: Option<PathBuf>,
    /// Refuse to load when `.python-version` names another Python, instead of warning.
    pub(crate) strict_python_version: bool,
    /// `wsgi.multiprocess`: whether other processes serve the same application.
    pub(crate) multiprocess: bool,
    /// Worker processes are forked from a template that imported the application.
    pub(crate) preload: bool,
    /// The hook a worker process calls once it has the application, `module:callable`.
    pub(crate) post_fork: Option<String>,
}

/// `dir` made absolute, once it is known to be a directory.
fn base_dir(dir: &std::path::Path) -> Result<PathBuf, Error> {
    let error = |source| Error::BaseDir {
        path: dir.to_path_buf(),
        source,
    };
    if !std::fs::metadata(dir).map_err(error)?.is_dir() {
        return Err(error(std::io::ErrorKind::NotADirectory.into()));
    }
    std::path::absolute(dir).map_err(error)
}

/// A checked configuration: everything [`Engine::start`](crate::Engine::start) needs.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) app: AppConfig,
    pub(crate) proxies: TrustedProxies,
    pub(crate) limits: Limits,
    /// Where large request bodies are spooled, absolute; `None` when bodies stream.
    pub(crate) spool_dir: Option<PathBuf>,
    /// How worker processes are replaced.
    pub(crate) lifecycle: Lifecycle,
    /// How many worker processes run, and when that changes.
    pub(crate) pool: Elastic,
    /// The options as given, for what the engine reads per request.
    pub(crate) builder: EngineBuilder,
}

impl EngineBuilder {
    /// The defaults, for `app`: see [`Engine::builder`](crate::Engine::builder).
    pub(crate) fn new(app: String) -> Self {
        EngineBuilder {
            app,
            threads: DEFAULT_THREADS,
            processes: 0,
            max_processes: None,
            pool_idle_time: DEFAULT_POOL_IDLE_TIME,
            preload: false,
            post_fork: None,
            recycle: Recycle::default(),
            restart_files: true,
            drain_grace: DEFAULT_DRAIN_GRACE,
            start_timeout: DEFAULT_START_TIMEOUT,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            retry_after: 1,
            max_body: None,
            buffer_body: DEFAULT_BUFFER_BODY,
            spool_dir: None,
            stream_chunked: false,
            base_dir: None,
            venv: None,
            strict_python_version: false,
            timeout: None,
            max_queue_wait: None,
            body_timeout: None,
            trusted_proxies: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(builder: EngineBuilder) -> Result<(usize, usize), (&'static str, String)> {
        match builder.pool() {
            Ok(pool) => Ok((pool.min, pool.max)),
            Err(Error::Config { option, value, .. }) => Err((option, value)),
            Err(other) => panic!("expected Error::Config, got {other:?}"),
        }
    }

    fn app() -> EngineBuilder {
        EngineBuilder::new("app.py".into())
    }

    #[test]
    fn a_pool_is_fixed_unless_it_has_a_maximum() {
        assert_eq!(pool(app()), Ok((0, 0)), "in-process");
        assert_eq!(pool(app().processes(3)), Ok((3, 3)));
        assert_eq!(pool(app().processes(1).max_processes(4)), Ok((1, 4)));
        assert_eq!(pool(app().processes(2).max_processes(2)), Ok((2, 2)));
    }

    #[test]
    fn a_maximum_below_the_minimum_or_without_one_is_refused() {
        assert_eq!(
            pool(app().processes(4).max_processes(2)),
            Err(("max_processes", "2 (processes is 4)".into()))
        );
        assert_eq!(
            pool(app().max_processes(4)),
            Err(("max_processes", "4".into())),
            "an elastic pool needs a minimum of at least one worker"
        );
        assert_eq!(
            pool(
                app()
                    .processes(1)
                    .max_processes(2)
                    .pool_idle_time(Duration::ZERO)
            )
            .map_err(|e| e.0),
            Err("pool_idle_time")
        );
    }

    #[test]
    fn the_idle_time_is_the_pools() {
        let pool = app()
            .processes(1)
            .max_processes(3)
            .pool_idle_time(Duration::from_secs(7))
            .pool()
            .unwrap();
        assert_eq!(pool.idle_after, Duration::from_secs(7));
        assert_eq!(
            app()
                .processes(1)
                .max_processes(3)
                .pool()
                .unwrap()
                .idle_after,
            DEFAULT_POOL_IDLE_TIME
        );
    }
}
