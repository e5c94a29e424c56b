//! The relay over socketpairs, each with a fake worker thread at the other end: no process
//! is started, and the test plays the worker's side of the protocol frame by frame.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::lifecycle::elastic::Elastic;
use crate::lifecycle::policy::Recycle;
use crate::pipe::Msg;
use crate::process::host::Processes;
use crate::process::host::child::Launcher;
use crate::process::host::testing::{
    FakeWorker, full, job, job_with_limit, next, pool, runner, status,
};
use crate::process::wire::messages::FromWorker;
use crate::process::wire::started::StartedPage;
use crate::response::{Head, HeadBody};
use crate::runner::Runner;

/// A runner of `workers` groups of `threads` slots, every group ready and attached, and a
/// fake worker at the other end of each group's channels.
fn relay(workers: usize, threads: usize) -> (Processes, Vec<FakeWorker>) {
    let elastic = Elastic::new(workers, workers);
    let (reactor, pool) = pool(elastic, threads, Recycle::default(), Launcher::Spawn);
    let mut fakes = Vec::new();
    for group in pool.layout.groups().take(workers) {
        let (host_intake, intake) = UnixStream::pair().expect("a socketpair");
        let (hosts, ends): (Vec<_>, Vec<_>) = (0..threads)
            .map(|_| UnixStream::pair().expect("a socketpair"))
            .unzip();
        let page = StartedPage::create(threads).expect("a started page");
        let started = StartedPage::open(page.file().try_clone_to_owned().unwrap(), threads)
            .expect("the worker's mapping");
        pool.set_ready(group, true);
        pool.attach(group, host_intake, hosts, page);
        fakes.push(FakeWorker::new(intake, ends, started));
    }
    (runner(reactor, pool), fakes)
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
        std::iter::once(FromWorker::Response(Msg::Head(head)))
            .chain(
                pieces
                    .iter()
                    .cloned()
                    .map(|piece| FromWorker::Response(Msg::Data(piece))),
            )
            .chain([FromWorker::Response(Msg::End), FromWorker::Done]),
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

/// Two one-thread workers; request 7 goes to one, 8 to the other, which dies before
/// handing 8 to the application (`read`: after reading it from its intake): the first
/// worker runs 8 after 7.
fn a_request_the_application_never_saw_goes_to_another_worker(read: bool) {
    let (runner, fakes) = relay(2, 1);
    // Ties go to the worker ready last (the second one attached): 7 to it, 8 to the other.
    let [mut second, mut first]: [FakeWorker; 2] = fakes.try_into().ok().unwrap();
    let (seven, mut seven_rx) = job(&runner, 7);
    let (eight, mut eight_rx) = job(&runner, 8);
    runner.submit(seven).unwrap();
    runner.submit(eight).unwrap();
    assert_eq!(first.request(), 7);
    if read {
        // It waited in the worker's queue, never marked started.
        assert_eq!(second.read().0, 8);
    }
    drop(second);
    first.send([full(b"seven"), FromWorker::Done]);
    assert_eq!(status(next(&mut seven_rx)), StatusCode::OK);
    assert_eq!(first.request(), 8, "request 8 was not run again");
    first.send([full(b"eight"), FromWorker::Done]);
    assert_eq!(status(next(&mut eight_rx)), StatusCode::OK);
}

#[test]
fn a_request_its_worker_never_read_goes_to_another_worker() {
    a_request_the_application_never_saw_goes_to_another_worker(false);
}

#[test]
fn a_request_read_but_not_yet_started_goes_to_another_worker() {
    a_request_the_application_never_saw_goes_to_another_worker(true);
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
        FromWorker::Response(Msg::Head(head)),
        FromWorker::Response(Msg::Data(Bytes::from_static(b"a"))),
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
    // Then the host closes the slot and the intake: the worker's threads end.
    assert!(matches!(worker.slots[0].reader.read_frame(), Ok(None)));
    assert!(worker.intake_closed());
}

#[test]
fn the_response_comes_back_on_its_slot_whichever_thread_took_it() {
    let (runner, mut fakes) = relay(1, 2);
    let worker = &mut fakes[0];
    let (a, mut a_rx) = job(&runner, 1);
    let (b, mut b_rx) = job(&runner, 2);
    runner.submit(a).unwrap();
    runner.submit(b).unwrap();
    let (first, first_slot) = worker.read();
    let (second, second_slot) = worker.read();
    assert_eq!((first, second), (1, 2));
    assert_ne!(first_slot, second_slot, "two requests on one slot");
    // Answered in the other order, each on its slot.
    worker.send_on(second_slot, [full(b"two"), FromWorker::Done]);
    worker.send_on(first_slot, [full(b"one"), FromWorker::Done]);
    for (rx, expected) in [(&mut a_rx, "one"), (&mut b_rx, "two")] {
        match next(rx) {
            Some(Msg::Head(Head {
                body: HeadBody::Full(body),
                ..
            })) => assert_eq!(body, expected),
            other => panic!("expected a full head, got {other:?}"),
        }
    }
}
