//! Framing between the host and its worker processes, over blocking UNIX sockets.
//!
//! A frame is an 8-byte header — payload length (`u32`, little-endian), kind (`u8`), flags
//! (`u8`, none defined yet, sent as 0) and two spare bytes — then the payload. Both ends are
//! always the same binary (a worker is `/proc/self/exe` re-executed), so there is no version
//! negotiation: a new field is one more line in an `encode` and its `decode`.
//!
//! Copies are kept to the kernel's: [`FrameWriter`] hands the header and a body's own
//! [`Bytes`] to one `writev`, and [`FrameReader`] reads into one reused [`BytesMut`] and
//! hands out payloads as [`Bytes`] slices of it. Anything malformed from the peer is an
//! [`io::ErrorKind::InvalidData`] error, never a panic: a worker is a process that may be
//! crashing. A write to a peer that died is `EPIPE`, not a signal: Rust's runtime ignores
//! `SIGPIPE` before `main`, and CPython does too.
//!
//! Reader and writer only borrow the stream (`&UnixStream` is both `Read` and `Write`), so
//! one thread can read a socket while another writes it; each direction needs one owner.

use std::io::{self, IoSlice, Write};
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes in a frame header.
pub(crate) const HEADER_LEN: usize = 8;

/// The largest payload of one frame. Bodies larger than this travel as several frames
/// ([`FrameWriter`] splits them); a bound that also stops a corrupt length from making the
/// reader allocate gigabytes.
pub(crate) const MAX_FRAME: usize = 16 * 1024 * 1024;

/// How much the reader asks the kernel for beyond the frame it needs, so small frames that
/// arrive together (head, body, end) cost one `read`.
const READ_AHEAD: usize = 16 * 1024;

/// One received frame.
#[derive(Debug)]
pub(crate) struct Frame {
    /// What the payload is; each message type owns a range of kinds.
    pub(crate) kind: u8,
    /// The payload, a slice of the reader's buffer.
    pub(crate) payload: Bytes,
}

/// A message that travels as one frame (or, for bodies, several).
pub(crate) trait Message: Sized {
    /// Appends the payload's leading fields to `out` and says how the frame ends.
    fn encode(&self, out: &mut BytesMut) -> Encoded;
    /// Reads a message back from a frame; a frame of another kind or a malformed payload is
    /// an [`io::ErrorKind::InvalidData`] error.
    fn decode(frame: Frame) -> io::Result<Self>;
}

/// What [`Message::encode`] tells the writer besides the fields it wrote.
#[derive(Debug)]
pub(crate) struct Encoded {
    /// The frame kind.
    pub(crate) kind: u8,
    /// Bytes that end the payload, passed to `writev` as they are (a body), never copied.
    pub(crate) tail: Option<Bytes>,
    /// The message is nothing but its tail and may be sent as several frames of the same
    /// kind when the tail is larger than [`MAX_FRAME`] (body pieces).
    pub(crate) splittable: bool,
}

impl Encoded {
    /// A message that is all fields.
    pub(crate) fn fields(kind: u8) -> Encoded {
        Encoded {
            kind,
            tail: None,
            splittable: false,
        }
    }

    /// A message whose fields are followed by `tail`.
    pub(crate) fn with_tail(kind: u8, tail: Bytes) -> Encoded {
        Encoded {
            kind,
            tail: Some(tail),
            splittable: false,
        }
    }

    /// A body piece: the payload is `data` alone, in as many frames as it takes.
    pub(crate) fn body(kind: u8, data: Bytes) -> Encoded {
        Encoded {
            kind,
            tail: Some(data),
            splittable: true,
        }
    }
}

/// Reads frames from a byte stream, reusing one buffer: the messages of type `M`, which
/// name the direction they travel in (`FromWorker`, `ControlToWorker`, ...).
#[derive(Debug)]
pub(crate) struct FrameReader<R, M> {
    inner: R,
    buf: BytesMut,
    message: PhantomData<fn() -> M>,
}

