//! The template process of preloading (`EngineBuilder::preload`): it imports the
//! application once, then forks each worker from itself at the host's request, so workers
//! start in milliseconds and share the application's memory with it, copy-on-write.
//!
//! It is started as a worker is (the host binary again, `spawn::spawn_template`), with one
//! socket to the host. It never serves, and must never run a second thread: `fork` copies
//! only the calling thread, so a child of a process with others could find a lock held by
//! a thread that does not exist in it. So it logs straight onto its socket ([`LogWay::Direct`])
//! rather than through a writer thread, waits for the host and its children in one `poll`,
//! and checks before every fork that neither Python nor native code started a thread
//! (an application that starts one while it is imported is refused, with the fix named).
//!
//! To fork a worker, the host sends the new worker's ends of its channels with the request
//! (`wire::handoff`); the child takes them, leaves the template's socket, and enters the
//! worker's serving loop with the application already loaded ([`worker::run_forked`]).
//! The descriptors stay where they arrived rather than being moved to the numbers an
//! exec'd worker finds them at: in a forked process those numbers may hold files the
//! application opened while it was imported. The template reaps its children and reports
//! how each ended, since the host is not their parent; it answers a fork with the child's
//! pid, which the host checks and watches with a pidfd.
//!
//! A forked worker has no parent-death signal (`fork` clears it, and set again it would
//! fire when the template dies, which workers must survive); it leaves when the host does
//! because its sockets to the host close, as every worker does. The template itself dies
//! with the host's `wsgi-template` thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::Error;
use crate::process::log::{CONTROL_QUEUE, LogSwitch, LogWay, WorkerSubscriber, control_channel};
use crate::process::wire::channels::Channels;
use crate::process::wire::frame::{FrameReader, FrameWriter};
use crate::process::wire::handoff::FdReader;
use crate::process::wire::messages::{ControlFromWorker, FromTemplate, ToTemplate, WorkerConfig};
use crate::process::wire::started::StartedPage;
use crate::process::worker::{self, Preloaded};
use crate::python;
use crate::python::preload::{Forked, Hook};

type Writer = Arc<Mutex<FrameWriter<UnixStream, FromTemplate>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the template over its socket to the host; returns the process's exit code, or, in
/// a forked child, the worker's.
pub(crate) fn run(socket: UnixStream) -> i32 {
    worker::ignore_stop_signals();
    let Ok(read_half) = socket.try_clone() else {
        return 1;
    };
    let mut reader = FrameReader::new(FdReader::new(read_half));
    let config = match reader.recv() {
        Ok(Some(ToTemplate::Config(config))) => config,
        _ => return 1,
    };
    let writer: Writer = Arc::new(Mutex::new(FrameWriter::new(socket)));
    let (subscriber, switch) =
        WorkerSubscriber::switchable(LogWay::Direct(writer.clone()), config.log_level);
    let _ = tracing::subscriber::set_global_default(subscriber);
    let (callable, hook) = match load(&config) {
        Ok(loaded) => loaded,
        Err(error) => {
            let _ = say(
                &writer,
                &FromTemplate::Control(ControlFromWorker::StartupFailed(Box::new(error))),
            );
            return 1;
        }
    };
    let ready = FromTemplate::Control(ControlFromWorker::Ready {
        pid: std::process::id(),
        python: python::python_info().version.clone(),
    });
    if say(&writer, &ready).is_err() {
        return 1;
    }
    match serve(&mut reader, &writer) {
        Some(channels) => {
            // The child: from here on it is a worker, which must not write on the
            // template's socket, nor keep it open (the host notices the template's end by
            // its socket's).
            let child_log = switch_to_own_log(&switch);
            drop(reader);
            drop(writer);
            worker::run_forked(
                channels,
                Preloaded {
                    callable,
                    hook,
                    log: child_log,
                },
            )
        }
        None => 0,
    }
}

/// Imports the application and the post-fork hook, freezes what they loaded, and checks
/// that the import left no thread running.
fn load(config: &WorkerConfig) -> Result<(pyo3::Py<pyo3::PyAny>, Option<Hook>), Error> {
    let callable = python::load_app(&worker::app_config(config))?;
    let hook = config
        .post_fork
        .as_deref()
        .map(python::preload::load_hook)
        .transpose()?;
    python::preload::freeze()?;
    check_alone()?;
    Ok((callable, hook))
}

fn say(writer: &Writer, msg: &FromTemplate) -> io::Result<()> {
    lock(writer).send(msg)
}

/// A forked child's own log channel, which its worker loop's writer thread will drain;
/// records logged until then wait in it.
fn switch_to_own_log(
    switch: &LogSwitch,
) -> (
    crate::process::log::ControlSender,
    std::sync::mpsc::Receiver<ControlFromWorker>,
) {
    let (sender, rx) = control_channel(CONTROL_QUEUE);
    switch.set(LogWay::Queue(sender.clone()));
    (sender, rx)
}

