//! A process's memory, for `--max-rss`.
//!
//! The worker measures itself after requests (reported in its stats) and the host samples
//! each worker as a backstop for a worker too busy or too stuck to report, both through a
//! [`Meter`]. For a worker that imported the application itself, the limit compares its
//! resident set size, what the peers limit: Granian's `--workers-max-rss` (sysinfo's RSS),
//! uWSGI's `reload-on-rss`, and what the kernel's OOM killer and a container's memory limit
//! see first. For a worker forked from the preload template it compares the worker's private
//! memory instead: its resident set counts the pages it shares with the template in full
//! (see [`super::forked_rss`] for why private, and how it is kept cheap).
//!
//! Linux's `/proc/<pid>/statm` gives the resident set in one short read with no parsing of
//! `/proc/<pid>/status`: its second field is the resident pages (anonymous, file-backed
//! and shared memory together), times the page size. Pages shared with other processes
//! count in full, as in `ps`'s RSS column. `/proc/<pid>/smaps_rollup` (Linux 4.14) splits
//! them by sharing, walking the page tables to do so. Elsewhere these functions return
//! [`io::ErrorKind::Unsupported`] and the supervisor leaves `--max-rss` to the worker's
//! own request count and age limits.

use std::io;
use std::time::Instant;

use super::forked_rss::{Check, ForkedRss};

/// Which process a [`Meter`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proc {
    /// This process.
    This,
    /// Process `pid`.
    Pid(u32),
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Proc::This => format!("/proc/self/{file}"),
            Proc::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }
}

/// The memory `max_rss` compares for one worker: its resident set, or, for a worker
/// forked from the preload template, its private memory.
#[derive(Debug, Clone)]
pub(crate) enum Meter {
    /// A worker that imported the application itself.
    Resident,
    /// A worker forked from the template.
    Private(ForkedRss),
}

impl Meter {
    /// The meter for a worker, `forked` from the template or not.
    pub(crate) fn new(forked: bool) -> Meter {
        if forked {
            Meter::Private(ForkedRss::default())
        } else {
            Meter::Resident
        }
    }

    /// The memory of `proc` to compare with `limit` bytes. A process that is gone gives an
    /// [`io::ErrorKind::NotFound`] error.
    pub(crate) fn read(&mut self, proc: Proc, limit: u64) -> io::Result<u64> {
        let rss = imp::statm_rss(&proc.path("statm"))?;
        let Meter::Private(forked) = self else {
            return Ok(rss);
        };
        match forked.check(rss, limit, Instant::now()) {
            Check::Known(bytes) => Ok(bytes),
            Check::Read => {
                let begun = Instant::now();
                match imp::read(&proc.path("smaps_rollup"))
                    .and_then(|text| parse_smaps_rollup(&text))
                {
                    Ok(rollup) => {
                        let now = Instant::now();
                        Ok(forked.record(rollup.rss, rollup.private, now - begun, now))
                    }
                    // No smaps_rollup (a kernel before 4.14, a /proc without it): the
                    // resident set, which replaces a worker early rather than never.
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Ok(rss),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// A process's memory split by sharing, in bytes, from `/proc/<pid>/smaps_rollup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rollup {
    /// Resident, as `statm` counts it.
    pub(crate) rss: u64,
    /// Proportional: each resident page divided by the number of processes mapping it.
    pub(crate) pss: u64,
    /// Mapped by this process alone (`Private_Clean + Private_Dirty`): what its exit frees.
    pub(crate) private: u64,
}

/// The memory of a `smaps_rollup` file's text (its figures are in kB, 1024 bytes).
fn parse_smaps_rollup(text: &str) -> io::Result<Rollup> {
    let (mut rss, mut pss, mut clean, mut dirty) = (None, None, None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "Rss" => &mut rss,
            "Pss" => &mut pss,
            "Private_Clean" => &mut clean,
            "Private_Dirty" => &mut dirty,
            _ => continue,
        };
        let kib = value
            .trim()
            .strip_suffix("kB")
            .and_then(|n| n.trim_end().parse::<u64>().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected smaps_rollup line {line:?}"),
                )
            })?;
        *slot = Some(kib.saturating_mul(1024));
    }
    match (rss, pss, clean, dirty) {
        (Some(rss), Some(pss), Some(clean), Some(dirty)) => Ok(Rollup {
            rss,
            pss,
            private: clean.saturating_add(dirty),
        }),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("smaps_rollup without Rss, Pss, Private_Clean and Private_Dirty: {text:?}"),
        )),
    }
}

