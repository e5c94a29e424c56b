//! The elastic pool: when a pool of worker processes between a minimum and a maximum grows
//! by one, and which worker it retires.
//!
//! | here | Passenger | uWSGI (`cheaper`) | gunicorn |
//! |---|---|---|---|
//! | `min` | `passenger_min_instances` (1) | `cheaper` | — (fixed `--workers`) |
//! | `max` | `passenger_max_pool_size` (6) | `workers` | — |
//! | `grow_after` | (spawns when every process is busy) | `cheaper-overload` (seconds all busy) | — |
//! | `idle_after` | `passenger_pool_idle_time` (300 s) | `cheaper-idle` (spare2) | — |
//! | `spawn_interval` | — | `cheaper-step` per master cycle | — |
//!
//! - **Growth follows measured waiting**, not a guess at load: the pool grows when the
//!   oldest request still queued in the host has waited `grow_after` for a thread. Every
//!   thread busy is not enough (a pool that keeps up with its load is busy and needs nothing),
//!   and a queue that empties quickly costs a fork for nothing.
//! - **One fork at a time, and at most one per `spawn_interval`**: a worker still starting
//!   already answers the wait it was started for; growing again before it serves would
//!   overshoot (uWSGI's `cheaper-step` caps the same thing per cycle).
//! - **Retirement after `idle_after` without a request** (Passenger's default of 300 s):
//!   the worker idle the longest goes first, one per decision, never below `min`, and
//!   never while requests are queued.
//! - **Below the minimum** (a worker that crashed and whose replacement has not started,
//!   or the start), the pool grows whatever the queue says.

use std::time::{Duration, Instant};

/// Passenger's `passenger_pool_idle_time` default.
pub(crate) const DEFAULT_IDLE_AFTER: Duration = Duration::from_secs(300);

/// How long the oldest queued request waits before the pool grows, unless configured.
pub(crate) const DEFAULT_GROW_AFTER: Duration = Duration::from_millis(50);

/// The shortest time between two forks, unless configured.
pub(crate) const DEFAULT_SPAWN_INTERVAL: Duration = Duration::from_millis(100);

/// The operator's pool bounds and pace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Elastic {
    /// Workers always kept (at least 1 with worker processes; checked by the builder).
    pub(crate) min: usize,
    /// Workers never exceeded.
    pub(crate) max: usize,
    /// Queue wait of the oldest queued request that makes the pool grow.
    pub(crate) grow_after: Duration,
    /// Time without a request after which a worker above `min` retires.
    pub(crate) idle_after: Duration,
    /// The shortest time between two starts.
    pub(crate) spawn_interval: Duration,
}

/// A worker as the decision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Serving<W> {
    /// The caller's name for it.
    pub(crate) worker: W,
    /// Since when it has had no request; `None` while it has one.
    pub(crate) idle_since: Option<Instant>,
}

/// The pool at one moment.
#[derive(Debug, Clone)]
pub(crate) struct PoolState<'a, W> {
    pub(crate) now: Instant,
    /// Workers ready and serving.
    pub(crate) serving: &'a [Serving<W>],
    /// Workers started and not yet ready.
    pub(crate) starting: usize,
    /// How long the oldest queued request has waited; `None` with an empty queue.
    pub(crate) oldest_wait: Option<Duration>,
    /// When the last start began.
    pub(crate) last_start: Option<Instant>,
}

/// What the pool should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision<W> {
    /// Nothing.
    Hold,
    /// Start one more worker, and why.
    Grow(Grow),
    /// Retire this worker, idle for `idle_after` or longer.
    Retire(W),
}

/// Why the pool grows, as a metric label and log word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grow {
    /// Fewer workers than the minimum.
    BelowMinimum,
    /// The oldest queued request waited this long.
    QueueWait(Duration),
}

impl Grow {
    /// Every label, in the order of [`Grow::index`], so that each counter exists from 0
    /// (a counter that appears at its first increment breaks `rate()` queries).
    pub(crate) const LABELS: [&'static str; 2] = ["minimum", "queue_wait"];

    /// The label of the `reason` in metrics and logs.
    pub(crate) fn label(self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// Its place in [`Grow::LABELS`].
    pub(crate) fn index(self) -> usize {
        match self {
            Grow::BelowMinimum => 0,
            Grow::QueueWait(_) => 1,
        }
    }
}

/// Why a worker retires, as labels: only idleness retires one for now.
pub(crate) const RETIRE_LABELS: [&str; 1] = ["idle"];

/// When the decision may next change without anything but time passing, and whether it
/// also waits for the queue to stop being empty: what the pool's thread waits for between
/// two decisions, so that it sleeps instead of polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Look {
    /// Decide again then, whatever else happens.
    pub(crate) at: Option<Instant>,
    /// Decide again as soon as a request is queued: the pool could grow, and the queue is
    /// empty now, so nothing else marks the start of a wait.
    pub(crate) on_queue: bool,
}

impl Elastic {
    /// A pool of `min..=max` workers with the default pace (`0..=0` when Python runs in
    /// the host process, which has no pool).
    pub(crate) fn new(min: usize, max: usize) -> Self {
        Elastic {
            min,
            max: max.max(min),
            grow_after: DEFAULT_GROW_AFTER,
            idle_after: DEFAULT_IDLE_AFTER,
            spawn_interval: DEFAULT_SPAWN_INTERVAL,
        }
    }

