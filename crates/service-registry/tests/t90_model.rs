//! Random command sequences against a deliberately simple model (vectors and linear scans,
//! a whole clone for rollback), checking after every step:
//! - the same result (outcome, error, released locks) and the same reads and indexes;
//! - on error, the registry is unchanged;
//! - watch exactness: a watch fires if and only if the read it stands for changed, and the
//!   index of a fired target is the command's, of any other target unchanged (reaps aside),
//!   and no index ever goes backwards;
//! - snapshots taken at random points, encoded and restored, are equal to the registry and
//!   behave identically from then on.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use service_registry::{
    Check, CheckRegistration, Command, Declined, Error, HealthStatus, KvEntry, KvOp, Node, Outcome, Registration,
    Registry, ReleasedLock, Service, ServiceRegistration, Session, SessionBehavior, SessionSpec, Snapshot, Topic,
    TxnError, TxnOp, WatchId, WatchTarget, Watches, MAX_LOCK_DELAY, MAX_VALUE_SIZE, SERF_HEALTH_CHECK,
};

const KEYS: [&str; 4] = ["a", "a/b", "a/c", "b"];
const PREFIXES: [&str; 5] = ["", "a", "a/", "b", "c"];
const NODES: [&str; 2] = ["n1", "n2"];
const SERVICES: [&str; 2] = ["web", "db"];
const SESSIONS: [&str; 3] = ["s1", "s2", "s3"];
const STATUSES: [HealthStatus; 4] =
    [HealthStatus::Passing, HealthStatus::Warning, HealthStatus::Critical, HealthStatus::Maintenance];

// ---------------------------------------------------------------------------------------
// The model

type Result1 = Result<(Outcome, Vec<ReleasedLock>), Error>;

#[derive(Debug, Clone, Default)]
struct Model {
    last: u64,
    kv_floor: u64,
    nodes: Vec<Node>,
    services: Vec<(String, Service)>,
    checks: Vec<Check>,
    kv: Vec<KvEntry>,
    tombstones: Vec<(String, u64)>,
    sessions: Vec<Session>,
}

impl Model {
    fn apply(&mut self, index: u64, command: &Command) -> Result1 {
        if index <= self.last {
            return Err(Error::StaleIndex { index, last: self.last });
        }
        let saved = self.clone();
        let mut released = Vec::new();
        match self.run(index, command, &mut released) {
            Ok(outcome) => {
                self.last = index;
                // A key absent before and after the command did not change: its tombstone
                // (from a create-then-delete in one transaction) is not kept.
                for key in KEYS {
                    if saved.get(key).is_none() && self.get(key).is_none() {
                        self.tombstones.retain(|(k, _)| k != key);
                        self.tombstones.extend(saved.tombstones.iter().filter(|(k, _)| k == key).cloned());
                    }
                }
                released.sort_by(|a: &ReleasedLock, b| a.key.cmp(&b.key));
                Ok((outcome, released))
            }
            Err(error) => {
                *self = saved;
                Err(error)
            }
        }
    }

    fn run(&mut self, idx: u64, command: &Command, rel: &mut Vec<ReleasedLock>) -> Result<Outcome, Error> {
        match command {
            Command::Kv(op) => self.kv_op(idx, op),
            Command::Txn(ops) => {
                let mut results = Vec::new();
                let mut errors = Vec::new();
                for (op_index, op) in ops.iter().enumerate() {
                    match self.txn_op(idx, op) {
                        Ok(entries) => results.extend(entries),
                        Err(()) => errors.push(TxnError { op_index, what: String::new() }),
                    }
                }
                if errors.is_empty() {
                    Ok(Outcome::Txn(results))
                } else {
                    Err(Error::TxnFailed { errors })
                }
            }
            Command::Register(reg) => self.register(idx, reg, rel),
            Command::DeregisterNode { node } => {
                self.deregister_node(idx, node, rel);
                Ok(Outcome::Done)
            }
            Command::DeregisterService { node, service_id } => {
                self.deregister_service(idx, node, service_id, rel);
                Ok(Outcome::Done)
            }
            Command::DeregisterCheck { node, check_id } => {
                self.delete_check(idx, node, check_id, rel);
                Ok(Outcome::Done)
            }
            Command::SessionCreate(spec) => self.session_create(idx, spec),
            Command::SessionDestroy { id } => {
                self.destroy_session(idx, id, rel);
                Ok(Outcome::Done)
            }
            Command::ReapTombstones { up_to } => {
                for (_, index) in self.tombstones.iter().filter(|(_, i)| *i <= *up_to) {
                    self.kv_floor = self.kv_floor.max(*index);
                }
                self.tombstones.retain(|(_, i)| *i > *up_to);
                Ok(Outcome::Done)
            }
        }
    }

    // ---- key/value ----

    fn get(&self, key: &str) -> Option<&KvEntry> {
        self.kv.iter().find(|e| e.key == key)
    }

