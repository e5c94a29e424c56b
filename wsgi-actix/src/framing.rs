//! Requests actix-http 3 lets through but must not be served: refused before they reach
//! the engine.
//!
//! **Ambiguous framing.**
//! A front end (a proxy, a load balancer) and this server must agree on where a request's
//! body ends, or bytes one of them takes for body the other takes for a new request
//! (request smuggling). RFC 9112 §6.1 and §6.3 name the ambiguous cases; hyper rejects
//! them or closes the connection, and actix-http rejects some of them while parsing
//! (`Content-Length` lines that disagree, a list-valued `Content-Length`, obs-folded lines,
//! codings other than `chunked`). These it accepts, and this module refuses:
//!
//! - `Content-Length` together with `Transfer-Encoding`: actix-http frames by the chunked
//!   coding and keeps the connection alive, so what the `Content-Length` covers beyond the
//!   chunked body is run as a second request.
//! - `Transfer-Encoding` on an HTTP/1.0 request (which has no chunked coding): actix-http
//!   ignores the header and frames by `Content-Length`, or sees no body at all.
//! - `Transfer-Encoding: identity`, which actix-http takes as no coding; a front end that
//!   reads the header as RFC 9112 does cannot know the length.
//!
//! **Request trailers.** Older actix-http releases could not parse a chunked body's trailer
//! section: they took the trailer for a broken connection and dropped it, with no response.
//! hyper (and gunicorn) read such a body and discard the trailer fields. A request that
//! announces a trailer (a `Trailer` header) is answered 400 saying why, before its body is
//! read, whatever actix-http release is linked. One that sends a trailer unannounced is read,
//! and its trailer dropped, by the actix-http this workspace locks (3.19).
//!
//! Each refused request gets 400 and its connection is closed, so nothing that followed on
//! it is read as a request.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::header::{
    CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, TRAILER, TRANSFER_ENCODING,
};
use actix_web::http::{ConnectionType, StatusCode, Version};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

/// Why `req` must be refused, if it must.
pub(crate) fn refusal(req: &HttpRequest) -> Option<&'static str> {
    let headers = req.headers();
    if req.version() > Version::HTTP_11 {
        // HTTP/2 frames bodies itself and forbids Transfer-Encoding.
        return None;
    }
    let mut codings = headers.get_all(TRANSFER_ENCODING);
    let coding = codings.next()?;
    if req.version() < Version::HTTP_11 {
        return Some("Transfer-Encoding in an HTTP/1.0 request");
    }
    if headers.contains_key(CONTENT_LENGTH) {
        return Some("both Content-Length and Transfer-Encoding");
    }
    let only_chunked = codings.next().is_none()
        && coding
            .to_str()
            .is_ok_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
    if !only_chunked {
        return Some("a Transfer-Encoding other than chunked");
    }
    if headers.contains_key(TRAILER) {
        return Some("a trailer section, which actix-web cannot read");
    }
    None
}

/// The 400 answer to a refused request, with a body that makes actix-web drop the
/// connection once the answer has gone out: `Connection: close` alone is not enough,
/// because actix-http has often parsed what followed on the connection already and would
/// still serve it (the smuggled request).
pub(crate) fn refuse(why: &str) -> HttpResponse<Refusal> {
    let text = Bytes::from(format!("Bad Request: {why}\n"));
    let mut response = HttpResponse::with_body(StatusCode::BAD_REQUEST, Refusal::Text(text));
    response
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The body of [`refuse`]: the text, then a turn in which actix-web flushes it, then an
/// error, on which actix-web closes the connection without reading further requests
/// (it logs the error, whose text says so).
#[derive(Debug)]
pub(crate) enum Refusal {
    Text(Bytes),
    Flush,
    Close,
}

/// What ends a refused connection.
#[derive(thiserror::Error)]
#[error("closing the connection of a refused request (not a server fault)")]
pub(crate) struct Refused;

/// actix-web logs the error with `{:?}`: the log line should say what happened.
impl std::fmt::Debug for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl MessageBody for Refusal {
    type Error = Refused;

    fn size(&self) -> BodySize {
        match self {
            Refusal::Text(text) => BodySize::Sized(text.len() as u64),
            _ => BodySize::Sized(0),
        }
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Refused>>> {
        match std::mem::replace(&mut *self, Refusal::Close) {
            Refusal::Text(text) => {
                *self = Refusal::Flush;
                Poll::Ready(Some(Ok(text)))
            }
            // actix-web writes its buffer out when the body is pending.
            Refusal::Flush => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Refusal::Close => Poll::Ready(Some(Err(Refused))),
        }
    }
}
