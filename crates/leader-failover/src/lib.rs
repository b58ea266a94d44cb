//! Who is primary: an election derived from the member list (serf-style) and one held by a lock
//! in a replicated key/value store (consul-style), behind the [`Election`] trait, the scripts that
//! run when this node gains or loses the role, and the primary's web service.
//!
//! # What it does
//!
//! - [`LockElection`] (consul-style): the primary is the node whose session holds a lock key; it
//!   stays primary only while a linearizable read confirms the hold, and steps down within a
//!   stated bound when it cannot (see the [`lock`] module for the argument that two
//!   primaries never coexist). Sans-io: it returns [`LockAction`]s (create a session, acquire,
//!   confirm, watch, renew, release) and takes their answers as [`LockEvent`]s; the driver
//!   (consul-lite's agent, talking to its `/v1` API) performs them. Its fencing token (the lock
//!   key's `ModifyIndex` at the acquire) reaches the hooks (`FENCING_TOKEN`) and the web service
//!   (`X-Fencing-Token`).
//! - [`MembershipElection`] decides, from the member list this node sees, which live eligible
//!   member holds the primary role and whether that is this node. It needs no extra messages: the
//!   claim travels in the members' tags, which gossip already spreads.
//! - [`Election::tags_for`] tells the agent which tags to publish for its role; the agent publishes
//!   them and the claim reaches the other nodes with the next gossip of this node's `alive`.
//! - [`Hooks`] / [`HookRunner`] run the `acquire` script when this node becomes primary and the
//!   `release` script when it stops being primary (step-down or graceful shutdown), through
//!   `/bin/sh -c`, one at a time and in order, without blocking the caller.
//! - [`serve_primary_http`] answers `GET /` with 200 on the primary and 503 elsewhere, so a load
//!   balancer health check finds the primary, and `GET /primary` with the whole [`PrimaryView`] as
//!   JSON.
//!
//! # What it does not do
//!
//! - It reads no member table, clock or socket by itself: the caller passes the member list, `now`
//!   and the wall-clock time to [`Election::update`] and calls again at
//!   [`Election::next_deadline`]. The election is deterministic: the same inputs give the same
//!   answer, which is what lets every node agree without talking.
//! - It publishes no tags (the agent does, from [`Election::tags_for`]) and adds no virtual IP
//!   (a hook script does).
//! - [`MembershipElection`] is not a lock: it has no quorum and no fencing, and during a network
//!   partition each side elects its own primary (see [Partitions](#partitions)).
//!   [`LockElection`] implements the same [`Election`] trait and trades that availability for a
//!   single primary; it sends no request itself.
//!
//! ```text
//!  member list (after every membership change, and at next_deadline())
//!        │
//!        ▼
//!  Election::update(members, now, wall) ──► PrimaryView ──► watch::Sender ──► serve_primary_http
//!        │                                                                     GET /        200 | 503
//!        ▼                                                                     GET /primary JSON
//!  Option<RoleChange> ──┬──► tags_for(role) ──► agent sets its tags ──► gossip: other nodes see
//!                       │                      (role, role_since,             the claim
//!                       │                       role_pref)
//!                       └──► HookRunner::submit ──► /bin/sh -c acquire | release  (env: PRIMARY_NODE, ...)
//! ```
//!
//! # Tags
//!
//! With the default [`ElectionConfig`] (`role_tag = "role"`) a node publishes:
//!
//! | tag          | value                        | when                                              |
//! |--------------|------------------------------|---------------------------------------------------|
//! | `role`       | `primary` / `standby`        | eligible nodes; an ineligible node keeps its own value (e.g. `web`) |
//! | `role_since` | unix time of the claim in ms | while primary: the claim's age, used by rule 4    |
//! | `role_pref`  | `1`                          | the node configured `ROLE=primary` (`preferred`)  |
//! | priority tag | an integer                   | optional, [`ElectionConfig::priority_tag`]        |
//!
//! The claim tags are named after the role tag (`{role_tag}_since`, `{role_tag}_pref`), so two
//! elections with different role tags can share a cluster. They take about 50 bytes of the
//! 512-byte tag budget.
//!
//! # Election rules
//!
//! Every node evaluates these rules on its own member list. A member's role comes from its
//! published tags, except for the local node, whose claim is the election's own state (its tags
//! in its own list lag behind its decisions).
//!
//! 1. **Eligible** members are the live ones (alive or suspect) whose role tag is `primary`,
//!    `standby` or one of [`ElectionConfig::eligible_values`]. A suspect counts: it has missed a
//!    probe but has not failed, and moving the role on every missed probe would flap it; the role
//!    moves when the failure detector declares the member dead, so failover time is failure
//!    detection time. The local node is eligible when its own published role tag is (the agent
//!    publishes `standby` for a node configured `ROLE=primary` or `ROLE=standby`, its configured
//!    value otherwise; see [`MembershipElection::initial_tags`]). The same tag decides
//!    eligibility on every node, so they all agree.
//! 2. **The incumbent keeps the role while it is live.** A live eligible member whose role tag is
//!    `primary` is a *claim*. While any claim is visible nobody else claims, whatever its priority:
//!    moving a working primary costs an outage and buys nothing. A node restarted after being
//!    primary starts as `standby` (the agent publishes `standby` at start) and does not take the
//!    role back; if its settle period was too short to see the new primary and it claims anyway,
//!    rule 4 makes it step down again, because its claim is younger.
//! 3. **When no claim is visible** (the primary failed or left, or the cluster is new), the
//!    eligible member that sorts first claims, and only once its *settle period*
//!    ([`ElectionConfig::settle`], counted from its own start) is over, so that a joining node
//!    learns of an existing primary before it could claim. The order is: priority tag, higher
//!    first (missing or not an integer = 0); then the preferred node (`{role_tag}_pref = 1`,
//!    published for a node configured `ROLE=primary`, which therefore wins the first election of
//!    a fresh cluster whose nodes start within the settle period); then the name, numbers
//!    compared by value (`node2` < `node10`, see [`natural_cmp`]). Every node computes the same
//!    order from the same view, so only that member claims and the others stay standby, having
//!    exchanged no message. The others report no primary until its claim reaches them.
//! 4. **Two or more claims** (after a partition heals, or from nodes whose views differed when
//!    they claimed): the *oldest* claim wins (smallest `{role_tag}_since`; a claim without a
//!    readable timestamp counts as the youngest), ties broken by the rule-3 order; the others step
//!    down to standby as soon as they see it. The oldest claim wins because a spurious claim is
//!    nearly always the younger one: a node that was isolated alone, or that joined without
//!    seeing the primary, claims late; if the newest won, any node with a passing bad view would
//!    take the role from a healthy primary. Comparing timestamps of different clocks is only
//!    approximate, but every node compares the same two numbers, so they agree on the winner;
//!    skew only matters when two claims are made within the skew of each other.
//! 5. **Tags**: [`Election::tags_for`] gives the tags for a role (`role=primary` plus the claim
//!    time, or `role=standby`; the preference flag in both), [`Election::cleared_tags`] the tags
//!    to remove, and [`Election::apply_tags`] does both on a [`Tags`] value.
//!
//! [`Election::resign`] gives the role up for good (graceful shutdown): the node stops claiming
//! and returns the change, so that the `release` hook runs before the agent leaves.
//!
//! # Partitions
//!
//! The serf-style election chooses availability. While the cluster is split, each side that has
//! an eligible member has a primary: the side holding the old primary keeps it (rule 2), the other
//! side declares it dead after the failure-detection time and elects its first member (rule 3).
//! When the partition heals, the sides learn each other's members again; every node that sees
//! both claims takes the older one at once (rule 4), and the younger claimant steps down as soon as
//! the older claim reaches it. Two primaries therefore coexist for the length of the partition
//! plus, after it heals, the time for the older claim to reach the younger claimant: the time until
//! the two sides are in contact again (members of the other side are dead on each side, so
//! contact comes from the periodic reconnect to failed members or a push-pull/join across the
//! old split: up to one reconnect or push-pull interval) plus the gossip dissemination of the
//! claimant's `alive` from the contacted node to the younger claimant (about
//! `log(n)` gossip rounds), or a single push-pull if the contact is the younger claimant itself.
//!
//! A primary paused long enough to be declared dead (and so replaced) keeps its older claim when
//! it resumes and refutes its death: it wins rule 4 and the role moves back to it. That costs a
//! second move, but converges to one primary, and it is the same rule that protects a healthy
//! primary from a spurious claim.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, Instant, SystemTime};
//! use leader_failover::{Election, ElectionConfig, MembershipElection, Role};
//! use membership::{Incarnation, Member, ProtocolRange, State, Tags};
//!
//! let start = Instant::now();
//! let config = ElectionConfig { settle: Duration::from_secs(2), ..ElectionConfig::default() };
//! // node1 is configured ROLE=primary (preferred), node2 ROLE=standby.
//! let mut node1 = MembershipElection::new("node1", config.clone(), true, start);
//! let node2 = MembershipElection::new("node2", config, false, start);
//!
//! let member = |name: &str, tags: Vec<(String, String)>| Member {
//!     name: name.into(),
//!     addr: ([10, 0, 0, 1], 7946).into(),
//!     incarnation: Incarnation::new(1, 0),
//!     state: State::Alive,
//!     tags: Tags::from_pairs(tags).unwrap(),
//!     protocol: ProtocolRange { min: 1, max: 1, cur: 1 },
//!     state_changed: start,
//! };
//! // What each agent publishes at start.
//! let members = [member("node1", node1.initial_tags("primary")), member("node2", node2.initial_tags("standby"))];
//!
//! // During the settle period nobody claims; the agent calls again at the deadline.
//! assert_eq!(node1.update(&members, start, SystemTime::now()).map(|c| c.to), Some(Role::Standby));
//! let deadline = node1.next_deadline().unwrap();
//! let change = node1.update(&members, deadline, SystemTime::now()).unwrap();
//! assert_eq!((change.from, change.to), (Role::Standby, Role::Primary));
//! assert_eq!(node1.view().primary.as_deref(), Some("node1"));
//! // The agent now publishes these tags, and runs the acquire hook.
//! let tags = node1.tags_for(Role::Primary);
//! assert!(tags.contains(&("role".to_string(), "primary".to_string())));
//! ```

