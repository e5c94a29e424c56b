//! Worker processes: Python runs in child processes that the host feeds over UNIX sockets,
//! so a crash in a C extension costs one worker instead of the host.
//!
//! The pieces, bottom up: [`wire`] frames bytes on a socket; [`messages`] are what the two
//! sides say; [`started`] is the memory they share to say which requests a worker began;
//! [`spawn`] starts a worker (the host binary re-executed) and holds the hook a worker's
//! `main` calls; [`log`] carries a worker's `tracing` events to the host's; `child` is the
//! worker's serving loop.

#[cfg(target_os = "linux")]
mod child;
pub(crate) mod log;
pub(crate) mod messages;
pub(crate) mod spawn;
pub(crate) mod started;
pub(crate) mod wire;

pub use spawn::run_if_worker;
