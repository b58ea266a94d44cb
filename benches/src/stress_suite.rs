//! `cluster-bench stress --suite`: false failures and detection times of every system under
//! network and CPU stress, on real processes (the namespace backend; root).
//!
//! One *cell* is a system (serf-agent or HashiCorp Serf), a timing profile and a stress
//! setting ([`Setting`]). Each cell runs a fresh 5-node cluster in network namespaces of its
//! own, so several cells run at once (`--parallel`):
//!
//! ```text
//!   start 5 nodes ─ settle 3 s ─ stress on ─ observe W s ─ K × (SIGKILL, time, restart) ─ stress off
//!                                  │           └─ every node's event handler logs member-failed
//!                                  └─ loss / bursts / one-way loss / latency / stalls / CPU quota
//! ```
//!
//! - **False failures**: during the observation window every node is alive, so every
//!   `member-failed` event any node's handler records is false. Declarations of the same
//!   member less than [`EPISODE_GAP`] apart are one *episode*; the rate is episodes per
//!   node-hour of observation (nodes × W).
//! - **Detection**: a node (never node 0, never the node a one-node stress hits) is killed with
//!   SIGKILL while the stress goes on, and the other nodes' member lists are polled (from the
//!   host, whose traffic no rule touches) until every one lists it `failed` (at most 60 s); it
//!   is then restarted and the cluster waits until it is alive everywhere.
//!
//! Network stresses are iptables rules inside the namespaces ([`crate::netns::Links`]); the
//! latency setting needs the kernel's `sch_netem` and is skipped (and said so) where the
//! kernel has none. The CPU quota is a cgroup (v2 `cpu.max`, or v1 `cpu.cfs_quota_us`).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{count_alive, poll_until, read_events, unix_nanos, Backend, Cluster};
use crate::netns::Links;
use crate::process::{send_signal, RunDir, Signal};
use crate::stamp::{results_dir, Stamp};
use crate::stats::Stat;
use crate::stress_frontier::{Frontier, Point};
use crate::system::{locate_serf_agent, HashicorpSerf, SerfAgent, System};

/// Declarations of one member closer than this to the previous one are one episode.
pub const EPISODE_GAP: Duration = Duration::from_secs(10);

/// The node that one-node stresses (one-way loss, stalls, CPU quota) hit.
pub const STRESSED: usize = 1;

/// A stress a cluster runs under.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setting {
    /// No stress (the baseline).
    None,
    /// Every datagram and segment between nodes lost with this probability (iptables
    /// `statistic`, on the way in).
    Loss(f64),
    /// Bursts: each node independently, every 100 ms, goes from good to bad with probability
    /// 1/90 and back with probability 1/10 (Gilbert's two states: bad spells of 1 s on average
    /// every 10 s, 10 % of the time); while bad it is cut off from every other node both ways.
    Bursty,
    /// What node [`STRESSED`] sends to other nodes is lost with this probability; nothing else.
    OneWay(f64),
    /// Every packet delayed by `delay ± jitter` milliseconds (netem, uniform jitter).
    Latency(u32, u32),
    /// Node [`STRESSED`] stopped (SIGSTOP) for `stop` ms, then continued for `run` ms, again and
    /// again: alive, but answering late.
    StallBursts(u32, u32),
    /// Node [`STRESSED`] held to this percentage of one core by a cgroup CPU quota (100 ms
    /// period).
    CpuQuota(u32),
}

impl Setting {
    /// The name used on the command line and in tables: `none`, `loss10`, `bursty`,
    /// `oneway50`, `latency50j40`, `stalls500r1000`, `cpu5`.
    pub fn name(&self) -> String {
        match *self {
            Self::None => "none".into(),
            Self::Loss(p) => format!("loss{}", (p * 100.0).round()),
            Self::Bursty => "bursty".into(),
            Self::OneWay(p) => format!("oneway{}", (p * 100.0).round()),
            Self::Latency(d, j) => format!("latency{d}j{j}"),
            Self::StallBursts(s, r) => format!("stalls{s}r{r}"),
            Self::CpuQuota(pct) => format!("cpu{pct}"),
        }
    }

    /// What it does, in words, for the tables.
    pub fn describe(&self) -> String {
        match *self {
            Self::None => "no stress".into(),
            Self::Loss(p) => format!("{:.0} % random loss, every link", p * 100.0),
            Self::Bursty => "bursts: each node cut off for 1 s on average every 10 s (10 % of the time)".into(),
            Self::OneWay(p) => format!("{:.0} % loss of what node01 sends (one way)", p * 100.0),
            Self::Latency(d, j) => format!("{d} ms ± {j} ms latency, every packet"),
            Self::StallBursts(s, r) => format!("node01 stopped {s} ms, running {r} ms, repeated"),
            Self::CpuQuota(pct) => format!("node01 limited to {pct} % of a core (cgroup quota)"),
        }
    }

