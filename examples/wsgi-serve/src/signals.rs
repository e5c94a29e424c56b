//! The signals that stop `wsgi-serve`, SIGTERM and SIGINT (Ctrl-C); SIGHUP, which restarts
//! the worker processes (gunicorn's, Granian's and uWSGI's convention); and SIGUSR1, which
//! logs what every busy Python thread is doing (uWSGI prints its statistics on SIGUSR1 and
//! its workers' state on SIGUSR2; gunicorn reopens its log files on SIGUSR1, which
//! `wsgi-serve`, logging to stderr only, has none of).

/// SIGTERM and SIGINT, as a stream of their names.
pub(crate) struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    usr1: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers; from then on these signals no longer kill the process.
    pub(crate) fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                // Installed with the others, so a SIGHUP or SIGUSR1 during start-up does not
                // kill.
                hup: Some(signal(SignalKind::hangup())?),
                usr1: Some(signal(SignalKind::user_defined1())?),
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Restarts `engine`'s worker processes on each SIGHUP, for as long as the runtime runs.
    pub(crate) fn restart_on_hangup(&mut self, engine: wsgi_core::Engine) {
        #[cfg(unix)]
        if let Some(mut hup) = self.hup.take() {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match engine.restart_on_signal() {
                        Ok(()) => tracing::info!(
                            "SIGHUP received: restarting the worker processes one by one"
                        ),
                        Err(e) => tracing::warn!("SIGHUP received, but nothing restarts: {e}"),
                    }
                }
            });
        }
        #[cfg(not(unix))]
        let _ = engine;
    }

    /// Logs the busy Python threads of `engine` (their requests and Python stacks) on each
    /// SIGUSR1, for as long as the runtime runs.
    pub(crate) fn log_busy_threads_on_usr1(&mut self, engine: wsgi_core::Engine) {
        #[cfg(unix)]
        if let Some(mut usr1) = self.usr1.take() {
            tokio::spawn(async move {
                while usr1.recv().await.is_some() {
                    tracing::info!("SIGUSR1 received: logging the busy Python threads' stacks");
                    engine.log_busy_threads();
                }
            });
        }
        #[cfg(not(unix))]
        let _ = engine;
    }

    /// Waits for the next signal and returns its name.
    pub(crate) async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
