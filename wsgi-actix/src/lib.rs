//! Serve a Python WSGI application from [actix-web] 4.
//!
//! [`WsgiApp`] plugs into an actix-web application the way `actix-files` does: give it a
//! mount path and a [`wsgi_core::Engine`], then register it with `App::service`, inside a
//! `web::scope`, or as `App::default_service`. `SCRIPT_NAME` is the path the app is mounted
//! at (scope included), the request body is received whole before the app runs (or streams
//! into `wsgi.input` as the app reads it, as
//! [`EngineBuilder::buffer_body`](wsgi_core::EngineBuilder::buffer_body) says), and the
//! response streams out with backpressure. All Python work happens on the engine's own
//! threads; actix's workers only move bytes.
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use wsgi_actix::WsgiApp;
//! use wsgi_core::Engine;
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let engine = Engine::builder("legacy/passenger_wsgi.py").build().expect("app loads");
//!     HttpServer::new(move || {
//!         App::new()
//!             .route("/health", web::get().to(|| async { "ok" }))
//!             .service(WsgiApp::new("/legacy", engine.clone()))
//!     })
//!     .bind("127.0.0.1:8080")?
//!     .run()
//!     .await
//! }
//! ```
//!
//! # Telling the application who the user is
//!
//! A middleware that authenticates the request (a session cookie, a token, a client
//! certificate) says so by inserting a [`wsgi_core::EnvironExtras`] into the request's
//! extensions: the application sees its `REMOTE_USER`, `AUTH_TYPE` and keys of the host's
//! own, whether it runs in this process or in worker processes. A client's `Remote-User:`
//! header stays `HTTP_REMOTE_USER`; keys the engine computes cannot be set.
//!
//! ```
//! use actix_web::dev::Service as _;
//! use actix_web::{HttpMessage as _, web};
//! use wsgi_actix::WsgiApp;
//! use wsgi_core::{Engine, EnvironExtras};
//!
//! fn configure(config: &mut web::ServiceConfig, engine: Engine) {
//!     let legacy = web::scope("")
//!         .wrap_fn(|req, srv| {
//!             // Whoever the service's own authentication found; a fixed name here.
//!             let mut extras = EnvironExtras::new();
//!             extras.set_remote_user("alice").expect("a native string");
//!             req.extensions_mut().insert(extras);
//!             srv.call(req)
//!         })
//!         .service(WsgiApp::new("/legacy", engine));
//!     config.service(legacy);
//! }
//! ```
//!
//! # Requests refused before the application
//!
//! actix-http 3 accepts some requests whose body length a front end could read differently
//! (`Content-Length` with `Transfer-Encoding`, `Transfer-Encoding` on HTTP/1.0 or other
//! than `chunked`), which lets a request hidden in one request's body run as the next
//! (request smuggling). hyper, under `wsgi-axum`, rejects or closes on those itself; here
//! [`WsgiApp`] answers them 400 and closes the connection before the request reaches the
//! engine, so nothing that followed on the connection is served.
//!
//! Request trailers: hyper reads a chunked body with a trailer section and drops the
//! trailer fields. Older actix-http releases could not parse a trailer and dropped the
//! connection when they met one, so [`WsgiApp`] answers 400, saying why, to a request that
//! announces a trailer (a `Trailer` header). A trailer sent unannounced is read and dropped
//! by the actix-http this workspace locks (3.19), as hyper does.
//!
//! # UNIX sockets and trusted proxies
//!
//! actix-web serves a UNIX socket (`HttpServer::listen_uds`) with no peer address, and the
//! engine trusts such a peer's forwarding headers only when
//! [`EngineBuilder::trusted_proxies`](wsgi_core::EngineBuilder::trusted_proxies) names
//! `"unix"` and the connection is known to be on a UNIX socket. actix-web says that only to
//! its `on_connect` callback, so pass [`on_connect`] (or call it from yours):
//!
//! ```no_run
//! use actix_web::{App, HttpServer};
//! use wsgi_actix::WsgiApp;
//! use wsgi_core::Engine;
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let engine = Engine::builder("app.py").trusted_proxies(["unix"]).build().expect("app loads");
//!     HttpServer::new(move || App::new().default_service(WsgiApp::new("", engine.clone())))
//!         .on_connect(wsgi_actix::on_connect)
//!         .bind_uds("/run/app/http.sock")?
//!         .run()
//!         .await
//! }
//! ```
//!
//! [actix-web]: https://docs.rs/actix-web

