//! The registry: its tables, `apply`, and the write primitives every operation goes through.
//!
//! Every change to a table goes through one `put_*` primitive, which
//! - does nothing when the record does not change (so nothing is recorded either),
//! - records in the command's [`Changes`] which keys and topics it touched,
//! - keeps the derived indexes (services by name, sessions by node and by check, keys by
//!   holding session) in step,
//! - logs the previous record, so that a failing command is rolled back exactly.

mod catalog;
mod kv;
mod read;
mod session;
mod txn;

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::command::{Applied, Command, Outcome};
use crate::error::Error;
use crate::types::{Check, KvEntry, Node, ReleasedLock, Service, Session};
use crate::watch::{Changes, Topic};

pub use read::ServiceInstance;

/// A (node name, ID) pair: the key of services and checks.
type NodeKey = (String, String);

/// The replicated state: catalog, key/value store, sessions, tombstones and the indexes
/// blocking queries answer with. Change it only through [`Registry::apply`], in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    pub(crate) last_index: u64,
    /// The highest index of a reaped tombstone: every key and prefix index answered is at
    /// least this, so that no answer goes backwards when a tombstone is reaped.
    pub(crate) kv_floor: u64,
    /// The same for topics: the highest index of a reaped change record.
    pub(crate) catalog_floor: u64,
    pub(crate) nodes: BTreeMap<String, Node>,
    pub(crate) services: BTreeMap<NodeKey, Service>,
    pub(crate) checks: BTreeMap<NodeKey, Check>,
    pub(crate) kv: BTreeMap<String, KvEntry>,
    pub(crate) tombstones: BTreeMap<String, u64>,
    pub(crate) sessions: BTreeMap<String, Session>,
    /// The index at which each topic last changed.
    pub(crate) topic_index: HashMap<Topic, u64>,
    // Derived from the tables above; rebuilt on restore.
    pub(crate) services_by_name: BTreeMap<String, BTreeSet<NodeKey>>,
    pub(crate) sessions_by_node: BTreeMap<String, BTreeSet<String>>,
    pub(crate) sessions_by_check: BTreeMap<NodeKey, BTreeSet<String>>,
    pub(crate) keys_by_session: BTreeMap<String, BTreeSet<String>>,
}

/// One command in progress: its index, what it changed, and how to undo it.
struct Tx {
    index: u64,
    undo: Vec<Undo>,
    changes: Changes,
    released: Vec<ReleasedLock>,
    /// The tag union of each service name touched, as it was before the command.
    tags_before: BTreeMap<String, Option<BTreeSet<String>>>,
}

impl Tx {
    fn new(index: u64) -> Self {
        Self {
            index,
            undo: Vec::new(),
            changes: Changes::default(),
            released: Vec::new(),
            tags_before: BTreeMap::new(),
        }
    }
}

enum Undo {
    Node(String, Option<Node>),
    Service(NodeKey, Option<Service>),
    Check(NodeKey, Option<Check>),
    Kv(String, Option<KvEntry>),
    Tombstone(String, Option<u64>),
    Session(String, Option<Session>),
}

impl Registry {
    /// An empty registry; the first command must have an index of at least 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of the last command applied (0 if none).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Applies `command` at the Raft log `index`, which must be greater than the last one
    /// applied. On `Ok`, the registry moved to `index`; on `Err`, nothing changed at all
    /// (not even the last index): a command is applied entirely or not at all.
    ///
    /// Deterministic: the same commands at the same indexes give the same state on every
    /// server.
    pub fn apply(&mut self, index: u64, command: Command) -> Result<Applied, Error> {
        if index <= self.last_index {
            return Err(Error::StaleIndex { index, last: self.last_index });
        }
        let mut tx = Tx::new(index);
        let result = match command {
            Command::Register(registration) => self.register(&mut tx, registration),
            Command::DeregisterNode { node } => self.deregister_node(&mut tx, &node),
            Command::DeregisterService { node, service_id } => self.deregister_service(&mut tx, &node, &service_id),
            Command::DeregisterCheck { node, check_id } => self.deregister_check(&mut tx, &node, &check_id),
            Command::Kv(op) => self.kv_op(&mut tx, op),
            Command::Txn(ops) => self.txn(&mut tx, ops),
            Command::SessionCreate(spec) => self.session_create(&mut tx, spec),
            Command::SessionDestroy { id } => {
                self.destroy_session(&mut tx, &id);
                Ok(Outcome::Done)
            }
            Command::ReapTombstones { up_to } => {
                self.reap(up_to);
                Ok(Outcome::Done)
            }
        };
        match result {
            Ok(outcome) => Ok(self.commit(tx, outcome)),
            Err(error) => {
                self.rollback(tx.undo);
                Err(error)
            }
        }
    }

