//! The relay over socketpairs, each with a fake worker thread at the other end: no process
//! is started, and the test plays the worker's side of the protocol frame by frame.

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;

use super::{Note, Pool, Processes};
use crate::config::Lifecycle;
use crate::environ::CgiVars;
use crate::input::InputSource;
use crate::job::Job;
use crate::lifecycle::policy::Recycle;
use crate::pipe::{Msg, PipeRx, pipe};
use crate::process::messages::{FromWorker, ToWorker};
use crate::process::wire::{FrameReader, FrameWriter};
use crate::response::{Head, HeadBody};
use crate::runner::Runner;
use crate::runner::reactor::Reactor;
use crate::state::{Limits, Shared};

/// A runner of `workers` groups of `threads` slots, every group ready, each slot's socket
/// attached, and the fake workers' ends, by slot.
fn relay(workers: usize, threads: usize) -> (Processes, Vec<FakeWorker>) {
    let shared = Arc::new(Shared::new(
        (workers + 1) * threads,
        Limits {
            timeout: None,
            max_queue_wait: None,
            body_timeout: None,
            retry_after: 1,
        },
    ));
    let lifecycle = Lifecycle {
        recycle: Recycle::default(),
        restart_dir: None,
        drain_grace: Duration::from_secs(1),
        start_timeout: Duration::from_secs(1),
    };
    let (reactor, pool): (Arc<Reactor<Note>>, Arc<Pool>) =
        Pool::new(workers, threads, 16, shared, lifecycle).expect("a reactor");
    let mut fakes = Vec::new();
    for group in 0..workers {
        let (hosts, ends): (Vec<_>, Vec<_>) = (0..threads)
            .map(|_| UnixStream::pair().expect("a socketpair"))
            .unzip();
        pool.set_ready(group, true);
        pool.attach(group, hosts);
        fakes.extend(ends.into_iter().map(FakeWorker::new));
    }
    let runner = Processes {
        pool,
        _reactor: reactor,
    };
    (runner, fakes)
}

/// The worker's end of one slot.
struct FakeWorker {
    reader: FrameReader<UnixStream>,
    writer: FrameWriter<UnixStream>,
}

impl FakeWorker {
    fn new(socket: UnixStream) -> Self {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        FakeWorker {
            reader: FrameReader::new(socket.try_clone().expect("a clone")),
            writer: FrameWriter::new(socket),
        }
    }