impl<R: ReadInto, M: Message> FrameReader<R, M> {
    /// A reader over `inner` (a `UnixStream` or `&UnixStream`).
    pub(crate) fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(READ_AHEAD),
            message: PhantomData,
        }
    }

    /// The next frame; `None` when the peer closed the stream between frames. A stream that
    /// ends inside a frame is [`io::ErrorKind::UnexpectedEof`].
    pub(crate) fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.split_frame()? {
                return Ok(Some(frame));
            }
            if self.fill(self.needed())? == 0 {
                return self.at_end();
            }
        }
    }

    /// The next frame as a message.
    pub(crate) fn recv(&mut self) -> io::Result<Option<M>> {
        self.read_frame()?.map(M::decode).transpose()
    }

    /// One `read` of at least `needed` bytes' room; returns what it read (0 at end of stream).
    fn fill(&mut self, needed: usize) -> io::Result<usize> {
        let inner = &mut self.inner;
        fill_with(&mut self.buf, needed, |buf| inner.read_into(buf, true))
    }

    /// The next frame if the bytes for it have arrived, without waiting: an
    /// [`io::ErrorKind::WouldBlock`] error when they have not (what did arrive is kept for
    /// the next call); otherwise as [`read_frame`](Self::read_frame).
    pub(crate) fn try_read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.split_frame()? {
                return Ok(Some(frame));
            }
            let needed = self.needed();
            let inner = &mut self.inner;
            if fill_with(&mut self.buf, needed, |buf| inner.read_into(buf, false))? == 0 {
                return self.at_end();
            }
        }
    }

    /// The next frame as a message, without waiting.
    pub(crate) fn try_recv(&mut self) -> io::Result<Option<M>> {
        self.try_read_frame()?.map(M::decode).transpose()
    }
}

impl<R, M> FrameReader<R, M> {
    /// Whether bytes already read wait in the buffer: a reader that polls its stream first
    /// must not wait while they hold a frame.
    pub(crate) fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The stream it reads.
    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The frame at the front of the buffer, if it is all there.
    fn split_frame(&mut self) -> io::Result<Option<Frame>> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(invalid(format!(
                "frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"
            )));
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(HEADER_LEN + len);
        // Byte 5, the flags, has no meaning yet.
        let kind = frame[4];
        frame.advance(HEADER_LEN);
        Ok(Some(Frame {
            kind,
            payload: frame.freeze(),
        }))
    }

    /// Bytes still missing from the frame at the front of the buffer (its header first).
    fn needed(&self) -> usize {
        if self.buf.len() >= HEADER_LEN {
            let len = u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
            (HEADER_LEN + len).saturating_sub(self.buf.len())
        } else {
            HEADER_LEN - self.buf.len()
        }
    }

    /// The stream ended: cleanly between frames, or inside one.
    fn at_end(&self) -> io::Result<Option<Frame>> {
        if self.buf.is_empty() {
            Ok(None)
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the stream inside a frame",
            ))
        }
    }
}

