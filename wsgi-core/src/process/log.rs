//! Logs of worker processes, reaching the host's `tracing`.
//!
//! In a worker, [`WorkerSubscriber`] turns each `tracing` event (`wsgi.errors` lines,
//! tracebacks, Python `logging` records, the engine's own events) into a [`LogRecord`] and
//! hands it to the [`ControlSender`], whose writer thread ships it on the control socket.
//! A Python thread never blocks on logging: when the channel is full the record is dropped
//! and counted, and the count rides on the next record that gets through.
//!
//! In the host, [`emit`] re-emits a record with a `worker_pid` field. The targets a user
//! filters on (`--log-level wsgi.errors=warn`) are kept; any other target becomes
//! `wsgi_core::worker` with the original in a `worker_target` field, since `tracing`
//! targets must be static.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use super::wire::frame::FrameWriter;
use super::wire::messages::{ControlFromWorker, FromTemplate, LogRecord};

/// The target of re-emitted records whose own target is not one of the well-known ones.
pub(crate) const WORKER_TARGET: &str = "wsgi_core::worker";

/// Messages that may wait for the control writer; past this, log records are dropped.
pub(crate) const CONTROL_QUEUE: usize = 1024;

/// Most messages the writer puts in one `writev`.
const COALESCE: usize = 64;

/// The worker's way to the control socket, shared by every thread; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ControlSender {
    tx: SyncSender<ControlFromWorker>,
    dropped: Arc<AtomicU64>,
}

/// A bounded channel to the control writer: the sender, and the receiver to give
/// [`spawn_control_writer`].
pub(crate) fn control_channel(capacity: usize) -> (ControlSender, Receiver<ControlFromWorker>) {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let sender = ControlSender {
        tx,
        dropped: Arc::new(AtomicU64::new(0)),
    };
    (sender, rx)
}

impl ControlSender {
    /// Sends a message that must arrive (`Ready`, `Stats`), waiting for room. Fails only
    /// when the writer has stopped (the control socket broke).
    pub(crate) fn send(&self, msg: ControlFromWorker) -> io::Result<()> {
        self.tx
            .send(msg)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the control writer stopped"))
    }

    /// Sends a log record without ever waiting; returns whether it was queued. Records
    /// dropped on a full channel are counted, and the count is appended to the next record
    /// that is queued.
    pub(crate) fn log(&self, mut record: LogRecord) -> bool {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = write!(
                record.message,
                " ({dropped} earlier log records of this worker were dropped: the host read \
                 them too slowly)"
            );
        }
        match self.tx.try_send(ControlFromWorker::Log(record)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(dropped + 1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Starts the thread that writes the channel's messages to `control`, several per `writev`
/// when they queue up. It ends when every [`ControlSender`] is gone (`Ok`) or on the first
/// write error, or after writing a `StartupFailed`, the worker's last word (the
/// subscriber's sender lives as long as the process, so the channel never closes).
pub(crate) fn spawn_control_writer<W: Write + Send + 'static>(
    control: W,
    rx: Receiver<ControlFromWorker>,
) -> io::Result<JoinHandle<io::Result<()>>> {
    std::thread::Builder::new()
        .name("wsgi-control-writer".into())
        .spawn(move || {
            let mut writer = FrameWriter::new(control);
            while let Ok(first) = rx.recv() {
                let mut last = matches!(first, ControlFromWorker::StartupFailed(_));
                writer.queue(&first)?;
                if !last {
                    for msg in rx.try_iter().take(COALESCE - 1) {
                        last = matches!(msg, ControlFromWorker::StartupFailed(_));
                        writer.queue(&msg)?;
                        if last {
                            break;
                        }
                    }
                }
                writer.flush()?;
                if last {
                    break;
                }
            }
            Ok(())
        })
}

/// Where a worker's log records go.
#[derive(Debug)]
pub(crate) enum LogWay {
    /// To the control writer's thread.
    Queue(ControlSender),
    /// Straight onto the socket, by the thread that logs: the template's way, as it must
    /// start no thread (see `crate::process::template`); it shares the writer with the
    /// template's answers, which it never interleaves with, having one thread.
    Direct(Arc<Mutex<FrameWriter<UnixStream, FromTemplate>>>),
}

/// The `tracing` subscriber of a worker process: every enabled event becomes a
/// [`LogRecord`] for the host. Spans are not tracked (the engine emits events only).
#[derive(Debug)]
pub(crate) struct WorkerSubscriber {
    way: Arc<RwLock<LogWay>>,
    max_level: LevelFilter,
}

/// Changes where a [`WorkerSubscriber`] sends its records: a worker forked from the template
/// inherits the template's subscriber (`tracing` takes a global one once per process), and
/// must stop writing on the template's socket before it logs anything.
#[derive(Debug, Clone)]
pub(crate) struct LogSwitch(Arc<RwLock<LogWay>>);

impl LogSwitch {
    /// Sends every record from now on `way`; the old way (and its socket) is dropped.
    pub(crate) fn set(&self, way: LogWay) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = way;
    }
}

impl WorkerSubscriber {
    /// A subscriber that sends events up to `max_level` (the host's, from `WorkerConfig`).
    pub(crate) fn new(sender: ControlSender, max_level: LevelFilter) -> Self {
        Self::switchable(LogWay::Queue(sender), max_level).0
    }

