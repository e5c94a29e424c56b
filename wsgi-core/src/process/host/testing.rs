//! What the host's unit tests share: a pool that starts no process, and the worker's side
//! of a process's channels, which a test plays frame by frame.

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;

use super::child::Launcher;
use super::reactor::Reactor;
use super::relay::Note;
use super::{Pool, Processes};
use crate::config::Lifecycle;
use crate::environ::CgiVars;
use crate::input::InputSource;
use crate::job::Job;
use crate::lifecycle::elastic::Elastic;
use crate::lifecycle::policy::Recycle;
use crate::pipe::{Msg, PipeRx, pipe};
use crate::process::ids::LocalSlot;
use crate::process::wire::frame::{FrameReader, FrameWriter};
use crate::process::wire::messages::{FromWorker, ToWorker};
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
        (elastic.max + 1) * threads,
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
    intake: FrameReader<UnixStream>,
    /// The intake again, for its read timeout.
    intake_socket: UnixStream,
    pub(super) slots: Vec<FakeSlot>,
    started: StartedPage,
}

/// The worker's end of one slot's socket.
pub(super) struct FakeSlot {
    pub(super) reader: FrameReader<UnixStream>,
    writer: FrameWriter<UnixStream>,
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
        match self.intake.recv::<ToWorker>() {
            Ok(Some(ToWorker::Request(request))) => (request.id, request.slot),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Reads the next request and hands it to the application, as a worker thread does;
    /// its id (the slot is the first, in tests of one-thread workers).
    pub(super) fn request(&mut self) -> u64 {
        let (id, slot) = self.read();
        self.started.mark(slot, id);
        id
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
