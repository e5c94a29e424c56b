//! Passenger's restart files: `tmp/restart.txt` and `tmp/always_restart.txt` in the
//! application's directory.
//!
//! Deploy scripts written for Passenger end with `touch tmp/restart.txt` (Capistrano's
//! Passenger recipes, many hosting panels); honouring the same files lets them deploy here
//! unchanged. What Passenger does, from its source (`phusion/passenger`,
//! `src/agent/Core/ApplicationPool/Group/SpawningAndRestarting.cpp`, `Group::needsRestart`,
//! and its CHANGELOG):
//!
//! - The first check records the file's mtime (or its absence) and restarts nothing: a
//!   `restart.txt` left over from an earlier deploy does not restart a fresh server.
//! - Later checks restart when the mtime differs from the recorded one, or when the file
//!   now exists and did not before. Deleting it restarts nothing (since 4.0.0: "Deleting
//!   restart.txt no longer triggers a restart"). Passenger never deletes or rewrites the
//!   file; it only `stat()`s it.
//! - Passenger compares `st_mtime` in whole seconds, so a second `touch` within the same
//!   second is missed. Here the full mtime (nanoseconds) is compared, and also the size,
//!   the inode and the device, so a file replaced by `mv` or `rsync` with its old
//!   timestamp still counts as a change.
//! - `always_restart.txt`: while it exists, Passenger restarts the application before every
//!   request (for development).
//! - Passenger checks lazily, when a request arrives, and at most once per
//!   `passenger_stat_throttle_rate` seconds (default 10 since 5.0.0, whose CHANGELOG says
//!   touching restart.txt therefore no longer restarts at once). Here the supervisor polls
//!   about once a second whether or not requests arrive, so the new worker is loaded and
//!   ready before the next request, never started by it.
//! - Passenger's `restart_dir` moves both files elsewhere; not offered here yet.
//!
//! uWSGI's `touch-reload=FILE` is the same idea with any file name (mtime in seconds).

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The file whose change restarts the application, relative to its directory.
pub(crate) const RESTART_FILE: &str = "tmp/restart.txt";
/// The file whose presence restarts the application before every request.
pub(crate) const ALWAYS_RESTART_FILE: &str = "tmp/always_restart.txt";

/// What identifies one version of the restart file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    inode: u64,
    device: u64,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        #[cfg(unix)]
        let (inode, device) = {
            use std::os::unix::fs::MetadataExt;
            (meta.ino(), meta.dev())
        };
        #[cfg(not(unix))]
        let (inode, device) = (0, 0);
        Stamp {
            mtime: meta.modified().ok(),
            len: meta.len(),
            inode,
            device,
        }
    }
}

/// Watches one application directory's restart files.
#[derive(Debug)]
pub(crate) struct RestartWatch {
    restart_file: PathBuf,
    always_file: PathBuf,
    /// The restart file as last seen: `Some(None)` when it did not exist, `None` when it
    /// could not be read yet (the first successful read then only sets the baseline).
    last: Option<Option<Stamp>>,
    /// Whether a failure to read the file other than its absence was already logged, so
    /// a permission problem is reported once rather than every second.
    warned: bool,
}

impl RestartWatch {
    /// Starts watching `app_dir`, taking the restart file as it is now as the baseline:
    /// its presence alone never triggers a restart.
    pub(crate) fn new(app_dir: &Path) -> RestartWatch {
        let mut watch = RestartWatch {
            restart_file: app_dir.join(RESTART_FILE),
            always_file: app_dir.join(ALWAYS_RESTART_FILE),
            last: None,
            warned: false,
        };
        watch.last = watch.stat().ok();
        watch
    }

    /// The restart file's path, for the log line that names what triggered a restart.
    pub(crate) fn restart_file(&self) -> &Path {
        &self.restart_file
    }

