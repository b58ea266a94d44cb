//! The serf layer: HashiCorp Serf's features on top of a gossip [`Node`]: Lamport clocks, user
//! events, queries, batched member events, snapshots and re-join after restart, reconnection to
//! failed members, cluster-wide key rotation and Vivaldi network coordinates.
//!
//! # What it does
//!
//! - [`Serf::start`] starts a [`Node`] and the layer's task; [`SerfHandle`] (which `Serf`
//!   dereferences to) has every operation: [`join`](SerfHandle::join) (with Serf's replay
//!   flag), [`leave`](SerfHandle::leave), [`force_leave`](SerfHandle::force_leave),
//!   [`set_tags`](SerfHandle::set_tags), [`user_event`](SerfHandle::user_event),
//!   [`query`](SerfHandle::query), the key operations, coordinates and [`stats`](SerfHandle::stats).
//! - [`SerfHandle::events`] delivers [`SerfEvent`]s as Serf's event handlers see them:
//!   `member-join`, `member-leave`, `member-failed`, `member-update`, `member-reap` (batched),
//!   `user`, `query`.
//!
//! # How it maps to Serf
//!
//! | Serf | here |
//! |---|---|
//! | memberlist | [`Node`] (the `swim` state machine: SWIM + Lifeguard) |
//! | `LamportClock` ×3 (member, event, query) | the same; carried in every event and query, and exchanged in push-pull (`PushPullState`) |
//! | `UserEvent(name, payload, coalesce)` | [`SerfHandle::user_event`]; gossiped with the node's user broadcasts |
//! | event de-duplication (`eventBuffer`, 512 Lamport slots) | the same, by `(ltime, name, payload)`; a node that sees an event first re-broadcasts it |
//! | `Join(addrs, ignoreOld)` | [`SerfHandle::join`]`(addrs, replay)`, `replay = !ignoreOld` |
//! | queries: filters, acks, relay factor, default timeout | the same: `gossip_interval × query_timeout_mult × ceil(log10(n + 1))` |
//! | internal queries `_serf_ping`, `_serf_install-key`, ... | the same names, answered by the layer, never delivered |
//! | member event coalescing (agent: 3 s / 1 s) | 50 ms / 20 ms by default: a handler runs within about 100 ms |
//! | user event coalescing (agent: 3 s / 1 s) | 1 s / 200 ms by default, only for events sent with `coalesce` |
//! | snapshot file (`alive:`, `not-alive:`, `clock:`, `event-clock:`, `query-clock:`, `leave`) | the same format; see `snapshot.rs` |
//! | `handleRejoin` (one pass over the previous members) | retried in the background every `node.join_retry_interval` until a member answers, another node joins this one, the node leaves or stops |
//! | `reconnect` every 30 s with probability failed/alive | the same, done by the node: [`SerfConfig::reconnect_interval`] becomes `node.swim.reconnect_interval` |
//! | `ReconnectTimeout`, `TombstoneTimeout` | mapped onto the node's `dead_reap` and `left_reap` |
//! | `coordinate` package (Vivaldi, 8 dimensions, height, adjustment, gravity) | the same algorithm and constants; coordinates ride on acks |
//! | `RemoveFailedNode(prune)` | [`SerfHandle::force_leave`] |
//!
//! # How it differs from Serf
//!
//! - **Membership intents.** Serf keeps its own join/leave intents (with the member clock) on
//!   top of memberlist, because memberlist cannot tell a leave from a failure. The `swim` state
//!   machine gossips leaves itself and orders news by (generation, incarnation), so this layer
//!   has no intents: the member clock is kept (ticked by join and leave, exchanged in push-pull,
//!   saved in snapshots, shown in stats) but orders nothing.
//! - **Suspect and recovered** members are not Serf events: they are counted
//!   ([`SerfCounters::suspicions`], [`SerfCounters::recoveries`]), not delivered.
//! - **Name conflicts** are refused by the state machine (a second address claiming a live
//!   name); there is no `_serf_conflict` query.
//! - **Sizes.** One gossip message carries at most [`NodeHandle::max_user_payload`] bytes (about
//!   half the 1400-byte packet budget, so that it rides on any probe). The effective limits are
//!   the configured ones capped by that: user events keep Serf's 512 bytes, but queries and
//!   responses (Serf: 1024) are capped at 675 bytes in clear text and 651 encrypted with the
//!   default budget (a relayed response less the originator's name and address); the error
//!   names the effective limit.
//! - **Tag filters** are regular expressions searched in the tag value, as Serf's
//!   `regexp.MatchString` (not anchored); a missing tag is the empty string.
//! - **Key operations** refuse to run on a node without a keyring ([`SerfError::NoEncryption`])
//!   instead of sending the key in clear text to nodes that will all refuse it, and `use_key`
//!   refuses a key this node has not installed ([`SerfError::KeyNotInstalled`]) instead of
//!   switching the others to a key it cannot read. The node that sends `use_key` switches its
//!   own primary key last, once the others answered (Serf switches it at once, so that a node
//!   missing the key may never even hear the query). A key list that does not fit one response
//!   is truncated, with a message.
//! - **Snapshots** restore the coordinate (as Serf did before 0.8); a `leave` is kept through
//!   compaction.
//! - **Push-pull state** carries the recent user events newest first, up to 256 KiB (Serf: all
//!   of them).
//! - **Distinct events per Lamport time** are capped at 128 (Serf: unbounded); more are refused
//!   and counted.
//!
//! # What it does not do
//!
//! No RPC, no event handler scripts, no agent configuration: that is `serf-agent`'s job. No
//! protocol logic of failure detection: that lives in `swim`. The layer never blocks the node:
//! it reads the node's events from a bounded tap that the driver offers without waiting (a full
//! tap drops and counts, see [`crate::DriverStats::tap_dropped`]), and snapshot records go to a
//! writer thread through a bounded queue (a full queue drops and counts).
//!
//! # Tasks
//!
//! ```text
//!  SerfHandle ── commands (user_event, query, sync, stats) ──┐
//!      │ node ops (join, leave, set_tags, force_leave, keyring) │
//!      ▼                                                     ▼
//!  Node driver ── tap: every swim::Event (try_send) ──▶ serf task: clocks, event/query buffers,
//!      ▲                                               coalescers, pending queries, Vivaldi
//!      └── broadcast_user / send_user / set_ack_payload ──┘ │           │
//!          / set_local_state (commands)                     │ records   │ SerfEvents
//!                                          snapshot thread ◀┘           ▼ broadcast
//!                                                                  SerfEventStream(s)
//! ```
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use gossip_core::{NodeConfig, QueryParams, QueryReply, Serf, SerfConfig, SerfEvent};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = |name: &str| SerfConfig::new(NodeConfig { name: name.into(), ..NodeConfig::local() });
//! let a = Serf::start(config("a")).await?;
//! let b = Serf::start(config("b")).await?;
//! let mut events = b.events();
//! b.join(&[a.advertise_addr()], false).await?;
//!
//! // b answers every query named "ping".
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         if let SerfEvent::Query(query) = event {
//!             if query.name == "ping" {
//!                 let _ = query.respond(Bytes::from_static(b"pong")).await;
//!             }
//!         }
//!     }
//! });
//! let params = QueryParams { filter_nodes: vec!["b".into()], timeout: Some(Duration::from_secs(5)), ..Default::default() };
//! let mut answers = a.query("ping", Bytes::new(), params).await?;
//! let reply = answers.next().await;
//! assert_eq!(reply, Some(QueryReply::Response { from: "b".into(), payload: Bytes::from_static(b"pong") }));
//!
//! b.leave().await?;
//! b.shutdown().await;
//! a.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod buffer;
mod clock;
mod coalesce;
mod config;
mod coordinate;
mod error;
mod event;
mod keys;
mod messages;
mod query;
mod snapshot;
mod stats;
mod task;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::seq::SliceRandom;
use swim::{Member, State, Tags};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use config::SerfConfig;
pub use coordinate::Coordinate;
pub use error::SerfError;
pub use event::{SerfEvent, SerfEventStream, UserEvent};
pub use keys::KeyResponse;
pub use query::{Query, QueryParams, QueryReply, QueryResponse};
pub use stats::{SerfCounters, SerfStats};

use buffer::LamportBuffer;
use clock::LamportClock;
use coalesce::{MemberCoalescer, UserCoalescer};
use coordinate::{CoordinateClient, VivaldiConfig};
use messages::wire;
use snapshot::Snapshotter;
use stats::AtomicCounters;
use task::{Command, Task};

use crate::{Key, KeyringOp, Node, NodeHandle};

/// Swim events waiting for the serf task; beyond, the driver drops (and counts) them.
const TAP_CAPACITY: usize = 16 * 1024;
/// Commands waiting for the serf task.
const COMMAND_QUEUE: usize = 64;
/// Bytes a user event message adds around its name and payload (tag byte, field keys and
/// lengths, a 10-byte Lamport time, the coalesce flag), rounded up.
const USER_EVENT_FRAMING: usize = 24;

/// The current time on tokio's clock (a paused test clock drives the layer too).
pub(crate) fn now() -> Instant {
    crate::actor::now()
}

/// A running serf layer: a [`Node`] and the serf task around it. See the module docs.
///
/// Every operation is on [`SerfHandle`], which `Serf` dereferences to; [`Serf::handle`] clones
/// one for other tasks. Dropping a `Serf` stops its tasks without waiting; [`Serf::shutdown`]
/// waits and flushes the snapshot.
#[derive(Debug)]
#[must_use = "dropping the Serf stops it"]
pub struct Serf {
    handle: SerfHandle,
    node: Node,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    rejoin: Option<JoinHandle<()>>,
}

/// A cheap, clonable handle on a running [`Serf`]. Once it has stopped, operations fail with
/// [`SerfError::Stopped`] (or a [`SerfError::Node`] saying the node stopped).
#[derive(Debug, Clone)]
pub struct SerfHandle {
    shared: Arc<Shared>,
}

/// What the handles and the task share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) node: NodeHandle,
    pub(crate) settings: Settings,
    pub(crate) clocks: Clocks,
    pub(crate) counters: AtomicCounters,
    pub(crate) commands: mpsc::Sender<Command>,
    events: broadcast::WeakSender<SerfEvent>,
    /// The receiver created at start, handed to the first caller of `events()` so that it sees
    /// everything since start.
    first_stream: Mutex<Option<broadcast::Receiver<SerfEvent>>>,
    coordinates: RwLock<Coordinates>,
    pub(crate) snapshot: Option<Snapshotter>,
    /// A join without replay is running: push-pull states of joins raise the minimum event time.
    pub(crate) ignore_old_events: AtomicBool,
    /// This node left: no reconnecting, no re-joining.
    pub(crate) left: AtomicBool,
    /// A handle moved a clock: the task refreshes the push-pull state (and the snapshot clocks)
    /// when it hears of it. The task notices the clocks it moves itself.
    pub(crate) clocks_moved: tokio::sync::Notify,
    join_lock: tokio::sync::Mutex<()>,
}

