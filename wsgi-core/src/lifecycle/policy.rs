//! Recycling: replacing a healthy worker before a leak or fragmentation hurts.
//!
//! An application that leaks a little per request, or whose heap fragments, grows without
//! bound in a long-lived process. The established servers bound that by replacing workers,
//! and this module follows them:
//!
//! | here | gunicorn | Granian | uWSGI | Passenger |
//! |---|---|---|---|---|
//! | `max_requests` | `--max-requests` | — | `max-requests` | `passenger_max_requests` |
//! | `max_requests_jitter` | `--max-requests-jitter` | — | `max-requests-delta` | — |
//! | `max_lifetime` | — | `--workers-lifetime` | `max-worker-lifetime` | — |
//! | `max_lifetime_jitter` | — | — | `max-worker-lifetime-delta` | — |
//! | `max_rss` | — | `--workers-max-rss` | `reload-on-rss` | `passenger_memory_limit` (Enterprise) |
//! | `min_lifetime` | — | — | `min-worker-lifetime` | — |
//!
//! - **Jitter** as gunicorn draws it (`gunicorn/workers/base.py`: `max_requests +
//!   randint(0, max_requests_jitter)`, once per worker at start): workers started together
//!   under even load would otherwise all reach their limit in the same second and restart
//!   together, the capacity dip jitter exists to avoid. The lifetime jitter is drawn the
//!   same way; Granian has none and instead respawns every worker whose age is within 95%
//!   of the lifetime in one sweep (`granian/server/common.py`), uWSGI staggers by worker
//!   index (`worker_id * delta`).
//! - **Minimum lifetime** as uWSGI's `min-worker-lifetime` (default 10 seconds,
//!   `core/uwsgi.c`: "a worker should be running for at least 10 seconds";
//!   [`DEFAULT_MIN_LIFETIME`] takes the same value), but for memory only. A worker whose
//!   memory is over the limit right after start-up (a large import) would otherwise be
//!   replaced in a loop that serves nothing. A request count cannot loop (a new worker
//!   starts at 0), so `max_requests` means N from a worker's first request, as in gunicorn
//!   and Passenger; uWSGI holds its max-requests back too (`core/utils.c`), so a worker
//!   there keeps whatever it leaks in its first 10 seconds. The age limit needs no guard:
//!   [`Recycle::validate`] keeps it at or above the minimum. When workers keep starting over
//!   the memory limit anyway, [`super::rss_loop`] holds memory back longer. Granian has no
//!   such setting but refuses a `--workers-lifetime` below 60 seconds; gunicorn has neither.
//! - **Memory** is compared with `>=` as uWSGI and Granian do (`granian/server/mp.py`:
//!   `wmem >= self.workers_rss`): the limit is the size at which a worker goes.
//! - **All off by default**, as in each of them: recycling is a remedy the operator opts
//!   into, and a recycle costs an application start.

use std::time::Duration;

use super::random::Rng;
use super::reason::RestartReason;

/// How long a worker serves before its memory may get it replaced, unless configured
/// (uWSGI's `min-worker-lifetime` default).
pub(crate) const DEFAULT_MIN_LIFETIME: Duration = Duration::from_secs(10);

/// The operator's recycling settings, shared by every worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recycle {
    /// Requests a worker serves before it is replaced (`None`: no limit).
    pub(crate) max_requests: Option<u64>,
    /// Up to this many requests more, drawn per worker.
    pub(crate) max_requests_jitter: u64,
    /// Age at which a worker is replaced (`None`: no limit).
    pub(crate) max_lifetime: Option<Duration>,
    /// Up to this much longer, drawn per worker.
    pub(crate) max_lifetime_jitter: Duration,
    /// Resident memory, in bytes, at which a worker is replaced (`None`: no limit).
    pub(crate) max_rss: Option<u64>,
    /// Age before which `max_rss` does not replace a worker (the one limit a new worker
    /// can be over at once); `max_lifetime` is kept at or above it.
    pub(crate) min_lifetime: Duration,
}

impl Default for Recycle {
    fn default() -> Self {
        Recycle {
            max_requests: None,
            max_requests_jitter: 0,
            max_lifetime: None,
            max_lifetime_jitter: Duration::ZERO,
            max_rss: None,
            min_lifetime: DEFAULT_MIN_LIFETIME,
        }
    }
}