    /// Whether the restart file changed (or appeared) since the previous call; true once
    /// per change. A deleted file is not a change, but creating it again is.
    ///
    /// A failure other than absence (a directory that cannot be read) counts as no
    /// change and keeps the baseline, as in Passenger; it is logged once. If the file
    /// could not be read since start-up, the first read that succeeds only sets the
    /// baseline: what changed while it was unreadable is unknown.
    pub(crate) fn poll(&mut self) -> bool {
        let now = match self.stat() {
            Ok(now) => {
                self.warned = false;
                now
            }
            Err(err) => {
                if !self.warned {
                    tracing::warn!(
                        path = %self.restart_file.display(),
                        error = %err,
                        "cannot check the restart file; touching it will not restart the \
                         application until it can be read"
                    );
                    self.warned = true;
                }
                return false;
            }
        };
        let changed = match (self.last, now) {
            // Unreadable until now: this is the baseline, as at start-up.
            (None, _) => false,
            (Some(_), None) => false,
            (Some(None), Some(_)) => true,
            (Some(Some(before)), Some(after)) => before != after,
        };
        self.last = Some(now);
        changed
    }

    /// Whether `tmp/always_restart.txt` exists (any kind of file, as Passenger's `stat()`
    /// check): the application is then restarted before every request. One `stat()`
    /// call, cheap enough to make per request.
    pub(crate) fn always_restart(&self) -> bool {
        fs::metadata(&self.always_file).is_ok()
    }

