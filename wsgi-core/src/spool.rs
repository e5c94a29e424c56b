//! Request bodies read whole by the host before the request is queued, spilling to an
//! unlinked temporary file when they are too large to keep in memory.
//!
//! A slow upload must not hold a Python thread: with bodies streamed to `wsgi.input`, a few
//! clients uploading at modem speed occupy every thread while the app waits for their bytes.
//! So, as nginx's `proxy_request_buffering` and Passenger do, the host receives the whole
//! body first, in memory up to the buffering limit and in a temporary file beyond it, and
//! the request reaches a Python thread only once the body is complete; `wsgi.input` then
//! reads from memory or from the file ([`crate::spooled`]).
//!
//! The file is written on a thread of its own (one per engine, [`Spooler`]), never on the
//! host's I/O thread, where a slow disk would stall every connection, nor on a Python
//! thread. It is unlinked from the start (`O_TMPFILE` where the system has it), so it
//! vanishes with its descriptor whatever way the request ends, even if the process is
//! killed.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use futures::channel::oneshot;

use crate::host::BoxError;
use crate::input::{IdleTimer, InputSource, Unread};
use crate::spooled::SpooledBody;

/// Bytes gathered in memory before they are handed to the writer: large enough that a
/// slow client sending a few hundred bytes at a time costs one write per 64 KiB, small
/// enough to keep the memory of a waiting upload low.
const WRITE_BATCH: usize = 64 * 1024;

/// Bytes received but not yet written after which the body is no longer read until the
/// writer catches up, so a disk slower than the network pushes back on the client.
const MAX_UNWRITTEN: usize = 4 * WRITE_BATCH;

/// Work for the writer thread: append `data` to `file` (created first if `None`).
struct WriteJob {
    file: Option<File>,
    data: Vec<Bytes>,
    done: oneshot::Sender<io::Result<File>>,
}

/// An engine's spooling: the directory of its temporary files and the thread that writes
/// them.
#[derive(Debug)]
pub(crate) struct Spooler {
    jobs: mpsc::Sender<WriteJob>,
}

impl Spooler {
    /// Checks that temporary files can be made in `dir` and starts the writer thread.
    pub(crate) fn start(dir: PathBuf) -> io::Result<Spooler> {
        // Here rather than at the first large upload, so a wrong directory stops start-up.
        drop(tempfile::tempfile_in(&dir)?);
        let (jobs, queue) = mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("wsgi-spool".into())
            .spawn(move || write_jobs(&dir, &queue))?;
        Ok(Spooler { jobs })
    }
}

/// The writer thread: runs until every [`Spooler`] and [`BodySpool`] of its engine is gone.
fn write_jobs(dir: &Path, queue: &mpsc::Receiver<WriteJob>) {
    while let Ok(WriteJob { file, data, done }) = queue.recv() {
        let result = (|| {
            let mut file = match file {
                Some(file) => file,
                None => tempfile::tempfile_in(dir)?,
            };
            match data.as_slice() {
                [one] => file.write_all(one)?,
                // Pieces from a slow client can be a few bytes each: one write, not hundreds.
                pieces => {
                    let mut joined = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
                    for piece in pieces {
                        joined.extend_from_slice(piece);
                    }
                    file.write_all(&joined)?;
                }
            }
            Ok(file)
        })()
        .map_err(|e: io::Error| io::Error::new(e.kind(), format!("in {}: {e}", dir.display())));
        // Nobody waiting (the client went away): the file closes here, and so is gone.
        let _ = done.send(result);
    }
}

type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// Where the body received so far is kept.
enum Store {
    /// In memory only: the body may still fit the buffering limit.
    Memory,
    /// In the file, which no write is using.
    File(File),
    /// A write is under way; the file comes back with its result.
    Writing(oneshot::Receiver<io::Result<File>>),
}

