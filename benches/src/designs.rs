//! `cluster-bench designs`: the serf-style design (serf-agent; HashiCorp Serf as the outside
//! reference) against the consul-style design (consul-lite: 3 Raft servers and a client agent
//! per application node, the primary held by a lock), measured the same way, interleaved, on
//! loopback or in network namespaces.
//!
//! One round of one system at one size is one fresh cluster:
//!
//! ```text
//!  setup (servers first, consul-style) ─▶ every node lists N alive and one primary serves
//!    ─▶ steady window: RSS, CPU, bytes sent per agent (clients and servers apart)
//!    ─▶ SIGKILL an application node: until every node lists it failed (and, consul-style,
//!       until the catalog has its serfHealth critical)
//!    ─▶ SIGSTOP another: the same; SIGCONT
//!    ─▶ SIGKILL the primary's node while a client polls the primary service every 50 ms
//! ```
//!
//! consul-lite runs twice: with the lock-delay its agent uses for the election
//! ([`crate::consul::LOCK_DELAY`]) for everything, and with Consul's default (15 s) for the
//! failover alone. Systems alternate which goes first from round to round and size to size, so
//! all see the same background load. Bytes per agent need root and iptables on loopback (see
//! [`count_traffic`]). Results: `docs/results/designs.{json,md}` and SVG plots.
//!
//! **Network namespaces** (`--netns`, root: [`Backend::Netns`]): every agent, consul-lite's
//! servers included, in a namespace of its own on a bridge ([`crate::netns`]), bytes read off
//! each agent's veth, and after the round's steps a fresh cluster of the same size for the
//! partition scenarios ([`PartitionRun`]):
//!
//! ```text
//!  every node lists N alive, one primary P ─▶ probe every node's primary service every 50 ms
//!    ─▶ cut P's node off from everything else (iptables DROP both ways; consul-style: the
//!       servers stay on the majority side) for `partition_secs` ─▶ heal
//!    ─▶ until one primary has answered alone for 3 s
//!  consul-style again, with the Raft leader server cut off together with P's node
//! ```
//!
//! The fault schedule then has a partition and a heal too. Results:
//! `docs/results/designs-netns.{json,md}`.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::availability::{outage, Probe, Sample};
use crate::cluster::{count_alive, poll_until, Backend, Cluster, Propagation};
use crate::consul::ConsulLite;
use crate::iptables::{self, Chain};
use crate::netns::Links;
use crate::process::{cpu_time, rss_bytes, RunDir, Signal};
use crate::stamp::{results_dir, Stamp};
use crate::stats::Stat;
use crate::system::{locate_consul_lite, locate_serf_agent, HashicorpSerf, SerfAgent, System};

/// Consul's default session lock-delay.
pub const CONSUL_DEFAULT_LOCK_DELAY: &str = "15s";

/// Partition scenario: the primary's node alone on one side.
pub const CUT_NODE: &str = "the primary's node cut off";
/// Partition scenario (consul-style): the primary's node and the Raft leader server on one side.
pub const CUT_NODE_AND_LEADER: &str = "the primary's node and the Raft leader server cut off";
/// After a heal, one primary must answer alone this long to count as settled, seconds.
const SETTLE_SECS: f64 = 3.0;

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DesignsOptions {
    /// Application nodes per cluster (each at least 5).
    pub sizes: Vec<usize>,
    /// Rounds per system and size.
    pub rounds: usize,
    /// Length of the steady-state window, seconds.
    pub steady_secs: f64,
    /// Timing profile of the serf-style systems (consul-lite has its own LAN timing).
    pub profile: String,
    /// Also measure consul-lite's failover with Consul's default lock-delay (15 s).
    pub default_lock_delay: bool,
    /// Run the fixed fault schedule (availability) once per system at the smallest size.
    pub schedule: bool,
    /// Run the fault schedule alone (no rounds).
    pub schedule_only: bool,
    /// Where the agents run: loopback, or network namespaces (root; adds the partitions).
    pub backend: Backend,
    /// How long each partition is held (namespace backend), seconds.
    pub partition_secs: f64,
    /// The serf-agent binary (default: built in the workspace).
    #[serde(skip)]
    pub agent_bin: Option<PathBuf>,
    /// The consul-lite binary (default: built in the workspace).
    #[serde(skip)]
    pub consul_bin: Option<PathBuf>,
    /// The serf binary (default: `serf` on PATH).
    #[serde(skip)]
    pub serf_bin: Option<PathBuf>,
    /// Build the agents first.
    #[serde(skip)]
    pub build: bool,
    /// Keep the agents' directories.
    #[serde(skip)]
    pub keep: bool,
    /// Where to write results (`None`: nowhere).
    #[serde(skip)]
    pub out_dir: Option<PathBuf>,
    /// Base name of the result files.
    pub name: String,
    /// The command line, for the stamp.
    #[serde(skip)]
    pub command: String,
}

impl Default for DesignsOptions {
    fn default() -> Self {
        Self::new(false)
    }
}

impl DesignsOptions {
    /// The defaults (`quick`: 5 nodes, one round, a 5 s window, no 15 s lock-delay run).
    pub fn new(quick: bool) -> Self {
        Self {
            sizes: if quick { vec![5] } else { vec![5, 20] },
            rounds: if quick { 1 } else { 2 },
            steady_secs: if quick { 5.0 } else { 15.0 },
            profile: "lan".into(),
            default_lock_delay: !quick,
            schedule: !quick,
            schedule_only: false,
            backend: Backend::Loopback,
            partition_secs: 12.0,
            agent_bin: None,
            consul_bin: None,
            serf_bin: None,
            build: true,
            keep: false,
            out_dir: Some(results_dir()),
            name: if quick { "designs-quick".into() } else { "designs".into() },
            command: String::new(),
        }
    }
}

/// The result files' base name of the namespace run that goes with the loopback run `name`:
/// `designs` → `designs-netns`, `designs-quick` → `designs-netns-quick`.
pub fn netns_name(name: &str) -> String {
    match name.strip_suffix("-quick") {
        Some(base) => format!("{base}-netns-quick"),
        None => format!("{name}-netns"),
    }
}

/// The measurements of one cluster (one system, one size, one round).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DesignRound {
    /// System name.
    pub system: String,
    /// `serf-style` or `consul-style`.
    pub design: String,
    /// Application nodes.
    pub nodes: usize,
    /// Round number.
    pub round: usize,
    /// Only setup and the primary failover were measured (the 15 s lock-delay run).
    pub failover_only: bool,
    /// Processes that serve the N nodes (consul-style: N clients + the servers).
    pub processes: usize,
    /// Of which servers.
    pub servers: usize,
    /// First start until every node lists all N alive and one node serves the primary service.
    pub setup_s: Option<f64>,
    /// Of which: until every node lists all N alive.
    pub setup_listed_s: Option<f64>,
    /// RSS per client agent (serf-style: per agent) at the end of the steady window, MiB.
    pub client_rss_mib: Vec<f64>,
    /// CPU seconds per minute per client agent over the window.
    pub client_cpu_s_per_min: Vec<f64>,
    /// Bytes sent per second per client agent from its own address (all protocols).
    pub client_sent_bytes_per_s: Vec<f64>,
    /// RSS per server, MiB.
    pub server_rss_mib: Vec<f64>,
    /// CPU seconds per minute per server.
    pub server_cpu_s_per_min: Vec<f64>,
    /// Bytes sent per second per server.
    pub server_sent_bytes_per_s: Vec<f64>,
    /// Bytes per second sent from 127.0.0.1 into the cluster's range (TCP an agent dialed
    /// without binding its address): not attributable to one agent.
    pub unattributed_bytes_per_s: Option<f64>,
    /// SIGKILL of an application node until every other node lists it failed.
    pub kill_all_s: Option<f64>,
    /// ... until the first does.
    pub kill_first_s: Option<f64>,
    /// ... until the catalog has its serfHealth critical (consul-style).
    pub kill_catalog_s: Option<f64>,
    /// SIGSTOP of an application node until every other node lists it failed.
    pub stop_all_s: Option<f64>,
    /// ... until the catalog has its serfHealth critical (consul-style).
    pub stop_catalog_s: Option<f64>,
    /// SIGKILL of the primary's node until every other node lists it failed.
    pub failover_detect_all_s: Option<f64>,
    /// SIGKILL of the primary's node until a client polling every 50 ms gets 200 again.
    pub failover_gap_s: Option<f64>,
    /// Seconds with two nodes answering as primary during the failover.
    pub failover_two_primaries_s: Option<f64>,
    /// Who took over.
    pub new_primary: Option<String>,
    /// The client's samples through the failover, seconds from the kill.
    pub availability: Vec<Sample>,
    /// The partition scenarios (namespace backend), on a fresh cluster after the steps above.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionRun>,
    /// Steps in which some node never showed what the step waited for.
    pub incomplete: Vec<String>,
    /// What went wrong, if anything (the round stops at the first error).
    pub error: Option<String>,
}

/// One partition scenario of one round (namespace backend): a client probes every node's
/// primary service every 50 ms from before the cut until one primary has answered alone for 3 s
/// after the heal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PartitionRun {
    /// Which: [`CUT_NODE`] or [`CUT_NODE_AND_LEADER`].
    pub scenario: String,
    /// What was cut off: node and server names.
    pub cut: Vec<String>,
    /// The primary before the cut.
    pub old_primary: Option<String>,
    /// How long the partition was held, seconds.
    pub held_s: Option<f64>,
    /// From the cut until a node on the majority side answered as primary (`None`: not before
    /// the heal).
    pub new_primary_s: Option<f64>,
    /// From the cut until the cut-off node stopped answering as primary (`None`: it answered
    /// until the heal).
    pub old_stopped_s: Option<f64>,
    /// Seconds with two or more nodes answering as primary from the cut to the heal.
    pub two_primaries_s: Option<f64>,
    /// ... from the heal on.
    pub two_primaries_after_heal_s: Option<f64>,
    /// From the heal until one primary answered and kept answering alone (for 3 s).
    pub single_after_heal_s: Option<f64>,
    /// Who that primary was.
    pub primary_after_heal: Option<String>,
    /// The samples, seconds from the cut.
    pub samples: Vec<Sample>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// What a partition's samples say (see [`PartitionRun`]'s fields of the same names).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionTimes {
    /// Cut until the majority side answered as primary.
    pub new_primary_s: Option<f64>,
    /// Cut until no node of the minority side answered as primary.
    pub old_stopped_s: Option<f64>,
    /// Two or more primaries, cut to heal, seconds.
    pub two_primaries_s: f64,
    /// Two or more primaries from the heal on, seconds.
    pub two_primaries_after_heal_s: f64,
    /// Heal until one primary answered alone for `settle` seconds (and on to the last sample).
    pub single_after_heal_s: Option<f64>,
    /// That primary.
    pub settled_primary: Option<usize>,
}