mod body;
mod framing;
mod request;

use std::future::{Ready, ready};

use actix_web::dev::{
    AppService, HttpServiceFactory, ResourceDef, Service, ServiceFactory, ServiceRequest,
    ServiceResponse, always_ready,
};
use futures::future::LocalBoxFuture;
use wsgi_core::Engine;

pub use body::ActixBody;

/// The mark [`on_connect`] leaves in the connection data of a connection on a UNIX socket.
#[derive(Debug, Clone, Copy)]
struct UnixSocket;

/// An `on_connect` callback for [`HttpServer::on_connect`](actix_web::HttpServer::on_connect)
/// that tells [`WsgiApp`] which connections came over a UNIX socket, so that
/// [`ConnInfo::unix_socket`](wsgi_core::ConnInfo::unix_socket) is set for their requests. A
/// server with a callback of its own calls this one from it. Without it, requests on a UNIX
/// socket still run, with a peer the engine never trusts.
pub fn on_connect(connection: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    if connection.is::<actix_web::rt::net::UnixStream>() {
        data.insert(UnixSocket);
    }
}

/// A WSGI application mounted at a path of an actix-web app.
///
/// Cloning is cheap; every actix worker gets a service sharing the same [`Engine`].
#[derive(Debug, Clone)]
pub struct WsgiApp {
    mount: String,
    engine: Engine,
}

impl WsgiApp {
    /// Mounts `engine` at `mount` (`"/legacy"`, or `""` for everything). Paths under the
    /// mount reach the app with `SCRIPT_NAME` set to the mount (prefixed by any enclosing
    /// scope) and `PATH_INFO` set to the rest.
    pub fn new(mount: impl Into<String>, engine: Engine) -> Self {
        let mut mount = mount.into();
        while mount.ends_with('/') {
            mount.pop();
        }
        WsgiApp { mount, engine }
    }
}

impl HttpServiceFactory for WsgiApp {
    fn register(self, config: &mut AppService) {
        let prefix = if config.is_root() && !self.mount.starts_with('/') {
            format!("/{}", self.mount)
        } else {
            self.mount.clone()
        };
        config.register_service(ResourceDef::prefix(prefix), None, self, None);
    }
}

impl ServiceFactory<ServiceRequest> for WsgiApp {
    type Response = ServiceResponse;
    type Error = actix_web::Error;
    type Config = ();
    type Service = WsgiAppService;
    type InitError = ();
    type Future = Ready<Result<WsgiAppService, ()>>;

    fn new_service(&self, _: ()) -> Self::Future {
        ready(Ok(WsgiAppService {
            engine: self.engine.clone(),
        }))
    }
}

/// The per-worker service made by [`WsgiApp`]; failures become HTTP responses.
#[derive(Debug)]
pub struct WsgiAppService {
    engine: Engine,
}

impl Service<ServiceRequest> for WsgiAppService {
    type Response = ServiceResponse;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<ServiceResponse, actix_web::Error>>;

    always_ready!();

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if let Some(why) = framing::refusal(req.request()) {
            tracing::info!(target: "wsgi_actix", "refused a request with {why}; answered 400 and closed the connection");
            let response = framing::refuse(why).map_into_boxed_body();
            return Box::pin(std::future::ready(Ok(req.into_response(response))));
        }
        let (http_req, mut payload) = req.into_parts();
        let host_request = request::convert(&http_req, &mut payload);
        let engine = self.engine.clone();
        Box::pin(async move {
            let response = match host_request {
                Ok(host_request) => body::into_actix(&http_req, engine.call(host_request).await)
                    .map_into_boxed_body(),
                Err(bad) => bad,
            };
            Ok(ServiceResponse::new(http_req, response))
        })
    }
}
