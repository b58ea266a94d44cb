//! [`Node`] (owns the tasks) and [`NodeHandle`] (talks to them).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gossip_transport::{net, HeaderCheck};
use rand::TryRngCore;
use swim::{LocalNode, Member, Swim, Tags};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::actor::{self, Actor, Command, Counters, JoinOutcome, KeyringOp, Snapshot};
use crate::listener::Acceptor;
use crate::preauth::PreAuthBudget;
use crate::refusals::Refusals;
use crate::{EventStream, JoinError, Key, NodeConfig, NodeError, StartError};

/// Commands waiting for the driver; senders wait when it is full.
const COMMAND_QUEUE: usize = 64;

/// Inbound stream requests waiting for the driver (the semaphore bounds them anyway).
const INBOUND_QUEUE: usize = 64;

/// Extra time a join attempt waits beyond [`NodeConfig::stream_timeout`] for the state machine to
/// report the outcome of each seed.
const JOIN_SLACK: Duration = Duration::from_secs(2);

/// Extra time `leave` waits beyond [`swim::Config::leave_propagate_max`] for the state machine's
/// [`swim::Event::LeaveComplete`].
const LEAVE_SLACK: Duration = Duration::from_secs(1);

/// A running gossip node: the tasks that drive the SWIM state machine over a UDP socket and a TCP
/// listener on one port. See the crate docs for the design.
///
/// All the operations live on [`NodeHandle`], which `Node` dereferences to; clone a handle with
/// [`Node::handle`] to use the node from other tasks. The `Node` itself decides when the tasks
/// end:
///
/// - [`Node::shutdown`] stops them and waits until they are gone (sockets closed). Without a
///   [`NodeHandle::leave`] first, the others see a failure, as with memberlist.
/// - [`Node::kill`] aborts them at once, to simulate a crash in tests.
/// - Dropping the `Node` signals the tasks to stop without waiting for them.
#[derive(Debug)]
#[must_use = "dropping the Node stops it"]
pub struct Node {
    handle: NodeHandle,
    shutdown: watch::Sender<bool>,
    driver: JoinHandle<()>,
    acceptor: JoinHandle<()>,
}

/// A cheap, clonable handle on a running [`Node`]: every operation except stopping it. Once the
/// node has stopped, operations fail with [`NodeError::Stopped`] / [`JoinError::Stopped`] and
/// [`NodeHandle::members`] returns the last snapshot.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    snapshot: Arc<RwLock<Snapshot>>,
    members_changed: watch::Receiver<u64>,
    events: broadcast::WeakSender<swim::Event>,
    counters: Arc<Counters>,
    refusals: Arc<Refusals>,
    budget: Arc<PreAuthBudget>,
    local_addr: SocketAddr,
    settings: Arc<Settings>,
}

/// The parts of the configuration the handle needs.
#[derive(Debug)]
struct Settings {
    stream_timeout: Duration,
    join_attempts: u32,
    join_retry_interval: Duration,
    leave_bound: Duration,
    max_user_payload: usize,
}

/// Counters of a node: the state machine's and the driver's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// What the failure detector did (packets, probes, suspicions, drops by reason, ...).
    pub swim: swim::Stats,
    /// What the driver did with the sockets.
    pub driver: DriverStats,
    /// Lifeguard's local health multiplier: 1 when healthy, up to
    /// `swim.lifeguard.awareness_max_multiplier` when this node misses acks and nacks (memberlist's
    /// health score is this minus one).
    pub health_multiplier: u32,
}