    fn write(
        &mut self,
        idx: u64,
        key: &str,
        value: &[u8],
        flags: u64,
        session: Option<String>,
        lock_index: u64,
    ) -> KvEntry {
        if let Some(e) = self.get(key) {
            if e.value == value && e.flags == flags && e.session == session && e.lock_index == lock_index {
                return e.clone();
            }
        }
        let create_index = self.get(key).map_or(idx, |e| e.create_index);
        let entry = KvEntry {
            key: key.to_owned(),
            value: value.to_vec(),
            flags,
            session,
            lock_index,
            create_index,
            modify_index: idx,
        };
        self.kv.retain(|e| e.key != key);
        self.kv.push(entry.clone());
        entry
    }

    fn delete(&mut self, idx: u64, key: &str) {
        if self.get(key).is_some() {
            self.kv.retain(|e| e.key != key);
            self.tombstones.retain(|(k, _)| k != key);
            self.tombstones.push((key.to_owned(), idx));
        }
    }

    fn checked(key: &str, value: &[u8]) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::Missing { what: "key" });
        }
        if value.len() > MAX_VALUE_SIZE {
            return Err(Error::ValueTooLarge { key: key.to_owned(), size: value.len(), limit: MAX_VALUE_SIZE });
        }
        Ok(())
    }

    fn set(&mut self, idx: u64, key: &str, value: &[u8], flags: u64) -> Result<KvEntry, Error> {
        Self::checked(key, value)?;
        let session = self.get(key).and_then(|e| e.session.clone());
        Ok(self.write(idx, key, value, flags, session, 0))
    }

    fn cas(
        &mut self,
        idx: u64,
        key: &str,
        value: &[u8],
        flags: u64,
        index: u64,
    ) -> Result<Result<KvEntry, Declined>, Error> {
        Self::checked(key, value)?;
        let ok = match self.get(key) {
            None => index == 0,
            Some(e) => index != 0 && e.modify_index == index,
        };
        if !ok {
            return Ok(Err(Declined::IndexMismatch));
        }
        self.set(idx, key, value, flags).map(Ok)
    }

    fn delete_cas(&mut self, idx: u64, key: &str, index: u64) -> Result<(), Declined> {
        match self.get(key) {
            None => Ok(()),
            Some(e) if e.modify_index != index => Err(Declined::IndexMismatch),
            Some(_) => {
                self.delete(idx, key);
                Ok(())
            }
        }
    }

    fn delete_tree(&mut self, idx: u64, prefix: &str) {
        let keys: Vec<String> = self.kv.iter().filter(|e| e.key.starts_with(prefix)).map(|e| e.key.clone()).collect();
        for key in keys {
            self.delete(idx, &key);
        }
    }

    fn lock(
        &mut self,
        idx: u64,
        key: &str,
        value: &[u8],
        flags: u64,
        session: &str,
    ) -> Result<Result<KvEntry, Declined>, Error> {
        Self::checked(key, value)?;
        if session.is_empty() {
            return Err(Error::Missing { what: "session" });
        }
        if !self.sessions.iter().any(|s| s.id == session) {
            return Err(Error::SessionNotFound { session: session.to_owned() });
        }
        let lock_index = match self.get(key) {
            None => 1,
            Some(e) if e.session.as_deref() == Some(session) => e.lock_index,
            Some(e) if e.session.is_some() => return Ok(Err(Declined::LockHeld)),
            Some(e) => e.lock_index + 1,
        };
        Ok(Ok(self.write(idx, key, value, flags, Some(session.to_owned()), lock_index)))
    }

    fn unlock(
        &mut self,
        idx: u64,
        key: &str,
        value: &[u8],
        flags: u64,
        session: &str,
    ) -> Result<Result<KvEntry, Declined>, Error> {
        Self::checked(key, value)?;
        if session.is_empty() {
            return Err(Error::Missing { what: "session" });
        }
        match self.get(key) {
            Some(e) if e.session.as_deref() == Some(session) => {
                let lock_index = e.lock_index;
                Ok(Ok(self.write(idx, key, value, flags, None, lock_index)))
            }
            _ => Ok(Err(Declined::NotLockHolder)),
        }
    }

    fn kv_op(&mut self, idx: u64, op: &KvOp) -> Result<Outcome, Error> {
        let result: Result<(), Declined> = match op {
            KvOp::Set { key, value, flags } => {
                self.set(idx, key, value, *flags)?;
                Ok(())
            }
            KvOp::Cas { key, value, flags, index } => self.cas(idx, key, value, *flags, *index)?.map(drop),
            KvOp::Delete { key } => {
                self.delete(idx, key);
                Ok(())
            }
            KvOp::DeleteTree { prefix } => {
                self.delete_tree(idx, prefix);
                Ok(())
            }
            KvOp::DeleteCas { key, index } => self.delete_cas(idx, key, *index),
            KvOp::Acquire { key, value, flags, session } => self.lock(idx, key, value, *flags, session)?.map(drop),
            KvOp::Release { key, value, flags, session } => self.unlock(idx, key, value, *flags, session)?.map(drop),
        };
        Ok(match result {
            Ok(()) => Outcome::Done,
            Err(declined) => Outcome::Declined(declined),
        })
    }

    fn txn_op(&mut self, idx: u64, op: &TxnOp) -> Result<Vec<KvEntry>, ()> {
        fn blank(mut e: KvEntry) -> Vec<KvEntry> {
            e.value.clear();
            vec![e]
        }
        match op {
            TxnOp::Set { key, value, flags } => self.set(idx, key, value, *flags).map(blank).map_err(drop),
            TxnOp::Cas { key, value, flags, index } => match self.cas(idx, key, value, *flags, *index) {
                Ok(Ok(e)) => Ok(blank(e)),
                _ => Err(()),
            },
            TxnOp::Get { key } => self.get(key).cloned().map(|e| vec![e]).ok_or(()),
            TxnOp::GetTree { prefix } => {
                let mut entries: Vec<KvEntry> =
                    self.kv.iter().filter(|e| e.key.starts_with(prefix.as_str())).cloned().collect();
                entries.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(entries)
            }
            TxnOp::CheckIndex { key, index } => match self.get(key) {
                Some(e) if e.modify_index == *index => Ok(blank(e.clone())),
                _ => Err(()),
            },
            TxnOp::CheckSession { key, session } => match self.get(key) {
                Some(e) if e.session.clone().unwrap_or_default() == *session => Ok(blank(e.clone())),
                _ => Err(()),
            },
            TxnOp::CheckNotExists { key } => match self.get(key) {
                None => Ok(vec![]),
                Some(_) => Err(()),
            },
            TxnOp::Delete { key } => {
                self.delete(idx, key);
                Ok(vec![])
            }
            TxnOp::DeleteTree { prefix } => {
                self.delete_tree(idx, prefix);
                Ok(vec![])
            }
            TxnOp::DeleteCas { key, index } => self.delete_cas(idx, key, *index).map(|()| vec![]).map_err(drop),
            TxnOp::Lock { key, value, flags, session } => match self.lock(idx, key, value, *flags, session) {
                Ok(Ok(e)) => Ok(blank(e)),
                _ => Err(()),
            },
            TxnOp::Unlock { key, value, flags, session } => match self.unlock(idx, key, value, *flags, session) {
                Ok(Ok(e)) => Ok(blank(e)),
                _ => Err(()),
            },
        }
    }

    fn key_index(&self, key: &str) -> u64 {
        let e = self.get(key).map_or(0, |e| e.modify_index);
        let t = self.tombstones.iter().filter(|(k, _)| k == key).map(|(_, i)| *i).max().unwrap_or(0);
        e.max(t).max(self.kv_floor).max(1)
    }

    fn prefix_index(&self, prefix: &str) -> u64 {
        let e = self.kv.iter().filter(|e| e.key.starts_with(prefix)).map(|e| e.modify_index).max().unwrap_or(0);
        let t = self.tombstones.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, i)| *i).max().unwrap_or(0);
        e.max(t).max(self.kv_floor).max(1)
    }

    // ---- catalog ----

    fn register(&mut self, idx: u64, reg: &Registration, rel: &mut Vec<ReleasedLock>) -> Result<Outcome, Error> {
        if reg.node.is_empty() {
            return Err(Error::Missing { what: "node name" });
        }
        if reg.service.as_ref().is_some_and(|s| s.service.is_empty()) {
            return Err(Error::Missing { what: "service name" });
        }
        let mut reg = reg.clone();
        for c in &mut reg.checks {
            if c.check_id.is_empty() {
                c.check_id = c.name.clone();
            }
        }
        if reg.checks.iter().any(|c| c.check_id.is_empty()) {
            return Err(Error::Missing { what: "check ID" });
        }
        let old = self.nodes.iter().find(|n| n.name == reg.node).cloned();
        let mut node = Node {
            name: reg.node.clone(),
            id: reg.id.clone(),
            address: reg.address.clone(),
            datacenter: reg.datacenter.clone(),
            tagged_addresses: reg.tagged_addresses.clone(),
            meta: reg.node_meta.clone(),
            create_index: old.as_ref().map_or(idx, |n| n.create_index),
            modify_index: old.as_ref().map_or(idx, |n| n.modify_index),
        };
        if old.as_ref().is_some_and(|o| *o != node) {
            node.modify_index = idx;
        }
        self.nodes.retain(|n| n.name != reg.node);
        self.nodes.push(node);

        if let Some(s) = &reg.service {
            let id = if s.id.is_empty() { s.service.clone() } else { s.id.clone() };
            let old = self.services.iter().find(|(n, x)| *n == reg.node && x.id == id).map(|(_, x)| x.clone());
            let mut service = Service {
                id: id.clone(),
                service: s.service.clone(),
                tags: s.tags.clone(),
                address: s.address.clone(),
                port: s.port,
                meta: s.meta.clone(),
                enable_tag_override: s.enable_tag_override,
                weights: s.weights,
                create_index: old.as_ref().map_or(idx, |x| x.create_index),
                modify_index: old.as_ref().map_or(idx, |x| x.modify_index),
            };
            if old.as_ref().is_some_and(|o| *o != service) {
                service.modify_index = idx;
            }
            self.services.retain(|(n, x)| !(*n == reg.node && x.id == id));
            self.services.push((reg.node.clone(), service));
        }

        for c in &reg.checks {
            let (service_name, service_tags) = if c.service_id.is_empty() {
                (String::new(), vec![])
            } else {
                match self.services.iter().find(|(n, x)| *n == reg.node && x.id == c.service_id) {
                    Some((_, x)) => (x.service.clone(), x.tags.clone()),
                    None => {
                        return Err(Error::ServiceNotFound { node: reg.node.clone(), service_id: c.service_id.clone() })
                    }
                }
            };
            let old = self.checks.iter().find(|x| x.node == reg.node && x.check_id == c.check_id).cloned();
            let mut check = Check {
                node: reg.node.clone(),
                check_id: c.check_id.clone(),
                name: c.name.clone(),
                status: c.status,
                notes: c.notes.clone(),
                output: c.output.clone(),
                service_id: c.service_id.clone(),
                service_name,
                service_tags,
                check_type: c.check_type.clone(),
                create_index: old.as_ref().map_or(idx, |x| x.create_index),
                modify_index: old.as_ref().map_or(idx, |x| x.modify_index),
            };
            if old.as_ref().is_some_and(|o| *o != check) {
                check.modify_index = idx;
            }
            self.checks.retain(|x| !(x.node == reg.node && x.check_id == c.check_id));
            self.checks.push(check);
            if c.status == HealthStatus::Critical {
                self.destroy_sessions_naming(idx, &reg.node, &c.check_id, rel);
            }
        }
        Ok(Outcome::Done)
    }

    fn deregister_node(&mut self, idx: u64, node: &str, rel: &mut Vec<ReleasedLock>) {
        if !self.nodes.iter().any(|n| n.name == node) {
            return;
        }
        let services: Vec<String> =
            self.services.iter().filter(|(n, _)| n == node).map(|(_, s)| s.id.clone()).collect();
        for id in services {
            self.deregister_service(idx, node, &id, rel);
        }
        let checks: Vec<String> = self.checks.iter().filter(|c| c.node == node).map(|c| c.check_id.clone()).collect();
        for id in checks {
            self.delete_check(idx, node, &id, rel);
        }
        self.nodes.retain(|n| n.name != node);
        let sessions: Vec<String> = self.sessions.iter().filter(|s| s.node == node).map(|s| s.id.clone()).collect();
        for id in sessions {
            self.destroy_session(idx, &id, rel);
        }
    }

    fn deregister_service(&mut self, idx: u64, node: &str, id: &str, rel: &mut Vec<ReleasedLock>) {
        if !self.services.iter().any(|(n, s)| n == node && s.id == id) {
            return;
        }
        let checks: Vec<String> =
            self.checks.iter().filter(|c| c.node == node && c.service_id == id).map(|c| c.check_id.clone()).collect();
        for check in checks {
            self.delete_check(idx, node, &check, rel);
        }
        self.services.retain(|(n, s)| !(n == node && s.id == id));
    }

    fn delete_check(&mut self, idx: u64, node: &str, id: &str, rel: &mut Vec<ReleasedLock>) {
        if !self.checks.iter().any(|c| c.node == node && c.check_id == id) {
            return;
        }
        self.checks.retain(|c| !(c.node == node && c.check_id == id));
        self.destroy_sessions_naming(idx, node, id, rel);
    }

    // ---- sessions ----

    fn session_create(&mut self, idx: u64, spec: &SessionSpec) -> Result<Outcome, Error> {
        if spec.id.is_empty() {
            return Err(Error::Missing { what: "session ID" });
        }
        if self.sessions.iter().any(|s| s.id == spec.id) {
            return Err(Error::SessionExists { session: spec.id.clone() });
        }
        if !self.nodes.iter().any(|n| n.name == spec.node) {
            return Err(Error::NodeNotFound { node: spec.node.clone() });
        }
        for id in spec.node_checks.iter().chain(&spec.service_checks) {
            match self.checks.iter().find(|c| c.node == spec.node && c.check_id == *id) {
                None => return Err(Error::CheckNotFound { node: spec.node.clone(), check_id: id.clone() }),
                Some(c) if c.status == HealthStatus::Critical => {
                    return Err(Error::CheckCritical { node: spec.node.clone(), check_id: id.clone() })
                }
                Some(_) => {}
            }
        }
        self.sessions.push(Session {
            id: spec.id.clone(),
            name: spec.name.clone(),
            node: spec.node.clone(),
            lock_delay: spec.lock_delay,
            behavior: spec.behavior,
            ttl: spec.ttl,
            node_checks: spec.node_checks.clone(),
            service_checks: spec.service_checks.clone(),
            create_index: idx,
            modify_index: idx,
        });
        Ok(Outcome::Done)
    }

    fn destroy_sessions_naming(&mut self, idx: u64, node: &str, check: &str, rel: &mut Vec<ReleasedLock>) {
        let ids: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| s.node == node && s.node_checks.iter().chain(&s.service_checks).any(|c| c == check))
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            self.destroy_session(idx, &id, rel);
        }
    }

    fn destroy_session(&mut self, idx: u64, id: &str, rel: &mut Vec<ReleasedLock>) {
        let Some(session) = self.sessions.iter().find(|s| s.id == id).cloned() else { return };
        self.sessions.retain(|s| s.id != id);
        let held: Vec<String> =
            self.kv.iter().filter(|e| e.session.as_deref() == Some(id)).map(|e| e.key.clone()).collect();
        for key in held {
            match session.behavior {
                SessionBehavior::Release => {
                    let e = self.kv.iter_mut().find(|e| e.key == key).unwrap();
                    e.session = None;
                    e.modify_index = idx;
                }
                SessionBehavior::Delete => self.delete(idx, &key),
            }
            rel.push(ReleasedLock { key, session: id.to_owned(), lock_delay: session.lock_delay.min(MAX_LOCK_DELAY) });
        }
    }
}

