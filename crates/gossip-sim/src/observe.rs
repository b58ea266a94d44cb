//! Observation: the event trace, crash-detection records and the classification of every
//! `MemberFailed`.

use std::time::Duration;

use membership::{Incarnation, Member};
use serde::Serialize;
use swim::Event;

use crate::queue::Nanos;
use crate::sim::{NodeStatus, Simulation};
use crate::stats::{opt_secs, secs};

/// Which events [`Simulation::trace`] keeps. Every event is hashed into
/// [`Simulation::trace_hash`] whatever the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum TraceLevel {
    /// Keep nothing (hash only).
    Off,
    /// Keep everything except `MemberJoined`, `MemberUpdated` and user payloads, which grow as
    /// nodes² during formation.
    #[default]
    Failures,
    /// Keep every event (about 40 bytes each; nodes² `MemberJoined` during formation).
    All,
}

/// The kind of an [`Event`], without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventKind {
    /// `MemberJoined`.
    Joined,
    /// `MemberUpdated`.
    Updated,
    /// `MemberSuspected`.
    Suspected,
    /// `MemberRecovered`.
    Recovered,
    /// `MemberFailed`.
    Failed,
    /// `MemberLeft`.
    Left,
    /// `MemberReaped`.
    Reaped,
    /// `NameConflict`.
    NameConflict,
    /// `JoinSucceeded`.
    JoinSucceeded,
    /// `JoinFailed`.
    JoinFailed,
    /// `LeaveComplete`.
    LeaveComplete,
    /// `User`.
    User,
    /// A variant added to `swim::Event` after this crate was written.
    Other,
}

impl EventKind {
    /// The kind of `event` and the member it is about, if any.
    pub fn of(event: &Event) -> (Self, Option<&Member>) {
        match event {
            Event::MemberJoined(m) => (Self::Joined, Some(m)),
            Event::MemberUpdated(m) => (Self::Updated, Some(m)),
            Event::MemberSuspected(m) => (Self::Suspected, Some(m)),
            Event::MemberRecovered(m) => (Self::Recovered, Some(m)),
            Event::MemberFailed(m) => (Self::Failed, Some(m)),
            Event::MemberLeft(m) => (Self::Left, Some(m)),
            Event::MemberReaped(m) => (Self::Reaped, Some(m)),
            Event::NameConflict { existing, .. } => (Self::NameConflict, Some(existing)),
            Event::JoinSucceeded { .. } => (Self::JoinSucceeded, None),
            Event::JoinFailed { .. } => (Self::JoinFailed, None),
            Event::LeaveComplete => (Self::LeaveComplete, None),
            Event::User(_) => (Self::User, None),
            _ => (Self::Other, None),
        }
    }
}

/// One event as recorded: when, by whom, what, about whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TraceRecord {
    /// Virtual time.
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    /// The node that emitted the event.
    pub observer: usize,
    /// What happened.
    pub kind: EventKind,
    /// The node it is about, if it is about a member of the simulation.
    pub subject: Option<usize>,
    /// The member's incarnation as carried by the event (serialized as `[generation,
    /// incarnation]`).
    #[serde(serialize_with = "incarnation_pair")]
    pub incarnation: Option<Incarnation>,
}

fn incarnation_pair<S: serde::Serializer>(i: &Option<Incarnation>, s: S) -> Result<S::Ok, S::Error> {
    i.map(|i| [i.generation, i.incarnation]).serialize(s)
}

/// Why a node was declared failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum FailureCause {
    /// The life the news is about had crashed (or was replaced by a restart less than the grace
    /// window before).
    Crashed,
    /// The subject had left gracefully.
    Left,
    /// The subject was paused at the time or less than the grace window before.
    Paused,
    /// The subject was on one side of a partition active at the time or that ended less than the
    /// grace window before (news crosses sides after healing, so the observer itself need not
    /// have been cut off).
    Partitioned,
    /// The observer itself had been paused less than the grace window before: its timers ran
    /// late, so it is the observer, not the subject, that was unhealthy.
    ObserverPaused,
    /// None of the above: a false failure.
    None,
}

