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
//! on every slot's socket at once ([`reactor`]) and does the relaying without
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
//!
//! With preloading, a worker is forked by the template process ([`template`]) instead of
//! spawned, and a restart for new code starts a new template first; everything else is the
//! same ([`child`] hides which kind a worker is).
//!
//! An elastic pool ([`crate::lifecycle::elastic`]) has groups, worker states and supervisors
//! for its maximum; those above the minimum wait, without a process, until the pool's
//! thread ([`sizer`]) tells one to start, and go back to waiting when it retires.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

mod child;
mod reactor;
mod relay;
mod sizer;
pub(crate) mod slots;
mod supervisor;
mod template;
#[cfg(test)]
mod testing;

use self::child::Launcher;
use self::reactor::Reactor;
use self::relay::{Conn, Note};
use self::slots::{Sent, SlotQueue};
use self::supervisor::Supervisor;
use self::template::Template;
use crate::config::{AppConfig, Lifecycle};
use crate::error::Error;
use crate::job::Job;
use crate::lifecycle::elastic::{Elastic, Grow, RETIRE_LABELS};
use crate::lifecycle::reason::RestartReason;
use crate::lifecycle::restart_file::RestartWatch;
use crate::lifecycle::rss_loop::RssLoop;
use crate::metrics::{PoolSnapshot, WorkerSnapshot, WorkerState as Phase};
use crate::process::ids::{GroupId, SharedWorkerId, SlotId, SlotLayout, WorkerId};
use crate::process::wire::frame::FrameWriter;
use crate::process::wire::messages::{ControlToWorker, ToWorker, WorkerConfig};
use crate::process::wire::started::StartedPage;
use crate::runner::{Refused, Runner};
use crate::state::Shared;

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
    /// One group of slots per worker the pool may run, and one spare for replacements.
    queue: SlotQueue<Job>,
    groups: Box<[Group]>,
    workers: Box<[WorkerState]>,
    /// The pool's bounds and pace; a fixed pool's minimum is its maximum.
    elastic: Elastic,
    /// Workers started by the pool, by [`Grow::index`].
    starts: [AtomicU64; Grow::LABELS.len()],
    /// Workers retired, by [`RETIRE_LABELS`]' order.
    retirements: [AtomicU64; RETIRE_LABELS.len()],
    /// The group no worker uses; `None` while a replacement has it.
    spare: Mutex<Option<GroupId>>,
    spare_back: Condvar,
    /// How the slots make up the groups.
    layout: SlotLayout,
    shared: Arc<Shared>,
    lifecycle: Lifecycle,
    /// `tmp/always_restart.txt` exists: every request gets a fresh worker (development).
    always_restart: AtomicBool,
    /// A shutdown's grace period is over: what still runs is abandoned, and the processes
    /// running it are killed.
    aborting: AtomicBool,
    /// The host's end of every slot's socket, by [`SlotId::index`].
    conns: Box<[Mutex<Option<Conn>>]>,
    /// The thread that waits on those sockets.
    reactor: Weak<Reactor<Note>>,
    /// The engine is closing (the queue's own flag, without its lock).
    closing: AtomicBool,
    /// Rung when the engine closes or aborts, a process ends or becomes ready, the spare
    /// group comes back, or a request is queued while the pool's thread watches the queue:
    /// what `stop`, a supervisor's pause and the pool's thread wait for.
    changed: Changes,
    /// Readable once the grace period is over (an eventfd), so that a draining process's
    /// thread, waiting on the process, learns it at once.
    abort_event: Option<OwnedFd>,
    /// Where worker processes come from: spawned, or forked from the template.
    launcher: Launcher,
}

/// A notification without a payload: waiters re-check their condition when it rings.
#[derive(Debug, Default)]
struct Changes {
    count: Mutex<u64>,
    rung: Condvar,
}

