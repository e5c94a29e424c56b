//! The messages between the host and a worker process, and their payload layouts.
//!
//! Three kinds of socket join a host to a worker:
//!
//! - one **intake socket**, host to worker: a [`ToWorker::Request`] for one of the worker's
//!   slots, sent only when that slot is idle (so a worker holds at most one request per
//!   thread); whichever of its threads is free takes it.
//! - one **slot socket per slot** (as many as the worker has threads): the thread running
//!   the slot's request asks for body pieces ([`FromWorker::Want`]; each is answered by one
//!   body frame), and answers the response ([`FromWorker::Response`]: a head, body pieces,
//!   then the end or an abort), then [`FromWorker::Done`] once its thread is free again (after the
//!   iterable's `close()`, which may take its time after the response is complete): the slot
//!   is idle from then on. Which requests a thread had handed to the application when its
//!   worker died is in the [started page](super::started), not on a socket.
//! - one **control socket per worker**: [`ControlToWorker`] and [`ControlFromWorker`].
//!
//! Kinds are disjoint across the four message types, so a frame sent the wrong way is an
//! error rather than a misreading. Integers are little-endian; strings and byte strings are
//! a `u32` length then the bytes; an optional value is a presence byte then the value.
//!
//! A worker's start-up error ([`ControlFromWorker::StartupFailed`]) travels as the [`Error`]
//! itself, variant and fields, so the host returns what an in-process engine would, and a
//! program can match on it (`serve` adds the flag that fixes it). Variants only the host
//! produces go as their message, in an [`Error::WorkerStartup`].

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use bytes::{BufMut, Bytes, BytesMut};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tracing::Level;
use tracing::level_filters::LevelFilter;

use super::frame::{Encoded, Fields, Frame, Message, invalid, put_bytes, put_opt_bytes};
use crate::chunk::Chunk;
use crate::environ::{CgiVars, PathInfo, Value};
use crate::error::{Error, HookStage, MissingModule, PythonException};
use crate::extras::EnvironExtras;
use crate::input::Pulled;
use crate::pipe::Msg;
use crate::process::ids::{LocalSlot, WorkerId};
use crate::python;
use crate::response::{Head, HeadBody, ReasonPhrase};

// Data socket, host → worker.
const REQUEST: u8 = 0x01;
const BODY: u8 = 0x02;
const BODY_END: u8 = 0x03;
const BODY_FAILED: u8 = 0x04;
const BODY_TOO_LARGE: u8 = 0x05;
const BODY_TIMED_OUT: u8 = 0x06;
// Data socket, worker → host.
const WANT: u8 = 0x12;
const HEAD: u8 = 0x13;
const DATA: u8 = 0x14;
const END: u8 = 0x15;
const ABORT: u8 = 0x16;
const SHORT: u8 = 0x17;
const DONE: u8 = 0x18;
// Control socket, host → worker.
const CONFIG: u8 = 0x21;
const INTERRUPT: u8 = 0x22;
const CANCEL: u8 = 0x23;
const SHUTDOWN: u8 = 0x24;
const STUCK: u8 = 0x25;
const LOG_BUSY_THREADS: u8 = 0x26;
// Control socket, worker → host.
const READY: u8 = 0x31;
const STARTUP_FAILED: u8 = 0x32;
const LOG: u8 = 0x33;
const STATS: u8 = 0x34;

/// The first field of a [`STARTUP_FAILED`] frame: which [`Error`] variant its fields are.
mod error_code {
    /// [`Error::WorkerStartup`](crate::Error::WorkerStartup): a message, which is also how
    /// every variant without a code of its own travels.
    pub(super) const MESSAGE: u8 = 0;
    pub(super) const INVALID_APP_SPEC: u8 = 1;
    pub(super) const APP_FILE_NOT_FOUND: u8 = 2;
    pub(super) const NO_PASSENGER_FILE: u8 = 3;
    pub(super) const APP_SYNTAX: u8 = 4;
    pub(super) const APP_IMPORT: u8 = 5;
    pub(super) const APP_ATTRIBUTE_MISSING: u8 = 6;
    pub(super) const APP_NOT_CALLABLE: u8 = 7;
    pub(super) const APP_FACTORY: u8 = 8;
    pub(super) const APP_FACTORY_RESULT: u8 = 9;
    pub(super) const BASE_DIR: u8 = 10;
    pub(super) const VENV: u8 = 11;
    pub(super) const VENV_VERSION: u8 = 12;
    pub(super) const PYTHON_VERSION_FILE: u8 = 13;
    pub(super) const PYTHON: u8 = 14;
    pub(super) const THREAD: u8 = 15;
    pub(super) const NESTED_WORKER: u8 = 16;
    pub(super) const PRELOAD_THREADS: u8 = 17;
    pub(super) const POST_FORK: u8 = 18;
}

/// A request handed to a worker thread.
#[derive(Debug)]
pub(crate) struct Request {
    /// The host's id for the request, used by [`ControlToWorker::Interrupt`] and
    /// [`ControlToWorker::Cancel`].
    pub(crate) id: u64,
    /// The slot whose socket carries the request's body and response.
    pub(crate) slot: LocalSlot,
    /// The CGI variables, computed by the host.
    pub(crate) vars: CgiVars,
    /// The declared body length, when the request has one.
    pub(crate) content_length: Option<u64>,
    /// How the body follows.
    pub(crate) body: RequestBody,
}

/// How a request's body reaches the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestBody {
    /// No body at all.
    None,
    /// The whole body, already buffered by the host, in the request's own frame (which
    /// bounds it to [`MAX_FRAME`](super::frame::MAX_FRAME) with the CGI variables).
    Inline(Bytes),
    /// Pieces follow on demand: each [`FromWorker::Want`] is answered by one
    /// [`ToWorker::Body`], until one that is not data (the end, or why there is no more).
    Streamed,
}

/// Intake and slot sockets, host → worker.
#[derive(Debug)]
pub(crate) enum ToWorker {
    /// A new request, on the intake socket (boxed: the CGI variables dwarf the other
    /// variants).
    Request(Box<Request>),
    /// The answer to a [`FromWorker::Want`], on the slot's socket, as `wsgi.input` takes
    /// it in-process: a piece of the body, its end, or why there is no more.
    Body(Pulled),
}

/// Data socket, worker → host.
#[derive(Debug)]
pub(crate) enum FromWorker {
    /// `wsgi.input` needs this many more body bytes; `u64::MAX` for the rest.
    Want(u64),
    /// A message of the response, as the request's pipe carries it in-process: the head
    /// when PEP 3333 commits it, body pieces, then the end, an abort or a short body.
    Response(Msg),
    /// The worker thread has finished the request, `close()` included, and reads the next.
    /// Comes after the response's last frame; alone, it means the response was left
    /// unfinished.
    Done,
}

/// What a worker process needs to load the application, sent first on the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerConfig {
    /// The application spec, as the user gave it.
    pub(crate) app: String,
    /// Python threads in this worker (one data socket each).
    pub(crate) threads: usize,
    /// The virtualenv to activate.
    pub(crate) venv: Option<PathBuf>,
    /// Where the venv path came from, for error messages (e.g. `" (from $VIRTUAL_ENV)"`).
    pub(crate) venv_origin: String,
    /// The base directory: where the application string is resolved and what goes on
    /// `sys.path` after the application's own (`EngineBuilder::base_dir`).
    pub(crate) base_dir: Option<PathBuf>,
    /// Refuse a `.python-version` that names another Python.
    pub(crate) strict_python_version: bool,
    /// `wsgi.multiprocess`.
    pub(crate) multiprocess: bool,
    /// Which of the host's workers this process runs, for logs.
    pub(crate) index: WorkerId,
    /// The most verbose level the host logs (its `LevelFilter::current()`), so a worker
    /// does not ship records the host would drop.
    pub(crate) log_level: LevelFilter,
    /// Resident memory past which the worker reports itself after a request, so the host
    /// replaces it (`EngineBuilder::max_rss`).
    pub(crate) max_rss: Option<u64>,
    /// The hook each worker calls once the application is loaded (after the fork, with
    /// preload), `module:callable` (`EngineBuilder::post_fork`).
    pub(crate) post_fork: Option<String>,
}

#[cfg(test)]
impl WorkerConfig {
    /// The configuration of worker 0 of `threads` threads running `app`, every other
    /// option at its default.
    pub(crate) fn for_tests(app: &str, threads: usize) -> Self {
        WorkerConfig {
            app: app.into(),
            threads,
            venv: None,
            venv_origin: String::new(),
            base_dir: None,
            strict_python_version: false,
            multiprocess: false,
            index: WorkerId::new(0),
            log_level: LevelFilter::INFO,
            max_rss: None,
            post_fork: None,
        }
    }
}

/// Control socket, host → worker.
#[derive(Debug)]
pub(crate) enum ControlToWorker {
    /// The worker's configuration; always the first message.
    Config(WorkerConfig),
    /// Raise `wsgi_core.RequestTimeout` in the thread of `slot` if it still runs request
    /// `id`, and log that (with the thread's Python stack).
    Interrupt {
        /// The worker thread's slot.
        slot: LocalSlot,
        /// The request that timed out.
        id: u64,
        /// The timeout it overran, for the log line.
        timeout_ms: u64,
    },
    /// The client of request `id` on `slot` is gone: stop sending, call `close()`.
    Cancel {
        /// The worker thread's slot.
        slot: LocalSlot,
        /// The abandoned request.
        id: u64,
    },
    /// Finish the requests in flight within `grace_ms`, then exit.
    Shutdown {
        /// Milliseconds the worker may take.
        grace_ms: u64,
    },
    /// The thread of `slot` did not come back from request `id` well after its interrupt:
    /// log it with the thread's Python stack (the host replaces the worker).
    Stuck {
        /// The worker thread's slot.
        slot: LocalSlot,
        /// The request it is stuck in.
        id: u64,
    },
    /// Log every busy thread's request and Python stack (`Engine::log_busy_threads`).
    LogBusyThreads,
}

