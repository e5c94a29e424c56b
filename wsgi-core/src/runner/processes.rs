//! The worker-process runner: Python runs in child processes (the host binary started
//! again, see [`crate::process`]), each with its own pool of threads; this process never
//! starts an interpreter.
//!
//! Requests wait in the host's queue ([`SlotQueue`]) until a worker thread is free. Each
//! worker thread has a socket and a host thread ("slot") that relays one request at a time
//! over it: the request, body pieces as `wsgi.input` asks for them, and the response back
//! into the request's pipe, so backpressure reaches the worker through the socket. One
//! supervisor thread per worker starts it, waits until it reports ready, forwards its
//! logs, and when it dies answers what it was running (502 before a response head, an
//! aborted body after), puts back what it never started, and starts a new one with backoff.

use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;

use super::slots::SlotQueue;
use super::{Refused, Runner};
use crate::config::AppConfig;
use crate::error::Error;
use crate::input::{Chunk, InputSource};
use crate::job::Job;
use crate::metrics::WorkerSnapshot;
use crate::pipe::Msg;
use crate::process::log;
use crate::process::messages::{
    ControlFromWorker, ControlToWorker, FromWorker, Request, RequestBody, ToWorker, WorkerConfig,
};
use crate::process::spawn::{describe_exit, spawn_worker, wait_ready};
use crate::process::wire::{FrameReader, FrameWriter};
use crate::response::Head;
use crate::state::Shared;
use crate::watchdog::{Running, Stage};

/// First wait before starting a worker again after it died; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A worker that lived this long is replaced at once when it dies; one that died younger
/// (a crash loop: every request, or an import-time failure after a restart) waits first.
const STABLE_AFTER: Duration = Duration::from_secs(2);

fn next_backoff(backoff: Duration) -> Duration {
    if backoff.is_zero() {
        FIRST_BACKOFF
    } else {
        (backoff * 2).min(MAX_BACKOFF)
    }
}

/// Worker processes and the host threads that feed them.
#[derive(Debug)]
pub(crate) struct Processes {
    queue: Arc<SlotQueue<Job>>,
    controls: Arc<[Mutex<Option<FrameWriter<UnixStream>>>]>,
    stats: Arc<[WorkerStats]>,
    threads: usize,
}

