//! The server store: the registry replicated through Raft ([`consensus::Consensus`]).
//!
//! ```text
//!  write(cmd) ─► lock-delay check ─► Consensus::write ─(follower: forwarded)─► leader's log
//!                                                                              │ committed
//!  every server: ReplicatedRegistry::apply ◄────────────────────────────────────┘
//!                  ├─► Registry (read(), wait())      ├─► WatchHub::fire (blocking queries)
//!                  ├─► LockDelays (wall clock)        └─► SessionEvent ─► leader side (TTL timers)
//!  write resolves once the entry is applied on THIS server (a read after it sees it)
//! ```
//!
//! - **Writes** go through [`Consensus::write`] on any server (a follower forwards to the
//!   leader) and resolve once the entry is applied here too. While there is no leader (an
//!   election), a write is retried for up to [`HOLD_TIMEOUT`] (Consul's `rpc_hold_timeout`,
//!   7 s) before failing with [`StoreError::NoLeader`]; a write whose outcome Raft cannot tell
//!   (the leader was lost mid-write) fails with [`StoreError::Failed`], naming it.
//! - **Reads** ([`Store::read`]) are of the registry as applied on this server: on a follower
//!   they may lag the leader by what is committed and not yet applied here.
//!   [`RaftStore::consistent`] is Consul's `?consistent`: a linearizable barrier (the leader
//!   confirms with a quorum, and this server applies up to the leader's commit index).
//! - **Blocking queries** wait in this server's [`WatchHub`](super::WatchHub), fired from inside `apply`
//!   on every server, so a blocking query on a follower wakes when the follower applies the
//!   change.
//! - **Leader side**: lock-delays are recorded on every server as entries apply (by local
//!   wall clock, as Consul's state store does) and checked by the server that takes an
//!   acquire, after catching up with the leader when it is a follower. Session TTL timers
//!   run only while this server leads: started for every session with a TTL when it becomes
//!   leader (at full TTL, as Consul does), followed from the log, stopped when it stops
//!   leading. A renew on the leader restarts the timer in memory; a renew on a follower goes
//!   through the log ([`RaftCommand::RenewSession`]) to whichever server leads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use consensus::{Consensus, Metrics, ReadError, Role, RpcError, WriteError};
use service_registry::{Applied, Command, KvOp, Session, TxnOp, WatchTarget};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::replicated::{RaftCommand, RaftReply, ReplicatedRegistry, SessionEvent, SharedRegistry};
use super::{BoxFuture, RegistryRead, SessionTimers, Store, StoreError};

/// How long a write or a `?consistent` read waits for a leader before failing (Consul's
/// `rpc_hold_timeout`).
pub(crate) const HOLD_TIMEOUT: Duration = Duration::from_secs(7);

/// How long a write that the leader applied waits for this server to apply it too before
/// answering anyway (the write is done; only read-your-write on this server is at stake).
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(10);

/// Pause between tries while there is no leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How often the leader side checks whether this server leads.
const LEADERSHIP_POLL: Duration = Duration::from_millis(100);

/// The store of a `-server` agent. Cheap to clone (one shared inside).
#[derive(Clone)]
pub(crate) struct RaftStore {
    inner: Arc<Inner>,
}

struct Inner {
    consensus: Consensus<ReplicatedRegistry>,
    shared: Arc<SharedRegistry>,
    timers: SessionTimers,
    started: Instant,
    settle: Duration,
    stopping: AtomicBool,
    stop: watch::Sender<bool>,
    leader_side: std::sync::Mutex<Option<JoinHandle<()>>>,
    counters: Counters,
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
struct Counters {
    /// Writes proposed through this server and applied.
    writes: AtomicU64,
    /// Their total time from proposal to applied here, in microseconds.
    write_micros: AtomicU64,
    /// Times this server saw a new leader.
    leader_changes: AtomicU64,
}

/// What the metrics endpoint shows of Raft on this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RaftStats {
    /// Raft's own view ([`Consensus::metrics`]).
    pub(crate) metrics: Metrics,
    /// Writes proposed through this server and applied (renews through the log included).
    pub(crate) writes: u64,
    /// Their total latency, proposal to applied here.
    pub(crate) write_time: Duration,
    /// Times this server saw a new leader (elections it saw end).
    pub(crate) leader_changes: u64,
}

impl std::fmt::Debug for RaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStore").field("id", &self.inner.consensus.id()).finish_non_exhaustive()
    }
}