    /// Whether the pool changes size at all.
    pub(crate) fn is_fixed(&self) -> bool {
        self.min == self.max
    }

    /// What to do, given the pool as it is now.
    pub(crate) fn decide<W: Copy>(&self, pool: &PoolState<'_, W>) -> Decision<W> {
        let alive = pool.serving.len() + pool.starting;
        if alive < self.min {
            return Decision::Grow(Grow::BelowMinimum);
        }
        if let Some(waited) = pool.oldest_wait {
            let paced = pool
                .last_start
                .is_none_or(|at| pool.now.saturating_duration_since(at) >= self.spawn_interval);
            if waited >= self.grow_after && alive < self.max && pool.starting == 0 && paced {
                return Decision::Grow(Grow::QueueWait(waited));
            }
            return Decision::Hold;
        }
        if alive <= self.min {
            return Decision::Hold;
        }
        pool.serving
            .iter()
            .filter_map(|s| s.idle_since.map(|since| (since, s.worker)))
            .filter(|(since, _)| pool.now.saturating_duration_since(*since) >= self.idle_after)
            .min_by_key(|(since, _)| *since)
            .map_or(Decision::Hold, |(_, worker)| Decision::Retire(worker))
    }

    /// When to decide again after [`decide`](Self::decide) held on `pool`. Besides this,
    /// whoever waits must be told when a worker becomes ready or ends (the counts change).
    ///
    /// Retirement needs no other signal: a worker idle now retires at its `idle_since +
    /// idle_after`, and one that becomes idle later (or once the queue empties: while
    /// requests wait, no worker that takes them is idle) not before `now + idle_after`.
    pub(crate) fn next_look<W: Copy>(&self, pool: &PoolState<'_, W>) -> Look {
        let alive = pool.serving.len() + pool.starting;
        let mut look = Look {
            at: None,
            on_queue: false,
        };
        // A worker still starting is waited for by its ready signal, not by time.
        if alive < self.max && pool.starting == 0 {
            match pool.oldest_wait {
                Some(waited) => {
                    let waited_enough = pool.now + self.grow_after.saturating_sub(waited);
                    let paced = pool
                        .last_start
                        .map_or(pool.now, |at| at + self.spawn_interval);
                    look.at = Some(waited_enough.max(paced));
                }
                None => look.on_queue = true,
            }
        }
        if alive > self.min {
            let later = pool.now + self.idle_after;
            let retire_at = match pool.oldest_wait {
                Some(_) => later,
                None => pool
                    .serving
                    .iter()
                    .filter_map(|s| s.idle_since)
                    .map(|since| since + self.idle_after)
                    .min()
                    .unwrap_or(later),
            };
            look.at = Some(look.at.map_or(retire_at, |at| at.min(retire_at)));
        }
        look
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn idle(worker: usize, since: Instant) -> Serving<usize> {
        Serving {
            worker,
            idle_since: Some(since),
        }
    }

    fn busy(worker: usize) -> Serving<usize> {
        Serving {
            worker,
            idle_since: None,
        }
    }

    fn state(now: Instant, serving: &[Serving<usize>]) -> PoolState<'_, usize> {
        PoolState {
            now,
            serving,
            starting: 0,
            oldest_wait: None,
            last_start: None,
        }
    }

    #[test]
    fn a_pool_below_its_minimum_grows_whatever_the_queue() {
        let pool = Elastic::new(2, 4);
        let now = Instant::now();
        let serving = [idle(0, now)];
        assert_eq!(
            pool.decide(&state(now, &serving)),
            Decision::Grow(Grow::BelowMinimum)
        );
    }

    #[test]
    fn a_queue_that_waited_long_enough_grows_the_pool_by_one() {
        let pool = Elastic::new(1, 4);
        let now = Instant::now();
        let serving = [busy(0)];
        let mut s = state(now, &serving);
        s.oldest_wait = Some(10 * MS);
        assert_eq!(
            pool.decide(&s),
            Decision::Hold,
            "10 ms is no reason to fork"
        );
        s.oldest_wait = Some(60 * MS);
        assert_eq!(pool.decide(&s), Decision::Grow(Grow::QueueWait(60 * MS)));
    }

    #[test]
    fn no_second_start_while_one_is_starting_or_within_the_interval() {
        let pool = Elastic::new(1, 4);
        let now = Instant::now() + Duration::from_secs(1);
        let serving = [busy(0), busy(1)];
        let mut s = state(now, &serving);
        s.oldest_wait = Some(Duration::from_secs(1));
        s.starting = 1;
        assert_eq!(pool.decide(&s), Decision::Hold);
        s.starting = 0;
        s.last_start = Some(now - 40 * MS);
        assert_eq!(pool.decide(&s), Decision::Hold);
        s.last_start = Some(now - 100 * MS);
        assert!(matches!(pool.decide(&s), Decision::Grow(_)));
    }

