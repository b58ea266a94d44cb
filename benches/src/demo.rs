//! `cluster-bench demo`: five serf-agents on loopback, the primary killed with SIGKILL, and a
//! live timeline of what each node sees until the primary service answers again; then the same
//! scenario with HashiCorp Serf (when it is installed or can be) and the two side by side.
//!
//! ```text
//!  start node00 (role=primary) ─▶ node01..04 join ─▶ all list 5 alive ─▶ node00 serves primary
//!        │
//!  SIGKILL node00 ──▶ poll every node's member list ──▶ "node03 sees node00 suspect / failed"
//!                 └─▶ poll every node's primary web service every 50 ms ──▶ "node01 answers 200"
//!                                                   ──▶ summary table
//! ```
//!
//! serf-agent needs only the Rust toolchain: no Docker, no root. For the comparison, HashiCorp
//! Serf (the Debian package `serf`) is taken from `PATH`; when it is missing and the demo runs as
//! root on a machine with `apt-get`, `benches/setup.sh` installs it. Otherwise (or with
//! `--no-serf`) the demo shows serf-agent alone and says why.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::availability::{outage, Probe};
use crate::cluster::{poll_until, read_events, unix_nanos, Cluster};
use crate::consul::ConsulLite;
use crate::process::{RunDir, Signal};
use crate::stamp::{results_dir, Stamp};
use crate::system::{locate_consul_lite, locate_serf_agent, HashicorpSerf, SerfAgent, System};

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
    /// Also run the scenario with HashiCorp Serf and compare.
    pub serf: bool,
    /// The `serf` binary (default: `serf` on `PATH`, installed by `benches/setup.sh` if missing).
    pub serf_bin: Option<PathBuf>,
    /// Also run the consul-style scenario (consul-lite: servers, clients, a lock-held primary).
    pub consul: bool,
    /// The consul-lite binary; found (and built) in the workspace when not given.
    pub consul_bin: Option<PathBuf>,
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

/// What one system did in the scenario.
#[derive(Debug, Clone, Default)]
struct Outcome {
    /// The system and its profile, e.g. `serf-agent (lan)`.
    system: String,
    /// HashiCorp Serf: the reference the ratios divide by.
    reference: bool,
    setup: f64,
    victim: String,
    first: Option<f64>,
    all: Option<f64>,
    handlers_all: Option<f64>,
    new_primary: Option<String>,
    /// consul-style: when the catalog (read on one client) had the victim's serfHealth critical.
    catalog: Option<f64>,
    unavailable: Option<f64>,
    split_brain: f64,
    member_resolution: f64,
    service_resolution: f64,
    /// The per-node table (Markdown).
    per_node: String,
}

/// HashiCorp Serf for the comparison, or why there is none.
fn find_serf(o: &DemoOptions) -> Result<HashicorpSerf, String> {
    if !o.serf {
        return Err("not run (--no-serf)".into());
    }
    if let Some(bin) = &o.serf_bin {
        return if bin.is_file() {
            Ok(HashicorpSerf::new(bin.clone()))
        } else {
            Err(format!("--serf-bin {} is not a file", bin.display()))
        };
    }
    if let Some(serf) = HashicorpSerf::find() {
        return Ok(serf);
    }
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("setup.sh");
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || crate::system::which("apt-get").is_none() {
        return Err(format!(
            "not installed (no `serf` on PATH); install it with `sudo {}` to see the comparison",
            setup.display()
        ));
    }
    eprintln!("HashiCorp Serf is not installed: installing the Debian package with {} ...", setup.display());
    let status = Command::new("bash")
        .arg(&setup)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("could not run {}: {e}", setup.display()))?;
    if !status.success() {
        return Err(format!("{} failed ({status}); see its output above", setup.display()));
    }
    HashicorpSerf::find().ok_or_else(|| format!("{} ran but `serf` is still not on PATH", setup.display()))
}

