//! `cluster-bench setup`: where a cluster's setup time goes, for serf-agent and HashiCorp Serf
//! side by side (interleaved, the order alternating per try).
//!
//! `compare` reports one number per setup: from the first agent's start until every agent lists
//! all `n` alive. This splits it: how long starting the processes took (the harness starts node
//! 0, waits for its RPC, then starts the others without waiting), when each node first listed
//! everyone alive (median and last), and what the harness's poll cost (the slowest member-list
//! call of a sweep, which delays the moment a setup is seen to end). Nothing is written to
//! `docs/results/`: this is a diagnostic, printed on stdout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cluster::{count_alive, Cluster};
use crate::process::RunDir;
use crate::stats::Stat;
use crate::system::{locate_serf_agent, HashicorpSerf, SerfAgent, System};

/// What to run.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// Cluster size.
    pub nodes: usize,
    /// Setups per system.
    pub tries: usize,
    /// Timing profile.
    pub profile: String,
    /// The serf-agent binary (default: build it as `compare` does).
    pub agent_bin: Option<PathBuf>,
    /// Build serf-agent first.
    pub build: bool,
    /// The HashiCorp Serf binary (default: `serf` on PATH; skipped when missing).
    pub serf_bin: Option<PathBuf>,
    /// Seconds between setups (the previous cluster's processes are gone, the machine idle).
    pub pause_secs: f64,
    /// Print every sweep of every try.
    pub verbose: bool,
}

/// One setup, split.
#[derive(Debug, Clone)]
pub struct SetupTiming {
    /// System name.
    pub system: String,
    /// First start until every process was started (node 0 answering its RPC included).
    pub started_s: f64,
    /// First start until the harness saw every node list all alive (`compare`'s setup time),
    /// or `None` after the timeout.
    pub setup_s: Option<f64>,
    /// When each node first listed all alive (seconds from the first start), sorted.
    pub converged_s: Vec<f64>,
    /// The slowest member-list call of each sweep, milliseconds.
    pub slowest_call_ms: Vec<f64>,
    /// Sweeps made.
    pub sweeps: usize,
}

/// Run the setups and print a table of them.
pub fn run(o: &SetupOptions) -> anyhow::Result<Vec<SetupTiming>> {
    anyhow::ensure!((2..=240).contains(&o.nodes), "--nodes {}: between 2 and 240", o.nodes);
    anyhow::ensure!(o.tries >= 1, "--tries {}: at least 1", o.tries);
    anyhow::ensure!(
        o.pause_secs.is_finite() && (0.0..=3600.0).contains(&o.pause_secs),
        "--pause {}: seconds between 0 and 3600",
        o.pause_secs
    );
    let ours = SerfAgent { bin: locate_serf_agent(o.agent_bin.as_deref(), o.build)? };
    let serf = match &o.serf_bin {
        Some(p) => Some(HashicorpSerf::new(p.clone())),
        None => HashicorpSerf::find(),
    };
    if serf.is_none() {
        eprintln!("HashiCorp Serf not found (no `serf` on PATH): serf-agent alone");
    }
    let mut systems: Vec<&dyn System> = vec![&ours];
    if let Some(s) = &serf {
        systems.push(s);
    }
    let dir = RunDir::new("setup", false)?;
    let mut out = Vec::new();
    for t in 0..o.tries {
        let mut order = systems.clone();
        if t % 2 == 1 {
            order.reverse();
        }
        for sys in order {
            let timing = one(sys, o, &dir.path().join(format!("{}-{t}", sys.name())))?;
            eprintln!(
                "try {} {}: setup {} (processes started {:.2} s, last node converged {})",
                t + 1,
                sys.name(),
                timing.setup_s.map_or("timed out".to_owned(), |s| format!("{s:.2} s")),
                timing.started_s,
                timing.converged_s.last().map_or("-".to_owned(), |s| format!("{s:.2} s")),
            );
            out.push(timing);
            std::thread::sleep(Duration::from_secs_f64(o.pause_secs));
        }
    }
    println!("{}", table(&out, o));
    Ok(out)
}

