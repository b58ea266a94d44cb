//! Reads, and the index each blocking query answers with.

use std::collections::{BTreeMap, BTreeSet};

use super::{on_node, Registry};
use crate::types::{Check, HealthStatus, KvEntry, Node, Service, Session};
use crate::watch::WatchTarget;

/// One instance of a service with its node and the checks that apply to it (the node's
/// checks and the instance's own), as `/v1/health/service/:s` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInstance<'a> {
    /// The node the instance runs on.
    pub node: &'a Node,
    /// The instance.
    pub service: &'a Service,
    /// Node-level checks of the node, then the instance's checks, by check ID.
    pub checks: Vec<&'a Check>,
}

impl Registry {
    /// The index a blocking query on `target` answers with (`X-Consul-Index`): the index of
    /// the last command that changed its data. Never 0, and never lower than an earlier
    /// answer for the same target:
    /// - a key: its `modify_index`, or the index of its delete (tombstone);
    /// - a prefix: the highest `modify_index` or tombstone under it;
    /// - a topic: the last command that changed it;
    ///
    /// each at least the highest index reaped of its kind (tombstones for keys and
    /// prefixes, change records for topics), and at least 1.
    pub fn index(&self, target: &WatchTarget) -> u64 {
        let (own, floor) = match target {
            WatchTarget::Key(key) => {
                let entry = self.kv.get(key).map_or(0, |e| e.modify_index);
                let tombstone = self.tombstones.get(key).copied().unwrap_or(0);
                (entry.max(tombstone), self.kv_floor)
            }
            WatchTarget::Prefix(prefix) => {
                let entries = self
                    .kv
                    .range(prefix.clone()..)
                    .take_while(|(key, _)| key.starts_with(prefix.as_str()))
                    .map(|(_, e)| e.modify_index)
                    .max()
                    .unwrap_or(0);
                let tombstones = self
                    .tombstones
                    .range(prefix.clone()..)
                    .take_while(|(key, _)| key.starts_with(prefix.as_str()))
                    .map(|(_, index)| *index)
                    .max()
                    .unwrap_or(0);
                (entries.max(tombstones), self.kv_floor)
            }
            WatchTarget::Topic(topic) => (self.topic_index.get(topic).copied().unwrap_or(0), self.catalog_floor),
        };
        own.max(floor).max(1)
    }

    /// The entry at `key`.
    pub fn kv_get(&self, key: &str) -> Option<&KvEntry> {
        self.kv.get(key)
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn kv_list<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a KvEntry> + 'a {
        self.kv.range(prefix.to_owned()..).take_while(move |(key, _)| key.starts_with(prefix)).map(|(_, entry)| entry)
    }

    /// The keys under `prefix`, as `/v1/kv/p?keys&separator=s` lists them (Consul's
    /// `ListKeys`): with a non-empty separator, a key with the separator after the prefix
    /// is cut just after its first occurrence, and duplicates are dropped.
    pub fn kv_keys(&self, prefix: &str, separator: &str) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for entry in self.kv_list(prefix) {
            let key = if separator.is_empty() {
                entry.key.as_str()
            } else {
                match entry.key[prefix.len()..].find(separator) {
                    Some(at) => &entry.key[..prefix.len() + at + separator.len()],
                    None => entry.key.as_str(),
                }
            };
            if seen.insert(key) {
                keys.push(key.to_owned());
            }
        }
        keys
    }

    /// The number of tombstones waiting to be reaped.
    pub fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Every node, by name.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// The service instances on a node, by ID.
    pub fn node_services<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        on_node(&self.services, node).map(|(_, service)| service)
    }

    /// The checks on a node, by check ID.
    pub fn node_checks<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Check> + 'a {
        on_node(&self.checks, node).map(|(_, check)| check)
    }

    /// A check by node and ID.
    pub fn check(&self, node: &str, check_id: &str) -> Option<&Check> {
        self.checks.get(&(node.to_owned(), check_id.to_owned()))
    }

    /// The instances of a service, by node and ID, each with its node and checks.
    pub fn service_instances(&self, name: &str) -> Vec<ServiceInstance<'_>> {
        let Some(keys) = self.services_by_name.get(name) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|key| {
                let service = self.services.get(key)?;
                let node = self.nodes.get(&key.0)?;
                let checks = on_node(&self.checks, &key.0)
                    .map(|(_, check)| check)
                    .filter(|c| c.service_id.is_empty() || c.service_id == service.id)
                    .collect();
                Some(ServiceInstance { node, service, checks })
            })
            .collect()
    }

    /// Every service name with the union of its instances' tags (`/v1/catalog/services`).
    pub fn services(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut services: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for service in self.services.values() {
            services.entry(&service.service).or_default().extend(service.tags.iter().map(String::as_str));
        }
        services
    }

    /// The checks in `status`, or every check for `None`, by node and ID.
    pub fn checks_in_state(&self, status: Option<HealthStatus>) -> impl Iterator<Item = &Check> {
        self.checks.values().filter(move |c| status.is_none_or(|s| c.status == s))
    }

    /// A session by ID.
    pub fn session(&self, id: &str) -> Option<&Session> {
        self.sessions.get(id)
    }

    /// Every session, by ID.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// The sessions of a node, by ID.
    pub fn node_sessions<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Session> + 'a {
        self.sessions_by_node.get(node).into_iter().flatten().filter_map(|id| self.sessions.get(id))
    }

    /// The keys a session holds, in order.
    pub fn session_keys<'a>(&'a self, id: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.keys_by_session.get(id).into_iter().flatten().map(String::as_str)
    }

    /// The union of the tags of a service's instances; `None` if it has none.
    pub(super) fn tag_union(&self, name: &str) -> Option<BTreeSet<String>> {
        let keys = self.services_by_name.get(name)?;
        Some(keys.iter().filter_map(|key| self.services.get(key)).flat_map(|s| s.tags.iter().cloned()).collect())
    }
}