// ---------------------------------------------------------------------------------------
// Views compared between the registry and the model

#[derive(Debug, PartialEq)]
struct View {
    last: u64,
    kv: Vec<KvEntry>,
    nodes: Vec<Node>,
    services: Vec<(String, Service)>,
    checks: Vec<Check>,
    sessions: Vec<Session>,
    key_indexes: Vec<u64>,
    prefix_indexes: Vec<u64>,
    keys_with_separator: Vec<Vec<String>>,
}

fn registry_view(r: &Registry) -> View {
    View {
        last: r.last_index(),
        kv: r.kv_list("").cloned().collect(),
        nodes: r.nodes().cloned().collect(),
        services: r.nodes().flat_map(|n| r.node_services(&n.name).map(|s| (n.name.clone(), s.clone()))).collect(),
        checks: r.nodes().flat_map(|n| r.node_checks(&n.name).cloned()).collect(),
        sessions: r.sessions().cloned().collect(),
        key_indexes: KEYS.iter().map(|k| r.index(&WatchTarget::Key(k.to_string()))).collect(),
        prefix_indexes: PREFIXES.iter().map(|p| r.index(&WatchTarget::Prefix(p.to_string()))).collect(),
        keys_with_separator: PREFIXES.iter().map(|p| r.kv_keys(p, "/")).collect(),
    }
}