    /// Parse a [`Setting::name`].
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let num = |t: &str| -> anyhow::Result<u32> {
            t.parse().map_err(|_| anyhow::anyhow!("setting {s:?}: {t:?} is not a whole number"))
        };
        let pct = |t: &str| -> anyhow::Result<f64> {
            let v = num(t)?;
            anyhow::ensure!((1..=100).contains(&v), "setting {s:?}: a percentage from 1 to 100");
            Ok(f64::from(v) / 100.0)
        };
        Ok(if s == "none" {
            Self::None
        } else if s == "bursty" {
            Self::Bursty
        } else if let Some(t) = s.strip_prefix("loss") {
            Self::Loss(pct(t)?)
        } else if let Some(t) = s.strip_prefix("oneway") {
            Self::OneWay(pct(t)?)
        } else if let Some(t) = s.strip_prefix("latency") {
            let (d, j) = t.split_once('j').ok_or_else(|| anyhow::anyhow!("setting {s:?}: latency<ms>j<ms>"))?;
            let (d, j) = (num(d)?, num(j)?);
            anyhow::ensure!(j <= d, "setting {s:?}: the jitter must not exceed the delay");
            Self::Latency(d, j)
        } else if let Some(t) = s.strip_prefix("stalls") {
            let (st, r) = t.split_once('r').ok_or_else(|| anyhow::anyhow!("setting {s:?}: stalls<ms>r<ms>"))?;
            let (st, r) = (num(st)?, num(r)?);
            anyhow::ensure!(st > 0 && r > 0, "setting {s:?}: both times above 0");
            Self::StallBursts(st, r)
        } else if let Some(t) = s.strip_prefix("cpu") {
            let v = num(t)?;
            anyhow::ensure!((1..=100).contains(&v), "setting {s:?}: a percentage from 1 to 100");
            Self::CpuQuota(v)
        } else {
            anyhow::bail!(
                "setting {s:?}: one of none, loss<pct>, bursty, oneway<pct>, latency<ms>j<ms>, stalls<ms>r<ms>, cpu<pct>"
            )
        })
    }

    /// Whether it hits node [`STRESSED`] alone.
    pub fn one_node(&self) -> bool {
        matches!(self, Self::OneWay(_) | Self::StallBursts(..) | Self::CpuQuota(_))
    }
}

/// The settings of the full suite.
pub const DEFAULT_SETTINGS: &str = "none,loss10,loss20,loss30,bursty,oneway50,latency50j40,stalls500r1000,cpu5";

/// The systems of the full suite: `system:profile`.
pub const DEFAULT_SYSTEMS: &str = "serf-agent:lan,serf:lan,serf-agent:memberlist-lan,serf-agent:local,serf:local";

/// What to run.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Nodes per cluster.
    pub nodes: usize,
    /// `system:profile` pairs.
    pub systems: Vec<(String, String)>,
    /// Stress settings.
    pub settings: Vec<Setting>,
    /// Observation window per cell.
    pub observe: Duration,
    /// SIGKILL rounds per cell.
    pub kills: usize,
    /// Cells run at once.
    pub parallel: usize,
    /// The serf-agent binary (default: the harness's static build).
    pub agent_bin: Option<PathBuf>,
    /// Build serf-agent first.
    pub build: bool,
    /// The Serf binary (default: `serf` on PATH).
    pub serf_bin: Option<PathBuf>,
    /// Base name of the result files in docs/results/, or `None`.
    pub name: Option<String>,
    /// Keep the agents' logs.
    pub keep: bool,
    /// The command line, for the stamp.
    pub command: String,
}

/// One system, profile and setting.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// `serf-agent` or `serf`.
    pub system: String,
    /// Timing profile.
    pub profile: String,
    /// The setting's name.
    pub setting: String,
    /// Observation window, seconds.
    pub observe_secs: f64,
    /// Nodes × window, hours.
    pub node_hours: f64,
    /// False-failure episodes (see the module doc).
    pub false_failures: usize,
    /// `member-failed` events recorded, all nodes together (one episode may hold several).
    pub declarations: usize,
    /// SIGKILL until every other node listed the member failed, seconds (`None`: not within 60 s).
    pub kill_detection_secs: Vec<Option<f64>>,
    /// Where each kill's detection time went (one per kill, in the order of
    /// [`Cell::kill_detection_secs`]).
    pub kills: Vec<KillTimeline>,
    /// What the agents' own counters say about the observation window (serf-agent only: read
    /// from its `/v1/stats`; `None` for Serf).
    pub probing: Option<Probing>,
    /// Why the cell stopped early, if it did (its figures are then partial or absent).
    pub error: Option<String>,
}

impl Cell {
    /// False-failure episodes per node-hour.
    pub fn rate(&self) -> f64 {
        if self.node_hours > 0.0 {
            self.false_failures as f64 / self.node_hours
        } else {
            0.0
        }
    }

    /// The detection times that completed.
    pub fn detection(&self) -> Option<Stat> {
        Stat::of(self.kill_detection_secs.iter().flatten().copied())
    }

    /// `system profile`, the label of a point.
    pub fn label(&self) -> String {
        format!("{} {}", self.system, self.profile)
    }
}

