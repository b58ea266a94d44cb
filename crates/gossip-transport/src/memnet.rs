//! An in-memory datagram network for tests: no sockets, no tokio, no clock.
//!
//! Every address has an inbox. [`MemoryNetwork::send`] puts a datagram into the destination's
//! inbox at once (or drops it), [`MemoryNetwork::recv`] takes the oldest one out. Delivery is
//! instantaneous and in order per receiver; nothing is duplicated or reordered. Datagrams are
//! dropped by, in this order:
//!
//! 1. a partition between the sender and the receiver ([`MemoryNetwork::partition`]),
//! 2. a drop filter, a deterministic hook that sees every datagram
//!    ([`MemoryNetwork::set_drop_filter`]),
//! 3. random loss with a seeded RNG, so a test replays exactly ([`MemoryNetwork::set_loss`]).
//!
//! Timing (latency, pauses) is out of scope: the test or simulator decides when to call `recv`.
//!
//! ```
//! use gossip_transport::memnet::MemoryNetwork;
//!
//! let net = MemoryNetwork::new();
//! let (a, b) = ("10.0.0.1:7946".parse().unwrap(), "10.0.0.2:7946".parse().unwrap());
//! net.send(a, b, bytes::Bytes::from_static(b"ping"));
//! assert_eq!(net.recv(b), Some((a, bytes::Bytes::from_static(b"ping"))));
//! assert_eq!(net.recv(b), None);
//!
//! net.partition(&[a], &[b]);
//! net.send(a, b, bytes::Bytes::from_static(b"lost"));
//! assert_eq!(net.recv(b), None);
//! net.heal();
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A hook deciding whether to drop a datagram: `(from, to, bytes) -> drop?`.
type DropFilter = Box<dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool + Send>;

/// A shared in-memory datagram network. Clones are handles to the same network.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<Inner>>,
}

/// Datagram counters of a [`MemoryNetwork`] since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryNetworkStats {
    /// Datagrams handed to [`MemoryNetwork::send`].
    pub sent: u64,
    /// Datagrams put into an inbox.
    pub delivered: u64,
    /// Datagrams dropped because of a partition.
    pub dropped_by_partition: u64,
    /// Datagrams dropped by the drop filter.
    pub dropped_by_filter: u64,
    /// Datagrams dropped by random loss.
    pub dropped_by_loss: u64,
}

struct Inner {
    inboxes: HashMap<SocketAddr, VecDeque<(SocketAddr, Bytes)>>,
    partitions: Vec<(HashSet<SocketAddr>, HashSet<SocketAddr>)>,
    drop_filter: Option<DropFilter>,
    loss: f64,
    rng: StdRng,
    stats: MemoryNetworkStats,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            inboxes: HashMap::new(),
            partitions: Vec::new(),
            drop_filter: None,
            loss: 0.0,
            rng: StdRng::seed_from_u64(0),
            stats: MemoryNetworkStats::default(),
        }
    }
}

impl Inner {
    fn partitioned(&self, from: SocketAddr, to: SocketAddr) -> bool {
        self.partitions
            .iter()
            .any(|(a, b)| (a.contains(&from) && b.contains(&to)) || (b.contains(&from) && a.contains(&to)))
    }
}

impl MemoryNetwork {
    /// A network without loss, partitions or filter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends a datagram from `from` to `to`: it lands in `to`'s inbox unless dropped (see the
    /// module documentation for the order of the drop rules).
    pub fn send(&self, from: SocketAddr, to: SocketAddr, bytes: Bytes) {
        let mut inner = self.lock();
        inner.stats.sent += 1;
        if inner.partitioned(from, to) {
            inner.stats.dropped_by_partition += 1;
            return;
        }
        if let Some(filter) = inner.drop_filter.as_mut() {
            if filter(from, to, &bytes) {
                inner.stats.dropped_by_filter += 1;
                return;
            }
        }
        if inner.loss > 0.0 {
            let loss = inner.loss;
            if inner.rng.random_bool(loss) {
                inner.stats.dropped_by_loss += 1;
                return;
            }
        }
        inner.stats.delivered += 1;
        inner.inboxes.entry(to).or_default().push_back((from, bytes));
    }

    /// Takes the oldest datagram waiting at `at`, with its sender.
    pub fn recv(&self, at: SocketAddr) -> Option<(SocketAddr, Bytes)> {
        self.lock().inboxes.get_mut(&at)?.pop_front()
    }

    /// Number of datagrams waiting at `at`.
    pub fn pending(&self, at: SocketAddr) -> usize {
        self.lock().inboxes.get(&at).map_or(0, VecDeque::len)
    }

    /// Drops each datagram with `probability` (clamped to 0..=1), drawn from an RNG seeded with
    /// `seed` so that runs repeat exactly. `set_loss(0.0, _)` turns loss off.
    pub fn set_loss(&self, probability: f64, seed: u64) {
        let mut inner = self.lock();
        inner.loss = if probability.is_nan() { 0.0 } else { probability.clamp(0.0, 1.0) };
        inner.rng = StdRng::seed_from_u64(seed);
    }