fn model_view(m: &Model) -> View {
    let mut kv = m.kv.clone();
    kv.sort_by(|a, b| a.key.cmp(&b.key));
    let mut nodes = m.nodes.clone();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut services = m.services.clone();
    services.sort_by(|a, b| (&a.0, &a.1.id).cmp(&(&b.0, &b.1.id)));
    let mut checks = m.checks.clone();
    checks.sort_by(|a, b| (&a.node, &a.check_id).cmp(&(&b.node, &b.check_id)));
    let mut sessions = m.sessions.clone();
    sessions.sort_by(|a, b| a.id.cmp(&b.id));
    // keys with separator "/", the simple way: cut, then dedupe keeping the first.
    let keys_with_separator = PREFIXES
        .iter()
        .map(|p| {
            let mut out: Vec<String> = Vec::new();
            for e in kv.iter().filter(|e| e.key.starts_with(p)) {
                let rest = &e.key[p.len()..];
                let key = match rest.find('/') {
                    Some(at) => e.key[..p.len() + at + 1].to_string(),
                    None => e.key.clone(),
                };
                if !out.contains(&key) {
                    out.push(key);
                }
            }
            out
        })
        .collect();
    View {
        last: m.last,
        key_indexes: KEYS.iter().map(|k| m.key_index(k)).collect(),
        prefix_indexes: PREFIXES.iter().map(|p| m.prefix_index(p)).collect(),
        kv,
        nodes,
        services,
        checks,
        sessions,
        keys_with_separator,
    }
}

