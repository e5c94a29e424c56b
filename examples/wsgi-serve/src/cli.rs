//! The command line: what `wsgi-serve` accepts. clap parses and checks every value (see
//! [`crate::values`]), so a bad command line exits 2 before anything starts. The engine's
//! options are [`EngineOptions`], next to the code that hands them to the engine. Each
//! option may also come from the environment or a file: [`crate::settings`].

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use rustls::ServerConfig;

use crate::config::EngineOptions;
use crate::logging::DEFAULT_LOG_BUFFER;
use crate::settings::{self, Origin, Resolved};
use crate::tls::{self, CertChain, PrivateKey};
use crate::unix_socket::FileOptions;
use crate::values::{BindAddr, ListenAddr, LogFilter, Mode, Owner, Secs, at_least_one};

/// Where `wsgi-serve` listens unless told otherwise.
const DEFAULT_BIND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8000);

/// How long in-flight requests may run on after SIGTERM or Ctrl-C unless told otherwise.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// What `--help` says after the options: the other places settings come from, and the
/// signals.
const AFTER_HELP: &str = "\
Every option can also be set in the environment, as WSGI_SERVE_ and its name in capitals \
(WSGI_SERVE_MAX_BODY=10M; WSGI_SERVE_APP for APP; repeated options separated by commas, \
flags as true or false), or in the TOML file of --config (max-body = \"10M\"; lists for \
repeated options). The command line wins over the environment, the environment over the \
file, the file over the defaults; --print-config shows what was taken from where.

Signals: SIGTERM or SIGINT (Ctrl-C) stops accepting, lets in-flight requests finish for up \
to --grace and exits 0 (a second one cuts the wait short); SIGHUP replaces the worker \
processes one by one; SIGUSR1 logs every busy Python thread's request line, \
how long it has run and its Python stack (each worker logs its own). Workers ignore all \
four: send them to wsgi-serve.";

/// Serve a Python WSGI application.
#[derive(Parser, Debug)]
// `--version` is our own: it names the embedded Python, which clap's cannot.
#[command(name = "wsgi-serve", disable_version_flag = true, after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// Print the versions of this command and of the embedded Python, its files and the
    /// virtualenv, then exit.
    #[arg(short = 'V', long)]
    pub(crate) version: bool,

    /// Read settings from this TOML file (keys are the options' long names), below those of
    /// the environment and the command line [env: WSGI_SERVE_CONFIG].
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,

    /// Print the settings, what each is and where it came from (the command line, the
    /// environment, the --config file or the default), as TOML, then exit; a bad one is
    /// reported as when serving.
    #[arg(long)]
    pub(crate) print_config: bool,

    /// Address to listen on: `HOST:PORT`, or `unix:PATH` for a UNIX socket (a stale socket
    /// file is replaced; the file is removed at exit). Repeat to listen on several. Sockets
    /// passed by systemd (socket activation, `LISTEN_FDS`) replace it.
    #[arg(long, value_name = "ADDR", action = clap::ArgAction::Append,
          default_values_t = [BindAddr::Tcp(ListenAddr::from(DEFAULT_BIND))])]
    pub(crate) bind: Vec<BindAddr>,

    /// Mode of the socket files of `--bind unix:PATH`, in octal (`660`: the owner and its
    /// group may connect) [default: from the umask].
    #[arg(long, value_name = "MODE")]
    pub(crate) unix_mode: Option<Mode>,

    /// Owner of the socket files of `--bind unix:PATH`: `UID`, `UID:GID` or `:GID` (numbers;
    /// giving a file to another user needs root) [default: this process's].
    #[arg(long, value_name = "UID:GID")]
    pub(crate) unix_owner: Option<Owner>,

    /// PEM certificate chain (the server's certificate first) to serve HTTPS with, HTTP/2
    /// and HTTP/1.1 negotiated by ALPN; needs --keyfile [default: plain HTTP].
    #[arg(long, value_name = "FILE", value_parser = tls::cert_chain, requires = "keyfile")]
    pub(crate) certfile: Option<CertChain>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the --certfile certificate.
    #[arg(long, value_name = "FILE", value_parser = tls::private_key, requires = "certfile")]
    pub(crate) keyfile: Option<PrivateKey>,

    /// HTTP server that hosts the application.
    #[arg(long, value_enum, default_value_t = ServerKind::Axum)]
    pub(crate) server: ServerKind,

    /// Serve the application under PREFIX only (its SCRIPT_NAME); other paths get 404.
    #[arg(long, value_name = "PREFIX", value_parser = crate::values::mount)]
    pub(crate) mount: Option<String>,

    /// How long in-flight requests may run on after SIGTERM or Ctrl-C, in seconds or with a
    /// unit (`500ms`, `2m`).
    #[arg(long, value_name = "DURATION", default_value_t = Secs(DEFAULT_GRACE))]
    pub(crate) grace: Secs,

    /// How long, after SIGTERM or Ctrl-C, to go on accepting and serving requests with
    /// `/readyz` answering 503 (and HTTP/1 responses saying `Connection: close`), so that
    /// load balancers take this server out before it stops accepting; then the drain of
    /// --grace begins.
    #[arg(long, value_name = "DURATION", default_value_t = Secs(std::time::Duration::ZERO))]
    pub(crate) shutdown_delay: Secs,

    /// Also answer PREFIX/livez and PREFIX/readyz on the application's listeners, ahead of
    /// the application (`/` for /livez and /readyz) [default: on --metrics-bind only].
    #[arg(long, value_name = "PREFIX", value_parser = crate::values::health_prefix)]
    pub(crate) health_path: Option<String>,

    /// Serve Prometheus metrics at http://ADDR/metrics, and /livez and /readyz
    /// [default: off].
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_bind: Option<ListenAddr>,

    /// CPU scheduling policy of every thread: `batch` (Linux SCHED_BATCH: a thread that
    /// wakes another keeps the CPU, so requests and responses move in batches; more
    /// throughput when threads share cores) or `normal` (the OS default).
    #[arg(long, value_enum, default_value_t = Sched::Batch)]
    pub(crate) sched: Sched,

    /// Log format on stderr: `text` or `json` (one JSON object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    /// Log filter: a level (`info`, `debug`) or tracing directives (`info,wsgi_core=debug`).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub(crate) log_level: LogFilter,

    /// Log lines held for the thread that writes stderr; when it falls this far behind,
    /// new lines are dropped (and counted) rather than making requests wait.
    #[arg(long, value_name = "LINES", value_parser = at_least_one,
          default_value_t = NonZeroUsize::new(DEFAULT_LOG_BUFFER).expect("DEFAULT_LOG_BUFFER > 0"))]
    pub(crate) log_buffer: NonZeroUsize,

    /// The application and the engine that runs it.
    #[command(flatten)]
    pub(crate) engine: EngineOptions,

    /// Where `engine.venv` came from; set by [`parse`].
    #[arg(skip)]
    pub(crate) venv_origin: VenvOrigin,

    /// Whether `--bind` was given rather than defaulted; set by [`parse`].
    #[arg(skip)]
    pub(crate) bind_given: bool,

    /// The TLS configuration of `certfile` and `keyfile`, checked by [`parse`].
    #[arg(skip)]
    pub(crate) tls: Option<Arc<ServerConfig>>,

    /// Every setting's value and where it came from, for `--print-config`; set by [`parse`].
    #[arg(skip)]
    pub(crate) settings: Vec<Resolved>,
}

