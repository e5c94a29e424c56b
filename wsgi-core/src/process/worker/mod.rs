//! The worker process's side: load the application, then serve the host's requests.
//!
//! Requests arrive on the intake socket, at most one per slot. The `wsgi-intake` thread
//! reads them (without the GIL) into the same queue the in-process engine uses
//! ([`crate::dispatch`]), so the Python threads take them the same way: the thread that
//! holds the GIL takes the next request without letting go of it, and a sleeping thread is
//! woken only to stand by. The request runs with the same code as in-process
//! ([`crate::python`]): its body is pulled from the host on its slot's socket as
//! `wsgi.input` reads, and the response goes back there as frames, the head and small
//! final pieces gathered into one write. A control thread (this process's main thread)
//! takes the host's interrupts (timeouts), cancellations (clients gone) and requests for
//! reports (a stuck thread's stack, the busy threads'); when the host goes away, the worker
//! exits at once.

use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::busy;
use crate::chunk::Chunk;
use crate::config::AppConfig;
use crate::dispatch::Dispatch;
use crate::error::Error;
use crate::input::{InputSource, Pull, Pulled};
use crate::job::{Job, RemoteJob};
use crate::lifecycle::rss::{Meter, Proc};
use crate::pipe::{Gone, Msg, PipeTx, RemoteSink, TrySend};
use crate::process::ids::LocalSlot;
use crate::process::log::{
    CONTROL_QUEUE, ControlSender, WorkerSubscriber, control_channel, spawn_control_writer,
};
use crate::process::wire::channels::Channels;
use crate::process::wire::frame::{FrameReader, FrameWriter};
use crate::process::wire::messages::{
    ControlFromWorker, ControlToWorker, FromWorker, Request, RequestBody, ToWorker, WorkerConfig,
};
use crate::process::wire::started::StartedPage;
use crate::python;
use crate::state::{InFlight, Limits, Shared, Stage};

/// What a worker forked from the template of preloading inherits from it.
pub(crate) struct Preloaded {
    /// The application, loaded.
    pub(crate) callable: pyo3::Py<pyo3::PyAny>,
    /// The post-fork hook, looked up; the worker calls it first.
    pub(crate) hook: Option<python::preload::Hook>,
    /// Its own log channel, which the inherited subscriber already sends to.
    pub(crate) log: (ControlSender, std::sync::mpsc::Receiver<ControlFromWorker>),
}

/// Serves as a worker process over `channels`; returns the process's exit code.
pub(crate) fn run(channels: Channels) -> i32 {
    serve(channels, None)
}

/// Serves as a worker forked from the template, with the application it loaded.
pub(crate) fn run_forked(channels: Channels, preloaded: Preloaded) -> i32 {
    serve(channels, Some(preloaded))
}

/// What it takes to load the application, from a worker's configuration.
pub(crate) fn app_config(config: &WorkerConfig) -> AppConfig {
    AppConfig {
        app: config.app.clone(),
        venv: config.venv.clone(),
        venv_origin: config.venv_origin.clone(),
        base_dir: config.base_dir.clone(),
        strict_python_version: config.strict_python_version,
        multiprocess: config.multiprocess,
        preload: false,
        post_fork: config.post_fork.clone(),
    }
}

