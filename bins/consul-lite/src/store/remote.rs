//! The store of a client agent: no Raft state, a replica of the registry fed by one server,
//! writes sent to a server.
//!
//! ```text
//!  gossip members (role=consul, dc, port, id) ──► RemoteStore::set_servers
//!  follow task: AgentClient::subscribe(one live server) ──► FeedItem::Snapshot ─► Replica::reset
//!                                                     ──► FeedItem::Entry… ─► Replica::apply
//!                                     Changes ─► WatchHub::fire (blocking queries wait HERE)
//!     lost (closed, no frame for SILENCE, gone from gossip's live servers)
//!                                      ─► another server, from a fresh snapshot
//!  write(cmd) ─► AgentRequest::Write to a server (it forwards to the leader, as a follower
//!                does) ─► Applied { index } ─► wait until the replica holds index
//!  consistent() ─► AgentRequest::Barrier (the server's ?consistent) ─► wait for its index
//! ```
//!
//! - **Reads** ([`Store::read`], DNS, default and `?stale` HTTP reads) are of the replica: it
//!   lags the server it follows by the time an entry takes to stream, and keeps answering
//!   while the servers elect a leader or while it finds another server (stale then;
//!   `X-Consul-LastContact` says by how much: the server's own last contact with the leader,
//!   as it last sent it, plus, while that server is out of contact or not followed, the time
//!   since it was last heard from).
//! - **`?consistent`** asks the server for a read barrier (the leader confirms with a quorum,
//!   the server applies up to its commit index) and waits until the replica holds what the
//!   server held then: linearizable, as on a server.
//! - **Writes** resolve once the replica holds them (read your write on this agent). A
//!   server that cannot be reached never got the write, so the next one is tried; a server
//!   that took it and did not answer may have applied it: [`StoreError::Failed`] says so.
//! - **Blocking queries** wait here, woken by the replica's changes: servers carry one
//!   subscription per client agent, whatever the number of watchers.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use consensus::rpc::agents::AgentClient;
use consensus::RpcError;
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use serde::{Deserialize, Serialize};
use service_registry::{Applied, Changes, Command, Registry, Session, WatchTarget};
use tokio::sync::watch;

use super::feed::{self, FeedItem, Replica, ServerView};
use super::replicated::Refusal;
use super::{BoxFuture, RegistryRead, Store, StoreError, WatchHub};
use crate::server::subscribe::CONTACT_STALE;
use crate::server::ServerInfo;

/// The feed layout a client agent asks for (the subscription request).
pub(crate) const FEED_FORMAT: u8 = 1;

/// A subscription that sends nothing for this long (a server sends its view at least every
/// [`KEEPALIVE`](crate::server::subscribe::KEEPALIVE)) is lost. A server that gossip no longer
/// lists alive is left at once; this catches a subscription stuck while its server still
/// answers gossip.
pub(crate) const SILENCE: Duration = Duration::from_secs(30);

/// How long a write waits for a server that takes it (none known, none reachable) before
/// failing with [`StoreError::NoLeader`]; a server then holds it up to its own
/// `rpc_hold_timeout` (7 s) while it has no leader.
const FIND_SERVER: Duration = Duration::from_secs(7);

/// Bound on one call to a server: its hold timeout plus forwarding to the leader.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a write (or a barrier) the servers applied waits for the replica to hold it.
const REPLICA_WAIT: Duration = Duration::from_secs(10);

/// Pause between rounds over the servers, and between subscriptions.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What a client agent asks a server (the request of a `Request::Client` frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AgentRequest {
    /// Write a registry command ([`Store::write`] on the server). Boxed: commands are large;
    /// postcard encodes a box as its content.
    Write(Box<Command>),
    /// Renew a session ([`Store::renew_session`] on the server).
    Renew {
        /// The session ID.
        id: String,
    },
    /// A read barrier ([`Store::consistent`] on the server); answers the index the client's
    /// replica must reach.
    Barrier,
}

/// A server's answer to an [`AgentRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AgentReply {
    /// The answer to [`AgentRequest::Write`].
    Written(Result<Applied, WireError>),
    /// The answer to [`AgentRequest::Renew`].
    Renewed(Result<Option<Session>, WireError>),
    /// The answer to [`AgentRequest::Barrier`]: the index to wait for.
    Barrier(Result<u64, WireError>),
    /// The request did not decode.
    Unreadable(String),
}

