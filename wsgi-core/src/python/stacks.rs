//! Python stacks of the threads that run requests, for the reports of [`crate::busy`]: taken
//! with the GIL held, from `sys._current_frames()`, formatted as `traceback` formats a
//! stack (most recent call last).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::busy::{self, Busy};
use crate::state::Shared;

/// Every thread's current frame, by thread id; `None` if the interpreter cannot say.
fn current_frames(py: Python<'_>) -> Option<Bound<'_, PyDict>> {
    let frames = py
        .import("sys")
        .and_then(|sys| sys.call_method0("_current_frames"))
        .and_then(|frames| frames.cast_into::<PyDict>().map_err(PyErr::from));
    match frames {
        Ok(frames) => Some(frames),
        Err(e) => {
            tracing::warn!(target: "wsgi_core", "cannot read the Python threads' stacks: {e}");
            None
        }
    }
}

/// The stack of `thread` in `frames`, formatted; `None` when it runs no Python code.
fn format(py: Python<'_>, frames: &Bound<'_, PyDict>, thread: u64) -> Option<String> {
    let frame = frames.get_item(thread).ok().flatten()?;
    let formatted = py
        .import("traceback")
        .and_then(|tb| tb.call_method1("format_stack", (frame,)))
        .and_then(|lines| PyString::new(py, "").call_method1("join", (lines,)))
        .and_then(|text| text.extract::<String>());
    Some(match formatted {
        Ok(text) => text.trim_end().to_owned(),
        Err(e) => format!("(the stack could not be formatted: {e})"),
    })
}

/// The Python stack of `thread` now; `None` when it runs no Python code.
pub(crate) fn of_thread(py: Python<'_>, thread: u64) -> Option<String> {
    format(py, &current_frames(py)?, thread)
}

/// What `running()` (called with the GIL held) finds, with its thread's stack.
pub(crate) fn of_request(running: impl FnOnce() -> Option<Busy>) -> Option<(Busy, Option<String>)> {
    Python::attach(|py| {
        let busy = running()?;
        let stack = of_thread(py, busy.thread);
        Some((busy, stack))
    })
}

/// Logs, at INFO, each busy slot of `shared` (its request, how long it has run, its
/// thread's Python stack), then how many of the process's threads (one per slot) were
/// busy. Waits for the GIL: call it from a thread of its own, never from a host's I/O
/// thread.
pub(crate) fn log_busy_threads(shared: &Shared) {
    Python::attach(|py| {
        // Read with the GIL held, so that no thread finishes its request or starts another
        // while its stack is taken.
        let busy = shared.busy();
        let frames = current_frames(py);
        for entry in &busy {
            let stack = frames
                .as_ref()
                .and_then(|frames| format(py, frames, entry.thread));
            tracing::info!(
                target: "wsgi_core",
                "busy Python thread: {}",
                busy::describe(entry, stack.as_deref())
            );
        }
        tracing::info!(target: "wsgi_core", "{}", busy::summary(busy.len(), shared.slots.len()));
    });
}
