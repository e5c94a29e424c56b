//! `start_response` and `write()`, and the state of a response as it is committed.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::pipe::{Gone, Msg, PipeTx, TrySend};
use crate::response::{
    Head, HeadBody, ReasonPhrase, declared_length, parse_header, parse_status,
    status_forbids_length,
};

/// Below this size a chunk is copied; above it the Python `bytes` object itself backs the
/// `Bytes` handed to the host, which saves a copy but costs a deferred reference release.
const ZERO_COPY_MIN: usize = 16 * 1024;

/// Turns a Python `bytes` into `Bytes`, copying only small ones.
pub(crate) fn to_bytes(b: &Bound<'_, PyBytes>) -> Bytes {
    let data = b.as_bytes();
    if data.len() < ZERO_COPY_MIN {
        Bytes::copy_from_slice(data)
    } else {
        Bytes::from_owner(PyBackedBytes::from(b.clone()))
    }
}

/// The `start_response` callable of one request; its `write` method is the `write()`
/// callable that `start_response` returns.
#[pyclass(module = "wsgi_core", name = "StartResponse")]
pub(crate) struct StartResponse {
    /// The response's way to the host; `None` once the request has ended
    /// ([`StartResponse::release`]).
    tx: Option<Arc<PipeTx>>,
    pending: Option<(StatusCode, Option<ReasonPhrase>, HeaderMap)>,
    committed: bool,
    /// The application's `Content-Length`, which the body may not exceed.
    declared: Option<u64>,
    sent: u64,
}

impl StartResponse {
    pub(crate) fn new(tx: Arc<PipeTx>) -> Self {
        StartResponse {
            tx: Some(tx),
            pending: None,
            committed: false,
            declared: None,
            sent: 0,
        }
    }

    pub(crate) fn committed(&self) -> bool {
        self.committed
    }

    /// Lets go of the response once its request has ended, so that whatever the application
    /// keeps alive afterwards (Django leaves a reference cycle through `start_response`
    /// whenever it handles an exception, collected at the next GC, if ever) holds nothing of
    /// the request: a worker process's sink tells the host the thread is free only when it
    /// is dropped. A call after this raises.
    pub(crate) fn release(&mut self) {
        self.tx = None;
        self.pending = None;
    }

    fn ended() -> PyErr {
        PyRuntimeError::new_err("start_response() or write() called after the request ended")
    }

    /// Sends the head, with the body either complete (`Full`) or to follow (`Stream`).
    fn commit(&mut self, body: HeadBody) -> PyResult<Result<(), Gone>> {
        let Some((status, reason, headers)) = self.pending.take() else {
            return Err(PyRuntimeError::new_err(
                "the application produced a response body before calling start_response()",
            ));
        };
        self.committed = true;
        Ok(self.push(Msg::Head(Head {
            status,
            reason,
            headers,
            body,
        })))
    }

    fn push(&self, msg: Msg) -> Result<(), Gone> {
        let Some(tx) = &self.tx else {
            return Err(Gone);
        };
        match tx.try_send(msg) {
            TrySend::Sent => Ok(()),
            TrySend::Gone => Err(Gone),
            // Sending a head never fills the pipe (it weighs nothing).
            TrySend::Full(msg) => tx.send(msg),
        }
    }

    /// Sends one chunk, committing the head first if needed; waits without the GIL
    /// while the client is slow. Bytes beyond the declared `Content-Length` are dropped.
    /// `ends_body`: the caller ends the body at once if this chunk reaches the declared
    /// length (the iterable's loop does; `write()` does not know what follows).
    pub(crate) fn send_chunk(
        &mut self,
        py: Python<'_>,
        chunk: &Bound<'_, PyBytes>,
        ends_body: bool,
    ) -> PyResult<Result<(), Gone>> {
        let len = chunk.as_bytes().len() as u64;
        if len == 0 {
            return Ok(Ok(()));
        }
        if !self.committed
            && let Err(gone) = self.commit(HeadBody::Stream)?
        {
            return Ok(Err(gone));
        }
        let mut data = to_bytes(chunk);
        if let Some(declared) = self.declared {
            let room = declared.saturating_sub(self.sent);
            if len > room {
                tracing::warn!(
                    target: "wsgi_core::app",
                    declared,
                    "the application sent more than its Content-Length; the excess is dropped"
                );
                data.truncate(usize::try_from(room).unwrap_or(usize::MAX));
            }
        }
        if data.is_empty() {
            return Ok(Ok(()));
        }
        self.sent += data.len() as u64;
        let Some(tx) = &self.tx else {
            return Ok(Err(Gone));
        };
        let sent = if ends_body && self.length_reached() {
            tx.try_send_last(Msg::Data(data))
        } else {
            tx.try_send(Msg::Data(data))
        };
        Ok(match sent {
            TrySend::Sent => Ok(()),
            TrySend::Gone => Err(Gone),
            TrySend::Full(msg) => super::detached(py, || tx.send(msg)),
        })
    }

