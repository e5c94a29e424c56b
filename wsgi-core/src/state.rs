//! What the host-facing engine and its runner share: the in-flight count that shutdown
//! waits on, the counters, the watchdog's slots and the limits every runner applies the
//! same way when it takes a job from the queue.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::{HeaderValue, StatusCode, header};

use crate::busy::Busy;
use crate::metrics::Metrics;
use crate::pipe::PipeTx;
use crate::response::Head;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) closing: AtomicBool,
    /// Set when shutdown's grace period ran out, to free senders parked on backpressure.
    pub(crate) force_close: Arc<AtomicBool>,
    in_flight: Mutex<Counted>,
    /// Notified when the count falls to zero while someone waits for that.
    idle: Condvar,
    completed: AtomicUsize,
    pub(crate) metrics: Arc<Metrics>,
    /// One per place a request can run (a Python thread; in the host of worker processes,
    /// a request a worker holds): what it runs, for the watchdog and the reports.
    pub(crate) slots: Box<[Slot]>,
    next_id: AtomicU64,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_queue_wait: Option<Duration>,
    pub(crate) body_timeout: Option<Duration>,
    pub(crate) retry_after: u32,
}

/// The requests in flight, and how many callers of [`Shared::wait_idle`] wait for none.
#[derive(Debug, Default)]
struct Counted {
    n: usize,
    /// std's `Condvar` makes a system call for every notify, waiter or not; requests fall
    /// to zero in flight after nearly every request at low load, while shutdown is the only
    /// waiter: notify only when it waits.
    waiters: usize,
}

/// The limits that [`Shared`] carries for the runners.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_queue_wait: Option<Duration>,
    pub(crate) body_timeout: Option<Duration>,
    pub(crate) retry_after: u32,
}

impl Shared {
    pub(crate) fn new(slots: usize, limits: Limits) -> Self {
        Shared {
            closing: AtomicBool::new(false),
            force_close: Arc::new(AtomicBool::new(false)),
            in_flight: Mutex::new(Counted::default()),
            idle: Condvar::new(),
            completed: AtomicUsize::new(0),
            metrics: Arc::new(Metrics::default()),
            slots: (0..slots).map(|_| Slot::default()).collect(),
            next_id: AtomicU64::new(0),
            timeout: limits.timeout,
            max_queue_wait: limits.max_queue_wait,
            body_timeout: limits.body_timeout,
            retry_after: limits.retry_after,
        }
    }

    /// A fresh request id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The 503 answer to a request that cannot be served now.
    pub(crate) fn unavailable(&self, why: &str) -> Head {
        let mut head = Head::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("Service Unavailable: {why}\n"),
        );
        head.headers
            .insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after));
        head
    }

    /// What the thread of slot `slot` runs, if that is still request `id`. Call it with the
    /// GIL held, so that the answer stays true while the caller acts on it: a thread
    /// withdraws its request with the GIL held.
    pub(crate) fn running(&self, slot: usize, id: u64) -> Option<Busy> {
        let running = self.slots.get(slot)?.lock();
        running
            .as_ref()
            .filter(|r| r.id == id)
            .and_then(|r| r.busy.clone())
    }

    /// Every busy slot's request, in slot order; with the GIL held, as [`Shared::running`].
    pub(crate) fn busy(&self) -> Vec<Busy> {
        self.slots
            .iter()
            .filter_map(|slot| slot.lock().as_ref().and_then(|r| r.busy.clone()))
            .collect()
    }

    fn lock_in_flight(&self) -> MutexGuard<'_, Counted> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests queued or running, including responses still streaming.
    pub(crate) fn in_flight(&self) -> usize {
        self.lock_in_flight().n
    }

    /// Requests finished since the engine started.
    pub(crate) fn completed(&self) -> usize {
        self.completed.load(Ordering::Relaxed)
    }

    /// Waits until nothing is in flight or `grace` has passed; returns what is left.
    pub(crate) fn wait_idle(&self, grace: Duration) -> usize {
        let deadline = std::time::Instant::now() + grace;
        let mut count = self.lock_in_flight();
        while count.n > 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            count.waiters += 1;
            count = self
                .idle
                .wait_timeout(count, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            count.waiters -= 1;
        }
        count.n
    }
}

/// Counts a request as in flight from queueing until its response is finished on the
/// Python side (including the iterable's `close()`).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Shared>);

impl InFlight {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        shared.lock_in_flight().n += 1;
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut count = self.0.lock_in_flight();
        count.n -= 1;
        self.0.completed.fetch_add(1, Ordering::Relaxed);
        let wake = count.n == 0 && count.waiters > 0;
        drop(count);
        if wake {
            self.0.idle.notify_all();
        }
    }
}

/// What one Python thread is running (in the host of worker processes, one request a
/// worker holds), for the watchdog ([`crate::watchdog`]) and the reports of
/// [`crate::busy`].
#[derive(Debug, Default)]
pub(crate) struct Slot(Mutex<Option<Running>>);

#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) id: u64,
    /// When this process's watchdog answers 504; `None` without a timeout, and in a
    /// worker process, where the host keeps the deadline.
    pub(crate) deadline: Option<Instant>,
    pub(crate) tx: Arc<PipeTx>,
    pub(crate) stage: Stage,
    /// The Python thread running it, and its request line; `None` in the host of worker
    /// processes, which runs no Python.
    pub(crate) busy: Option<Busy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Running,
    /// Answered and interrupted; waiting for the thread to come back.
    TimedOut,
    /// Did not come back within the grace period: reported once.
    Stuck,
}

impl Slot {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::tests::eventually;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(
            1,
            Limits {
                timeout: None,
                max_queue_wait: None,
                body_timeout: None,
                retry_after: 1,
            },
        ))
    }

    #[test]
    fn the_last_request_out_wakes_a_waiting_shutdown_and_nobody_else() {
        let shared = shared();
        // Nobody waits: nothing to wake when the count falls to zero.
        drop(InFlight::new(&shared));
        assert_eq!((shared.in_flight(), shared.completed()), (0, 1));
        let request = InFlight::new(&shared);
        let waiter = {
            let shared = shared.clone();
            // Far longer than the test may take: only the wake-up can end it in time.
            std::thread::spawn(move || shared.wait_idle(Duration::from_secs(3600)))
        };
        eventually("shutdown to wait", || shared.lock_in_flight().waiters == 1);
        drop(request);
        eventually("shutdown to wake", || waiter.is_finished());
        assert_eq!(waiter.join().unwrap(), 0);
        assert_eq!(shared.lock_in_flight().waiters, 0);
    }
}
