//! `cluster-bench stress --sim`: the stress suite's settings in the simulator
//! ([`gossip_sim::stress`]), many seeds per preset and setting, written as the simulator's
//! frontier (docs/results/frontier-sim.*).
//!
//! The simulator runs the protocol crates' presets, not the agents: `serf-agent lan`,
//! `serf-agent local` and `serf-agent memberlist-lan` are the presets of those names, and
//! HashiCorp Serf `lan` is modelled by `memberlist-lan` (memberlist's DefaultLANConfig timings
//! and rules); Serf `local` has no preset and is left out (said so in the table).

use std::time::{Duration, Instant};

use gossip_sim::stress::Stress;

use crate::stamp::{results_dir, Stamp};
use crate::stats::Stat;
use crate::stress_frontier::{Frontier, Point};
use crate::stress_suite::Setting;

/// What to run.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Nodes per cluster.
    pub nodes: usize,
    /// `system:profile` pairs, as for the real suite.
    pub systems: Vec<(String, String)>,
    /// Settings.
    pub settings: Vec<Setting>,
    /// Virtual observation time per run.
    pub observe: Duration,
    /// Seeds per preset and setting.
    pub runs: u64,
    /// Base name of the result files, or `None`.
    pub name: Option<String>,
    /// The command line, for the stamp.
    pub command: String,
}

/// The simulator's stress for a real-process setting.
pub fn stress_of(setting: Setting) -> Stress {
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    match setting {
        Setting::None => Stress::None,
        Setting::Loss(p) => Stress::Loss(p),
        Setting::Bursty => Stress::Bursty { bad_mean: Duration::from_secs(1), good_mean: Duration::from_secs(9) },
        Setting::OneWay(p) => Stress::OneWay(p),
        Setting::Latency(d, j) => Stress::Latency { delay: ms(d), jitter: ms(j) },
        Setting::StallBursts(s, r) => Stress::StallBursts { stop: ms(s), run: ms(r) },
        Setting::CpuQuota(p) => Stress::CpuQuota(p),
    }
}

/// The simulator preset that stands for `system profile`, if any.
pub fn preset_of(system: &str, profile: &str) -> Option<&'static str> {
    match (system, profile) {
        ("serf-agent", "lan") => Some("lan"),
        ("serf-agent", "local") => Some("local"),
        ("serf-agent", "memberlist-lan") => Some("memberlist-lan"),
        ("serf", "lan") => Some("memberlist-lan"),
        _ => None,
    }
}

/// Run every preset under every setting and write the frontier.
pub fn run(o: &SimOptions) -> anyhow::Result<Frontier> {
    anyhow::ensure!((4..=50).contains(&o.nodes), "--nodes {}: between 4 and 50 in the simulator", o.nodes);
    let stamp = Stamp::new(&o.command);
    let t0 = Instant::now();
    let mut systems = Vec::new();
    let mut left_out = Vec::new();
    for (system, profile) in &o.systems {
        match preset_of(system, profile) {
            // `serf-agent memberlist-lan` and `serf lan` are the same preset here: run it once,
            // under Serf's name.
            Some("memberlist-lan")
                if system == "serf-agent" && o.systems.iter().any(|(s, p)| s == "serf" && p == "lan") =>
            {
                left_out.push(format!("{system} {profile} (the same preset as serf lan here)"));
            }
            Some(preset) => systems.push((format!("{system} {profile}"), preset)),
            None => left_out.push(format!("{system} {profile} (no preset)")),
        }
    }
    let mut points = Vec::new();
    for &setting in &o.settings {
        for (label, preset) in &systems {
            let r = gossip_sim::stress::run(preset, o.nodes, stress_of(setting), o.observe, 1, o.runs)
                .map_err(|e| anyhow::anyhow!("{label} {}: {e}", setting.name()))?;
            eprintln!(
                "[{:>4.0} s] {label} {}: {} false in {:.1} node-hours, detection {}",
                t0.elapsed().as_secs_f64(),
                setting.name(),
                r.false_failures,
                r.node_hours,
                Stat::of(r.detection_secs.iter().copied()).map_or("-".to_owned(), |d| d.show(2))
            );
            points.push(Point {
                system: label.clone(),
                setting: setting.name(),
                false_failures: r.false_failures,
                node_hours: r.node_hours,
                detection: Stat::of(r.detection_secs.iter().copied()),
                missed: usize::try_from(r.missed).unwrap_or(usize::MAX),
            });
        }
    }
    let left = if left_out.is_empty() { String::new() } else { format!(" Left out: {}.", left_out.join(", ")) };
    let frontier = Frontier {
        source: "simulator".into(),
        stamp,
        settings: o.settings.iter().map(|s| (s.name(), s.describe())).collect(),
        systems: systems.iter().map(|(l, _)| l.clone()).collect(),
        points,
        note: format!(
            "gossip-sim, {} nodes, {} seeds per point, {:.0} virtual seconds observed per seed, then one process \
             killed (its port refuses connections) and timed until every node but itself and node 1 declared it \
             failed (at most 60 s). `serf lan` is the `memberlist-lan` preset (memberlist's LAN timings and \
             rules). The CPU quota is modelled as node 1 paused for the rest of every 100 ms (a worst case).{left} \
             {:.0} s wall.",
            o.nodes,
            o.runs,
            o.observe.as_secs_f64(),
            t0.elapsed().as_secs_f64()
        ),
    };
    if let Some(name) = &o.name {
        frontier.write(&results_dir(), name)?;
    }
    Ok(frontier)
}
