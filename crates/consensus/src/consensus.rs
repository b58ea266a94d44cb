//! The [`Consensus`] handle: start, bootstrap, membership, writes, linearizable reads, metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, ConfigError};
use crate::rpc::agents::ClientHandler;
use crate::rpc::client::{Network, Peers};
use crate::rpc::message::{ForwardFailure, ForwardReply, Forwarded, Request, Response};
use crate::rpc::{server, RpcError};
use crate::state_machine::StateMachine;
use crate::store::{LogStore, StateStore, StoreError};
use crate::types::{NodeId, Raft};

/// How long `start` waits for openraft to report the state it loaded.
const STARTUP_REPORT: Duration = Duration::from_secs(5);

/// Bound on a forwarded membership change: adding a voter waits for it to catch up.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the server RPC listener and the handle share: the Raft node and the peers' pool.
pub(crate) struct Core {
    pub(crate) raft: Raft,
    pub(crate) config: Config,
    peers: Arc<Peers>,
    last_contact: Mutex<Option<Instant>>,
    /// What answers client agents ([`Consensus::serve_clients`]).
    clients: OnceLock<Arc<dyn ClientHandler>>,
}

impl Core {
    /// The handler of client agents' requests, once the application registered one.
    pub(crate) fn client_handler(&self) -> Option<&dyn ClientHandler> {
        self.clients.get().map(|handler| &**handler)
    }

    pub(crate) fn touch_contact(&self) {
        *self.last_contact.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Does on this server what only a leader can do; `NotLeader` names the leader it knows.
    pub(crate) async fn on_leader(&self, forwarded: Forwarded) -> Result<ForwardReply, ForwardFailure> {
        match forwarded {
            Forwarded::Write(command) => match self.raft.client_write(command).await {
                Ok(written) => Ok(ForwardReply::Written { index: written.log_id.index, response: written.data }),
                Err(e) => Err(write_failure(e)),
            },
            Forwarded::ReadIndex => match self.raft.get_read_log_id().await {
                Ok((read, _applied)) => Ok(ForwardReply::ReadIndex(read.map_or(0, |id| id.index))),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(not_leader(f.leader_id, f.leader_node.as_ref()))
                }
                Err(e) => Err(ForwardFailure::Failed(e.to_string())),
            },
            Forwarded::AddVoter { id, addr } => self.add_voter_here(id, addr).await,
            Forwarded::RemovePeer { id } => self.remove_peer_here(id).await,
        }
    }

    async fn add_voter_here(&self, id: NodeId, addr: String) -> Result<ForwardReply, ForwardFailure> {
        self.check_leader()?;
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let config = membership.membership();
        let is_voter = config.voter_ids().any(|v| v == id);
        let same_addr = config.get_node(&id).is_some_and(|n| n.addr == addr);
        if is_voter && same_addr {
            return Ok(ForwardReply::MembershipChanged { index: membership.log_id().map_or(0, |l| l.index) });
        }
        if is_voter {
            // A voter that comes back under a new address: replace its node entry.
            let changed = self
                .raft
                .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, BasicNode::new(addr))])), true)
                .await
                .map_err(write_failure)?;
            return Ok(ForwardReply::MembershipChanged { index: changed.log_id.index });
        }
        self.raft.add_learner(id, BasicNode::new(addr), true).await.map_err(write_failure)?;
        let changed = self
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(write_failure)?;
        Ok(ForwardReply::MembershipChanged { index: changed.log_id.index })
    }

    async fn remove_peer_here(&self, id: NodeId) -> Result<ForwardReply, ForwardFailure> {
        self.check_leader()?;
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let config = membership.membership();
        let change = if config.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if config.get_node(&id).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Ok(ForwardReply::MembershipChanged { index: membership.log_id().map_or(0, |l| l.index) });
        };
        let changed = self.raft.change_membership(change, false).await.map_err(write_failure)?;
        Ok(ForwardReply::MembershipChanged { index: changed.log_id.index })
    }

    fn check_leader(&self) -> Result<(), ForwardFailure> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader == Some(self.config.node_id) {
            return Ok(());
        }
        let node = metrics.current_leader.and_then(|l| metrics.membership_config.membership().get_node(&l).cloned());
        Err(not_leader(metrics.current_leader, node.as_ref()))
    }
}

