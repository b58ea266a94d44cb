//! This agent's own services and checks (Consul's agent "local state"): registered through
//! `/v1/agent/service/register` and `/v1/agent/check/register`, defined in `-config-file` /
//! `-config-dir`, or read back from `-data-dir`; kept here, run here (HTTP, TCP and script checks
//! by [`crate::checks`] runners, TTL deadlines by the agent's own task), and written to the
//! catalog on this agent's node through the store, so that health answers and DNS see them.
//!
//! ```text
//!  /v1/agent/* ─► LocalAgent ─► (-data-dir) definition file, fsynced ─► Store::write(Register | Deregister*)
//!  config files / data dir at start ─► LocalAgent (written by the first sync)
//!                     ▲   │
//!  check runners ─────┘   └─► run(): one task that
//!   (CheckResult channel)       - writes a runner's result (or a TTL update) when the status
//!                                 changes; an output-only change waits up to
//!                                 CHECK_UPDATE_INTERVAL; an unchanged result writes nothing
//!                               - turns a TTL check critical when its TTL runs out ("TTL expired")
//!                               - removes a service whose check has been critical for its
//!                                 DeregisterCriticalServiceAfter
//!                               - every SYNC_INTERVAL (every second until one succeeds): writes
//!                                 again each local service or check missing or different in the
//!                                 catalog (anti-entropy, one way: entries the agent does not own
//!                                 are left alone)
//! ```
//!
//! A request changes this state only once the catalog write succeeded (and, with a data dir, once
//! the definition is on disk): a refused request leaves nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use service_registry::{CheckRegistration, Command, HealthStatus, Registration, ServiceRegistration};
use tokio::sync::{mpsc, watch, Mutex, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::checks::persist::DefinitionFiles;
use crate::checks::{self, CheckKind, CheckResult, CheckSpec};
use crate::store::{Store, StoreError};

/// How often the agent compares its services and checks with the catalog.
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// How soon a sync that failed (no leader yet, this node not registered yet) is tried again.
const SYNC_RETRY: Duration = Duration::from_secs(1);
/// How long a check's new output waits to be written when its status did not change (Consul's
/// `check_update_interval`, 5 minutes by default): a check whose output changes at every run
/// (a timestamp, a latency) costs one catalog write per interval, not one per run.
pub(crate) const CHECK_UPDATE_INTERVAL: Duration = Duration::from_secs(300);

/// The output of a TTL check whose TTL ran out (Consul's).
pub(crate) const TTL_EXPIRED: &str = "TTL expired";

/// Consul's ID of a node's maintenance check.
pub(crate) const NODE_MAINTENANCE: &str = "_node_maintenance";
/// Consul's prefix of a service's maintenance check ID.
pub(crate) const SERVICE_MAINTENANCE_PREFIX: &str = "_service_maintenance:";

/// Where a definition came from: it decides whether script checks are allowed (Consul's
/// `enable_local_script_checks` allows them only from local config) and whether it is kept in
/// the data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The HTTP API: kept in the data dir.
    Api,
    /// A config file, or the data dir at start: not written again.
    Local,
}

/// What the agent was started with that concerns its own services and checks.
#[derive(Debug, Clone, Default)]
pub(crate) struct LocalSettings {
    /// `-enable-script-checks`: script checks from anywhere.
    pub(crate) enable_script_checks: bool,
    /// `-enable-local-script-checks`: script checks from config files only.
    pub(crate) enable_local_script_checks: bool,
    /// Where API registrations are kept (`None`: nowhere, as with `-dev` or no `-data-dir`).
    pub(crate) data_dir: Option<PathBuf>,
    /// Service definitions from the config files, each with the file it came from.
    pub(crate) services: Vec<(Value, String)>,
    /// Check definitions from the config files.
    pub(crate) checks: Vec<(Value, String)>,
}

impl LocalSettings {
    /// From the agent's settings: the data dir is used unless `-dev` (which keeps nothing).
    pub(crate) fn from_settings(settings: &crate::config::Settings) -> Self {
        let definitions = &settings.local;
        Self {
            enable_script_checks: definitions.enable_script_checks,
            enable_local_script_checks: definitions.enable_local_script_checks,
            data_dir: if settings.dev { None } else { settings.data_dir.clone() },
            services: definitions.services.clone(),
            checks: definitions.checks.clone(),
        }
    }

