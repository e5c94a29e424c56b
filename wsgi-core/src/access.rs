//! The access log and request timing: one line per request, under the `tracing` target
//! `wsgi_core::access`, written when the response body has ended (or was cut), so a
//! streamed response's duration and byte count are the real ones; the same moment feeds
//! the metrics. Both adapters get it from the engine.
//!
//! Format (the message of an INFO event):
//! `METHOD URI STATUS BYTES bytes DURATION ms PEER[ (response aborted| cut short)]`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode};

use crate::metrics::Metrics;

/// The `tracing` target of access-log lines.
pub const ACCESS_TARGET: &str = "wsgi_core::access";

/// One request's record, from its arrival to the end of its response body.
#[derive(Debug)]
pub(crate) struct AccessLine {
    /// Captured only when the access log is enabled, so a quiet server does not pay for it.
    log: Option<(Method, String, Option<SocketAddr>)>,
    metrics: Arc<Metrics>,
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
    pub(crate) fn start(
        method: &Method,
        uri: &http::Uri,
        peer: Option<SocketAddr>,
        metrics: &Arc<Metrics>,
    ) -> Box<Self> {
        let log = tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO).then(|| {
            let uri = uri
                .path_and_query()
                .map_or_else(|| uri.to_string(), |pq| pq.as_str().to_owned());
            (method.clone(), uri, peer)
        });
        Box::new(AccessLine {
            log,
            metrics: metrics.clone(),
            start: Instant::now(),
            status: StatusCode::OK,
            bytes: 0,
        })
    }

    pub(crate) fn emit(&self, outcome: Outcome) {
        let elapsed = self.start.elapsed();
        self.metrics.observe(self.status.as_u16(), elapsed);
        let Some((method, uri, peer)) = &self.log else {
            return;
        };
        let ms = elapsed.as_secs_f64() * 1000.0;
        let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let note = match outcome {
            Outcome::Complete => "",
            Outcome::Aborted => " (response aborted)",
            Outcome::CutShort => " (cut short)",
        };
        tracing::info!(
            target: ACCESS_TARGET,
            "{method} {uri} {} {} bytes {ms:.1} ms {peer}{note}",
            self.status.as_u16(),
            self.bytes,
        );
    }
}
