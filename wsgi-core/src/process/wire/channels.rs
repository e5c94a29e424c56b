//! The ends of what joins the host and one worker process, as each side holds them.

use std::os::unix::net::UnixStream;

use super::started::StartedPage;

/// One side's ends of what joins the host and a worker process.
#[derive(Debug)]
pub(crate) struct Channels {
    /// Configuration, logs, readiness, interrupts and cancellations.
    pub(crate) control: UnixStream,
    /// Requests, host to worker, for whichever of the worker's threads is free.
    pub(crate) intake: UnixStream,
    /// One socket per slot: a request's body (asked for and sent) and its response.
    pub(crate) slots: Vec<UnixStream>,
    /// Which request each slot's thread has handed to the application.
    pub(crate) started: StartedPage,
}
