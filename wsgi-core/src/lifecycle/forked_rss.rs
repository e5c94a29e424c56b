//! The memory `max_rss` compares for a worker forked from the preload template: its private
//! pages, read sparingly.
//!
//! A forked worker's resident set counts every page it still shares with the template (the
//! application as imported, `gc.freeze()`d) in full, so an application that takes 80 MiB to
//! import would put every fresh worker over a 60 MiB limit: replaced for memory it does not
//! cost, by a worker forked with the same pages. What replacing a worker gives back is its
//! private memory (`Private_Clean + Private_Dirty` of `/proc/<pid>/smaps_rollup`, psutil's
//! USS): the shared pages stay held by the template and the other workers. Private memory
//! also depends on this worker alone, where the proportional set size (PSS, each shared page
//! divided among its sharers) of every worker rises when a sibling exits or the template is
//! replaced, without any of them allocating a byte. So private memory is what the limit
//! compares for forked workers, as Passenger (whose smart spawning forks workers from a
//! preloader) reports a process's "private dirty RSS" as its real memory use
//! (`passenger-memory-stats`). The resident set of uWSGI's `reload-on-rss` and
//! `evil-reload-on-rss` (both from `statm`) and Granian's `--workers-max-rss` (sysinfo's RSS)
//! stays the measure of workers that imported the application themselves: Granian does not
//! fork workers from a loaded application, and uWSGI's preforking (the default, without
//! `lazy-apps`) has exactly the early recycling this module avoids; gunicorn has no memory
//! limit, only `--max-requests` as its remedy for leaks.
//!
//! Reading `smaps_rollup` walks the process's page tables: milliseconds for a worker of a
//! few hundred MiB, where `statm` takes microseconds, too much after every request. Private
//! memory is never more than the resident set, so while `statm` is under the limit nothing
//! more is read. Over it, the shared part learnt at the last reading stands in: the private
//! memory is at least the resident set less that (a shared page only becomes private, when
//! either side writes to it, so the shared part only shrinks), and `smaps_rollup` is read
//! again only once [`MIN_GAP`] has passed, or a hundred times the last reading's duration if
//! that is longer, so reading it costs at most about 1% of a core. What can go unseen in
//! between is the pages the worker copied on write since the last reading, at most that gap
//! late.
//!
//! Pure: [`crate::lifecycle::rss::Meter`] does the reading.

use std::time::{Duration, Instant};

/// The least time between two readings of `smaps_rollup` by one [`ForkedRss`].
pub(crate) const MIN_GAP: Duration = Duration::from_secs(1);

/// How many times a reading's duration passes before the next one: at most 1% of the time.
const COST_FACTOR: u32 = 100;

/// What a forked worker's memory is for the limit, from its resident set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Known well enough without reading `smaps_rollup`: these many bytes, to compare with
    /// the limit.
    Known(u64),
    /// Read `smaps_rollup` and [`ForkedRss::record`] it.
    Read,
}

/// The last reading of one forked worker's `smaps_rollup`.
#[derive(Debug, Clone, Copy)]
struct Reading {
    /// Resident but not private: the pages shared with the template or other workers.
    shared: u64,
    /// When the next reading may be.
    next: Instant,
}

/// One forked worker's private memory, estimated from its resident set between readings.
#[derive(Debug, Clone, Default)]
pub(crate) struct ForkedRss {
    last: Option<Reading>,
}

impl ForkedRss {
    /// The worker has `rss` bytes resident (`statm`), against a limit of `limit` bytes, at
    /// `now`: whether `smaps_rollup` must be read to compare.
    pub(crate) fn check(&self, rss: u64, limit: u64, now: Instant) -> Check {
        let estimate = self
            .last
            .map_or(rss, |last| rss.saturating_sub(last.shared));
        if rss < limit {
            // Private memory is part of the resident set: under the limit whatever is shared.
            return Check::Known(estimate);
        }
        match self.last {
            Some(last) if now < last.next => Check::Known(estimate),
            _ => Check::Read,
        }
    }

