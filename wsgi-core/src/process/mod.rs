//! Worker processes: Python runs in child processes that the host feeds over UNIX sockets,
//! so a crash in a C extension costs one worker instead of the host.
//!
//! The pieces, bottom up: [`wire`] frames bytes on a socket; [`messages`] are what the two
//! sides say; [`log`] carries a worker's `tracing` events to the host's.

// The runner and supervisor that use these pieces land separately.
#![allow(
    dead_code,
    unused_imports,
    reason = "the worker-process runner is built on these next"
)]

pub(crate) mod log;
pub(crate) mod messages;
pub(crate) mod wire;
