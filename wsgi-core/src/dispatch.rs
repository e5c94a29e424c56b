//! The request queue between the host and the Python threads.
//!
//! Under the GIL only one Python thread runs at a time, and that shapes this queue:
//!
//! - A job is taken only by a thread that holds the GIL. A thread woken for a job first
//!   re-takes the GIL and only then looks at the queue, so no job sits in the hands of a
//!   thread that waits for the GIL while another thread, already running, could start it.
//!   Jobs start in arrival order, which keeps the latency tail short under CPU-bound load.
//! - The thread holding the GIL keeps taking queued jobs without letting go of it, and a
//!   push wakes a sleeping thread only when nobody is already on the way: at most one
//!   thread is woken "on standby", to take over when the running one blocks in I/O
//!   (`time.sleep`, a database query) and releases the GIL. So a busy CPU-bound app costs
//!   no wake-ups, and an I/O-bound one still gets every thread working.
//! - The most recently idle thread is woken first: its stack and its Python thread state
//!   are still in cache.
//! - An idle thread sleeps at once; it does not spin. On a small machine the spinning
//!   thread takes the very core that the host needs to produce the next job.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread::Thread;

/// Why a job was not queued.
#[derive(Debug)]
pub(crate) enum TrySendError {
    /// The queue holds `capacity` jobs already.
    Full,
    /// The engine is gone or its threads have stopped.
    Closed,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    /// Sleeping threads, most recently idle last.
    idle: Vec<usize>,
    /// Threads woken for the queue that have not looked at it yet.
    standby: usize,
    closed: bool,
}

/// One Python thread's bell.
#[derive(Debug, Default)]
struct Bell {
    thread: OnceLock<Thread>,
    rung: AtomicBool,
}

/// Where a queue of one thread gets its jobs itself, blocking: `None` when there will be
/// no more.
pub(crate) type Source<T> = Box<dyn FnMut() -> Option<T> + Send>;

/// The queue, shared by the host side (`try_send`) and the Python threads.
pub(crate) struct Dispatch<T> {
    state: Mutex<State<T>>,
    bells: Box<[Bell]>,
    capacity: usize,
    /// With one thread only: it reads its next job from here instead of sleeping until
    /// another thread hands it over, which would cost a wake-up per job for nothing (no
    /// other thread could run it meanwhile).
    source: Option<Mutex<Source<T>>>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Dispatch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("state", &self.state)
            .field("capacity", &self.capacity)
            .field("source", &self.source.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> Dispatch<T> {
    /// A queue of at most `capacity` jobs for `threads` Python threads.
    pub(crate) fn new(capacity: usize, threads: usize) -> Self {
        Dispatch {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                idle: Vec::with_capacity(threads),
                standby: 0,
                closed: false,
            }),
            bells: (0..threads).map(|_| Bell::default()).collect(),
            capacity,
            source: None,
        }
    }

