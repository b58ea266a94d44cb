//! Deterministic simulation of a cluster of sans-io [`swim::Swim`] nodes in one process.
//!
//! The simulator drives thousands of real `Swim` state machines (the same code the tokio driver
//! runs) through a virtual clock and a modelled network, injects faults, and measures what the
//! protocol promises: how fast a crash is detected, that live nodes are not declared failed, that
//! views converge after faults heal, and what it costs in traffic. The same seed gives the same
//! run, event for event.
//!
//! ```text
//!                 ┌──────────── EventQueue: (virtual time, seq) → action ────────────┐
//!                 │  start/join · timer · datagram · stream request/response · fault │
//!                 └───────┬───────────────────────────────────────────────▲──────────┘
//!                         │ handle_packet / handle_timeout / handle_stream_*  │ latency, loss,
//!                         ▼                                                 │ partitions (seeded RNG)
//!    node i: Swim ── poll_transmit ─────────────────────────────────────────┘
//!                └── poll_event ──▶ Observations: trace, crash records, failure causes
//! ```
//!
//! # What it models
//!
//! - **Time**: one base `Instant` captured at construction; virtual time is an offset from it in
//!   nanoseconds. The wall clock is never read for simulation logic. After every input a node's
//!   transmits and events are drained and its `poll_timeout` re-read; each node has one wake-up.
//! - **Network** ([`NetworkModel`]): per-datagram one-way latency drawn from a [`Latency`]
//!   distribution (default uniform 0.2–1 ms, so datagrams can overtake each other), independent
//!   random loss, optional duplication, partitions between two sets of nodes over a time window.
//!   Streams (the TCP exchanges of push-pull and join) take one latency each way and are not lossy;
//!   a stream to a crashed, paused or cut-off node fails after [`NetworkModel::stream_timeout`]
//!   (or, with [`NetworkModel::crash_refuses_streams`], a stream to a crashed process on a live
//!   host is refused after one latency).
//! - **Faults** ([`Fault`]): crash (the node stops; datagrams to it vanish), pause (a stalled
//!   process: no timers; datagrams are buffered up to [`NetworkModel::pause_buffer`] and handed
//!   over on resume, followed by `handle_timeout`), partition, restart (a new `Swim` with the same
//!   name and address, a larger generation, joining a running node), graceful leave.
//! - **Formation** ([`Formation`]): node 0 starts alone; node `i` starts at about
//!   `spread × i / n` and joins one random running node, retrying another on failure. Or, with
//!   [`Formation::preformed`] (`--preformed`), every node starts at time zero already knowing all
//!   others as alive ([`swim::Swim::preload`]), as a cluster formed long ago: for large clusters,
//!   where forming is most of the work.
//! - **Determinism**: the network and formation each have a ChaCha8 RNG seeded from
//!   [`SimConfig::seed`]; node `i`'s life `k` gets seed `mix(mix(seed, i), k)`. Ties in the event
//!   queue run in insertion order. Nothing iterates a hash map.
//!
//! # What it does not model
//!
//! Bandwidth and queueing (a datagram's delay does not depend on load), packet reordering beyond
//! what random latency gives, TCP connection set-up (one latency per direction), CPU time (a node
//! handles a packet in zero virtual time), clock drift, asymmetric links, encryption (no keyring is
//! installed), and the snapshot/rejoin machinery of the agents (a restarted node joins one seed).
//!
//! # Running a scenario
//!
//! ```no_run
//! use std::time::Duration;
//! use gossip_sim::{Fault, Scenario, SimConfig};
//!
//! let mut cfg = SimConfig::preset("lan", 100, 1).unwrap();
//! cfg.network.loss = 0.05;
//! let mut scenario = Scenario::new(cfg, Duration::from_secs(600));
//! scenario.random_crashes = 5;
//! scenario.faults.push(Fault::Pause { node: 7, from: Duration::from_secs(30), until: Duration::from_secs(50) });
//! let outcome = scenario.run().unwrap();
//! println!("{}", outcome.report);
//! ```
//!
//! Or drive a [`Simulation`] directly: `crash`, `pause`, `partition`, `restart`, `leave` (absolute
//! virtual times), `run_until`, `view`, `report`. From the command line:
//!
//! ```text
//! cargo run --release -p gossip-sim -- scenario --nodes 100 --seed 1 --preset lan --loss 0.1 \
//!     --crashes 5 --duration 600 --pause 7:30:50 --partition half:100:130 [--runs 5] [--json]
//! cargo run --release -p gossip-sim -- scenario --nodes 10000 --preformed --crashes 1
//! ```
//!
//! # Invariants and their bounds
//!
//! - **Detection**: a crash is known by every live node within
//!   [`bounds::crash_detection_bound`]: 10 probe intervals for someone to probe the node, one
//!   probe interval for the direct and indirect probes to fail, the maximum suspicion timeout
//!   (`suspicion_max_mult × suspicion_mult × max(1, log10 n) × unit`, where the unit is
//!   `silent_suspicion_unit` for a host gone and `suspicion_unit` for a process killed on a live
//!   host, whose refused TCP port proves it dead: [`bounds::process_crash_detection_bound`]), and
//!   `retransmit_mult × ceil(log10(n + 1))` gossip intervals for the `dead` news to spread.
//! - **No false failures**: a `MemberFailed` is legitimate ([`FailureCause`]) when the life it is
//!   about has crashed or left (or was replaced by a restart less than the grace window before), or
//!   the subject was paused or on either side of a partition at that moment or less than the grace
//!   window before, or the observer itself had been paused within the grace window. The grace
//!   window ([`Simulation::grace`]) is the maximum suspicion timeout plus one probe interval: a
//!   suspicion started before the cause ended runs out within it. Anything else is a false failure.
//! - **Convergence** ([`Convergence`]): every live node sees every live node `Alive` in its
//!   current generation and every crashed or departed node as `Dead`, `Left` or forgotten.
//!
//! # Costs
//!
//! The simulator adds no allocation per event beyond the payload `Bytes` the state machine
//! produced; node lookup by address is arithmetic (`10.0.0.0 + i + 1`). Memory is dominated by the
//! nodes' member tables (nodes² entries): about 130 bytes per entry when the names are shared
//! (a preformed cluster hands every node the simulator's own [`membership::Name`]s), about 160
//! when every node decoded its own copy of each name from the wire (the `table_memory` and
//! `t30_memory` tests bound both). While a cluster forms, each node's broadcast queue also fills
//! up to `max_broadcasts`. Measured sizes and times, 1,000 and 10,000 nodes, are in
//! `docs/protocol.md` §8. Events are kept per [`TraceLevel`]; every event is hashed into
//! [`Simulation::trace_hash`].

#![deny(missing_docs)]

pub mod bounds;
mod network;
mod observe;
mod queue;
mod report;
mod scenario;
mod sim;
pub mod stalls;
mod stats;
pub mod stress;

pub use network::{Latency, NetworkModel, Partition};
pub use observe::{Detection, EventKind, FailureCause, FailureRecord, TraceLevel, TraceRecord};
pub use report::{Convergence, FailureCounts, Report, Traffic};
pub use scenario::{
    parse_node_at, parse_node_set, parse_partition, parse_pause, parse_seconds, Fault, Outcome, Scenario, SpecError,
    Summary,
};
pub use sim::{node_addr, node_name, Formation, NetworkCounters, NodeStatus, SimConfig, SimError, Simulation, PORT};
pub use stats::Distribution;
