//! Scenarios as data: a cluster, a list of faults, a duration; run them and summarise over seeds.

use std::fmt;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::observe::FailureRecord;
use crate::report::{write_detection_rows, write_failures, FailureCounts, Report};
use crate::sim::{mix, SimConfig, SimError, Simulation};
use crate::stats::{opt_secs, secs, Distribution};

/// A fault, with times relative to the start of the fault phase (the end of formation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// The node stops for good.
    Crash {
        /// Node index.
        node: usize,
        /// When.
        #[serde(serialize_with = "secs")]
        at: Duration,
    },
    /// The node stalls: no timers, datagrams buffered.
    Pause {
        /// Node index.
        node: usize,
        /// Start.
        #[serde(serialize_with = "secs")]
        from: Duration,
        /// End.
        #[serde(serialize_with = "secs")]
        until: Duration,
    },
    /// No traffic between the two sides.
    Partition {
        /// One side.
        a: Vec<usize>,
        /// The other side.
        b: Vec<usize>,
        /// Start.
        #[serde(serialize_with = "secs")]
        from: Duration,
        /// End.
        #[serde(serialize_with = "secs")]
        until: Duration,
    },
    /// The node restarts: a new life, same name and address, larger generation.
    Restart {
        /// Node index.
        node: usize,
        /// When.
        #[serde(serialize_with = "secs")]
        at: Duration,
    },
    /// The node leaves gracefully and stops.
    Leave {
        /// Node index.
        node: usize,
        /// When.
        #[serde(serialize_with = "secs")]
        at: Duration,
    },
}

impl Fault {
    /// The last moment the fault changes anything (a crash's or restart's time, a pause's or
    /// partition's end).
    pub fn healed_at(&self) -> Duration {
        match self {
            Self::Crash { at, .. } | Self::Restart { at, .. } | Self::Leave { at, .. } => *at,
            Self::Pause { until, .. } | Self::Partition { until, .. } => *until,
        }
    }

    /// The nodes it involves.
    pub fn nodes(&self) -> Vec<usize> {
        match self {
            Self::Crash { node, .. }
            | Self::Pause { node, .. }
            | Self::Restart { node, .. }
            | Self::Leave { node, .. } => {
                vec![*node]
            }
            Self::Partition { a, b, .. } => a.iter().chain(b).copied().collect(),
        }
    }
}

/// A complete experiment: cluster, formation, faults, duration.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The cluster.
    pub sim: SimConfig,
    /// Wait until the formed cluster has converged (up to `formation_timeout` after the last
    /// node started) before the fault phase starts; otherwise it starts right after the last
    /// node started.
    pub wait_converged: bool,
    /// Bound on the wait for formation.
    pub formation_timeout: Duration,
    /// Faults, timed from the start of the fault phase.
    pub faults: Vec<Fault>,
    /// Additional crashes of distinct nodes picked at random (from the seed) among the nodes no
    /// other fault involves, spread evenly over the first 85% of the fault phase.
    pub random_crashes: usize,
    /// Length of the fault phase.
    pub duration: Duration,
    /// Resolution of the convergence checks.
    pub check_every: Duration,
}

impl Scenario {
    /// A scenario over `sim` with no faults, waiting for formation (up to 5 minutes) and a
    /// fault phase of `duration`.
    pub fn new(sim: SimConfig, duration: Duration) -> Self {
        Self {
            sim,
            wait_converged: true,
            formation_timeout: Duration::from_secs(300),
            faults: Vec::new(),
            random_crashes: 0,
            duration,
            check_every: Duration::from_secs(1),
        }
    }

    /// The same scenario with another seed.
    pub fn with_seed(&self, seed: u64) -> Self {
        let mut s = self.clone();
        s.sim.seed = seed;
        s
    }

