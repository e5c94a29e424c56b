//! Why a worker was replaced.
//!
//! The issue asks for restarts counted by reason and each restart logged with its reason;
//! [`RestartReason::as_str`] is the one spelling both use, so a dashboard query and a log
//! search find the same word. The strings are part of the metrics' contract: never rename
//! one, only add.

use std::fmt;

/// Why a worker is (or was) replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RestartReason {
    /// `tmp/restart.txt` changed (Passenger's convention).
    RestartFile,
    /// `tmp/always_restart.txt` exists: a fresh worker for every request (development).
    AlwaysRestart,
    /// The worker served its drawn share of requests (`--max-requests` plus jitter).
    MaxRequests,
    /// The worker reached its drawn age (`--max-lifetime` plus jitter).
    Lifetime,
    /// The worker's resident memory reached `--max-rss`.
    Rss,
    /// The worker exited or was killed without being asked to.
    Crash,
    /// The worker was still busy with a request past its timeout plus the grace period.
    Timeout,
    /// `serve` received SIGHUP.
    Signal,
    /// The host called `Engine::restart()`.
    Api,
}

impl RestartReason {
    /// Every reason, for metrics that list each label from the start (a counter that
    /// appears only after its first increment breaks `rate()` queries).
    pub(crate) const ALL: [RestartReason; 9] = [
        RestartReason::RestartFile,
        RestartReason::AlwaysRestart,
        RestartReason::MaxRequests,
        RestartReason::Lifetime,
        RestartReason::Rss,
        RestartReason::Crash,
        RestartReason::Timeout,
        RestartReason::Signal,
        RestartReason::Api,
    ];

    /// The stable snake_case name: a Prometheus label value and the log field's value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            RestartReason::RestartFile => "restart_file",
            RestartReason::AlwaysRestart => "always_restart",
            RestartReason::MaxRequests => "max_requests",
            RestartReason::Lifetime => "lifetime",
            RestartReason::Rss => "rss",
            RestartReason::Crash => "crash",
            RestartReason::Timeout => "timeout",
            RestartReason::Signal => "signal",
            RestartReason::Api => "api",
        }
    }

    /// Whether this is a recycle the worker's own budget asked for (requests, age,
    /// memory): the only replacements the minimum lifetime holds back. An operator's
    /// request (restart file, signal, API) is obeyed at once, and a crash or a stuck
    /// worker has already lost its capacity.
    #[allow(dead_code, reason = "tested; for a future metric split")]
    pub(crate) const fn is_recycle(self) -> bool {
        matches!(
            self,
            RestartReason::MaxRequests | RestartReason::Lifetime | RestartReason::Rss
        )
    }
}

impl fmt::Display for RestartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_stable_snake_case_labels() {
        let names: Vec<&str> = RestartReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "restart_file",
                "always_restart",
                "max_requests",
                "lifetime",
                "rss",
                "crash",
                "timeout",
                "signal",
                "api",
            ]
        );
        // Valid Prometheus label values need no escaping; snake_case also greps well.
        for name in names {
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
    }

    #[test]
    fn all_lists_each_reason_once() {
        let unique: HashSet<_> = RestartReason::ALL.iter().collect();
        assert_eq!(unique.len(), RestartReason::ALL.len());
    }

    #[test]
    fn display_is_the_label() {
        for reason in RestartReason::ALL {
            assert_eq!(reason.to_string(), reason.as_str());
        }
    }

    #[test]
    fn only_budget_reasons_are_recycles() {
        let recycles: Vec<_> = RestartReason::ALL
            .into_iter()
            .filter(|r| r.is_recycle())
            .collect();
        assert_eq!(
            recycles,
            [
                RestartReason::MaxRequests,
                RestartReason::Lifetime,
                RestartReason::Rss
            ]
        );
    }
}
