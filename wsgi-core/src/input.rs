//! Request-body streaming between the host's I/O task and `wsgi.input`.
//!
//! The body is pulled, not pushed: the host's stream is polled only after the application
//! asked for bytes, one chunk per request. So nothing is read before the app reads (a host
//! sends `100 Continue` on the first poll), memory stays at one chunk, and a body the app
//! never reads is left to the host to discard.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use futures::task::AtomicWaker;

use crate::chan;
use crate::chunk::Chunk;
use crate::host::BoxError;
use crate::spooled::SpooledBody;

/// Chunks the host may deliver ahead of the reader, so `read()` of a large body is not one
/// thread hand-off per chunk; bounds the memory of a request body to a few chunks.
const READ_AHEAD: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct Demand {
    /// Bytes the reader still wants; `u64::MAX` for "everything".
    wanted: AtomicU64,
    waker: AtomicWaker,
    /// Set when the body crossed `max_body`, so the engine answers 413 rather than 500.
    too_large: AtomicBool,
    /// Set when the client stopped sending mid-body, so the engine answers 408.
    timed_out: AtomicBool,
}

type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// The host side: polled by the response future and then by the response body.
pub(crate) struct InputPump {
    body: Option<BodyStream>,
    demand: Arc<Demand>,
    tx: chan::Sender<Chunk>,
    /// A chunk that did not fit the channel; sent before anything else is read.
    stash: Option<Chunk>,
    received: u64,
    max_body: Option<u64>,
}

impl std::fmt::Debug for InputPump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputPump")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

/// The application side, used by `wsgi.input`.
#[derive(Debug)]
pub(crate) enum InputSource {
    /// The whole body, read by the host before the request was queued (possibly nothing):
    /// `wsgi.input` serves it without a hand-off or a wait.
    Buffered(VecDeque<Bytes>),
    /// A body still arriving, pulled from the host on demand; reads block without the GIL.
    Streamed {
        demand: Arc<Demand>,
        rx: chan::Receiver<Chunk>,
    },
    /// The whole body, received by the host into a temporary file before the request was
    /// queued ([`crate::spool`], [`crate::spooled`]); reads touch the file, so they are made without the GIL.
    Spooled(SpooledBody),
    /// A body pulled from another process (the host, for a worker process), which
    /// enforces the limits and timeouts and says when one was crossed.
    Pulled {
        from: Box<dyn Pull>,
        too_large: bool,
        timed_out: bool,
    },
}

/// Where a [`InputSource::Pulled`] body comes from.
pub(crate) trait Pull: Send + Sync + std::fmt::Debug {
    /// The next piece, waiting for it; `want` as in [`InputSource::next_chunk`]. Called
    /// without the GIL.
    fn pull(&mut self, want: u64) -> Pulled;
}

/// One answer of a [`Pull`].
#[derive(Debug)]
pub(crate) enum Pulled {
    Chunk(Chunk),
    /// The client stopped sending for longer than the body timeout.
    TimedOut(String),
}

/// Connects a host body stream to a reader.
pub(crate) fn channel<S>(body: S, max_body: Option<u64>) -> (InputPump, InputSource)
where
    S: Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
{
    let (tx, rx) = chan::bounded(READ_AHEAD);
    let demand = Arc::new(Demand::default());
    (
        InputPump {
            body: Some(Box::pin(body)),
            demand: demand.clone(),
            tx,
            stash: None,
            received: 0,
            max_body,
        },
        InputSource::Streamed { demand, rx },
    )
}

/// The body timeout of a body the host receives: fires when the client has sent nothing
/// for that long.
#[derive(Debug)]
pub(crate) struct IdleTimer(Option<(futures_timer::Delay, Duration)>);

impl IdleTimer {
    pub(crate) fn new(timeout: Option<Duration>) -> Self {
        IdleTimer(timeout.map(|t| (futures_timer::Delay::new(t), t)))
    }

    /// Data arrived (or the host itself held the client back): the wait starts over.
    pub(crate) fn reset(&mut self) {
        if let Some((delay, timeout)) = &mut self.0 {
            delay.reset(*timeout);
        }
    }

    /// The timeout, once it has passed without data.
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>) -> Option<Duration> {
        let (delay, timeout) = self.0.as_mut()?;
        Pin::new(delay).poll(cx).is_ready().then_some(*timeout)
    }
}

