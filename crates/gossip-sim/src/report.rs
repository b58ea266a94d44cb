//! Derived results: convergence, traffic, the report of a run.

use std::fmt;
use std::time::Duration;

use membership::State;
use serde::Serialize;

use crate::observe::{Detection, FailureCause, FailureRecord};
use crate::sim::{NetworkCounters, NodeStatus, Simulation};
use crate::stats::{secs, Distribution};

/// Whether every live node agrees on who is up.
///
/// Converged means: every live (running or paused) node sees every live node `Alive` in its
/// current life (generation), and no crashed or departed node as `Alive` or `Suspect` (it may be
/// `Dead`, `Left` or forgotten). Nodes never started are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Convergence {
    /// Whether the check passed.
    pub converged: bool,
    /// Live nodes.
    pub live: usize,
    /// Number of (observer, subject) disagreements found.
    pub problem_count: usize,
    /// The first few disagreements, readable.
    pub problems: Vec<String>,
}

/// Traffic sent by the nodes over the measurement window (see [`Simulation::reset_traffic`]).
/// Rates are per node-second of live time (running or paused).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traffic {
    /// Length of the window.
    #[serde(serialize_with = "secs")]
    pub window: Duration,
    /// Sum over nodes of the time they were live within the window.
    pub node_seconds: f64,
    /// Datagrams sent.
    pub datagrams: u64,
    /// Bytes of datagrams sent.
    pub datagram_bytes: u64,
    /// Stream exchanges opened.
    pub streams: u64,
    /// Bytes sent over streams (requests and answers).
    pub stream_bytes: u64,
    /// Datagrams per node per second.
    pub datagrams_per_node_sec: f64,
    /// Datagram bytes per node per second.
    pub datagram_bytes_per_node_sec: f64,
    /// Streams per node per second.
    pub streams_per_node_sec: f64,
    /// Stream bytes per node per second.
    pub stream_bytes_per_node_sec: f64,
    /// Datagrams per second of the busiest node.
    pub max_node_datagrams_per_sec: f64,
}

/// How many `MemberFailed` events each cause explains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FailureCounts {
    /// The life had crashed (or was restarted within the grace window).
    pub crashed: usize,
    /// The node had left.
    pub left: usize,
    /// The node was paused (or within the grace window after).
    pub paused: usize,
    /// The node was on one side of a partition (or within the grace window after).
    pub partitioned: usize,
    /// The observer had been paused within the grace window.
    pub observer_paused: usize,
    /// False failures.
    pub false_failures: usize,
}

impl FailureCounts {
    fn add(&mut self, cause: FailureCause) {
        match cause {
            FailureCause::Crashed => self.crashed += 1,
            FailureCause::Left => self.left += 1,
            FailureCause::Paused => self.paused += 1,
            FailureCause::Partitioned => self.partitioned += 1,
            FailureCause::ObserverPaused => self.observer_paused += 1,
            FailureCause::None => self.false_failures += 1,
        }
    }

    /// All `MemberFailed` events.
    pub fn total(&self) -> usize {
        self.crashed + self.left + self.paused + self.partitioned + self.observer_paused + self.false_failures
    }
}

/// The results of a run so far. See [`Simulation::report`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Nodes in the simulation.
    pub nodes: usize,
    /// Its seed.
    pub seed: u64,
    /// Virtual time at the report.
    #[serde(serialize_with = "secs")]
    pub virtual_time: Duration,
    /// Live nodes at the report.
    pub live_nodes: usize,
    /// One record per crash.
    pub detections: Vec<Detection>,
    /// Crash to first `MemberFailed` by a live node, over the crashes that were detected.
    pub first_detection: Distribution,
    /// Crash to every live node knowing, over the crashes that every observer learned of.
    pub all_detection: Distribution,
    /// `MemberFailed` events by cause.
    pub failures: FailureCounts,
    /// The false failures, in time order.
    pub false_failures: Vec<FailureRecord>,
    /// The grace window after a pause or partition (see [`Simulation::grace`]).
    #[serde(serialize_with = "secs")]
    pub grace: Duration,
    /// Traffic.
    pub traffic: Traffic,
    /// What the network did.
    pub network: NetworkCounters,
    /// Convergence at the report time.
    pub convergence: Convergence,
    /// Events emitted.
    pub events: u64,
    /// [`Simulation::trace_hash`], in hex.
    pub trace_hash: String,
}

