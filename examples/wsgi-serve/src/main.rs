//! `wsgi-serve`: run a Python WSGI application over HTTP/1.1 and h2c, or HTTPS (`--certfile`,
//! `--keyfile`) with HTTP/2 and HTTP/1.1 negotiated by ALPN.
//!
//! ```text
//! cargo run --release -p wsgi-serve -- [OPTIONS] APP
//! cargo install --path examples/wsgi-serve     # then: wsgi-serve [OPTIONS] APP
//! ```
//!
//! `APP` is a directory with a `passenger_wsgi.py`, `path/to/file.py` (its `application`
//! callable), `path/to/file.py:callable`, `package.module:callable`, or a factory call with
//! literal arguments, `package.module:create_app('prod')`. Once the socket is bound and the
//! application loaded, the command prints one line, `listening on http://ADDR` (or
//! `https://`), to stdout; logs go to stderr. `wsgi-serve --version` names the embedded Python
//! and the virtualenv. SIGTERM or Ctrl-C stops accepting, ends idle keep-alive connections,
//! lets in-flight requests finish for up to `--grace`, then shuts the engine down and exits
//! 0; a second signal skips the wait. The application runs in one worker process unless
//! `--processes` says otherwise (`0`: in this process). SIGHUP restarts the worker processes;
//! SIGUSR1 logs every busy Python thread's request and stack.
//! Requests are logged by the engine (target `wsgi_core::access`), whichever server hosts it.
//!
//! One module per concern: [`cli`] (the options), [`config`] (options to an
//! `EngineBuilder`), [`hints`] (the flags that fix an engine error), [`hosts`] (axum and
//! actix-web), [`signals`], [`metrics`] (the Prometheus endpoint), [`logging`] (the log's
//! format), [`log_writer`] (the log, written off the request threads), [`version`] (`--version`), [`listen`] (sockets), [`unix_socket`] (UNIX socket files), [`systemd`] (socket activation, `sd_notify`),
//! [`health`] (`/livez`, `/readyz`, the drain's state), [`settings`] (the environment,
//! the `--config` file and `--print-config`),
//! [`tls`] (certificates and the rustls configuration) and [`values`] (the types of option
//! values).

mod cli;
mod config;
mod health;
mod hints;
mod hosts;
mod listen;
mod log_writer;
mod logging;
mod metrics;
mod settings;
mod signals;
mod systemd;
mod tls;
mod unix_socket;
mod values;
mod version;

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use cli::{Args, Sched, ServerKind, VenvOrigin};
use health::Health;
use listen::Listener;
use logging::DroppedLines;
use signals::Signals;

