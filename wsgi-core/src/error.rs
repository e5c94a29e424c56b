//! The one error type of this crate.

use std::path::PathBuf;

/// What went wrong while setting up an [`Engine`](crate::Engine).
///
/// Request-time failures never surface as this type: the engine turns them into HTTP
/// responses (500, 503, 413, 404) and log lines, so a host can always answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The application string could not be understood.
    #[error(
        "invalid application {spec:?}: {reason}; expected `path/to/file.py`, \
         `path/to/file.py:callable` or `package.module:callable`"
    )]
    InvalidAppSpec {
        /// What the user passed.
        spec: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The application file does not exist.
    #[error("application file {path} not found (looked for it from working directory {cwd})")]
    AppFileNotFound {
        /// The file that was looked for.
        path: PathBuf,
        /// The working directory the path was resolved against.
        cwd: PathBuf,
    },
    /// Importing the application's module raised an exception.
    #[error("could not import {module:?} (sys.path = {sys_path}):\n{traceback}")]
    AppImport {
        /// The module or file that was imported.
        module: String,
        /// The interpreter's `sys.path` at the time, to show where it looked.
        sys_path: String,
        /// The Python traceback.
        traceback: String,
    },
    /// The module has no attribute of the requested name.
    #[error("module {module:?} has no attribute {callable:?}; name the WSGI callable with `{module}:NAME`")]
    AppAttributeMissing {
        /// The module that was imported.
        module: String,
        /// The attribute that was looked for.
        callable: String,
    },
    /// The attribute exists but cannot be called.
    #[error("{module}:{callable} is a {type_name}, not a callable WSGI application")]
    AppNotCallable {
        /// The module that was imported.
        module: String,
        /// The attribute that was looked up.
        callable: String,
        /// The Python type of what was found instead.
        type_name: String,
    },
    /// The working directory given with `chdir` could not be entered.
    #[error("cannot change directory to {path}: {source}")]
    Chdir {
        /// The directory.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The Python interpreter failed in a way that is not the application's fault.
    #[error("Python interpreter error: {0}")]
    Python(String),
    /// A worker thread could not be started.
    #[error("could not start a Python worker thread: {0}")]
    Thread(#[source] std::io::Error),
}
