//! Python `logging` output that no handler of the application's takes goes to `tracing`
//! (target `python.logging`), next to the access log and `wsgi.errors`, instead of to a bare
//! stderr.
//!
//! It replaces `logging.lastResort`, the handler Python uses only when a record finds no
//! handler at all: an application that configures logging (`basicConfig`, Django's
//! `LOGGING`) keeps exactly what it configured.

use pyo3::prelude::*;

/// The `tracing` target of forwarded Python log records.
const TARGET: &str = "python.logging";

#[pyfunction]
fn emit(level: u32, logger: &str, message: &str) {
    match level {
        40.. => tracing::error!(target: TARGET, logger, "{message}"),
        30.. => tracing::warn!(target: TARGET, logger, "{message}"),
        20.. => tracing::info!(target: TARGET, logger, "{message}"),
        _ => tracing::debug!(target: TARGET, logger, "{message}"),
    }
}

/// Installs the handler; idempotent.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let (code, file) = python_source!("logging_handler.py");
    let module = PyModule::from_code(py, code, file, c"wsgi_core_logging")?;
    module.add("_emit", wrap_pyfunction!(emit, &module)?)?;
    module.getattr("install")?.call0()?;
    Ok(())
}
