//! What the axum host answers before the application: the health paths of `--health-path`,
//! and `Connection: close` on HTTP/1 responses once a stop has begun, so that during
//! `--shutdown-delay` every client that still comes is answered and then goes to another
//! server. Used only when one of the two is asked for: otherwise the application's service
//! is served bare, with no boxing of its futures.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, Version, header};
use tower_service::Service;
use wsgi_axum::WsgiService;

use crate::health::{Health, LIVEZ, READYZ};

/// The application's service behind the health paths and the drain's `Connection: close`.
#[derive(Clone)]
pub(crate) struct Front {
    inner: WsgiService,
    health: Health,
    /// The prefix of the health paths, when they are served here.
    health_path: Option<String>,
}

impl Front {
    /// `inner` behind the health paths under `health_path` (if any) and the drain of
    /// `health`.
    pub(crate) fn new(inner: WsgiService, health: Health, health_path: Option<String>) -> Self {
        Front {
            inner,
            health,
            health_path,
        }
    }

    /// The health answer for `path`, if it is one of the health paths.
    fn health_answer(&self, path: &str) -> Option<(u16, &'static str)> {
        let rest = path.strip_prefix(self.health_path.as_deref()?)?;
        match rest {
            LIVEZ => Some(self.health.livez()),
            READYZ => Some(self.health.readyz()),
            _ => None,
        }
    }
}

impl Service<Request<Body>> for Front {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // HTTP/2 has no `Connection` header: the host sends its clients GOAWAY instead.
        let http1 = request.version() < Version::HTTP_2;
        let health = self.health.clone();
        if let Some((status, text)) = self.health_answer(request.uri().path()) {
            let mut response = Response::new(Body::from(text));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or_default();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            close_if_draining(&health, http1, &mut response);
            return Box::pin(std::future::ready(Ok(response)));
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            close_if_draining(&health, http1, &mut response);
            Ok(response)
        })
    }
}

/// Asks an HTTP/1 client to close its connection after `response` once a stop has begun.
fn close_if_draining(health: &Health, http1: bool, response: &mut Response<Body>) {
    if http1 && health.is_draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}