/// The resident size in bytes from the text of a `statm` file and the page size.
fn parse_statm(text: &str, page_size: u64) -> io::Result<u64> {
    let resident = text
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|field| field.parse::<u64>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected statm contents {text:?}"),
            )
        })?;
    Ok(resident.saturating_mul(page_size))
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::sync::OnceLock;

    pub(super) fn statm_rss(path: &str) -> io::Result<u64> {
        let text = read(path)?;
        super::parse_statm(&text, page_size()?)
    }

    pub(super) fn read(path: &str) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    /// The kernel's page size, asked once.
    fn page_size() -> io::Result<u64> {
        static PAGE_SIZE: OnceLock<i64> = OnceLock::new();
        // SAFETY: sysconf takes no pointers and only reads a constant of the system; any
        // name is allowed (an unknown one returns -1).
        let size = *PAGE_SIZE.get_or_init(|| unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i64);
        u64::try_from(size)
            .ok()
            .filter(|&size| size > 0)
            .ok_or_else(|| io::Error::other("sysconf(_SC_PAGESIZE) failed"))
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;

    pub(super) fn statm_rss(_path: &str) -> io::Result<u64> {
        Err(unsupported())
    }

    pub(super) fn read(_path: &str) -> io::Result<String> {
        Err(unsupported())
    }

    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "memory is read from /proc, which only Linux has",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_bytes(pid: u32) -> io::Result<u64> {
        Meter::Resident.read(Proc::Pid(pid), u64::MAX)
    }

    fn self_rss() -> io::Result<u64> {
        Meter::Resident.read(Proc::This, u64::MAX)
    }

    #[test]
    fn statm_second_field_times_page_size() {
        assert_eq!(
            parse_statm("10764 2560 1024 1 0 3000 0\n", 4096).unwrap(),
            2560 * 4096
        );
        assert_eq!(parse_statm("0 0 0 0 0 0 0", 4096).unwrap(), 0);
    }

    #[test]
    fn malformed_statm_is_invalid_data() {
        for text in ["", "123", "123 abc 4", "123 -5 4"] {
            let err = parse_statm(text, 4096).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{text:?}");
        }
    }

    /// A `smaps_rollup` of Linux 6.x, as `cat /proc/self/smaps_rollup` prints it.
    const ROLLUP: &str = "\
564f9a7e9000-7ffef97ff000 ---p 00000000 00:00 0                          [rollup]
Rss:               87668 kB
Pss:               23268 kB
Pss_Dirty:          5112 kB
Pss_Anon:           5112 kB
Pss_File:            156 kB
Pss_Shmem:             0 kB
Shared_Clean:       1516 kB
Shared_Dirty:      81000 kB
Private_Clean:        40 kB
Private_Dirty:      5112 kB
Referenced:        87668 kB
Anonymous:         86112 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
";

    #[test]
    fn smaps_rollup_gives_resident_proportional_and_private_bytes() {
        assert_eq!(
            parse_smaps_rollup(ROLLUP).unwrap(),
            Rollup {
                rss: 87668 << 10,
                pss: 23268 << 10,
                private: (40 + 5112) << 10,
            }
        );
        // Older kernels have fewer lines (no Pss_Dirty, Pss_Anon ...): the four are enough.
        let old = "Rss: 8 kB\nPss: 4 kB\nPrivate_Clean: 0 kB\nPrivate_Dirty: 2 kB\n";
        assert_eq!(
            parse_smaps_rollup(old).unwrap(),
            Rollup {
                rss: 8 << 10,
                pss: 4 << 10,
                private: 2 << 10,
            }
        );
    }

    #[test]
    fn malformed_smaps_rollup_is_invalid_data() {
        let without_private = ROLLUP.replace("Private_Dirty", "Private_Dirtier");
        let in_pages = ROLLUP.replace("Rss:               87668 kB", "Rss: 87668 pages");
        let negative = ROLLUP.replace("87668 kB", "-1 kB");
        for text in ["", "Rss: 1 kB", &without_private, &in_pages, &negative] {
            let err = parse_smaps_rollup(text).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{text:?}");
        }
    }

    #[test]
    fn a_worker_that_imported_the_application_is_its_resident_set() {
        let mut meter = Meter::new(false);
        assert!(matches!(meter, Meter::Resident));
        if cfg!(target_os = "linux") {
            // A limit of 1 byte: a forked worker would read smaps_rollup, this one not.
            let rss = meter.read(Proc::This, 1).unwrap();
            assert!(rss > 0);
            assert!(matches!(meter, Meter::Resident));
        }
    }

    /// A forked child holding `shared` bytes it inherited (written by the parent before
    /// the fork, untouched since) and `own` bytes it wrote itself, then stopped; killed
    /// when dropped.
    #[cfg(target_os = "linux")]
    struct Child(libc::pid_t);

    #[cfg(target_os = "linux")]
    impl Child {
        fn fork(shared: &[u8], own: usize) -> Child {
            // Mapped here but first written by the child, so its pages are the child's
            // alone; no allocation after fork (another test thread may hold malloc's lock).
            // SAFETY: a fresh private anonymous mapping, no address hint.
            let mine = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    own,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(mine, libc::MAP_FAILED);
            // SAFETY: the child only writes to its mapping, reads a byte and raises
            // SIGSTOP, all async-signal-safe; it never returns into the test harness (it is
            // killed while stopped).
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                // SAFETY: `mine` is `own` writable bytes; `shared` is a live buffer.
                unsafe {
                    std::ptr::write_bytes(mine.cast::<u8>(), 0x33, own);
                    std::ptr::read_volatile(&shared[0]);
                    libc::raise(libc::SIGSTOP);
                    libc::_exit(0);
                }
            }
            // SAFETY: the parent never touched the mapping; unmapping it here leaves the
            // child's.
            unsafe { libc::munmap(mine, own) };
            // Wait until it stopped, its memory all written.
            let mut status = 0;
            // SAFETY: waits for our own child; status is a valid out-pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
            assert_eq!(r, pid);
            Child(pid)
        }
    }

    #[cfg(target_os = "linux")]
    impl Drop for Child {
        fn drop(&mut self) {
            // SAFETY: our own child, killed then reaped.
            unsafe {
                libc::kill(self.0, libc::SIGKILL);
                libc::waitpid(self.0, std::ptr::null_mut(), 0);
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_forked_worker_is_its_private_memory_not_what_it_shares() {
        const MIB: usize = 1 << 20;
        let shared = std::hint::black_box(vec![0x5a_u8; 64 * MIB]);
        let child = Child::fork(&shared, 8 * MIB);
        let pid = Proc::Pid(u32::try_from(child.0).unwrap());
        let limit = 40 * MIB as u64;

        let mut resident = Meter::new(false);
        let rss = resident.read(pid, limit).unwrap();
        assert!(
            rss >= limit,
            "the inherited 64 MiB count in its resident set: {rss}"
        );

        let mut private = Meter::new(true);
        let own = private.read(pid, limit).unwrap();
        // The 8 MiB it wrote, and not the 64 MiB it shares. Not an upper bound on `own`:
        // memory the test process (other tests, in parallel) wrote or freed since the fork
        // becomes the child's alone, and private to it (the 64 MiB block of another test
        // freed meanwhile made it 72 MiB once).
        assert!(own >= 8 * MIB as u64, "{own}");
        assert!(
            rss.saturating_sub(own) >= 56 * MIB as u64,
            "the shared 64 MiB counted as private: resident {rss}, private {own}"
        );
        // Read once; until the gap, the next check is from statm and that reading.
        let Meter::Private(forked) = &private else {
            unreachable!()
        };
        let over_own = own + 8 * MIB as u64;
        assert!(
            matches!(forked.check(rss, over_own, Instant::now()), Check::Known(n) if n < over_own),
            "{forked:?}"
        );
        drop(child);
        let err = private.read(pid, limit).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        drop(shared);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn self_rss_is_this_process_and_grows_with_touched_memory() {
        let before = self_rss().unwrap();
        assert!(before > 0);
        // Our own pid through /proc/<pid> reads the same file as /proc/self.
        let by_pid = rss_bytes(std::process::id()).unwrap();
        assert!(by_pid > 0);

        // 64 MiB written page by page (not calloc'd zeros, which may stay unmapped).
        const SIZE: usize = 64 << 20;
        let block = std::hint::black_box(vec![0x5a_u8; SIZE]);
        let after = self_rss().unwrap();
        // Half the block as the margin: other tests in this process may free memory
        // meanwhile, never 32 MiB of it.
        assert!(
            after >= before + (SIZE as u64) / 2,
            "before {before}, after {after}"
        );
        drop(block);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_that_is_gone_is_not_found() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(rss_bytes(pid).is_ok(), "a live process has a statm");
        child.kill().unwrap();
        child.wait().unwrap();
        let err = rss_bytes(pid).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        // Above any pid_max (at most 2^22), so never a process.
        let err = rss_bytes(u32::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
