//! The log on stderr, written off the threads that serve requests.
//!
//! Every event, the access line of each request among them, is formatted on the thread that
//! emits it and handed to a writer thread through a bounded batch ([`log_writer`]), so an
//! I/O thread never waits for stderr (a slow terminal, a full pipe to a log collector). If
//! the writer falls behind until the batch is full, new lines are dropped rather than
//! stalling requests; the count is reported in the log as soon as the writer catches up, at
//! exit, and in the metrics (`wsgi_log_lines_dropped_total`).
//! Timestamps come from [`Clock`], which formats the date and time of day once a second,
//! and in the text format the access line is written by [`TextFormat`] without the general
//! formatter's field-by-field machinery.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{Format, FormatEvent, FormatFields, Full, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use crate::hosts::client_errors::ClientErrors;
pub(crate) use crate::log_writer::DroppedLines;
use crate::log_writer::{self, Guard};
use crate::values::LogFilter;

/// Lines the log's batch holds for the writer thread unless told otherwise: at 80,000
/// requests a second, a fifth of a second of stalled stderr; only lines queued take memory.
pub(crate) const DEFAULT_LOG_BUFFER: usize = 16 * 1024;

/// How often a count of dropped lines is looked for.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The installed log: keep it until the end of `main`, whose last lines it flushes.
pub(crate) struct Log {
    _writer: Guard,
    dropped: DroppedLines,
}

/// Installs the global subscriber: `filter`ed events in `format`, with up to `buffer` lines
/// queued for the writer thread. Call it after the process's scheduling policy is set, so
/// the writer thread gets it too.
///
/// Fails if the writer thread cannot be started.
pub(crate) fn init(format: LogFormat, filter: &LogFilter, buffer: usize) -> std::io::Result<Log> {
    let (writer, guard) =
        log_writer::start(std::io::stderr(), buffer, log_writer::GATHER, "serve-log")?;
    let dropped = writer.dropped();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter.to_filter())
        .with_timer(Clock)
        .with_writer(writer);
    // The actix host's client errors go through `ClientErrors`, whichever server runs: it
    // looks at one target only.
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::stderr().is_terminal())
            .event_format(TextFormat::new(Clock))
            .finish()
            .with(ClientErrors)
            .init(),
        LogFormat::Json => logs.json().finish().with(ClientErrors).init(),
    }
    Ok(Log {
        _writer: guard,
        dropped,
    })
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
                "wsgi-serve: {lost} log lines were dropped in all because stderr could not take \
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

/// The text format: `tracing-subscriber`'s default (`Full`), but the access line, one per
/// request, is written here: the same text, without `Full`'s round of `fmt` machinery for
/// each part and its character-by-character copy of the message, which made most of the
/// cost of a line. Everything else (other events, colours on a terminal, events in a span)
/// goes to `Full`.
pub(crate) struct TextFormat<T> {
    timer: T,
    full: Format<Full, T>,
}

impl<T: FormatTime + Clone> TextFormat<T> {
    pub(crate) fn new(timer: T) -> Self {
        TextFormat {
            full: Format::default().with_timer(timer.clone()),
            timer,
        }
    }
}

thread_local! {
    /// A message that is not a `str`, formatted, kept for its allocation.
    static MESSAGE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<S, N, T> FormatEvent<S, N> for TextFormat<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let plain_access_line = meta.target() == wsgi_core::ACCESS_TARGET
            && *meta.level() == Level::INFO
            && meta.fields().len() == 1
            && !writer.has_ansi_escapes()
            && ctx.event_scope().is_none();
        if !plain_access_line {
            return self.full.format_event(ctx, writer, event);
        }
        if self.timer.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        // As `Full` writes them: a space, the level padded to five, the target.
        writer.write_str("  INFO ")?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut message = Message {
            writer: &mut writer,
            written: Ok(()),
        };
        event.record(&mut message);
        message.written?;
        writer.write_char('\n')
    }
}

/// Writes an event's `message` field, sanitized: a `str` (as `wsgi-core` passes the access
/// line) straight from the event, anything else formatted into a buffer first.
struct Message<'a, 'w> {
    writer: &'a mut Writer<'w>,
    written: fmt::Result,
}

impl Visit for Message<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.written = write_sanitized(self.writer, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.written = MESSAGE.with_borrow_mut(|message| {
                message.clear();
                write!(message, "{value:?}")?;
                write_sanitized(self.writer, message)
            });
        }
    }
}

/// Writes `text` with the terminal control characters escaped as `tracing-subscriber`
/// escapes them in messages (so that a request cannot drive the terminal that shows the
/// log): ESC, BEL, BS, FF and DEL as `\x1b`..., the C1 controls U+0080 to U+009F as
/// `\u{85}`.... A line without them, nearly every line, is written in one piece.
fn write_sanitized(w: &mut impl fmt::Write, text: &str) -> fmt::Result {
    // 0xC2 leads the UTF-8 of U+0080 to U+00BF, the C1 controls among them.
    if !text
        .bytes()
        .any(|b| matches!(b, 0x07 | 0x08 | 0x0c | 0x1b | 0x7f | 0xc2))
    {
        return w.write_str(text);
    }
    for c in text.chars() {
        match c {
            '\x1b' => w.write_str("\\x1b")?,
            '\x07' => w.write_str("\\x07")?,
            '\x08' => w.write_str("\\x08")?,
            '\x0c' => w.write_str("\\x0c")?,
            '\x7f' => w.write_str("\\x7f")?,
            '\u{80}'..='\u{9f}' => write!(w, "\\u{{{:x}}}", u32::from(c))?,
            c => w.write_char(c)?,
        }
    }
    Ok(())
}

