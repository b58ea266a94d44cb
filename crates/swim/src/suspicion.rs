//! Lifeguard's dynamic suspicion timer.
//!
//! A suspicion starts at its maximum timeout and shrinks towards its minimum as independent
//! confirmations arrive: `timeout(c) = max(min, max - (max - min) × ln(c + 1) / ln(k + 1))`, where
//! `k` is the number of confirmations expected. The node that started the suspicion (the `from` of
//! the first suspect message) never counts as a confirmation.
//!
//! What the suspicion rests on ([`Evidence`]) picks its timings: a refused TCP connection proves
//! the process gone and gets the short ones; silence gets memberlist's, which a stalled process
//! outlives. Proof arriving for a silent suspicion shortens it ([`Suspicion::prove`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use membership::Incarnation;

/// What a suspicion rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Evidence {
    /// No answer: a stalled process, a host gone, a lossy path. Not proof of death.
    Silence,
    /// The target's TCP port refused a connection: its host is up and its process gone.
    Refused,
}

/// The timings of a suspicion: its minimum and maximum timeout and the confirmations that bring
/// it from the one to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timings {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
    pub(crate) expected: u32,
}

/// One pending suspicion of one member.
#[derive(Debug, Clone)]
pub(crate) struct Suspicion {
    /// The incarnation suspected.
    pub(crate) incarnation: Incarnation,
    /// What it rests on, the strongest heard so far.
    pub(crate) evidence: Evidence,
    /// Whether this node started it (and so runs the direct notices to the suspect).
    pub(crate) originated_here: bool,
    started: Instant,
    confirmers: HashSet<String>,
    expected: u32,
    min: Duration,
    max: Duration,
    deadline: Instant,
    /// Late notices sent to the suspect by a node that did not start the suspicion.
    late_notices: u8,
}

/// Fractions of the timeout at which a node still holding the suspicion tells the suspect
/// directly: a node that missed the refutation gets it re-sent, instead of declaring a live
/// node dead.
const LATE_NOTICE_AT: [f64; 2] = [0.5, 0.75];

impl Suspicion {
    /// A suspicion started by `from` at `now` on `evidence`, with the timings for it.
    pub(crate) fn new(
        incarnation: Incarnation,
        from: &str,
        originated_here: bool,
        evidence: Evidence,
        timings: Timings,
        now: Instant,
    ) -> Self {
        let mut confirmers = HashSet::new();
        confirmers.insert(from.to_owned());
        let Timings { min, max, expected } = timings;
        let max = if expected == 0 { min } else { max.max(min) };
        Self {
            incarnation,
            evidence,
            originated_here,
            started: now,
            confirmers,
            expected,
            min,
            max,
            deadline: now + max,
            late_notices: 0,
        }
    }

    /// Proof of death arrived for a suspicion that rested on silence: switch to `timings` (the
    /// short ones), keeping the start and the confirmations, so that the deadline is the one the
    /// suspicion would have had if it had been proven from the start (at once if that is past),
    /// and never later than before. Returns whether anything changed.
    pub(crate) fn prove(&mut self, timings: Timings) -> bool {
        if self.evidence == Evidence::Refused {
            return false;
        }
        self.evidence = Evidence::Refused;
        let Timings { min, max, expected } = timings;
        self.min = min;
        self.max = if expected == 0 { min } else { max.max(min) };
        self.expected = expected;
        let proven = self.started + timeout(self.confirmations(), self.expected, self.min, self.max);
        self.deadline = self.deadline.min(proven);
        true
    }

    /// Count a confirmation from `from`; returns whether it was new (and so worth re-gossiping).
    pub(crate) fn confirm(&mut self, from: &str) -> bool {
        // The starter is in the set, hence the `- 1` when counting.
        if self.confirmations() >= self.expected {
            return false;
        }
        if !self.confirmers.insert(from.to_owned()) {
            return false;
        }
        self.deadline = self.started + timeout(self.confirmations(), self.expected, self.min, self.max);
        true
    }

    /// Independent confirmations so far.
    pub(crate) fn confirmations(&self) -> u32 {
        (self.confirmers.len() - 1) as u32
    }