/// Recycling settings that contradict each other. The names are the builder methods;
/// the engine maps this to its own error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecycleError {
    /// A jitter given without the limit it spreads.
    #[error("{jitter} needs {limit}: jitter spreads a limit, and there is none")]
    JitterWithoutLimit {
        /// The jitter option, e.g. `max-requests-jitter`.
        jitter: &'static str,
        /// The limit it belongs to, e.g. `max-requests`.
        limit: &'static str,
    },
    /// A limit of zero, which would replace workers without end.
    #[error("{option} must be more than 0 (leave it out for no limit)")]
    Zero {
        /// The option, e.g. `max-rss`.
        option: &'static str,
    },
    /// A lifetime shorter than the minimum lifetime, which would silently stretch it.
    #[error(
        "max_lifetime ({max_lifetime:?}) is shorter than min_lifetime ({min_lifetime:?}): \
         lower min_lifetime or raise max_lifetime"
    )]
    LifetimeBelowMinimum {
        /// The configured maximum lifetime.
        max_lifetime: Duration,
        /// The configured minimum lifetime.
        min_lifetime: Duration,
    },
}

impl Recycle {
    /// Whether any limit is set, so the supervisor can skip RSS sampling and budgets.
    pub(crate) fn is_enabled(&self) -> bool {
        self.max_requests.is_some() || self.max_lifetime.is_some() || self.max_rss.is_some()
    }

    /// Rejects settings that cannot mean what the operator wrote.
    pub(crate) fn validate(&self) -> Result<(), RecycleError> {
        if self.max_requests_jitter > 0 && self.max_requests.is_none() {
            return Err(RecycleError::JitterWithoutLimit {
                jitter: "max_requests_jitter",
                limit: "max_requests",
            });
        }
        if !self.max_lifetime_jitter.is_zero() && self.max_lifetime.is_none() {
            return Err(RecycleError::JitterWithoutLimit {
                jitter: "max_lifetime_jitter",
                limit: "max_lifetime",
            });
        }
        if self.max_requests == Some(0) {
            return Err(RecycleError::Zero {
                option: "max_requests",
            });
        }
        if self.max_lifetime == Some(Duration::ZERO) {
            return Err(RecycleError::Zero {
                option: "max_lifetime",
            });
        }
        if self.max_rss == Some(0) {
            return Err(RecycleError::Zero { option: "max_rss" });
        }
        if let Some(max_lifetime) = self.max_lifetime
            && max_lifetime < self.min_lifetime
        {
            return Err(RecycleError::LifetimeBelowMinimum {
                max_lifetime,
                min_lifetime: self.min_lifetime,
            });
        }
        Ok(())
    }
}

/// One worker's limits, drawn from a [`Recycle`] when it is spawned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Budget {
    max_requests: Option<u64>,
    max_lifetime: Option<Duration>,
    max_rss: Option<u64>,
    /// Age before which `max_rss` does not replace this worker: the minimum lifetime, or
    /// longer ([`Budget::hold_rss`]).
    rss_min_age: Duration,
}

impl Budget {
    /// Draws a worker's limits: each maximum plus a jitter in `0..=jitter` (gunicorn's
    /// `randint(0, jitter)`), the lifetime's at nanosecond resolution.
    pub(crate) fn draw(recycle: &Recycle, rng: &mut Rng) -> Budget {
        let max_requests = recycle
            .max_requests
            .map(|max| max.saturating_add(rng.up_to(recycle.max_requests_jitter)));
        let max_lifetime = recycle.max_lifetime.map(|max| {
            let jitter = u64::try_from(recycle.max_lifetime_jitter.as_nanos()).unwrap_or(u64::MAX);
            max.saturating_add(Duration::from_nanos(rng.up_to(jitter)))
        });
        Budget {
            max_requests,
            max_lifetime,
            max_rss: recycle.max_rss,
            rss_min_age: recycle.min_lifetime,
        }
    }

    /// Keeps `max_rss` from replacing this worker before it is `age` old, if that is longer
    /// than the minimum lifetime (a worker that started over the limit, see
    /// [`super::rss_loop`]).
    pub(crate) fn hold_rss(&mut self, age: Duration) {
        self.rss_min_age = self.rss_min_age.max(age);
    }

    /// This worker's request limit, jitter included (for logs and metrics).
    pub(crate) fn max_requests(&self) -> Option<u64> {
        self.max_requests
    }