/// The configuration the running layer needs.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) name: String,
    pub(crate) max_user_event_size: usize,
    pub(crate) max_query_size: usize,
    pub(crate) max_query_response_size: usize,
    pub(crate) query_timeout_mult: u32,
    pub(crate) gossip_interval: Duration,
    pub(crate) encrypted: bool,
    pub(crate) keyring_file: Option<PathBuf>,
}

/// The three Lamport clocks.
#[derive(Debug, Default)]
pub(crate) struct Clocks {
    pub(crate) member: LamportClock,
    pub(crate) event: LamportClock,
    pub(crate) query: LamportClock,
}

/// This node's coordinate and the last one seen from each member, for reads without a round
/// trip.
#[derive(Debug, Default)]
struct Coordinates {
    local: Option<Coordinate>,
    members: HashMap<String, Coordinate>,
}

impl Shared {
    pub(crate) fn default_query_timeout(&self, live: usize) -> Duration {
        let scale = ((live + 1) as f64).log10().ceil().max(1.0) as u32;
        self.settings.gossip_interval * self.settings.query_timeout_mult * scale
    }

    pub(crate) fn set_coordinates(&self, local: Coordinate, node: &str, theirs: Coordinate) {
        let mut coordinates = self.coordinates.write().unwrap_or_else(PoisonError::into_inner);
        coordinates.local = Some(local);
        coordinates.members.insert(node.to_owned(), theirs);
    }