fn serve(channels: Channels, preloaded: Option<Preloaded>) -> i32 {
    ignore_stop_signals();
    let Channels {
        control,
        intake: intake_socket,
        slots,
        started,
    } = channels;
    let Ok(read_half) = control.try_clone() else {
        return 1;
    };
    let mut reader = FrameReader::new(read_half);
    let config = match reader.recv() {
        Ok(Some(ControlToWorker::Config(config))) => config,
        _ => return 1,
    };
    let (sender, rx, preloaded) = match preloaded {
        Some(Preloaded {
            callable,
            hook,
            log: (sender, rx),
        }) => (sender, rx, Some((callable, hook))),
        None => {
            let (sender, rx) = control_channel(CONTROL_QUEUE);
            let _ = tracing::subscriber::set_global_default(WorkerSubscriber::new(
                sender.clone(),
                config.log_level,
            ));
            (sender, rx, None)
        }
    };
    let Ok(writer) = spawn_control_writer(control, rx) else {
        return 1;
    };
    // The host reports the failure, as the error itself; the writer ends after sending it.
    let fail = |error: Error| {
        let _ = sender.send(ControlFromWorker::StartupFailed(Box::new(error)));
        let _ = writer.join();
        1
    };
    let forked = preloaded.is_some();
    let callable = match load(&config, preloaded) {
        Ok(callable) => callable,
        Err(e) => return fail(e),
    };
    let threads = slots.len();
    let shared = Arc::new(Shared::new(
        threads,
        Limits {
            // The host keeps the deadlines; the threads still publish each request in its
            // slot, which is what makes an interrupt safe.
            timeout: None,
            max_queue_wait: None,
            body_timeout: None,
            retry_after: 1,
        },
    ));
    let rss = config.max_rss.map(|limit| {
        Arc::new(RssCheck {
            limit,
            meter: Mutex::new(Meter::new(forked)),
            sender: sender.clone(),
            requests: AtomicU64::new(0),
            reported: AtomicBool::new(false),
        })
    });
    let slots: Arc<[SlotSocket]> = match slots.into_iter().map(SlotSocket::new).collect() {
        Ok(slots) => slots,
        Err(e) => {
            return fail(Error::WorkerStartup(format!(
                "cannot use the worker's sockets: {e}"
            )));
        }
    };
    // The host sends at most one request per slot: the queue never holds more.
    let intake = Intake {
        slots: slots.clone(),
        shared: shared.clone(),
        started: Arc::new(started),
        rss,
    };
    let mut requests = FrameReader::new(intake_socket);
    let queue = if threads == 1 {
        Arc::new(Dispatch::from_source(Box::new(move || {
            intake.next(&mut requests)
        })))
    } else {
        // The host sends at most one request per slot: the queue never holds more.
        let queue = Arc::new(Dispatch::new(threads, threads));
        let feeding = queue.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("wsgi-intake".into())
            .spawn(move || intake.feed(&mut requests, &feeding))
        {
            return fail(Error::Thread(e));
        }
        queue
    };
    let threads = match python::spawn_threads(
        callable,
        queue,
        threads,
        shared.clone(),
        config.multiprocess,
    ) {
        Ok(threads) => threads,
        Err(e) => return fail(e),
    };
    let mut threads = Some(threads);
    let _ = sender.send(ControlFromWorker::Ready {
        pid: std::process::id(),
        python: python::python_info().version.clone(),
    });
    loop {
        match reader.recv() {
            Ok(Some(ControlToWorker::Interrupt {
                slot,
                id,
                timeout_ms,
            })) => {
                let slot = slot.index();
                if let Some(published) = shared.slots.get(slot)
                    && let Some(running) = published.lock().as_mut()
                    && running.id == id
                {
                    // So that the thread withdraws an interrupt still pending when it ends.
                    running.stage = Stage::TimedOut;
                }
                let found = python::interrupt(|| shared.running(slot, id));
                busy::log_timed_out(Duration::from_millis(timeout_ms), found.as_ref());
            }
            Ok(Some(ControlToWorker::Stuck { slot, id })) => {
                // The stuck thread may hold the GIL: this thread must go on reading.
                let shared = shared.clone();
                busy::spawn_report(move || {
                    let found = python::stack_of_request(|| shared.running(slot.index(), id));
                    busy::log_stuck(found.as_ref());
                });
            }
            Ok(Some(ControlToWorker::LogBusyThreads)) => {
                let shared = shared.clone();
                busy::spawn_report(move || python::log_busy_threads(&shared));
            }
            Ok(Some(ControlToWorker::Cancel { slot, id })) => {
                if let Some(slot) = slots.get(slot.index()) {
                    slot.current.cancel(id);
                }
            }
            // The host serves what it queued, then closes the intake socket: the Python
            // threads end once they have run what it held, and the worker with the last.
            // The control socket stays read meanwhile, for timeouts.
            Ok(Some(ControlToWorker::Shutdown { .. })) => {
                if let Some(threads) = threads.take() {
                    let _ = std::thread::Builder::new()
                        .name("wsgi-worker-exit".into())
                        .spawn(move || {
                            for thread in threads {
                                let _ = thread.join();
                            }
                            python::run_atexit();
                            // SAFETY: as below; every request has been answered and the
                            // application's atexit handlers have run.
                            unsafe { libc::_exit(0) }
                        });
                }
            }
            Ok(Some(ControlToWorker::Config(_))) => {}
            // The host has gone (or broke the protocol): nobody is left to answer.
            Ok(None) | Err(_) => {
                // SAFETY: `_exit` ends the process without running destructors or
                // atexit handlers, which could block on Python threads mid-request.
                unsafe { libc::_exit(0) }
            }
        }
    }
}

