//! The log's writer thread: formatted lines go into a bounded batch under a mutex, and one
//! thread writes whole batches to stderr, woken once per burst rather than once per line.
//!
//! `tracing-appender`'s non-blocking writer, used before, hands each line through a channel
//! whose receiver is woken for every line and spins (`sched_yield`) before it parks again. With
//! one client sending requests one after another, that was a wake-up and one or two context
//! switches per request on a thread competing for the CPU the next request needs, and about a
//! sixth of the CPU time of a request (the numbers are in `benches/README.md`). Here the thread
//! is woken only when the batch goes from empty to non-empty, then lets lines gather for
//! [`GATHER`] before it takes them all and writes them with one `write(2)`: a human reading
//! the log sees a line a few milliseconds later, and a server under load pays one wake-up per
//! [`GATHER`] instead of one per request.
//!
//! The threads that serve requests never wait for stderr: they only append to the batch under
//! a mutex held for a copy of the line (the writer holds it only to swap buffers). When the
//! batch already holds its limit of lines, because stderr takes them slower than they come, a
//! new line is dropped and counted ([`DroppedLines`]).

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer lets lines gather after the first one of a burst.
pub(crate) const GATHER: Duration = Duration::from_millis(10);

/// A batch buffer keeps at most this much memory between bursts.
const KEEP: usize = 256 * 1024;

/// The handle the log's subscriber writes through ([`MakeWriter`]): each event is one `write`.
#[derive(Clone)]
pub(crate) struct LogWriter {
    shared: Arc<Shared>,
}

/// The count of lines dropped because stderr could not take them as fast as they came, or
/// refused them.
#[derive(Debug, Clone)]
pub(crate) struct DroppedLines(Arc<Shared>);

/// Stops the writer thread when dropped, after it has written every line queued before.
pub(crate) struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    batch: Mutex<Batch>,
    /// Wakes the writer: for the first line of a burst, and to stop.
    wake: Condvar,
    dropped: AtomicU64,
    limit: usize,
}

#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: usize,
    /// The writer waits for a first line: the next line must wake it.
    writer_waiting: bool,
    /// The writer is to write what is queued and stop.
    stopping: bool,
    /// The writer has stopped: lines go straight to stderr.
    stopped: bool,
}

/// Starts the writer thread, named `name`, which writes to `out` what gathered for `gather`
/// after the first line of a burst; at most `limit` lines wait.
pub(crate) fn start<W>(
    out: W,
    limit: usize,
    gather: Duration,
    name: &str,
) -> io::Result<(LogWriter, Guard)>
where
    W: Write + Send + 'static,
{
    let shared = Arc::new(Shared {
        batch: Mutex::new(Batch::default()),
        wake: Condvar::new(),
        dropped: AtomicU64::new(0),
        limit,
    });
    let thread = std::thread::Builder::new().name(name.to_owned()).spawn({
        let shared = shared.clone();
        move || shared.write_batches(out, gather)
    })?;
    Ok((
        LogWriter {
            shared: shared.clone(),
        },
        Guard {
            shared,
            thread: Some(thread),
        },
    ))
}

impl LogWriter {
    /// The count of dropped lines.
    pub(crate) fn dropped(&self) -> DroppedLines {
        DroppedLines(self.shared.clone())
    }
}

