//! `cluster-bench demo`: five serf-agents on loopback, the primary killed with SIGKILL, and a
//! live timeline of what each node sees until the primary service answers again.
//!
//! ```text
//!  start node00 (role=primary) ─▶ node01..04 join ─▶ all list 5 alive ─▶ node00 serves primary
//!        │
//!  SIGKILL node00 ──▶ poll every node's member list ──▶ "node03 sees node00 suspect / failed"
//!                 └─▶ poll every node's primary web service every 50 ms ──▶ "node01 answers 200"
//!                                                   ──▶ summary table
//! ```
//!
//! Needs only the Rust toolchain: no Docker, no root, no HashiCorp Serf.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::availability::{outage, Probe};
use crate::cluster::{poll_until, read_events, unix_nanos, Cluster};
use crate::process::{RunDir, Signal};
use crate::stamp::{results_dir, Stamp};
use crate::system::{locate_serf_agent, SerfAgent, System};

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Agents (at least 3).
    pub nodes: usize,
    /// Timing profile passed to the agents.
    pub profile: String,
    /// The serf-agent binary; found (and built) in the workspace when not given.
    pub agent_bin: Option<PathBuf>,
    /// Build serf-agent first (`cluster_bench::system::AGENT_BUILD`).
    pub build: bool,
    /// Keep the agents' directories (logs, handler output).
    pub keep: bool,
    /// Also write the summary to `docs/results/demo.md`.
    pub write: bool,
    /// The command line, for the stamp.
    pub command: String,
}

fn line(out: &Mutex<()>, text: &str) {
    let _guard = out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    println!("{text}");
}

