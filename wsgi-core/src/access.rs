//! The access log: one line per request, under the `tracing` target `wsgi_core::access`,
//! written when the response body has ended (or was cut), so a streamed response's
//! duration and byte count are the real ones. Both adapters get it from the engine.
//!
//! Format (the message of an INFO event):
//! `METHOD URI STATUS BYTES bytes DURATION ms PEER[ (response aborted| cut short)]`.

use std::net::SocketAddr;
use std::time::Instant;

use http::{Method, StatusCode};

/// The `tracing` target of access-log lines.
pub const ACCESS_TARGET: &str = "wsgi_core::access";

/// What a line needs, captured when the request arrives.
#[derive(Debug)]
pub(crate) struct AccessLine {
    method: Method,
    uri: String,
    peer: Option<SocketAddr>,
    start: Instant,
    pub(crate) status: StatusCode,
    pub(crate) bytes: u64,
}

/// How a response ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Complete,
    Aborted,
    CutShort,
}

impl AccessLine {
    /// `None` when nobody listens, so a quiet server pays nothing per request.
    pub(crate) fn start(
        method: &Method,
        uri: &http::Uri,
        peer: Option<SocketAddr>,
    ) -> Option<Box<Self>> {
        if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
            return None;
        }
        Some(Box::new(AccessLine {
            method: method.clone(),
            uri: uri
                .path_and_query()
                .map_or_else(|| uri.to_string(), |pq| pq.as_str().to_owned()),
            peer,
            start: Instant::now(),
            status: StatusCode::OK,
            bytes: 0,
        }))
    }

    pub(crate) fn emit(&self, outcome: Outcome) {
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let peer = self.peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let note = match outcome {
            Outcome::Complete => "",
            Outcome::Aborted => " (response aborted)",
            Outcome::CutShort => " (cut short)",
        };
        tracing::info!(
            target: ACCESS_TARGET,
            "{} {} {} {} bytes {ms:.1} ms {peer}{note}",
            self.method,
            self.uri,
            self.status.as_u16(),
            self.bytes,
        );
    }
}