impl FailureCause {
    /// Whether the declaration was a false failure.
    pub fn is_false(self) -> bool {
        self == Self::None
    }
}

/// A `MemberFailed` event and its classification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureRecord {
    /// When.
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    /// Who declared it.
    pub observer: usize,
    /// About whom (`None` if the member is not one of the simulation's nodes).
    pub subject: Option<usize>,
    /// The member's name as carried by the event.
    pub name: String,
    /// The generation in the event.
    pub generation: u64,
    /// The subject's current generation when the event was emitted: larger than `generation`
    /// when the news is about an older life.
    pub current_generation: u64,
    /// Why it was (or was not) legitimate.
    pub cause: FailureCause,
}

/// How long it took the cluster to learn of one crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// The crashed node.
    pub node: usize,
    /// Its generation (life) that crashed.
    pub generation: u64,
    /// When it crashed.
    #[serde(serialize_with = "secs")]
    pub crashed_at: Duration,
    /// Delay from the crash to the first `MemberFailed` (or `MemberLeft`) about it by a live node.
    #[serde(serialize_with = "opt_secs")]
    pub first: Option<Duration>,
    /// Delay until every observer knew: every node live at the crash that stayed up emitted
    /// `MemberFailed`/`MemberLeft` about it. `None` if some never did (see `unaware`) or the
    /// node restarted before.
    #[serde(serialize_with = "opt_secs")]
    pub all: Option<Duration>,
    /// Nodes live at the crash time (minus those that went down before learning of it).
    pub observers: usize,
    /// Observers that had not emitted the event when the report was taken.
    pub unaware: usize,
    /// The node restarted before every observer learned of the crash.
    pub interrupted: bool,
}

const PENDING: Nanos = Nanos::MAX;
const EXCLUDED: Nanos = Nanos::MAX - 1;

/// Per-crash bookkeeping: when each observer learned of it.
#[derive(Debug)]
struct CrashRecord {
    node: usize,
    generation: u64,
    at: Nanos,
    /// Per observer: the time it learned, or `PENDING` / `EXCLUDED`.
    known: Vec<Nanos>,
    pending: usize,
    first: Option<Nanos>,
    all: Option<Nanos>,
    interrupted: bool,
}

impl CrashRecord {
    fn open(&self) -> bool {
        self.pending > 0 && !self.interrupted
    }

    fn settle(&mut self) {
        if self.pending == 0 && self.all.is_none() {
            self.all = self.known.iter().filter(|&&t| t < EXCLUDED).max().copied();
        }
    }

    fn detection(&self) -> Detection {
        let observers = self.known.iter().filter(|&&t| t != EXCLUDED).count();
        Detection {
            node: self.node,
            generation: self.generation,
            crashed_at: Duration::from_nanos(self.at),
            first: self.first.map(|t| Duration::from_nanos(t - self.at)),
            all: if self.interrupted { None } else { self.all.map(|t| Duration::from_nanos(t - self.at)) },
            observers,
            unaware: self.pending,
            interrupted: self.interrupted,
        }
    }
}

/// Everything the simulator records while it runs.
#[derive(Debug)]
pub(crate) struct Observations {
    level: TraceLevel,
    trace: Vec<TraceRecord>,
    hash: Fnv,
    events: u64,
    crashes: Vec<CrashRecord>,
    pub(crate) failures: Vec<FailureRecord>,
}

impl Observations {
    pub(crate) fn new(level: TraceLevel) -> Self {
        Self { level, trace: Vec::new(), hash: Fnv::new(), events: 0, crashes: Vec::new(), failures: Vec::new() }
    }

    /// Start tracking who learns of `node`'s crash; `live(o)` says whether observer `o` is up.
    pub(crate) fn open_crash_record(
        &mut self,
        node: usize,
        generation: u64,
        at: Nanos,
        nodes: usize,
        live: impl Fn(usize) -> bool,
    ) {
        let known: Vec<Nanos> = (0..nodes).map(|o| if o != node && live(o) { PENDING } else { EXCLUDED }).collect();
        let pending = known.iter().filter(|&&t| t == PENDING).count();
        self.crashes.push(CrashRecord {
            node,
            generation,
            at,
            known,
            pending,
            first: None,
            all: None,
            interrupted: false,
        });
    }

