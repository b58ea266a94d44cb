//! The commands the consensus layer replicates and applies in log order, and what applying
//! one returns.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::{HealthStatus, KvEntry, ReleasedLock, SessionBehavior, Weights, SERF_HEALTH_CHECK};
use crate::watch::Changes;

/// One replicated command. Everything `apply` needs is inside it: no clock, no randomness
/// (session IDs are chosen by the leader before the command is proposed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Consul's catalog register: create or update the node, then, in the same command, a
    /// service instance and/or checks on it.
    Register(Registration),
    /// Remove a node with its services and checks, and invalidate its sessions.
    DeregisterNode {
        /// The node's name.
        node: String,
    },
    /// Remove a service instance and its checks (invalidating sessions that named them).
    DeregisterService {
        /// The node's name.
        node: String,
        /// The instance ID.
        service_id: String,
    },
    /// Remove a check (invalidating sessions that named it).
    DeregisterCheck {
        /// The node's name.
        node: String,
        /// The check ID.
        check_id: String,
    },
    /// One key/value operation.
    Kv(KvOp),
    /// Key/value operations applied atomically: all or none (`/v1/txn`).
    Txn(Vec<TxnOp>),
    /// Create a session.
    SessionCreate(SessionSpec),
    /// Destroy a session (explicitly, or because its TTL ran out on the leader): its locks
    /// are released or its keys deleted by its behavior.
    SessionDestroy {
        /// The session ID.
        id: String,
    },
    /// Remove tombstones (and the change records of removed nodes, services and sessions)
    /// with an index up to and including `up_to`.
    ReapTombstones {
        /// The highest index to reap.
        up_to: u64,
    },
}

/// A catalog registration (Consul's `structs.RegisterRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Registration {
    /// The node's name (required).
    pub node: String,
    /// The node's UUID, if any.
    pub id: String,
    /// The node's address.
    pub address: String,
    /// The node's datacenter.
    pub datacenter: String,
    /// Extra addresses by name.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub node_meta: BTreeMap<String, String>,
    /// A service instance to create or update on the node.
    pub service: Option<ServiceRegistration>,
    /// Checks to create or update on the node (after the service, so they may name it).
    pub checks: Vec<CheckRegistration>,
}

/// A service instance in a [`Registration`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceRegistration {
    /// The instance ID; empty means the service name.
    pub id: String,
    /// The service name (required).
    pub service: String,
    /// Tags.
    pub tags: Vec<String>,
    /// The instance's address; empty means the node's.
    pub address: String,
    /// The port.
    pub port: u16,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Whether the catalog may override the tags.
    pub enable_tag_override: bool,
    /// DNS SRV weights.
    pub weights: Option<Weights>,
}

/// A check in a [`Registration`]. Its node is the registration's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRegistration {
    /// The check ID; empty means the check's name (one of the two is required).
    pub check_id: String,
    /// A human-readable name.
    pub name: String,
    /// The status; Consul's default for a new check is `critical`.
    pub status: HealthStatus,
    /// Notes.
    pub notes: String,
    /// Output of the last run.
    pub output: String,
    /// The service instance (on this node) the check belongs to; empty for a node check.
    pub service_id: String,
    /// The kind of check, free-form.
    pub check_type: String,
}

impl Default for CheckRegistration {
    fn default() -> Self {
        Self {
            check_id: String::new(),
            name: String::new(),
            status: HealthStatus::Critical,
            notes: String::new(),
            output: String::new(),
            service_id: String::new(),
            check_type: String::new(),
        }
    }
}

/// A session to create (Consul's session create request, with the ID already chosen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// The session ID (required, unique).
    pub id: String,
    /// A human-readable name.
    pub name: String,
    /// The node the session belongs to; it must exist.
    pub node: String,
    /// Lock-delay reported when the session is invalidated (Consul's default 15 s).
    pub lock_delay: Duration,
    /// What invalidation does to the held keys.
    pub behavior: SessionBehavior,
    /// The TTL the leader enforces, if any.
    pub ttl: Option<Duration>,
    /// Node checks the session depends on; each must exist on the node and not be critical.
    pub node_checks: Vec<String>,
    /// Service checks the session depends on, with the same rule.
    pub service_checks: Vec<String>,
}

impl SessionSpec {
    /// A session with Consul's defaults: lock-delay 15 s, behavior release, no TTL, node
    /// checks `["serfHealth"]`.
    pub fn new(id: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: String::new(),
            node: node.into(),
            lock_delay: Duration::from_secs(15),
            behavior: SessionBehavior::Release,
            ttl: None,
            node_checks: vec![SERF_HEALTH_CHECK.to_owned()],
            service_checks: Vec::new(),
        }
    }
}

