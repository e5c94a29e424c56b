//! The relay: the host's end of every slot's socket and every intake, handled on one thread
//! ([`super::reactor`]) without blocking: requests out, body pieces on demand, responses
//! into their pipes, backpressure by not reading, and what a dead worker leaves behind
//! (retried if the application never saw it, 502 or a cut body if it did).

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use http::StatusCode;

use super::reactor::{Handler, Reactor, note_waker};
use super::slots::Next;
use super::{Event, Intake, Pool, WorkerState, lock};
use crate::chunk::Chunk;
use crate::input::{InputSource, Pulled};
use crate::job::Job;
use crate::lifecycle::reason::RestartReason;
use crate::pipe::{Msg, TrySend};
use crate::process::ids::{GroupId, LocalSlot, SlotId, Watched, WorkerId};
use crate::process::wire::frame::{FrameReader, FrameWriter};
use crate::process::wire::messages::{ControlToWorker, FromWorker, Request, RequestBody, ToWorker};
use crate::process::wire::started::StartedPage;
use crate::response::Head;
use crate::state::{Running, Stage};

/// What the reactor's thread is told by other threads.
#[derive(Debug)]
pub(super) enum Note {
    /// The response pipe of `slot`'s request has room again (or its client has gone).
    Space(SlotId),
    /// The answer to a request for body bytes, from the thread that waited for them.
    Body {
        slot: SlotId,
        id: u64,
        answer: ToWorker,
    },
}

/// The host's end of one worker thread's socket, while its process serves.
#[derive(Debug)]
pub(super) struct Conn {
    socket: UnixStream,
    reader: FrameReader<UnixStream, FromWorker>,
    writer: FrameWriter<UnixStream, ToWorker>,
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
    pub(super) fn reactor(&self) -> Option<Arc<Reactor<Note>>> {
        self.reactor.upgrade()
    }

