//! The failure-detection comparison in the simulator: how long a crash or a stalled process takes
//! to be noticed by the first node and by every node, and how many live nodes are declared failed
//! by mistake, for SWIM as in the paper, memberlist's LAN behaviour (Serf's default) and our
//! presets, at several cluster sizes, with and without packet loss.
//!
//! One simulated cluster per (preset, size) runs three phases in turn, so the cost of forming a
//! large cluster (nodes² member updates) is paid once:
//!
//! ```text
//!  form ─▶ crash, 0% loss ─────────▶ crash, 10% loss ──────────────▶ pause ──────────────▶ report
//!          k times: crash a node,     loss on; k crashes as before;    k times: stall a node
//!          wait until every live      the phase lasts at least the     (SIGSTOP) until every
//!          node declared it failed,   loss window, to count false      live node declared it
//!          restart it (a new life),   failures; loss off, converge      failed, resume it, wait
//!          wait for convergence                                         for convergence
//! ```
//!
//! Restarting each crashed node keeps the cluster at its size. Every number comes from the
//! simulator's own bookkeeping ([`gossip_sim::Detection`], [`gossip_sim::FailureRecord`]); a
//! false failure is a `MemberFailed` about a node that was neither crashed, left, paused nor
//! partitioned within the grace window (see the `gossip_sim` crate docs).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gossip_sim::{bounds, Distribution, SimConfig, Simulation, TraceLevel};
use serde::Serialize;

use crate::stamp::{results_dir, Stamp};

/// The presets compared, in table order.
pub const PRESETS: [&str; 3] = ["swim-paper", "memberlist-lan", "lan"];
/// Cluster sizes of a default run.
pub const DEFAULT_NODES: [usize; 3] = [10, 100, 1000];

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Cluster sizes.
    pub nodes: Vec<usize>,
    /// Protocol presets (see `swim::Config::preset`).
    pub presets: Vec<String>,
    /// Crashes (and pauses) per phase; `None` picks by size: 10 up to 100 nodes, 5 above.
    pub events_per_phase: Option<usize>,
    /// Loss of the lossy phase (0 to 1).
    pub loss: f64,
    /// Minimum length of the lossy phase, over which false failures are counted.
    #[serde(serialize_with = "secs")]
    pub loss_window: Duration,
    /// Seed of every simulation (the same for every preset: same network draws).
    pub seed: u64,
    /// Simulations run at once (threads).
    pub jobs: usize,
    /// Where to write the Markdown and JSON files; `None` writes nothing.
    pub out_dir: Option<PathBuf>,
    /// Clusters larger than this start preformed (every node knowing all others alive, as
    /// `gossip-sim scenario --preformed`) instead of forming by joins: 10,000 joins gossiped to
    /// 10,000 nodes take far longer than the measurement. Default 1,000.
    pub preformed_above: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nodes: DEFAULT_NODES.to_vec(),
            presets: PRESETS.iter().map(|&s| s.to_owned()).collect(),
            events_per_phase: None,
            loss: 0.1,
            loss_window: Duration::from_secs(300),
            seed: 1,
            jobs: 2,
            out_dir: Some(results_dir()),
            preformed_above: 1000,
        }
    }
}

impl Options {
    fn events_for(&self, n: usize) -> usize {
        self.events_per_phase.unwrap_or(if n <= 100 { 10 } else { 5 })
    }
}

/// The three phases of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Condition {
    /// SIGKILL-like crash on a loss-free network.
    Crash,
    /// Crash with random datagram loss.
    CrashLossy,
    /// A stalled process (SIGSTOP), resumed once everyone declared it failed.
    Pause,
}

impl Condition {
    fn label(self, loss: f64) -> String {
        match self {
            Self::Crash => "crash, 0% loss".into(),
            Self::CrashLossy => format!("crash, {:.0}% loss", loss * 100.0),
            Self::Pause => "paused node".into(),
        }
    }
}

/// The result of one phase of one (preset, size) simulation.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    /// Preset.
    pub preset: String,
    /// Cluster size.
    pub nodes: usize,
    /// Which phase.
    pub condition: Condition,
    /// Human label of the condition.
    pub label: String,
    /// Crashes or pauses measured.
    pub events: usize,
    /// Fault to the first `MemberFailed` about it.
    pub first: Distribution,
    /// Fault to every live node having declared it failed.
    pub all: Distribution,
    /// Faults nobody declared.
    pub undetected: usize,
    /// Faults not every live node declared (within the bound, or before a paused node resumed).
    pub incomplete: usize,
    /// `MemberFailed` about live, reachable nodes during the phase.
    pub false_failures: usize,
    /// Length of the phase, virtual seconds.
    pub phase_secs: f64,
}

