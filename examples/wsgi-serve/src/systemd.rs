//! systemd: the sockets it passes (socket activation) and what `wsgi-serve` tells it
//! (`sd_notify`), through the `sd-notify` crate.
//!
//! - Socket activation (`systemd.socket(5)`): systemd, or `systemd-socket-activate`, binds
//!   the sockets and passes them as descriptors 3, 4, ... with `LISTEN_FDS`, `LISTEN_PID`
//!   and `LISTEN_FDNAMES`. They are taken only when `LISTEN_PID` is this process (the
//!   variables may have been inherited from a parent they were meant for), then the
//!   variables are unset so that the application's own subprocesses, and `wsgi-serve`'s worker
//!   processes, do not take them as theirs. TCP and UNIX stream sockets are served alike;
//!   one named `metrics` (`FileDescriptorName=metrics`) serves `/metrics` instead of the
//!   application.
//! - Notifications (`sd_notify(3)`, for `Type=notify` units): `READY=1` once the
//!   application is loaded and every listener accepts, `STATUS=` with what is ready,
//!   `STOPPING=1` when a stop begins, and, when the unit sets `WatchdogSec=`, `WATCHDOG=1`
//!   every half of it, from the event loop, so a loop that hangs gets the service restarted.
//!   `NOTIFY_SOCKET` stays set: with `NotifyAccess=main`, systemd's default, it ignores
//!   what other processes send to it.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use sd_notify::NotifyState;
use wsgi_core::{Engine, WorkerState};

use crate::listen::Listener;

/// The name that makes a passed socket the metrics endpoint's.
pub(crate) const METRICS_NAME: &str = "metrics";

/// What systemd passed in the environment, taken out of it.
#[derive(Debug, Default)]
pub(crate) struct Environment {
    /// The passed sockets, with their names (`LISTEN_FDNAMES`, else `unknown`).
    sockets: Vec<(OwnedFd, String)>,
    /// How often systemd wants to hear from the service (`WATCHDOG_USEC`), if at all.
    watchdog: Option<Duration>,
}

impl Environment {
    /// Takes the passed sockets and the watchdog interval, and unsets the variables that
    /// name them.
    ///
    /// # Safety
    ///
    /// It changes the environment: call it while this process has one thread.
    pub(crate) unsafe fn take() -> Result<Environment, String> {
        // SAFETY: the caller promises no other thread runs, so none reads the environment.
        let sockets = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }
            .map_err(|e| format!("cannot use the sockets systemd passed (LISTEN_FDS): {e}"))?
            // SAFETY: LISTEN_PID is this process, so these descriptors were passed to it,
            // open, and nothing else in it owns them.
            .map(|(fd, name)| (unsafe { OwnedFd::from_raw_fd(fd) }, name))
            .collect();
        // SAFETY: as above.
        let watchdog = unsafe { sd_notify::watchdog_enabled_and_unset_env() };
        Ok(Environment { sockets, watchdog })
    }

    /// Whether systemd passed sockets: then they replace `--bind` and `--metrics-bind`.
    pub(crate) fn has_sockets(&self) -> bool {
        !self.sockets.is_empty()
    }

    /// The passed sockets as listeners for the application, and the one named
    /// [`METRICS_NAME`], if any, for the metrics; consumes them.
    pub(crate) fn listeners(&mut self) -> Result<(Vec<Listener>, Option<Listener>), String> {
        let mut app = Vec::new();
        let mut metrics = None;
        for (fd, name) in self.sockets.drain(..) {
            let listener = Listener::from_passed(fd)
                .map_err(|e| format!("cannot use the socket systemd passed as {name:?}: {e}"))?;
            if name == METRICS_NAME && matches!(listener, Listener::Tcp(_)) {
                metrics = Some(listener);
            } else {
                app.push(listener);
            }
        }
        Ok((app, metrics))
    }

    /// The notifier for the service manager.
    pub(crate) fn notifier(&self) -> Notifier {
        Notifier {
            watchdog: self.watchdog,
        }
    }
}

/// Tells the service manager how `wsgi-serve` is doing; does nothing outside a `Type=notify`
/// unit (no `NOTIFY_SOCKET`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Notifier {
    watchdog: Option<Duration>,
}

impl Notifier {
    /// `READY=1`, with a first status.
    pub(crate) fn ready(&self, engine: &Engine) {
        send(&[NotifyState::Ready, NotifyState::Status(&status(engine))]);
    }

    /// `STOPPING=1`: a stop has begun.
    pub(crate) fn stopping(&self) {
        send(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping: draining in-flight requests"),
        ]);
    }

    /// Keeps the status current and, when systemd set a watchdog, pets it every half of its
    /// interval, for as long as the runtime runs. On the event loop itself, so that a loop
    /// that stops turning stops the pets too.
    pub(crate) fn spawn(self, engine: Engine) {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return;
        }
        let every = self.watchdog.map_or(Duration::from_secs(1), |w| {
            (w / 2).min(Duration::from_secs(1))
        });
        let watchdog = self.watchdog.is_some();
        // The status, checked at each tick, is sent when it changes.
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            let mut last = status(&engine);
            loop {
                ticks.tick().await;
                let now = status(&engine);
                let changed = now != last;
                match (watchdog, changed) {
                    (true, true) => send(&[NotifyState::Watchdog, NotifyState::Status(&now)]),
                    (true, false) => send(&[NotifyState::Watchdog]),
                    (false, true) => send(&[NotifyState::Status(&now)]),
                    (false, false) => {}
                }
                last = now;
            }
        });
    }
}

/// What `STATUS=` says: the worker processes ready (in worker mode) and the busy threads.
fn status(engine: &Engine) -> String {
    let metrics = engine.metrics();
    let threads = metrics.threads_busy + metrics.threads_idle;
    let busy = format!("{} of {threads} threads busy", metrics.threads_busy);
    if metrics.workers.is_empty() {
        return format!("serving; {busy}");
    }
    let ready = metrics.workers.iter().filter(|w| w.ready).count();
    let running = metrics
        .workers
        .iter()
        .filter(|w| w.state != WorkerState::Stopped)
        .count();
    format!("serving; {ready} of {running} worker processes ready, {busy}")
}

/// Sends `states`; a failure is logged at DEBUG, since the service manager may simply not
/// listen (a unit that is not `Type=notify` gets no `NOTIFY_SOCKET`, so this is rare).
fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("cannot notify the service manager: {e}");
    }
}
