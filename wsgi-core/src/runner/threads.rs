//! The in-process runner: the application runs on a pool of Python threads inside the
//! host process, fed from the GIL-aware queue in [`crate::dispatch`].

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Refused, Runner};
use crate::busy;
use crate::config::AppConfig;
use crate::dispatch::{Dispatch, TrySendError};
use crate::error::Error;
use crate::job::Job;
use crate::python;
use crate::state::Shared;

/// Python threads in this process, one per watchdog slot of `shared`.
#[derive(Debug)]
pub(crate) struct Threads {
    queue: Arc<Dispatch<Job>>,
    shared: Arc<Shared>,
    /// Detached rather than joined on drop, so dropping an engine never blocks the host.
    _handles: Vec<JoinHandle<()>>,
}

impl Threads {
    /// Loads the application (starting the interpreter if needed) and starts the threads.
    pub(crate) fn start(
        app: &AppConfig,
        queue_depth: usize,
        shared: Arc<Shared>,
    ) -> Result<Self, Error> {
        let callable = python::load_app(app)?;
        let threads = shared.slots.len();
        let queue = Arc::new(Dispatch::new(queue_depth, threads));
        let handles = python::spawn_threads(
            callable,
            queue.clone(),
            threads,
            shared.clone(),
            app.multiprocess,
        )?;
        Ok(Threads {
            queue,
            shared,
            _handles: handles,
        })
    }
}

impl Runner for Threads {
    fn submit(&self, job: Job) -> Result<(), Refused> {
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full => Refused::Full,
            TrySendError::Closed => Refused::Closed,
        })
    }

    fn queued(&self) -> usize {
        self.queue.len()
    }

    fn close(&self) {
        self.queue.close();
    }

    fn interrupt(&self, slot: usize, id: u64, timeout: Duration) {
        let found = python::interrupt(|| self.shared.running(slot, id));
        busy::log_timed_out(timeout, found.as_ref());
    }

    fn stuck(&self, slot: usize, id: u64) {
        // The stuck thread may hold the GIL (C code that never releases it): the watchdog
        // must not wait for it.
        let shared = self.shared.clone();
        busy::spawn_report(move || {
            let found = python::stack_of_request(|| shared.running(slot, id));
            busy::log_stuck(found.as_ref());
        });
    }

    fn log_busy_threads(&self) {
        let shared = self.shared.clone();
        busy::spawn_report(move || python::log_busy_threads(&shared));
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        // Closing the queue ends the threads' loops once it is drained.
        self.queue.close();
    }
}