/// One log event of a worker, re-emitted by the host into its own `tracing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRecord {
    /// The event's level.
    pub(crate) level: Level,
    /// The event's target in the worker.
    pub(crate) target: String,
    /// The message, with the event's other fields appended as ` key=value`.
    pub(crate) message: String,
}

/// Control socket, worker → host.
#[derive(Debug)]
pub(crate) enum ControlFromWorker {
    /// The application is loaded; the worker takes requests.
    Ready {
        /// The worker's process id.
        pid: u32,
        /// The embedded Python's version.
        python: String,
    },
    /// Loading failed, with the error an in-process engine would have returned (boxed: it
    /// dwarfs the other variants).
    StartupFailed(Box<Error>),
    /// A log event.
    Log(LogRecord),
    /// Periodic figures for the supervisor.
    Stats {
        /// Resident memory.
        rss_bytes: u64,
        /// Requests served so far.
        requests: u64,
    },
}

impl Message for ToWorker {
    fn encode(&self, out: &mut BytesMut) -> Encoded {
        match self {
            ToWorker::Request(req) => {
                out.put_u64_le(req.id);
                out.put_u32_le(req.slot.get());
                match req.content_length {
                    Some(n) => {
                        out.put_u8(1);
                        out.put_u64_le(n);
                    }
                    None => out.put_u8(0),
                }
                put_cgi_vars(out, &req.vars);
                match &req.body {
                    RequestBody::None => {
                        out.put_u8(0);
                        Encoded::fields(REQUEST)
                    }
                    RequestBody::Streamed => {
                        out.put_u8(1);
                        Encoded::fields(REQUEST)
                    }
                    RequestBody::Inline(body) => {
                        out.put_u8(2);
                        Encoded::with_tail(REQUEST, body.clone())
                    }
                }
            }
            ToWorker::Body(Pulled::Chunk(Chunk::Data(data))) => Encoded::body(BODY, data.clone()),
            ToWorker::Body(Pulled::Chunk(Chunk::Eof)) => Encoded::fields(BODY_END),
            ToWorker::Body(Pulled::Chunk(Chunk::Failed(why))) => {
                put_bytes(out, why.as_bytes());
                Encoded::fields(BODY_FAILED)
            }
            ToWorker::Body(Pulled::Chunk(Chunk::TooLarge(limit))) => {
                out.put_u64_le(*limit);
                Encoded::fields(BODY_TOO_LARGE)
            }
            ToWorker::Body(Pulled::TimedOut(why)) => {
                put_bytes(out, why.as_bytes());
                Encoded::fields(BODY_TIMED_OUT)
            }
        }
    }

    fn decode(frame: Frame) -> io::Result<Self> {
        let mut f = Fields::new(frame.payload);
        let msg = match frame.kind {
            REQUEST => {
                let id = f.u64("request id")?;
                let slot = LocalSlot::new(f.u32("slot")?);
                let content_length = f.option("content length", |f| f.u64("content length"))?;
                let vars = get_cgi_vars(&mut f)?;
                let body = match f.u8("body kind")? {
                    0 => RequestBody::None,
                    1 => RequestBody::Streamed,
                    2 => RequestBody::Inline(f.rest()),
                    k => return Err(invalid(format!("unknown request body kind {k}"))),
                };
                ToWorker::Request(Box::new(Request {
                    id,
                    slot,
                    vars,
                    content_length,
                    body,
                }))
            }
            BODY => ToWorker::Body(Pulled::Chunk(Chunk::Data(f.rest()))),
            BODY_END => ToWorker::Body(Pulled::Chunk(Chunk::Eof)),
            BODY_FAILED => ToWorker::Body(Pulled::Chunk(Chunk::Failed(f.string("body error")?))),
            BODY_TOO_LARGE => ToWorker::Body(Pulled::Chunk(Chunk::TooLarge(f.u64("body limit")?))),
            BODY_TIMED_OUT => ToWorker::Body(Pulled::TimedOut(f.string("body timeout")?)),
            k => return Err(unexpected(k, "a host-to-worker data")),
        };
        f.finish("a host-to-worker data frame")?;
        Ok(msg)
    }
}

impl Message for FromWorker {
    fn encode(&self, out: &mut BytesMut) -> Encoded {
        match self {
            FromWorker::Want(n) => {
                out.put_u64_le(*n);
                Encoded::fields(WANT)
            }
            FromWorker::Response(Msg::Head(head)) => {
                // Fields go before the body tail; a new field (a reason phrase) is one more
                // line here and in `decode`.
                out.put_u16_le(head.status.as_u16());
                // Empty for none: `ReasonPhrase` is never empty.
                put_bytes(
                    out,
                    head.reason.as_ref().map_or("", |r| r.as_str()).as_bytes(),
                );
                let count = u32::try_from(head.headers.len()).expect("header count fits u32");
                out.put_u32_le(count);
                for (name, value) in &head.headers {
                    put_bytes(out, name.as_str().as_bytes());
                    put_bytes(out, value.as_bytes());
                }
                match &head.body {
                    HeadBody::Stream => {
                        out.put_u8(0);
                        Encoded::fields(HEAD)
                    }
                    HeadBody::Full(body) => {
                        out.put_u8(1);
                        Encoded::with_tail(HEAD, body.clone())
                    }
                }
            }
            FromWorker::Response(Msg::Data(data)) => Encoded::body(DATA, data.clone()),
            FromWorker::Response(Msg::End) => Encoded::fields(END),
            FromWorker::Done => Encoded::fields(DONE),
            FromWorker::Response(Msg::Abort(why)) => {
                put_bytes(out, why.as_bytes());
                Encoded::fields(ABORT)
            }
            FromWorker::Response(Msg::Short(why)) => {
                put_bytes(out, why.as_bytes());
                Encoded::fields(SHORT)
            }
        }
    }

    fn decode(frame: Frame) -> io::Result<Self> {
        let mut f = Fields::new(frame.payload);
        let msg = match frame.kind {
            WANT => FromWorker::Want(f.u64("wanted bytes")?),
            HEAD => {
                let code = f.u16("status")?;
                let status = StatusCode::from_u16(code)
                    .map_err(|_| invalid(format!("{code} is not an HTTP status")))?;
                let reason = f.string("reason phrase")?;
                let reason = (!reason.is_empty()).then(|| ReasonPhrase::checked(&reason));
                let count = f.count("headers", 8)?;
                let mut headers = HeaderMap::with_capacity(count);
                for _ in 0..count {
                    let name = HeaderName::from_bytes(&f.bytes("header name")?)
                        .map_err(|_| invalid("malformed header name"))?;
                    // Shares the frame's buffer rather than copying the value.
                    let value = HeaderValue::from_maybe_shared(f.bytes("header value")?)
                        .map_err(|_| invalid("malformed header value"))?;
                    headers.append(name, value);
                }
                let body = match f.u8("head body kind")? {
                    0 => HeadBody::Stream,
                    1 => HeadBody::Full(f.rest()),
                    k => return Err(invalid(format!("unknown head body kind {k}"))),
                };
                FromWorker::Response(Msg::Head(Head {
                    status,
                    reason,
                    headers,
                    body,
                }))
            }
            DATA => FromWorker::Response(Msg::Data(f.rest())),
            END => FromWorker::Response(Msg::End),
            DONE => FromWorker::Done,
            ABORT => FromWorker::Response(Msg::Abort(f.string("abort reason")?)),
            SHORT => FromWorker::Response(Msg::Short(f.string("short body reason")?)),
            k => return Err(unexpected(k, "a worker-to-host data")),
        };
        f.finish("a worker-to-host data frame")?;
        Ok(msg)
    }
}

impl Message for ControlToWorker {
    fn encode(&self, out: &mut BytesMut) -> Encoded {
        match self {
            ControlToWorker::Config(c) => {
                put_config(out, c);
                Encoded::fields(CONFIG)
            }
            ControlToWorker::Interrupt {
                slot,
                id,
                timeout_ms,
            } => {
                out.put_u32_le(slot.get());
                out.put_u64_le(*id);
                out.put_u64_le(*timeout_ms);
                Encoded::fields(INTERRUPT)
            }
            ControlToWorker::Cancel { slot, id } => {
                out.put_u32_le(slot.get());
                out.put_u64_le(*id);
                Encoded::fields(CANCEL)
            }
            ControlToWorker::Shutdown { grace_ms } => {
                out.put_u64_le(*grace_ms);
                Encoded::fields(SHUTDOWN)
            }
            ControlToWorker::Stuck { slot, id } => {
                out.put_u32_le(slot.get());
                out.put_u64_le(*id);
                Encoded::fields(STUCK)
            }
            ControlToWorker::LogBusyThreads => Encoded::fields(LOG_BUSY_THREADS),
        }
    }