    /// A queue for one thread, which takes its jobs from `source` itself (without the GIL,
    /// in [`Dispatch::park`]); closed when `source` has no more.
    pub(crate) fn from_source(source: Source<T>) -> Self {
        Dispatch {
            source: Some(Mutex::new(source)),
            ..Self::new(1, 1)
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes one sleeping thread if nobody is on standby yet. Called with the lock held;
    /// returns the thread to ring once the lock is released.
    fn pick_standby(st: &mut State<T>) -> Option<usize> {
        if st.standby > 0 {
            return None;
        }
        let index = st.idle.pop()?;
        st.standby += 1;
        Some(index)
    }

    fn ring(&self, index: usize) {
        let bell = &self.bells[index];
        bell.rung.store(true, Ordering::Release);
        if let Some(thread) = bell.thread.get() {
            thread.unpark();
        }
    }

    /// Queues `job` without blocking.
    pub(crate) fn try_send(&self, job: T) -> Result<(), TrySendError> {
        let mut st = self.lock();
        if st.closed {
            return Err(TrySendError::Closed);
        }
        if st.queue.len() >= self.capacity {
            return Err(TrySendError::Full);
        }
        st.queue.push_back(job);
        let wake = Self::pick_standby(&mut st);
        drop(st);
        if let Some(index) = wake {
            self.ring(index);
        }
        Ok(())
    }

    /// Jobs waiting for a thread.
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Stops taking jobs; threads finish what is queued, then their `park` returns `false`.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        let idle = std::mem::take(&mut st.idle);
        // Each rung thread looks at the queue once more (and finds it closed).
        st.standby += idle.len();
        drop(st);
        for index in idle {
            self.ring(index);
        }
    }

    /// Registers the calling thread as Python thread `index`; call once, before `park`.
    pub(crate) fn register(&self, index: usize) {
        let _ = self.bells[index].thread.set(std::thread::current());
    }

    /// The next job for thread `index`, which holds the GIL; `woken`: it was rung for the
    /// queue and this is its first look. If more jobs wait, a sleeping thread is put on
    /// standby, in case this job blocks in I/O and releases the GIL.
    pub(crate) fn take(&self, woken: bool) -> Option<T> {
        let mut st = self.lock();
        if woken {
            st.standby -= 1;
        }
        let job = st.queue.pop_front()?;
        let wake = if st.queue.is_empty() {
            None
        } else {
            Self::pick_standby(&mut st)
        };
        drop(st);
        if let Some(index) = wake {
            self.ring(index);
        }
        Some(job)
    }

    /// Sleeps until thread `index` is rung, unless jobs are waiting (or, with a source,
    /// reads the next job from it). Call without the GIL.
    pub(crate) fn park(&self, index: usize) -> Park {
        let bell = &self.bells[index];
        {
            let mut st = self.lock();
            if !st.queue.is_empty() {
                return Park::Retry;
            }
            if st.closed {
                return Park::Closed;
            }
            if self.source.is_none() {
                bell.rung.store(false, Ordering::Relaxed);
                st.idle.push(index);
            }
        }
        if let Some(source) = &self.source {
            let next = (source.lock().unwrap_or_else(|e| e.into_inner()))();
            return match next {
                Some(job) => {
                    self.lock().queue.push_back(job);
                    Park::Retry
                }
                None => {
                    self.close();
                    Park::Closed
                }
            };
        }
        while !bell.rung.swap(false, Ordering::Acquire) {
            std::thread::park();
        }
        Park::Woken
    }
}

/// How [`Dispatch::park`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Park {
    /// Rung for a job: re-take the GIL, then [`Dispatch::take`] with `woken`.
    Woken,
    /// Jobs were already waiting: take one without counting as woken.
    Retry,
    /// The engine is gone: end the thread.
    Closed,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Waits (up to 10 s) until `done`, for tests of threads that park and wake.
    pub(crate) fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn jobs_leave_in_order_and_a_full_queue_refuses() {
        let d = Dispatch::new(2, 1);
        d.try_send(1).unwrap();
        d.try_send(2).unwrap();
        assert!(matches!(d.try_send(3), Err(TrySendError::Full)));
        assert_eq!(d.len(), 2);
        assert_eq!(d.take(false), Some(1));
        assert_eq!(d.take(false), Some(2));
        assert_eq!(d.take(false), None);
        // With a job queued, a thread about to sleep is told to take it instead.
        d.try_send(3).unwrap();
        assert_eq!(d.park(0), Park::Retry);
        assert_eq!(d.take(false), Some(3));
    }

    #[test]
    fn one_push_rings_one_thread_and_later_pushes_ring_nobody_while_it_is_on_standby() {
        let d = Arc::new(Dispatch::new(16, 2));
        let parked: Vec<_> = (0..2)
            .map(|index| {
                let d = d.clone();
                std::thread::spawn(move || {
                    d.register(index);
                    d.park(index)
                })
            })
            .collect();
        eventually("both threads to sleep", || d.lock().idle.len() == 2);
        d.try_send(10).unwrap();
        d.try_send(11).unwrap();
        // The most recently idle thread is rung; the other stays asleep.
        let st = d.lock();
        assert_eq!((st.standby, st.idle.len()), (1, 1));
        drop(st);
        let still_asleep = d.lock().idle[0];
        let rung = 1 - still_asleep;
        let mut parked: Vec<_> = parked.into_iter().map(Some).collect();
        let woken = parked[rung].take().unwrap();
        assert_eq!(woken.join().unwrap(), Park::Woken);
        // Taking the first job with another still queued puts the sleeper on standby.
        assert_eq!(d.take(true), Some(10));
        let st = d.lock();
        assert_eq!((st.standby, st.idle.len()), (1, 0));
        drop(st);
        let other = parked[still_asleep].take().unwrap();
        assert_eq!(other.join().unwrap(), Park::Woken);
        assert_eq!(d.take(true), Some(11));
        assert_eq!(d.take(false), None);
        assert_eq!(d.lock().standby, 0);
    }

    #[test]
    fn a_thread_with_a_source_takes_its_jobs_from_it_until_it_ends() {
        let mut jobs = vec![2, 1].into_iter().rev();
        let d = Dispatch::from_source(Box::new(move || jobs.next()));
        d.register(0);
        let mut taken = Vec::new();
        loop {
            match d.park(0) {
                Park::Retry => taken.extend(d.take(false)),
                Park::Closed => break,
                Park::Woken => panic!("nobody rings a thread with a source"),
            }
        }
        assert_eq!(taken, [1, 2]);
        assert!(matches!(d.try_send(3), Err(TrySendError::Closed)));
    }

    #[test]
    fn closing_drains_the_queue_then_ends_sleeping_threads() {
        let d = Arc::new(Dispatch::new(4, 1));
        let sleeper = {
            let d = d.clone();
            std::thread::spawn(move || {
                d.register(0);
                let first = d.park(0);
                let job = d.take(first == Park::Woken);
                (first, job, d.park(0))
            })
        };
        eventually("the thread to sleep", || d.lock().idle.len() == 1);
        d.close();
        assert!(matches!(d.try_send(1), Err(TrySendError::Closed)));
        let (first, job, last) = sleeper.join().unwrap();
        assert_eq!((first, job, last), (Park::Woken, None, Park::Closed));
        assert_eq!(d.lock().standby, 0);
    }
}
