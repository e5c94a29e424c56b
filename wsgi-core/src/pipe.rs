//! The response pipe from a Python thread to the host's I/O task.
//!
//! A byte-bounded queue: the Python side blocks (with the GIL released) once `limit` bytes
//! are waiting, so a slow client pauses the application's generator instead of growing
//! memory; the host side is an ordinary `poll`. Dropping the host side wakes a parked
//! sender at once, which is how a disconnect reaches the application (`close()` runs
//! promptly, even for a generator stuck on backpressure).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::task::AtomicWaker;

use crate::response::Head;

/// One message from the application to the host.
#[derive(Debug)]
pub(crate) enum Msg {
    /// Status and headers; always the first message.
    Head(Head),
    /// A body chunk.
    Data(Bytes),
    /// The body is complete.
    End,
    /// The body cannot be completed; the host must not make it look complete.
    Abort(String),
    /// The application ended its body short of its `Content-Length`: an abort, and the
    /// application's error, which the host logs when it meets it. A response that carries
    /// no body (to HEAD, a 304) drops the pipe before, and is no error.
    Short(String),
}

impl Msg {
    fn weight(&self) -> usize {
        match self {
            Msg::Data(b) => b.len(),
            _ => 0,
        }
    }
}

/// The host side has gone: the client disconnected or the response was dropped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Gone;

#[derive(Debug)]
struct State {
    queue: VecDeque<Msg>,
    bytes: usize,
    rx_gone: bool,
    tx_gone: bool,
    /// The engine answered for the application (timeout): its further sends go nowhere.
    overridden: bool,
    head_sent: bool,
    /// Senders waiting on `space`. std's `Condvar` makes a system call for every notify,
    /// waiter or not, and almost every response is taken without its sender ever
    /// waiting: notifying only when one waits saves a futex call per response (and per
    /// body chunk taken).
    parked: usize,
}

impl State {
    fn closed(&self) -> bool {
        self.rx_gone || self.overridden
    }

    fn push(&mut self, msg: Msg) {
        self.head_sent |= matches!(msg, Msg::Head(_));
        self.bytes += msg.weight();
        self.queue.push_back(msg);
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    space: Condvar,
    rx_waker: AtomicWaker,
    /// A sender that does not park (the worker-process relay) waiting for room.
    tx_waker: AtomicWaker,
    limit: usize,
    /// Engine-wide: set when shutdown's grace period ran out, to free parked senders.
    force_close: Arc<AtomicBool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates a pipe that parks the sender once `limit` bytes are queued.
pub(crate) fn pipe(limit: usize, force_close: Arc<AtomicBool>) -> (PipeTx, PipeRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(4),
            bytes: 0,
            rx_gone: false,
            tx_gone: false,
            overridden: false,
            head_sent: false,
            parked: 0,
        }),
        space: Condvar::new(),
        rx_waker: AtomicWaker::new(),
        tx_waker: AtomicWaker::new(),
        limit,
        force_close,
    });
    (PipeTx(Tx::Local(shared.clone())), PipeRx(shared))
}

impl PipeTx {
    /// A sender whose messages go to `sink` instead of a pipe in this process.
    pub(crate) fn remote(sink: Box<dyn RemoteSink>) -> Self {
        PipeTx(Tx::Remote(sink))
    }
}

/// The application's end: a pipe to the host's I/O task in this process, or a sink that
/// carries the messages to the host process (in a worker process).
#[derive(Debug)]
pub(crate) struct PipeTx(Tx);

#[derive(Debug)]
enum Tx {
    Local(Arc<Shared>),
    Remote(Box<dyn RemoteSink>),
}

