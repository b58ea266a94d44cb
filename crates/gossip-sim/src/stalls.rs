//! Stalls against deaths, over many seeds (`gossip-sim stalls`): does a preset tell a process
//! that stopped for a few seconds (and comes back) from one that died?
//!
//! Three faults, each in its own small cluster per seed:
//!
//! - **stall**: the node stops processing for D seconds ([`Simulation::pause`]): datagrams wait
//!   in its socket buffer, a TCP connection to it is accepted by its kernel and gets no answer
//!   (the stream request times out); then it resumes. Counted: the runs in which any node
//!   declared it failed.
//! - **process crash**: the process is killed on a live host: its port refuses connections
//!   ([`crate::NetworkModel::crash_refuses_streams`]). Measured: time until every node knows.
//! - **host crash**: the host vanishes: nothing answers, connections time out. Measured likewise.

use std::fmt::{self, Write as _};
use std::time::Duration;

use serde::Serialize;

use crate::{Distribution, SimConfig, SimError, Simulation, TraceLevel};

/// What [`run`] measures.
#[derive(Debug, Clone)]
pub struct StallSweep {
    /// Cluster size.
    pub nodes: usize,
    /// Presets, by name.
    pub presets: Vec<String>,
    /// Stall lengths.
    pub stalls: Vec<Duration>,
    /// Seeds per preset and fault (seeds `seed .. seed + runs`).
    pub runs: u64,
    /// First seed.
    pub seed: u64,
    /// How long a run watches after the stall ends (or after a crash).
    pub watch: Duration,
}

impl Default for StallSweep {
    fn default() -> Self {
        Self {
            nodes: 5,
            presets: ["lan", "memberlist-lan", "local"].map(String::from).to_vec(),
            stalls: [1, 2, 3, 4].map(Duration::from_secs).to_vec(),
            runs: 200,
            seed: 1,
            watch: Duration::from_secs(40),
        }
    }
}

/// The stalls of one length.
#[derive(Debug, Clone, Serialize)]
pub struct StallCount {
    /// Stall length, seconds.
    pub stall_secs: f64,
    /// Runs.
    pub runs: u64,
    /// Runs in which some node declared the stalled node failed.
    pub declared_failed: u64,
}

/// One preset's results.
#[derive(Debug, Clone, Serialize)]
pub struct PresetResult {
    /// The preset.
    pub preset: String,
    /// Per stall length.
    pub stalls: Vec<StallCount>,
    /// Process killed on a live host: until every node knows.
    pub process_crash: Distribution,
    /// Host gone: until every node knows.
    pub host_crash: Distribution,
}

/// Everything [`run`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct StallReport {
    /// Cluster size.
    pub nodes: usize,
    /// Seeds per preset and fault.
    pub runs: u64,
    /// Per preset.
    pub presets: Vec<PresetResult>,
}

/// Run the sweep.
pub fn run(sweep: &StallSweep) -> Result<StallReport, SimError> {
    let mut presets = Vec::new();
    for preset in &sweep.presets {
        let config = |seed: u64| {
            SimConfig::preset(preset, sweep.nodes, seed).ok_or_else(|| SimError::Invalid {
                field: "preset",
                value: preset.clone(),
                rule: "must be lan, wan, local, memberlist-lan or swim-paper",
            })
        };
        let mut stalls = Vec::new();
        for &stall in &sweep.stalls {
            let mut declared_failed = 0;
            for seed in sweep.seed..sweep.seed + sweep.runs {
                declared_failed += u64::from(stall_declared_failed(config(seed)?, stall, sweep.watch)?);
            }
            stalls.push(StallCount { stall_secs: stall.as_secs_f64(), runs: sweep.runs, declared_failed });
        }
        let mut process = Vec::new();
        let mut host = Vec::new();
        for seed in sweep.seed..sweep.seed + sweep.runs {
            process.extend(crash_known_by_all(config(seed)?, true, sweep.watch)?);
            host.extend(crash_known_by_all(config(seed)?, false, sweep.watch)?);
        }
        presets.push(PresetResult {
            preset: preset.clone(),
            stalls,
            process_crash: Distribution::from_samples(process),
            host_crash: Distribution::from_samples(host),
        });
    }
    Ok(StallReport { nodes: sweep.nodes, runs: sweep.runs, presets })
}

