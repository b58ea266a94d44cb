//! Lamport clocks, as Serf's `LamportClock`.

use std::sync::atomic::{AtomicU64, Ordering};

/// A Lamport clock shared between tasks: `time` reads it, `increment` ticks it, `witness` moves
/// it past a time seen in a message.
#[derive(Debug, Default)]
pub(crate) struct LamportClock(AtomicU64);

impl LamportClock {
    /// The current time.
    pub(crate) fn time(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Tick; returns the new time.
    pub(crate) fn increment(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst).saturating_add(1)
    }

    /// A message carried time `seen`: from now on the clock is past it (`seen + 1` at least).
    pub(crate) fn witness(&self, seen: u64) {
        let next = seen.saturating_add(1);
        self.0.fetch_max(next, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witness_moves_past_what_was_seen_and_never_back() {
        let clock = LamportClock::default();
        assert_eq!(clock.increment(), 1);
        clock.witness(10);
        assert_eq!(clock.time(), 11);
        clock.witness(3);
        assert_eq!(clock.time(), 11);
        clock.witness(u64::MAX);
        assert_eq!(clock.time(), u64::MAX);
    }
}