/// Counters of the driver tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverStats {
    /// Accepted streams refused with a refusal frame, by reason (`label_mismatch`, `decrypt`,
    /// `plaintext_refused`, `encrypted_without_keyring`, `unsupported_version`, `too_large`).
    /// Those refused on their header never reach the state machine's `dropped` counters.
    pub refused_streams: std::collections::BTreeMap<&'static str, u64>,
    /// Warnings logged about refused datagrams and streams (at most one per peer address and
    /// reason every 10 s; the others are counted in the next warning).
    pub refusal_warnings: u64,
    /// Bytes of inbound stream frames buffered now and not yet authenticated (a gauge; at most
    /// [`crate::NodeConfig::max_unauthenticated_bytes`]).
    pub unauthenticated_bytes: u64,
    /// The highest [`DriverStats::unauthenticated_bytes`] since the node started.
    pub unauthenticated_bytes_peak: u64,
    /// Datagrams the OS refused to send (logged, never fatal).
    pub udp_send_errors: u64,
    /// Failed UDP receives.
    pub udp_recv_errors: u64,
    /// Outgoing stream (TCP) requests started (push-pull, join, TCP ping).
    pub stream_requests: u64,
    /// Outgoing stream requests that failed or timed out.
    pub stream_request_failures: u64,
    /// TCP connections accepted.
    pub inbound_streams: u64,
    /// Accepted connections that failed (no frame in time, bad frame, write error).
    pub inbound_stream_failures: u64,
    /// Events the layer above (the serf layer) could not take because its queue was full.
    pub tap_dropped: u64,
}

impl Node {
    /// Bind UDP and TCP on [`NodeConfig::bind_addr`], create the state machine and start its
    /// tasks. The node knows only itself until it [`joins`](NodeHandle::join) or is joined.
    ///
    /// The node's generation is the wall-clock time in microseconds since the Unix epoch, so that
    /// a restarted node is a new life to the cluster; its RNG is seeded from the OS.
    pub async fn start(config: NodeConfig) -> Result<Self, StartError> {
        Self::start_inner(config, None).await
    }

    /// As [`Node::start`], with a tap: every event is also offered (without waiting) to a channel
    /// of `capacity` events, for the serf layer, which must not miss user payloads.
    pub(crate) async fn start_tapped(
        config: NodeConfig,
        capacity: usize,
    ) -> Result<(Self, mpsc::Receiver<swim::Event>), StartError> {
        let (tap, tap_rx) = mpsc::channel(capacity);
        let node = Self::start_inner(config, Some(tap)).await?;
        Ok((node, tap_rx))
    }

    async fn start_inner(config: NodeConfig, tap: Option<mpsc::Sender<swim::Event>>) -> Result<Self, StartError> {
        config.validate()?;
        let (udp, listener) =
            net::bind(config.bind_addr).await.map_err(|source| StartError::Bind { addr: config.bind_addr, source })?;
        let local_addr = udp.local_addr().map_err(|source| StartError::Bind { addr: config.bind_addr, source })?;
        let advertise = advertise_addr(config.advertise_addr, local_addr)?;
        let seed = rand::rngs::OsRng.try_next_u64().map_err(|error| StartError::Entropy(error.to_string()))?;
        let local = LocalNode {
            name: config.name.clone(),
            addr: advertise,
            tags: config.tags.clone(),
            generation: generation(),
        };
        let mut swim =
            Swim::new(config.swim.clone(), local, seed, actor::now()).map_err(crate::NodeConfigError::from)?;
        if let Some(keyring) = config.keyring.clone() {
            swim.set_keyring(keyring);
        }

        let (shutdown, shutdown_rx) = watch::channel(false);
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let (events, _) = broadcast::channel(config.event_buffer);
        let snapshot = Arc::new(RwLock::new(Snapshot::of(&swim)));
        let (members_changed, members_changed_rx) = watch::channel(0);
        let counters = Arc::new(Counters::default());
        let refusals = Arc::new(Refusals::default());
        let budget = Arc::new(PreAuthBudget::new(config.max_unauthenticated_bytes));
        let header_check = HeaderCheck::new(&config.swim.label, config.keyring.is_some()).map_err(|_| {
            StartError::Config(crate::NodeConfigError::Invalid {
                field: "swim.label",
                value: format!("{:?}", config.swim.label),
                rule: "at most 255 bytes",
            })
        })?;

        let handle = NodeHandle {
            commands,
            snapshot: Arc::clone(&snapshot),
            members_changed: members_changed_rx,
            events: events.downgrade(),
            counters: Arc::clone(&counters),
            refusals: Arc::clone(&refusals),
            budget: Arc::clone(&budget),
            local_addr,
            settings: Arc::new(Settings {
                stream_timeout: config.stream_timeout,
                join_attempts: config.join_attempts,
                join_retry_interval: config.join_retry_interval,
                leave_bound: config.swim.leave_propagate_max + LEAVE_SLACK,
                max_user_payload: swim.max_user_payload(),
            }),
        };
        let acceptor = Acceptor {
            listener,
            requests: inbound,
            limit: Arc::new(Semaphore::new(config.max_inbound_streams)),
            counters: Arc::clone(&counters),
            shutdown: shutdown_rx.clone(),
            stream_timeout: config.stream_timeout,
            header_check: header_check.clone(),
            budget,
            refusals: Arc::clone(&refusals),
        };
        let actor = Actor {
            swim,
            udp,
            commands: commands_rx,
            inbound: inbound_rx,
            events,
            snapshot,
            members_changed,
            counters,
            shutdown: shutdown_rx,
            stream_timeout: config.stream_timeout,
            tap,
            header_check,
            refusals,
        };
        tracing::info!(name = %config.name, %local_addr, %advertise, "gossip node started");
        Ok(Self { handle, shutdown, driver: tokio::spawn(actor.run()), acceptor: tokio::spawn(acceptor.run()) })
    }

