//! The Python threads and the life of one request on them.

use std::fs::File;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use http::StatusCode;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use super::environ::{self, Template};
use super::errors::WsgiErrors;
use super::file_wrapper::FileWrapper;
use super::input::WsgiInput;
use super::start_response::{StartResponse, to_bytes};
use super::traceback_text;
use crate::busy::{Busy, RequestLine};
use crate::dispatch::{Dispatch, Park};
use crate::environ::CgiVars;
use crate::error::Error;
use crate::job::Job;
use crate::pipe::{Msg, PipeTx};
use crate::response::Head;
use crate::state::{InFlight, Running, Shared, Slot, Stage};

/// Starts `threads` Python threads taking jobs from `queue`, each publishing its Python
/// thread id and the request in the slot of the request it runs (`shared.slots`), for
/// timeouts, interrupts and reports.
pub(crate) fn spawn_threads(
    app: Py<PyAny>,
    queue: Arc<Dispatch<Job>>,
    threads: usize,
    shared: Arc<Shared>,
    multiprocess: bool,
) -> Result<Vec<JoinHandle<()>>, Error> {
    let app = Arc::new(app);
    (0..threads)
        .map(|index| {
            let thread = PythonThread {
                app: app.clone(),
                shared: shared.clone(),
                multiprocess,
                index,
            };
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("wsgi-python-{index}"))
                .spawn(move || thread.serve(&queue))
                .map_err(Error::Thread)
        })
        .collect()
}

struct PythonThread {
    app: Arc<Py<PyAny>>,
    shared: Arc<Shared>,
    multiprocess: bool,
    index: usize,
}

/// Publishes the running request in its slot for the watchdog and the reports, and
/// withdraws it when dropped; holding the GIL token is what makes that race-free (see
/// `interrupt`).
struct Published<'a, 'py> {
    slot: &'a Slot,
    thread: u64,
    py: Python<'py>,
}

impl Drop for Published<'_, '_> {
    fn drop(&mut self) {
        let finished = self.slot.lock().take();
        if finished.is_some_and(|r| r.stage != Stage::Running) {
            // The RequestTimeout may still be pending if the request ended before Python
            // ran another instruction; it must not hit the thread's next request.
            super::timeout::clear_interrupt(self.py, self.thread);
        }
    }
}

impl PythonThread {
    /// Attaches once for the thread's life; detaches while waiting for work.
    fn serve(self, queue: &Dispatch<Job>) {
        // See `batch_scheduling` for why; a thread that stays SCHED_OTHER still works.
        if let Err(e) = crate::sched::batch_scheduling() {
            tracing::debug!(target: "wsgi_core", "cannot make a Python thread SCHED_BATCH: {e}");
        }
        let multithread = self.shared.slots.len() > 1;
        Python::attach(|py| {
            let setup = Template::new(py, multithread, self.multiprocess)
                .and_then(|t| Ok((t, super::thread_ident(py)?)));
            let (template, thread) = match setup {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(target: "wsgi_core", "cannot start a Python thread: {}", traceback_text(py, &e));
                    return;
                }
            };
            self.serve_queue(py, &template, thread, queue);
        });
    }

    fn serve_queue(&self, py: Python<'_>, template: &Template, thread: u64, queue: &Dispatch<Job>) {
        queue.register(self.index);
        let mut woken = false;
        loop {
            // Jobs are taken with the GIL held, and the next queued one without letting
            // go of it: see `dispatch`.
            let Some(mut job) = queue.take(std::mem::take(&mut woken)) else {
                match super::detached(py, || queue.park(self.index)) {
                    Park::Woken => woken = true,
                    Park::Retry => {}
                    Park::Closed => break,
                }
                continue;
            };
            let remote = job.remote.take();
            if self.shared.admit(&job) {
                if let Some(remote) = &remote {
                    remote.starting();
                }
                self.guarded(py, template, thread, job);
            } else {
                // Its end goes out before the thread says it is done.
                drop(job);
            }
            // In a worker process the response leaves now, without letting go of the GIL
            // unless the socket is full: each release may hand the GIL to another thread
            // and wait to get it back.
            if let Some(mut remote) = remote
                && remote.try_finish()
            {
                super::detached(py, || remote.finish());
            }
        }
    }

    /// Runs `job`, counting the thread busy meanwhile.
    fn guarded(&self, py: Python<'_>, template: &Template, thread: u64, job: Job) {
        let metrics = &self.shared.metrics;
        metrics.busy_threads.fetch_add(1, Ordering::Relaxed);
        // A bug in this crate must cost one response, not a Python thread.
        let ran =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.run(py, template, thread, job)));
        metrics.busy_threads.fetch_sub(1, Ordering::Relaxed);
        if ran.is_err() {
            tracing::error!(target: "wsgi_core", "internal panic while serving a request; the thread carries on");
        }
    }

    fn run(&self, py: Python<'_>, template: &Template, thread: u64, job: Job) {
        let index = job.slot.unwrap_or(self.index);
        let Some(slot) = self.shared.slots.get(index) else {
            tracing::error!(target: "wsgi_core", slot = index, "a request for a slot that does not exist; dropped");
            return;
        };
        *slot.lock() = Some(Running {
            id: job.id,
            deadline: self.shared.timeout.map(|timeout| Instant::now() + timeout),
            tx: job.tx.clone(),
            stage: Stage::Running,
            busy: Some(Busy {
                thread,
                request: RequestLine::starting(&job.vars),
            }),
        });
        let _published = Published { slot, thread, py };
        run(py, &self.app, template, job, self.shared.body_timeout);
    }
}