    pub(crate) fn drop_first_stream(&self) {
        self.first_stream.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    pub(crate) fn forget_coordinate(&self, node: &str) {
        self.coordinates.write().unwrap_or_else(PoisonError::into_inner).members.remove(node);
    }
}

impl Serf {
    /// Start the node and the layer.
    ///
    /// With [`SerfConfig::snapshot_path`], the snapshot is replayed first: the clocks are
    /// restored (so that old events are not delivered again) and, when it lists alive members
    /// and the node had not left (or [`SerfConfig::rejoin_after_leave`] is set), they are
    /// re-joined in the background, with retries: a restarted agent needs no seeds. With
    /// [`SerfConfig::keyring_file`], an existing file replaces `node.keyring`.
    pub async fn start(config: SerfConfig) -> Result<Self, SerfError> {
        config.validate()?;
        let mut node_config = config.node.clone();
        node_config.swim.reconnect_interval = config.reconnect_interval;
        node_config.swim.dead_reap = config.reconnect_timeout;
        node_config.swim.left_reap = config.tombstone_timeout;
        if let Some(path) = &config.keyring_file {
            if let Some(keyring) = keys::load_keyring_file(path)? {
                node_config.keyring = Some(keyring);
            }
        }
        let (replayed, snapshot) = match &config.snapshot_path {
            Some(path) => {
                let failed = |source| SerfError::Snapshot { path: path.clone(), source };
                let replayed = snapshot::replay(path, config.rejoin_after_leave).map_err(failed)?;
                let writer = Snapshotter::start(path, &replayed, config.rejoin_after_leave).map_err(failed)?;
                (replayed, Some(writer))
            }
            None => (Default::default(), None),
        };
        let encrypted = node_config.keyring.is_some();
        let retry_interval = node_config.join_retry_interval;
        let (node, tap) = match Node::start_tapped(node_config, TAP_CAPACITY).await {
            Ok(started) => started,
            Err(error) => {
                if let Some(snapshot) = &snapshot {
                    snapshot.close().await;
                }
                return Err(error.into());
            }
        };
        let handle = node.handle();
        let settings = Settings {
            name: config.node.name.clone(),
            max_user_event_size: config
                .max_user_event_size
                .min(handle.max_user_payload().saturating_sub(USER_EVENT_FRAMING)),
            max_query_size: config.max_query_size,
            max_query_response_size: config.max_query_response_size,
            query_timeout_mult: config.query_timeout_mult,
            gossip_interval: config.node.swim.gossip_interval,
            encrypted,
            keyring_file: config.keyring_file.clone(),
        };
        let clocks = Clocks::default();
        if config.snapshot_path.is_some() {
            // As Serf: past everything the snapshot saw.
            clocks.member.witness(replayed.clock);
            clocks.event.witness(replayed.event_clock);
            clocks.query.witness(replayed.query_clock);
        }
        let vivaldi = (!config.disable_coordinates).then(|| {
            let mut client = CoordinateClient::new(VivaldiConfig::default(), rand::random());
            if let Some(coordinate) = replayed.coordinate.clone() {
                if let Err(error) = client.set_coordinate(coordinate) {
                    tracing::warn!(%error, "snapshot coordinate ignored");
                }
            }
            client
        });
        let (events, first) = broadcast::channel(config.node.event_buffer);
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            node: handle,
            settings,
            clocks,
            counters: AtomicCounters::default(),
            commands,
            events: events.downgrade(),
            first_stream: Mutex::new(Some(first)),
            coordinates: RwLock::new(Coordinates {
                local: vivaldi.as_ref().map(|client| client.coordinate().clone()),
                members: HashMap::new(),
            }),
            snapshot,
            ignore_old_events: AtomicBool::new(false),
            left: AtomicBool::new(false),
            clocks_moved: tokio::sync::Notify::new(),
            join_lock: tokio::sync::Mutex::new(()),
        });
        let task = Task {
            shared: Arc::clone(&shared),
            tap,
            commands: commands_rx,
            shutdown: shutdown_rx.clone(),
            events,
            event_buffer: LamportBuffer::new(config.event_buffer),
            query_buffer: LamportBuffer::new(config.query_buffer),
            // With a snapshot, what it saw is history (as Serf: last + 1).
            event_min_time: if config.snapshot_path.is_some() { replayed.event_clock + 1 } else { 0 },
            query_min_time: if config.snapshot_path.is_some() { replayed.query_clock + 1 } else { 0 },
            members: MemberCoalescer::new(config.member_coalesce_period, config.member_quiescent_period),
            users: UserCoalescer::new(config.user_coalesce_period, config.user_quiescent_period),
            vivaldi,
        };
        let task = tokio::spawn(task.run());
        let previous: Vec<(String, SocketAddr)> = replayed
            .alive
            .into_iter()
            .filter(|(name, addr)| *name != config.node.name && *addr != shared.node.advertise_addr())
            .collect();
        let rejoin = (!previous.is_empty()).then(|| {
            tracing::info!(members = previous.len(), "re-joining the members alive in the snapshot");
            tokio::spawn(rejoin(Arc::clone(&shared), previous, retry_interval, shutdown_rx))
        });
        tracing::info!(name = %config.node.name, addr = %shared.node.advertise_addr(), "serf started");
        Ok(Self { handle: SerfHandle { shared }, node, shutdown, task, rejoin })
    }

    /// A handle for other tasks.
    pub fn handle(&self) -> SerfHandle {
        self.handle.clone()
    }

    /// Stop every task (the node's too) and wait for them; pending member events are delivered
    /// and the snapshot is flushed and synced before this returns. This does not leave the
    /// cluster: call [`SerfHandle::leave`] first for a graceful exit.
    pub async fn shutdown(self) {
        let Self { handle, node, shutdown, task, rejoin } = self;
        let _ = shutdown.send(true);
        if let Some(rejoin) = rejoin {
            rejoin.abort();
            let _ = rejoin.await;
        }
        if let Err(error) = task.await {
            tracing::error!(%error, "serf task ended abnormally");
        }
        node.shutdown().await;
        if let Some(snapshot) = &handle.shared.snapshot {
            snapshot.close().await;
        }
        tracing::info!(name = %handle.shared.settings.name, "serf shut down");
    }
}