    /// Check node indexes and times; the error names the fault.
    pub fn validate(&self) -> Result<(), SpecError> {
        let n = self.sim.nodes;
        for f in &self.faults {
            if let Some(&bad) = f.nodes().iter().find(|&&i| i >= n) {
                return Err(SpecError::NodeOutOfRange { spec: format!("{f:?}"), node: bad, nodes: n });
            }
            match f {
                Fault::Pause { from, until, .. } | Fault::Partition { from, until, .. } if from > until => {
                    return Err(SpecError::Invalid {
                        spec: format!("{f:?}"),
                        rule: "the start must not be after the end",
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The faults of the run: [`Scenario::faults`] plus the random crashes.
    pub fn all_faults(&self) -> Vec<Fault> {
        let mut faults = self.faults.clone();
        if self.random_crashes == 0 {
            return faults;
        }
        let used: Vec<usize> = self.faults.iter().flat_map(Fault::nodes).collect();
        let mut candidates: Vec<usize> = (0..self.sim.nodes).filter(|i| !used.contains(i)).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.sim.seed, 0x0063_7261_7368));
        candidates.shuffle(&mut rng);
        let k = self.random_crashes.min(candidates.len());
        let window = self.duration.mul_f64(0.85);
        for (j, &node) in candidates[..k].iter().enumerate() {
            let at = window * (j as u32 + 1) / (k as u32 + 1);
            faults.push(Fault::Crash { node, at });
        }
        faults
    }

    /// Run it: formation, faults, the fault phase; then report.
    pub fn run(&self) -> Result<Outcome, SimError> {
        self.validate()?;
        let mut sim = Simulation::new(self.sim.clone())?;
        let spread = self.sim.formation.spread;
        sim.run_until(spread);
        let formation = if self.wait_converged {
            sim.run_until_converged(spread + self.formation_timeout, self.check_every)
        } else {
            None
        };
        let start = sim.now();
        sim.reset_traffic();
        let faults = self.all_faults();
        for f in &faults {
            sim.apply(f, start);
        }
        let end = start + self.duration;
        let last_heal = start + faults.iter().map(Fault::healed_at).max().unwrap_or_default();
        sim.run_until(last_heal.min(end));
        let converged_at = sim.run_until_converged(end, self.check_every);
        sim.run_until(end);
        Ok(Outcome {
            formation,
            faults_start: start,
            converged_after_heal: converged_at.map(|t| t.saturating_sub(last_heal)),
            faults,
            report: sim.report(),
        })
    }
}

/// What one run of a [`Scenario`] produced.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// When formation converged (virtual time since the start), if it was waited for and did.
    #[serde(serialize_with = "opt_secs")]
    pub formation: Option<Duration>,
    /// When the fault phase started.
    #[serde(serialize_with = "secs")]
    pub faults_start: Duration,
    /// Time from the last fault's healing (or the last crash) to the first convergence check
    /// that passed; `None` if the views had not converged by the end.
    #[serde(serialize_with = "opt_secs")]
    pub converged_after_heal: Option<Duration>,
    /// The faults applied (relative to `faults_start`).
    pub faults: Vec<Fault>,
    /// The report at the end.
    pub report: Report,
}

/// Results over several runs (seeds) of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Runs.
    pub runs: usize,
    /// Nodes per run.
    pub nodes: usize,
    /// Crashes over all runs.
    pub crashes: usize,
    /// Crash to first `MemberFailed`, over all runs.
    pub first_detection: Distribution,
    /// Crash to every live node knowing, over all runs.
    pub all_detection: Distribution,
    /// Crashes nobody declared.
    pub undetected: usize,
    /// Crashes not every observer learned of.
    pub incomplete: usize,
    /// `MemberFailed` by cause, over all runs.
    pub failures: FailureCounts,
    /// False failures with the seed of their run.
    pub false_failures: Vec<(u64, FailureRecord)>,
    /// The grace window of the classification (see [`Simulation::grace`]).
    #[serde(serialize_with = "secs")]
    pub grace: Duration,
    /// Formation times of the runs that converged.
    pub formation: Distribution,
    /// Runs whose formation did not converge in time.
    pub formation_timeouts: usize,
    /// Time from the last heal to convergence.
    pub converged_after_heal: Distribution,
    /// Runs whose views had not converged at the end.
    pub not_converged: usize,
    /// Mean over runs of datagrams per node per second.
    pub datagrams_per_node_sec: f64,
    /// Mean over runs of datagram bytes per node per second.
    pub datagram_bytes_per_node_sec: f64,
    /// Mean over runs of streams per node per second.
    pub streams_per_node_sec: f64,
    /// Mean over runs of stream bytes per node per second.
    pub stream_bytes_per_node_sec: f64,
}

impl Summary {
    /// Summarise `outcomes`.
    pub fn new(outcomes: &[Outcome]) -> Self {
        let detections: Vec<_> = outcomes.iter().flat_map(|o| &o.report.detections).collect();
        let mut failures = FailureCounts::default();
        for o in outcomes {
            let f = &o.report.failures;
            failures.crashed += f.crashed;
            failures.left += f.left;
            failures.paused += f.paused;
            failures.partitioned += f.partitioned;
            failures.observer_paused += f.observer_paused;
            failures.false_failures += f.false_failures;
        }
        let runs = outcomes.len();
        let mean = |f: &dyn Fn(&Outcome) -> f64| {
            if runs == 0 {
                0.0
            } else {
                outcomes.iter().map(f).sum::<f64>() / runs as f64
            }
        };
        Self {
            runs,
            nodes: outcomes.first().map_or(0, |o| o.report.nodes),
            crashes: detections.len(),
            first_detection: Distribution::from_samples(detections.iter().filter_map(|d| d.first)),
            all_detection: Distribution::from_samples(detections.iter().filter_map(|d| d.all)),
            undetected: detections.iter().filter(|d| d.first.is_none()).count(),
            incomplete: detections.iter().filter(|d| d.all.is_none()).count(),
            failures,
            false_failures: outcomes
                .iter()
                .flat_map(|o| o.report.false_failures.iter().map(|f| (o.report.seed, f.clone())))
                .collect(),
            grace: outcomes.first().map_or(Duration::ZERO, |o| o.report.grace),
            formation: Distribution::from_samples(outcomes.iter().filter_map(|o| o.formation)),
            formation_timeouts: outcomes.iter().filter(|o| o.formation.is_none()).count(),
            converged_after_heal: Distribution::from_samples(outcomes.iter().filter_map(|o| o.converged_after_heal)),
            not_converged: outcomes.iter().filter(|o| !o.report.convergence.converged).count(),
            datagrams_per_node_sec: mean(&|o| o.report.traffic.datagrams_per_node_sec),
            datagram_bytes_per_node_sec: mean(&|o| o.report.traffic.datagram_bytes_per_node_sec),
            streams_per_node_sec: mean(&|o| o.report.traffic.streams_per_node_sec),
            stream_bytes_per_node_sec: mean(&|o| o.report.traffic.stream_bytes_per_node_sec),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} runs of {} nodes", self.runs, self.nodes)?;
        writeln!(
            f,
            "crash detection ({} crashes, {} undetected, {} not known by all):",
            self.crashes, self.undetected, self.incomplete
        )?;
        write_detection_rows(f, &self.first_detection, &self.all_detection)?;
        let records: Vec<FailureRecord> = self.false_failures.iter().map(|(_, r)| r.clone()).collect();
        write_failures(f, &self.failures, &records, self.grace)?;
        writeln!(
            f,
            "traffic per node per second: {:.2} datagrams, {:.0} B; {:.3} streams, {:.0} B",
            self.datagrams_per_node_sec,
            self.datagram_bytes_per_node_sec,
            self.streams_per_node_sec,
            self.stream_bytes_per_node_sec
        )?;
        writeln!(
            f,
            "formation: {} ({} timed out); convergence after the last fault: {} ({} runs not converged at the end)",
            self.formation, self.formation_timeouts, self.converged_after_heal, self.not_converged
        )
    }
}

/// Errors parsing a fault specification; each names the text it could not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The text does not have the expected shape.
    #[error("{spec:?}: expected {expected}")]
    Syntax {
        /// The text.
        spec: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A node index is out of range.
    #[error("{spec}: node {node} is out of range (the cluster has {nodes} nodes)")]
    NodeOutOfRange {
        /// The text or fault.
        spec: String,
        /// The bad index.
        node: usize,
        /// Cluster size.
        nodes: usize,
    },
    /// The values break a rule.
    #[error("{spec}: {rule}")]
    Invalid {
        /// The text or fault.
        spec: String,
        /// The rule.
        rule: &'static str,
    },
}

fn syntax(spec: &str, expected: &'static str) -> SpecError {
    SpecError::Syntax { spec: spec.to_owned(), expected }
}

/// Parse seconds (`"12"`, `"1.5"`).
pub fn parse_seconds(s: &str) -> Result<Duration, SpecError> {
    let v: f64 = s.trim().parse().map_err(|_| syntax(s, "a number of seconds"))?;
    Duration::try_from_secs_f64(v).map_err(|_| syntax(s, "a non-negative number of seconds"))
}

fn parse_node(s: &str, nodes: usize) -> Result<usize, SpecError> {
    let i: usize = s.trim().parse().map_err(|_| syntax(s, "a node index"))?;
    if i >= nodes {
        return Err(SpecError::NodeOutOfRange { spec: s.to_owned(), node: i, nodes });
    }
    Ok(i)
}

/// Parse a set of nodes: comma-separated indexes and inclusive ranges, e.g. `0-49,60,70-72`.
pub fn parse_node_set(s: &str, nodes: usize) -> Result<Vec<usize>, SpecError> {
    let mut set = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (parse_node(lo, nodes)?, parse_node(hi, nodes)?);
                if lo > hi {
                    return Err(SpecError::Invalid { spec: part.to_owned(), rule: "a range must not be reversed" });
                }
                set.extend(lo..=hi);
            }
            None => set.push(parse_node(part, nodes)?),
        }
    }
    set.sort_unstable();
    set.dedup();
    Ok(set)
}

