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
    #[error(
        "module {module:?} has no attribute {callable:?}; name the WSGI callable with `{module}:NAME`"
    )]
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
    /// The virtualenv to activate is missing or broken.
    #[error("cannot use the virtualenv {path}: {reason}")]
    Venv {
        /// The virtualenv's directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The virtualenv was made for another Python than the one this binary embeds.
    #[error(
        "the virtualenv {path} was made for Python {venv}, but this binary embeds Python {running}; \
         recreate the virtualenv with python{running}, or rebuild against its interpreter with \
         `PYO3_PYTHON=/path/to/python{venv} cargo build`"
    )]
    VenvVersion {
        /// The virtualenv's directory.
        path: PathBuf,
        /// The `major.minor` in its `pyvenv.cfg`.
        venv: String,
        /// The `major.minor` of the embedded interpreter.
        running: String,
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
