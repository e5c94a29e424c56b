//! Configuration: the engine's options and the one place that turns them into an
//! [`EngineBuilder`].
//!
//! A new engine option is one field of [`EngineOptions`] (its flag, help and default, from
//! the library's constant) and one line of [`EngineOptions::builder`].

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use clap::builder::TypedValueParser as _;
use wsgi_core::{
    DEFAULT_BUFFER_BODY, DEFAULT_MIN_LIFETIME, DEFAULT_POOL_IDLE_TIME, DEFAULT_QUEUE_DEPTH,
    DEFAULT_START_TIMEOUT, DEFAULT_THREADS, Engine, EngineBuilder,
};

use crate::values::{Bytes, Processes, Secs, TrustedProxy, at_least_one, mebibytes, positive_secs};

/// The application and how the engine runs it.
#[derive(clap::Args, Debug)]
#[command(next_help_heading = "Application and engine")]
pub(crate) struct EngineOptions {
    /// The application: a directory with a `passenger_wsgi.py`, `path/file.py`,
    /// `path/file.py:callable`, `module:callable` or `module:create_app(ARGS)`.
    #[arg(value_name = "APP", required_unless_present_any = ["version", "print_config"])]
    app: Option<String>,

    /// Python worker threads (use 1 for applications that are not thread-safe).
    #[arg(long, value_name = "N", value_parser = at_least_one,
          default_value_t = NonZeroUsize::new(DEFAULT_THREADS).expect("DEFAULT_THREADS > 0"))]
    pub(crate) threads: NonZeroUsize,

    /// Run the application in N worker processes of --threads threads each, replaced when
    /// they die, so that a crash costs a request and not the server; like gunicorn's and
    /// Granian's --workers. 0: in this process (the least overhead on very small
    /// requests, but a crash ends the server). MIN..MAX (1..8): an elastic pool of at least
    /// MIN and at most MAX workers, one more started when a request has waited 50 ms for a
    /// thread, one above MIN retired after --pool-idle-time without a request (Passenger's
    /// min instances and max pool size, uWSGI's --cheaper and --workers).
    #[arg(long, value_name = "N|MIN..MAX", default_value_t = Processes { min: 1, max: 1 })]
    pub(crate) processes: Processes,

    /// How long a worker of an elastic pool (--processes MIN..MAX) above MIN may go without
    /// a request before it retires (Passenger's passenger_pool_idle_time, uWSGI's
    /// --cheaper-idle); a fixed pool retires none.
    #[arg(long, value_name = "DURATION", value_parser = positive_secs,
          default_value_t = Secs(DEFAULT_POOL_IDLE_TIME), help_heading = "Worker processes")]
    pool_idle_time: Secs,

    /// Import the application once, in a template process, and fork the worker processes
    /// from it: they start in milliseconds and share its memory. tmp/restart.txt and SIGHUP
    /// still load new code (a new template); an application that starts threads while it
    /// is imported is refused (start them in --post-fork).
    #[arg(long, help_heading = "Worker processes")]
    preload: bool,

    /// A Python callable, MODULE:CALLABLE, that each worker process calls once it has the
    /// application (right after the fork with --preload): open database connections, seed
    /// random generators, start threads there.
    #[arg(
        long,
        value_name = "MODULE:CALLABLE",
        help_heading = "Worker processes"
    )]
    post_fork: Option<String>,

    /// Replace each worker process after it has answered N requests, plus a random part of
    /// --max-requests-jitter, however young it is (a cure for leaks; gunicorn's option)
    /// [default: never].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..),
          help_heading = "Worker processes")]
    max_requests: Option<u64>,

    /// Up to this many more requests, drawn per worker, so workers are not replaced together.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        requires = "max_requests",
        help_heading = "Worker processes"
    )]
    max_requests_jitter: u64,

    /// Replace each worker process once it has been ready this long, plus a random part of
    /// --max-lifetime-jitter [default: never].
    #[arg(long, value_name = "DURATION", value_parser = positive_secs,
          help_heading = "Worker processes")]
    max_lifetime: Option<Secs>,

    /// Up to this much longer, drawn per worker.
    #[arg(
        long,
        value_name = "DURATION",
        requires = "max_lifetime",
        help_heading = "Worker processes"
    )]
    max_lifetime_jitter: Option<Secs>,

    /// Replace a worker process whose resident memory (with --preload, its private memory)
    /// reaches this size, after draining it: a bare number is MiB (512), or give a unit
    /// (512M, 2G) [default: no limit].
    #[arg(long, value_name = "SIZE", value_parser = mebibytes, help_heading = "Worker processes")]
    max_rss: Option<Bytes>,

    /// No --max-rss replacement before a worker has been ready this long, so a worker over
    /// the limit right after start-up is not replaced in a loop (--max-requests does not
    /// wait for it; --max-lifetime must be at least this long).
    #[arg(long, value_name = "DURATION", default_value_t = Secs(DEFAULT_MIN_LIFETIME),
          help_heading = "Worker processes")]
    min_lifetime: Secs,

    /// How long a new worker process may take to import the application before it is killed.
    #[arg(long, value_name = "DURATION", value_parser = positive_secs,
          default_value_t = Secs(DEFAULT_START_TIMEOUT), help_heading = "Worker processes")]
    start_timeout: Secs,

    /// Do not restart the workers when tmp/restart.txt in the application's directory
    /// changes (Passenger's convention; with --processes 0 there is no worker to restart).
    #[arg(long, help_heading = "Worker processes")]
    no_restart_file: bool,

    /// Change to DIR before loading the application (APP is then relative to DIR, and DIR
    /// is on `sys.path`).
    #[arg(long, value_name = "DIR")]
    chdir: Option<PathBuf>,

    /// Virtualenv whose packages the application uses.
    // Any text, even empty: an empty `$VIRTUAL_ENV` means none, which `cli::parse_from` sees to.
    #[arg(long, value_name = "DIR", env = "VIRTUAL_ENV",
          value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from))]
    pub(crate) venv: Option<PathBuf>,

    /// Refuse to start when a `.python-version` (pyenv's) in the application's directory or
    /// above names another Python than the embedded one, instead of warning.
    #[arg(long)]
    strict_python_version: bool,

    /// Largest request body accepted, in bytes or with a unit (`10M`); larger ones get 413
    /// [default: no limit].
    #[arg(long, value_name = "BYTES")]
    max_body: Option<Bytes>,

    /// Request bodies are received whole before the app runs, so a slow upload holds no
    /// Python thread: up to this size in memory, larger ones in a temporary file in
    /// `--spool-dir` (0: stream every body to `wsgi.input` as the app reads it).
    #[arg(long, value_name = "BYTES", default_value_t = Bytes(DEFAULT_BUFFER_BODY))]
    pub(crate) buffer_body: Bytes,

    /// Directory for the temporary files of request bodies larger than `--buffer-body`
    /// (unlinked as they are made) [default: the system's, `$TMPDIR` or /tmp].
    #[arg(long, value_name = "DIR")]
    spool_dir: Option<PathBuf>,

    /// Stream chunked request bodies (and HTTP/2 ones without a length) to `wsgi.input` as
    /// the app reads them, instead of receiving them whole first.
    #[arg(long)]
    stream_chunked: bool,

    /// Requests that may wait for a free Python thread before new ones get 503.
    #[arg(long, value_name = "N", value_parser = at_least_one,
          default_value_t = NonZeroUsize::new(DEFAULT_QUEUE_DEPTH).expect("DEFAULT_QUEUE_DEPTH > 0"))]
    queue_depth: NonZeroUsize,

    /// How long a request may run before it is answered 504 and `wsgi_core.RequestTimeout`
    /// (a `BaseException`, which `except Exception:` does not catch) is raised in its Python
    /// thread, in seconds or with a unit (`500ms`, `2m`) [default: no limit].
    #[arg(long, value_name = "DURATION", value_parser = positive_secs)]
    timeout: Option<Secs>,

    /// How long a request may wait for a free Python thread before it gets 503
    /// [default: no limit].
    #[arg(long, value_name = "DURATION", value_parser = positive_secs)]
    max_queue_wait: Option<Secs>,

    /// How long a client may go without sending any of its request body before it is
    /// answered 408 [default: no limit].
    #[arg(long, value_name = "DURATION", value_parser = positive_secs)]
    body_timeout: Option<Secs>,

    /// A reverse proxy (IP or CIDR, or `unix` for the peers on a UNIX socket) whose
    /// X-Forwarded-*/Forwarded headers are believed; repeat the option or separate with
    /// commas [default: none].
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR|unix",
        value_delimiter = ','
    )]
    pub(crate) trusted_proxies: Vec<TrustedProxy>,
}