impl Changes {
    fn ring(&self) {
        *lock(&self.count) += 1;
        self.rung.notify_all();
    }

    /// How many times it has rung: for [`Changes::wait_past`].
    fn seen(&self) -> u64 {
        *lock(&self.count)
    }

    /// Waits until it rings after `seen` (a ring between the caller's `seen` and this call
    /// counts), or until `until` passes.
    fn wait_past(&self, seen: u64, until: Option<Instant>) {
        let count = lock(&self.count);
        match until {
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                let waited = self.rung.wait_timeout_while(count, left, |n| *n == seen);
                drop(waited.unwrap_or_else(|e| e.into_inner()));
            }
            None => {
                let waited = self.rung.wait_while(count, |n| *n == seen);
                drop(waited.unwrap_or_else(|e| e.into_inner()));
            }
        }
    }

    /// Waits until `done()` holds (true) or `until` passes (false).
    fn wait_for(&self, until: Option<Instant>, done: impl Fn() -> bool) -> bool {
        let mut count = lock(&self.count);
        loop {
            if done() {
                return true;
            }
            let now = Instant::now();
            count = match until {
                Some(until) if now >= until => return false,
                Some(until) => {
                    self.rung
                        .wait_timeout(count, until - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.rung.wait(count).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// An eventfd, for [`Pool::abort_event`]; `None` where the kernel has none.
fn eventfd() -> Option<OwnedFd> {
    // SAFETY: eventfd takes an initial count and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One group of slots: the sockets of one worker process's threads.
#[derive(Debug, Default)]
struct Group {
    /// The process's control socket while one runs here.
    control: Mutex<Option<FrameWriter<UnixStream, ControlToWorker>>>,
    /// The worker whose process runs here; none before the first.
    worker: SharedWorkerId,
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
    writer: FrameWriter<UnixStream, ToWorker>,
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
            let _ = child::kill_pidfd(pidfd);
        }
        let _ = self.control.shutdown(std::net::Shutdown::Both);
    }
}

/// What the metrics and the triggers know of one worker.
#[derive(Debug, Default)]
struct WorkerState {
    events: Mutex<Option<mpsc::Sender<Event>>>,
    /// The pool runs this worker (always, below the minimum): its supervisor keeps a
    /// process in it. Changed by the pool's thread only, before it tells the supervisor.
    active: AtomicBool,
    /// The current process's id; 0 for none.
    pid: AtomicU32,
    /// Requests answered by every process of this worker.
    requests: AtomicU64,
    /// Requests answered by the current process (its budget counts these).
    served: AtomicU64,
    /// The current process's drawn request budget; 0 for none.
    max_requests: AtomicU64,
    /// Processes of this worker running (the current one, and those being retired).
    live: AtomicUsize,
    /// A replacement is under way.
    replacing: AtomicBool,
    /// Replacements by reason, in [`RestartReason::ALL`]'s order.
    restarts: [AtomicU64; RestartReason::ALL.len()],
    /// The current process's resident memory when last sampled; 0 for not yet.
    rss: AtomicU64,
    /// When the current process became ready.
    ready_at: Mutex<Option<Instant>>,
    /// The current process was forked from the template.
    forked: AtomicBool,
    /// How long the current process took to start, until ready, in microseconds.
    start_micros: AtomicU64,
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
    /// The pool grew into this worker: start a process (an inactive supervisor waits for
    /// this).
    Start,
    /// The pool shrinks: the worker's process finishes what it runs and exits, and the
    /// supervisor waits for the next `Start`.
    Retire,
    /// The engine is closing: an inactive supervisor ends.
    Close,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Processes {
    /// Starts the pool's minimum of workers of `threads` threads and waits until every one
    /// has loaded the application (the first failure is the error); an elastic pool's other
    /// workers wait to be started by its thread.
    pub(crate) fn start(
        app: &AppConfig,
        elastic: Elastic,
        threads: usize,
        queue_depth: usize,
        shared: Arc<Shared>,
        lifecycle: Lifecycle,
    ) -> Result<Self, Error> {
        crate::process::spawn::forbid_nested()?;
        // Before the first worker starts, so that a touch during start-up is seen.
        let watch = lifecycle.restart_dir.as_deref().map(RestartWatch::new);
        let config = |worker: WorkerId| WorkerConfig {
            app: app.app.clone(),
            threads,
            venv: app.venv.clone(),
            venv_origin: app.venv_origin.clone(),
            base_dir: app.base_dir.clone(),
            strict_python_version: app.strict_python_version,
            multiprocess: app.multiprocess,
            index: worker,
            log_level: tracing::level_filters::LevelFilter::current(),
            max_rss: lifecycle.recycle.max_rss,
            post_fork: app.post_fork.clone(),
        };
        // Before any worker: its import error is the engine's, as a worker's would be.
        let launcher = if app.preload {
            let started = Instant::now();
            let template = Template::start(config(WorkerId::new(0)), lifecycle.start_timeout)?;
            tracing::info!(target: "wsgi_core", load_ms = started.elapsed().as_millis(), "template process loaded the application; forking the workers from it");
            Launcher::Fork(template)
        } else {
            Launcher::Spawn
        };
        let (reactor, pool) = Pool::with_launcher(
            elastic,
            threads,
            queue_depth,
            shared,
            lifecycle.clone(),
            launcher,
        )
        .map_err(Error::Thread)?;
        let runner = Self::supervise(reactor, pool, config)?;
        if let Some(watch) = watch {
            let pool = Arc::downgrade(&runner.pool);
            std::thread::Builder::new()
                .name("wsgi-restart-file".into())
                .spawn(move || watch_restart_file(watch, pool))
                .map_err(Error::Thread)?;
        }
        // A fixed pool has nothing to decide, and no thread deciding it.
        if !runner.pool.elastic.is_fixed() {
            let pool = runner.pool.clone();
            std::thread::Builder::new()
                .name("wsgi-pool".into())
                .spawn(move || sizer::run(&pool))
                .map_err(Error::Thread)?;
        }
        Ok(runner)
    }

    /// Starts a supervisor for each of `pool`'s workers, with its `config`, and waits until
    /// the pool's minimum have loaded the application (the first failure is the error,
    /// and closes the pool); the others wait to be started.
    fn supervise(
        reactor: Arc<Reactor<Note>>,
        pool: Arc<Pool>,
        config: impl Fn(WorkerId) -> WorkerConfig,
    ) -> Result<Self, Error> {
        let min = pool.elastic.min;
        let (started_tx, started_rx) = mpsc::channel();
        for (worker, state) in pool.each_worker() {
            let (events_tx, events) = mpsc::channel();
            *lock(&state.events) = Some(events_tx.clone());
            let active = worker.index() < min;
            state.active.store(active, Ordering::Release);
            let supervisor = Supervisor {
                worker,
                config: config(worker),
                pool: pool.clone(),
                events_tx,
                rss_loop: RefCell::new(RssLoop::new(pool.lifecycle.recycle.min_lifetime)),
            };
            let started = active.then(|| started_tx.clone());
            std::thread::Builder::new()
                .name(format!("wsgi-supervisor-{worker}"))
                .spawn(move || supervisor.run(events, started))
                .map_err(Error::Thread)?;
        }
        drop(started_tx);
        let runner = Processes {
            pool,
            _reactor: reactor,
        };
        runner.pool.count_start(Grow::BelowMinimum, min);
        for _ in 0..min {
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
        Ok(runner)
    }
}

impl Pool {
    /// A pool for up to `elastic.max` workers of `threads` threads (and a spare group),
    /// with the relay's thread waiting on its sockets, its processes made by `launcher`; no
    /// worker is started.
    fn with_launcher(
        elastic: Elastic,
        threads: usize,
        queue_depth: usize,
        shared: Arc<Shared>,
        lifecycle: Lifecycle,
        launcher: Launcher,
    ) -> io::Result<(Arc<Reactor<Note>>, Arc<Pool>)> {
        let layout = SlotLayout::new(elastic.max, threads);
        // Idleness is kept only for the decisions of an elastic pool.
        let keep_idle = !elastic.is_fixed();
        Reactor::start("wsgi-relay".into(), |reactor| {
            Arc::new(Pool {
                queue: SlotQueue::new(queue_depth, layout, keep_idle),
                groups: layout.groups().map(|_| Group::default()).collect(),
                workers: (0..elastic.max).map(|_| WorkerState::default()).collect(),
                elastic,
                starts: Default::default(),
                retirements: Default::default(),
                spare: Mutex::new(Some(layout.spare())),
                spare_back: Condvar::new(),
                layout,
                shared,
                lifecycle,
                always_restart: AtomicBool::new(false),
                aborting: AtomicBool::new(false),
                conns: (0..layout.slot_count()).map(|_| Mutex::new(None)).collect(),
                reactor,
                closing: AtomicBool::new(false),
                changed: Changes::default(),
                abort_event: eventfd(),
                launcher,
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
            restart_all(&pool, RestartReason::RestartFile);
        }
    }
}

/// Replaces every worker for `reason`; for one that stands for new code, with preloading,
/// once a new template has loaded it (and not at all if it cannot).
fn restart_all(pool: &Arc<Pool>, reason: RestartReason) {
    let new_code = matches!(
        reason,
        RestartReason::RestartFile | RestartReason::Signal | RestartReason::Api
    );
    match pool.launcher.template() {
        Some(template) if new_code => {
            let pool = Arc::downgrade(pool);
            template.reload(move || {
                if let Some(pool) = pool.upgrade() {
                    pool.recycle_all(reason);
                }
            });
        }
        _ => pool.recycle_all(reason),
    }
}

impl Pool {
    /// Replaces the workers the pool runs (an inactive one has nothing to replace, and
    /// starts from the current code or template when it is started).
    fn recycle_all(&self, reason: RestartReason) {
        for worker in self.workers.iter() {
            if worker.active.load(Ordering::Acquire) {
                worker.send(Event::Recycle(reason));
            }
        }
    }

    /// The state of `worker`.
    fn worker(&self, worker: WorkerId) -> &WorkerState {
        &self.workers[worker.index()]
    }

    /// The group `group`.
    fn group(&self, group: GroupId) -> &Group {
        &self.groups[group.index()]
    }

    /// Every group, with its state.
    fn each_group(&self) -> impl Iterator<Item = (GroupId, &Group)> {
        self.layout.groups().zip(self.groups.iter())
    }

    /// Every worker, with its state.
    fn each_worker(&self) -> impl Iterator<Item = (WorkerId, &WorkerState)> {
        self.workers
            .iter()
            .enumerate()
            .map(|(index, state)| (WorkerId::new(index), state))
    }

    /// Counts `n` workers started for `why`.
    fn count_start(&self, why: Grow, n: usize) {
        self.starts[why.index()].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Sends `msg` to the process running in `group`; false if none could take it.
    fn control(&self, group: GroupId, msg: &ControlToWorker) -> bool {
        match lock(&self.group(group).control).as_mut() {
            Some(writer) => writer.send(msg).is_ok(),
            None => false,
        }
    }

    /// Waits for the spare group; `None` once the engine closes.
    fn take_spare(&self) -> Option<GroupId> {
        let mut spare = lock(&self.spare);
        loop {
            if self.queue.is_closed() {
                return None;
            }
            if let Some(group) = spare.take() {
                return Some(group);
            }
            // `close` notifies too.
            spare = self
                .spare_back
                .wait(spare)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn give_back(&self, group: GroupId) {
        *lock(&self.spare) = Some(group);
        self.spare_back.notify_all();
        self.changed.ring();
    }

    /// Waits until every slot of `group` has closed, so that new ones can take its
    /// slots.
    fn wait_slots_ended(&self, group: GroupId) {
        let g = self.group(group);
        let mut open = lock(&g.open_slots);
        while *open > 0 {
            open = g.slots_closed.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Runner for Processes {
    fn submit(&self, job: Job) -> Result<(), Refused> {
        match self.pool.queue.try_send(job)? {
            Sent::To(slot, job) => self.pool.start(slot, job),
            // The pool's thread waits for the start of a wait to time it.
            Sent::Queued { wake: true } => self.pool.changed.ring(),
            Sent::Queued { wake: false } => {}
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
        self.pool.changed.ring();
        {
            let _spare = lock(&self.pool.spare);
            self.pool.spare_back.notify_all();
        }
        self.pool.close_idle(self.pool.queue.idle_to_close());
        for (index, group) in self.pool.each_group() {
            // A process still importing the application would hold a supervisor (and the
            // stop) until its import ends; it has nothing to finish, so it is stopped now.
            if let Some(starting) = lock(&group.starting).take() {
                starting.stop();
            }
            self.pool
                .control(index, &ControlToWorker::Shutdown { grace_ms: 0 });
        }
        if let Some(template) = self.pool.launcher.template() {
            template.close();
        }
        // Supervisors of workers the pool does not run wait for an event, not a process.
        for worker in self.pool.workers.iter() {
            worker.send(Event::Close);
        }
    }

    fn abort(&self) {
        // A process with a request still running would exit only when it ends; its client
        // is abandoned as in-process (the host cuts the connection when it exits), so the
        // process is killed, as gunicorn does at its graceful timeout. Idle ones go on to
        // exit through their `atexit` handlers.
        self.pool.aborting.store(true, Ordering::Release);
        if let Some(event) = &self.pool.abort_event {
            let one = 1u64;
            // SAFETY: writes 8 bytes from a local into an eventfd we own.
            unsafe { libc::write(event.as_raw_fd(), (&raw const one).cast(), 8) };
        }
        self.pool.changed.ring();
        for worker in self.pool.workers.iter() {
            worker.send(Event::Abort);
        }
    }

    fn stop(&self, wait: Duration) {
        self.close();
        let ended = self.pool.changed.wait_for(Some(Instant::now() + wait), || {
            self.pool
                .workers
                .iter()
                .all(|w| w.live.load(Ordering::Acquire) == 0)
        });
        if !ended {
            tracing::warn!(target: "wsgi_core", "worker processes still running after {:.0} s; leaving them to end with this process", wait.as_secs_f64());
        }
    }

    fn interrupt(&self, slot: usize, id: u64, timeout: Duration) {
        // The worker logs it: only it can take its thread's stack.
        let (slot, layout) = (SlotId::from_shared_index(slot), self.pool.layout);
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let msg = ControlToWorker::Interrupt {
            slot: layout.local_of(slot),
            id,
            timeout_ms,
        };
        if !self.pool.control(layout.group_of(slot), &msg) {
            tracing::warn!(
                target: "wsgi_core",
                "request timed out after {} s; answered 504, but its worker process is gone",
                timeout.as_secs_f64()
            );
        }
    }

    fn stuck(&self, slot: usize, id: u64) {
        // Asked before the replacement below, whose `Shutdown` then follows it on the
        // control socket.
        let (slot, layout) = (SlotId::from_shared_index(slot), self.pool.layout);
        let group = layout.group_of(slot);
        let local = layout.local_of(slot);
        if !self
            .pool
            .control(group, &ControlToWorker::Stuck { slot: local, id })
        {
            tracing::error!(
                target: "wsgi_core",
                "a Python thread ignored the timeout's wsgi_core.RequestTimeout (blocked in C \
                 code?), and its worker process is gone"
            );
        }
        // The thread is blocked where `RequestTimeout` cannot reach it: only a new process
        // gives its capacity back.
        if let Some(worker) = self.pool.group(group).worker.load() {
            self.pool
                .worker(worker)
                .send(Event::Recycle(RestartReason::Timeout));
        }
    }

    fn restart(&self, reason: RestartReason) -> bool {
        restart_all(&self.pool, reason);
        true
    }

    fn log_busy_threads(&self) {
        // Every process, a replaced one still finishing its requests included; each logs
        // its own threads.
        for group in self.pool.layout.groups() {
            self.pool.control(group, &ControlToWorker::LogBusyThreads);
        }
    }

    fn workers(&self) -> Vec<WorkerSnapshot> {
        let ready = self.pool.queue.ready();
        let mut ready_workers = vec![false; self.pool.workers.len()];
        for (group, g) in self.pool.each_group() {
            if let Some(worker) = g.worker.load()
                && ready.get(group.index()).copied().unwrap_or(false)
            {
                ready_workers[worker.index()] = true;
            }
        }
        // Every worker, the stopped ones of an elastic pool included, so that the series of
        // a retired worker stay and a sum of its counters over the workers never drops.
        self.pool
            .each_worker()
            .map(|(worker, w)| {
                let ready = ready_workers[worker.index()];
                let pid = Some(w.pid.load(Ordering::Relaxed)).filter(|&pid| pid != 0);
                let state = if !w.active.load(Ordering::Acquire) {
                    Phase::Stopped
                } else if w.replacing.load(Ordering::Relaxed) {
                    Phase::Replacing
                } else if ready {
                    Phase::Ready
                } else {
                    Phase::Starting
                };
                WorkerSnapshot {
                    index: worker.index(),
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
                    // A stopped worker's last sample is no process's memory.
                    rss_bytes: pid
                        .map(|_| w.rss.load(Ordering::Relaxed))
                        .filter(|&n| n != 0),
                    age: lock(&w.ready_at).map(|at| at.elapsed()),
                    forked: pid.is_some() && w.forked.load(Ordering::Relaxed),
                    start_duration: pid
                        .map(|_| Duration::from_micros(w.start_micros.load(Ordering::Relaxed))),
                }
            })
            .collect()
    }

    fn pool(&self) -> Option<PoolSnapshot> {
        let pool = &self.pool;
        let counts = |labels: &[&'static str], counters: &[AtomicU64]| {
            labels
                .iter()
                .zip(counters)
                .map(|(label, n)| (*label, n.load(Ordering::Relaxed)))
                .collect()
        };
        Some(PoolSnapshot {
            min: pool.elastic.min,
            max: pool.elastic.max,
            workers: pool
                .workers
                .iter()
                .filter(|w| w.active.load(Ordering::Acquire))
                .count(),
            starts: counts(&Grow::LABELS, &pool.starts),
            retirements: counts(&RETIRE_LABELS, &pool.retirements),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_after_the_count_was_read_is_not_missed() {
        let changes = Changes::default();
        let seen = changes.seen();
        // Rung before the wait begins: the wait returns at once.
        changes.ring();
        let start = Instant::now();
        changes.wait_past(seen, Some(start + Duration::from_secs(30)));
        assert!(start.elapsed() < Duration::from_secs(5));
        // Not rung since: the wait lasts until its deadline.
        let seen = changes.seen();
        let start = Instant::now();
        changes.wait_past(seen, Some(start + Duration::from_millis(50)));
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_ring_from_another_thread_ends_a_wait_without_a_deadline() {
        let changes = Arc::new(Changes::default());
        let seen = changes.seen();
        let ringer = changes.clone();
        let rung = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            ringer.ring();
        });
        changes.wait_past(seen, None);
        rung.join().unwrap();
        assert_eq!(changes.seen(), seen + 1);
    }
}
