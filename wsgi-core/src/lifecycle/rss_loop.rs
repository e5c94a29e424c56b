//! Workers that are over `max_rss` as soon as they start: a limit the application cannot
//! meet.
//!
//! The minimum lifetime ([`super::policy`]) keeps a worker over the memory limit right after
//! start-up from being replaced at once. But its replacement loads the same application and
//! is over the limit again, so the minimum lifetime alone replaces workers every 10 seconds
//! for as long as the limit stays, each time an application start that frees nothing, and
//! says nothing of why (uWSGI's `min-worker-lifetime` does that).
//!
//! So when a worker starts over the limit right after one that did too (the application
//! needs more than the limit just to start), the supervisor says so once, as an error, and
//! memory replaces each next worker only after a hold that doubles: twice the minimum
//! lifetime (at least [`FLOOR`] before doubling), then four times, up to [`MAX_HOLD`], never
//! under the minimum lifetime itself. The first worker over the limit only gets the minimum lifetime: one large start proves
//! nothing. A worker that starts under the limit ends the loop: the holds start over, and
//! the next loop is reported again.
//!
//! Pure: the supervisor measures each new worker and applies the answer to its
//! [`Budget`](super::policy::Budget).

use std::time::Duration;

use super::backoff::Backoff;

/// The longest a worker over the limit right after start-up serves before memory replaces
/// it (unless the minimum lifetime is longer).
pub(crate) const MAX_HOLD: Duration = Duration::from_secs(300);
/// The hold's base when the minimum lifetime is shorter (0 turns it off), so a loop is slowed
/// even then.
pub(crate) const FLOOR: Duration = Duration::from_secs(1);

/// What memory may do to a worker that just started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Startup {
    /// Under the limit (or not measured): memory replaces it after the minimum lifetime, as
    /// usual. `recovered`: it ends a loop that was reported.
    Fits { recovered: bool },
    /// Over the limit right after start-up: memory replaces it once it is `hold` old.
    /// `report`: the first of a loop (a worker over the limit after another), to be told
    /// once.
    Over { hold: Duration, report: bool },
}

/// One worker slot's series of starts over the limit.
#[derive(Debug, Clone)]
pub(crate) struct RssLoop {
    min_lifetime: Duration,
    /// The holds of a loop, doubling; reset when a worker starts under the limit.
    holds: Backoff,
    /// The last worker measured started over the limit.
    last_over: bool,
    /// The loop was reported and has not ended.
    reported: bool,
}

impl RssLoop {
    /// No loop yet; `min_lifetime` is the operator's minimum lifetime.
    pub(crate) fn new(min_lifetime: Duration) -> RssLoop {
        let first = min_lifetime.max(FLOOR).saturating_mul(2);
        RssLoop {
            min_lifetime,
            // A hold never "crashes" late, so the backoff's own reset never applies.
            holds: Backoff::new(first, MAX_HOLD, Duration::MAX),
            last_over: false,
            reported: false,
        }
    }