fn internal_error() -> Head {
    Head::plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
}

fn run(
    py: Python<'_>,
    app: &Py<PyAny>,
    template: &Template,
    job: Job,
    body_timeout: Option<std::time::Duration>,
) {
    let Job {
        vars,
        input,
        content_length,
        in_flight,
        tx,
        ..
    } = job;
    let setup = (|| {
        let input = Bound::new(py, WsgiInput::new(input, content_length, body_timeout))?;
        let errors = Bound::new(py, WsgiErrors::default())?;
        let sr = Bound::new(py, StartResponse::new(tx.clone()))?;
        let environ = environ::build(
            py,
            template,
            &vars,
            input.clone().into_any(),
            errors.clone().into_any(),
        )?;
        Ok::<_, PyErr>((input, errors, sr, environ))
    })();
    let (input, errors, sr, environ) = match setup {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(target: "wsgi_core", "cannot prepare the request: {}", traceback_text(py, &e));
            let _ = tx.try_send(Msg::Head(internal_error()));
            return;
        }
    };
    let in_flight = call(py, app, environ, &sr, &input, &vars, &tx, in_flight);
    errors.borrow_mut().flush();
    drop(in_flight);
    // Whatever the application keeps alive now (a reference cycle through the environ, a
    // thread it started) holds nothing of the request: no way to the response nor to the
    // body. Borrowed only if another thread is inside one of their methods right now.
    if let Ok(mut sr) = sr.try_borrow_mut() {
        sr.release();
    }
    if let Ok(mut input) = input.try_borrow_mut() {
        input.release();
    }
}

/// Calls the application and sends its response; `close()` is called on every path, by
/// this thread or by the one streaming a file (which then owns `in_flight`; otherwise it is
/// handed back).
#[allow(clippy::too_many_arguments)]
fn call(
    py: Python<'_>,
    app: &Py<PyAny>,
    environ: Bound<'_, PyDict>,
    sr: &Bound<'_, StartResponse>,
    input: &Bound<'_, WsgiInput>,
    vars: &CgiVars,
    tx: &Arc<PipeTx>,
    in_flight: InFlight,
) -> Option<InFlight> {
    let iterable = match app.bind(py).call1((environ, sr)) {
        Ok(iterable) => iterable,
        Err(err) => {
            fail(py, sr, input, vars, &err);
            return Some(in_flight);
        }
    };
    if input.borrow().too_large() && !sr.borrow().committed() {
        sr.borrow_mut()
            .fail(too_large(), "request body too large".into());
    } else if let Ok(wrapper) = iterable.cast::<FileWrapper>()
        && let Some(plan) = file_plan(py, wrapper)
    {
        let path = vars.request_uri().into_owned();
        match stream_file(
            py,
            sr,
            wrapper.clone().unbind(),
            plan,
            tx.clone(),
            path,
            in_flight,
        ) {
            // The file's thread calls close().
            Ok(()) => return None,
            Err(err) => {
                fail(py, sr, input, vars, &err);
                close(py, &iterable, tx, &vars.request_uri());
                return None;
            }
        }
    } else if let Err(err) = respond(py, sr, &iterable) {
        fail(py, sr, input, vars, &err);
    }
    close(py, &iterable, tx, &vars.request_uri());
    Some(in_flight)
}

