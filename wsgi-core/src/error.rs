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
        "invalid application {spec:?}: {reason}; expected a directory holding passenger_wsgi.py, \
         `path/to/file.py`, `path/to/file.py:callable`, `package.module:callable` or a factory \
         call such as `package.module:create_app('prod', debug=False)`"
    )]
    InvalidAppSpec {
        /// What the user passed.
        spec: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The application file does not exist.
    #[error(
        "application file {path} not found (looked for it from the working directory {cwd}); \
         check the path, or pass --chdir DIR to resolve it from another directory"
    )]
    AppFileNotFound {
        /// The file that was looked for.
        path: PathBuf,
        /// The working directory the path was resolved against.
        cwd: PathBuf,
    },
    /// The application was given as a directory that has no `passenger_wsgi.py`.
    #[error(
        "{dir} is a directory without a passenger_wsgi.py; add one that defines `application`, \
         or name the application: `{dir}/FILE.py[:callable]` or `package.module:callable`"
    )]
    NoPassengerFile {
        /// The directory given as the application.
        dir: PathBuf,
    },
    /// The application's code, or a module it imports, is not valid Python.
    #[error("SyntaxError in {file}, line {line}: {message}{context}")]
    AppSyntax {
        /// The file with the error (which may be a module the application imports).
        file: String,
        /// The 1-based line of the error.
        line: u32,
        /// Python's description of the error.
        message: String,
        /// The offending line with a caret under the error, on lines of their own (may be empty).
        context: String,
    },
    /// Importing the application's module raised an exception.
    #[error("could not import {module}:\n{traceback}\n{hint}sys.path searched:\n{sys_path}")]
    AppImport {
        /// The module or file that was imported.
        module: String,
        /// The interpreter's `sys.path` at the time, one entry per line, to show where it looked.
        sys_path: String,
        /// The Python traceback.
        traceback: String,
        /// What to do about it, when the error suggests something (ends with a newline, or empty).
        hint: String,
    },
    /// The module has no attribute of the requested name.
    #[error(
        "{module} has no attribute {callable:?}{candidates}; name the WSGI callable with `APP:NAME`"
    )]
    AppAttributeMissing {
        /// The module that was imported.
        module: String,
        /// The attribute that was looked for.
        callable: String,
        /// The module's public callables, as `" (it has: a, b)"`, or empty.
        candidates: String,
    },
    /// The attribute exists but cannot be called.
    #[error(
        "{module}:{callable} is a {type_name}, not a callable WSGI application; name the \
         application object (e.g. Flask's `app`, Django's `application`) or its factory, \
         `create_app()`"
    )]
    AppNotCallable {
        /// The module that was imported.
        module: String,
        /// The attribute that was looked up.
        callable: String,
        /// The Python type of what was found instead.
        type_name: String,
    },
    /// The application factory raised an exception.
    #[error("calling the application factory {module}:{call} raised an exception:\n{traceback}")]
    AppFactory {
        /// The module that holds the factory.
        module: String,
        /// The call as written, e.g. `create_app('prod')`.
        call: String,
        /// The Python traceback.
        traceback: String,
    },
    /// The application factory returned something that cannot serve requests.
    #[error(
        "the application factory {module}:{call} returned a {type_name}, not a callable WSGI \
         application; does it end with `return app`?"
    )]
    AppFactoryResult {
        /// The module that holds the factory.
        module: String,
        /// The call as written, e.g. `create_app('prod')`.
        call: String,
        /// The Python type of what it returned.
        type_name: String,
    },
    /// The working directory given with `chdir` could not be entered.
    #[error("cannot change directory to {path}: {source}; check the --chdir directory")]
    Chdir {
        /// The directory.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// No temporary file can be made in the directory for large request bodies.
    #[error(
        "cannot make temporary files for request bodies in {path}: {source}; choose a \
         writable directory with --spool-dir (EngineBuilder::spool_dir)"
    )]
    SpoolDir {
        /// The directory.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The virtualenv to activate is missing or broken.
    #[error("cannot use the virtualenv {path}{origin}: {reason}")]
    Venv {
        /// The virtualenv's directory.
        path: PathBuf,
        /// Where the path came from, e.g. `" (from $VIRTUAL_ENV)"`, or empty.
        origin: String,
        /// What is wrong with it and how to fix it.
        reason: String,
    },
    /// The virtualenv was made for another Python than the one this binary embeds.
    #[error(
        "the virtualenv {path} was made for Python {venv}, but this binary embeds Python \
         {running}; {remedy}"
    )]
    VenvVersion {
        /// The virtualenv's directory.
        path: PathBuf,
        /// The `major.minor` in its `pyvenv.cfg`.
        venv: String,
        /// The `major.minor` of the embedded interpreter.
        running: String,
        /// The commands that fix it: recreating the venv, or rebuilding for its Python.
        remedy: String,
    },
    /// A `.python-version` file (pyenv's) asks for another Python than the embedded one, and
    /// [`EngineBuilder::strict_python_version`](crate::EngineBuilder::strict_python_version)
    /// is on.
    #[error("{file} asks for Python {wanted}, but this binary embeds Python {running}; {remedy}")]
    PythonVersionFile {
        /// The `.python-version` file.
        file: PathBuf,
        /// The versions it names.
        wanted: String,
        /// The embedded interpreter's version and program.
        running: String,
        /// The command that rebuilds against the Python the file asks for.
        remedy: String,
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
    /// Worker processes were asked for on a platform that does not have them yet.
    #[error(
        "worker processes are supported on Linux only; leave the number of processes unset \
         to run Python in this process"
    )]
    ProcessesUnsupported,
    /// This process was started as a worker process, yet is about to start workers of its
    /// own: its `main` runs again instead of handing over to the worker.
    #[error(
        "this process is a wsgi-core worker process (WSGI_CORE_WORKER is set) and must not start \
         workers of its own: this binary's main() does not hand worker processes over to \
         wsgi-core; add `wsgi_core::run_if_worker();` as the first line of main()"
    )]
    NestedWorker,
    /// A worker process could not be started.
    #[error("could not start a worker process: {0}")]
    WorkerSpawn(#[source] std::io::Error),
    /// A worker process exited before it said whether the application loaded.
    #[error(
        "worker process {pid} exited ({status}) before reporting; if this binary's main() does \
         not call wsgi_core::run_if_worker() first, add it"
    )]
    WorkerExitedEarly {
        /// The worker's process id.
        pid: u32,
        /// How it ended, e.g. `exit status 1` or `killed by signal 9 (SIGKILL)`.
        status: String,
    },
    /// A worker process died while loading the application, after it had begun to report.
    #[error("worker process {pid} exited ({status}) while loading the application")]
    WorkerCrashed {
        /// The worker's process id.
        pid: u32,
        /// How it ended, e.g. `killed by signal 11 (SIGSEGV)`.
        status: String,
    },
    /// A worker process could not load the application; the message is the error the
    /// worker met, worded as when Python runs in this process.
    #[error("{0}")]
    WorkerStartup(String),
    /// The control channel to a worker process broke or carried something unreadable.
    #[error("lost the channel to a worker process: {0}")]
    WorkerChannel(#[source] std::io::Error),
}
