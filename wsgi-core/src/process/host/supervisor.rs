//! One supervisor thread per worker: starts its process, waits until it is ready, watches
//! its budget and memory, and replaces it (readiness-gated, in the spare group) or starts
//! it again after a crash; `drain` retires a replaced process. In an elastic pool, a worker
//! the pool does not run has a supervisor without a process, waiting for the pool's
//! `Start`; on `Retire` it drains its process as a replaced one is drained, and waits again.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::child::{WorkerChild, wait_readable};
use super::{
    Event, FIRST_BACKOFF, MAX_BACKOFF, Pool, STABLE_AFTER, Starting, TICK, WorkerState, lock,
};
use crate::error::Error;
use crate::lifecycle::backoff::Backoff;
use crate::lifecycle::policy::Budget;
use crate::lifecycle::random::Rng;
use crate::lifecycle::reason::RestartReason;
use crate::lifecycle::rss::{Meter, Proc};
use crate::lifecycle::rss_loop::{RssLoop, Startup};
use crate::pipe::Msg;
use crate::process::ids::{GroupId, WorkerId};
use crate::process::log;
use crate::process::spawn::{describe_exit, wait_ready};
use crate::process::wire::channels::Channels;
use crate::process::wire::frame::{FrameReader, FrameWriter};
use crate::process::wire::messages::{ControlFromWorker, ControlToWorker, WorkerConfig};

/// A worker process that has reported ready.
struct Process {
    child: WorkerChild,
    pid: u32,
    group: GroupId,
    ready_at: Instant,
    budget: Budget,
    /// Its memory as `max_rss` compares it (private, if forked from the template).
    meter: Meter,
}

/// How watching a worker's process ended.
enum Ended {
    /// It died on its own, after this long.
    Died(Duration),
    /// The pool retired it; it has ended and its slots are closed.
    Retired,
    /// The engine is closing.
    Closed,
}

/// Starts, watches and replaces one worker.
pub(super) struct Supervisor {
    pub(super) worker: WorkerId,
    pub(super) config: WorkerConfig,
    pub(super) pool: Arc<Pool>,
    pub(super) events_tx: mpsc::Sender<Event>,
    /// Its workers' starts over `max_rss`, which space out memory recycles.
    pub(super) rss_loop: RefCell<RssLoop>,
}

impl Supervisor {
    fn state(&self) -> &WorkerState {
        self.pool.worker(self.worker)
    }

