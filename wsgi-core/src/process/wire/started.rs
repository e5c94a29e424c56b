//! The started page: one word per slot of a worker, in memory the host and the worker
//! share, where a worker thread writes the id of the request it is about to hand to the
//! application.
//!
//! Requests reach a worker ahead of its threads (its intake socket holds up to one per
//! slot), so when a worker dies the host must tell the requests the application may have
//! seen, which are answered 502, from those still waiting inside the worker, which are run
//! again elsewhere as if never sent. A frame would say it too late: a thread that is killed
//! before its buffered frames go out leaves nothing on the socket. A store into shared
//! memory costs no system call, and it outlives the process that made it.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::process::ids::LocalSlot;

/// A mapping of `slots` words of a memory file; the file is shared with the worker.
#[derive(Debug)]
pub(crate) struct StartedPage {
    words: NonNull<AtomicU64>,
    slots: usize,
    /// The memory file, for the worker to map (the host hands it over at spawn).
    file: OwnedFd,
}

// SAFETY: the mapping is only ever accessed through `AtomicU64`s, which are `Sync`; the
// pointer stays valid until `Drop`, which needs `&mut self`.
unsafe impl Send for StartedPage {}
// SAFETY: as above.
unsafe impl Sync for StartedPage {}

/// A word holds a request's id inverted, so that the zeros of a fresh page stand for id
/// `u64::MAX`, which no request reaches.
fn stored(id: u64) -> u64 {
    !id
}

impl StartedPage {
    /// A new page of `slots` words, all unset (host side).
    pub(crate) fn create(slots: usize) -> io::Result<Self> {
        // SAFETY: memfd_create reads a NUL-terminated name and returns a new descriptor
        // or -1.
        let fd = unsafe { libc::memfd_create(c"wsgi-started".as_ptr(), libc::MFD_CLOEXEC) };
        if fd == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor memfd_create just returned, owned by nobody else.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = Self::len(slots)?;
        // SAFETY: ftruncate on a descriptor we own; a fresh memory file reads as zeros.
        if unsafe { libc::ftruncate(file.as_raw_fd(), len as libc::off_t) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Self::map(file, slots)
    }

    /// Maps the page the host made (`file`) for `slots` slots (worker side).
    pub(crate) fn open(file: OwnedFd, slots: usize) -> io::Result<Self> {
        let len = Self::len(slots)?;
        // SAFETY: `stat` is plain data, for which all zeros is a valid value.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes into `stat`, which we own.
        if unsafe { libc::fstat(file.as_raw_fd(), &mut stat) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // A page shorter than its slots would fault (SIGBUS) on the first store.
        if (stat.st_mode & libc::S_IFMT) != libc::S_IFREG || (stat.st_size as u64) < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the started page is not a memory file of the expected size",
            ));
        }
        Self::map(file, slots)
    }

    fn len(slots: usize) -> io::Result<usize> {
        slots
            .max(1)
            .checked_mul(size_of::<AtomicU64>())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many slots"))
    }

    fn map(file: OwnedFd, slots: usize) -> io::Result<Self> {
        let len = NonZeroUsize::new(Self::len(slots)?).expect("at least one word");
        // SAFETY: a new shared mapping of a file we hold, at least `len` bytes long
        // (checked or set above); the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.get(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let words = NonNull::new(ptr.cast::<AtomicU64>()).expect("mmap does not return null");
        Ok(StartedPage { words, slots, file })
    }

    fn word(&self, slot: LocalSlot) -> Option<&AtomicU64> {
        let slot = slot.index();
        // SAFETY: `slot < slots` words are mapped, page-aligned hence aligned for
        // `AtomicU64`, and live as long as `self`; both processes only use atomics on them.
        (slot < self.slots).then(|| unsafe { &*self.words.as_ptr().add(slot) })
    }

    /// Records that `slot`'s request `id` is about to reach the application (worker side).
    pub(crate) fn mark(&self, slot: LocalSlot, id: u64) {
        if let Some(word) = self.word(slot) {
            word.store(stored(id), Ordering::Release);
        }
    }

    /// Whether `slot`'s request `id` may have reached the application (host side).
    pub(crate) fn started(&self, slot: LocalSlot, id: u64) -> bool {
        self.word(slot)
            .is_some_and(|w| w.load(Ordering::Acquire) == stored(id))
    }

    /// The memory file, for the worker.
    pub(crate) fn file(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for StartedPage {
    fn drop(&mut self) {
        let len = Self::len(self.slots).expect("checked at creation");
        // SAFETY: unmaps exactly the mapping `map` made; no reference into it outlives
        // `self`.
        unsafe {
            libc::munmap(self.words.as_ptr().cast(), len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_made_through_one_mapping_is_seen_through_another() {
        let host = StartedPage::create(4).unwrap();
        let worker = StartedPage::open(host.file().try_clone_to_owned().unwrap(), 4).unwrap();
        let slot = LocalSlot::new;
        assert!(!host.started(slot(2), 7));
        assert!(
            !host.started(slot(2), 0),
            "a fresh page says request 0 started"
        );
        worker.mark(slot(2), 7);
        assert!(host.started(slot(2), 7));
        assert!(!host.started(slot(2), 8));
        assert!(!host.started(slot(1), 7));
        // Out of range: ignored, never started.
        worker.mark(slot(9), 7);
        assert!(!host.started(slot(9), 7));
        worker.mark(slot(0), 0);
        assert!(host.started(slot(0), 0));
    }

    #[test]
    fn a_page_too_small_for_its_slots_is_refused() {
        let host = StartedPage::create(2).unwrap();
        let err = StartedPage::open(host.file().try_clone_to_owned().unwrap(), 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
