//! What the host's unit tests share: a pool whose processes are fakes, and the worker's
//! side of their channels, which a test plays frame by frame. Nothing is spawned: a fake
//! process is a [`FakeChild`] and real socketpairs and started page, whose other ends the
//! test holds as a [`FakeProcess`].

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;

use super::child::{Launcher, WorkerChild};
use super::reactor::Reactor;
use super::relay::Note;
use super::{Pool, Processes, eventfd, lock};
use crate::config::Lifecycle;
use crate::environ::CgiVars;
use crate::error::Error;
use crate::input::InputSource;
use crate::job::Job;
use crate::lifecycle::elastic::Elastic;
use crate::lifecycle::policy::Recycle;
use crate::pipe::{Msg, PipeRx, pipe};
use crate::process::ids::{LocalSlot, SlotLayout, WorkerId};
use crate::process::spawn::make_channels;
use crate::process::wire::channels::Channels;
use crate::process::wire::frame::{FrameReader, FrameWriter};
use crate::process::wire::messages::{ControlFromWorker, ControlToWorker, FromWorker, ToWorker};
use crate::process::wire::started::StartedPage;
use crate::response::{Head, HeadBody};
use crate::state::{Limits, Shared};

/// How long a test waits for what should come at once.
const PATIENCE: Duration = Duration::from_secs(10);

/// A pool of `elastic` workers of `threads` threads that recycles them by `recycle` and
/// whose processes `launcher` makes; its relay runs, its supervisors do not.
pub(super) fn pool(
    elastic: Elastic,
    threads: usize,
    recycle: Recycle,
    launcher: Launcher,
) -> (Arc<Reactor<Note>>, Arc<Pool>) {
    let shared = Arc::new(Shared::new(
        SlotLayout::new(elastic.max, threads).slot_count(),
        Limits {
            timeout: None,
            max_queue_wait: None,
            body_timeout: None,
            retry_after: 1,
        },
    ));
    // Long enough for a test thread on a loaded machine to answer in time.
    let lifecycle = Lifecycle {
        recycle,
        restart_dir: None,
        drain_grace: PATIENCE,
        start_timeout: PATIENCE,
    };
    Pool::with_launcher(elastic, threads, 16, shared, lifecycle, launcher).expect("a reactor")
}

/// The runner of `pool`, with its reactor.
pub(super) fn runner(reactor: Arc<Reactor<Note>>, pool: Arc<Pool>) -> Processes {
    Processes {
        pool,
        _reactor: reactor,
    }
}

/// The worker's ends of one process's intake and slots, and its started page.
pub(super) struct FakeWorker {
    intake: FrameReader<UnixStream, ToWorker>,
    /// The intake again, for its read timeout.
    intake_socket: UnixStream,
    pub(super) slots: Vec<FakeSlot>,
    started: StartedPage,
}

/// The worker's end of one slot's socket.
pub(super) struct FakeSlot {
    pub(super) reader: FrameReader<UnixStream, ToWorker>,
    writer: FrameWriter<UnixStream, FromWorker>,
}

fn timed(socket: UnixStream) -> UnixStream {
    socket.set_read_timeout(Some(PATIENCE)).expect("a timeout");
    socket
}

impl FakeWorker {
    /// The worker's side of `intake`, `slots` and `started`.
    pub(super) fn new(intake: UnixStream, slots: Vec<UnixStream>, started: StartedPage) -> Self {
        let intake = timed(intake);
        FakeWorker {
            intake_socket: intake.try_clone().expect("a clone"),
            intake: FrameReader::new(intake),
            slots: slots
                .into_iter()
                .map(|socket| {
                    let socket = timed(socket);
                    FakeSlot {
                        reader: FrameReader::new(socket.try_clone().expect("a clone")),
                        writer: FrameWriter::new(socket),
                    }
                })
                .collect(),
            started,
        }
    }

