//! The piggyback broadcast queue.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use foldhash::fast::FixedState;

use crate::Name;

/// Where a message sits in the queue: fewest transmissions first, then newest first.
type Slot = (u32, Reverse<u64>);

/// The piggyback broadcast queue: encoded messages waiting to ride on outgoing packets.
///
/// Only the newest message per key circulates (a newer update about a node replaces the older).
/// Each message is sent `retransmit_mult × ceil(log10(n + 1))` times (at least once), least-sent
/// first; the queue holds at most `max_depth` messages and drops the most-sent ones beyond that.
///
/// Costs, for `n` queued messages: [`Self::push`] is `O(log n)`; [`Self::fill`] is one pass over
/// the first `k + s` messages in queue order and `O(k log n)` to requeue the `k` picked, with `s`
/// skipped because they did not fit the remaining budget (it stops as soon as the smallest
/// message still unpicked cannot fit, so `s` stays small unless message sizes vary widely).
///
/// ```
/// use bytes::Bytes;
/// use membership::BroadcastQueue;
///
/// let mut queue = BroadcastQueue::new(4, 1024);
/// queue.push(Some("node-a"), Bytes::from_static(b"alive node-a 1"));
/// queue.push(Some("node-a"), Bytes::from_static(b"alive node-a 2")); // replaces the first
/// queue.push(None, Bytes::from_static(b"user event"));
/// assert_eq!(queue.len(), 2);
///
/// // One packet with 1000 bytes to spare, in a cluster of 10 nodes, one length byte per message.
/// let picked = queue.fill(1000, 10, |_len| 1);
/// assert_eq!(picked.len(), 2);
/// assert_eq!(queue.retransmit_limit(10), 8);
/// ```
#[derive(Debug, Clone)]
pub struct BroadcastQueue {
    retransmit_mult: u32,
    max_depth: usize,
    next_seq: u64,
    queue: BTreeMap<Slot, Queued>,
    /// Slot of the message queued under each key (a fixed hash: nothing depends on the process).
    keys: HashMap<Name, Slot, FixedState>,
    /// Multiset of queued message lengths, to stop `fill` once nothing can fit.
    lengths: BTreeMap<usize, usize>,
}

#[derive(Debug, Clone)]
struct Queued {
    key: Option<Name>,
    message: Bytes,
}

impl BroadcastQueue {
    /// An empty queue. Each message is sent `retransmit_mult × ceil(log10(n + 1))` times; at most
    /// `max_depth` messages are held (with `0`, every pushed message is dropped at once).
    pub fn new(retransmit_mult: u32, max_depth: usize) -> Self {
        Self {
            retransmit_mult,
            max_depth,
            next_seq: 0,
            queue: BTreeMap::new(),
            keys: HashMap::with_hasher(FixedState::with_seed(0x6b65_7973)),
            lengths: BTreeMap::new(),
        }
    }

    /// How many times each message is sent in a cluster of `cluster_size` live nodes:
    /// `retransmit_mult × ceil(log10(cluster_size + 1))`, at least 1.
    pub fn retransmit_limit(&self, cluster_size: usize) -> u32 {
        let target = u64::try_from(cluster_size).unwrap_or(u64::MAX).saturating_add(1);
        // ceil(log10(target)): the smallest d with 10^d >= target.
        let mut digits = 0u32;
        let mut power = 1u64;
        while power < target {
            power = power.saturating_mul(10);
            digits += 1;
        }
        self.retransmit_mult.saturating_mul(digits).max(1)
    }

    /// Queue an encoded message. With `key`, any queued message with the same key is dropped.
    /// Beyond `max_depth` messages, the most-sent ones (the oldest among equals) are dropped.
    pub fn push(&mut self, key: Option<&str>, message: Bytes) {
        // A replaced message hands its key on, so that a key is allocated once per news subject.
        let replaced = key.and_then(|key| self.keys.remove(key)).and_then(|old| self.take(old));
        let key = replaced.and_then(|queued| queued.key).or_else(|| key.map(Name::from));
        let slot = (0, Reverse(self.next_seq));
        self.next_seq += 1;
        if let Some(key) = &key {
            self.keys.insert(key.clone(), slot);
        }
        self.put(slot, Queued { key, message });
        while self.queue.len() > self.max_depth {
            let Some((_, dropped)) = self.queue.pop_last() else {
                break;
            };
            self.forget_len(dropped.message.len());
            if let Some(key) = dropped.key {
                self.keys.remove(&key);
            }
        }
    }

