//! `wsgi.errors` writes and application tracebacks reach `tracing`.

mod common;

use common::{TestServer, app_path, start};
use test_support::eventually;
use test_support::logs::{Captured, captured};

/// Everything this test binary logs, captured from before any server starts.
fn log() -> &'static Captured {
    captured()
}

fn log_text() -> String {
    log().text()
}

fn server() -> TestServer {
    log();
    start(&app_path("response_app.py"), |b| b, "")
}

/// The log lines that mention `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    log().lines_with(needle)
}

#[test]
fn wsgi_errors_writes_reach_the_log_under_their_target() {
    let server = server();
    let response = server.get("/errors?marker=m4711");
    assert_eq!(response.status, 200);
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
    assert_eq!(response.status, 500);
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
    assert_eq!(server.get("/?m9146").status, 200);
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
