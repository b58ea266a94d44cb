//! The member table of the gossip protocol.
//!
//! SKELETON: the public API below is the contract used by the `swim` crate. Bodies are to be
//! written (see the helper's task); signatures may gain items but should not change shape.

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Maximum encoded size of a node's tags, in bytes (as Serf's 512-byte meta limit).
pub const MAX_TAGS_ENCODED_LEN: usize = 512;

/// Which life of a node a piece of news is about, and how fresh it is within that life.
///
/// Ordered lexicographically: `generation` first (set once when a process starts, so a restarted
/// node is a newer life and is never confused with its old self), then `incarnation` (raised by the
/// node itself to refute suspicion).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Incarnation {
    /// Set once per process start; larger is newer.
    pub generation: u64,
    /// Raised by the node to refute; larger is newer within a generation.
    pub incarnation: u64,
}

/// The state of a member as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Answering probes.
    Alive,
    /// Missed a probe; will be declared dead unless it refutes in time.
    Suspect,
    /// Declared failed.
    Dead,
    /// Left gracefully.
    Left,
}

/// Protocol versions a node speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolRange {
    /// Oldest version understood.
    pub min: u32,
    /// Newest version understood.
    pub max: u32,
    /// Version spoken now.
    pub cur: u32,
}

/// A node's tags: sorted key/value pairs whose encoded size is at most
/// [`MAX_TAGS_ENCODED_LEN`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags(BTreeMap<String, String>);

/// Errors building [`Tags`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagsError {
    /// The encoded size is over the limit; nothing was changed.
    #[error("tags encode to {len} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Unique name.
    pub name: String,
    /// Gossip address (UDP and TCP).
    pub addr: SocketAddr,
    /// Life and freshness.
    pub incarnation: Incarnation,
    /// Current state.
    pub state: State,
    /// Tags.
    pub tags: Tags,
    /// Protocol versions.
    pub protocol: ProtocolRange,
    /// When `state` last changed.
    pub state_changed: Instant,
}

/// An `alive` claim from the network (or from a push-pull exchange).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliveClaim {
    /// Node name.
    pub name: String,
    /// Claimed address.
    pub addr: SocketAddr,
    /// Claimed life and freshness.
    pub incarnation: Incarnation,
    /// Tags.
    pub tags: Tags,
    /// Protocol versions.
    pub protocol: ProtocolRange,
}

/// What applying a piece of news did to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applied {
    /// Nothing changed (stale, duplicate, or about an unknown node where that is not news).
    Ignored,
    /// A member was added or its state, incarnation, address or tags changed. The news should be
    /// re-gossiped.
    Changed {
        /// State before, `None` for a new member.
        previous: Option<State>,
        /// The member after the change.
        member: Member,
        /// Only tags (or protocol versions) changed; the state is the same.
        tags_changed: bool,
    },
    /// The news was about this node and said it is suspect, dead or older than it is: the local
    /// incarnation was raised and the returned claim must be broadcast to refute it.
    Refuted(AliveClaim),
    /// An `alive` claim for a live member's name came from a different address; refused.
    Conflict {
        /// The member as known.
        existing: Member,
        /// The refused claim.
        claim: AliveClaim,
    },
}

/// The member table: all members this node knows, including itself and tombstones.
#[derive(Debug, Clone)]
pub struct MemberTable {
    local: String,
    members: BTreeMap<String, Member>,
}

impl MemberTable {
    /// A table holding only the local node, alive.
    pub fn new(local: AliveClaim, now: Instant) -> Self {
        let _ = (local, now);
        todo!()
    }
    /// The local node.
    pub fn local(&self) -> &Member {
        todo!()
    }
    /// Look a member up by name.
    pub fn get(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }
    /// All members, tombstones included, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }
    /// Number of members in the table (tombstones included).
    pub fn len(&self) -> usize {
        self.members.len()
    }
    /// Whether the table holds only ... never true (the local node is always present).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
    /// Number of members that are alive or suspect (the local node included): the `n` of the
    /// protocol's log(n) formulas.
    pub fn live_count(&self) -> usize {
        todo!()
    }
    /// Apply an `alive` claim: SWIM ordering (alive(i) overrides alive/suspect(j) if i > j,
    /// overrides dead/left if i > j), address-conflict refusal (a live member's name claimed from
    /// another address), refutation when the claim is about the local node with an incarnation
    /// not older than ours but different content.
    pub fn apply_alive(&mut self, claim: AliveClaim, now: Instant) -> Applied {
        let _ = (claim, now);
        todo!()
    }
    /// Apply `suspect`: overrides alive(j) if i >= j; ignored for dead/left members or unknown
    /// nodes; refuted when about the local node.
    pub fn apply_suspect(&mut self, name: &str, incarnation: Incarnation, now: Instant) -> Applied {
        let _ = (name, incarnation, now);
        todo!()
    }
    /// Apply `dead` (or `left` when `left` is set): overrides alive and suspect at i >= j; a
    /// `left` overrides `dead` at the same incarnation; refuted when about the local node unless
    /// the local node is leaving (`left` about itself is accepted through [`Self::leave_local`]).
    pub fn apply_dead(&mut self, name: &str, incarnation: Incarnation, left: bool, now: Instant) -> Applied {
        let _ = (name, incarnation, left, now);
        todo!()
    }
    /// Mark the local node as left (graceful leave) and return its incarnation for the `dead`
    /// message with `left` set.
    pub fn leave_local(&mut self, now: Instant) -> Incarnation {
        let _ = now;
        todo!()
    }
    /// Change the local node's tags: raises the local incarnation and returns the claim to
    /// broadcast.
    pub fn set_local_tags(&mut self, tags: Tags) -> AliveClaim {
        let _ = tags;
        todo!()
    }
    /// Raise the local incarnation (for example to rejoin) and return the claim to broadcast.
    pub fn bump_local(&mut self) -> AliveClaim {
        todo!()
    }
    /// Remove dead members whose state changed more than `dead_ttl` ago and left members older
    /// than `left_ttl`; returns them.
    pub fn reap(&mut self, now: Instant, dead_ttl: Duration, left_ttl: Duration) -> Vec<Member> {
        let _ = (now, dead_ttl, left_ttl);
        todo!()
    }
}

/// The piggyback broadcast queue: encoded messages waiting to ride on outgoing packets.
///
/// Only the newest message per key circulates (a newer update about a node replaces the older).
/// Each message is sent `retransmit_mult × ceil(log10(n + 1))` times, least-sent first; the queue
/// holds at most `max_depth` messages and drops the most-sent ones beyond that.
#[derive(Debug, Clone)]
pub struct BroadcastQueue {
    _private: (),
}

impl BroadcastQueue {
    /// An empty queue.
    pub fn new(retransmit_mult: u32, max_depth: usize) -> Self {
        let _ = (retransmit_mult, max_depth);
        todo!()
    }
    /// Queue an encoded message. With `key`, any queued message with the same key is dropped.
    pub fn push(&mut self, key: Option<&str>, message: Bytes) {
        let _ = (key, message);
        todo!()
    }
    /// Take messages for one packet: least-sent first, each at most `budget` bytes in total
    /// where a message costs `overhead(len) + len` bytes; counts a transmission for each and
    /// drops messages that reached their limit for a cluster of `cluster_size` live nodes.
    pub fn fill(
        &mut self,
        budget: usize,
        cluster_size: usize,
        overhead: impl Fn(usize) -> usize,
    ) -> Vec<Bytes> {
        let _ = (budget, cluster_size, overhead);
        todo!()
    }
    /// Messages queued.
    pub fn len(&self) -> usize {
        todo!()
    }
    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