    /// A handle for other tasks; it outlives the node harmlessly (operations then fail with
    /// `Stopped`).
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Stop every task this node started and wait until they have ended: the UDP socket and the
    /// TCP listener are closed when this returns, in-flight stream requests and connections are
    /// aborted, [`EventStream`]s end. This does not leave the cluster: call
    /// [`NodeHandle::leave`] first for a graceful exit.
    pub async fn shutdown(self) {
        let Self { handle, shutdown, driver, acceptor } = self;
        let _ = shutdown.send(true);
        for (task, result) in [("driver", driver.await), ("acceptor", acceptor.await)] {
            if let Err(error) = result {
                tracing::error!(task, %error, "gossip task ended abnormally");
            }
        }
        tracing::info!(addr = %handle.local_addr, "gossip node shut down");
    }

    /// Abort every task at once, as if the process had crashed: nothing more is sent, no leave.
    /// Returns when the tasks are gone and the sockets closed. For tests and simulations.
    pub async fn kill(self) {
        let Self { handle: _, shutdown: _, driver, acceptor } = self;
        driver.abort();
        acceptor.abort();
        let _ = driver.await;
        let _ = acceptor.await;
    }
}

impl Deref for Node {
    type Target = NodeHandle;

    fn deref(&self) -> &NodeHandle {
        &self.handle
    }
}

impl NodeHandle {
    /// Join a cluster through the given seeds: a push-pull exchange (TCP) with each, which brings
    /// the whole member list both ways. Returns how many seeds answered. When none does, the
    /// whole list is tried again, up to [`NodeConfig::join_attempts`] times in all,
    /// [`NodeConfig::join_retry_interval`] apart; the error names the seeds and the last reason
    /// each failed. Duplicate seeds are tried once.
    pub async fn join(&self, seeds: &[SocketAddr]) -> Result<usize, JoinError> {
        let mut unique = Vec::with_capacity(seeds.len());
        let mut seen = HashSet::new();
        for seed in seeds {
            if seen.insert(*seed) {
                unique.push(*seed);
            }
        }
        if unique.is_empty() {
            return Err(JoinError::NoSeeds);
        }
        let attempts = self.settings.join_attempts;
        let mut reasons = Vec::new();
        for attempt in 1..=attempts {
            let (reached, failures) = self.join_once(&unique).await?;
            if reached > 0 {
                tracing::info!(reached, seeds = unique.len(), attempt, "joined the cluster");
                return Ok(reached);
            }
            tracing::warn!(attempt, attempts, failures = ?failures, "join attempt reached no seed");
            reasons = failures;
            if attempt < attempts {
                tokio::time::sleep(self.settings.join_retry_interval).await;
            }
        }
        Err(JoinError::Unreachable { seeds: unique, attempts, reasons })
    }