    /// Take messages for one packet: least-sent first, each at most `budget` bytes in total
    /// where a message costs `overhead(len) + len` bytes; counts a transmission for each and
    /// drops messages that reached their limit for a cluster of `cluster_size` live nodes.
    ///
    /// Among messages sent equally often the newest goes first. A message that does not fit the
    /// remaining budget is skipped and smaller ones after it may still be taken. `overhead` must
    /// not decrease as `len` grows (as a length prefix does not). The messages are returned in
    /// the order picked.
    pub fn fill(&mut self, budget: usize, cluster_size: usize, overhead: impl Fn(usize) -> usize) -> Vec<Bytes> {
        self.fill_for(budget, cluster_size, overhead, None)
    }

    /// As [`BroadcastQueue::fill`], for a packet to the member named `skip_key`: the message
    /// queued under that key (news about the destination itself, which it knows better than
    /// anyone) is left for other packets instead of spending a transmission on it.
    pub fn fill_for(
        &mut self,
        budget: usize,
        cluster_size: usize,
        overhead: impl Fn(usize) -> usize,
        skip_key: Option<&str>,
    ) -> Vec<Bytes> {
        let cost = |len: usize| overhead(len).saturating_add(len);
        let limit = self.retransmit_limit(cluster_size);
        let skip = skip_key.and_then(|key| self.keys.get(key).copied());
        let mut remaining = budget;
        // One pass in queue order. A picked message leaves the length multiset at once, so that
        // the pass stops as soon as not even the smallest message still unpicked fits; the picked
        // ones leave the queue after the pass.
        let mut picked: Vec<Slot> = Vec::new();
        for (&slot, queued) in &self.queue {
            if self.lengths.first_key_value().is_none_or(|(&smallest, _)| cost(smallest) > remaining) {
                break;
            }
            if Some(slot) == skip {
                continue;
            }
            let price = cost(queued.message.len());
            if price > remaining {
                continue;
            }
            remaining -= price;
            forget_len(&mut self.lengths, queued.message.len());
            picked.push(slot);
        }
        let mut messages = Vec::with_capacity(picked.len());
        for slot in picked {
            let Some(queued) = self.queue.remove(&slot) else { continue };
            let (transmits, seq) = slot;
            let transmits = transmits.saturating_add(1);
            if transmits >= limit {
                if let Some(key) = &queued.key {
                    self.keys.remove(key);
                }
                messages.push(queued.message);
                continue;
            }
            messages.push(queued.message.clone());
            let slot = (transmits, seq);
            if let Some(entry) = queued.key.as_ref().and_then(|key| self.keys.get_mut(key)) {
                *entry = slot;
            }
            self.put(slot, queued);
        }
        self.shrink_when_mostly_empty();
        messages
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop every queued message.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.keys.clear();
        self.lengths.clear();
        self.shrink_when_mostly_empty();
    }

    /// Give back the key index's room once the queue has drained to a quarter of it: a burst
    /// (a node learning a thousand members while it joins) must not leave every node holding a
    /// table sized for the burst. The B-trees give their nodes back by themselves.
    fn shrink_when_mostly_empty(&mut self) {
        if self.keys.capacity() > 64 && self.keys.len() < self.keys.capacity() / 4 {
            self.keys.shrink_to(self.keys.len() * 2);
        }
    }

    /// Insert at `slot` (the key index is the caller's business).
    fn put(&mut self, slot: Slot, queued: Queued) {
        *self.lengths.entry(queued.message.len()).or_insert(0) += 1;
        self.queue.insert(slot, queued);
    }

    /// Remove the message at `slot` (the key index is the caller's business).
    fn take(&mut self, slot: Slot) -> Option<Queued> {
        let queued = self.queue.remove(&slot)?;
        self.forget_len(queued.message.len());
        Some(queued)
    }

    fn forget_len(&mut self, len: usize) {
        forget_len(&mut self.lengths, len);
    }

    /// Check the three indexes agree (tests only).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut lengths = BTreeMap::new();
        for (slot, queued) in &self.queue {
            *lengths.entry(queued.message.len()).or_insert(0) += 1;
            if let Some(key) = &queued.key {
                assert_eq!(self.keys.get(key), Some(slot), "key index of {key}");
            }
        }
        assert_eq!(lengths, self.lengths, "length multiset");
        assert_eq!(self.keys.len(), self.queue.values().filter(|q| q.key.is_some()).count(), "stale keys");
        assert!(self.queue.len() <= self.max_depth);
    }
}

/// Remove one `len` from the multiset of lengths.
fn forget_len(lengths: &mut BTreeMap<usize, usize>, len: usize) {
    if let Some(count) = lengths.get_mut(&len) {
        *count -= 1;
        if *count == 0 {
            lengths.remove(&len);
        }
    }
}

#[cfg(test)]
mod tests;