    /// Observer `o` went down: it no longer counts for crashes it had not learned of.
    pub(crate) fn observer_gone(&mut self, o: usize) {
        for r in self.crashes.iter_mut().filter(|r| r.open()) {
            if r.known[o] == PENDING {
                r.known[o] = EXCLUDED;
                r.pending -= 1;
                r.settle();
            }
        }
    }

    /// `node` restarted: crashes of its earlier lives that not everyone learned of stay
    /// incomplete.
    pub(crate) fn close_records_of(&mut self, node: usize) {
        for r in self.crashes.iter_mut().filter(|r| r.node == node && r.open()) {
            r.interrupted = true;
        }
    }

    /// Observer `o` learned at `at` that life `generation` of `node` is gone.
    fn learned(&mut self, o: usize, node: usize, generation: u64, at: Nanos) {
        for r in self.crashes.iter_mut().filter(|r| r.node == node && r.generation == generation && r.open()) {
            if r.known[o] == PENDING {
                r.known[o] = at;
                r.pending -= 1;
                r.first.get_or_insert(at);
                r.settle();
            }
        }
    }

    pub(crate) fn detections(&self) -> Vec<Detection> {
        self.crashes.iter().map(CrashRecord::detection).collect()
    }
}

impl Simulation {
    /// Record one event emitted by `observer`.
    pub(crate) fn record_event(&mut self, observer: usize, event: &Event) {
        let now = self.now;
        let (kind, member) = EventKind::of(event);
        let subject = member.and_then(|m| self.subject_of(m));
        let incarnation = member.map(|m| m.incarnation);
        let obs = &mut self.obs;
        obs.events += 1;
        obs.hash.write_u64(now);
        obs.hash.write_u64(observer as u64);
        obs.hash.write_u64(kind as u64);
        obs.hash.write_u64(subject.map_or(u64::MAX, |s| s as u64));
        if let Some(inc) = incarnation {
            obs.hash.write_u64(inc.generation);
            obs.hash.write_u64(inc.incarnation);
        }
        let keep = match obs.level {
            TraceLevel::Off => false,
            TraceLevel::Failures => !matches!(kind, EventKind::Joined | EventKind::Updated | EventKind::User),
            TraceLevel::All => true,
        };
        if keep {
            obs.trace.push(TraceRecord { at: Duration::from_nanos(now), observer, kind, subject, incarnation });
        }
        match (kind, member, subject) {
            (EventKind::Failed, Some(m), _) => {
                self.classify_failure(observer, subject, m);
                if let Some(s) = subject {
                    self.obs.learned(observer, s, m.incarnation.generation, now);
                }
            }
            (EventKind::Left, Some(m), Some(s)) => self.obs.learned(observer, s, m.incarnation.generation, now),
            _ => {}
        }
    }

    fn classify_failure(&mut self, observer: usize, subject: Option<usize>, m: &Member) {
        let now = self.now;
        let grace = self.grace;
        let generation = m.incarnation.generation;
        let (cause, current_generation) = match subject {
            None => (FailureCause::None, 0),
            Some(s) => {
                let node = &self.nodes[s];
                let current = node.lives.last().map_or(0, |l| l.generation);
                let life = node.lives.iter().find(|l| l.generation == generation);
                let replaced_at = node.lives.iter().find(|l| l.generation > generation).map(|l| l.started);
                let cause = match (life.and_then(|l| l.ended), replaced_at) {
                    // That life is over and no newer one started: true news.
                    (Some(_), None) if node.status == NodeStatus::Left => FailureCause::Left,
                    (Some(_), None) => FailureCause::Crashed,
                    // An older life, replaced recently: its death is still news.
                    (Some(_), Some(r)) if now < r.saturating_add(grace) => FailureCause::Crashed,
                    // An older life replaced long ago (stale news), or a life the simulator never
                    // started: not legitimate.
                    (Some(_), Some(_)) => FailureCause::None,
                    (None, _) if life.is_none() => FailureCause::None,
                    // The current life, which is up.
                    (None, _) => {
                        let within = |&(from, until): &(Nanos, Nanos)| now >= from && now < until.saturating_add(grace);
                        if node.pauses.iter().any(within) {
                            FailureCause::Paused
                        } else if self.partitions.involves(s, now, grace) {
                            FailureCause::Partitioned
                        } else if self.nodes[observer].pauses.iter().any(within) {
                            FailureCause::ObserverPaused
                        } else {
                            FailureCause::None
                        }
                    }
                };
                (cause, current)
            }
        };
        self.obs.failures.push(FailureRecord {
            at: Duration::from_nanos(now),
            observer,
            subject,
            name: m.name.to_string(),
            generation,
            current_generation,
            cause,
        });
    }