impl RaftStore {
    /// Opens the data directory (restoring the registry from its snapshot and log) and
    /// starts Raft. A new server then waits to be bootstrapped or added by a leader.
    pub(crate) async fn start(config: consensus::Config) -> Result<Self, consensus::StartError> {
        let settle = config.election_timeout_max;
        let (machine, shared, events) = ReplicatedRegistry::new();
        let consensus = Consensus::start(config, machine).await?;
        let (stop, stopped) = watch::channel(false);
        let inner = Arc::new(Inner {
            consensus,
            shared,
            timers: SessionTimers::default(),
            started: Instant::now(),
            settle,
            stopping: AtomicBool::new(false),
            stop,
            leader_side: std::sync::Mutex::new(None),
            counters: Counters::default(),
        });
        let task = tokio::spawn(leader_side(Arc::downgrade(&inner), events, stopped));
        *inner.leader_side.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
        Ok(Self { inner })
    }

    /// The Raft server: for bootstrap, membership and `operator raft`.
    pub(crate) fn consensus(&self) -> &Consensus<ReplicatedRegistry> {
        &self.inner.consensus
    }

    /// How long the same servers must be seen before bootstrapping: the longest election
    /// timeout, time enough for an existing leader to add a server that joins it.
    pub(crate) fn settle_time(&self) -> Duration {
        self.inner.settle
    }

    /// A feed subscription for a client agent: the snapshot item and the entries after it.
    pub(crate) fn subscribe_feed(&self) -> (Vec<u8>, tokio::sync::broadcast::Receiver<super::feed::Published>) {
        self.inner.shared.subscribe_feed()
    }

    /// The index of the last entry this server applied and published to client agents.
    pub(crate) fn feed_index(&self) -> u64 {
        self.inner.shared.feed.index()
    }

    /// Raft's state now.
    pub(crate) fn metrics(&self) -> Metrics {
        self.inner.consensus.metrics()
    }

    /// Raft's state and this store's counters, for `/v1/agent/metrics`.
    pub(crate) fn stats(&self) -> RaftStats {
        let counters = &self.inner.counters;
        RaftStats {
            metrics: self.metrics(),
            writes: counters.writes.load(Ordering::Relaxed),
            write_time: Duration::from_micros(counters.write_micros.load(Ordering::Relaxed)),
            leader_changes: counters.leader_changes.load(Ordering::Relaxed),
        }
    }

    /// Replaces the registry with `snapshot` through the log (`PUT /v1/snapshot`): one
    /// entry, applied whole on every server; resolves once it is applied here, with its index.
    pub(crate) async fn restore(&self, snapshot: service_registry::Snapshot) -> Result<u64, StoreError> {
        self.inner.check_stopping()?;
        match self.inner.propose(RaftCommand::Restore(Box::new(snapshot))).await? {
            RaftReply::Restored { index } => Ok(index),
            other => Err(StoreError::Failed { reason: format!("the log answered a restore with {other:?}") }),
        }
    }

    /// Stops the timers, the leader side and Raft; the data directory can then be opened
    /// again. Writes fail with [`StoreError::Stopped`] from now on.
    pub(crate) async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let _ = self.inner.stop.send(true);
        self.inner.timers.stop_all();
        let task = self.inner.leader_side.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.inner.timers.stop_all();
        self.inner.consensus.shutdown().await;
    }
}

impl Inner {
    fn is_leader(&self) -> bool {
        self.consensus.metrics().role == Role::Leader
    }

