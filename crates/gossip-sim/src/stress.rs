//! The stress suite in the simulator: false failures per node-hour and detection time after a
//! process crash, for one preset under one stress, over many seeds.
//!
//! The same settings as the real-process suite (`cluster-bench stress --suite`):
//!
//! - random loss on every datagram ([`crate::NetworkModel::loss`]) and on every TCP segment:
//!   a refused connection's SYN or RST may be lost, which turns the refusal into a timeout
//!   ([`crate::NetworkModel::lossy_refusals`]), and an exchange with a live node loses time to
//!   retransmissions, 1 s and more for a lost SYN ([`crate::NetworkModel::lossy_streams`]), so
//!   that a TCP ping to a live member often misses its probe as on real links;
//! - bursts: each node, every 100 ms, goes bad with probability `step / good_mean` and good
//!   again with probability `step / bad_mean`; while bad it is partitioned from every other
//!   node (both ways);
//! - one-way loss of what one node sends ([`crate::NetworkModel::egress_loss`]);
//! - latency with jitter (uniform `delay ± jitter` on every datagram and stream frame);
//! - stall bursts: one node paused for `stop`, running for `run`, repeated;
//! - a CPU quota of `pct` % of a core, modelled as the node paused for the other `100 - pct`
//!   ms of every 100 ms (a worst case: a real throttled process runs until its quota is used
//!   up, so an idle agent is not delayed at all).
//!
//! A run: a preformed cluster settles for 5 s, the stress starts, false failures are counted
//! for `observe` (every node is alive: every `MemberFailed` is false; declarations of one
//! member less than [`EPISODE_GAP`] apart are one episode), then a node other than node 0 and
//! the stressed node 1 is killed as a process on a live host (its port refuses connections)
//! while the stress goes on, and timed until every node but itself and node 1 declared it
//! failed (at most 60 s).

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::{Latency, SimConfig, SimError, Simulation, TraceLevel};

/// Declarations of one member closer than this to the previous one are one episode.
pub const EPISODE_GAP: Duration = Duration::from_secs(10);

/// The node one-node stresses hit.
pub const STRESSED: usize = 1;

/// One stress.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Stress {
    /// Nothing.
    None,
    /// Random loss of every datagram with this probability.
    Loss(f64),
    /// Bursts of isolation per node (see the module doc).
    Bursty {
        /// Mean length of a bad spell.
        bad_mean: Duration,
        /// Mean time between bad spells.
        good_mean: Duration,
    },
    /// What node [`STRESSED`] sends is lost with this probability.
    OneWay(f64),
    /// Every message delayed uniformly by `delay - jitter ..= delay + jitter`.
    Latency {
        /// Mean delay.
        delay: Duration,
        /// Half the spread.
        jitter: Duration,
    },
    /// Node [`STRESSED`] paused for `stop`, then running for `run`, repeated.
    StallBursts {
        /// Pause.
        stop: Duration,
        /// Run.
        run: Duration,
    },
    /// Node [`STRESSED`] given this percentage of a core (paused the rest of each 100 ms).
    CpuQuota(u32),
}

/// What one preset did under one stress, over every seed.
#[derive(Debug, Clone, Serialize)]
pub struct StressResult {
    /// Runs (seeds).
    pub runs: u64,
    /// Nodes × observation time × runs, hours.
    pub node_hours: f64,
    /// False-failure episodes.
    pub false_failures: usize,
    /// `MemberFailed` events about live nodes.
    pub declarations: usize,
    /// Crash to every observer knowing, seconds, per run that completed within 60 s.
    pub detection_secs: Vec<f64>,
    /// Runs whose crash was not known by every observer within 60 s.
    pub missed: u64,
}

