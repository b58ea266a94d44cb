//! `cluster-bench stress`: does a failure detector tell a stalled process from a dead one?
//!
//! A 5-node loopback cluster of each system (serf-agent, and HashiCorp Serf when installed).
//! For each stall length (1, 2 and 3 s by default) a live member is stopped with SIGSTOP, left
//! stopped that long, continued with SIGCONT, and every other node's member list is polled
//! (every 50 ms) from the stop until a few seconds after the continue: a trial counts as a
//! false failure when any node listed the member `failed`. Then a member is killed with SIGKILL
//! a few times and timed until every other node lists it `failed` (and restarted).
//!
//! ```text
//!   SIGSTOP nodeK ── D s ── SIGCONT ── watch 6 s ──▶ did any node list nodeK failed?
//!   SIGKILL nodeK ──▶ poll until every node lists nodeK failed ──▶ restart nodeK
//! ```
//!
//! A stalled process's kernel still accepts TCP connections (they get no answer), while a
//! killed process's port refuses them: a detector that uses that evidence can be fast for
//! the kill and tolerant of the stall (docs/protocol.md §6).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{count_alive, poll_until, status_of, Cluster};
use crate::process::{RunDir, Signal};
use crate::stamp::{results_dir, Stamp};
use crate::stats::Stat;
use crate::system::{locate_serf_agent, HashicorpSerf, SerfAgent, System};

/// What to run.
#[derive(Debug, Clone)]
pub struct StressOptions {
    /// Nodes per cluster.
    pub nodes: usize,
    /// Stall lengths.
    pub stalls: Vec<Duration>,
    /// Stalls of each length.
    pub repeats: usize,
    /// SIGKILL rounds.
    pub kills: usize,
    /// How long after the SIGCONT a declaration still counts against the stall.
    pub watch_after: Duration,
    /// Timing profile of both systems.
    pub profile: String,
    /// The serf-agent binary (default: the harness's static build).
    pub agent_bin: Option<PathBuf>,
    /// Build serf-agent first.
    pub build: bool,
    /// The Serf binary (default: `serf` on PATH); `None` and not on PATH: serf-agent alone.
    pub serf_bin: Option<PathBuf>,
    /// Measure serf-agent alone.
    pub ours_only: bool,
    /// Base name of the result files in docs/results/, or `None` not to write them.
    pub name: Option<String>,
    /// Keep the agents' logs.
    pub keep: bool,
    /// The command line, for the stamp.
    pub command: String,
}

impl Default for StressOptions {
    fn default() -> Self {
        Self {
            nodes: 5,
            stalls: [1, 2, 3].map(Duration::from_secs).to_vec(),
            repeats: 6,
            kills: 3,
            watch_after: Duration::from_secs(6),
            profile: "lan".into(),
            agent_bin: None,
            build: true,
            serf_bin: None,
            ours_only: false,
            name: Some("stress".into()),
            keep: false,
            command: String::new(),
        }
    }
}

/// The stalls of one length, for one system.
#[derive(Debug, Clone, Serialize)]
pub struct StallResult {
    /// Stall length, seconds.
    pub stall_secs: f64,
    /// Stalls run.
    pub trials: usize,
    /// Stalls after which some node listed the member failed.
    pub declared_failed: usize,
    /// Stalls during which some node listed the member suspect (serf-agent only: Serf's
    /// member list has no suspect status).
    pub suspected: usize,
}

/// One system's results.
#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    /// `serf-agent` or `serf`.
    pub system: String,
    /// Timing profile.
    pub profile: String,
    /// Per stall length.
    pub stalls: Vec<StallResult>,
    /// SIGKILL to every other node listing the member failed, seconds, per round (`None`: not
    /// within 60 s).
    pub kill_detection_secs: Vec<Option<f64>>,
    /// Average time of one poll sweep (the resolution of the kill figures), seconds.
    pub resolution_secs: f64,
}

