//! The WSGI (PEP 3333) protocol engine: runs a Python WSGI application for any Rust HTTP
//! server, in this process or in worker processes.
//!
//! An [`Engine`] owns a loaded application and a pool of Python threads, in this process
//! by default, or in worker processes ([`EngineBuilder::processes`]) that are replaced when
//! they crash, recycled by request count, age or memory, and restarted without dropping a
//! request (`tmp/restart.txt`, [`Engine::restart`]); a program that uses them calls
//! [`run_if_worker`] first in `main`. A host server
//! hands it requests through the one trait it implements, [`HostRequest`], and gets back an
//! [`http::Response`] whose body, [`WsgiBody`], streams what the application yields. This
//! crate knows nothing of tokio, axum or actix-web: the `wsgi-axum` and `wsgi-actix` crates
//! are thin hosts built on it.
//!
//! What the engine takes care of: the environ (latin-1 native strings, `SCRIPT_NAME` from
//! the mount, percent-decoded `PATH_INFO`), request bodies received whole before the
//! application runs (in memory, or in a temporary file when large) so that slow uploads
//! hold no Python thread, or streamed to `wsgi.input` as the application reads,
//! `start_response` with `exc_info` and `write()`, lazily committed headers, streamed
//! bodies with backpressure, `close()` on every path (including a client that
//! disconnects), `wsgi.errors` into [`tracing`], `wsgi.file_wrapper` streamed in Rust, a
//! bounded queue with 503 answers, and graceful shutdown. The GIL is held only while Python
//! runs.
//!
//! What the host knows and the request does not, such as the user its own authentication
//! found, reaches the environ as an [`EnvironExtras`] in the request's extensions
//! (`REMOTE_USER`, `AUTH_TYPE`, keys of the host's own), checked where it is set.
//!
//! # Example
//!
//! Serve one request to an app, with an in-memory request body:
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body::Body as _;
//! use wsgi_core::{ConnInfo, Engine};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder("examples/apps/passenger_wsgi.py").threads(4).build()?;
//! let body = futures::stream::empty::<Result<Bytes, std::io::Error>>();
//! let request = http::Request::get("/py/hello").body(body)?;
//! let conn = ConnInfo::new(None, None).with_mount("/py");
//! let response = futures::executor::block_on(engine.call((request, conn)));
//! println!("{} {:?}", response.status(), response.body().size_hint());
//! # Ok(())
//! # }
//! ```

// Data: requests, responses and bodies as plain Rust.
mod body;
mod chan;
mod chunk;
mod environ;
mod extras;
mod host;
mod input;
mod job;
mod pipe;
mod process;
mod proxy;
mod response;
mod spec;
mod spool;
mod spooled;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod untrusted;
// State shared by the engine and its runner.
mod access;
mod busy;
mod config;
mod metrics;
mod state;
mod watchdog;
// Runners: where the application runs.
mod dispatch;
mod lifecycle;
mod python;
mod runner;
mod sched;
// The host-facing engine.
mod engine;
mod error;

pub use access::ACCESS_TARGET;
pub use body::{BodyError, WsgiBody};
pub use config::{
    DEFAULT_BUFFER_BODY, DEFAULT_DRAIN_GRACE, DEFAULT_MIN_LIFETIME, DEFAULT_POOL_IDLE_TIME,
    DEFAULT_QUEUE_DEPTH, DEFAULT_START_TIMEOUT, DEFAULT_THREADS, EngineBuilder,
};
pub use engine::{Engine, ResponseFuture, ShutdownFuture, ShutdownReport};
pub use error::{Error, HookStage, MissingModule, PythonException};
pub use extras::{EnvironError, EnvironExtras, InvalidNativeString, NativeString};
pub use host::{BoxError, ConnInfo, HostRequest, MapErrBody, Scheme};
pub use metrics::{MetricsSnapshot, PoolSnapshot, WorkerSnapshot, WorkerState};
pub use process::run_if_worker;
pub use python::{PythonInfo, activate_venv, python_info};
pub use response::ReasonPhrase;
pub use sched::batch_scheduling;
