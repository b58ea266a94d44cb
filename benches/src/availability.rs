//! The client of the primary service: every 50 ms it asks every node that may serve the primary
//! service and records which ones do, so that the interval with no primary (and with two) can be
//! read off a timeline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::system::{NodeSpec, System};

/// One poll of every node: when, and which nodes answered as primary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the probe's time origin.
    pub at: f64,
    /// Indexes of the nodes that answered as primary.
    pub primaries: Vec<usize>,
}

/// A running probe's shared state: which nodes not to ask (killed or stopped: a client would
/// get no answer from them), and the samples so far.
#[derive(Debug, Default)]
pub struct Probe {
    excluded: Mutex<Vec<usize>>,
    samples: Mutex<Vec<Sample>>,
    stop: AtomicBool,
}

impl Probe {
    /// Stop asking node `i`.
    pub fn exclude(&self, i: usize) {
        self.excluded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(i);
    }

    /// Ask node `i` again.
    pub fn include(&self, i: usize) {
        self.excluded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|&x| x != i);
    }

    /// Ask the probe loop to end.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Poll every `every` until [`Probe::stop`] (or `limit`), calling `on_change` when the set
    /// of primaries changes. Run it on its own thread.
    pub fn run(
        &self,
        system: &dyn System,
        nodes: &[NodeSpec],
        t0: Instant,
        every: Duration,
        limit: Duration,
        mut on_change: impl FnMut(f64, &[usize]),
    ) {
        let mut last: Option<Vec<usize>> = None;
        while !self.stop.load(Ordering::Relaxed) && t0.elapsed() < limit {
            let started = Instant::now();
            let excluded = self.excluded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let primaries: Vec<usize> = nodes
                .iter()
                .filter(|n| !excluded.contains(&n.index) && system.serves_primary(n))
                .map(|n| n.index)
                .collect();
            let at = t0.elapsed().as_secs_f64();
            if last.as_ref() != Some(&primaries) {
                on_change(at, &primaries);
                last = Some(primaries.clone());
            }
            self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Sample { at, primaries });
            let spent = started.elapsed();
            if spent < every {
                std::thread::sleep(every - spent);
            }
        }
    }
}

/// What a timeline says about one failure at `fault` seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Outage {
    /// From the fault to the first sample with a primary again (`None`: never, in the samples).
    pub unavailable: Option<f64>,
    /// Seconds (summed over samples) during which two or more nodes answered as primary.
    pub split_brain: f64,
    /// Average interval between samples.
    pub resolution: f64,
}

/// Read the outage after the primary `gone` failed at `fault` seconds off `samples`: the time
/// until a sample shows another node answering as primary.
pub fn outage(samples: &[Sample], fault: f64, gone: usize) -> Outage {
    let unavailable =
        samples.iter().filter(|s| s.at >= fault).find(|s| s.primaries.iter().any(|&p| p != gone)).map(|s| s.at - fault);
    let mut split_brain = 0.0;
    for w in samples.windows(2) {
        if w[0].primaries.len() >= 2 {
            split_brain += w[1].at - w[0].at;
        }
    }
    let resolution = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) if samples.len() > 1 => (b.at - a.at) / (samples.len() - 1) as f64,
        _ => 0.0,
    };
    Outage { unavailable, split_brain: split_brain + 0.0, resolution }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: f64, p: &[usize]) -> Sample {
        Sample { at, primaries: p.to_vec() }
    }

    #[test]
    fn outage_from_samples() {
        let samples =
            [s(0.0, &[0]), s(1.0, &[0]), s(1.05, &[]), s(3.0, &[]), s(3.05, &[1]), s(3.1, &[1, 2]), s(3.2, &[1])];
        let o = outage(&samples, 1.02, 0);
        assert!((o.unavailable.unwrap() - 2.03).abs() < 1e-9);
        assert!((o.split_brain - 0.1).abs() < 1e-9);
        assert!(outage(&samples[..4], 1.02, 0).unavailable.is_none());
        assert!(outage(&samples[..2], 0.5, 0).unavailable.is_none());
    }
}