/// Read a partition cut at `cut` and healed at `heal` (seconds on the samples' clock) off the
/// probe's samples; `minority` are the application nodes that were cut off.
pub fn partition_times(samples: &[Sample], cut: f64, heal: f64, minority: &[usize], settle: f64) -> PartitionTimes {
    let during = || samples.iter().filter(|s| s.at >= cut && s.at < heal);
    let new_primary_s = during().find(|s| s.primaries.iter().any(|p| !minority.contains(p))).map(|s| s.at - cut);
    let old_stopped_s = during().find(|s| !s.primaries.iter().any(|p| minority.contains(p))).map(|s| s.at - cut);
    let two = |from: f64, to: f64| {
        samples
            .windows(2)
            .filter(|w| w[0].at >= from && w[0].at < to && w[0].primaries.len() >= 2)
            .map(|w| w[1].at.min(to) - w[0].at)
            .sum::<f64>()
            + 0.0
    };
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= heal).collect();
    let start = match after.iter().rposition(|s| s.primaries.len() != 1) {
        None => after.first().copied(),
        Some(j) => after.get(j + 1).copied(),
    };
    let settled = start.filter(|s| after.last().is_some_and(|l| l.at - s.at >= settle));
    PartitionTimes {
        new_primary_s,
        old_stopped_s,
        two_primaries_s: two(cut, heal),
        two_primaries_after_heal_s: two(heal, f64::INFINITY),
        single_after_heal_s: settled.map(|s| s.at - heal),
        settled_primary: settled.and_then(|s| s.primaries.first().copied()),
    }
}

/// One phase of the fault schedule.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phase {
    /// What was done at its start.
    pub fault: String,
    /// Its start, seconds from the start of the schedule.
    pub start_s: f64,
    /// Its length, seconds.
    pub secs: f64,
    /// Fraction of the client's 50 ms probes in it that some node answered 200.
    pub answered: Option<f64>,
    /// Seconds in it with two or more nodes answering 200.
    pub two_primaries_s: f64,
}

/// The fixed fault schedule run on one system: a client probes every node's primary service every
/// 50 ms throughout.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScheduleRun {
    /// System name.
    pub system: String,
    /// Application nodes.
    pub nodes: usize,
    /// The phases in order.
    pub phases: Vec<Phase>,
    /// Fraction answered over the phases every system runs (application-node faults).
    pub answered_common: Option<f64>,
    /// Fraction answered over the whole schedule.
    pub answered_all: Option<f64>,
    /// The samples, seconds from the start of the schedule.
    pub samples: Vec<Sample>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Everything `designs` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DesignsReport {
    /// Command and machine.
    pub stamp: Stamp,
    /// Options.
    pub options: DesignsOptions,
    /// The systems, in table order.
    pub systems: Vec<String>,
    /// Every round.
    pub rounds: Vec<DesignRound>,
    /// The fault schedule, one run per system.
    #[serde(default)]
    pub schedules: Vec<ScheduleRun>,
    /// Things the reader must know.
    pub notes: Vec<String>,
    /// The written conclusion (paragraphs), added to the JSON after the run and rendered with
    /// `designs-render`; empty straight after a run.
    #[serde(default)]
    pub conclusion: Vec<String>,
}

fn step(msg: &str, start: Instant) {
    eprintln!("[{:>6.1} s] {msg}", start.elapsed().as_secs_f64());
}

/// Run the comparison. Progress on stderr, the report on stdout, files when `out_dir` is set.
pub fn run(o: &DesignsOptions) -> anyhow::Result<DesignsReport> {
    anyhow::ensure!(!o.sizes.is_empty() && o.sizes.iter().all(|&n| (5..=200).contains(&n)), "sizes must be 5 to 200");
    let netns = o.backend == Backend::Netns;
    if netns {
        anyhow::ensure!(
            crate::netns::available(),
            "--netns needs root, ip and iptables (one network namespace per agent on a bridge)"
        );
        anyhow::ensure!(
            o.partition_secs.is_finite() && (1.0..=600.0).contains(&o.partition_secs),
            "partition length {} s: must be 1 to 600 s",
            o.partition_secs
        );
    }
    let stamp = Stamp::new(&o.command);
    let mut notes = Vec::new();
    let ours = SerfAgent { bin: locate_serf_agent(o.agent_bin.as_deref(), o.build)? };
    let consul_bin = locate_consul_lite(o.consul_bin.as_deref(), o.build)?;
    let consul = ConsulLite::new(consul_bin.clone());
    let consul_slow = ConsulLite::with_lock_delay(consul_bin, CONSUL_DEFAULT_LOCK_DELAY, 3);
    let serf = match &o.serf_bin {
        Some(p) => Some(HashicorpSerf::new(p.clone())),
        None => HashicorpSerf::find(),
    };
    let mut systems: Vec<(&dyn System, Option<&ConsulLite>)> = vec![(&ours, None), (&consul, Some(&consul))];
    if let Some(s) = &serf {
        systems.push((s, None));
    } else {
        notes.push("HashiCorp Serf not found (no `serf` on PATH): the reference column is missing.".to_owned());
    }
    let acct = if netns {
        None
    } else if iptables::available() {
        Some(Chain::new("D")?)
    } else {
        notes.push("Bytes per agent not measured: needs root and iptables.".to_owned());
        None
    };
    if netns && !o.schedule_only {
        notes.push(
            "Network namespaces: each agent (consul-lite's 3 servers too) runs in a namespace of its own, with a \
             veth into one bridge per cluster; the harness reads the agents' HTTP APIs and primary services \
             from the host through the bridge, which no partition cuts. Bytes: everything each agent sent over \
             the steady window, read off the host side of its veth (IP bytes, all protocols, TCP included; no \
             ARP: neighbours are permanent); consul-lite's election calling its own agent's API stays inside \
             the namespace and is not counted."
                .to_owned(),
        );
        notes.push(format!(
            "Partitions: on a fresh cluster after each round's steps, the primary's node is cut off from every \
             other node (and server) by iptables rules dropping what each side receives from the other, held \
             {:.0} s, then healed; a client probes every node's primary service every 50 ms throughout, so both \
             sides are seen. \"Until one primary\" is from the heal until one node answered alone and kept \
             doing so for {SETTLE_SECS:.0} s. consul-style also with the Raft leader server cut off together \
             with the primary's node (the minority side then holds a stale leader).",
            o.partition_secs
        ));
    }
    if acct.is_some() && !o.schedule_only {
        notes.push(
            "Bytes: everything each agent sends from its own address (UDP and TCP, IP bytes, iptables counters \
             over the steady window). \"From 127.0.0.1\" is TCP into the cluster's addresses that the kernel sent \
             from 127.0.0.1 because the dialer bound no address: on loopback this includes consul-lite's \
             election calling its own agent's HTTP API (which would not cross a network) and may include a \
             client's requests to the servers (which would); it is in no total."
                .to_owned(),
        );
    }
    let dir = RunDir::new("designs", o.keep)?;
    let start = Instant::now();
    let mut rounds = Vec::new();
    let round_count = if o.schedule_only { 0 } else { o.rounds };
    for r in 0..round_count {
        for (si, &n) in o.sizes.iter().enumerate() {
            let mut order = systems.clone();
            if (r + si) % 2 == 1 {
                order.reverse();
            }
            for (sys, servers) in order {
                let base = dir.path().join(format!("{}-{n}-r{r}", sys.id()));
                let round = measure(sys, servers, n, r, false, o, &base, acct.as_ref(), start);
                rounds.push(round);
            }
            if o.default_lock_delay && r == 0 && !o.schedule_only {
                let base = dir.path().join(format!("{}-{n}-r{r}", consul_slow.id()));
                rounds.push(measure(&consul_slow, Some(&consul_slow), n, r, true, o, &base, None, start));
            }
        }
    }
    let mut schedules = Vec::new();
    if o.schedule || o.schedule_only {
        let n = o.sizes.iter().copied().min().unwrap_or(5);
        for (sys, servers) in &systems {
            let base = dir.path().join(format!("{}-{n}-schedule", sys.id()));
            schedules.push(run_schedule(*sys, *servers, n, o, &base, start));
            if let Some(c) = servers {
                c.stop_servers();
            }
            if !o.keep {
                let _ = std::fs::remove_dir_all(&base);
            }
        }
    }
    let mut names: Vec<String> = systems.iter().map(|(s, _)| s.name().to_owned()).collect();
    if o.default_lock_delay && !o.schedule_only {
        names.insert(2, consul_slow.name().to_owned());
    }
    let slow_row = if o.default_lock_delay && !o.schedule_only {
        format!(
            "; the `lock-delay {CONSUL_DEFAULT_LOCK_DELAY}` column is Consul's default session lock-delay, measured \
             for the failover alone"
        )
    } else {
        String::new()
    };
    notes.push(format!(
        "consul-lite's clients run the election with `-primary-lock-delay {}` (the value the agent uses){slow_row}.",
        consul.lock_delay
    ));
    let report =
        DesignsReport { stamp, options: o.clone(), systems: names, rounds, schedules, notes, conclusion: Vec::new() };
    if let Some(out) = &o.out_dir {
        std::fs::create_dir_all(out)?;
        std::fs::write(out.join(format!("{}.json", o.name)), serde_json::to_string_pretty(&report)? + "\n")?;
        std::fs::write(out.join(format!("{}.md", o.name)), report.markdown())?;
        write_plots(&report, out)?;
        eprintln!("wrote {}/{}.md, .json and plots", out.display(), o.name);
    }
    Ok(report)
}

