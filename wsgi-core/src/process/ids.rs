//! The numbers that name the parts of a pool of worker processes, each a type of its own so
//! that one cannot pass for another:
//!
//! - a [`WorkerId`]: one of the pool's workers, whichever process runs it now (a
//!   replacement keeps it); what logs and metrics call `worker`.

use std::fmt;
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicUsize, Ordering};

/// One of the pool's workers: an index into its workers, `0..max_processes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WorkerId(usize);

impl WorkerId {
    /// The worker at `index` among the pool's.
    pub(crate) const fn new(index: usize) -> Self {
        WorkerId(index)
    }

    /// Its index among the pool's workers, as metrics and logs show it.
    pub(crate) const fn index(self) -> usize {
        self.0
    }

    /// As the wire carries it; an index past `u32::MAX` (no pool is that big) saturates.
    pub(crate) fn to_wire(self) -> u32 {
        u32::try_from(self.0).unwrap_or(u32::MAX)
    }

    /// The worker the wire names.
    pub(crate) fn from_wire(n: u32) -> Self {
        WorkerId(n as usize)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A [`WorkerId`] that threads share and change: the worker whose process runs in a group.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(crate) struct SharedWorkerId(AtomicUsize);

#[cfg(target_os = "linux")]
impl SharedWorkerId {
    /// What stands for no worker: no pool has that many.
    const NONE: usize = usize::MAX;

    /// Naming no worker yet.
    pub(crate) const fn none() -> Self {
        SharedWorkerId(AtomicUsize::new(Self::NONE))
    }

    /// The worker it names now.
    pub(crate) fn load(&self) -> Option<WorkerId> {
        Some(self.0.load(Ordering::Acquire))
            .filter(|&n| n != Self::NONE)
            .map(WorkerId)
    }

    /// Names `worker` from now on.
    pub(crate) fn store(&self, worker: WorkerId) {
        self.0.store(worker.0, Ordering::Release);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_group_names_no_worker_until_one_starts_in_it() {
        let worker = SharedWorkerId::none();
        assert_eq!(worker.load(), None);
        worker.store(WorkerId::new(0));
        assert_eq!(worker.load(), Some(WorkerId::new(0)));
    }

    #[test]
    fn a_worker_crosses_the_wire_as_itself() {
        let worker = WorkerId::new(7);
        assert_eq!(WorkerId::from_wire(worker.to_wire()), worker);
        assert_eq!(worker.to_string(), "7");
    }
}
