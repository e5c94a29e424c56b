//! The access log and request timing: one line per request, under the `tracing` target
//! `wsgi_core::access`, written when the response body has ended (or was cut), so a
//! streamed response's duration and byte count are the real ones; the same moment feeds
//! the metrics. Both adapters get it from the engine.
//!
//! Format (the message of an INFO event):
//! `METHOD URI STATUS BYTES bytes DURATION ms PEER[ (response aborted| cut short)]`.

use std::cell::RefCell;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode, Uri};

use crate::metrics::Metrics;

/// The `tracing` target of access-log lines.
pub const ACCESS_TARGET: &str = "wsgi_core::access";

/// One request's record, from its arrival to the end of its response body.
#[derive(Debug)]
pub(crate) struct AccessLine {
    /// Captured only when the access log is enabled, so a quiet server does not pay for it.
    /// The URI is the request's own, whose clone shares its bytes: no copy, no allocation.
    log: Option<(Method, Uri, Option<SocketAddr>)>,
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
        let log = tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO)
            .then(|| (method.clone(), uri.clone(), peer));
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
        let note = match outcome {
            Outcome::Complete => "",
            Outcome::Aborted => " (response aborted)",
            Outcome::CutShort => " (cut short)",
        };
        // The line is put together here, into a buffer the thread keeps, with integers
        // written digit by digit: through `format_args!` each part would cost a round of
        // `fmt` machinery, and a per-request access log is worth making cheap.
        LINE.with_borrow_mut(|line| {
            line.clear();
            line.push_str(method.as_str());
            line.push(' ');
            match uri.path_and_query() {
                Some(pq) => line.push_str(pq.as_str()),
                // The authority form (`CONNECT host:port`) has no path.
                None => {
                    let _ = write!(line, "{uri}");
                }
            }
            line.push(' ');
            push_decimal(line, u64::from(self.status.as_u16()));
            line.push(' ');
            push_decimal(line, self.bytes);
            line.push_str(" bytes ");
            push_millis(line, elapsed);
            line.push_str(" ms ");
            push_peer(line, *peer);
            line.push_str(note);
            // A `str` message, not `"{line}"`: a subscriber then takes it as it is rather
            // than through a round of `fmt` (the same text in tracing-subscriber's formats).
            tracing::info!(target: ACCESS_TARGET, message = line.as_str());
        });
    }
}

thread_local! {
    /// The access line being written, kept between requests for its allocation.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `n % 10` is below 10: the cast cannot truncate.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits: always UTF-8, and pushed as one piece rather than char by char.
    out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

/// Appends a duration in milliseconds with one decimal, rounded half up: `12.3`.
fn push_millis(out: &mut String, elapsed: Duration) {
    let tenths = u64::try_from((elapsed.as_micros() + 50) / 100).unwrap_or(u64::MAX);
    push_decimal(out, tenths / 10);
    out.push('.');
    push_decimal(out, tenths % 10);
}

/// Appends the peer's address as `Display` writes it, or `-` when the host gave none.
fn push_peer(out: &mut String, peer: Option<SocketAddr>) {
    match peer {
        Some(SocketAddr::V4(addr)) => {
            for (i, octet) in addr.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u64::from(octet));
            }
            out.push(':');
            push_decimal(out, u64::from(addr.port()));
        }
        Some(addr) => {
            let _ = write!(out, "{addr}");
        }
        None => out.push('-'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut String)) -> String {
        let mut out = String::new();
        f(&mut out);
        out
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for n in [0, 7, 10, 200, 65_535, u64::MAX] {
            assert_eq!(text(|o| push_decimal(o, n)), n.to_string());
        }
    }

    #[test]
    fn millis_have_one_decimal_rounded_half_up() {
        let cases = [
            (0, "0.0"),
            (49, "0.0"),
            (50, "0.1"),
            (1_234, "1.2"),
            (99_950, "100.0"),
        ];
        for (micros, expected) in cases {
            let got = text(|o| push_millis(o, Duration::from_micros(micros)));
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn peers_are_written_as_display_writes_them() {
        for addr in [
            "127.0.0.1:54321",
            "10.0.255.1:80",
            "[::1]:8000",
            "[fe80::1%2]:1",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(text(|o| push_peer(o, Some(addr))), addr.to_string());
        }
        assert_eq!(text(|o| push_peer(o, None)), "-");
    }
}