    /// A subscriber that sends events up to `max_level` `way`, and the switch that changes
    /// its way.
    pub(crate) fn switchable(way: LogWay, max_level: LevelFilter) -> (Self, LogSwitch) {
        let way = Arc::new(RwLock::new(way));
        let switch = LogSwitch(way.clone());
        (WorkerSubscriber { way, max_level }, switch)
    }
}

impl Subscriber for WorkerSubscriber {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.max_level >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let record = LogRecord {
            level: *metadata.level(),
            target: metadata.target().to_owned(),
            message: fields.message + &fields.rest,
        };
        match &*self.way.read().unwrap_or_else(|e| e.into_inner()) {
            LogWay::Queue(sender) => {
                sender.log(record);
            }
            LogWay::Direct(writer) => {
                // A broken socket means the host has gone: nobody to tell.
                let _ = writer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .send(&FromTemplate::Control(ControlFromWorker::Log(record)));
            }
        }
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// An event's `message`, and its other fields as ` key=value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            // A format_args! message's Debug is its Display.
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

/// Emits one event at `level` under a static target; `tracing` needs both at compile time.
macro_rules! emit_at {
    ($target:expr, $level:expr, $($fields:tt)+) => {
        match $level {
            Level::ERROR => tracing::error!(target: $target, $($fields)+),
            Level::WARN => tracing::warn!(target: $target, $($fields)+),
            Level::INFO => tracing::info!(target: $target, $($fields)+),
            Level::DEBUG => tracing::debug!(target: $target, $($fields)+),
            Level::TRACE => tracing::trace!(target: $target, $($fields)+),
        }
    };
}

/// Re-emits a worker's log record into the host's `tracing`, with `worker_pid = pid`.
pub(crate) fn emit(record: &LogRecord, pid: u32) {
    let message = &record.message;
    let level = record.level;
    match record.target.as_str() {
        "wsgi.errors" => emit_at!("wsgi.errors", level, worker_pid = pid, "{message}"),
        "wsgi_core::app" => emit_at!("wsgi_core::app", level, worker_pid = pid, "{message}"),
        "python.logging" => emit_at!("python.logging", level, worker_pid = pid, "{message}"),
        "wsgi_core" => emit_at!("wsgi_core", level, worker_pid = pid, "{message}"),
        other => emit_at!(
            WORKER_TARGET,
            level,
            worker_pid = pid,
            worker_target = other,
            "{message}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::process::wire::frame::FrameReader;

    #[test]
    fn events_become_records_with_their_fields() {
        let (sender, rx) = control_channel(16);
        let subscriber = WorkerSubscriber::new(sender, LevelFilter::INFO);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "python.logging", logger = "app.db", "slow query {}", 3);
            tracing::error!(target: "wsgi.errors", "Traceback ...");
            tracing::debug!(target: "wsgi_core", "filtered out by the host's level");
            tracing::info!(count = 2, flag = true, "plain");
        });
        let records: Vec<ControlFromWorker> = rx.try_iter().collect();
        let expected = [
            (Level::WARN, "python.logging", "slow query 3 logger=app.db"),
            (Level::ERROR, "wsgi.errors", "Traceback ..."),
            (Level::INFO, module_path!(), "plain count=2 flag=true"),
        ];
        assert_eq!(records.len(), expected.len(), "{records:?}");
        for (got, (level, target, message)) in records.iter().zip(expected) {
            let ControlFromWorker::Log(got) = got else {
                panic!("not a log record: {got:?}")
            };
            let want = LogRecord {
                level,
                target: target.into(),
                message: message.into(),
            };
            assert_eq!(got, &want);
        }
    }

