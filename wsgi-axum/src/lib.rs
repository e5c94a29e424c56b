//! Serve a Python WSGI (PEP 3333) application from an [axum](https://docs.rs/axum) 0.8
//! router.
//!
//! [`WsgiService`] is a [`tower_service::Service`] over a [`wsgi_core::Engine`]: mount it
//! with [`Router::nest_service`](axum::Router::nest_service) (the nested path becomes
//! `SCRIPT_NAME`), [`Router::route_service`](axum::Router::route_service) or
//! [`Router::fallback_service`](axum::Router::fallback_service). Response bodies stream
//! with backpressure; request bodies are received whole before the application runs (in
//! memory, or in a temporary file when large) or stream to `wsgi.input`, as
//! [`EngineBuilder::buffer_body`](wsgi_core::EngineBuilder::buffer_body) says. The service
//! never fails: application errors arrive as HTTP responses (500, 503, 413, 408, 404).
//!
//! `REMOTE_ADDR` comes from axum's [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo),
//! so serve the router with
//! [`into_make_service_with_connect_info`](axum::Router::into_make_service_with_connect_info).
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use axum::{Router, routing::get};
//! use wsgi_axum::{Engine, WsgiService};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let engine = Engine::builder("app/passenger_wsgi.py").threads(4).build()?;
//!     let app = Router::new()
//!         .route("/health", get(|| async { "ok" }))
//!         .nest_service("/py", WsgiService::new(engine));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//!     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//!     Ok(())
//! }
//! ```
//!
//! # Telling the application who the user is
//!
//! A layer in front of the service that authenticates the request (a session cookie, a
//! token, a client certificate) says so by inserting a [`wsgi_core::EnvironExtras`] into
//! the request's extensions: the application sees its `REMOTE_USER`, `AUTH_TYPE` and keys
//! of the host's own, whether it runs in this process or in worker processes. A client's
//! `Remote-User:` header stays `HTTP_REMOTE_USER`; keys the engine computes cannot be set.
//!
//! ```
//! use axum::{Router, extract::Request, middleware::{self, Next}, response::Response};
//! use wsgi_axum::{Engine, EnvironExtras, WsgiService};
//!
//! async fn bridge(mut req: Request, next: Next) -> Response {
//!     // Whoever the service's own authentication found; a fixed name here.
//!     let mut extras = EnvironExtras::new();
//!     extras.set_remote_user("alice").expect("a native string").set_auth_type("Cookie").unwrap();
//!     req.extensions_mut().insert(extras);
//!     next.run(req).await
//! }
//!
//! fn router(engine: Engine) -> Router {
//!     Router::new()
//!         .nest_service("/legacy", WsgiService::new(engine))
//!         .layer(middleware::from_fn(bridge))
//! }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, BodyDataStream};
use axum::extract::{ConnectInfo, NestedPath, OriginalUri};
use axum::http::{Request, Response};
use wsgi_core::ConnInfo;

pub use wsgi_core;
pub use wsgi_core::{Engine, EnvironExtras, Scheme, run_if_worker};

/// A [`tower_service::Service`] that runs requests through a WSGI application.
///
/// Cloning is cheap: clones share the engine and its Python threads.
#[derive(Clone, Debug)]
pub struct WsgiService {
    engine: Engine,
    mount: Option<Arc<str>>,
    local_addr: Option<SocketAddr>,
    scheme: Scheme,
    unix_socket: bool,
}

impl WsgiService {
    /// A service for `engine`, with `SCRIPT_NAME` taken from where the router nests it.
    pub fn new(engine: Engine) -> Self {
        WsgiService {
            engine,
            mount: None,
            local_addr: None,
            scheme: Scheme::Http,
            unix_socket: false,
        }
    }

    /// Mounts the application under `prefix` (`"/py"`): `SCRIPT_NAME` is `prefix` and paths
    /// outside it are answered 404 by the engine.
    ///
    /// This is for [`Router::fallback_service`](axum::Router::fallback_service) or a bare
    /// server, where the router does not strip a prefix; it overrides the path a router
    /// nests the service at.
    #[must_use]
    pub fn mount(mut self, prefix: impl Into<String>) -> Self {
        // Normalised once here rather than on every request.
        self.mount = Some(ConnInfo::default().with_mount(prefix).mount.into());
        self
    }

    /// The address the server listens on, for `SERVER_NAME`/`SERVER_PORT` when a request
    /// has no `Host` header. axum does not tell a service which local address a connection
    /// arrived on, so the code that binds the listener has to.
    #[must_use]
    pub fn local_addr(mut self, addr: SocketAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }

