//! Starting worker processes: the host binary re-executed with a marker in its environment,
//! its sockets waiting at known descriptors.
//!
//! The host never `fork()`s itself into a worker: once tokio or any other thread runs, a
//! forked child may only make async-signal-safe calls until it `exec`s. So a worker is a
//! fresh run of the same binary (`/proc/self/exe`, which still names the running binary
//! after a deploy replaced the file on disk), and the binary's `main` hands over to the
//! worker code first thing through [`run_if_worker`].
//!
//! The template of preloading (`EngineBuilder::preload`) starts the same way, with the
//! marker `WSGI_CORE_WORKER=template:<parent pid>` and one socket; the workers it forks
//! never pass through here.
//!
//! The marker, `WSGI_CORE_WORKER=<descriptors>:<parent pid>`, also guards against a fork
//! bomb: a binary whose `main` forgot the hook would run `main` again in every worker and
//! start workers of its own; [`forbid_nested`] refuses that with an error naming the line
//! to add.

#[cfg(target_os = "linux")]
pub(crate) use linux::{
    Exits, describe_exit, make_channels, spawn_template, spawn_worker, wait_ready,
};

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Error;

/// The environment variable that marks a worker process: `<descriptors>:<parent pid>`, or
/// `template:<parent pid>` for the template of preloading.
pub(crate) const MARKER: &str = "WSGI_CORE_WORKER";

/// What the marker of a template starts with.
const TEMPLATE_MARKER: &str = "template:";

/// The descriptor of the control socket in a worker; the intake socket, the slots' sockets
/// and the started page's memory file follow it.
pub(crate) const FIRST_FD: i32 = 3;

/// Set once this process became a worker, for [`forbid_nested`].
static IS_WORKER: AtomicBool = AtomicBool::new(false);

/// Turns this process into a wsgi-core worker process if it was started as one, and never
/// returns then; otherwise returns at once (the cost is one environment lookup).
///
/// Worker processes (`EngineBuilder::processes`) are this very binary started again, with
/// a marker in the environment. Call this as **the first line of `main`**, before parsing
/// arguments, starting threads or a runtime, so a worker process hands over to wsgi-core
/// instead of running your program a second time. A binary that forgets it cannot start
/// worker processes: the engine reports an error naming this function.
///
/// # Example
///
/// ```no_run
/// fn main() {
///     wsgi_core::run_if_worker();
///     // ... the host program: parse arguments, build the engine, serve ...
/// }
/// ```
#[allow(
    clippy::needless_doctest_main,
    reason = "the example is where the call goes in main"
)]
pub fn run_if_worker() {
    let Some(marker) = std::env::var_os(MARKER) else {
        return;
    };
    #[cfg(target_os = "linux")]
    {
        if let Some(parent) = marker
            .to_str()
            .and_then(|m| m.strip_prefix(TEMPLATE_MARKER))
        {
            let parent = parent.parse().unwrap_or(0);
            linux::become_template(parent, super::template::run);
        }
        linux::become_worker(marker, super::worker::run);
    }
    #[cfg(not(target_os = "linux"))]
    {
        eprintln!(
            "wsgi-core: {MARKER}={marker:?} is set, but worker processes are supported on \
             Linux only; unset the variable"
        );
        std::process::exit(2);
    }
}

/// Fails when this process is a worker process, or carries the marker of one: starting
/// workers from here would be a fork bomb. The marker without the hook having run means the
/// binary's `main` did not call [`run_if_worker`], and the error says to add it.
pub(crate) fn forbid_nested() -> Result<(), Error> {
    if is_worker() || std::env::var_os(MARKER).is_some() {
        return Err(Error::NestedWorker);
    }
    Ok(())
}

