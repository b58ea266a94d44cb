//! What a member is: its identity in time ([`Incarnation`]), its [`State`], and the
//! [`AliveClaim`] that announces it.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use crate::{Name, Tags};

/// Which life of a node a piece of news is about, and how fresh it is within that life.
///
/// Ordered lexicographically: `generation` first (set once when a process starts, so a restarted
/// node is a newer life and is never confused with its old self), then `incarnation` (raised by the
/// node itself to refute suspicion).
///
/// ```
/// use membership::Incarnation;
///
/// let old_life = Incarnation::new(1, 40);
/// let restarted = Incarnation::new(2, 0);
/// assert!(restarted > old_life);
/// assert_eq!(old_life.next(), Incarnation::new(1, 41));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Incarnation {
    /// Set once per process start; larger is newer.
    pub generation: u64,
    /// Raised by the node to refute; larger is newer within a generation.
    pub incarnation: u64,
}

impl Incarnation {
    /// An incarnation of the given life.
    pub const fn new(generation: u64, incarnation: u64) -> Self {
        Self { generation, incarnation }
    }

    /// The smallest incarnation strictly greater than `self`: the next incarnation of the same
    /// generation.
    ///
    /// Should the incarnation counter be exhausted (`u64::MAX`, only reachable through hostile
    /// news), the result moves to the next generation at incarnation 0, which still orders after
    /// `self`. `Incarnation::new(u64::MAX, u64::MAX)` is the one value with no successor; it is
    /// returned unchanged.
    #[must_use]
    pub const fn next(self) -> Self {
        match self.incarnation.checked_add(1) {
            Some(incarnation) => Self::new(self.generation, incarnation),
            None => match self.generation.checked_add(1) {
                Some(generation) => Self::new(generation, 0),
                None => self,
            },
        }
    }
}

impl fmt::Display for Incarnation {
    /// `generation.incarnation`, e.g. `3.17`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.generation, self.incarnation)
    }
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

impl State {
    /// Alive or suspect: still counted as a member of the cluster (probed, counted in `n`).
    pub const fn is_live(self) -> bool {
        matches!(self, Self::Alive | Self::Suspect)
    }

    /// Lower-case name: `alive`, `suspect`, `dead`, `left`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Dead => "dead",
            Self::Left => "left",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Unique name.
    pub name: Name,
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

impl Member {
    /// A member built from a claim, in `state` since `now`.
    pub fn from_claim(claim: AliveClaim, state: State, now: Instant) -> Self {
        Self {
            name: claim.name,
            addr: claim.addr,
            incarnation: claim.incarnation,
            state,
            tags: claim.tags,
            protocol: claim.protocol,
            state_changed: now,
        }
    }

    /// Alive or suspect (see [`State::is_live`]).
    pub const fn is_live(&self) -> bool {
        self.state.is_live()
    }

    /// The `alive` claim that announces this member as it is known.
    pub fn claim(&self) -> AliveClaim {
        AliveClaim::from(self)
    }

    /// Whether `claim` announces the same address, tags and protocol versions as this member
    /// (incarnation and state are not compared).
    pub fn same_content(&self, claim: &AliveClaim) -> bool {
        self.addr == claim.addr && self.tags == claim.tags && self.protocol == claim.protocol
    }
}

/// An `alive` claim from the network (or from a push-pull exchange).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliveClaim {
    /// Node name.
    pub name: Name,
    /// Claimed address.
    pub addr: SocketAddr,
    /// Claimed life and freshness.
    pub incarnation: Incarnation,
    /// Tags.
    pub tags: Tags,
    /// Protocol versions.
    pub protocol: ProtocolRange,
}

impl From<&Member> for AliveClaim {
    fn from(member: &Member) -> Self {
        Self {
            name: member.name.clone(),
            addr: member.addr,
            incarnation: member.incarnation,
            tags: member.tags.clone(),
            protocol: member.protocol,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_order_by_generation_first() {
        assert!(Incarnation::new(2, 0) > Incarnation::new(1, u64::MAX));
        assert!(Incarnation::new(1, 2) > Incarnation::new(1, 1));
        assert_eq!(Incarnation::default(), Incarnation::new(0, 0));
    }

    #[test]
    fn next_is_strictly_greater_even_at_the_counter_limit() {
        assert_eq!(Incarnation::new(3, 7).next(), Incarnation::new(3, 8));
        assert_eq!(Incarnation::new(3, u64::MAX).next(), Incarnation::new(4, 0));
        let top = Incarnation::new(u64::MAX, u64::MAX);
        assert_eq!(top.next(), top);
    }

    #[test]
    fn display_forms() {
        assert_eq!(Incarnation::new(3, 17).to_string(), "3.17");
        assert_eq!(State::Suspect.to_string(), "suspect");
        assert!(State::Alive.is_live() && State::Suspect.is_live());
        assert!(!State::Dead.is_live() && !State::Left.is_live());
    }
}