/// What the metrics show of one worker index.
#[derive(Debug, Default)]
struct WorkerStats {
    /// The running process's id; 0 for none.
    pid: AtomicU32,
    requests: AtomicU64,
    deaths: AtomicU64,
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
    ) -> Result<Self, Error> {
        crate::process::spawn::forbid_nested()?;
        let queue = Arc::new(SlotQueue::new(queue_depth, processes, threads));
        let controls: Arc<[Mutex<Option<FrameWriter<UnixStream>>>]> =
            (0..processes).map(|_| Mutex::new(None)).collect();
        let stats: Arc<[WorkerStats]> = (0..processes).map(|_| WorkerStats::default()).collect();
        let (started_tx, started_rx) = mpsc::channel();
        for index in 0..processes {
            let supervisor = Supervisor {
                index,
                threads,
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
                },
                queue: queue.clone(),
                controls: controls.clone(),
                stats: stats.clone(),
                shared: shared.clone(),
            };
            let started = started_tx.clone();
            std::thread::Builder::new()
                .name(format!("wsgi-supervisor-{index}"))
                .spawn(move || supervisor.run(started))
                .map_err(Error::Thread)?;
        }
        drop(started_tx);
        let runner = Processes {
            queue,
            controls,
            stats,
            threads,
        };
        for _ in 0..processes {
            match started_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    runner.close();
                    return Err(e);
                }
                Err(_) => {
                    runner.close();
                    return Err(Error::WorkerStartup(
                        "a worker process's supervisor stopped while the workers started".into(),
                    ));
                }
            }
        }
        Ok(runner)
    }

    fn control(&self, worker: usize, msg: &ControlToWorker) {
        if let Some(control) = self.controls.get(worker)
            && let Some(writer) = lock(control).as_mut()
        {
            let _ = writer.send(msg);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Runner for Processes {
    fn submit(&self, job: Job) -> Result<(), Refused> {
        self.queue.try_send(job)
    }

    fn queued(&self) -> usize {
        self.queue.len()
    }

    fn close(&self) {
        // What is queued is still served: a slot's thread ends once the queue is empty,
        // and the worker then sees its sockets close; `Shutdown` makes it exit when all
        // its threads have.
        self.queue.close();
        for control in self.controls.iter() {
            if let Some(writer) = lock(control).as_mut() {
                let _ = writer.send(&ControlToWorker::Shutdown { grace_ms: 0 });
            }
        }
    }

    fn interrupt(&self, slot: usize, id: u64) {
        let local = u32::try_from(slot % self.threads).unwrap_or(u32::MAX);
        self.control(
            slot / self.threads,
            &ControlToWorker::Interrupt { slot: local, id },
        );
    }

    fn workers(&self) -> Vec<WorkerSnapshot> {
        let ready = self.queue.ready();
        self.stats
            .iter()
            .zip(ready)
            .enumerate()
            .map(|(index, (stats, ready))| WorkerSnapshot {
                index,
                pid: Some(stats.pid.load(Ordering::Relaxed)).filter(|&pid| pid != 0),
                ready,
                requests: stats.requests.load(Ordering::Relaxed),
                deaths: stats.deaths.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// Starts, watches and restarts one worker.
struct Supervisor {
    index: usize,
    threads: usize,
    config: WorkerConfig,
    queue: Arc<SlotQueue<Job>>,
    controls: Arc<[Mutex<Option<FrameWriter<UnixStream>>>]>,
    stats: Arc<[WorkerStats]>,
    shared: Arc<Shared>,
}

impl Supervisor {
    fn run(self, started: mpsc::Sender<Result<(), Error>>) {
        let mut first = Some(started);
        let mut backoff = Duration::ZERO;
        loop {
            let born = Instant::now();
            match self.start() {
                Ok((child, reader, pid, python)) => {
                    if let Some(started) = first.take() {
                        let _ = started.send(Ok(()));
                    }
                    tracing::info!(target: "wsgi_core", worker = self.index, pid, "worker process ready (Python {python})");
                    self.serve(child, reader, pid);
                    if self.queue.is_closed() {
                        return;
                    }
                    // A worker that keeps dying young is restarted ever more slowly.
                    backoff = if born.elapsed() >= STABLE_AFTER {
                        Duration::ZERO
                    } else {
                        next_backoff(backoff)
                    };
                }
                Err(e) => {
                    if let Some(started) = first.take() {
                        let _ = started.send(Err(e));
                        return;
                    }
                    if self.queue.is_closed() {
                        return;
                    }
                    tracing::error!(target: "wsgi_core", worker = self.index, "a new worker process failed to start: {e}");
                    for job in self.queue.unavailable() {
                        let _ = job.tx.try_send(Msg::Head(
                            self.shared
                                .unavailable("no worker process is ready to take requests"),
                        ));
                    }
                    backoff = next_backoff(backoff);
                }
            }
            if !backoff.is_zero() {
                tracing::info!(target: "wsgi_core", worker = self.index, "starting a new worker process in {:.1} s", backoff.as_secs_f64());
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if self.queue.is_closed() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100).min(backoff));
                }
            }
        }
    }

    /// Starts the process and waits until it is ready; the slot threads start then.
    fn start(&self) -> Result<(Child, FrameReader<UnixStream>, u32, String), Error> {
        let (mut child, control, slots) =
            spawn_worker(self.threads).map_err(Error::WorkerChannel)?;
        let mut writer = FrameWriter::new(control.try_clone().map_err(Error::WorkerChannel)?);
        let mut reader = FrameReader::new(control);
        writer
            .send(&ControlToWorker::Config(self.config.clone()))
            .map_err(Error::WorkerChannel)?;
        let (pid, python) = match wait_ready(&mut child, &mut reader) {
            Ok(ready) => ready,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        {
            // Under the lock `close` takes, so a worker that became ready while the engine
            // closed is not left running unseen.
            let mut control = lock(&self.controls[self.index]);
            if self.queue.is_closed() {
                drop(control);
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::WorkerStartup("the engine closed".into()));
            }
            *control = Some(writer);
        }
        self.stats[self.index].pid.store(pid, Ordering::Relaxed);
        self.queue.set_ready(self.index, true);
        for (local, socket) in slots.into_iter().enumerate() {
            let slot = Slot {
                index: self.index * self.threads + local,
                local: u32::try_from(local).unwrap_or(u32::MAX),
                worker: self.index,
                queue: self.queue.clone(),
                controls: self.controls.clone(),
                stats: self.stats.clone(),
                shared: self.shared.clone(),
            };
            std::thread::Builder::new()
                .name(format!("wsgi-slot-{}-{local}", self.index))
                .spawn(move || slot.serve(socket))
                .map_err(Error::Thread)?;
        }
        Ok((child, reader, pid, python))
    }

    /// Forwards the worker's logs until its control socket closes, then reaps it.
    fn serve(&self, mut child: Child, mut reader: FrameReader<UnixStream>, pid: u32) {
        loop {
            match reader.recv::<ControlFromWorker>() {
                Ok(Some(ControlFromWorker::Log(record))) => log::emit(&record, pid),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.queue.set_ready(self.index, false);
        *lock(&self.controls[self.index]) = None;
        self.stats[self.index].pid.store(0, Ordering::Relaxed);
        let status = child.wait().map(describe_exit);
        let closing = self.queue.is_closed();
        match status {
            Ok(status) if closing => {
                tracing::info!(target: "wsgi_core", worker = self.index, pid, "worker process ended: {status}");
            }
            Ok(status) => {
                self.stats[self.index]
                    .deaths
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "wsgi_core", worker = self.index, pid, "worker process died: {status}");
            }
            Err(e) => {
                tracing::error!(target: "wsgi_core", worker = self.index, pid, "worker process lost: {e}");
            }
        }
    }
}

/// `GET /path` of a job, for logs.
fn describe(job: &Job) -> String {
    format!(
        "{} {}{}",
        job.vars.method,
        job.vars.script_name,
        String::from_utf8_lossy(&job.vars.path_info)
    )
}

/// The host's end of one worker thread.
struct Slot {
    index: usize,
    local: u32,
    worker: usize,
    queue: Arc<SlotQueue<Job>>,
    controls: Arc<[Mutex<Option<FrameWriter<UnixStream>>>]>,
    stats: Arc<[WorkerStats]>,
    shared: Arc<Shared>,
}

/// How relaying a request ended.
enum Relayed {
    /// The worker sent the response's end.
    Done,
    /// The connection broke; whether the worker had started the request.
    Lost { started: bool, head_sent: bool },
}

impl Slot {
    fn serve(self, socket: UnixStream) {
        let Ok(read_half) = socket.try_clone() else {
            return;
        };
        let mut reader = FrameReader::new(read_half);
        let mut writer = FrameWriter::new(socket);
        while let Some(mut job) = self.queue.take(self.index) {
            if !self.shared.admit(&job) {
                continue;
            }
            let metrics = &self.shared.metrics;
            metrics.busy_threads.fetch_add(1, Ordering::Relaxed);
            if let Some(timeout) = self.shared.timeout {
                *self.shared.slots[self.index].lock() = Some(Running {
                    id: job.id,
                    deadline: Instant::now() + timeout,
                    tx: job.tx.clone(),
                    stage: Stage::Running,
                });
            }
            let relayed = self.relay(&mut job, &mut reader, &mut writer);
            self.shared.slots[self.index].lock().take();
            metrics.busy_threads.fetch_sub(1, Ordering::Relaxed);
            match relayed {
                Relayed::Done => {
                    self.stats[self.worker]
                        .requests
                        .fetch_add(1, Ordering::Relaxed);
                }
                Relayed::Lost { started: false, .. } => {
                    // The application never saw it: another worker gets it.
                    self.queue.retry(job);
                    return;
                }
                Relayed::Lost {
                    head_sent: false, ..
                } => {
                    tracing::error!(target: "wsgi_core", worker = self.worker, "{}: the worker process died while running it; answered 502", describe(&job));
                    let _ = job.tx.try_send(Msg::Head(Head::plain(
                        StatusCode::BAD_GATEWAY,
                        "Bad Gateway: the application's worker process died\n",
                    )));
                    return;
                }
                Relayed::Lost { .. } => {
                    tracing::error!(target: "wsgi_core", worker = self.worker, "{}: the worker process died during the response; it was cut", describe(&job));
                    let _ = job
                        .tx
                        .try_send(Msg::Abort("the application's worker process died".into()));
                    return;
                }
            }
        }
    }

    fn relay(
        &self,
        job: &mut Job,
        reader: &mut FrameReader<UnixStream>,
        writer: &mut FrameWriter<UnixStream>,
    ) -> Relayed {
        let lost = |started, head_sent| Relayed::Lost { started, head_sent };
        let body = match &mut job.input {
            InputSource::Buffered(chunks) if chunks.is_empty() => RequestBody::None,
            InputSource::Buffered(chunks) => {
                RequestBody::Inline(crate::process::messages::join_body(std::mem::take(chunks)))
            }
            _ => RequestBody::Streamed,
        };
        let request = ToWorker::Request(Box::new(Request {
            id: job.id,
            vars: std::mem::take(&mut job.vars),
            content_length: job.content_length,
            body,
        }));
        let sent = writer.send(&request);
        // Keep what was sent, in case another worker has to run it.
        if let ToWorker::Request(request) = request {
            let Request { vars, body, .. } = *request;
            job.vars = vars;
            if let RequestBody::Inline(bytes) = body {
                job.input = InputSource::Buffered([bytes].into());
            }
        }
        if sent.is_err() {
            return lost(false, false);
        }
        let (mut started, mut head_sent, mut cancelled) = (false, false, false);
        loop {
            let frame = match reader.recv::<FromWorker>() {
                Ok(Some(frame)) => frame,
                Ok(None) | Err(_) => return lost(started, head_sent),
            };
            let delivered = match frame {
                FromWorker::Started { .. } => {
                    started = true;
                    Ok(())
                }
                FromWorker::Want(want) => {
                    let chunk = job.input.next_chunk(want, self.shared.body_timeout);
                    let answer = match chunk {
                        Chunk::Data(bytes) => ToWorker::Body(bytes),
                        Chunk::Eof => ToWorker::BodyEnd,
                        Chunk::TooLarge(max) => ToWorker::BodyTooLarge(max),
                        Chunk::Failed(why) if job.input.timed_out() => ToWorker::BodyTimedOut(why),
                        Chunk::Failed(why) => ToWorker::BodyFailed(why),
                    };
                    if writer.send(&answer).is_err() {
                        return lost(started, head_sent);
                    }
                    Ok(())
                }
                FromWorker::Head(head) => {
                    head_sent = true;
                    let full = matches!(head.body, crate::response::HeadBody::Full(_));
                    let result = job.tx.send(Msg::Head(head));
                    if full {
                        return Relayed::Done;
                    }
                    result
                }
                FromWorker::Data(bytes) => job.tx.send(Msg::Data(bytes)),
                FromWorker::End => {
                    let _ = job.tx.send(Msg::End);
                    return Relayed::Done;
                }
                FromWorker::Short(why) => {
                    let _ = job.tx.send(Msg::Short(why));
                    return Relayed::Done;
                }
                FromWorker::Abort(why) => {
                    let _ = job.tx.send(Msg::Abort(why));
                    return Relayed::Done;
                }
            };
            if delivered.is_err() && !cancelled {
                // The client has gone (or the watchdog answered): the application should
                // stop; what it still sends is read and dropped until its end.
                cancelled = true;
                if let Some(writer) = lock(&self.controls[self.worker]).as_mut() {
                    let _ = writer.send(&ControlToWorker::Cancel {
                        slot: self.local,
                        id: job.id,
                    });
                }
            }
        }
    }
}
