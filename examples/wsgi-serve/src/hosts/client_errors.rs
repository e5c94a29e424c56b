//! A client's broken request on an actix-web connection, logged as what it is.
//!
//! actix-http's HTTP/1 dispatcher answers a malformed request (request line, URI, header, a
//! head over its limit) with 400 or 431, and a slow one with 408, closes the connection and
//! logs `ERROR actix_http::h1::dispatcher: stream error: ...`, without saying who sent it.
//! That is the client's mistake, not the server's: a scanner would fill the log with ERROR
//! lines and wake whoever is paged on them, and hyper (the axum host) says nothing at all.
//! actix-web leaves levels to the subscriber's per-target directives, but a directive can
//! only silence that line, not lower it, and the line has no peer. So two pieces:
//!
//! - [`ClientErrors`], a layer of wsgi-serve's subscriber, takes exactly those events (that
//!   target, ERROR, `stream error: `) out of the log and keeps the message for the thread
//!   that emitted it, each actix worker being one thread;
//! - [`on_connect`] gives every connection a [`ConnectionEnd`] in its connection data, which
//!   the dispatcher drops when the connection ends: on the same thread, in the same poll,
//!   right after it logged. It logs the message at DEBUG under the target
//!   [`CLIENT_TARGET`], with the peer.
//!
//! The dispatcher's other ERROR events (a response body that fails, a write of zero bytes)
//! are the server's side and keep their level.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Where actix-http logs the error that ends an HTTP/1 connection.
const DISPATCHER_TARGET: &str = "actix_http::h1::dispatcher";

/// How the dispatcher starts that message.
const STREAM_ERROR: &str = "stream error: ";

/// The target of `wsgi-serve`'s own line about a client's broken request:
/// `--log-level info,wsgi_serve::client=debug` shows them.
pub(crate) const CLIENT_TARGET: &str = "wsgi_serve::client";

thread_local! {
    /// The error the dispatcher last logged on this thread, until its connection ends.
    static ENDED_WITH: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A layer that keeps the dispatcher's `stream error` events out of the log (see the
/// module's documentation); every other event passes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientErrors;

impl<S: Subscriber> Layer<S> for ClientErrors {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        // The target first: for every other event, one comparison that fails at once.
        if meta.target() != DISPATCHER_TARGET || *meta.level() != Level::ERROR {
            return true;
        }
        let mut message = MessageText(None);
        event.record(&mut message);
        match message
            .0
            .as_deref()
            .and_then(|m| m.strip_prefix(STREAM_ERROR))
        {
            Some(error) => {
                ENDED_WITH.set(Some(error.to_owned()));
                false
            }
            None => true,
        }
    }
}

/// An event's `message` field, formatted.
struct MessageText(Option<String>);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// actix-web's `on_connect` callback: gives the connection its [`ConnectionEnd`].
pub(crate) fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<TcpStream>;
    let peer = if let Some(tcp) = connection.downcast_ref::<TcpStream>() {
        tcp.peer_addr().ok()
    } else if let Some(tls) = connection.downcast_ref::<Tls>() {
        tls.get_ref().0.peer_addr().ok()
    } else {
        None
    };
    data.insert(ConnectionEnd { peer });
}

/// Logs, when a connection ends, the error its dispatcher reported just before, if any.
pub(crate) struct ConnectionEnd {
    peer: Option<SocketAddr>,
}

impl Drop for ConnectionEnd {
    fn drop(&mut self) {
        if let Some(error) = ENDED_WITH.take() {
            match self.peer {
                Some(peer) => tracing::debug!(
                    target: CLIENT_TARGET,
                    %peer,
                    "connection closed after a client error: {error}"
                ),
                None => tracing::debug!(
                    target: CLIENT_TARGET,
                    "connection closed after a client error: {error}"
                ),
            }
        }
    }
}