impl EngineOptions {
    /// The APP argument, which clap requires unless `--version` is given.
    pub(crate) fn app(&self) -> &str {
        self.app.as_deref().unwrap_or_default()
    }

    /// Changes the process's working directory to `--chdir`'s, as gunicorn does, so the
    /// application runs there (`os.getcwd()`, relative paths in its settings); the library
    /// never changes directory itself. Paths given on the command line keep meaning what
    /// they meant where the user typed them.
    pub(crate) fn enter_directory(&mut self) -> Result<(), String> {
        let Some(dir) = &self.chdir else {
            return Ok(());
        };
        let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.into());
        let dir = absolute(dir);
        if let Some(venv) = &mut self.venv {
            *venv = absolute(venv);
        }
        std::env::set_current_dir(&dir).map_err(|e| {
            format!(
                "cannot change directory to {}: {e}; check the --chdir directory",
                dir.display()
            )
        })?;
        self.chdir = Some(dir);
        Ok(())
    }

    /// The engine these options describe. `venv_from_env`: the virtualenv came from
    /// `$VIRTUAL_ENV`, which the library then reads itself, so that its errors say where
    /// the path came from (and suggest `deactivate` for a stale one).
    pub(crate) fn builder(&self, venv_from_env: bool) -> EngineBuilder {
        let mut builder = Engine::builder(self.app())
            .threads(self.threads.get())
            .processes(self.processes.min)
            .pool_idle_time(self.pool_idle_time.0)
            .preload(self.preload)
            .max_requests_jitter(self.max_requests_jitter)
            .min_lifetime(self.min_lifetime.0)
            .restart_files(!self.no_restart_file)
            .start_timeout(self.start_timeout.0)
            .strict_python_version(self.strict_python_version)
            .buffer_body(self.buffer_body.0)
            .stream_chunked(self.stream_chunked)
            .queue_depth(self.queue_depth.get())
            .trusted_proxies(self.trusted_proxies.iter().map(TrustedProxy::to_string));
        // Entered already (`enter_directory`); as the base directory it also goes on
        // `sys.path`, as gunicorn's `--chdir` directory does.
        if let Some(dir) = &self.chdir {
            builder = builder.base_dir(dir);
        }
        if let Some(dir) = &self.spool_dir {
            builder = builder.spool_dir(dir);
        }
        // A relative `$VIRTUAL_ENV` would be read from the `--chdir` directory: handed over
        // resolved instead.
        let env_is_relative = std::env::var_os("VIRTUAL_ENV")
            .is_some_and(|v| Path::new(&v).is_relative() && self.chdir.is_some());
        if let Some(dir) = &self.venv
            && (!venv_from_env || env_is_relative)
        {
            builder = builder.venv(dir);
        }
        if self.processes.max > self.processes.min {
            builder = builder.max_processes(self.processes.max);
        }
        if let Some(hook) = &self.post_fork {
            builder = builder.post_fork(hook);
        }
        if let Some(n) = self.max_requests {
            builder = builder.max_requests(n);
        }
        if let Some(Secs(age)) = self.max_lifetime {
            builder = builder.max_lifetime(age);
        }
        if let Some(Secs(jitter)) = self.max_lifetime_jitter {
            builder = builder.max_lifetime_jitter(jitter);
        }
        if let Some(Bytes(limit)) = self.max_rss {
            builder = builder.max_rss(limit);
        }
        if let Some(Bytes(limit)) = self.max_body {
            builder = builder.max_body(limit);
        }
        if let Some(Secs(limit)) = self.timeout {
            builder = builder.timeout(limit);
        }
        if let Some(Secs(limit)) = self.max_queue_wait {
            builder = builder.max_queue_wait(limit);
        }
        if let Some(Secs(limit)) = self.body_timeout {
            builder = builder.body_timeout(limit);
        }
        builder
    }
}
