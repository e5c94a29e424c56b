//! A small bounded channel whose receiver parks at once, for the request-body hand-off.
//!
//! A Python thread waiting for body bytes waits on the network, usually for longer than a
//! spin is worth. A channel that spins and `sched_yield`s before it parks (crossbeam's)
//! takes the very core the host's I/O thread needs to deliver those bytes (the 64 KiB POST
//! benchmark in `benches/README.md` measured the difference). The job queue has its own
//! structure, [`crate::dispatch`].

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    senders: usize,
    receivers: usize,
    /// Receivers waiting on `ready`. std's `Condvar` makes a system call for every
    /// notify, waiter or not, and a reader that finds a chunk queued never waits: notify
    /// only when one does.
    waiting: usize,
}

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    capacity: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates a channel that holds at most `capacity` items.
pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(capacity.min(64)),
            senders: 1,
            receivers: 1,
            waiting: 0,
        }),
        ready: Condvar::new(),
        capacity,
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// Why an item was not sent.
#[derive(Debug)]
pub(crate) enum TrySendError<T> {
    Full(T),
    Disconnected(T),
}

/// Why nothing was received.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecvError {
    /// Nothing arrived in time (or, for `try_recv`, nothing was there).
    Empty,
    /// Every sender has gone and the queue is drained.
    Disconnected,
}

/// The sending half.
#[derive(Debug)]
pub(crate) struct Sender<T>(Arc<Shared<T>>);

impl<T> Sender<T> {
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut st = self.0.lock();
        if st.receivers == 0 {
            return Err(TrySendError::Disconnected(item));
        }
        if st.queue.len() >= self.0.capacity {
            return Err(TrySendError::Full(item));
        }
        st.queue.push_back(item);
        let wake = st.waiting > 0;
        drop(st);
        if wake {
            self.0.ready.notify_one();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.senders -= 1;
        let wake = st.waiting > 0;
        drop(st);
        if wake {
            self.0.ready.notify_all();
        }
    }
}

/// The receiving half.
#[derive(Debug)]
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.lock().receivers -= 1;
    }
}

impl<T> Receiver<T> {
    pub(crate) fn try_recv(&self) -> Result<T, RecvError> {
        let mut st = self.0.lock();
        match st.queue.pop_front() {
            Some(item) => Ok(item),
            None if st.senders == 0 => Err(RecvError::Disconnected),
            None => Err(RecvError::Empty),
        }
    }

    /// Waits for an item, up to `timeout` if given.
    pub(crate) fn recv_timeout(&self, timeout: Option<Duration>) -> Result<T, RecvError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.0.lock();
        loop {
            if let Some(item) = st.queue.pop_front() {
                return Ok(item);
            }
            if st.senders == 0 {
                return Err(RecvError::Disconnected);
            }
            let wait = match deadline {
                None => None,
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(RecvError::Empty);
                    }
                    Some(deadline - now)
                }
            };
            st.waiting += 1;
            st = match wait {
                None => self.0.ready.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(wait) => {
                    self.0
                        .ready
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            st.waiting -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::tests::eventually;

    #[test]
    fn bounded_and_disconnecting() {
        let (tx, rx) = bounded(1);
        tx.try_send(1).unwrap();
        assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(RecvError::Empty));
        assert_eq!(
            rx.recv_timeout(Some(Duration::from_millis(10))),
            Err(RecvError::Empty)
        );
        let shared = tx.0.clone();
        let waiting = || shared.lock().waiting == 1;
        let waiter = std::thread::spawn(move || (rx.recv_timeout(None), rx));
        eventually("the receiver to wait", waiting);
        tx.try_send(3).unwrap();
        eventually("the receiver to wake", || waiter.is_finished());
        let (got, rx) = waiter.join().unwrap();
        assert_eq!(got, Ok(3));
        assert_eq!(shared.lock().waiting, 0);
        // The last sender going wakes a waiting receiver.
        let waiter = std::thread::spawn(move || rx.recv_timeout(None));
        eventually("the receiver to wait", waiting);
        drop(tx);
        eventually("the receiver to wake", || waiter.is_finished());
        assert_eq!(waiter.join().unwrap(), Err(RecvError::Disconnected));
        let (tx, rx) = bounded::<u8>(1);
        drop(rx);
        assert!(matches!(tx.try_send(1), Err(TrySendError::Disconnected(1))));
    }
}
