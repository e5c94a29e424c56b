//! The in-process runner: the application runs on a pool of Python threads inside the
//! host process, fed from the GIL-aware queue in [`crate::dispatch`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use super::{Refused, Runner};
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
    /// Each slot's Python thread id, for interrupting it; set as the thread runs a request.
    idents: Arc<[AtomicU64]>,
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
        let idents: Arc<[AtomicU64]> = (0..threads).map(|_| AtomicU64::new(0)).collect();
        let handles = python::spawn_threads(
            callable,
            queue.clone(),
            threads,
            shared.clone(),
            idents.clone(),
            app.multiprocess,
        )?;
        Ok(Threads {
            queue,
            shared,
            idents,
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

    fn interrupt(&self, slot: usize, id: u64) {
        let Some(thread) = self.idents.get(slot).map(|t| t.load(Ordering::Acquire)) else {
            return;
        };
        let slot = &self.shared.slots[slot];
        python::interrupt(thread, || slot.lock().as_ref().is_some_and(|r| r.id == id));
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        // Closing the queue ends the threads' loops once it is drained.
        self.queue.close();
    }
}
