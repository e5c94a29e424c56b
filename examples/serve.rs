//! `serve`: run a Python WSGI application over HTTP/1.1 and h2c.
//!
//! ```text
//! cargo run --release --example serve -- [OPTIONS] APP
//! ```
//!
//! `APP` is `path/to/file.py` (its `application` callable), `path/to/file.py:callable` or
//! `package.module:callable`. Once the socket is bound and the application loaded, the
//! command prints one line, `listening on http://ADDR`, to stdout; logs go to stderr.
//! SIGTERM or Ctrl-C stops accepting, lets in-flight requests finish for up to `--grace`
//! seconds, then shuts the engine down and exits 0; a second signal skips the wait.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::serve::ListenerExt;
use clap::{Parser, ValueEnum};
use http_body::{Body as _, Frame, SizeHint};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use wsgi_axum::WsgiService;
use wsgi_core::Engine;

/// Serve a Python WSGI application.
#[derive(Parser, Debug)]
#[command(name = "serve", version)]
struct Args {
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

    /// Largest request body accepted; larger ones get 413 [default: no limit].
    #[arg(long, value_name = "BYTES")]
    max_body: Option<u64>,

    /// Requests that may wait for a free Python thread before new ones get 503
    /// [default: 1024].
    #[arg(long, value_name = "N")]
    queue_depth: Option<usize>,

    /// Seconds that in-flight requests get to finish after SIGTERM or Ctrl-C.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    grace: u64,

    /// Log filter: a level (`info`, `debug`) or tracing directives (`info,wsgi_core=debug`).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log_level: String,

    /// The application: `path/file.py`, `path/file.py:callable` or `module:callable`.
    #[arg(value_name = "APP")]
    app: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ServerKind {
    /// axum 0.8 on hyper.
    Axum,
    /// actix-web 4 (not available yet).
    Actix,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.server == ServerKind::Actix {
        eprintln!("error: --server actix is not yet supported; use --server axum");
        return ExitCode::from(2);
    }
    let filter = match EnvFilter::try_new(&args.log_level) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("error: invalid --log-level {:?}: {e}", args.log_level);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    match run(args).await {
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
    let listener = TcpListener::bind(&args.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.bind))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the address bound for {}: {e}", args.bind))?;

    let mut builder = Engine::builder(&args.app);
    if let Some(n) = args.threads {
        builder = builder.threads(n);
    }
    if let Some(n) = args.queue_depth {
        builder = builder.queue_depth(n);
    }
    if let Some(bytes) = args.max_body {
        builder = builder.max_body(bytes);
    }
    if let Some(dir) = &args.chdir {
        builder = builder.chdir(dir);
    }
    if let Some(dir) = &args.venv {
        builder = builder.venv(dir);
    }
    let engine = builder.build().map_err(|e| e.to_string())?;
    tracing::info!(app = %args.app, threads = engine.threads(), "application loaded");

    let mut service = WsgiService::new(engine.clone()).local_addr(local);
    if let Some(prefix) = args
        .mount
        .as_deref()
        .filter(|p| !p.trim_matches('/').is_empty())
    {
        // The engine answers 404 outside the mount itself, for `/py` and `/py/...` alike.
        service = service.mount(prefix);
    }
    let router = Router::new()
        .fallback_service(service)
        .layer(middleware::from_fn(access_log));

    // Small streamed chunks must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut server = tokio::spawn(
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        })
        .into_future(),
    );

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{local}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(stdout);

    tokio::select! {
        name = signals.next() => tracing::info!("{name} received: draining in-flight requests"),
        ended = &mut server => return Err(format!("the server stopped unexpectedly: {ended:?}")),
    }
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + Duration::from_secs(args.grace);
    tokio::select! {
        _ = &mut server => {}
        _ = tokio::time::sleep_until(deadline.into()) => {
            tracing::warn!(grace = args.grace, "grace period over; cutting the remaining requests");
        }
        name = signals.next() => tracing::warn!("{name} received again: cutting the remaining requests"),
    }
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

/// Logs one line per request once its response body has ended (or was cut), so the
/// duration covers streamed bodies too, not just the time to the headers.
async fn access_log(req: Request, next: Next) -> Response {
    let line = AccessLine {
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        start: Instant::now(),
        status: StatusCode::OK,
        bytes: 0,
    };
    let response = next.run(req).await;
    let line = AccessLine {
        status: response.status(),
        ..line
    };
    response.map(|body| {
        Body::new(LoggedBody {
            body,
            line: Some(line),
        })
    })
}

struct AccessLine {
    method: Method,
    path: String,
    status: StatusCode,
    start: Instant,
    bytes: u64,
}

impl AccessLine {
    fn emit(self, outcome: &str) {
        tracing::info!(
            target: "serve::access",
            "{} {} {} {} bytes {:.1} ms{outcome}",
            self.method,
            self.path,
            self.status.as_u16(),
            self.bytes,
            self.start.elapsed().as_secs_f64() * 1000.0,
        );
    }
}

struct LoggedBody {
    body: Body,
    line: Option<AccessLine>,
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(line)) = (frame.data_ref(), this.line.as_mut()) {
                    line.bytes += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(line) = this.line.take() {
                    line.emit(" (response aborted)");
                }
            }
            Poll::Ready(None) => {
                if let Some(line) = this.line.take() {
                    line.emit("");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            // hyper stops polling a body that reports its end, so that is a complete one; any
            // other drop is a client that left or a shutdown that cut the response.
            let outcome = if self.body.is_end_stream() {
                ""
            } else {
                " (cut short)"
            };
            line.emit(outcome);
        }
    }
}
