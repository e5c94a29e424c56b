//! The host's side of preloading (`EngineBuilder::preload`): one `wsgi-template` thread
//! keeps the template process (see `crate::process::template`): starts it, asks it for
//! workers, starts a new one for new code and retires the old, and starts it again should
//! it die. Workers already forked serve on meanwhile: they talk to the host, not to it.
//!
//! The thread is the one that spawns every template, so that the template's parent-death
//! signal (tied to the spawning thread) fires only when the engine is done with it; it
//! ends once every template it started has ended. Each template's socket is read by a
//! `wsgi-template-log` thread: logs, the template's answers, and the ends of the workers
//! it reaps.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::child::{ForkedChild, Reaped, WorkerChild, pidfd_open};
use super::lock;
use crate::error::Error;
use crate::process::ids::WorkerId;
use crate::process::log;
use crate::process::spawn::{describe_exit, make_channels, spawn_template};
use crate::process::wire::channels::Channels;
use crate::process::wire::frame::{FrameReader, FrameWriter};
use crate::process::wire::handoff::send_with_fds;
use crate::process::wire::messages::{ControlFromWorker, FromTemplate, ToTemplate, WorkerConfig};

/// How long a template may go without answering a request to fork.
const FORK_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait before starting a template again after it died or failed to start;
/// doubles up to [`MAX_RESTART_PAUSE`].
const FIRST_RESTART_PAUSE: Duration = Duration::from_secs(1);
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(60);

/// The handle the pool holds.
#[derive(Debug)]
pub(super) struct Template {
    commands: Mutex<mpsc::Sender<Command>>,
    closing: Arc<AtomicBool>,
}

type Forked = Result<(WorkerChild, Channels), Error>;

enum Command {
    Fork {
        worker: WorkerId,
        threads: usize,
        reply: mpsc::Sender<Forked>,
    },
    /// Start a template with the code on disk; if it loads, retire the old one and run
    /// `then` (which replaces the workers).
    Reload {
        then: Box<dyn FnOnce() + Send>,
    },
    /// The template of this generation ended (its socket closed).
    Ended {
        generation: u64,
    },
    Close,
}

impl Template {
    /// Starts the keeper thread and the first template, and waits until the template has
    /// loaded the application: its error, if it cannot, is the engine's.
    pub(super) fn start(config: WorkerConfig, start_timeout: Duration) -> Result<Self, Error> {
        let (commands, rx) = mpsc::channel();
        let closing = Arc::new(AtomicBool::new(false));
        let (started_tx, started) = mpsc::channel();
        let mut keeper = Keeper {
            config,
            start_timeout,
            commands: commands.clone(),
            closing: closing.clone(),
            current: None,
            retired: Vec::new(),
            generation: 0,
        };
        std::thread::Builder::new()
            .name("wsgi-template".into())
            .spawn(move || {
                let first = keeper.start_template();
                let ok = first.is_ok();
                match first {
                    Ok(running) => {
                        keeper.current = Some(running);
                        let _ = started_tx.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                    }
                }
                if ok {
                    keeper.run(&rx);
                }
            })
            .map_err(Error::Thread)?;
        match started.recv() {
            Ok(Ok(())) => Ok(Template {
                commands: Mutex::new(commands),
                closing,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::WorkerStartup(
                "the thread keeping the template process stopped".into(),
            )),
        }
    }

    /// Forks a process for `worker`, of `threads` slots, from the template: the process
    /// and the host's ends of its channels. Waits while a template is being started.
    pub(super) fn fork(&self, worker: WorkerId, threads: usize) -> Forked {
        let (reply, answer) = mpsc::channel();
        self.send(Command::Fork {
            worker,
            threads,
            reply,
        });
        answer.recv().unwrap_or_else(|_| {
            Err(Error::WorkerStartup(
                "the engine closed: no template process to fork a worker from".into(),
            ))
        })
    }

    /// Starts a template with the code on disk, then runs `then` if it loaded; otherwise
    /// logs why, and the workers keep the old code. Returns at once.
    pub(super) fn reload(&self, then: impl FnOnce() + Send + 'static) {
        self.send(Command::Reload {
            then: Box::new(then),
        });
    }

    /// Stops a template start under way, and retires the template: it exits once the
    /// workers it forked have.
    pub(super) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.send(Command::Close);
    }