    /// When the next late notice is due (never for the node that started it: that one tells
    /// the suspect every gossip round).
    pub(crate) fn next_notice(&self) -> Option<Instant> {
        if self.originated_here {
            return None;
        }
        let fraction = *LATE_NOTICE_AT.get(usize::from(self.late_notices))?;
        Some(self.started + (self.deadline - self.started).mul_f64(fraction))
    }

    /// Record that a late notice went out.
    pub(crate) fn notice_sent(&mut self) {
        self.late_notices = self.late_notices.saturating_add(1);
    }

    /// When the member is to be declared dead.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// The suspicion timeout after `confirmations` of `expected`.
pub(crate) fn timeout(confirmations: u32, expected: u32, min: Duration, max: Duration) -> Duration {
    if expected == 0 || confirmations >= expected {
        return min;
    }
    let fraction = f64::from(confirmations + 1).ln() / f64::from(expected + 1).ln();
    let span = max.saturating_sub(min).as_secs_f64();
    let t = max.as_secs_f64() - span * fraction;
    Duration::from_secs_f64(t.max(min.as_secs_f64()))
}

/// The minimum suspicion timeout for a cluster of `n` live nodes:
/// `mult × max(1, log10(n)) × unit`.
pub(crate) fn min_timeout(mult: u32, n: usize, unit: Duration) -> Duration {
    let scale = (n.max(1) as f64).log10().max(1.0);
    unit.mul_f64(f64::from(mult) * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_timeout_scales_with_log_n() {
        let unit = Duration::from_secs(1);
        assert_eq!(min_timeout(4, 5, unit), Duration::from_secs(4));
        assert_eq!(min_timeout(4, 10, unit), Duration::from_secs(4));
        assert_eq!(min_timeout(4, 100, unit), Duration::from_secs(8));
        assert_eq!(min_timeout(4, 0, unit), Duration::from_secs(4));
    }

    #[test]
    fn timeout_shrinks_from_max_to_min() {
        let (min, max) = (Duration::from_secs(2), Duration::from_secs(12));
        assert_eq!(timeout(0, 2, min, max), max);
        let one = timeout(1, 2, min, max);
        assert!(one < max && one > min, "{one:?}");
        assert_eq!(timeout(2, 2, min, max), min);
        assert_eq!(timeout(9, 2, min, max), min);
        assert_eq!(timeout(0, 0, min, max), min);
    }

    #[test]
    fn starter_and_repeats_do_not_confirm() {
        let t0 = Instant::now();
        let (min, max) = (Duration::from_secs(2), Duration::from_secs(12));
        let inc = Incarnation::default();
        let mut s = Suspicion::new(inc, "a", true, Evidence::Silence, Timings { min, max, expected: 2 }, t0);
        assert_eq!(s.deadline(), t0 + max);
        assert!(!s.confirm("a"));
        assert!(s.confirm("b"));
        assert!(!s.confirm("b"));
        assert!(s.deadline() < t0 + max);
        assert!(s.confirm("c"));
        assert_eq!(s.deadline(), t0 + min);
        assert!(!s.confirm("d"), "no use after k confirmations");
    }

    #[test]
    fn proof_shortens_a_silent_suspicion_from_its_start() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let silent = Timings { min: secs(4), max: secs(24), expected: 2 };
        let proven = Timings { min: Duration::from_millis(800), max: Duration::from_millis(4800), expected: 2 };
        let mut s = Suspicion::new(Incarnation::default(), "a", false, Evidence::Silence, silent, t0);
        assert_eq!(s.deadline(), t0 + secs(24));
        assert!(s.confirm("b"));
        let one_confirmation = s.deadline();
        assert!(s.prove(proven));
        assert_eq!(s.evidence, Evidence::Refused);
        assert_eq!(s.deadline(), t0 + timeout(1, 2, proven.min, proven.max), "the confirmation is kept");
        assert!(s.deadline() < one_confirmation);
        assert!(!s.prove(proven), "proven once is enough");
        assert!(s.confirm("c"));
        assert_eq!(s.deadline(), t0 + proven.min);
        // Never later than before: a proven suspicion with no timings left over keeps its own.
        let mut quick = Suspicion::new(
            Incarnation::default(),
            "a",
            false,
            Evidence::Silence,
            Timings { min: secs(1), max: secs(1), expected: 0 },
            t0,
        );
        assert!(quick.prove(Timings { min: secs(2), max: secs(12), expected: 2 }));
        assert_eq!(quick.deadline(), t0 + secs(1));
    }
}