impl Simulation {
    /// Whether the views have converged (see [`Convergence`]); stops at the first disagreement,
    /// so it is cheap while they have not.
    pub fn is_converged(&self) -> bool {
        self.check_convergence(0).0 == 0
    }

    /// The convergence check with up to 10 disagreements spelled out.
    pub fn convergence(&self) -> Convergence {
        let (problem_count, problems) = self.check_convergence(10);
        Convergence { converged: problem_count == 0, live: self.live_nodes().count(), problem_count, problems }
    }

    /// Count disagreements; spell out up to `detail`. With `detail == 0`, stop at the first.
    fn check_convergence(&self, detail: usize) -> (usize, Vec<String>) {
        let live = self.live_nodes().count();
        let mut count = 0;
        let mut problems = Vec::new();
        let mut note = |count: &mut usize, text: &dyn Fn() -> String| {
            *count += 1;
            if problems.len() < detail {
                problems.push(text());
            }
        };
        for o in self.live_nodes() {
            let mut alive = 0;
            for m in self.view(o) {
                let Some(s) = self.subject_of(m) else {
                    note(&mut count, &|| {
                        format!("{} knows {} at {}, which is no simulated node", self.name(o), m.name, m.addr)
                    });
                    if detail == 0 {
                        return (count, problems);
                    }
                    continue;
                };
                let expected = self.nodes[s].status;
                let ok = match expected {
                    NodeStatus::Running | NodeStatus::Paused => {
                        let good = m.state == State::Alive && m.incarnation.generation == self.generation(s);
                        alive += usize::from(good);
                        good
                    }
                    NodeStatus::Crashed | NodeStatus::Left => !matches!(m.state, State::Alive | State::Suspect),
                    NodeStatus::Pending => true,
                };
                if !ok {
                    note(&mut count, &|| {
                        format!(
                            "{} sees {} as {:?} (generation {}); it is {:?} (generation {})",
                            self.name(o),
                            m.name,
                            m.state,
                            m.incarnation.generation,
                            expected,
                            self.generation(s)
                        )
                    });
                    if detail == 0 {
                        return (count, problems);
                    }
                }
            }
            if alive != live {
                note(&mut count, &|| format!("{} sees {alive} of {live} live nodes alive", self.name(o)));
                if detail == 0 {
                    return (count, problems);
                }
            }
        }
        (count, problems)
    }

    /// Traffic over the measurement window.
    pub fn traffic(&self) -> Traffic {
        let (since, now) = (self.traffic_since, self.now);
        let mut node_seconds = 0.0;
        let mut max_rate: f64 = 0.0;
        let (mut datagrams, mut datagram_bytes, mut streams, mut stream_bytes) = (0, 0, 0, 0);
        for n in &self.nodes {
            let live: u64 = n
                .lives
                .iter()
                .map(|l| {
                    let start = l.started.max(since);
                    let end = l.ended.unwrap_or(now).min(now);
                    end.saturating_sub(start)
                })
                .sum();
            let live = live as f64 / 1e9;
            node_seconds += live;
            let t = &n.traffic;
            datagrams += t.datagrams;
            datagram_bytes += t.datagram_bytes;
            streams += t.streams;
            stream_bytes += t.stream_bytes;
            if live > 0.0 {
                max_rate = max_rate.max(t.datagrams as f64 / live);
            }
        }
        let per = |v: u64| if node_seconds > 0.0 { v as f64 / node_seconds } else { 0.0 };
        Traffic {
            window: Duration::from_nanos(now - since),
            node_seconds,
            datagrams,
            datagram_bytes,
            streams,
            stream_bytes,
            datagrams_per_node_sec: per(datagrams),
            datagram_bytes_per_node_sec: per(datagram_bytes),
            streams_per_node_sec: per(streams),
            stream_bytes_per_node_sec: per(stream_bytes),
            max_node_datagrams_per_sec: max_rate,
        }
    }

