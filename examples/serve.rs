//! `serve`: run a Python WSGI application over HTTP/1.1 and h2c.
//!
//! ```text
//! cargo run --release --example serve -- [OPTIONS] APP
//! ```
//!
//! `APP` is a directory with a `passenger_wsgi.py`, `path/to/file.py` (its `application`
//! callable), `path/to/file.py:callable`, `package.module:callable`, or a factory call with
//! literal arguments, `package.module:create_app('prod')`. Once the socket is bound and the
//! application loaded, the command prints one line, `listening on http://ADDR`, to stdout;
//! logs go to stderr. `serve --version` names the embedded Python and the virtualenv.
//! SIGTERM or Ctrl-C stops accepting, lets in-flight requests finish for up to `--grace`
//! seconds, then shuts the engine down and exits 0; a second signal skips the wait.
//! Requests are logged by the engine (target `wsgi_core::access`), whichever server hosts it.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::Router;
use axum::serve::ListenerExt;
use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;
use wsgi_axum::WsgiService;
use wsgi_core::Engine;

/// Serve a Python WSGI application.
#[derive(Parser, Debug)]
// `--version` is our own: it names the embedded Python, which clap's cannot.
#[command(name = "serve", disable_version_flag = true)]
struct Args {
    /// Print the versions of this command and of the embedded Python, its files and the
    /// virtualenv, then exit.
    #[arg(short = 'V', long)]
    version: bool,

    /// Address to listen on (`HOST:PORT`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    bind: String,

    /// HTTP server that hosts the application.
    #[arg(long, value_enum, default_value_t = ServerKind::Axum)]
    server: ServerKind,

    /// Python worker threads [default: the engine's, 8].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// Serve the application under PREFIX only (its SCRIPT_NAME); other paths get 404.
    #[arg(long, value_name = "PREFIX")]
    mount: Option<String>,

    /// Change to DIR before loading the application (APP is then relative to DIR).
    #[arg(long, value_name = "DIR")]
    chdir: Option<PathBuf>,

    /// Virtualenv whose packages the application uses [default: $VIRTUAL_ENV].
    #[arg(long, value_name = "DIR")]
    venv: Option<PathBuf>,

    /// Refuse to start when a `.python-version` (pyenv's) in the application's directory or
    /// above names another Python than the embedded one, instead of warning.
    #[arg(long)]
    strict_python_version: bool,

    /// Largest request body accepted; larger ones get 413 [default: no limit].
    #[arg(long, value_name = "BYTES")]
    max_body: Option<u64>,

    /// Request bodies up to this size are read whole before the app runs, so it never
    /// waits for them; larger ones stream to `wsgi.input` (0: always stream) [default: 65536].
    #[arg(long, value_name = "BYTES")]
    buffer_body: Option<u64>,

    /// Requests that may wait for a free Python thread before new ones get 503
    /// [default: 1024].
    #[arg(long, value_name = "N")]
    queue_depth: Option<usize>,

    /// Seconds that in-flight requests get to finish after SIGTERM or Ctrl-C.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    grace: u64,

    /// Seconds a request may run before it is answered 504 and `TimeoutError` is raised in
    /// its Python thread [default: no limit].
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,

    /// Seconds a request may wait for a free Python thread before it gets 503
    /// [default: no limit].
    #[arg(long, value_name = "SECS")]
    max_queue_wait: Option<f64>,

    /// Seconds `wsgi.input` waits for more of a request body before giving up with 408
    /// [default: no limit].
    #[arg(long, value_name = "SECS")]
    body_timeout: Option<f64>,