    /// The recorded events (see [`TraceLevel`]).
    pub fn trace(&self) -> &[TraceRecord] {
        &self.obs.trace
    }

    /// A hash of every event emitted so far (time, observer, kind, subject, incarnation), whatever
    /// the trace level: two runs with equal hashes took the same course.
    pub fn trace_hash(&self) -> u64 {
        self.obs.hash.0
    }

    /// Number of events emitted so far.
    pub fn event_count(&self) -> u64 {
        self.obs.events
    }

    /// Every `MemberFailed` so far, classified.
    pub fn failures(&self) -> &[FailureRecord] {
        &self.obs.failures
    }

    /// The false failures so far (see [`FailureCause::None`]).
    pub fn false_failures(&self) -> impl Iterator<Item = &FailureRecord> {
        self.obs.failures.iter().filter(|f| f.cause.is_false())
    }

    /// One record per crash so far.
    pub fn detections(&self) -> Vec<Detection> {
        self.obs.detections()
    }
}

/// FNV-1a, 64 bits: a stable hash (unlike `std`'s, which may change between releases).
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write_u64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_record_tracks_first_and_all() {
        let mut obs = Observations::new(TraceLevel::Off);
        // 4 nodes, node 1 crashes at t=100; node 3 is down already.
        obs.open_crash_record(1, 7, 100, 4, |o| o != 3);
        obs.learned(2, 1, 7, 150);
        obs.learned(2, 1, 7, 160); // repeated: ignored
        obs.learned(0, 1, 6, 170); // another life: ignored
        let d = &obs.detections()[0];
        assert_eq!((d.first, d.all, d.observers, d.unaware), (Some(Duration::from_nanos(50)), None, 2, 1));
        obs.learned(0, 1, 7, 400);
        let d = &obs.detections()[0];
        assert_eq!(d.all, Some(Duration::from_nanos(300)));
        assert_eq!(d.unaware, 0);
    }

    #[test]
    fn an_observer_going_down_no_longer_counts() {
        let mut obs = Observations::new(TraceLevel::Off);
        obs.open_crash_record(0, 1, 10, 3, |_| true);
        obs.learned(1, 0, 1, 20);
        obs.observer_gone(2);
        let d = &obs.detections()[0];
        assert_eq!((d.all, d.observers), (Some(Duration::from_nanos(10)), 1));
    }

    #[test]
    fn restart_interrupts_an_open_record() {
        let mut obs = Observations::new(TraceLevel::Off);
        obs.open_crash_record(0, 1, 10, 3, |_| true);
        obs.learned(1, 0, 1, 20);
        obs.close_records_of(0);
        obs.learned(2, 0, 1, 30);
        let d = &obs.detections()[0];
        assert!(d.interrupted);
        assert_eq!((d.first, d.all, d.unaware), (Some(Duration::from_nanos(10)), None, 1));
    }

    #[test]
    fn fnv_is_stable() {
        let mut h = Fnv::new();
        h.write_u64(42);
        let mut g = Fnv::new();
        g.write_u64(42);
        assert_eq!(h.0, g.0);
        g.write_u64(1);
        assert_ne!(h.0, g.0);
    }
}