    fn decode(frame: Frame) -> io::Result<Self> {
        let mut f = Fields::new(frame.payload);
        let msg = match frame.kind {
            CONFIG => ControlToWorker::Config(get_config(&mut f)?),
            INTERRUPT => ControlToWorker::Interrupt {
                slot: LocalSlot::new(f.u32("slot")?),
                id: f.u64("request id")?,
                timeout_ms: f.u64("timeout")?,
            },
            CANCEL => ControlToWorker::Cancel {
                slot: LocalSlot::new(f.u32("slot")?),
                id: f.u64("request id")?,
            },
            SHUTDOWN => ControlToWorker::Shutdown {
                grace_ms: f.u64("grace")?,
            },
            STUCK => ControlToWorker::Stuck {
                slot: LocalSlot::new(f.u32("slot")?),
                id: f.u64("request id")?,
            },
            LOG_BUSY_THREADS => ControlToWorker::LogBusyThreads,
            k => return Err(unexpected(k, "a host-to-worker control")),
        };
        f.finish("a host-to-worker control frame")?;
        Ok(msg)
    }
}

impl Message for ControlFromWorker {
    fn encode(&self, out: &mut BytesMut) -> Encoded {
        match self {
            ControlFromWorker::Ready { pid, python } => {
                out.put_u32_le(*pid);
                put_bytes(out, python.as_bytes());
                Encoded::fields(READY)
            }
            ControlFromWorker::StartupFailed(error) => {
                put_error(out, error);
                Encoded::fields(STARTUP_FAILED)
            }
            ControlFromWorker::Log(record) => {
                out.put_u8(level_code(record.level));
                put_bytes(out, record.target.as_bytes());
                put_bytes(out, record.message.as_bytes());
                Encoded::fields(LOG)
            }
            ControlFromWorker::Stats {
                rss_bytes,
                requests,
            } => {
                out.put_u64_le(*rss_bytes);
                out.put_u64_le(*requests);
                Encoded::fields(STATS)
            }
        }
    }

    fn decode(frame: Frame) -> io::Result<Self> {
        let mut f = Fields::new(frame.payload);
        let msg = match frame.kind {
            READY => ControlFromWorker::Ready {
                pid: f.u32("pid")?,
                python: f.string("python version")?,
            },
            STARTUP_FAILED => ControlFromWorker::StartupFailed(Box::new(get_error(&mut f)?)),
            LOG => ControlFromWorker::Log(LogRecord {
                level: level_from(f.u8("log level")?)?,
                target: f.string("log target")?,
                message: f.string("log message")?,
            }),
            STATS => ControlFromWorker::Stats {
                rss_bytes: f.u64("rss")?,
                requests: f.u64("requests")?,
            },
            k => return Err(unexpected(k, "a worker-to-host control")),
        };
        f.finish("a worker-to-host control frame")?;
        Ok(msg)
    }
}

/// Writes `error`: its [`error_code`], then its fields. Variants only the host produces are
/// written as their message, as an [`Error::WorkerStartup`].
fn put_error(out: &mut BytesMut, error: &Error) {
    use error_code as code;
    let put_str = |out: &mut BytesMut, s: &str| put_bytes(out, s.as_bytes());
    let put_path = |out: &mut BytesMut, p: &std::path::Path| put_bytes(out, &path_bytes(p));
    match error {
        Error::InvalidAppSpec { spec, reason } => {
            out.put_u8(code::INVALID_APP_SPEC);
            put_str(out, spec);
            put_str(out, reason);
        }
        Error::AppFileNotFound { path, base_dir } => {
            out.put_u8(code::APP_FILE_NOT_FOUND);
            put_path(out, path);
            put_path(out, base_dir);
        }
        Error::NoPassengerFile { dir } => {
            out.put_u8(code::NO_PASSENGER_FILE);
            put_path(out, dir);
        }
        Error::AppSyntax {
            file,
            line,
            message,
            context,
        } => {
            out.put_u8(code::APP_SYNTAX);
            put_str(out, file);
            out.put_u32_le(*line);
            put_str(out, message);
            put_str(out, context);
        }
        Error::AppImport {
            module,
            sys_path,
            missing,
            venv,
            exception,
        } => {
            out.put_u8(code::APP_IMPORT);
            put_str(out, module);
            let count = u32::try_from(sys_path.len()).expect("sys.path length fits u32");
            out.put_u32_le(count);
            for entry in sys_path {
                put_str(out, entry);
            }
            match missing {
                None => out.put_u8(0),
                Some(MissingModule::App(name)) => {
                    out.put_u8(1);
                    put_str(out, name);
                }
                Some(MissingModule::Dependency(name)) => {
                    out.put_u8(2);
                    put_str(out, name);
                }
            }
            put_opt_bytes(out, venv.as_deref().map(path_bytes).as_deref());
            put_exception(out, exception);
        }
        Error::AppAttributeMissing {
            module,
            callable,
            candidates,
        } => {
            out.put_u8(code::APP_ATTRIBUTE_MISSING);
            put_str(out, module);
            put_str(out, callable);
            put_str(out, candidates);
        }
        Error::AppNotCallable {
            module,
            callable,
            type_name,
        } => {
            out.put_u8(code::APP_NOT_CALLABLE);
            put_str(out, module);
            put_str(out, callable);
            put_str(out, type_name);
        }
        Error::AppFactory {
            module,
            call,
            exception,
        } => {
            out.put_u8(code::APP_FACTORY);
            put_str(out, module);
            put_str(out, call);
            put_exception(out, exception);
        }
        Error::AppFactoryResult {
            module,
            call,
            type_name,
        } => {
            out.put_u8(code::APP_FACTORY_RESULT);
            put_str(out, module);
            put_str(out, call);
            put_str(out, type_name);
        }
        Error::BaseDir { path, source } => {
            out.put_u8(code::BASE_DIR);
            put_path(out, path);
            put_io_error(out, source);
        }
        Error::Venv {
            path,
            origin,
            reason,
        } => {
            out.put_u8(code::VENV);
            put_path(out, path);
            put_str(out, origin);
            put_str(out, reason);
        }
        Error::VenvVersion {
            path,
            venv,
            running,
            remedy,
        } => {
            out.put_u8(code::VENV_VERSION);
            put_path(out, path);
            put_str(out, venv);
            put_str(out, running);
            put_str(out, remedy);
        }
        Error::PythonVersionFile {
            file,
            wanted,
            running,
            remedy,
        } => {
            out.put_u8(code::PYTHON_VERSION_FILE);
            put_path(out, file);
            put_str(out, wanted);
            put_str(out, running);
            put_str(out, remedy);
        }
        Error::Python { action, source } => {
            out.put_u8(code::PYTHON);
            put_str(out, action);
            put_exception(out, source);
        }
        Error::Thread(source) => {
            out.put_u8(code::THREAD);
            put_io_error(out, source);
        }
        Error::NestedWorker => out.put_u8(code::NESTED_WORKER),
        Error::PreloadThreads { threads } => {
            out.put_u8(code::PRELOAD_THREADS);
            out.put_u32_le(u32::try_from(threads.len()).unwrap_or(u32::MAX));
            for thread in threads {
                put_str(out, thread);
            }
        }
        Error::PostFork {
            hook,
            stage,
            exception,
        } => {
            out.put_u8(code::POST_FORK);
            put_str(out, hook);
            out.put_u8(hook_stage_code(*stage));
            match exception {
                Some(exception) => {
                    out.put_u8(1);
                    put_exception(out, exception);
                }
                None => out.put_u8(0),
            }
        }
        Error::WorkerStartup(message) => {
            out.put_u8(code::MESSAGE);
            put_str(out, message);
        }
        // The host's own errors: no worker meets them while loading the application. A new
        // variant a worker can meet gets a code of its own instead.
        Error::SpoolDir { .. }
        | Error::Config { .. }
        | Error::TrustedProxy { .. }
        | Error::RestartUnsupported
        | Error::ProcessesUnsupported
        | Error::WorkerSpawn(_)
        | Error::WorkerExitedEarly { .. }
        | Error::WorkerCrashed { .. }
        | Error::WorkerStartTimeout { .. }
        | Error::WorkerChannel(_) => {
            out.put_u8(code::MESSAGE);
            put_str(out, &error.to_string());
        }
    }
}

