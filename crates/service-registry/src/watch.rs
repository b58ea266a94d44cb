//! Change tracking for blocking queries: what a command changed ([`Changes`]), and which
//! registered watches that wakes ([`Watches`]).
//!
//! A watch wakes only when the data of its own query changed, not on every write to the
//! same table (Consul wakes every watcher of a table: hashicorp/consul#1244, #4984, #8995).
//! Finding the watches a command wakes costs a hash lookup per changed key and per prefix
//! of it (its length in characters, plus one), plus one per changed topic: never a scan of
//! the registered watches.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::types::HealthStatus;

/// What a blocking query watches. [`Registry::index`](crate::Registry::index) answers the
/// `X-Consul-Index` of each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WatchTarget {
    /// One key (`/v1/kv/k`).
    Key(String),
    /// Every key under a prefix (`/v1/kv/p?recurse`, `?keys`).
    Prefix(String),
    /// A catalog-level topic.
    Topic(Topic),
}

/// A catalog-level part of the state a query reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// The instances of a service with their nodes and checks (`/v1/catalog/service/:s`,
    /// `/v1/health/service/:s`): changes to an instance, its node record, its checks, or a
    /// node-level check of its node.
    Service(String),
    /// A node with its services and checks (`/v1/catalog/node/:n`, `/v1/health/node/:n`).
    Node(String),
    /// The node records (`/v1/catalog/nodes`).
    Nodes,
    /// The service names with the union of their tags (`/v1/catalog/services`): changes
    /// only when a name appears or disappears or its tag set changes.
    Services,
    /// The checks in one status (`/v1/health/state/:state`).
    ChecksInState(HealthStatus),
    /// Every check (`/v1/health/state/any`).
    AllChecks,
    /// One session (`/v1/session/info/:id`).
    Session(String),
    /// The sessions of one node (`/v1/session/node/:n`).
    NodeSessions(String),
    /// Every session (`/v1/session/list`).
    Sessions,
}

/// Exactly what one applied command changed. A key is listed if and only if its entry
/// changed (created, written with a different value, flags, session or lock index, or
/// deleted); a topic if and only if the data its query reads changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// Keys whose entry changed.
    pub keys: BTreeSet<String>,
    /// Catalog topics whose data changed.
    pub topics: BTreeSet<Topic>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.topics.is_empty()
    }
}

/// Identifies a registered watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WatchId(pub u64);

/// The watches of waiting blocking queries, indexed so that [`Watches::fired`] touches only
/// the watches a change concerns. Watches stay registered until [`Watches::unwatch`]: a
/// blocking query registers before reading, and unregisters when it answers.
#[derive(Debug, Default)]
pub struct Watches {
    next_id: u64,
    targets: HashMap<WatchId, WatchTarget>,
    keys: HashMap<String, BTreeSet<WatchId>>,
    prefixes: HashMap<String, BTreeSet<WatchId>>,
    topics: HashMap<Topic, BTreeSet<WatchId>>,
}

impl Watches {
    /// No watches.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a watch on `target`.
    pub fn watch(&mut self, target: WatchTarget) -> WatchId {
        let id = WatchId(self.next_id);
        self.next_id += 1;
        let ids = match &target {
            WatchTarget::Key(key) => self.keys.entry(key.clone()).or_default(),
            WatchTarget::Prefix(prefix) => self.prefixes.entry(prefix.clone()).or_default(),
            WatchTarget::Topic(topic) => self.topics.entry(topic.clone()).or_default(),
        };
        ids.insert(id);
        self.targets.insert(id, target);
        id
    }

    /// Removes a watch, returning what it watched (`None` if it was not registered).
    pub fn unwatch(&mut self, id: WatchId) -> Option<WatchTarget> {
        let target = self.targets.remove(&id)?;
        match &target {
            WatchTarget::Key(key) => remove_from(&mut self.keys, key, id),
            WatchTarget::Prefix(prefix) => remove_from(&mut self.prefixes, prefix, id),
            WatchTarget::Topic(topic) => remove_from(&mut self.topics, topic, id),
        }
        Some(target)
    }

    /// The number of registered watches.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether no watch is registered.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Exactly the watches whose data `changes` changed. They stay registered.
    #[must_use]
    pub fn fired(&self, changes: &Changes) -> BTreeSet<WatchId> {
        let mut fired = BTreeSet::new();
        for key in &changes.keys {
            if let Some(ids) = self.keys.get(key) {
                fired.extend(ids);
            }
            if !self.prefixes.is_empty() {
                for end in key.char_indices().map(|(i, _)| i).chain([key.len()]) {
                    if let Some(ids) = self.prefixes.get(&key[..end]) {
                        fired.extend(ids);
                    }
                }
            }
        }
        for topic in &changes.topics {
            if let Some(ids) = self.topics.get(topic) {
                fired.extend(ids);
            }
        }
        fired
    }
}

fn remove_from<K, Q>(map: &mut HashMap<K, BTreeSet<WatchId>>, key: &Q, id: WatchId)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(ids) = map.get_mut(key) {
        ids.remove(&id);
        if ids.is_empty() {
            map.remove(key);
        }
    }
}