    /// Consul's refusal of a script check from `source`, if it is refused.
    pub(crate) fn script_refusal(&self, source: Source) -> Option<&'static str> {
        match source {
            _ if self.enable_script_checks => None,
            Source::Local if self.enable_local_script_checks => None,
            Source::Api => Some(
                "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true",
            ),
            Source::Local => Some(
                "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or \
                 'enable_local_script_checks' to true",
            ),
        }
    }
}

/// Why an agent request was not applied. Nothing was changed in every case.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LocalError {
    /// The catalog write failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A script check without `-enable-script-checks` (Consul's message).
    #[error("{0}")]
    ScriptsDisabled(&'static str),
    /// `pass`/`warn`/`fail`/`update` on a check that is not a TTL check.
    #[error("CheckID {0:?} does not have associated TTL")]
    NotTtl(String),
    /// The definition could not be written to the data dir.
    #[error("cannot keep the definition in the data dir: {0}")]
    Persist(#[from] std::io::Error),
}

/// A check this agent owns: what the catalog gets, what runs it, and its timers.
#[derive(Debug, Clone)]
pub(crate) struct LocalCheck {
    /// The check as written to the catalog.
    pub(crate) check: CheckRegistration,
    /// Its kind and timings.
    pub(crate) spec: CheckSpec,
    /// When a TTL check's TTL runs out; `None` once it has (until the next update).
    deadline: Option<Instant>,
    /// Since when it has been critical.
    critical_since: Option<Instant>,
    /// Which registration of the ID this is (results of a replaced runner are dropped).
    generation: u64,
    /// When an output that changed without the status is due to be written (the catalog
    /// holds the previous one until then).
    output_due: Option<Instant>,
}

impl LocalCheck {
    /// A check to register; its timers start when it is installed.
    pub(crate) fn new(mut check: CheckRegistration, spec: CheckSpec) -> Self {
        spec.kind.type_name().clone_into(&mut check.check_type);
        Self { check, spec, deadline: None, critical_since: None, generation: 0, output_due: None }
    }

    /// Takes a new status and output at `now`: whether it must be written at once (the status
    /// changed). An output-only change is due [`CHECK_UPDATE_INTERVAL`] after the first one
    /// not yet written; the same status and output change nothing.
    fn take_result(&mut self, status: HealthStatus, output: &str, now: Instant) -> bool {
        let status_changed = self.check.status != status;
        if status_changed {
            self.output_due = None;
        } else if self.check.output != output && self.output_due.is_none() {
            self.output_due = Some(now + CHECK_UPDATE_INTERVAL);
        }
        self.critical_since = critical_since(self.critical_since, status, now);
        self.check.status = status;
        output.clone_into(&mut self.check.output);
        status_changed
    }
}

#[derive(Debug, Default)]
struct LocalState {
    services: BTreeMap<String, ServiceRegistration>,
    checks: BTreeMap<String, LocalCheck>,
    runners: HashMap<String, JoinHandle<()>>,
    /// The definitions kept in the data dir, by service ID and by check ID.
    saved_services: HashMap<String, Value>,
    saved_checks: HashMap<String, Value>,
    generation: u64,
}

/// This agent's services and checks, and the catalog writes that follow them.
pub(crate) struct LocalAgent {
    node: String,
    store: Arc<dyn Store>,
    settings: LocalSettings,
    files: Option<DefinitionFiles>,
    /// Held across the catalog write, so that writes reach the catalog in the order of the
    /// requests.
    state: Mutex<LocalState>,
    /// A deadline changed: the timer task looks again.
    changed: Notify,
    results: mpsc::Sender<CheckResult>,
    results_rx: std::sync::Mutex<Option<mpsc::Receiver<CheckResult>>>,
}

impl LocalAgent {
    /// The agent's local state, with the definitions of the config files and those kept in the
    /// data dir (written to the catalog by [`run`](Self::run)'s first sync). Needs a tokio
    /// runtime (check runners start here).
    pub(crate) fn new(node: String, store: Arc<dyn Store>, settings: LocalSettings) -> Self {
        let (results, results_rx) = mpsc::channel(1024);
        let files = settings.data_dir.as_deref().map(DefinitionFiles::new);
        let agent = Self {
            node,
            store,
            settings,
            files,
            state: Mutex::new(LocalState::default()),
            changed: Notify::new(),
            results,
            results_rx: std::sync::Mutex::new(Some(results_rx)),
        };
        agent.load();
        agent
    }

    /// Installs the config-file definitions, then those in the data dir that a config file
    /// does not define; a definition that no longer parses or is no longer allowed is skipped
    /// with a warning.
    fn load(&self) {
        let mut state = self.state.try_lock().expect("a new LocalAgent is not shared yet");
        for (value, source) in &self.settings.services {
            match crate::http::local::service_definition(value, "service") {
                Ok((service, checks)) => self.install_service(&mut state, service, checks),
                Err(error) => tracing::warn!(%source, error = %error.message, "agent: skipping a service definition"),
            }
        }
        for (value, source) in &self.settings.checks {
            match crate::http::local::check_definition(value, "check", None, None) {
                Ok(check)
                    if check.check.service_id.is_empty() || state.services.contains_key(&check.check.service_id) =>
                {
                    self.install(&mut state, check);
                }
                Ok(check) => {
                    tracing::warn!(%source, check = %check.check.check_id, "agent: skipping a check of an unknown service")
                }
                Err(error) => tracing::warn!(%source, error = %error.message, "agent: skipping a check definition"),
            }
        }
        let Some(files) = &self.files else { return };
        let (services, checks) = files.load();
        for saved in services {
            if state.services.contains_key(&saved.id) {
                continue;
            }
            match crate::http::local::service_definition(&saved.definition, "service") {
                Ok((service, checks)) if self.allowed(&checks, Source::Api).is_ok() => {
                    state.saved_services.insert(service.id.clone(), saved.definition);
                    let checks = checks.into_iter().map(restored).collect();
                    self.install_service(&mut state, service, checks);
                }
                Ok(_) => {
                    tracing::warn!(path = %saved.path.display(), "agent: skipping a saved service with a script check: scripts are disabled")
                }
                Err(error) => {
                    tracing::warn!(path = %saved.path.display(), error = %error.message, "agent: skipping a saved service")
                }
            }
        }
        for saved in checks {
            if state.checks.contains_key(&saved.id) {
                continue;
            }
            match crate::http::local::check_definition(&saved.definition, "check", None, None) {
                Ok(check)
                    if self.allowed(std::slice::from_ref(&check), Source::Api).is_ok()
                        && (check.check.service_id.is_empty()
                            || state.services.contains_key(&check.check.service_id)) =>
                {
                    state.saved_checks.insert(check.check.check_id.clone(), saved.definition);
                    self.install(&mut state, restored(check));
                }
                Ok(_) => {
                    tracing::warn!(path = %saved.path.display(), "agent: skipping a saved check (its service is gone, or scripts are disabled)")
                }
                Err(error) => {
                    tracing::warn!(path = %saved.path.display(), error = %error.message, "agent: skipping a saved check")
                }
            }
        }
    }

    fn allowed(&self, checks: &[LocalCheck], source: Source) -> Result<(), LocalError> {
        let scripts = checks.iter().any(|c| matches!(c.spec.kind, CheckKind::Script { .. }));
        match self.settings.script_refusal(source) {
            Some(refusal) if scripts => Err(LocalError::ScriptsDisabled(refusal)),
            _ => Ok(()),
        }
    }

    fn install_service(&self, state: &mut LocalState, service: ServiceRegistration, checks: Vec<LocalCheck>) {
        state.services.insert(service.id.clone(), service);
        for check in checks {
            self.install(state, check);
        }
    }

    /// Puts `check` in the state: its TTL starts, its runner starts (replacing the old one).
    fn install(&self, state: &mut LocalState, mut check: LocalCheck) {
        let now = Instant::now();
        state.generation += 1;
        check.generation = state.generation;
        check.deadline = match check.spec.kind {
            CheckKind::Ttl { ttl } => Some(now + ttl),
            _ => None,
        };
        check.critical_since = (check.check.status == HealthStatus::Critical).then_some(now);
        let id = check.check.check_id.clone();
        if let Some(old) = state.runners.remove(&id) {
            old.abort();
        }
        if check.spec.kind.is_probed() {
            let runner = checks::runner::spawn(id.clone(), check.generation, check.spec.clone(), self.results.clone());
            state.runners.insert(id.clone(), runner);
        }
        state.checks.insert(id, check);
        self.changed.notify_one();
    }

    fn uninstall(state: &mut LocalState, id: &str) {
        state.checks.remove(id);
        if let Some(runner) = state.runners.remove(id) {
            runner.abort();
        }
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

    async fn write(
        &self,
        service: Option<ServiceRegistration>,
        checks: Vec<CheckRegistration>,
    ) -> Result<(), StoreError> {
        let registration = self.registration(service, checks)?;
        self.store.write(Command::Register(registration)).await.map(|_| ())
    }

    /// Writes `definition` for a service (`Some`) or check in the data dir, or removes it
    /// (`None`); nothing without a data dir.
    fn save(&self, service: bool, id: &str, definition: Option<&Value>) -> std::io::Result<()> {
        let Some(files) = &self.files else { return Ok(()) };
        match (service, definition) {
            (true, Some(value)) => files.save_service(id, value),
            (true, None) => files.remove_service(id),
            (false, Some(value)) => files.save_check(id, value),
            (false, None) => files.remove_check(id),
        }
    }

    /// Puts back what the data dir held before a change that failed.
    fn restore_saved(&self, service: bool, id: &str, previous: Option<&Value>) {
        if let Err(error) = self.save(service, id, previous) {
            tracing::warn!(id, %error, "agent: cannot restore a definition in the data dir");
        }
    }

    /// Registers (or replaces) a service with its checks: on disk first (an API registration,
    /// with a data dir), then in the catalog, then here. Checks of the service not named again
    /// are kept (Consul's default, without `replace-existing-checks`).
    pub(crate) async fn register_service(
        &self,
        service: ServiceRegistration,
        checks: Vec<LocalCheck>,
        source: Source,
        definition: Option<&Value>,
    ) -> Result<(), LocalError> {
        self.allowed(&checks, source)?;
        let mut state = self.state.lock().await;
        let previous = state.saved_services.get(&service.id).cloned();
        let keep = source == Source::Api && self.files.is_some();
        if keep {
            self.save(true, &service.id, definition)?;
        }
        let written = self.write(Some(service.clone()), checks.iter().map(|c| c.check.clone()).collect()).await;
        if let Err(error) = written {
            if keep {
                self.restore_saved(true, &service.id, previous.as_ref());
            }
            return Err(error.into());
        }
        if let (true, Some(definition)) = (keep, definition) {
            state.saved_services.insert(service.id.clone(), definition.clone());
        }
        self.install_service(&mut state, service, checks);
        Ok(())
    }

    /// Removes a service and its checks; `false` when this agent has no such service.
    pub(crate) async fn deregister_service(&self, id: &str) -> Result<bool, LocalError> {
        let mut state = self.state.lock().await;
        if !state.services.contains_key(id) {
            return Ok(false);
        }
        let bound: Vec<String> =
            state.checks.values().filter(|c| c.check.service_id == id).map(|c| c.check.check_id.clone()).collect();
        let previous = state.saved_services.get(id).cloned();
        if previous.is_some() {
            self.save(true, id, None)?;
        }
        let command = Command::DeregisterService { node: self.node.clone(), service_id: id.to_owned() };
        if let Err(error) = self.store.write(command).await {
            if previous.is_some() {
                self.restore_saved(true, id, previous.as_ref());
            }
            return Err(error.into());
        }
        state.services.remove(id);
        state.saved_services.remove(id);
        for check in bound {
            if state.saved_checks.remove(&check).is_some() {
                if let Err(error) = self.save(false, &check, None) {
                    tracing::warn!(%check, %error, "agent: cannot remove a check's definition from the data dir");
                }
            }
            Self::uninstall(&mut state, &check);
        }
        Ok(true)
    }

    /// Whether this agent has the service `id`.
    pub(crate) async fn has_service(&self, id: &str) -> bool {
        self.state.lock().await.services.contains_key(id)
    }

    /// Registers (or replaces) a check; its service, if any, must be this agent's.
    pub(crate) async fn register_check(
        &self,
        check: LocalCheck,
        source: Source,
        definition: Option<&Value>,
    ) -> Result<(), LocalError> {
        self.allowed(std::slice::from_ref(&check), source)?;
        let mut state = self.state.lock().await;
        let id = check.check.check_id.clone();
        let previous = state.saved_checks.get(&id).cloned();
        let keep = source == Source::Api && self.files.is_some();
        if keep {
            self.save(false, &id, definition)?;
        }
        if let Err(error) = self.write(None, vec![check.check.clone()]).await {
            if keep {
                self.restore_saved(false, &id, previous.as_ref());
            }
            return Err(error.into());
        }
        if let (true, Some(definition)) = (keep, definition) {
            state.saved_checks.insert(id, definition.clone());
        }
        self.install(&mut state, check);
        Ok(())
    }

    /// Sets a TTL check's status and output and restarts its TTL; `false` when this agent has
    /// no such check.
    pub(crate) async fn update_check(&self, id: &str, status: HealthStatus, output: &str) -> Result<bool, LocalError> {
        let mut state = self.state.lock().await;
        let Some(local) = state.checks.get(id) else { return Ok(false) };
        let CheckKind::Ttl { ttl } = local.spec.kind else { return Err(LocalError::NotTtl(id.to_owned())) };
        // As Consul's agent: a new status is written at once (and the update fails when the
        // write does); a new output alone waits for CHECK_UPDATE_INTERVAL; the same status and
        // output only restart the TTL.
        let mut updated = local.clone();
        let now = Instant::now();
        if updated.take_result(status, output, now) {
            self.write(None, vec![updated.check.clone()]).await?;
        }
        updated.deadline = Some(now + ttl);
        if let Some(local) = state.checks.get_mut(id) {
            *local = updated;
        }
        self.changed.notify_one();
        Ok(true)
    }

    /// Removes a check; `false` when this agent has no such check.
    pub(crate) async fn deregister_check(&self, id: &str) -> Result<bool, LocalError> {
        let mut state = self.state.lock().await;
        if !state.checks.contains_key(id) {
            return Ok(false);
        }
        let previous = state.saved_checks.get(id).cloned();
        if previous.is_some() {
            self.save(false, id, None)?;
        }
        let command = Command::DeregisterCheck { node: self.node.clone(), check_id: id.to_owned() };
        if let Err(error) = self.store.write(command).await {
            if previous.is_some() {
                self.restore_saved(false, id, previous.as_ref());
            }
            return Err(error.into());
        }
        state.saved_checks.remove(id);
        Self::uninstall(&mut state, id);
        Ok(true)
    }

    /// Puts a service in maintenance (a critical `_service_maintenance:<id>` check, with
    /// `reason` as its notes) or takes it out; `false` when this agent has no such service.
    /// Enabling twice keeps the first reason, as Consul does.
    pub(crate) async fn service_maintenance(&self, id: &str, enable: bool, reason: &str) -> Result<bool, LocalError> {
        if !self.has_service(id).await {
            return Ok(false);
        }
        let check_id = format!("{SERVICE_MAINTENANCE_PREFIX}{id}");
        self.maintenance(check_id, id, "Service Maintenance Mode", "service", enable, reason).await?;
        Ok(true)
    }

    /// Puts this node in maintenance (a critical `_node_maintenance` check) or takes it out.
    pub(crate) async fn node_maintenance(&self, enable: bool, reason: &str) -> Result<(), LocalError> {
        self.maintenance(NODE_MAINTENANCE.to_owned(), "", "Node Maintenance Mode", "node", enable, reason).await
    }

    async fn maintenance(
        &self,
        check_id: String,
        service_id: &str,
        name: &str,
        what: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), LocalError> {
        let exists = self.state.lock().await.checks.contains_key(&check_id);
        match (enable, exists) {
            (true, false) => {
                let notes = if reason.is_empty() {
                    format!(
                        "Maintenance mode is enabled for this {what}, but no reason was provided. This is a default message."
                    )
                } else {
                    reason.to_owned()
                };
                let check = CheckRegistration {
                    check_id,
                    name: name.to_owned(),
                    status: HealthStatus::Critical,
                    notes,
                    service_id: service_id.to_owned(),
                    ..CheckRegistration::default()
                };
                let check = LocalCheck::new(check, CheckSpec::passive(CheckKind::Maintenance));
                self.register_check(check, Source::Local, None).await
            }
            (false, true) => self.deregister_check(&check_id).await.map(|_| ()),
            _ => Ok(()),
        }
    }

    /// This agent's services, by ID.
    pub(crate) async fn services(&self) -> BTreeMap<String, ServiceRegistration> {
        self.state.lock().await.services.clone()
    }

    /// This agent's checks, by ID.
    pub(crate) async fn checks(&self) -> BTreeMap<String, LocalCheck> {
        self.state.lock().await.checks.clone()
    }

    /// Applies the check runners' results, turns TTL checks critical when their TTL runs out,
    /// removes services critical for too long, and syncs the catalog (at once, then every
    /// [`SYNC_INTERVAL`]), until the agent stops.
    pub(crate) async fn run(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        let taken = self.results_rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let Some(mut results) = taken else { return };
        let mut next_sync = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_sync || self.output_due().await.is_some_and(|due| due <= now) {
                next_sync = now + if self.sync().await { SYNC_INTERVAL } else { SYNC_RETRY };
            }
            self.expire().await;
            self.reap().await;
            let wake = {
                let state = self.state.lock().await;
                let deadlines = state.checks.values().filter_map(|c| c.deadline);
                let reaps = state
                    .checks
                    .values()
                    .filter(|c| !c.check.service_id.is_empty())
                    .filter_map(|c| Some(c.critical_since? + c.spec.deregister_critical_after?))
                    // Due already: reap() just failed to write; try again a little later.
                    .map(|due| if due <= now { now + SYNC_RETRY } else { due });
                // Due already: the sync just failed to write it; the next one tries again.
                let outputs = state.checks.values().filter_map(|c| c.output_due).filter(|&due| due > now);
                deadlines.chain(reaps).chain(outputs).fold(next_sync, Instant::min)
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = self.changed.notified() => {}
                Some(result) = results.recv() => self.apply(result).await,
                changed = stopping.changed() => if changed.is_err() { break },
            }
            if *stopping.borrow() {
                break;
            }
        }
        let mut state = self.state.lock().await;
        for (_, runner) in state.runners.drain() {
            runner.abort();
        }
    }

    /// A runner's result: kept here; written to the catalog at once when the status changed
    /// (an output-only change waits for [`CHECK_UPDATE_INTERVAL`], then the next sync).
    async fn apply(&self, result: CheckResult) {
        let mut state = self.state.lock().await;
        let Some(local) = state.checks.get_mut(&result.check_id) else { return };
        if local.generation != result.generation {
            return;
        }
        if !local.take_result(result.status, &result.output, Instant::now()) {
            return;
        }
        let check = local.check.clone();
        tracing::info!(check = %check.check_id, status = check.status.as_str(), "agent: check status changed");
        if let Err(error) = self.write(None, vec![check]).await {
            // The next sync writes it again.
            tracing::warn!(check = %result.check_id, %error, "agent: cannot write a check's status");
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
            local.critical_since = critical_since(local.critical_since, HealthStatus::Critical, now);
            local.check.status = HealthStatus::Critical;
            local.check.output = if local.check.output.is_empty() || local.check.output.starts_with(TTL_EXPIRED) {
                TTL_EXPIRED.to_owned()
            } else {
                format!("{TTL_EXPIRED} (last output before timeout follows): {}", local.check.output)
            };
            let check = local.check.clone();
            match self.write(None, vec![check]).await {
                Ok(()) => tracing::info!(check = %id, "agent: check TTL expired; critical"),
                // The next sync writes it again.
                Err(error) => tracing::warn!(check = %id, %error, "agent: cannot write an expired TTL check"),
            }
        }
    }

    /// Removes the services whose check has been critical for its `DeregisterCriticalServiceAfter`.
    async fn reap(&self) {
        let now = Instant::now();
        let due: Vec<(String, String)> = {
            let state = self.state.lock().await;
            state
                .checks
                .values()
                .filter(|c| !c.check.service_id.is_empty())
                .filter(|c| checks::deregistration_due(c.critical_since, c.spec.deregister_critical_after, now))
                .map(|c| (c.check.check_id.clone(), c.check.service_id.clone()))
                .collect()
        };
        for (check, service) in due {
            match self.deregister_service(&service).await {
                Ok(_) => tracing::info!(%check, %service, "agent: check critical for too long; service deregistered"),
                Err(error) => {
                    tracing::warn!(%check, %service, %error, "agent: cannot deregister a service critical for too long")
                }
            }
        }
    }

    /// Anti-entropy, one way: each local service or check that is missing from the catalog
    /// or differs there is written again. Catalog entries this agent does not own are left
    /// alone. Whether every write succeeded.
    async fn sync(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock().await;
        let mut stale_services = Vec::new();
        let mut stale_checks = Vec::new();
        {
            let registry = self.store.read();
            if registry.node(&self.node).is_none() {
                return state.services.is_empty() && state.checks.is_empty();
            }
            let registered: HashMap<&str, _> = registry.node_services(&self.node).map(|s| (s.id.as_str(), s)).collect();
            for (id, service) in &state.services {
                let current = registered.get(id.as_str());
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
                // An output waiting for its CHECK_UPDATE_INTERVAL is not compared yet.
                let output_waits = local.output_due.is_some_and(|due| due > now);
                let same = registry.check(&self.node, id).is_some_and(|c| {
                    c.status == local.check.status
                        && (output_waits || c.output == local.check.output)
                        && c.service_id == local.check.service_id
                        && c.name == local.check.name
                        && c.notes == local.check.notes
                });
                if !same {
                    stale_checks.push(local.check.clone());
                }
            }
        }
        let mut ok = true;
        for service in stale_services {
            let checks: Vec<CheckRegistration> =
                state.checks.values().filter(|c| c.check.service_id == service.id).map(|c| c.check.clone()).collect();
            stale_checks.retain(|c| c.service_id != service.id);
            ok &= self.write_sync(Some(service), checks).await;
        }
        if !stale_checks.is_empty() {
            ok &= self.write_sync(None, stale_checks).await;
        }
        if ok {
            // Every check compared with its output is now in the catalog as it is here.
            for local in state.checks.values_mut() {
                if local.output_due.is_some_and(|due| due <= now) {
                    local.output_due = None;
                }
            }
        }
        ok
    }

    /// The earliest time an output-only change is due to be written.
    async fn output_due(&self) -> Option<Instant> {
        self.state.lock().await.checks.values().filter_map(|c| c.output_due).min()
    }

    async fn write_sync(&self, service: Option<ServiceRegistration>, checks: Vec<CheckRegistration>) -> bool {
        match self.write(service, checks).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "agent: cannot sync local services and checks to the catalog");
                false
            }
        }
    }
}