/// The error [`put_error`] wrote.
fn get_error(f: &mut Fields) -> io::Result<Error> {
    use error_code as code;
    let path = |f: &mut Fields, what: &str| f.vec(what).map(path_from);
    Ok(match f.u8("error variant")? {
        code::MESSAGE => Error::WorkerStartup(f.string("start-up error")?),
        code::INVALID_APP_SPEC => Error::InvalidAppSpec {
            spec: f.string("application spec")?,
            reason: f.string("reason")?,
        },
        code::APP_FILE_NOT_FOUND => Error::AppFileNotFound {
            path: path(f, "application file")?,
            base_dir: path(f, "base directory")?,
        },
        code::NO_PASSENGER_FILE => Error::NoPassengerFile {
            dir: path(f, "application directory")?,
        },
        code::APP_SYNTAX => Error::AppSyntax {
            file: f.string("file")?,
            line: f.u32("line")?,
            message: f.string("message")?,
            context: f.string("context")?,
        },
        code::APP_IMPORT => {
            let module = f.string("module")?;
            let count = f.count("sys.path", 4)?;
            let mut sys_path = Vec::with_capacity(count);
            for _ in 0..count {
                sys_path.push(f.string("sys.path entry")?);
            }
            let missing = match f.u8("missing module kind")? {
                0 => None,
                1 => Some(MissingModule::App(f.string("missing module")?)),
                2 => Some(MissingModule::Dependency(f.string("missing module")?)),
                k => return Err(invalid(format!("unknown missing module kind {k}"))),
            };
            Error::AppImport {
                module,
                sys_path,
                missing,
                venv: f.option("venv", |f| path(f, "venv"))?,
                exception: Box::new(get_exception(f)?),
            }
        }
        code::APP_ATTRIBUTE_MISSING => Error::AppAttributeMissing {
            module: f.string("module")?,
            callable: f.string("callable")?,
            candidates: f.string("candidates")?,
        },
        code::APP_NOT_CALLABLE => Error::AppNotCallable {
            module: f.string("module")?,
            callable: f.string("callable")?,
            type_name: f.string("type name")?,
        },
        code::APP_FACTORY => Error::AppFactory {
            module: f.string("module")?,
            call: f.string("call")?,
            exception: Box::new(get_exception(f)?),
        },
        code::APP_FACTORY_RESULT => Error::AppFactoryResult {
            module: f.string("module")?,
            call: f.string("call")?,
            type_name: f.string("type name")?,
        },
        code::BASE_DIR => Error::BaseDir {
            path: path(f, "base directory")?,
            source: get_io_error(f)?,
        },
        code::VENV => Error::Venv {
            path: path(f, "venv")?,
            origin: f.string("venv origin")?,
            reason: f.string("reason")?,
        },
        code::VENV_VERSION => Error::VenvVersion {
            path: path(f, "venv")?,
            venv: f.string("venv version")?,
            running: f.string("running version")?,
            remedy: f.string("remedy")?,
        },
        code::PYTHON_VERSION_FILE => Error::PythonVersionFile {
            file: path(f, ".python-version file")?,
            wanted: f.string("wanted version")?,
            running: f.string("running version")?,
            remedy: f.string("remedy")?,
        },
        code::PYTHON => {
            let action = f.string("action")?;
            python_error(&action, get_exception(f)?)
        }
        code::THREAD => Error::Thread(get_io_error(f)?),
        code::NESTED_WORKER => Error::NestedWorker,
        code::PRELOAD_THREADS => {
            let count = f.count("threads", 4)?;
            let mut threads = Vec::with_capacity(count);
            for _ in 0..count {
                threads.push(f.string("thread")?);
            }
            Error::PreloadThreads { threads }
        }
        code::POST_FORK => Error::PostFork {
            hook: f.string("post-fork hook")?,
            stage: hook_stage_from(f.u8("post-fork hook stage")?)?,
            exception: f
                .option("post-fork exception", get_exception)?
                .map(Box::new),
        },
        k => return Err(invalid(format!("unknown start-up error variant {k}"))),
    })
}

fn put_exception(out: &mut BytesMut, exception: &PythonException) {
    put_bytes(out, exception.type_name.as_bytes());
    put_bytes(out, exception.message.as_bytes());
    put_bytes(out, exception.traceback.as_bytes());
}

fn get_exception(f: &mut Fields) -> io::Result<PythonException> {
    Ok(PythonException {
        type_name: f.string("exception type")?,
        message: f.string("exception message")?,
        traceback: f.string("traceback")?,
    })
}

/// Writes an operating-system error as its `errno`, which the host turns back into the same
/// error; any other as its kind and, unless it is the kind's own, its message.
fn put_io_error(out: &mut BytesMut, error: &io::Error) {
    if let Some(errno) = error.raw_os_error() {
        out.put_u8(0);
        out.put_i32_le(errno);
        return;
    }
    let kind = error.kind();
    let code = IO_ERROR_KINDS.iter().position(|&k| k == kind);
    let message = error.to_string();
    match code {
        Some(code) if error.get_ref().is_none() && message == io::Error::from(kind).to_string() => {
            out.put_u8(1);
            out.put_u8(code as u8);
        }
        _ => {
            out.put_u8(2);
            out.put_u8(code.unwrap_or(0) as u8);
            put_bytes(out, message.as_bytes());
        }
    }
}

/// The error [`put_io_error`] wrote.
fn get_io_error(f: &mut Fields) -> io::Result<io::Error> {
    let form = f.u8("I/O error form")?;
    if form == 0 {
        return Ok(io::Error::from_raw_os_error(f.i32("errno")?));
    }
    let code = usize::from(f.u8("I/O error kind")?);
    let kind = *IO_ERROR_KINDS
        .get(code)
        .ok_or_else(|| invalid(format!("unknown I/O error kind {code}")))?;
    match form {
        1 => Ok(io::Error::from(kind)),
        2 => Ok(io::Error::new(kind, f.string("I/O error message")?)),
        k => Err(invalid(format!("unknown I/O error form {k}"))),
    }
}

/// The kinds of I/O error that travel as themselves (by their index); any other arrives as
/// `Other`, the first, with its message. Only errors that are not the operating system's
/// use this: those travel as their `errno`.
const IO_ERROR_KINDS: [io::ErrorKind; 24] = {
    use io::ErrorKind::*;
    [
        Other,
        NotFound,
        PermissionDenied,
        ConnectionRefused,
        ConnectionReset,
        ConnectionAborted,
        NotConnected,
        AddrInUse,
        AddrNotAvailable,
        BrokenPipe,
        AlreadyExists,
        WouldBlock,
        InvalidInput,
        InvalidData,
        TimedOut,
        WriteZero,
        Interrupted,
        Unsupported,
        UnexpectedEof,
        OutOfMemory,
        NotADirectory,
        IsADirectory,
        DirectoryNotEmpty,
        ResourceBusy,
    ]
};

/// [`Error::Python`] from a worker: the action it names is one of this binary's
/// ([`python::action::ALL`]); one that is not (a list that fell behind) keeps its message, in
/// an [`Error::WorkerStartup`].
fn python_error(action: &str, source: PythonException) -> Error {
    match python::action::ALL.iter().find(|known| **known == action) {
        Some(action) => Error::Python { action, source },
        None => Error::WorkerStartup(format!("Python interpreter error while {action}: {source}")),
    }
}

fn unexpected(kind: u8, channel: &str) -> io::Error {
    invalid(format!("frame kind {kind:#04x} is not {channel} message"))
}

fn put_cgi_vars(out: &mut BytesMut, v: &CgiVars) {
    put_bytes(out, v.method.as_str().as_bytes());
    put_bytes(out, v.script_name.as_bytes());
    // The target as it is held (`REQUEST_URI` and `QUERY_STRING` are read from it), and
    // `PATH_INFO` beside it, decoded.
    put_bytes(out, v.target.as_str().as_bytes());
    put_bytes(out, v.path_info());
    put_bytes(out, v.protocol.as_bytes());
    put_bytes(out, v.url_scheme.as_bytes());
    put_bytes(out, v.server_name.as_bytes());
    put_bytes(out, v.server_port.as_bytes());
    // An address as its 4 or 16 bytes.
    let addr = v.remote_addr.map(|ip| match ip {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    });
    put_opt_bytes(out, addr.as_deref());
    match v.remote_port {
        Some(port) => {
            out.put_u8(1);
            out.put_u16_le(port);
        }
        None => out.put_u8(0),
    }
    put_opt_bytes(out, v.content_type.as_ref().map(Value::as_bytes));
    put_opt_bytes(out, v.content_length.as_ref().map(Value::as_bytes));
    let count = u32::try_from(v.headers.len()).expect("header count fits u32");
    out.put_u32_le(count);
    for (name, value) in &v.headers {
        put_bytes(out, name.as_bytes());
        put_bytes(out, value.as_bytes());
    }
    let count = u32::try_from(v.extras.iter().len()).expect("extras count fits u32");
    out.put_u32_le(count);
    for (key, value) in v.extras.iter() {
        put_bytes(out, key.as_bytes());
        put_bytes(out, value.as_bytes());
    }
}

/// The variables [`put_cgi_vars`] wrote; the byte strings are slices of the frame, not
/// copies.
fn get_cgi_vars(f: &mut Fields) -> io::Result<CgiVars> {
    let method = Method::from_bytes(&f.bytes("method")?).map_err(|_| invalid("bad method"))?;
    let script_name = f.string("SCRIPT_NAME")?;
    let target = PathAndQuery::from_maybe_shared(f.bytes("REQUEST_URI")?)
        .map_err(|e| invalid(format!("bad request target: {e}")))?;
    let path = PathInfo::Own(f.bytes("PATH_INFO")?);
    let protocol = match &f.bytes("SERVER_PROTOCOL")?[..] {
        b"HTTP/0.9" => "HTTP/0.9",
        b"HTTP/1.0" => "HTTP/1.0",
        b"HTTP/1.1" => "HTTP/1.1",
        b"HTTP/2" => "HTTP/2",
        b"HTTP/3" => "HTTP/3",
        other => {
            return Err(invalid(format!(
                "unknown SERVER_PROTOCOL {:?}",
                String::from_utf8_lossy(other)
            )));
        }
    };
    let url_scheme = match &f.bytes("wsgi.url_scheme")?[..] {
        b"http" => "http",
        b"https" => "https",
        other => {
            return Err(invalid(format!(
                "unknown url scheme {:?}",
                String::from_utf8_lossy(other)
            )));
        }
    };
    let server_name = f.bytes("SERVER_NAME")?.into();
    let server_port = f.bytes("SERVER_PORT")?.into();
    let remote_addr = match f.opt_bytes("REMOTE_ADDR")? {
        None => None,
        Some(octets) => Some(match octets.len() {
            4 => IpAddr::from(<[u8; 4]>::try_from(&octets[..]).expect("4 bytes")),
            16 => IpAddr::from(<[u8; 16]>::try_from(&octets[..]).expect("16 bytes")),
            n => return Err(invalid(format!("REMOTE_ADDR of {n} bytes"))),
        }),
    };
    let remote_port = f.option("REMOTE_PORT", |f| f.u16("REMOTE_PORT"))?;
    let content_type = f.opt_bytes("CONTENT_TYPE")?;
    let content_length = f.opt_bytes("CONTENT_LENGTH")?;
    let count = f.count("HTTP_ variables", 8)?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = Cow::Owned(f.string("HTTP_ name")?);
        headers.push((name, f.bytes("HTTP_ value")?.into()));
    }
    let count = f.count("host environ entries", 8)?;
    let mut extras = EnvironExtras::new();
    for _ in 0..count {
        let key = f.string("host environ key")?;
        // Checked again, as the host checked them: a frame is no reason to let a
        // computed variable be replaced.
        extras
            .set(&key, f.bytes("host environ value")?)
            .map_err(|e| invalid(e.to_string()))?;
    }
    Ok(CgiVars {
        method,
        script_name,
        target,
        path,
        protocol,
        url_scheme,
        server_name,
        server_port,
        remote_addr,
        remote_port,
        content_type: content_type.map(Value::from),
        content_length: content_length.map(Value::from),
        headers,
        extras,
    })
}

