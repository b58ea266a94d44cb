//! Forming and keeping the Raft cluster from what the gossip pool shows.
//!
//! - **Bootstrap** (`-bootstrap-expect N`): once N servers of this datacenter are alive in
//!   the pool, all expecting N, the one with the lowest node name calls
//!   `Consensus::initialize` with all of them; the others wait to hear from the leader it
//!   elects. Only a server with an empty log and no leader bootstraps, only after the same
//!   set was seen for a settle time (an election timeout), so that a server joining an
//!   existing cluster is normally added by its leader first, and only once every other
//!   server of the set answered over the server RPC that it has no Raft state (no log, term
//!   or leader; Consul's `maybeBootstrap` asks its peers for their latest index the same
//!   way): a server that finds one gives up bootstrapping for good and waits to be added, so
//!   it never starts a second cluster.
//! - **Membership** (on the leader): an alive server of this datacenter that is not a voter
//!   (or is one under an old address) is added as a voter; a voter whose address now
//!   belongs to another node ID (its data dir was wiped) is removed first; a server that
//!   left the pool gracefully is removed. A failed server stays a voter (its data dir may
//!   come back): `operator raft remove-peer` removes it.
//!
//! [`plan_bootstrap`] and [`plan_membership`] decide; [`run`] applies, in one task.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use consensus::{MembershipError, NodeId, Peer, Role};
use gossip_core::{SerfHandle, State};
use tokio::sync::watch;

use super::{servers, ServerInfo};
use crate::store::RaftStore;

/// How often the cluster is checked when the pool does not change.
const RECONCILE_INTERVAL: Duration = Duration::from_millis(500);

/// What bootstrap does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BootstrapPlan {
    /// Fewer than N servers are alive.
    Wait {
        /// Servers alive.
        seen: usize,
    },
    /// A live server expects another number: nothing happens until the operator fixes it.
    Conflict {
        /// The server.
        name: String,
        /// What it expects.
        expect: Option<u32>,
    },
    /// Another server (the lowest name) bootstraps.
    Other {
        /// Its name.
        by: String,
    },
    /// This server bootstraps with these voters.
    Initialize(Vec<(NodeId, SocketAddr)>),
}

/// What `-bootstrap-expect expect` means for server `me` seeing `servers` (all servers of
/// the datacenter in the pool, itself included, in name order).
pub(crate) fn plan_bootstrap(expect: u32, me: &str, servers: &[ServerInfo]) -> BootstrapPlan {
    let live: Vec<&ServerInfo> = servers.iter().filter(|server| server.is_live()).collect();
    // As Consul's maybeBootstrap: a server that expects nothing counts, one that expects
    // another number stops the bootstrap.
    if let Some(other) = live.iter().find(|server| server.expect.is_some_and(|theirs| theirs != expect)) {
        return BootstrapPlan::Conflict { name: other.name.clone(), expect: other.expect };
    }
    if live.len() < expect as usize || !live.iter().any(|server| server.name == me) {
        return BootstrapPlan::Wait { seen: live.len() };
    }
    let lowest = live.iter().map(|server| server.name.as_str()).min().unwrap_or(me);
    if lowest != me {
        return BootstrapPlan::Other { by: lowest.to_owned() };
    }
    BootstrapPlan::Initialize(live.iter().map(|server| (server.raft_id, server.addr)).collect())
}

/// A change the leader makes to the Raft configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MembershipChange {
    /// Add (or promote, or re-address) a voter.
    Add {
        /// Its Raft id.
        id: NodeId,
        /// Its server address.
        addr: SocketAddr,
        /// Its node name.
        name: String,
    },
    /// Remove a server.
    Remove {
        /// Its Raft id.
        id: NodeId,
        /// Why, for the log.
        reason: String,
    },
}

/// The changes leader `me` makes so that the configuration `peers` follows the pool.
pub(crate) fn plan_membership(me: NodeId, peers: &[Peer], servers: &[ServerInfo]) -> Vec<MembershipChange> {
    let mut changes = Vec::new();
    let mut removed: Vec<NodeId> = Vec::new();
    let same_addr = |peer: &Peer, addr: SocketAddr| peer.addr.parse::<SocketAddr>().is_ok_and(|a| a == addr);
    for server in servers.iter().filter(|server| server.raft_id != me) {
        let known = peers.iter().find(|peer| peer.id == server.raft_id);
        if server.state == State::Left {
            if known.is_some() && !removed.contains(&server.raft_id) {
                removed.push(server.raft_id);
                changes.push(MembershipChange::Remove {
                    id: server.raft_id,
                    reason: format!("server {} left the pool", server.name),
                });
            }
            continue;
        }
        // Only a server the pool sees alive is added: not a suspect one (it may be dying), not
        // a failed one (it may come back; remove-peer takes it out).
        if server.state != State::Alive || known.is_some_and(|peer| peer.voter && same_addr(peer, server.addr)) {
            continue;
        }
        for stale in peers.iter().filter(|peer| peer.id != server.raft_id && peer.id != me) {
            if same_addr(stale, server.addr) && !removed.contains(&stale.id) {
                removed.push(stale.id);
                changes.push(MembershipChange::Remove {
                    id: stale.id,
                    reason: format!("its address {} now belongs to server {} (a new node ID)", stale.addr, server.name),
                });
            }
        }
        changes.push(MembershipChange::Add { id: server.raft_id, addr: server.addr, name: server.name.clone() });
    }
    changes
}