/// One (preset, size) simulation: formation and its three phases.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Preset.
    pub preset: String,
    /// Cluster size.
    pub nodes: usize,
    /// Virtual time until the cluster formed by joins converged; `None` if it did not, or if it
    /// started preformed (see [`Options::preformed_above`]).
    pub formation_secs: Option<f64>,
    /// The three phases.
    pub phases: Vec<PhaseResult>,
    /// Datagrams per node per second over the whole fault period (all phases).
    pub datagrams_per_node_sec: f64,
    /// Datagram bytes per node per second over the same period.
    pub bytes_per_node_sec: f64,
    /// Wall-clock seconds the simulation took.
    pub wall_secs: f64,
}

/// Everything a run of the comparison produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Command and machine.
    pub stamp: Stamp,
    /// What was run.
    pub options: Options,
    /// One per (preset, size), in table order.
    pub runs: Vec<RunResult>,
}

/// Run the comparison; progress goes to stderr. Writes the files when `out_dir` is set.
pub fn run(options: &Options, command: &str) -> anyhow::Result<Report> {
    let stamp = Stamp::new(command);
    for p in &options.presets {
        anyhow::ensure!(swim::Config::preset(p).is_some(), "unknown preset {p:?}: expected one of {PRESETS:?}");
    }
    anyhow::ensure!((0.0..1.0).contains(&options.loss), "loss {} must be in 0..1", options.loss);
    // Largest first, so the long simulations start early and the short ones fill in.
    let mut jobs: Vec<(usize, usize, String)> = Vec::new();
    for (pi, p) in options.presets.iter().enumerate() {
        for &n in &options.nodes {
            jobs.push((n, pi, p.clone()));
        }
    }
    jobs.sort_by_key(|&(n, pi, _)| (std::cmp::Reverse(n), pi));
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let threads = options.jobs.clamp(1, jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((n, pi, preset)) = jobs.get(i) else { break };
                eprintln!("detection: {preset} n={n}: started");
                let result = run_one(options, preset, *n);
                match &result {
                    Ok(r) => eprintln!("detection: {preset} n={n}: done in {:.1} s", r.wall_secs),
                    Err(e) => eprintln!("detection: {preset} n={n}: {e}"),
                }
                results.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((*n, *pi, result));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    results.sort_by_key(|(n, pi, _)| (*n, *pi));
    let runs = results.into_iter().map(|(_, _, r)| r).collect::<anyhow::Result<Vec<_>>>()?;
    let report = Report { stamp, options: options.clone(), runs };
    if let Some(dir) = &options.out_dir {
        std::fs::create_dir_all(dir)?;
        let base = file_base(options);
        std::fs::write(dir.join(format!("{base}.json")), serde_json::to_string_pretty(&report)? + "\n")?;
        std::fs::write(dir.join(format!("{base}.md")), report.markdown())?;
        eprintln!("detection: wrote {}/{base}.md and .json", dir.display());
    }
    Ok(report)
}

/// `detection` for the default sizes, `detection-10-10000` for others.
fn file_base(options: &Options) -> String {
    if options.nodes == DEFAULT_NODES && options.presets.len() == PRESETS.len() {
        "detection".into()
    } else {
        let sizes: Vec<String> = options.nodes.iter().map(ToString::to_string).collect();
        format!("detection-{}", sizes.join("-"))
    }
}

/// Node `k` of a phase: spread over the cluster, never node 0 (the formation's first node).
fn pick(n: usize, phase: usize, k: usize) -> usize {
    1 + (phase * 7 + k * 13 + k * k * 31) % (n - 1).max(1)
}

fn run_one(options: &Options, preset: &str, n: usize) -> anyhow::Result<RunResult> {
    anyhow::ensure!(n >= 4, "{n} nodes: need at least 4");
    let wall = Instant::now();
    let mut cfg = SimConfig::preset(preset, n, options.seed).ok_or_else(|| anyhow::anyhow!("unknown preset"))?;
    cfg.trace = TraceLevel::Off;
    let preformed = n > options.preformed_above;
    cfg.formation.preformed = preformed;
    let swim_cfg = cfg.swim.clone();
    let spread = cfg.formation.spread;
    let mut sim = Simulation::new(cfg)?;
    let formation = if preformed {
        None
    } else {
        sim.run_until(spread);
        sim.run_until_converged(spread + Duration::from_secs(300), Duration::from_secs(1))
    };
    sim.reset_traffic();
    let bound = bounds::crash_detection_bound(&swim_cfg, n, 10) + Duration::from_secs(5);
    let settle = bound.max(Duration::from_secs(60));
    let step = Duration::from_millis(250);
    let k = options.events_for(n);
    let mut phases = Vec::new();

    for (pi, condition) in [Condition::Crash, Condition::CrashLossy, Condition::Pause].into_iter().enumerate() {
        let start = sim.now();
        let failures_before = sim.failures().len();
        let detections_before = sim.detections().len();
        if condition == Condition::CrashLossy {
            sim.network_mut().loss = options.loss;
        }
        let mut pauses: Vec<(Option<Duration>, Option<Duration>)> = Vec::new();
        for j in 0..k {
            let node = pick(n, pi, j);
            let at = sim.now() + Duration::from_secs(1);
            match condition {
                Condition::Crash | Condition::CrashLossy => {
                    sim.crash(node, at);
                    sim.run_until(at);
                    let deadline = at + bound;
                    while sim.now() < deadline {
                        sim.run_for(step);
                        let done = sim.detections().last().is_some_and(|d| d.crashed_at >= at && d.unaware == 0);
                        if done {
                            break;
                        }
                    }
                    sim.run_for(Duration::from_secs(1));
                    sim.restart(node, sim.now());
                }
                Condition::Pause => {
                    // Long enough for every node to declare it failed; resumed early when they have.
                    let until = at + bound;
                    sim.pause(node, at, until);
                    sim.run_until(at);
                    let observers: Vec<usize> = sim.live_nodes().filter(|&o| o != node).collect();
                    let mut first = None;
                    let mut all = None;
                    while sim.now() < until {
                        sim.run_for(step);
                        let (f, a) = pause_detection(&sim, node, at, &observers, failures_before);
                        first = f;
                        if a.is_some() {
                            all = a;
                            break;
                        }
                    }
                    pauses.push((first, all));
                    // The pause was scheduled to `until`; run to it (cheap at steady state).
                    sim.run_until(until);
                }
            }
            sim.run_until_converged(sim.now() + settle, Duration::from_secs(1));
        }
        if condition == Condition::CrashLossy {
            sim.run_until(start + options.loss_window);
            sim.network_mut().loss = 0.0;
            sim.run_until_converged(sim.now() + settle, Duration::from_secs(1));
        }
        let end = sim.now();
        let false_failures = sim.failures()[failures_before..].iter().filter(|f| f.cause.is_false()).count();
        let (first, all, undetected, incomplete) = match condition {
            Condition::Pause => (
                Distribution::from_samples(pauses.iter().filter_map(|p| p.0)),
                Distribution::from_samples(pauses.iter().filter_map(|p| p.1)),
                pauses.iter().filter(|p| p.0.is_none()).count(),
                pauses.iter().filter(|p| p.1.is_none()).count(),
            ),
            _ => {
                let d = &sim.detections()[detections_before..];
                (
                    Distribution::from_samples(d.iter().filter_map(|d| d.first)),
                    Distribution::from_samples(d.iter().filter_map(|d| d.all)),
                    d.iter().filter(|d| d.first.is_none()).count(),
                    d.iter().filter(|d| d.all.is_none()).count(),
                )
            }
        };
        phases.push(PhaseResult {
            preset: preset.to_owned(),
            nodes: n,
            condition,
            label: condition.label(options.loss),
            events: k,
            first,
            all,
            undetected,
            incomplete,
            false_failures,
            phase_secs: (end - start).as_secs_f64(),
        });
    }
    let traffic = sim.traffic();
    Ok(RunResult {
        preset: preset.to_owned(),
        nodes: n,
        formation_secs: formation.map(|d| d.as_secs_f64()),
        phases,
        datagrams_per_node_sec: traffic.datagrams_per_node_sec,
        bytes_per_node_sec: traffic.datagram_bytes_per_node_sec,
        wall_secs: wall.elapsed().as_secs_f64(),
    })
}

/// From the failure records since `from_record`: the delay from `paused_at` to the first
/// `MemberFailed` about `node`, and to the moment every one of `observers` had declared it.
fn pause_detection(
    sim: &Simulation,
    node: usize,
    paused_at: Duration,
    observers: &[usize],
    from_record: usize,
) -> (Option<Duration>, Option<Duration>) {
    let mut seen = vec![false; sim.len()];
    let mut first = None;
    let mut last = Duration::ZERO;
    let mut count = 0;
    for f in &sim.failures()[from_record..] {
        if f.subject != Some(node) || f.at < paused_at || seen[f.observer] {
            continue;
        }
        seen[f.observer] = true;
        let delay = f.at - paused_at;
        first = Some(first.map_or(delay, |d: Duration| d.min(delay)));
        if observers.contains(&f.observer) {
            count += 1;
            last = last.max(delay);
        }
    }
    (first, (count == observers.len()).then_some(last))
}

impl Report {
    /// The stamp, the table of every phase, and the ratios of our preset to memberlist's.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Failure detection in the simulator\n");
        s.push_str(&self.stamp.markdown());
        let o = &self.options;
        let _ = writeln!(
            s,
            "- per (preset, size): one simulated cluster, seed {}; {} per phase (10 up to 100 nodes, 5 above unless set); lossy phase at least {:.0} s at {:.0}% loss\n",
            o.seed,
            o.events_per_phase.map_or("crashes/pauses by size".to_owned(), |k| format!("{k} crashes/pauses")),
            o.loss_window.as_secs_f64(),
            o.loss * 100.0
        );
        s.push_str(&self.table());
        s.push('\n');
        s.push_str(&self.ratio_table());
        s.push_str(
            "\nTimes in seconds of virtual time from the fault. `first`: the first live node declares the \
             node failed; `all`: every live node has. p99 is nearest-rank, so with fewer than 100 samples it is \
             the maximum. `false`: `MemberFailed` about a live, reachable node during the phase. `undet./incompl.`: \
             faults nobody declared / not every node declared within the bound (for a pause: before it was \
             resumed).\n",
        );
        s
    }

    /// The main table, one row per phase.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| preset | N | condition | faults | first median | first p99 | first max | all median | all p99 | all max | undet./incompl. | false failures (phase s) | datagrams/node/s | B/node/s |"
        );
        let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.runs {
            for p in &r.phases {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {}/{} | {} ({:.0}) | {:.2} | {:.0} |",
                    p.preset,
                    p.nodes,
                    p.label,
                    p.events,
                    p.first.median.as_secs_f64(),
                    p.first.p99.as_secs_f64(),
                    p.first.max.as_secs_f64(),
                    p.all.median.as_secs_f64(),
                    p.all.p99.as_secs_f64(),
                    p.all.max.as_secs_f64(),
                    p.undetected,
                    p.incomplete,
                    p.false_failures,
                    p.phase_secs,
                    r.datagrams_per_node_sec,
                    r.bytes_per_node_sec,
                );
            }
        }
        s
    }

    /// `lan` against `memberlist-lan` (Serf's behaviour), same size and condition, same seed.
    pub fn ratio_table(&self) -> String {
        let find = |preset: &str, n: usize, c: Condition| {
            self.runs
                .iter()
                .filter(|r| r.preset == preset && r.nodes == n)
                .flat_map(|r| &r.phases)
                .find(|p| p.condition == c)
        };
        let mut s = String::new();
        let _ = writeln!(s, "Ratio `lan` / `memberlist-lan` (ours over Serf's behaviour), medians:\n");
        let _ = writeln!(s, "| N | condition | first | all | false failures (lan vs memberlist-lan) |");
        let _ = writeln!(s, "|---:|---|---:|---:|---|");
        let mut any = false;
        for &n in &self.options.nodes {
            for c in [Condition::Crash, Condition::CrashLossy, Condition::Pause] {
                let (Some(ours), Some(theirs)) = (find("lan", n, c), find("memberlist-lan", n, c)) else { continue };
                any = true;
                let ratio = |a: Duration, b: Duration| {
                    if b.is_zero() {
                        "-".to_owned()
                    } else {
                        format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
                    }
                };
                let _ = writeln!(
                    s,
                    "| {n} | {} | {} | {} | {} vs {} |",
                    ours.label,
                    ratio(ours.first.median, theirs.first.median),
                    ratio(ours.all.median, theirs.all.median),
                    ours.false_failures,
                    theirs.false_failures
                );
            }
        }
        if any {
            s
        } else {
            String::new()
        }
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Parse the detection flags (shared by the `detection` bench and `cluster-bench detection`):
/// `--nodes 10,100,1000`, `--presets a,b`, `--events K`, `--loss 0.1`, `--loss-window SECS`,
/// `--seed S`, `--jobs J`, `--preformed-above N` (larger clusters start preformed; default
/// 1000), `--no-write`, `--quick` (10 and 100 nodes, 3 events, 60 s window).
/// The environment variable `DETECTION_NODES` (for example `10,100,1000,10000`) sets the sizes
/// when `--nodes` is not given. Unknown arguments (such as cargo's `--bench`) are ignored.
pub fn parse_args(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options::default();
    if let Ok(v) = std::env::var("DETECTION_NODES") {
        o.nodes = parse_list(&v)?;
    }
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (a.as_str(), None),
        };
        let mut value = |name: &str| -> anyhow::Result<String> {
            inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
        };
        match flag {
            "--nodes" => o.nodes = parse_list(&value(flag)?)?,
            "--presets" => o.presets = value(flag)?.split(',').map(str::to_owned).collect(),
            "--events" => o.events_per_phase = Some(value(flag)?.parse()?),
            "--loss" => o.loss = value(flag)?.parse()?,
            "--loss-window" => o.loss_window = Duration::from_secs_f64(value(flag)?.parse()?),
            "--seed" => o.seed = value(flag)?.parse()?,
            "--jobs" => o.jobs = value(flag)?.parse()?,
            "--preformed-above" => o.preformed_above = value(flag)?.parse()?,
            "--no-write" => o.out_dir = None,
            "--quick" => {
                o.nodes = vec![10, 100];
                o.events_per_phase = Some(3);
                o.loss_window = Duration::from_secs(60);
            }
            _ => {}
        }
    }
    anyhow::ensure!(!o.nodes.is_empty(), "no cluster sizes");
    Ok(o)
}