fn not_leader(id: Option<NodeId>, node: Option<&BasicNode>) -> ForwardFailure {
    ForwardFailure::NotLeader { leader: id.zip(node.map(|n| n.addr.clone())) }
}

fn write_failure(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ForwardFailure {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f.leader_id, f.leader_node.as_ref()),
        e => ForwardFailure::Failed(e.to_string()),
    }
}

/// A running Raft server: the log and state machine in `data_dir`, the RPC listener, and the
/// openraft node. Cheap to share behind an `Arc`; [`shutdown`](Self::shutdown) stops it.
pub struct Consensus<S: StateMachine> {
    core: Arc<Core>,
    state: StateStore<S>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A server could not start. Nothing is left running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    /// The data directory cannot be used (damaged log, unreadable snapshot, ...).
    #[error("data dir: {0}")]
    Store(#[from] StoreError),
    /// Reading a file of the data directory panicked inside the storage engine (treated as
    /// damage: nothing was started; restore the directory from a backup, or wipe it and let
    /// the server rejoin).
    #[error("{path}: the storage engine failed while opening it (the file is damaged or truncated): {reason}")]
    StorePanicked {
        /// The file (`raft.redb` or `snapshot.bin`).
        path: std::path::PathBuf,
        /// The panic message or task error.
        reason: String,
    },
    /// The server RPC address cannot be bound.
    #[error("server RPC: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// openraft refused to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a write was not (known to be) applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// No leader is known (an election is under way, or no quorum): not applied; retry later.
    #[error("no leader is known: the write was not applied")]
    NoLeader,
    /// The write was forwarded, but that server was no longer the leader: not applied.
    #[error("forwarded to {tried}, which is no longer the leader (leader now: {leader:?}): not applied")]
    LeaderChanged {
        /// The server the write was sent to.
        tried: NodeId,
        /// The leader it named, if any.
        leader: Option<NodeId>,
    },
    /// The leader could not be reached, or did not answer: the write may or may not be applied.
    #[error("forwarding to leader {leader}: {source} (the write may or may not be applied)")]
    Forward {
        /// The leader's id.
        leader: NodeId,
        /// The RPC failure.
        source: RpcError,
    },
    /// Raft refused or failed (shutting down, leadership lost mid-write): outcome unknown
    /// unless the message says otherwise.
    #[error("raft: {reason}")]
    Raft {
        /// openraft's error, as text.
        reason: String,
    },
    /// The command does not encode with postcard: not applied.
    #[error("the command does not encode: {0}")]
    Encode(postcard::Error),
    /// The state machine's answer does not decode: applied, but the answer is lost.
    #[error("entry {index} was applied but its response does not decode: {source}")]
    Response {
        /// The entry's log index.
        index: u64,
        /// postcard's error.
        source: postcard::Error,
    },
}

/// Why a linearizable read barrier failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// No leader is known.
    #[error("no leader is known: cannot confirm the state is current")]
    NoLeader,
    /// The server asked was no longer the leader.
    #[error("asked {tried}, which is no longer the leader (leader now: {leader:?})")]
    LeaderChanged {
        /// The server asked.
        tried: NodeId,
        /// The leader it named.
        leader: Option<NodeId>,
    },
    /// The leader could not be reached.
    #[error("asking leader {leader} for the read index: {source}")]
    Forward {
        /// The leader's id.
        leader: NodeId,
        /// The RPC failure.
        source: RpcError,
    },
    /// The leader could not confirm its leadership with a quorum, or this server is stopping.
    #[error("raft: {reason}")]
    Raft {
        /// openraft's error, as text.
        reason: String,
    },
    /// This server did not apply up to the read index in time.
    #[error("applied index did not reach the read index {read_index} within {after:?}")]
    Lagging {
        /// The index the leader answered.
        read_index: u64,
        /// The bound (`rpc_timeout`).
        after: Duration,
    },
}