impl SystemResult {
    /// The kill detection times that completed.
    pub fn kill_stat(&self) -> Option<Stat> {
        Stat::of(self.kill_detection_secs.iter().flatten().copied())
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct StressReport {
    /// Command and machine.
    pub stamp: Stamp,
    /// Nodes per cluster.
    pub nodes: usize,
    /// Per system.
    pub systems: Vec<SystemResult>,
}

impl StressReport {
    /// The report as Markdown: the stamp, then one row per system.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Stalls and kills: {}-node loopback clusters\n", self.nodes);
        s.push_str(&self.stamp.markdown());
        s.push('\n');
        let stalls: Vec<f64> =
            self.systems.first().map(|r| r.stalls.iter().map(|x| x.stall_secs).collect()).unwrap_or_default();
        let mut header = "| system | profile |".to_owned();
        let mut rule = "|---|---|".to_owned();
        for d in &stalls {
            let _ = write!(header, " SIGSTOP {d} s: declared failed |");
            rule.push_str("---|");
        }
        header.push_str(" SIGKILL: every node lists it failed, s (median, min–max) |");
        rule.push_str("---|");
        let _ = writeln!(s, "{header}\n{rule}");
        for r in &self.systems {
            let mut row = format!("| {} | {} |", r.system, r.profile);
            for st in &r.stalls {
                let suspected =
                    if r.system == "serf" { String::new() } else { format!(" (suspected {})", st.suspected) };
                let _ = write!(row, " {} of {}{suspected} |", st.declared_failed, st.trials);
            }
            let missed = r.kill_detection_secs.iter().filter(|k| k.is_none()).count();
            let kill = match r.kill_stat() {
                Some(stat) => format!("{} over {} kills", stat.show(2), stat.n),
                None => "not measured".into(),
            };
            let missed = if missed > 0 { format!(", {missed} not within 60 s") } else { String::new() };
            let _ = write!(row, " {kill}{missed} |");
            let _ = writeln!(s, "{row}");
        }
        let resolution = self.systems.iter().map(|r| r.resolution_secs).fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "\nA stall: SIGSTOP, the given time, SIGCONT; every other node's member list polled every 50 ms \
             from the stop until 6 s after the continue; \"declared failed\" counts the stalls after which \
             any node listed the member `failed`. Kill times are polled (sweeps of {:.0} ms at most), from the \
             SIGKILL until every other node lists the member `failed`.",
            resolution * 1000.0
        );
        s
    }
}

