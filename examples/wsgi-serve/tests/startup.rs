//! `wsgi-serve` end to end: the ways of naming an application, and the start-up errors a user can
//! act on, each with exit status 1 and a message saying what is wrong, the same whether
//! Python runs in `wsgi-serve`'s process or in a worker process.

mod common;

use common::{MISSING_IMPORT_REPORT, fixtures, python, serve_command};
use test_support::serve::{assert_fails_with, fail, start};
use test_support::temp::{TempDir, temp_dir};

#[test]
fn a_file_serves_its_application() {
    let mut command = serve_command();
    command.arg("hello.py");
    let server = start(command);
    assert_eq!(server.get("/"), (200, "hello from hello.py\n".into()));
}

#[test]
fn a_directory_serves_its_passenger_wsgi() {
    let mut command = serve_command();
    command.arg("passenger_site");
    let server = start(command);
    assert_eq!(
        server.get("/"),
        (200, "passenger application in passenger_site\n".into())
    );
}

#[test]
fn a_module_and_callable_are_imported_from_the_chdir_directory() {
    let mut command = serve_command();
    command
        .current_dir(std::env::temp_dir())
        .arg("--chdir")
        .arg(fixtures())
        .arg("hello:application");
    let server = start(command);
    assert_eq!(server.get("/"), (200, "hello from hello.py\n".into()));
}

#[test]
fn the_chdir_directory_is_on_sys_path_besides_the_apps_own() {
    let mut command = serve_command();
    command.args(["--chdir", "chdir_site", "web/app.py"]);
    let server = start(command);
    assert_eq!(
        server.get("/"),
        (200, "settings imported from the --chdir directory\n".into())
    );
}

#[test]
fn a_factory_is_called_without_arguments() {
    let mut command = serve_command();
    command.arg("factory_app:create_app()");
    let server = start(command);
    assert_eq!(
        server.get("/"),
        (200, "env='default' debug=True extra=[]\n".into())
    );
}

#[test]
fn a_factory_is_called_with_literal_arguments() {
    let mut command = serve_command();
    command.arg("factory_app.py:create_app('prod', debug=False, hosts=['a:1', 'b'], n=-2)");
    let server = start(command);
    assert_eq!(
        server.get("/"),
        (
            200,
            "env='prod' debug=False extra=[('hosts', ['a:1', 'b']), ('n', -2)]\n".into()
        )
    );
}

/// Where Python runs, as `--processes` says: in `wsgi-serve`'s own process, or in one worker.
const MODES: [&str; 2] = ["0", "1"];

/// Runs `wsgi-serve` with `args` once in each of the [`MODES`], and checks that each run fails as
/// [`assert_fails_with`] requires, mentioning `words`, with the same report in both: the
/// `error:` line and all after it, the `hint:` line included. Returns the in-process run's
/// stderr.
fn assert_fails_alike(args: &[&str], words: &[&str]) -> String {
    let runs: Vec<String> = MODES
        .iter()
        .map(|processes| {
            let mut command = serve_command();
            command.args(["--processes", processes]).args(args);
            assert_fails_with(command, words)
        })
        .collect();
    let report = |stderr: &str| {
        let lines = stderr.lines().skip_while(|l| !l.starts_with("error: "));
        lines.collect::<Vec<_>>().join("\n")
    };
    assert_eq!(
        report(&runs[1]),
        report(&runs[0]),
        "serve {args:?} should report the same error with a worker process as without; \
         stderr with one:\n{}",
        runs[1]
    );
    runs.into_iter().next().expect("one run per mode")
}

#[test]
fn a_factory_with_code_in_its_arguments_is_refused() {
    assert_fails_alike(
        &["factory_app:create_app(__import__('os').getcwd())"],
        &["invalid application", "literals"],
    );
}

#[test]
fn a_factory_that_raises_shows_its_traceback() {
    assert_fails_alike(
        &["factory_app:failing_factory()"],
        &[
            "failing_factory()",
            "raised",
            "Traceback",
            "missing setting WSGI_FIXTURE_SECRET",
        ],
    );
}