    /// `wsgi.url_scheme` (default `http`); set [`Scheme::Https`] behind a TLS acceptor.
    #[must_use]
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// Says that this service serves a UNIX socket: its requests have no peer address, and
    /// their peer is a trusted proxy when
    /// [`EngineBuilder::trusted_proxies`](wsgi_core::EngineBuilder::trusted_proxies) names
    /// `"unix"` (see [`ConnInfo::unix_socket`]). Use one service per listener, this one
    /// only for the UNIX socket's.
    ///
    /// ```no_run
    /// use wsgi_axum::{Engine, WsgiService};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let engine = Engine::builder("app.py").trusted_proxies(["unix"]).build()?;
    ///     let listener = tokio::net::UnixListener::bind("/run/app/http.sock")?;
    ///     let service = WsgiService::new(engine).unix_socket();
    ///     let make_service = axum::ServiceExt::<axum::extract::Request>::into_make_service(service);
    ///     axum::serve(listener, make_service).await?;
    ///     Ok(())
    /// }
    /// ```
    #[must_use]
    pub fn unix_socket(mut self) -> Self {
        self.unix_socket = true;
        self
    }

    /// The engine this service hands requests to, for example to
    /// [shut it down](Engine::shutdown) once the server has drained.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// The prefix of `path` that the router matched for a service nested at `nested`.
///
/// `nested` is the route pattern (`/api/{version}`), not the text the client sent, so the
/// mount is cut from the client's path by counting the pattern's segments.
fn nested_mount(nested: &str, path: &str) -> String {
    let segments = nested.split('/').filter(|s| !s.is_empty()).count();
    let mut end = 0;
    for _ in 0..segments {
        let Some(after) = path[end..].strip_prefix('/') else {
            break;
        };
        end += 1 + after.find('/').unwrap_or(after.len());
    }
    path[..end].to_owned()
}

impl tower_service::Service<Request<Body>> for WsgiService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The engine answers 503 itself when its queue is full: no backpressure to signal.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> ResponseFuture {
        if let Some(coding) = foreign_coding(&req) {
            return ResponseFuture(Inner::Refused(Some(not_implemented(coding))));
        }
        // A nested router has stripped its prefix from `req.uri()`; the engine needs the
        // client's full target to split SCRIPT_NAME from PATH_INFO itself.
        if let Some(OriginalUri(original)) = req.extensions().get::<OriginalUri>() {
            *req.uri_mut() = original.clone();
        }
        let extensions = req.extensions();
        let mount = match (&self.mount, extensions.get::<NestedPath>()) {
            (Some(mount), _) => mount.to_string(),
            (None, Some(nested)) => nested_mount(nested.as_str(), req.uri().path()),
            (None, None) => String::new(),
        };
        let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let conn = ConnInfo {
            mount,
            unix_socket: self.unix_socket,
            ..ConnInfo::new(peer, self.local_addr).with_scheme(self.scheme)
        };
        let req = req.map(Body::into_data_stream);
        ResponseFuture(Inner::Engine(
            self.engine
                .call::<(Request<BodyDataStream>, ConnInfo)>((req, conn)),
        ))
    }
}

/// Hands the application's reason phrase (`404 NOT FOUND`, `299 Custom`) to hyper, which
/// writes the standard phrase of the code unless the response carries its own.
fn with_reason_phrase<B>(mut response: Response<B>) -> Response<B> {
    if let Some(reason) = response
        .extensions_mut()
        .remove::<wsgi_core::ReasonPhrase>()
        && let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason.as_str().as_bytes())
    {
        response.extensions_mut().insert(reason);
    }
    response
}

/// The transfer coding of a request body that hyper hands on still coded, if any.
///
/// hyper takes `Transfer-Encoding: gzip, chunked` apart only as far as `chunked` and hands
/// on a gzip stream, which a WSGI application has no way to expect (PEP 3333's `wsgi.input`
/// is the body as sent); RFC 9112 §6.1 asks for 501 there. (A coding list that does not
/// end in `chunked` never gets here: hyper answers it 400.)
fn foreign_coding(req: &Request<Body>) -> Option<String> {
    let mut codings = req
        .headers()
        .get_all(axum::http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty());
    codings
        .find(|c| !c.eq_ignore_ascii_case("chunked"))
        .map(str::to_owned)
}

/// The answer to a request whose body is in a coding the server does not decode.
fn not_implemented(coding: String) -> Response<Body> {
    let text = format!("Not Implemented: request bodies in the {coding:?} transfer coding\n");
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = axum::http::StatusCode::NOT_IMPLEMENTED;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // The unread body must not be taken for the next request.
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// The future returned by [`WsgiService`]: resolves once the application has sent its
/// status and headers, with a body that streams the rest.
#[derive(Debug)]
#[must_use = "the request runs only while its response future is polled or kept"]
pub struct ResponseFuture(Inner);

#[derive(Debug)]
enum Inner {
    Engine(wsgi_core::ResponseFuture),
    /// Answered by the adapter; taken when polled.
    Refused(Option<Response<Body>>),
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Inner::Engine(engine) => Pin::new(engine)
                .poll(cx)
                .map(|response| Ok(with_reason_phrase(response).map(Body::new))),
            Inner::Refused(response) => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::nested_mount;

    #[test]
    fn nested_mount_counts_pattern_segments() {
        assert_eq!(nested_mount("/py", "/py"), "/py");
        assert_eq!(nested_mount("/py", "/py/a/b"), "/py");
        assert_eq!(nested_mount("/py/", "/py/"), "/py");
        assert_eq!(nested_mount("/api/{version}", "/api/v2/users"), "/api/v2");
        assert_eq!(nested_mount("/", "/anything"), "");
    }
}