/// Whether this process runs as a worker process.
pub(crate) fn is_worker() -> bool {
    IS_WORKER.load(Ordering::Relaxed)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::OsString;
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::atomic::Ordering;

    use super::{FIRST_FD, IS_WORKER, MARKER, TEMPLATE_MARKER, forbid_nested};
    use crate::error::Error;
    use crate::process::log;
    use crate::process::wire::channels::Channels;
    use crate::process::wire::frame::{FrameReader, ReadInto};
    use crate::process::wire::messages::ControlFromWorker;
    use crate::process::wire::started::StartedPage;

    /// Starts a worker process with `threads` slots; returns the child and the host's ends of
    /// its channels.
    ///
    /// The worker is killed (`SIGKILL`) when its parent goes away, so a host killed with
    /// `SIGKILL` leaves no worker behind. Linux ties that signal to the **thread** that
    /// spawned the child, not to the process: call this from a thread that lives as long as
    /// the workers it starts (the supervisor's), never from a short-lived helper thread or a
    /// runtime's blocking pool, or the worker dies when that thread ends.
    ///
    /// Fails with an error wrapping [`Error::NestedWorker`] in a worker process.
    pub(crate) fn spawn_worker(threads: usize) -> io::Result<(Child, Channels)> {
        spawn_worker_with(threads, &[])
    }

    /// [`spawn_worker`] with extra arguments for the child (tests select a test with them).
    pub(super) fn spawn_worker_with(
        threads: usize,
        args: &[&str],
    ) -> io::Result<(Child, Channels)> {
        forbid_nested().map_err(io::Error::other)?;
        if threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a worker process needs at least one thread",
            ));
        }
        let (channels, ends) = make_channels(threads)?;
        // Control, intake, the slots, the started page's file.
        let count = ends.len() - 1;
        let first_free = i32::try_from(ends.len())
            .ok()
            .and_then(|n| n.checked_add(FIRST_FD))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many threads"))?;
        // Above the target range, so no `dup2` onto a target can close another source.
        let child_ends = ends
            .iter()
            .map(|end| dup_above(end.as_fd(), first_free))
            .collect::<io::Result<Vec<_>>>()?;
        drop(ends);
        let sources: Vec<RawFd> = child_ends.iter().map(AsRawFd::as_raw_fd).collect();
        let child = reexec(args, &format!("{count}:"), sources)?;
        drop(child_ends);
        Ok((child, channels))
    }

    /// Starts this binary again, marked `<marker><our pid>`, its descriptors `sources`
    /// moved to [`FIRST_FD`] onwards, tied to the calling thread's life (see
    /// [`spawn_worker`]).
    fn reexec(args: &[&str], marker: &str, sources: Vec<RawFd>) -> io::Result<Child> {
        let parent = std::process::id();
        let mut command = Command::new("/proc/self/exe");
        if let Some(arg0) = std::env::args_os().next() {
            command.arg0(arg0);
        }
        command
            .args(args)
            .env(MARKER, format!("{marker}{parent}"))
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        // SAFETY: the closure runs in the forked child before `exec`, where only
        // async-signal-safe calls are allowed. `map_descriptors` makes only `dup2`, `prctl`,
        // `getppid` and `_exit` calls and reads `sources`, a vector allocated before the
        // fork; it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(move || map_descriptors(&sources, parent));
        }
        command.spawn()
    }

    /// A new worker's channels for `threads` slots: the host's ends, and the worker's, in
    /// the order a worker finds them from [`FIRST_FD`] (control, intake, the slots, the
    /// started page's file), all close-on-exec, so no other child started meanwhile keeps
    /// one open.
    pub(crate) fn make_channels(threads: usize) -> io::Result<(Channels, Vec<OwnedFd>)> {
        let mut host_ends = Vec::with_capacity(threads + 2);
        let mut worker_ends = Vec::with_capacity(threads + 3);
        for _ in 0..threads + 2 {
            let (ours, theirs) = UnixStream::pair()?;
            host_ends.push(ours);
            worker_ends.push(OwnedFd::from(theirs));
        }
        let started = StartedPage::create(threads)?;
        worker_ends.push(started.file().try_clone_to_owned()?);
        let mut ends = host_ends.into_iter();
        let (Some(control), Some(intake)) = (ends.next(), ends.next()) else {
            unreachable!("there are at least 2 sockets");
        };
        let channels = Channels {
            control,
            intake,
            slots: ends.collect(),
            started,
        };
        Ok((channels, worker_ends))
    }

    /// Starts the template of preloading; returns the child and the host's end of its
    /// socket. As for [`spawn_worker`], the template is killed when the calling thread
    /// ends: call this from a thread that lives as long as the template should.
    pub(crate) fn spawn_template() -> io::Result<(Child, UnixStream)> {
        forbid_nested().map_err(io::Error::other)?;
        let (ours, theirs) = UnixStream::pair()?;
        let source = dup_above(theirs.as_fd(), FIRST_FD + 1)?;
        drop(theirs);
        let child = reexec(&[], TEMPLATE_MARKER, vec![source.as_raw_fd()])?;
        drop(source);
        Ok((child, ours))
    }

    /// A close-on-exec duplicate of `fd` numbered `min` or higher.
    fn dup_above(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor we borrow; it creates a new descriptor.
        let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
        if new == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fcntl` just created `new`; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(new) })
    }

    /// In the forked child: the sockets to 3.., death signal armed, parent still there.
    fn map_descriptors(sources: &[RawFd], parent: u32) -> io::Result<()> {
        for (target, &source) in (FIRST_FD..).zip(sources) {
            // SAFETY: dup2 between descriptors this process holds. The new descriptor does
            // not inherit close-on-exec, so it survives `exec`; sources are all above the
            // target range, so no target is a source still to be copied.
            if unsafe { libc::dup2(source, target) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        arm_death_signal(parent)
    }

    /// Asks for `SIGKILL` when the parent goes away, then makes sure it has not gone already
    /// (a parent that died before `prctl` sends no signal, and the child is reparented).
    fn arm_death_signal(parent: u32) -> io::Result<()> {
        let sigkill = libc::SIGKILL as libc::c_ulong;
        // SAFETY: PR_SET_PDEATHSIG changes a flag of this process only; async-signal-safe.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sigkill) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: getppid cannot fail.
        if unsafe { libc::getppid() } as u32 != parent {
            // SAFETY: _exit ends the process at once; async-signal-safe.
            unsafe { libc::_exit(1) }
        }
        Ok(())
    }

    /// Runs this process as a worker: the marker leaves the environment, the sockets are
    /// adopted, `run` serves, and the process exits with its code.
    pub(in crate::process) fn become_worker(
        marker: OsString,
        run: impl FnOnce(Channels) -> i32,
    ) -> ! {
        // SAFETY: called from `run_if_worker`, documented as the first line of `main`, before
        // the program starts threads, so nothing reads the environment concurrently. The
        // variable must go so that processes the application starts are not workers.
        unsafe { std::env::remove_var(MARKER) };
        IS_WORKER.store(true, Ordering::Relaxed);
        let code = match adopt(&marker) {
            Ok(channels) => run(channels),
            Err(message) => {
                eprintln!("wsgi-core: {message}");
                2
            }
        };
        std::process::exit(code)
    }

    /// Runs this process as the template of preloading: the marker leaves the environment,
    /// its socket is adopted, `run` serves, and the process exits with its code.
    pub(in crate::process) fn become_template(
        parent: u32,
        run: impl FnOnce(UnixStream) -> i32,
    ) -> ! {
        // SAFETY: as in `become_worker`: the first line of `main`, no other thread yet.
        unsafe { std::env::remove_var(MARKER) };
        IS_WORKER.store(true, Ordering::Relaxed);
        let adopted = arm_death_signal(parent)
            .map_err(|_| "could not arm the parent-death signal".to_owned())
            .and_then(|()| check_socket(FIRST_FD))
            .and_then(|()| {
                // SAFETY: the parent put this socket at FIRST_FD for us (checked just above:
                // an open socket), and nothing else in this fresh process knows of it.
                let socket = unsafe { UnixStream::from_raw_fd(FIRST_FD) };
                set_cloexec(socket.as_fd()).map_err(|e| format!("fd {FIRST_FD}: {e}"))?;
                Ok(socket)
            });
        let code = match adopted {
            Ok(socket) => run(socket),
            Err(message) => {
                eprintln!("wsgi-core: {message}");
                2
            }
        };
        std::process::exit(code)
    }

    /// Checks the marker and takes ownership of the sockets it announces.
    fn adopt(marker: &OsString) -> Result<Channels, String> {
        let malformed = || {
            format!(
                "{MARKER}={marker:?} is malformed; the variable is reserved for the worker \
                 processes wsgi-core starts"
            )
        };
        let (count, parent) = marker
            .to_str()
            .and_then(|m| m.split_once(':'))
            .and_then(|(n, p)| Some((n.parse::<i32>().ok()?, p.parse::<u32>().ok()?)))
            .filter(|&(n, _)| (3..=65_536).contains(&n))
            .ok_or_else(malformed)?;
        // Armed before `exec` already; again here, the call is cheap and the check matters.
        if arm_death_signal(parent).is_err() {
            return Err("could not arm the parent-death signal".into());
        }
        let mut streams = Vec::new();
        for fd in FIRST_FD..FIRST_FD + count {
            check_socket(fd).map_err(|e| format!("{} ({})", e, malformed()))?;
            // SAFETY: the parent put this socket at `fd` for us (checked just above: an open
            // socket), and nothing else in this fresh process knows of it.
            let stream = unsafe { UnixStream::from_raw_fd(fd) };
            // Processes the application starts must not hold the sockets open: the host
            // notices a dead worker by the end of its streams.
            set_cloexec(stream.as_fd()).map_err(|e| format!("fd {fd}: {e}"))?;
            streams.push(stream);
        }
        let page = FIRST_FD + count;
        // SAFETY: as for the sockets; `StartedPage::open` checks that it is a memory file
        // big enough for the slots.
        let page = unsafe { OwnedFd::from_raw_fd(page) };
        set_cloexec(page.as_fd())
            .map_err(|e| format!("the started page: {e} ({})", malformed()))?;
        let slots = streams.len() - 2;
        let started = StartedPage::open(page, slots)
            .map_err(|e| format!("the started page: {e} ({})", malformed()))?;
        let mut streams = streams.into_iter();
        let (Some(control), Some(intake)) = (streams.next(), streams.next()) else {
            unreachable!("`count` is at least 3");
        };
        Ok(Channels {
            control,
            intake,
            slots: streams.collect(),
            started,
        })
    }

    fn check_socket(fd: RawFd) -> Result<(), String> {
        // SAFETY: an all-zero `stat` is a valid value to be overwritten by fstat.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes into `stat`, which we own; a bad fd makes it fail, not UB.
        if unsafe { libc::fstat(fd, &mut stat) } == -1 {
            return Err(format!(
                "descriptor {fd} is not open: {}",
                io::Error::last_os_error()
            ));
        }
        if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(format!("descriptor {fd} is not a socket"));
        }
        Ok(())
    }

    fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: F_SETFD on a descriptor we hold.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for a new worker's verdict on loading the application: its pid and Python
    /// version once ready, or the error it met, the same [`Error`] as in-process (an
    /// [`Error::AppImport`] stays one). Log records that come first are emitted into the
    /// host's `tracing`.
    ///
    /// A worker that exits without a word is reported as [`Error::WorkerExitedEarly`], whose
    /// message names [`run_if_worker`](crate::run_if_worker): that is what happens when the
    /// binary's `main` lacks the hook. One that logged first, then died, is
    /// [`Error::WorkerCrashed`]. The child is reaped in both cases and left alone otherwise.
    pub(crate) fn wait_ready<R: ReadInto>(
        child: &mut impl Exits,
        control: &mut FrameReader<R, ControlFromWorker>,
    ) -> Result<(u32, String), Error> {
        let pid = child.pid();
        let mut said_anything = false;
        loop {
            match control.recv() {
                Ok(Some(ControlFromWorker::Ready { pid, python })) => return Ok((pid, python)),
                Ok(Some(ControlFromWorker::StartupFailed(error))) => return Err(*error),
                Ok(Some(ControlFromWorker::Log(record))) => log::emit(&record, pid),
                Ok(Some(ControlFromWorker::Stats { .. })) => {}
                Ok(None) => {
                    let status = describe_exit(child.wait().map_err(Error::WorkerChannel)?);
                    return Err(if said_anything {
                        Error::WorkerCrashed { pid, status }
                    } else {
                        Error::WorkerExitedEarly { pid, status }
                    });
                }
                Err(e) => return Err(Error::WorkerChannel(e)),
            }
            said_anything = true;
        }
    }

    /// A process whose end can be waited for: a child, or a worker the template forked.
    pub(crate) trait Exits {
        /// Its process id.
        fn pid(&self) -> u32;
        /// Waits for it to end (and be reaped).
        fn wait(&mut self) -> io::Result<ExitStatus>;
    }

    impl Exits for Child {
        fn pid(&self) -> u32 {
            self.id()
        }

        fn wait(&mut self) -> io::Result<ExitStatus> {
            Child::wait(self)
        }
    }

    /// How a worker ended, for logs and errors: `exit status 1`, `killed by signal 11
    /// (SIGSEGV), core dumped`.
    pub(crate) fn describe_exit(status: ExitStatus) -> String {
        if let Some(code) = status.code() {
            return format!("exit status {code}");
        }
        let Some(signal) = status.signal() else {
            return status.to_string();
        };
        let name = match signal {
            libc::SIGABRT => " (SIGABRT)",
            libc::SIGHUP => " (SIGHUP)",
            libc::SIGBUS => " (SIGBUS)",
            libc::SIGFPE => " (SIGFPE)",
            libc::SIGILL => " (SIGILL)",
            libc::SIGINT => " (SIGINT)",
            libc::SIGKILL => " (SIGKILL)",
            libc::SIGSEGV => " (SIGSEGV)",
            libc::SIGTERM => " (SIGTERM)",
            _ => "",
        };
        let core = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        format!("killed by signal {signal}{name}{core}")
    }

    #[cfg(test)]
    pub(super) mod testing {
        pub(in crate::process::spawn) use super::{become_worker, spawn_worker_with};
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests;
