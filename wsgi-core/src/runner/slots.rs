//! The host's queue in worker-process mode: jobs wait here, in the host, until a worker
//! process has a free thread, so a worker that hangs or dies never holds queued requests
//! (Passenger's model). Each thread of each worker is a slot, served by one host thread
//! that owns that thread's socket.
//!
//! Unlike the in-process queue ([`crate::dispatch`]), where one GIL makes every thread the
//! same, slots of different workers run in parallel: a job goes straight to an idle slot
//! of the worker with the most idle slots, so load spreads over the processes (and their
//! GILs) before it doubles up inside one.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::Refused;

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    /// Per worker: its idle slots, most recently idle last; empty while not ready.
    idle: Vec<Vec<usize>>,
    /// Per worker: whether its process is ready for requests.
    ready: Vec<bool>,
    /// Per worker: ready, but taking no new job for now (its replacement is starting).
    paused: Vec<bool>,
    /// Per slot: a job handed to it directly.
    mailbox: Vec<Option<T>>,
    /// False after a worker failed to start while none was ready: new jobs get 503 until
    /// one is ready again. Jobs are queued while a worker is only being replaced.
    available: bool,
    closed: bool,
}

/// The queue and the idle slots of every worker.
#[derive(Debug)]
pub(crate) struct SlotQueue<T> {
    state: Mutex<State<T>>,
    /// One per slot, all waiting on `state`.
    bells: Box<[Condvar]>,
    threads: usize,
    capacity: usize,
}