/// One read by `read` into `buf`'s room of at least `needed` bytes; returns what it read (0
/// at end of stream), and keeps what was there on an error.
fn fill_with(
    buf: &mut BytesMut,
    needed: usize,
    mut read: impl FnMut(&mut [MaybeUninit<u8>]) -> io::Result<usize>,
) -> io::Result<usize> {
    // Read into the room as it is: zeroing 16 KiB before every read showed in the relay's
    // profile (3% of the host's time), next to a syscall that fills a few hundred bytes.
    buf.reserve(needed.max(READ_AHEAD));
    let room = buf.spare_capacity_mut();
    let room_len = room.len();
    let read = loop {
        match read(room) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    assert!(
        read <= room_len,
        "a read reported more bytes than it had room for"
    );
    // SAFETY: `ReadInto::read_into` initialised the first `read` bytes of the room, which
    // follow the buffer's length directly and fit in its capacity (checked above).
    unsafe { buf.set_len(buf.len() + read) };
    Ok(read)
}

/// A byte stream the reader fills without zeroing its buffer first.
///
/// # Safety
///
/// `read_into` must return `Ok(n)` only after initialising the first `n` bytes of `buf`,
/// with `n <= buf.len()`: the reader then counts them as read.
pub(crate) unsafe trait ReadInto {
    /// Reads what has arrived into `buf`, waiting for something if `wait`; an
    /// [`io::ErrorKind::WouldBlock`] error when nothing has and `!wait`, 0 at the end of
    /// the stream.
    fn read_into(&mut self, buf: &mut [MaybeUninit<u8>], wait: bool) -> io::Result<usize>;
}

/// One `recv`: with `MSG_DONTWAIT` when not waiting, so the socket itself stays blocking
/// for the handles that wait (as `try_write_vectored` does for writes).
#[cfg(unix)]
fn recv(fd: std::os::fd::RawFd, buf: &mut [MaybeUninit<u8>], wait: bool) -> io::Result<usize> {
    let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
    // SAFETY: `buf` is valid for writes of its length for the duration of the call; the
    // kernel writes (initialises) at most that many bytes and returns how many.
    let read = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
    usize::try_from(read).map_err(|_| io::Error::last_os_error())
}

// SAFETY: `recv` initialises exactly the bytes it returns, at most `buf.len()`.
#[cfg(unix)]
unsafe impl ReadInto for std::os::unix::net::UnixStream {
    fn read_into(&mut self, buf: &mut [MaybeUninit<u8>], wait: bool) -> io::Result<usize> {
        recv(std::os::fd::AsRawFd::as_raw_fd(self), buf, wait)
    }
}

// SAFETY: as for `UnixStream`.
#[cfg(unix)]
unsafe impl ReadInto for &std::os::unix::net::UnixStream {
    fn read_into(&mut self, buf: &mut [MaybeUninit<u8>], wait: bool) -> io::Result<usize> {
        recv(std::os::fd::AsRawFd::as_raw_fd(*self), buf, wait)
    }
}

// SAFETY: copies `n` bytes into the first `n` of `buf`, `n <= buf.len()`.
unsafe impl ReadInto for &[u8] {
    fn read_into(&mut self, buf: &mut [MaybeUninit<u8>], _wait: bool) -> io::Result<usize> {
        let n = self.len().min(buf.len());
        let (head, rest) = self.split_at(n);
        for (to, from) in buf.iter_mut().zip(head) {
            to.write(*from);
        }
        *self = rest;
        Ok(n)
    }
}

/// Writes frames of messages of type `M` (which name their direction) to a byte stream:
/// queued frames go out in one `writev` on [`flush`](Self::flush).
#[derive(Debug)]
pub(crate) struct FrameWriter<W, M> {
    inner: W,
    /// Headers and fields of queued frames not yet split into `pending`.
    scratch: BytesMut,
    /// Segments to write, in order.
    pending: Vec<Bytes>,
    /// The last `try_flush` left bytes the stream did not take.
    stalled: bool,
    message: PhantomData<fn(M)>,
}

impl<W: Write, M: Message> FrameWriter<W, M> {
    /// A writer over `inner` (a `UnixStream` or `&UnixStream`).
    pub(crate) fn new(inner: W) -> Self {
        FrameWriter {
            inner,
            scratch: BytesMut::with_capacity(4096),
            pending: Vec::new(),
            stalled: false,
            message: PhantomData,
        }
    }

    /// The stream underneath.
    pub(crate) fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Queues `msg` and writes everything queued.
    pub(crate) fn send(&mut self, msg: &M) -> io::Result<()> {
        self.queue(msg)?;
        self.flush()
    }

    /// Adds `msg` to what the next [`flush`](Self::flush) writes. A message too large for one
    /// frame (and not a body piece) is an [`io::ErrorKind::InvalidInput`] error and is not
    /// queued.
    pub(crate) fn queue(&mut self, msg: &M) -> io::Result<()> {
        let start = self.scratch.len();
        self.scratch.put_bytes(0, HEADER_LEN);
        let encoded = msg.encode(&mut self.scratch);
        let fields = self.scratch.len() - start - HEADER_LEN;
        let tail = encoded.tail.filter(|t| !t.is_empty());
        let tail_len = tail.as_ref().map_or(0, Bytes::len);

        if encoded.splittable && fields == 0 && tail_len > MAX_FRAME {
            self.scratch.truncate(start);
            let mut rest = tail.expect("tail_len > 0");
            while !rest.is_empty() {
                let piece = rest.split_to(rest.len().min(MAX_FRAME));
                put_header(&mut self.scratch, piece.len(), encoded.kind);
                self.pending.push(self.scratch.split().freeze());
                self.pending.push(piece);
            }
            return Ok(());
        }
        if fields + tail_len > MAX_FRAME {
            self.scratch.truncate(start);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a frame of kind {:#x} would be {} bytes, over the {MAX_FRAME}-byte limit",
                    encoded.kind,
                    fields + tail_len
                ),
            ));
        }
        let header = header_bytes(fields + tail_len, encoded.kind);
        self.scratch[start..start + HEADER_LEN].copy_from_slice(&header);
        if let Some(tail) = tail {
            self.pending.push(self.scratch.split().freeze());
            self.pending.push(tail);
        }
        Ok(())
    }

    /// Whether queued bytes wait to be written.
    pub(crate) fn has_pending(&self) -> bool {
        !self.scratch.is_empty() || !self.pending.is_empty()
    }

    /// Whether the last [`try_flush`](FrameWriter::try_flush) left bytes the stream did
    /// not take (its reader is behind), rather than frames merely queued since.
    pub(crate) fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// Writes every queued frame, in as few `writev` calls as the kernel allows. On an error
    /// the queue is dropped: the stream is then broken mid-frame and must not be reused.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if !self.scratch.is_empty() {
            self.pending.push(self.scratch.split().freeze());
        }
        let result = write_all_vectored(&mut self.inner, &self.pending);
        self.pending.clear();
        self.stalled = false;
        result
    }
}