#[test]
fn a_factory_that_returns_nothing_is_named() {
    assert_fails_alike(
        &["factory_app:forgetful_factory()"],
        &["forgetful_factory()", "returned a NoneType", "return app"],
    );
}

#[test]
fn a_missing_file_is_named_with_the_directory_searched() {
    let stderr = assert_fails_alike(
        &["no_such_app.py"],
        &["no_such_app.py", "not found", "hint: "],
    );
    assert!(
        stderr.contains(fixtures().to_str().unwrap()),
        "the working directory should be named:\n{stderr}"
    );
    // The library's message knows no flags; serve adds the one that helps.
    assert!(
        stderr.contains("--chdir DIR"),
        "the flag should be named:\n{stderr}"
    );
}

#[test]
fn a_directory_without_passenger_wsgi_says_what_to_name() {
    assert_fails_alike(
        &["chdir_site"],
        &["chdir_site", "passenger_wsgi.py", "module:callable"],
    );
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    assert_fails_alike(
        &["bad_syntax.py"],
        &["SyntaxError", "bad_syntax.py", "line 4", "def application"],
    );
}

#[test]
fn an_import_error_shows_the_traceback_and_sys_path() {
    let mut words = MISSING_IMPORT_REPORT.to_vec();
    // `wsgi-serve` knows the error, from a worker process too, and adds the flag that may fix it.
    words.extend(["hint: ", "--venv"]);
    let stderr = assert_fails_alike(&["missing_import.py"], &words);
    // The application's own directory was searched first.
    let first_entry = stderr
        .lines()
        .skip_while(|l| !l.contains("sys.path searched"))
        .nth(1)
        .unwrap_or_default();
    assert_eq!(first_entry.trim(), fixtures().to_str().unwrap(), "{stderr}");
}

#[test]
fn a_module_not_on_sys_path_suggests_chdir() {
    assert_fails_alike(
        &["wsgi_startup_no_such_module:application"],
        &[
            "could not import",
            "wsgi_startup_no_such_module",
            "hint: ",
            "--chdir",
            "sys.path searched",
        ],
    );
}

#[test]
fn a_missing_attribute_lists_the_callables() {
    assert_fails_alike(
        &["hello.py:aplication"],
        &["has no attribute", "aplication", "application", "helper"],
    );
}

#[test]
fn an_attribute_that_is_not_callable_is_named_with_its_type() {
    assert_fails_alike(
        &["hello.py:CONFIG"],
        &["CONFIG", "is a dict", "not a callable"],
    );
}

#[test]
fn a_port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().unwrap().to_string();
    let mut command = serve_command();
    command.args(["--bind", &addr, "hello.py"]);
    assert_fails_with(command, &[&addr, "already in use", "--bind"]);
}

/// The metrics port is bound with the application's, before the (slow) import, and the
/// message names the option to change.
#[test]
fn a_taken_metrics_port_is_reported_before_the_app_loads() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().unwrap().to_string();
    let mut command = serve_command();
    command.args(["--metrics-bind", &addr, "hello.py"]);
    let stderr = assert_fails_with(command, &[&addr, "already in use", "--metrics-bind"]);
    assert!(!stderr.contains("with --bind"), "{stderr}");
    assert!(!stderr.contains("embedding Python"), "{stderr}");
}

#[test]
fn an_unusable_spool_directory_is_named() {
    assert_fails_alike(
        &["--spool-dir", "/nonexistent/wsgi-spool-dir", "hello.py"],
        &["/nonexistent/wsgi-spool-dir", "--spool-dir"],
    );
}

#[test]
fn a_missing_chdir_directory_is_named() {
    assert_fails_alike(
        &["--chdir", "/nonexistent/wsgi-startup-dir", "hello.py"],
        &["/nonexistent/wsgi-startup-dir", "--chdir"],
    );
}

/// Worker processes are `wsgi-serve`'s default, so the options that need them are refused only
/// with `--processes 0`, and the hint names that flag rather than the option itself.
#[test]
fn options_for_worker_processes_are_refused_in_process_naming_the_flag() {
    for option in [&["--preload"][..], &["--post-fork", "hooks:after_fork"]] {
        let mut command = serve_command();
        command
            .args(["--processes", "0"])
            .args(option)
            .arg("hello.py");
        let stderr = assert_fails_with(command, &[option[0], "leave out --processes 0"]);
        assert!(stderr.contains("\nhint: "), "{stderr}");
    }
}