impl<T> SlotQueue<T> {
    /// A queue of at most `capacity` jobs for `workers` processes of `threads` each.
    pub(crate) fn new(capacity: usize, workers: usize, threads: usize) -> Self {
        SlotQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                idle: vec![Vec::with_capacity(threads); workers],
                ready: vec![false; workers],
                paused: vec![false; workers],
                mailbox: (0..workers * threads).map(|_| None).collect(),
                available: false,
                closed: false,
            }),
            bells: (0..workers * threads).map(|_| Condvar::new()).collect(),
            threads,
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker a slot belongs to.
    pub(crate) fn worker_of(&self, slot: usize) -> usize {
        slot / self.threads
    }

    /// Hands `job` to an idle slot of the least busy ready worker, or queues it.
    pub(crate) fn try_send(&self, job: T) -> Result<(), Refused> {
        let mut st = self.lock();
        if st.closed {
            return Err(Refused::Closed);
        }
        if !st.available {
            return Err(Refused::NotReady);
        }
        if st.queue.len() >= self.capacity {
            return Err(Refused::Full);
        }
        if let Some(job) = self.hand_over(&mut st, job) {
            st.queue.push_back(job);
        }
        Ok(())
    }

    /// Puts `job` back at the head of the queue: its worker died before the application
    /// received it, so it goes to another worker first.
    pub(crate) fn retry(&self, job: T) {
        let mut st = self.lock();
        if let Some(job) = self.hand_over(&mut st, job) {
            st.queue.push_front(job);
        }
    }

    /// Gives `job` to an idle slot of the ready worker with the most idle slots; gives it
    /// back if there is none.
    fn hand_over(&self, st: &mut State<T>, job: T) -> Option<T> {
        let worker = (0..st.idle.len())
            .filter(|&w| st.ready[w] && !st.paused[w] && !st.idle[w].is_empty())
            .max_by_key(|&w| (st.idle[w].len(), std::cmp::Reverse(w)));
        match worker.and_then(|w| st.idle[w].pop()) {
            Some(slot) => {
                st.mailbox[slot] = Some(job);
                self.bells[slot].notify_one();
                None
            }
            None => Some(job),
        }
    }

    /// Jobs waiting for a slot.
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// The next job for `slot`, waiting while there is none; `None` once its worker is no
    /// longer ready (it died or is retiring) or the queue is closed and drained.
    pub(crate) fn take(&self, slot: usize) -> Option<T> {
        let worker = self.worker_of(slot);
        let mut st = self.lock();
        loop {
            if let Some(job) = st.mailbox[slot].take() {
                return Some(job);
            }
            if !st.ready[worker] {
                return None;
            }
            if !st.paused[worker]
                && let Some(job) = st.queue.pop_front()
            {
                return Some(job);
            }
            if st.closed {
                return None;
            }
            if !st.idle[worker].contains(&slot) {
                st.idle[worker].push(slot);
            }
            st = self.bells[slot].wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Marks a worker ready (its slots start taking jobs) or not (its waiting slots stop).
    pub(crate) fn set_ready(&self, worker: usize, ready: bool) {
        let mut st = self.lock();
        st.ready[worker] = ready;
        st.paused[worker] = false;
        st.available |= ready;
        if !ready {
            for slot in std::mem::take(&mut st.idle[worker]) {
                self.bells[slot].notify_one();
            }
        }
    }

    /// Pauses a ready worker (its slots finish what they run and then wait, taking nothing)
    /// or resumes it.
    pub(crate) fn pause(&self, worker: usize, paused: bool) {
        let mut st = self.lock();
        st.paused[worker] = paused;
        if !paused {
            // Its slots may have jobs to take from the queue.
            let threads = self.threads;
            for slot in worker * threads..(worker + 1) * threads {
                self.bells[slot].notify_one();
            }
            while !st.queue.is_empty() {
                let Some(job) = st.queue.pop_front() else {
                    break;
                };
                if let Some(job) = self.hand_over(&mut st, job) {
                    st.queue.push_front(job);
                    break;
                }
            }
        }
    }

    /// Which workers are ready.
    pub(crate) fn ready(&self) -> Vec<bool> {
        self.lock().ready.clone()
    }

    /// When no worker is ready: refuses new jobs and takes every queued one out, for
    /// answering them, since no worker can. Nothing when a worker is ready.
    pub(crate) fn unavailable(&self) -> Vec<T> {
        let mut st = self.lock();
        if st.ready.iter().any(|&r| r) {
            return Vec::new();
        }
        st.available = false;
        st.queue.drain(..).collect()
    }

    /// Whether [`SlotQueue::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Stops taking jobs; what is queued is still served.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        for idle in st.idle.iter_mut() {
            for slot in idle.drain(..) {
                self.bells[slot].notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::tests::eventually;
    use std::sync::Arc;

    fn idle(q: &SlotQueue<u32>, worker: usize) -> usize {
        q.lock().idle[worker].len()
    }

    #[test]
    fn nothing_is_taken_while_no_worker_is_ready() {
        let q = SlotQueue::<u32>::new(4, 2, 1);
        assert!(matches!(q.try_send(1), Err(Refused::NotReady)));
        q.set_ready(0, true);
        q.try_send(1).unwrap();
        assert_eq!(q.take(0), Some(1));
        // A slot of a worker that is not ready gets nothing.
        q.try_send(2).unwrap();
        assert_eq!(q.take(1), None);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn jobs_go_to_the_worker_with_the_most_idle_slots() {
        let q = Arc::new(SlotQueue::<u32>::new(8, 2, 2));
        q.set_ready(0, true);
        q.set_ready(1, true);
        let takers: Vec<_> = (0..4)
            .map(|slot| {
                let q = q.clone();
                std::thread::spawn(move || (slot, q.take(slot)))
            })
            .collect();
        eventually("all four slots idle", || {
            idle(&q, 0) == 2 && idle(&q, 1) == 2
        });
        q.try_send(10).unwrap();
        q.try_send(11).unwrap();
        eventually("two slots to take their jobs", || {
            idle(&q, 0) + idle(&q, 1) == 2
        });
        // One job per worker, not two for one of them.
        assert_eq!((idle(&q, 0), idle(&q, 1)), (1, 1));
        q.close();
        let got: Vec<_> = takers.into_iter().map(|t| t.join().unwrap()).collect();
        let workers_used: Vec<usize> = got
            .iter()
            .filter(|(_, job)| job.is_some())
            .map(|(slot, _)| slot / 2)
            .collect();
        assert_eq!(workers_used.len(), 2);
        assert_ne!(workers_used[0], workers_used[1]);
    }

    #[test]
    fn a_full_queue_refuses_and_a_retry_goes_first() {
        let q = SlotQueue::<u32>::new(2, 1, 1);
        q.set_ready(0, true);
        q.try_send(1).unwrap();
        q.try_send(2).unwrap();
        assert!(matches!(q.try_send(3), Err(Refused::Full)));
        q.retry(0);
        assert_eq!(q.take(0), Some(0));
        assert_eq!(q.take(0), Some(1));
    }

    #[test]
    fn a_worker_that_stops_being_ready_releases_its_waiting_slots() {
        let q = Arc::new(SlotQueue::<u32>::new(2, 1, 1));
        q.set_ready(0, true);
        let taker = {
            let q = q.clone();
            std::thread::spawn(move || q.take(0))
        };
        eventually("the slot to wait", || idle(&q, 0) == 1);
        q.set_ready(0, false);
        assert_eq!(taker.join().unwrap(), None);
    }

    #[test]
    fn a_paused_worker_takes_nothing_until_resumed() {
        let q = Arc::new(SlotQueue::<u32>::new(4, 1, 1));
        q.set_ready(0, true);
        q.pause(0, true);
        let taker = {
            let q = q.clone();
            std::thread::spawn(move || q.take(0))
        };
        q.try_send(7).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(q.len(), 1, "a paused worker took a job");
        q.pause(0, false);
        assert_eq!(taker.join().unwrap(), Some(7));
    }

    #[test]
    fn jobs_wait_while_a_worker_is_replaced_and_are_refused_once_none_can_start() {
        let q = SlotQueue::<u32>::new(4, 1, 1);
        q.set_ready(0, true);
        q.set_ready(0, false);
        // Replacing: queued, not refused.
        q.try_send(1).unwrap();
        // The replacement failed and no worker is ready: what waited is handed back for an
        // answer, and new jobs are refused until a worker is ready again.
        assert_eq!(q.unavailable(), vec![1]);
        assert!(matches!(q.try_send(2), Err(Refused::NotReady)));
        q.set_ready(0, true);
        q.try_send(3).unwrap();
        assert_eq!(q.unavailable(), Vec::<u32>::new());
        assert_eq!(q.take(0), Some(3));
    }
}