/// Re-render the Markdown report and the plots of a `designs` JSON file next to it.
pub fn render(json: &Path) -> anyhow::Result<DesignsReport> {
    let report: DesignsReport = serde_json::from_str(&std::fs::read_to_string(json)?)?;
    let dir = json.parent().unwrap_or(Path::new("."));
    std::fs::write(json.with_extension("md"), report.markdown())?;
    write_plots(&report, dir)?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn measure(
    sys: &dyn System,
    consul: Option<&ConsulLite>,
    n: usize,
    round: usize,
    failover_only: bool,
    o: &DesignsOptions,
    base: &Path,
    acct: Option<&Chain>,
    start: Instant,
) -> DesignRound {
    let design = if consul.is_some() { "consul-style" } else { "serf-style" };
    let mut r = DesignRound {
        system: sys.name().into(),
        design: design.into(),
        nodes: n,
        round,
        failover_only,
        ..DesignRound::default()
    };
    if let Err(e) = steps(sys, consul, &mut r, o, base, acct, start) {
        step(&format!("{} n={n} round {round}: {e:#}", sys.name()), start);
        r.error = Some(format!("{e:#}"));
    }
    if let Some(c) = consul {
        c.stop_servers();
    }
    if o.backend == Backend::Netns && !failover_only {
        let base = base
            .with_file_name(format!("{}-partitions", base.file_name().map_or("round".into(), |f| f.to_string_lossy())));
        if let Err(e) = partitions(sys, consul, &mut r, o, &base, start) {
            step(&format!("{} n={n} round {round} partitions: {e:#}", sys.name()), start);
            r.partitions.push(PartitionRun { error: Some(format!("{e:#}")), ..PartitionRun::default() });
        }
        if let Some(c) = consul {
            c.stop_servers();
        }
        if !o.keep {
            let _ = std::fs::remove_dir_all(&base);
        }
    }
    if !o.keep {
        let _ = std::fs::remove_dir_all(base);
    }
    r
}

/// The cluster of one round or schedule: on the options' backend, with consul-lite's servers
/// placed in namespaces of their own on the namespace backend.
fn new_cluster<'a>(
    sys: &'a dyn System,
    consul: Option<&ConsulLite>,
    n: usize,
    base: &Path,
    profile: &str,
    backend: Backend,
) -> anyhow::Result<Cluster<'a>> {
    let c = Cluster::with_backend(sys, n, base, profile, backend)?;
    if let (Some(cl), Some(t)) = (consul, c.topology()) {
        cl.place_servers(t)?;
    }
    Ok(c)
}

/// Every member of the cluster's namespaces, for partitions: node `i` is member `i`,
/// consul-lite's server `k` member `n + k`. `None` on loopback.
fn cluster_links(c: &Cluster<'_>, consul: Option<&ConsulLite>) -> Option<Links> {
    let links = c.topology()?.links();
    Some(match consul.and_then(ConsulLite::server_links) {
        Some(servers) => links.join(servers),
        None => links,
    })
}

/// Bytes sent so far by every node, then every server (namespace backend: veth counters).
fn sent_bytes(c: &Cluster<'_>, consul: Option<&ConsulLite>) -> Option<Vec<u64>> {
    let nodes = c.topology()?.sent();
    let servers = consul.and_then(ConsulLite::server_sent).unwrap_or_default();
    Some(nodes.iter().chain(&servers).map(|&(_, bytes)| bytes).collect())
}

/// Wait until every running node lists all running nodes alive and one node serves the primary
/// service (consul-style: and the servers name a Raft leader); returns the primary.
fn converged(c: &Cluster<'_>, consul: Option<&ConsulLite>, timeout: Duration) -> anyhow::Result<usize> {
    let running = c.running();
    let ok = poll_until(timeout, Duration::from_millis(100), || {
        let views = c.sweep(&running);
        let all = views.iter().all(|(_, v)| v.as_ref().is_some_and(|m| count_alive(m) == running.len()));
        let leader = consul.is_none_or(|cl| cl.leader_server().is_some());
        (all && leader).then_some(())
    });
    anyhow::ensure!(ok.is_some(), "{}: the cluster did not converge within {timeout:?}", c.system().name());
    single_primary(c, timeout)
}

/// The partition scenarios of one round, on a fresh cluster of `r.nodes` nodes.
fn partitions(
    sys: &dyn System,
    consul: Option<&ConsulLite>,
    r: &mut DesignRound,
    o: &DesignsOptions,
    base: &Path,
    start: Instant,
) -> anyhow::Result<()> {
    let (n, round) = (r.nodes, r.round);
    let say = |what: &str| step(&format!("{} n={n} round {round}: {what}", sys.name()), start);
    let profile = if consul.is_some() { "lan" } else { o.profile.as_str() };
    let mut c = new_cluster(sys, consul, n, base, profile, Backend::Netns)?;
    say("partitions: setup");
    c.start_all(Duration::from_secs(60 + 3 * n as u64))?;
    let links = cluster_links(&c, consul).ok_or_else(|| anyhow::anyhow!("partitions need the namespace backend"))?;
    let mut scenarios = vec![CUT_NODE];
    if consul.is_some() {
        scenarios.push(CUT_NODE_AND_LEADER);
    }
    for scenario in scenarios {
        say(&format!("partition: {scenario}"));
        let mut run = PartitionRun { scenario: scenario.to_owned(), ..PartitionRun::default() };
        let result = partition(&c, consul, &links, &mut run, o);
        if let Err(e) = &result {
            step(&format!("{} n={n} round {round} partition ({scenario}): {e:#}", sys.name()), start);
            run.error = Some(format!("{e:#}"));
        }
        r.partitions.push(run);
        result?;
    }
    Ok(())
}