/// Parse `NODE:AT` (for crashes, restarts and leaves); seconds from the start of the fault phase.
pub fn parse_node_at(s: &str, nodes: usize) -> Result<(usize, Duration), SpecError> {
    let (node, at) = s.split_once(':').ok_or_else(|| syntax(s, "NODE:AT"))?;
    Ok((parse_node(node, nodes)?, parse_seconds(at)?))
}

/// Parse a pause, `NODE:FROM:UNTIL`.
pub fn parse_pause(s: &str, nodes: usize) -> Result<Fault, SpecError> {
    let parts: Vec<&str> = s.split(':').collect();
    let [node, from, until] = parts[..] else { return Err(syntax(s, "NODE:FROM:UNTIL")) };
    let (from, until) = (parse_seconds(from)?, parse_seconds(until)?);
    if from > until {
        return Err(SpecError::Invalid { spec: s.to_owned(), rule: "FROM must not be after UNTIL" });
    }
    Ok(Fault::Pause { node: parse_node(node, nodes)?, from, until })
}

/// Parse a partition, `SIDE_A/SIDE_B:FROM:UNTIL` with sides as in [`parse_node_set`], or
/// `half:FROM:UNTIL` for the lower half of the nodes against the upper half.
pub fn parse_partition(s: &str, nodes: usize) -> Result<Fault, SpecError> {
    let parts: Vec<&str> = s.split(':').collect();
    let [sides, from, until] = parts[..] else { return Err(syntax(s, "SIDE_A/SIDE_B:FROM:UNTIL or half:FROM:UNTIL")) };
    let (from, until) = (parse_seconds(from)?, parse_seconds(until)?);
    if from > until {
        return Err(SpecError::Invalid { spec: s.to_owned(), rule: "FROM must not be after UNTIL" });
    }
    let (a, b) = if sides == "half" {
        ((0..nodes / 2).collect(), (nodes / 2..nodes).collect())
    } else {
        let (a, b) = sides.split_once('/').ok_or_else(|| syntax(s, "SIDE_A/SIDE_B:FROM:UNTIL"))?;
        (parse_node_set(a, nodes)?, parse_node_set(b, nodes)?)
    };
    Ok(Fault::Partition { a, b, from, until })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    #[test]
    fn node_sets() {
        assert_eq!(parse_node_set("0-3,7,2", 10).unwrap(), vec![0, 1, 2, 3, 7]);
        assert_eq!(parse_node_set("9", 10).unwrap(), vec![9]);
        assert!(matches!(parse_node_set("10", 10), Err(SpecError::NodeOutOfRange { node: 10, .. })));
        assert!(parse_node_set("5-2", 10).is_err());
        assert!(parse_node_set("a", 10).unwrap_err().to_string().contains("\"a\""));
    }

    #[test]
    fn pauses_and_crashes() {
        assert_eq!(
            parse_pause("3:10:40.5", 5).unwrap(),
            Fault::Pause { node: 3, from: secs(10), until: Duration::from_millis(40_500) }
        );
        assert!(parse_pause("3:40:10", 5).is_err());
        assert!(parse_pause("3:10", 5).is_err());
        assert!(parse_pause("7:1:2", 5).is_err());
        assert_eq!(parse_node_at("2:30", 5).unwrap(), (2, secs(30)));
        assert!(parse_node_at("2", 5).is_err());
        assert!(parse_seconds("-1").is_err());
    }

    #[test]
    fn partitions() {
        assert_eq!(
            parse_partition("0-1/2-3:5:15", 4).unwrap(),
            Fault::Partition { a: vec![0, 1], b: vec![2, 3], from: secs(5), until: secs(15) }
        );
        let Fault::Partition { a, b, .. } = parse_partition("half:0:1", 5).unwrap() else { panic!() };
        assert_eq!((a, b), (vec![0, 1], vec![2, 3, 4]));
        assert!(parse_partition("0-1:5:15", 4).is_err());
    }

    #[test]
    fn random_crashes_avoid_other_faults_and_are_deterministic() {
        let mut s = Scenario::new(SimConfig::new(10, 4, swim::Config::lan()), secs(100));
        s.faults.push(Fault::Pause { node: 3, from: secs(1), until: secs(2) });
        s.random_crashes = 4;
        let faults = s.all_faults();
        assert_eq!(faults.len(), 5);
        let crashed: Vec<usize> = faults[1..].iter().flat_map(Fault::nodes).collect();
        assert!(!crashed.contains(&3));
        let mut dedup = crashed.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), 4);
        assert_eq!(faults, s.all_faults());
        assert_eq!(faults[1].healed_at(), secs(17));
        assert_ne!(faults, s.with_seed(5).all_faults());
        assert!(faults.iter().all(|f| f.healed_at() <= secs(85)));
    }

    #[test]
    fn validation_names_the_bad_fault() {
        let mut s = Scenario::new(SimConfig::new(10, 4, swim::Config::lan()), secs(100));
        s.faults.push(Fault::Crash { node: 12, at: secs(1) });
        assert!(s.validate().unwrap_err().to_string().contains("node 12"));
    }
}
