//! Supervisors over fake processes: each launch hands the test a process made of real
//! sockets and a fake child ([`FakeProcess`]), which it plays: start-up, crashes,
//! replacements and retirement go through the supervisor's own code, without a process.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::error::Error;
use crate::lifecycle::elastic::{Elastic, Grow};
use crate::lifecycle::policy::Recycle;
use crate::lifecycle::reason::RestartReason;
use crate::process::host::child::Launcher;
use crate::process::host::testing::{
    FakeLauncher, FakeProcess, full, job, launched, next, pool, status,
};
use crate::process::host::{FIRST_BACKOFF, Processes, lock, sizer};
use crate::process::ids::{LocalSlot, WorkerId};
use crate::process::wire::messages::{ControlToWorker, FromWorker, WorkerConfig};
use crate::runner::{Refused, Runner};

/// How long a test waits for what should happen at once.
const PATIENCE: Duration = Duration::from_secs(10);

/// What a test of supervisors holds.
struct Supervised {
    runner: Processes,
    launcher: Arc<FakeLauncher>,
    launched: mpsc::Receiver<FakeProcess>,
}

/// Each worker's configuration, as the pool's start-up would make it.
fn config(threads: usize) -> impl Fn(WorkerId) -> WorkerConfig {
    move |worker| WorkerConfig {
        index: worker,
        ..WorkerConfig::for_tests("app.py", threads)
    }
}

/// A pool of `elastic` workers of `threads` threads, recycled by `recycle`, whose
/// supervisors have started; the processes of its minimum, ready, by worker.
fn supervised(
    elastic: Elastic,
    threads: usize,
    recycle: Recycle,
) -> (Supervised, Vec<FakeProcess>) {
    let min = elastic.min;
    let (launcher, processes) = FakeLauncher::new();
    let (reactor, pool) = pool(elastic, threads, recycle, Launcher::Fake(launcher.clone()));
    let starting = std::thread::spawn(move || Processes::supervise(reactor, pool, config(threads)));
    let mut ready: Vec<FakeProcess> = (0..min)
        .map(|_| {
            let mut process = launched(&processes);
            process.ready();
            process
        })
        .collect();
    ready.sort_by_key(|process| process.worker);
    let runner = starting
        .join()
        .expect("the start-up")
        .expect("the workers started");
    let supervised = Supervised {
        runner,
        launcher,
        launched: processes,
    };
    (supervised, ready)
}

/// How many times worker `index` was replaced for `reason`, as the metrics say.
fn restarts(runner: &Processes, index: usize, reason: RestartReason) -> u64 {
    let workers = runner.workers();
    let worker = workers
        .iter()
        .find(|w| w.index == index)
        .expect("the worker");
    worker
        .restarts
        .iter()
        .find(|(label, _)| *label == reason.as_str())
        .map_or(0, |(_, n)| *n)
}

/// Waits until `done()` holds, as the pool rings its changes; whether it did in time.
fn eventually(runner: &Processes, done: impl Fn() -> bool) -> bool {
    runner
        .pool
        .changed
        .wait_for(Some(Instant::now() + PATIENCE), done)
}

#[test]
fn a_worker_takes_requests_on_its_own_slots_once_it_is_ready() {
    let (launcher, processes) = FakeLauncher::new();
    let elastic = Elastic::new(1, 1);
    let (reactor, pool) = pool(elastic, 2, Recycle::default(), Launcher::Fake(launcher));
    let watched = pool.clone();
    let starting = std::thread::spawn(move || Processes::supervise(reactor, pool, config(2)));
    let mut process = launched(&processes);
    assert_eq!(process.worker, WorkerId::new(0));
    assert!(
        !starting.is_finished(),
        "the start-up did not wait for ready"
    );
    assert_eq!(watched.queue.ready(), [false, false]);
    process.ready();
    let runner = starting.join().unwrap().expect("the worker started");
    let snapshot = &runner.workers()[0];
    assert!(snapshot.ready);
    assert_eq!(snapshot.pid, Some(process.pid));
    let mut answers = Vec::new();
    for id in 1..=2 {
        let (job, rx) = job(&runner, id);
        runner.submit(job).unwrap();
        answers.push(rx);
    }
    let mut slots = Vec::new();
    for _ in 0..2 {
        let (_, slot) = process.io.start();
        process.io.send_on(slot, [full(b"ok"), FromWorker::Done]);
        slots.push(slot);
    }
    slots.sort();
    assert_eq!(
        slots,
        [LocalSlot::new(0), LocalSlot::new(1)],
        "one request a slot"
    );
    for mut rx in answers {
        assert_eq!(status(next(&mut rx)), StatusCode::OK);
    }
    runner.close();
}

#[test]
fn a_worker_that_dies_is_started_again_in_its_group() {
    let (t, mut processes) = supervised(Elastic::new(1, 1), 2, Recycle::default());
    let runner = &t.runner;
    let (seen, mut seen_rx) = job(runner, 1);
    let (unseen, mut unseen_rx) = job(runner, 2);
    runner.submit(seen).unwrap();
    runner.submit(unseen).unwrap();
    let process = &mut processes[0];
    assert_eq!(process.io.start().0, 1);
    // Read, but still waiting in the worker's own queue: the application never saw it.
    assert_eq!(process.io.read().0, 2);
    processes.remove(0).crash();
    assert_eq!(status(next(&mut seen_rx)), StatusCode::BAD_GATEWAY);
    let mut again = launched(&t.launched);
    assert_eq!(again.worker, WorkerId::new(0));
    again.ready();
    let (id, slot) = again.io.start();
    assert_eq!(
        id, 2,
        "the request the application never saw was not run again"
    );
    again.io.send_on(slot, [full(b"two"), FromWorker::Done]);
    assert_eq!(status(next(&mut unseen_rx)), StatusCode::OK);
    // In the group it had: the spare is still spare.
    let layout = runner.pool.layout;
    assert_eq!(runner.pool.queue.ready(), [true, false]);
    assert_eq!(*lock(&runner.pool.spare), Some(layout.spare()));
    assert_eq!(restarts(runner, 0, RestartReason::Crash), 1);
    runner.close();
}