    /// A reverse proxy (IP or CIDR) whose X-Forwarded-*/Forwarded headers are believed;
    /// repeat the option or separate with commas [default: none].
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_delimiter = ',')]
    trusted_proxies: Vec<String>,

    /// Serve Prometheus metrics at http://ADDR/metrics [default: off].
    #[arg(long, value_name = "ADDR")]
    metrics_bind: Option<String>,

    /// CPU scheduling policy of every thread: `batch` (Linux SCHED_BATCH: a thread that
    /// wakes another keeps the CPU, so requests and responses move in batches; more
    /// throughput when threads share cores) or `normal` (the OS default).
    #[arg(long, value_enum, default_value_t = Sched::Batch)]
    sched: Sched,

    /// Log format on stderr: `text` or `json` (one JSON object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log filter: a level (`info`, `debug`) or tracing directives (`info,wsgi_core=debug`).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log_level: String,

    /// The application: a directory with a `passenger_wsgi.py`, `path/file.py`,
    /// `path/file.py:callable`, `module:callable` or `module:create_app(ARGS)`.
    #[arg(value_name = "APP", required_unless_present = "version")]
    app: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ServerKind {
    /// axum 0.8 on hyper.
    Axum,
    /// actix-web 4.
    Actix,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Sched {
    /// SCHED_BATCH for the whole process.
    Batch,
    /// The OS default (SCHED_OTHER); the engine's Python threads are batch regardless.
    Normal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.version {
        print_version(&args);
        return ExitCode::SUCCESS;
    }
    let filter = match EnvFilter::try_new(&args.log_level) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("error: invalid --log-level {:?}: {e}", args.log_level);
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }

    // Before any other thread exists, so that every thread inherits it.
    if args.sched == Sched::Batch
        && let Err(e) = wsgi_core::batch_scheduling()
    {
        tracing::warn!("cannot use SCHED_BATCH ({e}); running with the default policy");
    }
    let outcome = match args.server {
        ServerKind::Axum => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the tokio runtime: {e}"))
            .and_then(|rt| rt.block_on(run(args))),
        // actix-web runs on its own single-threaded system per worker.
        ServerKind::Actix => actix_web::rt::System::new().block_on(run(args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    // Installed first, so that a signal during start-up is a clean stop, not a default kill.
    let mut signals = Signals::new().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // Bound before the (possibly slow) application import, so a taken port fails at once.
    let listener =
        std::net::TcpListener::bind(&args.bind).map_err(|e| bind_error(&args.bind, &e))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the address bound for {}: {e}", args.bind))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;

    // Before the import, so that whatever goes wrong is logged next to the Python it ran on.
    let python = wsgi_core::python_info();
    let (venv, venv_origin) = venv_setting(&args);
    tracing::info!(
        "serve {} embedding Python {} ({}); virtualenv: {}",
        env!("CARGO_PKG_VERSION"),
        python.version,
        python_files(&python),
        venv.as_ref().map_or_else(
            || "none".to_owned(),
            |v| format!("{}{venv_origin}", v.display())
        ),
    );
    let engine = build_engine(&args)?;
    tracing::info!(app = %app_spec(&args), threads = engine.threads(), server = ?args.server, "application loaded");
    let mount = args
        .mount
        .as_deref()
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.starts_with('/') {
                p.to_owned()
            } else {
                format!("/{p}")
            }
        });

    if let Some(addr) = &args.metrics_bind {
        serve_metrics(addr, engine.clone())?;
    }
    let mut server = match args.server {
        ServerKind::Axum => serve_axum(listener, local, engine.clone(), mount)?,
        ServerKind::Actix => serve_actix(listener, engine.clone(), mount, args.grace)?,
    };

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{local}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(stdout);

    tokio::select! {
        name = signals.next() => tracing::info!("{name} received: draining in-flight requests"),
        ended = &mut server.done => return Err(format!("the server stopped unexpectedly: {ended:?}")),
    }
    (server.stop)(true);
    let mut deadline = Instant::now() + Duration::from_secs(args.grace);
    tokio::select! {
        _ = &mut server.done => {}
        _ = tokio::time::sleep_until(deadline.into()) => {
            tracing::warn!(grace = args.grace, "grace period over; cutting the remaining requests");
        }
        name = signals.next() => {
            tracing::warn!("{name} received again: cutting the remaining requests");
            deadline = Instant::now();
        }
    }
    (server.stop)(false);
    let report = engine
        .shutdown(deadline.saturating_duration_since(Instant::now()))
        .await;
    tracing::info!(
        completed = report.completed,
        aborted = report.aborted,
        "stopped"
    );
    Ok(())
}

/// The APP argument, which clap requires unless `--version` is given.
fn app_spec(args: &Args) -> &str {
    args.app.as_deref().unwrap_or_default()
}

/// The virtualenv the engine will use, and where that came from.
fn venv_setting(args: &Args) -> (Option<PathBuf>, &'static str) {
    match &args.venv {
        Some(dir) => (Some(dir.clone()), " (from --venv)"),
        None => (
            std::env::var_os("VIRTUAL_ENV")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            " (from $VIRTUAL_ENV)",
        ),
    }
}

/// The interpreter's program and library, for the start-up log.
fn python_files(python: &wsgi_core::PythonInfo) -> String {
    let mut text = match &python.base_executable {
        Some(exe) => exe.display().to_string(),
        None => format!("prefix {}", python.base_prefix.display()),
    };
    if let Some(library) = &python.library {
        text.push_str(&format!(", {}", library.display()));
    }
    text
}

/// `--version`: what this binary runs, so a user can tell which Python (and which
/// virtualenv) an application will get without starting it.
fn print_version(args: &Args) {
    let python = wsgi_core::python_info();
    let show = |path: Option<&Path>| {
        path.map_or_else(|| "unknown".to_owned(), |p| p.display().to_string())
    };
    println!("serve {}", env!("CARGO_PKG_VERSION"));
    println!("Python {}", python.version);
    println!("  program:    {}", show(python.base_executable.as_deref()));
    println!("  library:    {}", show(python.library.as_deref()));
    println!("  prefix:     {}", python.base_prefix.display());
    let venv = match venv_setting(args) {
        (None, _) => "none".to_owned(),
        // Activated, so that a venv this Python cannot use is reported here already.
        (Some(dir), origin) => match wsgi_core::activate_venv(&dir) {
            Ok(()) => format!("{}{origin}", dir.display()),
            Err(e) => format!("{}{origin}\n  unusable:   {e}", dir.display()),
        },
    };
    println!("  virtualenv: {venv}");
}

/// Says what to do about a socket that cannot be bound.
fn bind_error(addr: &str, error: &std::io::Error) -> String {
    let advice = match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; another program (or another serve) is already listening on that port: stop \
             it, or choose another port with --bind HOST:PORT"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need privileges: choose a higher port with --bind HOST:PORT"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "; that address is not one of this machine's: use 127.0.0.1, 0.0.0.0 or one of \
             its interfaces' addresses"
        }
        _ => "",
    };
    format!("cannot listen on {addr}: {error}{advice}")
}