/// Transaction failure messages are checked by the unit tests; here, positions only.
fn without_txn_messages(result: Result1) -> Result1 {
    match result {
        Err(Error::TxnFailed { errors }) => Err(Error::TxnFailed {
            errors: errors.into_iter().map(|e| TxnError { what: String::new(), ..e }).collect(),
        }),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------
// Watch targets and the read each stands for

fn targets() -> Vec<WatchTarget> {
    let mut targets: Vec<WatchTarget> = Vec::new();
    targets.extend(KEYS.iter().map(|k| WatchTarget::Key(k.to_string())));
    targets.extend(PREFIXES.iter().map(|p| WatchTarget::Prefix(p.to_string())));
    let mut topics = vec![Topic::Nodes, Topic::Services, Topic::Sessions, Topic::AllChecks];
    topics.extend(SERVICES.iter().map(|s| Topic::Service(s.to_string())));
    topics.extend(NODES.iter().map(|n| Topic::Node(n.to_string())));
    topics.extend(NODES.iter().map(|n| Topic::NodeSessions(n.to_string())));
    topics.extend(SESSIONS.iter().map(|s| Topic::Session(s.to_string())));
    topics.extend(STATUSES.iter().map(|s| Topic::ChecksInState(*s)));
    targets.extend(topics.into_iter().map(WatchTarget::Topic));
    targets
}

fn read(r: &Registry, target: &WatchTarget) -> String {
    match target {
        WatchTarget::Key(k) => format!("{:?}", r.kv_get(k)),
        WatchTarget::Prefix(p) => format!("{:?}", r.kv_list(p).collect::<Vec<_>>()),
        WatchTarget::Topic(topic) => match topic {
            Topic::Service(s) => format!("{:?}", r.service_instances(s)),
            Topic::Node(n) => format!(
                "{:?}",
                (r.node(n), r.node_services(n).collect::<Vec<_>>(), r.node_checks(n).collect::<Vec<_>>())
            ),
            Topic::Nodes => format!("{:?}", r.nodes().collect::<Vec<_>>()),
            Topic::Services => format!("{:?}", r.services()),
            Topic::ChecksInState(s) => format!("{:?}", r.checks_in_state(Some(*s)).collect::<Vec<_>>()),
            Topic::AllChecks => format!("{:?}", r.checks_in_state(None).collect::<Vec<_>>()),
            Topic::Session(id) => format!("{:?}", r.session(id)),
            Topic::NodeSessions(n) => format!("{:?}", r.node_sessions(n).collect::<Vec<_>>()),
            Topic::Sessions => format!("{:?}", r.sessions().collect::<Vec<_>>()),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Strategies

#[derive(Debug, Clone)]
enum IndexChoice {
    Current,
    Literal(u64),
}

// Generated test input, never stored in bulk: size does not matter here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Gen {
    Plain(Command),
    Cas { key: &'static str, value: Vec<u8>, index: IndexChoice },
    DeleteCas { key: &'static str, index: IndexChoice },
    TxnCas { ops: Vec<TxnOp>, key: &'static str, index: IndexChoice, at: usize },
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Step {
    Apply { gap: u64, gen: Gen },
    Stale,
    Snapshot,
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        10 => prop_oneof![Just(b"".to_vec()), Just(b"x".to_vec()), Just(b"y".to_vec())],
        1 => Just(vec![7u8; MAX_VALUE_SIZE + 1]),
    ]
}

fn key() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(KEYS[0]), Just(KEYS[1]), Just(KEYS[2]), Just(KEYS[3])]
}

fn prefix() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just("a"), Just("a/"), Just("b"), Just("z")]
}

fn session_id() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just("s1"), 3 => Just("s2"), 2 => Just("s3"), 1 => Just("")].prop_map(String::from)
}

fn node_name() -> impl Strategy<Value = String> {
    prop_oneof![Just("n1"), Just("n2")].prop_map(String::from)
}

fn status() -> impl Strategy<Value = HealthStatus> {
    prop_oneof![
        3 => Just(HealthStatus::Passing),
        1 => Just(HealthStatus::Warning),
        2 => Just(HealthStatus::Critical),
        1 => Just(HealthStatus::Maintenance),
    ]
}

fn index_choice() -> impl Strategy<Value = IndexChoice> {
    prop_oneof![2 => Just(IndexChoice::Current), 1 => (0u64..12).prop_map(IndexChoice::Literal)]
}

fn txn_op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        (key(), value()).prop_map(|(k, v)| TxnOp::Set { key: k.into(), value: v, flags: 0 }),
        key().prop_map(|k| TxnOp::Get { key: k.into() }),
        prefix().prop_map(|p| TxnOp::GetTree { prefix: p.into() }),
        (key(), 0u64..12).prop_map(|(k, i)| TxnOp::CheckIndex { key: k.into(), index: i }),
        (key(), session_id()).prop_map(|(k, s)| TxnOp::CheckSession { key: k.into(), session: s }),
        key().prop_map(|k| TxnOp::CheckNotExists { key: k.into() }),
        key().prop_map(|k| TxnOp::Delete { key: k.into() }),
        prefix().prop_map(|p| TxnOp::DeleteTree { prefix: p.into() }),
        (key(), 0u64..12).prop_map(|(k, i)| TxnOp::DeleteCas { key: k.into(), index: i }),
        (key(), value(), session_id()).prop_map(|(k, v, s)| TxnOp::Lock {
            key: k.into(),
            value: v,
            flags: 1,
            session: s
        }),
        (key(), value(), session_id()).prop_map(|(k, v, s)| TxnOp::Unlock {
            key: k.into(),
            value: v,
            flags: 2,
            session: s
        }),
    ]
}

