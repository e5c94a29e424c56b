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
    #[error("application file {path} not found (looked for it from the directory {base_dir})")]
    AppFileNotFound {
        /// The file that was looked for, as given.
        path: PathBuf,
        /// The directory the path was resolved against: the
        /// [base directory](crate::EngineBuilder::base_dir), or the working directory.
        base_dir: PathBuf,
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
    #[error(
        "could not import {module}:\n{}\n{}sys.path searched:\n{}",
        .exception.traceback,
        missing_module_text(.missing.as_ref(), .venv.as_deref()),
        indented_lines(.sys_path)
    )]
    AppImport {
        /// The module or file that was imported.
        module: String,
        /// The interpreter's `sys.path` at the time, to show where it looked.
        sys_path: Vec<String>,
        /// The module that was not found, when that is what went wrong.
        missing: Option<MissingModule>,
        /// The virtualenv in use, if any: where installed packages were looked for.
        venv: Option<PathBuf>,
        /// The exception, with the traceback of the application's frames (boxed, to keep
        /// `Result<_, Error>` small).
        #[source]
        exception: Box<PythonException>,
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
    #[error(
        "calling the application factory {module}:{call} raised an exception:\n{}",
        .exception.traceback
    )]
    AppFactory {
        /// The module that holds the factory.
        module: String,
        /// The call as written, e.g. `create_app('prod')`.
        call: String,
        /// The exception, with its traceback.
        #[source]
        exception: Box<PythonException>,
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
    /// The [base directory](crate::EngineBuilder::base_dir) is missing or not a directory.
    #[error("cannot resolve the application from the directory {path}: {source}")]
    BaseDir {
        /// The directory, as given.
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
    #[error("invalid configuration: {option} is {value}, but must be {expected}")]
    Config {
        /// The [`EngineBuilder`](crate::EngineBuilder) method that was given the value,
        /// e.g. `"threads"`.
        option: &'static str,
        /// The value it was given.
        value: String,
        /// What it must be, e.g. `"at least 1"`.
        expected: &'static str,
    },
    /// A [trusted proxy](crate::EngineBuilder::trusted_proxies) is neither an IP address, a
    /// CIDR range nor `unix`.
    #[error(
        "invalid trusted proxy {entry:?}: it is neither an IP address, a CIDR range nor `unix`"
    )]
    TrustedProxy {
        /// The entry as given.
        entry: String,
        /// Why it is not an IP address.
        source: std::net::AddrParseError,
    },
    /// The Python interpreter failed in a way that is not the application's fault.
    #[error("Python interpreter error while {action}: {source}")]
    Python {
        /// What the engine was doing, e.g. `"putting the application's directory on sys.path"`.
        action: &'static str,
        /// The exception Python raised.
        source: PythonException,
    },
    /// A worker thread could not be started.
    #[error("could not start a Python worker thread: {0}")]
    Thread(#[source] std::io::Error),
    /// [`Engine::restart`](crate::Engine::restart) was called on an engine whose Python runs
    /// in this process, which cannot be restarted.
    #[error(
        "restarting the application needs worker processes (`EngineBuilder::processes`); Python in this process cannot be restarted"
    )]
    RestartUnsupported,
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
    /// A worker process did not report whether it loaded the application within the start
    /// timeout ([`EngineBuilder::start_timeout`](crate::EngineBuilder::start_timeout)): an
    /// import that hangs (a database it waits for, a lock). The worker was killed.
    #[error("a worker process did not load the application within {secs} s; it was killed")]
    WorkerStartTimeout {
        /// The start timeout, in seconds.
        secs: f64,
    },
    /// A worker process could not start for a reason that has no variant of its own.
    ///
    /// A worker that cannot load the application reports the same variant as when Python
    /// runs in this process ([`Error::AppImport`], [`Error::AppFileNotFound`], ...).
    #[error("{0}")]
    WorkerStartup(String),
    /// The control channel to a worker process broke or carried something unreadable.
    #[error("lost the channel to a worker process: {0}")]
    WorkerChannel(#[source] std::io::Error),
    /// With [`preload`](crate::EngineBuilder::preload), the process that imported the
    /// application runs other threads: a worker forked from it would have none of them
    /// (`fork` copies only the calling thread), and could deadlock on a lock one of them
    /// held.
    #[error(
        "the application started {} other thread(s) while it was imported for preloading: {}; \
         a worker forked from that process would have none of them. Start them after the \
         fork, in a post-fork hook (EngineBuilder::post_fork), or leave preload off",
        .threads.len(),
        .threads.join(", ")
    )]
    PreloadThreads {
        /// The threads found, each as its name and kind, e.g. `"poller (Python)"`.
        threads: Vec<String>,
    },
    /// The [post-fork hook](crate::EngineBuilder::post_fork) could not be loaded, or
    /// raised an exception in a worker process.
    #[error("{}", post_fork_text(.hook, *.stage, .exception.as_deref()))]
    PostFork {
        /// The hook as given, `module:callable`.
        hook: String,
        /// Where it failed.
        stage: HookStage,
        /// The exception, with its traceback, when one was raised (boxed, to keep
        /// `Result<_, Error>` small).
        exception: Option<Box<PythonException>>,
    },
}

