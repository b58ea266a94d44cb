//! One task per probed check: the first run after a random part of the interval (so that the
//! checks of an agent started with many of them spread out, as Consul's `RandomStagger`), then
//! one run an interval after the previous one ended; each result goes through the check's thresholds and, when it changes
//! something, to the agent on a channel.

use std::time::Duration;

use rand::Rng as _;
use service_registry::HealthStatus;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{probe, CheckSpec, StatusFilter};

/// A result a runner reports.
#[derive(Debug, Clone)]
pub(crate) struct CheckResult {
    /// The check.
    pub(crate) check_id: String,
    /// Which registration of the check ran it (a result of a replaced one is dropped).
    pub(crate) generation: u64,
    /// The status after the thresholds.
    pub(crate) status: HealthStatus,
    /// The output of the run.
    pub(crate) output: String,
}

/// Starts the task running `spec` for check `check_id`; abort the handle to stop it (a script
/// running then is killed with its process group).
pub(crate) fn spawn(
    check_id: String,
    generation: u64,
    spec: CheckSpec,
    results: mpsc::Sender<CheckResult>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let interval = spec.interval.max(super::MIN_INTERVAL);
        let first = rand::rng().random_range(Duration::ZERO..interval);
        tokio::time::sleep(first).await;
        let mut filter = StatusFilter::new(spec.thresholds);
        loop {
            let (status, output) = probe::run(&spec).await;
            if let Some(status) = filter.observe(status) {
                let result = CheckResult { check_id: check_id.clone(), generation, status, output };
                if results.send(result).await.is_err() {
                    return;
                }
            } else {
                tracing::debug!(check = %check_id, status = status.as_str(), "check result below its threshold");
            }
            // As Consul: the next run an interval after this one ended, never two at a time.
            tokio::time::sleep(interval).await;
        }
    })
}