/// Run the demo; the timelines go to stdout as they happen.
pub fn run(o: &DemoOptions) -> anyhow::Result<()> {
    anyhow::ensure!(o.nodes >= 3, "the demo needs at least 3 agents");
    let bin = locate_serf_agent(o.agent_bin.as_deref(), o.build)?;
    let ours = SerfAgent { bin };
    let serf = find_serf(o);
    let dir = RunDir::new("demo", o.keep)?;
    let stamp = Stamp::new(&o.command);

    let mut outcomes = vec![scenario(&ours, o, &dir.path().join("serf-agent"))?];
    // The consul-style design: the same nodes as client agents of 3 Raft servers, the primary
    // held by a lock in the key/value store (docs/consul-lite.md).
    if o.consul {
        match locate_consul_lite(o.consul_bin.as_deref(), o.build) {
            Ok(bin) => {
                let consul = ConsulLite::new(bin);
                println!(
                    "\n=== The consul-style design: consul-lite, {} Raft servers and a client agent per node ===\n",
                    crate::consul::SERVERS
                );
                let lan = DemoOptions { profile: "lan".to_owned(), ..o.clone() };
                match scenario(&consul, &lan, &dir.path().join("consul-lite")) {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(e) => println!("consul-lite's run failed: {e:#}"),
                }
            }
            Err(e) => println!("consul-lite: not run: {e:#}"),
        }
    }
    // Like for like: serf-agent with memberlist's timing and evidence rules, so that the gap to
    // Serf can be split into what the implementation does and what the `lan` preset's protocol
    // changes do (docs/protocol.md §6).
    if serf.is_ok() && o.profile == "lan" {
        let like = DemoOptions { profile: LIKE_FOR_LIKE.to_owned(), ..o.clone() };
        println!("\n=== serf-agent again, with Serf's timing and evidence rules (profile {LIKE_FOR_LIKE}) ===\n");
        match scenario(&ours, &like, &dir.path().join("serf-agent-like")) {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => println!("serf-agent ({LIKE_FOR_LIKE})'s run failed: {e:#}"),
        }
    }
    match &serf {
        Ok(serf) => {
            println!("\n=== The same with HashiCorp Serf ({}) ===\n", serf.bin.display());
            match scenario(serf, o, &dir.path().join("serf")) {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => println!("HashiCorp Serf's run failed: {e:#}"),
            }
        }
        Err(why) => println!("\nHashiCorp Serf: {why}."),
    }

    let mut text = String::new();
    for outcome in &outcomes {
        let _ = write!(
            text,
            "### {}\n\nPer node (times from the SIGKILL of {}):\n\n{}\n",
            outcome.system, outcome.victim, outcome.per_node
        );
    }
    let _ = write!(text, "### Summary\n\n{}", summary(&outcomes, o.nodes));
    for outcome in &outcomes {
        let verdict = if outcome.system.starts_with("consul-lite") {
            let serf_agent = outcomes.iter().find(|o| o.system.starts_with("serf-agent"));
            serf_agent.and_then(|s| consul_failover_verdict(outcome, s))
        } else {
            failover_verdict(outcome)
        };
        if let Some(verdict) = verdict {
            let _ = writeln!(text, "\n{verdict}");
        }
    }
    println!("\n{text}");
    if o.write {
        let path = results_dir().join("demo.md");
        std::fs::create_dir_all(results_dir())?;
        std::fs::write(
            &path,
            format!("# Demo: {} agents, the primary killed\n\n{}\n{text}", o.nodes, stamp.markdown()),
        )?;
        eprintln!("wrote {}", path.display());
    }
    if o.keep {
        println!("Logs and handler output kept in {}", dir.path().display());
    }
    Ok(())
}

/// The profile of the like-for-like run: memberlist's LAN timing and evidence rules.
const LIKE_FOR_LIKE: &str = "memberlist-lan";

/// The failover target of the demo, said in words: the election moves the role within one
/// coalescing window once the failure is known, so the service is back within 0.5 s of the last
/// node declaring the failure. `None` when a figure is missing.
fn failover_verdict(outcome: &Outcome) -> Option<String> {
    let (unavailable, all) = (outcome.unavailable?, outcome.all?);
    let target = all + 0.5;
    let verdict = if unavailable <= target {
        format!("met ({unavailable:.3} s)")
    } else {
        format!(
            "missed by {:.3} s ({unavailable:.3} s): the new primary took longer than 0.5 s to claim the role and \
             answer after the failure was known everywhere",
            unavailable - target
        )
    };
    Some(format!(
        "{}: target \"primary service back within 0.5 s of every node knowing the failure\" \
         (unreachable at most {all:.3} + 0.5 = {target:.3} s): {verdict}.",
        outcome.system
    ))
}