/// Where a [post-fork hook](crate::EngineBuilder::post_fork) failed: [`Error::PostFork`]'s
/// `stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookStage {
    /// It is not `module:callable`.
    Spec,
    /// Importing its module raised an exception.
    Import,
    /// Its module has no such attribute.
    Missing,
    /// The attribute cannot be called.
    NotCallable,
    /// Calling it raised an exception.
    Call,
}

/// [`Error::PostFork`]'s message.
fn post_fork_text(hook: &str, stage: HookStage, exception: Option<&PythonException>) -> String {
    let what = match stage {
        HookStage::Spec => "is not `module:callable`",
        HookStage::Import => "could not be imported",
        HookStage::Missing => "does not exist in its module",
        HookStage::NotCallable => "is not callable",
        HookStage::Call => "raised an exception",
    };
    match exception {
        Some(exception) => format!("the post-fork hook {hook} {what}:\n{}", exception.traceback),
        None => format!("the post-fork hook {hook} {what}"),
    }
}

/// A Python exception, as plain Rust data: what an [`Error`] keeps of the exception that
/// caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{type_name}: {message}")]
#[non_exhaustive]
pub struct PythonException {
    /// The exception's type, qualified by its module unless it is a builtin, e.g.
    /// `ModuleNotFoundError` or `django.core.exceptions.ImproperlyConfigured`.
    pub type_name: String,
    /// `str()` of the exception.
    pub message: String,
    /// The formatted traceback, as Python prints it (ending with the type and message line).
    pub traceback: String,
}

/// A module that importing the application looked for and did not find.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingModule {
    /// The application's own module (`package.module:callable`), or a package on its dotted
    /// path, is not on `sys.path`.
    App(String),
    /// A module the application imports is not installed in the Python that runs it.
    Dependency(String),
}

/// The line of an [`Error::AppImport`] message that says which module is missing, and where
/// it was looked for (ends with a newline, or is empty).
fn missing_module_text(missing: Option<&MissingModule>, venv: Option<&std::path::Path>) -> String {
    let installed_in = match venv {
        Some(venv) => format!("the virtualenv {}", venv.display()),
        None => "the base Python, as no virtualenv is active".to_owned(),
    };
    match missing {
        Some(MissingModule::App(name)) => {
            format!(
                "no module named {name:?} is on sys.path; installed packages come from \
                 {installed_in}\n"
            )
        }
        Some(MissingModule::Dependency(name)) => {
            format!("the application imports {name:?}, which is not installed in {installed_in}\n")
        }
        None => String::new(),
    }
}

/// `lines`, one per line, indented.
fn indented_lines(lines: &[String]) -> String {
    lines
        .iter()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
