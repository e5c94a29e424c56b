//! The pool's thread, `wsgi-pool`, for an elastic pool only: reads the facts the pool is
//! sized on (how long the oldest queued request has waited, which workers run, since when
//! each has had no request), asks [`Elastic::decide`](crate::lifecycle::elastic::Elastic::decide)
//! what to do, and tells a worker's supervisor to start a process or to retire its own.
//! Between two decisions it sleeps until the time
//! [`Elastic::next_look`](crate::lifecycle::elastic::Elastic::next_look) names, or until the
//! pool rings: a worker ready or ended, a request queued while it watches the queue, the
//! engine closing. Starting and draining stay the supervisors' (see [`super::supervisor`]).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Event, Pool};
use crate::lifecycle::elastic::{Decision, Grow, PoolState, Serving};
use crate::process::ids::WorkerId;

/// Sizes `pool` until the engine closes.
pub(super) fn run(pool: &Pool) {
    let mut last_start = None;
    loop {
        // Before the facts are read: a ring while they are is not missed.
        let seen = pool.changed.seen();
        if pool.queue.is_closed() {
            return;
        }
        let now = Instant::now();
        let (serving, starting, oldest) = facts(pool);
        let state = PoolState {
            now,
            serving: &serving,
            starting,
            oldest_wait: oldest.map(|at| now.saturating_duration_since(at)),
            last_start,
        };
        let acted = match pool.elastic.decide(&state) {
            Decision::Grow(why) => {
                let grown = grow(pool, why, serving.len() + starting);
                if grown {
                    last_start = Some(now);
                }
                grown
            }
            Decision::Retire(worker) => {
                let idle = serving
                    .iter()
                    .find(|s| s.worker == worker)
                    .and_then(|s| s.idle_since)
                    .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
                retire(pool, worker, idle, serving.len() + starting);
                true
            }
            Decision::Hold => false,
        };
        if acted {
            continue;
        }
        let look = pool.elastic.next_look(&state);
        // A request queued since the facts were read: decide on it now.
        if look.on_queue && !pool.queue.watch() {
            continue;
        }
        pool.changed.wait_past(seen, look.at);
    }
}

/// The workers the pool runs, as the decision sees them: those with a process that takes
/// requests, with their idleness (none while replaced: the new process is not the one that
/// was idle), and how many others are starting (new, started again after a crash, or paused
/// while their replacement starts); and when the oldest queued request was queued.
fn facts(pool: &Pool) -> (Vec<Serving<WorkerId>>, usize, Option<Instant>) {
    let sample = pool.queue.sample(|job| job.enqueued);
    let mut serving = Vec::with_capacity(pool.workers.len());
    let mut starting = 0;
    for (worker, state) in pool.each_worker() {
        if !state.active.load(Ordering::Acquire) {
            continue;
        }
        let group = pool
            .each_group()
            .find(|(g, group)| group.worker.load() == Some(worker) && sample.groups[g.index()].0);
        match group {
            Some((g, _)) => serving.push(Serving {
                worker,
                idle_since: sample.groups[g.index()]
                    .1
                    .filter(|_| !state.replacing.load(Ordering::Relaxed)),
            }),
            None => starting += 1,
        }
    }
    (serving, starting, sample.oldest)
}

/// Starts a worker the pool does not run, preferably one whose last process has ended (the
/// supervisor of one still draining a retired process starts only once it has exited);
/// whether there was one. `alive`: the workers the pool ran before.
pub(super) fn grow(pool: &Pool, why: Grow, alive: usize) -> bool {
    let inactive = |w: &super::WorkerState| !w.active.load(Ordering::Acquire);
    let ended = pool
        .each_worker()
        .find(|(_, w)| inactive(w) && w.live.load(Ordering::Acquire) == 0);
    let Some((worker, state)) = ended.or_else(|| pool.each_worker().find(|(_, w)| inactive(w)))
    else {
        return false;
    };
    state.active.store(true, Ordering::Release);
    state.send(Event::Start);
    pool.count_start(why, 1);
    let workers = alive + 1;
    match why {
        Grow::QueueWait(waited) => {
            tracing::info!(target: "wsgi_core", worker = worker.index(), workers, reason = why.label(), waited_ms = waited.as_millis() as u64, "pool grows to {workers} workers: oldest request waited {} ms", waited.as_millis());
        }
        Grow::BelowMinimum => {
            tracing::info!(target: "wsgi_core", worker = worker.index(), workers, reason = why.label(), "pool grows to {workers} workers: below its minimum of {}", pool.elastic.min);
        }
    }
    true
}

/// Retires `worker`, idle for `idle`; `alive`: the workers the pool ran before.
pub(super) fn retire(pool: &Pool, worker: WorkerId, idle: Duration, alive: usize) {
    let state = pool.worker(worker);
    state.active.store(false, Ordering::Release);
    state.send(Event::Retire);
    // Idleness is the one reason a worker retires.
    pool.retirements[0].fetch_add(1, Ordering::Relaxed);
    let workers = alive.saturating_sub(1);
    tracing::info!(target: "wsgi_core", worker = worker.index(), workers, reason = crate::lifecycle::elastic::RETIRE_LABELS[0], idle_s = idle.as_secs(), "worker {worker} retired after {} s idle; pool at {workers}", idle.as_secs());
}