/// Receives one request body whole, in memory or in a temporary file; polled by the
/// response future before the request is queued.
pub(crate) struct BodySpool {
    body: Option<BodyStream>,
    /// With a body timeout: fires when the client has sent nothing for that long.
    idle: IdleTimer,
    /// The declared `Content-Length`: more than this is not kept.
    expected: Option<u64>,
    /// Bodies longer than this are refused with 413.
    max_body: Option<u64>,
    /// Bodies up to this size stay in memory.
    memory_limit: u64,
    received: u64,
    /// Received and not yet written (or, in memory, the whole body so far).
    unwritten: VecDeque<Bytes>,
    unwritten_len: usize,
    store: Store,
    jobs: mpsc::Sender<WriteJob>,
}

impl std::fmt::Debug for BodySpool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodySpool")
            .field("expected", &self.expected)
            .field("received", &self.received)
            .field("in_file", &!matches!(self.store, Store::Memory))
            .finish_non_exhaustive()
    }
}

impl BodySpool {
    /// Receives `body`, which declared `expected` bytes (`None`: chunked or HTTP/2 without
    /// a length), keeping up to `memory_limit` bytes in memory; gives up after
    /// `idle_timeout` without data, or when the body grows past `max_body`.
    pub(crate) fn new<S>(
        spooler: &Spooler,
        body: S,
        expected: Option<u64>,
        memory_limit: u64,
        max_body: Option<u64>,
        idle_timeout: Option<Duration>,
    ) -> Self
    where
        S: Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
    {
        BodySpool {
            body: Some(Box::pin(body)),
            idle: IdleTimer::new(idle_timeout),
            expected,
            max_body,
            memory_limit,
            received: 0,
            unwritten: VecDeque::new(),
            unwritten_len: 0,
            store: Store::Memory,
            jobs: spooler.jobs.clone(),
        }
    }