/// Run the stalls and kills on each system and write `docs/results/<name>.md` and `.json`.
pub fn run(o: &StressOptions) -> anyhow::Result<StressReport> {
    anyhow::ensure!((3..=20).contains(&o.nodes), "--nodes {}: between 3 and 20", o.nodes);
    let stamp = Stamp::new(&o.command);
    let agent = SerfAgent { bin: locate_serf_agent(o.agent_bin.as_deref(), o.build)? };
    let serf = if o.ours_only {
        None
    } else {
        match &o.serf_bin {
            Some(bin) => Some(HashicorpSerf::new(bin.clone())),
            None => HashicorpSerf::find(),
        }
    };
    if serf.is_none() && !o.ours_only {
        eprintln!("stress: `serf` not on PATH (benches/setup.sh installs it): serf-agent alone");
    }
    let mut systems: Vec<&dyn System> = vec![&agent];
    if let Some(serf) = &serf {
        systems.push(serf);
    }
    let dir = RunDir::new("stress", o.keep)?;
    let mut results = Vec::new();
    for system in systems {
        let base = dir.path().join(system.name());
        results.push(run_system(system, &base, o)?);
    }
    let report = StressReport { stamp, nodes: o.nodes, systems: results };
    if let Some(name) = &o.name {
        std::fs::create_dir_all(results_dir())?;
        std::fs::write(results_dir().join(format!("{name}.md")), report.markdown())?;
        std::fs::write(results_dir().join(format!("{name}.json")), serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

fn run_system(system: &dyn System, base: &std::path::Path, o: &StressOptions) -> anyhow::Result<SystemResult> {
    let mut cluster = Cluster::new(system, o.nodes, base, &o.profile)?;
    let setup = cluster.start_all(Duration::from_secs(60))?;
    eprintln!("{}: {} nodes up in {:.1} s", system.name(), o.nodes, setup.as_secs_f64());
    // Let the round-trip estimates and the first push-pulls settle.
    std::thread::sleep(Duration::from_secs(3));
    let mut stalls = Vec::new();
    let mut trial = 0;
    for &stall in &o.stalls {
        let mut result = StallResult { stall_secs: stall.as_secs_f64(), trials: 0, declared_failed: 0, suspected: 0 };
        for _ in 0..o.repeats {
            // Never node 0 (the seed that restarted nodes join).
            let victim = 1 + trial % (o.nodes - 1);
            trial += 1;
            let (failed, suspected) = stall_once(&mut cluster, victim, stall, o.watch_after)?;
            result.trials += 1;
            result.declared_failed += usize::from(failed);
            result.suspected += usize::from(suspected);
            eprintln!(
                "{}: SIGSTOP {} for {:.1} s: {}",
                system.name(),
                cluster.nodes[victim].name,
                stall.as_secs_f64(),
                if failed {
                    "declared failed"
                } else if suspected {
                    "suspected, not failed"
                } else {
                    "not suspected"
                }
            );
        }
        stalls.push(result);
    }
    let mut kills = Vec::new();
    let mut resolution = Duration::ZERO;
    for k in 0..o.kills {
        let victim = 1 + (trial + k) % (o.nodes - 1);
        let (took, res) = kill_once(&mut cluster, victim)?;
        resolution = resolution.max(res);
        eprintln!(
            "{}: SIGKILL {}: every node lists it failed after {}",
            system.name(),
            cluster.nodes[victim].name,
            took.map_or_else(|| "(not within 60 s)".to_owned(), |t| format!("{:.2} s", t.as_secs_f64()))
        );
        kills.push(took.map(|t| t.as_secs_f64()));
    }
    cluster.shutdown();
    Ok(SystemResult {
        system: system.name().to_owned(),
        profile: o.profile.clone(),
        stalls,
        kill_detection_secs: kills,
        resolution_secs: resolution.as_secs_f64(),
    })
}

/// Stop `victim` for `stall`, continue it, watch `watch_after` more; then wait until every node
/// lists it alive again. Returns (some node listed it failed, some node listed it suspect).
fn stall_once(
    cluster: &mut Cluster<'_>,
    victim: usize,
    stall: Duration,
    watch_after: Duration,
) -> anyhow::Result<(bool, bool)> {
    let name = cluster.nodes[victim].name.clone();
    let observers: Vec<usize> = cluster.running().into_iter().filter(|&i| i != victim).collect();
    let (mut failed, mut suspected) = (false, false);
    let mut watch = |cluster: &Cluster<'_>, until: Instant| {
        while Instant::now() < until {
            let started = Instant::now();
            for (_, view) in cluster.sweep(&observers) {
                match view.as_deref().and_then(|m| status_of(m, &name)) {
                    Some("failed") => failed = true,
                    Some("suspect") => suspected = true,
                    _ => {}
                }
            }
            let spent = started.elapsed();
            if spent < Duration::from_millis(50) {
                std::thread::sleep(Duration::from_millis(50) - spent);
            }
        }
    };
    cluster.signal(victim, Signal::Stop)?;
    let stopped = Instant::now();
    watch(cluster, stopped + stall);
    cluster.signal(victim, Signal::Cont)?;
    watch(cluster, Instant::now() + watch_after);
    wait_all_alive(cluster, Duration::from_secs(60))?;
    Ok((failed, suspected))
}

/// Kill `victim`, time until every other node lists it failed (up to 60 s), restart it and wait
/// until everyone lists it alive. Returns the time and the poll resolution.
fn kill_once(cluster: &mut Cluster<'_>, victim: usize) -> anyhow::Result<(Option<Duration>, Duration)> {
    let name = cluster.nodes[victim].name.clone();
    let observers: Vec<usize> = cluster.running().into_iter().filter(|&i| i != victim).collect();
    cluster.signal(victim, Signal::Kill)?;
    let t0 = Instant::now();
    let p = cluster.wait_for_status(&name, &["failed"], &observers, t0, Duration::from_secs(60), |_, _, _| {});
    // A new life of the same name, joining node 0.
    cluster.start_node(victim, Some(0), true)?;
    wait_all_alive(cluster, Duration::from_secs(60))?;
    // Let the rejoin's gossip settle before the next fault.
    std::thread::sleep(Duration::from_secs(2));
    Ok((p.all, p.resolution))
}

fn wait_all_alive(cluster: &Cluster<'_>, timeout: Duration) -> anyhow::Result<()> {
    let n = cluster.len();
    let all: Vec<usize> = cluster.running();
    let ok = poll_until(timeout, Duration::from_millis(100), || {
        cluster.sweep(&all).iter().all(|(_, v)| v.as_ref().is_some_and(|m| count_alive(m) == n)).then_some(())
    });
    anyhow::ensure!(
        ok.is_some(),
        "{}: the cluster did not see all {n} nodes alive within {timeout:?}",
        cluster.system().name()
    );
    // A short pause so that the next fault does not start inside the last one's refutation gossip.
    std::thread::sleep(Duration::from_secs(1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_system_and_one_column_per_stall() {
        let stall = |d, f| StallResult { stall_secs: d, trials: 6, declared_failed: f, suspected: 6 };
        let report = StressReport {
            stamp: Stamp::new("cargo run --release -p cluster-bench -- stress"),
            nodes: 5,
            systems: vec![
                SystemResult {
                    system: "serf-agent".into(),
                    profile: "lan".into(),
                    stalls: vec![stall(1.0, 0), stall(3.0, 5)],
                    kill_detection_secs: vec![Some(1.5), Some(2.5), None],
                    resolution_secs: 0.05,
                },
                SystemResult {
                    system: "serf".into(),
                    profile: "lan".into(),
                    stalls: vec![stall(1.0, 0), stall(3.0, 0)],
                    kill_detection_secs: vec![Some(6.0)],
                    resolution_secs: 0.05,
                },
            ],
        };
        let md = report.markdown();
        assert!(md.contains("| SIGSTOP 1 s: declared failed | SIGSTOP 3 s: declared failed |"), "{md}");
        assert!(md.contains("| serf-agent | lan | 0 of 6 (suspected 6) | 5 of 6 (suspected 6) | 2.00 (1.50–2.50) over 2 kills, 1 not within 60 s |"), "{md}");
        assert!(md.contains("| serf | lan | 0 of 6 | 0 of 6 | 6.00 over 1 kills |"), "{md}");
    }
}