/// One key/value operation (Consul's KVS verbs, as `/v1/kv` uses them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// Write the value and flags. As in Consul, a held lock's session is kept, and
    /// `lock_index` is reset to 0 (a plain set carries no lock index).
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The flags.
        flags: u64,
    },
    /// Write only if the key's `modify_index` equals `index`; `index == 0` means "only if
    /// the key does not exist".
    Cas {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The flags.
        flags: u64,
        /// The expected `modify_index`.
        index: u64,
    },
    /// Delete the key (a no-op if it does not exist), leaving a tombstone.
    Delete {
        /// The key.
        key: String,
    },
    /// Delete every key starting with `prefix`, leaving a tombstone for each.
    DeleteTree {
        /// The prefix.
        prefix: String,
    },
    /// Delete only if the key's `modify_index` equals `index`. As in Consul, deleting a
    /// key that does not exist succeeds.
    DeleteCas {
        /// The key.
        key: String,
        /// The expected `modify_index`.
        index: u64,
    },
    /// Acquire the lock on the key for the session, writing the value and flags.
    Acquire {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The flags.
        flags: u64,
        /// The session; it must exist.
        session: String,
    },
    /// Release the session's lock on the key, writing the value and flags.
    Release {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The flags.
        flags: u64,
        /// The session that holds the lock.
        session: String,
    },
}

/// One operation of a transaction (Consul's `/v1/txn` KV verbs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// `set`
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The flags.
        flags: u64,
    },
    /// `cas`: fails the transaction when the index does not match.
    Cas {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The flags.
        flags: u64,
        /// The expected `modify_index` (0: only if absent).
        index: u64,
    },
    /// `get`: fails the transaction when the key does not exist.
    Get {
        /// The key.
        key: String,
    },
    /// `get-tree`: every entry under the prefix.
    GetTree {
        /// The prefix.
        prefix: String,
    },
    /// `check-index`: fails unless the key exists with this `modify_index`.
    CheckIndex {
        /// The key.
        key: String,
        /// The expected `modify_index`.
        index: u64,
    },
    /// `check-session`: fails unless the key exists and is held by this session (an empty
    /// session means "not held").
    CheckSession {
        /// The key.
        key: String,
        /// The expected holder.
        session: String,
    },
    /// `check-not-exists`: fails if the key exists.
    CheckNotExists {
        /// The key.
        key: String,
    },
    /// `delete`
    Delete {
        /// The key.
        key: String,
    },
    /// `delete-tree`
    DeleteTree {
        /// The prefix.
        prefix: String,
    },
    /// `delete-cas`: fails the transaction when the index does not match.
    DeleteCas {
        /// The key.
        key: String,
        /// The expected `modify_index`.
        index: u64,
    },
    /// `lock`: fails the transaction when the lock is held by another session.
    Lock {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The flags.
        flags: u64,
        /// The session; it must exist.
        session: String,
    },
    /// `unlock`: fails the transaction unless the session holds the lock.
    Unlock {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The flags.
        flags: u64,
        /// The holder.
        session: String,
    },
}

/// What [`Registry::apply`](crate::Registry::apply) did with a command it accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[must_use = "the changes say which watches to wake, and released locks need their lock-delay recorded"]
pub struct Applied {
    /// The command's index, now the registry's last applied index.
    pub index: u64,
    /// The result the client gets.
    pub outcome: Outcome,
    /// Exactly what changed: feed it to [`Watches::fired`](crate::Watches::fired).
    pub changes: Changes,
    /// Locks released, or held keys deleted, by session invalidation, in key order: the
    /// leader records their lock-delay.
    pub released_locks: Vec<ReleasedLock>,
}

/// The client-visible result of an accepted command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The command took effect (possibly changing nothing, e.g. a set to the same value or
    /// the delete of a missing key). `/v1/kv` answers `true`.
    Done,
    /// A conditional operation's condition did not hold; nothing changed. `/v1/kv`
    /// answers `false`.
    Declined(Declined),
    /// A transaction succeeded: one result per entry-producing operation, in order, values
    /// empty except for gets (as Consul answers).
    Txn(Vec<KvEntry>),
}

impl Outcome {
    /// Whether `/v1/kv` answers `true`.
    pub fn is_done(&self) -> bool {
        !matches!(self, Self::Declined(_))
    }
}

/// Why a conditional operation did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Declined {
    /// A CAS index did not match (or the key existed for `index == 0`).
    IndexMismatch,
    /// Another session holds the lock.
    LockHeld,
    /// The session does not hold the lock it tried to release.
    NotLockHolder,
}
