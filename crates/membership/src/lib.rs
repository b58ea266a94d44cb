//! The member table of the gossip protocol: who is in the cluster, in what state, as of which
//! incarnation, and which news about them still has to be gossiped.
//!
//! # What it does
//!
//! - [`MemberTable`] holds every member this node knows, itself and tombstones included, and
//!   applies news (`alive`, `suspect`, `dead`, `left`, push-pull state) by the SWIM ordering rules
//!   below. It tells the caller what each piece of news did ([`Applied`]): nothing, a change to
//!   re-gossip, a refutation to broadcast, or an address conflict.
//! - It refutes news about the local node by raising the local [`Incarnation`].
//! - It keeps tombstones of dead and left members until [`MemberTable::reap`] removes them.
//! - [`BroadcastQueue`] holds encoded messages waiting to piggyback on outgoing packets, sends
//!   each one `retransmit_mult × ceil(log10(n + 1))` times, least-sent first, and lets a newer
//!   message replace an older one with the same key.
//! - [`Tags`] are bounded: at most [`MAX_TAGS_ENCODED_LEN`] bytes by a fixed formula.
//! - It stays small, because a simulation holds thousands of tables of thousands of members: a
//!   member's [`Name`] is one shared allocation wherever it appears (table, events, claims,
//!   broadcast keys), empty [`Tags`] allocate nothing and others are shared between clones, and
//!   the table is a vector of records found through a hash table of [`MemberId`]s: about
//!   120 bytes per member plus the name's 32 (see [`MemberTable`] and the `table_memory` test).
//!
//! # What it does not do
//!
//! It is sans-io, as the `swim` crate that drives it: it opens no socket, reads no clock (time
//! comes in as `now: Instant` arguments), uses no random numbers, runs no timers (suspicion
//! timeouts, probe scheduling and Lifeguard live in `swim`), and knows no wire format (the queue
//! holds opaque [`Bytes`](bytes::Bytes); `swim` converts members and claims to and from protobuf). Nothing here
//! panics on news from the network.
//!
//! ```text
//!   network news ──(swim decodes)──► apply_alive / apply_suspect / apply_dead / merge
//!                                               │
//!                                   MemberTable ─┴─► Applied ──► swim: events, suspicion timers,
//!                                                                encode & BroadcastQueue::push
//!   outgoing packet ◄── BroadcastQueue::fill(budget, n, overhead) ◄───────────────┘
//! ```
//!
//! # Ordering rules
//!
//! Incarnations are compared as `(generation, incarnation)`, lexicographically: a node restarted
//! with a newer generation outranks every incarnation of its previous life, whatever their
//! numbers, and news about the previous life is stale from then on.
//!
//! News about another member known at incarnation `j`, carrying incarnation `i`:
//!
//! | news ↓ \ known as → | unknown  | alive(j)        | suspect(j)                | dead(j)                    | left(j)                    |
//! |---------------------|----------|-----------------|---------------------------|----------------------------|----------------------------|
//! | `alive(i)`          | added    | alive if i > j  | alive if i > j            | alive if i > j (rejoin)    | alive if i > j (rejoin)    |
//! | `suspect(i)`        | ignored  | suspect if i ≥ j| ignored; i kept if i > j  | ignored                    | ignored                    |
//! | `dead(i)`           | ignored  | dead if i ≥ j   | dead if i ≥ j             | ignored; i kept if i > j   | ignored; i kept if i > j   |
//! | `left(i)`           | ignored  | left if i ≥ j   | left if i ≥ j             | left if i ≥ j              | ignored; i kept if i > j   |
//!
//! - "i kept": the state does not change and the result is [`Applied::Ignored`], but the member's
//!   incarnation is raised to `i` so that older news cannot win later (`suspect(i)` outranks
//!   `alive(i)`, `dead(i)` outranks `alive(i)`). A member's incarnation never goes down.
//! - An `alive` claim from a different address for a member that is alive or suspect is refused
//!   at any incarnation as [`Applied::Conflict`]. A dead or left member may come back at a new
//!   address (with a newer incarnation), e.g. a restarted node whose old life has been declared
//!   dead.
//! - A newer `alive` for an alive member that changes only tags or protocol versions is
//!   [`Applied::Changed`] with `tags_changed: true` and `previous: Some(Alive)`.
//! - Every change of state sets [`Member::state_changed`] to `now`.
//!
//! News about the local node, known at incarnation `j`:
//!
//! | news                                                     | result                      |
//! |----------------------------------------------------------|-----------------------------|
//! | `alive(i)`, i > j                                        | refuted                     |
//! | `alive(i)`, i = j, other address, tags or protocol       | refuted                     |
//! | `alive(i)`, i = j, same content; or i < j                | ignored                     |
//! | `suspect(i)`, `dead(i)`, `left(i)`, i ≥ j                | refuted                     |
//! | `suspect(i)`, `dead(i)`, `left(i)`, i < j                | ignored                     |
//! | anything, after [`MemberTable::leave_local`]             | ignored                     |
//!
//! Refuting sets the local incarnation to `max(j, i).next()` ([`Incarnation::next`]): `i + 1`
//! within our generation. A claim of a newer generation than ours should not happen (it means
//! another process uses our name); the local node then takes that generation, since no
//! incarnation of its own generation could outrank the claim. The local node is never suspect or
//! dead in its own table: it is alive, or left after [`MemberTable::leave_local`].
//!
//! # Push-pull merge
//!
//! [`MemberTable::merge`] applies a remote member list: remote alive as `alive`, remote suspect as
//! `alive` then `suspect`, remote left as `left`, and remote **dead as `suspect`**: a remote
//! death never kills a member here at once; this node's own suspicion timer decides.
//!
//! # Entry types
//!
//! - [`MemberTable`]: the table; [`Member`] its entries; [`MemberId`] a member's place in it;
//!   [`AliveClaim`] an `alive` message; [`Applied`] what a piece of news did.
//! - [`Name`]: a node's name, shared rather than copied.
//! - [`Incarnation`], [`State`], [`ProtocolRange`], [`Tags`] / [`TagsError`].
//! - [`BroadcastQueue`]: the piggyback queue.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, Instant};
//! use membership::{AliveClaim, Applied, Incarnation, MemberTable, ProtocolRange, State, Tags};
//!
//! let protocol = ProtocolRange { min: 1, max: 1, cur: 1 };
//! let claim = |name: &str, port, inc| AliveClaim {
//!     name: name.into(),
//!     addr: ([10, 0, 0, 1], port).into(),
//!     incarnation: Incarnation::new(1, inc),
//!     tags: Tags::default(),
//!     protocol,
//! };
//! let now = Instant::now();
//! let mut table = MemberTable::new(claim("me", 7946, 0), now);
//!
//! // A new member joins.
//! let applied = table.apply_alive(claim("web-1", 7947, 3), now);
//! assert!(matches!(applied, Applied::Changed { previous: None, .. }));
//!
//! // Somebody suspects us: we refute with a higher incarnation, to be broadcast.
//! let Applied::Refuted(refutation) = table.apply_suspect("me", Incarnation::new(1, 0), now) else {
//!     panic!("expected a refutation");
//! };
//! assert_eq!(refutation.incarnation, Incarnation::new(1, 1));
//!
//! // web-1 fails, and its tombstone is reaped later.
//! table.apply_dead("web-1", Incarnation::new(1, 3), false, now);
//! assert_eq!(table.get("web-1").map(|m| m.state), Some(State::Dead));
//! assert_eq!(table.live_count(), 1);
//! let ttl = Duration::from_secs(30);
//! let reaped = table.reap(now + Duration::from_secs(31), ttl, ttl);
//! assert_eq!(reaped.len(), 1);
//! ```

#![deny(missing_docs)]

mod broadcast;
mod member;
mod name;
mod table;
mod tags;

pub use broadcast::BroadcastQueue;
pub use member::{AliveClaim, Incarnation, Member, ProtocolRange, State};
pub use name::Name;
pub use table::{Applied, MemberId, MemberTable};
pub use tags::{Tags, TagsError, MAX_TAGS_ENCODED_LEN};
