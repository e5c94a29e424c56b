//! How the process's allocator keeps freed memory.

/// Bytes of free memory at the top of an allocator arena that glibc keeps rather than
/// returning to the OS.
const TRIM_THRESHOLD: libc::c_int = 8 << 20;

/// Allocations from this size up get pages of their own (`mmap`), returned when freed.
/// Above hyper's largest read buffer (8 KiB + 400 KiB by default), so request buffers
/// come from the arenas.
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Keeps glibc's allocator from handing the memory of request buffers back to the OS
/// after each request (Linux with glibc; elsewhere it does nothing). Returns whether it
/// changed anything.
///
/// With many connections sending bodies of tens of KiB, each connection's read buffer
/// (128 KiB in hyper once bodies are that large) is allocated anew for every request: the
/// previous one is still shared with the body the application has not read yet. Freed
/// again, it ends at the top of its arena, which glibc trims once the top outgrows its
/// threshold: 256 KiB after the first buffer of 128 KiB, less than the buffers in flight.
/// The kernel then faults the pages in again, zeroed, as the next request is received
/// into them: `perf stat` counted 2.2 page faults per 64 KiB POST over 64 connections
/// (nearly all in `recvfrom`), and 0.13 once these thresholds are fixed. The cost is
/// memory: up to 8 MiB per arena stays with the process after a burst of large bodies,
/// where glibc would have returned it (`serve`: 1 MiB more after hello, 3 MiB more after
/// 64 connections of 64 KiB POSTs).
///
/// Call it once the application is loaded, as `serve` does, so that what start-up freed
/// is returned as usual; the setting is the process's. It leaves the allocator alone when
/// `GLIBC_TUNABLES` or `MALLOC_TRIM_THRESHOLD_`/`MALLOC_MMAP_THRESHOLD_` set its
/// thresholds, so that the operator's choice stands.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if operator_chose(|name| std::env::var(name).ok()) {
            return false;
        }
        // SAFETY: `mallopt` takes plain integers; glibc makes it safe to call at any time,
        // from any thread.
        unsafe {
            // Fixing either threshold turns glibc's dynamic adjustment of both off: set both.
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Whether the environment (`var`) sets glibc's thresholds already.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn operator_chose(var: impl Fn(&str) -> Option<String>) -> bool {
    var("MALLOC_TRIM_THRESHOLD_").is_some()
        || var("MALLOC_MMAP_THRESHOLD_").is_some()
        || var("GLIBC_TUNABLES").is_some_and(|t| {
            t.split(':').any(|setting| {
                setting.starts_with("glibc.malloc.trim_threshold=")
                    || setting.starts_with("glibc.malloc.mmap_threshold=")
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_operators_thresholds_stand() {
        assert!(!operator_chose(env(&[])));
        assert!(!operator_chose(env(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.arena_max=2:glibc.pthread.rseq=0"
        )])));
        assert!(operator_chose(env(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=0"
        )])));
        assert!(operator_chose(env(&[("MALLOC_MMAP_THRESHOLD_", "65536")])));
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_thresholds() {
        // The test environment sets neither threshold.
        assert!(!operator_chose(|name| std::env::var(name).ok()));
        assert!(keep_freed_memory());
    }
}