/// The log's clock: the timestamps of `tracing-subscriber`'s default timer (RFC 3339, UTC,
/// microseconds: `2026-11-24T16:06:54.860944Z`), with the date and the time of day formatted
/// once a second per thread instead of field by field for every line. On the access log's
/// path the default timer took a quarter of the cost of a line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clock;

impl FormatTime for Clock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        // A clock set before 1970 reads as the epoch.
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        write_timestamp(w, since_epoch)
    }
}

thread_local! {
    /// The last second formatted on this thread, and its `YYYY-MM-DDTHH:MM:SS.`.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Writes the timestamp `since_epoch` after the Unix epoch.
fn write_timestamp(w: &mut impl fmt::Write, since_epoch: Duration) -> fmt::Result {
    let secs = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != secs {
            *second = secs;
            text.clear();
            date_and_time(text, secs)?;
        }
        w.write_str(text)
    })?;
    let mut micros = since_epoch.subsec_micros();
    let mut digits = [b'0'; 6];
    for digit in digits.iter_mut().rev() {
        // Below 10: the cast cannot truncate.
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    for digit in digits {
        w.write_char(char::from(digit))?;
    }
    w.write_char('Z')
}

/// `YYYY-MM-DDTHH:MM:SS.` of the second `secs` after the Unix epoch, in UTC.
fn date_and_time(out: &mut String, secs: u64) -> fmt::Result {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let time = secs % 86_400;
    write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
        time / 3_600,
        time / 60 % 60,
        time % 60
    )
}

/// The proleptic Gregorian (year, month, day) of `days` after 1970-01-01: Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Counted from 0000-03-01, so that a leap day is the last day of its year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A clock stopped at one instant, so that two formats' lines can be compared.
    #[derive(Clone)]
    struct Stopped;

    impl FormatTime for Stopped {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-11-24T16:06:54.860944Z")
        }
    }

    /// What the subscriber built by `make` writes for the events `emit` makes.
    fn written<S>(make: impl FnOnce(Arc<Mutex<Vec<u8>>>) -> S, emit: impl FnOnce()) -> String
    where
        S: Subscriber + Send + Sync + 'static,
    {
        let out = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::with_default(make(out.clone()), emit);
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[derive(Clone)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_access_line_is_written_as_the_full_format_writes_it() {
        let emit = || {
            for line in [
                "GET /a?b=1 200 13 bytes 0.1 ms 127.0.0.1:54321",
                "GET /caf\u{e9} 404 9 bytes 12.5 ms [::1]:8000 (cut short)",
                "GET /\x1b[31mred\x07\x08\x0c\x7f\u{85}\u{9f}\u{a0} 200 0 bytes 0.0 ms -",
            ] {
                tracing::info!(target: wsgi_core::ACCESS_TARGET, "{line}");
                tracing::info!(target: wsgi_core::ACCESS_TARGET, message = line);
            }
            // Not access lines: handed to `Full`.
            tracing::warn!(target: wsgi_core::ACCESS_TARGET, "GET / 200");
            tracing::info!(target: wsgi_core::ACCESS_TARGET, status = 200, "GET /");
            tracing::info!(answer = 42, "something else");
        };
        let full = written(
            |out| {
                tracing_subscriber::fmt()
                    .with_timer(Stopped)
                    .with_ansi(false)
                    .with_writer(move || Buffer(out.clone()))
                    .finish()
            },
            emit,
        );
        let ours = written(
            |out| {
                tracing_subscriber::fmt()
                    .with_ansi(false)
                    .event_format(TextFormat::new(Stopped))
                    .with_writer(move || Buffer(out.clone()))
                    .finish()
            },
            emit,
        );
        assert_eq!(ours, full);
        assert_eq!(full.lines().count(), 9, "{full}");
        assert!(full.contains("\\x1b[31mred\\x07\\x08\\x0c\\x7f\\u{85}\\u{9f}\u{a0} "));
    }

    fn timestamp(secs: u64, micros: u32) -> String {
        let mut out = String::new();
        write_timestamp(&mut out, Duration::new(secs, micros * 1_000 + 999)).unwrap();
        out
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        // Checked against Python's datetime.fromtimestamp(secs, timezone.utc).
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.000005Z"),
            (1_709_164_800, 120_000, "2024-02-29T00:00:00.120000Z"),
            (1_795_539_723, 860_944, "2026-11-24T17:02:03.860944Z"),
            (4_102_444_799, 999_999, "2099-12-31T23:59:59.999999Z"),
        ];
        for (secs, micros, expected) in cases {
            assert_eq!(timestamp(secs, micros), expected);
        }
        // The cached second is reused, and replaced when the second changes.
        assert_eq!(timestamp(0, 1), "1970-01-01T00:00:00.000001Z");
        assert_eq!(timestamp(0, 2), "1970-01-01T00:00:00.000002Z");
        assert_eq!(timestamp(86_399, 0), "1970-01-01T23:59:59.000000Z");
    }
}