impl<W: TryWrite, M> FrameWriter<W, M> {
    /// Writes as much of what is queued as the stream takes without waiting, and keeps the
    /// rest queued, in order, for the next [`flush`](Self::flush) or `try_flush`: a frame
    /// cut by a partial write goes on where it stopped, so frames stay whole on the stream.
    /// Nothing queued is no system call. Safe to call where blocking is not (a thread
    /// holding the GIL). On an error the queue is dropped, as in `flush`.
    pub(crate) fn try_flush(&mut self) -> io::Result<()> {
        if !self.scratch.is_empty() {
            self.pending.push(self.scratch.split().freeze());
        }
        loop {
            let slices: Vec<IoSlice<'_>> = self
                .pending
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| IoSlice::new(s))
                .collect();
            if slices.is_empty() {
                self.pending.clear();
                self.stalled = false;
                return Ok(());
            }
            match self.inner.try_write_vectored(&slices) {
                Ok(0) => {
                    self.pending.clear();
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the peer accepted no bytes",
                    ));
                }
                Ok(n) => consume(&mut self.pending, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stalled = true;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.pending.clear();
                    return Err(e);
                }
            }
        }
    }
}

/// Drops the first `n` bytes of `segments`: the segments written whole, and the start of
/// the one a partial write cut (a `Bytes` slice, no copy).
fn consume(segments: &mut Vec<Bytes>, mut n: usize) {
    let mut done = 0;
    for segment in segments.iter_mut() {
        if n < segment.len() {
            segment.advance(n);
            break;
        }
        n -= segment.len();
        done += 1;
    }
    segments.drain(..done);
}

/// A stream that can be written without waiting for room.
pub(crate) trait TryWrite {
    /// Writes as much of `bufs` as the stream takes right now; an
    /// [`io::ErrorKind::WouldBlock`] error when it takes nothing.
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

/// The most slices one `sendmsg` takes (`UIO_MAXIOV` on Linux, `IOV_MAX` on the BSDs).
#[cfg(unix)]
const MAX_IOV: usize = 1024;

#[cfg(unix)]
impl TryWrite for std::os::unix::net::UnixStream {
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // `MSG_DONTWAIT` makes this one call non-blocking without switching the socket,
        // which its other handles (the reader) share, to non-blocking mode and back.
        // SAFETY: an all-zero `msghdr` is valid (no address, no control data); `IoSlice` is
        // ABI-compatible with `iovec` on Unix (std documents it), and the slices outlive
        // the call, which only reads them.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = bufs.as_ptr().cast_mut().cast::<libc::iovec>();
            msg.msg_iovlen = bufs.len().min(MAX_IOV) as _;
            libc::sendmsg(self.as_raw_fd(), &msg, libc::MSG_DONTWAIT)
        };
        usize::try_from(sent).map_err(|_| io::Error::last_os_error())
    }
}

