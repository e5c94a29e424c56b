//! What each Python thread is running, for the reports an operator reads when requests hang:
//! the line of a request that timed out or got stuck, and every busy thread's on demand
//! ([`crate::Engine::log_busy_threads`]), each with the thread's Python stack. What a thread
//! runs is published in its watchdog slot ([`crate::state::Running`]); the stacks are taken
//! in [`crate::python`], and the text is put together here so that both runners (and a
//! worker process's log, which reaches the host's) read the same.

use std::fmt;
use std::time::{Duration, Instant};

use http::Method;
use http::uri::PathAndQuery;

use crate::environ::CgiVars;

/// A running request as a log line names it: `GET /path?query`, and since when it runs.
#[derive(Debug, Clone)]
pub(crate) struct RequestLine {
    method: Method,
    /// Cheap to clone (shared bytes): recording it costs a request no copy of its target.
    target: PathAndQuery,
    started: Instant,
}

impl RequestLine {
    /// The request of `vars`, starting now.
    pub(crate) fn starting(vars: &CgiVars) -> Self {
        RequestLine {
            method: vars.method.clone(),
            target: vars.target.clone(),
            started: Instant::now(),
        }
    }

    /// How long the request has run.
    pub(crate) fn running_for(&self) -> Duration {
        self.started.elapsed()
    }
}

impl fmt::Display for RequestLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `PathAndQuery` displays as `CgiVars::request_uri` reads: an absolute-form target
        // with an empty path (`?q`) has the path `/`.
        write!(f, "{} {}", self.method, self.target)
    }
}

/// A request a Python thread runs: the thread's Python id and the request.
#[derive(Debug, Clone)]
pub(crate) struct Busy {
    /// `threading.get_ident()` of the thread running it.
    pub(crate) thread: u64,
    pub(crate) request: RequestLine,
}

/// How a report says where a thread is: its request, how long it has run, and its Python
/// stack (`None`: the thread ran no Python code, for instance while the server sent its
/// response).
pub(crate) fn describe(busy: &Busy, stack: Option<&str>) -> String {
    let stack = match stack {
        Some(stack) => format!("its Python stack, most recent call last:\n{stack}"),
        None => "it runs no Python code at the moment (the server's own code: reading the \
                 request body or sending the response)"
            .to_owned(),
    };
    format!(
        "{}, running for {:.3} s; {stack}",
        busy.request,
        busy.request.running_for().as_secs_f64()
    )
}

/// The `--timeout` line: the request timed out (and has been answered already).
pub(crate) fn timed_out(timeout: Duration, found: Option<(&Busy, Option<&str>)>) -> String {
    let head = format!(
        "request timed out after {}; answering 504 and interrupting its thread",
        seconds(timeout)
    );
    match found {
        Some((busy, stack)) => format!("{head}: {}", describe(busy, stack)),
        None => format!("{head}: it had just finished"),
    }
}

/// The line of a request whose thread is still not back well after its timeout.
pub(crate) fn stuck(found: Option<(&Busy, Option<&str>)>) -> String {
    let head = "a Python thread ignored the timeout's wsgi_core.RequestTimeout (blocked in C \
                code?); the other threads keep serving";
    match found {
        Some((busy, stack)) => format!("{head}: {}", describe(busy, stack)),
        None => format!("{head}: it has just finished"),
    }
}

/// Logs (WARN) the `--timeout` line of what [`crate::python::interrupt`] found.
pub(crate) fn log_timed_out(timeout: Duration, found: Option<&(Busy, Option<String>)>) {
    let found = found.map(|(busy, stack)| (busy, stack.as_deref()));
    // The timeout is in the message, not a field: a worker's fields follow its message,
    // and so would come after the stack.
    tracing::warn!(target: "wsgi_core", "{}", timed_out(timeout, found));
}

/// Logs (ERROR) the line of a stuck request, with what [`crate::python::stack_of_request`]
/// found.
pub(crate) fn log_stuck(found: Option<&(Busy, Option<String>)>) {
    let found = found.map(|(busy, stack)| (busy, stack.as_deref()));
    tracing::error!(target: "wsgi_core", "{}", stuck(found));
}

/// Runs `report` on a thread of its own: it waits for the GIL, which whoever asks for a
/// report (a host's I/O thread, a worker's control thread) must not.
pub(crate) fn spawn_report(report: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name("wsgi-stacks".into())
        .spawn(report)
    {
        tracing::error!(target: "wsgi_core", "cannot start a thread to log the Python stacks: {e}");
    }
}

/// The line that ends a report of the busy threads.
pub(crate) fn summary(busy: usize, threads: usize) -> String {
    format!("{busy} of {threads} Python threads busy")
}

/// `1 s`, `0.25 s`.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(method: Method, target: &'static str) -> RequestLine {
        RequestLine {
            method,
            target: PathAndQuery::from_static(target),
            started: Instant::now() - Duration::from_millis(1500),
        }
    }

    #[test]
    fn a_request_line_reads_as_the_access_log_writes_it() {
        assert_eq!(line(Method::GET, "/a/b?x=1").to_string(), "GET /a/b?x=1");
        assert_eq!(line(Method::POST, "?q").to_string(), "POST /?q");
        assert!(line(Method::GET, "/").running_for() >= Duration::from_millis(1500));
    }

    #[test]
    fn reports_name_the_request_its_age_and_the_stack() {
        let busy = Busy {
            thread: 1,
            request: line(Method::GET, "/busy?secs=9"),
        };
        let stack = "  File \"app.py\", line 3, in view\n    time.sleep(1)";
        let text = timed_out(Duration::from_millis(1500), Some((&busy, Some(stack))));
        assert!(
            text.starts_with(
                "request timed out after 1.5 s; answering 504 and interrupting its thread: \
                 GET /busy?secs=9, running for 1.5"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(&format!(
                "its Python stack, most recent call last:\n{stack}"
            )),
            "{text}"
        );
        assert!(timed_out(Duration::from_secs(2), None).ends_with(
            "after 2 s; answering 504 and interrupting its thread: it had just finished"
        ));
        let text = stuck(Some((&busy, None)));
        assert!(text.contains("wsgi_core.RequestTimeout"), "{text}");
        assert!(text.contains(": GET /busy?secs=9, running for "), "{text}");
        assert!(text.ends_with("sending the response)"), "{text}");
        assert_eq!(summary(1, 8), "1 of 8 Python threads busy");
    }
}
