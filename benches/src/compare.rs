//! `cluster-bench compare`: serf-agent and HashiCorp Serf measured side by side on this machine,
//! interleaved (round r runs every size with both systems, alternating which goes first), so
//! both see the same background load.
//!
//! One round of one system at one size is one fresh cluster:
//!
//! ```text
//!  setup ─▶ primary elected ─▶ steady state (RSS, CPU, packets) ─▶ user event to every handler
//!    ─▶ SIGINT node n-1 (leave), restart ─▶ SIGKILL node n-2, restart ─▶ SIGSTOP node n-3,
//!       SIGCONT ─▶ SIGKILL the primary while a client polls the primary service every 50 ms
//! ```
//!
//! Each restart waits until every node lists all n alive again, so every fault hits a full
//! cluster. Extra clusters are started (and stopped) only to reach `setup_tries` setup times.
//! With root and iptables, a further cluster per system and size runs under random loss to
//! count false failures. Results: `docs/results/compare.{json,md}` and SVG plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::availability::{outage, Probe, Sample};
use crate::cluster::{count_alive, poll_until, read_events, unix_nanos, Backend, Cluster, Propagation};
use crate::iptables::{self, Chain};
use crate::process::{RunDir, Signal};
use crate::stamp::{results_dir, Stamp};
use crate::stats::{ratio, Stat};
use crate::system::{default_net, locate_serf_agent, HashicorpSerf, SerfAgent, System, AGENT_BUILD};

/// Progress on stderr: an indicatif bar on a terminal, plain timestamped lines otherwise (a
/// hidden bar would swallow them).
#[derive(Debug)]
struct Progress {
    bar: ProgressBar,
    start: Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self { bar, start: Instant::now() }
    }

    fn step(&self, msg: String) {
        if self.bar.is_hidden() {
            eprintln!("[{:>6.1} s] {msg}", self.start.elapsed().as_secs_f64());
        } else {
            self.bar.set_message(msg);
        }
    }

    fn note(&self, msg: String) {
        if self.bar.is_hidden() {
            eprintln!("[{:>6.1} s] {msg}", self.start.elapsed().as_secs_f64());
        } else {
            self.bar.println(msg);
        }
    }

    fn inc(&self) {
        self.bar.inc(1);
    }
}

impl CompareOptions {
    /// Full rounds per system at size `n`.
    pub fn rounds_at(&self, n: usize) -> usize {
        match self.small_rounds {
            Some(r) if n <= 5 => r.max(1),
            _ => self.rounds,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareOptions {
    /// Cluster sizes (each at least 5).
    pub sizes: Vec<usize>,
    /// Full rounds per system and size.
    pub rounds: usize,
    /// Full rounds at sizes of 5 nodes or fewer, where a round is cheap and detection times vary
    /// most from round to round (`None`: as `rounds`).
    pub small_rounds: Option<usize>,
    /// Setup times per system and size (rounds count; extra clusters are only set up).
    pub setup_tries: usize,
    /// Length of the steady-state window (RSS, CPU, traffic).
    pub steady_secs: f64,
    /// The steady window starts no earlier than this after the first agent started: memberlist
    /// (Serf) runs its first periodic push-pull 30 to 60 s after start, so a window that starts
    /// earlier misses some of its TCP traffic and CPU.
    pub steady_after_secs: f64,
    /// Timing profile of both systems.
    pub profile: String,
    /// Length of the lossy run per system and size (0: none). Needs root and iptables.
    pub loss_secs: f64,
    /// Loss probability of that run.
    pub loss: f64,
    /// Where the agents run: loopback addresses, or one network namespace each (root).
    pub backend: Backend,
    /// Length of the partition (half the nodes cut off from the other half) after the lossy
    /// run, namespace backend only (0: none).
    pub partition_secs: f64,
    /// The serf-agent binary (default: built in the workspace).
    #[serde(skip)]
    pub agent_bin: Option<PathBuf>,
    /// Build serf-agent first.
    #[serde(skip)]
    pub build: bool,
    /// The serf binary (default: `serf` on PATH).
    #[serde(skip)]
    pub serf_bin: Option<PathBuf>,
    /// Measure serf-agent alone.
    pub ours_only: bool,
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

impl Default for CompareOptions {
    fn default() -> Self {
        Self::new(false)
    }
}

impl CompareOptions {
    /// The defaults of `compare` (`quick`: one round, 3 setups, a 10 s window, no lossy run).
    pub fn new(quick: bool) -> Self {
        Self {
            sizes: vec![5, 20, 50],
            rounds: if quick { 1 } else { 3 },
            small_rounds: if quick { None } else { Some(5) },
            setup_tries: if quick { 3 } else { 10 },
            steady_secs: if quick { 10.0 } else { 30.0 },
            steady_after_secs: if quick { 0.0 } else { 60.0 },
            profile: "lan".into(),
            loss_secs: if quick { 0.0 } else { 600.0 },
            loss: 0.1,
            backend: Backend::Loopback,
            partition_secs: if quick { 0.0 } else { 30.0 },
            agent_bin: None,
            build: true,
            serf_bin: None,
            ours_only: false,
            keep: false,
            out_dir: Some(results_dir()),
            name: if quick { "compare-quick".into() } else { "compare".into() },
            command: String::new(),
        }
    }
}

/// The measurements of one cluster (one system, one size, one round).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Round {
    /// System name.
    pub system: String,
    /// Cluster size.
    pub nodes: usize,
    /// Round number.
    pub round: usize,
    /// First start until every node lists all n alive, seconds.
    pub setup_s: Option<f64>,
    /// Resident memory per agent at the end of the steady window, MiB.
    pub rss_mib: Vec<f64>,
    /// Of which anonymous memory (heap, stacks), MiB.
    pub rss_anon_mib: Vec<f64>,
    /// CPU seconds per minute per agent over the steady window.
    pub cpu_s_per_min: Vec<f64>,
    /// UDP bytes sent per second per agent over the window (iptables; root only).
    pub udp_bytes_per_s: Vec<f64>,
    /// UDP packets sent per second per agent.
    pub udp_packets_per_s: Vec<f64>,
    /// Gossip TCP bytes per second per agent (cluster total / n).
    pub tcp_bytes_per_s: Option<f64>,
    /// Everything sent per second per agent, Ethernet bytes (namespace backend: veth counters).
    pub sent_bytes_per_s: Vec<f64>,
    /// Packets sent per second per agent (namespace backend).
    pub sent_packets_per_s: Vec<f64>,
    /// User event sent until the first node's handler ran, seconds.
    pub event_first_s: Option<f64>,
    /// ... until every node's handler had run.
    pub event_all_s: Option<f64>,
    /// SIGINT (graceful leave) until the first node lists the node as left.
    pub leave_first_s: Option<f64>,
    /// ... until every node does.
    pub leave_all_s: Option<f64>,
    /// SIGKILL until the first node lists the node as failed.
    pub kill_first_s: Option<f64>,
    /// ... until every node does.
    pub kill_all_s: Option<f64>,
    /// SIGKILL until every node's member-failed handler had run.
    pub kill_handler_all_s: Option<f64>,
    /// Per node: its member-failed handler ran this long after its member list showed the
    /// failure (negative values are within the poll resolution).
    pub handler_delay_s: Vec<f64>,
    /// SIGSTOP until the first node lists the node as failed.
    pub stop_first_s: Option<f64>,
    /// ... until every node does.
    pub stop_all_s: Option<f64>,
    /// SIGCONT until every node lists the stopped node alive again.
    pub stop_recovered_s: Option<f64>,
    /// SIGKILL of the primary until every node lists it failed.
    pub failover_detect_all_s: Option<f64>,
    /// SIGKILL of the primary until a client polling every 50 ms gets 200 from a new primary.
    pub failover_gap_s: Option<f64>,
    /// Who took over.
    pub new_primary: Option<String>,
    /// Seconds with two nodes answering as primary during the failover.
    pub failover_two_primaries_s: Option<f64>,
    /// Average time of one member-list sweep over all nodes (the resolution of the times above).
    pub poll_resolution_s: Option<f64>,
    /// The client's samples through the failover, in seconds from the kill.
    pub availability: Vec<Sample>,
    /// Steps in which some node never showed what the step waited for, each with those nodes
    /// and what they showed last (why a figure above is missing).
    pub incomplete: Vec<String>,
    /// What went wrong, if anything (the round stops at the first error).
    pub error: Option<String>,
}

/// One setup time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupTry {
    /// System.
    pub system: String,
    /// Size.
    pub nodes: usize,
    /// Seconds, or `None` when it failed.
    pub secs: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A cluster left running under random loss.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LossRun {
    /// System.
    pub system: String,
    /// Size.
    pub nodes: usize,
    /// Loss probability.
    pub loss: f64,
    /// Seconds under loss.
    pub secs: f64,
    /// member-failed events (an observer declaring a member failed) while nothing failed.
    pub false_failures: usize,
    /// Distinct members declared failed at least once.
    pub members_declared: usize,
    /// Length of the partition that followed (namespace backend), seconds.
    pub partition_secs: Option<f64>,
    /// Seconds during which two or more nodes answered as primary (partition and healing).
    pub two_primaries_s: Option<f64>,
    /// From the end of the partition until one primary remained.
    pub single_primary_after_heal_s: Option<f64>,
    /// Failure, if any.
    pub error: Option<String>,
    /// Failure of the partition measurement, if any (the false-failure count still stands).
    #[serde(default)]
    pub partition_error: Option<String>,
}

/// A system as run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemInfo {
    /// Name.
    pub name: String,
    /// `version` output, first line.
    pub version: String,
    /// How its primary fails over.
    pub failover: String,
}

/// Everything `compare` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareReport {
    /// Command and machine.
    pub stamp: Stamp,
    /// Options.
    pub options: CompareOptions,
    /// The systems.
    pub systems: Vec<SystemInfo>,
    /// Every round.
    pub rounds: Vec<Round>,
    /// Every setup time (rounds included).
    pub setups: Vec<SetupTry>,
    /// Lossy runs.
    pub loss_runs: Vec<LossRun>,
    /// Things the reader must know (a missing system, skipped parts).
    pub notes: Vec<String>,
}

fn version_of(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_owned())
        .unwrap_or_default()
}