fn one(sys: &dyn System, o: &SetupOptions, base: &std::path::Path) -> anyhow::Result<SetupTiming> {
    let n = o.nodes;
    let mut c = Cluster::new(sys, n, base, &o.profile)?;
    let t0 = Instant::now();
    c.start_node(0, None, true)?;
    for i in 1..n {
        c.start_node(i, Some(0), false)?;
    }
    let started_s = t0.elapsed().as_secs_f64();
    let timeout = Duration::from_secs(60 + 3 * n as u64);
    let mut converged: Vec<Option<f64>> = vec![None; n];
    let mut slowest_call_ms = Vec::new();
    let mut setup_s = None;
    while t0.elapsed() < timeout {
        let sweep_start = t0.elapsed().as_secs_f64();
        let mut slowest = 0.0f64;
        let mut all = 0;
        for (i, seen) in converged.iter_mut().enumerate() {
            let call = Instant::now();
            let view = sys.members(&c.nodes[i]).ok();
            slowest = slowest.max(call.elapsed().as_secs_f64() * 1e3);
            if view.is_some_and(|m| count_alive(&m) == n) {
                all += 1;
                seen.get_or_insert(t0.elapsed().as_secs_f64());
            }
        }
        slowest_call_ms.push(slowest);
        if o.verbose {
            eprintln!(
                "  {}: sweep {:.2}–{:.2} s, {all} of {n} list all alive, slowest call {slowest:.1} ms",
                sys.name(),
                sweep_start,
                t0.elapsed().as_secs_f64()
            );
        }
        if all == n {
            setup_s = Some(t0.elapsed().as_secs_f64());
            break;
        }
        // As `Cluster::start_all` polls.
        std::thread::sleep(Duration::from_millis(50));
    }
    c.shutdown();
    let mut converged_s: Vec<f64> = converged.into_iter().flatten().collect();
    converged_s.sort_by(f64::total_cmp);
    let sweeps = slowest_call_ms.len();
    Ok(SetupTiming { system: sys.name().to_owned(), started_s, setup_s, converged_s, slowest_call_ms, sweeps })
}

/// The values a row of the table takes from one setup.
type Measure = dyn Fn(&SetupTiming) -> Vec<f64>;

fn table(timings: &[SetupTiming], o: &SetupOptions) -> String {
    let mut names: Vec<&str> = Vec::new();
    for t in timings {
        if !names.contains(&t.system.as_str()) {
            names.push(&t.system);
        }
    }
    let show = |s: Option<Stat>, d: usize| s.map_or("-".to_owned(), |s| s.show(d));
    let mut md = format!(
        "# Setup of {} nodes, {} tries per system (profile `{}`)\n\nMedians with min–max over the tries; times from the first agent's start.\n\n| measure | {} |\n|---|{}\n",
        o.nodes,
        o.tries,
        o.profile,
        names.join(" | "),
        "---:|".repeat(names.len())
    );
    let rows: [(&str, &Measure, usize); 6] = [
        ("setup: every node seen listing all alive (s)", &|t| t.setup_s.into_iter().collect(), 2),
        ("every process started (s)", &|t| vec![t.started_s], 2),
        (
            "half the nodes list all alive (s)",
            &|t| t.converged_s.get(t.converged_s.len() / 2).copied().into_iter().collect(),
            2,
        ),
        ("the last node lists all alive (s)", &|t| t.converged_s.last().copied().into_iter().collect(), 2),
        ("sweeps of the member lists", &|t| vec![t.sweeps as f64], 0),
        (
            "slowest member-list call of a setup (ms)",
            &|t| t.slowest_call_ms.iter().copied().reduce(f64::max).into_iter().collect(),
            1,
        ),
    ];
    for (label, f, d) in rows {
        let cells: Vec<String> = names
            .iter()
            .map(|name| show(Stat::of(timings.iter().filter(|t| t.system == *name).flat_map(f)), d))
            .collect();
        md.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
    }
    let timeouts = timings.iter().filter(|t| t.setup_s.is_none()).count();
    if timeouts > 0 {
        md.push_str(&format!("\n{timeouts} setup(s) timed out and are left out of the first row.\n"));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_column_per_system_and_medians() {
        let t = |system: &str, setup: f64| SetupTiming {
            system: system.to_owned(),
            started_s: 0.2,
            setup_s: Some(setup),
            converged_s: vec![0.5, 0.7, setup - 0.05],
            slowest_call_ms: vec![40.0, 2.0],
            sweeps: 2,
        };
        let o = SetupOptions {
            nodes: 3,
            tries: 2,
            profile: "lan".to_owned(),
            agent_bin: None,
            build: false,
            serf_bin: None,
            pause_secs: 0.0,
            verbose: false,
        };
        let md = table(&[t("serf-agent", 1.0), t("serf", 1.5), t("serf-agent", 1.2), t("serf", 1.3)], &o);
        assert!(md.contains("| measure | serf-agent | serf |"), "{md}");
        assert!(
            md.contains("| setup: every node seen listing all alive (s) | 1.10 (1.00–1.20) | 1.40 (1.30–1.50) |"),
            "{md}"
        );
        assert!(md.contains("| the last node lists all alive (s) | 1.05 (0.95–1.15) | 1.35 (1.25–1.45) |"), "{md}");
    }
}