/// Where a worker process's responses go: the same contract as [`PipeTx`]'s methods.
pub(crate) trait RemoteSink: Send + Sync + std::fmt::Debug {
    /// Sends `msg` if that needs no waiting; may be called with the GIL held.
    fn try_send(&self, msg: Msg) -> TrySend;
    /// Sends `msg`, waiting as long as it takes. Call it with the GIL released.
    fn send(&self, msg: Msg) -> Result<(), Gone>;
    /// Whether the host said the client has gone.
    fn is_gone(&self) -> bool;
    /// Hands what `try_send` gathered to the host as far as that needs no waiting, and
    /// keeps the rest for later; may be called with the GIL held.
    fn try_flush(&self);
    /// As `try_send`, for the last piece of a body, whose end follows at once: it may be
    /// held back to go out with the end.
    fn try_send_last(&self, msg: Msg) -> TrySend {
        self.try_send(msg)
    }
}

/// Outcome of a send that must not block.
#[derive(Debug)]
pub(crate) enum TrySend {
    Sent,
    Full(Msg),
    Gone,
}

impl PipeTx {
    /// Queues `msg` if there is room; never blocks, so it can run with the GIL held.
    pub(crate) fn try_send(&self, msg: Msg) -> TrySend {
        let shared = match &self.0 {
            Tx::Local(shared) => shared,
            Tx::Remote(sink) => return sink.try_send(msg),
        };
        let mut st = shared.lock();
        if st.closed() || shared.force_close.load(Ordering::Relaxed) {
            return TrySend::Gone;
        }
        if st.bytes > 0 && st.bytes + msg.weight() > shared.limit {
            return TrySend::Full(msg);
        }
        st.push(msg);
        drop(st);
        shared.rx_waker.wake();
        TrySend::Sent
    }

    /// As [`try_send`](Self::try_send), for the last piece of a body, whose end the caller
    /// sends at once: a worker's sink sends both in one write.
    pub(crate) fn try_send_last(&self, msg: Msg) -> TrySend {
        match &self.0 {
            Tx::Local(_) => self.try_send(msg),
            Tx::Remote(sink) => sink.try_send_last(msg),
        }
    }

    /// Queues `msg`, waiting for room. Call it with the GIL released.
    pub(crate) fn send(&self, msg: Msg) -> Result<(), Gone> {
        let shared = match &self.0 {
            Tx::Local(shared) => shared,
            Tx::Remote(sink) => return sink.send(msg),
        };
        let mut st = shared.lock();
        loop {
            if st.closed() || shared.force_close.load(Ordering::Relaxed) {
                return Err(Gone);
            }
            // An empty queue always takes one message, however large, so progress is made.
            if st.bytes == 0 || st.bytes + msg.weight() <= shared.limit {
                break;
            }
            // The timeout only serves `force_close`, which is set without notifying.
            st.parked += 1;
            st = shared
                .space
                .wait_timeout(st, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.parked -= 1;
        }
        st.push(msg);
        drop(st);
        shared.rx_waker.wake();
        Ok(())
    }

    /// Queues `msg` if there is room, as [`try_send`](Self::try_send); when there is not,
    /// `waker` is woken once there is (or once the host side has gone). For a sender that
    /// must never block, and cannot park either: the worker-process relay.
    pub(crate) fn try_send_or_wake(&self, msg: Msg, waker: &std::task::Waker) -> TrySend {
        let Tx::Local(shared) = &self.0 else {
            return self.try_send(msg);
        };
        match self.try_send(msg) {
            TrySend::Full(msg) => {
                shared.tx_waker.register(waker);
                // Room made between the two calls would have woken nobody.
                self.try_send(msg)
            }
            other => other,
        }
    }

    /// Whether the host side has gone (the client left, or the response was dropped).
    pub(crate) fn is_gone(&self) -> bool {
        let shared = match &self.0 {
            Tx::Local(shared) => shared,
            Tx::Remote(sink) => return sink.is_gone(),
        };
        shared.lock().closed() || shared.force_close.load(Ordering::Relaxed)
    }

    /// Hands what the application has sent so far to the host now, as far as that needs
    /// no waiting; may be called with the GIL held. Called before the response iterable's
    /// `close()`, which may be slow or may end the worker process: a response that is
    /// complete must not wait for it. A local pipe hands each message over as it is sent,
    /// so there is nothing to do.
    pub(crate) fn try_flush(&self) {
        if let Tx::Remote(sink) = &self.0 {
            sink.try_flush();
        }
    }

    /// Answers in the application's place: `head` if it has sent no head yet, else an
    /// abort. From then on the application's sends fail as if the client had gone, and a
    /// sender parked on backpressure is freed.
    pub(crate) fn override_with(&self, head: impl FnOnce() -> Head, why: &str) {
        // Only the host overrides, and its pipes are local.
        let Tx::Local(shared) = &self.0 else {
            return;
        };
        let mut st = shared.lock();
        if st.closed() {
            return;
        }
        st.overridden = true;
        if st.head_sent {
            st.push(Msg::Abort(why.to_owned()));
        } else {
            st.push(Msg::Head(head()));
        }
        let parked = st.parked > 0;
        drop(st);
        if parked {
            shared.space.notify_all();
        }
        shared.rx_waker.wake();
    }
}

impl Drop for PipeTx {
    fn drop(&mut self) {
        if let Tx::Local(shared) = &self.0 {
            shared.lock().tx_gone = true;
            shared.rx_waker.wake();
        }
    }
}

/// The host's end.
#[derive(Debug)]
pub(crate) struct PipeRx(Arc<Shared>);

impl PipeRx {
    /// The next message; `None` once the sender is gone and the queue is drained.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Msg>> {
        match self.pop() {
            Poll::Pending => {}
            ready => return ready,
        }
        self.0.rx_waker.register(cx.waker());
        self.pop()
    }