fn build_engine(args: &Args) -> Result<Engine, String> {
    let mut builder =
        Engine::builder(app_spec(args)).strict_python_version(args.strict_python_version);
    if let Some(n) = args.threads {
        builder = builder.threads(n);
    }
    if let Some(n) = args.queue_depth {
        builder = builder.queue_depth(n);
    }
    if let Some(bytes) = args.max_body {
        builder = builder.max_body(bytes);
    }
    if let Some(bytes) = args.buffer_body {
        builder = builder.buffer_body(bytes);
    }
    if let Some(dir) = &args.chdir {
        builder = builder.chdir(dir);
    }
    if let Some(dir) = &args.venv {
        builder = builder.venv(dir);
    }
    if let Some(secs) = args.timeout {
        builder = builder.timeout(seconds("--timeout", secs)?);
    }
    if let Some(secs) = args.max_queue_wait {
        builder = builder.max_queue_wait(seconds("--max-queue-wait", secs)?);
    }
    if let Some(secs) = args.body_timeout {
        builder = builder.body_timeout(seconds("--body-timeout", secs)?);
    }
    if !args.trusted_proxies.is_empty() {
        builder = builder.trusted_proxies(args.trusted_proxies.iter().cloned());
    }
    builder.build().map_err(|e| e.to_string())
}

fn seconds(option: &str, secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{option} takes a positive number of seconds, not {secs}"))
}

/// Serves `GET /metrics` (Prometheus text) on its own address, apart from the application,
/// so it can stay private while the application is public.
fn serve_metrics(addr: &str, engine: Engine) -> Result<(), String> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| bind_error(addr, &e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the metrics socket non-blocking: {e}"))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("cannot use the metrics socket: {e}"))?;
    let router = Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = engine.metrics().to_prometheus();
            async move { ([("content-type", "text/plain; version=0.0.4")], text) }
        }),
    );
    tracing::info!("metrics on http://{addr}/metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("the metrics server stopped: {e}");
        }
    });
    Ok(())
}

/// A running server: a future that ends with it, and a way to stop it
/// (`true`: stop accepting and drain; `false`: close what is left).
struct Running {
    done: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>>>>,
    stop: Box<dyn FnMut(bool)>,
}

fn serve_axum(
    listener: std::net::TcpListener,
    local: SocketAddr,
    engine: Engine,
    mount: Option<String>,
) -> Result<Running, String> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("cannot use the socket: {e}"))?;
    let mut service = WsgiService::new(engine).local_addr(local);
    if let Some(prefix) = mount {
        // The engine answers 404 outside the mount itself, for `/py` and `/py/...` alike.
        service = service.mount(prefix);
    }
    // The service is the whole application, so it is served without a Router: no route
    // lookup and no boxing of its responses on every request.
    // Small streamed chunks must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(
        axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                SocketAddr,
            >(service),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        })
        .into_future(),
    );
    let abort = server.abort_handle();
    Ok(Running {
        done: Box::pin(async move {
            match server.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }),
        stop: Box::new(move |graceful| {
            if graceful {
                let _ = stop_tx.send(true);
            } else {
                abort.abort();
            }
        }),
    })
}

fn serve_actix(
    listener: std::net::TcpListener,
    engine: Engine,
    mount: Option<String>,
    grace: u64,
) -> Result<Running, String> {
    use actix_web::{App, HttpServer};
    use wsgi_actix::WsgiApp;

    let server = HttpServer::new(move || {
        let app = App::new();
        match &mount {
            // Outside the mount, actix-web's own 404.
            Some(prefix) => app.service(WsgiApp::new(prefix.clone(), engine.clone())),
            None => app.default_service(WsgiApp::new("", engine.clone())),
        }
    })
    // This command handles the signals, the same way for both servers.
    .disable_signals()
    .shutdown_timeout(grace)
    .listen(listener)
    .map_err(|e| format!("cannot serve on the socket: {e}"))?
    .run();
    let handle = server.handle();
    let task = actix_web::rt::spawn(server);
    Ok(Running {
        done: Box::pin(async move {
            match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }),
        stop: Box::new(move |graceful| {
            let handle = handle.clone();
            actix_web::rt::spawn(async move { handle.stop(graceful).await });
        }),
    })
}

/// SIGTERM and SIGINT, as a stream of their names.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