impl DroppedLines {
    /// Lines dropped since start-up.
    pub(crate) fn get(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Batch> {
        // A panic while the lock was held cannot leave the batch half-updated in a way that
        // matters: at worst a line is cut.
        self.batch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one line, or drops it when the batch is full.
    fn queue(&self, line: &[u8]) -> io::Result<()> {
        let mut batch = self.lock();
        if batch.stopped {
            drop(batch);
            return io::stderr().write_all(line);
        }
        if batch.lines >= self.limit {
            drop(batch);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        batch.bytes.extend_from_slice(line);
        batch.lines += 1;
        if batch.writer_waiting {
            batch.writer_waiting = false;
            drop(batch);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The writer thread's loop: until stopped, waits for a first line, lets more gather,
    /// takes them all and writes them.
    fn write_batches(&self, mut out: impl Write, gather: Duration) {
        let mut writing = Vec::new();
        loop {
            let mut batch = self.lock();
            while batch.bytes.is_empty() && !batch.stopping {
                batch.writer_waiting = true;
                batch = self
                    .wake
                    .wait(batch)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            batch.writer_waiting = false;
            if !batch.stopping {
                batch = self
                    .wake
                    .wait_timeout_while(batch, gather, |batch| !batch.stopping)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut writing, &mut batch.bytes);
            let lines = std::mem::take(&mut batch.lines);
            let last = batch.stopping && writing.is_empty();
            if last {
                // Lines written from now on go to stderr directly, in order after this.
                batch.stopped = true;
            }
            drop(batch);
            if last {
                break;
            }
            if out.write_all(&writing).and_then(|()| out.flush()).is_err() {
                self.dropped.fetch_add(lines as u64, Ordering::Relaxed);
            }
            writing.clear();
            writing.shrink_to(KEEP);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // The writer does not panic; if it did, its lines are lost either way.
            let _ = thread.join();
        }
    }
}

/// One event's line, passed to the batch whole.
pub(crate) struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.queue(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line(&self.shared)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// Records each `write` the writer thread makes; `gate` holds the writes until opened.
    struct Recorder {
        writes: mpsc::Sender<Vec<u8>>,
        gate: Option<mpsc::Receiver<()>>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(gate) = &self.gate {
                let _ = gate.recv();
            }
            self.writes.send(buf.to_vec()).unwrap();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A recorder behind `gate`, if any, and what it receives.
    fn recorder(gate: Option<mpsc::Receiver<()>>) -> (Recorder, mpsc::Receiver<Vec<u8>>) {
        let (tx, writes) = mpsc::channel();
        (Recorder { writes: tx, gate }, writes)
    }

    fn line(writer: &LogWriter, text: &str) {
        writer.make_writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn a_burst_of_lines_is_written_at_once_and_in_order() {
        let (recorder, writes) = recorder(None);
        // Long enough that the loop below cannot take longer on a loaded machine.
        let (writer, guard) = start(recorder, 100, Duration::from_millis(300), "test-log").unwrap();
        for n in 0..50 {
            line(&writer, &format!("line {n}\n"));
        }
        let first = writes.recv().unwrap();
        let expected: String = (0..50).map(|n| format!("line {n}\n")).collect();
        // Fifty lines queued within the gathering time make one write.
        assert_eq!(String::from_utf8(first).unwrap(), expected);
        // After a pause, a new burst is written too.
        line(&writer, "later\n");
        assert_eq!(writes.recv().unwrap(), b"later\n");
        drop(guard);
        assert_eq!(writer.dropped().get(), 0);
    }

    #[test]
    fn lines_beyond_the_limit_are_dropped_and_counted_not_waited_for() {
        let (open, gate) = mpsc::channel();
        let (recorder, writes) = recorder(Some(gate));
        let (writer, guard) = start(recorder, 3, GATHER, "test-log").unwrap();
        // The first line is taken by the writer, which then waits on the closed gate: the
        // batch fills up behind it.
        line(&writer, "first\n");
        while {
            let batch = writer.shared.lock();
            !batch.bytes.is_empty() || batch.writer_waiting
        } {
            std::thread::yield_now();
        }
        for n in 0..10 {
            line(&writer, &format!("{n}\n"));
        }
        assert_eq!(writer.dropped().get(), 7);
        open.send(()).unwrap();
        open.send(()).unwrap();
        assert_eq!(writes.recv().unwrap(), b"first\n");
        assert_eq!(writes.recv().unwrap(), b"0\n1\n2\n");
        drop(guard);
    }

    #[test]
    fn stopping_writes_what_is_queued_without_waiting_for_the_gathering_time() {
        let (recorder, writes) = recorder(None);
        // A stop right after the lines, long before the gathering time is over.
        let (writer, guard) = start(recorder, 1_000, Duration::from_secs(60), "test-log").unwrap();
        line(&writer, "a\n");
        line(&writer, "b\n");
        drop(guard);
        let written: Vec<u8> = writes.try_iter().flatten().collect();
        assert_eq!(written, b"a\nb\n");
        assert!(writer.shared.lock().stopped);
    }

    #[test]
    fn a_failed_write_counts_its_lines_as_dropped() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (writer, guard) = start(Broken, 100, GATHER, "test-log").unwrap();
        line(&writer, "a\n");
        line(&writer, "b\n");
        drop(guard);
        assert_eq!(writer.dropped().get(), 2);
    }
}