/// The consul-style failover target of issue 15, said in words: consul-lite's lock-held primary
/// serves again within serf-agent's failover time plus 1 s (its lock-delay is set for failover:
/// `-primary-lock-delay`). `None` when a figure is missing.
fn consul_failover_verdict(outcome: &Outcome, serf_agent: &Outcome) -> Option<String> {
    let (unavailable, reference) = (outcome.unavailable?, serf_agent.unavailable?);
    let target = reference + 1.0;
    let verdict = if unavailable <= target {
        format!("met ({unavailable:.3} s)")
    } else {
        format!("missed by {:.3} s ({unavailable:.3} s)", unavailable - target)
    };
    Some(format!(
        "{}: target \"the lock-held primary serves again within serf-agent's failover + 1 s\" \
         (unreachable at most {reference:.3} + 1 = {target:.3} s, lock-delay {}): {verdict}.",
        outcome.system,
        crate::consul::LOCK_DELAY
    ))
}

/// The summary: one column per system and, when HashiCorp Serf ran, the ratio of each of ours to
/// it.
fn summary(outcomes: &[Outcome], nodes: usize) -> String {
    let secs = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3} s"));
    let reference = outcomes.iter().find(|o| o.reference);
    let ours: Vec<&Outcome> =
        if reference.is_some() { outcomes.iter().filter(|o| !o.reference).collect() } else { Vec::new() };
    let ratio = |f: &dyn Fn(&Outcome) -> Option<f64>, o: &Outcome| match (f(o), reference.and_then(f)) {
        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}", x / y),
        _ => "-".to_owned(),
    };
    let mut s = String::new();
    let names: Vec<&str> = outcomes.iter().map(|o| o.system.as_str()).collect();
    let ratio_names: Vec<String> = ours.iter().map(|o| format!("{} / Serf", o.system)).collect();
    let header_tail = if ratio_names.is_empty() { String::new() } else { format!(" {} |", ratio_names.join(" | ")) };
    let _ = writeln!(s, "| what | {} |{header_tail}", names.join(" | "));
    let _ = writeln!(s, "|---|{}{}", "---:|".repeat(outcomes.len()), "---:|".repeat(ours.len()));
    let blank_tail = if ours.is_empty() { String::new() } else { " |".repeat(ours.len()) };
    type Row<'a> = (String, &'a dyn Fn(&Outcome) -> Option<f64>);
    let rows: [Row<'_>; 7] = [
        (format!("setup: {nodes} agents started until all list all alive"), &|o| Some(o.setup)),
        ("first node declares the primary failed".into(), &|o| o.first),
        ("every node has declared it failed".into(), &|o| o.all),
        ("the catalog marks its serfHealth critical (consul-style)".into(), &|o| o.catalog),
        ("every node's member-failed handler has run".into(), &|o| o.handlers_all),
        ("primary service unreachable (client polling every 50 ms)".into(), &|o| o.unavailable),
        ("time with two primaries".into(), &|o| Some(o.split_brain)),
    ];
    for (what, f) in &rows {
        let cells: Vec<String> = outcomes.iter().map(|o| secs(f(o))).collect();
        let ratios: String = ours.iter().map(|o| format!(" {} |", ratio(*f, o))).collect();
        let _ = writeln!(s, "| {what} | {} |{ratios}", cells.join(" | "));
    }
    let primaries: Vec<String> =
        outcomes.iter().map(|o| o.new_primary.clone().unwrap_or_else(|| "none".into())).collect();
    let _ = writeln!(s, "| new primary | {} |{blank_tail}", primaries.join(" | "));
    let res: Vec<String> = outcomes
        .iter()
        .map(|o| format!("{:.0} ms / {:.0} ms", o.member_resolution * 1000.0, o.service_resolution * 1000.0))
        .collect();
    let _ = writeln!(s, "| poll resolution: member lists / primary service | {} |{blank_tail}", res.join(" | "));
    let _ = writeln!(
        s,
        "\nTimes are read by polling every node's member list and the primary service every 50 ms from \
         the SIGKILL, so each is late by up to one poll, and an effect can appear to come up to one poll \
         before its cause."
    );
    if reference.is_some() {
        let _ = writeln!(
            s,
            "\nOne run each, on the same machine, one after the other; `cluster-bench compare` measures \
             many rounds interleaved. Serf's failover is the original demo's event-handler script; \
             serf-agent's is its built-in election. serf-agent's `lan` preset detects faster than Serf \
             because of protocol changes, not shorter timers alone: a refused TCP ping (up to five per \
             probe, each on a new connection) proves the process is gone, and a proven suspicion runs its \
             minimum, counted in gossip rounds (which is how refutations travel), without waiting for \
             confirmations; the direct-ack wait follows the round trip; silence (a stalled process, a \
             host gone) keeps memberlist's timings (docs/protocol.md §6 argues each). The `{LIKE_FOR_LIKE}` column runs serf-agent with \
             memberlist's timing and evidence rules, as Serf does: the like-for-like comparison."
        );
    }
    s
}

