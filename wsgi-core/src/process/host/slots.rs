//! The host's queue in worker-process mode: jobs wait here, in the host, until a worker
//! process has a free thread, so a worker that hangs or dies never holds queued requests
//! (Passenger's model). A worker has one slot per thread: a slot stands for a request the
//! worker holds, whichever of its threads runs it. The relay owns the slots' sockets.
//!
//! Unlike the in-process queue ([`crate::dispatch`]), where one GIL makes every thread the
//! same, slots of different workers run in parallel: a job goes straight to an idle slot
//! of the worker with the most idle slots, so load spreads over the processes (and their
//! GILs) before it doubles up inside one.
//!
//! Nothing here waits: a job handed to an idle slot comes back to the caller with the
//! slot, to be sent on that slot's socket; a slot that finished its job asks for
//! the next one ([`SlotQueue::next_for`]).
//!
//! For an elastic pool the queue also keeps the facts its size is decided on
//! ([`SlotQueue::sample`]): how long the oldest job has waited, and since when each worker
//! has had no job at all. A fixed pool asks for neither and pays for neither.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::process::ids::{GroupId, SlotId, SlotLayout};
use crate::runner::Refused;

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    /// Per group: its idle slots, most recently idle last; empty while not ready.
    idle: Vec<Vec<SlotId>>,
    /// Per group: whether its process is ready for requests.
    ready: Vec<bool>,
    /// Per group: when it last became ready, in the order groups did.
    ready_order: Vec<u64>,
    /// How many times a group became ready.
    readied: u64,
    /// Per group: ready, but taking no new job for now (its replacement is starting).
    paused: Vec<bool>,
    /// False after a worker failed to start while none was ready: new jobs get 503 until
    /// one is ready again. Jobs are queued while a worker is only being replaced.
    available: bool,
    closed: bool,
    /// Per group, when kept: since when every one of its slots has been idle.
    idle_since: Option<Vec<Option<Instant>>>,
    /// Someone waits for the queue to stop being empty ([`SlotQueue::watch`]).
    watched: bool,
}

/// What [`SlotQueue::try_send`] did with a job it took.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent<T> {
    /// An idle slot took it: the slot and the job, for the caller to send.
    To(SlotId, T),
    /// It waits in the queue. `wake`: it is the first job since [`SlotQueue::watch`] was
    /// called, and the watcher is to be told.
    Queued { wake: bool },
}

/// The facts an elastic pool is sized on, read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sample {
    /// When the job at the head of the queue was queued; `None` with an empty queue.
    pub(crate) oldest: Option<Instant>,
    /// Per group, by [`GroupId::index`]: whether its process is ready and not paused, and
    /// since when it has had no job (`None` while it has one, or when idleness is not kept).
    pub(crate) groups: Vec<(bool, Option<Instant>)>,
}

/// The queue and the idle slots of every group (the slots of one worker process).
#[derive(Debug)]
pub(crate) struct SlotQueue<T> {
    state: Mutex<State<T>>,
    layout: SlotLayout,
    capacity: usize,
}

/// What a slot that has finished its job does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<T> {
    /// Run this job.
    Job(T),
    /// Wait, idle, until a job is handed to it.
    Idle,
    /// Close: its worker takes no more jobs (it died or is retiring), or the queue is
    /// closed and drained.
    Retire,
}

