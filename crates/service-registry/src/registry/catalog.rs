//! Catalog register and deregister, as Consul's `state/catalog.go` does them.

use super::{on_node, Registry, Tx};
use crate::command::{Outcome, Registration};
use crate::error::Error;
use crate::types::{Check, HealthStatus, Node, Service};

impl Registry {
    /// Consul's `ensureRegistrationTxn`: the node, then the service, then the checks; a
    /// record equal to the stored one (indexes aside) is not written, so its
    /// `modify_index` does not move and no watch fires.
    pub(super) fn register(&mut self, tx: &mut Tx, mut reg: Registration) -> Result<Outcome, Error> {
        // Consul's Catalog.Register endpoint: a check without an ID takes its name.
        for check in &mut reg.checks {
            if check.check_id.is_empty() {
                check.check_id = check.name.clone();
            }
        }
        if reg.node.is_empty() {
            return Err(Error::Missing { what: "node name" });
        }
        if reg.service.as_ref().is_some_and(|s| s.service.is_empty()) {
            return Err(Error::Missing { what: "service name" });
        }
        if reg.checks.iter().any(|c| c.check_id.is_empty()) {
            return Err(Error::Missing { what: "check ID" });
        }

        let existing = self.nodes.get(&reg.node);
        let mut node = Node {
            name: reg.node.clone(),
            id: reg.id,
            address: reg.address,
            datacenter: reg.datacenter,
            tagged_addresses: reg.tagged_addresses,
            meta: reg.node_meta,
            create_index: existing.map_or(tx.index, |n| n.create_index),
            modify_index: existing.map_or(tx.index, |n| n.modify_index),
        };
        if existing.is_some_and(|n| n != &node) {
            node.modify_index = tx.index;
        }
        self.put_node(tx, &reg.node, Some(node));

        if let Some(service) = reg.service {
            let id = if service.id.is_empty() { service.service.clone() } else { service.id };
            let key = (reg.node.clone(), id.clone());
            let existing = self.services.get(&key);
            let mut new = Service {
                id,
                service: service.service,
                tags: service.tags,
                address: service.address,
                port: service.port,
                meta: service.meta,
                enable_tag_override: service.enable_tag_override,
                weights: service.weights,
                create_index: existing.map_or(tx.index, |s| s.create_index),
                modify_index: existing.map_or(tx.index, |s| s.modify_index),
            };
            if existing.is_some_and(|s| s != &new) {
                new.modify_index = tx.index;
            }
            self.put_service(tx, &key, Some(new));
        }

        for check in reg.checks {
            let (service_name, service_tags) = if check.service_id.is_empty() {
                (String::new(), Vec::new())
            } else {
                let service = self.services.get(&(reg.node.clone(), check.service_id.clone())).ok_or_else(|| {
                    Error::ServiceNotFound { node: reg.node.clone(), service_id: check.service_id.clone() }
                })?;
                (service.service.clone(), service.tags.clone())
            };
            let key = (reg.node.clone(), check.check_id.clone());
            let existing = self.checks.get(&key);
            let mut new = Check {
                node: reg.node.clone(),
                check_id: check.check_id,
                name: check.name,
                status: check.status,
                notes: check.notes,
                output: check.output,
                service_id: check.service_id,
                service_name,
                service_tags,
                check_type: check.check_type,
                create_index: existing.map_or(tx.index, |c| c.create_index),
                modify_index: existing.map_or(tx.index, |c| c.modify_index),
            };
            if existing.is_some_and(|c| c != &new) {
                new.modify_index = tx.index;
            }
            let critical = new.status == HealthStatus::Critical;
            self.put_check(tx, &key, Some(new));
            // As Consul: a critical check invalidates the sessions that name it, whether or
            // not its status just changed.
            if critical {
                self.destroy_sessions_of_check(tx, &key);
            }
        }
        Ok(Outcome::Done)
    }

    /// Consul's `deleteNodeTxn`: services (with their checks), the remaining checks, the
    /// node, then its sessions. A missing node is a no-op.
    pub(super) fn deregister_node(&mut self, tx: &mut Tx, node: &str) -> Result<Outcome, Error> {
        if !self.nodes.contains_key(node) {
            return Ok(Outcome::Done);
        }
        let services: Vec<String> = on_node(&self.services, node).map(|((_, id), _)| id.clone()).collect();
        for id in services {
            self.deregister_service(tx, node, &id)?;
        }
        let checks: Vec<String> = on_node(&self.checks, node).map(|((_, id), _)| id.clone()).collect();
        for id in checks {
            self.delete_check(tx, node, &id);
        }
        self.put_node(tx, node, None);
        let sessions: Vec<String> =
            self.sessions_by_node.get(node).map(|ids| ids.iter().cloned().collect()).unwrap_or_default();
        for id in sessions {
            self.destroy_session(tx, &id);
        }
        Ok(Outcome::Done)
    }

    /// Consul's `deleteServiceTxn`: the instance's checks (invalidating their sessions),
    /// then the instance. A missing instance is a no-op.
    pub(super) fn deregister_service(&mut self, tx: &mut Tx, node: &str, service_id: &str) -> Result<Outcome, Error> {
        let key = (node.to_owned(), service_id.to_owned());
        if !self.services.contains_key(&key) {
            return Ok(Outcome::Done);
        }
        let checks: Vec<String> = on_node(&self.checks, node)
            .filter(|(_, check)| check.service_id == service_id)
            .map(|((_, id), _)| id.clone())
            .collect();
        for id in checks {
            self.delete_check(tx, node, &id);
        }
        self.put_service(tx, &key, None);
        Ok(Outcome::Done)
    }

    pub(super) fn deregister_check(&mut self, tx: &mut Tx, node: &str, check_id: &str) -> Result<Outcome, Error> {
        self.delete_check(tx, node, check_id);
        Ok(Outcome::Done)
    }

    /// Consul's `deleteCheckTxn`: removes the check and invalidates the sessions naming it.
    fn delete_check(&mut self, tx: &mut Tx, node: &str, check_id: &str) {
        let key = (node.to_owned(), check_id.to_owned());
        if !self.checks.contains_key(&key) {
            return;
        }
        self.put_check(tx, &key, None);
        self.destroy_sessions_of_check(tx, &key);
    }
}