impl Deref for Serf {
    type Target = SerfHandle;

    fn deref(&self) -> &SerfHandle {
        &self.handle
    }
}

impl SerfHandle {
    /// Join a cluster through `addrs` (the node's join: a push-pull with each, retried as
    /// [`crate::NodeConfig::join_attempts`] says); returns how many answered.
    ///
    /// `replay = false` (Serf's default, `serf join` without `-replay`) ignores the user events
    /// the cluster sent before: events older than the seeds' event clocks are not delivered.
    /// `replay = true` delivers the recent events the seeds still remember.
    pub async fn join(&self, addrs: &[SocketAddr], replay: bool) -> Result<usize, SerfError> {
        let shared = &self.shared;
        let _joining = shared.join_lock.lock().await;
        // The push-pull must carry the current clocks.
        self.sync().await?;
        shared.ignore_old_events.store(!replay, Ordering::SeqCst);
        let result = shared.node.join(addrs).await;
        if !replay {
            // Every state the join brought is in the tap before the join returned: let the task
            // handle it before the flag drops.
            let _ = self.sync().await;
            shared.ignore_old_events.store(false, Ordering::SeqCst);
        }
        let reached = result?;
        shared.left.store(false, Ordering::SeqCst);
        shared.clocks.member.increment();
        shared.clocks_moved.notify_one();
        Ok(reached)
    }