#![deny(missing_docs)]

mod config;
mod election;
mod hooks;
mod http;
pub mod lock;
mod order;
pub mod script;

use std::fmt;
use std::time::{Instant, SystemTime};

use membership::{Member, Tags, TagsError};

pub use config::{ConfigError, ElectionConfig, PRIMARY_VALUE, STANDBY_VALUE};
pub use election::MembershipElection;
pub use hooks::{HookError, HookKind, HookOutcome, HookRunner, HookTicket, Hooks, DEFAULT_HOOK_TIMEOUT};
pub use http::{serve_primary_http, serve_primary_http_with, PrimaryHttpConfig, FENCING_TOKEN_HEADER};
pub use lock::{KeyState, LockAction, LockConfigError, LockElection, LockElectionConfig, LockEvent};
pub use order::natural_cmp;

/// This node's part in the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Holds the primary role.
    Primary,
    /// Eligible, and waiting to take the role over.
    Standby,
    /// Never takes the role (its role tag is not eligible, or it is not a live member).
    Ineligible,
}

impl Role {
    /// Lower-case name: `primary`, `standby`, `ineligible`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Standby => "standby",
            Self::Ineligible => "ineligible",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is primary, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryView {
    /// The member holding the role; `None` while nobody has claimed it (or the claim has not
    /// reached this node yet).
    pub primary: Option<String>,
    /// When the primary claimed the role (its clock, millisecond precision).
    pub since: Option<SystemTime>,
    /// Live eligible members, in election order (rule 3): the first is next in line.
    pub eligible: Vec<String>,
    /// This node's role.
    pub local_role: Role,
    /// The fencing token of the primary's hold on the role, when the election has one (the
    /// lock-based [`LockElection`]: the `ModifyIndex` of the lock key at the acquire, which only
    /// grows from one holder to the next); `None` for the membership election.
    pub fencing_token: Option<u64>,
    /// While primary: the instant after which this node must no longer act as primary unless the
    /// election confirms its role again ([`LockElection`]'s step-down bound). The web service
    /// answers 503 past it even if the driver has stalled. `None`: no bound (membership election).
    pub valid_until: Option<Instant>,
}

impl PrimaryView {
    /// The view before any member list was seen: no primary, nobody eligible.
    pub const fn empty(local_role: Role) -> Self {
        Self { primary: None, since: None, eligible: Vec::new(), local_role, fencing_token: None, valid_until: None }
    }
}

/// A change of the local node's role, returned by [`Election::update`] and [`Election::resign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    /// The role before.
    pub from: Role,
    /// The role now.
    pub to: Role,
    /// The primary now, as this node sees it (this node when `to` is [`Role::Primary`]).
    pub primary: Option<String>,
    /// The primary before the current one, if any was seen (the failed node after a failover, this
    /// node after a step-down).
    pub previous_primary: Option<String>,
    /// The fencing token of the hold this change gains or gives up, when the election has one
    /// (see [`PrimaryView::fencing_token`]); the hooks get it as `FENCING_TOKEN`.
    pub fencing_token: Option<u64>,
}

