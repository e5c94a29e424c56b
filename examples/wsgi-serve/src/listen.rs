//! Listening sockets: TCP or UNIX, bound here (`--bind`) or passed by systemd, and what to
//! do when one cannot be had.

use std::fmt;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;

use crate::unix_socket::{self, FileOptions, SocketFile};
use crate::values::{BindAddr, ListenAddr};

/// A listening socket, non-blocking, for one of the hosts.
#[derive(Debug)]
pub(crate) enum Listener {
    /// TCP, HTTP or HTTPS.
    Tcp(TcpListener),
    /// A UNIX stream socket, plain HTTP (a proxy on the same machine terminates TLS).
    Unix(UnixListener),
}

impl Listener {
    /// A socket systemd passed, TCP or UNIX; it must be a listening stream socket.
    pub(crate) fn from_passed(fd: OwnedFd) -> Result<Listener, String> {
        let socket = socket2::Socket::from(fd);
        let kind = socket.r#type().map_err(|e| e.to_string())?;
        if kind != socket2::Type::STREAM {
            return Err("it is not a stream socket (ListenStream= in the .socket unit)".into());
        }
        let addr = socket.local_addr().map_err(|e| e.to_string())?;
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let fd = OwnedFd::from(socket);
        if addr.is_unix() {
            Ok(Listener::Unix(UnixListener::from(fd)))
        } else if addr.as_socket().is_some() {
            Ok(Listener::Tcp(TcpListener::from(fd)))
        } else {
            Err("it is neither a TCP nor a UNIX socket".into())
        }
    }

    /// How the `listening on` line names it, with `scheme` for TCP: `http://127.0.0.1:8000`,
    /// `unix:/run/app.sock`.
    pub(crate) fn describe(&self, scheme: &str) -> String {
        match self {
            Listener::Tcp(tcp) => match tcp.local_addr() {
                Ok(addr) => format!("{scheme}://{addr}"),
                Err(e) => format!("{scheme}://(unknown address: {e})"),
            },
            Listener::Unix(unix) => match unix.local_addr() {
                Ok(addr) => match addr.as_pathname() {
                    Some(path) => format!("unix:{}", path.display()),
                    None => "unix:(unnamed)".into(),
                },
                Err(e) => format!("unix:(unknown path: {e})"),
            },
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe("http"))
    }
}

/// A listener on `addr` (given to `option`), with the guard of its socket file for a UNIX
/// socket, or an error that says what to do about it.
pub(crate) fn bind(
    addr: &BindAddr,
    unix: FileOptions,
    option: &str,
) -> Result<(Listener, Option<SocketFile>), String> {
    match addr {
        BindAddr::Tcp(addr) => bind_tcp(addr, option).map(|tcp| (Listener::Tcp(tcp), None)),
        BindAddr::Unix(path) => unix_socket::bind(path, unix, option)
            .map(|(listener, file)| (Listener::Unix(listener), Some(file))),
    }
}

/// A non-blocking TCP listener on `addr`, given to `option`, or an error that says what to
/// do about it.
pub(crate) fn bind_tcp(addr: &ListenAddr, option: &str) -> Result<TcpListener, String> {
    let listener = TcpListener::bind(addr.addrs()).map_err(|e| bind_error(addr, option, &e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the socket for {addr} non-blocking: {e}"))?;
    Ok(listener)
}

/// Says what to do about a socket that cannot be bound.
fn bind_error(addr: &ListenAddr, option: &str, error: &std::io::Error) -> String {
    let advice = match error.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "; another program (or another serve) is already listening on that port: stop \
             it, or choose another port with {option} HOST:PORT"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!(
                "; ports below 1024 need privileges: choose a higher port with {option} HOST:PORT"
            )
        }
        std::io::ErrorKind::AddrNotAvailable => format!(
            "; that address is not one of this machine's: use 127.0.0.1, 0.0.0.0 or one of \
             its interfaces' addresses with {option}"
        ),
        _ => String::new(),
    };
    format!("cannot listen on {addr}: {error}{advice}")
}
