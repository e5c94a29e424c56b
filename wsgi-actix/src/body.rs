//! The engine's response as an actix-web response.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::{Method, StatusCode, Version};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use http_body::Body as _;
use wsgi_core::{BodyError, WsgiBody};

/// [`WsgiBody`] as an actix-web [`MessageBody`]: chunks stream as the application yields
/// them; an error makes actix-web cut the connection, so a truncated body never looks whole.
#[derive(Debug)]
pub struct ActixBody {
    body: WsgiBody,
    /// actix-web writes the framing headers from `size()`, replacing the application's
    /// `Content-Length`; a HEAD response must still announce the length a GET would get.
    size: Option<BodySize>,
}

impl MessageBody for ActixBody {
    type Error = BodyError;

    fn size(&self) -> BodySize {
        if let Some(size) = self.size {
            return size;
        }
        match self.body.size_hint().exact() {
            Some(n) => BodySize::Sized(n),
            None => BodySize::Stream,
        }
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, BodyError>>> {
        loop {
            return match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
            };
        }
    }
}

/// Rebuilds the engine's response to `req` with actix-web's (http 0.2) types.
pub(crate) fn into_actix(
    req: &HttpRequest,
    response: http::Response<WsgiBody>,
) -> HttpResponse<ActixBody> {
    let (parts, body) = response.into_parts();
    let status =
        StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let size = (req.method() == Method::HEAD).then(|| {
        parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .map_or(BodySize::None, BodySize::Sized)
    });
    let mut out = HttpResponse::with_body(status, ActixBody { body, size });
    if let Some(reason) = parts.extensions.get::<wsgi_core::ReasonPhrase>() {
        out.head_mut().reason = Some(static_phrase(status, reason.as_str()));
    }
    if req.version() < Version::HTTP_11 {
        // HTTP/1.0 has no chunked encoding: a body of unknown length ends with the connection.
        out.head_mut().no_chunking(true);
    }
    let headers = out.headers_mut();
    for (name, value) in &parts.headers {
        if let (Ok(name), Ok(value)) = (
            actix_web::http::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            actix_web::http::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    out
}

/// Distinct reason phrases kept for the life of the process; see [`static_phrase`].
const MAX_PHRASES: usize = 256;

/// `phrase` as the `&'static str` actix-web takes for a reason phrase.
///
/// Each distinct phrase is leaked once and reused. An application that makes up a new
/// phrase for each response (a message in its status line) would leak without end, so past
/// [`MAX_PHRASES`] of them the standard phrase goes out instead, or, for a code without one,
/// the name of its class, which actix-web would otherwise replace with
/// `<unknown status code>`.
fn static_phrase(status: StatusCode, phrase: &str) -> &'static str {
    static PHRASES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut phrases = PHRASES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(&known) = phrases.get(phrase) {
        return known;
    }
    if phrases.len() < MAX_PHRASES {
        let leaked: &'static str = Box::leak(phrase.into());
        phrases.insert(leaked);
        return leaked;
    }
    status
        .canonical_reason()
        .unwrap_or(match status.as_u16() / 100 {
            1 => "Informational",
            2 => "Successful",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        })
}
