//! A running gossip node: drives the sans-io [`swim`] state machine (SWIM with the Lifeguard
//! extensions) on tokio, over one UDP socket and one TCP listener sharing a port.
//!
//! # What it does
//!
//! - [`Node::start`] binds the sockets and spawns the tasks; [`NodeHandle::join`] contacts
//!   seeds (with retries), [`NodeHandle::leave`] leaves gracefully, [`Node::shutdown`] stops
//!   everything it started and waits for it.
//! - Membership is read without a round trip ([`NodeHandle::members`]) and followed as an
//!   [`EventStream`] of [`swim::Event`]s (joined, suspected, failed, left, user payloads, ...).
//! - Tags ([`NodeHandle::set_tags`]), best-effort user broadcasts
//!   ([`NodeHandle::broadcast_user`]) and direct user messages ([`NodeHandle::send_user`]),
//!   encryption (a [`gossip_transport::Keyring`] in [`NodeConfig::keyring`], changed at run time
//!   with [`NodeHandle::keyring`]), force-leave ([`NodeHandle::force_leave`]), counters
//!   ([`NodeHandle::stats`]).
//! - The [`serf`] module builds HashiCorp Serf's layer on a node: Lamport clocks, user events,
//!   queries, batched member events, snapshots and re-join after restart, cluster-wide key
//!   rotation, Vivaldi network coordinates ([`Serf`], [`SerfHandle`]).
//!
//! # What it does not do
//!
//! - No protocol logic: probing, suspicion, gossip, push-pull merge and encryption all live in
//!   `swim` and `gossip-transport`; this crate only moves bytes, time and commands to and from the
//!   state machine. A protocol bug is to be reproduced in the deterministic simulator, not here.
//! - A bare [`Node`] does not resolve host names (seeds are `SocketAddr`s), pick interfaces
//!   beyond the default route, persist snapshots, or retry joins in the background after
//!   [`NodeHandle::join`] returns ([`Serf`] does the last two).
//! - It never blocks on a slow application: an [`EventStream`] that falls behind skips events and
//!   counts them ([`EventStream::missed`]).
//!
//! # Tasks and channels
//!
//! ```text
//!  Node / NodeHandle (any task)
//!     │ commands: mpsc (join, leave, set_tags, broadcast_user, stats)
//!     │ members(): reads ─────────────────────────────┐
//!     ▼                                               │
//!  ┌──────────────────────── driver task ───────────────────────────┐
//!  │ owns Swim; select! over:                        Arc<RwLock<   │
//!  │   UDP recv_from (64 KiB buffer, reused)          Snapshot>> ◄──┤ written after events
//!  │   commands                                                     │
//!  │   inbound stream requests ◄──── mpsc ──── acceptor task        │
//!  │   finished outgoing stream requests (JoinSet)   │ semaphore     │
//!  │   timer at poll_timeout (timerfd)               ▼               │
//!  │   shutdown (watch)                         connection tasks:    │
//!  │ after each input: drain poll_transmit       read_frame → driver │
//!  │   (UDP send_to here; StreamRequest →          (oneshot answer)  │
//!  │    spawned net::request task),               → write_frame      │
//!  │   drain poll_event ──► broadcast ──► EventStream(s)             │
//!  └─────────────────────────────────────────────────────────────────┘
//! ```
//!
//! One task, the driver, owns the [`swim::Swim`] state machine, as in tokio's mini-redis: it
//! `select!`s over the UDP socket, the command channel, a channel of requests read by the
//! acceptor's connection tasks (each carries a oneshot for the answer frame), the set of
//! outgoing stream requests in flight (a `JoinSet` of tasks running
//! [`gossip_transport::net::request`]), the one timer from `poll_timeout`, and the shutdown
//! signal. After every input it drains `poll_transmit` (datagrams are sent from the driver; a
//! failed send is logged and counted, never fatal), then `poll_event`, then refreshes the members
//! snapshot. Time is tokio's clock (`tokio::time::Instant::into_std`), so a paused test clock
//! drives the state machine too. On Linux the timer is a `timerfd` (one wake-up per deadline,
//! where tokio's timer wheel wakes twice for most of them), unless the clock is paused when the
//! node starts.
//!
//! Refusals are loud: a datagram or stream refused for another cluster label, another key (or
//! none), another protocol version or a stream frame over the pre-authentication budget is logged
//! as a warning with the peer address and the reason, at most once per address and reason every
//! 10 s (with the count of those not logged), and a refused stream is answered with a refusal
//! frame naming the reason, so that the joining side's [`JoinError`] says why. Before a stream
//! frame is authenticated, its header is checked first and its body is buffered within
//! [`NodeConfig::max_unauthenticated_bytes`] shared by all connections.
//!
//! Shutdown: a `watch` channel tells the driver and the acceptor to stop; each aborts the tasks
//! it spawned (outgoing requests, connections) and returns; [`Node::shutdown`] awaits both.
//!
//! # Example
//!
//! Two nodes on the loopback interface find each other, then one leaves:
//!
//! ```
//! use std::time::Duration;
//! use gossip_core::{Event, Node, NodeConfig, State};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The local preset binds 127.0.0.1 on a port the OS picks.
//! let a = Node::start(NodeConfig { name: "a".into(), ..NodeConfig::local() }).await?;
//! let b = Node::start(NodeConfig { name: "b".into(), ..NodeConfig::local() }).await?;
//! let mut events = a.events(); // subscribe before joining, not to miss anything
//!
//! assert_eq!(b.join(&[a.advertise_addr()]).await?, 1);
//! // The push-pull exchange of the join gave each side the other's member list.
//! assert_eq!(b.live_members().len(), 2);
//!
//! // `a` tells its application; loops on events are bounded.
//! let joined = tokio::time::timeout(Duration::from_secs(10), async {
//!     while let Some(event) = events.recv().await {
//!         if let Event::MemberJoined(member) = event {
//!             return Some(member);
//!         }
//!     }
//!     None
//! })
//! .await?;
//! assert_eq!(joined.map(|member| member.name).as_deref(), Some("b"));
//! assert!(a.members().iter().all(|member| member.state == State::Alive));
//!
//! // A graceful exit: leave, then stop the tasks.
//! b.leave().await?;
//! b.shutdown().await;
//! a.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod actor;
mod config;
mod error;
mod events;
mod listener;
mod node;
mod preauth;
mod refusals;
pub mod serf;
mod timer;

pub use actor::KeyringOp;
pub use config::{NodeConfig, NodeConfigError, DEFAULT_PORT, MAX_NAME_LEN};
pub use error::{JoinError, NodeError, StartError};
pub use events::EventStream;
pub use node::{DriverStats, Node, NodeHandle, NodeStats};
pub use preauth::DEFAULT_MAX_UNAUTHENTICATED_BYTES;

pub use serf::{
    Coordinate, KeyResponse, Query, QueryParams, QueryReply, QueryResponse, Serf, SerfConfig, SerfCounters, SerfError,
    SerfEvent, SerfEventStream, SerfHandle, SerfStats, UserEvent,
};

pub use gossip_transport::{Key, Keyring};
pub use swim::{Event, Incarnation, Member, State, Tags, TagsError};
