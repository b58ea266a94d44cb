//! De-duplication of user events and queries by Lamport time, as Serf's `eventBuffer` and
//! `queryBuffer`: a ring of slots indexed by `ltime % len`, each holding what was seen at that
//! time.

/// Most distinct items remembered for one Lamport time (Serf has no bound). Distinct events with
/// the same time come only from concurrent senders; beyond this many the newcomers are refused
/// (and counted) rather than remembered, so that one time cannot grow without bound.
pub(crate) const MAX_PER_SLOT: usize = 128;

/// What [`LamportBuffer::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// First sight: deliver it (and re-broadcast it).
    New,
    /// Seen before.
    Duplicate,
    /// Older than the buffer reaches back, or older than the minimum time (a join that ignores
    /// old events, a restart from a snapshot).
    TooOld,
    /// Its time slot is full.
    SlotFull,
}

/// The items seen at one Lamport time.
#[derive(Debug, Clone)]
pub(crate) struct Slot<T> {
    pub(crate) ltime: u64,
    pub(crate) items: Vec<T>,
}

/// A ring of `len` Lamport-time slots.
#[derive(Debug)]
pub(crate) struct LamportBuffer<T> {
    slots: Vec<Option<Slot<T>>>,
}

impl<T: PartialEq> LamportBuffer<T> {
    /// A buffer of `len` slots (at least one).
    pub(crate) fn new(len: usize) -> Self {
        Self { slots: (0..len.max(1)).map(|_| None).collect() }
    }

    /// Decide about `item` stamped `ltime`, given the clock's current time (after witnessing
    /// `ltime`) and the minimum time accepted; remember it when it is new.
    pub(crate) fn admit(&mut self, ltime: u64, item: T, clock: u64, min_time: u64) -> Admission {
        if ltime < min_time {
            return Admission::TooOld;
        }
        let len = self.slots.len() as u64;
        if clock > len && ltime < clock - len {
            return Admission::TooOld;
        }
        let index = (ltime % len) as usize;
        match &mut self.slots[index] {
            Some(slot) if slot.ltime == ltime => {
                if slot.items.contains(&item) {
                    Admission::Duplicate
                } else if slot.items.len() >= MAX_PER_SLOT {
                    Admission::SlotFull
                } else {
                    slot.items.push(item);
                    Admission::New
                }
            }
            entry => {
                *entry = Some(Slot { ltime, items: vec![item] });
                Admission::New
            }
        }
    }

    /// The remembered slots, newest time first.
    pub(crate) fn newest_first(&self) -> Vec<&Slot<T>> {
        let mut slots: Vec<&Slot<T>> = self.slots.iter().flatten().collect();
        slots.sort_by_key(|slot| std::cmp::Reverse(slot.ltime));
        slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_old_items_and_full_slots_are_refused() {
        let mut buffer = LamportBuffer::new(4);
        assert_eq!(buffer.admit(5, "a", 6, 0), Admission::New);
        assert_eq!(buffer.admit(5, "a", 6, 0), Admission::Duplicate);
        assert_eq!(buffer.admit(5, "b", 6, 0), Admission::New);
        // Slot 1 (= 5 % 4) is reused by time 9: time 5 is forgotten.
        assert_eq!(buffer.admit(9, "a", 10, 0), Admission::New);
        // Time 5 is now older than the buffer reaches (10 - 4 = 6).
        assert_eq!(buffer.admit(5, "a", 10, 0), Admission::TooOld);
        // The minimum time wins over everything.
        assert_eq!(buffer.admit(9, "z", 10, 10), Admission::TooOld);
        assert_eq!(buffer.newest_first().iter().map(|s| s.ltime).collect::<Vec<_>>(), [9]);

        let mut buffer = LamportBuffer::new(1);
        for i in 0..MAX_PER_SLOT {
            assert_eq!(buffer.admit(1, i, 1, 0), Admission::New);
        }
        assert_eq!(buffer.admit(1, MAX_PER_SLOT, 1, 0), Admission::SlotFull);
    }
}