impl Args {
    /// How to make the socket files of `--bind unix:PATH`.
    pub(crate) fn unix_files(&self) -> FileOptions {
        FileOptions {
            mode: self.unix_mode,
            owner: self.unix_owner,
        }
    }
}

/// Where the virtualenv setting came from, for the messages that name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum VenvOrigin {
    /// No virtualenv.
    #[default]
    None,
    /// The setting, named as the user gave it: `--venv`, `WSGI_SERVE_VENV`, a file's path.
    Setting(String),
    /// `$VIRTUAL_ENV`.
    Environment,
}

impl VenvOrigin {
    /// How messages name the origin: `" (from --venv)"`.
    pub(crate) fn suffix(&self) -> String {
        match self {
            VenvOrigin::None => String::new(),
            VenvOrigin::Setting(name) => format!(" (from {name})"),
            VenvOrigin::Environment => " (from $VIRTUAL_ENV)".into(),
        }
    }
}

/// Parses the process's command line, environment and `--config` file, or exits: 0 for
/// `--help`, 2 for a bad setting.
pub(crate) fn parse() -> Args {
    parse_from(std::env::args_os().collect(), std::env::vars_os())
}

/// Parses `argv` (the program name first) over the environment `vars`, or exits as
/// [`parse`] does.
pub(crate) fn parse_from(
    argv: Vec<OsString>,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Args {
    let (matches, resolved) =
        settings::resolve(Args::command(), argv, vars).unwrap_or_else(|e| e.exit());
    let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if args
        .engine
        .venv
        .as_ref()
        .is_some_and(|v| v.as_os_str().is_empty())
    {
        args.engine.venv = None;
    }
    args.bind_given = matches.value_source("bind") == Some(ValueSource::CommandLine);
    let venv_origin = resolved
        .iter()
        .find(|r| r.setting.id == "venv")
        .map(|r| &r.origin);
    args.venv_origin = match venv_origin {
        _ if args.engine.venv.is_none() => VenvOrigin::None,
        Some(Origin::Environment(var)) if var == "VIRTUAL_ENV" => VenvOrigin::Environment,
        Some(Origin::Environment(var)) => VenvOrigin::Setting(var.clone()),
        Some(Origin::File(path)) => VenvOrigin::Setting(path.display().to_string()),
        _ => VenvOrigin::Setting("--venv".into()),
    };
    args.settings = resolved;
    // Each file parsed on its own; whether the key is the certificate's is known only
    // together, and is still a bad command line.
    if let (Some(chain), Some(key)) = (&args.certfile, &args.keyfile) {
        match tls::server_config(chain, key) {
            Ok(config) => args.tls = Some(Arc::new(config)),
            Err(e) => Args::command()
                .error(clap::error::ErrorKind::ArgumentConflict, e)
                .exit(),
        }
    }
    args
}

/// The HTTP server that hosts the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ServerKind {
    /// axum 0.8 on hyper.
    Axum,
    /// actix-web 4.
    Actix,
}