    fn send(&self, command: Command) {
        let _ = lock(&self.commands).send(command);
    }
}

/// A template process that has loaded the application.
struct Running {
    generation: u64,
    child: Child,
    pid: u32,
    /// The host's end of its socket, for requests.
    socket: UnixStream,
    /// Its answers, from its reader thread; disconnected once it has ended.
    answers: mpsc::Receiver<Answer>,
    reaped: Arc<Reaped>,
    ready_at: Instant,
}

/// What a template's reader thread passes on.
enum Answer {
    Ready,
    Failed(Error),
    Logged,
    Forked { worker: WorkerId, pid: u32 },
    ForkFailed { worker: WorkerId, error: Error },
}

/// The `wsgi-template` thread's state.
struct Keeper {
    config: WorkerConfig,
    start_timeout: Duration,
    commands: mpsc::Sender<Command>,
    closing: Arc<AtomicBool>,
    current: Option<Running>,
    /// Templates told to exit once their workers have.
    retired: Vec<Running>,
    generation: u64,
}

impl Keeper {
    fn run(mut self, commands: &mpsc::Receiver<Command>) {
        let mut restart: Option<(Instant, Duration)> = None;
        let mut closed = false;
        loop {
            if closed && self.current.is_none() && self.retired.is_empty() {
                return;
            }
            let command = match restart {
                Some((at, _)) if !closed => {
                    match commands.recv_timeout(at.saturating_duration_since(Instant::now())) {
                        Ok(command) => Some(command),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                _ => match commands.recv() {
                    Ok(command) => Some(command),
                    Err(_) => return,
                },
            };
            match command {
                None => {
                    let pause = restart.take().map_or(FIRST_RESTART_PAUSE, |(_, p)| p);
                    if let Err(e) = self.restart() {
                        let next = (pause * 2).min(MAX_RESTART_PAUSE);
                        tracing::error!(target: "wsgi_core", "a new template process failed to start; trying again in {} s: {e}", next.as_secs());
                        restart = Some((Instant::now() + next, next));
                    }
                }
                Some(Command::Fork {
                    worker,
                    threads,
                    reply,
                }) => {
                    let forked = if closed {
                        Err(Error::WorkerStartup("the engine closed".into()))
                    } else {
                        self.fork(worker, threads)
                    };
                    let _ = reply.send(forked);
                }
                Some(Command::Reload { then }) if !closed => {
                    tracing::info!(target: "wsgi_core", "starting a new template process to load the new code");
                    match self.start_template() {
                        Ok(new) => {
                            restart = None;
                            tracing::info!(target: "wsgi_core", template_pid = new.pid, "the new template process loaded the application; replacing the workers with ones forked from it");
                            if let Some(old) = self.current.replace(new) {
                                self.retire(old);
                            }
                            then();
                        }
                        Err(e) => {
                            tracing::error!(target: "wsgi_core", "the new code failed to load in a new template process; the workers keep serving the old code: {e}");
                        }
                    }
                }
                Some(Command::Reload { .. }) => {}
                Some(Command::Ended { generation }) => {
                    if self.ended(generation) && !closed {
                        restart = Some((Instant::now(), FIRST_RESTART_PAUSE));
                    }
                }
                Some(Command::Close) => {
                    closed = true;
                    restart = None;
                    if let Some(current) = self.current.take() {
                        self.retire(current);
                    }
                }
            }
        }
    }

    /// Starts a template again after the last one died, unless something else did.
    fn restart(&mut self) -> Result<(), Error> {
        if self.current.is_some() {
            return Ok(());
        }
        let running = self.start_template()?;
        tracing::info!(target: "wsgi_core", template_pid = running.pid, "a new template process loaded the application");
        self.current = Some(running);
        Ok(())
    }

    /// Reaps the template of `generation`, which ended; true if it was the current one
    /// (which the caller starts again).
    fn ended(&mut self, generation: u64) -> bool {
        if let Some(i) = self.retired.iter().position(|r| r.generation == generation) {
            let mut old = self.retired.swap_remove(i);
            let status = old.child.wait().map(describe_exit);
            tracing::info!(target: "wsgi_core", template_pid = old.pid, "a retired template process ended: {}", status.unwrap_or_else(|e| e.to_string()));
            return false;
        }
        let Some(current) = self
            .current
            .take_if(|current| current.generation == generation)
        else {
            return false;
        };
        let mut current = current;
        let status = current.child.wait().map(describe_exit);
        if self.closing.load(Ordering::Acquire) {
            return false;
        }
        tracing::error!(
            target: "wsgi_core",
            template_pid = current.pid,
            age_s = current.ready_at.elapsed().as_secs(),
            "the template process died ({}); the workers forked from it serve on, and a new one is started",
            status.unwrap_or_else(|e| e.to_string())
        );
        true
    }

    /// Tells `old` to exit once its workers have, and keeps it until it does.
    fn retire(&mut self, old: Running) {
        let mut writer = FrameWriter::new(&old.socket);
        let _ = writer.send(&ToTemplate::Retire);
        self.retired.push(old);
    }

    /// Starts a template and waits until it has loaded the application.
    fn start_template(&mut self) -> Result<Running, Error> {
        self.generation += 1;
        let generation = self.generation;
        let (mut child, socket) = spawn_template().map_err(Error::WorkerSpawn)?;
        let pid = child.id();
        let fail = |child: &mut Child, e: Error| {
            let _ = child.kill();
            let _ = child.wait();
            e
        };
        let read_half = match socket.try_clone() {
            Ok(read_half) => read_half,
            Err(e) => return Err(fail(&mut child, Error::WorkerChannel(e))),
        };
        if let Err(e) = FrameWriter::new(&socket).send(&ToTemplate::Config(self.config.clone())) {
            return Err(fail(&mut child, Error::WorkerChannel(e)));
        }
        let (answers_tx, answers) = mpsc::channel();
        let reaped = Arc::new(Reaped::default());
        let (reaped_, commands) = (reaped.clone(), self.commands.clone());
        let read = std::thread::Builder::new()
            .name("wsgi-template-log".into())
            .spawn(move || {
                read_template(read_half, pid, &answers_tx, &reaped_, &commands, generation)
            });
        if let Err(e) = read {
            return Err(fail(&mut child, Error::Thread(e)));
        }
        let deadline = Instant::now() + self.start_timeout;
        let mut said_anything = false;
        loop {
            if self.closing.load(Ordering::Acquire) {
                return Err(fail(
                    &mut child,
                    Error::WorkerStartup("the engine closed".into()),
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(fail(
                    &mut child,
                    Error::WorkerStartTimeout {
                        secs: self.start_timeout.as_secs_f64(),
                    },
                ));
            }
            match answers.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(Answer::Ready) => {
                    return Ok(Running {
                        generation,
                        child,
                        pid,
                        socket,
                        answers,
                        reaped,
                        ready_at: Instant::now(),
                    });
                }
                Ok(Answer::Failed(e)) => {
                    // It exits after saying so.
                    let _ = child.wait();
                    return Err(e);
                }
                Ok(Answer::Logged) => said_anything = true,
                Ok(Answer::Forked { .. } | Answer::ForkFailed { .. })
                | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let status = describe_exit(child.wait().map_err(Error::WorkerChannel)?);
                    return Err(if said_anything {
                        Error::WorkerCrashed { pid, status }
                    } else {
                        Error::WorkerExitedEarly { pid, status }
                    });
                }
            }
        }
    }

    /// Asks the current template (started first if there is none) to fork a process for
    /// `worker`.
    fn fork(&mut self, worker: WorkerId, threads: usize) -> Forked {
        if self.current.is_none() {
            self.restart()?;
        }
        let running = self.current.as_ref().expect("started above");
        let (channels, ends) = make_channels(threads).map_err(Error::WorkerSpawn)?;
        send_fork(&running.socket, worker, &ends).map_err(Error::WorkerChannel)?;
        drop(ends);
        let deadline = Instant::now() + FORK_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match running.answers.recv_timeout(left) {
                Ok(Answer::Forked { worker: w, pid }) if w == worker => {
                    let pidfd = check_forked(pid, running.pid)?;
                    let child = ForkedChild::new(pid, pidfd, running.reaped.clone());
                    return Ok((WorkerChild::Forked(child), channels));
                }
                Ok(Answer::ForkFailed { worker: w, error }) if w == worker => return Err(error),
                // An answer to an earlier request that timed out: that worker's channels
                // are closed, and it exits.
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::WorkerStartup(format!(
                        "the template process did not fork a worker within {} s",
                        FORK_TIMEOUT.as_secs()
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::WorkerStartup(
                        "the template process ended while forking a worker".into(),
                    ));
                }
            }
        }
    }
}

/// Sends the request to fork a process for `worker`, with its ends of the channels.
fn send_fork(socket: &UnixStream, worker: WorkerId, ends: &[OwnedFd]) -> io::Result<()> {
    let mut frame = FrameWriter::new(Vec::new());
    frame.send(&ToTemplate::Fork {
        worker,
        descriptors: u32::try_from(ends.len()).unwrap_or(u32::MAX),
    })?;
    let fds: Vec<BorrowedFd<'_>> = ends.iter().map(AsFd::as_fd).collect();
    send_with_fds(socket, frame.get_ref(), &fds)
}

/// A pidfd for the worker the template says it forked, once it is seen to be the
/// template's child: a pid the template reported could, in principle, already name
/// another process if that worker died and was reaped at once.
fn check_forked(pid: u32, template: u32) -> Result<Option<OwnedFd>, Error> {
    let pidfd = pidfd_open(pid);
    let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The command name, in parentheses, may hold spaces: fields follow the last ')'.
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().nth(1)?.parse::<u32>().ok()
        });
    if parent != Some(template) {
        return Err(Error::WorkerStartup(format!(
            "worker process {pid} ended right after the template forked it"
        )));
    }
    Ok(pidfd)
}