/// One kill, seen by the observers (every node but the victim and the stressed node), in
/// seconds after the SIGKILL. Polled times are late by at most one sweep (50 ms or the time the
/// agents take to answer); handler times are when each observer's event handler ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KillTimeline {
    /// The first poll in which some observer listed the victim `suspect` (or already `failed`).
    pub first_suspect: Option<f64>,
    /// The first poll in which some observer listed it `failed`.
    pub first_failed: Option<f64>,
    /// The poll by which every observer listed it `failed` (the detection time).
    pub all_failed: Option<f64>,
    /// When the last observer's event handler recorded `member-failed` for the victim (the
    /// agents' own clock, not the polls; Serf coalesces member events for its handlers, so its
    /// figure includes that delay).
    pub handlers_all_failed: Option<f64>,
}

/// An observation window as serf-agent's counters saw it, all nodes together.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Probing {
    /// Probes started per node and second: 1 / the mean probe interval (1 s on `lan` while
    /// probes are answered; an unanswered probe stretched by local health holds the next back).
    pub probes_per_node_sec: f64,
    /// Suspicions started per node and minute (all false: every node was alive).
    pub suspicions_per_node_min: f64,
    /// Refutations per node and minute.
    pub refutations_per_node_min: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    /// Command and machine.
    pub stamp: Stamp,
    /// Nodes per cluster.
    pub nodes: usize,
    /// Cells run at once.
    pub parallel: usize,
    /// Wall time of the whole run, seconds.
    pub wall_secs: f64,
    /// The settings, by name, with their description.
    pub settings: Vec<(String, String)>,
    /// Settings asked for and not run, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Every cell.
    pub cells: Vec<Cell>,
}

/// Whether the issue's target holds for one setting: serf-agent `lan` has no more false
/// failures than Serf `lan` and a median detection time at most half of Serf's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Both conditions hold.
    Holds,
    /// More false failures than Serf.
    MoreFalseFailures,
    /// Detection slower than half of Serf's.
    TooSlow,
    /// Both fail.
    Both,
    /// A figure is missing.
    Unknown,
}

impl Target {
    /// Judge `ours` against `serf`.
    pub fn judge(ours: Option<&Cell>, serf: Option<&Cell>) -> Self {
        let (Some(a), Some(b)) = (ours, serf) else { return Self::Unknown };
        let (Some(da), Some(db)) = (a.detection(), b.detection()) else { return Self::Unknown };
        let more = a.rate() > b.rate();
        let slow = da.median > db.median / 2.0;
        match (more, slow) {
            (false, false) => Self::Holds,
            (true, false) => Self::MoreFalseFailures,
            (false, true) => Self::TooSlow,
            (true, true) => Self::Both,
        }
    }

    /// In words.
    pub fn show(self) -> &'static str {
        match self {
            Self::Holds => "holds",
            Self::MoreFalseFailures => "FAILS: more false failures",
            Self::TooSlow => "FAILS: slower than half of Serf's",
            Self::Both => "FAILS: more false failures and slower than half",
            Self::Unknown => "not measured",
        }
    }
}