    /// Reads the next request from the intake: its id and slot, not handed to the
    /// application yet.
    pub(super) fn read(&mut self) -> (u64, LocalSlot) {
        match self.intake.recv() {
            Ok(Some(ToWorker::Request(request))) => (request.id, request.slot),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Reads the next request and hands it to the application, as a worker thread does;
    /// its id and slot.
    pub(super) fn start(&mut self) -> (u64, LocalSlot) {
        let (id, slot) = self.read();
        self.started.mark(slot, id);
        (id, slot)
    }

    /// [`start`](Self::start)'s id alone, for one-thread workers, whose slot is the first.
    pub(super) fn request(&mut self) -> u64 {
        self.start().0
    }

    /// Whether a request arrives within `wait`.
    pub(super) fn hears_within(&mut self, wait: Duration) -> bool {
        let socket = &self.intake_socket;
        socket.set_read_timeout(Some(wait)).expect("a timeout");
        let heard = self.intake.read_frame().is_ok();
        socket.set_read_timeout(Some(PATIENCE)).expect("a timeout");
        heard
    }

    /// Whether the host has closed the intake (read it to its end).
    pub(super) fn intake_closed(&mut self) -> bool {
        matches!(self.intake.read_frame(), Ok(None))
    }

    /// Sends `frames` on slot 0's socket.
    pub(super) fn send(&mut self, frames: impl IntoIterator<Item = FromWorker>) {
        self.send_on(LocalSlot::new(0), frames);
    }

    /// Sends `frames` on `slot`'s socket.
    pub(super) fn send_on(
        &mut self,
        slot: LocalSlot,
        frames: impl IntoIterator<Item = FromWorker>,
    ) {
        let writer = &mut self.slots[slot.index()].writer;
        for frame in frames {
            writer.queue(&frame).expect("a frame");
        }
        writer.flush().expect("sent");
    }
}

/// A job with no body, and the host's end of its response.
pub(super) fn job(runner: &Processes, id: u64) -> (Job, PipeRx) {
    job_with_limit(runner, id, 1 << 20)
}

/// A job with no body whose response pipe holds `limit` bytes.
pub(super) fn job_with_limit(runner: &Processes, id: u64, limit: usize) -> (Job, PipeRx) {
    let (tx, rx) = pipe(limit, Arc::new(AtomicBool::new(false)));
    let job = Job {
        id,
        enqueued: Instant::now(),
        vars: CgiVars {
            protocol: "HTTP/1.1",
            url_scheme: "http",
            ..CgiVars::default()
        },
        input: InputSource::empty(),
        content_length: None,
        tx: Arc::new(tx),
        in_flight: crate::state::InFlight::new(&runner.pool.shared),
        slot: None,
        remote: None,
    };
    (job, rx)
}

/// The next message of `rx`, waiting up to 10 s.
pub(super) fn next(rx: &mut PipeRx) -> Option<Msg> {
    let deadline = Instant::now() + PATIENCE;
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(msg) = rx.poll_recv(&mut cx) {
            return msg;
        }
        assert!(Instant::now() < deadline, "no message from the relay");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A response whose head carries the whole `body`.
pub(super) fn full(body: &'static [u8]) -> FromWorker {
    let mut head = Head::plain(StatusCode::OK, "");
    head.body = HeadBody::Full(Bytes::from_static(body));
    FromWorker::Response(Msg::Head(head))
}

/// The status of `msg`, a head.
pub(super) fn status(msg: Option<Msg>) -> StatusCode {
    match msg {
        Some(Msg::Head(head)) => head.status,
        other => panic!("expected a head, got {other:?}"),
    }
}

/// How a fake process ends, as the kernel would tell it: its status, a descriptor that
/// becomes readable then (as a pidfd does), and its sockets closing.
#[derive(Debug)]
pub(super) struct FakeExit {
    status: Mutex<Option<ExitStatus>>,
    ended: Condvar,
    /// An eventfd, written once the process has ended.
    readable: OwnedFd,
    /// Handles of the process's ends of its sockets, shut down when it ends.
    sockets: Vec<UnixStream>,
}

impl FakeExit {
    fn new(sockets: Vec<UnixStream>) -> Self {
        FakeExit {
            status: Mutex::new(None),
            ended: Condvar::new(),
            readable: eventfd().expect("an eventfd"),
            sockets,
        }
    }

    /// Ends the process with `status`, unless it has ended already: the status is known
    /// before its sockets close, as a dead process's are.
    pub(super) fn end(&self, status: ExitStatus) {
        {
            let mut current = lock(&self.status);
            if current.is_some() {
                return;
            }
            *current = Some(status);
        }
        let one = 1u64;
        // SAFETY: writes 8 bytes from a local into an eventfd we own.
        unsafe { libc::write(self.readable.as_raw_fd(), (&raw const one).cast(), 8) };
        self.ended.notify_all();
        for socket in &self.sockets {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    fn status(&self) -> Option<ExitStatus> {
        *lock(&self.status)
    }
}

/// What a supervisor holds of a fake process.
#[derive(Debug)]
pub(super) struct FakeChild {
    pid: u32,
    exit: Arc<FakeExit>,
}

impl FakeChild {
    /// Its made-up process id, which its worker side reports as its own.
    pub(super) fn id(&self) -> u32 {
        self.pid
    }

    /// Kills it: it ends as if by SIGKILL.
    pub(super) fn kill(&self) {
        self.exit.end(ExitStatus::from_raw(libc::SIGKILL));
    }

    /// Waits for it to end.
    pub(super) fn wait(&self) -> ExitStatus {
        let mut status = lock(&self.exit.status);
        loop {
            if let Some(status) = *status {
                return status;
            }
            status = self
                .exit
                .ended
                .wait(status)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// How it ended, if it has.
    pub(super) fn try_wait(&self) -> Option<ExitStatus> {
        self.exit.status()
    }

    /// What stands for its pidfd: readable once it has ended, so that waits go through
    /// the same poll(2) as a real process's. A signal sent through it reaches nothing;
    /// [`kill`](Self::kill) is what ends a fake.
    pub(super) fn pidfd(&self) -> Option<OwnedFd> {
        self.exit.readable.try_clone().ok()
    }
}

/// Makes fake processes for a pool: real channels and a [`FakeChild`] for the supervisor,
/// the worker's side for the test.
#[derive(Debug)]
pub(super) struct FakeLauncher {
    launched: Mutex<mpsc::Sender<FakeProcess>>,
    /// Errors the next launches fail with, in order; none left, they succeed.
    failures: Mutex<VecDeque<Error>>,
    /// When each launch was asked for.
    attempts: Mutex<Vec<Instant>>,
    next_pid: AtomicU32,
}

impl FakeLauncher {
    /// A launcher, and where its processes arrive.
    pub(super) fn new() -> (Arc<Self>, mpsc::Receiver<FakeProcess>) {
        let (launched, processes) = mpsc::channel();
        let launcher = Arc::new(FakeLauncher {
            launched: Mutex::new(launched),
            failures: Mutex::default(),
            attempts: Mutex::default(),
            next_pid: AtomicU32::new(1_000_000),
        });
        (launcher, processes)
    }

    /// Makes the next launch fail with `error`.
    pub(super) fn fail_next(&self, error: Error) {
        lock(&self.failures).push_back(error);
    }

    /// When each launch so far was asked for.
    pub(super) fn attempts(&self) -> Vec<Instant> {
        lock(&self.attempts).clone()
    }

    /// A fake process for `worker`, or the next planned failure.
    pub(super) fn launch(
        &self,
        worker: WorkerId,
        threads: usize,
    ) -> Result<(WorkerChild, Channels), Error> {
        lock(&self.attempts).push(Instant::now());
        if let Some(error) = lock(&self.failures).pop_front() {
            return Err(error);
        }
        let (channels, ends) = make_channels(threads).map_err(Error::WorkerSpawn)?;
        let mut ends = ends.into_iter();
        let mut socket = || UnixStream::from(ends.next().expect("a socket"));
        let (control, intake) = (socket(), socket());
        let slots: Vec<UnixStream> = (0..threads).map(|_| socket()).collect();
        let page = ends.next().expect("the started page");
        let started = StartedPage::open(page, threads).map_err(Error::WorkerSpawn)?;
        let handles = [&control, &intake]
            .into_iter()
            .chain(&slots)
            .map(|s| s.try_clone().expect("a clone"))
            .collect();
        let exit = Arc::new(FakeExit::new(handles));
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        let process = FakeProcess {
            worker,
            pid,
            control: FrameReader::new(timed(control.try_clone().expect("a clone"))),
            replies: FrameWriter::new(control),
            exit: exit.clone(),
            io: FakeWorker::new(intake, slots, started),
        };
        let _ = lock(&self.launched).send(process);
        Ok((WorkerChild::Fake(FakeChild { pid, exit }), channels))
    }
}

/// The worker's side of a fake process, which the test plays.
pub(super) struct FakeProcess {
    /// The worker it was launched for.
    pub(super) worker: WorkerId,
    pub(super) pid: u32,
    control: FrameReader<UnixStream, ControlToWorker>,
    replies: FrameWriter<UnixStream, ControlFromWorker>,
    exit: Arc<FakeExit>,
    /// Its intake, slots and started page.
    pub(super) io: FakeWorker,
}

impl FakeProcess {
    /// Reads its configuration and says it is ready, as a worker that loaded the
    /// application does.
    pub(super) fn ready(&mut self) {
        assert!(
            matches!(self.control(), ControlToWorker::Config(_)),
            "the configuration comes first"
        );
        self.replies
            .send(&ControlFromWorker::Ready {
                pid: self.pid,
                python: "3 (fake)".into(),
            })
            .expect("sent");
    }

    /// The next message on its control socket.
    pub(super) fn control(&mut self) -> ControlToWorker {
        match self.control.recv() {
            Ok(Some(msg)) => msg,
            other => panic!("expected a control message, got {other:?}"),
        }
    }

    /// Ends with `status`: its supervisor sees it through its control socket closing, and
    /// then its exit status.
    pub(super) fn end(self, status: ExitStatus) {
        self.exit.end(status);
    }

    /// Dies as a crash in C code would: killed by SIGSEGV.
    pub(super) fn crash(self) {
        self.end(ExitStatus::from_raw(libc::SIGSEGV));
    }
}

/// A fake process the test lets go of ends, killed, as a worker would when its host stops
/// playing it: a supervisor waiting on it is not left waiting.
impl Drop for FakeProcess {
    fn drop(&mut self) {
        self.exit.end(ExitStatus::from_raw(libc::SIGKILL));
    }
}

/// The next process `launched` hands over.
pub(super) fn launched(launched: &mpsc::Receiver<FakeProcess>) -> FakeProcess {
    launched
        .recv_timeout(PATIENCE)
        .expect("a process was launched")
}
