//! A linearizability checker for one key at a time (a register with compare-and-set), in the
//! style of Wing & Gong as extended by Lowe and used by Porcupine: search for an order of the
//! operations that respects real time (an operation that returned before another was called
//! comes first) and the register's sequential rules, with memoisation of (operations
//! linearized, state) so the search never repeats a dead end.
//!
//! Operations whose outcome the client could not learn (a timeout, a reset connection, a
//! 500 saying the write may or may not have been applied) are *maybe* operations, as Knossos
//! treats them: they return at infinity, so they may take effect at any point after their
//! call, or (placed after everything else) not at all; their answer constrains nothing.
//! Failed reads and writes known not to have been applied are left out of the history.
//!
//! Values are small integers, unique per write, so that a CAS on Consul's `ModifyIndex` can
//! be modelled as a CAS on the value the client read (each write has its own `ModifyIndex`).
//! The checker is per key: Raft orders all keys in one log, and linearizability is
//! compositional (Herlihy & Wing), so checking each key alone is checking the whole.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::time::Instant;

/// A register's value: `None` is an absent key.
pub type Value = Option<u32>;

/// What a client did to one key, and what it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A linearizable read (`?consistent`) answered this value (a 404 is `None`).
    Read(Value),
    /// A plain PUT of a value; `applied` is what the answer said (`Some(true)`), or `None`
    /// when the outcome is unknown.
    Write { value: u32, applied: Option<bool> },
    /// A PUT with `cas`: set `value` if the key holds `expected` (`None`: only if absent);
    /// `applied` is the answer (`true`/`false`), `None` when unknown.
    Cas { expected: Value, value: u32, applied: Option<bool> },
}

/// One operation with its call and return times (`None`: it never returned).
#[derive(Debug, Clone)]
pub struct Timed {
    pub op: Op,
    pub call: Instant,
    pub ret: Option<Instant>,
}

/// Applies `op` to `state`: the new state, or `None` if the answer the client got is
/// impossible in `state`.
fn step(state: Value, op: &Op) -> Option<Value> {
    match *op {
        Op::Read(seen) => (seen == state).then_some(state),
        Op::Write { value, applied: Some(true) | None } => Some(Some(value)),
        Op::Write { applied: Some(false), .. } => Some(state),
        Op::Cas { expected, value, applied } => {
            let matches = state == expected;
            match applied {
                Some(true) => matches.then_some(Some(value)),
                Some(false) => (!matches).then_some(state),
                // Unknown: whichever happened is consistent with `state`.
                None => Some(if matches { Some(value) } else { state }),
            }
        }
    }
}

/// Why a history is not linearizable: how far the longest order found got.
#[derive(Debug)]
pub struct NotLinearizable {
    /// The operations in the longest linearizable prefix found.
    pub longest_prefix: Vec<Op>,
    /// The operations that could not follow it.
    pub stuck: Vec<Op>,
}

