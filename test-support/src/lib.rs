//! What the workspace's tests share, so that a behaviour is checked the same way whichever
//! crate's tests check it: a raw HTTP/1 client that shows the bytes on the wire ([`wire`]),
//! gates and record files for the Python test apps ([`gate`], with its Python twin
//! `python/wsgi_test_support.py`), one [`DEADLINE`], temporary paths ([`temp`]), captured
//! logs ([`logs`]), the `wsgi-serve` program as a child process ([`serve`]) and, behind features,
//! the axum and actix-web test servers (`hosts`) and an HTTP/2 client (`h2`).
//!
//! It knows nothing of this workspace's own crates: `wsgi-core`'s tests use it too, and a
//! dependency on `wsgi-core` here would be a cycle.

pub mod gate;
#[cfg(feature = "h2")]
pub mod h2;
#[cfg(any(feature = "axum", feature = "actix"))]
pub mod hosts;
pub mod logs;
pub mod rng;
pub mod serve;
pub mod temp;
pub mod wire;

use std::time::{Duration, Instant};

/// How long any single wait in a test may take before it counts as a hang: a read from a
/// server, a record line, a child process starting. Generous, because the tests share a
/// few cores with the compiler and with each other; a test that passes never waits for it.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, and returns that; panics naming `what` after
/// [`DEADLINE`].
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a missing Python framework must fail the tests that serve it rather than skip
/// them: set `WSGI_REQUIRE_FRAMEWORKS` (scripts/test does) unless it is empty or `0`.
pub fn frameworks_required() -> bool {
    std::env::var_os("WSGI_REQUIRE_FRAMEWORKS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The virtualenv named by `VIRTUAL_ENV` if it has the Python package `package`, for a
/// server that runs a framework's app. `None` (after saying why on stderr) when it has not
/// and frameworks are not required; panics when they are.
pub fn framework_venv(package: &str) -> Option<std::path::PathBuf> {
    let venv = std::env::var_os("VIRTUAL_ENV").map(std::path::PathBuf::from);
    let has = venv.as_ref().is_some_and(|venv| {
        std::process::Command::new(venv.join("bin/python"))
            .args(["-c", &format!("import {package}")])
            .status()
            .is_ok_and(|s| s.success())
    });
    if has {
        return venv;
    }
    let why = format!(
        "the Python package {package:?} is not in the virtualenv named by VIRTUAL_ENV \
         ({venv:?}); install requirements-test.txt into it (scripts/test does)"
    );
    assert!(!frameworks_required(), "{why}");
    eprintln!("SKIPPED: {why}, or set WSGI_REQUIRE_FRAMEWORKS=1 to make this a failure.");
    None
}

/// The `KEY=value` lines of `text` (the environ reports of the small test apps).
pub fn key_values(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