impl SuiteReport {
    /// The cell of `system profile` under `setting`.
    pub fn cell(&self, system: &str, profile: &str, setting: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.system == system && c.profile == profile && c.setting == setting)
    }

    /// The frontier of this run: one point per cell.
    pub fn frontier(&self) -> Frontier {
        let mut systems: Vec<String> = Vec::new();
        for c in &self.cells {
            if !systems.contains(&c.label()) {
                systems.push(c.label());
            }
        }
        Frontier {
            source: "real processes".into(),
            stamp: self.stamp.clone(),
            settings: self.settings.clone(),
            systems,
            points: self
                .cells
                .iter()
                .map(|c| Point {
                    system: c.label(),
                    setting: c.setting.clone(),
                    false_failures: c.false_failures,
                    node_hours: c.node_hours,
                    detection: c.detection(),
                    missed: c.kill_detection_secs.iter().filter(|k| k.is_none()).count(),
                })
                .collect(),
            note: format!(
                "{}-node clusters, one network namespace per agent; {} cells, {} at a time. Details, the target \
                 check and settings not run: the stress-suite report written with this file.",
                self.nodes,
                self.cells.len(),
                self.parallel
            ),
        }
    }

    /// The report as Markdown: the stamp, one table of every cell, and the target per setting.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Stress suite: {}-node clusters in network namespaces\n", self.nodes);
        s.push_str(&self.stamp.markdown());
        let _ = writeln!(
            s,
            "- {} cells, {} at a time, {:.0} min wall\n",
            self.cells.len(),
            self.parallel,
            self.wall_secs / 60.0
        );
        s.push_str(
            "| setting | system | profile | false failures (episodes / node-hours observed) | per node-hour | \
             SIGKILL: every node lists it failed, s (median, min–max) |\n|---|---|---|---|---|---|\n",
        );
        for (setting, _) in &self.settings {
            for c in self.cells.iter().filter(|c| &c.setting == setting) {
                let missed = c.kill_detection_secs.iter().filter(|k| k.is_none()).count();
                let det = match c.detection() {
                    Some(st) => format!("{} over {}", st.show(2), st.n),
                    None => "not measured".into(),
                };
                let missed = if missed > 0 { format!(", {missed} not within 60 s") } else { String::new() };
                let error = c.error.as_ref().map(|e| format!(" (stopped early: {e})")).unwrap_or_default();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} ({} declarations) / {:.2} | {:.1} | {det}{missed}{error} |",
                    c.setting,
                    c.system,
                    c.profile,
                    c.false_failures,
                    c.declarations,
                    c.node_hours,
                    c.rate()
                );
            }
        }
        s.push_str("\nSettings:\n\n");
        for (name, what) in &self.settings {
            let _ = writeln!(s, "- `{name}`: {what}");
        }
        for (name, why) in &self.skipped {
            let _ = writeln!(s, "- `{name}`: **not run**: {why}");
        }
        s.push_str(
            "\n## Target: serf-agent `lan` against Serf `lan`\n\n\
             No more false failures per node-hour, and a median SIGKILL detection time at most half of Serf's.\n\n\
             | setting | serf-agent lan: false/node-hour, detection | Serf lan: false/node-hour, detection | target |\n\
             |---|---|---|---|\n",
        );
        for (setting, _) in &self.settings {
            let ours = self.cell("serf-agent", "lan", setting);
            let serf = self.cell("serf", "lan", setting);
            if ours.is_none() && serf.is_none() {
                continue;
            }
            let show = |c: Option<&Cell>| {
                c.map_or("-".to_owned(), |c| {
                    format!(
                        "{:.1} ({}), {}",
                        c.rate(),
                        c.false_failures,
                        c.detection().map_or("-".to_owned(), |d| format!("{:.2} s", d.median))
                    )
                })
            };
            let _ =
                writeln!(s, "| {setting} | {} | {} | {} |", show(ours), show(serf), Target::judge(ours, serf).show());
        }
        let _ = writeln!(
            s,
            "\nA false failure is a `member-failed` event recorded by any node's event handler while every node \
             was alive (the observation window); declarations of one member less than {} s apart are one episode. \
             Detection: SIGKILL of a node other than node00 and node01, polled (every 50 ms) from the host until \
             every other node lists it `failed`, under the same stress; the stressed node01 is not asked.",
            EPISODE_GAP.as_secs()
        );
        s.push_str(&self.timelines_markdown());
        s
    }

    /// Where the detection time goes, per cell: medians over its kills.
    fn timelines_markdown(&self) -> String {
        let mut s = String::new();
        if self.cells.iter().all(|c| c.kills.is_empty()) {
            return s;
        }
        s.push_str(
            "\n## Where the detection time goes\n\n\
             Medians over the kills of each cell, in seconds after the SIGKILL: the first poll in which some \
             observer listed the victim `suspect` (Serf lists no suspects: its first `failed`), the first in \
             which one listed it `failed`, the poll by which all did (the detection time above), and when the \
             last observer's event handler ran for it (the agent's own record, free of polling; `-` for Serf, \
             whose handlers get member events coalesced, after the polls are over). Probing: serf-agent's own \
             counters over the observation window (`/v1/stats`), per node: probes a second (1 on `lan` when \
             answered probes keep their rhythm), suspicions and refutations a minute.\n\n\
             | setting | system | profile | first suspect | first failed | all failed (polled) | all failed \
             (handlers) | probing |\n|---|---|---|---|---|---|---|---|\n",
        );
        let med = |v: Vec<f64>| Stat::of(v).map_or("-".to_owned(), |st| format!("{:.2}", st.median));
        for c in &self.cells {
            let pick = |f: fn(&KillTimeline) -> Option<f64>| med(c.kills.iter().filter_map(f).collect());
            let probing = c.probing.map_or("-".to_owned(), |p| {
                format!(
                    "{:.2} probes/s, {:.2} suspicions/min, {:.2} refutations/min",
                    p.probes_per_node_sec, p.suspicions_per_node_min, p.refutations_per_node_min
                )
            });
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {probing} |",
                c.setting,
                c.system,
                c.profile,
                pick(|k| k.first_suspect),
                pick(|k| k.first_failed),
                pick(|k| k.all_failed),
                pick(|k| k.handlers_all_failed),
            );
        }
        s
    }
}

/// Episodes among `member-failed` declarations (`(subject, unix nanos)`): a declaration of a
/// member less than [`EPISODE_GAP`] after the previous one of that member belongs to its
/// episode.
pub fn episodes(declarations: &[(String, u128)]) -> usize {
    let mut sorted: Vec<&(String, u128)> = declarations.iter().collect();
    sorted.sort();
    let gap = EPISODE_GAP.as_nanos();
    let mut count = 0;
    let mut last: Option<(&str, u128)> = None;
    for (name, t) in sorted {
        let same = last.is_some_and(|(n, lt)| n == name && t - lt < gap);
        if !same {
            count += 1;
        }
        last = Some((name, *t));
    }
    count
}