/// [`StoreError`] as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireError {
    /// [`StoreError::NoLeader`].
    NoLeader,
    /// [`StoreError::LockDelay`].
    LockDelay {
        /// The key.
        key: String,
        /// Time left.
        remaining: Duration,
        /// A transaction's operation.
        op_index: Option<usize>,
    },
    /// [`StoreError::Refused`].
    Refused(Refusal),
    /// [`StoreError::Stopped`]: the server is shutting down (nothing written).
    Stopped,
    /// [`StoreError::Failed`].
    Failed(String),
}

impl From<StoreError> for WireError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoLeader => Self::NoLeader,
            StoreError::LockDelay { key, remaining, op_index } => Self::LockDelay { key, remaining, op_index },
            StoreError::Refused(error) => Self::Refused(error.into()),
            StoreError::Stopped => Self::Stopped,
            StoreError::Failed { reason } => Self::Failed(reason),
        }
    }
}

impl WireError {
    fn into_store_error(self) -> StoreError {
        match self {
            Self::NoLeader => StoreError::NoLeader,
            Self::LockDelay { key, remaining, op_index } => StoreError::LockDelay { key, remaining, op_index },
            Self::Refused(refusal) => refusal.into_store_error(),
            Self::Stopped => StoreError::Failed { reason: "the server is shutting down".into() },
            Self::Failed(reason) => StoreError::Failed { reason },
        }
    }
}

/// The store of a client agent. Cheap to clone (one shared inside).
#[derive(Clone)]
pub(crate) struct RemoteStore {
    inner: Arc<Inner>,
}

struct Inner {
    replica: RwLock<Replica>,
    hub: WatchHub,
    /// The replica's index, for waiting until it holds a write.
    applied: watch::Sender<u64>,
    /// The live servers of this datacenter, from gossip.
    servers: watch::Sender<Vec<ServerInfo>>,
    /// The server followed now.
    current: Mutex<Option<ServerInfo>>,
    heard: Mutex<Heard>,
    client: AgentClient,
    started: Instant,
    /// Subscriptions started (the first one included).
    subscriptions: AtomicU64,
}

#[derive(Default)]
struct Heard {
    /// When the followed server last sent its view.
    at: Option<Instant>,
    view: ServerView,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStore").field("following", &self.following()).finish_non_exhaustive()
    }
}

/// The replica as a registry.
struct ReplicaRead<'a>(RwLockReadGuard<'a, Replica>);

impl Deref for ReplicaRead<'_> {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        self.0.registry()
    }
}

impl RemoteStore {
    /// An empty replica, following no server until [`RemoteStore::set_servers`] names some
    /// and [`RemoteStore::follow`] runs. Connections to servers are made from `source` (the
    /// agent's `-bind`, as Consul's RPC source address).
    pub(crate) fn new(source: std::net::IpAddr) -> Self {
        let defaults = consensus::Config::lan(0, "");
        Self {
            inner: Arc::new(Inner {
                replica: RwLock::new(Replica::default()),
                hub: WatchHub::default(),
                applied: watch::Sender::new(0),
                servers: watch::Sender::new(Vec::new()),
                current: Mutex::new(None),
                heard: Mutex::new(Heard::default()),
                client: AgentClient::new(defaults.max_frame_size, Duration::from_secs(1), Some(source)),
                started: Instant::now(),
                subscriptions: AtomicU64::new(0),
            }),
        }
    }

    /// The live servers of this datacenter, as gossip sees them now.
    pub(crate) fn set_servers(&self, servers: Vec<ServerInfo>) {
        self.inner.servers.send_if_modified(|known| {
            let changed = *known != servers;
            *known = servers;
            changed
        });
    }

    /// The name of the server followed now, if any.
    pub(crate) fn following(&self) -> Option<String> {
        lock(&self.inner.current).as_ref().map(|server| server.name.clone())
    }

    /// Subscriptions started so far (a resubscription counts).
    pub(crate) fn subscriptions(&self) -> u64 {
        self.inner.subscriptions.load(Ordering::Relaxed)
    }

    /// The feed's state for `/v1/agent/self` (`Stats.client`).
    pub(crate) fn stats_json(&self) -> serde_json::Value {
        serde_json::json!({
            "following": self.following().unwrap_or_default(),
            "subscriptions": self.subscriptions().to_string(),
            "replica_index": read_lock(&self.inner.replica).index().to_string(),
            "known_servers": self.inner.servers.borrow().len().to_string(),
        })
    }