/// Reads template `pid`'s socket until it closes: logs go to the host's `tracing`,
/// answers to the keeper, workers' ends to `reaped`; then the keeper hears it ended.
fn read_template(
    socket: UnixStream,
    pid: u32,
    answers: &mpsc::Sender<Answer>,
    reaped: &Reaped,
    commands: &mpsc::Sender<Command>,
    generation: u64,
) {
    let mut reader = FrameReader::new(socket);
    let mut logged = false;
    loop {
        let answer = match reader.recv() {
            Ok(Some(FromTemplate::Control(ControlFromWorker::Log(record)))) => {
                log::emit(&record, pid);
                if logged {
                    continue;
                }
                logged = true;
                Answer::Logged
            }
            Ok(Some(FromTemplate::Control(ControlFromWorker::Ready { .. }))) => Answer::Ready,
            Ok(Some(FromTemplate::Control(ControlFromWorker::StartupFailed(error)))) => {
                Answer::Failed(*error)
            }
            Ok(Some(FromTemplate::Control(ControlFromWorker::Stats { .. }))) => continue,
            Ok(Some(FromTemplate::Forked { worker, pid })) => Answer::Forked { worker, pid },
            Ok(Some(FromTemplate::ForkFailed { worker, error })) => Answer::ForkFailed {
                worker,
                error: *error,
            },
            Ok(Some(FromTemplate::Reaped { pid, status })) => {
                reaped.report(pid, status);
                continue;
            }
            Ok(None) | Err(_) => break,
        };
        let _ = answers.send(answer);
    }
    reaped.template_gone();
    let _ = commands.send(Command::Ended { generation });
}