/// Why a membership change (bootstrap, add, remove) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// `initialize` on a server that already has a log or a configuration: nothing changed.
    #[error("already initialized: this server has a log or a configuration ({reason})")]
    AlreadyInitialized {
        /// openraft's explanation.
        reason: String,
    },
    /// `initialize` with no members: nothing changed.
    #[error("initialize needs at least one member")]
    NoMembers,
    /// No leader is known: nothing changed.
    #[error("no leader is known: membership unchanged")]
    NoLeader,
    /// Forwarded to a server that was no longer the leader: nothing changed.
    #[error("forwarded to {tried}, which is no longer the leader (leader now: {leader:?})")]
    LeaderChanged {
        /// The server asked.
        tried: NodeId,
        /// The leader it named.
        leader: Option<NodeId>,
    },
    /// The leader could not be reached or did not answer in time: the change may be under way.
    #[error("forwarding to leader {leader}: {source} (the change may or may not be made)")]
    Forward {
        /// The leader's id.
        leader: NodeId,
        /// The RPC failure.
        source: RpcError,
    },
    /// openraft refused (e.g. a change already in progress).
    #[error("raft: {reason}")]
    Raft {
        /// openraft's error, as text.
        reason: String,
    },
    /// The change did not finish in time (a new voter that cannot be reached or does not catch
    /// up): it may still be under way.
    #[error("membership change not done within {after:?} (it may still be under way)")]
    Timeout {
        /// The bound.
        after: Duration,
    },
}

/// A server's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// Leads: takes writes.
    Leader,
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for votes.
    Candidate,
    /// Replicates without a vote.
    Learner,
    /// Stopped.
    Shutdown,
}

/// A server in the Raft configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its Raft id.
    pub id: NodeId,
    /// Its server RPC address, as configured.
    pub addr: String,
    /// Whether it votes (else a learner, catching up before promotion).
    pub voter: bool,
}

/// A snapshot of the server's Raft state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// This server's id.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// The current term.
    pub term: u64,
    /// The leader this server knows, if any.
    pub leader: Option<NodeId>,
    /// Index of the last entry in the log (including entries not yet committed).
    pub last_log_index: Option<u64>,
    /// Index of the last entry applied to the state machine.
    pub applied_index: Option<u64>,
    /// Index the latest snapshot covers.
    pub snapshot_index: Option<u64>,
    /// Entries up to this index were purged from the log.
    pub purged_index: Option<u64>,
    /// Time since the leader was last heard from (a follower), or since a quorum last
    /// acknowledged it (the leader); `None` if never.
    pub last_contact: Option<Duration>,
    /// Snapshots this server built since it started.
    pub snapshots_built: u64,
    /// Snapshots this server installed from a leader since it started.
    pub snapshots_installed: u64,
    /// The servers in the configuration.
    pub peers: Vec<Peer>,
}

/// What a server says of its Raft state when asked over the server RPC
/// ([`Consensus::peer_status`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerStatus {
    /// Index of the last entry in its log (`None`: an empty log, never bootstrapped or added).
    pub last_log_index: Option<u64>,
    /// Its current term.
    pub term: u64,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
}

impl PeerStatus {
    /// Whether the server belongs to a cluster already (a log, a term or a leader): a server
    /// expecting to bootstrap must not start another one with it (Consul's `maybeBootstrap`
    /// checks the same through its peers' latest index).
    pub fn has_state(&self) -> bool {
        self.last_log_index.is_some() || self.term > 0 || self.leader.is_some()
    }
}

/// Runs `open` on a blocking thread; a panic in it becomes [`StartError::StorePanicked`]
/// naming `path`.
async fn open_blocking<T: Send + 'static>(
    path: &std::path::Path,
    open: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StartError> {
    tokio::task::spawn_blocking(open).await.map_err(|e| {
        let reason = match e.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".into()),
            Err(e) => e.to_string(),
        };
        StartError::StorePanicked { path: path.to_owned(), reason }
    })
}