    /// Everything measured so far: detection times, false failures, traffic, convergence.
    /// Costs one pass over every view (nodes²).
    pub fn report(&self) -> Report {
        let detections = self.detections();
        let mut failures = FailureCounts::default();
        for f in &self.obs.failures {
            failures.add(f.cause);
        }
        Report {
            nodes: self.len(),
            seed: self.cfg.seed,
            virtual_time: self.now(),
            live_nodes: self.live_nodes().count(),
            first_detection: Distribution::from_samples(detections.iter().filter_map(|d| d.first)),
            all_detection: Distribution::from_samples(detections.iter().filter_map(|d| d.all)),
            detections,
            failures,
            false_failures: self.false_failures().cloned().collect(),
            grace: self.grace(),
            traffic: self.traffic(),
            network: self.network_counters(),
            convergence: self.convergence(),
            events: self.event_count(),
            trace_hash: format!("{:016x}", self.trace_hash()),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} nodes, seed {}, {:.1} s virtual, {} live at the end",
            self.nodes,
            self.seed,
            self.virtual_time.as_secs_f64(),
            self.live_nodes
        )?;
        write_detection_table(f, &self.detections, &self.first_detection, &self.all_detection)?;
        write_failures(f, &self.failures, &self.false_failures, self.grace)?;
        write_traffic(f, &self.traffic)?;
        let n = &self.network;
        writeln!(
            f,
            "network: {} delivered, {} lost, {} cut by partitions, {} to down nodes, {} buffered for paused nodes ({} overflowed), {} streams ok, {} failed",
            n.delivered, n.lost, n.cut, n.to_down_node, n.buffered, n.buffer_overflow, n.streams_completed, n.streams_failed
        )?;
        write_convergence(f, &self.convergence)?;
        write!(f, "{} events, trace hash {}", self.events, self.trace_hash)
    }
}

pub(crate) fn write_detection_table(
    f: &mut fmt::Formatter<'_>,
    detections: &[Detection],
    first: &Distribution,
    all: &Distribution,
) -> fmt::Result {
    let undetected = detections.iter().filter(|d| d.first.is_none()).count();
    let incomplete = detections.iter().filter(|d| d.all.is_none()).count();
    writeln!(
        f,
        "crash detection ({} crashes, {undetected} undetected, {incomplete} not known by all):",
        detections.len()
    )?;
    write_detection_rows(f, first, all)
}

pub(crate) fn write_detection_rows(
    f: &mut fmt::Formatter<'_>,
    first: &Distribution,
    all: &Distribution,
) -> fmt::Result {
    writeln!(f, "  {:<12} {:>5} {:>9} {:>9} {:>9} {:>9}", "", "n", "median", "p99", "max", "mean")?;
    for (label, d) in [("first node", first), ("all nodes", all)] {
        writeln!(
            f,
            "  {label:<12} {:>5} {:>8.3}s {:>8.3}s {:>8.3}s {:>8.3}s",
            d.count,
            d.median.as_secs_f64(),
            d.p99.as_secs_f64(),
            d.max.as_secs_f64(),
            d.mean.as_secs_f64()
        )?;
    }
    Ok(())
}

pub(crate) fn write_failures(
    f: &mut fmt::Formatter<'_>,
    counts: &FailureCounts,
    false_failures: &[FailureRecord],
    grace: Duration,
) -> fmt::Result {
    writeln!(
        f,
        "false failures: {} (of {} MemberFailed: {} crashed, {} left, {} paused, {} partitioned, {} observer paused; grace {:.1}s)",
        counts.false_failures,
        counts.total(),
        counts.crashed,
        counts.left,
        counts.paused,
        counts.partitioned,
        counts.observer_paused,
        grace.as_secs_f64()
    )?;
    for r in false_failures.iter().take(20) {
        writeln!(
            f,
            "  at {:>9.3}s node-{} declared {} failed (generation {}, current {})",
            r.at.as_secs_f64(),
            r.observer,
            r.name,
            r.generation,
            r.current_generation
        )?;
    }
    if false_failures.len() > 20 {
        writeln!(f, "  ... {} more", false_failures.len() - 20)?;
    }
    Ok(())
}

pub(crate) fn write_traffic(f: &mut fmt::Formatter<'_>, t: &Traffic) -> fmt::Result {
    writeln!(
        f,
        "traffic per node per second ({:.0} node-seconds): {:.2} datagrams, {:.0} B; {:.3} streams, {:.0} B; busiest node {:.2} datagrams/s",
        t.node_seconds,
        t.datagrams_per_node_sec,
        t.datagram_bytes_per_node_sec,
        t.streams_per_node_sec,
        t.stream_bytes_per_node_sec,
        t.max_node_datagrams_per_sec
    )
}

pub(crate) fn write_convergence(f: &mut fmt::Formatter<'_>, c: &Convergence) -> fmt::Result {
    if c.converged {
        writeln!(f, "convergence: every one of {} live nodes agrees", c.live)
    } else {
        writeln!(f, "convergence: NOT converged ({} disagreements among {} live nodes)", c.problem_count, c.live)?;
        for p in &c.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}