    /// One attempt: ask the driver, collect the outcome of each seed within a bound.
    pub(crate) async fn join_once(
        &self,
        seeds: &[SocketAddr],
    ) -> Result<(usize, Vec<(SocketAddr, String)>), JoinError> {
        let (outcomes, mut outcomes_rx) = mpsc::unbounded_channel::<JoinOutcome>();
        let command = Command::Join { seeds: seeds.to_vec(), outcomes };
        self.commands.send(command).await.map_err(|_| JoinError::Stopped)?;
        let bound = self.settings.stream_timeout + JOIN_SLACK;
        let deadline = tokio::time::Instant::now() + bound;
        let mut answered = HashSet::new();
        let mut reached = 0;
        let mut failures = Vec::new();
        while answered.len() < seeds.len() {
            match tokio::time::timeout_at(deadline, outcomes_rx.recv()).await {
                Ok(Some((seed, outcome))) => {
                    if !answered.insert(seed) {
                        continue;
                    }
                    match outcome {
                        Ok(()) => reached += 1,
                        Err(reason) => failures.push((seed, reason)),
                    }
                }
                // The driver drops the waiter only when every seed was answered or it stopped.
                Ok(None) => return Err(JoinError::Stopped),
                Err(_elapsed) => {
                    for seed in seeds.iter().filter(|seed| !answered.contains(seed)) {
                        failures.push((*seed, format!("no outcome within {bound:?}")));
                    }
                    break;
                }
            }
        }
        Ok((reached, failures))
    }

    /// Leave the cluster gracefully: broadcast the leave and wait until it has gone out (bounded
    /// by [`swim::Config::leave_propagate_max`] plus a second). The others then list this node
    /// as [`swim::State::Left`] instead of failed. The node keeps answering probes until it is
    /// shut down; call [`Node::shutdown`] next.
    pub async fn leave(&self) -> Result<(), NodeError> {
        let (done, done_rx) = oneshot::channel();
        self.commands.send(Command::Leave { done }).await.map_err(|_| NodeError::Stopped)?;
        let bound = self.settings.leave_bound;
        match tokio::time::timeout(bound, done_rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(NodeError::Stopped),
            Err(_) => Err(NodeError::LeaveTimedOut { after: bound }),
        }
    }

