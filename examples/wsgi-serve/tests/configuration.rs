//! `wsgi-serve`'s settings from the environment (`WSGI_SERVE_*`) and a TOML file (`--config`),
//! under the command line's: servers started that way answer as their settings say, and
//! `--print-config` and the errors name where each setting came from.

mod common;

use std::path::Path;

use common::{apps, serve_app};
use test_support::serve::{fail, start};
use test_support::temp::temp_dir;

/// Writes `text` to `name` in `dir`.
fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// The file says `/file` for the mount and turns the health paths on, the environment says
/// `/env` for the mount: the server mounts the application at `/env` and answers `/-/readyz`.
/// Given `--mount /flag` too, it mounts it there. The `--bind` that `start` gives wins over
/// the file's, which names an address nothing could bind.
#[test]
fn a_server_takes_the_environment_over_its_file_and_the_command_line_over_both() {
    let dir = temp_dir("config");
    write(
        dir.path(),
        "serve.toml",
        "mount = \"/file\"\nhealth-path = \"/-\"\nbind = [\"192.0.2.1:1\"]\n",
    );
    let config = dir.path().join("serve.toml");
    let config = config.to_str().unwrap();

    let mut command = serve_app("axum", &["--config", config], "ops_app.py");
    command.env("WSGI_SERVE_MOUNT", "/env");
    let server = start(command);
    assert_eq!(server.get("/env/fast"), (200, "done /fast".into()));
    assert_eq!(server.get("/file/fast").0, 404);
    assert_eq!(server.get("/-/readyz"), (200, "ready\n".into()));

    let mut command = serve_app(
        "axum",
        &["--config", config, "--mount", "/flag"],
        "ops_app.py",
    );
    command.env("WSGI_SERVE_MOUNT", "/env");
    let server = start(command);
    assert_eq!(server.get("/flag/fast"), (200, "done /fast".into()));
    assert_eq!(server.get("/env/fast").0, 404);
}

/// APP and the configuration file itself may come from the environment too
/// (`WSGI_SERVE_APP`, `WSGI_SERVE_CONFIG`): a deployment can be all variables.
#[test]
fn the_application_and_the_file_can_be_named_in_the_environment() {
    let dir = temp_dir("config-env");
    write(dir.path(), "serve.toml", "health-path = \"/\"\n");
    let mut command = test_support::serve::command(env!("CARGO_BIN_EXE_wsgi-serve"), &apps());
    command
        .env("WSGI_SERVE_APP", "ops_app.py")
        .env("WSGI_SERVE_CONFIG", dir.path().join("serve.toml"));
    let server = start(command);
    assert_eq!(server.get("/fast"), (200, "done /fast".into()));
    assert_eq!(server.get("/readyz"), (200, "ready\n".into()));
}

/// `--print-config` prints each setting, its value and its source as TOML, and exits 0
/// without serving.
#[test]
fn print_config_shows_each_setting_and_where_it_came_from() {
    let dir = temp_dir("print-config");
    write(
        dir.path(),
        "serve.toml",
        "threads = 4\ntimeout = \"5s\"\nbind = [\"127.0.0.1:9001\", \"unix:/tmp/app.sock\"]\n",
    );
    let mut command = test_support::serve::command(env!("CARGO_BIN_EXE_wsgi-serve"), dir.path());
    command
        .args([
            "--config",
            "serve.toml",
            "--print-config",
            "--grace",
            "2s",
            "app.py",
        ])
        .env("WSGI_SERVE_TIMEOUT", "7s")
        .env("WSGI_SERVE_STREAM_CHUNKED", "true");
    let output = command.output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{text}");
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("app "), "app = \"app.py\" # command line");
    assert_eq!(line("grace "), "grace = \"2s\" # command line");
    assert_eq!(line("timeout "), "timeout = \"7s\" # WSGI_SERVE_TIMEOUT");
    assert_eq!(
        line("stream-chunked "),
        "stream-chunked = true # WSGI_SERVE_STREAM_CHUNKED"
    );
    assert_eq!(line("threads "), "threads = \"4\" # serve.toml");
    assert_eq!(
        line("bind "),
        "bind = [\"127.0.0.1:9001\", \"unix:/tmp/app.sock\"] # serve.toml"
    );
    assert_eq!(line("# server "), "# server = \"axum\" # default");
    assert_eq!(line("# max-body "), "# max-body (not set) # default");
}

/// A bad value exits 2 before anything starts, naming the variable or the file and key
/// that hold it.
#[test]
fn a_bad_setting_exits_2_naming_the_variable_or_the_file_that_holds_it() {
    let dir = temp_dir("bad-config");
    write(dir.path(), "serve.toml", "timeout = \"soon\"\n");
    let mut command = test_support::serve::command(env!("CARGO_BIN_EXE_wsgi-serve"), dir.path());
    command.args(["--config", "serve.toml", "app.py"]);
    let (status, stderr) = fail(command);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error: serve.toml: timeout: invalid value 'soon'"),
        "{stderr}"
    );

    let mut command = test_support::serve::command(env!("CARGO_BIN_EXE_wsgi-serve"), dir.path());
    command.arg("app.py").env("WSGI_SERVE_THREADS", "many");
    let (status, stderr) = fail(command);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error: WSGI_SERVE_THREADS=many: invalid value 'many'"),
        "{stderr}"
    );
}
