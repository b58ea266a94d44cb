//! The entries the registry stores: catalog records, key/value entries and sessions.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The largest value a key/value entry may hold, in bytes: 512 KiB, Consul's default
/// `kv_max_value_size`. A value of exactly this size is accepted.
pub const MAX_VALUE_SIZE: usize = 512 * 1024;

/// The longest lock-delay applied when a session is invalidated (Consul's `MaxLockDelay`).
/// [`ReleasedLock::lock_delay`](crate::ReleasedLock::lock_delay) is capped at this.
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);

/// Consul's node health check, maintained by the leader from gossip; the default of
/// [`SessionSpec::node_checks`](crate::SessionSpec::node_checks).
pub const SERF_HEALTH_CHECK: &str = "serfHealth";

/// A node of the catalog (Consul's `structs.Node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The node's name, unique in the catalog (case-sensitive here).
    pub name: String,
    /// The node's UUID, if it has one; stored, not checked for uniqueness.
    pub id: String,
    /// The address services on this node are reached at when they name none.
    pub address: String,
    /// The datacenter the node belongs to.
    pub datacenter: String,
    /// Extra addresses by name (`lan`, `wan`, ...).
    pub tagged_addresses: BTreeMap<String, String>,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// The index of the command that created the node.
    pub create_index: u64,
    /// The index of the command that last changed the node record.
    pub modify_index: u64,
}

/// Weights of a service instance for DNS SRV answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    /// The weight while the instance's checks pass.
    pub passing: u32,
    /// The weight while one of them warns.
    pub warning: u32,
}

/// A service instance registered on a node (Consul's `structs.NodeService`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// The instance ID, unique on its node; defaults to the service name at registration.
    pub id: String,
    /// The service name instances are grouped under.
    pub service: String,
    /// Tags, in the order given.
    pub tags: Vec<String>,
    /// The instance's address; empty means the node's address.
    pub address: String,
    /// The instance's port.
    pub port: u16,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// Whether the catalog may override the tags (anti-entropy leaves them alone).
    pub enable_tag_override: bool,
    /// DNS SRV weights, if any were given.
    pub weights: Option<Weights>,
    /// The index of the command that created the instance.
    pub create_index: u64,
    /// The index of the command that last changed it.
    pub modify_index: u64,
}

/// The status of a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    /// `passing`
    Passing,
    /// `warning`
    Warning,
    /// `critical`: invalidates the sessions that name the check.
    Critical,
    /// `maintenance`: does not invalidate sessions (only `critical` does, as in Consul).
    Maintenance,
}

impl HealthStatus {
    /// The status as Consul spells it (`passing`, `warning`, `critical`, `maintenance`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passing => "passing",
            Self::Warning => "warning",
            Self::Critical => "critical",
            Self::Maintenance => "maintenance",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A health check on a node, bound to one of its services when `service_id` is not empty
/// (Consul's `structs.HealthCheck`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The node the check runs on.
    pub node: String,
    /// The check ID, unique on its node.
    pub check_id: String,
    /// A human-readable name.
    pub name: String,
    /// The current status.
    pub status: HealthStatus,
    /// Notes for humans.
    pub notes: String,
    /// The output of the last run.
    pub output: String,
    /// The service instance the check belongs to; empty for a node-level check.
    pub service_id: String,
    /// The name of that service, copied from the instance at registration.
    pub service_name: String,
    /// The tags of that service, copied from the instance at registration.
    pub service_tags: Vec<String>,
    /// The kind of check (`ttl`, `http`, `tcp`, `script`, `serf`, ...), free-form.
    pub check_type: String,
    /// The index of the command that created the check.
    pub create_index: u64,
    /// The index of the command that last changed it.
    pub modify_index: u64,
}

/// A key/value entry (Consul's `structs.DirEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value, at most [`MAX_VALUE_SIZE`] bytes. Transaction results other than gets
    /// carry an empty value, as Consul's do.
    pub value: Vec<u8>,
    /// Opaque flags for the client.
    pub flags: u64,
    /// The session holding the lock on this key, if any.
    pub session: Option<String>,
    /// How many times the lock on this key was acquired from free.
    pub lock_index: u64,
    /// The index of the command that created the entry.
    pub create_index: u64,
    /// The index of the command that last changed it.
    pub modify_index: u64,
}

/// What happens to the keys a session holds when it is invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SessionBehavior {
    /// The locks are released: `session` cleared, value and `lock_index` kept (the default).
    #[default]
    Release,
    /// The held keys are deleted.
    Delete,
}

/// A session: a lease on locks that dies with its node or its checks (Consul's
/// `structs.Session`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session ID, chosen by the leader (a UUID in Consul).
    pub id: String,
    /// A human-readable name.
    pub name: String,
    /// The node the session belongs to.
    pub node: String,
    /// How long the leader refuses to let anyone acquire a key this session held when the
    /// session is invalidated; enforced by the leader by wall clock, not here.
    pub lock_delay: Duration,
    /// What invalidation does to the held keys.
    pub behavior: SessionBehavior,
    /// The TTL the leader enforces (by timer, not here), if any.
    pub ttl: Option<Duration>,
    /// Node-level checks (IDs on `node`) whose failure invalidates the session.
    pub node_checks: Vec<String>,
    /// Service checks (IDs on `node`) whose failure invalidates the session.
    pub service_checks: Vec<String>,
    /// The index of the command that created the session.
    pub create_index: u64,
    /// Equal to `create_index`: sessions do not change once created.
    pub modify_index: u64,
}

impl Session {
    /// Every check ID the session depends on, node checks first.
    pub fn check_ids(&self) -> impl Iterator<Item = &str> {
        self.node_checks.iter().chain(&self.service_checks).map(String::as_str)
    }
}

/// A lock released (or a held key deleted) because its session was invalidated or
/// destroyed. The leader records `now + lock_delay` for `key` and refuses acquires until
/// then; [`Registry::apply`](crate::Registry::apply) does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedLock {
    /// The key that was held.
    pub key: String,
    /// The session that held it.
    pub session: String,
    /// The session's lock-delay, capped at [`MAX_LOCK_DELAY`]; zero means none.
    pub lock_delay: Duration,
}