    /// Whether the engine's shutdown has abandoned what is still running (its grace
    /// period is over): a sender that went without a word was stopped, not faulty.
    pub(crate) fn force_closed(&self) -> bool {
        self.0.force_close.load(Ordering::Relaxed)
    }

    fn pop(&mut self) -> Poll<Option<Msg>> {
        let mut st = self.0.lock();
        let Some(msg) = st.queue.pop_front() else {
            return if st.tx_gone {
                Poll::Ready(None)
            } else {
                Poll::Pending
            };
        };
        st.bytes -= msg.weight();
        let msg = match msg {
            Msg::Data(first) => Msg::Data(coalesce(&mut st, first)),
            other => other,
        };
        let room = msg.weight() > 0;
        let wake = room && st.parked > 0;
        drop(st);
        if wake {
            self.0.space.notify_one();
        }
        if room {
            self.0.tx_waker.wake();
        }
        Poll::Ready(Some(msg))
    }
}

/// Frames up to this size are built from several small queued chunks.
const COALESCE_MAX: usize = 64 * 1024;

/// Joins `first` with the small data chunks queued right behind it: a generator that runs
/// ahead of a slow client has queued many, and one write of 64 KiB costs the host far less
/// than sixteen writes of 4 KiB (one syscall and, for chunked bodies, one chunk header).
fn coalesce(st: &mut State, first: Bytes) -> Bytes {
    let fits = |b: &Bytes, total: usize| total + b.len() <= COALESCE_MAX;
    match st.queue.front() {
        Some(Msg::Data(next)) if fits(next, first.len()) => {}
        _ => return first,
    }
    let mut joined = bytes::BytesMut::with_capacity(COALESCE_MAX.min(st.bytes + first.len()));
    joined.extend_from_slice(&first);
    while let Some(Msg::Data(next)) = st.queue.front() {
        if !fits(next, joined.len()) {
            break;
        }
        let Some(Msg::Data(next)) = st.queue.pop_front() else {
            unreachable!("the front was data a moment ago")
        };
        st.bytes -= next.len();
        joined.extend_from_slice(&next);
    }
    joined.freeze()
}

impl Drop for PipeRx {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.rx_gone = true;
        st.queue.clear();
        let parked = st.parked > 0;
        drop(st);
        if parked {
            self.0.space.notify_all();
        }
        self.0.tx_waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::tests::eventually;
    use futures::task::noop_waker_ref;