    fn record(message: &str) -> LogRecord {
        LogRecord {
            level: Level::INFO,
            target: "wsgi.errors".into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_full_channel_drops_and_counts_instead_of_blocking() {
        let (sender, rx) = control_channel(1);
        assert!(sender.log(record("first")));
        assert!(!sender.log(record("second")));
        assert!(!sender.log(record("third")));
        assert!(matches!(rx.recv().unwrap(), ControlFromWorker::Log(r) if r.message == "first"));
        assert!(sender.log(record("fourth")));
        let ControlFromWorker::Log(r) = rx.recv().unwrap() else {
            panic!("not a log record")
        };
        assert!(
            r.message.starts_with("fourth (2 earlier log records"),
            "{}",
            r.message
        );
        // The count was reported once.
        assert!(sender.log(record("fifth")));
        assert!(matches!(rx.recv().unwrap(), ControlFromWorker::Log(r) if r.message == "fifth"));
    }

    /// A `Write` shared with the test, to read what the writer thread wrote.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_writer_ships_frames_and_ends_with_the_senders() {
        let out = Shared::default();
        let (sender, rx) = control_channel(8);
        let writer = spawn_control_writer(out.clone(), rx).unwrap();
        sender.log(record("one"));
        sender
            .send(ControlFromWorker::Stats {
                rss_bytes: 1,
                requests: 2,
            })
            .unwrap();
        drop(sender);
        writer.join().unwrap().unwrap();
        let bytes = out.0.lock().unwrap().clone();
        let mut reader = FrameReader::new(&bytes[..]);
        let mut next = || reader.recv().unwrap();
        assert!(matches!(next(), Some(ControlFromWorker::Log(r)) if r == record("one")));
        assert!(matches!(
            next(),
            Some(ControlFromWorker::Stats {
                rss_bytes: 1,
                requests: 2
            })
        ));
        assert!(next().is_none());
    }

    /// What the host-side test subscriber saw of one event.
    #[derive(Debug, PartialEq)]
    struct Seen {
        level: Level,
        target: String,
        fields: String,
    }

    /// Captures every event, fields rendered as `name=value` in order.
    struct Capture(Arc<Mutex<Vec<Seen>>>);

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            struct All(String);
            impl Visit for All {
                fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                    let _ = write!(self.0, "{}={value:?};", field.name());
                }
            }
            let mut all = All(String::new());
            event.record(&mut all);
            self.0.lock().unwrap().push(Seen {
                level: *event.metadata().level(),
                target: event.metadata().target().into(),
                fields: all.0,
            });
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn the_host_re_emits_under_the_same_target_with_the_pid() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let records = [
            (Level::ERROR, "wsgi.errors", "Traceback"),
            (Level::WARN, "python.logging", "slow logger=db"),
            (Level::INFO, "wsgi_core::app", "app loaded"),
            (Level::DEBUG, "wsgi_core", "thread 1 ready"),
            (Level::TRACE, "some_crate::inner", "detail"),
        ];
        tracing::subscriber::with_default(Capture(seen.clone()), || {
            for (level, target, message) in records {
                emit(
                    &LogRecord {
                        level,
                        target: target.into(),
                        message: message.into(),
                    },
                    4242,
                );
            }
        });
        let seen = seen.lock().unwrap();
        let expected = [
            (
                Level::ERROR,
                "wsgi.errors",
                "message=Traceback;worker_pid=4242;",
            ),
            (
                Level::WARN,
                "python.logging",
                "message=slow logger=db;worker_pid=4242;",
            ),
            (
                Level::INFO,
                "wsgi_core::app",
                "message=app loaded;worker_pid=4242;",
            ),
            (
                Level::DEBUG,
                "wsgi_core",
                "message=thread 1 ready;worker_pid=4242;",
            ),
            (
                Level::TRACE,
                WORKER_TARGET,
                "message=detail;worker_pid=4242;worker_target=\"some_crate::inner\";",
            ),
        ];
        let expected: Vec<Seen> = expected
            .into_iter()
            .map(|(level, target, fields)| Seen {
                level,
                target: target.into(),
                fields: fields.into(),
            })
            .collect();
        assert_eq!(*seen, expected);
    }
}
