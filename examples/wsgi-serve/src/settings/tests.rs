//! The layering of the sources, over a made-up environment and temporary files.

use std::ffi::OsString;
use std::path::Path;

use clap::CommandFactory;

use super::*;
use crate::cli::Args;

/// Resolves `argv` (without the program name) over `vars`: the settings, or the error's
/// exit code and text.
fn resolve_with(argv: &[&str], vars: &[(&str, &str)]) -> Result<Vec<Resolved>, (i32, String)> {
    let argv = std::iter::once("serve")
        .chain(argv.iter().copied())
        .map(OsString::from)
        .collect();
    let vars = vars.iter().map(|(k, v)| (k.into(), v.into()));
    resolve(Args::command(), argv, vars)
        .map(|(_, resolved)| resolved)
        .map_err(|e| (e.exit_code(), e.to_string()))
}

/// The value (joined with commas) and origin of `key`.
fn setting<'a>(resolved: &'a [Resolved], key: &str) -> (String, &'a Origin) {
    let r = resolved
        .iter()
        .find(|r| r.setting.key == key)
        .unwrap_or_else(|| panic!("no setting {key}"));
    (r.values.join(","), &r.origin)
}

/// A TOML file holding `text`, in a directory that lives as long as the guard.
fn config(text: &str) -> (test_support::temp::TempDir, String) {
    let dir = test_support::temp::temp_dir("settings");
    let path = dir.path().join("serve.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

#[test]
fn the_environment_wins_over_the_file_and_the_file_over_the_defaults() {
    let (_dir, path) = config("timeout = \"5s\"\nthreads = 3\n");
    let resolved = resolve_with(
        &["--config", &path, "app.py"],
        &[("WSGI_SERVE_TIMEOUT", "7s")],
    )
    .unwrap();
    assert_eq!(
        setting(&resolved, "timeout"),
        (
            "7s".into(),
            &Origin::Environment("WSGI_SERVE_TIMEOUT".into())
        )
    );
    assert_eq!(
        setting(&resolved, "threads"),
        ("3".into(), &Origin::File(path.into()))
    );
    assert_eq!(
        setting(&resolved, "grace"),
        ("30s".into(), &Origin::Default)
    );
}

#[test]
fn the_command_line_wins_over_the_environment() {
    let resolved = resolve_with(
        &["--timeout", "9s", "--bind", "127.0.0.1:1", "app.py"],
        &[
            ("WSGI_SERVE_TIMEOUT", "7s"),
            ("WSGI_SERVE_BIND", "127.0.0.1:2,127.0.0.1:3"),
            ("WSGI_SERVE_APP", "other.py"),
        ],
    )
    .unwrap();
    assert_eq!(
        setting(&resolved, "timeout"),
        ("9s".into(), &Origin::CommandLine)
    );
    // A list is replaced whole, not added to.
    assert_eq!(
        setting(&resolved, "bind"),
        ("127.0.0.1:1".into(), &Origin::CommandLine)
    );
    assert_eq!(
        setting(&resolved, "app"),
        ("app.py".into(), &Origin::CommandLine)
    );
}

#[test]
fn lists_flags_and_app_come_from_the_environment_and_the_file() {
    let (_dir, path) = config(
        "app = \"site.py\"\nbind = [\"127.0.0.1:4\", \"unix:/tmp/a.sock\"]\n\
         stream_chunked = true\ngrace = 1.5\n",
    );
    let resolved = resolve_with(
        &[],
        &[
            ("WSGI_SERVE_CONFIG", &path),
            ("WSGI_SERVE_TRUSTED_PROXY", "10.0.0.0/8, ::1"),
            ("WSGI_SERVE_NO_RESTART_FILE", "yes"),
            // Empty: unset, as templates leave them.
            ("WSGI_SERVE_MAX_BODY", ""),
        ],
    )
    .unwrap();
    assert_eq!(setting(&resolved, "app").0, "site.py");
    assert_eq!(setting(&resolved, "bind").0, "127.0.0.1:4,unix:/tmp/a.sock");
    assert_eq!(setting(&resolved, "stream-chunked").0, "true");
    assert_eq!(setting(&resolved, "grace").0, "1.5");
    assert_eq!(setting(&resolved, "trusted-proxy").0, "10.0.0.0/8,::1");
    assert_eq!(setting(&resolved, "no-restart-file").0, "true");
    assert_eq!(
        setting(&resolved, "max-body"),
        (String::new(), &Origin::Default)
    );
}

#[test]
fn a_bad_value_is_a_usage_error_naming_its_variable_or_file_and_key() {
    let (code, text) = resolve_with(&["app.py"], &[("WSGI_SERVE_TIMEOUT", "abc")]).unwrap_err();
    assert_eq!(code, 2);
    assert!(text.contains("WSGI_SERVE_TIMEOUT=abc: "), "{text}");

    let (_dir, path) = config("timeout = \"abc\"\n");
    let (code, text) = resolve_with(&["--config", &path, "app.py"], &[]).unwrap_err();
    assert_eq!(code, 2);
    assert!(text.contains(&format!("{path}: timeout: ")), "{text}");

    // Even where a higher source overrides it: a bad setting is a mistake to fix.
    let (code, text) = resolve_with(
        &["--threads", "2", "app.py"],
        &[("WSGI_SERVE_THREADS", "0")],
    )
    .unwrap_err();
    assert_eq!(code, 2);
    assert!(text.contains("WSGI_SERVE_THREADS=0: "), "{text}");
}

#[test]
fn typos_and_wrong_kinds_of_value_are_errors_too() {
    for (vars, file, expected) in [
        (
            &[("WSGI_SERVE_TREADS", "2")][..],
            "",
            "WSGI_SERVE_TREADS: no such setting",
        ),
        (
            &[("WSGI_SERVE_STREAM_CHUNKED", "maybe")],
            "",
            "WSGI_SERVE_STREAM_CHUNKED=maybe: expected true or false",
        ),
        (&[], "treads = 2", "treads: no such setting"),
        (
            &[],
            "threads = [1, 2]",
            "threads: takes one value, not a list",
        ),
        (
            &[],
            "stream-chunked = \"yes\"",
            "stream-chunked: expected true or false",
        ),
        (
            &[],
            "unix-mode = 0o660",
            "unix-mode: give the octal mode as a string",
        ),
        (&[], "threads = ", "not valid TOML"),
    ] {
        let (_dir, path) = config(file);
        let (code, text) = resolve_with(&["--config", &path, "app.py"], vars).unwrap_err();
        assert_eq!(code, 2, "{text}");
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    let (code, text) =
        resolve_with(&["--config", "/nonexistent/serve.toml", "app.py"], &[]).unwrap_err();
    assert_eq!(code, 2);
    assert!(
        text.contains("cannot read the --config file /nonexistent/serve.toml"),
        "{text}"
    );
}

#[test]
fn settings_that_do_not_go_together_say_where_they_came_from() {
    let (_dir, path) = config("max-requests-jitter = 10\n");
    let (code, text) = resolve_with(&["--config", &path, "app.py"], &[]).unwrap_err();
    assert_eq!(code, 2);
    assert!(text.contains("--max-requests"), "{text}");
    assert!(
        text.contains(&format!("max-requests-jitter ({path})")),
        "{text}"
    );
}

#[test]
fn print_config_needs_no_app_and_reads_back_as_a_config_file() {
    let resolved = resolve_with(
        &[
            "--print-config",
            "--bind",
            "unix:/tmp/a \"b\".sock",
            "--stream-chunked",
        ],
        &[("WSGI_SERVE_TIMEOUT", "7s")],
    )
    .unwrap();
    let mut out = Vec::new();
    report::write(&resolved, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("# app (not set)"), "{text}");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_owned()
    };
    assert!(line("timeout").ends_with("# WSGI_SERVE_TIMEOUT"), "{text}");
    assert!(line("stream-chunked").ends_with("# command line"), "{text}");
    let grace = text.lines().find(|l| l.starts_with("# grace = ")).unwrap();
    assert!(grace.contains("\"30s\""), "{text}");
    assert!(grace.ends_with("# default"), "{text}");

    // Fed back as a file, it gives the same values.
    let (_dir, path) = config(&text);
    let again = resolve_with(&["--config", &path, "app.py"], &[]).unwrap();
    for key in ["timeout", "bind", "stream-chunked"] {
        assert_eq!(setting(&again, key).0, setting(&resolved, key).0, "{key}");
        assert_eq!(
            setting(&again, key).1,
            &Origin::File(Path::new(&path).into()),
            "{key}"
        );
    }
    for key in ["grace", "threads"] {
        assert_eq!(setting(&again, key), setting(&resolved, key), "{key}");
    }
}

#[test]
fn preload_and_its_hook_come_from_the_environment_and_the_file() {
    let (_dir, path) = config("processes = 2\npost-fork = \"hooks:after_fork\"\n");
    let resolved = resolve_with(
        &["app.py"],
        &[("WSGI_SERVE_CONFIG", &path), ("WSGI_SERVE_PRELOAD", "true")],
    )
    .unwrap();
    assert_eq!(
        setting(&resolved, "preload"),
        (
            "true".into(),
            &Origin::Environment("WSGI_SERVE_PRELOAD".into())
        )
    );
    assert_eq!(setting(&resolved, "post-fork").0, "hooks:after_fork");
}

#[test]
fn an_elastic_pool_and_its_idle_time_come_from_the_environment_and_the_file() {
    let (_dir, path) = config("processes = \"1..8\"\npool-idle-time = \"2m\"\n");
    let resolved = resolve_with(&["--config", &path, "app.py"], &[]).unwrap();
    assert_eq!(
        setting(&resolved, "processes"),
        ("1..8".into(), &Origin::File(path.clone().into()))
    );
    assert_eq!(setting(&resolved, "pool-idle-time").0, "2m");
    let resolved = resolve_with(
        &["--config", &path, "app.py"],
        &[
            ("WSGI_SERVE_PROCESSES", "2..4"),
            ("WSGI_SERVE_POOL_IDLE_TIME", "30s"),
        ],
    )
    .unwrap();
    assert_eq!(
        setting(&resolved, "processes"),
        (
            "2..4".into(),
            &Origin::Environment("WSGI_SERVE_PROCESSES".into())
        )
    );
    assert_eq!(setting(&resolved, "pool-idle-time").0, "30s");
    // A range the pool cannot have is refused with the variable that holds it.
    let (code, text) = resolve_with(&["app.py"], &[("WSGI_SERVE_PROCESSES", "4..2")]).unwrap_err();
    assert_eq!(code, 2);
    assert!(text.contains("WSGI_SERVE_PROCESSES=4..2"), "{text}");
    assert!(text.contains("below the minimum"), "{text}");
}
