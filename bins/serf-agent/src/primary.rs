//! The primary election, wired to the agent: the [`leader_failover::MembershipElection`] fed with
//! the member list, its role published in the tags, the hooks run on changes, the view shared with
//! the web service and the RPC API.
//!
//! ```text
//!  member changes / events / deadline ──► ElectionDriver::update(serf.members())
//!        ├── view ──► watch ──► primary web service (-primary-http), GET /v1/primary, metrics
//!        └── RoleChange ──► TagPublisher (role=primary|standby, role_since, role_pref)
//!                       └─► HookRunner (-primary-acquire / -primary-release)
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gossip_core::SerfHandle;
use leader_failover::{
    Election as _, ElectionConfig, HookRunner, Hooks, MembershipElection, PrimaryView, Role, RoleChange,
};
use tokio::sync::watch;

use crate::config::PrimarySettings;
use crate::tags::TagPublisher;

/// How long a node waits after start, seeing no primary, before it claims the role. Long enough
/// for a joining agent to receive the member list (one push-pull) and learn of an existing
/// primary; it delays only the first election of a fresh cluster, never a failover.
pub(crate) const SETTLE: Duration = Duration::from_secs(3);
/// How long a graceful leave waits for the release hook.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// What the election needs at start, decided from the configured tags.
#[derive(Debug, Clone)]
pub(crate) struct ElectionSetup {
    pub(crate) config: ElectionConfig,
    /// The configured value of the role tag, when it makes this node eligible (`primary` or
    /// `standby`); the election then owns the role tag.
    pub(crate) configured_role: Option<String>,
}

impl ElectionSetup {
    pub(crate) fn new(settings: &PrimarySettings, configured_role: Option<&str>) -> Result<Self, String> {
        let config = ElectionConfig {
            role_tag: settings.tag.clone(),
            priority_tag: settings.priority_tag.clone(),
            settle: SETTLE,
            ..ElectionConfig::default()
        }
        .validate()
        .map_err(|error| error.to_string())?;
        let configured_role = configured_role.filter(|role| config.is_eligible_value(role)).map(str::to_owned);
        Ok(Self { config, configured_role })
    }

    /// The tags only the election writes: the role tag (when this node is eligible) and the claim
    /// tags.
    pub(crate) fn reserved_tags(&self) -> Vec<String> {
        let mut reserved = vec![self.config.since_tag(), self.config.preferred_tag()];
        if self.configured_role.is_some() {
            reserved.push(self.config.role_tag.clone());
        }
        reserved
    }
}

/// Counters of the election, for the metrics.
#[derive(Debug, Default)]
pub(crate) struct ElectionStats {
    pub(crate) role_changes: AtomicU64,
    pub(crate) hook_runs: AtomicU64,
    pub(crate) hook_failures: AtomicU64,
}

/// Drives the election from the event loop. Not shared: the event loop owns it.
pub(crate) struct ElectionDriver {
    election: MembershipElection,
    eligible: bool,
    hooks: HookRunner,
    view: watch::Sender<PrimaryView>,
    tags: TagPublisher,
    serf: SerfHandle,
    stats: Arc<ElectionStats>,
}

impl ElectionDriver {
    /// The driver and the initial tags it wants published (before the node starts).
    pub(crate) fn new(
        setup: &ElectionSetup,
        local: &str,
        serf: SerfHandle,
        tags: TagPublisher,
        hooks: &PrimarySettings,
        view: watch::Sender<PrimaryView>,
        stats: Arc<ElectionStats>,
    ) -> Self {
        let preferred = setup.configured_role.as_deref() == Some(leader_failover::PRIMARY_VALUE);
        let election = MembershipElection::new(local, setup.config.clone(), preferred, Instant::now());
        let hooks = HookRunner::spawn(
            Hooks { acquire: hooks.acquire.clone(), release: hooks.release.clone() },
            local,
            serf.advertise_addr(),
        );
        Self { election, eligible: setup.configured_role.is_some(), hooks, view, tags, serf, stats }
    }

    /// The tags an eligible node publishes at start (standby, and the preference flag).
    pub(crate) fn initial_tags(setup: &ElectionSetup, local: &str) -> Vec<(String, String)> {
        match &setup.configured_role {
            Some(role) => {
                let preferred = role == leader_failover::PRIMARY_VALUE;
                MembershipElection::new(local, setup.config.clone(), preferred, Instant::now()).initial_tags(role)
            }
            None => Vec::new(),
        }
    }

    /// When to call [`ElectionDriver::update`] even if nothing changes.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.election.next_deadline()
    }

    /// Feed the current member list; publish and run hooks on a role change.
    pub(crate) async fn update(&mut self) {
        let members = self.serf.members();
        let change = self.election.update(&members, Instant::now(), SystemTime::now());
        self.view.send_if_modified(|view| {
            let new = self.election.view();
            if *view == new {
                return false;
            }
            *view = new;
            true
        });
        if let Some(change) = change {
            self.apply(change).await;
        }
    }

    /// Give the role up for good (graceful leave): publish standby and run the release hook,
    /// waiting for it (bounded) so that the role is released before the node leaves.
    pub(crate) async fn resign(&mut self) {
        let Some(change) = self.election.resign() else { return };
        self.view.send_replace(self.election.view());
        if let Some(done) = self.apply(change).await {
            if tokio::time::timeout(RELEASE_WAIT, done).await.is_err() {
                tracing::warn!(after = ?RELEASE_WAIT, "release hook still running; leaving anyway");
            }
        }
    }

    /// Publish the tags of the new role and queue its hook; the receiver fires when the hook is done.
    async fn apply(&mut self, change: RoleChange) -> Option<tokio::sync::oneshot::Receiver<()>> {
        self.stats.role_changes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            from = %change.from,
            to = %change.to,
            primary = change.primary.as_deref().unwrap_or("none"),
            "primary role changed"
        );
        if self.eligible {
            let tags = self.election.tags_for(change.to);
            let cleared = self.election.cleared_tags(change.to);
            if let Err(error) = self.tags.set_election_tags(tags, cleared).await {
                tracing::error!(%error, "cannot publish the role tags");
            }
        }
        let runs_hook = matches!((change.from, change.to), (Role::Primary, _) | (_, Role::Primary));
        if !runs_hook {
            return None;
        }
        self.stats.hook_runs.fetch_add(1, Ordering::Relaxed);
        let ticket = self.hooks.submit(change);
        let (done, wait) = tokio::sync::oneshot::channel();
        let stats = Arc::clone(&self.stats);
        tokio::spawn(async move {
            let result = ticket.wait().await;
            match &result {
                Ok(Some(outcome)) if !outcome.status.success() => {
                    stats.hook_failures.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    stats.hook_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, "primary hook failed");
                }
                _ => {}
            }
            let _ = done.send(());
        });
        Some(wait)
    }
}