/// A check read back from the data dir: a TTL check starts critical (nobody has updated it
/// since the restart).
fn restored(mut check: LocalCheck) -> LocalCheck {
    if matches!(check.spec.kind, CheckKind::Ttl { .. }) {
        check.check.status = HealthStatus::Critical;
    }
    check
}

/// Since when a check is critical once it has `status` at `now`.
fn critical_since(since: Option<Instant>, status: HealthStatus, now: Instant) -> Option<Instant> {
    match status {
        HealthStatus::Critical => Some(since.unwrap_or(now)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_since_starts_once_and_ends_with_any_other_status() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(critical_since(None, HealthStatus::Critical, t0), Some(t0));
        assert_eq!(critical_since(Some(t0), HealthStatus::Critical, t1), Some(t0), "kept from the first");
        assert_eq!(critical_since(Some(t0), HealthStatus::Warning, t1), None);
        assert_eq!(critical_since(Some(t0), HealthStatus::Passing, t1), None);
    }

    #[test]
    fn a_result_is_written_at_once_only_when_its_status_changes() {
        let t0 = Instant::now();
        let spec = CheckSpec::passive(CheckKind::Ttl { ttl: Duration::from_secs(30) });
        let mut check = LocalCheck::new(CheckRegistration::default(), spec);
        check.check.status = HealthStatus::Passing;
        check.check.output = "ok".into();
        assert!(!check.take_result(HealthStatus::Passing, "ok", t0), "nothing new");
        assert_eq!(check.output_due, None);
        assert!(!check.take_result(HealthStatus::Passing, "ok, 3 ms", t0), "a new output alone");
        assert_eq!(check.output_due, Some(t0 + CHECK_UPDATE_INTERVAL));
        let t1 = t0 + Duration::from_secs(10);
        assert!(!check.take_result(HealthStatus::Passing, "ok, 4 ms", t1));
        assert_eq!(check.output_due, Some(t0 + CHECK_UPDATE_INTERVAL), "due from the first change not written");
        assert!(check.take_result(HealthStatus::Critical, "down", t1), "a new status");
        assert_eq!((check.output_due, check.critical_since), (None, Some(t1)));
        assert_eq!(check.check.output, "down");
    }

    #[test]
    fn script_checks_follow_consuls_two_flags() {
        let mut settings = LocalSettings::default();
        assert!(settings.script_refusal(Source::Local).unwrap().contains("'enable_local_script_checks'"));
        assert!(settings.script_refusal(Source::Api).unwrap().contains("from remote calls"));
        settings.enable_local_script_checks = true;
        assert_eq!(settings.script_refusal(Source::Local), None);
        assert!(settings.script_refusal(Source::Api).unwrap().contains("from remote calls"));
        settings.enable_script_checks = true;
        assert_eq!(settings.script_refusal(Source::Api), None);
    }
}