/// Run the comparison. Progress on stderr; the tables on stdout; files when `out_dir` is set.
pub fn run(o: &CompareOptions) -> anyhow::Result<CompareReport> {
    anyhow::ensure!(!o.sizes.is_empty() && o.sizes.iter().all(|&n| (5..=240).contains(&n)), "sizes must be 5 to 240");
    let stamp = Stamp::new(&o.command);
    let mut notes = Vec::new();
    let ours = SerfAgent { bin: locate_serf_agent(o.agent_bin.as_deref(), o.build)? };
    if o.agent_bin.is_none() {
        notes.push(format!("serf-agent as the harness builds it: `{AGENT_BUILD}`"));
    }
    let serf = if o.ours_only {
        notes.push("HashiCorp Serf not measured (--ours-only).".to_owned());
        None
    } else {
        let found = match &o.serf_bin {
            Some(p) => Some(HashicorpSerf::new(p.clone())),
            None => HashicorpSerf::find(),
        };
        if found.is_none() {
            let msg = "HashiCorp Serf NOT FOUND (no `serf` on PATH): measuring serf-agent alone. \
                       Install it with `sudo benches/setup.sh` (Debian package `serf`) or pass --serf-bin.";
            eprintln!("\n*** {msg}\n");
            notes.push(msg.to_owned());
        }
        found
    };
    let mut systems: Vec<&dyn System> = vec![&ours];
    let mut infos =
        vec![SystemInfo { name: ours.name().into(), version: version_of(&ours.bin), failover: ours.failover().into() }];
    if let Some(s) = &serf {
        systems.push(s);
        infos.push(SystemInfo { name: s.name().into(), version: version_of(&s.bin), failover: s.failover().into() });
    }
    if o.backend == Backend::Netns {
        anyhow::ensure!(crate::netns::available(), "the namespace backend needs root, ip and iptables");
    }
    let acct = if o.backend == Backend::Loopback && iptables::available() {
        Some(Chain::new("A")?)
    } else {
        if o.backend == Backend::Loopback {
            notes.push("Traffic per agent not measured: needs root and iptables.".to_owned());
        }
        None
    };
    let loss_possible = (o.loss_secs > 0.0 || (o.backend == Backend::Netns && o.partition_secs > 0.0))
        && (acct.is_some() || o.backend == Backend::Netns);
    if o.loss_secs > 0.0 && !loss_possible {
        notes.push("False failures under loss not measured: needs root and iptables.".to_owned());
    }
    if o.backend == Backend::Loopback && o.partition_secs > 0.0 {
        notes.push(
            "Two primaries during a partition not measured: on loopback a partition cannot be cut for TCP \
             (dialing agents use 127.0.0.1); use --backend netns."
                .to_owned(),
        );
    }
    let dir = RunDir::new("compare", o.keep)?;

    let max_rounds = o.sizes.iter().map(|&n| o.rounds_at(n)).max().unwrap_or(0);
    let extra_setups = |n: usize| o.setup_tries.saturating_sub(o.rounds_at(n));
    let max_extra = o.sizes.iter().map(|&n| extra_setups(n)).max().unwrap_or(0);
    let per_system: usize =
        o.sizes.iter().map(|&n| o.rounds_at(n) + extra_setups(n) + usize::from(loss_possible)).sum();
    let pb = Progress::new(per_system * systems.len());
    let order = |k: usize| -> Vec<&dyn System> {
        let mut v = systems.clone();
        if k % 2 == 1 {
            v.reverse();
        }
        v
    };

    let mut rounds = Vec::new();
    let mut setups = Vec::new();
    for r in 0..max_rounds {
        for (si, &n) in o.sizes.iter().enumerate().filter(|&(_, &n)| r < o.rounds_at(n)) {
            for sys in order(r + si) {
                let base = dir.path().join(format!("{}-{n}-r{r}", sys.name()));
                let round = measure_round(sys, n, r, o, &base, acct.as_ref(), &pb);
                if let Some(e) = &round.error {
                    pb.note(format!("{} n={n} round {r}: {e}", sys.name()));
                }
                setups.push(SetupTry {
                    system: sys.name().into(),
                    nodes: n,
                    secs: round.setup_s,
                    error: round.error.clone().filter(|_| round.setup_s.is_none()),
                });
                rounds.push(round);
                pb.inc();
            }
        }
    }
    for t in 0..max_extra {
        for (si, &n) in o.sizes.iter().enumerate().filter(|&(_, &n)| t < extra_setups(n)) {
            for sys in order(t + si + o.rounds_at(n)) {
                pb.step(format!("{} n={n}: setup try {}", sys.name(), o.rounds_at(n) + t + 1));
                let base = dir.path().join(format!("{}-{n}-s{t}", sys.name()));
                let result = Cluster::with_backend(sys, n, &base, &o.profile, o.backend)
                    .and_then(|mut c| c.start_all(setup_timeout(n)));
                if let Err(e) = &result {
                    pb.note(format!("{} n={n} setup: {e}", sys.name()));
                }
                setups.push(SetupTry {
                    system: sys.name().into(),
                    nodes: n,
                    secs: result.as_ref().ok().map(Duration::as_secs_f64),
                    error: result.err().map(|e| e.to_string()),
                });
                if !o.keep {
                    let _ = std::fs::remove_dir_all(&base);
                }
                pb.inc();
            }
        }
    }
    let loss_runs = if loss_possible {
        let faults = if o.backend == Backend::Loopback { Some(Chain::on_input("F")?) } else { None };
        measure_losses(&systems, o, dir.path(), faults.as_ref(), &pb)
    } else {
        Vec::new()
    };
    pb.bar.finish_and_clear();
    let report = CompareReport { stamp, options: o.clone(), systems: infos, rounds, setups, loss_runs, notes };
    if let Some(out) = &o.out_dir {
        std::fs::create_dir_all(out)?;
        std::fs::write(out.join(format!("{}.json", o.name)), serde_json::to_string_pretty(&report)? + "\n")?;
        std::fs::write(out.join(format!("{}.md", o.name)), report.markdown())?;
        crate::plots::write_all(&report, out)?;
        eprintln!("wrote {}/{}.md, .json and plots", out.display(), o.name);
        if *out == results_dir() {
            let doc = crate::stamp::benchmarks_doc();
            if crate::stamp::splice_results(&doc, &o.name, &report.doc_section())? {
                eprintln!("updated the {} section of {}", o.name, doc.display());
            }
        }
    }
    Ok(report)
}

