//! Everything that touches the Python interpreter lives here, so the rest of the crate
//! can be read (and tested) as plain Rust, and the rules for holding the GIL are in one
//! place: a worker thread holds it only while running Python and releases it
//! ([`Python::detach`]) whenever it waits — for work, for request-body bytes, or for the
//! client to take response bytes.

/// A Python source file next to these modules, as the code and the file name that
/// `PyModule::from_code` takes. The Python the engine runs lives in `.py` files, so that
/// editors and linters see it as Python; it is compiled into the binary, and a NUL byte in it
/// fails the build.
macro_rules! python_source {
    ($file:literal) => {{
        const fn c_str(text: &str) -> &::std::ffi::CStr {
            match ::std::ffi::CStr::from_bytes_with_nul(text.as_bytes()) {
                Ok(text) => text,
                Err(_) => panic!(concat!($file, " holds a NUL byte")),
            }
        }
        const CODE: &::std::ffi::CStr = c_str(concat!(include_str!($file), "\0"));
        // Its path in the repository, for tracebacks.
        const FILE: &::std::ffi::CStr = c_str(concat!("wsgi-core/src/python/", $file, "\0"));
        (CODE, FILE)
    }};
}

mod environ;
mod errors;
mod file_wrapper;
mod info;
mod input;
mod loader;
mod logging;
pub(crate) mod preload;
mod stacks;
mod start_response;
mod thread;
mod timeout;
mod venv;

use pyo3::prelude::*;

pub use info::{PythonInfo, python_info};
pub(crate) use loader::load_app;
pub(crate) use stacks::{log_busy_threads, of_request as stack_of_request};
pub(crate) use thread::spawn_threads;
pub(crate) use timeout::interrupt;
pub use venv::activate_venv;

/// Starts the interpreter as `venv`'s own `python` (unless it is running already) and
/// activates `venv`; `origin` says where its path came from, for messages.
pub(crate) fn start(
    venv: Option<&std::path::Path>,
    origin: &str,
) -> Result<PythonInfo, crate::error::Error> {
    ensure_initialized_in(venv);
    if let Some(venv) = venv {
        Python::attach(|py| venv::activate(py, venv, origin))?;
    }
    Ok(python_info())
}

/// Initialises CPython once per process. Signal handlers are left to the host, which
/// owns SIGINT/SIGTERM for graceful shutdown.
pub(crate) fn ensure_initialized() {
    ensure_initialized_in(None);
}

/// Initialises CPython once per process, as the `python` of the virtualenv `venv` if this
/// call is the one that starts it.
pub(crate) fn ensure_initialized_in(venv: Option<&std::path::Path>) {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        // SAFETY: `Py_IsInitialized` may be called at any time.
        if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
            info::set_program_name(venv);
        }
        Python::initialize();
        Python::attach(|py| {
            if let Err(e) = logging::install(py) {
                tracing::warn!(target: "wsgi_core", "Python logging stays on stderr: {e}");
            }
            // Before any application is imported, so that it can import the module.
            if let Err(e) = timeout::install(py) {
                tracing::warn!(target: "wsgi_core", "cannot register the wsgi_core module: {e}");
            }
        });
    });
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

/// `err` as plain Rust data, with its full traceback.
pub(crate) fn exception(py: Python<'_>, err: &PyErr) -> crate::error::PythonException {
    let value = err.value(py);
    crate::error::PythonException {
        type_name: value
            .get_type()
            .fully_qualified_name()
            .map(|name| name.to_string())
            .unwrap_or_else(|_| "Exception".into()),
        message: value
            .str()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| err.to_string()),
        traceback: traceback_text(py, err),
    }
}

/// What the engine may be doing when the interpreter fails: [`Error::Python`]'s `action`.
///
/// [`Error::Python`]: crate::Error::Python
pub(crate) mod action {
    pub(crate) const BASE_DIR_ON_SYS_PATH: &str = "putting the base directory on sys.path";
    pub(crate) const APP_DIR_ON_SYS_PATH: &str = "putting the application's directory on sys.path";
    pub(crate) const VERSION_INFO: &str = "reading sys.version_info";
    pub(crate) const FREEZE: &str = "freezing the loaded objects (gc.collect, gc.freeze)";
    pub(crate) const LIST_THREADS: &str = "listing the Python threads (threading.enumerate)";
    /// Every action above: a worker process's error names its action as text, and the host
    /// finds it here to return the same `Error::Python` (one missing from the list keeps only
    /// its message).
    pub(crate) const ALL: [&str; 5] = [
        BASE_DIR_ON_SYS_PATH,
        APP_DIR_ON_SYS_PATH,
        VERSION_INFO,
        FREEZE,
        LIST_THREADS,
    ];
}

/// An interpreter failure while the engine was doing `action`, one of [`action`]'s.
pub(crate) fn interpreter_error(
    py: Python<'_>,
    action: &'static str,
    err: &PyErr,
) -> crate::error::Error {
    crate::error::Error::Python {
        action,
        source: exception(py, err),
    }
}

/// The calling thread's Python thread id (`threading.get_ident()`).
pub(crate) fn thread_ident(py: Python<'_>) -> PyResult<u64> {
    py.import("threading")?.call_method0("get_ident")?.extract()
}

/// Releases the GIL around `f` (a wait), and counts the time it then takes to get the GIL
/// back, which is time this thread was ready to run Python but could not.
pub(crate) fn detached<T, F>(py: Python<'_>, f: F) -> T
where
    F: Send + FnOnce() -> T,
    T: Send,
{
    let (value, ready) = py.detach(|| (f(), std::time::Instant::now()));
    let waited = u64::try_from(ready.elapsed().as_nanos()).unwrap_or(u64::MAX);
    crate::metrics::GIL_WAIT_NANOS.fetch_add(waited, std::sync::atomic::Ordering::Relaxed);
    value
}

/// Runs the application's `atexit` handlers, the first thing interpreter finalisation does:
/// a worker process calls this when it leaves after its last request. (The process then
/// exits without the rest of finalisation, which could wait on threads the application
/// started.) An exception in a handler is printed by `atexit` itself, as at a normal exit.
pub(crate) fn run_atexit() {
    ensure_initialized();
    Python::attach(|py| {
        if let Ok(atexit) = py.import("atexit")
            && let Err(e) = atexit.call_method0("_run_exitfuncs")
        {
            tracing::warn!(target: "wsgi_core::app", "running the atexit handlers failed: {e}");
        }
    });
}