    pub(super) fn conn(&self, slot: SlotId) -> MutexGuard<'_, Option<Conn>> {
        lock(&self.conns[slot.index()])
    }

    /// Adopts the channels of a process that has just become ready in `group`, and gives
    /// each slot a queued job or marks it idle.
    pub(super) fn attach(
        &self,
        group: GroupId,
        intake: UnixStream,
        sockets: Vec<UnixStream>,
        started: StartedPage,
    ) {
        let Some(reactor) = self.reactor() else {
            return;
        };
        let g = self.group(group);
        *lock(&g.started) = Some(Arc::new(started));
        let token = self.layout.intake_token(group);
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
        for (slot, socket) in self.layout.slots_of(group).zip(sockets) {
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
            if let Err(e) = reactor.register(self.layout.slot_token(slot), fd) {
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
    pub(super) fn start(&self, mut slot: SlotId, mut job: Job) {
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
    fn send_request(&self, slot: SlotId, conn: &mut Conn, mut job: Job) -> Option<Job> {
        let group = self.layout.group_of(slot);
        {
            let mut intake = lock(&self.group(group).intake);
            let Some(intake) = intake.as_mut() else {
                return Some(job);
            };
            let local = self.layout.local_of(slot);
            let queued = Self::queue_request(&mut intake.writer, local, &mut job);
            // What the socket does not take now goes when it is writable again.
            if queued
                .and_then(|()| {
                    if defer_flush(group) {
                        Ok(())
                    } else {
                        self.flush_intake(group, intake)
                    }
                })
                .is_err()
            {
                return Some(job);
            }
        }
        let shared = &self.shared;
        shared.metrics.busy_threads.fetch_add(1, Ordering::Relaxed);
        self.group(group).busy.fetch_add(1, Ordering::AcqRel);
        if let Some(timeout) = shared.timeout {
            *shared.slots[slot.index()].lock() = Some(Running {
                id: job.id,
                deadline: Some(Instant::now() + timeout),
                tx: job.tx.clone(),
                stage: Stage::Running,
                busy: None,
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
        writer: &mut FrameWriter<UnixStream, ToWorker>,
        slot: LocalSlot,
        job: &mut Job,
    ) -> io::Result<()> {
        let body = match &mut job.input {
            InputSource::Buffered(chunks) if chunks.is_empty() => RequestBody::None,
            InputSource::Buffered(chunks) => RequestBody::Inline(
                crate::process::wire::messages::join_body(std::mem::take(chunks)),
            ),
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
    fn flush(&self, slot: SlotId, conn: &mut Conn) -> io::Result<()> {
        conn.writer.try_flush()?;
        let pending = conn.writer.has_pending();
        if pending != conn.watching_writable
            && let Some(reactor) = self.reactor()
        {
            reactor.watch_writable(
                self.layout.slot_token(slot),
                conn.socket.as_raw_fd(),
                pending,
            )?;
            conn.watching_writable = pending;
        }
        Ok(())
    }

    /// Writes what `group`'s intake has queued, as far as its socket takes it now.
    fn flush_intake(&self, group: GroupId, intake: &mut Intake) -> io::Result<()> {
        intake.writer.try_flush()?;
        let pending = intake.writer.has_pending();
        if pending != intake.watching_writable
            && let Some(reactor) = self.reactor()
        {
            let token = self.layout.intake_token(group);
            reactor.watch_writable(token, intake.socket.as_raw_fd(), pending)?;
            intake.watching_writable = pending;
        }
        Ok(())
    }

    /// Gives `slot`, which has no request, the next queued one, or marks it idle, or
    /// closes it.
    fn next(&self, slot: SlotId) {
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
    pub(super) fn close_idle(&self, slots: Vec<SlotId>) {
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
    fn close_slot(&self, slot: SlotId) {
        let Some(conn) = self.conn(slot).take() else {
            return;
        };
        if let Some(reactor) = self.reactor() {
            reactor.deregister(conn.socket.as_raw_fd());
        }
        drop(conn);
        let g = self.group(self.layout.group_of(slot));
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
    fn read_slot(&self, slot: SlotId) {
        let mut guard = self.conn(slot);
        let Some(conn) = guard.as_mut() else {
            return;
        };
        let relayed = loop {
            if conn.current.as_ref().is_some_and(|c| c.stalled.is_some()) {
                return;
            }
            let frame = match conn.reader.try_recv() {
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
                            && !lock(&self.group(self.layout.group_of(slot)).started)
                                .as_ref()
                                .is_some_and(|page| {
                                    page.started(self.layout.local_of(slot), current.job.id)
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
    fn on_frame(&self, slot: SlotId, conn: &mut Conn, frame: FromWorker) -> Option<Relayed> {
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
            FromWorker::Response(msg) => msg,
            FromWorker::Done => {
                // The worker's side of the request ended without its response's end.
                let due = self.pause_if_due(slot);
                let _ = current.job.tx.try_send(Msg::Abort(
                    "the worker ended the request without finishing its response".into(),
                ));
                return Some(Relayed::Done(due));
            }
        };
        match &msg {
            Msg::Head(head) => {
                current.head_sent = true;
                if matches!(head.body, crate::response::HeadBody::Full(_)) {
                    current.finished = Some(self.pause_if_due(slot));
                }
            }
            Msg::Data(_) => {}
            Msg::End | Msg::Short(_) | Msg::Abort(_) => {
                current.finished = Some(self.pause_if_due(slot));
            }
        }
        self.deliver(slot, conn, msg);
        None
    }

    /// Hands `msg` to the client's pipe; with no room, keeps it and stops reading.
    fn deliver(&self, slot: SlotId, conn: &mut Conn, msg: Msg) {
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
                    self.layout.group_of(slot),
                    &ControlToWorker::Cancel {
                        slot: self.layout.local_of(slot),
                        id: current.job.id,
                    },
                );
            }
        }
    }

    /// Answers a worker's request for `want` more body bytes: at once from a body that is
    /// all here, else through a thread that waits for the client.
    fn want(&self, slot: SlotId, conn: &mut Conn, want: u64) {
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
            Some(_) => ToWorker::Body(Pulled::Chunk(Chunk::Eof)),
            None => ToWorker::Body(Pulled::Chunk(Chunk::Failed(
                "cannot start a thread for the request body".into(),
            ))),
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
        slot: SlotId,
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
                    let last = !matches!(answer, ToWorker::Body(Pulled::Chunk(Chunk::Data(_))));
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
    fn end_request(&self, slot: SlotId, current: Current, relayed: Relayed) {
        let shared = &self.shared;
        shared.slots[slot.index()].lock().take();
        shared.metrics.busy_threads.fetch_sub(1, Ordering::Relaxed);
        let group = self.group(self.layout.group_of(slot));
        group.busy.fetch_sub(1, Ordering::AcqRel);
        // A group relays requests only once a process started in it named its worker.
        let worker = group.worker.load().map(WorkerId::index);
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
    fn pause_if_due(&self, slot: SlotId) -> Option<Event> {
        let group = self.layout.group_of(slot);
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

    fn worker_of_group(&self, group: GroupId) -> Option<&WorkerState> {
        let worker = self.group(group).worker.load()?;
        Some(self.worker(worker))
    }

    /// Counts a request the worker answered, and tells its supervisor `due`.
    fn count_served(&self, slot: SlotId, due: Option<Event>) {
        if let Some(state) = self.worker_of_group(self.layout.group_of(slot)) {
            state.requests.fetch_add(1, Ordering::Relaxed);
            state.served.fetch_add(1, Ordering::Relaxed);
            if let Some(event) = due {
                state.send(event);
            }
        }
    }

    /// Resumes or pauses `group`; jobs the resumed group takes at once are sent.
    pub(super) fn pause_group(&self, group: GroupId, paused: bool) {
        for (slot, job) in self.queue.pause(group, paused) {
            self.start(slot, job);
        }
        // An elastic pool's thread counts a paused worker as starting, and waits for a
        // ring to count it again.
        if !paused {
            self.changed.ring();
        }
    }

    /// Marks `group` ready or not; a group no longer ready closes its idle slots.
    pub(super) fn set_ready(&self, group: GroupId, ready: bool) {
        let idle = self.queue.set_ready(group, ready);
        self.close_idle(idle);
    }
}

/// The answer to a request for `want` body bytes from `input`, waiting up to `timeout` for
/// the client.
fn body_answer(input: &mut InputSource, want: u64, timeout: Option<Duration>) -> ToWorker {
    ToWorker::Body(match input.next_chunk(want, timeout) {
        Chunk::Failed(why) if input.timed_out() => Pulled::TimedOut(why),
        chunk => Pulled::Chunk(chunk),
    })
}

thread_local! {
    /// On the relay's thread: the groups whose intake had requests queued in this round
    /// of events, written at its end in one call each (`batch_done`), where several slots
    /// that finished together would each have made one. Other threads write at once.
    static DEFERRED: RefCell<Option<Vec<GroupId>>> = const { RefCell::new(None) };
}

/// Marks the calling thread as the relay's.
fn on_relay_thread() {
    DEFERRED.with(|d| {
        d.borrow_mut().get_or_insert_with(Vec::new);
    });
}

/// Whether `group`'s intake is written at the end of the relay's round (noted if so).
fn defer_flush(group: GroupId) -> bool {
    DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        let Some(groups) = d.as_mut() else {
            return false;
        };
        if !groups.contains(&group) {
            groups.push(group);
        }
        true
    })
}

impl Handler<Note> for Pool {
    fn batch_done(&self) {
        let groups = DEFERRED.with(|d| d.borrow_mut().as_mut().map(std::mem::take));
        for group in groups.into_iter().flatten() {
            if let Some(intake) = lock(&self.group(group).intake).as_mut() {
                // A failure shows on the slots' sockets.
                let _ = self.flush_intake(group, intake);
            }
        }
    }

    fn readable(&self, token: usize) {
        on_relay_thread();
        // An intake socket is readable only once its worker has gone, which its slots'
        // sockets tell.
        if let Some(Watched::Slot(slot)) = self.layout.watched(token) {
            self.read_slot(slot);
        }
    }

    fn writable(&self, token: usize) {
        on_relay_thread();
        match self.layout.watched(token) {
            Some(Watched::Slot(slot)) => {
                if let Some(conn) = self.conn(slot).as_mut() {
                    // A failure shows on the read side.
                    let _ = self.flush(slot, conn);
                }
            }
            Some(Watched::Intake(group)) => {
                if let Some(intake) = lock(&self.group(group).intake).as_mut() {
                    // A failure shows on the slots' sockets.
                    let _ = self.flush_intake(group, intake);
                }
            }
            None => {}
        }
    }

    fn notified(&self, note: Note) {
        on_relay_thread();
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
