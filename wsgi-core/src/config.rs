//! Configuration: the builder every option goes through, its defaults, and what it
//! resolves to before anything starts.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::Engine;
use crate::error::Error;
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
/// waiting and no hand-off per chunk (a 64 KiB POST benchmark went from 16.6-20.4k to
/// 20.2-27.2k requests/s). Bodies behind `Expect: 100-continue` are streamed to
/// `wsgi.input` as the application reads.
pub const DEFAULT_BUFFER_BODY: u64 = 64 * 1024;

/// Builds an [`Engine`]: see [`Engine::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct EngineBuilder {
    pub(crate) app: String,
    pub(crate) threads: usize,
    pub(crate) processes: usize,
    pub(crate) queue_depth: usize,
    pub(crate) retry_after: u32,
    pub(crate) max_body: Option<u64>,
    pub(crate) buffer_body: u64,
    pub(crate) spool_dir: Option<PathBuf>,
    pub(crate) stream_chunked: bool,
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
    /// interrupted: it is logged and counted in
    /// [`MetricsSnapshot::stuck_threads`](crate::MetricsSnapshot::stuck_threads).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long a client may go without sending any of its request body (default: no
    /// limit). A body the host receives before the application runs (see
    /// [`buffer_body`](Self::buffer_body)) is answered 408 without running the application;
    /// for a streamed one, `wsgi.input` raises `OSError`, so a client that stops mid-upload
    /// cannot hold a Python thread, and the response is 408 if the app had not started one.
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
    /// `Content-Length` is answered 413 before the application runs, and so is a chunked
    /// body that grows past it while the host receives it; a streamed one (see
    /// [`stream_chunked`](Self::stream_chunked)) raises `OSError` in `wsgi.input` and is
    /// answered 413.
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
        let resolved = self.resolve()?;
        Engine::start(resolved)
    }

    /// Checks every option and resolves paths, before anything starts.
    fn resolve(self) -> Result<Resolved, Error> {
        if self.threads == 0 {
            return Err(Error::Config("threads must be at least 1".into()));
        }
        let proxies = TrustedProxies::parse(&self.trusted_proxies).map_err(Error::Config)?;
        if self.queue_depth == 0 {
            return Err(Error::Config("queue depth must be at least 1".into()));
        }
        if self.processes > 0 && !cfg!(target_os = "linux") {
            return Err(Error::ProcessesUnsupported);
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
        let spool_dir = (self.buffer_body > 0).then(|| {
            let dir = self.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
            std::path::absolute(&dir).unwrap_or(dir)
        });
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
        // Parsed and located here, so a typo or a missing file fails before Python starts.
        let spec = crate::spec::parse_spec(&self.app)?;
        spec.locate(&std::env::current_dir().unwrap_or_default())?;
        let app = AppConfig {
            app: self.app.clone(),
            venv,
            venv_origin: venv_origin.to_owned(),
            extra_path: chdir,
            strict_python_version: self.strict_python_version,
            multiprocess: self.processes > 1,
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
            spool_dir,
            builder: self,
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
    /// A directory to put on `sys.path` after the application's own (the `chdir` one).
    pub(crate) extra_path: Option<PathBuf>,
    /// Refuse to load when `.python-version` names another Python, instead of warning.
    pub(crate) strict_python_version: bool,
    /// `wsgi.multiprocess`: whether other processes serve the same application.
    pub(crate) multiprocess: bool,
}

/// A checked configuration: everything [`Engine::start`] needs.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) app: AppConfig,
    pub(crate) proxies: TrustedProxies,
    pub(crate) limits: Limits,
    /// Where large request bodies are spooled, absolute; `None` when bodies stream.
    pub(crate) spool_dir: Option<PathBuf>,
    /// The options as given, for what the engine reads per request.
    pub(crate) builder: EngineBuilder,
}

impl EngineBuilder {
    /// The defaults, for `app`: see [`Engine::builder`].
    pub(crate) fn new(app: String) -> Self {
        EngineBuilder {
            app,
            threads: DEFAULT_THREADS,
            processes: 0,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            retry_after: 1,
            max_body: None,
            buffer_body: DEFAULT_BUFFER_BODY,
            spool_dir: None,
            stream_chunked: false,
            chdir: None,
            venv: None,
            strict_python_version: false,
            timeout: None,
            max_queue_wait: None,
            body_timeout: None,
            trusted_proxies: Vec::new(),
        }
    }
}