    fn recv(rx: &mut PipeRx) -> Poll<Option<Msg>> {
        rx.poll_recv(&mut Context::from_waker(noop_waker_ref()))
    }

    #[test]
    fn bounded_by_bytes_and_always_admits_one() {
        let (tx, mut rx) = pipe(10, Arc::default());
        assert!(matches!(
            tx.try_send(Msg::Data(Bytes::from(vec![0; 100]))),
            TrySend::Sent
        ));
        assert!(matches!(
            tx.try_send(Msg::Data(Bytes::from_static(b"x"))),
            TrySend::Full(_)
        ));
        assert!(matches!(recv(&mut rx), Poll::Ready(Some(Msg::Data(_)))));
        assert!(matches!(
            tx.try_send(Msg::Data(Bytes::from_static(b"x"))),
            TrySend::Sent
        ));
        assert!(matches!(recv(&mut rx), Poll::Ready(Some(Msg::Data(_)))));
        assert!(recv(&mut rx).is_pending());
        drop(tx);
        assert!(matches!(recv(&mut rx), Poll::Ready(None)));
    }

    #[test]
    fn an_override_answers_once_and_stops_the_sender() {
        let (tx, mut rx) = pipe(1, Arc::default());
        let ok = || Head::plain(http::StatusCode::OK, "");
        tx.send(Msg::Head(ok())).unwrap();
        tx.send(Msg::Data(Bytes::from_static(b"fill"))).unwrap();
        tx.override_with(|| unreachable!("the head went out already"), "late");
        assert_eq!(tx.send(Msg::Data(Bytes::from_static(b"x"))), Err(Gone));
        assert!(matches!(recv(&mut rx), Poll::Ready(Some(Msg::Head(_)))));
        assert!(matches!(recv(&mut rx), Poll::Ready(Some(Msg::Data(_)))));
        assert!(matches!(recv(&mut rx), Poll::Ready(Some(Msg::Abort(_)))));
    }

    #[test]
    fn small_queued_chunks_leave_as_one_frame() {
        let (tx, mut rx) = pipe(1 << 20, Arc::default());
        for _ in 0..3 {
            tx.send(Msg::Data(Bytes::from_static(b"abc"))).unwrap();
        }
        tx.send(Msg::End).unwrap();
        assert!(matches!(recv(&mut rx), Poll::Ready(Some(Msg::Data(b))) if b == "abcabcabc"));
        assert!(matches!(recv(&mut rx), Poll::Ready(Some(Msg::End))));
    }

    #[test]
    fn dropping_the_receiver_frees_a_parked_sender() {
        let (tx, rx) = pipe(1, Arc::default());
        tx.send(Msg::Data(Bytes::from_static(b"fill"))).unwrap();
        let parked = std::thread::spawn(move || tx.send(Msg::Data(Bytes::from_static(b"more"))));
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        assert_eq!(parked.join().unwrap(), Err(Gone));
    }

    #[test]
    fn taking_data_wakes_a_parked_sender_and_only_a_parked_one_is_counted() {
        let (tx, mut rx) = pipe(1, Arc::default());
        let shared = rx.0.clone();
        tx.send(Msg::Data(Bytes::from_static(b"fill"))).unwrap();
        assert_eq!(shared.lock().parked, 0, "a sender that did not wait");
        let sender = std::thread::spawn(move || {
            let sent = tx.send(Msg::Data(Bytes::from_static(b"more")));
            (sent, tx)
        });
        eventually("the sender to park", || shared.lock().parked == 1);
        assert!(matches!(recv(&mut rx), Poll::Ready(Some(Msg::Data(b))) if b == "fill"));
        let (sent, _tx) = sender.join().unwrap();
        assert_eq!(sent, Ok(()));
        assert_eq!(shared.lock().parked, 0);
        assert!(matches!(recv(&mut rx), Poll::Ready(Some(Msg::Data(b))) if b == "more"));
    }
}
