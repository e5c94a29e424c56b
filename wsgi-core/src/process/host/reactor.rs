//! One waiter on every worker socket of the host at once, in place of a host thread per
//! worker thread.
//!
//! The reactor is an epoll set (through mio) over the sockets it is given and a waker; a
//! turn calls its [`Handler`] for each socket that can be read or written, and with the
//! notes other threads leave for it ([`Reactor::notify`]). Under load, one turn serves every
//! socket that became ready meanwhile. The handler does the work; this module knows nothing
//! of requests.
//!
//! Who turns it: when the engine is built inside a multi-threaded tokio runtime (with the
//! `tokio` feature, which the axum adapter turns on), a task of that runtime does, woken by
//! the runtime's own epoll: a response then reaches the I/O task that sends it without a
//! thread of ours waking in between, which is most of what the relay cost per request.
//! Otherwise, and if that runtime goes away first, a thread of its own sleeps in
//! `epoll_wait`.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Wake, Waker};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

/// The token of the reactor's own waker; slots use their index.
const WAKER: Token = Token(usize::MAX);

/// How often the thread asks its handler whether its work is over, when nothing happens.
const IDLE_CHECK: Duration = Duration::from_millis(250);

/// What a turn calls.
pub(crate) trait Handler<N>: Send + Sync + 'static {
    /// `slot`'s socket has bytes to read, or was closed by its peer.
    fn readable(&self, slot: usize);
    /// `slot`'s socket takes bytes again.
    fn writable(&self, slot: usize);
    /// A note another thread left with [`Reactor::notify`].
    fn notified(&self, note: N);
    /// The events of one turn have all been handled.
    fn batch_done(&self);
    /// Whether the reactor's work is over: nothing turns it any more then.
    fn finished(&self) -> bool;
}

/// The handle other threads use: register sockets, leave notes.
#[derive(Debug)]
pub(crate) struct Reactor<N> {
    registry: Registry,
    waker: mio::Waker,
    notes: Mutex<Vec<N>>,
    /// A runtime's tasks turn it (not a thread of its own).
    on_runtime: AtomicBool,
}

/// The epoll set and what its turns call: owned by whoever turns the reactor.
struct Turner<N: Send + 'static, H> {
    reactor: Arc<Reactor<N>>,
    handler: Arc<H>,
    poll: Poll,
    events: Events,
    notes: Vec<N>,
    name: String,
}

/// What one turn found.
#[derive(Debug, PartialEq, Eq)]
enum Turned {
    /// As many events as a turn takes were handled: more may be waiting.
    Full,
    /// Some events were handled, fewer than a turn takes: none was left.
    Busy,
    /// None were ready.
    Idle,
    /// The handler's work is over.
    Over,
    /// The epoll set failed (logged).
    Failed,
}