    /// Commits the head of a file response of `available` bytes, adding a Content-Length
    /// when the application gave none. Returns the length to send, `None` if the client
    /// has gone.
    pub(crate) fn commit_file(&mut self, available: u64) -> PyResult<Option<u64>> {
        let length = match self.declared {
            Some(declared) => declared,
            None => {
                if let Some((_, _, headers)) = &mut self.pending {
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(available));
                }
                self.declared = Some(available);
                available
            }
        };
        Ok(self.commit(HeadBody::Stream)?.ok().map(|()| length))
    }

    /// Whether everything the application declared has been sent.
    pub(crate) fn length_reached(&self) -> bool {
        self.declared.is_some_and(|d| self.sent >= d)
    }

    /// Ends a streamed response, or sends the whole of a response whose body is `body`.
    pub(crate) fn finish(&mut self, body: Option<Bytes>) -> PyResult<Result<(), Gone>> {
        if !self.committed {
            let mut body = body.unwrap_or_default();
            let length = body.len() as u64;
            match self.declared {
                Some(declared) if length > declared => {
                    body.truncate(usize::try_from(declared).unwrap_or(usize::MAX));
                }
                Some(declared) if length < declared => {
                    // Too short: stream it and abort, so the client sees an incomplete body.
                    if let Err(gone) = self.commit(HeadBody::Stream)? {
                        return Ok(Err(gone));
                    }
                    self.sent = length;
                    let _ = self.push(Msg::Data(body));
                    return Ok(self.abort_short());
                }
                // Without a declared length the host frames the body by its size, and adds no
                // `Content-Length` where none may go (HEAD, 1xx, 204, 304): only it knows the
                // request's method.
                Some(_) | None => {}
            }
            return self.commit(HeadBody::Full(body));
        }
        match self.declared {
            Some(declared) if self.sent < declared => Ok(self.abort_short()),
            _ => Ok(self.push(Msg::End)),
        }
    }

    /// Ends a body short of its declared length. The host logs it: only it knows whether
    /// the response has a body at all (a HEAD response does not, and Werkzeug answers HEAD
    /// with an empty body and the GET's `Content-Length`).
    fn abort_short(&self) -> Result<(), Gone> {
        let declared = self.declared.unwrap_or_default();
        let why = format!(
            "the application sent {} of the {declared} bytes its Content-Length announced",
            self.sent
        );
        self.push(Msg::Short(why))
    }

    /// Answers an application failure: `fallback` if nothing was sent, else abort.
    pub(crate) fn fail(&mut self, fallback: Head, why: String) {
        if self.committed {
            let _ = self.push(Msg::Abort(why));
        } else {
            self.committed = true;
            let _ = self.push(Msg::Head(fallback));
        }
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let mut this = slf.borrow_mut();
            if this.tx.is_none() {
                return Err(Self::ended());
            }
            if let Some(exc_info) = exc_info {
                if this.committed {
                    // PEP 3333: too late to change the status; re-raise the original error.
                    let exc_info = exc_info.cast::<PyTuple>()?;
                    let value = exc_info.get_item(1)?;
                    let value = value.call_method1("with_traceback", (exc_info.get_item(2)?,))?;
                    return Err(PyErr::from_value(value));
                }
            } else if this.pending.is_some() || this.committed {
                return Err(PyRuntimeError::new_err(
                    "start_response() was already called; a second call must pass exc_info",
                ));
            }
            let status = status
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("status must be a str such as '200 OK'"))?
                .to_str()?;
            let (status, reason) = parse_status(status).map_err(PyValueErrorExt::value_error)?;
            let mut parsed = parse_headers(headers)?;
            if status_forbids_length(status) {
                // RFC 9110 §8.6: never on a 1xx or 204, whatever the application says.
                parsed.remove(header::CONTENT_LENGTH);
            }
            this.declared = declared_length(&parsed).map_err(PyValueErrorExt::value_error)?;
            this.pending = Some((status, reason, parsed));
        }
        // An interned name: a &str would be made into a new Python string on every call.
        slf.getattr(pyo3::intern!(slf.py(), "write"))
    }

    /// The `write()` callable: sends `data` now, before anything the iterable yields.
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let chunk = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() takes bytes, not {}",
                data.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        if self.tx.is_none() {
            return Err(Self::ended());
        }
        if self.pending.is_none() && !self.committed {
            return Err(PyRuntimeError::new_err(
                "write() called before start_response()",
            ));
        }
        match self.send_chunk(py, chunk, false)? {
            Ok(()) => Ok(()),
            Err(Gone) => Err(PyOSError::new_err("client disconnected")),
        }
    }
}

fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<HeaderMap> {
    let not_list = || PyTypeError::new_err("response headers must be a list of (str, str) tuples");
    if !headers.is_instance_of::<pyo3::types::PyList>() {
        return Err(not_list());
    }
    let mut map = HeaderMap::with_capacity(headers.len()?);
    for item in headers.try_iter()? {
        let item = item?;
        let pair = item.cast::<PyTuple>().map_err(|_| not_list())?;
        if pair.len() != 2 {
            return Err(not_list());
        }
        let (name, value) = (pair.get_item(0)?, pair.get_item(1)?);
        let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
            return Err(PyTypeError::new_err(format!(
                "response header {} must be a (str, str) tuple",
                item.repr()?
            )));
        };
        let (name, value) = parse_header(name.to_str()?, &value.to_string_lossy())
            .map_err(PyValueErrorExt::value_error)?;
        map.append(name, value);
    }
    Ok(map)
}

/// Turns a validation message into a Python `ValueError`.
trait PyValueErrorExt {
    fn value_error(self) -> PyErr;
}

impl PyValueErrorExt for String {
    fn value_error(self) -> PyErr {
        pyo3::exceptions::PyValueError::new_err(self)
    }
}
