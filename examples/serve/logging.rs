//! The log on stderr, written off the threads that serve requests.
//!
//! Every event, the access line of each request among them, is formatted on the thread that
//! emits it and handed to a writer thread through a bounded queue (`tracing-appender`'s
//! non-blocking writer), so an I/O thread never waits for stderr (a slow terminal, a full
//! pipe to a log collector). If the writer falls behind until the queue is full, new lines
//! are dropped rather than stalling requests; the count is reported in the log as soon as
//! the writer catches up, at exit, and in the metrics (`wsgi_log_lines_dropped_total`).

use std::io::{BufWriter, IsTerminal};
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

use crate::cli::LogFormat;
use crate::values::LogFilter;

/// Lines the log queue holds for the writer thread unless told otherwise: at 80,000
/// requests a second, a fifth of a second of stalled stderr; the queue's slots take about
/// 32 bytes each whether used or not.
pub(crate) const DEFAULT_LOG_BUFFER: usize = 16 * 1024;

/// How often a count of dropped lines is looked for.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The installed log: keep it until the end of `main`, whose last lines it flushes.
pub(crate) struct Log {
    _writer: WorkerGuard,
    dropped: DroppedLines,
}

/// The count of log lines dropped because the writer thread could not keep up.
#[derive(Debug, Clone)]
pub(crate) struct DroppedLines(ErrorCounter);

impl DroppedLines {
    /// Lines dropped since start-up.
    pub(crate) fn get(&self) -> u64 {
        u64::try_from(self.0.dropped_lines()).unwrap_or(u64::MAX)
    }
}

/// Installs the global subscriber: `filter`ed events in `format`, with up to `buffer` lines
/// queued for the writer thread. Call it after the process's scheduling policy is set, so
/// the writer thread gets it too.
pub(crate) fn init(format: LogFormat, filter: &LogFilter, buffer: usize) -> Log {
    // Lines are gathered into one write(2) per batch: the writer flushes when the queue is
    // empty, so nothing waits in the buffer.
    let stderr = BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(buffer)
        .thread_name("serve-log")
        .finish(stderr);
    let dropped = DroppedLines(writer.error_counter());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter.to_filter())
        .with_writer(writer);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    Log {
        _writer: guard,
        dropped,
    }
}

impl Log {
    /// The count of dropped lines, for the metrics.
    pub(crate) fn dropped(&self) -> DroppedLines {
        self.dropped.clone()
    }

    /// Flushes the queue and says, on stderr itself, how many lines were lost in all, if any:
    /// the last report in the log may itself have been dropped.
    pub(crate) fn close(self) {
        let dropped = self.dropped.clone();
        drop(self);
        let lost = dropped.get();
        if lost > 0 {
            eprintln!(
                "serve: {lost} log lines were dropped in all because stderr could not take \
                 them as fast as they came (see --log-buffer)"
            );
        }
    }
}

/// Reports newly dropped lines in the log, once per [`REPORT_EVERY`]. A report made while the
/// queue is still full is dropped too, and counted: the next one then says so.
pub(crate) async fn report_dropped(dropped: DroppedLines) {
    let mut reported = 0;
    let mut ticks = tokio::time::interval(REPORT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let total = dropped.get();
        if total > reported {
            tracing::warn!(
                dropped = total - reported,
                total,
                "log lines dropped: stderr could not take them as fast as they came; \
                 read it faster, log less (--log-level warn turns the access log off) or \
                 raise --log-buffer"
            );
            reported = total;
        }
    }
}
