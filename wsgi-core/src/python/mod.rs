//! Everything that touches the Python interpreter lives here, so the rest of the crate
//! can be read (and tested) as plain Rust, and the rules for holding the GIL are in one
//! place: a worker thread holds it only while running Python and releases it
//! ([`Python::detach`]) whenever it waits — for work, for request-body bytes, or for the
//! client to take response bytes.

mod environ;
mod errors;
mod file_wrapper;
mod input;
mod loader;
mod start_response;
mod venv;
mod worker;

use pyo3::prelude::*;

pub(crate) use loader::load_app;
pub(crate) use worker::spawn_workers;

/// Initialises CPython once per process. Signal handlers are left to the host, which
/// owns SIGINT/SIGTERM for graceful shutdown.
pub(crate) fn ensure_initialized() {
    Python::initialize();
}

/// The formatted traceback of `err`, as Python's `traceback` module prints it.
pub(crate) fn traceback_text(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        // The value's __traceback__ is not always set on 3.11; pass the traceback explicitly.
        let lines = tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        let text: String = pyo3::types::PyString::new(py, "")
            .call_method1("join", (lines,))?
            .extract()?;
        Ok::<_, PyErr>(text)
    });
    match formatted {
        Ok(text) => text.trim_end().to_owned(),
        Err(_) => err.to_string(),
    }
}
