//! `wsgi.input`: a blocking, file-like view of the streamed request body.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use pyo3::exceptions::{PyOSError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::chunk::Chunk;
use crate::input::InputSource;

/// How far ahead of a line reader the host may read: lines are short, but a reader of
/// lines usually goes on to the next one.
const LINE_READ_AHEAD: u64 = 64 * 1024;

/// The `wsgi.input` stream of one request.
///
/// Reads block with the GIL released while the host fetches more of the body. `read(n)`
/// returns exactly `n` bytes unless the body ends first (as `io.BufferedReader` does),
/// because form parsers rely on that.
#[pyclass(module = "wsgi_core", name = "Input")]
pub(crate) struct WsgiInput {
    source: InputSource,
    buf: BytesMut,
    /// Bytes still expected by `Content-Length`; `None` for a chunked body.
    remaining: Option<u64>,
    eof: bool,
    failure: Option<String>,
    idle_timeout: Option<Duration>,
}

impl WsgiInput {
    pub(crate) fn new(
        source: InputSource,
        content_length: Option<u64>,
        idle_timeout: Option<Duration>,
    ) -> Self {
        WsgiInput {
            source,
            buf: BytesMut::new(),
            remaining: content_length,
            eof: content_length == Some(0),
            failure: None,
            idle_timeout,
        }
    }

    /// Lets go of the body once its request has ended: in a worker process the source reads
    /// the thread's socket, which carries the next request, and elsewhere it may hold a
    /// spooled file. A read afterwards raises.
    pub(crate) fn release(&mut self) {
        self.source = InputSource::empty();
        self.buf = BytesMut::new();
        self.failure = Some("wsgi.input read after the request ended".into());
    }

    pub(crate) fn too_large(&self) -> bool {
        self.source.too_large()
    }

    pub(crate) fn timed_out(&self) -> bool {
        self.source.timed_out()
    }

    /// Fetches the next piece of the body, cut at `Content-Length`; `None` at its end.
    /// `want`: the bytes the caller needs in all, which the host may read ahead.
    fn next_piece(&mut self, py: Python<'_>, want: u64) -> PyResult<Option<Bytes>> {
        if let Some(failure) = &self.failure {
            return Err(PyOSError::new_err(failure.clone()));
        }
        if self.eof {
            return Ok(None);
        }
        let chunk = match self.source.next_buffered() {
            Some(chunk) => chunk,
            None => {
                let (source, timeout) = (&mut self.source, self.idle_timeout);
                super::detached(py, || source.next_chunk(want, timeout))
            }
        };
        match chunk {
            Chunk::Data(mut bytes) => {
                if let Some(left) = &mut self.remaining {
                    // A host may not cut the body at Content-Length; the app must not see more.
                    bytes.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= bytes.len() as u64;
                    self.eof = *left == 0;
                }
                Ok(Some(bytes))
            }
            Chunk::Eof => match self.remaining {
                Some(left) if left > 0 => self.fail(format!(
                    "request body ended {left} bytes short of its Content-Length (client disconnected?)"
                )),
                _ => {
                    self.eof = true;
                    Ok(None)
                }
            },
            Chunk::Failed(why) => self.fail(format!("error reading the request body: {why}")),
            Chunk::TooLarge(max) => self.fail(format!("request body is larger than the server's limit of {max} bytes")),
        }
    }

    /// Fetches one more piece into the buffer (for line reads); `false` at the end of
    /// the body.
    fn fill(&mut self, py: Python<'_>, want: u64) -> PyResult<bool> {
        let Some(piece) = self.next_piece(py, want)? else {
            return Ok(false);
        };
        self.buf.extend_from_slice(&piece);
        Ok(true)
    }

    fn fail<T>(&mut self, why: String) -> PyResult<T> {
        self.failure = Some(why.clone());
        Err(PyOSError::new_err(why))
    }

    /// `read(n)`, or the whole rest for `None`. The pieces the host delivered are copied
    /// once, straight into the `bytes` returned (not through `buf`, which would copy every
    /// byte twice); what the last piece holds beyond `n` waits in `buf`.
    fn read_pieces<'py>(
        &mut self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut have = self.buf.len();
        if let Some(n) = limit
            && have >= n
        {
            return Ok(self.take(py, n));
        }
        let mut pieces = Vec::new();
        if have > 0 {
            pieces.push(self.buf.split().freeze());
        }
        while limit.is_none_or(|n| have < n) {
            let want = limit.map_or(u64::MAX, |n| (n - have) as u64);
            match self.next_piece(py, want) {
                Ok(Some(piece)) => {
                    have += piece.len();
                    pieces.push(piece);
                }
                Ok(None) => break,
                Err(e) => {
                    // What arrived before the error stays readable, as it was before.
                    for piece in &pieces {
                        self.buf.extend_from_slice(piece);
                    }
                    return Err(e);
                }
            }
        }
        let n = limit.map_or(have, |n| n.min(have));
        let out = joined(py, &pieces, n)?;
        if have > n
            && let Some(last) = pieces.last()
        {
            self.buf.extend_from_slice(&last[last.len() - (have - n)..]);
        }
        Ok(out)
    }

    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyBytes> {
        let n = n.min(self.buf.len());
        let out = PyBytes::new(py, &self.buf[..n]);
        self.buf.advance(n);
        out
    }

    fn read_line<'py>(
        &mut self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut searched = 0;
        loop {
            if let Some(i) = self.buf[searched..].iter().position(|&b| b == b'\n') {
                let end = searched + i + 1;
                return Ok(self.take(py, limit.map_or(end, |l| l.min(end))));
            }
            searched = self.buf.len();
            if let Some(l) = limit
                && self.buf.len() >= l
            {
                return Ok(self.take(py, l));
            }
            if !self.fill(py, LINE_READ_AHEAD)? {
                return Ok(self.take(py, self.buf.len()));
            }
        }
    }
}

/// The first `len` bytes of `pieces` as one `bytes`, copied once. (`PyBytes::new_with`
/// would zero its buffer first: a second pass over every byte.)
fn joined<'py>(py: Python<'py>, pieces: &[Bytes], len: usize) -> PyResult<Bound<'py, PyBytes>> {
    match pieces {
        [] => Ok(PyBytes::new(py, b"")),
        [one] => Ok(PyBytes::new(py, &one[..len])),
        _ => PyBytes::new_with_writer(py, len, |out| {
            let mut left = len;
            for piece in pieces {
                let take = piece.len().min(left);
                out.write_bytes(&piece[..take])?;
                left -= take;
            }
            Ok(())
        }),
    }
}

/// `None` or a negative size mean "no limit", as in `io`.
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl WsgiInput {
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        self.read_pieces(py, limit(size))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.read_line(py, limit(size))
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.read_line(py, None)?;
            let len = line.as_bytes().len();
            if len == 0 {
                break;
            }
            lines.append(line)?;
            total += len;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.read_line(py, None)?;
        if line.as_bytes().is_empty() {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(line)
    }

    fn readable(&self) -> bool {
        true
    }

    /// Not a file: some libraries probe for `fileno()` and fall back on `io.UnsupportedOperation`.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        Err(PyErr::from_value(
            py.import("io")?
                .getattr("UnsupportedOperation")?
                .call1(("wsgi.input has no file descriptor",))?,
        ))
    }
}