/// The settings [`run`] needs.
#[derive(Debug, Clone)]
pub(crate) struct ClusterSettings {
    /// This node's name.
    pub(crate) node: String,
    /// The datacenter.
    pub(crate) datacenter: String,
    /// `-bootstrap-expect`.
    pub(crate) expect: Option<u32>,
    /// How long the same set of servers must be seen before bootstrapping.
    pub(crate) settle: Duration,
}

/// Bootstraps (once) and keeps the configuration in step with the pool, until `stop`.
pub(crate) async fn run(
    serf: SerfHandle,
    store: RaftStore,
    settings: ClusterSettings,
    mut stop: watch::Receiver<bool>,
) {
    let mut changes = serf.member_changes();
    let mut bootstrap = settings.expect.map(|expect| Bootstrap { expect, ready: None, done: false, said: None });
    loop {
        let servers = servers(&serf.members(), &settings.datacenter);
        if let Some(bootstrap) = bootstrap.as_mut().filter(|b| !b.done) {
            bootstrap.step(&store, &settings, &servers).await;
        }
        let metrics = store.metrics();
        if metrics.role == Role::Leader {
            for change in plan_membership(metrics.id, &metrics.peers, &servers) {
                if *stop.borrow() {
                    return;
                }
                apply(&store, change).await;
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RECONCILE_INTERVAL) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

async fn apply(store: &RaftStore, change: MembershipChange) {
    let started = Instant::now();
    match change {
        MembershipChange::Add { id, addr, name } => match store.consensus().add_voter(id, addr).await {
            Ok(()) => tracing::info!(server = %name, id, %addr, took = ?started.elapsed(), "added a server as a voter"),
            Err(error) => tracing::warn!(server = %name, id, %addr, %error, "cannot add a server as a voter"),
        },
        MembershipChange::Remove { id, reason } => match store.consensus().remove_peer(id).await {
            Ok(()) => tracing::info!(id, %reason, "removed a server from the Raft configuration"),
            Err(error) => tracing::warn!(id, %reason, %error, "cannot remove a server from the Raft configuration"),
        },
    }
}

/// Bootstrap's progress.
struct Bootstrap {
    expect: u32,
    /// The voters planned, and since when the same plan holds.
    ready: Option<(Vec<(NodeId, SocketAddr)>, Instant)>,
    done: bool,
    /// The last plan logged, so that each is logged once.
    said: Option<BootstrapPlan>,
}

impl Bootstrap {
    async fn step(&mut self, store: &RaftStore, settings: &ClusterSettings, servers: &[ServerInfo]) {
        let metrics = store.metrics();
        if metrics.last_log_index.is_some() || metrics.leader.is_some() {
            // A log, or a leader that found us: the cluster exists.
            self.done = true;
            return;
        }
        let plan = plan_bootstrap(self.expect, &settings.node, servers);
        if self.said.as_ref() != Some(&plan) {
            match &plan {
                BootstrapPlan::Wait { seen } => {
                    tracing::info!(seen, expect = self.expect, "waiting for servers to bootstrap the cluster");
                }
                BootstrapPlan::Conflict { name, expect } => tracing::error!(
                    server = %name, ?expect, ours = self.expect,
                    "a server has a conflicting bootstrap-expect: all servers must expect the same number; not bootstrapping"
                ),
                BootstrapPlan::Other { by } => tracing::info!(by = %by, "found the expected servers; {by} bootstraps"),
                BootstrapPlan::Initialize(members) => {
                    tracing::info!(?members, "found the expected servers; bootstrapping once the set is stable");
                }
            }
            self.said = Some(plan.clone());
        }
        let BootstrapPlan::Initialize(members) = plan else {
            self.ready = None;
            return;
        };
        let same = matches!(&self.ready, Some((planned, _)) if *planned == members);
        if !same {
            self.ready = Some((members, Instant::now()));
            return;
        }
        if self.ready.as_ref().is_some_and(|(_, since)| since.elapsed() < settings.settle) {
            return;
        }
        // As Consul's maybeBootstrap: ask every other server for its Raft state first, and
        // never bootstrap with one that already belongs to a cluster.
        let me = store.consensus().id();
        for &(id, addr) in members.iter().filter(|(id, _)| *id != me) {
            match store.consensus().peer_status(id, addr).await {
                Ok(status) if status.has_state() => {
                    tracing::warn!(
                        %addr, last_log_index = ?status.last_log_index, term = status.term, leader = ?status.leader,
                        "a server already has Raft state: not bootstrapping (the cluster's leader adds this server)"
                    );
                    self.done = true;
                    return;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::info!(%addr, %error, "cannot ask a server for its Raft state yet; not bootstrapping now");
                    self.ready = None;
                    return;
                }
            }
        }
        match store.consensus().initialize(members.clone()).await {
            Ok(()) => {
                tracing::info!(?members, "bootstrapped the Raft cluster");
                self.done = true;
            }
            Err(MembershipError::AlreadyInitialized { .. }) => self.done = true,
            Err(error) => tracing::warn!(%error, "bootstrap failed; trying again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::server;
    use super::*;

    fn expecting(mut server: ServerInfo, expect: Option<u32>) -> ServerInfo {
        server.expect = expect;
        server
    }

    fn three(state_of_s3: State) -> Vec<ServerInfo> {
        vec![
            expecting(server("s1", [127, 0, 0, 1], 8300, State::Alive), Some(3)),
            expecting(server("s2", [127, 0, 0, 2], 8300, State::Alive), Some(3)),
            expecting(server("s3", [127, 0, 0, 3], 8300, state_of_s3), Some(3)),
        ]
    }

    #[test]
    fn the_lowest_name_bootstraps_once_n_servers_are_alive() {
        let all = three(State::Alive);
        let BootstrapPlan::Initialize(members) = plan_bootstrap(3, "s1", &all) else { panic!("s1 bootstraps") };
        assert_eq!(members, all.iter().map(|s| (s.raft_id, s.addr)).collect::<Vec<_>>());
        assert_eq!(plan_bootstrap(3, "s2", &all), BootstrapPlan::Other { by: "s1".into() });
        assert_eq!(plan_bootstrap(3, "s1", &three(State::Dead)), BootstrapPlan::Wait { seen: 2 });
        assert_eq!(plan_bootstrap(3, "s1", &all[..2]), BootstrapPlan::Wait { seen: 2 });
        let mut conflicting = all.clone();
        conflicting[2].expect = Some(5);
        assert_eq!(
            plan_bootstrap(3, "s1", &conflicting),
            BootstrapPlan::Conflict { name: "s3".into(), expect: Some(5) }
        );
        let one = vec![expecting(server("solo", [127, 0, 0, 1], 8300, State::Alive), Some(1))];
        assert!(matches!(plan_bootstrap(1, "solo", &one), BootstrapPlan::Initialize(m) if m.len() == 1));
    }

    fn peer(server: &ServerInfo, voter: bool) -> Peer {
        Peer { id: server.raft_id, addr: server.addr.to_string(), voter }
    }

    #[test]
    fn the_leader_adds_live_servers_and_removes_those_that_left() {
        let all = three(State::Alive);
        let me = all[0].raft_id;
        let peers: Vec<Peer> = all.iter().map(|s| peer(s, true)).collect();
        assert!(plan_membership(me, &peers, &all).is_empty(), "in step");

        let joining = server("s4", [127, 0, 0, 4], 8300, State::Alive);
        let mut pool = all.clone();
        pool.push(joining.clone());
        assert_eq!(
            plan_membership(me, &peers, &pool),
            [MembershipChange::Add { id: joining.raft_id, addr: joining.addr, name: "s4".into() }]
        );
        // A learner is promoted; a failed server is neither added nor removed.
        let mut with_learner = peers.clone();
        with_learner.push(peer(&joining, false));
        assert_eq!(plan_membership(me, &with_learner, &pool).len(), 1);
        assert!(plan_membership(me, &peers, &three(State::Dead)).is_empty());
        let mut suspect = pool.clone();
        suspect[3].state = State::Suspect;
        assert!(plan_membership(me, &peers, &suspect).is_empty(), "a suspect server is not added");
        // Left: removed.
        let changes = plan_membership(me, &peers, &three(State::Left));
        assert!(matches!(&changes[..], [MembershipChange::Remove { id, .. }] if *id == all[2].raft_id), "{changes:?}");
        // The leader never removes itself.
        let mut me_left = all.clone();
        me_left[0].state = State::Left;
        assert!(plan_membership(me, &peers, &me_left).is_empty());
    }

    #[test]
    fn a_wiped_server_under_a_new_node_id_replaces_its_old_entry() {
        let all = three(State::Alive);
        let me = all[0].raft_id;
        let peers: Vec<Peer> = all.iter().map(|s| peer(s, true)).collect();
        let mut pool = all.clone();
        pool[2].node_id = "new-id".into();
        pool[2].raft_id = super::super::raft_id("new-id");
        let changes = plan_membership(me, &peers, &pool);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(matches!(&changes[0], MembershipChange::Remove { id, .. } if *id == all[2].raft_id));
        assert!(matches!(&changes[1], MembershipChange::Add { id, .. } if *id == pool[2].raft_id));
    }
}
