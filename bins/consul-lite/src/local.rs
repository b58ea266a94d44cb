//! This agent's own services and checks (Consul's agent "local state"): registered through
//! `/v1/agent/service/register` and `/v1/agent/check/register`, kept in memory here, and
//! written to the catalog on this agent's node through the store, so that health answers and
//! DNS see them.
//!
//! ```text
//!  /v1/agent/* ─► LocalAgent (services, TTL checks, deadlines) ─► Store::write(Register | Deregister*)
//!                      ▲                 │
//!                      │                 └─► timer task: a TTL check not updated within its TTL
//!                      │                     is written critical ("TTL expired")
//!                      └── every SYNC_INTERVAL: a local service or check missing or different in
//!                          the catalog is written again (anti-entropy, one way: catalog entries
//!                          the agent does not own are left alone)
//! ```
//!
//! Only TTL checks are run in this version.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use service_registry::{CheckRegistration, Command, HealthStatus, Registration, ServiceRegistration};
use tokio::sync::{watch, Mutex, Notify};
use tokio::time::Instant;

use crate::store::{Store, StoreError};

/// How often the agent compares its services and checks with the catalog.
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_secs(10);

/// The output of a TTL check whose TTL ran out (Consul's).
pub(crate) const TTL_EXPIRED: &str = "TTL expired";

/// A check this agent owns: what the catalog gets, its TTL and when it runs out.
#[derive(Debug, Clone)]
pub(crate) struct LocalCheck {
    /// The check as written to the catalog (`check_type` "ttl").
    pub(crate) check: CheckRegistration,
    /// The TTL: without an update within it, the check turns critical.
    pub(crate) ttl: Duration,
    /// When the TTL runs out; `None` once it has (until the next update).
    deadline: Option<Instant>,
}

impl LocalCheck {
    /// A new TTL check: its TTL starts now.
    pub(crate) fn new(check: CheckRegistration, ttl: Duration) -> Self {
        Self { check, ttl, deadline: Some(Instant::now() + ttl) }
    }
}

#[derive(Debug, Default)]
struct LocalState {
    services: BTreeMap<String, ServiceRegistration>,
    checks: BTreeMap<String, LocalCheck>,
}

/// This agent's services and checks, and the catalog writes that follow them.
pub(crate) struct LocalAgent {
    node: String,
    store: Arc<dyn Store>,
    /// Held across the catalog write, so that writes reach the catalog in the order of the
    /// requests.
    state: Mutex<LocalState>,
    /// A deadline changed: the timer task looks again.
    changed: Notify,
}

impl LocalAgent {
    pub(crate) fn new(node: String, store: Arc<dyn Store>) -> Self {
        Self { node, store, state: Mutex::new(LocalState::default()), changed: Notify::new() }
    }

    /// A registration of this node, its record copied from the catalog (a register replaces
    /// the node record), with `service` and `checks`.
    fn registration(
        &self,
        service: Option<ServiceRegistration>,
        checks: Vec<CheckRegistration>,
    ) -> Result<Registration, StoreError> {
        let registry = self.store.read();
        let node = registry
            .node(&self.node)
            .ok_or_else(|| StoreError::Refused(service_registry::Error::NodeNotFound { node: self.node.clone() }))?;
        Ok(Registration {
            node: node.name.clone(),
            id: node.id.clone(),
            address: node.address.clone(),
            datacenter: node.datacenter.clone(),
            tagged_addresses: node.tagged_addresses.clone(),
            node_meta: node.meta.clone(),
            service,
            checks,
        })
    }

    /// Registers (or replaces) a service with its checks: written to the catalog first, kept
    /// here once applied. Checks of the service not named again are kept (Consul's default,
    /// without `replace-existing-checks`).
    pub(crate) async fn register_service(
        &self,
        service: ServiceRegistration,
        checks: Vec<LocalCheck>,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let registration =
            self.registration(Some(service.clone()), checks.iter().map(|c| c.check.clone()).collect())?;
        let _applied = self.store.write(Command::Register(registration)).await?;
        state.services.insert(service.id.clone(), service);
        for check in checks {
            state.checks.insert(check.check.check_id.clone(), check);
        }
        self.changed.notify_one();
        Ok(())
    }

    /// Removes a service and its checks; `false` when this agent has no such service.
    pub(crate) async fn deregister_service(&self, id: &str) -> Result<bool, StoreError> {
        let mut state = self.state.lock().await;
        if !state.services.contains_key(id) {
            return Ok(false);
        }
        let command = Command::DeregisterService { node: self.node.clone(), service_id: id.to_owned() };
        let _applied = self.store.write(command).await?;
        state.services.remove(id);
        state.checks.retain(|_, check| check.check.service_id != id);
        Ok(true)
    }

    /// Whether this agent has the service `id`.
    pub(crate) async fn has_service(&self, id: &str) -> bool {
        self.state.lock().await.services.contains_key(id)
    }