    /// The whole body once it has arrived (and, if spooled, been written), or why it could
    /// not be received.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<InputSource, Unread>> {
        loop {
            if let Store::Writing(done) = &mut self.store {
                match Pin::new(done).poll(cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(Ok(file))) => {
                        self.store = Store::File(file);
                        // A client held back by the disk has not been idle.
                        self.idle.reset();
                    }
                    Poll::Ready(Ok(Err(e))) => return Poll::Ready(Err(Unread::Spool(e))),
                    Poll::Ready(Err(oneshot::Canceled)) => {
                        return Poll::Ready(Err(Unread::Spool(io::Error::other(
                            "the spool writer thread has stopped",
                        ))));
                    }
                }
            }
            if self.body.is_none() {
                match &mut self.store {
                    Store::Memory if self.received <= self.memory_limit => {
                        let chunks = std::mem::take(&mut self.unwritten);
                        return Poll::Ready(Ok(InputSource::Buffered(chunks)));
                    }
                    Store::File(_) if self.unwritten.is_empty() => {
                        let Store::File(file) = std::mem::replace(&mut self.store, Store::Memory)
                        else {
                            unreachable!()
                        };
                        let body = SpooledBody::new(file, self.received);
                        return Poll::Ready(Ok(InputSource::Spooled(body)));
                    }
                    Store::Memory | Store::File(_) => self.write(),
                    Store::Writing(_) => return Poll::Pending,
                }
                continue;
            }
            if self.should_write() {
                self.write();
                continue;
            }
            if matches!(self.store, Store::Writing(_)) && self.unwritten_len >= MAX_UNWRITTEN {
                // Waiting for the writer, whose answer wakes this task.
                return Poll::Pending;
            }
            let Some(body) = self.body.as_mut() else {
                continue;
            };
            match body.as_mut().poll_next(cx) {
                Poll::Pending => {
                    if let Some(timeout) = self.idle.expired(cx) {
                        return Poll::Ready(Err(Unread::TimedOut(timeout)));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(mut bytes))) => {
                    self.idle.reset();
                    if let Some(expected) = self.expected {
                        // A host may not cut the body at Content-Length; the app must not
                        // see more.
                        let room = expected - self.received;
                        bytes.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                    }
                    self.received += bytes.len() as u64;
                    if let Some(max) = self.max_body
                        && self.received > max
                    {
                        return Poll::Ready(Err(Unread::TooLarge(max)));
                    }
                    if !bytes.is_empty() {
                        self.unwritten_len += bytes.len();
                        self.unwritten.push_back(bytes);
                    }
                    if self.expected == Some(self.received) {
                        self.body = None;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(Unread::Failed(crate::input::error_chain(&*e))));
                }
                // Short of Content-Length: `wsgi.input` reports it when the app reads.
                Poll::Ready(None) => self.body = None,
            }
        }
    }

    /// Whether to hand what is unwritten to the writer now.
    fn should_write(&self) -> bool {
        match self.store {
            // Spill once the body has outgrown memory, or, declared too large for it, once
            // a batch is ready.
            Store::Memory => {
                self.received > self.memory_limit
                    || (self.expected.is_some_and(|e| e > self.memory_limit)
                        && self.unwritten_len >= WRITE_BATCH)
            }
            Store::File(_) => self.unwritten_len >= WRITE_BATCH,
            Store::Writing(_) => false,
        }
    }

    /// Hands what is unwritten to the writer thread (creating the file on the first write).
    fn write(&mut self) {
        let file = match std::mem::replace(&mut self.store, Store::Memory) {
            Store::Memory => None,
            Store::File(file) => Some(file),
            Store::Writing(_) => unreachable!("one write at a time"),
        };
        let (done, result) = oneshot::channel();
        let job = WriteJob {
            file,
            data: std::mem::take(&mut self.unwritten).into(),
            done,
        };
        self.unwritten_len = 0;
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            // The thread is gone: the next poll of `result` says so.
            drop(job);
        }
        self.store = Store::Writing(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Chunk;
    use futures::StreamExt;

    fn spool(
        pieces: Vec<&'static [u8]>,
        expected: Option<u64>,
        memory_limit: u64,
        max_body: Option<u64>,
    ) -> Result<InputSource, Unread> {
        let dir = std::env::temp_dir();
        let spooler = Spooler::start(dir).unwrap();
        let body = futures::stream::iter(pieces).map(|p| Ok::<_, BoxError>(Bytes::from_static(p)));
        let mut spool = BodySpool::new(&spooler, body, expected, memory_limit, max_body, None);
        futures::executor::block_on(futures::future::poll_fn(|cx| spool.poll(cx)))
    }

    fn read_all(source: InputSource) -> Vec<u8> {
        let InputSource::Spooled(mut body) = source else {
            panic!("not spooled: {source:?}")
        };
        let mut out = Vec::new();
        loop {
            match body.next_chunk(7) {
                Chunk::Data(bytes) => out.extend_from_slice(&bytes),
                Chunk::Eof => return out,
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_body_over_the_memory_limit_is_read_back_from_the_file() {
        let big: &'static [u8] = Box::leak(vec![b'x'; 200_000].into_boxed_slice());
        let source = spool(vec![b"head-", big, b"-tail"], None, 10, None).unwrap();
        let read = read_all(source);
        assert_eq!(read.len(), 200_010);
        assert!(read.starts_with(b"head-x") && read.ends_with(b"x-tail"));
    }

    #[test]
    fn a_declared_length_is_spooled_and_cut_there() {
        let source = spool(vec![b"0123456789", b"extra"], Some(12), 4, None).unwrap();
        assert_eq!(read_all(source), b"0123456789ex");
    }

    #[test]
    fn an_unsized_body_within_the_memory_limit_stays_in_memory() {
        let source = spool(vec![b"abc", b"def"], None, 6, None).unwrap();
        assert!(matches!(source, InputSource::Buffered(ref c) if c.len() == 2));
    }

    #[test]
    fn an_unsized_body_past_max_body_is_refused() {
        let result = spool(vec![b"abc", b"defg"], None, 2, Some(5));
        assert!(matches!(result, Err(Unread::TooLarge(5))), "{result:?}");
    }
}
