//! A worker process as its supervisor holds it: a child this process spawned, or a worker
//! the template of preloading forked, which is the template's child, not ours. For those,
//! a pidfd stands for the process (signals reach it and no other, even once its pid is
//! reused), and the template reports how it ended, having reaped it. The pool's
//! [`Launcher`] says which kind a supervisor gets.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::lock;
use super::template::Template;
#[cfg(test)]
use super::testing::{FakeChild, FakeLauncher};
use crate::error::Error;
use crate::process::ids::WorkerId;
use crate::process::spawn::{Exits, spawn_worker};
use crate::process::wire::channels::Channels;

/// Where a pool's worker processes come from.
#[derive(Debug)]
pub(super) enum Launcher {
    /// Spawned: the host binary started again.
    Spawn,
    /// Forked by the template of preloading, which imported the application once.
    Fork(Template),
    /// A test's fake processes, whose worker side the test plays.
    #[cfg(test)]
    Fake(Arc<FakeLauncher>),
}

impl Launcher {
    /// A new process for `worker`, with `threads` slots, and the host's ends of its
    /// channels; it has been sent nothing yet.
    pub(super) fn launch(
        &self,
        worker: WorkerId,
        threads: usize,
    ) -> Result<(WorkerChild, Channels), Error> {
        match self {
            Launcher::Spawn => {
                let (child, channels) = spawn_worker(threads).map_err(Error::WorkerChannel)?;
                Ok((WorkerChild::Spawned(child), channels))
            }
            Launcher::Fork(template) => template.fork(worker, threads),
            #[cfg(test)]
            Launcher::Fake(fake) => fake.launch(worker, threads),
        }
    }

    /// The template workers are forked from, with preloading.
    pub(super) fn template(&self) -> Option<&Template> {
        match self {
            Launcher::Fork(template) => Some(template),
            _ => None,
        }
    }
}

/// A worker process.
#[derive(Debug)]
pub(super) enum WorkerChild {
    /// Started by this process (the binary again).
    Spawned(Child),
    /// Forked by the template.
    Forked(ForkedChild),
    /// A test's stand-in.
    #[cfg(test)]
    Fake(FakeChild),
}

/// A worker the template forked.
#[derive(Debug)]
pub(super) struct ForkedChild {
    pid: u32,
    /// `None` where the kernel has no pidfds (before Linux 5.3).
    pidfd: Option<OwnedFd>,
    /// Where its template reports its end.
    reaped: Arc<Reaped>,
    status: Option<ExitStatus>,
}

impl ForkedChild {
    pub(super) fn new(pid: u32, pidfd: Option<OwnedFd>, reaped: Arc<Reaped>) -> Self {
        ForkedChild {
            pid,
            pidfd,
            reaped,
            status: None,
        }
    }

    /// Whether the process has ended (reaped or not).
    fn ended(&self) -> bool {
        match &self.pidfd {
            Some(pidfd) => wait_readable(&[pidfd.as_fd()], Some(Duration::ZERO)),
            // SAFETY: signal 0 only checks that the process exists; no signal is sent.
            None => (unsafe { libc::kill(self.pid as libc::pid_t, 0) }) == -1,
        }
    }

