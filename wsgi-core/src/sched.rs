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
/// Measured on two vCPUs with the server pinned to one, 64 connections, requests/s: with
/// only the Python threads batch, hello-world 63-75k -> 73k, Flask 9-10k -> 11.5k, a 1 MiB
/// stream 1.2-2.3k -> 2.4-3k; with the I/O thread batch too, Flask 10.1-10.4k -> 11.7-13k
/// and hello-world 65-69k -> 67-77k in the same run. Single-connection latency did not
/// change measurably. Where every thread has a core of its own the policy changes nothing.
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
