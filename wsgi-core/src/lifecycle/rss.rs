//! A process's resident memory, for `--max-rss`.
//!
//! The worker measures itself after requests ([`self_rss`], reported in its stats) and
//! the host samples each worker ([`rss_bytes`]) as a backstop for a worker too busy or
//! too stuck to report. Resident set size is what the peers limit: Granian's
//! `--workers-max-rss` (psutil's `memory_info().rss`), uWSGI's `reload-on-rss`, and what
//! the kernel's OOM killer and a container's memory limit see first.
//!
//! Linux's `/proc/<pid>/statm` gives it in one short read with no parsing of
//! `/proc/<pid>/status`: its second field is the resident pages (anonymous, file-backed
//! and shared memory together), times the page size. Pages shared with other processes
//! count in full, as in `ps`'s RSS column. Elsewhere these functions return
//! [`io::ErrorKind::Unsupported`] and the supervisor leaves `--max-rss` to the worker's
//! own request count and age limits.

use std::io;

/// The resident memory of process `pid`, in bytes. A process that is gone gives an
/// [`io::ErrorKind::NotFound`] error; a zombie (exited, not yet reaped) gives 0.
pub(crate) fn rss_bytes(pid: u32) -> io::Result<u64> {
    imp::statm_rss(&format!("/proc/{pid}/statm"))
}

/// The resident memory of this process, in bytes.
#[allow(
    dead_code,
    reason = "the worker-side memory check after each request is not wired yet"
)]
pub(crate) fn self_rss() -> io::Result<u64> {
    imp::statm_rss("/proc/self/statm")
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
        let text = std::fs::read_to_string(path)?;
        super::parse_statm(&text, page_size()?)
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
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "resident memory is read from /proc, which only Linux has",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
