//! One request on its way from the host to the application: what a runner is handed.

use std::sync::Arc;
use std::time::Instant;

use crate::environ::CgiVars;
use crate::input::InputSource;
use crate::pipe::PipeTx;
use crate::state::InFlight;

/// A request as plain data (its CGI variables and body source) plus the pipe its response
/// goes into; whoever runs it owes the pipe a head, and the body and its end.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) enqueued: Instant,
    pub(crate) vars: CgiVars,
    pub(crate) input: InputSource,
    pub(crate) content_length: Option<u64>,
    pub(crate) tx: Arc<PipeTx>,
    pub(crate) in_flight: InFlight,
}
