//! The whole state as one serialisable value, for Raft snapshots.

use serde::{Deserialize, Serialize};

use crate::registry::Registry;
use crate::types::{Check, KvEntry, Node, Service, Session};
use crate::watch::Topic;

/// Everything a [`Registry`] holds, in a deterministic order (the same state gives the same
/// snapshot, so encoded snapshots can be compared byte for byte). The consensus layer
/// chooses the encoding and guards the bytes (checksums); [`Registry::restore`] trusts
/// what it is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The index of the last command applied.
    pub last_index: u64,
    /// The highest index of a reaped tombstone.
    pub kv_floor: u64,
    /// The highest index of a reaped topic change record.
    pub catalog_floor: u64,
    /// Nodes, by name.
    pub nodes: Vec<Node>,
    /// Service instances as (node, instance), by node and ID.
    pub services: Vec<(String, Service)>,
    /// Checks, by node and ID.
    pub checks: Vec<Check>,
    /// Key/value entries, by key.
    pub kv: Vec<KvEntry>,
    /// Tombstones as (key, index of the delete), by key.
    pub tombstones: Vec<(String, u64)>,
    /// Sessions, by ID.
    pub sessions: Vec<Session>,
    /// The index at which each topic last changed, by topic.
    pub topic_index: Vec<(Topic, u64)>,
}

impl Registry {
    /// The whole state, for a Raft snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let mut topic_index: Vec<(Topic, u64)> =
            self.topic_index.iter().map(|(topic, index)| (topic.clone(), *index)).collect();
        topic_index.sort();
        Snapshot {
            last_index: self.last_index,
            kv_floor: self.kv_floor,
            catalog_floor: self.catalog_floor,
            nodes: self.nodes.values().cloned().collect(),
            services: self.services.iter().map(|((node, _), service)| (node.clone(), service.clone())).collect(),
            checks: self.checks.values().cloned().collect(),
            kv: self.kv.values().cloned().collect(),
            tombstones: self.tombstones.iter().map(|(key, index)| (key.clone(), *index)).collect(),
            sessions: self.sessions.values().cloned().collect(),
            topic_index,
        }
    }

    /// The registry a snapshot was taken of, equal to it (`==`) and behaving identically
    /// from then on.
    pub fn restore(snapshot: Snapshot) -> Self {
        let mut registry = Self {
            last_index: snapshot.last_index,
            kv_floor: snapshot.kv_floor,
            catalog_floor: snapshot.catalog_floor,
            nodes: snapshot.nodes.into_iter().map(|n| (n.name.clone(), n)).collect(),
            services: snapshot.services.into_iter().map(|(node, s)| ((node, s.id.clone()), s)).collect(),
            checks: snapshot.checks.into_iter().map(|c| ((c.node.clone(), c.check_id.clone()), c)).collect(),
            kv: snapshot.kv.into_iter().map(|e| (e.key.clone(), e)).collect(),
            tombstones: snapshot.tombstones.into_iter().collect(),
            sessions: snapshot.sessions.into_iter().map(|s| (s.id.clone(), s)).collect(),
            topic_index: snapshot.topic_index.into_iter().collect(),
            ..Self::default()
        };
        registry.rebuild_derived();
        registry
    }
}