fn write_all_vectored(out: &mut impl Write, segments: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = segments
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| IoSlice::new(s))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the peer accepted no bytes",
                ));
            }
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn header_bytes(len: usize, kind: u8) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("frame length checked against MAX_FRAME");
    let mut header = [0; HEADER_LEN];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4] = kind;
    header
}

fn put_header(out: &mut BytesMut, len: usize, kind: u8) {
    out.put_slice(&header_bytes(len, kind));
}

/// An [`io::ErrorKind::InvalidData`] error: the peer sent something this end cannot read.
pub(crate) fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

// ---- field encoding: fixed-size integers little-endian, byte strings as u32 length + bytes.

/// Appends a length-prefixed byte string.
pub(crate) fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("fields are bounded by MAX_FRAME");
    out.put_u32_le(len);
    out.put_slice(bytes);
}

/// Appends an optional byte string (a presence byte, then the string).
pub(crate) fn put_opt_bytes(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            out.put_u8(1);
            put_bytes(out, b);
        }
        None => out.put_u8(0),
    }
}

/// Reads the fields of one payload; every getter fails cleanly on a short or bad payload.
#[derive(Debug)]
pub(crate) struct Fields {
    buf: Bytes,
}

impl Fields {
    /// The fields of `payload`.
    pub(crate) fn new(payload: Bytes) -> Fields {
        Fields { buf: payload }
    }

    fn need(&self, n: usize, what: &str) -> io::Result<()> {
        if self.buf.remaining() < n {
            return Err(invalid(format!(
                "truncated frame: {what} needs {n} bytes, {} left",
                self.buf.remaining()
            )));
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, what: &str) -> io::Result<u8> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &str) -> io::Result<u16> {
        self.need(2, what)?;
        Ok(self.buf.get_u16_le())
    }

    pub(crate) fn u32(&mut self, what: &str) -> io::Result<u32> {
        self.need(4, what)?;
        Ok(self.buf.get_u32_le())
    }

    pub(crate) fn i32(&mut self, what: &str) -> io::Result<i32> {
        self.need(4, what)?;
        Ok(self.buf.get_i32_le())
    }

    pub(crate) fn u64(&mut self, what: &str) -> io::Result<u64> {
        self.need(8, what)?;
        Ok(self.buf.get_u64_le())
    }