fn registration() -> impl Strategy<Value = Registration> {
    (
        node_name(),
        prop_oneof![Just("10.0.0.1"), Just("10.0.0.2")],
        status(),
        proptest::option::of((
            prop_oneof![Just(SERVICES[0]), Just(SERVICES[1])],
            prop_oneof![Just(vec![]), Just(vec!["v1"]), Just(vec!["v1", "v2"])],
            status(),
        )),
        any::<bool>(),
    )
        .prop_map(|(node, address, serf, service, with_serf)| {
            let mut checks = Vec::new();
            if with_serf {
                // Sometimes by name only: the ID defaults to the name.
                let by_name = address.ends_with('2');
                checks.push(CheckRegistration {
                    check_id: if by_name { String::new() } else { SERF_HEALTH_CHECK.into() },
                    name: if by_name { SERF_HEALTH_CHECK.into() } else { String::new() },
                    status: serf,
                    ..CheckRegistration::default()
                });
            }
            let service = service.map(|(name, tags, check)| {
                checks.push(CheckRegistration {
                    check_id: format!("service:{name}"),
                    status: check,
                    service_id: name.into(),
                    ..CheckRegistration::default()
                });
                ServiceRegistration {
                    service: name.into(),
                    tags: tags.into_iter().map(String::from).collect(),
                    ..ServiceRegistration::default()
                }
            });
            Registration { node, address: address.into(), service, checks, ..Registration::default() }
        })
}

