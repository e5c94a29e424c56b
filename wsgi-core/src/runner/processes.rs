//! The worker-process runner: Python runs in child processes (the host binary started
//! again, see [`crate::process`]), each with its own pool of threads; this process never
//! starts an interpreter.
//!
//! Requests wait in the host's queue ([`SlotQueue`]) until a slot of a worker is free: a
//! worker has one slot per thread, so it never holds more requests than it has threads. A
//! request given a slot is written on its worker's intake socket (by the thread that
//! submits it, when a slot is idle), where whichever of its threads is free takes it; the
//! rest of the request goes over the slot's own socket: body pieces as `wsgi.input` asks for
//! them, and the response back into the request's pipe. One host thread, the relay, waits
//! on every slot's socket at once ([`super::reactor`]) and does the relaying without
//! blocking; it stops reading a socket while the response's pipe is full, so backpressure
//! reaches the worker through the socket.
//!
//! One supervisor thread per worker starts it, waits until it reports ready, and replaces
//! it, always in the same order so that no request is lost: the new process starts in a
//! spare group of slots and gets requests only once it has loaded the application; then
//! the old one stops taking requests, finishes what it runs (within the drain grace, then
//! it is killed) and exits through its `atexit` handlers. There is one spare group, so at
//! most one extra process exists at a time and replacements of several workers (a
//! `tmp/restart.txt` touch, SIGHUP) roll through them one by one. What starts a
//! replacement: the worker's budget ([`crate::lifecycle::policy`]: requests, age, memory),
//! `tmp/restart.txt`, [`crate::Engine::restart`], or a request stuck past its timeout. A
//! worker that dies instead answers what it was running (502 before a response head, an
//! aborted body after), puts back what it never started, and is started again in its
//! group, at once if it had lived a while, after a growing pause if it keeps dying young.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use http::StatusCode;

use super::reactor::{Handler, Reactor, note_waker};
use super::slots::{Next, SlotQueue};
use super::{Refused, Runner};
use crate::chunk::Chunk;
use crate::config::{AppConfig, Lifecycle};
use crate::error::Error;
use crate::input::InputSource;
use crate::job::Job;
use crate::lifecycle::backoff::Backoff;
use crate::lifecycle::policy::Budget;
use crate::lifecycle::random::Rng;
use crate::lifecycle::reason::RestartReason;
use crate::lifecycle::restart_file::RestartWatch;
use crate::lifecycle::rss::rss_bytes;
use crate::lifecycle::rss_loop::{RssLoop, Startup};
use crate::metrics::{WorkerSnapshot, WorkerState as Phase};
use crate::pipe::{Msg, TrySend};
use crate::process::log;
use crate::process::messages::{
    ControlFromWorker, ControlToWorker, FromWorker, Request, RequestBody, ToWorker, WorkerConfig,
};
use crate::process::spawn::{Channels, describe_exit, spawn_worker, wait_ready};
use crate::process::started::StartedPage;
use crate::process::wire::{FrameReader, FrameWriter};
use crate::response::Head;
use crate::state::{Running, Shared, Stage};

/// First wait before starting a worker that keeps dying young; doubles up to 30 s.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A worker that lived this long is replaced at once when it dies; one that died younger
/// (a crash loop: every request, or an import-time failure after a restart) waits first.
const STABLE_AFTER: Duration = Duration::from_secs(2);
/// How often a supervisor checks its worker's budget and memory.
const TICK: Duration = Duration::from_millis(250);
/// How often `tmp/restart.txt` and `tmp/always_restart.txt` are looked at (Passenger:
/// "within about a second").
const RESTART_FILE_POLL: Duration = Duration::from_secs(1);

/// Worker processes and the host threads that feed them.
#[derive(Debug)]
pub(crate) struct Processes {
    pool: Arc<Pool>,
    /// Kept here so that the reactor lives as long as the runner; its thread ends once
    /// the engine is closed and every socket is.
    _reactor: Arc<Reactor<Note>>,
}

/// Everything the supervisors, slots and the engine share.
#[derive(Debug)]
struct Pool {
    /// One group of slots per worker, and one spare for replacements.
    queue: SlotQueue<Job>,
    groups: Box<[Group]>,
    workers: Box<[WorkerState]>,
    /// The group no worker uses; `None` while a replacement has it.
    spare: Mutex<Option<usize>>,
    spare_back: Condvar,
    threads: usize,
    shared: Arc<Shared>,
    lifecycle: Lifecycle,
    /// `tmp/always_restart.txt` exists: every request gets a fresh worker (development).
    always_restart: AtomicBool,
    /// A shutdown's grace period is over: what still runs is abandoned, and the processes
    /// running it are killed.
    aborting: AtomicBool,
    /// The host's end of every slot's socket, by slot (group × threads + thread).
    conns: Box<[Mutex<Option<Conn>>]>,
    /// The thread that waits on those sockets.
    reactor: Weak<Reactor<Note>>,
    /// The engine is closing (the queue's own flag, without its lock).
    closing: AtomicBool,
}

/// One group of slots: the sockets of one worker process's threads.
#[derive(Debug)]
struct Group {
    /// The process's control socket while one runs here.
    control: Mutex<Option<FrameWriter<UnixStream>>>,
    /// The worker (index) whose process runs here.
    worker: AtomicUsize,
    /// Slots of this group whose socket is still open.
    open_slots: Mutex<usize>,
    /// Notified when the last of them closes.
    slots_closed: Condvar,
    /// Slots of this group relaying a request now.
    busy: AtomicUsize,
    /// A process loading the application here, so that a shutdown can end its start-up at
    /// once instead of waiting for the import.
    starting: Mutex<Option<Starting>>,
    /// Where requests go to the process running here: any of its threads takes them.
    intake: Mutex<Option<Intake>>,
    /// Which request each of its slots handed to the application, read when it dies.
    started: Mutex<Option<Arc<StartedPage>>>,
}

/// The host's end of a worker process's intake socket.
#[derive(Debug)]
struct Intake {
    socket: UnixStream,
    writer: FrameWriter<UnixStream>,
    /// The reactor watches the socket for room to write.
    watching_writable: bool,
}

/// A worker process that has not reported ready yet.
#[derive(Debug)]
struct Starting {
    /// A handle of its control socket, on which its supervisor waits.
    control: UnixStream,
    /// The process itself, to kill without the risk of hitting a reused pid (the
    /// supervisor reaps it); `None` where the kernel has no pidfds (before Linux 5.3).
    pidfd: Option<OwnedFd>,
}

impl Starting {
    /// Kills the process and wakes its supervisor.
    fn stop(self) {
        if let Some(pidfd) = &self.pidfd {
            // SAFETY: `pidfd` is an open pidfd owned by `self`; the call reads no memory of
            // ours (no siginfo) and has no other side effect than sending the signal.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                );
            }
        }
        let _ = self.control.shutdown(std::net::Shutdown::Both);
    }
}

/// A pidfd for `child`, which must not have been reaped yet.
fn pidfd(child: &Child) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(child.id()).ok()?;
    // SAFETY: `pidfd_open` takes a pid and flags and returns a new descriptor or -1; no
    // memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What the metrics and the triggers know of one worker index.
#[derive(Debug, Default)]
struct WorkerState {
    events: Mutex<Option<mpsc::Sender<Event>>>,
    /// The current process's id; 0 for none.
    pid: AtomicU32,
    /// Requests answered by every process of this index.
    requests: AtomicU64,
    /// Requests answered by the current process (its budget counts these).
    served: AtomicU64,
    /// The current process's drawn request budget; 0 for none.
    max_requests: AtomicU64,
    /// Processes of this index running (the current one, and those being retired).
    live: AtomicUsize,
    /// A replacement is under way.
    replacing: AtomicBool,
    /// Replacements by reason, in [`RestartReason::ALL`]'s order.
    restarts: [AtomicU64; RestartReason::ALL.len()],
    /// The current process's resident memory when last sampled; 0 for not yet.
    rss: AtomicU64,
    /// When the current process became ready.
    ready_at: Mutex<Option<Instant>>,
}

