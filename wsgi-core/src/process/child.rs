//! The worker process's side: load the application and serve the host's requests.
//!
//! PLACEHOLDER, FOR THE LEAD TO REPLACE: this body only speaks the start of the protocol
//! (read `Config`, refuse it) so that the crate builds and the spawning code can be tested
//! end to end. The real serving loop replaces it, keeping the signature.

use std::os::unix::net::UnixStream;

use super::messages::{ControlFromWorker, ControlToWorker};
use super::wire::{FrameReader, FrameWriter};

/// Serves as a worker process over `control` and one data socket per thread (`slots`);
/// returns the process's exit code.
pub(crate) fn run(control: UnixStream, slots: Vec<UnixStream>) -> i32 {
    drop(slots);
    if let Ok(Some(ControlToWorker::Config(_))) = FrameReader::new(&control).recv() {
        let _ = FrameWriter::new(&control).send(&ControlFromWorker::StartupFailed {
            message: "worker mode is not finished".into(),
        });
    }
    1
}