/// One partition scenario (`run.scenario`) on a converged cluster; see [`PartitionRun`].
fn partition(
    c: &Cluster<'_>,
    consul: Option<&ConsulLite>,
    links: &Links,
    run: &mut PartitionRun,
    o: &DesignsOptions,
) -> anyhow::Result<()> {
    let sys = c.system();
    let n = c.len();
    let primary = converged(c, consul, Duration::from_secs(90))?;
    run.old_primary = Some(c.nodes[primary].name.clone());
    let mut minority = vec![primary];
    run.cut = vec![c.nodes[primary].name.clone()];
    if run.scenario == CUT_NODE_AND_LEADER {
        let cl = consul.ok_or_else(|| anyhow::anyhow!("{CUT_NODE_AND_LEADER}: no servers"))?;
        let k = cl.leader_server().ok_or_else(|| anyhow::anyhow!("no Raft leader"))?;
        minority.push(n + k);
        run.cut.push(format!("server{k}"));
    }
    let majority: Vec<usize> = (0..links.len()).filter(|m| !minority.contains(m)).collect();
    let probe = Probe::default();
    let nodes = c.nodes.clone();
    let hold = Duration::from_secs_f64(o.partition_secs);
    let t0 = Instant::now();
    let timing = std::thread::scope(|scope| -> anyhow::Result<(f64, f64)> {
        scope.spawn(|| probe.run(sys, &nodes, t0, Duration::from_millis(50), Duration::from_secs(300), |_, _| {}));
        let result = (|| -> anyhow::Result<(f64, f64)> {
            std::thread::sleep(Duration::from_millis(500));
            let cut_at = t0.elapsed().as_secs_f64();
            let cut = links.partition(&minority, &majority);
            if cut.is_ok() {
                std::thread::sleep(hold);
            }
            // Healed even when the cut failed half-way.
            let healed = links.heal();
            cut?;
            healed?;
            let heal_at = t0.elapsed().as_secs_f64();
            let apps = [primary];
            poll_until(Duration::from_secs(90), Duration::from_millis(200), || {
                partition_times(&probe.samples(), cut_at, heal_at, &apps, SETTLE_SECS).single_after_heal_s
            });
            Ok((cut_at, heal_at))
        })();
        probe.stop();
        result
    });
    let (cut_at, heal_at) = timing?;
    let samples = probe.samples();
    let t = partition_times(&samples, cut_at, heal_at, &[primary], SETTLE_SECS);
    run.held_s = Some(heal_at - cut_at);
    run.new_primary_s = t.new_primary_s;
    run.old_stopped_s = t.old_stopped_s;
    run.two_primaries_s = Some(t.two_primaries_s);
    run.two_primaries_after_heal_s = Some(t.two_primaries_after_heal_s);
    run.single_after_heal_s = t.single_after_heal_s;
    run.primary_after_heal = t.settled_primary.map(|i| c.nodes[i].name.clone());
    run.samples = samples.into_iter().map(|s| Sample { at: s.at - cut_at, primaries: s.primaries }).collect();
    anyhow::ensure!(
        t.single_after_heal_s.is_some(),
        "no single primary within 90 s of the heal (now: {:?})",
        c.primaries()
    );
    Ok(())
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

fn note_missing(r: &mut DesignRound, c: &Cluster<'_>, what: &str, p: &Propagation) {
    if !p.missing.is_empty() {
        let who: Vec<String> = p.missing.iter().map(|(o, s)| format!("{} ({s})", c.nodes[*o].name)).collect();
        r.incomplete.push(format!("{what}: not seen by {}", who.join(", ")));
    }
}

fn single_primary(c: &Cluster<'_>, timeout: Duration) -> anyhow::Result<usize> {
    poll_until(timeout, Duration::from_millis(50), || {
        let p = c.primaries();
        (p.len() == 1).then(|| p[0])
    })
    .ok_or_else(|| anyhow::anyhow!("no single primary within {timeout:?} (now: {:?})", c.primaries()))
}

/// Count the bytes every address of `ips` sends (all protocols), then what 127.0.0.1 sends into
/// `net` (TCP dialed without binding an address: on loopback the kernel picks 127.0.0.1).
pub fn count_traffic(chain: &Chain, ips: &[Ipv4Addr], net: &str) -> anyhow::Result<()> {
    chain.flush()?;
    for ip in ips {
        chain.append(&["-s", &format!("{ip}/32")])?;
    }
    chain.append(&["-s", "127.0.0.1/32", "-d", net])?;
    Ok(())
}

/// Kill or stop application node `victim` and time it: every other node lists it failed, and
/// (consul-style) the catalog, read on one of them, has its serfHealth critical.
fn fault(
    c: &mut Cluster<'_>,
    victim: usize,
    signal: Signal,
    r: &mut DesignRound,
) -> anyhow::Result<(Option<f64>, Option<f64>, Option<f64>)> {
    let sys = c.system();
    let others: Vec<usize> = c.running().into_iter().filter(|&i| i != victim).collect();
    let subject = c.nodes[victim].name.clone();
    let reader = c.nodes[others[0]].clone();
    let t0 = Instant::now();
    c.signal(victim, signal)?;
    let c = &*c;
    let (p, catalog) = std::thread::scope(|scope| {
        let catalog = scope.spawn(|| {
            sys.catalog_excludes(&reader, &subject)?;
            poll_until(Duration::from_secs(60), Duration::from_millis(50), || {
                (sys.catalog_excludes(&reader, &subject) == Some(true)).then(|| t0.elapsed().as_secs_f64())
            })
        });
        let p = c.wait_for_status(&subject, &["failed"], &others, t0, Duration::from_secs(60), |_, _, _| {});
        (p, catalog.join().ok().flatten())
    });
    let what = if signal == Signal::Kill { "SIGKILL" } else { "SIGSTOP" };
    note_missing(r, c, &format!("{what} of {subject} (want: failed)"), &p);
    Ok((secs(p.first), secs(p.all), catalog))
}

fn steps(
    sys: &dyn System,
    consul: Option<&ConsulLite>,
    r: &mut DesignRound,
    o: &DesignsOptions,
    base: &Path,
    acct: Option<&Chain>,
    start: Instant,
) -> anyhow::Result<()> {
    let (n, round) = (r.nodes, r.round);
    let say = |what: &str| step(&format!("{} n={n} round {round}: {what}", sys.name()), start);
    let profile = if r.design == "consul-style" { "lan" } else { o.profile.as_str() };
    let mut c = new_cluster(sys, consul, n, base, profile, o.backend)?;
    say("setup");
    let t0 = Instant::now();
    c.start_all(Duration::from_secs(60 + 3 * n as u64))?;
    r.setup_listed_s = Some(t0.elapsed().as_secs_f64());
    single_primary(&c, Duration::from_secs(30))?;
    r.setup_s = Some(t0.elapsed().as_secs_f64());
    let servers = sys.extra_agents();
    r.servers = servers.len();
    r.processes = n + servers.len();

    if !r.failover_only {
        say("steady state");
        std::thread::sleep(Duration::from_secs(2));
        let clients: Vec<u32> = (0..n).filter_map(|i| c.agent(i).map(|a| a.pid())).collect();
        let server_ips: Vec<Ipv4Addr> =
            (0..servers.len()).map(|k| ConsulLite::server_ip(c.nodes[0].ip.octets()[2], k)).collect();
        let ips: Vec<Ipv4Addr> = c.nodes.iter().map(|x| x.ip).chain(server_ips.iter().copied()).collect();
        if let Some(chain) = acct {
            count_traffic(chain, &ips, &c.loopback_subnet())?;
        }
        let sent0 = sent_bytes(&c, consul);
        let cpu0: Vec<Option<Duration>> = clients.iter().chain(&servers).map(|&p| cpu_time(p)).collect();
        let w0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(o.steady_secs));
        let window = w0.elapsed().as_secs_f64();
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        for (k, (&pid, before)) in clients.iter().chain(&servers).zip(&cpu0).enumerate() {
            let cpu = before.zip(cpu_time(pid)).map(|(b, a)| (a - b).as_secs_f64() / window * 60.0);
            let rss = rss_bytes(pid).map(mib);
            let (cpus, rsss) = if k < clients.len() {
                (&mut r.client_cpu_s_per_min, &mut r.client_rss_mib)
            } else {
                (&mut r.server_cpu_s_per_min, &mut r.server_rss_mib)
            };
            cpus.extend(cpu);
            rsss.extend(rss);
        }
        if let Some(chain) = acct {
            let counters = chain.counters()?;
            for (k, &(_, bytes)) in counters.iter().take(ips.len()).enumerate() {
                let v = bytes as f64 / window;
                if k < n {
                    r.client_sent_bytes_per_s.push(v);
                } else {
                    r.server_sent_bytes_per_s.push(v);
                }
            }
            r.unattributed_bytes_per_s = counters.get(ips.len()).map(|&(_, b)| b as f64 / window);
            chain.flush()?;
        }
        if let (Some(before), Some(after)) = (sent0, sent_bytes(&c, consul)) {
            for (k, (b, a)) in before.iter().zip(&after).enumerate() {
                let v = a.saturating_sub(*b) as f64 / window;
                if k < n {
                    r.client_sent_bytes_per_s.push(v);
                } else {
                    r.server_sent_bytes_per_s.push(v);
                }
            }
        }

        let primary = single_primary(&c, Duration::from_secs(10))?;
        let pick = |skip: &[usize]| (0..n).rev().find(|i| *i != primary && !skip.contains(i));
        let killed = pick(&[]).ok_or_else(|| anyhow::anyhow!("no node to kill"))?;
        say("SIGKILL of an application node");
        (r.kill_first_s, r.kill_all_s, r.kill_catalog_s) = fault(&mut c, killed, Signal::Kill, r)?;
        let stopped = pick(&[killed]).ok_or_else(|| anyhow::anyhow!("no node to stop"))?;
        say("SIGSTOP of an application node");
        let (_, all, catalog) = fault(&mut c, stopped, Signal::Stop, r)?;
        (r.stop_all_s, r.stop_catalog_s) = (all, catalog);
        c.signal(stopped, Signal::Cont)?;
        let others: Vec<usize> = c.running().into_iter().filter(|&i| i != stopped).collect();
        let subject = c.nodes[stopped].name.clone();
        let p = c.wait_for_status(&subject, &["alive"], &others, Instant::now(), Duration::from_secs(60), |_, _, _| {});
        note_missing(r, &c, &format!("SIGCONT of {subject} (want: alive)"), &p);
    }

    say("primary failover (SIGKILL of the primary's node)");
    let primary = single_primary(&c, Duration::from_secs(30))?;
    let others: Vec<usize> = c.running().into_iter().filter(|&i| i != primary).collect();
    let subject = c.nodes[primary].name.clone();
    let probe = Probe::default();
    let nodes = c.nodes.clone();
    let t0 = Instant::now();
    let c_ref = &mut c;
    let detect = std::thread::scope(|scope| {
        scope.spawn(|| probe.run(sys, &nodes, t0, Duration::from_millis(50), Duration::from_secs(120), |_, _| {}));
        std::thread::sleep(Duration::from_millis(300));
        probe.exclude(primary);
        let killed_at = t0.elapsed();
        let result = c_ref.signal(primary, Signal::Kill).map(|()| {
            c_ref.wait_for_status(&subject, &["failed"], &others, t0 + killed_at, Duration::from_secs(60), |_, _, _| {})
        });
        let _ = poll_until(Duration::from_secs(60), Duration::from_millis(50), || {
            probe
                .samples()
                .iter()
                .any(|s| s.at > killed_at.as_secs_f64() && s.primaries.iter().any(|&p| p != primary))
                .then_some(())
        });
        std::thread::sleep(Duration::from_millis(500));
        probe.stop();
        result.map(|p| (p, killed_at))
    });
    let (p, killed_at) = detect?;
    note_missing(r, &c, &format!("SIGKILL of the primary {subject} (want: failed)"), &p);
    r.failover_detect_all_s = secs(p.all);
    let samples = probe.samples();
    let k = killed_at.as_secs_f64();
    let out = outage(&samples, k, primary);
    r.failover_gap_s = out.unavailable;
    r.failover_two_primaries_s = Some(out.split_brain);
    r.new_primary = samples
        .iter()
        .filter(|s| s.at > k)
        .find_map(|s| s.primaries.iter().copied().find(|&p| p != primary))
        .map(|i| c.nodes[i].name.clone());
    r.availability = samples.into_iter().map(|s| Sample { at: s.at - k, primaries: s.primaries }).collect();
    Ok(())
}

/// Fault schedule: (what, seconds to hold it). Application-node faults for every system; the
/// servers' faults for consul-style only.
const COMMON_PHASES: [(&str, f64); 5] = [
    ("steady", 4.0),
    ("SIGKILL an application node", 8.0),
    ("SIGSTOP an application node", 8.0),
    ("SIGCONT it", 4.0),
    ("SIGKILL the primary's node", 12.0),
];
/// Namespace backend only, after [`COMMON_PHASES`] (every system runs them).
const PARTITION_PHASES: [(&str, f64); 2] = [("cut the primary's node off", 12.0), ("heal", 10.0)];
const SERVER_PHASES: [(&str, f64); 3] =
    [("SIGKILL the Raft leader server", 8.0), ("restart it", 8.0), ("SIGKILL a follower server (minority loss)", 8.0)];

fn run_schedule(
    sys: &dyn System,
    consul: Option<&ConsulLite>,
    n: usize,
    o: &DesignsOptions,
    base: &Path,
    start: Instant,
) -> ScheduleRun {
    let mut run = ScheduleRun { system: sys.name().into(), nodes: n, ..ScheduleRun::default() };
    step(&format!("{} n={n}: fault schedule", sys.name()), start);
    if let Err(e) = schedule_steps(sys, consul, &mut run, o, base) {
        step(&format!("{} n={n} fault schedule: {e:#}", sys.name()), start);
        run.error = Some(format!("{e:#}"));
    }
    run
}