    fn commit(&mut self, mut tx: Tx, outcome: Outcome) -> Applied {
        self.drop_transient_keys(&mut tx);
        let tags_before = std::mem::take(&mut tx.tags_before);
        if tags_before.into_iter().any(|(name, before)| self.tag_union(&name) != before) {
            tx.changes.topics.insert(Topic::Services);
        }
        for topic in &tx.changes.topics {
            self.topic_index.insert(topic.clone(), tx.index);
        }
        self.last_index = tx.index;
        tx.released.sort_by(|a, b| a.key.cmp(&b.key));
        Applied { index: tx.index, outcome, changes: tx.changes, released_locks: tx.released }
    }

    /// A key created and deleted by the same transaction did not change: it is dropped from
    /// the changes, and the tombstone of its delete is taken back, so that neither a watch
    /// nor an index moves for it.
    fn drop_transient_keys(&mut self, tx: &mut Tx) {
        let mut first_entry: BTreeMap<&str, bool> = BTreeMap::new();
        let mut first_tombstone: BTreeMap<&str, Option<u64>> = BTreeMap::new();
        for step in &tx.undo {
            match step {
                Undo::Kv(key, old) => {
                    first_entry.entry(key).or_insert(old.is_some());
                }
                Undo::Tombstone(key, old) => {
                    first_tombstone.entry(key).or_insert(*old);
                }
                _ => {}
            }
        }
        let transient: Vec<(String, Option<Option<u64>>)> = first_entry
            .into_iter()
            .filter(|(key, existed)| !existed && !self.kv.contains_key(*key))
            .map(|(key, _)| (key.to_owned(), first_tombstone.get(key).copied()))
            .collect();
        for (key, tombstone) in transient {
            tx.changes.keys.remove(&key);
            if let Some(before) = tombstone {
                self.raw_tombstone(&key, before);
            }
        }
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Node(name, old) => {
                    self.raw_node(&name, old);
                }
                Undo::Service(key, old) => {
                    self.raw_service(&key, old);
                }
                Undo::Check(key, old) => {
                    self.raw_check(&key, old);
                }
                Undo::Kv(key, old) => {
                    self.raw_kv(&key, old);
                }
                Undo::Tombstone(key, old) => {
                    self.raw_tombstone(&key, old);
                }
                Undo::Session(id, old) => {
                    self.raw_session(&id, old);
                }
            }
        }
    }

    /// Removes tombstones with an index up to `up_to`, and the change records of nodes,
    /// services and sessions that no longer exist, raising the floor of the key and prefix
    /// indexes (and of the topic indexes) to the highest index removed.
    fn reap(&mut self, up_to: u64) {
        let mut kv_floor = self.kv_floor;
        self.tombstones.retain(|_, index| {
            let keep = *index > up_to;
            if !keep {
                kv_floor = kv_floor.max(*index);
            }
            keep
        });
        self.kv_floor = kv_floor;
        let gone: Vec<Topic> = self
            .topic_index
            .iter()
            .filter(|(topic, index)| **index <= up_to && !self.topic_exists(topic))
            .map(|(topic, _)| topic.clone())
            .collect();
        for topic in gone {
            if let Some(index) = self.topic_index.remove(&topic) {
                self.catalog_floor = self.catalog_floor.max(index);
            }
        }
    }

    /// Whether the thing a per-object topic names still exists (table-wide topics always
    /// do, and are never reaped).
    fn topic_exists(&self, topic: &Topic) -> bool {
        match topic {
            Topic::Service(name) => self.services_by_name.contains_key(name),
            Topic::Node(name) => self.nodes.contains_key(name),
            Topic::Session(id) => self.sessions.contains_key(id),
            Topic::NodeSessions(node) => self.sessions_by_node.contains_key(node),
            Topic::Nodes | Topic::Services | Topic::ChecksInState(_) | Topic::AllChecks | Topic::Sessions => true,
        }
    }

    /// Rebuilds the derived indexes from the tables (after a restore).
    pub(crate) fn rebuild_derived(&mut self) {
        self.services_by_name.clear();
        self.sessions_by_node.clear();
        self.sessions_by_check.clear();
        self.keys_by_session.clear();
        for (key, service) in &self.services {
            self.services_by_name.entry(service.service.clone()).or_default().insert(key.clone());
        }
        for session in self.sessions.values() {
            index_session(&mut self.sessions_by_node, &mut self.sessions_by_check, session);
        }
        for entry in self.kv.values() {
            if let Some(session) = &entry.session {
                self.keys_by_session.entry(session.clone()).or_default().insert(entry.key.clone());
            }
        }
    }

    // ---- write primitives: record changes, keep derived indexes, log undo ----

    fn put_node(&mut self, tx: &mut Tx, name: &str, new: Option<Node>) {
        if self.nodes.get(name) == new.as_ref() {
            return;
        }
        tx.changes.topics.insert(Topic::Node(name.to_owned()));
        tx.changes.topics.insert(Topic::Nodes);
        self.touch_services_of_node(tx, name);
        let old = self.raw_node(name, new);
        tx.undo.push(Undo::Node(name.to_owned(), old));
    }

    fn put_service(&mut self, tx: &mut Tx, key: &NodeKey, new: Option<Service>) {
        let old = self.services.get(key);
        if old == new.as_ref() {
            return;
        }
        tx.changes.topics.insert(Topic::Node(key.0.clone()));
        for name in [old, new.as_ref()].into_iter().flatten().map(|s| &s.service) {
            tx.changes.topics.insert(Topic::Service(name.clone()));
            if !tx.tags_before.contains_key(name) {
                tx.tags_before.insert(name.clone(), self.tag_union(name));
            }
        }
        let old = self.raw_service(key, new);
        tx.undo.push(Undo::Service(key.clone(), old));
    }

    fn put_check(&mut self, tx: &mut Tx, key: &NodeKey, new: Option<Check>) {
        let old = self.checks.get(key);
        if old == new.as_ref() {
            return;
        }
        let topics = &mut tx.changes.topics;
        topics.insert(Topic::Node(key.0.clone()));
        topics.insert(Topic::AllChecks);
        let mut node_level = false;
        for check in [old, new.as_ref()].into_iter().flatten() {
            topics.insert(Topic::ChecksInState(check.status));
            if check.service_id.is_empty() {
                node_level = true;
            } else if let Some(service) = self.services.get(&(check.node.clone(), check.service_id.clone())) {
                topics.insert(Topic::Service(service.service.clone()));
            }
        }
        if node_level {
            self.touch_services_of_node(tx, &key.0);
        }
        let old = self.raw_check(key, new);
        tx.undo.push(Undo::Check(key.clone(), old));
    }

    fn put_kv(&mut self, tx: &mut Tx, key: &str, new: Option<KvEntry>) {
        if self.kv.get(key) == new.as_ref() {
            return;
        }
        tx.changes.keys.insert(key.to_owned());
        let old = self.raw_kv(key, new);
        tx.undo.push(Undo::Kv(key.to_owned(), old));
    }

    fn put_tombstone(&mut self, tx: &mut Tx, key: &str) {
        let old = self.raw_tombstone(key, Some(tx.index));
        tx.undo.push(Undo::Tombstone(key.to_owned(), old));
    }

    fn put_session(&mut self, tx: &mut Tx, id: &str, new: Option<Session>) {
        let old = self.sessions.get(id);
        if old == new.as_ref() {
            return;
        }
        tx.changes.topics.insert(Topic::Session(id.to_owned()));
        tx.changes.topics.insert(Topic::Sessions);
        for session in [old, new.as_ref()].into_iter().flatten() {
            tx.changes.topics.insert(Topic::NodeSessions(session.node.clone()));
        }
        let old = self.raw_session(id, new);
        tx.undo.push(Undo::Session(id.to_owned(), old));
    }

    fn touch_services_of_node(&self, tx: &mut Tx, node: &str) {
        for (_, service) in on_node(&self.services, node) {
            tx.changes.topics.insert(Topic::Service(service.service.clone()));
        }
    }

    // ---- raw setters: tables and derived indexes only ----

    fn raw_node(&mut self, name: &str, new: Option<Node>) -> Option<Node> {
        match new {
            Some(node) => self.nodes.insert(name.to_owned(), node),
            None => self.nodes.remove(name),
        }
    }

    fn raw_service(&mut self, key: &NodeKey, new: Option<Service>) -> Option<Service> {
        if let Some(service) = &new {
            self.services_by_name.entry(service.service.clone()).or_default().insert(key.clone());
        }
        let old = match new {
            Some(service) => self.services.insert(key.clone(), service),
            None => self.services.remove(key),
        };
        if let Some(old) = &old {
            let still_named = self.services.get(key).is_some_and(|s| s.service == old.service);
            if !still_named {
                remove_from_set(&mut self.services_by_name, &old.service, key);
            }
        }
        old
    }

    fn raw_check(&mut self, key: &NodeKey, new: Option<Check>) -> Option<Check> {
        match new {
            Some(check) => self.checks.insert(key.clone(), check),
            None => self.checks.remove(key),
        }
    }

    fn raw_kv(&mut self, key: &str, new: Option<KvEntry>) -> Option<KvEntry> {
        let new_session = new.as_ref().and_then(|e| e.session.clone());
        let old = match new {
            Some(entry) => self.kv.insert(key.to_owned(), entry),
            None => self.kv.remove(key),
        };
        let old_session = old.as_ref().and_then(|e| e.session.clone());
        if old_session != new_session {
            if let Some(session) = old_session {
                remove_from_set(&mut self.keys_by_session, &session, key);
            }
            if let Some(session) = new_session {
                self.keys_by_session.entry(session).or_default().insert(key.to_owned());
            }
        }
        old
    }

    fn raw_tombstone(&mut self, key: &str, new: Option<u64>) -> Option<u64> {
        match new {
            Some(index) => self.tombstones.insert(key.to_owned(), index),
            None => self.tombstones.remove(key),
        }
    }

    fn raw_session(&mut self, id: &str, new: Option<Session>) -> Option<Session> {
        let old = match &new {
            Some(session) => self.sessions.insert(id.to_owned(), session.clone()),
            None => self.sessions.remove(id),
        };
        if let Some(old) = &old {
            remove_from_set(&mut self.sessions_by_node, &old.node, id);
            for check in old.check_ids() {
                remove_from_set(&mut self.sessions_by_check, &(old.node.clone(), check.to_owned()), id);
            }
        }
        if let Some(session) = &new {
            index_session(&mut self.sessions_by_node, &mut self.sessions_by_check, session);
        }
        old
    }
}

fn index_session(
    by_node: &mut BTreeMap<String, BTreeSet<String>>,
    by_check: &mut BTreeMap<NodeKey, BTreeSet<String>>,
    session: &Session,
) {
    by_node.entry(session.node.clone()).or_default().insert(session.id.clone());
    for check in session.check_ids() {
        by_check.entry((session.node.clone(), check.to_owned())).or_default().insert(session.id.clone());
    }
}

fn remove_from_set<K, Q, V, R>(map: &mut BTreeMap<K, BTreeSet<V>>, key: &Q, value: &R)
where
    K: Borrow<Q> + Ord,
    Q: Ord + ?Sized,
    V: Borrow<R> + Ord,
    R: Ord + ?Sized,
{
    if let Some(set) = map.get_mut(key) {
        set.remove(value);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

/// The records of `map` (keyed by node and ID) on one node.
fn on_node<'a, V>(map: &'a BTreeMap<NodeKey, V>, node: &'a str) -> impl Iterator<Item = (&'a NodeKey, &'a V)> + 'a {
    map.range((node.to_owned(), String::new())..).take_while(move |((n, _), _)| n == node)
}
