//! Sessions, as Consul's `state/session.go` creates and destroys them.

use super::{NodeKey, Registry, Tx};
use crate::command::{Outcome, SessionSpec};
use crate::error::Error;
use crate::types::{HealthStatus, ReleasedLock, Session, SessionBehavior, MAX_LOCK_DELAY};

impl Registry {
    /// Consul's `sessionCreateTxn` with `validateSessionChecksTxn`: the node must exist, and
    /// every named check must exist on it and not be critical.
    pub(super) fn session_create(&mut self, tx: &mut Tx, spec: SessionSpec) -> Result<Outcome, Error> {
        if spec.id.is_empty() {
            return Err(Error::Missing { what: "session ID" });
        }
        if self.sessions.contains_key(&spec.id) {
            return Err(Error::SessionExists { session: spec.id });
        }
        if !self.nodes.contains_key(&spec.node) {
            return Err(Error::NodeNotFound { node: spec.node });
        }
        for check_id in spec.node_checks.iter().chain(&spec.service_checks) {
            let key = (spec.node.clone(), check_id.clone());
            match self.checks.get(&key) {
                None => return Err(Error::CheckNotFound { node: spec.node, check_id: check_id.clone() }),
                Some(check) if check.status == HealthStatus::Critical => {
                    return Err(Error::CheckCritical { node: spec.node, check_id: check_id.clone() })
                }
                Some(_) => {}
            }
        }
        let session = Session {
            id: spec.id.clone(),
            name: spec.name,
            node: spec.node,
            lock_delay: spec.lock_delay,
            behavior: spec.behavior,
            ttl: spec.ttl,
            node_checks: spec.node_checks,
            service_checks: spec.service_checks,
            create_index: tx.index,
            modify_index: tx.index,
        };
        self.put_session(tx, &spec.id, Some(session));
        Ok(Outcome::Done)
    }

    /// Consul's `deleteSessionTxn`: removes the session, then releases its locks or deletes
    /// its keys by its behavior, reporting each with the (capped) lock-delay. A missing
    /// session is a no-op.
    pub(super) fn destroy_session(&mut self, tx: &mut Tx, id: &str) {
        let Some(session) = self.sessions.get(id).cloned() else {
            return;
        };
        self.put_session(tx, id, None);
        let lock_delay = session.lock_delay.min(MAX_LOCK_DELAY);
        let keys: Vec<String> =
            self.keys_by_session.get(id).map(|keys| keys.iter().cloned().collect()).unwrap_or_default();
        for key in keys {
            match session.behavior {
                SessionBehavior::Release => {
                    if let Some(entry) = self.kv.get(&key) {
                        let mut entry = entry.clone();
                        entry.session = None;
                        entry.modify_index = tx.index;
                        self.put_kv(tx, &key, Some(entry));
                    }
                }
                SessionBehavior::Delete => self.kv_delete(tx, &key),
            }
            tx.released.push(ReleasedLock { key, session: id.to_owned(), lock_delay });
        }
    }

    /// Invalidates every session that names the check.
    pub(super) fn destroy_sessions_of_check(&mut self, tx: &mut Tx, check: &NodeKey) {
        let sessions: Vec<String> =
            self.sessions_by_check.get(check).map(|ids| ids.iter().cloned().collect()).unwrap_or_default();
        for id in sessions {
            self.destroy_session(tx, &id);
        }
    }
}
