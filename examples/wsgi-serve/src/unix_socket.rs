//! UNIX sockets (`--bind unix:PATH`): the socket file's life, from a stale one left by a
//! crash to its removal at exit.
//!
//! A socket file outlives the process that bound it unless that process removes it, so a
//! server killed with SIGKILL leaves one behind and the next start would fail with "address
//! in use". As gunicorn does, `wsgi-serve` replaces such a file, but only once it has tried to
//! connect to it and nothing answered: a socket someone still listens on is refused, so a
//! second `wsgi-serve` cannot steal the first one's clients. A path that is not a socket is never
//! removed.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::values::{Mode, Owner};

/// How to make the socket file: `--unix-mode`, `--unix-owner`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FileOptions {
    /// The file's mode; the umask's default when `None`.
    pub(crate) mode: Option<Mode>,
    /// The file's owner and group; this process's when `None`.
    pub(crate) owner: Option<Owner>,
}

/// The socket file this process made, removed when dropped if it is still the same file.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    /// The file's device and inode, so that a file another process has put there since is
    /// left alone.
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.id);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("cannot remove the socket {}: {e}", self.path.display());
        }
    }
}

/// A non-blocking listener on the UNIX socket `path` (given to `option`), made with
/// `options`, and the guard that removes its file; or an error that says what to do.
pub(crate) fn bind(
    path: &Path,
    options: FileOptions,
    option: &str,
) -> Result<(UnixListener, SocketFile), String> {
    let fail = |e: io::Error| format!("cannot listen on unix:{}: {e}", path.display());
    remove_stale(path, option)?;
    let listener = UnixListener::bind(path).map_err(|e| {
        let advice = match e.kind() {
            io::ErrorKind::NotFound => "; create its directory first",
            io::ErrorKind::PermissionDenied => {
                "; this user may not write in its directory: choose another path"
            }
            _ => "",
        };
        format!("{}{advice}", fail(e))
    })?;
    let meta = std::fs::symlink_metadata(path).map_err(fail)?;
    // The guard exists before the mode and owner change, so a failure removes the file.
    let file = SocketFile {
        path: path.to_owned(),
        id: (meta.dev(), meta.ino()),
    };
    if let Some(Mode(mode)) = options.mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of unix:{}: {e}", path.display()))?;
    }
    if let Some(Owner { uid, gid }) = options.owner {
        std::os::unix::fs::chown(path, uid, gid).map_err(|e| {
            format!(
                "cannot give unix:{} to {uid:?}:{gid:?}: {e} (only root may give a file \
                 away; a group needs this user to be in it)",
                path.display()
            )
        })?;
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make unix:{} non-blocking: {e}", path.display()))?;
    Ok((listener, file))
}

/// Removes a socket file nothing listens on; refuses one something does, and a path that
/// is not a socket.
fn remove_stale(path: &Path, option: &str) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let shown = path.display();
    if !meta.file_type().is_socket() {
        return Err(format!(
            "cannot listen on unix:{shown}: a file that is not a socket is there; remove it \
             or choose another path with {option} unix:PATH"
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(format!(
            "cannot listen on unix:{shown}: another program (or another serve) is listening \
             on it: stop it, or choose another path with {option} unix:PATH"
        )),
        // Nothing accepts there: the file is what a process that died left behind.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("replacing the stale socket file {shown}");
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove the stale socket {shown}: {e}"))
        }
        Err(e) => Err(format!("cannot listen on unix:{shown}: {e}")),
    }
}
