//! The harness shared by the tests in this directory: the `wsgi-serve` binary of this
//! package as a child process (`test_support::serve`), the test applications it serves, and
//! a framework's virtualenv. Only this package's tests know where cargo built the binary.

// Every test binary compiles this module but uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use test_support::serve::{PythonFacts, command, python_facts};

/// The fixture directory `tests/apps/startup`.
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/startup")
}

/// The directory of the test apps, `tests/apps`.
pub(crate) fn apps() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps")
}

/// A `wsgi-serve` command with a clean Python environment, run from the fixture directory.
pub(crate) fn serve_command() -> Command {
    command(env!("CARGO_BIN_EXE_wsgi-serve"), &fixtures())
}

/// A `wsgi-serve` command running `app` (a file under `tests/apps`) on `server` (axum or
/// actix) with `extra` options, run from that directory.
pub(crate) fn serve_app(server: &str, extra: &[&str], app: &str) -> Command {
    let mut command = command(env!("CARGO_BIN_EXE_wsgi-serve"), &apps());
    command.args(["--server", server]).args(extra).arg(app);
    command
}

/// The embedded Python, from `wsgi-serve --version` (run once per test binary).
pub(crate) fn python() -> &'static PythonFacts {
    static FACTS: OnceLock<PythonFacts> = OnceLock::new();
    FACTS.get_or_init(|| python_facts(serve_command()))
}

/// Runs `test` once on each of `wsgi-serve`'s servers.
pub(crate) fn each_server(test: impl Fn(&str)) {
    for server in ["axum", "actix"] {
        test(server);
    }
}

/// What `wsgi-serve`'s report of `missing_import.py` must hold, wherever Python runs.
pub(crate) const MISSING_IMPORT_REPORT: [&str; 5] = [
    "could not import",
    "Traceback",
    "ModuleNotFoundError",
    "wsgi_startup_missing_dependency",
    "sys.path searched",
];

/// The virtualenv named by `VIRTUAL_ENV` if it has the Python package `package`, for a
/// `wsgi-serve --venv` that runs a framework's app (the examples package's, under
/// `examples/tests/apps`). `None` (after saying why on stderr) when it
/// has not and frameworks are not required; panics when they are.
pub(crate) fn framework_venv(package: &str) -> Option<std::path::PathBuf> {
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
    assert!(!test_support::frameworks_required(), "{why}");
    eprintln!("SKIPPED: {why}, or set WSGI_REQUIRE_FRAMEWORKS=1 to make this a failure.");
    None
}

/// A test app of the examples package (`examples/tests/apps`): the Django site, which needs
/// the examples' Django project beside it.
pub(crate) fn examples_app(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/apps")
        .join(file)
}