    /// A worker started with `rss` bytes resident (`None`: not measured), against a limit
    /// of `max_rss` bytes.
    pub(crate) fn on_start(&mut self, rss: Option<u64>, max_rss: u64) -> Startup {
        let Some(rss) = rss else {
            // Nothing learnt: the series stands.
            return Startup::Fits { recovered: false };
        };
        if rss < max_rss {
            self.last_over = false;
            self.holds.reset();
            return Startup::Fits {
                recovered: std::mem::take(&mut self.reported),
            };
        }
        if !std::mem::replace(&mut self.last_over, true) {
            return Startup::Over {
                hold: self.min_lifetime,
                report: false,
            };
        }
        Startup::Over {
            hold: self.holds.on_crash(Duration::ZERO).max(self.min_lifetime),
            report: !std::mem::replace(&mut self.reported, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);
    const LIMIT: u64 = 256 << 20;
    const OVER: Option<u64> = Some(310 << 20);
    const UNDER: Option<u64> = Some(80 << 20);

    fn over(hold: Duration, report: bool) -> Startup {
        Startup::Over { hold, report }
    }

    #[test]
    fn workers_under_the_limit_are_left_alone() {
        let mut l = RssLoop::new(10 * SEC);
        for _ in 0..3 {
            assert_eq!(l.on_start(UNDER, LIMIT), Startup::Fits { recovered: false });
        }
    }

    #[test]
    fn one_worker_over_the_limit_gets_the_minimum_lifetime_and_no_report() {
        let mut l = RssLoop::new(10 * SEC);
        assert_eq!(l.on_start(OVER, LIMIT), over(10 * SEC, false));
        // The limit is where a worker goes (`>=`), as in the budget.
        let mut l = RssLoop::new(10 * SEC);
        assert_eq!(l.on_start(Some(LIMIT), LIMIT), over(10 * SEC, false));
    }

    #[test]
    fn a_loop_is_reported_once_and_its_holds_double_up_to_five_minutes() {
        let mut l = RssLoop::new(10 * SEC);
        let got: Vec<Startup> = (0..9).map(|_| l.on_start(OVER, LIMIT)).collect();
        assert_eq!(
            got,
            [
                over(10 * SEC, false),
                over(20 * SEC, true),
                over(40 * SEC, false),
                over(80 * SEC, false),
                over(160 * SEC, false),
                over(300 * SEC, false),
                over(300 * SEC, false),
                over(300 * SEC, false),
                over(300 * SEC, false),
            ]
        );
    }

    #[test]
    fn a_worker_under_the_limit_ends_the_loop_and_the_next_one_is_reported_again() {
        let mut l = RssLoop::new(10 * SEC);
        for _ in 0..4 {
            l.on_start(OVER, LIMIT);
        }
        assert_eq!(l.on_start(UNDER, LIMIT), Startup::Fits { recovered: true });
        assert_eq!(l.on_start(UNDER, LIMIT), Startup::Fits { recovered: false });
        assert_eq!(l.on_start(OVER, LIMIT), over(10 * SEC, false));
        assert_eq!(l.on_start(OVER, LIMIT), over(20 * SEC, true));
    }

    #[test]
    fn one_large_start_between_small_ones_is_no_loop() {
        let mut l = RssLoop::new(10 * SEC);
        for _ in 0..3 {
            assert_eq!(l.on_start(OVER, LIMIT), over(10 * SEC, false));
            assert_eq!(l.on_start(UNDER, LIMIT), Startup::Fits { recovered: false });
        }
    }

    #[test]
    fn an_unmeasured_start_changes_nothing() {
        let mut l = RssLoop::new(10 * SEC);
        l.on_start(OVER, LIMIT);
        assert_eq!(l.on_start(None, LIMIT), Startup::Fits { recovered: false });
        assert_eq!(l.on_start(OVER, LIMIT), over(20 * SEC, true));
        assert_eq!(l.on_start(None, LIMIT), Startup::Fits { recovered: false });
        assert_eq!(l.on_start(OVER, LIMIT), over(40 * SEC, false));
    }

    #[test]
    fn without_a_minimum_lifetime_a_loop_is_still_slowed() {
        let mut l = RssLoop::new(Duration::ZERO);
        assert_eq!(l.on_start(OVER, LIMIT), over(Duration::ZERO, false));
        assert_eq!(l.on_start(OVER, LIMIT), over(2 * SEC, true));
        assert_eq!(l.on_start(OVER, LIMIT), over(4 * SEC, false));
    }

    #[test]
    fn a_minimum_lifetime_over_the_maximum_hold_is_kept() {
        let mut l = RssLoop::new(600 * SEC);
        assert_eq!(l.on_start(OVER, LIMIT), over(600 * SEC, false));
        assert_eq!(l.on_start(OVER, LIMIT), over(600 * SEC, true));
        assert_eq!(l.on_start(OVER, LIMIT), over(600 * SEC, false));
    }
}
