//! Runs the `wsgi-serve` program as a child process, for the tests of start-up, virtualenvs,
//! TLS, worker processes and operations.
//!
//! The binary's path comes from the test crate (`env!("CARGO_BIN_EXE_wsgi-serve")`, which
//! cargo sets only for the tests of the package that has the binary). The child's
//! environment is cleaned of the variables that would let a test pass for the wrong reason
//! (`PYTHONPATH`, `PYTHONHOME`, `VIRTUAL_ENV`, which `scripts/test` sets, and `wsgi-serve`'s
//! own `WSGI_SERVE_*` settings), and every child is killed when its guard drops, whatever
//! the test's outcome.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::DEADLINE;
use crate::wire;

/// A command for `binary` with a clean Python environment and none of `serve`'s settings
/// from the environment (`WSGI_SERVE_*`), run in `dir`, its output piped.
pub fn command(binary: impl AsRef<OsStr>, dir: &Path) -> Command {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WSGI_SERVE_") {
            command.env_remove(name);
        }
    }
    command
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env_remove("VIRTUAL_ENV")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// What `serve --version` says about the embedded Python.
pub struct PythonFacts {
    /// `major.minor`, e.g. `3.11`.
    pub major_minor: String,
    /// The interpreter's own program, to create virtualenvs with.
    pub program: PathBuf,
    /// The whole `--version` output.
    pub text: String,
}

/// Runs `command` (a `serve` command) with `--version` and reads what it says.
pub fn python_facts(mut command: Command) -> PythonFacts {
    let output = command
        .arg("--version")
        .output()
        .expect("run serve --version");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "serve --version failed: {text}");
    let field = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {prefix:?} in serve --version:\n{text}"))
    };
    let version = field("Python ");
    let major_minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
    let program = PathBuf::from(field("program:"));
    assert!(
        program.is_file(),
        "serve --version names {} as its Python, which does not exist:\n{text}",
        program.display()
    );
    PythonFacts {
        major_minor,
        program,
        text,
    }
}

/// A port of 127.0.0.1 that was free a moment ago, for an address `serve` must be told
/// (`--metrics-bind`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A running `serve`, killed on drop.
pub struct Server {
    child: Child,
    /// The address from its `listening on http://ADDR` (or `https://`) line.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `GET path` on a fresh connection and returns the status code and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let response = wire::get(self.addr, path);
        (response.status, response.text())
    }

    /// Sends a signal (`"TERM"`, `"INT"`) to the child, as an operator would.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `limit` for the child to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What the child has written to stderr so far (its log).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The log once it contains `needle`, or as it is after [`DEADLINE`]. Lines the child
    /// wrote before it printed its address may still be on their way through the stderr
    /// collector when the test looks, so a test that expects a line waits for it.
    pub fn stderr_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let log = self.stderr();
            if log.contains(needle) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects a child's stderr on a thread, so a chatty child never blocks on a full pipe;
/// nothing when the command sent stderr elsewhere.
pub fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let collected = Arc::new(Mutex::new(String::new()));
    let Some(mut stderr) = child.stderr.take() else {
        return collected;
    };
    let sink = collected.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    collected
}

/// Starts `command` (from [`command`]) on a free port, with two Python threads unless it
/// names `--threads`, and waits until it listens.
pub fn start(mut command: Command) -> Server {
    command.args(["--bind", "127.0.0.1:0"]);
    if !command.get_args().any(|a| a == "--threads") {
        command.args(["--threads", "2"]);
    }
    let mut child = command.spawn().expect("spawn serve");
    let stderr = collect_stderr(&mut child);
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if let Some(addr) = line
                .strip_prefix("listening on http://")
                .or_else(|| line.strip_prefix("listening on https://"))
            {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let mut server = Server {
        child,
        addr: "127.0.0.1:0".parse().unwrap(),
        stderr,
    };
    let started = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(addr) => {
                server.addr = addr.parse().expect("a socket address");
                return server;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed without the line: the child is exiting.
                let status = server.child.wait().ok();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "serve exited ({status:?}) before listening; stderr:\n{}",
                    server.stderr()
                );
            }
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "serve exited ({status}) before listening; stderr:\n{}",
                server.stderr()
            );
        }
        assert!(
            started.elapsed() < DEADLINE,
            "serve did not print `listening on` within {DEADLINE:?}; stderr:\n{}",
            server.stderr()
        );
    }
}

/// Runs `command` (from [`command`]), which is expected to fail at start-up, and returns
/// its exit status and stderr. Panics if it starts listening instead.
pub fn fail(mut command: Command) -> (ExitStatus, String) {
    if !command.get_args().any(|a| a == "--bind") {
        command.args(["--bind", "127.0.0.1:0"]);
    }
    let mut child = command.spawn().expect("spawn serve");
    let stderr = collect_stderr(&mut child);
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll serve") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "serve was expected to fail, but still runs after {DEADLINE:?}; stderr:\n{}",
                stderr.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = reader.join().unwrap_or_default();
    assert!(
        !stdout.contains("listening on"),
        "serve was expected to fail, but it listened; stderr:\n{}",
        stderr.lock().unwrap()
    );
    // The collector thread ends with the pipe; give it a moment to store the last bytes.
    let deadline = Instant::now() + DEADLINE;
    while Arc::strong_count(&stderr) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = stderr.lock().unwrap().clone();
    (status, text)
}

/// Asserts a failed start-up: exit status 1, one `error:` message (as the README promises)
/// and every one of `words` in stderr.
pub fn assert_fails_with(command: Command, words: &[&str]) -> String {
    let (status, stderr) = fail(command);
    assert_eq!(
        status.code(),
        Some(1),
        "serve should exit with status 1 on a start-up error; stderr:\n{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error: ")).count(),
        1,
        "serve should print one error: message; stderr:\n{stderr}"
    );
    for word in words {
        assert!(
            stderr.contains(word),
            "stderr should mention {word:?}:\n{stderr}"
        );
    }
    stderr
}
