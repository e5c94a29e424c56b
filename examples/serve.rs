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
//! Requests are logged by the engine (target `wsgi_core::access`), whichever server hosts it.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// actix-web 4.
    Actix,
}

fn main() -> ExitCode {
    let args = Args::parse();
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
    let listener = std::net::TcpListener::bind(&args.bind)
        .map_err(|e| format!("cannot listen on {}: {e}", args.bind))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the address bound for {}: {e}", args.bind))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;

    let engine = build_engine(&args)?;
    tracing::info!(app = %args.app, threads = engine.threads(), server = ?args.server, "application loaded");
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
    let deadline = Instant::now() + Duration::from_secs(args.grace);
    tokio::select! {
        _ = &mut server.done => {}
        _ = tokio::time::sleep_until(deadline.into()) => {
            tracing::warn!(grace = args.grace, "grace period over; cutting the remaining requests");
        }
        name = signals.next() => tracing::warn!("{name} received again: cutting the remaining requests"),
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

fn build_engine(args: &Args) -> Result<Engine, String> {
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
    builder.build().map_err(|e| e.to_string())
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
    let router = Router::new().fallback_service(service);
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
            router.into_make_service_with_connect_info::<SocketAddr>(),
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