/// Run `preset` on `nodes` nodes under `stress` for seeds `seed .. seed + runs`.
pub fn run(
    preset: &str,
    nodes: usize,
    stress: Stress,
    observe: Duration,
    seed: u64,
    runs: u64,
) -> Result<StressResult, SimError> {
    if nodes < 4 {
        return Err(SimError::Invalid { field: "nodes", value: nodes.to_string(), rule: "at least 4" });
    }
    let mut result = StressResult {
        runs,
        node_hours: 0.0,
        false_failures: 0,
        declarations: 0,
        detection_secs: Vec::new(),
        missed: 0,
    };
    for s in seed..seed + runs {
        let one = run_one(preset, nodes, stress, observe, s)?;
        result.node_hours += nodes as f64 * observe.as_secs_f64() / 3600.0;
        result.false_failures += one.episodes;
        result.declarations += one.declarations;
        match one.detection {
            Some(d) => result.detection_secs.push(d.as_secs_f64()),
            None => result.missed += 1,
        }
    }
    Ok(result)
}

/// One seed's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct OneRun {
    /// False-failure episodes.
    pub episodes: usize,
    /// `MemberFailed` events about live nodes.
    pub declarations: usize,
    /// Crash to every observer (all but the victim and node [`STRESSED`]) knowing.
    pub detection: Option<Duration>,
}

/// One seed.
pub fn run_one(preset: &str, nodes: usize, stress: Stress, observe: Duration, seed: u64) -> Result<OneRun, SimError> {
    let cfg = SimConfig::preset(preset, nodes, seed).ok_or_else(|| SimError::Invalid {
        field: "preset",
        value: preset.to_owned(),
        rule: "must be lan, wan, local, memberlist-lan or swim-paper",
    })?;
    run_config(cfg, stress, observe)
}

/// One run of the cluster `cfg` describes (its size, seed and protocol configuration; its
/// network model is changed as the stress needs).
pub fn run_config(mut cfg: SimConfig, stress: Stress, observe: Duration) -> Result<OneRun, SimError> {
    let (nodes, seed) = (cfg.nodes, cfg.seed);
    if nodes < 4 {
        return Err(SimError::Invalid { field: "nodes", value: nodes.to_string(), rule: "at least 4" });
    }
    cfg.formation.preformed = true;
    cfg.trace = TraceLevel::Failures;
    cfg.network.crash_refuses_streams = true;
    match stress {
        Stress::Loss(p) => {
            cfg.network.loss = p;
            cfg.network.lossy_refusals = true;
            cfg.network.lossy_streams = true;
        }
        Stress::OneWay(p) => cfg.network.egress_loss = vec![(STRESSED, p)],
        Stress::Latency { delay, jitter } => {
            cfg.network.latency = Latency::Uniform { min: delay.saturating_sub(jitter), max: delay + jitter };
        }
        _ => {}
    }
    let mut sim = Simulation::new(cfg)?;
    sim.run_until(Duration::from_secs(5));
    let t0 = sim.now();
    let crash_at = t0 + observe;
    let end = crash_at + Duration::from_secs(60);
    match stress {
        Stress::Bursty { bad_mean, good_mean } => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xb025_7e5d);
            let step = Duration::from_millis(100);
            let (p_bad, p_good) =
                (step.as_secs_f64() / good_mean.as_secs_f64(), step.as_secs_f64() / bad_mean.as_secs_f64());
            for node in 0..nodes {
                let others: Vec<usize> = (0..nodes).filter(|&j| j != node).collect();
                let mut t = t0;
                let mut bad_since = None;
                while t < end {
                    let u: f64 = rng.random();
                    match bad_since {
                        None if u < p_bad => bad_since = Some(t),
                        Some(from) if u < p_good => {
                            sim.partition(&[node], &others, from, t);
                            bad_since = None;
                        }
                        _ => {}
                    }
                    t += step;
                }
                if let Some(from) = bad_since {
                    sim.partition(&[node], &others, from, end);
                }
            }
        }
        Stress::StallBursts { stop, run } => pauses(&mut sim, t0, end, stop, run),
        Stress::CpuQuota(pct) => {
            let period = Duration::from_millis(100);
            let run = period * pct.min(100) / 100;
            pauses(&mut sim, t0, end, period - run, run);
        }
        _ => {}
    }
    sim.run_until(crash_at);
    let during: Vec<(usize, Duration)> = sim
        .failures()
        .iter()
        .filter(|f| f.at >= t0 && f.at < crash_at)
        .filter_map(|f| f.subject.filter(|&s| s != f.observer).map(|s| (s, f.at)))
        .collect();
    let victim = 2 + (seed as usize % (nodes - 2));
    sim.crash(victim, crash_at);
    sim.run_until(end);
    let observers: Vec<usize> = (0..nodes).filter(|&i| i != victim && i != STRESSED).collect();
    let mut known = Vec::new();
    for &o in &observers {
        let first = sim
            .failures()
            .iter()
            .find(|f| f.observer == o && f.subject == Some(victim) && f.at >= crash_at)
            .map(|f| f.at - crash_at);
        known.push(first);
    }
    let detection = known.iter().copied().collect::<Option<Vec<_>>>().and_then(|v| v.into_iter().max());
    Ok(OneRun { episodes: episodes(&during), declarations: during.len(), detection })
}