/// Reads a whole, small request body on the host before the request is queued, so that
/// a Python thread never waits for it: one hand-off per request instead of one per
/// read-ahead window, and no Python thread held by a slow upload.
pub(crate) struct BodyBuffer {
    body: BodyStream,
    /// With a body timeout: fires when the client has sent nothing for that long.
    idle: IdleTimer,
    chunks: VecDeque<Bytes>,
    /// The declared `Content-Length`: more than this is not kept.
    expected: u64,
    received: u64,
}

impl std::fmt::Debug for BodyBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyBuffer")
            .field("expected", &self.expected)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

/// Why a buffered body could not be read.
#[derive(Debug)]
pub(crate) enum Unread {
    /// The client sent nothing for the body timeout.
    TimedOut(Duration),
    /// The host's body stream failed (client vanished, malformed chunking, ...).
    Failed(String),
    /// A body of undeclared length grew past the configured maximum.
    TooLarge(u64),
    /// The body could not be written to its temporary file.
    Spool(std::io::Error),
}

impl BodyBuffer {
    /// Buffers `body`, which declared `expected` bytes; gives up after `idle_timeout`
    /// without data.
    pub(crate) fn new<S>(body: S, expected: u64, idle_timeout: Option<Duration>) -> Self
    where
        S: Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
    {
        BodyBuffer {
            body: Box::pin(body),
            idle: IdleTimer::new(idle_timeout),
            chunks: VecDeque::new(),
            expected,
            received: 0,
        }
    }