    /// Leave gracefully: the snapshot records the leave (so that a restart does not re-join,
    /// unless `rejoin_after_leave`), then the node's leave is broadcast and awaited. Call
    /// [`Serf::shutdown`] next.
    pub async fn leave(&self) -> Result<(), SerfError> {
        let shared = &self.shared;
        shared.left.store(true, Ordering::SeqCst);
        if let Some(snapshot) = &shared.snapshot {
            snapshot.leave().await;
        }
        shared.clocks.member.increment();
        shared.clocks_moved.notify_one();
        shared.node.leave().await?;
        Ok(())
    }

    /// Serf's `force-leave`: declare the member `node` left on its behalf (for a failed node
    /// that will not come back; a live one refutes). With `prune` it is also forgotten at once
    /// ([`SerfEvent::MemberReap`]) instead of after `tombstone_timeout`, here and, through a
    /// gossiped prune intent, on every node that knows it left or failed (or alive at no newer
    /// incarnation: a member that refuted since is kept).
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), SerfError> {
        let known = self.shared.node.members().into_iter().find(|m| m.name == node).map(|m| m.incarnation);
        self.shared.node.force_leave(node, prune).await?;
        self.shared.clocks.member.increment();
        self.shared.clocks_moved.notify_one();
        if let (true, Some(incarnation)) = (prune, known) {
            let prune = wire::Prune {
                node: node.to_owned(),
                generation: incarnation.generation,
                incarnation: incarnation.incarnation,
            };
            self.shared.commands.send(Command::Prune(prune)).await.map_err(|_| SerfError::Stopped)?;
        }
        Ok(())
    }

    /// Every member known, this node and tombstones (failed and left members not yet reaped)
    /// included, in name order.
    pub fn members(&self) -> Vec<Member> {
        self.shared.node.members()
    }

    /// Changes of [`SerfHandle::members`], to wait on instead of polling it (see
    /// [`crate::NodeHandle::member_changes`]): reported as soon as the node's member list
    /// changes, before the (coalesced) member events.
    pub fn member_changes(&self) -> watch::Receiver<u64> {
        self.shared.node.member_changes()
    }

    /// This node as the cluster sees it.
    pub fn local_member(&self) -> Member {
        self.shared.node.local_member()
    }

    /// Replace this node's tags; the others see [`SerfEvent::MemberUpdate`].
    pub async fn set_tags(&self, tags: Tags) -> Result<(), SerfError> {
        self.shared.node.set_tags(tags).await?;
        Ok(())
    }

    /// Send a user event to every member (this node included). Name plus payload may take at
    /// most [`SerfConfig::max_user_event_size`] bytes ([`SerfError::EventTooLarge`] otherwise,
    /// and nothing is sent). With `coalesce`, receivers deliver only the newest event of this
    /// name within [`SerfConfig::user_coalesce_period`].
    pub async fn user_event(&self, name: &str, payload: Bytes, coalesce: bool) -> Result<(), SerfError> {
        let (reply, reply_rx) = oneshot::channel();
        let command = Command::UserEvent { name: name.to_owned(), payload, coalesce, reply };
        self.shared.commands.send(command).await.map_err(|_| SerfError::Stopped)?;
        reply_rx.await.map_err(|_| SerfError::Stopped)?
    }

    /// Send a query; the [`QueryResponse`] yields the acks and responses until the deadline.
    /// This node handles the query too (it may match and answer itself).
    pub async fn query(&self, name: &str, payload: Bytes, params: QueryParams) -> Result<QueryResponse, SerfError> {
        let (reply, reply_rx) = oneshot::channel();
        let command = Command::Query { name: name.to_owned(), payload, params, reply };
        self.shared.commands.send(command).await.map_err(|_| SerfError::Stopped)?;
        reply_rx.await.map_err(|_| SerfError::Stopped)?
    }

    /// The layer's events. The first stream taken sees every event since start; later ones see
    /// events from now on (see [`SerfEventStream`]).
    pub fn events(&self) -> SerfEventStream {
        if let Some(first) = self.shared.first_stream.lock().unwrap_or_else(PoisonError::into_inner).take() {
            return SerfEventStream::new(first);
        }
        match self.shared.events.upgrade() {
            Some(sender) => SerfEventStream::new(sender.subscribe()),
            None => SerfEventStream::ended(),
        }
    }

    /// Install `key` on every node (Serf's `keys -install`).
    pub async fn install_key(&self, key: Key) -> Result<KeyResponse, SerfError> {
        self.key_query(keys::INSTALL_KEY, Some(&key)).await
    }

    /// Make `key` the primary key of every node (Serf's `keys -use`). It must be installed
    /// everywhere first; unlike Serf, this node checks its own keyring before sending anything
    /// ([`SerfError::KeyNotInstalled`]).
    pub async fn use_key(&self, key: Key) -> Result<KeyResponse, SerfError> {
        if !self.shared.settings.encrypted {
            return Err(SerfError::NoEncryption);
        }
        let installed = self.shared.node.keyring(KeyringOp::List).await?;
        if !installed.contains(&key) {
            return Err(SerfError::KeyNotInstalled { fingerprint: key.fingerprint() });
        }
        // The others first, this node last: until every node answered, the query and its
        // retransmissions must stay readable by nodes that lack the key (they answer why).
        let payload = keys::request(Some(&key));
        let response = self.query(keys::USE_KEY, payload.clone(), QueryParams::default()).await?;
        let expected = response.num_nodes().saturating_sub(1);
        let mut answers = KeyResponse::collect(response, expected).await;
        let node = &self.shared.node;
        let own = keys::apply(keys::USE_KEY, &payload, node, self.shared.settings.keyring_file.as_deref()).await;
        answers.add(self.shared.settings.name.clone(), own);
        Ok(answers)
    }

    /// Remove `key` from every node (Serf's `keys -remove`); a node refuses to remove its
    /// primary key.
    pub async fn remove_key(&self, key: Key) -> Result<KeyResponse, SerfError> {
        self.key_query(keys::REMOVE_KEY, Some(&key)).await
    }

    /// Every node's keys (Serf's `keys -list`): [`KeyResponse::keys`] counts the nodes holding
    /// each key, [`KeyResponse::primary_keys`] those using it as primary.
    pub async fn list_keys(&self) -> Result<KeyResponse, SerfError> {
        self.key_query(keys::LIST_KEYS, None).await
    }

    async fn key_query(&self, name: &str, key: Option<&Key>) -> Result<KeyResponse, SerfError> {
        if !self.shared.settings.encrypted {
            return Err(SerfError::NoEncryption);
        }
        let response = self.query(name, keys::request(key), QueryParams::default()).await?;
        let expected = response.num_nodes();
        Ok(KeyResponse::collect(response, expected).await)
    }

    /// This node's Vivaldi coordinate (`None` when coordinates are disabled).
    pub fn coordinate(&self) -> Option<Coordinate> {
        self.shared.coordinates.read().unwrap_or_else(PoisonError::into_inner).local.clone()
    }

    /// The last coordinate `name` sent in an ack to this node's probes (this node's own for its
    /// name); `None` when not known yet or coordinates are disabled.
    pub fn member_coordinate(&self, name: &str) -> Option<Coordinate> {
        let coordinates = self.shared.coordinates.read().unwrap_or_else(PoisonError::into_inner);
        if name == self.shared.settings.name {
            return coordinates.local.clone();
        }
        coordinates.members.get(name).cloned()
    }

    /// Member counts, clocks, queue depths, the layer's counters and the node's.
    pub async fn stats(&self) -> Result<SerfStats, SerfError> {
        let shared = &self.shared;
        let (reply, reply_rx) = oneshot::channel();
        shared.commands.send(Command::Stats { reply }).await.map_err(|_| SerfError::Stopped)?;
        let task = reply_rx.await.map_err(|_| SerfError::Stopped)?;
        let node = shared.node.stats().await?;
        let members = shared.node.members();
        let count = |state: State| members.iter().filter(|m| m.state == state).count();
        let mut counters = shared.counters.read();
        counters.reconnect_attempts = node.swim.reconnects;
        counters.snapshot_dropped = shared.snapshot.as_ref().map_or(0, Snapshotter::dropped);
        Ok(SerfStats {
            members: members.len(),
            alive: count(State::Alive),
            suspect: count(State::Suspect),
            failed: count(State::Dead),
            left: count(State::Left),
            member_time: shared.clocks.member.time(),
            event_time: shared.clocks.event.time(),
            query_time: shared.clocks.query.time(),
            member_event_queue: task.member_event_queue,
            user_event_queue: task.user_event_queue,
            pending_queries: task.pending_queries,
            snapshot_queue: shared.snapshot.as_ref().map_or(0, Snapshotter::queued),
            encrypted: shared.settings.encrypted,
            coordinate_resets: task.coordinate_resets,
            counters,
            node,
        })
    }

    /// The address the node's sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.node.local_addr()
    }

    /// The address other nodes reach this one at: give it to their [`SerfHandle::join`].
    pub fn advertise_addr(&self) -> SocketAddr {
        self.shared.node.advertise_addr()
    }

    /// The underlying node, for what the serf layer does not wrap (its raw events, its
    /// counters, its keyring).
    pub fn node(&self) -> &NodeHandle {
        &self.shared.node
    }

    /// Wait until the task handled everything the node reported so far, and refreshed the
    /// push-pull state.
    async fn sync(&self) -> Result<(), SerfError> {
        let (reply, reply_rx) = oneshot::channel();
        self.shared.commands.send(Command::Sync { reply }).await.map_err(|_| SerfError::Stopped)?;
        reply_rx.await.map_err(|_| SerfError::Stopped)
    }
}

/// Re-join the members a snapshot listed as alive: one at a time in random order until one
/// answers; the whole list again every `retry` until then, unless the node left, another node
/// joined it meanwhile, or it stops.
async fn rejoin(
    shared: Arc<Shared>,
    mut previous: Vec<(String, SocketAddr)>,
    retry: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut round = 0u32;
    loop {
        round += 1;
        previous.shuffle(&mut rand::rng());
        for (name, addr) in &previous {
            if shared.left.load(Ordering::SeqCst) || shared.node.live_members().len() > 1 {
                tracing::debug!("re-join not needed any more");
                return;
            }
            match shared.node.join_once(&[*addr]).await {
                Ok((reached, _)) if reached > 0 => {
                    tracing::info!(%name, %addr, "re-joined a member from the snapshot");
                    return;
                }
                Ok((_, failures)) => tracing::debug!(%name, ?failures, "re-join attempt failed"),
                Err(_) => return,
            }
        }
        if round == 1 {
            tracing::warn!(members = previous.len(), ?retry, "could not re-join any member of the snapshot; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            _ = stop.changed() => return,
        }
    }
}