/// The CPU scheduling policy of the process's threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Sched {
    /// SCHED_BATCH for the whole process.
    Batch,
    /// The OS default (SCHED_OTHER); the engine's Python threads are batch regardless.
    Normal,
}

/// How log events are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn help_shows_the_library_defaults() {
        let help = Args::command().render_long_help().to_string();
        for default in [
            format!("[default: {}]", wsgi_core::DEFAULT_THREADS),
            format!("[default: {}]", wsgi_core::DEFAULT_QUEUE_DEPTH),
            format!(
                "[default: {}]",
                crate::values::Bytes(wsgi_core::DEFAULT_BUFFER_BODY)
            ),
            "[default: 30s]".to_owned(),
            "[default: 127.0.0.1:8000]".to_owned(),
        ] {
            assert!(help.contains(&default), "{default} missing from:\n{help}");
        }
    }

    #[test]
    fn values_are_parsed_into_their_types() {
        let args = Args::try_parse_from([
            "serve",
            "--grace",
            "1.5",
            "--buffer-body",
            "1M",
            "--trusted-proxy",
            "10.0.0.0/8,::1,unix",
            "--mount",
            "py/",
            "--spool-dir",
            "/var/tmp",
            "--stream-chunked",
            "app.py",
        ])
        .unwrap();
        assert_eq!(args.grace.0, Duration::from_millis(1500));
        assert_eq!(args.engine.buffer_body.0, 1 << 20);
        assert_eq!(args.engine.trusted_proxies.len(), 3);
        assert_eq!(args.mount.as_deref(), Some("/py"));
        assert_eq!(args.engine.app(), "app.py");
        let builder = format!("{:?}", args.engine.builder(false));
        assert!(
            builder.contains("spool_dir: Some(\"/var/tmp\")"),
            "{builder}"
        );
        assert!(builder.contains("stream_chunked: true"), "{builder}");
    }

    #[test]
    fn a_range_of_processes_makes_an_elastic_pool() {
        let args = Args::try_parse_from([
            "serve",
            "--processes",
            "1..4",
            "--pool-idle-time",
            "2s",
            "app.py",
        ])
        .unwrap();
        let builder = format!("{:?}", args.engine.builder(false));
        assert!(builder.contains("processes: 1,"), "{builder}");
        assert!(builder.contains("max_processes: Some(4)"), "{builder}");
        assert!(builder.contains("pool_idle_time: 2s"), "{builder}");
        let fixed = Args::try_parse_from(["serve", "--processes", "3", "app.py"]).unwrap();
        let builder = format!("{:?}", fixed.engine.builder(false));
        assert!(builder.contains("max_processes: None"), "{builder}");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["--threads", "0"][..],
            &["--queue-depth", "many"],
            &["--timeout", "0"],
            &["--body-timeout", "soon"],
            &["--max-body", "1TB"],
            &["--trusted-proxy", "10.0.0.0/99"],
            &["--bind", "nowhere"],
            &["--bind", "unix:"],
            &["--unix-mode", "999"],
            &["--unix-owner", "www-data"],
            &["--metrics-bind", "127.0.0.1"],
            &["--log-level", "wsgi_core=loud"],
            &["--mount", "/a?b"],
            &[
                "--certfile",
                "/nonexistent/cert.pem",
                "--keyfile",
                "/nonexistent/key.pem",
            ],
            &["--certfile", "/nonexistent/cert.pem"],
            &["--processes", "0..4"],
            &["--processes", "4..2"],
            &["--processes", "1..4", "--pool-idle-time", "0"],
        ] {
            let err = Args::try_parse_from(["serve"].iter().chain(bad).chain(&["app.py"]))
                .expect_err(&format!("{bad:?} should be refused"));
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
    }
}
