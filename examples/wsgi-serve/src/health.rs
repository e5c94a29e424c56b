//! Liveness and readiness, answered by the host, never queued behind Python.
//!
//! - `/livez`: 200 whenever the process and its event loop answer. A load balancer or
//!   Kubernetes restarts what stops answering it; it says nothing of Python, so a slow
//!   application is not restarted for being busy.
//! - `/readyz`: 200 while `wsgi-serve` accepts requests and can run them (in worker mode, at
//!   least one worker process is ready); 503 from the moment a stop begins, so that load
//!   balancers send new requests elsewhere during `--shutdown-delay` while this server
//!   still answers the ones that come.
//!
//! They are served on the metrics listener (`--metrics-bind`) and, with `--health-path`, on
//! the application's listeners too, ahead of the application. Short `text/plain` bodies:
//! they are for machines, and for people with `curl`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wsgi_core::Engine;

/// The liveness path under the health prefix.
pub(crate) const LIVEZ: &str = "/livez";

/// The readiness path under the health prefix.
pub(crate) const READYZ: &str = "/readyz";

/// The state readiness is made of; clones share it.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    engine: Engine,
    draining: Arc<AtomicBool>,
    /// Wakes those waiting for the drain (the axum host's HTTP/2 connections); the flag
    /// above answers the checks on every request without a lock.
    drain_started: Arc<tokio::sync::watch::Sender<bool>>,
}

/// An answer: the status code and the body.
pub(crate) type Answer = (u16, &'static str);

impl Health {
    /// Readiness of `engine`, not draining.
    pub(crate) fn new(engine: Engine) -> Health {
        Health {
            engine,
            draining: Arc::new(AtomicBool::new(false)),
            drain_started: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Marks the start of a stop: readiness answers 503 from now on, responses ask HTTP/1.1
    /// clients to close their connections, and HTTP/2 clients are sent GOAWAY.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.drain_started.send_replace(true);
    }

    /// Resolves once a stop has begun (at once if it has).
    pub(crate) async fn until_draining(&self) {
        let mut started = self.drain_started.subscribe();
        // Fails only if the sender is gone, which this `Health` holds.
        let _ = started.wait_for(|started| *started).await;
    }

    /// Whether a stop has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The answer to `/livez`: the caller answering at all is the proof.
    pub(crate) fn livez(&self) -> Answer {
        (200, "ok\n")
    }

    /// The answer to `/readyz`.
    pub(crate) fn readyz(&self) -> Answer {
        if self.is_draining() {
            return (503, "draining\n");
        }
        if self.engine.processes() > 0 {
            // Only in worker mode: the snapshot's worker list is empty in-process.
            let workers = self.engine.metrics().workers;
            if !workers.iter().any(|w| w.ready) {
                return (503, "no worker process ready\n");
            }
        }
        (200, "ready\n")
    }
}