/// Fails unless this process runs only the calling thread, naming the others: Python's by
/// name, and those native code started by their kernel names.
fn check_alone() -> Result<(), Error> {
    let python_threads = python::preload::other_threads()?;
    let own = std::process::id().to_string();
    let native: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map_err(|e| Error::WorkerStartup(format!("cannot list this process's threads: {e}")))?
        .filter_map(Result::ok)
        .filter(|task| task.file_name().to_str() != Some(own.as_str()))
        .map(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .map(|name| name.trim_end().to_owned())
                .unwrap_or_else(|_| "?".into())
        })
        .collect();
    if native.is_empty() && python_threads.is_empty() {
        return Ok(());
    }
    let mut threads: Vec<String> = python_threads
        .into_iter()
        .map(|name| format!("{name} (Python)"))
        .collect();
    // Every Python thread is a native one too; the rest were started by native code.
    if native.len() > threads.len() {
        threads.push(format!(
            "{} native (kernel names of all: {})",
            native.len() - threads.len(),
            native.join(", ")
        ));
    }
    Err(Error::PreloadThreads { threads })
}

/// A worker forked from here, until it is reaped.
struct Child {
    pid: u32,
    /// Readable once it has ended; `None` where the kernel has no pidfds (before 5.3),
    /// when the template looks for ended children every second instead.
    pidfd: Option<OwnedFd>,
}

/// Takes the host's requests and reaps the workers until the host leaves (`None`), or, in
/// a child just forked, returns its channels.
fn serve(reader: &mut FrameReader<FdReader, ToTemplate>, writer: &Writer) -> Option<Channels> {
    let mut children: Vec<Child> = Vec::new();
    let mut retiring = false;
    loop {
        if retiring && children.is_empty() {
            return None;
        }
        if !reader.has_buffered() {
            let readable = wait(reader.get_mut().socket(), &children);
            if reap(&mut children, writer).is_err() {
                return None;
            }
            if !readable {
                continue;
            }
        }
        match reader.recv() {
            Ok(Some(ToTemplate::Fork {
                worker,
                descriptors,
            })) => {
                let answer = match fork_worker(reader.get_mut(), descriptors as usize) {
                    Ok(Side::Child(channels)) => return Some(channels),
                    Ok(Side::Parent(pid)) => {
                        children.push(Child {
                            pid,
                            pidfd: pidfd_open(pid),
                        });
                        FromTemplate::Forked { worker, pid }
                    }
                    Err(error) => FromTemplate::ForkFailed {
                        worker,
                        error: Box::new(error),
                    },
                };
                if say(writer, &answer).is_err() {
                    return None;
                }
            }
            Ok(Some(ToTemplate::Retire)) => retiring = true,
            Ok(Some(ToTemplate::Config(_))) => {}
            // The host has gone: its workers see their own sockets close and exit.
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Waits until the host's socket is readable (true) or a child may have ended (false).
fn wait(socket: &UnixStream, children: &[Child]) -> bool {
    let mut fds = vec![libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    fds.extend(
        children
            .iter()
            .filter_map(|c| c.pidfd.as_ref())
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }),
    );
    let timeout = if children.iter().all(|c| c.pidfd.is_some()) {
        -1
    } else {
        1000
    };
    // SAFETY: `fds` is a live array of `fds.len()` pollfds that poll may write into.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    n > 0 && fds[0].revents != 0
}

/// Reaps every child that has ended, and tells the host how.
fn reap(children: &mut Vec<Child>, writer: &Writer) -> io::Result<()> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a local; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        let Ok(pid) = u32::try_from(pid) else {
            return Ok(());
        };
        if pid == 0 {
            return Ok(());
        }
        children.retain(|c| c.pid != pid);
        say(writer, &FromTemplate::Reaped { pid, status })?;
    }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: `pidfd_open` takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

enum Side {
    Parent(u32),
    Child(Channels),
}

/// Forks a worker whose channels are the `count` descriptors the request carried.
fn fork_worker(reader: &mut FdReader, count: usize) -> Result<Side, Error> {
    let bad = |e: io::Error| Error::WorkerStartup(format!("the worker's descriptors: {e}"));
    let mut fds = reader.take_fds(count).map_err(bad)?;
    if count < 4 {
        return Err(bad(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{count} descriptors, fewer than a worker has"),
        )));
    }
    let page = fds.pop().expect("at least 4");
    let mut sockets = fds.into_iter().map(UnixStream::from);
    let (Some(control), Some(intake)) = (sockets.next(), sockets.next()) else {
        unreachable!("at least 3 sockets");
    };
    let slots: Vec<UnixStream> = sockets.collect();
    let started = StartedPage::open(page, slots.len()).map_err(bad)?;
    let channels = Channels {
        control,
        intake,
        slots,
        started,
    };
    // Checked before each fork, not only after the import: nothing may have started one
    // since, but a thread here would break every worker forked after it.
    check_alone()?;
    match python::preload::fork().map_err(Error::WorkerSpawn)? {
        // The parent's copies close as `channels` drops: the worker holds its own.
        Forked::Parent(pid) => Ok(Side::Parent(pid)),
        Forked::Child => Ok(Side::Child(channels)),
    }
}