    pub(crate) fn bool(&mut self, what: &str) -> io::Result<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(invalid(format!("{what}: {other} is not a boolean"))),
        }
    }

    /// A length-prefixed byte string, as a slice of the payload (no copy).
    pub(crate) fn bytes(&mut self, what: &str) -> io::Result<Bytes> {
        let len = self.u32(what)? as usize;
        self.need(len, what)?;
        Ok(self.buf.split_to(len))
    }

    /// A length-prefixed byte string, copied out.
    pub(crate) fn vec(&mut self, what: &str) -> io::Result<Vec<u8>> {
        Ok(self.bytes(what)?.to_vec())
    }

    /// A length-prefixed UTF-8 string.
    pub(crate) fn string(&mut self, what: &str) -> io::Result<String> {
        String::from_utf8(self.vec(what)?).map_err(|_| invalid(format!("{what} is not UTF-8")))
    }

    /// An optional byte string written by [`put_opt_bytes`], as a slice of the payload.
    pub(crate) fn opt_bytes(&mut self, what: &str) -> io::Result<Option<Bytes>> {
        self.option(what, |f| f.bytes(what))
    }

    /// A presence byte, then `read` if present.
    pub(crate) fn option<T>(
        &mut self,
        what: &str,
        read: impl FnOnce(&mut Fields) -> io::Result<T>,
    ) -> io::Result<Option<T>> {
        if self.bool(what)? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A count of items that each take at least `min_item` bytes, checked against what is
    /// left so a corrupt count cannot make the caller reserve a huge vector.
    pub(crate) fn count(&mut self, what: &str, min_item: usize) -> io::Result<usize> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item) > self.buf.remaining() {
            return Err(invalid(format!(
                "{what}: {n} items cannot fit in {} bytes",
                self.buf.remaining()
            )));
        }
        Ok(n)
    }

    /// Whatever is left (a trailing body), without copying.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails if anything is left: the two ends disagree on the layout.
    pub(crate) fn finish(self, what: &str) -> io::Result<()> {
        if self.buf.has_remaining() {
            return Err(invalid(format!(
                "{} unexpected bytes after {what}",
                self.buf.remaining()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test message: `n` then a body tail.
    #[derive(Debug, PartialEq)]
    struct Probe {
        n: u64,
        tail: Bytes,
        splittable: bool,
    }

    impl Message for Probe {
        fn encode(&self, out: &mut BytesMut) -> Encoded {
            if self.splittable {
                return Encoded::body(0x7f, self.tail.clone());
            }
            out.put_u64_le(self.n);
            Encoded::with_tail(0x7e, self.tail.clone())
        }

        fn decode(frame: Frame) -> io::Result<Self> {
            match frame.kind {
                0x7f => Ok(Probe {
                    n: 0,
                    tail: frame.payload,
                    splittable: true,
                }),
                0x7e => {
                    let mut f = Fields::new(frame.payload);
                    let n = f.u64("n")?;
                    Ok(Probe {
                        n,
                        tail: f.rest(),
                        splittable: false,
                    })
                }
                k => Err(invalid(format!("kind {k}"))),
            }
        }
    }

    /// Records each `write_vectored` call's slices and takes at most `limit` bytes per call.
    #[derive(Default)]
    struct Recorder {
        out: Vec<u8>,
        calls: Vec<usize>,
        limit: Option<usize>,
    }

    /// Appends the first `budget` bytes of `bufs` to `out`, as a short write would take them.
    fn append_up_to(out: &mut Vec<u8>, bufs: &[IoSlice<'_>], mut budget: usize) -> usize {
        let mut written = 0;
        for b in bufs {
            let n = b.len().min(budget);
            out.extend_from_slice(&b[..n]);
            written += n;
            budget -= n;
            if budget == 0 {
                break;
            }
        }
        written
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls.push(bufs.len());
            Ok(append_up_to(
                &mut self.out,
                bufs,
                self.limit.unwrap_or(usize::MAX),
            ))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A reader that returns at most `step` bytes per read, to exercise partial frames.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    // SAFETY: copies `n` bytes into the first `n` of `buf`, `n <= buf.len()`.
    unsafe impl ReadInto for Trickle<'_> {
        fn read_into(&mut self, buf: &mut [MaybeUninit<u8>], _wait: bool) -> io::Result<usize> {
            let n = self.data.len().min(self.step).min(buf.len());
            for (to, from) in buf.iter_mut().zip(&self.data[..n]) {
                to.write(*from);
            }
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn header_then_tail_in_one_writev_and_back() {
        let msg = Probe {
            n: 7,
            tail: Bytes::from_static(b"hello"),
            splittable: false,
        };
        let mut w = FrameWriter::new(Recorder::default());
        w.send(&msg).unwrap();
        let rec = w.get_ref();
        assert_eq!(rec.calls, vec![2], "header+fields and the tail, one call");
        assert_eq!(&rec.out[..8], &[13, 0, 0, 0, 0x7e, 0, 0, 0]);
        let mut r = FrameReader::new(&rec.out[..]);
        assert_eq!(r.recv().unwrap(), Some(msg));
        assert!(r.recv().unwrap().is_none(), "clean end");
    }

    #[test]
    fn queued_frames_coalesce_and_survive_partial_writes_and_reads() {
        let msgs = probes(0..50);
        let mut w = FrameWriter::new(Recorder {
            limit: Some(13),
            ..Recorder::default()
        });
        for m in &msgs {
            w.queue(m).unwrap();
        }
        w.flush().unwrap();
        let out = &w.get_ref().out;
        for step in [1, 7, 8, 9, 4096] {
            let mut r = FrameReader::new(Trickle { data: out, step });
            for m in &msgs {
                assert_eq!(r.recv().unwrap().as_ref(), Some(m), "step {step}");
            }
            assert!(r.recv().unwrap().is_none());
        }
    }

    /// A stream with `room` bytes of buffer for writes that must not wait:
    /// `try_write_vectored` takes at most `step` bytes a call and fails with `WouldBlock`
    /// once the room is used up; a blocking write takes everything.
    #[derive(Default)]
    struct Cramped {
        out: Vec<u8>,
        room: usize,
        step: usize,
        tries: usize,
    }

    impl Write for Cramped {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl TryWrite for Cramped {
        fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.tries += 1;
            let budget = self.room.min(self.step);
            if budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let written = append_up_to(&mut self.out, bufs, budget);
            self.room -= written;
            Ok(written)
        }
    }

    fn probes(range: std::ops::Range<u64>) -> Vec<Probe> {
        range
            .map(|i| Probe {
                n: i,
                tail: Bytes::from(vec![i as u8; (i as usize) * 37]),
                splittable: false,
            })
            .collect()
    }

    #[test]
    fn try_flush_writes_what_fits_and_keeps_the_rest_whole_and_in_order() {
        let first = probes(0..50);
        let mut w = FrameWriter::new(Cramped {
            room: 1000,
            step: 13,
            ..Cramped::default()
        });
        for m in &first {
            w.queue(m).unwrap();
        }
        assert!(!w.is_stalled(), "queued is not stalled");
        w.try_flush().unwrap();
        // Cut inside a frame, not at a frame's end.
        assert_eq!(w.get_ref().out.len(), 1000);
        assert!(!w.pending.is_empty());
        assert!(w.is_stalled());
        let tries = w.get_ref().tries;
        // A full stream: one try, nothing written, nothing lost.
        w.try_flush().unwrap();
        assert_eq!(w.get_ref().tries, tries + 1);
        assert_eq!(w.get_ref().out.len(), 1000);
        // Frames queued after a partial write go after the rest of the cut one.
        let second = probes(50..60);
        for m in &second {
            w.queue(m).unwrap();
        }
        w.flush().unwrap();
        assert!(!w.is_stalled());
        let out = &w.get_ref().out;
        for step in [1, 7, 4096] {
            let mut r = FrameReader::new(Trickle { data: out, step });
            for m in first.iter().chain(&second) {
                assert_eq!(r.recv().unwrap().as_ref(), Some(m), "step {step}");
            }
            assert!(r.recv().unwrap().is_none());
        }
    }

    #[test]
    fn try_flush_with_nothing_queued_makes_no_call() {
        let mut w = FrameWriter::new(Cramped {
            room: 100,
            step: 100,
            ..Cramped::default()
        });
        w.try_flush().unwrap();
        w.send(&Probe {
            n: 1,
            tail: Bytes::new(),
            splittable: false,
        })
        .unwrap();
        w.try_flush().unwrap();
        assert_eq!(w.get_ref().tries, 0);
    }

    /// The socket's own non-blocking write: a body larger than the socket's buffer leaves
    /// `try_flush` at once, partly written (a blocking write would wait here for ever, as
    /// nobody reads yet), and a later `flush` completes the frames.
    #[test]
    fn try_flush_on_a_full_socket_returns_without_waiting() {
        use std::os::unix::net::UnixStream;
        let (host, worker) = UnixStream::pair().unwrap();
        let big = Bytes::from((0..8 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let mut w = FrameWriter::new(worker);
        w.queue(&Probe {
            n: 0,
            tail: big.clone(),
            splittable: true,
        })
        .unwrap();
        w.queue(&Probe {
            n: 9,
            tail: Bytes::from_static(b"end"),
            splittable: false,
        })
        .unwrap();
        let (done, tried) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = w.try_flush();
            let _ = done.send((result, w));
        });
        let (result, mut w) = tried
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("try_flush waited for the reader");
        result.unwrap();
        assert!(
            !w.pending.is_empty(),
            "8 MiB fitted in the socket's buffer?"
        );
        let reader = std::thread::spawn(move || {
            let mut r = FrameReader::<_, Probe>::new(host);
            let mut body = Vec::new();
            loop {
                let probe = r.recv().unwrap().expect("a frame");
                if !probe.splittable {
                    return (body, probe);
                }
                body.extend_from_slice(&probe.tail);
            }
        });
        w.flush().unwrap();
        let (body, last) = reader.join().unwrap();
        assert!(body == big[..], "the body arrived whole and in order");
        assert_eq!(last.n, 9);
        assert_eq!(last.tail, "end");
    }

    #[test]
    fn bodies_over_the_limit_go_as_several_frames_without_copies() {
        let big = Bytes::from(vec![5u8; 2 * MAX_FRAME + 10]);
        let mut w = FrameWriter::new(Recorder::default());
        w.queue(&Probe {
            n: 0,
            tail: big.clone(),
            splittable: true,
        })
        .unwrap();
        // The pieces are slices of the original buffer.
        assert_eq!(w.pending.len(), 6);
        assert_eq!(w.pending[1].as_ptr(), big.as_ptr());
        w.flush().unwrap();
        let mut r = FrameReader::<_, Probe>::new(&w.get_ref().out[..]);
        let sizes: Vec<usize> = std::iter::from_fn(|| r.recv().unwrap())
            .map(|p| p.tail.len())
            .collect();
        assert_eq!(sizes, vec![MAX_FRAME, MAX_FRAME, 10]);
    }

    #[test]
    fn an_oversized_message_is_refused_and_not_queued() {
        let mut w = FrameWriter::new(Recorder::default());
        let err = w
            .queue(&Probe {
                n: 1,
                tail: Bytes::from(vec![0u8; MAX_FRAME]),
                splittable: false,
            })
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        w.flush().unwrap();
        assert!(w.get_ref().out.is_empty());
    }

    #[test]
    fn corrupt_lengths_and_truncation_are_errors() {
        let huge = [0xff, 0xff, 0xff, 0x7f, 0x7e, 0, 0, 0];
        let err = FrameReader::<_, Probe>::new(&huge[..])
            .read_frame()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let cut = [20, 0, 0, 0, 0x7e, 0, 0, 0, 1, 2, 3];
        let err = FrameReader::<_, Probe>::new(&cut[..])
            .read_frame()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        let half_header = [20, 0, 0];
        let err = FrameReader::<_, Probe>::new(&half_header[..])
            .read_frame()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        // A well-framed payload too short for its fields.
        let short = [2, 0, 0, 0, 0x7e, 0, 0, 0, 1, 2];
        let err = FrameReader::<_, Probe>::new(&short[..]).recv().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn counts_are_checked_against_the_payload() {
        let mut out = BytesMut::new();
        out.put_u32_le(u32::MAX);
        let mut f = Fields::new(out.freeze());
        assert!(f.count("headers", 8).is_err());
    }

    /// The worker-process runner tells a request the worker never read from one it may have
    /// run by how the worker's death ends the stream: `ECONNRESET` when bytes of ours were
    /// still unread in its socket, a plain end of stream when not.
    #[test]
    fn a_peer_that_closes_with_our_bytes_unread_resets_the_stream() {
        use std::os::unix::net::UnixStream;
        let probe = || Probe {
            n: 7,
            tail: Bytes::from_static(b"request"),
            splittable: false,
        };

        let (host, worker) = UnixStream::pair().unwrap();
        FrameWriter::new(&host).send(&probe()).unwrap();
        drop(worker);
        let err = FrameReader::<_, Probe>::new(&host)
            .read_frame()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);

        let (host, worker) = UnixStream::pair().unwrap();
        FrameWriter::new(&host).send(&probe()).unwrap();
        assert_eq!(FrameReader::new(&worker).recv().unwrap(), Some(probe()));
        drop(worker);
        assert!(
            FrameReader::<_, Probe>::new(&host)
                .read_frame()
                .unwrap()
                .is_none()
        );
    }
}
