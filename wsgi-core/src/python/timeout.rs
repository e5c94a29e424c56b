//! The request timeout's exception, `wsgi_core.RequestTimeout`, and its injection into the
//! thread of a request that overran.
//!
//! The exception derives from `BaseException`, as mod_wsgi's `mod_wsgi.RequestTimeout`
//! does: an application's `except Exception:` (a retry loop, a view that logs a failure and
//! carries on) would swallow an `Exception` such as `TimeoutError`, and the thread would
//! never come back. The module that holds it is registered in `sys.modules` as the
//! interpreter starts, before any application is imported, so an application can
//! `from wsgi_core import RequestTimeout` to clean up (and re-raise).

use pyo3::exceptions::PyBaseException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyModule, PyType};

use crate::busy::Busy;

/// The name applications import.
const MODULE: &str = "wsgi_core";

const MODULE_DOC: &str = "What the wsgi-rs server offers the applications it runs.";

const REQUEST_TIMEOUT_DOC: &std::ffi::CStr = c"Raised in a request's thread when the request \
overran the server's request timeout (wsgi-serve --timeout; EngineBuilder::timeout); its client \
has been answered 504 already. It derives from BaseException, not Exception, so that \
`except Exception:` does not swallow it and the thread comes back to serve: catch it by name to \
clean up, then re-raise. Like every exception raised from outside a thread, it arrives at the \
thread's next Python instruction: code blocked in C (a C extension, a long time.sleep) sees it \
only when it returns to Python.";

static REQUEST_TIMEOUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `wsgi_core.RequestTimeout`.
fn request_timeout(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    REQUEST_TIMEOUT
        .get_or_try_init(py, || {
            PyErr::new_type(
                py,
                c"wsgi_core.RequestTimeout",
                Some(REQUEST_TIMEOUT_DOC),
                Some(&py.get_type::<PyBaseException>()),
                None,
            )
        })
        .map(|class| class.bind(py))
}

/// Registers the `wsgi_core` module in `sys.modules`.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let module = PyModule::new(py, MODULE)?;
    module.setattr("__doc__", MODULE_DOC)?;
    module.add("RequestTimeout", request_timeout(py)?)?;
    module.add("__all__", ["RequestTimeout"])?;
    py.import("sys")?
        .getattr("modules")?
        .set_item(MODULE, module)?;
    Ok(())
}

/// Raises `wsgi_core.RequestTimeout` in the Python thread running a request that timed
/// out, if `running()` (called with the GIL held) still finds it; returns what it found and
/// the thread's Python stack just before (`None` for no Python frame).
pub(crate) fn interrupt(running: impl FnOnce() -> Option<Busy>) -> Option<(Busy, Option<String>)> {
    Python::attach(|py| {
        // While this thread holds the GIL the worker cannot finish its request and start
        // another (it withdraws the request from its slot with the GIL held), so the check
        // and the injection cannot hit the wrong request.
        let busy = running()?;
        let stack = super::stacks::of_thread(py, busy.thread);
        match request_timeout(py) {
            // SAFETY: the GIL is held (attached above); the class is alive (kept by
            // REQUEST_TIMEOUT), and CPython takes its own reference; an unknown thread id
            // is ignored by CPython (it returns 0).
            Ok(class) => unsafe {
                pyo3::ffi::PyThreadState_SetAsyncExc(
                    busy.thread as std::os::raw::c_long,
                    class.as_ptr(),
                );
            },
            Err(e) => tracing::error!(
                target: "wsgi_core",
                "cannot create wsgi_core.RequestTimeout, so the thread is not interrupted: {e}"
            ),
        }
        Some((busy, stack))
    })
}

/// Withdraws a pending `interrupt` from `thread`.
pub(crate) fn clear_interrupt(_py: Python<'_>, thread: u64) {
    // SAFETY: the `Python` token proves the GIL is held; a null exception clears any
    // pending asynchronous exception of that thread.
    unsafe {
        pyo3::ffi::PyThreadState_SetAsyncExc(thread as std::os::raw::c_long, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_timeout_is_importable_and_escapes_except_exception() {
        super::super::ensure_initialized();
        Python::attach(|py| {
            let code = c"
from wsgi_core import RequestTimeout
import wsgi_core
assert wsgi_core.__all__ == ['RequestTimeout']
assert issubclass(RequestTimeout, BaseException)
assert not issubclass(RequestTimeout, Exception)
assert RequestTimeout.__module__ == 'wsgi_core'
assert 'BaseException' in RequestTimeout.__doc__
try:
    try:
        raise RequestTimeout
    except Exception:
        caught = 'Exception'
except RequestTimeout:
    caught = 'RequestTimeout'
assert caught == 'RequestTimeout', caught
";
            py.run(code, None, None)
                .unwrap_or_else(|e| panic!("{}", super::super::traceback_text(py, &e)));
        });
    }
}
