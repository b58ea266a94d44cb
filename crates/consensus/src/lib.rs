//! Raft for consul-lite's servers: a replicated log that drives a state machine of yours,
//! durable on disk, with servers talking over TCP on Consul's server port (8300).
//!
//! Raft itself is [openraft](https://docs.rs/openraft/0.9) (0.9); this crate keeps it behind a
//! small API so the rest of the project never names an openraft type:
//!
//! - [`StateMachine`]: your deterministic state (consul-lite's service registry; the tests use a
//!   toy key/value map): `apply(index, command) -> response`, `snapshot()`, `restore(bytes)`.
//! - [`Config`]: identity, `data_dir`, `bind_addr`, Consul-like timings ([`Config::lan`],
//!   [`Config::local`]), log compaction and RPC bounds; [`Config::validate`] names bad values.
//! - [`Consensus`]: the running server. [`start`](Consensus::start),
//!   [`initialize`](Consensus::initialize) (bootstrap once), [`add_voter`](Consensus::add_voter),
//!   [`remove_peer`](Consensus::remove_peer), [`write`](Consensus::write),
//!   [`linearizable_barrier`](Consensus::linearizable_barrier) then
//!   [`with_state`](Consensus::with_state), [`leader`](Consensus::leader),
//!   [`metrics`](Consensus::metrics), [`shutdown`](Consensus::shutdown).
//!
//! ```no_run
//! use consensus::{Config, Consensus, StateMachine};
//!
//! /// A counter: the smallest state machine.
//! #[derive(Default)]
//! struct Counter(u64);
//!
//! impl StateMachine for Counter {
//!     type Command = u64; // add this much
//!     type Response = u64; // the new total
//!     type RestoreError = std::array::TryFromSliceError;
//!
//!     fn apply(&mut self, _index: u64, add: u64) -> u64 {
//!         self.0 += add;
//!         self.0
//!     }
//!     fn snapshot(&self) -> Vec<u8> {
//!         self.0.to_le_bytes().to_vec()
//!     }
//!     fn restore(&mut self, bytes: &[u8]) -> Result<(), Self::RestoreError> {
//!         self.0 = u64::from_le_bytes(bytes.try_into()?);
//!         Ok(())
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = Config::lan(1, "/var/lib/consul-lite/raft");
//! config.bind_addr = "10.0.0.1:8300".parse()?;
//! let server = Consensus::start(config, Counter::default()).await?;
//! // Once, on one server, when all three are up (the binary decides when, from gossip):
//! server
//!     .initialize([
//!         (1, "10.0.0.1:8300".parse()?),
//!         (2, "10.0.0.2:8300".parse()?),
//!         (3, "10.0.0.3:8300".parse()?),
//!     ])
//!     .await?;
//! let (index, total) = server.write(&5).await?; // on any server: followers forward
//! server.linearizable_barrier().await?; // Consul's ?consistent
//! assert_eq!(server.with_state(|c| c.0), total);
//! println!("applied at {index}; leader {:?}", server.leader());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What it does
//!
//! - **Durability.** The log, the vote and the purge point live in `data_dir/raft.redb` (redb,
//!   pure Rust). Every append and vote is a redb transaction committed with fsync before openraft
//!   (and so the client) hears it is done: a write acknowledged by the leader is on the disks of
//!   a quorum. Each entry carries a CRC32; opening checks every entry, their order and that the
//!   committed index is in the log, and refuses a damaged log with [`StoreError::Corrupt`] (or
//!   [`StoreError::Open`] when redb cannot open the file) rather than start without entries that
//!   were acknowledged. It never repairs by dropping entries. A copy of the vote beside the
//!   database (`raft.vote`, written after it) catches a damaged database that opens as empty or
//!   older. redb asserts on some truncated files: `start` turns that panic into
//!   [`StartError::StorePanicked`], which needs unwinding (a `panic = "abort"` build aborts).
//! - **Snapshots and compaction.** Every [`Config::snapshot_threshold`] applied entries the state
//!   machine is snapshotted to `data_dir/snapshot.bin` (temporary file, fsync, rename, fsync of
//!   the directory) and the log is purged up to [`Config::trailing_logs`] entries behind it. The
//!   state machine itself lives in memory: at start it is restored from the snapshot and the log
//!   after it is applied again.
//! - **Catching up.** A server behind the leader's purged log (a new one, or one whose data dir
//!   was wiped) gets the snapshot in chunks of [`Config::snapshot_chunk_size`] bytes.
//! - **Server RPC.** TCP on [`Config::bind_addr`]; each message is a frame: a 4-byte big-endian
//!   length, a version byte ([`rpc::frame::VERSION`]) and the message in
//!   [postcard](https://docs.rs/postcard). Frames over [`Config::max_frame_size`] are refused from
//!   their header, before anything is allocated; a bad frame closes that connection with a
//!   typed [`rpc::frame::FrameError`] and never panics (fuzzed: `fuzz/fuzz_targets/raft_rpc.rs`).
//!   Connections are pooled per peer; connecting, each call and each frame body are bounded in
//!   time.
//! - **Addressed requests.** Every request (AppendEntries, Vote, InstallSnapshot, forwarded
//!   work) names the sender's Raft id and the Raft id it is for. A server refuses a request for
//!   another id without acting on it, and the caller gets [`RpcError::WrongNode`]; for openraft
//!   that target is unreachable, so the leader backs off it and never takes the answer as the
//!   target's. This closes the window in which a server whose data dir was wiped, back at its old
//!   address under a new id, would answer for its old identity while that is still in the
//!   configuration (a debug-build leader stopped on openraft's log-reversion assertion). The
//!   ids came with frame version 2: a version 1 server and a version 2 server refuse each
//!   other's frames, so upgrade all servers of a cluster together.
//! - **Forwarding.** Writes, read barriers and membership changes that reach a follower are
//!   forwarded by it to the leader over the same RPC, so any server takes them; the caller gets
//!   the leader's answer, or an error saying whether the request may have been applied.
//! - **Client agents.** Agents that hold no Raft state call a server on the same port with
//!   requests of the application's own encoding and subscribe to a stream from it
//!   ([`rpc::agents`]: [`AgentClient`](rpc::agents::AgentClient) on the agent,
//!   [`ClientHandler`](rpc::agents::ClientHandler) registered with
//!   [`Consensus::serve_clients`] on the server); a server without a handler refuses them.
//!   A pooled connection the peer closed is dropped before a request is written to it.
//!
//! # What it does not do
//!
//! - No gossip-driven membership: finding servers (`-bootstrap-expect`), deciding when to
//!   bootstrap and when to add or remove a voter belong to the binary, which calls
//!   [`Consensus::initialize`], [`Consensus::add_voter`] and [`Consensus::remove_peer`].
//! - No HTTP, no authentication or encryption of the server RPC (bind it to a private network).
//! - No duplicate suppression: a write whose answer was lost ([`WriteError::Forward`]) may have
//!   been applied; commands that must not apply twice carry their own check (a CAS index).
//!
//! # Encoding
//!
//! Frames and the log use postcard (serde, compact varints, a small well-kept crate with a
//! stable wire format since 1.0). openraft's messages derive serde and use none of the
//! self-describing features postcard lacks; a test round-trips each of them. openraft's error
//! types are not sent: errors cross the wire as text, except the snapshot mismatch the leader
//! acts on.
//!
//! ```text
//!   caller ── write(cmd) ──> Consensus ──(follower: forward)──> leader's Consensus
//!                               │                                   │
//!                               ▼                                   ▼
//!                     openraft Raft node ── AppendEntries/Vote/InstallSnapshot ──> peers
//!                      │                  │          (TCP frames, postcard, port 8300)
//!          LogStore (raft.redb, fsync)    StateStore: your StateMachine + snapshot.bin
//! ```

#![deny(missing_docs)]

mod config;
mod consensus;
pub mod rpc;
mod state_machine;
mod store;
mod types;
pub mod wire;

pub use config::{Config, ConfigError, DEFAULT_SERVER_PORT};
pub use consensus::{Consensus, MembershipError, Metrics, Peer, PeerStatus, ReadError, Role, StartError, WriteError};
pub use rpc::RpcError;
pub use state_machine::StateMachine;
pub use store::StoreError;
pub use types::NodeId;