/// A copy of `hello.py` in a temporary directory with a `.python-version` naming `version`.
fn app_with_python_version(version: &str) -> TempDir {
    let dir = temp_dir("python-version");
    std::fs::copy(fixtures().join("hello.py"), dir.path().join("hello.py")).unwrap();
    std::fs::write(dir.path().join(".python-version"), format!("{version}\n")).unwrap();
    dir
}

/// A `major.minor` other than the embedded Python's.
fn another_python_version() -> String {
    let (major, minor) = python().major_minor.split_once('.').unwrap();
    format!("{major}.{}.0", minor.parse::<u32>().unwrap() + 1)
}

#[test]
fn a_python_version_file_for_another_python_warns() {
    let other = another_python_version();
    let dir = app_with_python_version(&other);
    let mut command = serve_command();
    command.arg(dir.path().join("hello.py"));
    let server = start(command);
    assert_eq!(server.get("/").0, 200);
    let log = server.stderr_with("asks for Python");
    assert!(log.contains("asks for Python"), "{log}");
    assert!(log.contains(&other), "{log}");
    assert!(log.contains(&python().major_minor), "{log}");
}

#[test]
fn a_python_version_file_for_another_python_is_refused_when_strict() {
    let other = another_python_version();
    let dir = app_with_python_version(&other);
    let app = dir.path().join("hello.py");
    assert_fails_alike(
        &["--strict-python-version", app.to_str().unwrap()],
        &[
            ".python-version",
            &other,
            &python().major_minor,
            "PYO3_PYTHON=",
            "hint: leave out --strict-python-version",
        ],
    );
}

#[test]
fn a_python_version_file_for_this_python_is_quiet() {
    let dir = app_with_python_version(&python().major_minor);
    let mut command = serve_command();
    command
        .arg("--strict-python-version")
        .arg(dir.path().join("hello.py"));
    let server = start(command);
    assert_eq!(server.get("/").0, 200);
    assert!(!server.stderr().contains("asks for Python"));
}

#[test]
fn version_names_the_embedded_python() {
    let facts = python();
    assert!(facts.text.starts_with("wsgi-serve "), "{}", facts.text);
    assert!(facts.text.contains("library:"), "{}", facts.text);
    assert!(facts.text.contains("virtualenv: none"), "{}", facts.text);
    // The program reported is really the embedded Python.
    let output = std::process::Command::new(&facts.program)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("run the reported Python");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        facts.major_minor
    );
}

#[test]
fn a_bad_value_is_a_usage_error_before_the_port_is_bound() {
    // Were the port bound first, this would fail with status 1 and "already in use".
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().unwrap().to_string();
    for (option, value) in [
        ("--timeout", "0"),
        ("--grace", "soon"),
        ("--threads", "0"),
        ("--buffer-body", "64KB"),
        ("--trusted-proxy", "10.0.0.0/40"),
        ("--metrics-bind", "localhost"),
        ("--log-level", "wsgi_core=loud"),
    ] {
        let mut command = serve_command();
        command.args(["--bind", &addr, option, value, "hello.py"]);
        let (status, stderr) = fail(command);
        assert_eq!(status.code(), Some(2), "{option} {value}: {stderr}");
        assert!(stderr.contains(option), "{option} {value}: {stderr}");
        assert!(!stderr.contains("already in use"), "{stderr}");
        assert!(!stderr.contains("embedding Python"), "{stderr}");
    }
}

/// Runs `wsgi-serve` with `args` and a stdout whose reader has already gone, as in
/// `wsgi-serve --version | head -1` when `head` exits first.
#[cfg(unix)]
fn run_with_closed_stdout(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    serve_command()
        .args(args)
        .stdout(writer)
        .output()
        .expect("run serve")
}

#[cfg(unix)]
#[test]
fn version_and_help_on_a_closed_stdout_exit_quietly() {
    for args in [&["--version"][..], &["--help"], &["-h"]] {
        let output = run_with_closed_stdout(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
