//! Pacing the replacement of workers that crash.
//!
//! A worker that dies at import (a syntax error deployed, a missing module) or on every
//! first request would otherwise be respawned as fast as Python starts, burning a core
//! and flooding the log. The peers answer by stopping: gunicorn halts the whole server
//! when a worker exits with its boot-error code (`gunicorn/arbiter.py`, `HaltServer`
//! "Worker failed to boot"), and Granian exits on "Worker crash loop detected" when a
//! respawned worker dies again within 5.5 seconds (`granian/server/common.py`, and only
//! with `--respawn-failed-workers`; without it any worker exit stops the server). A Rust
//! host that also serves other routes must not exit because its Python part is broken
//! (granian #491), so here the wait grows instead: 0.5 s, doubling to at most 30 s, back
//! to 0.5 s once a worker has stayed up 10 s (it got past start-up, so the next crash is
//! news, not the same loop).
//!
//! Pure arithmetic over the uptime the supervisor reports; no clock is read here.

use std::time::Duration;

/// The first wait, and the wait after a worker that had been stable crashes.
pub(crate) const INITIAL: Duration = Duration::from_millis(500);
/// The longest wait between two attempts.
pub(crate) const MAX: Duration = Duration::from_secs(30);
/// How long a worker must stay up for its crash to start a fresh series.
pub(crate) const STABLE: Duration = Duration::from_secs(10);

/// The wait before each replacement of a crashing worker (one per worker slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    stable: Duration,
    /// The wait the next crash gets.
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL, MAX, STABLE)
    }
}

impl Backoff {
    /// A backoff starting at `initial`, doubling up to `max`, and starting over after a
    /// worker stayed up `stable`.
    pub(crate) fn new(initial: Duration, max: Duration, stable: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            stable,
            next: initial.min(max),
        }
    }

    /// A worker crashed after running for `uptime`: how long to wait before starting its
    /// replacement. Each crash within `stable` of its start doubles the next wait.
    pub(crate) fn on_crash(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.stable {
            self.reset();
        }
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// The wait the next crash would get (for the log line and metrics).
    #[allow(dead_code, reason = "tested; for a future log line")]
    pub(crate) fn next_wait(&self) -> Duration {
        self.next
    }

    /// Starts over, e.g. after the operator asked for a restart (a new deploy may well
    /// have fixed what crashed).
    pub(crate) fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_from_half_a_second_to_thirty() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| b.on_crash(QUICK)).collect();
        assert_eq!(
            waits,
            [
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(16000),
                ms(30000),
                ms(30000),
                ms(30000),
                ms(30000),
            ]
        );
    }

    #[test]
    fn a_worker_that_stayed_up_starts_a_fresh_series() {
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.on_crash(QUICK);
        }
        assert_eq!(b.next_wait(), ms(16000));
        // Just short of stable still counts as the same loop.
        assert_eq!(b.on_crash(STABLE - Duration::from_nanos(1)), ms(16000));
        assert_eq!(b.on_crash(STABLE), ms(500));
        assert_eq!(b.on_crash(QUICK), ms(1000));
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::default();
        b.on_crash(QUICK);
        b.on_crash(QUICK);
        b.reset();
        assert_eq!(b.on_crash(QUICK), ms(500));
    }

    #[test]
    fn custom_bounds_and_no_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::MAX, Duration::MAX);
        for _ in 0..200 {
            b.on_crash(QUICK);
        }
        assert_eq!(b.next_wait(), Duration::MAX);
        // An initial wait above the maximum is capped from the first crash.
        let mut b = Backoff::new(ms(50_000), ms(30_000), STABLE);
        assert_eq!(b.on_crash(QUICK), ms(30_000));
    }
}