fn parse_list(s: &str) -> anyhow::Result<Vec<usize>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().parse::<usize>().map_err(|e| anyhow::anyhow!("{p:?}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_detects_every_crash_and_pause() {
        let options = Options {
            nodes: vec![8],
            presets: vec!["lan".into()],
            events_per_phase: Some(2),
            loss_window: Duration::from_secs(20),
            out_dir: None,
            ..Options::default()
        };
        let report = run(&options, "test").unwrap();
        assert_eq!(report.runs.len(), 1);
        let run = &report.runs[0];
        assert_eq!(run.phases.len(), 3);
        for p in &run.phases {
            assert_eq!(p.events, 2, "{p:?}");
            assert_eq!(p.undetected, 0, "{p:?}");
            assert_eq!(p.first.count, 2, "{p:?}");
            assert!(p.first.median <= p.all.median || p.all.count == 0, "{p:?}");
        }
        let md = report.markdown();
        assert!(md.contains("| lan | 8 | crash, 0% loss | 2 |"), "{md}");
        assert!(run.formation_secs.is_some(), "{run:?}");

        // Started preformed: no formation, the same detection.
        let report = super::run(&Options { preformed_above: 4, ..options }, "test").unwrap();
        let preformed = &report.runs[0];
        assert_eq!(preformed.formation_secs, None, "{preformed:?}");
        assert!(preformed.phases.iter().all(|p| p.undetected == 0 && p.first.count == 2), "{preformed:?}");
    }

    #[test]
    fn flags() {
        let o = parse_args(&["--bench".into(), "--nodes".into(), "10,20".into(), "--loss=0.05".into()]).unwrap();
        assert_eq!(o.nodes, vec![10, 20]);
        assert!((o.loss - 0.05).abs() < 1e-9);
        assert_eq!(file_base(&o), "detection-10-20");
        assert_eq!(o.preformed_above, 1000);
        assert_eq!(parse_args(&["--preformed-above".into(), "5".into()]).unwrap().preformed_above, 5);
        assert!(parse_args(&["--nodes".into(), "x".into()]).is_err());
    }

    #[test]
    fn picks_stay_in_range_and_skip_node_zero() {
        for n in [4, 10, 100] {
            for k in 0..20 {
                let p = pick(n, 2, k);
                assert!((1..n).contains(&p));
            }
        }
    }
}
