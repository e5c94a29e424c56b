//! The HTTP servers that can host the engine, behind one interface: [`Running`].

pub(crate) mod actix;
pub(crate) mod axum;
pub(crate) mod client_errors;
mod tls_listener;

use std::future::Future;
use std::pin::Pin;

/// A running server: a future that ends with it, and a way to stop it
/// (`true`: stop accepting and drain; `false`: close what is left).
pub(crate) struct Running {
    /// Resolves when the server has stopped, with why if it was not asked to.
    pub(crate) done: Pin<Box<dyn Future<Output = Result<(), String>>>>,
    /// Stops the server: gracefully (`true`) or at once (`false`).
    pub(crate) stop: Box<dyn FnMut(bool)>,
}