fn session_spec() -> impl Strategy<Value = SessionSpec> {
    (
        session_id(),
        node_name(),
        prop_oneof![Just(SessionBehavior::Release), Just(SessionBehavior::Delete)],
        prop_oneof![Just(0u64), Just(15), Just(120)],
        0u8..3,
    )
        .prop_map(|(id, node, behavior, delay, checks)| SessionSpec {
            behavior,
            lock_delay: Duration::from_secs(delay),
            node_checks: if checks == 1 { vec![] } else { vec![SERF_HEALTH_CHECK.into()] },
            service_checks: if checks == 2 { vec!["service:web".into()] } else { vec![] },
            ..SessionSpec::new(id, node)
        })
}

fn gen() -> impl Strategy<Value = Gen> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| Gen::Plain(Command::Kv(KvOp::Set { key: k.into(), value: v, flags: 0 }))),
        2 => (key(), value(), index_choice()).prop_map(|(key, value, index)| Gen::Cas { key, value, index }),
        2 => key().prop_map(|k| Gen::Plain(Command::Kv(KvOp::Delete { key: k.into() }))),
        1 => prefix().prop_map(|p| Gen::Plain(Command::Kv(KvOp::DeleteTree { prefix: p.into() }))),
        1 => (key(), index_choice()).prop_map(|(key, index)| Gen::DeleteCas { key, index }),
        4 => (key(), value(), session_id()).prop_map(|(k, v, s)| Gen::Plain(Command::Kv(KvOp::Acquire { key: k.into(), value: v, flags: 3, session: s }))),
        3 => (key(), value(), session_id()).prop_map(|(k, v, s)| Gen::Plain(Command::Kv(KvOp::Release { key: k.into(), value: v, flags: 4, session: s }))),
        3 => (proptest::collection::vec(txn_op(), 1..4), key(), index_choice(), 0usize..4)
            .prop_map(|(ops, key, index, at)| Gen::TxnCas { ops, key, index, at }),
        4 => registration().prop_map(|r| Gen::Plain(Command::Register(r))),
        1 => node_name().prop_map(|node| Gen::Plain(Command::DeregisterNode { node })),
        1 => (node_name(), prop_oneof![Just("web"), Just("db")])
            .prop_map(|(node, s)| Gen::Plain(Command::DeregisterService { node, service_id: s.into() })),
        1 => (node_name(), prop_oneof![Just(SERF_HEALTH_CHECK), Just("service:web")])
            .prop_map(|(node, c)| Gen::Plain(Command::DeregisterCheck { node, check_id: c.into() })),
        4 => session_spec().prop_map(|s| Gen::Plain(Command::SessionCreate(s))),
        2 => session_id().prop_map(|id| Gen::Plain(Command::SessionDestroy { id })),
        1 => (0u64..40).prop_map(|up_to| Gen::Plain(Command::ReapTombstones { up_to })),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => (1u64..3, gen()).prop_map(|(gap, gen)| Step::Apply { gap, gen }),
        1 => Just(Step::Stale),
        2 => Just(Step::Snapshot),
    ]
}

fn resolve(gen: Gen, model: &Model) -> Command {
    let current = |key: &str, choice: IndexChoice| match choice {
        IndexChoice::Current => model.get(key).map_or(0, |e| e.modify_index),
        IndexChoice::Literal(i) => i,
    };
    match gen {
        Gen::Plain(command) => command,
        Gen::Cas { key, value, index } => {
            Command::Kv(KvOp::Cas { key: key.into(), value, flags: 0, index: current(key, index) })
        }
        Gen::DeleteCas { key, index } => Command::Kv(KvOp::DeleteCas { key: key.into(), index: current(key, index) }),
        Gen::TxnCas { mut ops, key, index, at } => {
            let op = TxnOp::Cas { key: key.into(), value: b"t".to_vec(), flags: 0, index: current(key, index) };
            ops.insert(at.min(ops.len()), op);
            Command::Txn(ops)
        }
    }
}

