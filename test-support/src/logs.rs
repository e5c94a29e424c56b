//! Where a test binary's `tracing` events go: to the test's captured output, or into a buffer
//! the tests read. A process has one global subscriber, so a test binary picks one of the
//! two, before any server starts.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Sends the events (access lines, `wsgi.errors`, tracebacks) to the test's captured
/// output, shown when it fails; `RUST_LOG` picks what (default `info`). Does nothing if the
/// binary already has a subscriber.
pub fn to_test_output() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Everything this test binary logs at `info` and above, as text, kept for the tests to
/// read. The first call installs the subscriber; it must come before anything else does.
pub fn captured() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_target(true)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .try_init()
            .expect("install the capturing subscriber before any other");
        Captured(buffer)
    })
}

/// The log of a test binary, see [`captured`].
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// The whole log so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// The lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until a line contains every one of `needles`; returns it.
    pub fn wait_for_line_with(&self, needles: &[&str]) -> String {
        let start = std::time::Instant::now();
        loop {
            if let Some(line) = self
                .lines_with(needles[0])
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return line;
            }
            assert!(
                start.elapsed() < crate::DEADLINE,
                "no log line with {needles:?}; log:\n{}",
                self.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
