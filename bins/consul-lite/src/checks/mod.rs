//! The health checks this agent runs for its own services and node, as Consul's agent runs them
//! (`agent/checks/check.go`): HTTP, TCP and script checks on an interval, TTL checks updated from
//! outside, and the maintenance checks the agent sets itself.
//!
//! ```text
//!  CheckSpec ─► runner::spawn (one task per check) ─► first run after a random part of Interval
//!                   │ every Interval: probe::run (HTTP | TCP | script, bounded by Timeout)
//!                   │                     └─► Thresholds filter (SuccessBeforePassing,
//!                   │                         FailuresBeforeWarning, FailuresBeforeCritical)
//!                   └─► CheckResult on a channel ─► LocalAgent writes the status to the catalog
//!  deregister / replace ─► the task is aborted (a script still running is killed with its group)
//! ```
//!
//! What is not here: gRPC, H2PING, UDP, Docker, alias and OS-service checks (refused with a 400
//! naming the field), HTTPS (only `http://` URLs: `TLSSkipVerify` is accepted and has nothing to
//! apply to), and Consul's deferred output-only updates (`check_update_interval`): an output
//! change without a status change reaches the catalog at the agent's next anti-entropy pass.

pub(crate) mod persist;
pub(crate) mod probe;
pub(crate) mod runner;
pub(crate) mod threshold;

use std::time::Duration;

pub(crate) use runner::CheckResult;
pub(crate) use threshold::{StatusFilter, Thresholds};
use tokio::time::Instant;

/// Consul's shortest interval: a shorter one is raised to this (`MinInterval`).
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Consul's timeout of an HTTP or TCP check without `Timeout`.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Consul's timeout of a script check without `Timeout` (`CheckMonitor`).
pub(crate) const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most output a check keeps (Consul's `DefaultBufSize`).
pub(crate) const MAX_OUTPUT: usize = 4 * 1024;

/// What a check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckKind {
    /// Critical unless updated (`pass`/`warn`/`fail`/`update`) within the TTL.
    Ttl {
        /// The TTL.
        ttl: Duration,
    },
    /// An HTTP request: 2xx passing, 429 warning, anything else critical.
    Http {
        /// `http://host[:port]/path`.
        url: String,
        /// GET unless given.
        method: String,
        /// Extra request headers (a name may repeat).
        headers: Vec<(String, String)>,
        /// The request body.
        body: String,
    },
    /// A TCP connect: passing when it connects.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// A program run directly (never through a shell): exit 0 passing, 1 warning, else critical.
    Script {
        /// The program and its arguments.
        args: Vec<String>,
    },
    /// A maintenance check the agent sets (`_service_maintenance:<id>`, `_node_maintenance`):
    /// critical until maintenance is disabled.
    Maintenance,
}

impl CheckKind {
    /// The `Type` Consul reports for the kind.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Self::Ttl { .. } => "ttl",
            Self::Http { .. } => "http",
            Self::Tcp { .. } => "tcp",
            Self::Script { .. } => "script",
            Self::Maintenance => "maintenance",
        }
    }

    /// Whether a runner task probes it on an interval.
    pub(crate) fn is_probed(&self) -> bool {
        matches!(self, Self::Http { .. } | Self::Tcp { .. } | Self::Script { .. })
    }
}

/// A check definition, checked: its kind and timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckSpec {
    /// What it runs.
    pub(crate) kind: CheckKind,
    /// Between two runs of a probed check ([`MIN_INTERVAL`] at least); zero for the others.
    pub(crate) interval: Duration,
    /// Bound on one run of a probed check.
    pub(crate) timeout: Duration,
    /// `DeregisterCriticalServiceAfter`: the check's service is removed once the check has been
    /// critical this long.
    pub(crate) deregister_critical_after: Option<Duration>,
    /// How many results in a row change the status.
    pub(crate) thresholds: Thresholds,
}

impl CheckSpec {
    /// A spec of `kind` with no interval and default thresholds (TTL and maintenance checks).
    pub(crate) fn passive(kind: CheckKind) -> Self {
        Self {
            kind,
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            deregister_critical_after: None,
            thresholds: Thresholds::default(),
        }
    }
}

/// Whether a check critical since `critical_since` is due to take its service away at `now`.
pub(crate) fn deregistration_due(critical_since: Option<Instant>, after: Option<Duration>, now: Instant) -> bool {
    match (critical_since, after) {
        (Some(since), Some(after)) => now.saturating_duration_since(since) >= after,
        _ => false,
    }
}

/// Consul's cut of an over-long output: the first [`MAX_OUTPUT`] bytes (at a character boundary)
/// and how much there was.
pub(crate) fn truncate_output(output: &str) -> String {
    if output.len() <= MAX_OUTPUT {
        return output.to_owned();
    }
    let mut end = MAX_OUTPUT;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ... (captured {} of {} bytes)", &output[..end], end, output.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deregistration_waits_for_the_whole_duration_of_critical() {
        let start = Instant::now();
        let after = Some(Duration::from_secs(5));
        assert!(!deregistration_due(None, after, start + Duration::from_secs(60)), "not critical");
        assert!(!deregistration_due(Some(start), None, start + Duration::from_secs(60)), "not asked for");
        assert!(!deregistration_due(Some(start), after, start + Duration::from_millis(4_999)));
        assert!(deregistration_due(Some(start), after, start + Duration::from_secs(5)));
    }

    #[test]
    fn long_output_is_cut_at_a_character_boundary() {
        assert_eq!(truncate_output("short"), "short");
        let long = "é".repeat(3000);
        let cut = truncate_output(&long);
        assert!(cut.ends_with(&format!("(captured {} of 6000 bytes)", MAX_OUTPUT)), "{}", &cut[cut.len() - 40..]);
    }
}