/// Re-render the Markdown report and the plots of a `compare` JSON file next to it (the stamp
/// stays that of the run that measured the data).
pub fn render(json: &Path) -> anyhow::Result<CompareReport> {
    let report: CompareReport = serde_json::from_str(&std::fs::read_to_string(json)?)?;
    let dir = json.parent().unwrap_or(Path::new("."));
    std::fs::write(json.with_extension("md"), report.markdown())?;
    crate::plots::write_all(&report, dir)?;
    Ok(report)
}

fn setup_timeout(n: usize) -> Duration {
    Duration::from_secs(60 + 3 * n as u64)
}

fn measure_round(
    sys: &dyn System,
    n: usize,
    round: usize,
    o: &CompareOptions,
    base: &Path,
    acct: Option<&Chain>,
    pb: &Progress,
) -> Round {
    let mut r = Round { system: sys.name().into(), nodes: n, round, ..Round::default() };
    if let Err(e) = round_steps(sys, &mut r, o, base, acct, pb) {
        r.error = Some(format!("{e:#}"));
    }
    if !o.keep {
        let _ = std::fs::remove_dir_all(base);
    }
    r
}

/// Wait until every running node lists all of them alive.
fn wait_converged(c: &Cluster<'_>, timeout: Duration) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let running = c.running();
    let n = running.len();
    poll_until(timeout, Duration::from_millis(100), || {
        c.sweep(&running).iter().all(|(_, v)| v.as_ref().is_some_and(|m| count_alive(m) == n)).then_some(())
    })
    .ok_or_else(|| anyhow::anyhow!("the cluster did not converge again within {timeout:?}"))?;
    Ok(t0.elapsed())
}