fn schedule_steps(
    sys: &dyn System,
    consul: Option<&ConsulLite>,
    run: &mut ScheduleRun,
    o: &DesignsOptions,
    base: &Path,
) -> anyhow::Result<()> {
    let n = run.nodes;
    let mut c = new_cluster(sys, consul, n, base, &o.profile, o.backend)?;
    c.start_all(Duration::from_secs(60 + 3 * n as u64))?;
    let first = single_primary(&c, Duration::from_secs(30))?;
    let links = cluster_links(&c, consul);
    let probe = Probe::default();
    let nodes = c.nodes.clone();
    let t0 = Instant::now();
    let mut phases: Vec<(&str, f64)> = COMMON_PHASES.to_vec();
    if links.is_some() {
        phases.extend(PARTITION_PHASES);
    }
    let common = phases.len();
    if consul.is_some() {
        phases.extend(SERVER_PHASES);
    }
    let mut starts = Vec::new();
    let c_ref = &mut c;
    let result: anyhow::Result<()> = std::thread::scope(|scope| {
        scope.spawn(|| probe.run(sys, &nodes, t0, Duration::from_millis(50), Duration::from_secs(300), |_, _| {}));
        let victim = (0..n).rev().find(|&i| i != first).unwrap_or(n - 1);
        let paused = (0..n).rev().find(|&i| i != first && i != victim).unwrap_or(n - 2);
        let mut leader = None;
        let outcome = (|| -> anyhow::Result<()> {
            for (what, hold) in &phases {
                starts.push(t0.elapsed().as_secs_f64());
                match *what {
                    "SIGKILL an application node" => {
                        probe.exclude(victim);
                        c_ref.signal(victim, Signal::Kill)?;
                    }
                    "SIGSTOP an application node" => {
                        probe.exclude(paused);
                        c_ref.signal(paused, Signal::Stop)?;
                    }
                    "SIGCONT it" => {
                        c_ref.signal(paused, Signal::Cont)?;
                        probe.include(paused);
                    }
                    "SIGKILL the primary's node" => {
                        let p = c_ref.primaries();
                        let p = *p.first().ok_or_else(|| anyhow::anyhow!("no primary to kill"))?;
                        probe.exclude(p);
                        c_ref.signal(p, Signal::Kill)?;
                    }
                    "cut the primary's node off" => {
                        let links = links.as_ref().ok_or_else(|| anyhow::anyhow!("no namespaces"))?;
                        let p = c_ref.primaries();
                        let p = *p.first().ok_or_else(|| anyhow::anyhow!("no primary to cut off"))?;
                        let rest: Vec<usize> = (0..links.len()).filter(|&m| m != p).collect();
                        links.partition(&[p], &rest)?;
                    }
                    "heal" => {
                        links.as_ref().ok_or_else(|| anyhow::anyhow!("no namespaces"))?.heal()?;
                    }
                    "SIGKILL the Raft leader server" => {
                        let cl = consul.ok_or_else(|| anyhow::anyhow!("no servers"))?;
                        let k = cl.leader_server().ok_or_else(|| anyhow::anyhow!("no Raft leader"))?;
                        leader = Some(k);
                        cl.signal_server(k, Signal::Kill)?;
                    }
                    "restart it" => {
                        let cl = consul.ok_or_else(|| anyhow::anyhow!("no servers"))?;
                        cl.restart_server(leader.ok_or_else(|| anyhow::anyhow!("no server killed"))?)?;
                    }
                    "SIGKILL a follower server (minority loss)" => {
                        let cl = consul.ok_or_else(|| anyhow::anyhow!("no servers"))?;
                        let lead = cl.leader_server();
                        let k = (0..crate::consul::SERVERS).find(|&k| Some(k) != lead).unwrap_or(0);
                        cl.signal_server(k, Signal::Kill)?;
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_secs_f64(*hold));
            }
            Ok(())
        })();
        probe.stop();
        outcome
    });
    let end = t0.elapsed().as_secs_f64();
    run.samples = probe.samples();
    starts.push(end);
    for (k, (what, _)) in phases.iter().enumerate().take(starts.len() - 1) {
        let (a, b) = (starts[k], starts[k + 1]);
        run.phases.push(phase(&run.samples, what, a, b));
    }
    let common_end = starts.get(common).copied().unwrap_or(end);
    run.answered_common = answered(&run.samples, 0.0, common_end);
    run.answered_all = answered(&run.samples, 0.0, end);
    result
}

fn answered(samples: &[Sample], a: f64, b: f64) -> Option<f64> {
    let inside: Vec<&Sample> = samples.iter().filter(|s| s.at >= a && s.at < b).collect();
    (!inside.is_empty()).then(|| inside.iter().filter(|s| !s.primaries.is_empty()).count() as f64 / inside.len() as f64)
}

fn phase(samples: &[Sample], fault: &str, a: f64, b: f64) -> Phase {
    let mut two = 0.0;
    for w in samples.windows(2).filter(|w| w[0].at >= a && w[0].at < b) {
        if w[0].primaries.len() >= 2 {
            two += w[1].at - w[0].at;
        }
    }
    Phase { fault: fault.to_owned(), start_s: a, secs: b - a, answered: answered(samples, a, b), two_primaries_s: two }
}

type Field = fn(&DesignRound) -> Vec<f64>;

fn one(v: Option<f64>) -> Vec<f64> {
    v.into_iter().collect()
}

fn sum(v: &[f64]) -> Vec<f64> {
    if v.is_empty() {
        Vec::new()
    } else {
        vec![v.iter().sum()]
    }
}

/// `f` of the round's partition scenario `scenario`, if it ran without an error.
fn part(r: &DesignRound, scenario: &str, f: fn(&PartitionRun) -> Option<f64>) -> Vec<f64> {
    r.partitions.iter().filter(|p| p.scenario == scenario && p.error.is_none()).filter_map(f).collect()
}

/// The rows of the tables: label, decimals, values of one round.
const ROWS: [(&str, usize, Field); 30] = [
    ("processes to serve N nodes", 0, |r| if r.failover_only { vec![] } else { vec![r.processes as f64] }),
    ("setup: until all listed and a primary serves, s", 2, |r| one(r.setup_s)),
    ("setup: until all listed, s", 2, |r| one(r.setup_listed_s)),
    ("SIGKILL of a node: every node lists it failed, s", 2, |r| one(r.kill_all_s)),
    ("SIGKILL: the first node lists it failed, s", 2, |r| one(r.kill_first_s)),
    ("SIGKILL: the catalog has serfHealth critical, s", 2, |r| one(r.kill_catalog_s)),
    ("SIGSTOP of a node: every node lists it failed, s", 2, |r| one(r.stop_all_s)),
    ("SIGSTOP: the catalog has serfHealth critical, s", 2, |r| one(r.stop_catalog_s)),
    ("primary failover: unreachable (50 ms client), s", 2, |r| one(r.failover_gap_s)),
    ("primary failover: every node lists it failed, s", 2, |r| one(r.failover_detect_all_s)),
    ("primary failover: time with two primaries, s", 2, |r| one(r.failover_two_primaries_s)),
    ("partition, primary's node cut off: majority side serves a new primary, s", 2, |r| {
        part(r, CUT_NODE, |p| p.new_primary_s)
    }),
    ("partition, primary's node cut off: cut-off primary stops answering, s", 2, |r| {
        part(r, CUT_NODE, |p| p.old_stopped_s)
    }),
    ("partition, primary's node cut off: time with two primaries, s", 2, |r| part(r, CUT_NODE, |p| p.two_primaries_s)),
    ("partition, primary's node cut off: after the heal, until one primary, s", 2, |r| {
        part(r, CUT_NODE, |p| p.single_after_heal_s)
    }),
    ("partition, + Raft leader cut off: majority side serves a new primary, s", 2, |r| {
        part(r, CUT_NODE_AND_LEADER, |p| p.new_primary_s)
    }),
    ("partition, + Raft leader cut off: cut-off primary stops answering, s", 2, |r| {
        part(r, CUT_NODE_AND_LEADER, |p| p.old_stopped_s)
    }),
    ("partition, + Raft leader cut off: time with two primaries, s", 2, |r| {
        part(r, CUT_NODE_AND_LEADER, |p| p.two_primaries_s)
    }),
    ("partition, + Raft leader cut off: after the heal, until one primary, s", 2, |r| {
        part(r, CUT_NODE_AND_LEADER, |p| p.single_after_heal_s)
    }),
    ("RSS per client agent (serf-style: per agent), MiB", 1, |r| r.client_rss_mib.clone()),
    ("RSS per server, MiB", 1, |r| r.server_rss_mib.clone()),
    ("total RSS to serve N nodes, MiB", 1, |r| {
        if r.client_rss_mib.is_empty() {
            vec![]
        } else {
            vec![r.client_rss_mib.iter().chain(&r.server_rss_mib).sum()]
        }
    }),
    ("CPU per client agent, s/min", 3, |r| r.client_cpu_s_per_min.clone()),
    ("CPU per server, s/min", 3, |r| r.server_cpu_s_per_min.clone()),
    ("total CPU to serve N nodes, s/min", 2, |r| {
        if r.client_cpu_s_per_min.is_empty() {
            vec![]
        } else {
            vec![r.client_cpu_s_per_min.iter().chain(&r.server_cpu_s_per_min).sum()]
        }
    }),
    ("bytes sent per client agent, B/s", 0, |r| r.client_sent_bytes_per_s.clone()),
    ("bytes sent per server, B/s", 0, |r| r.server_sent_bytes_per_s.clone()),
    ("total bytes sent from the agents' addresses, B/s", 0, |r| {
        let v: Vec<f64> = r.client_sent_bytes_per_s.iter().chain(&r.server_sent_bytes_per_s).copied().collect();
        sum(&v)
    }),
    ("from 127.0.0.1 into the cluster (unattributed: see notes), B/s", 0, |r| one(r.unattributed_bytes_per_s)),
    ("rounds with an error", 0, |r| vec![f64::from(u8::from(r.error.is_some()))]),
];

impl DesignsReport {
    fn stat(&self, system: &str, n: usize, f: Field) -> Option<Stat> {
        Stat::of(self.rounds.iter().filter(|r| r.system == system && r.nodes == n).flat_map(f))
    }

    fn median(&self, system: &str, n: usize, f: Field) -> Option<f64> {
        self.stat(system, n, f).map(|s| s.median)
    }

    /// The report: a table per size (median, min–max over rounds), the targets, the notes.
    pub fn markdown(&self) -> String {
        let netns = self.options.backend == Backend::Netns;
        let mut s = format!(
            "# The two designs: serf-style against consul-style{}\n\n{}\nGenerated by the command above \
             (`cluster-bench designs`); re-render with `cluster-bench designs-render {}.json`.\n\n",
            if netns { ", in network namespaces" } else { "" },
            self.stamp.markdown(),
            self.options.name
        );
        let backend = if netns {
            "Network namespaces (one per agent, servers included, on a bridge), with partitions"
        } else {
            "Loopback"
        };
        let _ = writeln!(
            s,
            "serf-style: every node runs one agent (serf-agent, ours; HashiCorp Serf, the reference, with the \
             original demo's handler-script failover). consul-style: consul-lite, {} Raft servers plus one \
             client agent per application node; the primary is whoever holds a lock in the key/value store \
             through a session bound to its node's serfHealth check. {}\n",
            crate::consul::SERVERS,
            if self.rounds.is_empty() {
                format!("{backend}; the fault schedule alone (`--schedule-only`).")
            } else {
                format!(
                    "{backend}, {} round(s) per system and size, interleaved; cells are median (min–max) over \
                     rounds and, for per-agent rows, over agents.",
                    self.options.rounds
                )
            }
        );
        if !self.conclusion.is_empty() {
            let _ = writeln!(
                s,
                "## Conclusion\n\n(Written after the run from the tables below; the figures it quotes are theirs.)\n\n{}\n",
                self.conclusion.join("\n\n")
            );
        }
        for &n in self.options.sizes.iter().filter(|_| !self.rounds.is_empty()) {
            let _ = writeln!(s, "## {n} application nodes\n");
            let _ = writeln!(s, "| what | {} | consul-lite / serf-agent |", self.systems.join(" | "));
            let _ = writeln!(s, "|---|{}---:|", "---:|".repeat(self.systems.len()));
            for (label, decimals, f) in ROWS {
                let cells: Vec<String> = self
                    .systems
                    .iter()
                    .map(|sys| self.stat(sys, n, f).map_or("-".into(), |st| st.show(decimals)))
                    .collect();
                if cells.iter().all(|c| c == "-") {
                    continue;
                }
                let ratio = match (self.median("consul-lite", n, f), self.median("serf-agent", n, f)) {
                    (Some(a), Some(b)) if b.abs() > f64::EPSILON && label != "rounds with an error" => {
                        format!("{:.2}", a / b)
                    }
                    _ => "-".into(),
                };
                let _ = writeln!(s, "| {label} | {} | {ratio} |", cells.join(" | "));
            }
            s.push('\n');
        }
        if self.rounds.iter().any(|r| !r.partitions.is_empty()) {
            s.push_str(&self.partitions_markdown());
        }
        if !self.schedules.is_empty() {
            s.push_str(&self.schedule_markdown());
        }
        if !self.rounds.is_empty() {
            let _ = writeln!(s, "## Targets (issue 15), as measured\n\n{}", self.targets());
            let _ = writeln!(
                s,
                "![failover timeline]({0}-failover.svg)\n\n![resources against N]({0}-resources.svg)\n",
                self.options.name
            );
            if self.rounds.iter().any(|r| !r.partitions.is_empty()) {
                let _ = writeln!(s, "![partitions]({}-partition.svg)\n", self.options.name);
            }
        }
        let errors: Vec<String> = self
            .rounds
            .iter()
            .filter_map(|r| {
                let mut why = r.incomplete.clone();
                why.extend(r.error.clone());
                (!why.is_empty()).then(|| format!("- {} n={} round {}: {}", r.system, r.nodes, r.round, why.join("; ")))
            })
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(s, "## Incomplete steps and errors\n\n{}\n", errors.join("\n"));
        }
        if !self.notes.is_empty() {
            let _ = writeln!(
                s,
                "## Notes\n\n{}\n",
                self.notes.iter().map(|n| format!("- {n}")).collect::<Vec<_>>().join("\n")
            );
        }
        s
    }

    /// Every partition scenario run, one line each.
    fn partitions_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## Partitions, round by round\n\n\
             Times from the cut (the heal for the last three columns); \"never\" is \"not before the heal\". \
             Probes every 50 ms, so each time is late by up to about one probe.\n\n\
             | system | nodes | round | cut off | held, s | new primary on the majority side, s | cut-off \
             primary stops, s | two primaries, s | after the heal: two primaries, s | until one primary, s | \
             primary after the heal |\n\
             |---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"
        );
        let secs = |v: Option<f64>, none: &str| v.map_or(none.to_owned(), |v| format!("{v:.2}"));
        for r in &self.rounds {
            for p in &r.partitions {
                if let Some(e) = &p.error {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | error: {} | | | | | | |",
                        r.system,
                        r.nodes,
                        r.round,
                        p.cut.join(" + "),
                        e.lines().next().unwrap_or_default().replace('|', "/")
                    );
                    continue;
                }
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} (primary {}) | {} | {} | {} | {} | {} | {} | {} |",
                    r.system,
                    r.nodes,
                    r.round,
                    p.cut.join(" + "),
                    p.old_primary.as_deref().unwrap_or("-"),
                    secs(p.held_s, "-"),
                    secs(p.new_primary_s, "never"),
                    secs(p.old_stopped_s, "never"),
                    secs(p.two_primaries_s, "-"),
                    secs(p.two_primaries_after_heal_s, "-"),
                    secs(p.single_after_heal_s, "not seen"),
                    p.primary_after_heal.as_deref().unwrap_or("-")
                );
            }
        }
        s.push('\n');
        s
    }

    /// The fault schedule's table: per phase and system, the fraction of probes answered 200.
    fn schedule_markdown(&self) -> String {
        let mut s = String::new();
        let n = self.schedules.first().map_or(0, |r| r.nodes);
        let _ = if self.options.backend == Backend::Netns {
            writeln!(
                s,
                "## Availability through a fixed fault schedule ({n} nodes, network namespaces)\n\n\
                 A client asks every node's primary service every 50 ms from the start of the schedule; a probe \
                 is answered when some node gives 200. Each fault is held for the time given, without repair \
                 except SIGCONT, the heal and the server restart. The partition cuts the primary's node of the \
                 moment off from every other node and server (both sides are probed).\n"
            )
        } else {
            writeln!(
                s,
                "## Availability through a fixed fault schedule ({n} nodes, loopback)\n\n\
                 A client asks every node's primary service every 50 ms from the start of the schedule; a probe \
                 is answered when some node gives 200. Each fault is held for the time given, without repair \
                 except SIGCONT and the server restart. Partitions are not in the loopback schedule (on \
                 loopback a partition cannot cut TCP: see section 4's backends).\n"
            )
        };
        let names: Vec<&str> = self.schedules.iter().map(|r| r.system.as_str()).collect();
        let _ = writeln!(s, "| phase | held, s | {} |", names.join(" | "));
        let _ = writeln!(s, "|---|---:|{}", "---:|".repeat(names.len()));
        let longest = self.schedules.iter().max_by_key(|r| r.phases.len());
        let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1} %", v * 100.0));
        for (k, p) in longest.map(|r| r.phases.as_slice()).unwrap_or_default().iter().enumerate() {
            let cells: Vec<String> = self
                .schedules
                .iter()
                .map(|r| {
                    r.phases.get(k).map_or("-".to_owned(), |ph| {
                        let two = if ph.two_primaries_s > 0.0 {
                            format!(", two primaries {:.2} s", ph.two_primaries_s)
                        } else {
                            String::new()
                        };
                        format!("{}{two}", pct(ph.answered))
                    })
                })
                .collect();
            let _ = writeln!(s, "| {} | {:.0} | {} |", p.fault, p.secs, cells.join(" | "));
        }
        let common: Vec<String> = self.schedules.iter().map(|r| pct(r.answered_common)).collect();
        let all: Vec<String> = self.schedules.iter().map(|r| pct(r.answered_all)).collect();
        let _ = writeln!(s, "| **application-node phases (every system)** | | {} |", common.join(" | "));
        let _ = writeln!(s, "| **whole schedule** | | {} |", all.join(" | "));
        for r in self.schedules.iter().filter(|r| r.error.is_some()) {
            let _ = writeln!(s, "\n{}: {}", r.system, r.error.as_deref().unwrap_or_default());
        }
        let _ = writeln!(s, "\n![availability]({}-availability.svg)\n", self.options.name);
        s
    }

    /// The issue's targets, each with the figures it compares (medians) and met / missed.
    pub fn targets(&self) -> String {
        let mut s = String::new();
        let verdict = |ok: bool| if ok { "met" } else { "missed" };
        let slow = self.systems.iter().find(|x| x.contains("lock-delay")).cloned();
        for &n in &self.options.sizes {
            let m = |sys: &str, f: Field| self.median(sys, n, f);
            let _ = writeln!(s, "At {n} nodes:\n");
            let detect = |r: &DesignRound| one(r.kill_all_s);
            let catalog = |r: &DesignRound| one(r.kill_catalog_s);
            if let (Some(serf), Some(listed), Some(cat)) =
                (m("serf-agent", detect), m("consul-lite", detect), m("consul-lite", catalog))
            {
                let worst = listed.max(cat);
                let _ = writeln!(
                    s,
                    "- node failure recognised within serf-agent's detection + 0.5 s ({serf:.2} + 0.5 = {:.2} s): \
                     consul-lite lists it failed everywhere at {listed:.2} s, catalog critical at {cat:.2} s: {}.",
                    serf + 0.5,
                    verdict(worst <= serf + 0.5)
                );
            }
            let gap = |r: &DesignRound| one(r.failover_gap_s);
            if let (Some(serf), Some(cl)) = (m("serf-agent", gap), m("consul-lite", gap)) {
                let _ = writeln!(
                    s,
                    "- primary serving again within serf-agent's failover + 1 s ({serf:.2} + 1 = {:.2} s): \
                     consul-lite {cl:.2} s with its agent's lock-delay: {}.",
                    serf + 1.0,
                    verdict(cl <= serf + 1.0)
                );
                if let Some(slow_gap) = slow.as_deref().and_then(|x| m(x, gap)) {
                    let _ = writeln!(s, "  With Consul's default lock-delay (15 s): {slow_gap:.2} s.");
                }
            }
            let two = |r: &DesignRound| one(r.failover_two_primaries_s);
            let netns = self.options.backend == Backend::Netns;
            if let Some(t) = m("consul-lite", two) {
                let _ = writeln!(
                    s,
                    "- two primaries answering during the failover{}: consul-lite {t:.2} s, serf-agent {}.",
                    if netns { "" } else { " (loopback; partitions need namespaces, not measured)" },
                    m("serf-agent", two).map_or("-".into(), |v| format!("{v:.2} s"))
                );
            }
            if let Some(line) = self.partition_target(n) {
                let _ = writeln!(s, "{line}");
            }
            let rss = |r: &DesignRound| r.client_rss_mib.clone();
            if let (Some(a), Some(c)) = (m("serf-agent", rss), m("consul-lite", rss)) {
                let _ = writeln!(
                    s,
                    "- a consul-lite client agent needs at most 1.5 × serf-agent's RSS ({:.1} MiB): {c:.1} MiB \
                     ({:.2}×): {}.",
                    1.5 * a,
                    c / a,
                    verdict(c <= 1.5 * a)
                );
            }
            if self.systems.iter().any(|x| x == "serf") {
                for (label, decimals, f) in ROWS.iter().filter(|(l, _, _)| l.starts_with("total")) {
                    let Some(reference) = m("serf", *f) else { continue };
                    for sys in ["serf-agent", "consul-lite"] {
                        if let Some(v) = m(sys, *f) {
                            let _ = writeln!(
                                s,
                                "- {sys} at or below Serf on {label}: {v:.*} against {reference:.*}: {}.",
                                decimals,
                                decimals,
                                verdict(v <= reference)
                            );
                        }
                    }
                }
            }
            s.push('\n');
        }
        s
    }
}