    /// Follows one live server after another until `stopping` turns true: a snapshot, then
    /// every entry; a lost subscription moves to another server (a random live one, not the
    /// one just lost while there are others).
    pub(crate) async fn follow(self, mut stopping: watch::Receiver<bool>) {
        let inner = &self.inner;
        let mut servers = inner.servers.subscribe();
        let mut lost: Option<String> = None;
        loop {
            if *stopping.borrow() {
                return;
            }
            let Some(server) = pick(&servers.borrow_and_update(), lost.as_deref()) else {
                tokio::select! {
                    _ = servers.changed() => {}
                    () = tokio::time::sleep(RETRY_PAUSE * 5) => {}
                    _ = stopping.wait_for(|stop| *stop) => return,
                }
                continue;
            };
            let outcome = tokio::select! {
                outcome = self.follow_one(&server) => outcome,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            tracing::info!(server = %server.name, reason = %outcome, "client: lost the server's feed; following another");
            write_lock(&inner.replica).lose();
            *lock(&inner.current) = None;
            lost = Some(server.name.clone());
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Follows `server` until the subscription ends, or gossip no longer lists it alive; why
    /// it ended.
    async fn follow_one(&self, server: &ServerInfo) -> String {
        let inner = &self.inner;
        let addr = server.addr.to_string();
        let request = vec![FEED_FORMAT];
        let mut servers = inner.servers.subscribe();
        let mut subscription = match inner.client.subscribe(server.raft_id, &addr, request).await {
            Ok(subscription) => subscription,
            Err(error) => return error.to_string(),
        };
        inner.subscriptions.fetch_add(1, Ordering::Relaxed);
        loop {
            // A frame read is not cancelled halfway (that would lose the stream's framing):
            // gossip's changes are looked at while the same read goes on.
            let next = subscription.next(SILENCE);
            tokio::pin!(next);
            let bytes = loop {
                tokio::select! {
                    next = &mut next => break next,
                    changed = servers.changed(), if servers.has_changed().is_ok() => {
                        let live = changed.is_ok()
                            && servers.borrow_and_update().iter().any(|live| live.name == server.name);
                        if !live {
                            return "gossip no longer lists the server alive".to_owned();
                        }
                    }
                }
            };
            let bytes = match bytes {
                Ok(bytes) => bytes,
                Err(error) => return error.to_string(),
            };
            let item = match feed::decode(&bytes) {
                Ok(item) => item,
                Err(error) => return format!("an item of the feed does not decode: {error}"),
            };
            let changes = match item {
                FeedItem::Heartbeat(view) => {
                    *lock(&inner.heard) = Heard { at: Some(Instant::now()), view };
                    continue;
                }
                FeedItem::Snapshot { index, registry } => {
                    let changes = write_lock(&inner.replica).reset(index, registry);
                    tracing::info!(server = %server.name, index, "client: following the server's feed");
                    *lock(&inner.current) = Some(server.clone());
                    changes
                }
                FeedItem::Entry { index, command } => match write_lock(&inner.replica).apply(index, command) {
                    Ok(changes) => changes,
                    Err(error) => return error.to_string(),
                },
            };
            self.applied(&changes);
        }
    }

    /// After the replica moved: wakes the watches and the writes waiting for it.
    fn applied(&self, changes: &Changes) {
        let index = read_lock(&self.inner.replica).index();
        let _woken = self.inner.hub.fire(changes);
        self.inner.applied.send_replace(index);
    }

    /// Waits until the replica holds the entry at `index`, at most [`REPLICA_WAIT`].
    async fn wait_replica(&self, index: u64) -> bool {
        let mut applied = self.inner.applied.subscribe();
        let reached = applied.wait_for(|applied| *applied >= index);
        tokio::time::timeout(REPLICA_WAIT, reached).await.is_ok_and(|r| r.is_ok())
    }

    /// Sends `request` to a server: the one followed first, then the other live ones. A
    /// server that cannot be reached never got it, so the next is tried, for up to
    /// [`FIND_SERVER`].
    async fn call(&self, request: &AgentRequest, idempotent: bool) -> Result<AgentReply, StoreError> {
        let bytes = postcard::to_allocvec(request)
            .map_err(|error| StoreError::Failed { reason: format!("cannot encode a request: {error}") })?;
        let deadline = Instant::now() + FIND_SERVER;
        loop {
            let mut candidates = self.inner.servers.borrow().clone();
            candidates.shuffle(&mut rand::rng());
            if let Some(current) = lock(&self.inner.current).clone() {
                candidates.retain(|server| server.name != current.name);
                candidates.insert(0, current);
            }
            for server in candidates {
                let addr = server.addr.to_string();
                let answer = self.inner.client.request(server.raft_id, &addr, bytes.clone(), CALL_TIMEOUT, idempotent);
                let error = match answer.await {
                    Ok(answer) => match postcard::from_bytes::<AgentReply>(&answer) {
                        // A server shutting down did nothing: another may take it.
                        Ok(
                            AgentReply::Written(Err(WireError::Stopped))
                            | AgentReply::Renewed(Err(WireError::Stopped))
                            | AgentReply::Barrier(Err(WireError::Stopped)),
                        ) => continue,
                        Ok(AgentReply::Unreadable(message)) => {
                            return Err(StoreError::Failed { reason: format!("server {}: {message}", server.name) })
                        }
                        Ok(reply) => return Ok(reply),
                        Err(error) => {
                            return Err(StoreError::Failed {
                                reason: format!("server {} answered something unreadable: {error}", server.name),
                            })
                        }
                    },
                    Err(error) => error,
                };
                let never_sent = matches!(
                    error,
                    RpcError::Connect { .. } | RpcError::ConnectTimeout { .. } | RpcError::WrongNode { .. }
                );
                if never_sent || idempotent {
                    tracing::debug!(server = %server.name, %error, "client: a server did not take a request; trying another");
                    continue;
                }
                return Err(StoreError::Failed {
                    reason: format!("server {} ({addr}): {error}; the write may have been applied", server.name),
                });
            }
            if Instant::now() >= deadline {
                return Err(StoreError::NoLeader);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    fn unexpected(reply: &AgentReply) -> StoreError {
        StoreError::Failed { reason: format!("a server answered {reply:?}") }
    }
}

/// A live server to follow: a random one, not `lost` while there are others.
fn pick(servers: &[ServerInfo], lost: Option<&str>) -> Option<ServerInfo> {
    let others: Vec<&ServerInfo> = servers.iter().filter(|server| Some(server.name.as_str()) != lost).collect();
    let choices = if others.is_empty() { servers.iter().collect() } else { others };
    choices.choose(&mut rand::rng()).map(|server| (*server).clone())
}

impl Store for RemoteStore {
    fn write(&self, command: Command) -> BoxFuture<'_, Result<Applied, StoreError>> {
        Box::pin(async move {
            match self.call(&AgentRequest::Write(Box::new(command)), false).await? {
                AgentReply::Written(Ok(applied)) => {
                    if !self.wait_replica(applied.index).await {
                        tracing::warn!(
                            index = applied.index,
                            "client: a write was applied but the replica does not hold it yet"
                        );
                    }
                    Ok(applied)
                }
                AgentReply::Written(Err(error)) => Err(error.into_store_error()),
                other => Err(Self::unexpected(&other)),
            }
        })
    }

    fn read(&self) -> RegistryRead<'_> {
        Box::new(ReplicaRead(read_lock(&self.inner.replica)))
    }

    fn wait(&self, target: WatchTarget, above: u64, timeout: Duration) -> BoxFuture<'_, u64> {
        Box::pin(async move {
            let watched = target.clone();
            let index = || read_lock(&self.inner.replica).registry().index(&target);
            self.inner.hub.wait_above(watched, above, timeout, index).await
        })
    }

    fn renew_session(&self, id: &str) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        let request = AgentRequest::Renew { id: id.to_owned() };
        Box::pin(async move {
            match self.call(&request, true).await? {
                AgentReply::Renewed(result) => result.map_err(WireError::into_store_error),
                other => Err(Self::unexpected(&other)),
            }
        })
    }

    fn leader(&self) -> Option<String> {
        // While a subscription is followed its server is heard from (or left after SILENCE),
        // and it sends a new leader, or none, as soon as it knows.
        if lock(&self.inner.current).is_none() {
            return None;
        }
        lock(&self.inner.heard).view.leader.clone()
    }

    fn peers(&self) -> Vec<String> {
        lock(&self.inner.heard).view.peers.clone()
    }

    fn last_contact(&self) -> Duration {
        let following = lock(&self.inner.current).is_some();
        let heard = lock(&self.inner.heard);
        match heard.at {
            // A followed server in contact with its leader sends its view again only when it
            // changes, or when it loses contact: what it last sent still holds.
            Some(_) if following && heard.view.last_contact <= CONTACT_STALE => heard.view.last_contact,
            Some(at) => heard.view.last_contact + at.elapsed(),
            None => self.inner.started.elapsed(),
        }
    }

    fn waiting(&self) -> usize {
        self.inner.hub.waiting()
    }

    fn remote(&self) -> Option<&RemoteStore> {
        Some(self)
    }

    fn consistent(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            match self.call(&AgentRequest::Barrier, true).await? {
                AgentReply::Barrier(Ok(index)) => {
                    if self.wait_replica(index).await {
                        Ok(())
                    } else {
                        Err(StoreError::Failed {
                            reason: format!("this agent's replica did not reach index {index} in time"),
                        })
                    }
                }
                AgentReply::Barrier(Err(error)) => Err(error.into_store_error()),
                other => Err(Self::unexpected(&other)),
            }
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_lock(lock: &RwLock<Replica>) -> RwLockReadGuard<'_, Replica> {
    // Replica::apply and reset leave a whole registry behind even if they panic midway
    // (Registry::apply rolls back): a poisoned lock still guards a usable replica.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock(lock: &RwLock<Replica>) -> std::sync::RwLockWriteGuard<'_, Replica> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use gossip_core::State;
    use service_registry::KvOp;

    use super::*;
    use crate::server::subscribe::AgentService;
    use crate::store::RaftStore;

    fn set(key: &str, value: &str) -> Command {
        Command::Kv(KvOp::Set { key: key.into(), value: value.as_bytes().to_vec(), flags: 0 })
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(20), "{what}: not within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn a_lost_server_is_followed_again_only_when_it_is_the_last_one() {
        let server = |name: &str| ServerInfo {
            name: name.into(),
            node_id: name.into(),
            raft_id: 1,
            addr: "127.0.0.1:8300".parse().unwrap(),
            expect: None,
            state: State::Alive,
        };
        let servers = [server("s1"), server("s2"), server("s3")];
        for _ in 0..50 {
            assert_ne!(pick(&servers, Some("s2")).unwrap().name, "s2");
        }
        assert_eq!(pick(&servers[..1], Some("s1")).unwrap().name, "s1");
        assert!(pick(&[], None).is_none());
    }

    /// One server (Raft on loopback, serving client agents) and a client store following it
    /// over the server port.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_follows_a_server_reads_its_writes_and_its_blocking_queries_wake_at_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let server = RaftStore::start(consensus::Config::local(1, dir.path())).await.unwrap();
        let addr = server.consensus().local_addr();
        server.consensus().initialize([(1, addr)]).await.unwrap();
        wait_until("a leader", || server.leader().is_some()).await;
        assert!(server.consensus().serve_clients(Arc::new(AgentService::new(server.clone()))));
        let before = server.write(set("before", "1")).await.unwrap();

        let client = RemoteStore::new(std::net::Ipv4Addr::LOCALHOST.into());
        let info =
            ServerInfo { name: "s1".into(), node_id: "n1".into(), raft_id: 1, addr, expect: None, state: State::Alive };
        client.set_servers(vec![info]);
        let (stop, stopping) = watch::channel(false);
        let following = tokio::spawn(client.clone().follow(stopping));
        wait_until("the snapshot", || client.read().kv_get("before").is_some()).await;
        assert_eq!(client.following().as_deref(), Some("s1"));
        assert_eq!(client.read().index(&WatchTarget::Key("before".into())), before.index);
        wait_until("a heartbeat naming the leader", || client.leader() == Some(addr.to_string())).await;
        assert_eq!(client.peers(), [addr.to_string()]);

        // A blocking query at the client wakes at the write that changes its key, not before;
        // the write resolves once the client's replica holds it.
        let start = client.read().index(&WatchTarget::Key("a".into()));
        let waiting = client.wait(WatchTarget::Key("a".into()), start, Duration::from_secs(20));
        let write = async {
            let _ = client.write(set("b", "unrelated")).await.unwrap();
            let applied = client.write(set("a", "1")).await.unwrap();
            assert_eq!(client.read().kv_get("a").map(|e| e.value.clone()), Some(b"1".to_vec()), "read your write");
            applied
        };
        let (woke_at, applied) = tokio::join!(waiting, write);
        assert_eq!(woke_at, applied.index);
        assert_eq!(client.waiting(), 0);
        // Written on the server directly: the client gets it through the feed.
        let direct = server.write(set("c", "1")).await.unwrap();
        client.consistent().await.unwrap();
        assert_eq!(client.read().kv_get("c").map(|e| e.modify_index), Some(direct.index));

        // The server's refusals come back as the registry's errors; sessions renew through it.
        let acquire = Command::Kv(KvOp::Acquire { key: "l".into(), value: vec![], flags: 0, session: "nope".into() });
        let refused = client.write(acquire).await.unwrap_err();
        assert!(
            matches!(&refused, StoreError::Refused(service_registry::Error::SessionNotFound { .. })),
            "{refused:?}"
        );
        assert!(client.renew_session("nope").await.unwrap().is_none());

        // The server goes away: the replica keeps answering, stale, and the contact ages.
        server.shutdown().await;
        wait_until("the feed lost", || client.following().is_none()).await;
        assert!(client.read().kv_get("a").is_some());
        let _ = stop.send(true);
        following.await.unwrap();
    }
}
