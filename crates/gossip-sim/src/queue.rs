//! The discrete-event queue: actions ordered by virtual time, ties broken by insertion order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Virtual time in nanoseconds since the start of the simulation.
pub(crate) type Nanos = u64;

/// A priority queue of `(time, sequence) → action`.
///
/// Two actions due at the same instant run in the order they were pushed, so that a run depends
/// only on the seed, never on the heap's internal layout.
#[derive(Debug)]
pub(crate) struct EventQueue<A> {
    heap: BinaryHeap<Entry<A>>,
    next_seq: u64,
}

#[derive(Debug)]
struct Entry<A> {
    at: Nanos,
    seq: u64,
    action: A,
}

impl<A> EventQueue<A> {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        Self { heap: BinaryHeap::new(), next_seq: 0 }
    }

    /// Schedule `action` at `at`.
    pub(crate) fn push(&mut self, at: Nanos, action: A) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { at, seq, action });
    }

    /// The time of the earliest action, if any.
    pub(crate) fn peek_time(&self) -> Option<Nanos> {
        self.heap.peek().map(|e| e.at)
    }

    /// Remove and return the earliest action.
    pub(crate) fn pop(&mut self) -> Option<(Nanos, A)> {
        self.heap.pop().map(|e| (e.at, e.action))
    }

    /// Number of scheduled actions.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

// `BinaryHeap` is a max-heap: invert the order so that the earliest (time, seq) is on top.
impl<A> Ord for Entry<A> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<A> PartialOrd for Entry<A> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<A> PartialEq for Entry<A> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}

impl<A> Eq for Entry<A> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_order() {
        let mut q = EventQueue::new();
        q.push(30, "c");
        q.push(10, "a");
        q.push(20, "b");
        assert_eq!(q.len(), 3);
        assert_eq!(q.peek_time(), Some(10));
        assert_eq!(q.pop(), Some((10, "a")));
        assert_eq!(q.pop(), Some((20, "b")));
        assert_eq!(q.pop(), Some((30, "c")));
        assert_eq!(q.pop(), None);
        assert_eq!(q.peek_time(), None);
    }

    #[test]
    fn ties_run_in_insertion_order() {
        let mut q = EventQueue::new();
        for i in 0..100 {
            q.push(5, i);
        }
        q.push(1, -1);
        assert_eq!(q.pop(), Some((1, -1)));
        for i in 0..100 {
            assert_eq!(q.pop(), Some((5, i)));
        }
    }

    #[test]
    fn interleaved_push_and_pop_stay_ordered() {
        let mut q = EventQueue::new();
        let mut x: u64 = 12345;
        let mut last = 0;
        for round in 0..10_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            q.push(last + x % 1000, round);
            if round % 3 == 0 {
                let (at, _) = q.pop().unwrap();
                assert!(at >= last);
                last = at;
            }
        }
        while let Some((at, _)) = q.pop() {
            assert!(at >= last);
            last = at;
        }
    }
}
