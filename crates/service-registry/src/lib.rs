//! The replicated state machine of consul-lite: the catalog (nodes, services, health
//! checks), the key/value store, sessions and locks, with Consul's modify indexes, and exact
//! change tracking so that a blocking query wakes only when its own data changed.
//!
//! # What it does
//!
//! - [`Registry::apply`] applies one [`Command`] at a Raft log index, in log order, with
//!   Consul's semantics (each verified in Consul's `agent/consul/state/` source): catalog
//!   register and deregister with their cascades, key/value set, CAS, delete, delete-tree,
//!   delete-CAS, acquire and release, atomic transactions, sessions and their invalidation.
//!   A command applies entirely or not at all: on [`Error`] nothing changed.
//! - It returns [`Applied`]: the client's [`Outcome`], exactly what changed ([`Changes`]),
//!   and the locks that session invalidation released ([`ReleasedLock`]), each with its
//!   lock-delay for the leader to enforce.
//! - [`Registry::index`] answers the `X-Consul-Index` of a key, a prefix, a service, a node,
//!   a session, the node, service and session lists, and checks by state: the index of the
//!   last command that changed that data, never 0, never going backwards (deletes leave
//!   tombstones; [`Command::ReapTombstones`] removes them and raises a floor).
//! - [`Watches`] holds the watches of waiting blocking queries and returns exactly those a
//!   [`Changes`] concerns, by hash lookups on the changed keys (and their prefixes) and
//!   topics: one write among 10,000 watched keys looks at one watch, not 10,000.
//! - [`Registry::snapshot`] and [`Registry::restore`] give the whole state as one
//!   serialisable [`Snapshot`].
//!
//! # What it does not do
//!
//! It is sans-io: no sockets, no files, no clock, no random numbers, no timers, no threads.
//! - Lock-delay is not enforced in `apply`: the leader records `now + lock_delay` for every
//!   [`ReleasedLock`] and refuses acquires of those keys until then, by wall clock, on
//!   request (as Consul's leader does, in memory).
//! - Session TTLs are not timed here: the leader runs the timers and proposes
//!   [`Command::SessionDestroy`] when one runs out. Session IDs are chosen by the leader and
//!   come in the command.
//! - Health checks are not run here: their results arrive as [`Command::Register`].
//! - No encoding is chosen: commands and snapshots derive serde; the consensus crate picks
//!   the format. No ACLs, namespaces, partitions or peering.
//!
//! ```text
//!   leader: HTTP request ──► Command (IDs chosen, lock-delay checked) ──► Raft log
//!                                                                          │ in order
//!   every server:  Registry::apply(index, command) ◄───────────────────────┘
//!                        │
//!                        ├─► Outcome ─────────────► the client's answer (true/false, txn results)
//!                        ├─► Changes ─► Watches::fired ─► wake exactly those blocking queries
//!                        └─► ReleasedLock ─► leader: lock-delay table (wall clock)
//!   blocking query: Watches::watch(target); Registry::index(target) > ?index ⇒ answer
//! ```
//!
//! # Entry types
//!
//! [`Node`], [`Service`], [`Check`] (with [`HealthStatus`]), [`KvEntry`], [`Session`] (with
//! [`SessionBehavior`]). Commands: [`Command`], [`Registration`], [`KvOp`], [`TxnOp`],
//! [`SessionSpec`].
//!
//! # Consul's rules, and where they come from
//!
//! Read in hashicorp/consul, `agent/consul/state/`:
//! - `kvs.go` `kvsSetTxn`: a write equal to the stored entry (value, flags, session, lock
//!   index) changes nothing, not even `ModifyIndex`; a plain set keeps the holder and takes
//!   `LockIndex` from the request (0). `kvsSetCASTxn`: `cas=0` only creates.
//!   `kvsDeleteCASTxn`: a missing key counts as deleted. `kvsLockTxn`: an unknown session is
//!   an error, the holder re-acquiring keeps `LockIndex`, a key held by another session is
//!   refused without any write, a free key gets `LockIndex + 1`. `kvsUnlockTxn`: only the
//!   holder releases, `LockIndex` kept.
//! - `session.go` `deleteSessionTxn`: release clears `Session` and keeps the value; delete
//!   removes the keys (with tombstones); lock-delay capped at 60 s, recorded by wall clock
//!   outside the state store. `session_ce.go` `validateSessionChecksTxn`: each named check
//!   must exist on the session's node and not be critical.
//! - `catalog.go` `ensureRegistrationTxn`, `ensureCheckTxn` (a check naming a missing
//!   service is refused; a critical check invalidates its sessions), `deleteNodeTxn`,
//!   `deleteServiceTxn`, `deleteCheckTxn` (cascades and session invalidation).
//! - `txn.go` `txnKVS`, `txnDispatch`: every operation runs, every failure is reported with
//!   its position and message, values are blanked in results except for gets.
//! - `graveyard.go`: tombstones carry the delete's index and are reaped up to an index.
//!
//! # Where it differs from Consul, on purpose
//!
//! - Indexes are per key, per prefix, per service, per node and per session, so a blocking
//!   query is not woken (and its index does not move) by writes to unrelated data of the
//!   same table. A missing key with no tombstone answers the reap floor (at least 1), not
//!   the table's index.
//! - A delete-tree leaves a tombstone per deleted key (Consul leaves one at the prefix), so
//!   that narrower prefixes see the delete too.
//! - Names are case-sensitive; node IDs are stored but not checked for uniqueness.
//! - Creating a session with an ID that exists is refused (Consul would overwrite it).
//! - A key created and deleted by the same transaction leaves no tombstone.
//! - Endpoint rules (node address required, UUID syntax, TTL and lock-delay ranges, the
//!   lock-delay check on acquire) belong to the HTTP and leader layers, not here.
//!
//! # Example
//!
//! ```
//! use service_registry::{Command, KvOp, Outcome, Registry, WatchTarget, Watches};
//!
//! let mut registry = Registry::new();
//! let mut watches = Watches::new();
//! let a = watches.watch(WatchTarget::Key("config/a".into()));
//! let b = watches.watch(WatchTarget::Key("config/b".into()));
//! let tree = watches.watch(WatchTarget::Prefix("config/".into()));
//!
//! let put = KvOp::Set { key: "config/a".into(), value: b"1".to_vec(), flags: 0 };
//! let applied = registry.apply(7, Command::Kv(put)).unwrap();
//! assert_eq!(applied.outcome, Outcome::Done);
//! assert_eq!(watches.fired(&applied.changes), [a, tree].into());
//! assert!(!watches.fired(&applied.changes).contains(&b));
//! assert_eq!(registry.index(&WatchTarget::Key("config/a".into())), 7);
//! assert_eq!(registry.index(&WatchTarget::Key("config/b".into())), 1);
//! ```
#![deny(missing_docs)]

mod command;
mod error;
mod registry;
mod snapshot;
mod types;
mod watch;

pub use command::{
    Applied, CheckRegistration, Command, Declined, KvOp, Outcome, Registration, ServiceRegistration, SessionSpec, TxnOp,
};
pub use error::{Error, TxnError};
pub use registry::{Registry, ServiceInstance};
pub use snapshot::Snapshot;
pub use types::{
    Check, HealthStatus, KvEntry, Node, ReleasedLock, Service, Session, SessionBehavior, Weights, MAX_LOCK_DELAY,
    MAX_VALUE_SIZE, SERF_HEALTH_CHECK,
};
pub use watch::{Changes, Topic, WatchId, WatchTarget, Watches};
