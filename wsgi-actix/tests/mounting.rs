//! Where `WsgiApp` sits in an actix-web `App` decides `SCRIPT_NAME` and `PATH_INFO`: at the
//! top level, inside (possibly dynamic) scopes, or as the default service. Spoken to over
//! TCP, as a client would.
//!
//! The behaviours both adapters share are tested against axum and actix-web alike in
//! `examples/tests/`; these are the ones only actix-web's routing has.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use wsgi_actix::WsgiApp;
use wsgi_core::Engine;

/// Generous: the tests share two cores with the compiler and each other.
const DEADLINE: Duration = Duration::from_secs(60);

fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let app = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/environ_app.py");
            Engine::builder(app)
                .threads(2)
                .build()
                .unwrap_or_else(|e| panic!("loading {app}: {e}"))
        })
        .clone()
}

/// An actix-web server on a thread of its own; dropping it stops it.
struct Server {
    addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    fn start<F>(configure: F) -> Server
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || App::new().configure(configure.clone()))
                    .workers(1)
                    .disable_signals()
                    .listen(listener)?
                    .run();
                tx.send(server.handle()).expect("send handle");
                server.await
            })
        });
        let handle = rx.recv_timeout(DEADLINE).expect("the server did not start");
        Server {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    /// `GET target`; the status and the `KEY=value` lines of the body.
    fn get(&self, target: &str) -> (u16, HashMap<String, String>) {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).expect("read to the end");
        let reply = String::from_utf8_lossy(&reply);
        let (head, body) = reply.split_once("\r\n\r\n").expect("a response head");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        let environ = body
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        (status, environ)
    }

    /// `SCRIPT_NAME` and `PATH_INFO` for `target`, which the app must answer.
    fn split(&self, target: &str) -> (String, String) {
        let (status, env) = self.get(target);
        assert_eq!(status, 200, "{target}: {env:?}");
        (env["SCRIPT_NAME"].clone(), env["PATH_INFO"].clone())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        futures::executor::block_on(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn pair(script_name: &str, path_info: &str) -> (String, String) {
    (script_name.to_owned(), path_info.to_owned())
}

#[test]
fn a_top_level_mount_is_script_name_on_a_segment_boundary() {
    let engine = engine();
    let server = Server::start(move |config| {
        config.service(WsgiApp::new("/py/", engine.clone()));
    });
    assert_eq!(server.split("/py"), pair("/py", ""));
    assert_eq!(server.split("/py/"), pair("/py", "/"));
    assert_eq!(server.split("/py/a/b%20c?x=1"), pair("/py", "/a/b c"));
    let (_, env) = server.get("/py/a/b%20c?x=1");
    assert_eq!(env["QUERY_STRING"], "x=1");
    assert_eq!(env["REQUEST_URI"], "/py/a/b%20c?x=1");
    assert_eq!(server.get("/pyx").0, 404, "/pyx is not under /py");
    assert_eq!(server.get("/").0, 404);
}

#[test]
fn scopes_add_their_path_to_script_name() {
    let engine = engine();
    let server = Server::start(move |config| {
        config
            .service(web::scope("/api").service(WsgiApp::new("/v1", engine.clone())))
            .service(web::scope("/t/{tenant}").service(WsgiApp::new("/app", engine.clone())));
    });
    assert_eq!(server.split("/api/v1/users"), pair("/api/v1", "/users"));
    assert_eq!(server.split("/api/v1"), pair("/api/v1", ""));
    // A dynamic segment is part of the mount as the client spelled it.
    assert_eq!(
        server.split("/t/acme/app/page"),
        pair("/t/acme/app", "/page")
    );
    assert_eq!(server.get("/api/v2/users").0, 404);
}

#[test]
fn an_empty_mount_inside_a_scope_gives_the_app_the_rest_of_the_path() {
    let engine = engine();
    let server = Server::start(move |config| {
        config.service(web::scope("/legacy").service(WsgiApp::new("", engine.clone())));
    });
    assert_eq!(server.split("/legacy/a"), pair("/legacy", "/a"));
    assert_eq!(server.split("/legacy"), pair("/legacy", ""));
}

#[test]
fn the_default_service_takes_what_the_rust_routes_do_not() {
    let engine = engine();
    let server = Server::start(move |config| {
        config
            .route("/rust", web::get().to(|| async { "from rust" }))
            .default_service(WsgiApp::new("", engine.clone()));
    });
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .write_all(b"GET /rust HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    assert!(reply.ends_with("from rust"), "{reply}");

    assert_eq!(server.split("/anything/else"), pair("", "/anything/else"));
    assert_eq!(server.split("/"), pair("", "/"));
}

#[test]
fn http_1_0_requests_say_so() {
    let engine = engine();
    let server = Server::start(move |config| {
        config.default_service(WsgiApp::new("", engine.clone()));
    });
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.write_all(b"GET /x HTTP/1.0\r\n\r\n").expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    assert!(reply.contains("SERVER_PROTOCOL=HTTP/1.0\n"), "{reply}");
}