    /// Replace the local tags and gossip them; the others see [`swim::Event::MemberUpdated`].
    /// After [`NodeHandle::leave`] the tags are only kept (a rejoin announces them): gossiping them
    /// would bring the node back into the others' views.
    pub async fn set_tags(&self, tags: Tags) -> Result<(), NodeError> {
        let (done, done_rx) = oneshot::channel();
        self.commands.send(Command::SetTags { tags, done }).await.map_err(|_| NodeError::Stopped)?;
        done_rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Gossip an application payload to every member, piggybacked on protocol packets; it
    /// arrives as [`swim::Event::User`]. With `key`, a newer payload with the same key replaces
    /// one still queued. Delivery is best effort (as Serf's user events). The payload must ride
    /// on any probe, so it may take at most [`swim::Swim::max_user_payload`] bytes (about half
    /// [`swim::Config::packet_budget`]); a larger one is refused and nothing is queued.
    pub async fn broadcast_user(&self, key: Option<&str>, payload: Bytes) -> Result<(), NodeError> {
        let (done, done_rx) = oneshot::channel();
        let command = Command::BroadcastUser { key: key.map(str::to_owned), payload, done };
        self.commands.send(command).await.map_err(|_| NodeError::Stopped)?;
        done_rx
            .await
            .map_err(|_| NodeError::Stopped)?
            .map_err(|refused| NodeError::PayloadTooLarge { len: refused.len, limit: refused.max })
    }

    /// Every member this node knows, itself and tombstones (failed and left members not yet
    /// reaped) included, in name order.
    ///
    /// Read from a snapshot, without a round trip to the driver: the driver refreshes it after
    /// every membership event and command, and at least once a second. So right after an event
    /// arrived on an [`EventStream`], `members()` already reflects it.
    pub fn members(&self) -> Vec<Member> {
        self.snapshot.read().unwrap_or_else(PoisonError::into_inner).members.clone()
    }

    /// Changes of [`NodeHandle::members`]: the receiver sees a change (its value is a version
    /// counter) each time the snapshot was refreshed after a membership event or a command, so
    /// that a task can wait for the member list to change instead of polling it. Changes made
    /// before this call are not reported. `changed()` fails once the node has stopped.
    pub fn member_changes(&self) -> watch::Receiver<u64> {
        let mut changes = self.members_changed.clone();
        changes.mark_unchanged();
        changes
    }

    /// The members that are alive or suspect (the local node included).
    pub fn live_members(&self) -> Vec<Member> {
        let snapshot = self.snapshot.read().unwrap_or_else(PoisonError::into_inner);
        snapshot
            .members
            .iter()
            .filter(|member| matches!(member.state, swim::State::Alive | swim::State::Suspect))
            .cloned()
            .collect()
    }

    /// This node as the cluster sees it (from the same snapshot as [`NodeHandle::members`]).
    pub fn local_member(&self) -> Member {
        self.snapshot.read().unwrap_or_else(PoisonError::into_inner).local.clone()
    }

    /// The events of this node from now on; see [`EventStream`] for what happens when a stream
    /// falls behind. Subscribe before [`NodeHandle::join`] to see the members it brings.
    pub fn events(&self) -> EventStream {
        match self.events.upgrade() {
            Some(sender) => EventStream::new(sender.subscribe()),
            None => EventStream::ended(),
        }
    }

    /// Counters of the state machine (asked of the driver) and of the driver.
    pub async fn stats(&self) -> Result<NodeStats, NodeError> {
        let (reply, reply_rx) = oneshot::channel();
        self.commands.send(Command::Stats { reply }).await.map_err(|_| NodeError::Stopped)?;
        let (swim, health_multiplier) = reply_rx.await.map_err(|_| NodeError::Stopped)?;
        let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &self.counters;
        let driver = DriverStats {
            udp_send_errors: read(&counters.udp_send_errors),
            udp_recv_errors: read(&counters.udp_recv_errors),
            stream_requests: read(&counters.stream_requests),
            stream_request_failures: read(&counters.stream_request_failures),
            inbound_streams: read(&counters.inbound_streams),
            inbound_stream_failures: read(&counters.inbound_stream_failures),
            tap_dropped: read(&counters.tap_dropped),
            refused_streams: self.refusals.streams(),
            refusal_warnings: self.refusals.warnings(),
            unauthenticated_bytes: self.budget.buffered(),
            unauthenticated_bytes_peak: self.budget.peak(),
        };
        Ok(NodeStats { swim, driver, health_multiplier })
    }

    /// Send an application payload to one address now, in one datagram (with piggybacked
    /// gossip); it arrives there as [`swim::Event::User`]. Best effort, as any datagram; at most
    /// [`NodeHandle::max_user_payload`] bytes.
    pub async fn send_user(&self, to: SocketAddr, payload: Bytes) -> Result<(), NodeError> {
        self.send_user_with(to, payload, false).await
    }

    /// As [`NodeHandle::send_user`], without piggybacked gossip (for replies to the node that
    /// sent the news, see [`swim::Swim::send_user_alone`]).
    pub(crate) async fn send_user_alone(&self, to: SocketAddr, payload: Bytes) -> Result<(), NodeError> {
        self.send_user_with(to, payload, true).await
    }

    async fn send_user_with(&self, to: SocketAddr, payload: Bytes, alone: bool) -> Result<(), NodeError> {
        let (done, done_rx) = oneshot::channel();
        let command = Command::SendUser { to, payload, alone, done };
        self.commands.send(command).await.map_err(|_| NodeError::Stopped)?;
        done_rx
            .await
            .map_err(|_| NodeError::Stopped)?
            .map_err(|refused| NodeError::PayloadTooLarge { len: refused.len, limit: refused.max })
    }

    /// The largest payload [`NodeHandle::broadcast_user`] and [`NodeHandle::send_user`] accept:
    /// about half [`swim::Config::packet_budget`], less the envelope (see
    /// [`swim::Swim::max_user_payload`]).
    pub fn max_user_payload(&self) -> usize {
        self.settings.max_user_payload
    }

    /// Serf's `force-leave`: declare `name` left on its behalf and gossip it (for a failed node
    /// that will not come back; a live one refutes and stays). With `prune` the member is also
    /// removed from this node's table at once instead of staying as a tombstone.
    pub async fn force_leave(&self, name: &str, prune: bool) -> Result<(), NodeError> {
        let (done, done_rx) = oneshot::channel();
        let command = Command::ForceLeave { name: name.to_owned(), prune, done };
        self.commands.send(command).await.map_err(|_| NodeError::Stopped)?;
        done_rx.await.map_err(|_| NodeError::Stopped)?.map_err(NodeError::ForceLeave)
    }

    /// Change (or just read) this node's keyring; returns the keys installed afterwards, primary
    /// first. [`NodeError::NoKeyring`] when the node was started without one.
    pub async fn keyring(&self, op: KeyringOp) -> Result<Vec<Key>, NodeError> {
        let (done, done_rx) = oneshot::channel();
        self.commands.send(Command::Keyring { op, done }).await.map_err(|_| NodeError::Stopped)?;
        done_rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// Gossip a payload without waiting for the driver's verdict (the caller checked its size).
    pub(crate) async fn broadcast_user_detached(&self, payload: Bytes) -> Result<(), NodeError> {
        let (done, _) = oneshot::channel();
        let command = Command::BroadcastUser { key: None, payload, done };
        self.commands.send(command).await.map_err(|_| NodeError::Stopped)
    }

    /// Set the payload of every ack this node sends from now on.
    pub(crate) async fn set_ack_payload(&self, payload: Bytes) -> Result<(), NodeError> {
        self.commands.send(Command::SetAckPayload(payload)).await.map_err(|_| NodeError::Stopped)
    }

    /// Set the state this node sends in every push-pull exchange from now on.
    pub(crate) async fn set_local_state(&self, state: Bytes) -> Result<(), NodeError> {
        self.commands.send(Command::SetLocalState(state)).await.map_err(|_| NodeError::Stopped)
    }

    /// The address the UDP socket and the TCP listener are bound to (with the port the OS chose
    /// when [`NodeConfig::bind_addr`] had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address other nodes reach this one at, as published in the member list: give this to
    /// other nodes' [`NodeHandle::join`]. Equal to [`NodeHandle::local_addr`] unless the bind
    /// address is unspecified or [`NodeConfig::advertise_addr`] is set.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.snapshot.read().unwrap_or_else(PoisonError::into_inner).local.addr
    }
}

/// The address to publish: the configured one (port 0 meaning the bound port), the bound one, or
/// for an unspecified bind address the local address of the default route.
fn advertise_addr(configured: Option<SocketAddr>, bound: SocketAddr) -> Result<SocketAddr, StartError> {
    if let Some(mut addr) = configured {
        if addr.port() == 0 {
            addr.set_port(bound.port());
        }
        return Ok(addr);
    }
    if !bound.ip().is_unspecified() {
        return Ok(bound);
    }
    let ip =
        default_route_ip(bound.is_ipv4()).map_err(|reason| StartError::NoAdvertiseAddr { bind_addr: bound, reason })?;
    Ok(SocketAddr::new(ip, bound.port()))
}

/// The local address the OS would send from towards a public address: `connect` on a UDP socket
/// picks the route and sends nothing.
fn default_route_ip(ipv4: bool) -> Result<IpAddr, String> {
    // Documentation addresses (RFC 5737 / RFC 3849): nothing is ever sent to them.
    let (local, remote): (SocketAddr, SocketAddr) = if ipv4 {
        ((Ipv4Addr::UNSPECIFIED, 0).into(), (Ipv4Addr::new(192, 0, 2, 1), 9).into())
    } else {
        ((Ipv6Addr::UNSPECIFIED, 0).into(), (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9).into())
    };
    let socket = std::net::UdpSocket::bind(local).map_err(|error| format!("probe socket: {error}"))?;
    socket.connect(remote).map_err(|error| format!("no default route: {error}"))?;
    let ip = socket.local_addr().map_err(|error| format!("probe socket: {error}"))?.ip();
    if ip.is_unspecified() {
        return Err("no address on the default route".to_owned());
    }
    Ok(ip)
}

/// This process's generation: wall-clock microseconds since the Unix epoch.
fn generation() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_defaults_to_the_bound_address() {
        let bound: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(advertise_addr(None, bound).unwrap(), bound);
        let configured: SocketAddr = "10.0.0.7:0".parse().unwrap();
        assert_eq!(advertise_addr(Some(configured), bound).unwrap(), "10.0.0.7:4000".parse().unwrap());
    }

    #[test]
    fn generations_grow() {
        let first = generation();
        std::thread::sleep(Duration::from_millis(2));
        assert!(generation() > first);
    }
}