    /// Runs the worker until the engine closes. `started`: the start-up waits for this
    /// worker's first process, and hears how its start went; without it (a worker above an
    /// elastic pool's minimum), the supervisor waits for the pool's `Start` first.
    pub(super) fn run(
        self,
        events: mpsc::Receiver<Event>,
        started: Option<mpsc::Sender<Result<(), Error>>>,
    ) {
        let mut first = started;
        let mut rng = Rng::from_entropy();
        let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF, STABLE_AFTER);
        let mut group = self.pool.layout.home(self.worker);
        if first.is_none() && !self.wait_start(&events) {
            return;
        }
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
                    tracing::error!(target: "wsgi_core", worker = self.worker.index(), "a new worker process failed to start: {e}");
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
            let uptime = match self.supervise(process, &events, &mut rng, &mut backoff, &mut group)
            {
                Ended::Died(uptime) => uptime,
                Ended::Closed => return,
                Ended::Retired => {
                    // A worker started again later starts afresh, crashes forgiven.
                    backoff.reset();
                    if !self.wait_start(&events) {
                        return;
                    }
                    continue;
                }
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

    /// Waits, without a process, until the pool starts this worker (true) or the engine
    /// closes (false). What else comes meanwhile concerns a process it does not have.
    fn wait_start(&self, events: &mpsc::Receiver<Event>) -> bool {
        loop {
            if self.pool.queue.is_closed() {
                return false;
            }
            match events.recv() {
                Ok(Event::Start) => return !self.pool.queue.is_closed(),
                Ok(Event::Close) | Err(_) => return false,
                Ok(_) => {}
            }
        }
    }

    /// Sleeps `wait` unless the engine closes first; whether to go on.
    fn pause(&self, wait: Duration) -> bool {
        if wait.is_zero() {
            return !self.pool.queue.is_closed();
        }
        tracing::info!(target: "wsgi_core", worker = self.worker.index(), "starting a new worker process in {:.1} s", wait.as_secs_f64());
        let closed = self
            .pool
            .changed
            .wait_for(Some(Instant::now() + wait), || self.pool.queue.is_closed());
        !closed
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

    /// Runs `process` until it dies, the pool retires it or the engine closes, replacing it
    /// when asked; `group` follows the process that currently serves.
    fn supervise(
        &self,
        mut process: Process,
        events: &mpsc::Receiver<Event>,
        rng: &mut Rng,
        backoff: &mut Backoff,
        group: &mut GroupId,
    ) -> Ended {
        // An event taken while coalescing repeated recycles, handled next.
        let mut next = None;
        loop {
            let event = match next.take().map_or_else(|| events.recv_timeout(TICK), Ok) {
                Ok(event) => Some(event),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Ended::Closed,
            };
            match event {
                Some(Event::Exited(pid)) if pid == process.pid => {
                    return self.reap(process).map_or(Ended::Closed, Ended::Died);
                }
                Some(Event::Retire) => {
                    self.retire(process);
                    return Ended::Retired;
                }
                // A process runs already; a closing engine ends it, and then this.
                Some(Event::Start | Event::Close) => {}
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
                    if self.pool.group(process.group).busy.load(Ordering::Acquire) > 0 {
                        let _ = process.child.kill();
                    }
                }
                Some(Event::Rss(bytes)) => {
                    self.check_budget(&mut process, Some(bytes), false, rng);
                }
                Some(Event::Check) => {
                    let rss = self.sample_rss(&mut process);
                    self.check_budget(&mut process, rss, true, rng);
                }
                None => {
                    let rss = self.sample_rss(&mut process);
                    self.check_budget(&mut process, rss, false, rng);
                }
            }
            *group = process.group;
        }
    }

    /// The process's memory, when a limit needs it.
    fn sample_rss(&self, process: &mut Process) -> Option<u64> {
        let limit = self.pool.lifecycle.recycle.max_rss?;
        process.meter.read(Proc::Pid(process.pid), limit).ok()
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
    fn launch(&self, group: GroupId, rng: &mut Rng) -> Result<Process, Error> {
        let threads = self.pool.layout.threads();
        let begun = Instant::now();
        let (mut child, channels) = self.pool.launcher.launch(self.worker, threads)?;
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
        let fail = |child: &mut WorkerChild, e: Error| {
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
            let mut starting = lock(&self.pool.group(group).starting);
            if self.pool.queue.is_closed() {
                drop(starting);
                return Err(fail(
                    &mut child,
                    Error::WorkerStartup("the engine closed".into()),
                ));
            }
            *starting = timer.try_clone().ok().map(|control| Starting {
                control,
                pidfd: child.pidfd(),
            });
        }
        // A worker hung in its import must not hold the start-up (or a replacement's spare)
        // for ever: Passenger's `passenger_start_timeout`.
        let limit = self.pool.lifecycle.start_timeout;
        let _ = timer.set_read_timeout(Some(limit));
        let ready = wait_ready(&mut child, &mut reader);
        lock(&self.pool.group(group).starting).take();
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
            let mut control = lock(&self.pool.group(group).control);
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
            .name(format!("wsgi-worker-log-{}", self.worker))
            .spawn(move || forward_log(reader, pid, events));
        if let Err(e) = forwarded {
            return Err(fail(&mut child, Error::Thread(e)));
        }
        let state = self.state();
        let start = begun.elapsed();
        let forked = child.is_forked();
        state.forked.store(forked, Ordering::Relaxed);
        state.start_micros.store(
            u64::try_from(start.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
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
        let g = self.pool.group(group);
        g.worker.store(self.worker);
        // Ready before its slots take jobs: a slot of a group that is not ready closes.
        self.pool.set_ready(group, true);
        self.pool.attach(group, intake, slots, started);
        // The pool's thread counts it as starting until now.
        self.pool.changed.ring();
        let how = if forked {
            "forked from the template"
        } else {
            "started"
        };
        tracing::info!(target: "wsgi_core", worker = self.worker.index(), pid, forked, start_ms = start.as_millis(), max_requests = budget.max_requests(), max_lifetime_s = budget.max_lifetime().map(|d| d.as_secs()), "worker process ready (Python {python}), {how} in {} ms", start.as_millis());
        let mut meter = Meter::new(forked);
        if let Some(max_rss) = self.pool.lifecycle.recycle.max_rss {
            let rss = meter.read(Proc::Pid(pid), max_rss).ok();
            state.rss.store(rss.unwrap_or(0), Ordering::Relaxed);
            self.startup_rss(rss, max_rss, &mut budget);
        }
        Ok(Process {
            child,
            pid,
            group,
            ready_at,
            budget,
            meter,
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
                        worker = self.worker.index(),
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
                tracing::info!(target: "wsgi_core", worker = self.worker.index(), rss_bytes, max_rss, "worker process uses {} MiB right after start-up, under max_rss {} MiB again: memory replaces workers after the minimum lifetime again", mib(rss_bytes), mib(max_rss));
            }
            Startup::Fits { recovered: false } => {}
        }
    }

    /// Retires `process` for the pool, which runs one worker fewer: it takes no new
    /// request, finishes what it runs and exits, as a replaced process does; returns once
    /// it has and its slots are closed, so that a new process may use its group.
    fn retire(&self, process: Process) {
        let group = process.group;
        self.pool.set_ready(group, false);
        self.pool.control(
            group,
            &ControlToWorker::Shutdown {
                grace_ms: u64::try_from(self.pool.lifecycle.drain_grace.as_millis())
                    .unwrap_or(u64::MAX),
            },
        );
        let state = self.state();
        state.pid.store(0, Ordering::Relaxed);
        state.rss.store(0, Ordering::Relaxed);
        *lock(&state.ready_at) = None;
        finish(&self.pool, process, self.worker, "retired");
        self.pool.wait_slots_ended(group);
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
        tracing::info!(target: "wsgi_core", worker = self.worker.index(), pid = process.pid, reason = reason.as_str(), "replacing the worker process");
        let new = match self.launch(spare, rng) {
            Ok(new) => new,
            Err(e) => {
                if stop_first {
                    self.pool.pause_group(process.group, false);
                }
                self.pool.give_back(spare);
                if self.pool.queue.is_closed() {
                    // Stopped by the shutdown, not failed: the old one finishes and exits.
                    tracing::info!(target: "wsgi_core", worker = self.worker.index(), reason = reason.as_str(), "the engine is stopping: the replacement worker process was stopped before it was ready");
                } else {
                    tracing::error!(target: "wsgi_core", worker = self.worker.index(), reason = reason.as_str(), "the replacement worker process failed to start; the old one keeps serving: {e}");
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
            worker = self.worker.index(),
            reason = reason.as_str(),
            old_pid = old.pid,
            new_pid = process.pid,
            age_s = old.ready_at.elapsed().as_secs(),
            "worker process replaced; the old one finishes its requests and exits"
        );
        let pool = self.pool.clone();
        let worker = self.worker;
        let drained = std::thread::Builder::new()
            .name(format!("wsgi-drain-{worker}"))
            .spawn(move || drain(pool, old, worker));
        if let Err(e) = drained {
            tracing::error!(target: "wsgi_core", worker = self.worker.index(), "cannot start the thread that retires a worker process: {e}");
        }
    }

    /// Reaps a process that died on its own; its uptime, or `None` if the engine is
    /// closing (the process ended because it was asked to).
    fn reap(&self, mut process: Process) -> Option<Duration> {
        let pool = &self.pool;
        pool.set_ready(process.group, false);
        *lock(&pool.group(process.group).control) = None;
        let state = self.state();
        state.pid.store(0, Ordering::Relaxed);
        *lock(&state.ready_at) = None;
        let status = process.child.wait().map(describe_exit);
        state.live.fetch_sub(1, Ordering::AcqRel);
        pool.changed.ring();
        let pid = process.pid;
        if pool.queue.is_closed() {
            match status {
                Ok(status) => {
                    tracing::info!(target: "wsgi_core", worker = self.worker.index(), pid, "worker process ended: {status}");
                }
                Err(e) => {
                    tracing::warn!(target: "wsgi_core", worker = self.worker.index(), pid, "worker process lost: {e}");
                }
            }
            return None;
        }
        state.count_restart(RestartReason::Crash);
        match status {
            Ok(status) => {
                tracing::error!(target: "wsgi_core", worker = self.worker.index(), pid, "worker process died: {status}");
            }
            Err(e) => {
                tracing::error!(target: "wsgi_core", worker = self.worker.index(), pid, "worker process lost: {e}");
            }
        }
        Some(process.ready_at.elapsed())
    }
}

/// Forwards a worker's log records until its control socket closes, then says so.
fn forward_log(
    mut reader: FrameReader<UnixStream, ControlFromWorker>,
    pid: u32,
    events: mpsc::Sender<Event>,
) {
    loop {
        match reader.recv() {
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
fn drain(pool: Arc<Pool>, old: Process, worker: WorkerId) {
    let group = old.group;
    finish(&pool, old, worker, "replaced");
    pool.wait_slots_ended(group);
    pool.give_back(group);
}

/// Waits for a process told to shut down (`what`: replaced or retired) to finish its
/// requests and exit, and kills it after the drain grace (at once once a shutdown's grace
/// is over, if it still runs a request).
fn finish(pool: &Pool, mut old: Process, worker: WorkerId, what: &str) {
    let deadline = Instant::now() + pool.lifecycle.drain_grace;
    let exits = old.child.pidfd();
    let status = loop {
        match old.child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None)
                if pool.aborting.load(Ordering::Acquire)
                    && pool.group(old.group).busy.load(Ordering::Acquire) > 0 =>
            {
                let _ = old.child.kill();
                break old.child.wait();
            }
            Ok(None) if Instant::now() >= deadline => {
                tracing::warn!(target: "wsgi_core", worker = worker.index(), pid = old.pid, grace_s = pool.lifecycle.drain_grace.as_secs(), "a {what} worker process did not finish within the grace period; killing it");
                let _ = old.child.kill();
                break old.child.wait();
            }
            Ok(None) => wait_exit_or_abort(pool, exits.as_ref(), deadline),
            Err(e) => break Err(e),
        }
    };
    *lock(&pool.group(old.group).control) = None;
    pool.worker(worker).live.fetch_sub(1, Ordering::AcqRel);
    pool.changed.ring();
    match status {
        Ok(status) => {
            tracing::info!(target: "wsgi_core", worker = worker.index(), pid = old.pid, "{what} worker process ended: {}", describe_exit(status));
        }
        Err(e) => {
            tracing::warn!(target: "wsgi_core", worker = worker.index(), pid = old.pid, "{what} worker process lost: {e}");
        }
    }
}

/// Waits until the process behind `exits` (a pidfd) ends, the grace period is over (the
/// pool's abort event), or `deadline`. Without pidfds (before Linux 5.3) it waits a
/// little, for the caller to look again.
fn wait_exit_or_abort(pool: &Pool, exits: Option<&OwnedFd>, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    let Some(exits) = exits else {
        // Nothing else can be waited on for the process: a blocking waitpid could not
        // wake for the abort event or the deadline too, and a forked worker is not even
        // our child. So the caller's `try_wait` looks again after a short sleep.
        std::thread::sleep(left.min(Duration::from_millis(20)));
        return;
    };
    let mut fds = vec![exits.as_fd()];
    // Once aborting, the event stays readable: only the process's end is waited for.
    if let Some(event) = &pool.abort_event
        && !pool.aborting.load(Ordering::Acquire)
    {
        fds.push(event.as_fd());
    }
    wait_readable(&fds, Some(left));
}

#[cfg(test)]
mod tests;
