//! The harness shared by the tests in this directory: one test body, two hosts.
//!
//! [`start`] serves an [`Engine`] from a real axum server or a real actix-web server on
//! 127.0.0.1 (`test_support::hosts`), mounted at the root or under a prefix; the tests speak
//! to it with `test_support`'s clients. The [`host_cases!`](crate::common::host_cases) macro
//! turns one `fn(&Site)` into a test per host and mount, so a behaviour cannot drift between
//! the adapters unnoticed. The `wsgi-serve` program has tests of its own, in its package.

// Every test binary compiles this module but uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use test_support::hosts::{self, serve_actix, serve_axum};
use test_support::wire::{Conn, Request, Response, send};
use wsgi_core::{Engine, EngineBuilder};

/// A test app under `examples/tests/apps/`.
pub(crate) fn test_app(file: &str) -> String {
    format!("{}/tests/apps/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// Loads the test app `file` (under `examples/tests/apps/`) with the builder `configure`
/// makes; panics if it does not load.
pub(crate) fn load(file: &str, configure: impl FnOnce(EngineBuilder) -> EngineBuilder) -> Engine {
    let app = test_app(file);
    configure(Engine::builder(&app))
        .build()
        .unwrap_or_else(|e| panic!("loading {app}: {e}"))
}

/// Loads `app`, which needs the Python package `package`. `None` (after saying why on
/// stderr) when that package cannot be imported and frameworks are not required; any
/// other failure panics.
pub(crate) fn framework_engine(package: &str, app: &str, threads: usize) -> Option<Engine> {
    test_support::logs::to_test_output();
    match Engine::builder(app).threads(threads).build() {
        Ok(engine) => Some(engine),
        Err(e) => {
            let message = e.to_string();
            let missing = message.contains(&format!("No module named '{package}'"));
            if missing && !test_support::frameworks_required() {
                eprintln!(
                    "SKIPPED: the Python package {package:?} is not importable, so the tests \
                     serving {app} do nothing. Install requirements-test.txt into the \
                     virtualenv named by VIRTUAL_ENV (scripts/test does), or set \
                     WSGI_REQUIRE_FRAMEWORKS=1 to make this a failure."
                );
                None
            } else {
                panic!("loading {app}: {message}");
            }
        }
    }
}

/// The Rust server hosting the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    /// `WsgiService` in an axum router, served by `axum::serve` (HTTP/1.1 and h2c).
    Axum,
    /// `WsgiApp` in an actix-web `App`, served by `HttpServer` (HTTP/1.1 and h2c).
    Actix,
}

/// Serves `engine` from `host` on a fresh port of 127.0.0.1: at `mount` (its
/// `SCRIPT_NAME`, next to nothing else, so other paths get the host's own 404) or, for
/// `None`, as the handler of every path. The engine's logs go to the test's output.
pub(crate) fn start(host: Host, engine: &Engine, mount: Option<&str>) -> hosts::Server {
    test_support::logs::to_test_output();
    let engine = engine.clone();
    let mount = mount.map(str::to_owned);
    match host {
        Host::Axum => serve_axum(move |addr| {
            use axum::Router;
            use wsgi_axum::WsgiService;

            let service = WsgiService::new(engine).local_addr(addr);
            match mount {
                Some(prefix) => Router::new().nest_service(&prefix, service),
                None => Router::new().fallback_service(service),
            }
        }),
        Host::Actix => serve_actix(move |config| {
            use wsgi_actix::WsgiApp;

            match &mount {
                Some(prefix) => {
                    config.service(WsgiApp::new(prefix.clone(), engine.clone()));
                }
                None => {
                    config.default_service(WsgiApp::new("", engine.clone()));
                }
            }
        }),
    }
}

/// A server, the host serving it and the prefix its app is mounted at (`""` at the root).
pub(crate) struct Site {
    pub(crate) server: hosts::Server,
    host: Host,
    pub(crate) mount: &'static str,
}

impl Site {
    pub(crate) fn new(host: Host, engine: &Engine, mount: &'static str) -> Site {
        let server = start(host, engine, (!mount.is_empty()).then_some(mount));
        Site {
            server,
            host,
            mount,
        }
    }

    pub(crate) fn host(&self) -> Host {
        self.host
    }

    /// `path` as a client reaches it: behind the mount prefix.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.mount)
    }

    /// Sends `request` (its target relative to the mount) on a fresh connection.
    pub(crate) fn send(&self, request: Request) -> Response {
        let request = Request {
            target: self.url(&request.target),
            ..request
        };
        send(self.server.addr, &request)
    }

    pub(crate) fn get(&self, path: &str) -> Response {
        self.send(Request::get(path))
    }

    /// Opens a connection and sends `request`, for reading the response piece by piece.
    pub(crate) fn open(&self, request: Request) -> Conn {
        let request = Request {
            target: self.url(&request.target),
            ..request
        };
        let mut conn = Conn::connect(self.server.addr);
        conn.send(&request.to_bytes(self.server.addr));
        conn
    }
}

/// Generates, for each named `fn(&Site)`, a module of four tests: axum and actix-web,
/// each with the app at the root and under `$prefix`. `$engine` names a function of the caller returning
/// `Option<Engine>`; `None` skips (it has said why).
#[allow(unused_macros)]
macro_rules! host_cases {
    ($engine:ident, $prefix:literal; $($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use crate::common::{Host, Site};

                fn run(host: Host, mount: &'static str) {
                    if let Some(engine) = super::$engine() {
                        super::$name(&Site::new(host, &engine, mount));
                    }
                }

                #[test]
                fn axum_root() {
                    run(Host::Axum, "");
                }

                #[test]
                fn axum_mounted() {
                    run(Host::Axum, $prefix);
                }

                #[test]
                fn actix_root() {
                    run(Host::Actix, "");
                }

                #[test]
                fn actix_mounted() {
                    run(Host::Actix, $prefix);
                }
            }
        )+
    };
}
#[allow(unused_imports)]
pub(crate) use host_cases;

/// The cookies a browser would keep, by name (paths and expiry ignored: one site).
#[derive(Debug, Default)]
pub(crate) struct Cookies(BTreeMap<String, String>);

impl Cookies {
    /// Takes the `Set-Cookie` headers of `response`.
    pub(crate) fn update(&mut self, response: &Response) {
        for value in response.header_all("set-cookie") {
            let pair = value.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                let (name, value) = (name.trim(), value.trim());
                if value.is_empty() || value == "\"\"" {
                    self.0.remove(name);
                } else {
                    self.0.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `request` with these cookies in a `Cookie` header.
    pub(crate) fn apply(&self, request: Request) -> Request {
        if self.0.is_empty() {
            return request;
        }
        let header = self
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        request.header("Cookie", &header)
    }
}

/// One part of a `multipart/form-data` body.
pub(crate) enum Part<'a> {
    Field(&'a str, &'a str),
    /// Field name, file name, content type, content.
    File(&'a str, &'a str, &'a str, &'a [u8]),
}

/// A `multipart/form-data` body and its Content-Type.
pub(crate) fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "wsgi-rs-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::Field(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}")
                        .as_bytes(),
                );
            }
            Part::File(name, filename, content_type, content) => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                         Content-Type: {content_type}\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(content);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The hex SHA-256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