/// Run the suite and write `docs/results/<name>.md` and `.json`.
pub fn run(o: &SuiteOptions) -> anyhow::Result<SuiteReport> {
    anyhow::ensure!(crate::netns::available(), "stress --suite: needs root, ip and iptables (the namespace backend)");
    anyhow::ensure!((3..=20).contains(&o.nodes), "--nodes {}: between 3 and 20", o.nodes);
    anyhow::ensure!((1..=8).contains(&o.parallel), "--parallel {}: between 1 and 8", o.parallel);
    let stamp = Stamp::new(&o.command);
    let agent = SerfAgent { bin: locate_serf_agent(o.agent_bin.as_deref(), o.build)? };
    let serf = match &o.serf_bin {
        Some(bin) => Some(HashicorpSerf::new(bin.clone())),
        None => HashicorpSerf::find(),
    };
    let mut skipped = Vec::new();
    let netem = crate::netns::netem_available();
    let mut settings = Vec::new();
    for s in &o.settings {
        if matches!(s, Setting::Latency(..)) && !netem {
            skipped.push((s.name(), "this kernel has no sch_netem (tc: \"Specified qdisc kind is unknown\")".into()));
        } else if matches!(s, Setting::CpuQuota(_)) && cpu_cgroup_parent().is_none() {
            skipped.push((s.name(), "no writable cgroup with the cpu controller".into()));
        } else {
            settings.push(*s);
        }
    }
    // Interleaved: every system under one setting before the next setting.
    let mut queue = VecDeque::new();
    // Each cell on a network number of its own (40, 41, ...: apart from `compare`'s 10 to 17),
    // so that nothing a cell leaves behind (a namespace a lingering handler still holds) is in
    // the way of the next.
    let mut net = 40u8;
    for s in &settings {
        for (system, profile) in &o.systems {
            match system.as_str() {
                "serf-agent" => {}
                "serf" if serf.is_some() => {}
                "serf" => {
                    let why = "`serf` not on PATH (benches/setup.sh installs it)".to_owned();
                    if !skipped.iter().any(|(n, _)| n == "serf") {
                        skipped.push(("serf".into(), why));
                    }
                    continue;
                }
                other => anyhow::bail!("--systems: {other:?} is not serf-agent or serf"),
            }
            anyhow::ensure!(net < 250, "too many cells: at most 210");
            queue.push_back((system.clone(), profile.clone(), *s, net));
            net += 1;
        }
    }
    let dir = RunDir::new("stress-suite", o.keep)?;
    let queue = Mutex::new(queue);
    let cells = Mutex::new(Vec::new());
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..o.parallel {
            let (queue, cells, dir, agent, serf) = (&queue, &cells, &dir, &agent, &serf);
            scope.spawn(move || loop {
                let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front();
                let Some((system, profile, setting, net)) = next else { break };
                let sys: &dyn System = if system == "serf" {
                    serf.as_ref().map_or(agent as &dyn System, |s| s as &dyn System)
                } else {
                    agent
                };
                let base = dir.path().join(format!("{system}-{profile}-{}", setting.name()));
                let cell = run_cell(sys, &profile, setting, net, &base, o);
                eprintln!(
                    "[{:>5.0} s] {system} {profile} {}: {} false ({} declarations), detection {}{}",
                    t0.elapsed().as_secs_f64(),
                    setting.name(),
                    cell.false_failures,
                    cell.declarations,
                    cell.detection().map_or("-".to_owned(), |d| d.show(2)),
                    cell.error.as_ref().map(|e| format!(" ERROR {e}")).unwrap_or_default()
                );
                cells.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(cell);
            });
        }
    });
    let mut cells = cells.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let order = |c: &Cell| {
        let si = settings.iter().position(|s| s.name() == c.setting).unwrap_or(usize::MAX);
        let yi = o.systems.iter().position(|(s, p)| *s == c.system && *p == c.profile).unwrap_or(usize::MAX);
        (si, yi)
    };
    cells.sort_by_key(order);
    let report = SuiteReport {
        stamp,
        nodes: o.nodes,
        parallel: o.parallel,
        wall_secs: t0.elapsed().as_secs_f64(),
        settings: settings.iter().map(|s| (s.name(), s.describe())).collect(),
        skipped,
        cells,
    };
    if let Some(name) = &o.name {
        std::fs::create_dir_all(results_dir())?;
        std::fs::write(results_dir().join(format!("{name}.md")), report.markdown())?;
        std::fs::write(results_dir().join(format!("{name}.json")), serde_json::to_string_pretty(&report)?)?;
        let frontier_name = if name == "stress-suite" { "frontier".to_owned() } else { format!("{name}-frontier") };
        report.frontier().write(&results_dir(), &frontier_name)?;
    }
    Ok(report)
}