impl<N: Send + 'static> Reactor<N> {
    /// Makes the reactor and its `handler` (which it holds until the handler says it is
    /// finished), turned by the current tokio runtime's tasks if there is a multi-threaded
    /// one, by a thread named `name` otherwise.
    pub(crate) fn start<H: Handler<N>>(
        name: String,
        handler: impl FnOnce(Weak<Self>) -> Arc<H>,
    ) -> io::Result<(Arc<Self>, Arc<H>)> {
        let poll = Poll::new()?;
        let reactor = Arc::new(Reactor {
            registry: poll.registry().try_clone()?,
            waker: mio::Waker::new(poll.registry(), WAKER)?,
            notes: Mutex::new(Vec::new()),
            on_runtime: AtomicBool::new(false),
        });
        let handler = handler(Arc::downgrade(&reactor));
        let turner = Turner {
            reactor: reactor.clone(),
            handler: handler.clone(),
            poll,
            events: Events::with_capacity(256),
            notes: Vec::new(),
            name,
        };
        #[cfg(feature = "tokio")]
        let Err(turner) = runtime::drive(turner) else {
            reactor.on_runtime.store(true, Ordering::Relaxed);
            return Ok((reactor, handler));
        };
        turner.spawn_thread()?;
        Ok((reactor, handler))
    }

    /// Watches `fd` for `slot` to become readable (edge-triggered: the handler reads until
    /// it would block).
    pub(crate) fn register(&self, slot: usize, fd: RawFd) -> io::Result<()> {
        self.registry
            .register(&mut SourceFd(&fd), Token(slot), Interest::READABLE)
    }

    /// Watches `fd` of `slot` for room to write too, or no longer: only while bytes wait,
    /// since a socket becomes writable each time its peer reads.
    pub(crate) fn watch_writable(&self, slot: usize, fd: RawFd, writable: bool) -> io::Result<()> {
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        self.registry
            .reregister(&mut SourceFd(&fd), Token(slot), interest)
    }

    /// Stops watching `fd`.
    pub(crate) fn deregister(&self, fd: RawFd) {
        let _ = self.registry.deregister(&mut SourceFd(&fd));
    }

    /// Leaves `note` for the handler, on the next turn.
    pub(crate) fn notify(&self, note: N) {
        lock(&self.notes).push(note);
        self.wake();
    }

    /// Whether a runtime's tasks turn the reactor (rather than a thread of its own).
    #[cfg_attr(not(test), expect(dead_code, reason = "for tests"))]
    pub(crate) fn on_runtime(&self) -> bool {
        self.on_runtime.load(Ordering::Relaxed)
    }

    /// Makes the reactor turn soon, if only to ask its handler whether its work is over.
    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::error!(target: "wsgi_core", "cannot wake the worker sockets' waiter: {e}");
        }
    }
}

impl<N: Send + 'static, H: Handler<N>> Turner<N, H> {
    fn spawn_thread(mut self) -> io::Result<()> {
        self.reactor.on_runtime.store(false, Ordering::Relaxed);
        std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                while let Turned::Full | Turned::Busy | Turned::Idle = self.turn(Some(IDLE_CHECK)) {
                }
            })
            .map(drop)
    }

    /// Waits up to `timeout` for events, and handles those there are.
    fn turn(&mut self, timeout: Option<Duration>) -> Turned {
        if let Err(e) = self.poll.poll(&mut self.events, timeout)
            && e.kind() != io::ErrorKind::Interrupted
        {
            tracing::error!(target: "wsgi_core", "the worker sockets cannot be waited on: {e}");
            return Turned::Failed;
        }
        let handler = &*self.handler;
        let busy = !self.events.is_empty();
        for event in self.events.iter() {
            if event.token() == WAKER {
                std::mem::swap(&mut self.notes, &mut *lock(&self.reactor.notes));
                for note in self.notes.drain(..) {
                    handler.notified(note);
                }
                continue;
            }
            let slot = event.token().0;
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                handler.readable(slot);
            }
            if event.is_writable() {
                handler.writable(slot);
            }
        }
        if busy {
            handler.batch_done();
        }
        let full = self.events.iter().count() == self.events.capacity();
        if handler.finished() {
            Turned::Over
        } else if full {
            Turned::Full
        } else if busy {
            Turned::Busy
        } else {
            Turned::Idle
        }
    }
}

/// Turning the reactor on a tokio runtime's tasks.
#[cfg(feature = "tokio")]
mod runtime {
    use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;
    use tokio::runtime::{Handle, RuntimeFlavor};

    use super::{Handler, Turned, Turner};

    /// Turns in a row before the task lets the runtime's other tasks run.
    const TURNS_PER_POLL: usize = 8;

