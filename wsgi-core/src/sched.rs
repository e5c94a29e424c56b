//! The scheduling policy that suits the engine's threads.

/// Marks the calling thread `SCHED_BATCH` (Linux; elsewhere it does nothing): the same
/// priority and CPU share, but waking another thread no longer hands it the CPU at once.
///
/// A request crosses threads twice: the host's I/O thread wakes a Python thread with the
/// request, and the Python thread wakes the I/O thread with the response. When they share
/// a core, each wake-up under the default policy preempts the waker, so requests are read,
/// run and written one at a time with two context switches each. Without that preemption
/// the I/O thread reads every request that has arrived before it yields, the Python thread
/// serves them all without letting go of the GIL, and the I/O thread then writes all the
/// responses. The engine does this for its own Python threads; a host may do it for its
/// I/O threads, e.g. with tokio's `Builder::on_thread_start`, or for the whole process
/// before it starts any thread (threads inherit the policy), as `serve` does.
///
/// It raises throughput when the server's threads share a core (the measurements, for the
/// Python threads alone and for the whole process, are in the repository's
/// `benches/README.md`); single-connection latency does not change measurably, and where
/// every thread has a core of its own the policy changes nothing.
///
/// # Errors
///
/// The OS error if the policy cannot be set (it needs no privilege on Linux).
pub fn batch_scheduling() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid, initialised `sched_param` that outlives the call; pid 0
        // means the calling thread; SCHED_BATCH requires priority 0 and no privilege.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
