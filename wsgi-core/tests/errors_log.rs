//! `wsgi.errors` writes and application tracebacks reach `tracing`.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{TestServer, app_path, eventually, start};

/// Everything the global subscriber of this test binary has written.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_target(true)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .try_init()
            .expect("install the test subscriber");
        buffer
    })
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

fn log_text() -> String {
    String::from_utf8_lossy(&log().lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

fn server() -> TestServer {
    log();
    start(&app_path("response_app.py"), |b| b, "")
}

/// The log lines (events start at a line with a level) that mention `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    log_text()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn wsgi_errors_writes_reach_the_log_under_their_target() {
    let server = server();
    let response = server.get("/errors?marker=m4711");
    assert_eq!(response.status(), 200);
    for needle in [
        "errors-write-m4711",
        "errors-writelines-m4711-a",
        "errors-writelines-m4711-b",
    ] {
        let lines = eventually(&format!("{needle} in the log"), || {
            let lines = lines_with(needle);
            (!lines.is_empty()).then_some(lines)
        });
        assert!(
            lines.iter().any(|l| l.contains("wsgi.errors")),
            "{needle} logged without the wsgi.errors target: {lines:?}"
        );
    }
}

#[test]
fn an_app_exception_is_logged_with_its_traceback_and_answered_500() {
    let server = server();
    let response = server.get("/raise_before?marker=tb0815");
    assert_eq!(response.status(), 500);
    assert!(
        !response.text().contains("boom-before-start-tb0815"),
        "the exception text must not be sent to the client"
    );
    let text = eventually("the traceback in the log", || {
        let text = log_text();
        text.contains("boom-before-start-tb0815").then_some(text)
    });
    assert!(
        text.contains("Traceback (most recent call last)"),
        "no traceback logged; log:\n{text}"
    );
    assert!(
        text.contains("RuntimeError: boom-before-start-tb0815"),
        "exception line missing"
    );
    assert!(
        text.contains("wsgi_core::app"),
        "nothing logged under the wsgi_core::app target"
    );
}

#[test]
fn unconfigured_python_logging_reaches_the_log_under_its_own_target() {
    log();
    let server = start(&app_path("logging_app.py"), |b| b, "");
    assert_eq!(server.get("/?m9146").status(), 200);
    let lines = eventually("the logging record in the log", || {
        let lines = lines_with("logged-m9146");
        (!lines.is_empty()).then_some(lines)
    });
    assert!(
        lines
            .iter()
            .any(|l| l.contains("python.logging") && l.contains("fixture.views")),
        "{lines:?}"
    );
    // The logger's own level still applies (root defaults to WARNING).
    assert!(lines_with("below-the-default-level-m9146").is_empty());
}