impl DesignsReport {
    /// The target "never two primaries answering during a partition" at `n` nodes: the longest
    /// two-primary time of consul-lite over every scenario and round, serf-agent's beside it.
    fn partition_target(&self, n: usize) -> Option<String> {
        let runs = |sys: &str| -> Vec<&PartitionRun> {
            self.rounds
                .iter()
                .filter(|r| r.system == sys && r.nodes == n)
                .flat_map(|r| &r.partitions)
                .filter(|p| p.error.is_none())
                .collect()
        };
        let cl = runs("consul-lite").iter().filter_map(|p| p.two_primaries_s).reduce(f64::max)?;
        let count = runs("consul-lite").len();
        let serf_agent = Stat::of(runs("serf-agent").iter().filter_map(|p| p.two_primaries_s))
            .map_or("-".into(), |st| format!("{} s", st.show(2)));
        Some(format!(
            "- never two primaries answering during a partition: consul-lite at most {cl:.2} s over {count} \
             partition(s) of {:.0} s: {}; serf-agent (each side keeps or elects its own) {serf_agent}.",
            self.options.partition_secs,
            if cl == 0.0 { "met" } else { "missed" }
        ))
    }
}

fn caption(report: &DesignsReport) -> String {
    format!("{} · {} · {}", report.stamp.command, report.stamp.date, report.stamp.commit)
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot: {e}")
}