/// One cell; never fails: an error is recorded in the cell with what was measured before it.
fn run_cell(sys: &dyn System, profile: &str, setting: Setting, net: u8, base: &Path, o: &SuiteOptions) -> Cell {
    let mut cell = Cell {
        system: sys.name().to_owned(),
        profile: profile.to_owned(),
        setting: setting.name(),
        observe_secs: 0.0,
        node_hours: 0.0,
        false_failures: 0,
        declarations: 0,
        kill_detection_secs: Vec::new(),
        kills: Vec::new(),
        probing: None,
        error: None,
    };
    if let Err(e) = measure_cell(sys, profile, setting, net, base, o, &mut cell) {
        eprintln!("{} {profile} {}: {e:#}", sys.name(), setting.name());
        cell.error = Some(format!("{e:#}").lines().next().unwrap_or_default().to_owned());
    }
    cell
}

fn measure_cell(
    sys: &dyn System,
    profile: &str,
    setting: Setting,
    net: u8,
    base: &Path,
    o: &SuiteOptions,
    cell: &mut Cell,
) -> anyhow::Result<()> {
    let mut cluster = Cluster::on_net(sys, o.nodes, base, profile, Backend::Netns, net)?;
    cluster.start_all(Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(3));
    let links = cluster.topology().map(crate::netns::Topology::links).ok_or_else(|| anyhow::anyhow!("no topology"))?;
    let pid = cluster.agent(STRESSED).map(crate::process::Agent::pid).ok_or_else(|| anyhow::anyhow!("no node01"))?;
    let stress = Stress::start(setting, &links, pid, net)?;
    let counters_before = agent_counters(sys, &cluster);
    let from = unix_nanos();
    let started = Instant::now();
    std::thread::sleep(o.observe);
    let to = unix_nanos();
    cell.observe_secs = started.elapsed().as_secs_f64();
    if let (Some(a), Some(b)) = (counters_before, agent_counters(sys, &cluster)) {
        let node_secs = o.nodes as f64 * cell.observe_secs;
        let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / node_secs;
        let probing = Probing {
            probes_per_node_sec: per(a[0], b[0]),
            suspicions_per_node_min: 60.0 * per(a[1], b[1]),
            refutations_per_node_min: 60.0 * per(a[2], b[2]),
        };
        eprintln!("{} {profile} {}: {probing:?}", sys.name(), setting.name());
        cell.probing = Some(probing);
    }
    cell.node_hours = o.nodes as f64 * cell.observe_secs / 3600.0;
    let mut declarations = Vec::new();
    for node in &cluster.nodes {
        for (kind, name, ts) in read_events(&node.events_file()) {
            if kind == "member-failed" && (from..to).contains(&ts) {
                declarations.push((name, ts));
            }
        }
    }
    cell.declarations = declarations.len();
    cell.false_failures = episodes(&declarations);
    let result = (|| -> anyhow::Result<()> {
        for k in 0..o.kills {
            // Never node 0 (the seed restarted nodes join) nor the stressed node.
            let victims: Vec<usize> = (0..o.nodes).filter(|&i| i != 0 && i != STRESSED).collect();
            let victim = victims[k % victims.len()];
            let timeline = kill_once(&mut cluster, victim)?;
            eprintln!("{} {profile} {}: kill {} of node{victim:02}: {timeline:?}", sys.name(), setting.name(), k + 1);
            cell.kill_detection_secs.push(timeline.all_failed);
            cell.kills.push(timeline);
        }
        Ok(())
    })();
    stress.stop();
    cluster.shutdown();
    result
}

/// Probes, suspicions and refutations summed over the running nodes, from serf-agent's
/// `/v1/stats` (`None` for another system, or when a node did not answer).
fn agent_counters(sys: &dyn System, cluster: &Cluster<'_>) -> Option<[u64; 3]> {
    if sys.name() != "serf-agent" {
        return None;
    }
    let mut sum = [0u64; 3];
    for i in cluster.running() {
        let r = crate::rpc::http(cluster.nodes[i].rpc, "GET", "/v1/stats", None).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        for (k, key) in ["probes", "suspicions", "refutations"].into_iter().enumerate() {
            sum[k] += v["serf"][key].as_u64()?;
        }
    }
    Some(sum)
}

