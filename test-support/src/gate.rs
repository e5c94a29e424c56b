//! Gates and record files: how a test steers a Python test app and sees inside it, without
//! guessing at sleep times.
//!
//! Both are named by a token the request carries in its query string (`gate=TOKEN`,
//! `record=TOKEN`); the app's side is `python/wsgi_test_support.py` in this crate, which maps a
//! token to the same file in the temporary directory as the types here. A [`Gate`] releases
//! an app waiting in `wait_for_gate(environ)` once the test creates its file; a [`Record`] is a
//! file the app appends lines to with `record(environ, line)`, for what the client cannot see
//! (the server calling `close()`, say).

use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use tempfile::NamedTempFile;

/// The directory of the Python twin of this module, `wsgi_test_support.py`: the test apps
/// put it on `sys.path`.
pub const PYTHON_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python");

/// How many random characters a token has (tempfile's, letters and digits: what the Python
/// side accepts).
const TOKEN_LEN: usize = 16;

/// A unique token and the path `{temp}/{prefix}{token}`, which does not exist yet and is
/// removed when the returned handle drops.
fn reserve(prefix: &str, create: bool) -> (String, NamedTempFile<()>) {
    let file = tempfile::Builder::new()
        .prefix(prefix)
        .rand_bytes(TOKEN_LEN)
        .make(|path| {
            if create {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map(drop)
            } else if path.exists() {
                Err(ErrorKind::AlreadyExists.into())
            } else {
                Ok(())
            }
        })
        .expect("a temporary path");
    let name = file
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 temporary file name");
    let token = name.strip_prefix(prefix).expect("the prefix").to_owned();
    (token, file)
}

/// A flag file that releases an app waiting in `wait_for_gate` (or the Django example's
/// export, `?gate=TOKEN`). Dropping it opens it, so that a test that fails before opening
/// its gate leaves no Python thread waiting, then removes the file.
pub struct Gate {
    token: String,
    file: NamedTempFile<()>,
}

impl Gate {
    /// A closed gate with a fresh token.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Gate {
        let (token, file) = reserve("wsgi-gate-", false);
        Gate { token, file }
    }

    /// The token the app is given.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `gate=TOKEN`, for a query string.
    pub fn query(&self) -> String {
        format!("gate={}", self.token)
    }

    /// Opens the gate: every app waiting on it, now or later, goes on.
    pub fn open(&self) {
        std::fs::write(self.path(), b"open").expect("create the gate file");
    }

    fn path(&self) -> &Path {
        self.file.path()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if !self.path().exists() {
            self.open();
        }
        // An app polls every 10 ms: let any still waiting see the file before it goes.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A file the app appends lines to (`record=TOKEN`), removed on drop.
pub struct Record {
    token: String,
    file: NamedTempFile<()>,
}

impl Record {
    /// An empty record with a fresh token.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Record {
        let (token, file) = reserve("wsgi-record-", true);
        Record { token, file }
    }

    /// The token the app is given; unique, so also good for finding a request's log lines.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `record=TOKEN`, for a query string.
    pub fn query(&self) -> String {
        format!("record={}", self.token)
    }

    /// The lines recorded so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.file.path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// How many times `line` was recorded.
    pub fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }

    /// Polls until `done(lines)` holds and returns the lines; panics, naming `what` and
    /// showing the lines, after [`DEADLINE`](crate::DEADLINE).
    pub fn wait_until(&self, what: &str, mut done: impl FnMut(&[String]) -> bool) -> Vec<String> {
        let start = std::time::Instant::now();
        loop {
            let lines = self.lines();
            if done(&lines) {
                return lines;
            }
            assert!(
                start.elapsed() < crate::DEADLINE,
                "timed out waiting for {what}; the app has recorded {lines:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until the app has recorded `line`; returns the lines.
    pub fn wait_for(&self, line: &str) -> Vec<String> {
        self.wait_until(&format!("the line {line:?}"), |lines| {
            lines.iter().any(|l| l == line)
        })
    }
}