// ---------------------------------------------------------------------------------------
// The properties

/// Two healthy nodes, a web service on n1, and two sessions, so that locks and their
/// invalidation are exercised from the first random step.
fn prelude() -> Vec<Step> {
    let healthy = |node: &str, service: bool| Registration {
        node: node.into(),
        address: "10.0.0.1".into(),
        service: service.then(|| ServiceRegistration { service: "web".into(), ..ServiceRegistration::default() }),
        checks: std::iter::once(CheckRegistration {
            check_id: SERF_HEALTH_CHECK.into(),
            status: HealthStatus::Passing,
            ..CheckRegistration::default()
        })
        .chain(service.then(|| CheckRegistration {
            check_id: "service:web".into(),
            status: HealthStatus::Passing,
            service_id: "web".into(),
            ..CheckRegistration::default()
        }))
        .collect(),
        ..Registration::default()
    };
    let commands = [
        Command::Register(healthy("n1", true)),
        Command::Register(healthy("n2", false)),
        Command::SessionCreate(SessionSpec::new("s1", "n1")),
        Command::SessionCreate(SessionSpec {
            behavior: SessionBehavior::Delete,
            service_checks: vec!["service:web".into()],
            ..SessionSpec::new("s2", "n1")
        }),
    ];
    commands.into_iter().map(|c| Step::Apply { gap: 1, gen: Gen::Plain(c) }).collect()
}

fn run(random_steps: Vec<Step>) -> Result<(), TestCaseError> {
    let steps = prelude().into_iter().chain(random_steps);
    let mut registry = Registry::new();
    let mut model = Model::default();
    let mut restored: Option<Registry> = None;
    let mut watches = Watches::new();
    let targets = targets();
    let ids: Vec<(WatchId, WatchTarget)> = targets.iter().map(|t| (watches.watch(t.clone()), t.clone())).collect();
    let mut next = 1u64;

    for step in steps {
        match step {
            Step::Stale => {
                let before = registry.clone();
                let stale = registry.last_index();
                let result = registry.apply(stale, Command::ReapTombstones { up_to: 0 });
                let is_stale = matches!(result, Err(Error::StaleIndex { .. }));
                prop_assert!(is_stale);
                prop_assert_eq!(&registry, &before);
            }
            Step::Snapshot => {
                let snapshot = registry.snapshot();
                let json = serde_json::to_string(&snapshot).expect("encodes");
                let decoded: Snapshot = serde_json::from_str(&json).expect("decodes");
                prop_assert_eq!(&decoded, &snapshot);
                let copy = Registry::restore(decoded);
                prop_assert_eq!(&copy, &registry);
                prop_assert_eq!(copy.snapshot(), snapshot);
                restored = Some(copy);
            }
            Step::Apply { gap, gen } => {
                let command = resolve(gen, &model);
                let index = next + gap - 1;
                let before = registry.clone();
                let reads_before: Vec<String> = targets.iter().map(|t| read(&registry, t)).collect();
                let indexes_before: Vec<u64> = targets.iter().map(|t| registry.index(t)).collect();

                let result = registry.apply(index, command.clone());
                let expected = model.apply(index, &command);
                let got = result.clone().map(|a| (a.outcome, a.released_locks));
                prop_assert_eq!(without_txn_messages(got), without_txn_messages(expected), "{:?}", command);
                prop_assert_eq!(registry_view(&registry), model_view(&model));

                if let Some(copy) = restored.as_mut() {
                    let copy_result = copy.apply(index, command.clone());
                    prop_assert_eq!(&copy_result, &result);
                    prop_assert_eq!(&*copy, &registry);
                }

                match result {
                    Err(_) => {
                        prop_assert_eq!(&registry, &before, "nothing half-applied");
                    }
                    Ok(applied) => {
                        next = index + 1;
                        let fired = watches.fired(&applied.changes);
                        let is_reap = matches!(command, Command::ReapTombstones { .. });
                        for (i, (id, target)) in ids.iter().enumerate() {
                            let changed = read(&registry, target) != reads_before[i];
                            prop_assert_eq!(fired.contains(id), changed, "{:?} after {:?}", target, command);
                            let now = registry.index(target);
                            prop_assert!(now >= indexes_before[i], "{:?} went backwards", target);
                            if changed {
                                prop_assert_eq!(now, applied.index, "{:?}", target);
                            } else if !is_reap {
                                prop_assert_eq!(now, indexes_before[i], "{:?} moved without a change", target);
                            }
                        }
                        let fired_keys: BTreeSet<&String> = applied.changes.keys.iter().collect();
                        for key in &fired_keys {
                            prop_assert!(KEYS.contains(&key.as_str()));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_match_the_model_fire_exactly_and_survive_snapshots(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        run(steps)?;
    }
}