    /// The id of the request the host sent.
    fn request(&mut self) -> u64 {
        match self.reader.recv::<ToWorker>() {
            Ok(Some(ToWorker::Request(request))) => request.id,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Whether a frame arrives within `wait`.
    fn hears_within(&mut self, wait: Duration) -> bool {
        let socket = self.writer.get_ref();
        socket.set_read_timeout(Some(wait)).expect("a timeout");
        let heard = self.reader.read_frame().is_ok();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        heard
    }

    fn send(&mut self, frames: impl IntoIterator<Item = FromWorker>) {
        for frame in frames {
            self.writer.queue(&frame).expect("a frame");
        }
        self.writer.flush().expect("sent");
    }
}

/// A job with no body, and the host's end of its response.
fn job(runner: &Processes, id: u64) -> (Job, PipeRx) {
    job_with_limit(runner, id, 1 << 20)
}

fn job_with_limit(runner: &Processes, id: u64, limit: usize) -> (Job, PipeRx) {
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
    };
    (job, rx)
}

/// The next message of `rx`, waiting up to 10 s.
fn next(rx: &mut PipeRx) -> Option<Msg> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(msg) = rx.poll_recv(&mut cx) {
            return msg;
        }
        assert!(Instant::now() < deadline, "no message from the relay");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn full(body: &'static [u8]) -> FromWorker {
    let mut head = Head::plain(StatusCode::OK, "");
    head.body = HeadBody::Full(Bytes::from_static(body));
    FromWorker::Head(head)
}

fn status(msg: Option<Msg>) -> StatusCode {
    match msg {
        Some(Msg::Head(head)) => head.status,
        other => panic!("expected a head, got {other:?}"),
    }
}

#[test]
fn a_response_is_relayed_and_the_slot_takes_the_next_request_at_done() {
    let (runner, mut fakes) = relay(1, 1);
    let worker = &mut fakes[0];
    let (first, mut first_rx) = job(&runner, 1);
    let (second, mut second_rx) = job(&runner, 2);
    runner.submit(first).unwrap();
    assert_eq!(worker.request(), 1);
    // The only slot is busy: the second request waits in the host.
    runner.submit(second).unwrap();
    assert_eq!(runner.queued(), 1);
    worker.send([full(b"one")]);
    assert_eq!(status(next(&mut first_rx)), StatusCode::OK);
    assert!(
        !worker.hears_within(Duration::from_millis(100)),
        "a request was sent before Done"
    );
    worker.send([FromWorker::Done]);
    assert_eq!(worker.request(), 2);
    assert_eq!(runner.queued(), 0);
    worker.send([full(b"two"), FromWorker::Done]);
    assert_eq!(status(next(&mut second_rx)), StatusCode::OK);
}

#[test]
fn a_full_pipe_stalls_the_worker_and_resumes_as_the_client_reads() {
    let (runner, mut fakes) = relay(1, 1);
    let worker = &mut fakes[0];
    // Room for about one piece: the relay must wait for the client between pieces.
    let (job, mut rx) = job_with_limit(&runner, 1, 1024);
    runner.submit(job).unwrap();
    worker.request();
    let mut head = Head::plain(StatusCode::OK, "");
    head.body = HeadBody::Stream;
    let pieces: Vec<Bytes> = (0..64u8).map(|i| Bytes::from(vec![i; 1024])).collect();
    worker.send(
        std::iter::once(FromWorker::Head(head))
            .chain(pieces.iter().cloned().map(FromWorker::Data))
            .chain([FromWorker::End, FromWorker::Done]),
    );
    assert_eq!(status(next(&mut rx)), StatusCode::OK);
    let mut received = Vec::new();
    loop {
        match next(&mut rx) {
            Some(Msg::Data(bytes)) => received.extend_from_slice(&bytes),
            Some(Msg::End) => break,
            other => panic!("expected data or the end, got {other:?}"),
        }
    }
    assert_eq!(received, pieces.concat(), "pieces lost or out of order");
}

#[test]
fn a_request_its_worker_never_read_goes_to_another_worker() {
    let (runner, fakes) = relay(2, 1);
    let [mut first, second]: [FakeWorker; 2] = fakes.try_into().ok().unwrap();
    let (seven, mut seven_rx) = job(&runner, 7);
    let (eight, mut eight_rx) = job(&runner, 8);
    // Ties go to the lower worker: 7 to the first, 8 to the second.
    runner.submit(seven).unwrap();
    runner.submit(eight).unwrap();
    assert_eq!(first.request(), 7);
    // The second worker dies with request 8 unread in its socket: the host sees
    // ECONNRESET, so the application never had it, and it waits for the first worker.
    drop(second);
    first.send([full(b"seven"), FromWorker::Done]);
    assert_eq!(status(next(&mut seven_rx)), StatusCode::OK);
    assert_eq!(first.request(), 8, "request 8 was not run again");
    first.send([full(b"eight"), FromWorker::Done]);
    assert_eq!(status(next(&mut eight_rx)), StatusCode::OK);
}

#[test]
fn a_worker_that_dies_in_a_request_answers_502() {
    let (runner, mut fakes) = relay(1, 1);
    let (job, mut rx) = job(&runner, 1);
    runner.submit(job).unwrap();
    fakes[0].request();
    fakes.clear();
    assert_eq!(status(next(&mut rx)), StatusCode::BAD_GATEWAY);
}

#[test]
fn a_worker_that_dies_during_a_response_cuts_it() {
    let (runner, mut fakes) = relay(1, 1);
    let (job, mut rx) = job(&runner, 1);
    runner.submit(job).unwrap();
    fakes[0].request();
    let mut head = Head::plain(StatusCode::OK, "");
    head.body = HeadBody::Stream;
    fakes[0].send([
        FromWorker::Head(head),
        FromWorker::Data(Bytes::from_static(b"a")),
    ]);
    assert_eq!(status(next(&mut rx)), StatusCode::OK);
    assert!(matches!(next(&mut rx), Some(Msg::Data(_))));
    fakes.clear();
    assert!(matches!(next(&mut rx), Some(Msg::Abort(_))));
}

#[test]
fn closing_serves_what_is_queued_then_closes_every_socket() {
    let (runner, mut fakes) = relay(1, 1);
    let (first, mut first_rx) = job(&runner, 1);
    let (second, mut second_rx) = job(&runner, 2);
    runner.submit(first).unwrap();
    runner.submit(second).unwrap();
    runner.close();
    let worker = &mut fakes[0];
    assert_eq!(worker.request(), 1);
    worker.send([full(b"one"), FromWorker::Done]);
    assert_eq!(worker.request(), 2, "a queued request was dropped at close");
    worker.send([full(b"two"), FromWorker::Done]);
    assert_eq!(status(next(&mut first_rx)), StatusCode::OK);
    assert_eq!(status(next(&mut second_rx)), StatusCode::OK);
    // Then the host closes the slot: the worker thread sees the end of its socket.
    assert!(matches!(worker.reader.read_frame(), Ok(None)));
}