#[test]
fn a_launch_that_fails_at_start_up_is_the_start_ups_error() {
    let (launcher, processes) = FakeLauncher::new();
    launcher.fail_next(Error::WorkerStartup("no process today".into()));
    let elastic = Elastic::new(1, 1);
    let (reactor, pool) = pool(
        elastic,
        1,
        Recycle::default(),
        Launcher::Fake(launcher.clone()),
    );
    let err = Processes::supervise(reactor, pool.clone(), config(1)).unwrap_err();
    assert!(err.to_string().contains("no process today"), "{err}");
    assert!(pool.queue.is_closed(), "the pool is left open");
    assert!(
        processes.recv_timeout(Duration::from_millis(200)).is_err(),
        "a failed start-up was tried again"
    );
    assert_eq!(launcher.attempts().len(), 1);
}

#[test]
fn a_launch_that_fails_later_is_tried_again_after_a_pause() {
    let (t, mut processes) = supervised(Elastic::new(1, 1), 1, Recycle::default());
    let runner = &t.runner;
    t.launcher
        .fail_next(Error::WorkerStartup("no process today".into()));
    // Sent, never read: it waits for the next worker.
    let (waiting, mut waiting_rx) = job(runner, 1);
    runner.submit(waiting).unwrap();
    processes.remove(0).crash();
    assert_eq!(
        status(next(&mut waiting_rx)),
        StatusCode::SERVICE_UNAVAILABLE,
        "no worker could start: what waited is answered"
    );
    let (refused, _) = job(runner, 2);
    assert!(matches!(runner.submit(refused), Err(Refused::NotReady)));
    let mut again = launched(&t.launched);
    again.ready();
    let attempts = t.launcher.attempts();
    assert_eq!(attempts.len(), 3);
    // The pause after a crash, doubled for the failure that followed it.
    assert!(attempts[2] - attempts[1] >= FIRST_BACKOFF * 2);
    assert!(eventually(runner, || runner.pool.queue.ready()[0]));
    let (served, mut served_rx) = job(runner, 3);
    runner.submit(served).unwrap();
    assert_eq!(again.io.request(), 3);
    again.io.send([full(b"three"), FromWorker::Done]);
    assert_eq!(status(next(&mut served_rx)), StatusCode::OK);
    runner.close();
}

#[test]
fn a_retired_worker_ends_its_process_and_waits_to_be_started_again() {
    let (t, _first) = supervised(Elastic::new(1, 2), 1, Recycle::default());
    let (runner, pool) = (&t.runner, &*t.runner.pool);
    let worker = WorkerId::new(1);
    assert!(sizer::grow(pool, Grow::BelowMinimum, 1));
    let mut second = launched(&t.launched);
    assert_eq!(second.worker, worker);
    second.ready();
    sizer::retire(pool, worker, Duration::ZERO, 2);
    assert!(matches!(second.control(), ControlToWorker::Shutdown { .. }));
    second.end(ExitStatus::from_raw(0));
    let state = pool.worker(worker);
    assert!(eventually(runner, || state.live.load(Ordering::Acquire) == 0));
    assert_eq!(state.pid.load(Ordering::Relaxed), 0);
    assert!(
        t.launched.recv_timeout(Duration::from_millis(200)).is_err(),
        "started again without being told to"
    );
    assert!(sizer::grow(pool, Grow::BelowMinimum, 1));
    let mut third = launched(&t.launched);
    assert_eq!(third.worker, worker);
    third.ready();
    runner.close();
}

#[test]
fn a_worker_past_its_request_budget_is_replaced_in_the_spare_group() {
    let recycle = Recycle {
        max_requests: Some(1),
        ..Recycle::default()
    };
    let (t, mut processes) = supervised(Elastic::new(1, 1), 1, recycle);
    let (runner, pool) = (&t.runner, &*t.runner.pool);
    let (home, spare) = (pool.layout.home(WorkerId::new(0)), pool.layout.spare());
    let mut old = processes.remove(0);
    let (first, mut first_rx) = job(runner, 1);
    runner.submit(first).unwrap();
    assert_eq!(old.io.request(), 1);
    old.io.send([full(b"one"), FromWorker::Done]);
    assert_eq!(status(next(&mut first_rx)), StatusCode::OK);
    let mut new = launched(&t.launched);
    assert_eq!(new.worker, WorkerId::new(0));
    new.ready();
    // The old one is told to finish once the new one serves, from the spare group.
    assert!(matches!(old.control(), ControlToWorker::Shutdown { .. }));
    assert_eq!(pool.group(spare).worker.load(), Some(WorkerId::new(0)));
    assert!(pool.queue.ready()[spare.index()]);
    assert!(!pool.queue.ready()[home.index()]);
    old.end(ExitStatus::from_raw(0));
    // Its group is the spare once it has gone.
    assert!(eventually(runner, || *lock(&pool.spare) == Some(home)));
    let (second, mut second_rx) = job(runner, 2);
    runner.submit(second).unwrap();
    assert_eq!(new.io.request(), 2);
    new.io.send([full(b"two"), FromWorker::Done]);
    assert_eq!(status(next(&mut second_rx)), StatusCode::OK);
    assert_eq!(restarts(runner, 0, RestartReason::MaxRequests), 1);
    runner.close();
}