fn single_primary(c: &Cluster<'_>, timeout: Duration) -> anyhow::Result<usize> {
    poll_until(timeout, Duration::from_millis(100), || {
        let p = c.primaries();
        (p.len() == 1).then(|| p[0])
    })
    .ok_or_else(|| anyhow::anyhow!("no single primary within {timeout:?} (now: {:?})", c.primaries()))
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

/// Record (and print) which nodes never showed what `step` waited for.
fn note_missing(r: &mut Round, c: &Cluster<'_>, step: &str, p: &Propagation, pb: &Progress) {
    if p.missing.is_empty() {
        return;
    }
    let who: Vec<String> = p.missing.iter().map(|(o, status)| format!("{} ({status})", c.nodes[*o].name)).collect();
    let line = format!("{step}: not seen by {}", who.join(", "));
    pb.note(format!("{} n={} round {}: {line}", r.system, r.nodes, r.round));
    r.incomplete.push(line);
}

fn round_steps(
    sys: &dyn System,
    r: &mut Round,
    o: &CompareOptions,
    base: &Path,
    acct: Option<&Chain>,
    pb: &Progress,
) -> anyhow::Result<()> {
    let n = r.nodes;
    let round = r.round;
    let step = |what: &str| pb.step(format!("{} n={n} round {round}: {what}", sys.name()));
    let mut c = Cluster::with_backend(sys, n, base, &o.profile, o.backend)?;
    step("setup");
    let first_start = Instant::now();
    r.setup_s = Some(c.start_all(setup_timeout(n))?.as_secs_f64());
    step("primary election");
    single_primary(&c, Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(2));

    let settle = Duration::from_secs_f64(o.steady_after_secs).saturating_sub(first_start.elapsed());
    if !settle.is_zero() {
        step(&format!(
            "waiting {:.0} s (the steady window starts {:.0} s after the first start)",
            settle.as_secs_f64(),
            o.steady_after_secs
        ));
        std::thread::sleep(settle);
    }
    step("steady state");
    let ips: Vec<_> = c.nodes.iter().map(|x| x.ip).collect();
    if let Some(chain) = acct {
        iptables::count_gossip(chain, &ips, &c.loopback_subnet())?;
    }
    let sent0 = c.topology().map(|t| t.sent());
    let cpu0: Vec<_> = (0..n).map(|i| c.agent(i).and_then(|a| a.cpu_time())).collect();
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(o.steady_secs));
    let window = w0.elapsed().as_secs_f64();
    for (i, before) in cpu0.iter().enumerate() {
        let agent = c.agent(i);
        if let (Some(b), Some(a)) = (before, agent.and_then(|a| a.cpu_time())) {
            r.cpu_s_per_min.push((a - *b).as_secs_f64() / window * 60.0);
        }
        if let Some(rss) = agent.and_then(|a| a.rss_bytes()) {
            r.rss_mib.push(rss as f64 / (1024.0 * 1024.0));
        }
        if let Some(anon) = agent.and_then(|a| a.rss_anon_bytes()) {
            r.rss_anon_mib.push(anon as f64 / (1024.0 * 1024.0));
        }
    }
    if let (Some(before), Some(t)) = (sent0, c.topology()) {
        for ((p0, b0), (p1, b1)) in before.iter().zip(t.sent()) {
            r.sent_packets_per_s.push(p1.saturating_sub(*p0) as f64 / window);
            r.sent_bytes_per_s.push(b1.saturating_sub(*b0) as f64 / window);
        }
    }
    if let Some(chain) = acct {
        let counters = chain.counters()?;
        for &(pkts, bytes) in counters.iter().take(n) {
            r.udp_packets_per_s.push(pkts as f64 / window);
            r.udp_bytes_per_s.push(bytes as f64 / window);
        }
        let tcp: u64 = counters.iter().skip(n).map(|&(_, b)| b).sum();
        r.tcp_bytes_per_s = Some(tcp as f64 / window / n as f64);
        chain.flush()?;
    }

    step("user event");
    let name = format!("bench{}", r.round);
    let sent = unix_nanos();
    sys.user_event(&c.nodes[1], &name)?;
    let running = c.running();
    let times = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let t: Vec<Option<f64>> = running
            .iter()
            .map(|&i| {
                read_events(&c.nodes[i].events_file())
                    .into_iter()
                    .find(|(k, nm, _)| k == "user" && *nm == name)
                    .map(|(_, _, ts)| ts.saturating_sub(sent) as f64 / 1e9)
            })
            .collect();
        t.iter().all(Option::is_some).then(|| t.into_iter().flatten().collect::<Vec<f64>>())
    });
    if let Some(t) = times {
        r.event_first_s = t.iter().copied().reduce(f64::min);
        r.event_all_s = t.iter().copied().reduce(f64::max);
    } else {
        let lacking: Vec<&str> = running
            .iter()
            .filter(|&&i| !read_events(&c.nodes[i].events_file()).iter().any(|(k, nm, _)| k == "user" && *nm == name))
            .map(|&i| c.nodes[i].name.as_str())
            .collect();
        let line = format!("user event {name}: no handler record within 20 s on {}", lacking.join(", "));
        pb.note(format!("{} n={n} round {}: {line}", sys.name(), r.round));
        r.incomplete.push(line);
    }

    step("leave (SIGINT)");
    let leaver = n - 1;
    let others: Vec<usize> = c.running().into_iter().filter(|&i| i != leaver).collect();
    let subject = c.nodes[leaver].name.clone();
    let t0 = Instant::now();
    c.signal(leaver, Signal::Interrupt)?;
    let p = c.wait_for_status(&subject, &["left"], &others, t0, Duration::from_secs(60), |_, _, _| {});
    note_missing(r, &c, &format!("leave of {subject} (want: left)"), &p, pb);
    (r.leave_first_s, r.leave_all_s) = (secs(p.first), secs(p.all));
    let mut resolutions = vec![p.resolution.as_secs_f64()];
    c.wait_exit(leaver, Duration::from_secs(20));
    c.start_node(leaver, Some(0), true)?;
    wait_converged(&c, Duration::from_secs(90))?;

    step("crash (SIGKILL)");
    let victim = n - 2;
    let others: Vec<usize> = c.running().into_iter().filter(|&i| i != victim).collect();
    let subject = c.nodes[victim].name.clone();
    let kill_unix = unix_nanos();
    let t0 = Instant::now();
    c.signal(victim, Signal::Kill)?;
    let p = c.wait_for_status(&subject, &["failed"], &others, t0, Duration::from_secs(90), |_, _, _| {});
    note_missing(r, &c, &format!("SIGKILL of {subject} (want: failed)"), &p, pb);
    (r.kill_first_s, r.kill_all_s) = (secs(p.first), secs(p.all));
    resolutions.push(p.resolution.as_secs_f64());
    // The handlers may run a little after the member list changed (Serf coalesces member events).
    let handler_times = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let t: Vec<Option<f64>> = others
            .iter()
            .map(|&i| {
                read_events(&c.nodes[i].events_file())
                    .into_iter()
                    .find(|(k, nm, ts)| k == "member-failed" && *nm == subject && *ts >= kill_unix)
                    .map(|(_, _, ts)| (ts - kill_unix) as f64 / 1e9)
            })
            .collect();
        t.iter().all(Option::is_some).then_some(t)
    });
    if let Some(t) = handler_times {
        r.kill_handler_all_s = t.iter().flatten().copied().reduce(f64::max);
        for ((_, seen), h) in p.seen.iter().zip(&t) {
            if let (Some(seen), Some(h)) = (seen, h) {
                r.handler_delay_s.push(h - seen.as_secs_f64());
            }
        }
    }
    c.start_node(victim, Some(0), true)?;
    wait_converged(&c, Duration::from_secs(90))?;

    step("stall (SIGSTOP)");
    let stopped = n - 3;
    let others: Vec<usize> = c.running().into_iter().filter(|&i| i != stopped).collect();
    let subject = c.nodes[stopped].name.clone();
    let t0 = Instant::now();
    c.signal(stopped, Signal::Stop)?;
    let p = c.wait_for_status(&subject, &["failed"], &others, t0, Duration::from_secs(90), |_, _, _| {});
    note_missing(r, &c, &format!("SIGSTOP of {subject} (want: failed)"), &p, pb);
    (r.stop_first_s, r.stop_all_s) = (secs(p.first), secs(p.all));
    resolutions.push(p.resolution.as_secs_f64());
    c.signal(stopped, Signal::Cont)?;
    let t1 = Instant::now();
    let p = c.wait_for_status(&subject, &["alive"], &others, t1, Duration::from_secs(90), |_, _, _| {});
    note_missing(r, &c, &format!("SIGCONT of {subject} (want: alive)"), &p, pb);
    r.stop_recovered_s = secs(p.all);
    wait_converged(&c, Duration::from_secs(90))?;

    step("primary failover (SIGKILL of the primary)");
    let primary = single_primary(&c, Duration::from_secs(30))?;
    let others: Vec<usize> = c.running().into_iter().filter(|&i| i != primary).collect();
    let subject = c.nodes[primary].name.clone();
    let probe = Probe::default();
    let nodes = c.nodes.clone();
    let t0 = Instant::now();
    let c_ref = &mut c;
    let detect = std::thread::scope(|scope| {
        scope.spawn(|| probe.run(sys, &nodes, t0, Duration::from_millis(50), Duration::from_secs(150), |_, _| {}));
        // Let the probe take a few samples with the old primary.
        std::thread::sleep(Duration::from_millis(300));
        // A client gets nothing from a killed node: stop asking it as it dies.
        probe.exclude(primary);
        let killed_at = t0.elapsed();
        let result = c_ref.signal(primary, Signal::Kill).map(|()| {
            let t_kill = t0 + killed_at;
            c_ref.wait_for_status(&subject, &["failed"], &others, t_kill, Duration::from_secs(90), |_, _, _| {})
        });
        let _ = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
            probe
                .samples()
                .iter()
                .any(|s| s.at > killed_at.as_secs_f64() && s.primaries.iter().any(|&p| p != primary))
                .then_some(())
        });
        std::thread::sleep(Duration::from_millis(300));
        probe.stop();
        result.map(|p| (p, killed_at))
    });
    let (p, killed_at) = detect?;
    note_missing(r, &c, &format!("SIGKILL of the primary {subject} (want: failed)"), &p, pb);
    resolutions.push(p.resolution.as_secs_f64());
    r.failover_detect_all_s = secs(p.all);
    let samples = probe.samples();
    let out = outage(&samples, killed_at.as_secs_f64(), primary);
    r.failover_gap_s = out.unavailable;
    r.failover_two_primaries_s = Some(out.split_brain);
    r.new_primary = samples
        .iter()
        .filter(|s| s.at > killed_at.as_secs_f64())
        .find_map(|s| s.primaries.iter().copied().find(|&p| p != primary))
        .map(|i| c.nodes[i].name.clone());
    // Re-based on the kill, for the availability plot.
    let k = killed_at.as_secs_f64();
    r.availability = samples.into_iter().map(|s| Sample { at: s.at - k, primaries: s.primaries }).collect();
    r.poll_resolution_s = Stat::of(resolutions).map(|s| s.median);
    step("teardown");
    Ok(())
}

