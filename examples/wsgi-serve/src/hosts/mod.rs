//! The HTTP servers that can host the engine, behind one interface: [`Running`].

pub(crate) mod actix;
pub(crate) mod axum;
mod axum_front;
pub(crate) mod client_errors;
mod tls_listener;

use std::future::Future;
use std::pin::Pin;

use crate::health::Health;

/// What the hosts answer before the application: the health paths and the drain.
#[derive(Debug, Clone)]
pub(crate) struct Front {
    /// Readiness, and whether a stop has begun.
    pub(crate) health: Health,
    /// The prefix of `/livez` and `/readyz` on the application's listeners, if served there.
    pub(crate) health_path: Option<String>,
    /// Whether responses may be sent while draining (`--shutdown-delay`), and so must ask
    /// HTTP/1 clients to close.
    pub(crate) drains: bool,
}

impl Front {
    /// Whether anything is answered before the application.
    pub(crate) fn is_needed(&self) -> bool {
        self.health_path.is_some() || self.drains
    }
}

/// A running server: a future that ends with it, and a way to stop it
/// (`true`: stop accepting and drain; `false`: close what is left).
pub(crate) struct Running {
    /// Resolves when the server has stopped, with why if it was not asked to.
    pub(crate) done: Pin<Box<dyn Future<Output = Result<(), String>>>>,
    /// Stops the server: gracefully (`true`) or at once (`false`).
    pub(crate) stop: Box<dyn FnMut(bool)>,
}