    /// Hands `turner` to a task of the current runtime; gives it back when there is no
    /// runtime, or only a single-threaded one, whose thread may block in the engine (a
    /// start-up, a drain) while a worker waits for the relay.
    pub(super) fn drive<N: Send + 'static, H: Handler<N>>(
        turner: Turner<N, H>,
    ) -> Result<(), Turner<N, H>> {
        let Ok(handle) = Handle::try_current() else {
            return Err(turner);
        };
        if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
            return Err(turner);
        }
        // The runtime watches a descriptor of the same epoll set, its own to close.
        // SAFETY: the descriptor is the `Poll`'s, open while `turner` lives, which it
        // does for the whole statement.
        let epoll = unsafe { BorrowedFd::borrow_raw(turner.poll.as_raw_fd()) };
        let Ok(fd) = epoll.try_clone_to_owned() else {
            return Err(turner);
        };
        // A runtime built without `enable_io` panics here; its host serves no sockets of
        // its own, so the thread does the waiting instead.
        let watched = std::panic::catch_unwind(|| {
            let _entered = handle.enter();
            // SAFETY: `fd` is an open descriptor that the `AsyncFd` owns, so it stays open
            // and the same until the `AsyncFd` is dropped.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        });
        let watched = match watched {
            Ok(Ok(watched)) => watched,
            Ok(Err(e)) => {
                tracing::debug!(target: "wsgi_core", "the tokio runtime cannot watch the worker sockets ({e}); a thread waits on them");
                return Err(turner);
            }
            Err(_) => return Err(turner),
        };
        handle.spawn(turn_when_ready(watched, TakeOver(Some(turner))));
        Ok(())
    }

    async fn turn_when_ready<N: Send + 'static, H: Handler<N>>(
        watched: AsyncFd<OwnedFd>,
        mut turner: TakeOver<N, H>,
    ) {
        loop {
            let Ok(mut ready) = watched.readable().await else {
                // The runtime is shutting down: the thread takes over (on drop).
                return;
            };
            let Some(t) = turner.0.as_mut() else { return };
            let mut turned = Turned::Full;
            for _ in 0..TURNS_PER_POLL {
                turned = t.turn(Some(std::time::Duration::ZERO));
                if turned != Turned::Full {
                    break;
                }
            }
            match turned {
                // Nothing left: the next event is an edge the runtime sees, and one that
                // came after this turn's `epoll_wait` keeps the readiness `clear_ready`
                // would clear (tokio compares the driver's tick). So no second, empty
                // `epoll_wait` to make sure: it was 4% of the host's time under load.
                Turned::Busy | Turned::Idle => ready.clear_ready(),
                // Maybe more: the readiness stays, and the others run first.
                Turned::Full => {
                    drop(ready);
                    tokio::task::yield_now().await;
                }
                Turned::Over | Turned::Failed => {
                    turner.0 = None;
                    return;
                }
            }
        }
    }

    /// The task's turner, which a thread takes over if the task is dropped before the
    /// handler's work is over (the runtime shut down under a live engine).
    struct TakeOver<N: Send + 'static, H: Handler<N>>(Option<Turner<N, H>>);

    impl<N: Send + 'static, H: Handler<N>> Drop for TakeOver<N, H> {
        fn drop(&mut self) {
            if let Some(turner) = self.0.take()
                && !turner.handler.finished()
            {
                tracing::debug!(target: "wsgi_core", "the tokio runtime that waited on the worker sockets stopped; a thread takes over");
                if let Err(e) = turner.spawn_thread() {
                    tracing::error!(target: "wsgi_core", "cannot start a thread to wait on the worker sockets: {e}");
                }
            }
        }
    }
}

/// A [`Waker`] that leaves the note `make` makes with the reactor, for what reports
/// readiness through `std::task` (a response pipe with room again).
pub(crate) fn note_waker<N: Send + 'static>(
    reactor: Weak<Reactor<N>>,
    make: impl Fn() -> N + Send + Sync + 'static,
) -> Waker {
    struct NoteWaker<N, F> {
        reactor: Weak<Reactor<N>>,
        make: F,
    }
    impl<N: Send + 'static, F: Fn() -> N + Send + Sync + 'static> Wake for NoteWaker<N, F> {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            if let Some(reactor) = self.reactor.upgrade() {
                reactor.notify((self.make)());
            }
        }
    }
    Waker::from(Arc::new(NoteWaker { reactor, make }))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
