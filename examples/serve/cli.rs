//! The command line: what `serve` accepts, as clap parses it.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Serve a Python WSGI application.
#[derive(Parser, Debug)]
// `--version` is our own: it names the embedded Python, which clap's cannot.
#[command(name = "serve", disable_version_flag = true)]
pub(crate) struct Args {
    /// Print the versions of this command and of the embedded Python, its files and the
    /// virtualenv, then exit.
    #[arg(short = 'V', long)]
    pub(crate) version: bool,

    /// Address to listen on (`HOST:PORT`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub(crate) bind: String,

    /// HTTP server that hosts the application.
    #[arg(long, value_enum, default_value_t = ServerKind::Axum)]
    pub(crate) server: ServerKind,

    /// Python worker threads [default: the engine's, 8].
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,

    /// Serve the application under PREFIX only (its SCRIPT_NAME); other paths get 404.
    #[arg(long, value_name = "PREFIX")]
    pub(crate) mount: Option<String>,

    /// Change to DIR before loading the application (APP is then relative to DIR).
    #[arg(long, value_name = "DIR")]
    pub(crate) chdir: Option<PathBuf>,

    /// Virtualenv whose packages the application uses [default: $VIRTUAL_ENV].
    #[arg(long, value_name = "DIR")]
    pub(crate) venv: Option<PathBuf>,

    /// Refuse to start when a `.python-version` (pyenv's) in the application's directory or
    /// above names another Python than the embedded one, instead of warning.
    #[arg(long)]
    pub(crate) strict_python_version: bool,

    /// Largest request body accepted; larger ones get 413 [default: no limit].
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_body: Option<u64>,

    /// Request bodies up to this size are read whole before the app runs, so it never
    /// waits for them; larger ones stream to `wsgi.input` (0: always stream) [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub(crate) buffer_body: Option<u64>,

    /// Requests that may wait for a free Python thread before new ones get 503
    /// [default: 1024].
    #[arg(long, value_name = "N")]
    pub(crate) queue_depth: Option<usize>,

    /// Seconds that in-flight requests get to finish after SIGTERM or Ctrl-C.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub(crate) grace: u64,

    /// Seconds a request may run before it is answered 504 and `TimeoutError` is raised in
    /// its Python thread [default: no limit].
    #[arg(long, value_name = "SECS")]
    pub(crate) timeout: Option<f64>,

    /// Seconds a request may wait for a free Python thread before it gets 503
    /// [default: no limit].
    #[arg(long, value_name = "SECS")]
    pub(crate) max_queue_wait: Option<f64>,

    /// Seconds `wsgi.input` waits for more of a request body before giving up with 408
    /// [default: no limit].
    #[arg(long, value_name = "SECS")]
    pub(crate) body_timeout: Option<f64>,

    /// A reverse proxy (IP or CIDR) whose X-Forwarded-*/Forwarded headers are believed;
    /// repeat the option or separate with commas [default: none].
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_delimiter = ',')]
    pub(crate) trusted_proxies: Vec<String>,

    /// Serve Prometheus metrics at http://ADDR/metrics [default: off].
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_bind: Option<String>,

    /// CPU scheduling policy of every thread: `batch` (Linux SCHED_BATCH: a thread that
    /// wakes another keeps the CPU, so requests and responses move in batches; more
    /// throughput when threads share cores) or `normal` (the OS default).
    #[arg(long, value_enum, default_value_t = Sched::Batch)]
    pub(crate) sched: Sched,

    /// Log format on stderr: `text` or `json` (one JSON object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    /// Log filter: a level (`info`, `debug`) or tracing directives (`info,wsgi_core=debug`).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub(crate) log_level: String,

    /// The application: a directory with a `passenger_wsgi.py`, `path/file.py`,
    /// `path/file.py:callable`, `module:callable` or `module:create_app(ARGS)`.
    #[arg(value_name = "APP", required_unless_present = "version")]
    pub(crate) app: Option<String>,
}

impl Args {
    /// The APP argument, which clap requires unless `--version` is given.
    pub(crate) fn app(&self) -> &str {
        self.app.as_deref().unwrap_or_default()
    }
}

/// The HTTP server that hosts the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ServerKind {
    /// axum 0.8 on hyper.
    Axum,
    /// actix-web 4.
    Actix,
}

/// The CPU scheduling policy of the process's threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Sched {
    /// SCHED_BATCH for the whole process.
    Batch,
    /// The OS default (SCHED_OTHER); the engine's Python threads are batch regardless.
    Normal,
}

/// How log events are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
}
