//! One thread that waits on every worker socket of the host at once, in place of a host
//! thread per worker thread.
//!
//! The thread sleeps in `epoll_wait` (through mio) over the sockets it is given and a
//! waker; it calls its [`Handler`] when a socket can be read or written, and with the notes
//! other threads leave for it ([`Reactor::notify`]). Under load, one wake-up serves every
//! socket that became ready meanwhile. The handler does the work; this module knows nothing
//! of requests.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Wake, Waker};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

/// The token of the reactor's own waker; the sockets' tokens are their handler's.
const WAKER: Token = Token(usize::MAX);

/// How often the thread asks its handler whether its work is over, when nothing happens.
const IDLE_CHECK: Duration = Duration::from_millis(250);

/// What the reactor's thread calls.
pub(crate) trait Handler<N>: Send + Sync + 'static {
    /// The socket registered as `token` has bytes to read, or was closed by its peer.
    fn readable(&self, token: usize);
    /// The socket registered as `token` takes bytes again.
    fn writable(&self, token: usize);
    /// A note another thread left with [`Reactor::notify`].
    fn notified(&self, note: N);
    /// The events of one wake-up have all been handled.
    fn batch_done(&self);
    /// Whether the reactor's work is over: its thread then ends.
    fn finished(&self) -> bool;
}

/// The handle other threads use: register sockets, leave notes.
#[derive(Debug)]
pub(crate) struct Reactor<N> {
    registry: Registry,
    waker: mio::Waker,
    notes: Mutex<Vec<N>>,
}

impl<N: Send + 'static> Reactor<N> {
    /// Starts the reactor's thread, named `name`, calling `handler` (which it holds until
    /// the handler says it is finished).
    pub(crate) fn start<H: Handler<N>>(
        name: String,
        handler: impl FnOnce(Weak<Self>) -> Arc<H>,
    ) -> io::Result<(Arc<Self>, Arc<H>)> {
        let poll = Poll::new()?;
        let reactor = Arc::new(Reactor {
            registry: poll.registry().try_clone()?,
            waker: mio::Waker::new(poll.registry(), WAKER)?,
            notes: Mutex::new(Vec::new()),
        });
        let handler = handler(Arc::downgrade(&reactor));
        let (thread_reactor, thread_handler) = (reactor.clone(), handler.clone());
        std::thread::Builder::new()
            .name(name)
            .spawn(move || thread_reactor.run(poll, &*thread_handler))?;
        Ok((reactor, handler))
    }

    fn run(&self, mut poll: Poll, handler: &dyn Handler<N>) {
        let mut events = Events::with_capacity(256);
        let mut notes = Vec::new();
        loop {
            if let Err(e) = poll.poll(&mut events, Some(IDLE_CHECK))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(target: "wsgi_core", "the worker sockets cannot be waited on: {e}");
                return;
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    std::mem::swap(&mut notes, &mut *lock(&self.notes));
                    for note in notes.drain(..) {
                        handler.notified(note);
                    }
                    continue;
                }
                let token = event.token().0;
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    handler.readable(token);
                }
                if event.is_writable() {
                    handler.writable(token);
                }
            }
            handler.batch_done();
            if handler.finished() {
                return;
            }
        }
    }

    /// Watches `fd`, as `token`, to become readable (edge-triggered: the handler reads until
    /// it would block).
    pub(crate) fn register(&self, token: usize, fd: RawFd) -> io::Result<()> {
        self.registry
            .register(&mut SourceFd(&fd), Token(token), Interest::READABLE)
    }

    /// Watches `fd` (registered as `token`) for room to write too, or no longer: only while
    /// bytes wait, since a socket becomes writable each time its peer reads.
    pub(crate) fn watch_writable(&self, token: usize, fd: RawFd, writable: bool) -> io::Result<()> {
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        self.registry
            .reregister(&mut SourceFd(&fd), Token(token), interest)
    }

    /// Stops watching `fd`.
    pub(crate) fn deregister(&self, fd: RawFd) {
        let _ = self.registry.deregister(&mut SourceFd(&fd));
    }

    /// Leaves `note` for the handler, on the reactor's thread.
    pub(crate) fn notify(&self, note: N) {
        lock(&self.notes).push(note);
        if let Err(e) = self.waker.wake() {
            tracing::error!(target: "wsgi_core", "cannot wake the worker sockets' thread: {e}");
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