    #[test]
    fn the_pool_never_grows_past_its_maximum() {
        let pool = Elastic::new(1, 2);
        let now = Instant::now();
        let serving = [busy(0), busy(1)];
        let mut s = state(now, &serving);
        s.oldest_wait = Some(Duration::from_secs(5));
        assert_eq!(pool.decide(&s), Decision::Hold);
    }

    #[test]
    fn the_longest_idle_worker_above_the_minimum_retires_after_the_idle_time() {
        let pool = Elastic::new(1, 4);
        let start = Instant::now();
        let now = start + Duration::from_secs(400);
        let serving = [
            idle(0, start + Duration::from_secs(200)),
            idle(1, start),
            busy(2),
        ];
        assert_eq!(pool.decide(&state(now, &serving)), Decision::Retire(1));
        let early = start + Duration::from_secs(299);
        assert_eq!(pool.decide(&state(early, &serving)), Decision::Hold);
    }

    #[test]
    fn no_worker_retires_at_the_minimum_or_while_requests_wait() {
        let pool = Elastic::new(2, 4);
        let start = Instant::now();
        let now = start + Duration::from_secs(1000);
        let two = [idle(0, start), idle(1, start)];
        assert_eq!(pool.decide(&state(now, &two)), Decision::Hold);
        let three = [idle(0, start), idle(1, start), busy(2)];
        let mut s = state(now, &three);
        s.oldest_wait = Some(MS);
        assert_eq!(pool.decide(&s), Decision::Hold);
    }

    #[test]
    fn an_empty_queue_is_watched_only_while_the_pool_can_grow() {
        let pool = Elastic::new(1, 2);
        let now = Instant::now();
        let one = [idle(0, now)];
        assert_eq!(
            pool.next_look(&state(now, &one)),
            Look {
                at: None,
                on_queue: true
            },
            "a fixed-size moment: nothing to wait for but a request"
        );
        let two = [busy(0), busy(1)];
        let full = pool.next_look(&state(now, &two));
        assert!(!full.on_queue, "at its maximum the pool cannot grow");
        assert_eq!(full.at, Some(now + DEFAULT_IDLE_AFTER));
        let two_to_four = Elastic::new(2, 4);
        let mut starting = state(now, &one);
        starting.starting = 1;
        assert_eq!(
            two_to_four.next_look(&starting),
            Look {
                at: None,
                on_queue: false
            },
            "a starting worker's ready signal is what is waited for"
        );
    }

    #[test]
    fn the_next_look_is_when_the_oldest_request_will_have_waited_enough_and_the_pace_allows() {
        let pool = Elastic::new(1, 4);
        let now = Instant::now() + Duration::from_secs(1);
        let serving = [busy(0)];
        let mut s = state(now, &serving);
        s.oldest_wait = Some(20 * MS);
        assert_eq!(pool.next_look(&s).at, Some(now + 30 * MS));
        s.last_start = Some(now - 10 * MS);
        assert_eq!(
            pool.next_look(&s).at,
            Some(now + 90 * MS),
            "the spawn interval"
        );
    }

    #[test]
    fn the_next_look_for_retirement_is_the_longest_idle_workers_time() {
        let pool = Elastic::new(1, 4);
        let start = Instant::now();
        let now = start + Duration::from_secs(10);
        let serving = [idle(0, start + Duration::from_secs(5)), idle(1, start)];
        let look = pool.next_look(&state(now, &serving));
        assert_eq!(look.at, Some(start + DEFAULT_IDLE_AFTER));
        // Nothing idle: no worker can retire before a full idle time from now.
        let busy = [busy(0), busy(1)];
        let mut s = state(now, &busy);
        s.oldest_wait = None;
        assert_eq!(
            pool.next_look(&s)
                .at
                .map(|at| at.min(now + DEFAULT_IDLE_AFTER)),
            Some(now + DEFAULT_IDLE_AFTER)
        );
    }

    #[test]
    fn after_a_hold_the_next_look_is_never_already_past() {
        // The thread waits until `at`: one in the past would spin.
        let pool = Elastic::new(1, 3);
        let start = Instant::now();
        for step in 0..400u64 {
            let now = start + Duration::from_millis(step * 7);
            let serving = [idle(0, start), busy(1)];
            for oldest_wait in [None, Some(Duration::from_millis(step % 90))] {
                for last_start in [None, Some(start + Duration::from_millis(step * 5))] {
                    let mut s = state(now, &serving);
                    s.oldest_wait = oldest_wait;
                    s.last_start = last_start.filter(|&at| at <= now);
                    if pool.decide(&s) == Decision::Hold
                        && let Some(at) = pool.next_look(&s).at
                    {
                        assert!(at > now, "{s:?}: look at {at:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_minimum_above_the_maximum_is_raised_to_it() {
        let pool = Elastic::new(3, 1);
        assert_eq!((pool.min, pool.max), (3, 3));
        assert!(pool.is_fixed());
    }
}
