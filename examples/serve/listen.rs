//! Listening sockets, and what to do when one cannot be had.

use std::net::TcpListener;

use crate::values::ListenAddr;

/// A non-blocking listener on `addr`, given to `option`, or an error that says what to do
/// about it.
pub(crate) fn bind(addr: &ListenAddr, option: &str) -> Result<TcpListener, String> {
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
