//! Descriptors passed over a UNIX socket (`SCM_RIGHTS`), for the template of preloading:
//! the host hands it a new worker's ends of its channels with the request to fork it.
//!
//! The descriptors ride with the first byte of the frame that announces them, in the same
//! `sendmsg`; the receiver reads its socket with `recvmsg` only, keeping whatever
//! descriptors arrive in order, so that by the time a frame is whole, the descriptors it
//! announces have been received.

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use super::frame::ReadInto;

/// Most descriptors one message may carry (Linux's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// Writes `bytes` on `socket`, the descriptors `fds` attached to the first of them.
pub(crate) fn send_with_fds(
    socket: &UnixStream,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    if fds.len() > MAX_FDS || bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptors go with 1 to 253 at a time, with bytes",
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let payload = std::mem::size_of_val(raw.as_slice());
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    // u64s, for the alignment `cmsghdr` needs.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut sent = 0;
    while sent < bytes.len() {
        let mut iov = libc::iovec {
            iov_base: bytes[sent..].as_ptr().cast_mut().cast(),
            iov_len: bytes.len() - sent,
        };
        // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        if sent == 0 && !raw.is_empty() {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            // SAFETY: `msg` points at `control`, which has room for one header and
            // `payload` bytes of data (CMSG_SPACE above); the header and data pointers
            // stay inside it, and `raw` is `payload` bytes long.
            unsafe {
                let header = libc::CMSG_FIRSTHDR(&raw const msg);
                (*header).cmsg_level = libc::SOL_SOCKET;
                (*header).cmsg_type = libc::SCM_RIGHTS;
                (*header).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
                std::ptr::copy_nonoverlapping(
                    raw.as_ptr().cast::<u8>(),
                    libc::CMSG_DATA(header),
                    payload,
                );
            }
        }
        // SAFETY: `msg` describes live buffers (`iov` over `bytes`, `control`) for the
        // call; MSG_NOSIGNAL turns a closed peer into EPIPE instead of a signal.
        let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL) };
        match usize::try_from(n) {
            Ok(n) => sent += n,
            Err(_) => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

/// A socket read with `recvmsg`, keeping the descriptors that arrive with the bytes
/// (close-on-exec, so that no program the application runs inherits them).
#[derive(Debug)]
pub(crate) struct FdReader {
    socket: UnixStream,
    fds: VecDeque<OwnedFd>,
}

impl FdReader {
    pub(crate) fn new(socket: UnixStream) -> Self {
        FdReader {
            socket,
            fds: VecDeque::new(),
        }
    }

    pub(crate) fn socket(&self) -> &UnixStream {
        &self.socket
    }

    /// The next `n` descriptors received, in order.
    pub(crate) fn take_fds(&mut self, n: usize) -> io::Result<Vec<OwnedFd>> {
        if self.fds.len() < n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{n} descriptors announced, {} received", self.fds.len()),
            ));
        }
        Ok(self.fds.drain(..n).collect())
    }
}

// SAFETY: `recvmsg` initialises exactly the bytes it returns, at most `buf.len()`.
unsafe impl ReadInto for FdReader {
    fn read_into(&mut self, buf: &mut [MaybeUninit<u8>], wait: bool) -> io::Result<usize> {
        // SAFETY: CMSG_SPACE only computes a size.
        let space =
            unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) } as usize;
        let mut control = vec![0u64; space.div_ceil(8)];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid `msghdr`.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let flags = libc::MSG_CMSG_CLOEXEC | if wait { 0 } else { libc::MSG_DONTWAIT };
        // SAFETY: `msg` describes live buffers (`iov` over `buf`, `control`) for the call;
        // the kernel writes (initialises) at most `buf.len()` bytes and returns how many.
        let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &raw mut msg, flags) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        // SAFETY: `msg` was filled by `recvmsg`; CMSG_FIRSTHDR and CMSG_NXTHDR walk the
        // headers it wrote inside `control`, and each SCM_RIGHTS header's data holds
        // `(cmsg_len - CMSG_LEN(0)) / size_of::<c_int>()` descriptors the kernel just
        // installed in this process, which nothing else owns.
        unsafe {
            let mut header = libc::CMSG_FIRSTHDR(&raw const msg);
            while !header.is_null() {
                if (*header).cmsg_level == libc::SOL_SOCKET
                    && (*header).cmsg_type == libc::SCM_RIGHTS
                {
                    let bytes = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    let data = libc::CMSG_DATA(header).cast::<RawFd>();
                    for i in 0..bytes / std::mem::size_of::<RawFd>() {
                        let fd = data.add(i).read_unaligned();
                        self.fds.push_back(OwnedFd::from_raw_fd(fd));
                    }
                }
                header = libc::CMSG_NXTHDR(&raw const msg, header);
            }
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more descriptors arrived than one message may carry",
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn descriptors_arrive_with_their_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        let (x, mut y) = UnixStream::pair().unwrap();
        send_with_fds(&a, b"hello", &[x.as_fd()]).unwrap();
        drop(x);
        let mut reader = FdReader::new(b);
        let mut buf = [MaybeUninit::<u8>::uninit(); 16];
        let n = reader.read_into(&mut buf, true).unwrap();
        // SAFETY: `read_into` initialised the first `n` bytes.
        let read: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        assert_eq!(read, b"hello");
        let fds = reader.take_fds(1).unwrap();
        assert!(reader.take_fds(1).is_err());
        let mut passed = UnixStream::from(fds.into_iter().next().unwrap());
        passed.write_all(b"!").unwrap();
        let mut got = [0u8; 1];
        y.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"!");
    }
}