const COLORS: [RGBColor; 4] =
    [RGBColor(0x1f, 0x77, 0xb4), RGBColor(0xd6, 0x27, 0x28), RGBColor(0xff, 0x7f, 0x0e), RGBColor(0x2c, 0xa0, 0x2c)];

/// `<name>-failover.svg` (the primary service through the failover, every system on one time
/// axis, smallest size, first round) and `<name>-resources.svg` (total RSS and CPU to serve N
/// nodes against N).
pub fn write_plots(report: &DesignsReport, dir: &Path) -> anyhow::Result<()> {
    let name = &report.options.name;
    if !report.rounds.is_empty() {
        failover_plot(report, &dir.join(format!("{name}-failover.svg")))?;
        resources_plot(report, &dir.join(format!("{name}-resources.svg")))?;
    }
    if !report.schedules.is_empty() {
        availability_plot(report, &dir.join(format!("{name}-availability.svg")))?;
    }
    if report.rounds.iter().any(|r| r.partitions.iter().any(|p| !p.samples.is_empty())) {
        partition_plot(report, &dir.join(format!("{name}-partition.svg")))?;
    }
    Ok(())
}

/// A step line through the probe samples: each sample's level held until the next sample.
fn step_line(samples: &[Sample], level: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    samples.windows(2).flat_map(|w| [(w[0].at, level(&w[0])), (w[1].at, level(&w[0]))]).collect()
}