/// Checks one key's history, starting from `initial`.
pub fn check(initial: Value, history: &[Timed]) -> Result<(), NotLinearizable> {
    let n = history.len();
    if n == 0 {
        return Ok(());
    }
    // Events in time order. At the same instant a return comes first (the stricter reading:
    // that operation precedes the one called then); `None` return times sort after everything.
    let mut order: Vec<(Instant, bool, usize, bool)> = Vec::with_capacity(2 * n);
    let far = history.iter().map(|t| t.ret.unwrap_or(t.call).max(t.call)).max().expect("not empty");
    for (i, timed) in history.iter().enumerate() {
        order.push((timed.call, false, i, true));
        match timed.ret {
            Some(ret) => order.push((ret.max(timed.call + std::time::Duration::from_nanos(1)), false, i, false)),
            None => order.push((far, true, i, false)),
        }
    }
    // Sort by time; calls after returns at the same time; open-ended returns last.
    order.sort_by_key(|&(time, open_ended, op, is_call)| (open_ended, time, is_call, op));
    let events: Vec<Event> = order.iter().map(|&(_, _, op, is_call)| Event { op, is_call }).collect();
    // A doubly linked list over the events with a head sentinel at index `len`.
    let len = events.len();
    let head = len;
    let end = usize::MAX;
    let mut next: Vec<usize> = (1..=len).chain(std::iter::once(0)).collect();
    next[len - 1] = end;
    let mut prev: Vec<usize> = std::iter::once(head).chain(0..len).collect();
    // For each op, where its call and return events sit.
    let mut call_at = vec![0; n];
    let mut ret_at = vec![0; n];
    for (position, event) in events.iter().enumerate() {
        if event.is_call {
            call_at[event.op] = position;
        } else {
            ret_at[event.op] = position;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, at: usize| {
        let (p, nx) = (prev[at], next[at]);
        next[p] = nx;
        if nx != end {
            prev[nx] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, at: usize| {
        let (p, nx) = (prev[at], next[at]);
        next[p] = at;
        if nx != end {
            prev[nx] = at;
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, Value)> = HashSet::new();
    // (op, state before it)
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut state = initial;
    let mut longest: Vec<usize> = Vec::new();
    let mut entry = next[head];
    while entry != end {
        let event = events[entry];
        if event.is_call {
            let op = event.op;
            if let Some(after) = step(state, &history[op].op) {
                linearized[op / 64] |= 1 << (op % 64);
                if cache.insert((linearized.clone(), after)) {
                    stack.push((op, state));
                    state = after;
                    // Lift the op: its return first, then its call (relinked in reverse).
                    unlink(&mut next, &mut prev, ret_at[op]);
                    unlink(&mut next, &mut prev, call_at[op]);
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|&(op, _)| op).collect();
                    }
                    if stack.len() == n {
                        return Ok(());
                    }
                    entry = next[head];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            entry = next[entry];
        } else {
            // A return whose op was not linearized: backtrack.
            let Some((op, before)) = stack.pop() else {
                let stuck_ops = longest_stuck(&events, &next, head, end, history);
                return Err(NotLinearizable {
                    longest_prefix: longest.iter().map(|&op| history[op].op.clone()).collect(),
                    stuck: stuck_ops,
                });
            };
            state = before;
            linearized[op / 64] &= !(1 << (op % 64));
            relink(&mut next, &mut prev, call_at[op]);
            relink(&mut next, &mut prev, ret_at[op]);
            entry = next[call_at[op]];
        }
    }
    // Every call was linearized or tried; stack.len() < n cannot reach here with returns left.
    Ok(())
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

/// The operations still in the list (for the error message).
fn longest_stuck(events: &[Event], next: &[usize], head: usize, end: usize, history: &[Timed]) -> Vec<Op> {
    let mut out = Vec::new();
    let mut at = next[head];
    while at != end && out.len() < 8 {
        if events[at].is_call {
            out.push(history[events[at].op].op.clone());
        }
        at = next[at];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An operation from `call` to `ret` in milliseconds after a common start (`ret` `None`:
    /// never returned).
    fn at(start: Instant, call: u64, ret: Option<u64>, op: Op) -> Timed {
        Timed { op, call: start + Duration::from_millis(call), ret: ret.map(|r| start + Duration::from_millis(r)) }
    }

    fn w(value: u32) -> Op {
        Op::Write { value, applied: Some(true) }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let t = Instant::now();
        let h = vec![
            at(t, 0, Some(1), Op::Read(None)),
            at(t, 2, Some(3), w(1)),
            at(t, 4, Some(5), Op::Read(Some(1))),
            at(t, 6, Some(7), Op::Cas { expected: Some(1), value: 2, applied: Some(true) }),
            at(t, 8, Some(9), Op::Cas { expected: Some(1), value: 3, applied: Some(false) }),
            at(t, 10, Some(11), Op::Read(Some(2))),
        ];
        check(None, &h).unwrap();
    }

    #[test]
    fn a_stale_read_after_a_write_returned_is_refused() {
        let t = Instant::now();
        let h = vec![at(t, 0, Some(1), w(1)), at(t, 2, Some(3), w(2)), at(t, 4, Some(5), Op::Read(Some(1)))];
        let error = check(None, &h).unwrap_err();
        assert!(!error.stuck.is_empty(), "{error:?}");
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        let t = Instant::now();
        // The write overlaps both reads: old then new is fine.
        let h = vec![at(t, 0, Some(10), w(1)), at(t, 1, Some(2), Op::Read(None)), at(t, 3, Some(4), Op::Read(Some(1)))];
        check(None, &h).unwrap();
        // But new then old is not: once a read saw the write, a later read cannot miss it.
        let h = vec![at(t, 0, Some(10), w(1)), at(t, 1, Some(2), Op::Read(Some(1))), at(t, 3, Some(4), Op::Read(None))];
        check(None, &h).unwrap_err();
    }

    #[test]
    fn two_cas_from_the_same_value_cannot_both_succeed() {
        let t = Instant::now();
        let h = vec![
            at(t, 0, Some(1), w(1)),
            at(t, 2, Some(10), Op::Cas { expected: Some(1), value: 2, applied: Some(true) }),
            at(t, 3, Some(11), Op::Cas { expected: Some(1), value: 3, applied: Some(true) }),
        ];
        check(None, &h).unwrap_err();
        // One succeeding and one failing is fine, in either overlap.
        let h = vec![
            at(t, 0, Some(1), w(1)),
            at(t, 2, Some(10), Op::Cas { expected: Some(1), value: 2, applied: Some(false) }),
            at(t, 3, Some(11), Op::Cas { expected: Some(1), value: 3, applied: Some(true) }),
            at(t, 12, Some(13), Op::Read(Some(3))),
        ];
        check(None, &h).unwrap();
    }

    #[test]
    fn a_maybe_write_may_apply_late_or_never_but_not_before_its_call() {
        let t = Instant::now();
        // Never applied.
        let h = vec![at(t, 0, None, Op::Write { value: 1, applied: None }), at(t, 5, Some(6), Op::Read(None))];
        check(None, &h).unwrap();
        // Applied long after the client gave up.
        let h = vec![
            at(t, 0, None, Op::Write { value: 1, applied: None }),
            at(t, 5, Some(6), Op::Read(None)),
            at(t, 50, Some(51), Op::Read(Some(1))),
        ];
        check(None, &h).unwrap();
        // But once seen, it cannot vanish.
        let h = vec![
            at(t, 0, None, Op::Write { value: 1, applied: None }),
            at(t, 5, Some(6), Op::Read(Some(1))),
            at(t, 50, Some(51), Op::Read(None)),
        ];
        check(None, &h).unwrap_err();
        // And it cannot be read before it was sent.
        let h = vec![at(t, 0, Some(1), Op::Read(Some(1))), at(t, 5, None, Op::Write { value: 1, applied: None })];
        check(None, &h).unwrap_err();
    }

    #[test]
    fn a_lost_acknowledged_write_is_refused() {
        let t = Instant::now();
        let h = vec![
            at(t, 0, Some(1), w(1)),
            at(t, 2, Some(3), w(2)),
            at(t, 4, None, Op::Write { value: 3, applied: None }),
            at(t, 100, Some(101), Op::Read(Some(1))),
        ];
        check(None, &h).unwrap_err();
    }

    #[test]
    fn a_longer_interleaved_history_is_checked_quickly() {
        // 4 clients × 300 operations with overlapping windows: the memo keeps it fast.
        let t = Instant::now();
        let mut h = Vec::new();
        let mut value = 0u32;
        let mut current = None;
        for round in 0..300u64 {
            let base = round * 10;
            value += 1;
            // One write per round, three reads overlapping it: each read sees before or after.
            h.push(at(t, base, Some(base + 6), w(value)));
            h.push(at(t, base + 1, Some(base + 2), Op::Read(current)));
            h.push(at(t, base + 3, Some(base + 9), Op::Read(Some(value))));
            h.push(at(t, base + 4, Some(base + 5), Op::Read(current)));
            current = Some(value);
        }
        let started = Instant::now();
        check(None, &h).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
