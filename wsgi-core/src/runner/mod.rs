//! Where requests run. The host-facing engine ([`crate::engine`]) keeps the queue's
//! admission, the limits, the timeouts' answers, the access log and the metrics; a runner
//! takes queued [`Job`]s and runs the application on them: on a pool of Python threads in
//! this process ([`threads`]), or in worker processes with a pool each, fed over sockets
//! (`crate::process::host`). The engine sees either only through [`Runner`].

pub(crate) mod threads;

use std::time::Duration;

use crate::job::Job;
use crate::lifecycle::reason::RestartReason;
use crate::metrics::{PoolSnapshot, WorkerSnapshot};

/// Why a runner did not take a job.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The queue is full: the request gets 503.
    Full,
    /// The runner has stopped.
    Closed,
    /// No worker process is ready (starting, or replacing one that died): 503.
    NotReady,
}

/// The interface between the engine and whatever runs the application.
pub(crate) trait Runner: Send + Sync + std::fmt::Debug {
    /// Queues `job` without blocking.
    fn submit(&self, job: Job) -> Result<(), Refused>;

    /// Jobs waiting for a thread.
    fn queued(&self) -> usize;

    /// Stops taking jobs; what is queued still runs.
    fn close(&self);

    /// At the end of a shutdown: stops taking jobs and waits up to `wait` for what runs the
    /// application to end (worker processes exit through their `atexit` handlers).
    /// In-process, nothing: the threads end with the engine.
    fn stop(&self, wait: Duration) {
        let _ = wait;
    }

    /// A shutdown's grace period is over, and the requests still running are abandoned:
    /// whatever holds them back from ending (a worker process busy with one) may be
    /// stopped by force. In-process, nothing: a Python thread cannot be stopped.
    fn abort(&self) {}

    /// Stops the request `id` running in watchdog slot `slot`, which overran `timeout` and
    /// has been answered already, and logs it (WARN) with its thread's Python stack. Must
    /// not hit another request of that slot.
    fn interrupt(&self, slot: usize, id: u64, timeout: Duration);

    /// The request `id` in `slot` is still running well past its timeout: its thread is
    /// blocked where the interrupt cannot reach it. Logs it (ERROR) with the thread's
    /// Python stack.
    fn stuck(&self, slot: usize, id: u64);

    /// Logs every busy Python thread's request and stack ([`crate::Engine::log_busy_threads`]),
    /// without waiting for the GIL.
    fn log_busy_threads(&self);

    /// Restarts the application for `reason`; `false` when this runner cannot (Python in
    /// this process cannot be restarted).
    fn restart(&self, _reason: RestartReason) -> bool {
        false
    }

    /// The worker processes' state, for metrics; none when Python runs in this process.
    fn workers(&self) -> Vec<WorkerSnapshot> {
        Vec::new()
    }

    /// The pool of worker processes, for metrics; none when Python runs in this process.
    fn pool(&self) -> Option<PoolSnapshot> {
        None
    }
}