    /// Waits until the process has ended, when its template can no longer say.
    fn wait_ended(&self) {
        while !self.ended() {
            match &self.pidfd {
                Some(pidfd) => {
                    wait_readable(&[pidfd.as_fd()], None);
                }
                // Without a pidfd (before Linux 5.3) the end of a process that is not our
                // child shows only by looking again: nothing can be waited on.
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn lost() -> io::Error {
        io::Error::other("its template process ended first, and took its exit status along")
    }
}

/// Waits until one of `fds` is readable (a pidfd is once its process has ended) or
/// `timeout` passes (`None`: however long it takes); whether one is.
pub(super) fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> bool {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Rounded up, so that a wait never ends before its deadline.
    let timeout_ms = timeout.map_or(-1, |t| {
        let ms = t.as_millis() + u128::from(t.subsec_nanos() % 1_000_000 != 0);
        i32::try_from(ms).unwrap_or(i32::MAX)
    });
    let count = pollfds.len() as libc::nfds_t;
    // SAFETY: `pollfds` is a live array of `count` pollfds that poll may write into.
    unsafe { libc::poll(pollfds.as_mut_ptr(), count, timeout_ms) > 0 }
}

/// A pidfd for process `pid`; `None` where the kernel has none, or the process is gone.
pub(super) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: `pidfd_open` takes a pid and flags and returns a new descriptor or -1; no
    // memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends SIGKILL to the process behind `pidfd`.
pub(super) fn kill_pidfd(pidfd: &OwnedFd) -> io::Result<()> {
    // SAFETY: `pidfd` is an open pidfd; the call reads no memory of ours (no siginfo) and
    // has no other side effect than sending the signal.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if sent == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl WorkerChild {
    pub(super) fn id(&self) -> u32 {
        match self {
            WorkerChild::Spawned(child) => child.id(),
            WorkerChild::Forked(forked) => forked.pid,
            #[cfg(test)]
            WorkerChild::Fake(fake) => fake.id(),
        }
    }

    /// Whether the template forked it.
    pub(super) fn is_forked(&self) -> bool {
        matches!(self, WorkerChild::Forked(_))
    }

    /// Kills it (SIGKILL).
    pub(super) fn kill(&mut self) -> io::Result<()> {
        match self {
            WorkerChild::Spawned(child) => child.kill(),
            WorkerChild::Forked(forked) => match &forked.pidfd {
                Some(pidfd) => kill_pidfd(pidfd),
                // Without a pidfd the pid may be reused once the template has reaped it:
                // only before then is it still ours to signal.
                None if forked.status.is_none()
                    && !lock(&forked.reaped.state)
                        .statuses
                        .contains_key(&forked.pid) =>
                {
                    // SAFETY: sends a signal to a pid; no memory is involved.
                    if unsafe { libc::kill(forked.pid as libc::pid_t, libc::SIGKILL) } == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                }
                None => Ok(()),
            },
            #[cfg(test)]
            WorkerChild::Fake(fake) => {
                fake.kill();
                Ok(())
            }
        }
    }

    /// Waits for it to end; for a forked one, until its template reports the end.
    pub(super) fn wait(&mut self) -> io::Result<ExitStatus> {
        let forked = match self {
            WorkerChild::Spawned(child) => return child.wait(),
            WorkerChild::Forked(forked) => forked,
            #[cfg(test)]
            WorkerChild::Fake(fake) => return Ok(fake.wait()),
        };
        if let Some(status) = forked.status {
            return Ok(status);
        }
        let reaped = forked.reaped.clone();
        let mut state = lock(&reaped.state);
        loop {
            if let Some(raw) = state.statuses.remove(&forked.pid) {
                let status = ExitStatus::from_raw(raw);
                forked.status = Some(status);
                return Ok(status);
            }
            if state.template_gone {
                drop(state);
                forked.wait_ended();
                return Err(ForkedChild::lost());
            }
            state = reaped
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// How it ended, if it has.
    pub(super) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let forked = match self {
            WorkerChild::Spawned(child) => return child.try_wait(),
            WorkerChild::Forked(forked) => forked,
            #[cfg(test)]
            WorkerChild::Fake(fake) => return Ok(fake.try_wait()),
        };
        if forked.status.is_some() {
            return forked.status.map(Some).ok_or_else(ForkedChild::lost);
        }
        let (known, gone) = {
            let state = lock(&forked.reaped.state);
            (
                state.statuses.contains_key(&forked.pid),
                state.template_gone,
            )
        };
        // A process that has ended is reaped and reported by its template at once.
        if known || (!gone && forked.pidfd.is_some() && forked.ended()) {
            return self.wait().map(Some);
        }
        if gone && forked.ended() {
            return Err(ForkedChild::lost());
        }
        Ok(None)
    }

    /// A new pidfd for it, for waiting on its end; `None` where the kernel has none.
    pub(super) fn pidfd(&self) -> Option<OwnedFd> {
        match self {
            WorkerChild::Spawned(child) => pidfd_open(child.id()),
            WorkerChild::Forked(forked) => forked.pidfd.as_ref().and_then(|fd| fd.try_clone().ok()),
            #[cfg(test)]
            WorkerChild::Fake(fake) => fake.pidfd(),
        }
    }
}

impl Exits for WorkerChild {
    fn pid(&self) -> u32 {
        self.id()
    }

    fn wait(&mut self) -> io::Result<ExitStatus> {
        WorkerChild::wait(self)
    }
}

/// How the workers a template forked ended, as it reports them.
#[derive(Debug, Default)]
pub(super) struct Reaped {
    state: Mutex<ReapedState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct ReapedState {
    /// Wait statuses by pid, until their worker's supervisor takes them.
    statuses: HashMap<u32, i32>,
    /// The template has ended: no more reports will come.
    template_gone: bool,
}

impl Reaped {
    pub(super) fn report(&self, pid: u32, status: i32) {
        lock(&self.state).statuses.insert(pid, status);
        self.changed.notify_all();
    }

    pub(super) fn template_gone(&self) {
        lock(&self.state).template_gone = true;
        self.changed.notify_all();
    }
}
