//! The harness shared by the tests in this directory: the `wsgi-serve` binary of this
//! package as a child process (`test_support::serve`), the test applications it serves, and
//! a framework's virtualenv. Only this package's tests know where cargo built the binary.

// Every test binary compiles this module but uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
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

/// A test app of the examples package (`examples/tests/apps`): the Flask and Django sites,
/// which need the examples' projects beside them.
pub(crate) fn examples_app(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/apps")
        .join(file)
}

/// Whether a process exists (and is not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat
                .rsplit(") ")
                .next()
                .and_then(|rest| rest.chars().next());
            state != Some('Z')
        })
        .unwrap_or(false)
}

/// The processes whose parent is `parent`.
pub(crate) fn children(parent: u32) -> BTreeSet<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid ...`; comm may hold spaces, so split after it.
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}