fn too_large() -> Head {
    Head::plain(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large\n")
}

/// Sends the iterable's output: a list or tuple in one piece, anything else chunk by chunk.
fn respond(
    py: Python<'_>,
    sr: &Bound<'_, StartResponse>,
    iterable: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if !sr.borrow().committed() {
        if let Ok(list) = iterable.cast_exact::<PyList>() {
            let body = join(list.iter())?;
            let _ = sr.borrow_mut().finish(Some(body))?;
            return Ok(());
        }
        if let Ok(tuple) = iterable.cast_exact::<PyTuple>() {
            let body = join(tuple.iter())?;
            let _ = sr.borrow_mut().finish(Some(body))?;
            return Ok(());
        }
    }
    for item in iterable.try_iter()? {
        let item = item?;
        let chunk = as_chunk(&item)?;
        let mut state = sr.borrow_mut();
        if state.send_chunk(py, chunk, true)?.is_err() {
            tracing::debug!(target: "wsgi_core", "client disconnected; stopping the response");
            return Ok(());
        }
        if state.length_reached() {
            break;
        }
    }
    let _ = sr.borrow_mut().finish(None)?;
    Ok(())
}

fn as_chunk<'a, 'py>(item: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyBytes>> {
    item.cast::<PyBytes>().map_err(|_| {
        PyTypeError::new_err(format!(
            "a WSGI response body must yield bytes, not {} (encode str chunks first)",
            item.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

/// The items of a list or tuple body as one `Bytes`; each item is checked once.
fn join<'py>(items: impl ExactSizeIterator<Item = Bound<'py, PyAny>>) -> PyResult<Bytes> {
    let chunks = items
        .map(|item| as_chunk(&item).cloned())
        .collect::<PyResult<Vec<Bound<'py, PyBytes>>>>()?;
    if let [only] = chunks.as_slice() {
        return Ok(to_bytes(only));
    }
    let total = chunks.iter().map(|c| c.as_bytes().len()).sum();
    let mut body = Vec::with_capacity(total);
    for chunk in &chunks {
        body.extend_from_slice(chunk.as_bytes());
    }
    Ok(Bytes::from(body))
}

/// Logs the application's exception and answers 500 (or 413), or aborts a started body.
fn fail(
    py: Python<'_>,
    sr: &Bound<'_, StartResponse>,
    input: &Bound<'_, WsgiInput>,
    vars: &CgiVars,
    err: &PyErr,
) {
    let traceback = traceback_text(py, err);
    tracing::error!(
        target: "wsgi_core::app",
        method = %vars.method,
        path = %vars.request_uri(),
        "application error:\n{traceback}"
    );
    let input = input.borrow();
    let fallback = if input.too_large() {
        too_large()
    } else if input.timed_out() {
        Head::plain(StatusCode::REQUEST_TIMEOUT, "Request Timeout\n")
    } else {
        internal_error()
    };
    let summary = traceback.lines().last().unwrap_or("exception").to_owned();
    sr.borrow_mut()
        .fail(fallback, format!("the application raised {summary}"));
}

/// Calls `close()` on the iterable, which PEP 3333 requires on every path. What the
/// response sent is handed to the host first: the response is complete (or failed) by now,
/// and a `close()` that takes its time (cleanup in a generator's `finally:`) or ends the
/// worker process must neither hold it back nor cut it.
fn close(py: Python<'_>, iterable: &Bound<'_, PyAny>, tx: &PipeTx, path: &str) {
    // Lists and tuples have no close(); before 3.13 a failed lookup builds and discards an
    // AttributeError, which is a measurable cost on every hello-world request. Their
    // response leaves when the thread finishes the request, without the GIL.
    if iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>() {
        return;
    }
    let result = iterable
        .getattr_opt(pyo3::intern!(py, "close"))
        .and_then(|close| {
            let Some(close) = close else {
                return Ok(());
            };
            tx.try_flush();
            close.call0().map(drop)
        });
    if let Err(err) = result {
        tracing::error!(
            target: "wsgi_core::app",
            path,
            "the response iterable's close() raised:\n{}",
            traceback_text(py, &err)
        );
    }
}

/// A regular file to stream from `offset`, read in blocks of `block`.
struct FilePlan {
    file: File,
    offset: u64,
    available: u64,
    block: usize,
}

/// The file behind a `wsgi.file_wrapper`, if it has a real descriptor; `None` means the
/// wrapper is iterated like any other iterable (`read(blksize)` in Python).
fn file_plan(py: Python<'_>, wrapper: &Bound<'_, FileWrapper>) -> Option<FilePlan> {
    let w = wrapper.borrow();
    let filelike = w.filelike.bind(py);
    let fd: i32 = filelike.call_method0("fileno").ok()?.extract().ok()?;
    let offset: u64 = filelike.call_method0("tell").ok()?.extract().ok()?;
    let file = dup_fd(fd)?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    Some(FilePlan {
        file,
        offset,
        available: meta.len().saturating_sub(offset),
        block: w.blksize.clamp(64 * 1024, 1024 * 1024),
    })
}

#[cfg(unix)]
fn dup_fd(fd: i32) -> Option<File> {
    use std::os::fd::BorrowedFd;
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned by the file-like's `fileno()` while we hold the GIL
    // and a reference to the file-like, so it is open for the duration of this borrow;
    // we only duplicate it, and the duplicate is owned independently.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned().ok().map(File::from)
}

#[cfg(not(unix))]
fn dup_fd(_fd: i32) -> Option<File> {
    None
}

/// Commits the head and hands the file to a Rust thread, which streams it without the
/// GIL and then calls the wrapper's `close()`.
fn stream_file(
    py: Python<'_>,
    sr: &Bound<'_, StartResponse>,
    wrapper: Py<FileWrapper>,
    plan: FilePlan,
    tx: Arc<PipeTx>,
    path: String,
    in_flight: InFlight,
) -> PyResult<()> {
    let Some(length) = sr.borrow_mut().commit_file(plan.available)? else {
        // The client has gone already: nothing to stream, but close() is still owed.
        close(py, wrapper.bind(py).as_any(), &tx, &path);
        return Ok(());
    };
    let spawned = std::thread::Builder::new()
        .name("wsgi-file".into())
        .spawn(move || {
            let outcome = send_file(&plan, length, &tx);
            let message = match outcome {
                Ok(sent) if sent == length => Msg::End,
                Ok(sent) => Msg::Abort(format!("the file ended after {sent} of {length} bytes")),
                Err(e) => Msg::Abort(e),
            };
            // `send` writes at once (a worker's socket too): the end is out before close().
            let _ = tx.send(message);
            Python::attach(|py| close(py, wrapper.bind(py).as_any(), &tx, &path));
            drop(in_flight);
        });
    spawned.map(drop).map_err(|e| {
        pyo3::exceptions::PyOSError::new_err(format!("cannot start a file thread: {e}"))
    })
}

#[cfg(not(unix))]
fn send_file(_plan: &FilePlan, _length: u64, _tx: &PipeTx) -> Result<u64, String> {
    Err("file streaming needs a Unix platform".into())
}

/// Streams `length` bytes from the plan's offset; positional reads leave the Python file
/// object's own offset alone (the duplicate descriptor shares it).
#[cfg(unix)]
fn send_file(plan: &FilePlan, length: u64, tx: &PipeTx) -> Result<u64, String> {
    use std::os::unix::fs::FileExt;
    let mut sent = 0u64;
    while sent < length {
        let want = usize::try_from(length - sent)
            .unwrap_or(usize::MAX)
            .min(plan.block);
        let mut buf = vec![0u8; want];
        let n = plan
            .file
            .read_at(&mut buf, plan.offset + sent)
            .map_err(|e| format!("reading the file failed: {e}"))?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        if tx.send(Msg::Data(Bytes::from(buf))).is_err() {
            break;
        }
        sent += n as u64;
    }
    Ok(sent)
}