    /// This worker's age limit, jitter included (for logs and metrics).
    pub(crate) fn max_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }

    /// Whether a worker that has `served` requests, is `age` old and has `rss` resident
    /// bytes (`None`: not measured yet) should be recycled, and why.
    ///
    /// Memory is not due before the minimum lifetime (or [`Budget::hold_rss`]); requests
    /// are due at their limit whatever the age, and age at its limit, which is never under
    /// the minimum. When several limits are reached at once, memory wins (the most urgent,
    /// and the one an operator most wants to see in the metrics), then requests, then age.
    pub(crate) fn due(
        &self,
        served: u64,
        age: Duration,
        rss: Option<u64>,
    ) -> Option<RestartReason> {
        if let (Some(limit), Some(rss)) = (self.max_rss, rss)
            && rss >= limit
            && age >= self.rss_min_age
        {
            return Some(RestartReason::Rss);
        }
        if self.max_requests.is_some_and(|limit| served >= limit) {
            return Some(RestartReason::MaxRequests);
        }
        if self.max_lifetime.is_some_and(|limit| age >= limit) {
            return Some(RestartReason::Lifetime);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn recycle() -> Recycle {
        Recycle {
            min_lifetime: Duration::ZERO,
            ..Recycle::default()
        }
    }

    #[test]
    fn defaults_are_off_with_ten_seconds_minimum() {
        let r = Recycle::default();
        assert!(!r.is_enabled());
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(r.min_lifetime, Duration::from_secs(10));
        let budget = Budget::draw(&r, &mut Rng::with_seed(1));
        // Off means never, however long and busy and big.
        assert_eq!(
            budget.due(u64::MAX, Duration::from_secs(1 << 40), Some(u64::MAX)),
            None
        );
    }

    #[test]
    fn jitter_without_its_limit_is_refused() {
        let r = Recycle {
            max_requests_jitter: 5,
            ..Recycle::default()
        };
        let err = r.validate().unwrap_err();
        assert_eq!(
            err,
            RecycleError::JitterWithoutLimit {
                jitter: "max_requests_jitter",
                limit: "max_requests"
            }
        );
        assert_eq!(
            err.to_string(),
            "max_requests_jitter needs max_requests: jitter spreads a limit, and there is none"
        );
        let r = Recycle {
            max_lifetime_jitter: SEC,
            ..Recycle::default()
        };
        assert!(matches!(
            r.validate(),
            Err(RecycleError::JitterWithoutLimit {
                limit: "max_lifetime",
                ..
            })
        ));
    }

    #[test]
    fn zero_limits_are_refused() {
        for (r, option) in [
            (
                Recycle {
                    max_requests: Some(0),
                    ..recycle()
                },
                "max_requests",
            ),
            (
                Recycle {
                    max_lifetime: Some(Duration::ZERO),
                    ..recycle()
                },
                "max_lifetime",
            ),
            (
                Recycle {
                    max_rss: Some(0),
                    ..recycle()
                },
                "max_rss",
            ),
        ] {
            assert_eq!(r.validate(), Err(RecycleError::Zero { option }));
        }
    }

    #[test]
    fn a_lifetime_under_the_minimum_is_refused_and_equal_is_fine() {
        let r = Recycle {
            max_lifetime: Some(5 * SEC),
            ..Recycle::default()
        };
        let err = r.validate().unwrap_err();
        assert!(matches!(err, RecycleError::LifetimeBelowMinimum { .. }));
        assert!(err.to_string().contains("min_lifetime (10s)"), "{err}");
        let r = Recycle {
            max_lifetime: Some(10 * SEC),
            ..Recycle::default()
        };
        assert_eq!(r.validate(), Ok(()));
    }

    #[test]
    fn without_jitter_the_limits_are_exact() {
        let r = Recycle {
            max_requests: Some(100),
            max_lifetime: Some(60 * SEC),
            max_rss: Some(1 << 20),
            ..recycle()
        };
        assert!(r.is_enabled());
        let b = Budget::draw(&r, &mut Rng::with_seed(3));
        assert_eq!(b.max_requests(), Some(100));
        assert_eq!(b.max_lifetime(), Some(60 * SEC));
        assert_eq!(b.due(99, 59 * SEC, Some((1 << 20) - 1)), None);
        assert_eq!(b.due(100, SEC, None), Some(RestartReason::MaxRequests));
        assert_eq!(b.due(0, 60 * SEC, None), Some(RestartReason::Lifetime));
        assert_eq!(b.due(0, SEC, Some(1 << 20)), Some(RestartReason::Rss));
    }

    #[test]
    fn request_jitter_stays_in_range_and_spreads_workers() {
        let r = Recycle {
            max_requests: Some(1000),
            max_requests_jitter: 50,
            ..recycle()
        };
        let mut rng = Rng::with_seed(11);
        let limits: Vec<u64> = (0..200)
            .map(|_| Budget::draw(&r, &mut rng).max_requests().unwrap())
            .collect();
        assert!(limits.iter().all(|&n| (1000..=1050).contains(&n)));
        // Drawn per worker: 200 draws over 51 values take many distinct ones (a draw
        // shared by all workers, the bug jitter exists to avoid, would give one).
        let mut distinct = limits.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 30, "{distinct:?}");
    }

    #[test]
    fn lifetime_jitter_stays_in_range_and_spreads_workers() {
        let r = Recycle {
            max_lifetime: Some(3600 * SEC),
            max_lifetime_jitter: 600 * SEC,
            ..recycle()
        };
        let mut rng = Rng::with_seed(12);
        let limits: Vec<Duration> = (0..50)
            .map(|_| Budget::draw(&r, &mut rng).max_lifetime().unwrap())
            .collect();
        assert!(limits.iter().all(|d| (3600 * SEC..=4200 * SEC).contains(d)));
        let spread =
            limits.iter().max().unwrap().as_secs() - limits.iter().min().unwrap().as_secs();
        assert!(spread > 300, "{spread}");
    }

    #[test]
    fn the_drawn_limit_is_the_one_due_checks() {
        let r = Recycle {
            max_requests: Some(10),
            max_requests_jitter: 1000,
            ..recycle()
        };
        let b = Budget::draw(&r, &mut Rng::with_seed(5));
        let limit = b.max_requests().unwrap();
        assert!(limit > 10, "seed 5 draws a jitter above zero: {limit}");
        assert_eq!(b.due(limit - 1, SEC, None), None);
        assert_eq!(b.due(limit, SEC, None), Some(RestartReason::MaxRequests));
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let r = Recycle {
            max_requests: Some(u64::MAX),
            max_requests_jitter: u64::MAX,
            max_lifetime: Some(Duration::MAX),
            max_lifetime_jitter: Duration::MAX,
            ..recycle()
        };
        let b = Budget::draw(&r, &mut Rng::with_seed(9));
        assert_eq!(b.max_requests(), Some(u64::MAX));
        assert_eq!(b.max_lifetime(), Some(Duration::MAX));
    }

    fn guarded() -> Budget {
        let r = Recycle {
            max_requests: Some(100),
            max_lifetime: Some(10 * SEC),
            max_rss: Some(1 << 20),
            min_lifetime: 10 * SEC,
            ..Recycle::default()
        };
        assert_eq!(r.validate(), Ok(()));
        Budget::draw(&r, &mut Rng::with_seed(1))
    }

    #[test]
    fn requests_are_due_at_their_limit_before_the_minimum_lifetime() {
        let b = guarded();
        // gunicorn's N: the 100th request in the worker's first second replaces it.
        assert_eq!(b.due(99, SEC, None), None);
        assert_eq!(b.due(100, SEC, None), Some(RestartReason::MaxRequests));
        assert_eq!(
            b.due(100, Duration::ZERO, None),
            Some(RestartReason::MaxRequests)
        );
    }

    #[test]
    fn memory_is_not_due_before_the_minimum_lifetime() {
        let b = guarded();
        let just_before = 10 * SEC - Duration::from_nanos(1);
        assert_eq!(b.due(0, just_before, Some(u64::MAX)), None);
        assert_eq!(b.due(0, 10 * SEC, Some(u64::MAX)), Some(RestartReason::Rss));
        // Requests do not wait for memory's minimum; memory still wins once due.
        assert_eq!(
            b.due(100, just_before, Some(u64::MAX)),
            Some(RestartReason::MaxRequests)
        );
        assert_eq!(
            b.due(100, 10 * SEC, Some(u64::MAX)),
            Some(RestartReason::Rss)
        );
    }

    #[test]
    fn the_lifetime_is_due_at_its_limit_as_before() {
        let b = guarded();
        assert_eq!(b.due(0, 10 * SEC - Duration::from_nanos(1), None), None);
        assert_eq!(b.due(0, 10 * SEC, None), Some(RestartReason::Lifetime));
    }

    #[test]
    fn holding_memory_back_stretches_only_memory_and_never_shortens() {
        let mut b = guarded();
        b.hold_rss(40 * SEC);
        assert_eq!(
            b.due(0, 39 * SEC, Some(u64::MAX)),
            Some(RestartReason::Lifetime)
        );
        assert_eq!(b.due(0, 40 * SEC, Some(u64::MAX)), Some(RestartReason::Rss));
        assert_eq!(
            b.due(100, SEC, Some(u64::MAX)),
            Some(RestartReason::MaxRequests)
        );
        let mut b = guarded();
        b.hold_rss(SEC);
        assert_eq!(b.due(0, 5 * SEC, Some(u64::MAX)), None);
    }

    #[test]
    fn memory_wins_then_requests_then_age() {
        let r = Recycle {
            max_requests: Some(10),
            max_lifetime: Some(60 * SEC),
            max_rss: Some(100),
            ..recycle()
        };
        let b = Budget::draw(&r, &mut Rng::with_seed(1));
        assert_eq!(b.due(10, 60 * SEC, Some(100)), Some(RestartReason::Rss));
        assert_eq!(
            b.due(10, 60 * SEC, Some(99)),
            Some(RestartReason::MaxRequests)
        );
        assert_eq!(b.due(10, 60 * SEC, None), Some(RestartReason::MaxRequests));
        assert_eq!(b.due(9, 60 * SEC, None), Some(RestartReason::Lifetime));
    }
}