/// Pause node [`STRESSED`] for `stop`, then let it run for `run`, from `from` until `until`.
fn pauses(sim: &mut Simulation, from: Duration, until: Duration, stop: Duration, run: Duration) {
    if stop.is_zero() {
        return;
    }
    let mut t = from;
    while t < until {
        sim.pause(STRESSED, t, t + stop);
        t += stop + run;
    }
}

/// Episodes among declarations `(subject, at)` (see [`EPISODE_GAP`]).
pub fn episodes(declarations: &[(usize, Duration)]) -> usize {
    let mut sorted = declarations.to_vec();
    sorted.sort();
    let mut count = 0;
    let mut last: Option<(usize, Duration)> = None;
    for (s, t) in sorted {
        if !last.is_some_and(|(ls, lt)| ls == s && t - lt < EPISODE_GAP) {
            count += 1;
        }
        last = Some((s, t));
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_merge_close_declarations_of_one_member() {
        let s = Duration::from_secs;
        assert_eq!(episodes(&[(2, s(100)), (2, s(101)), (3, s(100)), (2, s(130))]), 3);
        assert_eq!(episodes(&[]), 0);
    }

    #[test]
    fn a_quiet_cluster_has_no_false_failures_and_detects_a_kill() {
        let one = run_one("lan", 5, Stress::None, Duration::from_secs(60), 3).unwrap();
        assert_eq!(one.episodes, 0);
        let d = one.detection.expect("the kill is detected");
        assert!(d < Duration::from_secs(10), "{d:?}");
    }

    #[test]
    fn runs_are_deterministic_and_stress_changes_them() {
        let stress = Stress::Bursty { bad_mean: Duration::from_secs(1), good_mean: Duration::from_secs(9) };
        let a = run_one("lan", 5, stress, Duration::from_secs(120), 7).unwrap();
        let b = run_one("lan", 5, stress, Duration::from_secs(120), 7).unwrap();
        assert_eq!(a, b);
        // A node paused 95 % of the time does not keep the others from detecting a kill.
        let starved = run("memberlist-lan", 5, Stress::CpuQuota(5), Duration::from_secs(120), 1, 2).unwrap();
        assert_eq!(starved.missed, 0, "{starved:?}");
        // Spells of a minute on average: nodes cut off that long are declared failed.
        let long = Stress::Bursty { bad_mean: Duration::from_secs(60), good_mean: Duration::from_secs(30) };
        let cut_off = run_one("lan", 5, long, Duration::from_secs(120), 1).unwrap();
        assert!(cut_off.episodes >= 1, "{cut_off:?}");
        // One-way loss of every datagram a node sends is not enough: its TCP fallback ping
        // still answers (streams are not lossy in the model).
        let one_way = run_one("lan", 5, Stress::OneWay(1.0), Duration::from_secs(60), 1).unwrap();
        assert_eq!(one_way.episodes, 0, "{one_way:?}");
    }
}