/// Kill `victim`, time until every other node but the stressed one lists it failed (up to 60 s),
/// restart it and wait until those nodes list every node alive.
fn kill_once(cluster: &mut Cluster<'_>, victim: usize) -> anyhow::Result<KillTimeline> {
    let name = cluster.nodes[victim].name.clone();
    let observers: Vec<usize> = cluster.running().into_iter().filter(|&i| i != victim && i != STRESSED).collect();
    cluster.signal(victim, Signal::Kill)?;
    let killed_at = unix_nanos();
    let t0 = Instant::now();
    let mut timeline = KillTimeline::default();
    let p = cluster.wait_for_status(&name, &["failed"], &observers, t0, Duration::from_secs(60), |_, status, at| {
        let at = at.as_secs_f64();
        if matches!(status, "suspect" | "failed") && timeline.first_suspect.is_none() {
            timeline.first_suspect = Some(at);
        }
        if status == "failed" && timeline.first_failed.is_none() {
            timeline.first_failed = Some(at);
        }
    });
    timeline.all_failed = p.all.map(|d| d.as_secs_f64());
    // The handlers' record: each observer's first member-failed of the victim after the kill.
    let handler_times: Vec<Option<u128>> = observers
        .iter()
        .map(|&o| {
            read_events(&cluster.nodes[o].events_file())
                .into_iter()
                .filter(|(kind, n, ts)| kind == "member-failed" && *n == name && *ts >= killed_at)
                .map(|(_, _, ts)| ts)
                .min()
        })
        .collect();
    if handler_times.iter().all(Option::is_some) {
        timeline.handlers_all_failed =
            handler_times.into_iter().flatten().max().map(|ts| (ts - killed_at) as f64 / 1e9);
    }
    // A new life of the same name, joining node 0. Under heavy loss the join itself (one TCP
    // exchange, which both agents abandon after a timeout) can fail, and the agent then exits,
    // as Serf's does: that is the restart's trouble, not the detection's, so try again.
    let mut attempt = 1;
    while let Err(e) = cluster.start_node(victim, Some(0), true) {
        if attempt == 3 {
            return Err(e.context(format!("{name} restarted 3 times, never up")));
        }
        eprintln!("{}: {name} restart {attempt} failed, retrying: {e:#}", cluster.system().name());
        attempt += 1;
    }
    let n = cluster.len();
    let watchers: Vec<usize> = cluster.running().into_iter().filter(|&i| i != STRESSED).collect();
    let ok = poll_until(Duration::from_secs(90), Duration::from_millis(100), || {
        cluster.sweep(&watchers).iter().all(|(_, v)| v.as_ref().is_some_and(|m| count_alive(m) == n)).then_some(())
    });
    anyhow::ensure!(ok.is_some(), "{name} restarted: not alive everywhere within 90 s");
    std::thread::sleep(Duration::from_secs(2));
    Ok(timeline)
}

/// A stress in force; [`Stress::stop`] (or dropping it) ends it.
struct Stress {
    setting: Setting,
    links: Links,
    pid: u32,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    cgroup: Option<PathBuf>,
}

impl Stress {
    fn start(setting: Setting, links: &Links, pid: u32, net: u8) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut s = Self { setting, links: links.clone(), pid, stop: stop.clone(), thread: None, cgroup: None };
        match setting {
            Setting::None => {}
            Setting::Loss(p) => links.set_loss(p)?,
            Setting::OneWay(p) => links.one_way_loss(STRESSED, p)?,
            Setting::Latency(d, j) => links.netem(&["delay", &format!("{d}ms"), &format!("{j}ms")])?,
            Setting::Bursty => {
                let links = links.clone();
                s.thread = Some(std::thread::spawn(move || bursts(&links, &stop, u64::from(net))));
            }
            Setting::StallBursts(st, r) => {
                s.thread = Some(std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = send_signal(pid, Signal::Stop);
                        std::thread::sleep(Duration::from_millis(u64::from(st)));
                        let _ = send_signal(pid, Signal::Cont);
                        std::thread::sleep(Duration::from_millis(u64::from(r)));
                    }
                }));
            }
            Setting::CpuQuota(pct) => s.cgroup = Some(cpu_limit(pid, pct, net)?),
        }
        Ok(s)
    }

    fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        match self.setting {
            Setting::StallBursts(..) => {
                let _ = send_signal(self.pid, Signal::Cont);
            }
            Setting::Latency(..) => self.links.clear_netem(),
            Setting::None | Setting::CpuQuota(_) => {}
            Setting::Loss(_) | Setting::OneWay(_) | Setting::Bursty => {
                let _ = self.links.heal();
            }
        }
        if let Some(dir) = self.cgroup.take() {
            remove_cgroup(&dir);
        }
    }
}

impl Drop for Stress {
    fn drop(&mut self) {
        self.end();
    }
}