    /// A reading made at `now` that took `took`: `rss` resident, `private` of it private.
    /// Returns the private memory, what the limit compares.
    pub(crate) fn record(&mut self, rss: u64, private: u64, took: Duration, now: Instant) -> u64 {
        let gap = took.saturating_mul(COST_FACTOR).max(MIN_GAP);
        self.last = Some(Reading {
            shared: rss.saturating_sub(private),
            next: now.checked_add(gap).unwrap_or(now),
        });
        private
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const LIMIT: u64 = 60 * MIB;
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn under_the_limit_nothing_is_read() {
        let g = ForkedRss::default();
        let now = Instant::now();
        assert_eq!(g.check(59 * MIB, LIMIT, now), Check::Known(59 * MIB));
        assert_eq!(g.check(0, LIMIT, now), Check::Known(0));
    }

    #[test]
    fn over_the_limit_the_first_time_reads() {
        let g = ForkedRss::default();
        let now = Instant::now();
        assert_eq!(g.check(LIMIT, LIMIT, now), Check::Read);
        assert_eq!(g.check(100 * MIB, LIMIT, now), Check::Read);
    }

    #[test]
    fn a_preloaded_worker_is_its_private_memory_until_the_next_reading() {
        // 85 MiB resident, 80 of them the template's.
        let mut g = ForkedRss::default();
        let t0 = Instant::now();
        assert_eq!(g.record(85 * MIB, 5 * MIB, 3 * MS, t0), 5 * MIB);
        // Within the gap, from statm alone: what it allocates since counts in full.
        assert_eq!(
            g.check(85 * MIB, LIMIT, t0 + 10 * MS),
            Check::Known(5 * MIB)
        );
        assert_eq!(
            g.check(120 * MIB, LIMIT, t0 + 500 * MS),
            Check::Known(40 * MIB)
        );
        // A leak past the limit is over it without reading again: the shared part only
        // shrinks, so the estimate is a floor.
        assert_eq!(
            g.check(145 * MIB, LIMIT, t0 + 500 * MS),
            Check::Known(65 * MIB)
        );
        // Past the gap, over the limit by statm: read again, to see pages copied on write.
        assert_eq!(g.check(85 * MIB, LIMIT, t0 + MIN_GAP), Check::Read);
        // Under it, never.
        assert_eq!(g.check(50 * MIB, LIMIT, t0 + 10 * MIN_GAP), Check::Known(0));
    }

    #[test]
    fn a_slow_reading_spaces_the_next_one_out_to_a_hundred_times_its_duration() {
        let mut g = ForkedRss::default();
        let t0 = Instant::now();
        // 50 ms (a worker of about a GiB): the next one 5 s later, not 1 s.
        g.record(900 * MIB, 10 * MIB, 50 * MS, t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(g.check(900 * MIB, LIMIT, at(1_000)), Check::Known(10 * MIB));
        assert_eq!(g.check(900 * MIB, LIMIT, at(4_999)), Check::Known(10 * MIB));
        assert_eq!(g.check(900 * MIB, LIMIT, at(5_000)), Check::Read);
    }

    #[test]
    fn a_new_reading_replaces_the_shared_part() {
        let mut g = ForkedRss::default();
        let t0 = Instant::now();
        g.record(85 * MIB, 5 * MIB, MS, t0);
        // The worker wrote to 50 MiB of the template's pages: they are its own now.
        let t1 = t0 + MIN_GAP;
        assert_eq!(g.record(85 * MIB, 55 * MIB, MS, t1), 55 * MIB);
        assert_eq!(g.check(85 * MIB, LIMIT, t1 + MS), Check::Known(55 * MIB));
        // And the gap starts from it.
        assert_eq!(
            g.check(85 * MIB, LIMIT, t1 + MIN_GAP / 2),
            Check::Known(55 * MIB)
        );
        assert_eq!(g.check(85 * MIB, LIMIT, t1 + MIN_GAP), Check::Read);
    }

    #[test]
    fn readings_that_do_not_add_up_saturate() {
        // statm and smaps_rollup are read at different moments: the resident set may have
        // shrunk below what was private.
        let mut g = ForkedRss::default();
        let t0 = Instant::now();
        g.record(10 * MIB, 12 * MIB, MS, t0);
        assert_eq!(g.check(70 * MIB, LIMIT, t0 + MS), Check::Known(70 * MIB));
        g.record(80 * MIB, 5 * MIB, MS, t0);
        assert_eq!(g.check(30 * MIB, LIMIT, t0 + MS), Check::Known(0));
    }
}