/// A formed cluster (preformed, then 5 s for the round-trip estimates to settle) and the node
/// the fault hits (never node 0, for no reason but symmetry with the real-process runs).
fn settled(mut cfg: SimConfig) -> Result<(Simulation, usize), SimError> {
    cfg.formation.preformed = true;
    cfg.trace = TraceLevel::Failures;
    let victim = 1 + (cfg.seed as usize % (cfg.nodes - 1).max(1));
    let mut sim = Simulation::new(cfg)?;
    sim.run_until(Duration::from_secs(5));
    Ok((sim, victim))
}

/// Whether any node declared the stalled node failed, during the stall or within `watch` after.
fn stall_declared_failed(cfg: SimConfig, stall: Duration, watch: Duration) -> Result<bool, SimError> {
    let (mut sim, victim) = settled(cfg)?;
    let from = sim.now();
    sim.pause(victim, from, from + stall);
    sim.run_until(from + stall + watch);
    Ok(sim.failures().iter().any(|f| f.subject == Some(victim) && f.observer != victim))
}

/// Time from the crash until every node knows, if all did within `watch`.
fn crash_known_by_all(mut cfg: SimConfig, process: bool, watch: Duration) -> Result<Option<Duration>, SimError> {
    cfg.network.crash_refuses_streams = process;
    let (mut sim, victim) = settled(cfg)?;
    let at = sim.now();
    sim.crash(victim, at);
    sim.run_until(at + watch);
    Ok(sim.detections().first().and_then(|d| d.all))
}

impl StallReport {
    /// The report as a Markdown table: one row per preset.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let stalls: Vec<f64> =
            self.presets.first().map(|p| p.stalls.iter().map(|c| c.stall_secs).collect()).unwrap_or_default();
        let mut header = "| preset |".to_owned();
        let mut rule = "|---|".to_owned();
        for d in &stalls {
            let _ = write!(header, " stall {d} s: declared failed |");
            rule.push_str("---|");
        }
        header.push_str(" process killed: all know, median (p99) | host gone: all know, median (p99) |");
        rule.push_str("---|---|");
        let _ = writeln!(s, "{header}\n{rule}");
        for p in &self.presets {
            let mut row = format!("| {} |", p.preset);
            for c in &p.stalls {
                let _ = write!(row, " {} of {} |", c.declared_failed, c.runs);
            }
            let show = |d: &Distribution| {
                if d.count == 0 {
                    "never".to_owned()
                } else {
                    let missed = self.runs.saturating_sub(d.count as u64);
                    let missed = if missed > 0 { format!(", {missed} never") } else { String::new() };
                    format!("{:.2} s ({:.2} s){missed}", d.median.as_secs_f64(), d.p99.as_secs_f64())
                }
            };
            let _ = writeln!(row, " {} | {} |", show(&p.process_crash), show(&p.host_crash));
            s.push_str(&row);
        }
        s
    }
}

impl fmt::Display for StallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.markdown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_sweep_tells_stalls_from_deaths_on_lan() {
        let sweep = StallSweep {
            presets: vec!["lan".into()],
            stalls: vec![Duration::from_secs(3)],
            runs: 10,
            ..StallSweep::default()
        };
        let report = run(&sweep).unwrap();
        let lan = &report.presets[0];
        assert_eq!(lan.stalls[0].declared_failed, 0, "a 3 s stall declared failed: {}", report.markdown());
        assert_eq!(lan.process_crash.count, 10);
        assert!(lan.process_crash.median < Duration::from_millis(2500), "{}", report.markdown());
        assert!(lan.host_crash.median > lan.process_crash.median * 2, "{}", report.markdown());
        let md = report.markdown();
        assert!(md.starts_with("| preset | stall 3 s: declared failed | process killed"), "{md}");
        assert!(md.contains("| lan | 0 of 10 |"), "{md}");
    }
}