    /// Installs a deterministic drop hook, called as `filter(from, to, bytes)` for every datagram
    /// that crosses no partition; returning `true` drops it. Replaces any previous filter.
    /// The filter runs under the network's lock and must not call back into the network.
    pub fn set_drop_filter(&self, filter: impl FnMut(SocketAddr, SocketAddr, &[u8]) -> bool + Send + 'static) {
        self.lock().drop_filter = Some(Box::new(filter));
    }

    /// Removes the drop filter.
    pub fn clear_drop_filter(&self) {
        self.lock().drop_filter = None;
    }

    /// Cuts every path between a member of `a` and a member of `b`, both ways. Partitions add up;
    /// addresses not named keep talking to everyone they are not cut from.
    pub fn partition(&self, a: &[SocketAddr], b: &[SocketAddr]) {
        let a = a.iter().copied().collect();
        let b = b.iter().copied().collect();
        self.lock().partitions.push((a, b));
    }

    /// Removes all partitions. Datagrams dropped meanwhile stay lost.
    pub fn heal(&self) {
        self.lock().partitions.clear();
    }

    /// Counters since the network was created.
    pub fn stats(&self) -> MemoryNetworkStats {
        self.lock().stats
    }

    /// The state stays consistent across a panic in another test thread (each operation is a
    /// single step), so a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemoryNetwork")
            .field("inboxes", &inner.inboxes.len())
            .field("partitions", &inner.partitions.len())
            .field("drop_filter", &inner.drop_filter.is_some())
            .field("loss", &inner.loss)
            .field("stats", &inner.stats)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7946))
    }

    fn datagram(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn delivers_in_order_per_receiver() {
        let net = MemoryNetwork::new();
        net.send(addr(1), addr(3), datagram("a"));
        net.send(addr(2), addr(3), datagram("b"));
        net.send(addr(1), addr(2), datagram("c"));
        assert_eq!(net.pending(addr(3)), 2);
        assert_eq!(net.recv(addr(3)), Some((addr(1), datagram("a"))));
        assert_eq!(net.recv(addr(3)), Some((addr(2), datagram("b"))));
        assert_eq!(net.recv(addr(3)), None);
        assert_eq!(net.recv(addr(2)), Some((addr(1), datagram("c"))));
        assert_eq!(net.recv(addr(9)), None);
        assert_eq!(net.stats().delivered, 3);
    }

    #[test]
    fn clones_share_the_network() {
        let net = MemoryNetwork::new();
        let other = net.clone();
        net.send(addr(1), addr(2), datagram("x"));
        assert_eq!(other.recv(addr(2)), Some((addr(1), datagram("x"))));
    }

    #[test]
    fn partitions_cut_both_ways_and_heal() {
        let net = MemoryNetwork::new();
        net.partition(&[addr(1), addr(2)], &[addr(3)]);
        net.send(addr(1), addr(3), datagram("x"));
        net.send(addr(3), addr(2), datagram("x"));
        net.send(addr(1), addr(2), datagram("same side"));
        net.send(addr(4), addr(3), datagram("not named"));
        assert_eq!(net.recv(addr(3)), Some((addr(4), datagram("not named"))));
        assert_eq!(net.recv(addr(3)), None);
        assert_eq!(net.recv(addr(2)), Some((addr(1), datagram("same side"))));
        assert_eq!(net.stats().dropped_by_partition, 2);

        net.heal();
        net.send(addr(1), addr(3), datagram("y"));
        assert_eq!(net.recv(addr(3)), Some((addr(1), datagram("y"))));
    }

    #[test]
    fn drop_filter_is_deterministic() {
        let net = MemoryNetwork::new();
        net.set_drop_filter(|_, to, bytes| to == addr(2) && bytes.starts_with(b"ack"));
        net.send(addr(1), addr(2), datagram("ack 1"));
        net.send(addr(1), addr(2), datagram("ping 1"));
        net.send(addr(1), addr(3), datagram("ack 2"));
        assert_eq!(net.recv(addr(2)), Some((addr(1), datagram("ping 1"))));
        assert_eq!(net.recv(addr(2)), None);
        assert_eq!(net.pending(addr(3)), 1);
        assert_eq!(net.stats().dropped_by_filter, 1);

        net.clear_drop_filter();
        net.send(addr(1), addr(2), datagram("ack 3"));
        assert_eq!(net.pending(addr(2)), 1);
    }

    #[test]
    fn loss_is_seeded() {
        let run = |seed| {
            let net = MemoryNetwork::new();
            net.set_loss(0.3, seed);
            for _ in 0..1000 {
                net.send(addr(1), addr(2), datagram("x"));
            }
            net.stats()
        };
        let stats = run(5);
        assert_eq!(stats, run(5));
        assert_eq!(stats.sent, 1000);
        assert_eq!(stats.delivered + stats.dropped_by_loss, 1000);
        assert!((200..400).contains(&stats.dropped_by_loss), "{stats:?}");

        let net = MemoryNetwork::new();
        net.set_loss(f64::NAN, 1);
        net.send(addr(1), addr(2), datagram("x"));
        net.set_loss(7.0, 1);
        net.send(addr(1), addr(2), datagram("x"));
        assert_eq!(net.stats().delivered, 1);
        assert_eq!(net.stats().dropped_by_loss, 1);
    }
}
