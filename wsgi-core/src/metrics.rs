//! Counters an operator watches: what the engine did, how busy its threads are, how long
//! requests take. Updated with relaxed atomics on the hot path; read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the request-duration histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Nanoseconds that worker threads spent waiting to re-acquire the GIL after a wait.
/// The GIL is per process, so this is too.
pub(crate) static GIL_WAIT_NANOS: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    by_class: [AtomicU64; 5],
    pub(crate) rejected_overload: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) stuck_threads: AtomicU64,
    pub(crate) busy_threads: AtomicU64,
    pub(crate) queue_wait_nanos: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_nanos: AtomicU64,
}

impl Metrics {
    /// Records a finished response (its body ended or was cut).
    pub(crate) fn observe(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn snapshot(
        &self,
        threads: usize,
        in_flight: usize,
        queued: usize,
        workers: Vec<WorkerSnapshot>,
        pool: Option<PoolSnapshot>,
    ) -> MetricsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let busy = usize::try_from(load(&self.busy_threads))
            .unwrap_or(usize::MAX)
            .min(threads);
        let mut cumulative = 0;
        MetricsSnapshot {
            responses_by_class: std::array::from_fn(|i| load(&self.by_class[i])),
            rejected_overload: load(&self.rejected_overload),
            timeouts: load(&self.timeouts),
            stuck_threads: load(&self.stuck_threads),
            in_flight,
            queued,
            threads_busy: busy,
            threads_idle: threads - busy,
            gil_wait: Duration::from_nanos(load(&GIL_WAIT_NANOS)),
            queue_wait: Duration::from_nanos(load(&self.queue_wait_nanos)),
            duration_buckets: BUCKETS
                .iter()
                .zip(&self.buckets)
                .map(|(&le, n)| {
                    cumulative += load(n);
                    (le, cumulative)
                })
                .collect(),
            duration_count: load(&self.duration_count),
            duration_sum: Duration::from_nanos(load(&self.duration_nanos)),
            workers,
            pool,
        }
    }
}

/// A point-in-time reading of an engine's counters; see [`Engine::metrics`](crate::Engine::metrics).
///
/// The engine knows no exposition format: a program renders the snapshot in the one it
/// serves (`serve` uses `prometheus-client` for the Prometheus text format).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Finished responses by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub responses_by_class: [u64; 5],
    /// Requests answered 503 because the queue was full or waited too long.
    pub rejected_overload: u64,
    /// Requests that ran past the request timeout.
    pub timeouts: u64,
    /// Threads that did not stop after a timeout's exception (stuck in C code).
    pub stuck_threads: u64,
    /// Requests accepted and not yet finished on the Python side.
    pub in_flight: usize,
    /// Requests waiting for a free Python thread.
    pub queued: usize,
    /// Python threads running a request.
    pub threads_busy: usize,
    /// Python threads waiting for work.
    pub threads_idle: usize,
    /// Total time worker threads waited to re-acquire the GIL (process-wide).
    pub gil_wait: Duration,
    /// Total time requests waited in the queue.
    pub queue_wait: Duration,
    /// Cumulative request-duration histogram: `(upper bound in seconds, count)`.
    pub duration_buckets: Vec<(f64, u64)>,
    /// Requests in the histogram.
    pub duration_count: u64,
    /// Sum of their durations.
    pub duration_sum: Duration,
    /// The worker processes, by index; empty when Python runs in this process. The counts
    /// above are the totals over every worker. An elastic pool lists every worker up to its
    /// maximum, those it does not run now [`WorkerState::Stopped`].
    pub workers: Vec<WorkerSnapshot>,
    /// The pool of worker processes: its size, and why it grew and shrank; `None` when
    /// Python runs in this process.
    pub pool: Option<PoolSnapshot>,
}