/// The bursts of [`Setting::Bursty`] until `stop`: a two-state chain per node, stepped every
/// 100 ms, with its own small generator (seeded by the network number, so each cell differs).
fn bursts(links: &Links, stop: &AtomicBool, seed: u64) {
    let mut rng = SplitMix(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ unix_nanos() as u64);
    let n = links.len();
    let mut bad = vec![false; n];
    while !stop.load(Ordering::Relaxed) {
        let before = bad.clone();
        for b in &mut bad {
            let u = rng.unit();
            *b = if *b { u >= 0.1 } else { u < 1.0 / 90.0 };
        }
        if bad != before {
            let cut: Vec<usize> = (0..n).filter(|&i| bad[i]).collect();
            let _ = links.isolate(&cut);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SplitMix64: enough randomness for burst timing, no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where CPU-limited cgroups go: the v2 root when its `cpu` controller is enabled for children,
/// else the v1 `cpu` hierarchy; `None` when neither is writable.
fn cpu_cgroup_parent() -> Option<(PathBuf, bool)> {
    let v2 = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.subtree_control")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "cpu") {
        return Some((v2.to_owned(), true));
    }
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    (v1.join("cpu.cfs_quota_us").exists() && crate::process::is_root()).then(|| (v1.to_owned(), false))
}

/// Move `pid` into a new cgroup limited to `pct` % of one core; returns its directory.
fn cpu_limit(pid: u32, pct: u32, net: u8) -> anyhow::Result<PathBuf> {
    let (parent, v2) = cpu_cgroup_parent().ok_or_else(|| anyhow::anyhow!("no cpu cgroup controller"))?;
    let dir = parent.join(format!("cb{}-{net}", std::process::id() % 10_000));
    let _ = std::fs::create_dir(&dir);
    let quota = 100_000 * u64::from(pct) / 100;
    let write = |file: &str, value: String| {
        std::fs::write(dir.join(file), &value).map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(file).display()))
    };
    if v2 {
        write("cpu.max", format!("{quota} 100000"))?;
    } else {
        write("cpu.cfs_period_us", "100000".into())?;
        write("cpu.cfs_quota_us", quota.to_string())?;
    }
    write("cgroup.procs", pid.to_string())?;
    Ok(dir)
}

/// Move every process left in the group (the agent, a handler) back to the parent and remove it.
fn remove_cgroup(dir: &Path) {
    let parent = dir.parent().map(Path::to_owned).unwrap_or_default();
    for _ in 0..20 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for p in procs.split_whitespace() {
            let _ = std::fs::write(parent.join("cgroup.procs"), p);
        }
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Remove the cgroups this process may have left (after a signal, when no `Drop` runs).
pub fn remove_leftovers() {
    let prefix = format!("cb{}-", std::process::id() % 10_000);
    for parent in ["/sys/fs/cgroup", "/sys/fs/cgroup/cpu"] {
        let Ok(entries) = std::fs::read_dir(parent) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                remove_cgroup(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_name_round_trip() {
        for name in DEFAULT_SETTINGS.split(',') {
            assert_eq!(Setting::parse(name).unwrap().name(), name);
        }
        assert_eq!(Setting::parse("loss20").unwrap(), Setting::Loss(0.2));
        assert_eq!(Setting::parse("stalls500r1000").unwrap(), Setting::StallBursts(500, 1000));
        assert!(Setting::parse("loss0").is_err());
        assert!(Setting::parse("latency10j20").is_err());
        assert!(Setting::parse("jitter").is_err());
        assert!(Setting::parse("cpu5").unwrap().one_node());
        assert!(!Setting::parse("bursty").unwrap().one_node());
    }

    #[test]
    fn declarations_close_together_are_one_episode() {
        let s = 1_000_000_000u128;
        let d = |n: &str, t: u128| (n.to_owned(), t * s);
        // node02 by three observers within a second, and again 30 s later; node03 once.
        let decl = [d("node02", 100), d("node02", 100), d("node03", 101), d("node02", 101), d("node02", 131)];
        assert_eq!(episodes(&decl), 3);
        assert_eq!(episodes(&[]), 0);
    }

    #[test]
    fn the_target_compares_rates_and_half_the_median() {
        let cell = |system: &str, ff: usize, det: &[f64]| Cell {
            system: system.into(),
            profile: "lan".into(),
            setting: "loss10".into(),
            observe_secs: 3600.0,
            node_hours: 5.0,
            false_failures: ff,
            declarations: ff,
            kill_detection_secs: det.iter().map(|&d| Some(d)).collect(),
            kills: Vec::new(),
            probing: None,
            error: None,
        };
        let serf = cell("serf", 1, &[6.0, 5.0, 7.0]);
        assert_eq!(Target::judge(Some(&cell("serf-agent", 1, &[3.0])), Some(&serf)), Target::Holds);
        assert_eq!(Target::judge(Some(&cell("serf-agent", 2, &[2.0])), Some(&serf)), Target::MoreFalseFailures);
        assert_eq!(Target::judge(Some(&cell("serf-agent", 0, &[3.1])), Some(&serf)), Target::TooSlow);
        assert_eq!(Target::judge(Some(&cell("serf-agent", 0, &[])), Some(&serf)), Target::Unknown);
        let report = SuiteReport {
            stamp: Stamp::new("cluster-bench stress --suite"),
            nodes: 5,
            parallel: 1,
            wall_secs: 60.0,
            settings: vec![("loss10".into(), Setting::Loss(0.1).describe())],
            skipped: vec![("latency50j40".into(), "no netem".into())],
            cells: vec![cell("serf-agent", 1, &[3.0]), serf],
        };
        let md = report.markdown();
        assert!(md.contains("| loss10 | serf-agent | lan | 1 (1 declarations) / 5.00 | 0.2 | 3.00 over 1 |"), "{md}");
        assert!(md.contains("| loss10 | 0.2 (1), 3.00 s | 0.2 (1), 6.00 s | holds |"), "{md}");
        assert!(md.contains("`latency50j40`: **not run**: no netem"), "{md}");
    }
}