    /// The restart file's stamp, `None` when it does not exist.
    fn stat(&self) -> io::Result<Option<Stamp>> {
        match fs::metadata(&self.restart_file) {
            Ok(meta) => Ok(Some(Stamp::of(&meta))),
            // `tmp` missing, or a file named `tmp`: no restart file either way.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// A fresh, empty application directory, removed when dropped.
    struct AppDir(PathBuf);

    impl AppDir {
        fn new(tag: &str) -> AppDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "wsgi-core-restart-{}-{n}-{tag}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            AppDir(path)
        }

        fn tmp(&self) -> PathBuf {
            let tmp = self.0.join("tmp");
            fs::create_dir_all(&tmp).unwrap();
            tmp
        }

        fn restart_file(&self) -> PathBuf {
            self.tmp().join("restart.txt")
        }

        /// Creates the restart file (if needed) and sets its mtime, as `touch -d` does.
        fn touch_at(&self, mtime: SystemTime) {
            let file = File::options()
                .create(true)
                .append(true)
                .open(self.restart_file())
                .unwrap();
            file.set_modified(mtime).unwrap();
        }
    }

    impl Drop for AppDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn a_file_present_at_start_does_not_restart() {
        let dir = AppDir::new("present");
        dir.touch_at(at(1_000_000, 0));
        let mut watch = RestartWatch::new(&dir.0);
        assert!(!watch.poll());
        assert!(!watch.poll());
    }

    #[test]
    fn each_mtime_change_restarts_once() {
        let dir = AppDir::new("touch");
        dir.touch_at(at(1_000_000, 0));
        let mut watch = RestartWatch::new(&dir.0);
        dir.touch_at(at(1_000_100, 0));
        assert!(watch.poll());
        assert!(!watch.poll(), "one change, one restart");
        // An mtime moved backwards (`touch -d` with an older date) is a change too.
        dir.touch_at(at(999_000, 0));
        assert!(watch.poll());
        assert!(!watch.poll());
    }

    #[test]
    fn a_touch_within_the_same_second_is_seen() {
        // Passenger compares whole seconds and would miss this.
        let dir = AppDir::new("nanos");
        dir.touch_at(at(1_000_000, 100));
        let mut watch = RestartWatch::new(&dir.0);
        dir.touch_at(at(1_000_000, 200));
        assert!(watch.poll());
    }

    #[test]
    fn a_file_created_after_start_restarts() {
        let dir = AppDir::new("create");
        // Not even a `tmp` directory at start.
        let mut watch = RestartWatch::new(&dir.0);
        assert!(!watch.poll());
        dir.touch_at(at(1_000_000, 0));
        assert!(watch.poll());
        assert!(!watch.poll());
    }

    #[test]
    fn deleting_does_not_restart_but_recreating_does() {
        let dir = AppDir::new("delete");
        dir.touch_at(at(1_000_000, 0));
        let mut watch = RestartWatch::new(&dir.0);
        fs::remove_file(dir.restart_file()).unwrap();
        assert!(!watch.poll());
        // Recreated with the very same mtime: it was absent in between, so it counts.
        dir.touch_at(at(1_000_000, 0));
        assert!(watch.poll());
    }

    #[test]
    fn a_write_that_keeps_the_mtime_is_seen_by_its_size() {
        let dir = AppDir::new("size");
        dir.touch_at(at(1_000_000, 0));
        let mut watch = RestartWatch::new(&dir.0);
        let mut file = File::options()
            .append(true)
            .open(dir.restart_file())
            .unwrap();
        file.write_all(b"deploy 42\n").unwrap();
        file.set_modified(at(1_000_000, 0)).unwrap();
        assert!(watch.poll());
    }

    #[cfg(unix)]
    #[test]
    fn a_file_replaced_with_its_old_mtime_is_seen_by_its_inode() {
        let dir = AppDir::new("inode");
        dir.touch_at(at(1_000_000, 0));
        let mut watch = RestartWatch::new(&dir.0);
        // `rsync`/`mv` style: a new file renamed over the old one, same size and mtime.
        let staged = dir.tmp().join("restart.txt.new");
        File::create(&staged)
            .unwrap()
            .set_modified(at(1_000_000, 0))
            .unwrap();
        fs::rename(&staged, dir.restart_file()).unwrap();
        assert!(watch.poll());
    }

    #[test]
    fn a_tmp_that_is_a_file_means_no_restart_file() {
        let dir = AppDir::new("tmpfile");
        File::create(dir.0.join("tmp")).unwrap();
        let mut watch = RestartWatch::new(&dir.0);
        assert!(!watch.poll());
        assert!(!watch.always_restart());
        assert!(!watch.warned, "absence is not an error");
    }

    #[cfg(unix)]
    #[test]
    fn an_unreadable_file_is_no_change_and_its_first_read_is_the_baseline() {
        let dir = AppDir::new("unreadable");
        // A symlink to itself fails with ELOOP, even for root (permission bits would not).
        std::os::unix::fs::symlink("restart.txt", dir.restart_file()).unwrap();
        let mut watch = RestartWatch::new(&dir.0);
        assert!(!watch.poll());
        assert!(watch.warned);
        assert!(!watch.poll());
        fs::remove_file(dir.restart_file()).unwrap();
        dir.touch_at(at(1_000_000, 0));
        assert!(!watch.poll(), "the first good read sets the baseline");
        assert!(!watch.warned, "a good read re-arms the warning");
        dir.touch_at(at(1_000_001, 0));
        assert!(watch.poll());
    }

    #[test]
    fn always_restart_follows_the_files_presence() {
        let dir = AppDir::new("always");
        let watch = RestartWatch::new(&dir.0);
        assert!(!watch.always_restart());
        let always = dir.tmp().join("always_restart.txt");
        File::create(&always).unwrap();
        assert!(watch.always_restart());
        assert!(watch.always_restart(), "it stays on while the file exists");
        fs::remove_file(&always).unwrap();
        assert!(!watch.always_restart());
    }

    #[test]
    fn paths_are_passengers() {
        let watch = RestartWatch::new(Path::new("/srv/app"));
        assert_eq!(watch.restart_file(), Path::new("/srv/app/tmp/restart.txt"));
        assert_eq!(
            watch.always_file,
            Path::new("/srv/app/tmp/always_restart.txt")
        );
    }
}