    fn check_stopping(&self) -> Result<(), StoreError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(StoreError::Stopped);
        }
        Ok(())
    }

    /// Proposes `command` (retrying while no leader is known, up to [`HOLD_TIMEOUT`]) and
    /// waits until it is applied here.
    async fn propose(&self, command: RaftCommand) -> Result<RaftReply, StoreError> {
        let started = Instant::now();
        let deadline = started + HOLD_TIMEOUT;
        loop {
            self.check_stopping()?;
            let error = match self.consensus.write(&command).await {
                Ok((index, reply)) => {
                    if !self.shared.wait_applied(index, LOCAL_APPLY_WAIT).await {
                        tracing::warn!(index, "a write was applied by the leader but not yet here");
                    }
                    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    self.counters.writes.fetch_add(1, Ordering::Relaxed);
                    self.counters.write_micros.fetch_add(micros, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(error) => error,
            };
            let retry = match &error {
                // Not applied: another try is safe.
                WriteError::NoLeader | WriteError::LeaderChanged { .. } => true,
                // The leader never got it.
                WriteError::Forward { source: RpcError::Connect { .. } | RpcError::ConnectTimeout { .. }, .. } => true,
                _ => false,
            };
            self.check_stopping()?;
            if !retry {
                return Err(StoreError::Failed { reason: error.to_string() });
            }
            if Instant::now() >= deadline {
                return Err(StoreError::NoLeader);
            }
            tracing::debug!(%error, "no leader to take a write yet; retrying");
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn consistent(&self) -> Result<u64, StoreError> {
        let deadline = Instant::now() + HOLD_TIMEOUT;
        loop {
            self.check_stopping()?;
            let error = match self.consensus.linearizable_barrier().await {
                Ok(index) => return Ok(index),
                Err(error) => error,
            };
            let retry = matches!(
                error,
                ReadError::NoLeader
                    | ReadError::LeaderChanged { .. }
                    | ReadError::Forward { source: RpcError::Connect { .. } | RpcError::ConnectTimeout { .. }, .. }
            );
            if !retry {
                return Err(StoreError::Failed { reason: error.to_string() });
            }
            if Instant::now() >= deadline {
                return Err(StoreError::NoLeader);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Refuses an acquire inside a lock-delay window. A follower first catches up with the
    /// leader, so that every invalidation committed before the request is in its table.
    async fn check_lock_delay(&self, command: &Command) -> Result<(), StoreError> {
        let acquires = match command {
            Command::Kv(KvOp::Acquire { .. }) => true,
            Command::Txn(ops) => ops.iter().any(|op| matches!(op, TxnOp::Lock { .. })),
            _ => false,
        };
        if !acquires {
            return Ok(());
        }
        if !self.is_leader() {
            let _index = self.consistent().await?;
        }
        self.shared
            .lock_delays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .check(command, SystemTime::now())
    }

    fn start_timer(self: &Arc<Self>, id: &str, ttl: Duration) {
        let store: Weak<Self> = Arc::downgrade(self);
        let session = id.to_owned();
        self.timers.start(id, ttl, async move {
            let Some(store) = store.upgrade() else { return };
            store.timers.forget(&session);
            if !store.is_leader() {
                return;
            }
            tracing::info!(session = %session, "session TTL expired; invalidating it");
            let destroy = RaftCommand::registry(Command::SessionDestroy { id: session.clone() });
            if let Err(error) = store.propose(destroy).await {
                tracing::warn!(session = %session, %error, "cannot invalidate an expired session");
            }
        });
    }

    /// This server became the leader: a timer at full TTL for every session with one.
    fn start_all_timers(self: &Arc<Self>) {
        let sessions: Vec<(String, Duration)> = self
            .shared
            .read()
            .sessions()
            .filter_map(|session| session.ttl.map(|ttl| (session.id.clone(), ttl)))
            .collect();
        tracing::info!(sessions = sessions.len(), "leading: session TTL timers started");
        for (id, ttl) in sessions {
            self.start_timer(&id, ttl);
        }
    }
}

/// Follows leadership and the session facts from the log: TTL timers run only while this
/// server leads.
async fn leader_side(
    inner: Weak<Inner>,
    mut events: mpsc::UnboundedReceiver<SessionEvent>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut leading = false;
    let mut leader = None;
    let mut poll = tokio::time::interval(LEADERSHIP_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            event = events.recv() => {
                let (Some(event), Some(inner)) = (event, inner.upgrade()) else { return };
                if !leading {
                    continue;
                }
                match event {
                    SessionEvent::Started { id, ttl } => inner.start_timer(&id, ttl),
                    SessionEvent::Ended { id } => inner.timers.stop(&id),
                    SessionEvent::Renewed { id } => {
                        if !inner.timers.renew(&id) {
                            let ttl = inner.shared.read().session(&id).and_then(|session| session.ttl);
                            if let Some(ttl) = ttl {
                                inner.start_timer(&id, ttl);
                            }
                        }
                    }
                }
            }
            _ = poll.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                let metrics = inner.consensus.metrics();
                if metrics.leader.is_some() && metrics.leader != leader {
                    inner.counters.leader_changes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(leader = ?metrics.leader, term = metrics.term, "a new leader");
                }
                leader = metrics.leader.or(leader);
                let now_leading = metrics.role == Role::Leader;
                if now_leading == leading {
                    continue;
                }
                leading = now_leading;
                inner.timers.stop_all();
                if leading {
                    inner.start_all_timers();
                } else {
                    tracing::info!("no longer leading: session TTL timers stopped");
                }
            }
        }
    }
}

impl Store for RaftStore {
    fn write(&self, command: Command) -> BoxFuture<'_, Result<Applied, StoreError>> {
        Box::pin(async move {
            self.inner.check_stopping()?;
            self.inner.check_lock_delay(&command).await?;
            match self.inner.propose(RaftCommand::registry(command)).await? {
                RaftReply::Applied(applied) => Ok(applied),
                RaftReply::Refused(refusal) => Err(refusal.into_store_error()),
                other @ (RaftReply::Renewed { .. } | RaftReply::Restored { .. }) => {
                    Err(StoreError::Failed { reason: format!("the log answered a registry command with {other:?}") })
                }
            }
        })
    }

    fn read(&self) -> RegistryRead<'_> {
        Box::new(self.inner.shared.read())
    }

    fn wait(&self, target: WatchTarget, above: u64, timeout: Duration) -> BoxFuture<'_, u64> {
        Box::pin(async move {
            let shared = &self.inner.shared;
            let watched = target.clone();
            shared.hub.wait_above(watched, above, timeout, || shared.read().index(&target)).await
        })
    }

    fn renew_session(&self, id: &str) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        let id = id.to_owned();
        Box::pin(async move {
            let inner = &self.inner;
            inner.check_stopping()?;
            if inner.is_leader() {
                let session = inner.shared.read().session(&id).cloned();
                if let Some(session) = &session {
                    if let (false, Some(ttl)) = (inner.timers.renew(&id), session.ttl) {
                        inner.start_timer(&id, ttl);
                    }
                }
                return Ok(session);
            }
            match inner.propose(RaftCommand::RenewSession { id: id.clone() }).await? {
                RaftReply::Renewed { exists: true } => Ok(inner.shared.read().session(&id).cloned()),
                RaftReply::Renewed { exists: false } => Ok(None),
                other => Err(StoreError::Failed { reason: format!("the log answered a renew with {other:?}") }),
            }
        })
    }

    fn leader(&self) -> Option<String> {
        self.inner.consensus.leader().map(|(_, addr)| addr.to_string())
    }

    fn peers(&self) -> Vec<String> {
        self.metrics().peers.into_iter().filter(|peer| peer.voter).map(|peer| peer.addr).collect()
    }

    fn last_contact(&self) -> Duration {
        let metrics = self.metrics();
        if metrics.role == Role::Leader {
            return Duration::ZERO;
        }
        metrics.last_contact.unwrap_or_else(|| self.inner.started.elapsed())
    }

    fn waiting(&self) -> usize {
        self.inner.shared.hub.waiting()
    }

    fn consistent(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.inner.consistent().await.map(|_index| ()) })
    }

    fn raft(&self) -> Option<&RaftStore> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use service_registry::{CheckRegistration, HealthStatus, Registration, SessionSpec};

    use super::*;

    fn config(id: u64, dir: &std::path::Path) -> consensus::Config {
        consensus::Config::local(id, dir)
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(20), "{what}: not within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn register(node: &str) -> Command {
        Command::Register(Registration {
            node: node.into(),
            address: "127.0.0.1".into(),
            checks: vec![CheckRegistration {
                check_id: "serfHealth".into(),
                status: HealthStatus::Passing,
                ..CheckRegistration::default()
            }],
            ..Registration::default()
        })
    }

    fn set(key: &str, value: &str) -> Command {
        Command::Kv(KvOp::Set { key: key.into(), value: value.as_bytes().to_vec(), flags: 0 })
    }

    /// Three servers in one process on loopback, bootstrapped from the first.
    async fn cluster(root: &std::path::Path) -> Vec<RaftStore> {
        let mut stores = Vec::new();
        for id in 1..=3 {
            stores.push(RaftStore::start(config(id, &root.join(format!("s{id}")))).await.unwrap());
        }
        let members: Vec<(u64, SocketAddr)> =
            stores.iter().map(|s| (s.consensus().id(), s.consensus().local_addr())).collect();
        stores[0].consensus().initialize(members).await.unwrap();
        wait_until("a leader", || stores.iter().all(|s| s.leader().is_some())).await;
        stores
    }

    fn leader_of(stores: &[RaftStore]) -> usize {
        stores.iter().position(|s| s.metrics().role == Role::Leader).expect("a leader")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_through_a_follower_are_read_back_there_and_wake_its_blocking_queries() {
        let root = tempfile::tempdir().unwrap();
        let stores = cluster(root.path()).await;
        let follower = &stores[(leader_of(&stores) + 1) % 3];
        let other = &stores[(leader_of(&stores) + 2) % 3];

        let start = other.read().index(&WatchTarget::Key("a".into()));
        let waiting = other.wait(WatchTarget::Key("a".into()), start, Duration::from_secs(20));
        let write = async {
            let _ = follower.write(set("b", "unrelated")).await.unwrap();
            follower.write(set("a", "1")).await.unwrap()
        };
        let (woke_at, applied) = tokio::join!(waiting, write);
        assert_eq!(woke_at, applied.index, "the other follower's query woke at the write's index");
        assert_eq!(follower.read().kv_get("a").map(|e| e.value.clone()), Some(b"1".to_vec()), "read your write");
        follower.consistent().await.unwrap();
        assert!(follower.metrics().applied_index >= Some(applied.index));
        assert_eq!(stores.iter().filter(|s| s.leader().is_some()).count(), 3);
        assert_eq!(follower.peers().len(), 3);

        // A refusal on the leader comes back to the follower as the registry's error.
        let acquire = Command::Kv(KvOp::Acquire { key: "l".into(), value: vec![], flags: 0, session: "nope".into() });
        let refused = follower.write(acquire).await.unwrap_err();
        assert!(
            matches!(&refused, StoreError::Refused(service_registry::Error::SessionNotFound { .. })),
            "{refused:?}"
        );
        for store in &stores {
            store.shutdown().await;
        }
        assert!(matches!(stores[0].write(set("c", "1")).await, Err(StoreError::Stopped)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ttl_timers_run_on_the_leader_and_a_renew_through_a_follower_reaches_them() {
        let root = tempfile::tempdir().unwrap();
        let stores = cluster(root.path()).await;
        let leader = &stores[leader_of(&stores)];
        let follower = &stores[(leader_of(&stores) + 1) % 3];
        let _ = follower.write(register("n1")).await.unwrap();
        let spec = SessionSpec { ttl: Some(Duration::from_secs(1)), ..SessionSpec::new("s1", "n1") };
        let _ = follower.write(Command::SessionCreate(spec)).await.unwrap();
        wait_until("the leader's timer", || leader.inner.timers.len() == 1).await;
        assert_eq!(follower.inner.timers.len(), 0, "only the leader times sessions");

        // Renewed through the follower every 500 ms for 3 s (well past 2 × TTL): still alive.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(follower.renew_session("s1").await.unwrap().is_some());
        }
        assert!(follower.read().session("s1").is_some());
        // Then left alone: invalidated by the leader after 2 × TTL, on every server.
        wait_until("expiry", || stores.iter().all(|s| s.read().session("s1").is_none())).await;
        assert_eq!(leader.inner.timers.len(), 0);
        assert!(follower.renew_session("s1").await.unwrap().is_none());
        for store in &stores {
            store.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_leader_times_the_sessions_and_an_acquire_on_a_follower_respects_the_lock_delay() {
        let root = tempfile::tempdir().unwrap();
        let stores = cluster(root.path()).await;
        let first = leader_of(&stores);
        let (a, b) = ((first + 1) % 3, (first + 2) % 3);
        let _ = stores[a].write(register("n1")).await.unwrap();
        let spec =
            |id: &str, ttl| SessionSpec { ttl, lock_delay: Duration::from_secs(15), ..SessionSpec::new(id, "n1") };
        let _ = stores[a].write(Command::SessionCreate(spec("s1", None))).await.unwrap();
        let _ = stores[a].write(Command::SessionCreate(spec("s2", None))).await.unwrap();
        let acquire = |session: &str| {
            Command::Kv(KvOp::Acquire { key: "lock".into(), value: vec![], flags: 0, session: session.into() })
        };
        let held = stores[a].write(acquire("s1")).await.unwrap();
        assert!(held.outcome.is_done());
        // s1 destroyed through one follower; s2 tries at once through the other: refused by
        // lock-delay (the follower catches up first), and never proposed.
        let _ = stores[a].write(Command::SessionDestroy { id: "s1".into() }).await.unwrap();
        let refused = stores[b].write(acquire("s2")).await.unwrap_err();
        assert!(matches!(refused, StoreError::LockDelay { .. }), "{refused:?}");
        assert_eq!(stores[b].read().kv_get("lock").and_then(|e| e.session.clone()), None);

        // A TTL session, then the leader stops: the new leader times it (at full TTL) and
        // invalidates it after 2 × TTL without a renew.
        let _ = stores[a].write(Command::SessionCreate(spec("t1", Some(Duration::from_secs(1))))).await.unwrap();
        wait_until("the first leader's timer", || stores[first].inner.timers.len() == 1).await;
        stores[first].shutdown().await;
        wait_until("a new leader", || {
            [a, b].iter().any(|&i| stores[i].metrics().role == Role::Leader && stores[i].inner.timers.len() == 1)
        })
        .await;
        wait_until("expiry through the new leader", || stores[a].read().session("t1").is_none()).await;
        for i in [a, b] {
            stores[i].shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn servers_of_a_cluster_say_they_have_raft_state_and_a_new_one_that_it_has_none() {
        let root = tempfile::tempdir().unwrap();
        let stores = cluster(root.path()).await;
        let fresh = RaftStore::start(config(9, &root.path().join("s9"))).await.unwrap();
        for store in &stores {
            let (id, addr) = (store.consensus().id(), store.consensus().local_addr());
            let status = fresh.consensus().peer_status(id, addr).await.unwrap();
            assert!(status.has_state(), "{status:?}");
            assert!(status.last_log_index.is_some() && status.leader.is_some(), "{status:?}");
        }
        let (id, addr) = (fresh.consensus().id(), fresh.consensus().local_addr());
        let status = stores[0].consensus().peer_status(id, addr).await.unwrap();
        assert!(!status.has_state(), "{status:?}");
        // Addressed to another id: refused, not answered for the wrong server.
        assert!(stores[0].consensus().peer_status(id + 1, addr).await.is_err());
        fresh.shutdown().await;
        for store in &stores {
            store.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restore_replaces_the_registry_on_every_server_at_one_index() {
        let root = tempfile::tempdir().unwrap();
        let stores = cluster(root.path()).await;
        let _ = stores[0].write(set("kept", "1")).await.unwrap();
        stores[1].consistent().await.unwrap();
        let saved = stores[1].read().snapshot();
        let _ = stores[1].write(set("later", "2")).await.unwrap();
        let _ = stores[2].write(set("kept", "changed")).await.unwrap();
        let before = stores[0].read().index(&WatchTarget::Key("kept".into()));
        let index = stores[2].restore(saved).await.unwrap();
        assert!(index > before);
        for store in &stores {
            store.consistent().await.unwrap();
            let registry = store.read();
            assert_eq!(registry.kv_get("kept").map(|e| e.value.clone()), Some(b"1".to_vec()));
            assert!(registry.kv_get("later").is_none());
            assert!(registry.index(&WatchTarget::Key("kept".into())) >= index, "an index went back");
            assert!(registry.index(&WatchTarget::Key("never".into())) >= index, "an index went back");
        }
        // Writes go on after it.
        let applied = stores[1].write(set("after", "3")).await.unwrap();
        assert!(applied.index > index);
        for store in &stores {
            store.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_server_keeps_its_registry() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("s1");
        let store = RaftStore::start(config(1, &dir)).await.unwrap();
        let addr = store.consensus().local_addr();
        store.consensus().initialize([(1, addr)]).await.unwrap();
        let applied = store.write(set("k", "v")).await.unwrap();
        store.shutdown().await;

        let mut again = config(1, &dir);
        again.bind_addr = addr;
        let started = Instant::now();
        let store = loop {
            match RaftStore::start(again.clone()).await {
                Ok(store) => break store,
                // The old listener's port may take a moment to be free again.
                Err(consensus::StartError::Bind { .. }) if started.elapsed() < Duration::from_secs(20) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("restart: {error}"),
            }
        };
        wait_until("the log applied again", || store.read().kv_get("k").map(|e| e.modify_index) == Some(applied.index))
            .await;
        wait_until("leader again", || store.metrics().role == Role::Leader).await;
        let _ = store.write(set("k", "w")).await.unwrap();
        store.shutdown().await;
    }
}