impl<S: StateMachine> Consensus<S> {
    /// Opens the data directory (restoring `machine` from its snapshot and checking the log),
    /// binds the server RPC address and starts Raft. A new server waits to be
    /// [initialized](Self::initialize) or [added](Self::add_voter) by a leader.
    pub async fn start(config: Config, machine: S) -> Result<Self, StartError> {
        config.validate()?;
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io { path: dir.clone(), source })?;
        // Each file is opened in its own blocking task, so that a panic inside the storage
        // engine (redb asserts on some truncated files) is reported with the file's name.
        let log_path = dir.join("raft.redb");
        let (log, summary) = open_blocking(&log_path, {
            let path = log_path.clone();
            move || LogStore::open(&path)
        })
        .await??;
        let state = open_blocking(&dir.join("snapshot.bin"), {
            let dir = dir.clone();
            move || StateStore::open(machine, &dir)
        })
        .await??;
        tracing::info!(
            dir = %dir.display(),
            entries = summary.entries,
            last_index = ?summary.last_index,
            "raft log opened"
        );
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .map_err(|source| StartError::Bind { addr: config.bind_addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind { addr: config.bind_addr, source })?;
        let raft_config = config.to_openraft().validate().map_err(|e| StartError::Raft(e.to_string()))?;
        // Other servers see calls come from this server's address (Consul's RPC source address).
        let source = Some(config.bind_addr.ip());
        let peers = Arc::new(Peers::new(config.node_id, config.max_frame_size, config.connect_timeout, source));
        let network = Network { peers: Arc::clone(&peers) };
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, state.clone())
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        // openraft loads the log and state in its own task: wait for its first report, so that
        // a failure there is a start error and metrics() is meaningful once start returns.
        let mut reports = raft.metrics();
        let _ = tokio::time::timeout(STARTUP_REPORT, reports.changed()).await;
        if let Err(fatal) = reports.borrow().running_state.clone() {
            let _ = raft.shutdown().await;
            return Err(StartError::Raft(fatal.to_string()));
        }
        let core = Arc::new(Core { raft, config, peers, last_contact: Mutex::new(None), clients: OnceLock::new() });
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(server::serve(listener, Arc::clone(&core), stopped));
        Ok(Self { core, state, local_addr, stop, server: Mutex::new(Some(server)) })
    }

    /// Answers client agents' requests and subscriptions on the server port with `handler`
    /// (see [`rpc::agents`](crate::rpc::agents)); until then they are refused. Only the first
    /// handler counts: `false` if one was registered before.
    pub fn serve_clients(&self, handler: Arc<dyn ClientHandler>) -> bool {
        self.core.clients.set(handler).is_ok()
    }

    /// This server's Raft id.
    pub fn id(&self) -> NodeId {
        self.core.config.node_id
    }

    /// The address the server RPC listener is bound to (the port the OS picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Bootstraps a new cluster with these voters (this server among them), once: every
    /// server given must be started. Fails with `AlreadyInitialized` on a server that already
    /// has a log, so calling it again after a restart is harmless.
    pub async fn initialize(
        &self,
        members: impl IntoIterator<Item = (NodeId, SocketAddr)>,
    ) -> Result<(), MembershipError> {
        let members: BTreeMap<NodeId, BasicNode> =
            members.into_iter().map(|(id, addr)| (id, BasicNode::new(addr))).collect();
        if members.is_empty() {
            return Err(MembershipError::NoMembers);
        }
        match self.core.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                Err(MembershipError::AlreadyInitialized { reason: e.to_string() })
            }
            Err(e) => Err(MembershipError::Raft { reason: e.to_string() }),
        }
    }

    /// Adds a voter (first as a learner until it caught up, then promoted), on the leader,
    /// forwarding to it from a follower. Already a voter at that address: nothing to do. A voter
    /// known under another address gets the new one. Bounded by 60 s.
    pub async fn add_voter(&self, id: NodeId, addr: SocketAddr) -> Result<(), MembershipError> {
        self.membership(Forwarded::AddVoter { id, addr: addr.to_string() }).await
    }

    /// Removes a server from the configuration (Consul's `operator raft remove-peer`), on the
    /// leader, forwarding to it from a follower. Not a member: nothing to do.
    pub async fn remove_peer(&self, id: NodeId) -> Result<(), MembershipError> {
        self.membership(Forwarded::RemovePeer { id }).await
    }

    async fn membership(&self, request: Forwarded) -> Result<(), MembershipError> {
        let routed = tokio::time::timeout(MEMBERSHIP_TIMEOUT, self.on_leader(request, MEMBERSHIP_TIMEOUT))
            .await
            .map_err(|_| MembershipError::Timeout { after: MEMBERSHIP_TIMEOUT })?;
        match routed {
            Ok(_) => Ok(()),
            Err(Routed::NoLeader) => Err(MembershipError::NoLeader),
            Err(Routed::LeaderChanged { tried, leader }) => Err(MembershipError::LeaderChanged { tried, leader }),
            Err(Routed::Forward { leader, source }) => Err(MembershipError::Forward { leader, source }),
            Err(Routed::Failed(reason)) => Err(MembershipError::Raft { reason }),
        }
    }

    /// Replicates `command` and applies it on every server; answers its log index and the
    /// state machine's response once it is applied here (on the leader). A follower forwards
    /// the write to the leader over the server RPC, so any server takes writes.
    pub async fn write(&self, command: &S::Command) -> Result<(u64, S::Response), WriteError> {
        let bytes = postcard::to_allocvec(command).map_err(WriteError::Encode)?;
        let reply =
            self.on_leader(Forwarded::Write(bytes), self.core.config.rpc_timeout).await.map_err(|e| match e {
                Routed::NoLeader => WriteError::NoLeader,
                Routed::LeaderChanged { tried, leader } => WriteError::LeaderChanged { tried, leader },
                Routed::Forward { leader, source } => WriteError::Forward { leader, source },
                Routed::Failed(reason) => WriteError::Raft { reason },
            })?;
        match reply {
            ForwardReply::Written { index, response } => postcard::from_bytes(&response)
                .map(|response| (index, response))
                .map_err(|source| WriteError::Response { index, source }),
            _ => Err(WriteError::Raft { reason: "the leader answered a write with something else".into() }),
        }
    }

    /// A linearizable read barrier (Consul's `?consistent`): returns once this server's state
    /// machine holds every write committed before the call, the leader having confirmed with
    /// a quorum that it still leads. Read with [`with_state`](Self::with_state) afterwards.
    /// Answers the read index.
    pub async fn linearizable_barrier(&self) -> Result<u64, ReadError> {
        let timeout = self.core.config.rpc_timeout;
        let reply = self.on_leader(Forwarded::ReadIndex, timeout).await.map_err(|e| match e {
            Routed::NoLeader => ReadError::NoLeader,
            Routed::LeaderChanged { tried, leader } => ReadError::LeaderChanged { tried, leader },
            Routed::Forward { leader, source } => ReadError::Forward { leader, source },
            Routed::Failed(reason) => ReadError::Raft { reason },
        })?;
        let ForwardReply::ReadIndex(read_index) = reply else {
            return Err(ReadError::Raft {
                reason: "the leader answered a read index request with something else".into(),
            });
        };
        self.core
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(read_index), "linearizable barrier")
            .await
            .map_err(|_| ReadError::Lagging { read_index, after: timeout })?;
        Ok(read_index)
    }

    /// Runs `read` on the state machine as applied on this server (possibly stale on a
    /// follower; call [`linearizable_barrier`](Self::linearizable_barrier) first for a
    /// linearizable read). Holds a read lock: keep `read` short.
    pub fn with_state<T>(&self, read: impl FnOnce(&S) -> T) -> T {
        let state = self.state.state.read().unwrap_or_else(|p| p.into_inner());
        read(&state.machine)
    }

    /// The leader this server knows, with its server RPC address.
    pub fn leader(&self) -> Option<(NodeId, SocketAddr)> {
        let metrics = self.core.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let node = metrics.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, node.addr.parse().ok()?))
    }

    /// The server's Raft state now.
    pub fn metrics(&self) -> Metrics {
        let m = self.core.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        let last_contact = if role == Role::Leader {
            m.millis_since_quorum_ack.map(Duration::from_millis)
        } else {
            self.core.last_contact.lock().unwrap_or_else(|p| p.into_inner()).map(|at| at.elapsed())
        };
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let peers = membership
            .nodes()
            .map(|(id, node)| Peer { id: *id, addr: node.addr.clone(), voter: voters.contains(id) })
            .collect();
        let counters = &self.state.counters;
        Metrics {
            id: m.id,
            role,
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            last_contact,
            snapshots_built: counters.built.load(std::sync::atomic::Ordering::Relaxed),
            snapshots_installed: counters.installed.load(std::sync::atomic::Ordering::Relaxed),
            peers,
        }
    }

    /// Asks the server `id` at `addr` for its Raft state over the server RPC (answered by any
    /// server, leader or not, without touching Raft).
    pub async fn peer_status(&self, id: NodeId, addr: SocketAddr) -> Result<PeerStatus, RpcError> {
        let addr = addr.to_string();
        match self.core.peers.call(id, &addr, Request::Status, self.core.config.rpc_timeout, true).await? {
            Response::Status(status) => Ok(status),
            _ => Err(RpcError::Unexpected { addr, wanted: "a status" }),
        }
    }

    /// Takes a snapshot now (and purges the log behind it), whatever the snapshot policy.
    /// Returns once it is requested; watch [`Metrics::snapshot_index`].
    pub async fn trigger_snapshot(&self) -> Result<(), WriteError> {
        self.core.raft.trigger().snapshot().await.map_err(|e| WriteError::Raft { reason: e.to_string() })
    }

    /// Stops Raft and the RPC listener and waits for them; the data directory can then be
    /// opened again. Calling it twice is harmless.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.core.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(server) = server {
            let _ = server.await;
        }
        self.core.peers.clear();
    }

    /// Runs `request` here if this server leads, else on the leader over the server RPC.
    async fn on_leader(&self, request: Forwarded, timeout: Duration) -> Result<ForwardReply, Routed> {
        let leader = match self.core.on_leader(request.clone()).await {
            Ok(reply) => return Ok(reply),
            Err(ForwardFailure::Failed(reason)) => return Err(Routed::Failed(reason)),
            Err(ForwardFailure::NotLeader { leader }) => leader,
        };
        let Some((leader, addr)) = leader.filter(|(id, _)| *id != self.id()) else {
            return Err(Routed::NoLeader);
        };
        let answer = self.core.peers.call(leader, &addr, Request::Forward(request), timeout, false).await;
        match answer {
            Ok(Response::Forward(Ok(reply))) => Ok(reply),
            Ok(Response::Forward(Err(ForwardFailure::NotLeader { leader: now }))) => {
                Err(Routed::LeaderChanged { tried: leader, leader: now.map(|(id, _)| id) })
            }
            Ok(Response::Forward(Err(ForwardFailure::Failed(reason)))) => Err(Routed::Failed(reason)),
            Ok(_) => Err(Routed::Forward {
                leader,
                source: RpcError::Unexpected { addr, wanted: "an answer to a forwarded request" },
            }),
            Err(source) => Err(Routed::Forward { leader, source }),
        }
    }
}

/// Where a leader-only request ended up, before it is turned into the caller's error type.
enum Routed {
    NoLeader,
    LeaderChanged { tried: NodeId, leader: Option<NodeId> },
    Forward { leader: NodeId, source: RpcError },
    Failed(String),
}