/// The pool of worker processes, in [`MetricsSnapshot::pool`]: how many run, between which
/// bounds (see [`EngineBuilder::max_processes`](crate::EngineBuilder::max_processes)), and
/// its starts and retirements by reason. A fixed pool has `min == max` and counts its
/// `minimum` starts only.
///
/// ```
/// # let snapshot = wsgi_core::Engine::builder("wsgiref.simple_server:demo_app").build()?.metrics();
/// if let Some(pool) = &snapshot.pool {
///     println!("{} workers of {}..={}", pool.workers, pool.min, pool.max);
/// }
/// # Ok::<(), wsgi_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolSnapshot {
    /// Workers kept however idle.
    pub min: usize,
    /// Workers never exceeded.
    pub max: usize,
    /// Workers the pool runs now: ready, or starting (a new one, or one started again
    /// after a crash).
    pub workers: usize,
    /// Workers the pool started, by reason: `minimum` (to reach the minimum: at start-up),
    /// `queue_wait` (a request waited too long in the queue); every reason listed, from 0.
    /// Replacements of a running worker (crashes, recycling) are not starts: they are
    /// [`WorkerSnapshot::restarts`].
    pub starts: Vec<(&'static str, u64)>,
    /// Workers retired, by reason: `idle` (no request for the pool's idle time).
    pub retirements: Vec<(&'static str, u64)>,
}

/// Where a worker is in its life, in [`WorkerSnapshot::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerState {
    /// No process of it is ready: it is starting, or being started again after it died.
    Starting,
    /// Its process takes requests.
    Ready,
    /// A new process is starting to replace the current one, which serves meanwhile (or,
    /// past its request or memory budget, waits).
    Replacing,
    /// It runs no process: a worker of an elastic pool above its minimum, not grown into
    /// yet or retired. Its counters keep their values, so that a sum over the workers never
    /// goes down.
    Stopped,
}

impl WorkerState {
    /// `starting`, `ready`, `replacing` or `stopped`: a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Ready => "ready",
            WorkerState::Replacing => "replacing",
            WorkerState::Stopped => "stopped",
        }
    }
}

/// One worker process, in [`MetricsSnapshot::workers`]. A replacement takes the index of
/// the process it replaces, and its counts go on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerSnapshot {
    /// The worker's index, `0..processes` (`0..max_processes` in an elastic pool).
    pub index: usize,
    /// The current process's id; `None` while none is running.
    pub pid: Option<u32>,
    /// Whether it takes requests (it has loaded the application).
    pub ready: bool,
    /// Where it is in its life.
    pub state: WorkerState,
    /// Its earlier processes still finishing their requests after a replacement.
    pub draining: usize,
    /// Requests its processes have answered.
    pub requests: u64,
    /// Its replacements by reason: `restart_file`, `always_restart`, `max_requests`,
    /// `lifetime`, `rss`, `crash`, `timeout`, `signal` (SIGHUP to `serve`), `api`
    /// ([`Engine::restart`](crate::Engine::restart)); every reason is listed, from 0.
    pub restarts: Vec<(&'static str, u64)>,
    /// The current process's memory as [`max_rss`](crate::EngineBuilder::max_rss) compares
    /// it (resident, or private for a process forked from the preload template) when last
    /// sampled (only with `max_rss`).
    pub rss_bytes: Option<u64>,
    /// How long the current process has been ready.
    pub age: Option<Duration>,
    /// Whether the current process was forked from the template of
    /// [`preload`](crate::EngineBuilder::preload), rather than started afresh.
    pub forked: bool,
    /// How long the current process took to start, from its spawn or fork until it was
    /// ready to take requests.
    pub start_duration: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_classes_are_counted() {
        let m = Metrics::default();
        m.observe(200, Duration::from_millis(3));
        m.observe(503, Duration::from_millis(300));
        m.observe(200, Duration::from_secs(60));
        let s = m.snapshot(4, 1, 0, Vec::new(), None);
        assert_eq!(s.responses_by_class, [0, 2, 0, 0, 1]);
        assert_eq!(s.duration_buckets[2], (0.005, 1));
        assert_eq!(s.duration_buckets.last(), Some(&(10.0, 2)));
        assert_eq!(s.duration_count, 3);
        assert_eq!((s.threads_busy, s.threads_idle), (0, 4));
    }
}
