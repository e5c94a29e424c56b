//! Configuration: the one place that turns the command line into an [`EngineBuilder`].

use std::path::PathBuf;
use std::time::Duration;

use wsgi_core::{Engine, EngineBuilder};

use crate::cli::Args;

/// The engine's settings from the command line.
pub(crate) fn engine_builder(args: &Args) -> Result<EngineBuilder, String> {
    let mut builder = Engine::builder(args.app()).strict_python_version(args.strict_python_version);
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
    Ok(builder)
}

fn seconds(option: &str, secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{option} takes a positive number of seconds, not {secs}"))
}

/// The virtualenv the engine will use, and where that came from.
pub(crate) fn venv_setting(args: &Args) -> (Option<PathBuf>, &'static str) {
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

/// The mount prefix, normalised: `/prefix` without a trailing slash; `None` for the root.
pub(crate) fn mount(args: &Args) -> Option<String> {
    args.mount
        .as_deref()
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.starts_with('/') {
                p.to_owned()
            } else {
                format!("/{p}")
            }
        })
}