impl WorkerState {
    fn count_restart(&self, reason: RestartReason) {
        if let Some(i) = RestartReason::ALL.iter().position(|&r| r == reason) {
            self.restarts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send(&self, event: Event) {
        if let Some(events) = lock(&self.events).as_ref() {
            let _ = events.send(event);
        }
    }
}

/// What a supervisor is told.
#[derive(Debug, Clone)]
enum Event {
    /// A process's control socket closed: it exited (or is about to).
    Exited(u32),
    /// Replace the worker.
    Recycle(RestartReason),
    /// The worker measured its memory past `max_rss` after a request.
    Rss(u64),
    /// The worker reached its request budget: check it now rather than at the next tick.
    Check,
    /// A shutdown's grace period is over: kill the process if it still runs a request.
    Abort,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Processes {
    /// Starts `processes` workers of `threads` threads and waits until every one has loaded
    /// the application; the first failure is the error.
    pub(crate) fn start(
        app: &AppConfig,
        processes: usize,
        threads: usize,
        queue_depth: usize,
        shared: Arc<Shared>,
        lifecycle: Lifecycle,
    ) -> Result<Self, Error> {
        crate::process::spawn::forbid_nested()?;
        // Before the first worker starts, so that a touch during start-up is seen.
        let watch = lifecycle.restart_dir.as_deref().map(RestartWatch::new);
        let (reactor, pool) =
            Pool::new(processes, threads, queue_depth, shared, lifecycle).map_err(Error::Thread)?;
        let (started_tx, started_rx) = mpsc::channel();
        for index in 0..processes {
            let (events_tx, events) = mpsc::channel();
            *lock(&pool.workers[index].events) = Some(events_tx.clone());
            let supervisor = Supervisor {
                index,
                config: WorkerConfig {
                    app: app.app.clone(),
                    threads,
                    venv: app.venv.clone(),
                    venv_origin: app.venv_origin.clone(),
                    base_dir: app.base_dir.clone(),
                    strict_python_version: app.strict_python_version,
                    multiprocess: app.multiprocess,
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    log_level: tracing::level_filters::LevelFilter::current(),
                    max_rss: pool.lifecycle.recycle.max_rss,
                },
                pool: pool.clone(),
                events_tx,
                rss_loop: RefCell::new(RssLoop::new(pool.lifecycle.recycle.min_lifetime)),
            };
            let started = started_tx.clone();
            std::thread::Builder::new()
                .name(format!("wsgi-supervisor-{index}"))
                .spawn(move || supervisor.run(events, started))
                .map_err(Error::Thread)?;
        }
        drop(started_tx);
        let runner = Processes {
            pool,
            _reactor: reactor,
        };
        for _ in 0..processes {
            let failed = match started_rx.recv() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(Error::WorkerStartup(
                    "a worker process's supervisor stopped while the workers started".into(),
                )),
            };
            if let Some(e) = failed {
                runner.close();
                return Err(e);
            }
        }
        if let Some(watch) = watch {
            let pool = Arc::downgrade(&runner.pool);
            std::thread::Builder::new()
                .name("wsgi-restart-file".into())
                .spawn(move || watch_restart_file(watch, pool))
                .map_err(Error::Thread)?;
        }
        Ok(runner)
    }
}

impl Pool {
    /// A pool for `processes` workers of `threads` threads (and a spare group), with the
    /// relay's thread waiting on its sockets; no worker is started.
    fn new(
        processes: usize,
        threads: usize,
        queue_depth: usize,
        shared: Arc<Shared>,
        lifecycle: Lifecycle,
    ) -> io::Result<(Arc<Reactor<Note>>, Arc<Pool>)> {
        Reactor::start("wsgi-relay".into(), |reactor| {
            Arc::new(Pool {
                queue: SlotQueue::new(queue_depth, processes + 1, threads),
                groups: (0..=processes)
                    .map(|group| Group {
                        control: Mutex::new(None),
                        worker: AtomicUsize::new(group),
                        open_slots: Mutex::new(0),
                        slots_closed: Condvar::new(),
                        busy: AtomicUsize::new(0),
                        starting: Mutex::new(None),
                        intake: Mutex::new(None),
                        started: Mutex::new(None),
                    })
                    .collect(),
                workers: (0..processes).map(|_| WorkerState::default()).collect(),
                spare: Mutex::new(Some(processes)),
                spare_back: Condvar::new(),
                threads,
                shared,
                lifecycle,
                always_restart: AtomicBool::new(false),
                aborting: AtomicBool::new(false),
                conns: (0..(processes + 1) * threads)
                    .map(|_| Mutex::new(None))
                    .collect(),
                reactor,
                closing: AtomicBool::new(false),
            })
        })
    }
}

/// Restarts every worker when `tmp/restart.txt` changes, until the engine closes.
fn watch_restart_file(mut watch: RestartWatch, pool: Weak<Pool>) {
    loop {
        std::thread::sleep(RESTART_FILE_POLL);
        let Some(pool) = pool.upgrade() else {
            return;
        };
        if pool.queue.is_closed() {
            return;
        }
        pool.always_restart
            .store(watch.always_restart(), Ordering::Relaxed);
        if watch.poll() {
            tracing::info!(target: "wsgi_core", file = %watch.restart_file().display(), "restart file changed: restarting the workers one by one");
            pool.recycle_all(RestartReason::RestartFile);
        }
    }
}

impl Pool {
    fn recycle_all(&self, reason: RestartReason) {
        for worker in self.workers.iter() {
            worker.send(Event::Recycle(reason));
        }
    }

    fn control(&self, group: usize, msg: &ControlToWorker) {
        if let Some(control) = self.groups.get(group)
            && let Some(writer) = lock(&control.control).as_mut()
        {
            let _ = writer.send(msg);
        }
    }

    /// Waits for the spare group; `None` once the engine closes.
    fn take_spare(&self) -> Option<usize> {
        let mut spare = lock(&self.spare);
        loop {
            if self.queue.is_closed() {
                return None;
            }
            if let Some(group) = spare.take() {
                return Some(group);
            }
            spare = self
                .spare_back
                .wait_timeout(spare, TICK)
                .map_or_else(|e| e.into_inner().0, |(guard, _)| guard);
        }
    }

    fn give_back(&self, group: usize) {
        *lock(&self.spare) = Some(group);
        self.spare_back.notify_all();
    }

    /// Waits until every slot of `group` has closed, so that new ones can take its
    /// slots.
    fn wait_slots_ended(&self, group: usize) {
        let g = &self.groups[group];
        let mut open = lock(&g.open_slots);
        while *open > 0 {
            open = g.slots_closed.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Runner for Processes {
    fn submit(&self, job: Job) -> Result<(), Refused> {
        if let Some((slot, job)) = self.pool.queue.try_send(job)? {
            self.pool.start(slot, job);
        }
        Ok(())
    }

    fn queued(&self) -> usize {
        self.pool.queue.len()
    }

    fn close(&self) {
        // What is queued is still served: a slot's thread ends once the queue is empty,
        // and the worker then sees its sockets close; `Shutdown` makes it exit (through its
        // `atexit` handlers) when all its threads have.
        self.pool.queue.close();
        self.pool.closing.store(true, Ordering::Release);
        self.pool.close_idle(self.pool.queue.idle_to_close());
        for (index, group) in self.pool.groups.iter().enumerate() {
            // A process still importing the application would hold a supervisor (and the
            // stop) until its import ends; it has nothing to finish, so it is stopped now.
            if let Some(starting) = lock(&group.starting).take() {
                starting.stop();
            }
            self.pool
                .control(index, &ControlToWorker::Shutdown { grace_ms: 0 });
        }
    }

    fn abort(&self) {
        // A process with a request still running would exit only when it ends; its client
        // is abandoned as in-process (the host cuts the connection when it exits), so the
        // process is killed, as gunicorn does at its graceful timeout. Idle ones go on to
        // exit through their `atexit` handlers.
        self.pool.aborting.store(true, Ordering::Release);
        for worker in self.pool.workers.iter() {
            worker.send(Event::Abort);
        }
    }

    fn stop(&self, wait: Duration) {
        self.close();
        let deadline = Instant::now() + wait;
        while self
            .pool
            .workers
            .iter()
            .any(|w| w.live.load(Ordering::Acquire) > 0)
        {
            if Instant::now() >= deadline {
                tracing::warn!(target: "wsgi_core", "worker processes still running after {:.0} s; leaving them to end with this process", wait.as_secs_f64());
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn interrupt(&self, slot: usize, id: u64) {
        let threads = self.pool.threads;
        let local = u32::try_from(slot % threads).unwrap_or(u32::MAX);
        self.pool.control(
            slot / threads,
            &ControlToWorker::Interrupt { slot: local, id },
        );
    }

    fn stuck(&self, slot: usize) {
        // The thread is blocked where `TimeoutError` cannot reach it: only a new process
        // gives its capacity back.
        let group = slot / self.pool.threads;
        let worker = self.pool.groups[group].worker.load(Ordering::Acquire);
        if let Some(worker) = self.pool.workers.get(worker) {
            worker.send(Event::Recycle(RestartReason::Timeout));
        }
    }

    fn restart(&self, reason: RestartReason) -> bool {
        self.pool.recycle_all(reason);
        true
    }

    fn workers(&self) -> Vec<WorkerSnapshot> {
        let ready = self.pool.queue.ready();
        let mut groups_of = vec![None; self.pool.workers.len()];
        for (group, g) in self.pool.groups.iter().enumerate() {
            let worker = g.worker.load(Ordering::Acquire);
            if worker < groups_of.len() && ready.get(group).copied().unwrap_or(false) {
                groups_of[worker] = Some(group);
            }
        }
        self.pool
            .workers
            .iter()
            .enumerate()
            .map(|(index, w)| {
                let ready = groups_of[index].is_some();
                let pid = Some(w.pid.load(Ordering::Relaxed)).filter(|&pid| pid != 0);
                let state = if w.replacing.load(Ordering::Relaxed) {
                    Phase::Replacing
                } else if ready {
                    Phase::Ready
                } else {
                    Phase::Starting
                };
                WorkerSnapshot {
                    index,
                    pid,
                    ready,
                    state,
                    draining: w
                        .live
                        .load(Ordering::Relaxed)
                        .saturating_sub(usize::from(pid.is_some())),
                    requests: w.requests.load(Ordering::Relaxed),
                    restarts: RestartReason::ALL
                        .iter()
                        .zip(&w.restarts)
                        .map(|(reason, n)| (reason.as_str(), n.load(Ordering::Relaxed)))
                        .collect(),
                    rss_bytes: Some(w.rss.load(Ordering::Relaxed)).filter(|&n| n != 0),
                    age: lock(&w.ready_at).map(|at| at.elapsed()),
                }
            })
            .collect()
    }
}

/// A worker process that has reported ready.
struct Process {
    child: Child,
    pid: u32,
    group: usize,
    ready_at: Instant,
    budget: Budget,
}

/// Starts, watches and replaces one worker.
struct Supervisor {
    index: usize,
    config: WorkerConfig,
    pool: Arc<Pool>,
    events_tx: mpsc::Sender<Event>,
    /// Its workers' starts over `max_rss`, which space out memory recycles.
    rss_loop: RefCell<RssLoop>,
}

impl Supervisor {
    fn state(&self) -> &WorkerState {
        &self.pool.workers[self.index]
    }

    fn run(self, events: mpsc::Receiver<Event>, started: mpsc::Sender<Result<(), Error>>) {
        let mut first = Some(started);
        let mut rng = Rng::from_entropy();
        let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF, STABLE_AFTER);
        let mut group = self.index;
        loop {
            let process = match self.launch(group, &mut rng) {
                Ok(process) => process,
                Err(e) => {
                    if let Some(started) = first.take() {
                        let _ = started.send(Err(e));
                        return;
                    }
                    if self.pool.queue.is_closed() {
                        return;
                    }
                    tracing::error!(target: "wsgi_core", worker = self.index, "a new worker process failed to start: {e}");
                    self.refuse_queue_if_none_ready();
                    if !self.pause(backoff.on_crash(Duration::ZERO)) {
                        return;
                    }
                    continue;
                }
            };
            if let Some(started) = first.take() {
                let _ = started.send(Ok(()));
            }
            let Some(uptime) = self.supervise(process, &events, &mut rng, &mut backoff, &mut group)
            else {
                return;
            };
            // It died: its group is started again once its slots are closed.
            self.pool.wait_slots_ended(group);
            let wait = if uptime >= STABLE_AFTER {
                backoff.reset();
                Duration::ZERO
            } else {
                backoff.on_crash(uptime)
            };
            if !self.pause(wait) {
                return;
            }
        }
    }

    /// Sleeps `wait` unless the engine closes first; whether to go on.
    fn pause(&self, wait: Duration) -> bool {
        if wait.is_zero() {
            return !self.pool.queue.is_closed();
        }
        tracing::info!(target: "wsgi_core", worker = self.index, "starting a new worker process in {:.1} s", wait.as_secs_f64());
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.pool.queue.is_closed() {
                return false;
            }
            std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
        }
        !self.pool.queue.is_closed()
    }

    /// Answers the queue 503 when no worker is ready to take it, and refuses new requests
    /// until one is.
    fn refuse_queue_if_none_ready(&self) {
        for job in self.pool.queue.unavailable() {
            let _ = job.tx.try_send(Msg::Head(
                self.pool
                    .shared
                    .unavailable("no worker process is ready to take requests"),
            ));
        }
    }

    /// Runs `process` until it dies (its uptime) or the engine closes (`None`), replacing
    /// it when asked; `group` follows the process that currently serves.
    fn supervise(
        &self,
        mut process: Process,
        events: &mpsc::Receiver<Event>,
        rng: &mut Rng,
        backoff: &mut Backoff,
        group: &mut usize,
    ) -> Option<Duration> {
        // An event taken while coalescing repeated recycles, handled next.
        let mut next = None;
        loop {
            let event = match next.take().map_or_else(|| events.recv_timeout(TICK), Ok) {
                Ok(event) => Some(event),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return None,
            };
            match event {
                Some(Event::Exited(pid)) if pid == process.pid => {
                    return self.reap(process);
                }
                // A replaced process ending: its reaper sees to it.
                Some(Event::Exited(_)) => {}
                Some(Event::Recycle(reason)) => {
                    if self.pool.queue.is_closed() {
                        continue;
                    }
                    // Triggers that stand for "run the new code" also forgive past crashes.
                    if matches!(
                        reason,
                        RestartReason::RestartFile | RestartReason::Signal | RestartReason::Api
                    ) {
                        backoff.reset();
                    }
                    self.replace(&mut process, reason, rng);
                    // Requests for the same thing while it was under way are served by it;
                    // anything else (the process's exit above all) is handled next.
                    while let Ok(event) = events.try_recv() {
                        if !matches!(event, Event::Recycle(again) if again == reason) {
                            next = Some(event);
                            break;
                        }
                    }
                }
                Some(Event::Abort) => {
                    if self.pool.groups[process.group].busy.load(Ordering::Acquire) > 0 {
                        let _ = process.child.kill();
                    }
                }
                Some(Event::Rss(bytes)) => {
                    self.check_budget(&mut process, Some(bytes), false, rng);
                }
                Some(Event::Check) => {
                    let rss = self.sample_rss(&process);
                    self.check_budget(&mut process, rss, true, rng);
                }
                None => {
                    let rss = self.sample_rss(&process);
                    self.check_budget(&mut process, rss, false, rng);
                }
            }
            *group = process.group;
        }
    }

    /// The process's resident memory, when a limit needs it.
    fn sample_rss(&self, process: &Process) -> Option<u64> {
        self.pool.lifecycle.recycle.max_rss?;
        rss_bytes(process.pid).ok()
    }

    /// Replaces `process` if its budget is spent (`rss`: its memory, when measured). A
    /// worker a slot paused at its request budget (`paused`) is replaced at once, whatever
    /// its age; should its budget not be due after all, it is resumed.
    fn check_budget(&self, process: &mut Process, rss: Option<u64>, paused: bool, rng: &mut Rng) {
        if self.pool.queue.is_closed() {
            return;
        }
        let state = self.state();
        if let Some(bytes) = rss {
            state.rss.store(bytes, Ordering::Relaxed);
        }
        let served = state.served.load(Ordering::Relaxed);
        match process.budget.due(served, process.ready_at.elapsed(), rss) {
            Some(reason) => self.replace(process, reason, rng),
            None if paused => self.pool.pause_group(process.group, false),
            None => {}
        }
    }

    /// Starts a process in `group` and waits until it is ready; its slots then take
    /// requests.
    fn launch(&self, group: usize, rng: &mut Rng) -> Result<Process, Error> {
        let threads = self.pool.threads;
        let (mut child, channels) = spawn_worker(threads).map_err(Error::WorkerChannel)?;
        let Channels {
            control,
            intake,
            slots,
            started,
        } = channels;
        let mut writer = FrameWriter::new(control.try_clone().map_err(Error::WorkerChannel)?);
        // The socket option is shared by every handle of the socket: this one sets it.
        let timer = control.try_clone().map_err(Error::WorkerChannel)?;
        let mut reader = FrameReader::new(control);
        let fail = |child: &mut Child, e: Error| {
            let _ = child.kill();
            let _ = child.wait();
            e
        };
        if let Err(e) = writer.send(&ControlToWorker::Config(self.config.clone())) {
            return Err(fail(&mut child, Error::WorkerChannel(e)));
        }
        {
            // Under the lock `close` takes, so that either it sees this socket or this sees
            // the engine closed.
            let mut starting = lock(&self.pool.groups[group].starting);
            if self.pool.queue.is_closed() {
                drop(starting);
                return Err(fail(
                    &mut child,
                    Error::WorkerStartup("the engine closed".into()),
                ));
            }
            *starting = timer.try_clone().ok().map(|control| Starting {
                control,
                pidfd: pidfd(&child),
            });
        }
        // A worker hung in its import must not hold the start-up (or a replacement's spare)
        // for ever: Passenger's `passenger_start_timeout`.
        let limit = self.pool.lifecycle.start_timeout;
        let _ = timer.set_read_timeout(Some(limit));
        let ready = wait_ready(&mut child, &mut reader);
        lock(&self.pool.groups[group].starting).take();
        let (pid, python) = match ready {
            Ok(ready) => ready,
            Err(Error::WorkerChannel(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(fail(
                    &mut child,
                    Error::WorkerStartTimeout {
                        secs: limit.as_secs_f64(),
                    },
                ));
            }
            Err(e) => return Err(fail(&mut child, e)),
        };
        if let Err(e) = timer.set_read_timeout(None) {
            return Err(fail(&mut child, Error::WorkerChannel(e)));
        }
        {
            // Under the lock `close` takes, so a worker that became ready while the engine
            // closed is not left running unseen.
            let mut control = lock(&self.pool.groups[group].control);
            if self.pool.queue.is_closed() {
                drop(control);
                return Err(fail(
                    &mut child,
                    Error::WorkerStartup("the engine closed".into()),
                ));
            }
            *control = Some(writer);
        }
        let events = self.events_tx.clone();
        let forwarded = std::thread::Builder::new()
            .name(format!("wsgi-worker-log-{}", self.index))
            .spawn(move || forward_log(reader, pid, events));
        if let Err(e) = forwarded {
            return Err(fail(&mut child, Error::Thread(e)));
        }
        let state = self.state();
        state.pid.store(pid, Ordering::Relaxed);
        state.served.store(0, Ordering::Relaxed);
        state.rss.store(0, Ordering::Relaxed);
        let ready_at = Instant::now();
        *lock(&state.ready_at) = Some(ready_at);
        let mut budget = Budget::draw(&self.pool.lifecycle.recycle, rng);
        state
            .max_requests
            .store(budget.max_requests().unwrap_or(0), Ordering::Relaxed);
        state.live.fetch_add(1, Ordering::AcqRel);
        let g = &self.pool.groups[group];
        g.worker.store(self.index, Ordering::Release);
        // Ready before its slots take jobs: a slot of a group that is not ready closes.
        self.pool.set_ready(group, true);
        self.pool.attach(group, intake, slots, started);
        tracing::info!(target: "wsgi_core", worker = self.index, pid, max_requests = budget.max_requests(), max_lifetime_s = budget.max_lifetime().map(|d| d.as_secs()), "worker process ready (Python {python})");
        if let Some(max_rss) = self.pool.lifecycle.recycle.max_rss {
            let rss = rss_bytes(pid).ok();
            state.rss.store(rss.unwrap_or(0), Ordering::Relaxed);
            self.startup_rss(rss, max_rss, &mut budget);
        }
        Ok(Process {
            child,
            pid,
            group,
            ready_at,
            budget,
        })
    }

    /// Holds memory recycles of a worker that started with `rss` bytes back while workers
    /// keep starting over `max_rss` (see [`crate::lifecycle::rss_loop`]), and says so once.
    fn startup_rss(&self, rss: Option<u64>, max_rss: u64, budget: &mut Budget) {
        let mib = |bytes: u64| (bytes + (1 << 19)) >> 20;
        let rss_bytes = rss.unwrap_or(0);
        match self.rss_loop.borrow_mut().on_start(rss, max_rss) {
            Startup::Over { hold, report } => {
                budget.hold_rss(hold);
                if report {
                    tracing::error!(
                        target: "wsgi_core",
                        worker = self.index,
                        rss_bytes,
                        max_rss,
                        hold_s = hold.as_secs(),
                        "worker process uses {} MiB right after start-up, over max_rss {} MiB, as did the one before it: the application needs more than the limit just to start, so replacing it cannot help; raise max_rss. Until a worker starts under it, memory replaces one only after {} s, doubling to at most {} s",
                        mib(rss_bytes),
                        mib(max_rss),
                        hold.as_secs(),
                        crate::lifecycle::rss_loop::MAX_HOLD.max(hold).as_secs(),
                    );
                }
            }
            Startup::Fits { recovered: true } => {
                tracing::info!(target: "wsgi_core", worker = self.index, rss_bytes, max_rss, "worker process uses {} MiB right after start-up, under max_rss {} MiB again: memory replaces workers after the minimum lifetime again", mib(rss_bytes), mib(max_rss));
            }
            Startup::Fits { recovered: false } => {}
        }
    }

    /// Replaces `process` with a new one started in the spare group; the old one drains
    /// and exits. A new process that fails to start leaves the old one serving.
    fn replace(&self, process: &mut Process, reason: RestartReason, rng: &mut Rng) {
        // A worker over its memory or request budget takes no new request while its
        // replacement starts (they wait in the queue, or go to other workers), so a leaking
        // application's memory stays bounded; for every other reason the old worker serves
        // until the new one is ready.
        let stop_first = matches!(
            reason,
            RestartReason::Rss | RestartReason::MaxRequests | RestartReason::AlwaysRestart
        );
        if stop_first {
            self.pool.pause_group(process.group, true);
        }
        self.state().replacing.store(true, Ordering::Relaxed);
        self.replace_with_spare(process, reason, rng, stop_first);
        self.state().replacing.store(false, Ordering::Relaxed);
    }

    /// The replacement proper, once the old worker is paused if it must be.
    fn replace_with_spare(
        &self,
        process: &mut Process,
        reason: RestartReason,
        rng: &mut Rng,
        stop_first: bool,
    ) {
        let Some(spare) = self.pool.take_spare() else {
            return;
        };
        tracing::info!(target: "wsgi_core", worker = self.index, pid = process.pid, reason = reason.as_str(), "replacing the worker process");
        let new = match self.launch(spare, rng) {
            Ok(new) => new,
            Err(e) => {
                if stop_first {
                    self.pool.pause_group(process.group, false);
                }
                self.pool.give_back(spare);
                if self.pool.queue.is_closed() {
                    // Stopped by the shutdown, not failed: the old one finishes and exits.
                    tracing::info!(target: "wsgi_core", worker = self.index, reason = reason.as_str(), "the engine is stopping: the replacement worker process was stopped before it was ready");
                } else {
                    tracing::error!(target: "wsgi_core", worker = self.index, reason = reason.as_str(), "the replacement worker process failed to start; the old one keeps serving: {e}");
                }
                return;
            }
        };
        let old = std::mem::replace(process, new);
        // From here the new process takes every new request; the old one's idle slots stop
        // and its busy ones finish their request first.
        self.pool.set_ready(old.group, false);
        self.pool.control(
            old.group,
            &ControlToWorker::Shutdown {
                grace_ms: u64::try_from(self.pool.lifecycle.drain_grace.as_millis())
                    .unwrap_or(u64::MAX),
            },
        );
        self.state().count_restart(reason);
        tracing::info!(
            target: "wsgi_core",
            worker = self.index,
            reason = reason.as_str(),
            old_pid = old.pid,
            new_pid = process.pid,
            age_s = old.ready_at.elapsed().as_secs(),
            "worker process replaced; the old one finishes its requests and exits"
        );
        let pool = self.pool.clone();
        let index = self.index;
        let drained = std::thread::Builder::new()
            .name(format!("wsgi-drain-{index}"))
            .spawn(move || drain(pool, old, index));
        if let Err(e) = drained {
            tracing::error!(target: "wsgi_core", worker = self.index, "cannot start the thread that retires a worker process: {e}");
        }
    }

    /// Reaps a process that died on its own; its uptime, or `None` if the engine is
    /// closing (the process ended because it was asked to).
    fn reap(&self, mut process: Process) -> Option<Duration> {
        let pool = &self.pool;
        pool.set_ready(process.group, false);
        *lock(&pool.groups[process.group].control) = None;
        let state = self.state();
        state.pid.store(0, Ordering::Relaxed);
        *lock(&state.ready_at) = None;
        let status = process.child.wait().map(describe_exit);
        state.live.fetch_sub(1, Ordering::AcqRel);
        let pid = process.pid;
        if pool.queue.is_closed() {
            match status {
                Ok(status) => {
                    tracing::info!(target: "wsgi_core", worker = self.index, pid, "worker process ended: {status}");
                }
                Err(e) => {
                    tracing::warn!(target: "wsgi_core", worker = self.index, pid, "worker process lost: {e}");
                }
            }
            return None;
        }
        state.count_restart(RestartReason::Crash);
        match status {
            Ok(status) => {
                tracing::error!(target: "wsgi_core", worker = self.index, pid, "worker process died: {status}");
            }
            Err(e) => {
                tracing::error!(target: "wsgi_core", worker = self.index, pid, "worker process lost: {e}");
            }
        }
        Some(process.ready_at.elapsed())
    }
}

/// Forwards a worker's log records until its control socket closes, then says so.
fn forward_log(mut reader: FrameReader<UnixStream>, pid: u32, events: mpsc::Sender<Event>) {
    loop {
        match reader.recv::<ControlFromWorker>() {
            Ok(Some(ControlFromWorker::Log(record))) => log::emit(&record, pid),
            Ok(Some(ControlFromWorker::Stats { rss_bytes, .. })) => {
                let _ = events.send(Event::Rss(rss_bytes));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let _ = events.send(Event::Exited(pid));
}

/// Retires a replaced process: waits for it to finish its requests and exit, kills it
/// after the drain grace, and gives its group back once its slots are closed.
fn drain(pool: Arc<Pool>, mut old: Process, worker: usize) {
    let deadline = Instant::now() + pool.lifecycle.drain_grace;
    let status = loop {
        match old.child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None)
                if pool.aborting.load(Ordering::Acquire)
                    && pool.groups[old.group].busy.load(Ordering::Acquire) > 0 =>
            {
                let _ = old.child.kill();
                break old.child.wait();
            }
            Ok(None) if Instant::now() >= deadline => {
                tracing::warn!(target: "wsgi_core", worker, pid = old.pid, grace_s = pool.lifecycle.drain_grace.as_secs(), "a replaced worker process did not finish within the grace period; killing it");
                let _ = old.child.kill();
                break old.child.wait();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(e),
        }
    };
    *lock(&pool.groups[old.group].control) = None;
    pool.workers[worker].live.fetch_sub(1, Ordering::AcqRel);
    match status {
        Ok(status) => {
            tracing::info!(target: "wsgi_core", worker, pid = old.pid, "replaced worker process ended: {}", describe_exit(status));
        }
        Err(e) => {
            tracing::warn!(target: "wsgi_core", worker, pid = old.pid, "replaced worker process lost: {e}");
        }
    }
    pool.wait_slots_ended(old.group);
    pool.give_back(old.group);
}

/// What the reactor's thread is told by other threads.
#[derive(Debug)]
enum Note {
    /// The response pipe of `slot`'s request has room again (or its client has gone).
    Space(usize),
    /// The answer to a request for body bytes, from the thread that waited for them.
    Body {
        slot: usize,
        id: u64,
        answer: ToWorker,
    },
}

/// The host's end of one worker thread's socket, while its process serves.
#[derive(Debug)]
struct Conn {
    socket: UnixStream,
    reader: FrameReader<UnixStream>,
    writer: FrameWriter<UnixStream>,
    /// The request being relayed.
    current: Option<Current>,
    /// Woken when the pipe of a request that had no room has some again.
    space: std::task::Waker,
    /// The reactor watches the socket for room to write.
    watching_writable: bool,
}

/// A request relayed on a slot.
#[derive(Debug)]
struct Current {
    job: Job,
    /// The worker has read it (any frame from it says so).
    started: bool,
    head_sent: bool,
    /// The client has gone (or the watchdog answered): the worker was told to stop.
    cancelled: bool,
    /// The response is complete: the client has it, and the slot waits for `Done` (the
    /// worker thread may still be in the iterable's `close()`) before it takes another
    /// request, which would wait behind the `close()` while other threads may be idle.
    /// What to tell the supervisor then.
    finished: Option<Option<Event>>,
    /// A message the response pipe had no room for: nothing more is read from the socket
    /// until it has, so a slow client stalls the worker (backpressure).
    stalled: Option<Msg>,
    /// The thread waiting for the request body for the worker, when the body is not all
    /// here yet: it is given the sizes the worker asks for.
    feeder: Option<mpsc::Sender<u64>>,
}

/// How relaying a request ended.
enum Relayed {
    /// The worker sent the response's end, and its thread is free; what to tell its
    /// supervisor, if anything.
    Done(Option<Event>),
    /// The worker sent the response's end, then died (in the iterable's `close()`).
    DoneThenLost(Option<Event>),
    /// The connection broke; whether the worker had started the request.
    Lost { started: bool, head_sent: bool },
}

/// `GET /path` of a job, for logs.
fn describe(job: &Job) -> String {
    format!(
        "{} {}{}",
        job.vars.method,
        job.vars.script_name,
        String::from_utf8_lossy(job.vars.path_info())
    )
}

impl Pool {
    fn reactor(&self) -> Option<Arc<Reactor<Note>>> {
        self.reactor.upgrade()
    }

    fn conn(&self, slot: usize) -> MutexGuard<'_, Option<Conn>> {
        lock(&self.conns[slot])
    }

    /// Adopts the channels of a process that has just become ready in `group`, and gives
    /// each slot a queued job or marks it idle.
    fn attach(
        &self,
        group: usize,
        intake: UnixStream,
        sockets: Vec<UnixStream>,
        started: StartedPage,
    ) {
        let Some(reactor) = self.reactor() else {
            return;
        };
        let g = &self.groups[group];
        *lock(&g.started) = Some(Arc::new(started));
        let token = self.intake_token(group);
        match intake.try_clone() {
            // Watched for room to write only; a dead worker shows on its slots' sockets.
            Ok(write_half) => match reactor.register(token, intake.as_raw_fd()) {
                Ok(()) => {
                    *lock(&g.intake) = Some(Intake {
                        socket: intake,
                        writer: FrameWriter::new(write_half),
                        watching_writable: false,
                    });
                }
                Err(e) => {
                    tracing::error!(target: "wsgi_core", "cannot watch a worker's socket: {e}")
                }
            },
            Err(e) => tracing::error!(target: "wsgi_core", "cannot use a worker's socket: {e}"),
        }
        // Every slot is open before any takes a job: a slot that closes at once (the engine
        // is closing) must not close the intake under the others.
        let mut attached = Vec::with_capacity(sockets.len());
        for (local, socket) in sockets.into_iter().enumerate() {
            let slot = group * self.threads + local;
            let (read_half, write_half) = match (socket.try_clone(), socket.try_clone()) {
                (Ok(read_half), Ok(write_half)) => (read_half, write_half),
                // Dropped: a request for this slot would have no way back.
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(target: "wsgi_core", "cannot use a worker's socket: {e}");
                    continue;
                }
            };
            let fd = socket.as_raw_fd();
            let space = note_waker(Arc::downgrade(&reactor), move || Note::Space(slot));
            *self.conn(slot) = Some(Conn {
                socket,
                reader: FrameReader::new(read_half),
                writer: FrameWriter::new(write_half),
                current: None,
                space,
                watching_writable: false,
            });
            *lock(&g.open_slots) += 1;
            attached.push((slot, fd));
        }
        for (slot, fd) in attached {
            if let Err(e) = reactor.register(slot, fd) {
                tracing::error!(target: "wsgi_core", "cannot watch a worker's socket: {e}");
                self.close_slot(slot);
                continue;
            }
            self.next(slot);
        }
        // None could be used: nothing will close the intake otherwise.
        if *lock(&g.open_slots) == 0 {
            lock(&g.intake).take();
        }
    }

    /// Sends `job` on `slot`, which the queue gave it; if the slot has closed meanwhile
    /// (its worker died), the job goes back to the queue.
    fn start(&self, mut slot: usize, mut job: Job) {
        loop {
            let mut conn = self.conn(slot);
            let unsent = match conn.as_mut() {
                Some(c) if c.current.is_none() => match self.send_request(slot, c, job) {
                    None => return,
                    // The worker is gone (it has not been reaped yet): it never had the
                    // request, and its slots take no other.
                    Some(unsent) => {
                        drop(conn);
                        self.close_slot(slot);
                        unsent
                    }
                },
                _ => {
                    drop(conn);
                    job
                }
            };
            match self.queue.retry(unsent) {
                Some((other, back)) => (slot, job) = (other, back),
                None => return,
            }
        }
    }

    /// Writes `job`'s request on its worker's intake and makes it `slot`'s current request;
    /// gives the job back, unsent, if the socket is broken (the worker died).
    fn send_request(&self, slot: usize, conn: &mut Conn, mut job: Job) -> Option<Job> {
        let group = slot / self.threads;
        {
            let mut intake = lock(&self.groups[group].intake);
            let Some(intake) = intake.as_mut() else {
                return Some(job);
            };
            let local = u32::try_from(slot % self.threads).expect("threads fit u32");
            let queued = Self::queue_request(&mut intake.writer, local, &mut job);
            // What the socket does not take now goes when it is writable again.
            if queued
                .and_then(|()| self.flush_intake(group, intake))
                .is_err()
            {
                return Some(job);
            }
        }
        let shared = &self.shared;
        shared.metrics.busy_threads.fetch_add(1, Ordering::Relaxed);
        self.groups[slot / self.threads]
            .busy
            .fetch_add(1, Ordering::AcqRel);
        if let Some(timeout) = shared.timeout {
            *shared.slots[slot].lock() = Some(Running {
                id: job.id,
                deadline: Instant::now() + timeout,
                tx: job.tx.clone(),
                stage: Stage::Running,
            });
        }
        conn.current = Some(Current {
            job,
            started: false,
            head_sent: false,
            cancelled: false,
            finished: None,
            stalled: None,
            feeder: None,
        });
        None
    }

    /// Queues `job`'s request for `slot` on `writer`, keeping in `job` what was sent, in
    /// case another worker has to run it.
    fn queue_request(
        writer: &mut FrameWriter<UnixStream>,
        slot: u32,
        job: &mut Job,
    ) -> io::Result<()> {
        let body = match &mut job.input {
            InputSource::Buffered(chunks) if chunks.is_empty() => RequestBody::None,
            InputSource::Buffered(chunks) => {
                RequestBody::Inline(crate::process::messages::join_body(std::mem::take(chunks)))
            }
            _ => RequestBody::Streamed,
        };
        let request = ToWorker::Request(Box::new(Request {
            id: job.id,
            slot,
            vars: std::mem::take(&mut job.vars),
            content_length: job.content_length,
            body,
        }));
        let queued = writer.queue(&request);
        if let ToWorker::Request(request) = request {
            let Request { vars, body, .. } = *request;
            job.vars = vars;
            if let RequestBody::Inline(bytes) = body {
                job.input = InputSource::Buffered([bytes].into());
            }
        }
        queued
    }

    /// Writes what `conn` has queued, as far as its socket takes it now; what is left goes
    /// when the reactor sees room.
    fn flush(&self, slot: usize, conn: &mut Conn) -> io::Result<()> {
        conn.writer.try_flush()?;
        let pending = conn.writer.has_pending();
        if pending != conn.watching_writable
            && let Some(reactor) = self.reactor()
        {
            reactor.watch_writable(slot, conn.socket.as_raw_fd(), pending)?;
            conn.watching_writable = pending;
        }
        Ok(())
    }

    /// The reactor's token for `group`'s intake socket (after every slot's).
    fn intake_token(&self, group: usize) -> usize {
        self.conns.len() + group
    }

    /// Writes what `group`'s intake has queued, as far as its socket takes it now.
    fn flush_intake(&self, group: usize, intake: &mut Intake) -> io::Result<()> {
        intake.writer.try_flush()?;
        let pending = intake.writer.has_pending();
        if pending != intake.watching_writable
            && let Some(reactor) = self.reactor()
        {
            reactor.watch_writable(self.intake_token(group), intake.socket.as_raw_fd(), pending)?;
            intake.watching_writable = pending;
        }
        Ok(())
    }

    /// Gives `slot`, which has no request, the next queued one, or marks it idle, or
    /// closes it.
    fn next(&self, slot: usize) {
        loop {
            match self.queue.next_for(slot) {
                // Answered (503) or dropped (its client left) by `admit`: the next one.
                Next::Job(job) if !self.shared.admit(&job) => continue,
                Next::Job(job) => self.start(slot, job),
                Next::Idle => {}
                Next::Retire => {
                    self.close_slot(slot);
                    self.close_idle(self.queue.idle_to_close());
                }
            }
            break;
        }
    }

    /// Closes `slots` that have no request (a busy one closes after its request).
    fn close_idle(&self, slots: Vec<usize>) {
        for slot in slots {
            let idle = self
                .conn(slot)
                .as_ref()
                .is_some_and(|c| c.current.is_none());
            if idle {
                self.close_slot(slot);
            }
        }
    }

    /// Stops watching `slot`'s socket and closes it: the worker thread on the other end
    /// then ends.
    fn close_slot(&self, slot: usize) {
        let Some(conn) = self.conn(slot).take() else {
            return;
        };
        if let Some(reactor) = self.reactor() {
            reactor.deregister(conn.socket.as_raw_fd());
        }
        drop(conn);
        let group = slot / self.threads;
        let g = &self.groups[group];
        let mut open = lock(&g.open_slots);
        *open = open.saturating_sub(1);
        if *open == 0 {
            // No request will go to this worker again: its threads end once they have run
            // what it holds.
            if let Some(intake) = lock(&g.intake).take()
                && let Some(reactor) = self.reactor()
            {
                reactor.deregister(intake.socket.as_raw_fd());
            }
            g.slots_closed.notify_all();
        }
    }

    /// Reads what `slot`'s worker sent, until it would block.
    fn read_slot(&self, slot: usize) {
        let mut guard = self.conn(slot);
        let Some(conn) = guard.as_mut() else {
            return;
        };
        let relayed = loop {
            if conn.current.as_ref().is_some_and(|c| c.stalled.is_some()) {
                return;
            }
            let frame = match conn.reader.try_recv::<FromWorker>() {
                Ok(Some(frame)) => frame,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                result => {
                    let Some(current) = &conn.current else {
                        // An idle slot's worker ended (it died, or retired): nothing of
                        // ours was lost. Its supervisor reports the death.
                        drop(guard);
                        self.close_slot(slot);
                        return;
                    };
                    break match result {
                        // Nothing came back, and no thread marked it as handed to the
                        // application: it may have waited in the worker's queue, or not
                        // even been read. Either way the application never saw it.
                        _ if !current.started
                            && !lock(&self.groups[slot / self.threads].started)
                                .as_ref()
                                .is_some_and(|page| {
                                    page.started(slot % self.threads, current.job.id)
                                }) =>
                        {
                            Relayed::Lost {
                                started: false,
                                head_sent: false,
                            }
                        }
                        // Died after the response was complete (in `close()`): the client
                        // has its answer, and this slot's worker is gone.
                        _ if current.finished.is_some() => {
                            Relayed::DoneThenLost(current.finished.clone().flatten())
                        }
                        _ => Relayed::Lost {
                            started: true,
                            head_sent: current.head_sent,
                        },
                    };
                }
            };
            if conn.current.is_none() {
                // A frame with no request: the worker broke the protocol.
                tracing::error!(target: "wsgi_core", "a worker process sent a frame while idle; closing its socket");
                drop(guard);
                self.close_slot(slot);
                return;
            }
            if let Some(relayed) = self.on_frame(slot, conn, frame) {
                break relayed;
            }
        };
        let current = conn.current.take().expect("a request was relayed");
        let ended = matches!(relayed, Relayed::Done(_));
        drop(guard);
        self.end_request(slot, current, relayed);
        if ended {
            self.next(slot);
        } else {
            self.close_slot(slot);
        }
    }

    /// Handles one frame of `conn`'s current request; `Some` when the request is over.
    fn on_frame(&self, slot: usize, conn: &mut Conn, frame: FromWorker) -> Option<Relayed> {
        let current = conn.current.as_mut().expect("checked by the caller");
        current.started = true;
        if current.finished.is_some() {
            // Nothing but `Done` follows the response's end.
            return matches!(frame, FromWorker::Done)
                .then(|| Relayed::Done(current.finished.clone().flatten()));
        }
        let msg = match frame {
            FromWorker::Want(want) => {
                self.want(slot, conn, want);
                return None;
            }
            FromWorker::Head(head) => {
                current.head_sent = true;
                if matches!(head.body, crate::response::HeadBody::Full(_)) {
                    current.finished = Some(self.pause_if_due(slot));
                }
                Msg::Head(head)
            }
            FromWorker::Data(bytes) => Msg::Data(bytes),
            FromWorker::End => {
                current.finished = Some(self.pause_if_due(slot));
                Msg::End
            }
            FromWorker::Short(why) => {
                current.finished = Some(self.pause_if_due(slot));
                Msg::Short(why)
            }
            FromWorker::Abort(why) => {
                current.finished = Some(self.pause_if_due(slot));
                Msg::Abort(why)
            }
            FromWorker::Done => {
                // The worker's side of the request ended without its response's end.
                let due = self.pause_if_due(slot);
                let _ = current.job.tx.try_send(Msg::Abort(
                    "the worker ended the request without finishing its response".into(),
                ));
                return Some(Relayed::Done(due));
            }
        };
        self.deliver(slot, conn, msg);
        None
    }

    /// Hands `msg` to the client's pipe; with no room, keeps it and stops reading.
    fn deliver(&self, slot: usize, conn: &mut Conn, msg: Msg) {
        let current = conn.current.as_mut().expect("a request is relayed");
        if current.cancelled {
            // What the application still sends after the client went is dropped.
            return;
        }
        match current.job.tx.try_send_or_wake(msg, &conn.space) {
            TrySend::Sent => {}
            TrySend::Full(msg) => current.stalled = Some(msg),
            TrySend::Gone if current.finished.is_some() => {}
            TrySend::Gone => {
                // The client has gone (or the watchdog answered): the application should
                // stop; what it still sends is read and dropped until its end.
                current.cancelled = true;
                self.control(
                    slot / self.threads,
                    &ControlToWorker::Cancel {
                        slot: u32::try_from(slot % self.threads).unwrap_or(u32::MAX),
                        id: current.job.id,
                    },
                );
            }
        }
    }

    /// Answers a worker's request for `want` more body bytes: at once from a body that is
    /// all here, else through a thread that waits for the client.
    fn want(&self, slot: usize, conn: &mut Conn, want: u64) {
        let current = conn.current.as_mut().expect("a request is relayed");
        // Once a feeder has the body, the job's own source is an empty stand-in.
        if current.feeder.is_none()
            && let InputSource::Buffered(_) = current.job.input
        {
            let answer = body_answer(&mut current.job.input, want, self.shared.body_timeout);
            let _ = conn
                .writer
                .queue(&answer)
                .and_then(|()| self.flush(slot, conn));
            return;
        }
        if current.feeder.is_none() {
            let input = std::mem::replace(&mut current.job.input, InputSource::empty());
            current.feeder = self.spawn_feeder(slot, current.job.id, input);
        }
        // The worker waits for an answer: without a feeder (none could start, or it ended
        // after the body's last answer), it gets one here.
        let answer = match &current.feeder {
            Some(feeder) if feeder.send(want).is_ok() => return,
            Some(_) => ToWorker::BodyEnd,
            None => ToWorker::BodyFailed("cannot start a thread for the request body".into()),
        };
        let _ = conn
            .writer
            .queue(&answer)
            .and_then(|()| self.flush(slot, conn));
    }

    /// A thread that waits for the body `input` of request `id` on `slot`, one piece per
    /// size it is given, and leaves each answer with the reactor.
    fn spawn_feeder(
        &self,
        slot: usize,
        id: u64,
        mut input: InputSource,
    ) -> Option<mpsc::Sender<u64>> {
        let reactor = self.reactor.clone();
        let timeout = self.shared.body_timeout;
        let (wants, asked) = mpsc::channel::<u64>();
        let spawned = std::thread::Builder::new()
            .name("wsgi-body".into())
            .spawn(move || {
                while let Ok(want) = asked.recv() {
                    let answer = body_answer(&mut input, want, timeout);
                    let last = !matches!(answer, ToWorker::Body(_));
                    let Some(reactor) = reactor.upgrade() else {
                        return;
                    };
                    reactor.notify(Note::Body { slot, id, answer });
                    if last {
                        return;
                    }
                }
            });
        match spawned {
            Ok(_) => Some(wants),
            Err(e) => {
                tracing::error!(target: "wsgi_core", "cannot start a thread for a request body: {e}");
                None
            }
        }
    }

    /// Settles a request whose relaying is over.
    fn end_request(&self, slot: usize, current: Current, relayed: Relayed) {
        let shared = &self.shared;
        shared.slots[slot].lock().take();
        shared.metrics.busy_threads.fetch_sub(1, Ordering::Relaxed);
        let group = &self.groups[slot / self.threads];
        group.busy.fetch_sub(1, Ordering::AcqRel);
        let worker = group.worker.load(Ordering::Acquire);
        let job = current.job;
        match relayed {
            Relayed::Done(due) | Relayed::DoneThenLost(due) => self.count_served(slot, due),
            Relayed::Lost { .. } if self.aborting.load(Ordering::Acquire) => {
                // Killed at the end of a shutdown's grace period, which the engine has
                // logged: the request is abandoned, as it is in-process.
                tracing::debug!(target: "wsgi_core", worker, "{}: abandoned at the end of the grace period", describe(&job));
            }
            Relayed::Lost { started: false, .. } => {
                // The application never saw it: another worker gets it.
                if let Some((other, job)) = self.queue.retry(job) {
                    self.start(other, job);
                }
            }
            Relayed::Lost {
                head_sent: false, ..
            } => {
                tracing::error!(target: "wsgi_core", worker, "{}: the worker process died while running it; answered 502", describe(&job));
                let _ = job.tx.try_send(Msg::Head(Head::plain(
                    StatusCode::BAD_GATEWAY,
                    "Bad Gateway: the application's worker process died\n",
                )));
            }
            Relayed::Lost { .. } => {
                tracing::error!(target: "wsgi_core", worker, "{}: the worker process died during the response; it was cut", describe(&job));
                let _ = job
                    .tx
                    .try_send(Msg::Abort("the application's worker process died".into()));
            }
        }
    }

    /// Called just before a response's last message reaches the client: if this request
    /// spends the worker's request budget (or every request gets a fresh worker), the
    /// worker takes no next request, even one the client sends the moment it has this
    /// response; its supervisor then replaces it.
    fn pause_if_due(&self, slot: usize) -> Option<Event> {
        let group = slot / self.threads;
        let state = self.worker_of_group(group)?;
        let event = if self.always_restart.load(Ordering::Relaxed) {
            Event::Recycle(RestartReason::AlwaysRestart)
        } else if state.served.load(Ordering::Relaxed) + 1
            == state.max_requests.load(Ordering::Relaxed)
        {
            Event::Check
        } else {
            return None;
        };
        self.queue.pause(group, true);
        Some(event)
    }

    fn worker_of_group(&self, group: usize) -> Option<&WorkerState> {
        let worker = self.groups[group].worker.load(Ordering::Acquire);
        self.workers.get(worker)
    }

    /// Counts a request the worker answered, and tells its supervisor `due`.
    fn count_served(&self, slot: usize, due: Option<Event>) {
        if let Some(state) = self.worker_of_group(slot / self.threads) {
            state.requests.fetch_add(1, Ordering::Relaxed);
            state.served.fetch_add(1, Ordering::Relaxed);
            if let Some(event) = due {
                state.send(event);
            }
        }
    }

    /// Resumes or pauses `group`; jobs the resumed group takes at once are sent.
    fn pause_group(&self, group: usize, paused: bool) {
        for (slot, job) in self.queue.pause(group, paused) {
            self.start(slot, job);
        }
    }

    /// Marks `group` ready or not; a group no longer ready closes its idle slots.
    fn set_ready(&self, group: usize, ready: bool) {
        let idle = self.queue.set_ready(group, ready);
        self.close_idle(idle);
    }
}

/// The answer to a request for `want` body bytes from `input`, waiting up to `timeout` for
/// the client.
fn body_answer(input: &mut InputSource, want: u64, timeout: Option<Duration>) -> ToWorker {
    match input.next_chunk(want, timeout) {
        Chunk::Data(bytes) => ToWorker::Body(bytes),
        Chunk::Eof => ToWorker::BodyEnd,
        Chunk::TooLarge(max) => ToWorker::BodyTooLarge(max),
        Chunk::Failed(why) if input.timed_out() => ToWorker::BodyTimedOut(why),
        Chunk::Failed(why) => ToWorker::BodyFailed(why),
    }
}

impl Handler<Note> for Pool {
    fn readable(&self, token: usize) {
        // An intake socket is readable only once its worker has gone, which its slots'
        // sockets tell.
        if token < self.conns.len() {
            self.read_slot(token);
        }
    }

    fn writable(&self, token: usize) {
        if let Some(slot) = (token < self.conns.len()).then_some(token) {
            if let Some(conn) = self.conn(slot).as_mut() {
                // A failure shows on the read side.
                let _ = self.flush(slot, conn);
            }
            return;
        }
        let group = token - self.conns.len();
        if let Some(g) = self.groups.get(group)
            && let Some(intake) = lock(&g.intake).as_mut()
        {
            // A failure shows on the slots' sockets.
            let _ = self.flush_intake(group, intake);
        }
    }

    fn notified(&self, note: Note) {
        match note {
            Note::Space(slot) => {
                {
                    let mut guard = self.conn(slot);
                    let Some(conn) = guard.as_mut() else {
                        return;
                    };
                    let Some(msg) = conn.current.as_mut().and_then(|c| c.stalled.take()) else {
                        return;
                    };
                    self.deliver(slot, conn, msg);
                    if conn.current.as_ref().is_some_and(|c| c.stalled.is_some()) {
                        return;
                    }
                }
                // What arrived while the pipe was full.
                self.read_slot(slot);
            }
            Note::Body { slot, id, answer } => {
                let mut guard = self.conn(slot);
                if let Some(conn) = guard.as_mut()
                    && conn.current.as_ref().is_some_and(|c| c.job.id == id)
                {
                    let _ = conn
                        .writer
                        .queue(&answer)
                        .and_then(|()| self.flush(slot, conn));
                }
            }
        }
    }

    fn finished(&self) -> bool {
        self.closing.load(Ordering::Acquire)
            && self.conns.iter().all(|c| lock(c).is_none())
            && self.groups.iter().all(|g| lock(&g.intake).is_none())
    }
}

#[cfg(test)]
mod tests;
