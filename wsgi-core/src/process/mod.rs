//! Worker processes: Python runs in child processes that the host feeds over UNIX sockets,
//! so a crash in a C extension costs one worker instead of the host.
//!
//! One home, split by the side of the socket the code runs on:
//!
//! - [`wire`]: what both sides share: frames, the messages, the started page, the
//!   channels' ends; [`ids`]: the numbers that name workers and their parts.
//! - `host`: the host's side: the runner the engine uses, the queue of slots, the relay
//!   and its reactor, one supervisor per worker.
//! - `worker`: the worker's side: its serving loop.
//! - `template`: the template of preloading, which imports the application once and forks
//!   the workers from itself.
//! - [`spawn`] starts a worker (the host binary re-executed) and holds the hook a worker's
//!   `main` calls; [`log`] carries a worker's `tracing` events to the host's.

#[cfg(target_os = "linux")]
pub(crate) mod host;
pub(crate) mod ids;
pub(crate) mod log;
pub(crate) mod spawn;
#[cfg(target_os = "linux")]
mod template;
pub(crate) mod wire;
#[cfg(target_os = "linux")]
mod worker;

pub use spawn::run_if_worker;
