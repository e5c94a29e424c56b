//! Request timeouts that free the thread.
//!
//! Whatever runs a request publishes it in a [`Slot`](crate::state::Slot). A watchdog thread answers a
//! request that overran (504, or an aborted body if its head went out) and then asks the
//! runner to stop it ([`Runner::interrupt`]: `wsgi_core.RequestTimeout` raised inside the
//! Python thread with `PyThreadState_SetAsyncExc`, as mod_wsgi's `request-timeout` does),
//! so the view stops at its next Python instruction and its iterable's `close()` still
//! runs. A thread blocked in C code cannot be interrupted that way; it is reported (log
//! and metrics) and the rest of the pool keeps serving. The runner writes both log lines,
//! since only it can take the thread's Python stack (in a worker process, the worker).

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::error::Error;
use crate::response::Head;
use crate::runner::Runner;
use crate::state::{Shared, Stage};

/// How long a timed-out thread gets to unwind before it counts as stuck.
fn stuck_after(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(1))
}

/// Starts the watchdog thread; it ends when the engine is dropped.
pub(crate) fn start(
    shared: Weak<Shared>,
    runner: Weak<dyn Runner>,
    timeout: Duration,
) -> Result<(), Error> {
    std::thread::Builder::new()
        .name("wsgi-watchdog".into())
        .spawn(move || watch(shared, runner, timeout))
        .map(drop)
        .map_err(Error::Thread)
}

fn watch(shared: Weak<Shared>, runner: Weak<dyn Runner>, timeout: Duration) {
    let tick = (timeout / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
    loop {
        std::thread::sleep(tick);
        let (Some(shared), Some(runner)) = (shared.upgrade(), runner.upgrade()) else {
            return;
        };
        let now = Instant::now();
        for (index, slot) in shared.slots.iter().enumerate() {
            let mut guard = slot.lock();
            let Some(running) = guard.as_mut() else {
                continue;
            };
            match running.stage {
                Stage::Running if running.deadline.is_some_and(|d| now >= d) => {
                    running.stage = Stage::TimedOut;
                    let (id, tx) = (running.id, running.tx.clone());
                    drop(guard);
                    shared.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
                    tx.override_with(
                        || Head::plain(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n"),
                        "request timed out",
                    );
                    runner.interrupt(index, id, timeout);
                }
                Stage::TimedOut
                    if running
                        .deadline
                        .is_some_and(|d| now >= d + stuck_after(timeout)) =>
                {
                    running.stage = Stage::Stuck;
                    let id = running.id;
                    drop(guard);
                    shared.metrics.stuck_threads.fetch_add(1, Ordering::Relaxed);
                    runner.stuck(index, id);
                }
                _ => {}
            }
        }
    }
}