impl<T> SlotQueue<T> {
    /// A queue of at most `capacity` jobs for the slots of `layout`. `keep_idle`: note
    /// since when each group has been idle, for [`SlotQueue::sample`].
    pub(crate) fn new(capacity: usize, layout: SlotLayout, keep_idle: bool) -> Self {
        let (groups, threads) = (layout.group_count(), layout.threads());
        SlotQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                idle: vec![Vec::with_capacity(threads); groups],
                ready: vec![false; groups],
                paused: vec![false; groups],
                ready_order: vec![0; groups],
                readied: 0,
                available: false,
                closed: false,
                idle_since: keep_idle.then(|| vec![None; groups]),
                watched: false,
            }),
            layout,
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes an idle slot of the least busy ready worker for `job`, or queues it.
    pub(crate) fn try_send(&self, job: T) -> Result<Sent<T>, Refused> {
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
        match self.idle_slot(&mut st) {
            Some(slot) => Ok(Sent::To(slot, job)),
            None => {
                st.queue.push_back(job);
                let wake = std::mem::take(&mut st.watched);
                Ok(Sent::Queued { wake })
            }
        }
    }

    /// Asks [`try_send`](Self::try_send) to say when it queues a job: `false` if one is
    /// queued already (nothing will be said; look at the queue instead). Checked and set
    /// under one lock, so no job slips in between unseen.
    pub(crate) fn watch(&self) -> bool {
        let mut st = self.lock();
        st.watched = st.queue.is_empty();
        st.watched
    }

    /// The oldest job's queueing time (`queued_at` reads it from a job) and each group's
    /// readiness and idleness, read under one lock.
    pub(crate) fn sample(&self, queued_at: impl FnOnce(&T) -> Instant) -> Sample {
        let st = self.lock();
        Sample {
            oldest: st.queue.front().map(queued_at),
            groups: (0..st.ready.len())
                .map(|g| {
                    let since = st.idle_since.as_ref().and_then(|s| s[g]);
                    (st.ready[g] && !st.paused[g], since)
                })
                .collect(),
        }
    }

    /// Puts `job` back at the head of the queue: its worker died before the application
    /// received it, so it goes to another worker first. `Some`: an idle slot took it.
    pub(crate) fn retry(&self, job: T) -> Option<(SlotId, T)> {
        let mut st = self.lock();
        match self.idle_slot(&mut st) {
            Some(slot) => Some((slot, job)),
            None => {
                st.queue.push_front(job);
                None
            }
        }
    }

    /// An idle slot of the ready worker with the most idle slots, no longer idle; of
    /// workers with as many, the one ready last: during a roll, that is a new worker, so
    /// new code answers as soon as one runs it, even a client that sends one request at a
    /// time (which would otherwise go to an old worker until the last was replaced).
    fn idle_slot(&self, st: &mut State<T>) -> Option<SlotId> {
        let group = self
            .layout
            .groups()
            .map(GroupId::index)
            .filter(|&g| st.ready[g] && !st.paused[g] && !st.idle[g].is_empty())
            .max_by_key(|&g| (st.idle[g].len(), st.ready_order[g]))?;
        if let Some(since) = st.idle_since.as_mut() {
            since[group] = None;
        }
        st.idle[group].pop()
    }

    /// Jobs waiting for a slot.
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// What `slot`, which has no job, does next: the next queued job, idle, or close.
    pub(crate) fn next_for(&self, slot: SlotId) -> Next<T> {
        let group = self.layout.group_of(slot).index();
        let mut st = self.lock();
        if !st.ready[group] {
            return Next::Retire;
        }
        if !st.paused[group]
            && let Some(job) = st.queue.pop_front()
        {
            return Next::Job(job);
        }
        if st.closed {
            return Next::Retire;
        }
        if !st.idle[group].contains(&slot) {
            st.idle[group].push(slot);
            if st.idle[group].len() == self.layout.threads()
                && let Some(since) = st.idle_since.as_mut()
            {
                since[group] = Some(Instant::now());
            }
        }
        Next::Idle
    }

    /// Marks `group`'s process ready or not. A group no longer ready takes no job; its idle slots
    /// are returned, for the caller to close.
    pub(crate) fn set_ready(&self, group: GroupId, ready: bool) -> Vec<SlotId> {
        let group = group.index();
        let mut st = self.lock();
        st.ready[group] = ready;
        if ready {
            st.readied += 1;
            st.ready_order[group] = st.readied;
        }
        st.paused[group] = false;
        st.available |= ready;
        if let Some(since) = st.idle_since.as_mut() {
            since[group] = None;
        }
        if ready {
            Vec::new()
        } else {
            std::mem::take(&mut st.idle[group])
        }
    }

    /// Pauses or resumes `group`. Resuming hands queued jobs to its idle slots: returned,
    /// with their slots, for the caller to send.
    pub(crate) fn pause(&self, group: GroupId, paused: bool) -> Vec<(SlotId, T)> {
        let mut st = self.lock();
        st.paused[group.index()] = paused;
        let mut handed = Vec::new();
        if !paused {
            while !st.queue.is_empty() {
                let Some(slot) = self.idle_slot(&mut st) else {
                    break;
                };
                if let Some(job) = st.queue.pop_front() {
                    handed.push((slot, job));
                }
            }
        }
        handed
    }

    /// Per group, by [`GroupId::index`]: whether its process is ready.
    pub(crate) fn ready(&self) -> Vec<bool> {
        self.lock().ready.clone()
    }

    /// When no worker is ready: stops taking jobs and returns the queued ones, for the
    /// caller to answer.
    pub(crate) fn unavailable(&self) -> Vec<T> {
        let mut st = self.lock();
        if st.ready.iter().any(|&r| r) {
            return Vec::new();
        }
        st.available = false;
        st.queue.drain(..).collect()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Takes no new job; what is queued is still served.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// Once the queue is closed and empty, the idle slots, no longer needed: for the caller
    /// to close (their workers then exit).
    pub(crate) fn idle_to_close(&self) -> Vec<SlotId> {
        let mut st = self.lock();
        if st.closed && st.queue.is_empty() {
            st.idle.iter_mut().flat_map(std::mem::take).collect()
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue of `capacity` jobs for `groups` groups of `threads` slots, the last spare.
    fn queue<T>(capacity: usize, groups: usize, threads: usize, keep_idle: bool) -> SlotQueue<T> {
        SlotQueue::new(capacity, SlotLayout::new(groups - 1, threads), keep_idle)
    }

    /// Group `n` of `q`.
    fn group<T>(q: &SlotQueue<T>, n: usize) -> GroupId {
        q.layout.groups().nth(n).expect("a group")
    }

    /// Slot `n` of `q`, counting through its groups in order.
    fn slot<T>(q: &SlotQueue<T>, n: usize) -> SlotId {
        let layout = q.layout;
        layout
            .groups()
            .flat_map(|g| layout.slots_of(g))
            .nth(n)
            .expect("a slot")
    }

    fn idle(q: &SlotQueue<u32>, group: usize) -> usize {
        q.lock().idle[group].len()
    }

    #[test]
    fn nothing_is_taken_while_no_worker_is_ready() {
        let q = queue::<u32>(4, 2, 1, false);
        assert!(matches!(q.try_send(1), Err(Refused::NotReady)));
        q.set_ready(group(&q, 0), true);
        // No slot has said it is idle yet: queued.
        assert_eq!(q.try_send(1).unwrap(), Sent::Queued { wake: false });
        assert_eq!(q.next_for(slot(&q, 0)), Next::Job(1));
        q.try_send(2).unwrap();
        assert_eq!(
            q.next_for(slot(&q, 1)),
            Next::Retire,
            "group 1 is not ready"
        );
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn jobs_go_to_the_worker_with_the_most_idle_slots() {
        let q = queue::<u32>(8, 2, 2, false);
        q.set_ready(group(&q, 0), true);
        q.set_ready(group(&q, 1), true);
        for n in 0..4 {
            assert_eq!(q.next_for(slot(&q, n)), Next::Idle);
        }
        let Ok(Sent::To(a, _)) = q.try_send(10) else {
            panic!("no idle slot took the job")
        };
        let Ok(Sent::To(b, _)) = q.try_send(11) else {
            panic!("no idle slot took the job")
        };
        assert_eq!((idle(&q, 0), idle(&q, 1)), (1, 1));
        assert_ne!(
            q.layout.group_of(a),
            q.layout.group_of(b),
            "both jobs went to one group"
        );
    }

    #[test]
    fn of_equally_idle_workers_the_one_ready_last_takes_the_job() {
        // Group 1 becomes ready first; group 0 is its replacement, ready later (a roll).
        let q = queue::<u32>(8, 2, 1, false);
        q.set_ready(group(&q, 1), true);
        q.set_ready(group(&q, 0), true);
        assert_eq!(q.next_for(slot(&q, 1)), Next::Idle);
        assert_eq!(q.next_for(slot(&q, 0)), Next::Idle);
        assert_eq!(q.try_send(7).unwrap(), Sent::To(slot(&q, 0), 7));
        // Ready again later (replaced in turn): it is preferred from then on.
        assert_eq!(q.next_for(slot(&q, 0)), Next::Idle);
        q.set_ready(group(&q, 1), true);
        assert_eq!(q.try_send(8).unwrap(), Sent::To(slot(&q, 1), 8));
    }

    #[test]
    fn a_full_queue_refuses_and_a_retry_goes_first() {
        let q = queue::<u32>(2, 1, 1, false);
        q.set_ready(group(&q, 0), true);
        q.try_send(1).unwrap();
        q.try_send(2).unwrap();
        assert!(matches!(q.try_send(3), Err(Refused::Full)));
        assert_eq!(q.retry(0), None);
        assert_eq!(q.next_for(slot(&q, 0)), Next::Job(0));
        assert_eq!(q.next_for(slot(&q, 0)), Next::Job(1));
        assert_eq!(q.next_for(slot(&q, 0)), Next::Job(2));
        assert_eq!(q.next_for(slot(&q, 0)), Next::Idle);
        assert_eq!(
            q.retry(5),
            Some((slot(&q, 0), 5)),
            "an idle slot takes a retry at once"
        );
    }

    #[test]
    fn a_paused_worker_takes_nothing_until_resumed() {
        let q = queue::<u32>(4, 1, 1, false);
        q.set_ready(group(&q, 0), true);
        assert_eq!(q.next_for(slot(&q, 0)), Next::Idle);
        assert!(q.pause(group(&q, 0), true).is_empty());
        assert_eq!(
            q.try_send(7).unwrap(),
            Sent::Queued { wake: false },
            "a paused group took a job"
        );
        assert_eq!(q.next_for(slot(&q, 0)), Next::Idle);
        assert_eq!(q.pause(group(&q, 0), false), vec![(slot(&q, 0), 7)]);
    }

    #[test]
    fn a_worker_no_longer_ready_gives_back_its_idle_slots() {
        let q = queue::<u32>(4, 1, 2, false);
        q.set_ready(group(&q, 0), true);
        assert_eq!(q.next_for(slot(&q, 0)), Next::Idle);
        assert_eq!(q.next_for(slot(&q, 1)), Next::Idle);
        assert_eq!(
            q.set_ready(group(&q, 0), false),
            vec![slot(&q, 0), slot(&q, 1)]
        );
        assert_eq!(q.next_for(slot(&q, 0)), Next::Retire);
    }

    #[test]
    fn closing_serves_what_is_queued_then_retires_every_slot() {
        let q = queue::<u32>(4, 1, 2, false);
        q.set_ready(group(&q, 0), true);
        assert_eq!(q.next_for(slot(&q, 0)), Next::Idle);
        assert_eq!(q.try_send(1).unwrap(), Sent::To(slot(&q, 0), 1));
        q.try_send(2).unwrap();
        q.close();
        assert!(matches!(q.try_send(3), Err(Refused::Closed)));
        assert!(q.idle_to_close().is_empty());
        // Slot 1 becomes free and takes what waits; then nothing is left for anyone.
        assert_eq!(q.next_for(slot(&q, 1)), Next::Job(2));
        assert_eq!(q.next_for(slot(&q, 0)), Next::Retire);
        assert_eq!(q.next_for(slot(&q, 1)), Next::Retire);
    }

    #[test]
    fn idle_slots_are_closed_once_the_closed_queue_is_empty() {
        let q = queue::<u32>(4, 1, 2, false);
        q.set_ready(group(&q, 0), true);
        assert_eq!(q.next_for(slot(&q, 0)), Next::Idle);
        assert_eq!(q.next_for(slot(&q, 1)), Next::Idle);
        q.pause(group(&q, 0), true);
        q.try_send(1).unwrap();
        q.close();
        assert!(q.idle_to_close().is_empty(), "a job still waits");
        assert_eq!(q.pause(group(&q, 0), false), vec![(slot(&q, 1), 1)]);
        assert_eq!(q.idle_to_close(), vec![slot(&q, 0)]);
        assert_eq!(q.next_for(slot(&q, 1)), Next::Retire);
    }

    #[test]
    fn jobs_wait_while_a_worker_is_replaced_and_are_refused_once_none_can_start() {
        let q = queue::<u32>(4, 1, 1, false);
        q.set_ready(group(&q, 0), true);
        q.set_ready(group(&q, 0), false);
        // Replacing: queued, not refused.
        q.try_send(1).unwrap();
        // The replacement failed and no worker is ready: what waited is handed back for an
        // answer, and new jobs are refused until a worker is ready again.
        assert_eq!(q.unavailable(), vec![1]);
        assert!(matches!(q.try_send(2), Err(Refused::NotReady)));
        q.set_ready(group(&q, 0), true);
        q.try_send(3).unwrap();
        assert_eq!(q.unavailable(), Vec::<u32>::new());
        assert_eq!(q.next_for(slot(&q, 0)), Next::Job(3));
    }

    /// A job and when it was queued, as the pool's jobs carry it.
    fn at(q: &SlotQueue<(Instant, u32)>) -> Option<Instant> {
        q.sample(|job| job.0).oldest
    }

    #[test]
    fn the_oldest_queued_job_is_the_one_at_the_head() {
        let q = queue::<(Instant, u32)>(8, 1, 1, false);
        q.set_ready(group(&q, 0), true);
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_millis(5);
        assert_eq!(at(&q), None, "an empty queue has no wait");
        q.try_send((t0, 1)).unwrap();
        q.try_send((t1, 2)).unwrap();
        assert_eq!(at(&q), Some(t0));
        assert!(matches!(q.next_for(slot(&q, 0)), Next::Job((_, 1))));
        assert_eq!(
            at(&q),
            Some(t1),
            "the next one's wait, once the first is taken"
        );
        // A retried job goes first, with the time it was first queued.
        q.retry((t0, 0));
        assert_eq!(at(&q), Some(t0));
    }

    #[test]
    fn a_watcher_is_told_of_the_first_job_queued_and_only_that_one() {
        let q = queue::<u32>(8, 1, 1, false);
        q.set_ready(group(&q, 0), true);
        assert!(q.watch(), "the queue is empty: a job will be told");
        assert_eq!(q.try_send(1).unwrap(), Sent::Queued { wake: true });
        assert_eq!(q.try_send(2).unwrap(), Sent::Queued { wake: false });
        assert!(!q.watch(), "jobs wait already: nothing to be told");
        assert_eq!(q.try_send(3).unwrap(), Sent::Queued { wake: false });
    }

    #[test]
    fn a_group_is_idle_from_when_its_last_busy_slot_frees_until_it_takes_a_job() {
        let q = queue::<u32>(8, 2, 2, true);
        q.set_ready(group(&q, 0), true);
        let idle_since = |q: &SlotQueue<u32>, g: usize| q.sample(|_| Instant::now()).groups[g];
        assert_eq!(idle_since(&q, 0), (true, None));
        assert_eq!(idle_since(&q, 1), (false, None), "not ready");
        let before = Instant::now();
        assert_eq!(q.next_for(slot(&q, 0)), Next::Idle);
        assert_eq!(idle_since(&q, 0).1, None, "one slot of two is not idle");
        assert_eq!(q.next_for(slot(&q, 1)), Next::Idle);
        let since = idle_since(&q, 0).1.expect("both slots idle");
        assert!(since >= before);
        assert!(matches!(q.try_send(5), Ok(Sent::To(_, 5))));
        assert_eq!(idle_since(&q, 0).1, None, "a job ends the idle time");
        assert_eq!(q.next_for(slot(&q, 1)), Next::Idle);
        let again = idle_since(&q, 0).1.expect("idle again");
        assert!(again >= since, "a new idle time begins");
        q.set_ready(group(&q, 0), false);
        assert_eq!(
            idle_since(&q, 0),
            (false, None),
            "a group not ready is not idle"
        );
    }

    #[test]
    fn idleness_is_not_kept_unless_asked() {
        let q = queue::<u32>(8, 1, 1, false);
        q.set_ready(group(&q, 0), true);
        assert_eq!(q.next_for(slot(&q, 0)), Next::Idle);
        assert_eq!(q.sample(|_| Instant::now()).groups, vec![(true, None)]);
    }
}