    /// The whole body once it has arrived, or why it could not be read.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<InputSource, Unread>> {
        loop {
            match self.body.as_mut().poll_next(cx) {
                Poll::Pending => {
                    if let Some(timeout) = self.idle.expired(cx) {
                        return Poll::Ready(Err(Unread::TimedOut(timeout)));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(mut bytes))) => {
                    self.idle.reset();
                    // A host may not cut the body at Content-Length; the app must not see more.
                    let room = self.expected - self.received;
                    bytes.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                    self.received += bytes.len() as u64;
                    if !bytes.is_empty() {
                        self.chunks.push_back(bytes);
                    }
                    if self.received == self.expected {
                        return Poll::Ready(Ok(InputSource::Buffered(std::mem::take(
                            &mut self.chunks,
                        ))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(Unread::Failed(error_chain(&*e))));
                }
                // Short of Content-Length: `wsgi.input` reports it when the app reads.
                Poll::Ready(None) => {
                    return Poll::Ready(Ok(InputSource::Buffered(std::mem::take(
                        &mut self.chunks,
                    ))));
                }
            }
        }
    }
}

impl InputPump {
    /// Serves pending demand; never returns `Ready` because it lives as long as the response.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) {
        if self.body.is_none() && self.stash.is_none() {
            return;
        }
        self.demand.waker.register(cx.waker());
        loop {
            if let Some(chunk) = self.stash.take() {
                // The reader wakes us when it has drained the channel. Sent, or nobody
                // reading any more: either way, move on.
                if let Err(chan::TrySendError::Full(chunk)) = self.tx.try_send(chunk) {
                    self.stash = Some(chunk);
                    return;
                }
            }
            let Some(body) = self.body.as_mut() else {
                return;
            };
            if self.demand.wanted.load(Ordering::Acquire) == 0 {
                return;
            }
            let chunk = match body.as_mut().poll_next(cx) {
                Poll::Pending => return,
                Poll::Ready(Some(Ok(bytes))) if bytes.is_empty() => continue,
                Poll::Ready(Some(Ok(bytes))) => {
                    self.received += bytes.len() as u64;
                    let len = bytes.len() as u64;
                    let _ =
                        self.demand
                            .wanted
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                                Some(if w == u64::MAX {
                                    w
                                } else {
                                    w.saturating_sub(len)
                                })
                            });
                    match self.max_body {
                        Some(max) if self.received > max => {
                            self.demand.too_large.store(true, Ordering::Release);
                            Chunk::TooLarge(max)
                        }
                        _ => Chunk::Data(bytes),
                    }
                }
                Poll::Ready(Some(Err(e))) => Chunk::Failed(error_chain(&*e)),
                Poll::Ready(None) => Chunk::Eof,
            };
            if !matches!(chunk, Chunk::Data(_)) {
                self.body = None;
            }
            self.stash = Some(chunk);
        }
    }
}

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl InputSource {
    /// A body with nothing in it.
    pub(crate) fn empty() -> Self {
        InputSource::Buffered(VecDeque::new())
    }

    /// The next chunk if it needs no waiting: for a buffered body, the next piece or the
    /// end; `None` for a streamed body.
    pub(crate) fn next_buffered(&mut self) -> Option<Chunk> {
        match self {
            InputSource::Buffered(chunks) => {
                Some(chunks.pop_front().map_or(Chunk::Eof, Chunk::Data))
            }
            InputSource::Streamed { .. } | InputSource::Pulled { .. } | InputSource::Spooled(_) => {
                None
            }
        }
    }

    /// The next chunk, waiting up to `timeout` (if given) for the host to deliver it.
    /// `want` is how many bytes the reader needs in all (`u64::MAX`: the rest of the body),
    /// so the host can read ahead that far. Blocks on a streamed body and reads the file of
    /// a spooled one: call without the GIL.
    pub(crate) fn next_chunk(&mut self, want: u64, timeout: Option<Duration>) -> Chunk {
        if let Some(chunk) = self.next_buffered() {
            return chunk;
        }
        let (demand, rx) = match self {
            InputSource::Spooled(body) => return body.next_chunk(want),
            InputSource::Buffered(_) => {
                unreachable!("a buffered body always has its next chunk")
            }
            InputSource::Pulled {
                from,
                too_large,
                timed_out,
            } => {
                return match from.pull(want.max(1)) {
                    Pulled::Chunk(chunk) => {
                        *too_large |= matches!(chunk, Chunk::TooLarge(_));
                        chunk
                    }
                    Pulled::TimedOut(why) => {
                        *timed_out = true;
                        Chunk::Failed(why)
                    }
                };
            }
            InputSource::Streamed { demand, rx } => (demand, rx),
        };
        if let Ok(chunk) = rx.try_recv() {
            return chunk;
        }
        demand.wanted.store(want.max(1), Ordering::Release);
        demand.waker.wake();
        match rx.recv_timeout(timeout) {
            Ok(chunk) => chunk,
            Err(chan::RecvError::Empty) => {
                demand.timed_out.store(true, Ordering::Release);
                Chunk::Failed(format!(
                    "the client sent no request body data for {:.1} s",
                    timeout.unwrap_or_default().as_secs_f64()
                ))
            }
            Err(chan::RecvError::Disconnected) => {
                Chunk::Failed("the client went away before sending the whole request body".into())
            }
        }
    }

    /// Whether the client stopped sending the body for longer than the idle timeout.
    pub(crate) fn timed_out(&self) -> bool {
        match self {
            InputSource::Buffered(_) | InputSource::Spooled(_) => false,
            InputSource::Streamed { demand, .. } => demand.timed_out.load(Ordering::Acquire),
            InputSource::Pulled { timed_out, .. } => *timed_out,
        }
    }

    /// Whether the body crossed the configured maximum.
    pub(crate) fn too_large(&self) -> bool {
        match self {
            InputSource::Buffered(_) | InputSource::Spooled(_) => false,
            InputSource::Streamed { demand, .. } => demand.too_large.load(Ordering::Acquire),
            InputSource::Pulled { too_large, .. } => *too_large,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker_ref;

    #[test]
    fn pulls_only_on_demand_and_enforces_the_limit() {
        let polled = Arc::new(AtomicBool::new(false));
        let flag = polled.clone();
        let body = futures::stream::iter([b"abc".as_slice(), b"defg"]).map(move |b| {
            flag.store(true, Ordering::SeqCst);
            Ok::<_, BoxError>(Bytes::from_static(b))
        });
        use futures::StreamExt;
        let (mut pump, source) = channel(body, Some(5));
        let mut cx = Context::from_waker(noop_waker_ref());
        pump.poll(&mut cx);
        assert!(!polled.load(Ordering::SeqCst), "read before the app asked");
        let reader = std::thread::spawn(move || {
            let mut source = source;
            let first = source.next_chunk(1, None);
            let second = source.next_chunk(1, None);
            (first, second, source.too_large())
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !reader.is_finished() && std::time::Instant::now() < deadline {
            pump.poll(&mut cx);
            std::thread::yield_now();
        }
        let (first, second, too_large) = reader.join().unwrap();
        assert!(matches!(first, Chunk::Data(b) if b == "abc"));
        assert!(matches!(second, Chunk::TooLarge(5)));
        assert!(too_large);
    }
}