/// Run the demo; the timeline goes to stdout as it happens.
pub fn run(o: &DemoOptions) -> anyhow::Result<()> {
    anyhow::ensure!(o.nodes >= 3, "the demo needs at least 3 agents");
    let bin = locate_serf_agent(o.agent_bin.as_deref(), o.build)?;
    let system = SerfAgent { bin: bin.clone() };
    let dir = RunDir::new("demo", o.keep)?;
    let stamp = Stamp::new(&o.command);
    let mut cluster = Cluster::new(&system, o.nodes, dir.path(), &o.profile)?;
    let out = Mutex::new(());

    println!("Starting {} serf-agents ({}) on loopback, profile {}:", o.nodes, bin.display(), o.profile);
    for n in &cluster.nodes {
        println!(
            "  {}  gossip {}  rpc {}  primary web service http://{}/  (tag role={})",
            n.name, n.gossip, n.rpc, n.http, n.role
        );
    }
    let setup = cluster.start_all(Duration::from_secs(60))?;
    println!("All {} agents list each other alive after {:.2} s.", o.nodes, setup.as_secs_f64());

    let first_primary = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let p = cluster.primaries();
        (p.len() == 1).then(|| p[0])
    })
    .ok_or_else(|| anyhow::anyhow!("no single primary within 20 s of setup"))?;
    let victim = first_primary;
    let victim_name = cluster.nodes[victim].name.clone();
    println!("{victim_name} is primary: http://{}/ answers 200, the others 503.\n", cluster.nodes[victim].http);
    std::thread::sleep(Duration::from_secs(1));

    let observers: Vec<usize> = cluster.running().into_iter().filter(|&i| i != victim).collect();
    let probe = Probe::default();
    let nodes = cluster.nodes.clone();
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let t0 = Instant::now();
    let kill_unix = unix_nanos();
    let system_ref: &dyn System = &system;
    let (propagation, suspicions) = std::thread::scope(|scope| {
        scope.spawn(|| {
            probe.run(system_ref, &nodes, t0, Duration::from_millis(50), Duration::from_secs(120), |at, primaries| {
                let text = match primaries {
                    [] => format!("{at:>8.3} s  primary service: no node answers 200"),
                    [p] if at > 0.0 && *p != victim => format!(
                        "{at:>8.3} s  primary service: {} answers 200 -> reachable again after {at:.3} s",
                        names[*p]
                    ),
                    [p] => format!("{at:>8.3} s  primary service: {} answers 200", names[*p]),
                    many => format!(
                        "{at:>8.3} s  primary service: {} answer 200 (two primaries)",
                        many.iter().map(|&p| names[p].as_str()).collect::<Vec<_>>().join(", ")
                    ),
                };
                line(&out, &text);
            });
        });
        line(
            &out,
            &format!("{:>8.3} s  SIGKILL {victim_name} (pid {})", 0.0, cluster.agent(victim).map_or(0, |a| a.pid())),
        );
        let mut suspicions: Vec<(usize, f64)> = Vec::new();
        probe.exclude(victim);
        let result = cluster.signal(victim, Signal::Kill).map(|()| {
            cluster.wait_for_status(
                &victim_name,
                &["failed", "left"],
                &observers,
                t0,
                Duration::from_secs(90),
                |o, status, at| {
                    let at = at.as_secs_f64();
                    if status == "suspect" {
                        suspicions.push((o, at));
                    }
                    if status != "alive" {
                        line(&out, &format!("{at:>8.3} s  {} sees {victim_name} {status}", names[o]));
                    }
                },
            )
        });
        // Let the probe see the new primary (bounded), then stop it.
        let _ = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
            probe
                .samples()
                .iter()
                .any(|s| s.at > 0.0 && !s.primaries.is_empty() && !s.primaries.contains(&victim))
                .then_some(())
        });
        std::thread::sleep(Duration::from_millis(500));
        probe.stop();
        (result, suspicions)
    });
    let propagation = propagation?;
    let samples = probe.samples();
    let o_ = outage(&samples, 0.0, victim);
    let new_primary = samples.iter().find_map(|s| s.primaries.iter().copied().find(|&p| p != victim));

    // Handler times: when each node's member-failed handler ran.
    let mut table = String::new();
    let _ =
        writeln!(table, "| node | suspected {victim_name} at | declared it failed at | member-failed handler ran at |");
    let _ = writeln!(table, "|---|---:|---:|---:|");
    for &(o, seen) in &propagation.seen {
        let suspected = suspicions.iter().find(|(n, _)| *n == o).map(|(_, at)| *at);
        let handler = read_events(&cluster.nodes[o].events_file())
            .into_iter()
            .find(|(kind, name, ts)| kind == "member-failed" && *name == victim_name && *ts >= kill_unix)
            .map(|(_, _, ts)| (ts - kill_unix) as f64 / 1e9);
        let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3} s"));
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} |",
            cluster.nodes[o].name,
            fmt(suspected),
            fmt(seen.map(|d| d.as_secs_f64())),
            fmt(handler)
        );
    }
    let secs =
        |d: Option<Duration>| d.map_or("not within the timeout".to_owned(), |d| format!("{:.3} s", d.as_secs_f64()));
    let mut summary = String::new();
    let _ = writeln!(summary, "| what | figure |");
    let _ = writeln!(summary, "|---|---:|");
    let _ = writeln!(summary, "| setup: 5 agents started until all list all alive | {:.3} s |", setup.as_secs_f64());
    let _ = writeln!(summary, "| first node declares {victim_name} failed | {} |", secs(propagation.first));
    let _ = writeln!(summary, "| every node has declared it failed | {} |", secs(propagation.all));
    let _ = writeln!(
        summary,
        "| new primary | {} |",
        new_primary.map_or("none".to_owned(), |p| cluster.nodes[p].name.clone())
    );
    let _ = writeln!(
        summary,
        "| primary service unreachable (client polling every 50 ms) | {} |",
        o_.unavailable.map_or("not restored".to_owned(), |u| format!("{u:.3} s"))
    );
    let _ = writeln!(summary, "| time with two primaries | {:.3} s |", o_.split_brain);
    let _ = writeln!(
        summary,
        "| poll resolution: member lists / primary service | {:.0} ms / {:.0} ms |",
        propagation.resolution.as_secs_f64() * 1000.0,
        o_.resolution * 1000.0
    );
    println!("\nPer node (times from the SIGKILL):\n\n{table}\nSummary:\n\n{summary}");
    if let (Some(u), Some(all)) = (o_.unavailable, propagation.all) {
        let target = all.as_secs_f64() + 0.5;
        println!(
            "Target: primary unreachable for at most the detection time + 0.5 s = {target:.3} s: {} ({u:.3} s).",
            if u <= target { "met" } else { "MISSED" }
        );
    }
    if o.write {
        let path = results_dir().join("demo.md");
        std::fs::create_dir_all(results_dir())?;
        let text = format!(
            "# Demo: 5 serf-agents, the primary killed\n\n{}\nPer node (times from the SIGKILL):\n\n{table}\nSummary:\n\n{summary}",
            stamp.markdown()
        );
        std::fs::write(&path, text)?;
        eprintln!("wrote {}", path.display());
    }
    if o.keep {
        println!("Logs and handler output kept in {}", dir.path().display());
    }
    Ok(())
}
