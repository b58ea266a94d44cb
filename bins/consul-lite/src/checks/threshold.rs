//! `SuccessBeforePassing`, `FailuresBeforeWarning` and `FailuresBeforeCritical`: how many results
//! in a row a probed check needs before its status changes (Consul's `StatusHandler`).
//!
//! As in Consul, the counters start at their thresholds, so the first result after a start
//! applies at once; after that, a passing (or warning) result resets the failure count and a
//! critical one the success count. A critical result below `FailuresBeforeCritical` but at or
//! above `FailuresBeforeWarning` is reported as warning. Below every threshold nothing is
//! reported (the status and the output stay as they were).

use service_registry::HealthStatus;

/// The three thresholds of a check (each at least 1; 0 in a definition means 1, and a missing
/// `FailuresBeforeWarning` means `FailuresBeforeCritical`, as in Consul).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Thresholds {
    pub(crate) success_before_passing: u32,
    pub(crate) failures_before_warning: u32,
    pub(crate) failures_before_critical: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { success_before_passing: 1, failures_before_warning: 1, failures_before_critical: 1 }
    }
}

impl Thresholds {
    /// From a definition's values (`None` when absent).
    pub(crate) fn new(success_before_passing: Option<u32>, warning: Option<u32>, critical: Option<u32>) -> Self {
        let critical = critical.unwrap_or(1).max(1);
        Self {
            success_before_passing: success_before_passing.unwrap_or(1).max(1),
            failures_before_warning: warning.unwrap_or(critical).max(1),
            failures_before_critical: critical,
        }
    }
}

/// The counters of one running check.
#[derive(Debug, Clone)]
pub(crate) struct StatusFilter {
    thresholds: Thresholds,
    successes: u32,
    failures: u32,
}

impl StatusFilter {
    /// A filter whose first result applies at once.
    pub(crate) fn new(thresholds: Thresholds) -> Self {
        Self { thresholds, successes: thresholds.success_before_passing, failures: thresholds.failures_before_critical }
    }

    /// Counts one probe result; the status to report, or `None` while below the thresholds.
    #[must_use]
    pub(crate) fn observe(&mut self, status: HealthStatus) -> Option<HealthStatus> {
        if matches!(status, HealthStatus::Passing | HealthStatus::Warning) {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            (self.successes >= self.thresholds.success_before_passing).then_some(status)
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.failures >= self.thresholds.failures_before_critical {
                Some(status)
            } else if self.failures >= self.thresholds.failures_before_warning {
                Some(HealthStatus::Warning)
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::{Critical, Passing, Warning};

    fn run(thresholds: Thresholds, results: &[HealthStatus]) -> Vec<Option<HealthStatus>> {
        let mut filter = StatusFilter::new(thresholds);
        results.iter().map(|status| filter.observe(*status)).collect()
    }

    #[test]
    fn without_thresholds_every_result_applies() {
        let out = run(Thresholds::default(), &[Critical, Passing, Warning, Critical]);
        assert_eq!(out, [Some(Critical), Some(Passing), Some(Warning), Some(Critical)]);
    }

    #[test]
    fn the_first_result_applies_at_once_then_the_thresholds_count() {
        let thresholds = Thresholds::new(Some(2), None, Some(3));
        let out = run(thresholds, &[Passing, Critical, Critical, Critical, Passing, Passing, Critical]);
        assert_eq!(out, [Some(Passing), None, None, Some(Critical), None, Some(Passing), None]);
    }

    #[test]
    fn failures_below_critical_warn_from_the_warning_threshold() {
        let thresholds = Thresholds::new(None, Some(1), Some(3));
        let out = run(thresholds, &[Passing, Critical, Critical, Critical, Critical]);
        assert_eq!(out, [Some(Passing), Some(Warning), Some(Warning), Some(Critical), Some(Critical)]);
    }

    #[test]
    fn a_success_resets_the_failures_and_a_failure_the_successes() {
        let thresholds = Thresholds::new(Some(2), None, Some(2));
        let out = run(thresholds, &[Passing, Critical, Passing, Critical, Passing, Passing]);
        assert_eq!(out, [Some(Passing), None, None, None, None, Some(Passing)]);
    }

    #[test]
    fn zero_means_one_and_warning_defaults_to_critical() {
        let thresholds = Thresholds::new(Some(0), None, Some(0));
        assert_eq!(thresholds, Thresholds::default());
        let thresholds = Thresholds::new(None, None, Some(4));
        assert_eq!(thresholds.failures_before_warning, 4);
    }
}