/// Start the cluster of `system`, kill its primary, print the timeline, and read the outcome.
fn scenario(system: &dyn System, o: &DemoOptions, dir: &Path) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(dir)?;
    let mut cluster = Cluster::new(system, o.nodes, dir, &o.profile)?;
    let out = Mutex::new(());

    let timing = if system.name().starts_with("consul-lite") {
        "its own gossip timing (gossip-core's LAN preset)".to_owned()
    } else {
        format!("profile {}", o.profile)
    };
    println!("Starting {} {} agents on loopback, {timing}:", o.nodes, system.name());
    for n in &cluster.nodes {
        println!(
            "  {}  gossip {}  rpc {}  primary web service http://{}/  (tag role={})",
            n.name, n.gossip, n.rpc, n.http, n.role
        );
    }
    println!("  failover: {}", system.failover());
    let setup = cluster.start_all(Duration::from_secs(60))?;
    let extra = system.extra_agents().len();
    let servers = if extra > 0 {
        format!(" (and {extra} servers, started first and counted in the time)")
    } else {
        String::new()
    };
    println!("All {} agents list each other alive after {:.2} s{servers}.", o.nodes, setup.as_secs_f64());
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
    let catalog_seen: Mutex<Option<f64>> = Mutex::new(None);
    let catalog_done = std::sync::atomic::AtomicBool::new(false);
    let (propagation, suspicions) = std::thread::scope(|scope| {
        // consul-style: when the catalog, read on one client, has the victim's serfHealth critical.
        if let Some(&reader) = observers.first() {
            if system.catalog_excludes(&nodes[reader], &victim_name).is_some() {
                let (out, nodes, names, victim_name) = (&out, &nodes, &names, &victim_name);
                let (catalog_seen, catalog_done) = (&catalog_seen, &catalog_done);
                scope.spawn(move || {
                    let _ = poll_until(Duration::from_secs(90), Duration::from_millis(50), || {
                        if catalog_done.load(std::sync::atomic::Ordering::Relaxed) {
                            return Some(());
                        }
                        let excluded = system.catalog_excludes(&nodes[reader], victim_name) == Some(true);
                        excluded.then(|| {
                            let at = t0.elapsed().as_secs_f64();
                            *catalog_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at);
                            line(
                                out,
                                &format!(
                                    "{at:>8.3} s  the catalog (read on {}) has {victim_name}'s serfHealth critical: \
                                     its services leave the passing answers, its sessions are invalidated",
                                    names[reader]
                                ),
                            );
                        })
                    });
                });
            }
        }
        scope.spawn(|| {
            probe.run(system, &nodes, t0, Duration::from_millis(50), Duration::from_secs(120), |at, primaries| {
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
        catalog_done.store(true, std::sync::atomic::Ordering::Relaxed);
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
    let mut handlers = Vec::new();
    for &(o, seen) in &propagation.seen {
        let suspected = suspicions.iter().find(|(n, _)| *n == o).map(|(_, at)| *at);
        let handler = read_events(&cluster.nodes[o].events_file())
            .into_iter()
            .find(|(kind, name, ts)| kind == "member-failed" && *name == victim_name && *ts >= kill_unix)
            .map(|(_, _, ts)| (ts - kill_unix) as f64 / 1e9);
        handlers.push(handler);
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
    let handlers_all =
        handlers.iter().copied().collect::<Option<Vec<f64>>>().and_then(|v| v.into_iter().reduce(f64::max));
    Ok(Outcome {
        // consul-lite has its own (Consul's LAN) timing: no profile.
        system: if system.extra_agents().is_empty() {
            format!("{} ({})", system.name(), o.profile)
        } else {
            system.name().to_owned()
        },
        reference: system.name() == "serf",
        setup: setup.as_secs_f64(),
        victim: victim_name,
        first: propagation.first.map(|d| d.as_secs_f64()),
        all: propagation.all.map(|d| d.as_secs_f64()),
        handlers_all,
        new_primary: new_primary.map(|p| cluster.nodes[p].name.clone()),
        catalog: catalog_seen.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
        unavailable: o_.unavailable,
        split_brain: o_.split_brain,
        member_resolution: propagation.resolution.as_secs_f64(),
        service_resolution: o_.resolution,
        per_node: table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(system: &str, all: Option<f64>) -> Outcome {
        Outcome {
            system: system.into(),
            reference: system.starts_with("serf ("),
            setup: 0.2,
            all,
            first: all,
            ..Outcome::default()
        }
    }

    #[test]
    fn the_summary_divides_each_of_ours_by_serf() {
        let s = summary(
            &[
                outcome("serf-agent (lan)", Some(2.0)),
                outcome("serf-agent (memberlist-lan)", Some(6.0)),
                outcome("serf (lan)", Some(8.0)),
            ],
            5,
        );
        assert!(
            s.contains(
                "| what | serf-agent (lan) | serf-agent (memberlist-lan) | serf (lan) | serf-agent (lan) / Serf | serf-agent (memberlist-lan) / Serf |"
            ),
            "{s}"
        );
        assert!(s.contains("| every node has declared it failed | 2.000 s | 6.000 s | 8.000 s | 0.25 | 0.75 |"), "{s}");
        // A figure one system lacks gives no ratio.
        assert!(s.contains("| primary service unreachable (client polling every 50 ms) | - | - | - | - | - |"), "{s}");
        assert!(s.contains("docs/protocol.md §6"), "{s}");
        assert!(s.contains("every 50 ms"), "{s}");
    }

    #[test]
    fn the_summary_of_one_system_has_no_ratio_column() {
        let s = summary(&[outcome("serf-agent (lan)", None)], 3);
        assert!(s.contains("| what | serf-agent (lan) |\n"), "{s}");
        assert!(s.contains("| setup: 3 agents started until all list all alive | 0.200 s |\n"), "{s}");
        assert!(!s.contains("/ Serf"), "{s}");
    }

    #[test]
    fn the_failover_verdict_says_what_was_missed_and_by_how_much() {
        let met = Outcome { unavailable: Some(1.2), ..outcome("serf-agent (lan)", Some(1.0)) };
        assert!(failover_verdict(&met).unwrap().ends_with("met (1.200 s)."));
        let missed = Outcome { unavailable: Some(2.0), ..outcome("serf (lan)", Some(1.0)) };
        let text = failover_verdict(&missed).unwrap();
        assert!(text.contains("missed by 0.500 s (2.000 s)"), "{text}");
        assert!(!text.contains("MISSED"), "{text}");
        assert_eq!(failover_verdict(&outcome("x", None)), None);
    }

    #[test]
    fn the_consul_style_verdict_is_against_serf_agents_failover_plus_one_second() {
        let serf_agent = Outcome { unavailable: Some(3.3), ..outcome("serf-agent (lan)", Some(3.3)) };
        let met = Outcome { unavailable: Some(2.8), ..outcome("consul-lite", Some(1.5)) };
        let text = consul_failover_verdict(&met, &serf_agent).unwrap();
        assert!(text.contains("(unreachable at most 3.300 + 1 = 4.300 s, lock-delay 500ms): met (2.800 s)."), "{text}");
        let missed = Outcome { unavailable: Some(5.0), ..met };
        let text = consul_failover_verdict(&missed, &serf_agent).unwrap();
        assert!(text.ends_with("missed by 0.700 s (5.000 s)."), "{text}");
    }

    #[test]
    fn an_explicit_serf_binary_that_is_missing_is_named() {
        let o = DemoOptions {
            nodes: 5,
            profile: "lan".into(),
            agent_bin: None,
            build: false,
            serf: true,
            serf_bin: Some("/nonexistent/serf".into()),
            consul: false,
            consul_bin: None,
            keep: false,
            write: false,
            command: String::new(),
        };
        assert_eq!(find_serf(&o).unwrap_err(), "--serf-bin /nonexistent/serf is not a file");
        assert_eq!(find_serf(&DemoOptions { serf: false, ..o }).unwrap_err(), "not run (--no-serf)");
    }
}