#[cfg(unix)]
fn path_bytes(path: &std::path::Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

#[cfg(unix)]
fn path_from(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

// Worker processes are Linux-only; elsewhere paths only need to survive a round trip in tests.
#[cfg(not(unix))]
fn path_bytes(path: &std::path::Path) -> Vec<u8> {
    path.to_string_lossy().into_owned().into_bytes()
}

#[cfg(not(unix))]
fn path_from(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

fn level_code(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn level_from(code: u8) -> io::Result<Level> {
    Ok(match code {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        5 => Level::TRACE,
        c => return Err(invalid(format!("unknown log level {c}"))),
    })
}

fn level_filter_code(filter: LevelFilter) -> u8 {
    filter.into_level().map_or(0, level_code)
}

fn level_filter_from(code: u8) -> io::Result<LevelFilter> {
    match code {
        0 => Ok(LevelFilter::OFF),
        c => level_from(c).map(LevelFilter::from_level),
    }
}

/// Joins the pieces of a host-buffered body (for [`RequestBody::Inline`]).
pub(crate) fn join_body(chunks: VecDeque<Bytes>) -> Bytes {
    if chunks.len() == 1 {
        return chunks.into_iter().next().unwrap_or_default();
    }
    let mut joined = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
    for chunk in chunks {
        joined.extend_from_slice(&chunk);
    }
    joined.freeze()
}

/// Writes a [`WorkerConfig`]: a worker's or the template's.
fn put_config(out: &mut BytesMut, c: &WorkerConfig) {
    put_bytes(out, c.app.as_bytes());
    out.put_u64_le(c.threads as u64);
    put_opt_bytes(out, c.venv.as_deref().map(path_bytes).as_deref());
    put_bytes(out, c.venv_origin.as_bytes());
    put_opt_bytes(out, c.base_dir.as_deref().map(path_bytes).as_deref());
    out.put_u8(c.strict_python_version.into());
    out.put_u8(c.multiprocess.into());
    out.put_u32_le(c.index.to_wire());
    out.put_u8(level_filter_code(c.log_level));
    // 0 for none: a limit of 0 bytes is refused when the engine is built.
    out.put_u64_le(c.max_rss.unwrap_or(0));
    put_opt_bytes(out, c.post_fork.as_deref().map(str::as_bytes));
}

/// The [`WorkerConfig`] [`put_config`] wrote.
fn get_config(f: &mut Fields) -> io::Result<WorkerConfig> {
    let app = f.string("app")?;
    let threads =
        usize::try_from(f.u64("threads")?).map_err(|_| invalid("thread count out of range"))?;
    let venv = f.option("venv", |f| f.vec("venv").map(path_from))?;
    let venv_origin = f.string("venv origin")?;
    let base_dir = f.option("base directory", |f| f.vec("base directory").map(path_from))?;
    Ok(WorkerConfig {
        app,
        threads,
        venv,
        venv_origin,
        base_dir,
        strict_python_version: f.bool("strict python version")?,
        multiprocess: f.bool("multiprocess")?,
        index: WorkerId::from_wire(f.u32("worker index")?),
        log_level: level_filter_from(f.u8("log level")?)?,
        max_rss: Some(f.u64("max rss")?).filter(|&n| n != 0),
        post_fork: f.option("post-fork hook", |f| f.string("post-fork hook"))?,
    })
}

/// Which [`HookStage`] a [`error_code::POST_FORK`] error names.
fn hook_stage_code(stage: HookStage) -> u8 {
    match stage {
        HookStage::Spec => 0,
        HookStage::Import => 1,
        HookStage::Missing => 2,
        HookStage::NotCallable => 3,
        HookStage::Call => 4,
    }
}

fn hook_stage_from(code: u8) -> io::Result<HookStage> {
    Ok(match code {
        0 => HookStage::Spec,
        1 => HookStage::Import,
        2 => HookStage::Missing,
        3 => HookStage::NotCallable,
        4 => HookStage::Call,
        k => return Err(invalid(format!("unknown post-fork hook stage {k}"))),
    })
}

// The template's socket, host → template.
const TEMPLATE_CONFIG: u8 = 0x41;
const FORK: u8 = 0x42;
const RETIRE: u8 = 0x43;
// The template's socket, template → host; its start-up and logs are a worker's
// (`ControlFromWorker`).
const FORKED: u8 = 0x51;
const FORK_FAILED: u8 = 0x52;
const REAPED: u8 = 0x53;

/// The template's socket, host → template (see `process::template`).
#[derive(Debug)]
pub(crate) enum ToTemplate {
    /// What to load; always the first message.
    Config(WorkerConfig),
    /// Fork a worker: the frame carries (`SCM_RIGHTS`) the worker's ends of its channels,
    /// `descriptors` of them, in [`Channels`](super::channels::Channels)' order: control,
    /// intake, the slots, the started page.
    Fork {
        /// The worker, echoed in the answer.
        worker: WorkerId,
        /// How many descriptors the frame carries.
        descriptors: u32,
    },
    /// Fork no more: exit once every worker forked so far has exited and been reported.
    Retire,
}

/// The template's socket, template → host.
#[derive(Debug)]
pub(crate) enum FromTemplate {
    /// Its start-up verdict and its logs, as a worker says them.
    Control(ControlFromWorker),
    /// A worker was forked.
    Forked {
        /// The worker, from the request.
        worker: WorkerId,
        /// The new worker's process id.
        pid: u32,
    },
    /// A worker could not be forked; the template still serves.
    ForkFailed {
        /// The worker, from the request.
        worker: WorkerId,
        /// Why (boxed: it dwarfs the other variants).
        error: Box<Error>,
    },
    /// A worker it forked has exited and was reaped.
    Reaped {
        /// The worker's process id.
        pid: u32,
        /// Its wait status, as `waitpid` gave it.
        status: i32,
    },
}

impl Message for ToTemplate {
    fn encode(&self, out: &mut BytesMut) -> Encoded {
        match self {
            ToTemplate::Config(config) => {
                put_config(out, config);
                Encoded::fields(TEMPLATE_CONFIG)
            }
            ToTemplate::Fork {
                worker,
                descriptors,
            } => {
                out.put_u32_le(worker.to_wire());
                out.put_u32_le(*descriptors);
                Encoded::fields(FORK)
            }
            ToTemplate::Retire => Encoded::fields(RETIRE),
        }
    }

    fn decode(frame: Frame) -> io::Result<Self> {
        let mut f = Fields::new(frame.payload);
        let msg = match frame.kind {
            TEMPLATE_CONFIG => ToTemplate::Config(get_config(&mut f)?),
            FORK => ToTemplate::Fork {
                worker: WorkerId::from_wire(f.u32("worker")?),
                descriptors: f.u32("descriptors")?,
            },
            RETIRE => ToTemplate::Retire,
            k => return Err(unexpected(k, "a host-to-template")),
        };
        f.finish("a host-to-template frame")?;
        Ok(msg)
    }
}

impl Message for FromTemplate {
    fn encode(&self, out: &mut BytesMut) -> Encoded {
        match self {
            FromTemplate::Control(msg) => msg.encode(out),
            FromTemplate::Forked { worker, pid } => {
                out.put_u32_le(worker.to_wire());
                out.put_u32_le(*pid);
                Encoded::fields(FORKED)
            }
            FromTemplate::ForkFailed { worker, error } => {
                out.put_u32_le(worker.to_wire());
                put_error(out, error);
                Encoded::fields(FORK_FAILED)
            }
            FromTemplate::Reaped { pid, status } => {
                out.put_u32_le(*pid);
                out.put_i32_le(*status);
                Encoded::fields(REAPED)
            }
        }
    }

    fn decode(frame: Frame) -> io::Result<Self> {
        let kind = frame.kind;
        if !matches!(kind, FORKED | FORK_FAILED | REAPED) {
            return ControlFromWorker::decode(frame).map(FromTemplate::Control);
        }
        let mut f = Fields::new(frame.payload);
        let msg = match kind {
            FORKED => FromTemplate::Forked {
                worker: WorkerId::from_wire(f.u32("worker")?),
                pid: f.u32("pid")?,
            },
            FORK_FAILED => FromTemplate::ForkFailed {
                worker: WorkerId::from_wire(f.u32("worker")?),
                error: Box::new(get_error(&mut f)?),
            },
            _ => FromTemplate::Reaped {
                pid: f.u32("pid")?,
                status: f.i32("wait status")?,
            },
        };
        f.finish("a template-to-host frame")?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::{FrameReader, FrameWriter, HEADER_LEN};
    use super::*;

    fn round_trip<M: Message>(msg: &M) -> M {
        let mut w = FrameWriter::new(Vec::new());
        w.send(msg).unwrap();
        let bytes = w.get_ref().clone();
        let mut r = FrameReader::new(&bytes[..]);
        let back = r.recv().unwrap().expect("one frame");
        assert!(r.recv().unwrap().is_none(), "exactly one frame");
        back
    }

    fn sample_vars() -> CgiVars {
        CgiVars {
            method: Method::from_bytes(b"PROPFIND").unwrap(),
            script_name: "/py".into(),
            target: PathAndQuery::from_static("/py/caf%E9%20bar?a=1&b=%20"),
            path: PathInfo::Own(Bytes::from_static(b"/caf\xe9 bar")),
            protocol: "HTTP/2",
            url_scheme: "https",
            server_name: Bytes::from_static(b"example.org").into(),
            server_port: Bytes::from_static(b"8443").into(),
            remote_addr: Some("::1".parse().unwrap()),
            remote_port: None,
            content_type: Some(HeaderValue::from_static("text/plain").into()),
            content_length: None,
            headers: vec![
                (
                    Cow::Borrowed("HTTP_HOST"),
                    HeaderValue::from_static("example.org:8443").into(),
                ),
                (
                    Cow::Borrowed("HTTP_X_BIN"),
                    Bytes::from_static(&[0xff, 0x00, 0x7f]).into(),
                ),
                (
                    Cow::Owned("HTTP_COOKIE".into()),
                    Bytes::from_static(b"a=1; b=2").into(),
                ),
            ],
            extras: sample_extras(),
        }
    }

    /// What a host's middleware adds: the typed entries and keys of its own, one of them
    /// bytes beyond ASCII.
    fn sample_extras() -> EnvironExtras {
        let mut extras = EnvironExtras::new();
        extras
            .set_remote_user("jos\u{e9}")
            .unwrap()
            .set_auth_type("Bearer")
            .unwrap()
            .set("myservice.tenant", &b"caf\xc3\xa9"[..])
            .unwrap();
        extras
    }

    /// Variables as the host computes them from a request: values shared with the head,
    /// `PATH_INFO` read from the target, lines joined.
    fn computed_vars() -> CgiVars {
        let req = http::Request::get("/app/a/b?x=%41")
            .header("host", "example.org:8080")
            .header("accept", "*/*")
            .header("x-a", "1")
            .header("x-a", "2")
            .header("content-length", "3")
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        let conn = crate::host::ConnInfo::new(
            Some("192.0.2.7:40001".parse().unwrap()),
            Some("127.0.0.1:8000".parse().unwrap()),
        )
        .with_mount("/app");
        let uri = std::mem::take(&mut parts.uri);
        CgiVars::new(uri, &parts, &conn, &crate::proxy::TrustedProxies::default()).unwrap()
    }

    fn assert_same_vars(a: &CgiVars, b: &CgiVars) {
        // CgiVars has no PartialEq (Cow and &'static str make its Debug a fair comparison).
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn requests_round_trip_with_each_body_kind() {
        for body in [
            RequestBody::None,
            RequestBody::Streamed,
            RequestBody::Inline(Bytes::from_static(b"x=1&y=2")),
            RequestBody::Inline(Bytes::new()),
        ] {
            let sent = ToWorker::Request(Box::new(Request {
                id: u64::MAX - 3,
                slot: LocalSlot::new(7),
                vars: sample_vars(),
                content_length: Some(7),
                body: body.clone(),
            }));
            let ToWorker::Request(back) = round_trip(&sent) else {
                panic!("not a request")
            };
            assert_eq!(back.id, u64::MAX - 3);
            assert_eq!(back.slot, LocalSlot::new(7));
            assert_eq!(back.content_length, Some(7));
            assert_eq!(back.body, body);
            assert_same_vars(&back.vars, &sample_vars());
            assert!(matches!(back.vars.headers[0].0, Cow::Owned(_)));
        }
    }

    #[test]
    fn computed_vars_round_trip_as_slices_of_the_frame() {
        let vars = computed_vars();
        assert!(matches!(vars.path, PathInfo::InTarget(_)));
        let sent = ToWorker::Request(Box::new(Request {
            id: 1,
            slot: LocalSlot::new(0),
            vars: computed_vars(),
            content_length: Some(3),
            body: RequestBody::Inline(Bytes::from_static(b"abc")),
        }));
        let ToWorker::Request(back) = round_trip(&sent) else {
            panic!("not a request")
        };
        assert_same_vars(&back.vars, &vars);
        assert_eq!(back.vars.path_info(), b"/a/b");
        assert_eq!(back.vars.query_string(), "x=%41");
        assert_eq!(back.vars.request_uri(), "/app/a/b?x=%41");
        assert_eq!(back.vars.remote_port, Some(40001));
        assert_eq!(back.vars.remote_addr, Some("192.0.2.7".parse().unwrap()));
        let joined = back.vars.headers.iter().find(|(n, _)| n == "HTTP_X_A");
        assert_eq!(joined.map(|(_, v)| v.as_bytes()), Some(&b"1, 2"[..]));
        // Each byte string is a slice of the received payload, not a copy.
        let mut out = BytesMut::new();
        put_cgi_vars(&mut out, &vars);
        let payload = out.freeze();
        let back = get_cgi_vars(&mut Fields::new(payload.clone())).unwrap();
        let within = |bytes: &[u8]| {
            let (range, whole) = (bytes.as_ptr_range(), payload.as_ptr_range());
            whole.start <= range.start && range.end <= whole.end
        };
        assert!(within(back.path_info()) && within(back.request_uri().as_bytes()));
        assert!(within(back.server_name.as_bytes()) && within(back.server_port.as_bytes()));
        for (_, value) in &back.headers {
            assert!(within(value.as_bytes()), "{value:?}");
        }
    }

    #[test]
    fn a_target_that_is_not_one_is_refused() {
        let mut out = BytesMut::new();
        let mut vars = sample_vars();
        // What no `PathAndQuery` holds, written as one would be.
        vars.target = PathAndQuery::from_static("/ok");
        put_cgi_vars(&mut out, &vars);
        let at = out.windows(3).position(|w| w == b"/ok").unwrap();
        out[at] = b'x';
        let err = get_cgi_vars(&mut Fields::new(out.freeze())).unwrap_err();
        assert!(err.to_string().contains("bad request target"), "{err}");
    }

    #[test]
    fn host_environ_entries_cross_as_they_were_set() {
        let mut out = BytesMut::new();
        put_cgi_vars(&mut out, &sample_vars());
        let back = get_cgi_vars(&mut Fields::new(out.freeze())).unwrap();
        assert_eq!(back.extras, sample_extras());
        let tenant = back.extras.get("myservice.tenant").unwrap();
        assert_eq!(tenant.as_bytes(), b"caf\xc3\xa9");
    }

    #[test]
    fn a_host_environ_entry_naming_a_computed_variable_is_refused_by_the_worker() {
        let mut out = BytesMut::new();
        put_cgi_vars(&mut out, &sample_vars());
        // A frame no host writes: its own key turned into a computed one of the same length.
        let at = out
            .windows(16)
            .position(|w| w == b"myservice.tenant")
            .unwrap();
        out[at..at + 16].copy_from_slice(b"HTTP_REMOTE_USER");
        let err = get_cgi_vars(&mut Fields::new(out.freeze())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("HTTP_REMOTE_USER"), "{err}");
    }

    #[test]
    fn body_messages_round_trip() {
        let cases = [
            ToWorker::Body(Pulled::Chunk(Chunk::Data(Bytes::from_static(b"chunk")))),
            ToWorker::Body(Pulled::Chunk(Chunk::Data(Bytes::new()))),
            ToWorker::Body(Pulled::Chunk(Chunk::Eof)),
            ToWorker::Body(Pulled::Chunk(Chunk::Failed("client went away".into()))),
            ToWorker::Body(Pulled::Chunk(Chunk::TooLarge(1 << 40))),
            ToWorker::Body(Pulled::TimedOut("no byte for 30 s".into())),
        ];
        for msg in cases {
            let back = round_trip(&msg);
            assert_eq!(format!("{back:?}"), format!("{msg:?}"));
        }
    }

    #[test]
    fn worker_data_messages_round_trip() {
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.append("x-custom", HeaderValue::from_bytes(b"\xe9t\xe9").unwrap());
        headers.append("content-type", HeaderValue::from_static("text/html"));
        let cases = [
            FromWorker::Want(u64::MAX),
            FromWorker::Want(8192),
            FromWorker::Response(Msg::Head(Head {
                status: StatusCode::from_u16(299).unwrap(),
                reason: Some(ReasonPhrase::checked("Custom Thing")),
                headers: headers.clone(),
                body: HeadBody::Stream,
            })),
            FromWorker::Response(Msg::Head(Head {
                status: StatusCode::NOT_FOUND,
                reason: None,
                headers,
                body: HeadBody::Full(Bytes::from_static(b"<h1>gone</h1>")),
            })),
            FromWorker::Response(Msg::Head(Head::plain(StatusCode::OK, ""))),
            FromWorker::Response(Msg::Data(Bytes::from_static(b"piece"))),
            FromWorker::Response(Msg::End),
            FromWorker::Done,
            FromWorker::Response(Msg::Abort("ValueError: boom".into())),
            FromWorker::Response(Msg::Short("sent 3 of 10 bytes".into())),
        ];
        for msg in cases {
            let back = round_trip(&msg);
            assert_eq!(format!("{back:?}"), format!("{msg:?}"));
        }
    }

    #[test]
    fn a_full_body_is_written_from_its_own_buffer() {
        let body = Bytes::from(vec![9u8; 1000]);
        let mut w = FrameWriter::new(Vec::new());
        w.queue(&FromWorker::Response(Msg::Head(Head {
            status: StatusCode::OK,
            reason: None,
            headers: HeaderMap::new(),
            body: HeadBody::Full(body.clone()),
        })))
        .unwrap();
        w.queue(&FromWorker::Response(Msg::Data(body.clone())))
            .unwrap();
        w.flush().unwrap();
        let mut r = FrameReader::new(&w.get_ref()[..]);
        let Some(FromWorker::Response(Msg::Head(head))) = r.recv().unwrap() else {
            panic!("no head")
        };
        assert!(matches!(head.body, HeadBody::Full(b) if b == body));
        assert!(matches!(r.recv().unwrap(), Some(FromWorker::Response(Msg::Data(b))) if b == body));
    }

    #[test]
    fn control_messages_round_trip() {
        let config = WorkerConfig {
            app: "pkg.mod:create_app('prod')".into(),
            threads: 8,
            venv: Some(PathBuf::from("/srv/app/.venv")),
            venv_origin: " (from $VIRTUAL_ENV)".into(),
            base_dir: None,
            strict_python_version: true,
            multiprocess: false,
            index: WorkerId::new(3),
            log_level: LevelFilter::DEBUG,
            max_rss: Some(512 << 20),
            post_fork: Some("hooks:reconnect".into()),
        };
        let ControlToWorker::Config(back) = round_trip(&ControlToWorker::Config(config.clone()))
        else {
            panic!("not a config")
        };
        assert_eq!(back, config);
        for msg in [
            ControlToWorker::Interrupt {
                slot: LocalSlot::new(2),
                id: 99,
                timeout_ms: 1500,
            },
            ControlToWorker::Cancel {
                slot: LocalSlot::new(0),
                id: 1,
            },
            ControlToWorker::Shutdown { grace_ms: 30_000 },
            ControlToWorker::Stuck {
                slot: LocalSlot::new(1),
                id: 7,
            },
            ControlToWorker::LogBusyThreads,
        ] {
            assert_eq!(format!("{:?}", round_trip(&msg)), format!("{msg:?}"));
        }
        for filter in [LevelFilter::OFF, LevelFilter::ERROR, LevelFilter::TRACE] {
            assert_eq!(
                level_filter_from(level_filter_code(filter)).unwrap(),
                filter
            );
        }
        for msg in [
            ControlFromWorker::Ready {
                pid: 1234,
                python: "3.12.3".into(),
            },
            ControlFromWorker::StartupFailed(Box::new(Error::WorkerStartup(
                "could not import app:\nTraceback ...".into(),
            ))),
            ControlFromWorker::Log(LogRecord {
                level: Level::WARN,
                target: "python.logging".into(),
                message: "disk low logger=app".into(),
            }),
            ControlFromWorker::Stats {
                rss_bytes: 123 << 20,
                requests: 5,
            },
        ] {
            assert_eq!(format!("{:?}", round_trip(&msg)), format!("{msg:?}"));
        }
    }

    /// The frames the reports add: an interrupt carries its timeout, a stuck thread its
    /// slot and request, and a request for the busy threads nothing; a payload of another
    /// length is refused rather than misread.
    #[test]
    fn report_frames_have_fixed_layouts() {
        let payload = |msg: &ControlToWorker| {
            let mut w = FrameWriter::new(Vec::new());
            w.send(msg).unwrap();
            let bytes = w.get_ref().clone();
            (bytes[4], bytes[HEADER_LEN..].to_vec())
        };
        let decode = |kind, payload: &[u8]| {
            ControlToWorker::decode(Frame {
                kind,
                payload: Bytes::copy_from_slice(payload),
            })
        };
        let (kind, body) = payload(&ControlToWorker::LogBusyThreads);
        assert_eq!((kind, body.len()), (LOG_BUSY_THREADS, 0));
        let err = decode(kind, &[0]).unwrap_err();
        assert!(err.to_string().contains("unexpected bytes"), "{err}");
        let (kind, body) = payload(&ControlToWorker::Interrupt {
            slot: LocalSlot::new(1),
            id: 2,
            timeout_ms: 3,
        });
        assert_eq!((kind, body.len()), (INTERRUPT, 4 + 8 + 8));
        assert_eq!(&body[12..], 3u64.to_le_bytes());
        // The layout before the timeout was carried: one end newer than the other.
        let err = decode(kind, &body[..12]).unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
        let (kind, body) = payload(&ControlToWorker::Stuck {
            slot: LocalSlot::new(4),
            id: 5,
        });
        assert_eq!((kind, body.len()), (STUCK, 4 + 8));
        assert!(matches!(
            decode(kind, &body).unwrap(),
            ControlToWorker::Stuck { slot, id: 5 } if slot == LocalSlot::new(4)
        ));
    }

    /// A local slot and a worker are typed on each side, but cross as the little-endian
    /// u32s they always were: a host and a worker of different builds still agree.
    #[test]
    fn slots_and_workers_cross_as_little_endian_u32s() {
        fn payload(msg: &impl Message) -> Vec<u8> {
            let mut w = FrameWriter::new(Vec::new());
            w.send(msg).unwrap();
            w.get_ref()[HEADER_LEN..].to_vec()
        }
        let slot = LocalSlot::new(0x0102_0304);
        let wire = 0x0102_0304u32.to_le_bytes();
        let cancel = payload(&ControlToWorker::Cancel { slot, id: 9 });
        assert_eq!(cancel[..4], wire);
        let request = payload(&ToWorker::Request(Box::new(Request {
            id: 1,
            slot,
            vars: sample_vars(),
            content_length: None,
            body: RequestBody::None,
        })));
        assert_eq!(request[8..12], wire, "the slot follows the request's id");
        let fork = payload(&ToTemplate::Fork {
            worker: WorkerId::new(5),
            descriptors: 6,
        });
        assert_eq!(fork, [5, 0, 0, 0, 6, 0, 0, 0]);
    }

    fn exception(type_name: &str, message: &str) -> PythonException {
        PythonException {
            type_name: type_name.into(),
            message: message.into(),
            traceback: format!(
                "Traceback (most recent call last):\n  File \"/srv/app.py\", line 3, in <module>\n    \
                 import flask\n{type_name}: {message}"
            ),
        }
    }

    /// One of each variant a worker sends as itself.
    fn worker_errors() -> Vec<Error> {
        let import = |missing, venv: Option<&str>| Error::AppImport {
            module: "app".into(),
            sys_path: vec!["/srv".into(), String::new(), "/usr/lib/python3.12".into()],
            missing,
            venv: venv.map(PathBuf::from),
            exception: Box::new(exception("ModuleNotFoundError", "No module named 'flask'")),
        };
        vec![
            Error::WorkerStartup("cannot use the worker's sockets: gone".into()),
            Error::InvalidAppSpec {
                spec: "app:create_app(os.getcwd())".into(),
                reason: "arguments must be literals".into(),
            },
            Error::AppFileNotFound {
                path: "no_such_app.py".into(),
                base_dir: "/srv/caf\u{e9}".into(),
            },
            Error::NoPassengerFile {
                dir: "/srv/site".into(),
            },
            Error::AppSyntax {
                file: "/srv/app.py".into(),
                line: 4,
                message: "invalid syntax".into(),
                context: "\n    def application(:\n                    ^".into(),
            },
            import(Some(MissingModule::Dependency("flask".into())), None),
            import(
                Some(MissingModule::Dependency("flask".into())),
                Some("/srv/.venv"),
            ),
            import(Some(MissingModule::App("app".into())), Some("/srv/.venv")),
            import(None, None),
            Error::AppAttributeMissing {
                module: "app".into(),
                callable: "aplication".into(),
                candidates: " (it has: application, helper)".into(),
            },
            Error::AppNotCallable {
                module: "app".into(),
                callable: "CONFIG".into(),
                type_name: "dict".into(),
            },
            Error::AppFactory {
                module: "app".into(),
                call: "create_app('prod')".into(),
                exception: Box::new(exception("KeyError", "'SECRET'")),
            },
            Error::AppFactoryResult {
                module: "app".into(),
                call: "create_app()".into(),
                type_name: "NoneType".into(),
            },
            Error::BaseDir {
                path: "/nonexistent".into(),
                source: io::Error::from_raw_os_error(libc::ENOENT),
            },
            Error::BaseDir {
                path: "/etc/hosts".into(),
                source: io::ErrorKind::NotADirectory.into(),
            },
            Error::Venv {
                path: "/srv/.venv".into(),
                origin: " (from $VIRTUAL_ENV)".into(),
                reason: "it has no pyvenv.cfg".into(),
            },
            Error::VenvVersion {
                path: "/srv/.venv".into(),
                venv: "3.11".into(),
                running: "3.12".into(),
                remedy: "recreate it".into(),
            },
            Error::PythonVersionFile {
                file: "/srv/.python-version".into(),
                wanted: "3.13.0".into(),
                running: "3.12.3 (/usr/bin/python3.12)".into(),
                remedy: "PYO3_PYTHON=python3.13 cargo build".into(),
            },
            Error::Python {
                action: python::action::APP_DIR_ON_SYS_PATH,
                source: exception("MemoryError", ""),
            },
            Error::Thread(io::Error::from_raw_os_error(libc::EAGAIN)),
            Error::Thread(io::Error::new(io::ErrorKind::OutOfMemory, "no stack")),
            Error::Thread(io::Error::other("odd")),
            Error::NestedWorker,
            Error::PreloadThreads {
                threads: vec!["poller (Python)".into(), "openblas (native)".into()],
            },
            Error::PostFork {
                hook: "hooks:connect".into(),
                stage: HookStage::Call,
                exception: Some(Box::new(exception("ConnectionError", "no database"))),
            },
            Error::PostFork {
                hook: "hooks:nothing".into(),
                stage: HookStage::Missing,
                exception: None,
            },
        ]
    }

    #[test]
    fn template_messages_round_trip() {
        let config = WorkerConfig {
            base_dir: Some(PathBuf::from("/srv")),
            multiprocess: true,
            ..WorkerConfig::for_tests("app.py", 2)
        };
        let ToTemplate::Config(back) = round_trip(&ToTemplate::Config(config.clone())) else {
            panic!("not a config")
        };
        assert_eq!(back, config);
        for msg in [
            ToTemplate::Fork {
                worker: WorkerId::new(3),
                descriptors: 5,
            },
            ToTemplate::Retire,
        ] {
            assert_eq!(format!("{:?}", round_trip(&msg)), format!("{msg:?}"));
        }
        for msg in [
            FromTemplate::Control(ControlFromWorker::Ready {
                pid: 7,
                python: "3.12.3".into(),
            }),
            FromTemplate::Forked {
                worker: WorkerId::new(1),
                pid: 99,
            },
            FromTemplate::ForkFailed {
                worker: WorkerId::new(1),
                error: Box::new(Error::PreloadThreads {
                    threads: vec!["t (Python)".into()],
                }),
            },
            FromTemplate::Reaped {
                pid: 99,
                status: 139,
            },
        ] {
            assert_eq!(format!("{:?}", round_trip(&msg)), format!("{msg:?}"));
        }
    }

    fn startup_round_trip(error: Error) -> Error {
        match round_trip(&ControlFromWorker::StartupFailed(Box::new(error))) {
            ControlFromWorker::StartupFailed(back) => *back,
            other => panic!("not a start-up failure: {other:?}"),
        }
    }

    #[test]
    fn startup_errors_round_trip_field_for_field() {
        for error in worker_errors() {
            let (debug, message) = (format!("{error:?}"), error.to_string());
            let source = std::error::Error::source(&error).map(ToString::to_string);
            let back = startup_round_trip(error);
            assert_eq!(format!("{back:?}"), debug);
            assert_eq!(back.to_string(), message);
            let back_source = std::error::Error::source(&back).map(ToString::to_string);
            assert_eq!(back_source, source, "{debug}");
        }
        // The fields a program matches on, as themselves.
        let back = startup_round_trip(worker_errors().swap_remove(6));
        let Error::AppImport {
            missing: Some(MissingModule::Dependency(name)),
            venv: Some(venv),
            exception,
            ..
        } = back
        else {
            panic!("{back:?}")
        };
        assert_eq!(
            (name.as_str(), venv.to_str()),
            ("flask", Some("/srv/.venv"))
        );
        assert_eq!(
            *exception,
            self::exception("ModuleNotFoundError", "No module named 'flask'")
        );
        let Error::BaseDir { source, .. } = startup_round_trip(Error::BaseDir {
            path: "/x".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        }) else {
            panic!("not a base directory error")
        };
        assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(source.raw_os_error(), Some(libc::EACCES));
        // A kind the host cannot name keeps its message.
        let error = Error::Thread(io::ErrorKind::StorageFull.into());
        let message = error.to_string();
        assert_eq!(startup_round_trip(error).to_string(), message);
    }

    #[test]
    fn every_action_arrives_as_itself_and_an_unknown_one_as_its_message() {
        for known in python::action::ALL {
            let back = startup_round_trip(Error::Python {
                action: known,
                source: exception("SystemError", "bad"),
            });
            assert!(
                matches!(back, Error::Python { action, .. } if action == known),
                "{back:?}"
            );
        }
        let unknown = Error::Python {
            action: "doing what this host has never heard of",
            source: exception("SystemError", "bad"),
        };
        let message = unknown.to_string();
        match startup_round_trip(unknown) {
            Error::WorkerStartup(back) => assert_eq!(back, message),
            other => panic!("{other:?}"),
        }
    }

    /// The host's own errors, which no worker meets, still arrive with their message.
    #[test]
    fn other_errors_travel_as_their_message() {
        for error in [
            Error::Config {
                option: "threads",
                value: "0".into(),
                expected: "at least 1",
            },
            Error::WorkerStartTimeout { secs: 2.5 },
            Error::SpoolDir {
                path: "/nonexistent".into(),
                source: io::Error::from_raw_os_error(libc::ENOENT),
            },
        ] {
            let message = error.to_string();
            match startup_round_trip(error) {
                Error::WorkerStartup(back) => assert_eq!(back, message),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_malformed_startup_error_is_refused() {
        let payload = |error: &Error| {
            let mut out = BytesMut::new();
            put_error(&mut out, error);
            out.to_vec()
        };
        let decode = |payload: Vec<u8>| {
            ControlFromWorker::decode(Frame {
                kind: STARTUP_FAILED,
                payload: Bytes::from(payload),
            })
        };
        let refused = |payload: Vec<u8>, why: &str| {
            let err = decode(payload).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains(why), "{err}");
        };
        refused(vec![], "error variant");
        refused(vec![0xee], "unknown start-up error variant 238");
        // A missing-module kind that does not exist.
        let import = payload(&worker_errors()[5]);
        let mut bad = import.clone();
        let at = import.windows(5).position(|w| w == b"flask").unwrap() - 5;
        assert_eq!(bad[at], 2, "the kind byte of MissingModule::Dependency");
        bad[at] = 7;
        refused(bad, "unknown missing module kind 7");
        // Cut short, or followed by bytes the host does not expect.
        refused(import[..import.len() - 1].to_vec(), "truncated frame");
        let mut longer = import.clone();
        longer.push(0);
        refused(longer, "unexpected bytes");
        // A string that is not UTF-8.
        let mut bad = payload(&Error::WorkerStartup("ok".into()));
        let last = bad.len() - 1;
        bad[last] = 0xff;
        refused(bad, "not UTF-8");
        // An I/O error of an unknown form or kind.
        let thread = payload(&Error::Thread(io::Error::other("x")));
        assert_eq!(&thread[..3], &[error_code::THREAD, 2, 0]);
        let mut bad = thread.clone();
        bad[1] = 9;
        refused(bad, "unknown I/O error form 9");
        let mut bad = thread;
        bad[2] = 200;
        refused(bad, "unknown I/O error kind 200");
        assert!(decode(import).is_ok());
    }

    #[test]
    fn a_frame_sent_the_wrong_way_is_an_error() {
        let mut w = FrameWriter::new(Vec::new());
        w.send(&FromWorker::Response(Msg::End)).unwrap();
        let bytes = w.get_ref().clone();
        let err = FrameReader::<_, ToWorker>::new(&bytes[..])
            .recv()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("0x15"), "{err}");
    }

    /// Every truncation and many corruptions of valid frames decode to an error or a
    /// message, never a panic.
    #[test]
    fn malformed_payloads_never_panic() {
        let mut w = FrameWriter::new(Vec::new());
        w.send(&ToWorker::Request(Box::new(Request {
            id: 1,
            slot: LocalSlot::new(0),
            vars: sample_vars(),
            content_length: None,
            body: RequestBody::Inline(Bytes::from_static(b"body")),
        })))
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        let mut w2 = FrameWriter::new(Vec::new());
        w2.send(&FromWorker::Response(Msg::Head(Head {
            status: StatusCode::OK,
            reason: None,
            headers,
            body: HeadBody::Stream,
        })))
        .unwrap();
        let mut w3 = FrameWriter::new(Vec::new());
        w3.send(&ControlToWorker::Config(WorkerConfig {
            base_dir: Some("/x".into()),
            multiprocess: true,
            ..WorkerConfig::for_tests("app.py", 1)
        }))
        .unwrap();

        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut w4 = FrameWriter::new(Vec::new());
        for error in worker_errors() {
            w4.send(&ControlFromWorker::StartupFailed(Box::new(error)))
                .unwrap();
        }
        let mut frames = vec![
            w.get_ref().clone(),
            w2.get_ref().clone(),
            w3.get_ref().clone(),
        ];
        let mut rest = &w4.get_ref()[..];
        while !rest.is_empty() {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            let (frame, after) = rest.split_at(HEADER_LEN + len);
            frames.push(frame.to_vec());
            rest = after;
        }
        for frame in &frames {
            let kind = frame[4];
            let payload = &frame[HEADER_LEN..];
            let decode = |p: &[u8]| {
                let f = || Frame {
                    kind,
                    payload: Bytes::copy_from_slice(p),
                };
                let _ = ToWorker::decode(f());
                let _ = FromWorker::decode(f());
                let _ = ControlToWorker::decode(f());
                let _ = ControlFromWorker::decode(f());
            };
            for cut in 0..payload.len() {
                decode(&payload[..cut]);
            }
            for _ in 0..2000 {
                let mut p = payload.to_vec();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % p.len();
                    p[at] = next() as u8;
                }
                decode(&p);
            }
        }
    }
}