/// The application: imported here, or inherited from the template; then the post-fork
/// hook, called either way so that a hook works with preloading on or off.
fn load(
    config: &WorkerConfig,
    preloaded: Option<(pyo3::Py<pyo3::PyAny>, Option<python::preload::Hook>)>,
) -> Result<pyo3::Py<pyo3::PyAny>, Error> {
    let (callable, hook) = match preloaded {
        Some(loaded) => loaded,
        None => {
            let callable = python::load_app(&app_config(config))?;
            let hook = config
                .post_fork
                .as_deref()
                .map(python::preload::load_hook)
                .transpose()?;
            (callable, hook)
        }
    };
    if let Some(hook) = &hook {
        python::preload::run_hook(hook)?;
    }
    Ok(callable)
}

/// The host decides when a worker stops. Ctrl-C in a terminal (SIGINT to the whole
/// process group), `pkill serve` (workers share the host's command line) or systemd's
/// SIGTERM to every process of the service must not end workers before the host has
/// drained them; the host ends them with `Shutdown`, or SIGKILL after its grace period, and
/// they die with it (`PR_SET_PDEATHSIG`). SIGUSR1, which `wsgi-serve` takes to log the busy
/// threads, would end a worker too (its default action), sent the same ways: the host asks
/// its workers for their reports itself.
pub(crate) fn ignore_stop_signals() {
    extern "C" fn ignore(_: libc::c_int) {}
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1] {
        // SAFETY: installs a handler that does nothing, which is async-signal-safe. A
        // handler rather than SIG_IGN, because handlers are reset on exec: the
        // application's subprocesses keep the default dispositions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The request a slot runs, so a `Cancel` for it (and only it) reaches its sink.
#[derive(Debug, Default)]
struct Current {
    id: AtomicU64,
    cancelled: Mutex<Option<Arc<AtomicBool>>>,
}

impl Current {
    fn start(&self, id: u64) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.id.store(id, Ordering::Release);
        *self.lock() = Some(flag.clone());
        flag
    }

    fn cancel(&self, id: u64) {
        if self.id.load(Ordering::Acquire) == id
            && let Some(flag) = self.lock().as_ref()
        {
            flag.store(true, Ordering::Release);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<AtomicBool>>> {
        self.cancelled.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Writer = Arc<Mutex<FrameWriter<UnixStream, FromWorker>>>;
type Reader = Arc<Mutex<FrameReader<UnixStream, ToWorker>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One slot's socket to the host: used by the thread running the slot's request, one
/// request at a time (the host sends the next only after `Done`).
#[derive(Debug)]
struct SlotSocket {
    reader: Reader,
    writer: Writer,
    current: Current,
}

impl SlotSocket {
    fn new(socket: UnixStream) -> std::io::Result<Self> {
        Ok(SlotSocket {
            reader: Arc::new(Mutex::new(FrameReader::new(socket.try_clone()?))),
            writer: Arc::new(Mutex::new(FrameWriter::new(socket))),
            current: Current::default(),
        })
    }
}

/// Turns the host's requests into jobs for the Python threads: on the `wsgi-intake`
/// thread, or on the only Python thread itself.
struct Intake {
    slots: Arc<[SlotSocket]>,
    shared: Arc<Shared>,
    started: Arc<StartedPage>,
    rss: Option<Arc<RssCheck>>,
}

impl Intake {
    /// Reads requests into `queue` until the host closes the socket (or breaks the
    /// protocol), then closes the queue: the threads end once they have run what it holds.
    fn feed(self, reader: &mut FrameReader<UnixStream, ToWorker>, queue: &Dispatch<Job>) {
        while let Some(job) = self.next(reader) {
            if queue.try_send(job).is_err() {
                // Only a host sending more than one request per slot gets here.
                tracing::error!(target: "wsgi_core", "more requests than slots arrived; stopping");
                break;
            }
        }
        queue.close();
    }

    /// The next request as a job, waiting for it; `None` once the host has closed the
    /// socket or broken the protocol.
    fn next(&self, reader: &mut FrameReader<UnixStream, ToWorker>) -> Option<Job> {
        let request = match reader.recv() {
            Ok(Some(ToWorker::Request(request))) => request,
            Ok(Some(_)) => {
                tracing::error!(target: "wsgi_core", "the host sent a body frame on the intake socket; stopping");
                return None;
            }
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(target: "wsgi_core", "cannot read the host's requests: {e}");
                return None;
            }
        };
        self.job(*request)
    }

    fn job(&self, request: Request) -> Option<Job> {
        let index = request.slot.index();
        let Some(slot) = self.slots.get(index) else {
            tracing::error!(target: "wsgi_core", slot = index, "the host sent a request for a slot this worker does not have");
            return None;
        };
        let input = match request.body {
            RequestBody::None => InputSource::empty(),
            RequestBody::Inline(body) => InputSource::Buffered(VecDeque::from([body])),
            RequestBody::Streamed => InputSource::Pulled {
                from: Box::new(SocketPull {
                    reader: slot.reader.clone(),
                    writer: slot.writer.clone(),
                }),
                too_large: false,
                timed_out: false,
            },
        };
        let cancelled = slot.current.start(request.id);
        let done = Arc::new(JobDone::default());
        let sink = SocketSink {
            writer: slot.writer.clone(),
            cancelled,
            ended: AtomicBool::new(false),
            done: done.clone(),
        };
        Some(Job {
            id: request.id,
            enqueued: std::time::Instant::now(),
            vars: request.vars,
            input,
            content_length: request.content_length,
            tx: Arc::new(PipeTx::remote(Box::new(sink))),
            in_flight: InFlight::new(&self.shared),
            slot: Some(index),
            remote: Some(Box::new(SlotJob {
                slot: request.slot,
                id: request.id,
                writer: slot.writer.clone(),
                done,
                started: self.started.clone(),
                rss: self.rss.clone(),
            })),
        })
    }
}

/// What the thread running a request owes the host besides the response (see
/// [`RemoteJob`]).
#[derive(Debug)]
struct SlotJob {
    slot: LocalSlot,
    id: u64,
    writer: Writer,
    done: Arc<JobDone>,
    started: Arc<StartedPage>,
    rss: Option<Arc<RssCheck>>,
}

impl RemoteJob for SlotJob {
    fn starting(&self) {
        self.started.mark(self.slot, self.id);
    }

    fn try_finish(&mut self) -> bool {
        let mut writer = lock(&self.writer);
        if self.done.finish(THREAD_DONE) {
            // After the response's last frame, in the same write.
            let _ = writer.queue(&FromWorker::Done);
        }
        // An error means the host has gone: nobody to tell, and nothing is left queued.
        let _ = writer.try_flush();
        let left = writer.has_pending();
        drop(writer);
        if let Some(rss) = &self.rss {
            rss.after_request();
        }
        left
    }

    fn finish(&mut self) {
        let _ = lock(&self.writer).flush();
    }
}

/// Who has finished with a request: the worker thread that ran it ([`RemoteJob`]) and its
/// response sink (dropped when the last holder of the response lets go: the thread, or the
/// thread streaming a `wsgi.file_wrapper` file after it). Whichever is last sends
/// [`FromWorker::Done`]: the host then knows the thread is free and the response's frames
/// are all out.
#[derive(Debug, Default)]
struct JobDone(AtomicU8);

const THREAD_DONE: u8 = 1;
const SINK_DONE: u8 = 2;

impl JobDone {
    /// Records `who` as finished; true if the other had finished already.
    fn finish(&self, who: u8) -> bool {
        (self.0.fetch_or(who, Ordering::AcqRel) | who) == (THREAD_DONE | SINK_DONE)
    }
}

/// `max_rss`, checked by the worker after each request (one read of `/proc/self/statm`,
/// and of `smaps_rollup` at most once a second for a forked worker over the limit by
/// `statm`: see [`crate::lifecycle::forked_rss`]): the host samples only four times a
/// second, and a leaking app can grow a lot in between. The worker reports once; the host
/// decides and replaces it, readiness-gated as always.
#[derive(Debug)]
struct RssCheck {
    limit: u64,
    /// Whoever finds it taken skips this check: another thread is making it now.
    meter: Mutex<Meter>,
    sender: ControlSender,
    requests: AtomicU64,
    reported: AtomicBool,
}

impl RssCheck {
    fn after_request(&self) {
        let requests = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if self.reported.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut meter) = self.meter.try_lock() else {
            return;
        };
        if let Ok(rss_bytes) = meter.read(Proc::This, self.limit)
            && rss_bytes >= self.limit
            && !self.reported.swap(true, Ordering::Relaxed)
        {
            let _ = self.sender.send(ControlFromWorker::Stats {
                rss_bytes,
                requests,
            });
        }
    }
}

/// `wsgi.input`'s way to the host: ask for `want` bytes, wait for the next piece.
#[derive(Debug)]
struct SocketPull {
    reader: Reader,
    writer: Writer,
}

impl Pull for SocketPull {
    fn pull(&mut self, want: u64) -> Pulled {
        let gone = || Pulled::Chunk(Chunk::Failed("the host closed the connection".into()));
        if lock(&self.writer).send(&FromWorker::Want(want)).is_err() {
            return gone();
        }
        match lock(&self.reader).recv() {
            Ok(Some(ToWorker::Body(pulled))) => pulled,
            Ok(Some(ToWorker::Request(_))) => Pulled::Chunk(Chunk::Failed(
                "the host sent a request on a slot's socket".into(),
            )),
            Ok(None) | Err(_) => gone(),
        }
    }
}

/// The response's way to the host. Everything but body data is gathered in the writer and
/// goes out with the next data or when the thread finishes the request (without the GIL),
/// so a hello-world response is one write; body data goes out as it comes, as far as the
/// socket takes it without waiting; a response whose iterable has a `close()` goes out
/// before that call (`try_flush`), so neither a slow `close()` nor a worker dying in it
/// holds back or cuts a complete response.
#[derive(Debug)]
struct SocketSink {
    writer: Writer,
    cancelled: Arc<AtomicBool>,
    /// The response's last frame has been sent.
    ended: AtomicBool,
    done: Arc<JobDone>,
}

impl SocketSink {
    fn note_end(&self, msg: &Msg) {
        if matches!(msg, Msg::End | Msg::Abort(_) | Msg::Short(_))
            || matches!(msg, Msg::Head(head) if matches!(head.body, crate::response::HeadBody::Full(_)))
        {
            self.ended.store(true, Ordering::Release);
        }
    }
}

impl RemoteSink for SocketSink {
    fn try_send(&self, msg: Msg) -> TrySend {
        if self.is_gone() {
            return TrySend::Gone;
        }
        let mut writer = lock(&self.writer);
        if matches!(msg, Msg::Data(_)) {
            // Body data goes out now, as far as the socket takes it without waiting, so
            // that a chunk does not wait for the next one, and the thread keeps the GIL
            // (each release may hand it to another thread and wait to get it back). Only
            // when bytes the socket did not take are still queued does the caller wait,
            // without the GIL: that is the backpressure of a slow client.
            if writer.is_stalled() {
                return TrySend::Full(msg);
            }
            return match writer
                .queue(&FromWorker::Response(msg))
                .and_then(|()| writer.try_flush())
            {
                Ok(()) => TrySend::Sent,
                Err(_) => TrySend::Gone,
            };
        }
        self.note_end(&msg);
        match writer.queue(&FromWorker::Response(msg)) {
            Ok(()) => TrySend::Sent,
            Err(_) => TrySend::Gone,
        }
    }

    fn try_send_last(&self, msg: Msg) -> TrySend {
        if self.is_gone() {
            return TrySend::Gone;
        }
        let mut writer = lock(&self.writer);
        if writer.is_stalled() {
            return TrySend::Full(msg);
        }
        // Queued only: the end follows at once and goes with it, in one write, by the
        // `try_flush` before `close()` or the thread's `finish`.
        match writer.queue(&FromWorker::Response(msg)) {
            Ok(()) => TrySend::Sent,
            Err(_) => TrySend::Gone,
        }
    }

    fn send(&self, msg: Msg) -> Result<(), Gone> {
        if self.is_gone() {
            return Err(Gone);
        }
        self.note_end(&msg);
        lock(&self.writer)
            .send(&FromWorker::Response(msg))
            .map_err(|_| Gone)
    }

    fn is_gone(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn try_flush(&self) {
        // An error means the socket is broken (the host has gone): nobody to tell, and the
        // queue is dropped, so `finish` has nothing left to write.
        let _ = lock(&self.writer).try_flush();
    }
}

impl Drop for SocketSink {
    fn drop(&mut self) {
        let mut writer = lock(&self.writer);
        if !self.ended.load(Ordering::Acquire) {
            // Whatever happened (a cancelled client, a bug), the response needs an end.
            let why = if self.cancelled.load(Ordering::Acquire) {
                "the client went away"
            } else {
                "the worker ended the request without finishing its response"
            };
            let _ = writer.queue(&FromWorker::Response(Msg::Abort(why.into())));
        }
        if self.done.finish(SINK_DONE) {
            // The thread finished first (a file streamed after it returned): nothing else
            // will write for this request, so it all goes out from here.
            let _ = writer.queue(&FromWorker::Done);
            let _ = writer.flush();
        }
        // Otherwise the thread's `finish` writes it, without the GIL.
    }
}