/// `<name>-partition.svg`: how many nodes answer as primary through each partition scenario
/// (smallest size, first round that has it), one row per system and scenario, cut at 0.
fn partition_plot(report: &DesignsReport, path: &Path) -> anyhow::Result<()> {
    let n = report.options.sizes.iter().copied().min().unwrap_or(5);
    let runs: Vec<(&str, &PartitionRun)> = report
        .systems
        .iter()
        .flat_map(|sys| {
            [CUT_NODE, CUT_NODE_AND_LEADER].into_iter().filter_map(move |scenario| {
                report
                    .rounds
                    .iter()
                    .filter(|r| r.system == *sys && r.nodes == n)
                    .flat_map(|r| &r.partitions)
                    .find(|p| p.scenario == scenario && !p.samples.is_empty())
                    .map(|p| (sys.as_str(), p))
            })
        })
        .collect();
    let root = SVGBackend::new(path, (1100, 140 + 90 * runs.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (_, h) = root.dim_in_pixel();
    let (main, foot) = root.split_vertically(h - 30);
    let max_t = runs.iter().flat_map(|(_, p)| p.samples.last().map(|s| s.at)).fold(1.0f64, f64::max);
    let rows = runs.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&main)
        .caption(
            format!("Nodes answering as primary (0, 1, 2+) through a partition ({n} nodes; cut at 0, heal at the second mark)"),
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(20)
        .build_cartesian_2d(-0.6..max_t, -0.3..rows * 3.0)
        .map_err(err)?;
    chart.configure_mesh().x_desc("seconds from the cut").disable_y_axis().draw().map_err(err)?;
    for (k, (sys, p)) in runs.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let offset = (runs.len() - 1 - k) as f64 * 3.0;
        let points = step_line(&p.samples, |s| offset + s.primaries.len().min(2) as f64);
        let label = format!(
            "{sys}, {}: two primaries {}",
            p.scenario,
            p.two_primaries_s.map_or("-".into(), |t| format!("{t:.2} s"))
        );
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        for (at, style) in [(0.0, color.mix(0.6)), (p.held_s.unwrap_or(0.0), color.mix(0.3))] {
            chart
                .draw_series(LineSeries::new(vec![(at, offset - 0.2), (at, offset + 2.2)], style.stroke_width(1)))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    foot.draw_text(&caption(report), &("sans-serif", 11).into_text_style(&foot), (10, 8)).map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// `<name>-availability.svg`: through the fault schedule, whether some node answered 200 (per
/// system, one above the other), with the phases marked.
fn availability_plot(report: &DesignsReport, path: &Path) -> anyhow::Result<()> {
    let runs = &report.schedules;
    let root = SVGBackend::new(path, (1100, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (main, foot) = root.split_vertically(490);
    let max_t = runs.iter().flat_map(|r| r.samples.last().map(|s| s.at)).fold(1.0f64, f64::max);
    let rows = runs.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&main)
        .caption(
            "Primary service through the fault schedule: 1 = some node answers 200 (probe every 50 ms)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(20)
        .build_cartesian_2d(0.0..max_t * 1.02, -0.2..rows * 1.5)
        .map_err(err)?;
    chart.configure_mesh().x_desc("seconds from the start of the schedule").disable_y_axis().draw().map_err(err)?;
    if let Some(longest) = runs.iter().max_by_key(|r| r.phases.len()) {
        for p in &longest.phases {
            chart
                .draw_series(LineSeries::new(vec![(p.start_s, -0.2), (p.start_s, rows * 1.5)], BLACK.mix(0.25)))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    p.fault.clone(),
                    (p.start_s + 0.2, rows * 1.5 - 0.15),
                    ("sans-serif", 9).into_font(),
                )))
                .map_err(err)?;
        }
    }
    for (k, r) in runs.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let offset = (runs.len() - 1 - k) as f64 * 1.5;
        let points = step_line(&r.samples, |s| offset + f64::from(u8::from(!s.primaries.is_empty())));
        let label = format!(
            "{}: {} of probes answered",
            r.system,
            r.answered_all.map_or("-".into(), |v| format!("{:.1} %", v * 100.0))
        );
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    foot.draw_text(&caption(report), &("sans-serif", 11).into_text_style(&foot), (10, 8)).map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn failover_plot(report: &DesignsReport, path: &Path) -> anyhow::Result<()> {
    let n = report.options.sizes.iter().copied().min().unwrap_or(5);
    let rounds: Vec<&DesignRound> = report
        .systems
        .iter()
        .filter_map(|s| report.rounds.iter().find(|r| r.system == *s && r.nodes == n && !r.availability.is_empty()))
        .collect();
    let root = SVGBackend::new(path, (1000, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (main, foot) = root.split_vertically(490);
    let max_t = rounds.iter().flat_map(|r| r.availability.last().map(|s| s.at)).fold(1.0f64, f64::max);
    let rows = rounds.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&main)
        .caption(
            format!(
                "Primary service through a SIGKILL of the primary's node at 0 ({n} nodes): 1 = some node answers 200"
            ),
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(20)
        .build_cartesian_2d(-0.5..max_t, -0.2..rows * 1.5)
        .map_err(err)?;
    chart.configure_mesh().x_desc("seconds since SIGKILL").disable_y_axis().draw().map_err(err)?;
    for (k, r) in rounds.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let offset = (rounds.len() - 1 - k) as f64 * 1.5;
        let mut points = Vec::new();
        for w in r.availability.windows(2) {
            let y = offset + f64::from(u8::from(!w[0].primaries.is_empty()));
            points.push((w[0].at, y));
            points.push((w[1].at, y));
        }
        let label =
            format!("{}: unreachable {}", r.system, r.failover_gap_s.map_or("-".into(), |g| format!("{g:.2} s")));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        if let Some(d) = r.failover_detect_all_s {
            chart
                .draw_series(LineSeries::new(
                    vec![(d, offset - 0.1), (d, offset + 1.1)],
                    color.mix(0.5).stroke_width(1),
                ))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    foot.draw_text(
        &format!("thin marks: every node lists the node failed · {}", caption(report)),
        &("sans-serif", 11).into_text_style(&foot),
        (10, 8),
    )
    .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn resources_plot(report: &DesignsReport, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (main, foot) = root.split_vertically(470);
    let panels = main.split_evenly((1, 2));
    let total = |k: usize| ROWS.iter().filter(|(l, _, _)| l.starts_with("total")).nth(k).map(|r| r.2);
    for (panel, (title, unit, f)) in panels
        .iter()
        .zip([("Total RSS to serve N nodes", "MiB", total(0)), ("Total CPU to serve N nodes", "CPU s/min", total(1))])
    {
        let Some(f) = f else { continue };
        let series: Vec<(String, Vec<(f64, f64)>)> = report
            .systems
            .iter()
            .map(|s| {
                let pts =
                    report.options.sizes.iter().filter_map(|&n| Some((n as f64, report.median(s, n, f)?))).collect();
                (s.clone(), pts)
            })
            .filter(|(_, p): &(String, Vec<(f64, f64)>)| !p.is_empty())
            .collect();
        let max_n = report.options.sizes.iter().copied().max().unwrap_or(20) as f64;
        let max_y = series.iter().flat_map(|(_, p)| p.iter().map(|x| x.1)).fold(1e-3, f64::max);
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_n * 1.1, 0.0..max_y * 1.15)
            .map_err(err)?;
        chart.configure_mesh().x_desc("application nodes").y_desc(unit).draw().map_err(err)?;
        for (k, (name, pts)) in series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled()))).map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    foot.draw_text(&caption(report), &("sans-serif", 11).into_text_style(&foot), (10, 8)).map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(system: &str, kill: f64, gap: f64, rss: f64) -> DesignRound {
        DesignRound {
            system: system.into(),
            nodes: 5,
            kill_all_s: Some(kill),
            kill_catalog_s: system.starts_with("consul").then_some(kill + 0.2),
            failover_gap_s: Some(gap),
            failover_two_primaries_s: Some(0.0),
            client_rss_mib: vec![rss, rss],
            ..DesignRound::default()
        }
    }

    fn report(rounds: Vec<DesignRound>) -> DesignsReport {
        DesignsReport {
            stamp: Stamp::new("cluster-bench designs --quick"),
            options: DesignsOptions { sizes: vec![5], ..DesignsOptions::new(true) },
            systems: vec!["serf-agent".into(), "consul-lite".into(), "serf".into()],
            rounds,
            schedules: vec![],
            notes: vec![],
            conclusion: vec![],
        }
    }

    #[test]
    fn the_targets_compare_medians_and_say_met_or_missed() {
        let r = report(vec![
            round("serf-agent", 1.0, 1.2, 4.0),
            round("consul-lite", 1.4, 2.5, 7.0),
            round("serf", 5.0, 6.0, 20.0),
        ]);
        let t = r.targets();
        assert!(t.contains("(1.00 + 0.5 = 1.50 s): consul-lite lists it failed everywhere at 1.40 s, catalog critical at 1.60 s: missed"), "{t}");
        assert!(t.contains("(1.20 + 1 = 2.20 s): consul-lite 2.50 s with its agent's lock-delay: missed"), "{t}");
        assert!(t.contains("(6.0 MiB): 7.0 MiB (1.75×): missed"), "{t}");
        let md = r.markdown();
        assert!(
            md.contains("| SIGKILL of a node: every node lists it failed, s | 1.00 | 1.40 | 5.00 | 1.40 |"),
            "{md}"
        );
        assert!(md.contains("| RSS per client agent (serf-style: per agent), MiB | 4.0 (4.0–4.0) | 7.0 (7.0–7.0) | 20.0 (20.0–20.0) | 1.75 |"), "{md}");
    }

    fn s(at: f64, p: &[usize]) -> Sample {
        Sample { at, primaries: p.to_vec() }
    }

    #[test]
    fn partition_times_serf_style_each_side_keeps_a_primary() {
        // Node 0 primary, cut at 1.0; node 2 takes over at 2.5; healed at 5.0; node 2 steps down
        // at 6.0 and node 0 answers alone from then on.
        let samples = [
            s(0.5, &[0]),
            s(1.0, &[0]),
            s(2.0, &[0]),
            s(2.5, &[0, 2]),
            s(4.0, &[0, 2]),
            s(5.5, &[0, 2]),
            s(6.0, &[0]),
            s(8.0, &[0]),
            s(9.5, &[0]),
        ];
        let t = partition_times(&samples, 1.0, 5.0, &[0], 3.0);
        assert_eq!(t.new_primary_s, Some(1.5));
        assert_eq!(t.old_stopped_s, None);
        // 2.5 to 5.0 during the partition (the window from 4.0 is cut at the heal), 5.0 to 6.0 after.
        assert!((t.two_primaries_s - 2.5).abs() < 1e-9, "{t:?}");
        assert!((t.two_primaries_after_heal_s - 0.5).abs() < 1e-9, "{t:?}");
        assert_eq!(t.single_after_heal_s, Some(1.0));
        assert_eq!(t.settled_primary, Some(0));
        // Not yet settled: the single primary has not lasted 3 s by the last sample.
        assert_eq!(partition_times(&samples[..8], 1.0, 5.0, &[0], 3.0).single_after_heal_s, None);
    }

    #[test]
    fn partition_times_consul_style_the_minority_steps_down() {
        let samples = [s(0.0, &[1]), s(1.0, &[1]), s(2.2, &[]), s(3.5, &[3]), s(13.0, &[3]), s(16.5, &[3])];
        let t = partition_times(&samples, 1.0, 12.0, &[1], 3.0);
        assert!((t.old_stopped_s.unwrap() - 1.2).abs() < 1e-9, "{t:?}");
        assert_eq!(t.new_primary_s, Some(2.5));
        assert_eq!((t.two_primaries_s, t.two_primaries_after_heal_s), (0.0, 0.0));
        // Already single at the heal: settled with the first sample after it.
        assert_eq!(t.single_after_heal_s, Some(1.0));
        assert_eq!(t.settled_primary, Some(3));
        // No sample after the heal: nothing settled, nothing panics.
        let t = partition_times(&samples[..4], 1.0, 12.0, &[1], 3.0);
        assert_eq!((t.single_after_heal_s, t.settled_primary), (None, None));
    }

    #[test]
    fn netns_result_names() {
        assert_eq!(netns_name("designs"), "designs-netns");
        assert_eq!(netns_name("designs-quick"), "designs-netns-quick");
    }

    #[test]
    fn partitions_show_in_netns_reports_only() {
        let mut with = round("consul-lite", 1.4, 2.5, 7.0);
        with.partitions = vec![PartitionRun {
            scenario: CUT_NODE.into(),
            cut: vec!["node00".into()],
            old_primary: Some("node00".into()),
            held_s: Some(12.0),
            new_primary_s: Some(3.4),
            old_stopped_s: Some(1.3),
            two_primaries_s: Some(0.0),
            two_primaries_after_heal_s: Some(0.0),
            single_after_heal_s: Some(0.05),
            primary_after_heal: Some("node01".into()),
            ..PartitionRun::default()
        }];
        let mut r = report(vec![round("serf-agent", 1.0, 1.2, 4.0), with]);
        r.options.backend = Backend::Netns;
        let md = r.markdown();
        assert!(
            md.contains("| partition, primary's node cut off: cut-off primary stops answering, s | - | 1.30 | - | - |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| consul-lite | 5 | 0 | node00 (primary node00) | 12.00 | 3.40 | 1.30 | 0.00 | 0.00 | 0.05 | node01 |"
            ),
            "{md}"
        );
        assert!(md.contains("consul-lite at most 0.00 s over 1 partition(s) of 12 s: met"), "{md}");
        assert!(md.starts_with("# The two designs: serf-style against consul-style, in network namespaces"), "{md}");
        // The loopback report has none of it.
        r.options.backend = Backend::Loopback;
        r.rounds[1].partitions.clear();
        let md = r.markdown();
        assert!(
            !md.contains("partition,") && !md.contains("## Partitions") && md.contains("Loopback, 1 round(s)"),
            "{md}"
        );
    }

    #[test]
    fn a_missing_figure_gives_no_verdict() {
        let r = report(vec![round("serf-agent", 1.0, 1.2, 4.0)]);
        assert!(!r.targets().contains("met") && !r.targets().contains("missed"), "{}", r.targets());
    }
}