/// The lossy runs: one further cluster per system and size, all running at once, each on a
/// network of its own, so that a single window of `loss_secs` puts both systems under the same
/// loss at the same time (and a 10-minute window costs 10 minutes, not 10 per cluster). Every
/// `member-failed` event a handler records in the window is false, since nothing failed. With
/// the namespace backend, each cluster is then partitioned in turn.
fn measure_losses(
    systems: &[&dyn System],
    o: &CompareOptions,
    dir: &Path,
    chain: Option<&Chain>,
    pb: &Progress,
) -> Vec<LossRun> {
    let mut runs = Vec::new();
    let mut clusters = Vec::new();
    for (si, &n) in o.sizes.iter().enumerate() {
        for &sys in systems {
            let mut run = LossRun {
                system: sys.name().into(),
                nodes: n,
                loss: o.loss,
                secs: 0.0,
                false_failures: 0,
                members_declared: 0,
                partition_secs: None,
                two_primaries_s: None,
                single_primary_after_heal_s: None,
                error: None,
                partition_error: None,
            };
            // Networks 10 and 11 are the rounds'; each lossy cluster takes the next free pair.
            let net = default_net(sys.id()) + 2 * (si as u8 + 1);
            let base = dir.join(format!("{}-{n}-loss", sys.name()));
            pb.step(format!("{} n={n}: setup for the lossy run (127.0.{net}.x / 10.213.{net}.x)", sys.name()));
            let started = Cluster::on_net(sys, n, &base, &o.profile, o.backend, net).and_then(|mut c| {
                c.start_all(setup_timeout(n))?;
                single_primary(&c, Duration::from_secs(30))?;
                Ok(c)
            });
            match started {
                Ok(c) => clusters.push((runs.len(), c)),
                Err(e) => {
                    pb.note(format!("{} n={n} lossy run: {e:#}", sys.name()));
                    run.error = Some(format!("{e:#}"));
                }
            }
            runs.push(run);
        }
    }
    if o.loss_secs > 0.0 && !clusters.is_empty() {
        if let Err(e) = lossy_window(&mut runs, &clusters, o, chain, pb) {
            pb.note(format!("lossy window: {e:#}"));
            for (k, _) in &clusters {
                runs[*k].error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    if let Some(chain) = chain {
        let _ = chain.flush();
    }
    let not_started = runs.len() - clusters.len();
    for (k, mut c) in clusters {
        let run = &mut runs[k];
        if o.partition_secs > 0.0 && c.topology().is_some() && run.error.is_none() {
            let sys = c.system();
            if let Err(e) = measure_partition(&c, sys, o, run, pb) {
                pb.note(format!("{} n={} partition: {e:#}", sys.name(), run.nodes));
                run.partition_error = Some(format!("{e:#}"));
            }
        }
        c.shutdown();
        pb.inc();
    }
    // Runs that failed to start still count in the progress total.
    for _ in 0..not_started {
        pb.inc();
    }
    if !o.keep {
        for r in &runs {
            let _ = std::fs::remove_dir_all(dir.join(format!("{}-{}-loss", r.system, r.nodes)));
        }
    }
    runs
}

/// Put every cluster under loss for `loss_secs`, lift it, and count the false failures.
fn lossy_window(
    runs: &mut [LossRun],
    clusters: &[(usize, Cluster<'_>)],
    o: &CompareOptions,
    chain: Option<&Chain>,
    pb: &Progress,
) -> anyhow::Result<()> {
    let before = unix_nanos();
    for (_, c) in clusters {
        match (c.topology(), chain) {
            (Some(t), _) => t.set_loss(o.loss)?,
            (None, Some(chain)) => iptables::random_loss(chain, &c.loopback_subnet(), o.loss)?,
            (None, None) => anyhow::bail!("no way to make loss here"),
        }
    }
    let t0 = Instant::now();
    let until = Duration::from_secs_f64(o.loss_secs);
    while t0.elapsed() < until {
        pb.step(format!(
            "{} clusters at {:.0}% loss, {:.0}/{:.0} s",
            clusters.len(),
            o.loss * 100.0,
            t0.elapsed().as_secs_f64(),
            o.loss_secs
        ));
        std::thread::sleep(Duration::from_secs(1).min(until.saturating_sub(t0.elapsed())));
    }
    let secs = t0.elapsed().as_secs_f64();
    for (_, c) in clusters {
        if let Some(t) = c.topology() {
            t.heal()?;
        }
    }
    if let Some(chain) = chain {
        chain.flush()?;
    }
    for (k, c) in clusters {
        let run = &mut runs[*k];
        run.secs = secs;
        let mut declared = std::collections::BTreeSet::new();
        for node in &c.nodes {
            for (kind, name, ts) in read_events(&node.events_file()) {
                if kind == "member-failed" && ts >= before {
                    run.false_failures += 1;
                    declared.insert(name);
                }
            }
        }
        run.members_declared = declared.len();
    }
    Ok(())
}

/// Cut the first half of the nodes off from the second half for `partition_secs` while a client
/// polls the primary service; then heal and wait for a single primary.
fn measure_partition(
    c: &Cluster<'_>,
    sys: &dyn System,
    o: &CompareOptions,
    run: &mut LossRun,
    pb: &Progress,
) -> anyhow::Result<()> {
    let n = c.len();
    let t = c.topology().ok_or_else(|| anyhow::anyhow!("partitions need the namespace backend"))?;
    pb.step(format!("{} n={n}: converging before the partition", sys.name()));
    wait_converged(c, Duration::from_secs(120))?;
    single_primary(c, Duration::from_secs(30))?;
    let a: Vec<usize> = (0..n / 2).collect();
    let b: Vec<usize> = (n / 2..n).collect();
    let probe = Probe::default();
    let nodes = c.nodes.clone();
    let t0 = Instant::now();
    let healed = std::thread::scope(|scope| -> anyhow::Result<(f64, Option<f64>)> {
        scope.spawn(|| probe.run(sys, &nodes, t0, Duration::from_millis(50), Duration::from_secs(600), |_, _| {}));
        let result = (|| -> anyhow::Result<(f64, Option<f64>)> {
            let cut = Instant::now();
            t.partition(&a, &b)?;
            pb.note(format!("{} n={n}: partition cut in {:.2} s", sys.name(), cut.elapsed().as_secs_f64()));
            let until = Duration::from_secs_f64(o.partition_secs);
            while t0.elapsed() < until {
                pb.step(format!(
                    "{} n={n}: partitioned, {:.0}/{:.0} s",
                    sys.name(),
                    t0.elapsed().as_secs_f64(),
                    o.partition_secs
                ));
                std::thread::sleep(Duration::from_secs(1).min(until.saturating_sub(t0.elapsed())));
            }
            t.heal()?;
            let healed_at = t0.elapsed().as_secs_f64();
            pb.step(format!("{} n={n}: healed, waiting for one primary", sys.name()));
            let single = poll_until(Duration::from_secs(120), Duration::from_millis(100), || {
                probe.samples().last().filter(|s| s.at > healed_at && s.primaries.len() == 1).map(|s| s.at - healed_at)
            });
            Ok((healed_at, single))
        })();
        probe.stop();
        result
    });
    let (healed_at, single) = healed?;
    let samples = probe.samples();
    // `+ 0.0` turns the empty sum's -0.0 into 0.0.
    let two: f64 =
        samples.windows(2).filter(|w| w[0].primaries.len() >= 2).map(|w| w[1].at - w[0].at).sum::<f64>() + 0.0;
    run.partition_secs = Some(healed_at);
    run.two_primaries_s = Some(two);
    run.single_primary_after_heal_s = single;
    Ok(())
}

/// One row of the results table: a label, decimals, and the values of a round.
struct Metric {
    label: &'static str,
    decimals: usize,
    values: fn(&Round) -> Vec<f64>,
}

fn one(v: Option<f64>) -> Vec<f64> {
    v.into_iter().collect()
}

const METRICS: &[Metric] = &[
    Metric { label: "detection after SIGKILL, first node (s)", decimals: 2, values: |r| one(r.kill_first_s) },
    Metric { label: "detection after SIGKILL, all nodes (s)", decimals: 2, values: |r| one(r.kill_all_s) },
    Metric { label: "detection after SIGSTOP, first node (s)", decimals: 2, values: |r| one(r.stop_first_s) },
    Metric { label: "detection after SIGSTOP, all nodes (s)", decimals: 2, values: |r| one(r.stop_all_s) },
    Metric {
        label: "stopped node alive again after SIGCONT, all nodes (s)",
        decimals: 2,
        values: |r| one(r.stop_recovered_s),
    },
    Metric { label: "leave propagation, first node (s)", decimals: 2, values: |r| one(r.leave_first_s) },
    Metric { label: "leave propagation, all nodes (s)", decimals: 2, values: |r| one(r.leave_all_s) },
    Metric { label: "user event to every node's handler (s)", decimals: 3, values: |r| one(r.event_all_s) },
    Metric {
        label: "member-failed handler after the member list changed, per node (s)",
        decimals: 2,
        values: |r| r.handler_delay_s.clone(),
    },
    Metric {
        label: "SIGKILL until every node's member-failed handler ran (s)",
        decimals: 2,
        values: |r| one(r.kill_handler_all_s),
    },
    Metric {
        label: "primary failover: SIGKILL until all nodes list it failed (s)",
        decimals: 2,
        values: |r| one(r.failover_detect_all_s),
    },
    Metric { label: "primary failover: service unreachable (s)", decimals: 2, values: |r| one(r.failover_gap_s) },
    Metric { label: "RSS per agent (MiB)", decimals: 1, values: |r| r.rss_mib.clone() },
    Metric { label: "of which anonymous (heap, stacks) (MiB)", decimals: 1, values: |r| r.rss_anon_mib.clone() },
    Metric { label: "CPU per agent (s per minute)", decimals: 3, values: |r| r.cpu_s_per_min.clone() },
    Metric { label: "UDP sent per agent (bytes/s)", decimals: 0, values: |r| r.udp_bytes_per_s.clone() },
    Metric { label: "UDP sent per agent (packets/s)", decimals: 1, values: |r| r.udp_packets_per_s.clone() },
    Metric {
        label: "gossip TCP per agent (bytes/s, cluster total / n)",
        decimals: 0,
        values: |r| one(r.tcp_bytes_per_s),
    },
    Metric {
        label: "sent per agent, everything (bytes/s, Ethernet)",
        decimals: 0,
        values: |r| r.sent_bytes_per_s.clone(),
    },
    Metric { label: "sent per agent, everything (packets/s)", decimals: 1, values: |r| r.sent_packets_per_s.clone() },
];

impl CompareReport {
    fn system_names(&self) -> (String, Option<String>) {
        let ours = self.systems.first().map_or("serf-agent".to_owned(), |s| s.name.clone());
        (ours, self.systems.get(1).map(|s| s.name.clone()))
    }

    /// Pooled values of a metric for a system and size.
    fn stat(&self, system: &str, n: usize, values: fn(&Round) -> Vec<f64>) -> Option<Stat> {
        Stat::of(self.rounds.iter().filter(|r| r.system == system && r.nodes == n).flat_map(values))
    }

    fn setup_stat(&self, system: &str, n: usize) -> Option<Stat> {
        Stat::of(self.setups.iter().filter(|s| s.system == system && s.nodes == n).filter_map(|s| s.secs))
    }

    fn loss_run(&self, system: &str, n: usize) -> Option<&LossRun> {
        self.loss_runs.iter().find(|l| l.system == system && l.nodes == n && l.error.is_none())
    }

    /// The Markdown report: stamp, notes, one table per size, the targets.
    pub fn markdown(&self) -> String {
        let (ours, theirs) = self.system_names();
        let mut s = String::new();
        let _ = writeln!(s, "# serf-agent and HashiCorp Serf side by side\n");
        s.push_str(&self.stamp.markdown());
        let o = &self.options;
        let _ = writeln!(
            s,
            "- {} round(s) per system and size{}, interleaved; {} setup tries; steady window {:.0} s starting at least {:.0} s after the first start; profile `{}`; {}",
            o.rounds,
            match o.small_rounds {
                Some(k) if k != o.rounds && o.sizes.iter().any(|&n| n <= 5) => format!(" ({k} at 5 nodes)"),
                _ => String::new(),
            },
            o.setup_tries,
            o.steady_secs,
            o.steady_after_secs,
            o.profile,
            match o.backend {
                Backend::Loopback => "loopback backend (127.0.10.x ours, 127.0.11.x Serf)",
                Backend::Netns => "namespace backend (one network namespace per agent on a bridge; 10.213.10.x ours, 10.213.11.x Serf)",
            }
        );
        for i in &self.systems {
            let _ = writeln!(s, "- `{}`: {} — primary failover: {}", i.name, i.version, i.failover);
        }
        if let Some(l) = self.loss_runs.iter().find(|l| l.secs > 0.0) {
            let _ = writeln!(
                s,
                "- false failures: one more cluster per system and size, all {} running at once (each on its own network), in one window of {:.0} s at {:.0}% random loss",
                self.loss_runs.len(),
                l.secs,
                l.loss * 100.0
            );
        }
        for note in &self.notes {
            let _ = writeln!(s, "- **{note}**");
        }
        let _ = writeln!(
            s,
            "- where the detection gap comes from: serf-agent's `{}` preset changes the protocol, not just a timer \
             (a refused TCP ping proves the process is gone, and a proven suspicion runs its minimum, counted in \
             gossip rounds, without waiting for confirmations; the ack wait follows the round trip; silence keeps \
             memberlist's timings); docs/protocol.md §6 argues each. \
             `cluster-bench demo` runs serf-agent with `memberlist-lan` (memberlist's rules) beside it, like for like",
            o.profile
        );
        let _ = writeln!(
            s,
            "- times are read by polling every agent every 50 ms (member lists, the primary service), so each is \
             late by up to one poll, and an effect can appear to come up to one poll before its cause"
        );
        s.push('\n');
        for &n in &o.sizes {
            let _ = writeln!(s, "## {n} nodes\n");
            let th = theirs.as_deref().unwrap_or("serf (not run)");
            let _ = writeln!(s, "| measure | {ours} | {th} | ours/theirs |");
            let _ = writeln!(s, "|---|---:|---:|---:|");
            let row = |s: &mut String, label: &str, a: Option<Stat>, b: Option<Stat>, d: usize| {
                let show = |x: &Option<Stat>| x.as_ref().map_or("-".to_owned(), |x| x.show(d));
                let q = ratio(a.as_ref(), b.as_ref()).map_or("-".to_owned(), |q| format!("{q:.2}"));
                let _ = writeln!(s, "| {label} | {} | {} | {q} |", show(&a), show(&b));
            };
            row(
                &mut s,
                "setup: first start until all list all alive (s)",
                self.setup_stat(&ours, n),
                theirs.as_deref().and_then(|t| self.setup_stat(t, n)),
                2,
            );
            for m in METRICS {
                let a = self.stat(&ours, n, m.values);
                let b = theirs.as_deref().and_then(|t| self.stat(t, n, m.values));
                if a.is_some() || b.is_some() {
                    row(&mut s, m.label, a, b, m.decimals);
                }
            }
            let loss = |sys: &str| self.loss_run(sys, n);
            if let Some(a) = loss(&ours) {
                let b = theirs.as_deref().and_then(loss);
                if a.secs > 0.0 {
                    let _ = writeln!(
                    s,
                    "| false failures in {:.0} s at {:.0}% loss (member-failed events; members) | {} ({}) | {} | - |",
                    a.secs,
                    a.loss * 100.0,
                    a.false_failures,
                    a.members_declared,
                    b.map_or("-".to_owned(), |b| format!("{} ({})", b.false_failures, b.members_declared))
                    );
                }
                if let Some(p) = a.partition_secs {
                    let show = |l: Option<&LossRun>| {
                        l.and_then(|l| {
                            Some(format!(
                                "{:.2} s (one primary {:.2} s after healing)",
                                l.two_primaries_s?,
                                l.single_primary_after_heal_s.unwrap_or(f64::NAN)
                            ))
                        })
                        .unwrap_or_else(|| "-".to_owned())
                    };
                    let _ = writeln!(
                        s,
                        "| two primaries during a {p:.0} s partition into halves | {} | {} | - |",
                        show(Some(a)),
                        show(b)
                    );
                }
            }
            let errors: Vec<String> = self
                .rounds
                .iter()
                .filter(|r| r.nodes == n)
                .filter_map(|r| r.error.as_ref().map(|e| format!("{} round {}: {e}", r.system, r.round)))
                .collect();
            for e in errors {
                let _ = writeln!(s, "\n- error: {}", e.lines().next().unwrap_or(""));
            }
            for r in self.rounds.iter().filter(|r| r.nodes == n) {
                for line in &r.incomplete {
                    let _ = writeln!(s, "\n- incomplete, {} round {}: {line}", r.system, r.round);
                }
            }
            s.push('\n');
        }
        s.push_str(&self.targets());
        s.push_str(
            "\nMedians with min–max over rounds (per-agent figures over every agent of every round). Times are \
             taken by polling every node's member list (see the poll resolution in the JSON) and, for handlers, \
             from timestamps the handler script writes. `ours/theirs` is the ratio of the medians.\n",
        );
        s
    }

    /// The report as a section of `docs/benchmarks.md`: where it comes from, then the report
    /// without its title, its headings two levels down.
    pub fn doc_section(&self) -> String {
        let mut s = format!("Generated: `docs/results/{}.md`\n\n", self.options.name);
        for line in self.markdown().lines().skip_while(|l| l.starts_with("# ") || l.is_empty()) {
            if line.starts_with("## ") {
                s.push_str("##");
            }
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    /// Each target of the issue, per size: the figures and met / MISSED.
    pub fn targets(&self) -> String {
        let (ours, theirs) = self.system_names();
        let mut s = String::new();
        let _ = writeln!(s, "## Targets\n");
        let _ = writeln!(s, "| N | target | measured | verdict |");
        let _ = writeln!(s, "|---:|---|---|---|");
        let verdict = |ok: bool| if ok { "met" } else { "**MISSED**" };
        for &n in &self.options.sizes {
            let st = |m: fn(&Round) -> Vec<f64>| {
                (self.stat(&ours, n, m), theirs.as_deref().and_then(|t| self.stat(t, n, m)))
            };
            let mut check = |label: &str, limit: f64, shown: &str, (a, b): (Option<Stat>, Option<Stat>)| {
                if let Some(q) = ratio(a.as_ref(), b.as_ref()) {
                    let bound = if shown.is_empty() { "Serf's".to_owned() } else { format!("{shown} Serf's") };
                    let _ = writeln!(s, "| {n} | {label} ≤ {bound} | {q:.2}× | {} |", verdict(q <= limit + 1e-9));
                }
            };
            check("detection after SIGKILL, all nodes, median", 0.5, "0.5×", st(|r| one(r.kill_all_s)));
            check("RSS per agent", 1.0 / 3.0, "1/3 of", st(|r| r.rss_mib.clone()));
            check("CPU per agent", 0.5, "1/2 of", st(|r| r.cpu_s_per_min.clone()));
            check("UDP bytes per second per agent", 1.0, "", st(|r| r.udp_bytes_per_s.clone()));
            check("bytes per second per agent (everything)", 1.0, "", st(|r| r.sent_bytes_per_s.clone()));
            check(
                "setup time, median",
                1.0,
                "",
                (self.setup_stat(&ours, n), theirs.as_deref().and_then(|t| self.setup_stat(t, n))),
            );
            if let Some(a) = self.setup_stat(&ours, n) {
                let q = a.max / a.median;
                let _ = writeln!(
                    s,
                    "| {n} | slowest setup ≤ 2× the median ({} tries) | {:.2} s / {:.2} s = {q:.2}× | {} |",
                    a.n,
                    a.max,
                    a.median,
                    verdict(q <= 2.0)
                );
            }
            if let (Some(a), Some(b)) =
                (self.loss_run(&ours, n).filter(|l| l.secs > 0.0), theirs.as_deref().and_then(|t| self.loss_run(t, n)))
            {
                let _ = writeln!(
                    s,
                    "| {n} | false failures at {:.0}% loss ≤ Serf's | {} vs {} in {:.0} s | {} |",
                    a.loss * 100.0,
                    a.false_failures,
                    b.false_failures,
                    a.secs,
                    verdict(a.false_failures <= b.false_failures)
                );
            }
            let worst = self
                .rounds
                .iter()
                .filter(|r| r.system == ours && r.nodes == n)
                .filter_map(|r| Some((r.failover_gap_s?, r.failover_detect_all_s?)))
                .max_by(|x, y| (x.0 - x.1).total_cmp(&(y.0 - y.1)));
            if let Some((gap, det)) = worst {
                let _ = writeln!(
                    s,
                    "| {n} | primary unreachable ≤ detection + 0.5 s (worst round) | {gap:.2} s vs {det:.2} + 0.5 s | {} |",
                    verdict(gap <= det + 0.5)
                );
            }
        }
        s
    }
}