    /// Registers (or replaces) a check; its service, if any, must be this agent's.
    pub(crate) async fn register_check(&self, check: LocalCheck) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let registration = self.registration(None, vec![check.check.clone()])?;
        let _applied = self.store.write(Command::Register(registration)).await?;
        state.checks.insert(check.check.check_id.clone(), check);
        self.changed.notify_one();
        Ok(())
    }

    /// Sets a TTL check's status and output and restarts its TTL; `false` when this agent has
    /// no such check.
    pub(crate) async fn update_check(&self, id: &str, status: HealthStatus, output: &str) -> Result<bool, StoreError> {
        let mut state = self.state.lock().await;
        let Some(local) = state.checks.get(id) else { return Ok(false) };
        let mut check = local.check.clone();
        check.status = status;
        output.clone_into(&mut check.output);
        let ttl = local.ttl;
        let registration = self.registration(None, vec![check.clone()])?;
        let _applied = self.store.write(Command::Register(registration)).await?;
        state.checks.insert(id.to_owned(), LocalCheck { check, ttl, deadline: Some(Instant::now() + ttl) });
        self.changed.notify_one();
        Ok(true)
    }

    /// Removes a check; `false` when this agent has no such check.
    pub(crate) async fn deregister_check(&self, id: &str) -> Result<bool, StoreError> {
        let mut state = self.state.lock().await;
        if !state.checks.contains_key(id) {
            return Ok(false);
        }
        let _applied =
            self.store.write(Command::DeregisterCheck { node: self.node.clone(), check_id: id.to_owned() }).await?;
        state.checks.remove(id);
        Ok(true)
    }

    /// This agent's services, by ID.
    pub(crate) async fn services(&self) -> BTreeMap<String, ServiceRegistration> {
        self.state.lock().await.services.clone()
    }

    /// This agent's checks, by ID.
    pub(crate) async fn checks(&self) -> BTreeMap<String, LocalCheck> {
        self.state.lock().await.checks.clone()
    }

    /// Turns TTL checks critical when their TTL runs out, and re-syncs the catalog every
    /// [`SYNC_INTERVAL`], until the agent stops.
    pub(crate) async fn run(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        let mut next_sync = Instant::now() + SYNC_INTERVAL;
        loop {
            let next_deadline = {
                let state = self.state.lock().await;
                state.checks.values().filter_map(|c| c.deadline).min()
            };
            let wake = next_deadline.map_or(next_sync, |deadline| deadline.min(next_sync));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = self.changed.notified() => continue,
                _ = stopping.wait_for(|stop| *stop) => return,
            }
            self.expire().await;
            if Instant::now() >= next_sync {
                self.sync().await;
                next_sync = Instant::now() + SYNC_INTERVAL;
            }
        }
    }

    /// Writes every check whose TTL ran out as critical.
    async fn expire(&self) {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let due: Vec<String> = state
            .checks
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|deadline| deadline <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(local) = state.checks.get_mut(&id) else { continue };
            local.deadline = None;
            local.check.status = HealthStatus::Critical;
            TTL_EXPIRED.clone_into(&mut local.check.output);
            let check = local.check.clone();
            let written = match self.registration(None, vec![check]) {
                Ok(registration) => self.store.write(Command::Register(registration)).await.map(|_| ()),
                Err(error) => Err(error),
            };
            match written {
                Ok(()) => tracing::info!(check = %id, "agent: check TTL expired; critical"),
                // The next sync writes it again.
                Err(error) => tracing::warn!(check = %id, %error, "agent: cannot write an expired TTL check"),
            }
        }
    }

    /// Anti-entropy, one way: each local service or check that is missing from the catalog
    /// or differs there is written again. Catalog entries this agent does not own are left
    /// alone.
    async fn sync(&self) {
        let state = self.state.lock().await;
        let mut stale_services = Vec::new();
        let mut stale_checks = Vec::new();
        {
            let registry = self.store.read();
            for (id, service) in &state.services {
                let current = registry.node_services(&self.node).find(|s| &s.id == id);
                let same = current.is_some_and(|s| {
                    s.service == service.service
                        && s.tags == service.tags
                        && s.address == service.address
                        && s.port == service.port
                        && s.meta == service.meta
                });
                if !same {
                    stale_services.push(service.clone());
                }
            }
            for (id, local) in &state.checks {
                let same = registry.check(&self.node, id).is_some_and(|c| {
                    c.status == local.check.status
                        && c.output == local.check.output
                        && c.service_id == local.check.service_id
                        && c.name == local.check.name
                });
                if !same {
                    stale_checks.push(local.check.clone());
                }
            }
        }
        for service in stale_services {
            let checks: Vec<CheckRegistration> =
                state.checks.values().filter(|c| c.check.service_id == service.id).map(|c| c.check.clone()).collect();
            stale_checks.retain(|c| c.service_id != service.id);
            self.write_sync(Some(service), checks).await;
        }
        if !stale_checks.is_empty() {
            self.write_sync(None, stale_checks).await;
        }
    }

    async fn write_sync(&self, service: Option<ServiceRegistration>, checks: Vec<CheckRegistration>) {
        let result = match self.registration(service, checks) {
            Ok(registration) => self.store.write(Command::Register(registration)).await.map(|_| ()),
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "agent: cannot sync local services and checks to the catalog");
        }
    }
}