/// An election of one primary among the members of a cluster.
///
/// The driver (the agent) calls [`update`](Self::update) after every membership change and at
/// [`next_deadline`](Self::next_deadline), publishes [`tags_for`](Self::tags_for) the returned
/// role, runs the hooks for the [`RoleChange`], and shares [`view`](Self::view) with the web
/// service.
pub trait Election: Send {
    /// Feed the current member list (as this node sees it; includes the local member) at `now`,
    /// with `wall` the wall-clock time of the same instant; returns a change of the LOCAL role, if
    /// any.
    #[must_use = "a role change must publish tags and run hooks"]
    fn update(&mut self, members: &[Member], now: Instant, wall: SystemTime) -> Option<RoleChange>;

    /// Who is primary, as of the last update.
    fn view(&self) -> PrimaryView;

    /// The local role, as of the last update.
    fn role(&self) -> Role;

    /// When [`update`](Self::update) must be called again even if nothing changes (e.g. the
    /// settle period ends); `None` when only membership changes matter.
    fn next_deadline(&self) -> Option<Instant>;

    /// Give the role up for good (graceful shutdown): the node will not claim again. Returns the
    /// change if it was primary, so that the `release` hook runs.
    #[must_use = "a role change must publish tags and run hooks"]
    fn resign(&mut self) -> Option<RoleChange>;

    /// Tags to set when the local role is `role`. Empty when the election keeps no tags.
    fn tags_for(&self, role: Role) -> Vec<(String, String)> {
        let _ = role;
        Vec::new()
    }

    /// Tag keys to remove when the local role is `role` (claim data of a former role).
    fn cleared_tags(&self, role: Role) -> Vec<String> {
        let _ = role;
        Vec::new()
    }

    /// Set [`tags_for`](Self::tags_for) and remove [`cleared_tags`](Self::cleared_tags) on `tags`.
    /// All or nothing: on error (the tags would exceed their size limit) `tags` is unchanged.
    fn apply_tags(&self, role: Role, tags: &mut Tags) -> Result<(), TagsError> {
        let mut updated = tags.clone();
        for key in self.cleared_tags(role) {
            updated.remove(&key);
        }
        for (key, value) in self.tags_for(role) {
            updated.insert(key, value)?;
        }
        *tags = updated;
        Ok(())
    }
}