fn main() -> ExitCode {
    // A worker process (`--processes`) is this binary started again: it serves from here
    // and never returns.
    wsgi_core::run_if_worker();
    let args = cli::parse();
    if args.print_config {
        return match settings::report::write(&args.settings, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write to stdout: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.version {
        return match version::write(&args, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            // The reader has what it wanted (`wsgi-serve --version | head -1`).
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write to stdout: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // SAFETY: one thread so far; the environment changes before any other reads it.
    let systemd = match unsafe { systemd::Environment::take() } {
        Ok(systemd) => systemd,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Before any other thread exists, the log's writer among them, so that every thread
    // inherits it.
    let sched = (args.sched == Sched::Batch).then(wsgi_core::batch_scheduling);
    let log = match logging::init(args.log_format, &args.log_level, args.log_buffer.get()) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("error: cannot start the log's writer thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Err(e)) = sched {
        tracing::warn!("cannot use SCHED_BATCH ({e}); running with the default policy");
    }
    let dropped = log.dropped();
    let outcome = match args.server {
        ServerKind::Axum => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the tokio runtime: {e}"))
            .and_then(|rt| rt.block_on(run(args, dropped, systemd))),
        // actix-web runs on its own single-threaded system per worker.
        ServerKind::Actix => actix_web::rt::System::new().block_on(run(args, dropped, systemd)),
    };
    // The log's last lines first, so that the error comes after them.
    log.close();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    mut args: Args,
    dropped: DroppedLines,
    mut systemd: systemd::Environment,
) -> Result<(), String> {
    tokio::spawn(logging::report_dropped(dropped.clone()));
    // Installed first, so that a signal during start-up is a clean stop, not a default kill.
    let mut signals = Signals::new().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // Bound before the (possibly slow) application import, so a taken port fails at once;
    // the socket files are removed when `socket_files` drops, at the end of this function.
    let mut socket_files = Vec::new();
    let (listeners, metrics_listener) = if systemd.has_sockets() {
        let (app, metrics) = systemd.listeners()?;
        if args.bind_given {
            tracing::warn!(
                "listening on the sockets systemd passed (LISTEN_FDS); --bind is ignored"
            );
        }
        let metrics = match (metrics, &args.metrics_bind) {
            (Some(listener), _) => Some(listener),
            (None, Some(addr)) => Some(Listener::Tcp(listen::bind_tcp(addr, "--metrics-bind")?)),
            (None, None) => None,
        };
        (app, metrics)
    } else {
        let mut listeners = Vec::with_capacity(args.bind.len());
        for addr in &args.bind {
            let (listener, file) = listen::bind(addr, args.unix_files(), "--bind")?;
            listeners.push(listener);
            socket_files.extend(file);
        }
        let metrics = args
            .metrics_bind
            .as_ref()
            .map(|addr| listen::bind_tcp(addr, "--metrics-bind").map(Listener::Tcp))
            .transpose()?;
        (listeners, metrics)
    };
    if listeners.is_empty() {
        return Err(
            "systemd passed no socket for the application (only one named \"metrics\")".into(),
        );
    }
    let scheme = if args.tls.is_some() { "https" } else { "http" };
    let described: Vec<String> = listeners.iter().map(|l| l.describe(scheme)).collect();

    args.engine.enter_directory()?;
    let builder = args
        .engine
        .builder(args.venv_origin == VenvOrigin::Environment)
        .drain_grace(args.grace.0);
    // Before the import, so that whatever goes wrong is logged next to the Python it ran on.
    // With worker processes, Python starts in them only; each reports its version.
    if args.engine.processes.max == 0 {
        let python = builder.start_python().map_err(|e| hints::describe(&e))?;
        tracing::info!(
            "wsgi-serve {} embedding {python}{}",
            env!("CARGO_PKG_VERSION"),
            args.venv_origin.suffix()
        );
    } else {
        // Each worker logs the virtualenv it activated; only this process knows where the
        // choice came from.
        let venv = args
            .engine
            .venv
            .as_ref()
            .map(|dir| {
                format!(
                    ", virtualenv {}{}",
                    dir.display(),
                    args.venv_origin.suffix()
                )
            })
            .unwrap_or_default();
        tracing::info!(
            processes = %args.engine.processes,
            "wsgi-serve {} starting worker processes{venv}",
            env!("CARGO_PKG_VERSION")
        );
    }
    let engine = builder.build().map_err(|e| hints::describe(&e))?;
    tracing::info!(app = %args.engine.app(), processes = %args.engine.processes, threads = engine.threads(), server = ?args.server, "application loaded");
    signals.restart_on_hangup(engine.clone());
    signals.log_busy_threads_on_usr1(engine.clone());
    let mount = args.mount.as_deref().unwrap_or_default();

    let health = Health::new(engine.clone());
    if let Some(Listener::Tcp(listener)) = metrics_listener {
        metrics::serve(listener, engine.clone(), dropped, health.clone())?;
    }
    let front = hosts::Front {
        health: health.clone(),
        health_path: args.health_path.clone(),
        drains: !args.shutdown_delay.0.is_zero(),
    };
    let grace = args.grace.0;
    let tls = args.tls.clone();
    let mut server = match args.server {
        ServerKind::Axum => hosts::axum::serve(listeners, engine.clone(), mount, tls, &front)?,
        ServerKind::Actix => {
            hosts::actix::serve(listeners, engine.clone(), mount, grace, tls, &front)?
        }
    };

    let mut stdout = std::io::stdout().lock();
    described
        .iter()
        .try_for_each(|listener| writeln!(stdout, "listening on {listener}"))
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(stdout);
    let notifier = systemd.notifier();
    notifier.ready(&engine);
    notifier.spawn(engine.clone());

    let delay = args.shutdown_delay.0;
    tokio::select! {
        name = signals.next() => if delay.is_zero() {
            tracing::info!("{name} received: draining in-flight requests");
        } else {
            tracing::info!(shutdown_delay = %args.shutdown_delay, "{name} received: /readyz answers 503; serving on until the delay ends, then draining");
        },
        ended = &mut server.done => return Err(format!("the server stopped unexpectedly: {ended:?}")),
    }
    // Readiness fails at once, so load balancers stop sending new requests here while the
    // listeners still take what they send until they notice.
    health.start_draining();
    notifier.stopping();
    let mut cut = false;
    if !delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(delay) => tracing::info!("shutdown delay over: draining in-flight requests"),
            name = signals.next() => {
                tracing::warn!("{name} received again: cutting the remaining requests");
                cut = true;
            }
            ended = &mut server.done => return Err(format!("the server stopped unexpectedly: {ended:?}")),
        }
    }
    (server.stop)(true);
    let mut deadline = Instant::now()
        + if cut {
            std::time::Duration::ZERO
        } else {
            grace
        };
    tokio::select! {
        _ = &mut server.done => {}
        _ = tokio::time::sleep_until(deadline.into()) => {
            tracing::warn!(grace = %args.grace, "grace period over; cutting the remaining requests");
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
    drop(socket_files);
    Ok(())
}
