//! One request on its way from the host to the application: what a runner is handed, and
//! the check every runner makes as it takes one from the queue.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::environ::CgiVars;
use crate::input::InputSource;
use crate::pipe::{Msg, PipeTx};
use crate::state::{InFlight, Shared};

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
    /// Where the running request is published for timeouts: the host's slot in a worker
    /// process; `None` in-process, where it is the Python thread's own.
    pub(crate) slot: Option<usize>,
    /// In a worker process, what the thread owes the host around the request.
    pub(crate) remote: Option<Box<dyn RemoteJob>>,
}

/// A worker process's side of a request the host sent it: what the Python thread that
/// takes it owes the host besides the response.
pub(crate) trait RemoteJob: Send + std::fmt::Debug {
    /// The application is about to see the request: recorded where the host finds it if
    /// this process dies, so the request is not run again elsewhere.
    fn starting(&self);

    /// The thread is done with the request: says so and sends what is buffered, without
    /// waiting (the GIL is held). True when something is left for [`RemoteJob::finish`].
    fn try_finish(&mut self) -> bool;

    /// Sends what `try_finish` left, waiting for the socket (called without the GIL).
    fn finish(&mut self);
}

impl Shared {
    /// Decides, as a runner takes `job` from the queue, whether it still runs: a request
    /// whose client has gone is dropped, one that waited past `max_queue_wait` is answered
    /// 503. Either way the job is consumed and `false` returned.
    pub(crate) fn admit(&self, job: &Job) -> bool {
        if job.tx.is_gone() {
            tracing::debug!(target: "wsgi_core", "client left while the request was queued; not run");
            return false;
        }
        let waited = job.enqueued.elapsed();
        let metrics = &self.metrics;
        metrics.queue_wait_nanos.fetch_add(
            u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if self.max_queue_wait.is_some_and(|max| waited > max) {
            metrics.rejected_overload.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "wsgi_core", waited_ms = waited.as_millis() as u64, "request waited too long in the queue; answered 503");
            let _ = job.tx.try_send(Msg::Head(
                self.unavailable("the request waited too long for a Python thread"),
            ));
            return false;
        }
        true
    }
}
