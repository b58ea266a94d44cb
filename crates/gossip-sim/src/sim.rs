//! The simulator: nodes, the event loop, faults.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::Bytes;
use membership::{AliveClaim, Incarnation, Member, Name, State, Tags};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use swim::{Event, LocalNode, Swim, Transmit, TransmitKind};

use crate::network::{nanos, NetworkModel, Partition, Partitions};
use crate::observe::{Observations, TraceLevel};
use crate::queue::{EventQueue, Nanos};

/// The failure of a stream request to a crashed process on a live host (see
/// [`NetworkModel::crash_refuses_streams`]): the driver reports it as a refusal.
const CONNECTION_REFUSED: &str = "connection refused";

/// The gossip port every simulated node listens on.
pub const PORT: u16 = 7946;

/// First address: node `i` is `10.0.0.0 + i + 1` (`10.0.0.1`, `10.0.0.2`, …, `10.0.39.16` for
/// node 9999).
const BASE_IP: u32 = u32::from_be_bytes([10, 0, 0, 0]);

/// Errors of [`Simulation::new`]; nothing is built when one is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The protocol configuration is invalid.
    #[error("swim configuration: {0}")]
    Config(#[from] swim::ConfigError),
    /// A fault of a scenario is invalid.
    #[error("fault: {0}")]
    Fault(#[from] crate::SpecError),
    /// A simulation parameter is out of range.
    #[error("{field}: {value} is invalid: {rule}")]
    Invalid {
        /// The field, as in [`SimConfig`] or [`NetworkModel`].
        field: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
}

/// How the cluster forms: node 0 starts alone at time zero; node `i` starts at about
/// `spread × i / nodes` and joins one node picked at random among those already running.
///
/// Or, with `preformed`, there is no formation: every node starts at time zero already knowing
/// every other node as alive ([`Swim::preload`]), as a cluster that formed long ago. Joins,
/// the gossip of every join and the push-pull of every joiner are skipped, which is most of the
/// work of a large simulation (at 1,000 nodes, about four fifths of the CPU time of a ten-minute
/// run); what follows (probing, failure detection, dissemination, anti-entropy) runs as usual.
/// Restarted nodes still join.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Formation {
    /// Start from a formed cluster instead of forming it (see the type docs).
    pub preformed: bool,
    /// Window over which node starts are spread (ignored when `preformed`).
    pub spread: Duration,
    /// Wait before a node whose join failed tries another running node.
    pub join_retry: Duration,
    /// Join attempts per node life before it gives up (and stays alone until someone probes it).
    pub join_attempts: u32,
}

impl Default for Formation {
    fn default() -> Self {
        Self { preformed: false, spread: Duration::from_secs(5), join_retry: Duration::from_secs(1), join_attempts: 30 }
    }
}

/// Everything a [`Simulation`] is built from.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes (each gets address `10.x.y.z:7946` and name `node-<index>`).
    pub nodes: usize,
    /// The seed of every random choice: the network's, the formation's, and each node's
    /// (derived from the seed, the node index and the node's life).
    pub seed: u64,
    /// Protocol configuration, the same for every node.
    pub swim: swim::Config,
    /// Latency, loss, stream timeouts.
    pub network: NetworkModel,
    /// Start-up schedule.
    pub formation: Formation,
    /// Which events are kept in the trace (all are hashed into [`Simulation::trace_hash`]).
    pub trace: TraceLevel,
}

impl SimConfig {
    /// `nodes` nodes with the given preset's protocol configuration, a LAN network and default
    /// formation; `None` if the preset is unknown (see [`swim::Config::preset`]).
    pub fn preset(name: &str, nodes: usize, seed: u64) -> Option<Self> {
        Some(Self::new(nodes, seed, swim::Config::preset(name)?))
    }

    /// `nodes` nodes with this protocol configuration, a LAN network and default formation.
    pub fn new(nodes: usize, seed: u64, swim: swim::Config) -> Self {
        Self {
            nodes,
            seed,
            swim,
            network: NetworkModel::default(),
            formation: Formation::default(),
            trace: TraceLevel::Failures,
        }
    }
}

/// Where a simulated node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NodeStatus {
    /// Not started yet (formation is staggered).
    Pending,
    /// Running.
    Running,
    /// Stalled: no timers run; datagrams are buffered for it.
    Paused,
    /// Crashed; stays down unless restarted.
    Crashed,
    /// Left gracefully and stopped.
    Left,
}

impl NodeStatus {
    /// Running or paused: the process exists (a paused node is slow, not dead).
    pub fn is_live(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

/// One life of a node: from a start (or restart) to a crash, leave or restart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Life {
    pub(crate) generation: u64,
    pub(crate) started: Nanos,
    pub(crate) ended: Option<Nanos>,
}

/// Traffic a node sent.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NodeTraffic {
    pub(crate) datagrams: u64,
    pub(crate) datagram_bytes: u64,
    pub(crate) streams: u64,
    pub(crate) stream_bytes: u64,
}

/// Something the network holds for a paused node.
#[derive(Debug)]
enum Buffered {
    Datagram { from: u32, payload: Bytes },
    StreamResponse { id: u64, result: Result<Bytes, &'static str> },
}

#[derive(Debug)]
pub(crate) struct Node {
    /// The node's name, shared with every preloaded table that holds it.
    pub(crate) name: Name,
    pub(crate) addr: SocketAddr,
    pub(crate) swim: Option<Swim>,
    pub(crate) status: NodeStatus,
    /// Number of lives started so far; tags timers and streams so that a new life ignores the
    /// old one's.
    pub(crate) life: u32,
    /// Time of the queue entry that will wake this node, if one is pending.
    timer: Option<Nanos>,
    paused_until: Nanos,
    buffer: VecDeque<Buffered>,
    /// Datagrams in `buffer` (stream responses are not bounded: TCP is reliable).
    buffer_datagrams: usize,
    joined: bool,
    join_attempts: u32,
    pub(crate) lives: Vec<Life>,
    /// Pause windows (scheduled), for classifying failures.
    pub(crate) pauses: Vec<(Nanos, Nanos)>,
    pub(crate) traffic: NodeTraffic,
}

/// Counters of what the network did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetworkCounters {
    /// Datagrams handed to a running node.
    pub delivered: u64,
    /// Datagrams lost at random.
    pub lost: u64,
    /// Datagrams dropped by a partition.
    pub cut: u64,
    /// Datagrams to a node that is down (crashed, left, not started).
    pub to_down_node: u64,
    /// Datagrams buffered for a paused node.
    pub buffered: u64,
    /// Datagrams dropped because a paused node's buffer was full.
    pub buffer_overflow: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Stream exchanges that completed.
    pub streams_completed: u64,
    /// Stream exchanges that failed (timeout to a down, paused or cut-off node).
    pub streams_failed: u64,
    /// Transmits to an address that is no simulated node.
    pub unknown_destination: u64,
    /// Times a node asked to be woken at or before the instant it was just woken at (a busy
    /// loop in the state machine); the simulator wakes it 1 µs later instead.
    pub timer_clamps: u64,
}

/// What the event loop does next.
#[derive(Debug)]
enum Action {
    /// Start a node's first life and join a running node.
    Start {
        node: u32,
    },
    /// Wake a node's timers.
    Timer {
        node: u32,
        life: u32,
    },
    /// A datagram arrives.
    Datagram {
        from: u32,
        to: u32,
        payload: Bytes,
    },
    /// A stream request arrives at `to`.
    StreamRequest {
        from: u32,
        from_life: u32,
        to: u32,
        id: u64,
        payload: Bytes,
        sent_at: Nanos,
    },
    /// The answer to a stream request arrives back at `to`.
    StreamResponse {
        to: u32,
        life: u32,
        id: u64,
        result: Result<Bytes, &'static str>,
    },
    Crash {
        node: u32,
    },
    Pause {
        node: u32,
        until: Nanos,
    },
    Resume {
        node: u32,
    },
    Restart {
        node: u32,
    },
    Leave {
        node: u32,
    },
    /// A node that left stops.
    Stop {
        node: u32,
        life: u32,
    },
    /// Retry a failed join.
    Rejoin {
        node: u32,
        life: u32,
    },
}

/// A deterministic simulation of a cluster of [`Swim`] nodes. See the crate docs.
#[derive(Debug)]
pub struct Simulation {
    pub(crate) cfg: SimConfig,
    /// The `Instant` that virtual time zero maps to; captured once, never read again.
    base: Instant,
    pub(crate) now: Nanos,
    queue: EventQueue<Action>,
    /// The network's draws: loss, latency, duplication.
    net_rng: ChaCha8Rng,
    /// Formation and fault draws: start jitter, join seeds.
    choice_rng: ChaCha8Rng,
    pub(crate) nodes: Vec<Node>,
    pub(crate) partitions: Partitions,
    pub(crate) obs: Observations,
    pub(crate) counters: NetworkCounters,
    /// Legitimate-cause grace window, see [`Simulation::grace`].
    pub(crate) grace: Nanos,
    /// Start of the traffic measurement window.
    pub(crate) traffic_since: Nanos,
}

impl Simulation {
    /// Build a simulation and schedule the formation: node 0 starts at time zero, the others at
    /// staggered times over [`Formation::spread`]. Nothing runs until [`Simulation::run_until`].
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        cfg.swim.validate()?;
        validate(&cfg)?;
        let n = cfg.nodes;
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            nodes.push(Node {
                name: node_name(i).into(),
                addr: node_addr(i),
                swim: None,
                status: NodeStatus::Pending,
                life: 0,
                timer: None,
                paused_until: 0,
                buffer: VecDeque::new(),
                buffer_datagrams: 0,
                joined: false,
                join_attempts: 0,
                lives: Vec::new(),
                pauses: Vec::new(),
                traffic: NodeTraffic::default(),
            });
        }
        let mut choice_rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed, 0x6a6f_696e));
        let mut queue = EventQueue::new();
        let spread = if cfg.formation.preformed { 0 } else { nanos(cfg.formation.spread) };
        let slot = spread / n as u64;
        for i in 0..n {
            let jitter = if i == 0 || slot == 0 { 0 } else { choice_rng.random_range(0..slot) };
            queue.push(slot * i as u64 + jitter, Action::Start { node: i as u32 });
        }
        let grace = nanos(crate::bounds::max_suspicion_timeout(&cfg.swim, n) + cfg.swim.probe_interval);
        Ok(Self {
            base: Instant::now(),
            now: 0,
            queue,
            net_rng: ChaCha8Rng::seed_from_u64(mix(cfg.seed, 0x6e65_7477)),
            choice_rng,
            nodes,
            partitions: Partitions::default(),
            obs: Observations::new(cfg.trace),
            counters: NetworkCounters::default(),
            grace,
            traffic_since: 0,
            cfg,
        })
    }

    // ---- faults ----

    /// Crash `node` at `at`: it stops for good (unless restarted); messages to it vanish.
    ///
    /// # Panics
    /// If `node` is out of range (as for every method taking a node index).
    pub fn crash(&mut self, node: usize, at: Duration) {
        let node = self.check(node);
        self.schedule(at, Action::Crash { node });
    }

    /// Stall `node` from `from` until `until`: no timers run; datagrams to it are buffered (up to
    /// [`NetworkModel::pause_buffer`]) and handed to it when it resumes, then its timers run;
    /// streams to it time out.
    pub fn pause(&mut self, node: usize, from: Duration, until: Duration) {
        let node = self.check(node);
        let (from_n, until_n) = (nanos(from).max(self.now), nanos(until).max(self.now));
        self.nodes[node as usize].pauses.push((from_n, until_n));
        self.schedule(from, Action::Pause { node, until: until_n });
        self.schedule(until, Action::Resume { node });
    }

    /// Cut every link between a node of `a` and a node of `b` from `from` until `until`.
    pub fn partition(&mut self, a: &[usize], b: &[usize], from: Duration, until: Duration) {
        for &i in a.iter().chain(b) {
            self.check(i);
        }
        let p = Partition { a: a.to_vec(), b: b.to_vec(), from, until };
        self.partitions.add(self.nodes.len(), &p);
    }

    /// Restart `node` at `at`: whatever runs there stops, and a new life with the same name and
    /// address and a larger generation starts and joins a running node.
    pub fn restart(&mut self, node: usize, at: Duration) {
        let node = self.check(node);
        self.schedule(at, Action::Restart { node });
    }

    /// Make `node` leave gracefully at `at`; it stops once its leave has gone out.
    pub fn leave(&mut self, node: usize, at: Duration) {
        let node = self.check(node);
        self.schedule(at, Action::Leave { node });
    }

    /// Schedule a fault described as data, its times shifted by `offset`.
    pub fn apply(&mut self, fault: &crate::Fault, offset: Duration) {
        use crate::Fault;
        match fault {
            Fault::Crash { node, at } => self.crash(*node, offset + *at),
            Fault::Pause { node, from, until } => self.pause(*node, offset + *from, offset + *until),
            Fault::Partition { a, b, from, until } => self.partition(a, b, offset + *from, offset + *until),
            Fault::Restart { node, at } => self.restart(*node, offset + *at),
            Fault::Leave { node, at } => self.leave(*node, offset + *at),
        }
    }

    // ---- running ----

    /// Run every action due up to and including `t`; afterwards [`Simulation::now`] is `t` (or
    /// later, if it already was).
    pub fn run_until(&mut self, t: Duration) {
        let t = nanos(t);
        while let Some(at) = self.queue.peek_time() {
            if at > t {
                break;
            }
            let Some((at, action)) = self.queue.pop() else { break };
            self.now = at;
            self.dispatch(action);
        }
        self.now = self.now.max(t);
    }

    /// Run for `d` more virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now() + d);
    }

    /// Run, checking [`Simulation::is_converged`] every `every`, until it holds or `limit` is
    /// reached; returns the time it first held (at the resolution of `every`). Nodes not yet
    /// started are ignored, so formation should be let past [`Formation::spread`] first.
    pub fn run_until_converged(&mut self, limit: Duration, every: Duration) -> Option<Duration> {
        let every = every.max(Duration::from_millis(1));
        loop {
            if self.is_converged() {
                return Some(self.now());
            }
            if self.now() >= limit {
                return None;
            }
            let next = (self.now() + every).min(limit);
            self.run_until(next);
        }
    }

    /// The network model, to change from now on (for example to end a lossy phase).
    pub fn network_mut(&mut self) -> &mut NetworkModel {
        &mut self.cfg.network
    }

    /// Reset the traffic counters: [`crate::Report::traffic`] measures from now on.
    pub fn reset_traffic(&mut self) {
        self.traffic_since = self.now;
        for n in &mut self.nodes {
            n.traffic = NodeTraffic::default();
        }
        self.counters = NetworkCounters::default();
    }

    // ---- views ----

    /// The current virtual time (since the start of the simulation).
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes (never: [`Simulation::new`] refuses zero).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The state machine of `node`, if it is live (running or paused).
    pub fn swim(&self, node: usize) -> Option<&Swim> {
        self.nodes[node].swim.as_ref()
    }

    /// The members as `node` sees them (tombstones included), in no particular order (see
    /// [`Swim::members_unordered`]; [`Swim::members`] is in name order but sorts); empty if it
    /// is down.
    pub fn view(&self, node: usize) -> impl Iterator<Item = &Member> {
        self.nodes[node].swim.iter().flat_map(Swim::members_unordered)
    }

    /// How `node` sees `subject`: its state, or `None` if it does not know it (or is down). A
    /// member entry about an older life of `subject` counts as not knowing it.
    pub fn state_of(&self, node: usize, subject: usize) -> Option<State> {
        let target = &self.nodes[subject];
        let generation = target.lives.last().map(|l| l.generation)?;
        self.swim(node)?.member(&target.name).filter(|m| m.incarnation.generation >= generation).map(|m| m.state)
    }

    /// Where `node` is in its life.
    pub fn status(&self, node: usize) -> NodeStatus {
        self.nodes[node].status
    }

    /// Indexes of the nodes that are running or paused.
    pub fn live_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        self.nodes.iter().enumerate().filter(|(_, n)| n.status.is_live()).map(|(i, _)| i)
    }

    /// The address of `node`.
    pub fn addr(&self, node: usize) -> SocketAddr {
        self.nodes[node].addr
    }

    /// The name of `node`.
    pub fn name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    /// The generation of `node`'s current (or last) life; 0 before it started.
    pub fn generation(&self, node: usize) -> u64 {
        self.nodes[node].lives.last().map_or(0, |l| l.generation)
    }

    /// The node at `addr`, if it is one of the simulation's.
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        match addr {
            SocketAddr::V4(v4) if v4.port() == PORT => {
                let i = u32::from(*v4.ip()).checked_sub(BASE_IP + 1)? as usize;
                (i < self.nodes.len()).then_some(i)
            }
            _ => None,
        }
    }

    /// The grace window after a pause or partition ends during which a failure it caused still
    /// counts as legitimate: the maximum suspicion timeout for this cluster size plus one probe
    /// interval (see [`crate::bounds::max_suspicion_timeout`]).
    pub fn grace(&self) -> Duration {
        Duration::from_nanos(self.grace)
    }

    /// Network counters since the last [`Simulation::reset_traffic`].
    pub fn network_counters(&self) -> NetworkCounters {
        self.counters
    }

    /// Actions waiting in the event queue (timers, messages in flight, scheduled faults).
    pub fn pending_actions(&self) -> usize {
        self.queue.len()
    }

    // ---- internals ----

    fn check(&self, node: usize) -> u32 {
        assert!(node < self.nodes.len(), "node {node} out of range: the simulation has {} nodes", self.nodes.len());
        node as u32
    }

    fn schedule(&mut self, at: Duration, action: Action) {
        let at = nanos(at).max(self.now);
        self.queue.push(at, action);
    }

    pub(crate) fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.now)
    }

    fn dispatch(&mut self, action: Action) {
        match action {
            Action::Start { node } => {
                if self.nodes[node as usize].status == NodeStatus::Pending {
                    self.start_life(node as usize);
                }
            }
            Action::Timer { node, life } => self.on_timer(node as usize, life),
            Action::Datagram { from, to, payload } => self.on_datagram(from, to, payload),
            Action::StreamRequest { from, from_life, to, id, payload, sent_at } => {
                self.on_stream_request(from, from_life, to, id, &payload, sent_at);
            }
            Action::StreamResponse { to, life, id, result } => self.on_stream_response(to, life, id, result),
            Action::Crash { node } => self.on_crash(node as usize),
            Action::Pause { node, until } => {
                let n = &mut self.nodes[node as usize];
                if n.status.is_live() {
                    n.status = NodeStatus::Paused;
                    n.paused_until = n.paused_until.max(until);
                }
            }
            Action::Resume { node } => self.on_resume(node as usize),
            Action::Restart { node } => {
                let i = node as usize;
                if self.nodes[i].status.is_live() {
                    self.end_life(i);
                }
                self.obs.close_records_of(i);
                self.start_life(i);
            }
            Action::Leave { node } => {
                let i = node as usize;
                if self.nodes[i].status == NodeStatus::Running {
                    let now = self.instant();
                    if let Some(swim) = self.nodes[i].swim.as_mut() {
                        swim.leave(now);
                    }
                    self.after_input(i, false);
                }
            }
            Action::Stop { node, life } => {
                let i = node as usize;
                if self.nodes[i].life == life && self.nodes[i].status.is_live() {
                    self.end_life(i);
                    self.nodes[i].status = NodeStatus::Left;
                }
            }
            Action::Rejoin { node, life } => {
                let i = node as usize;
                let n = &self.nodes[i];
                if n.life == life && n.status == NodeStatus::Running && !n.joined {
                    self.join_random(i);
                }
            }
        }
    }

    /// Start a new life of node `i` (its first, or a restart) and join a running node.
    fn start_life(&mut self, i: usize) {
        let now_us = self.now / 1_000;
        let previous = self.nodes[i].lives.last().map_or(0, |l| l.generation);
        let generation = (now_us + 1).max(previous + 1);
        let n = &mut self.nodes[i];
        n.life += 1;
        let seed = mix(mix(self.cfg.seed, i as u64), u64::from(n.life));
        let local = LocalNode { name: n.name.to_string(), addr: n.addr, tags: Tags::default(), generation };
        let now = self.base + Duration::from_nanos(self.now);
        let mut swim =
            Swim::new(self.cfg.swim.clone(), local, seed, now).expect("configuration validated in Simulation::new");
        let preload = self.cfg.formation.preformed && n.life == 1 && self.now == 0;
        if preload {
            // Every node's first life starts at time zero, with the generation computed above.
            let claims = self.nodes.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, other)| AliveClaim {
                name: other.name.clone(),
                addr: other.addr,
                incarnation: Incarnation::new(generation, 0),
                tags: Tags::default(),
                protocol: swim::PROTOCOL,
            });
            swim.preload(claims, now);
        }
        let n = &mut self.nodes[i];
        n.swim = Some(swim);
        n.status = NodeStatus::Running;
        n.timer = None;
        n.paused_until = 0;
        n.buffer.clear();
        n.buffer_datagrams = 0;
        n.joined = false;
        n.join_attempts = 0;
        n.lives.push(Life { generation, started: self.now, ended: None });
        if preload {
            n.joined = true;
            self.after_input(i, false);
        } else {
            self.join_random(i);
        }
    }

    /// Join one running node other than `i`, picked at random; no-op if there is none.
    fn join_random(&mut self, i: usize) {
        let Some(seed) = self.random_running_node(i) else {
            self.after_input(i, false);
            return;
        };
        self.nodes[i].join_attempts += 1;
        let seed_addr = self.nodes[seed].addr;
        let now = self.instant();
        if let Some(swim) = self.nodes[i].swim.as_mut() {
            swim.join(&[seed_addr], now);
        }
        self.after_input(i, false);
    }

    fn random_running_node(&mut self, except: usize) -> Option<usize> {
        let n = self.nodes.len();
        for _ in 0..64 {
            let j = self.choice_rng.random_range(0..n);
            if j != except && self.nodes[j].status == NodeStatus::Running {
                return Some(j);
            }
        }
        let running: Vec<usize> =
            (0..n).filter(|&j| j != except && self.nodes[j].status == NodeStatus::Running).collect();
        if running.is_empty() {
            None
        } else {
            Some(running[self.choice_rng.random_range(0..running.len())])
        }
    }

    /// Mark the current life of `i` as over (crash, leave or restart) and free its state.
    fn end_life(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.nodes[i];
        n.swim = None;
        n.buffer.clear();
        n.buffer_datagrams = 0;
        n.timer = None;
        if let Some(life) = n.lives.last_mut() {
            life.ended.get_or_insert(now);
        }
        self.obs.observer_gone(i);
    }

    fn on_crash(&mut self, i: usize) {
        if !self.nodes[i].status.is_live() {
            return;
        }
        let generation = self.generation(i);
        self.end_life(i);
        self.nodes[i].status = NodeStatus::Crashed;
        let nodes = &self.nodes;
        self.obs.open_crash_record(i, generation, self.now, nodes.len(), |o| nodes[o].status.is_live());
    }

    fn on_timer(&mut self, i: usize, life: u32) {
        let now = self.now;
        let n = &mut self.nodes[i];
        if n.life != life || n.timer != Some(now) {
            return; // stale wake-up
        }
        n.timer = None;
        if n.status != NodeStatus::Running {
            return; // a paused node is woken when it resumes
        }
        let Some(swim) = n.swim.as_mut() else { return };
        let due = swim.poll_timeout().is_some_and(|t| self.to_nanos(t) <= now);
        if due {
            let now = self.base + Duration::from_nanos(now);
            if let Some(swim) = self.nodes[i].swim.as_mut() {
                swim.handle_timeout(now);
            }
            self.after_input(i, true);
        } else {
            self.after_input(i, false);
        }
    }

    fn on_datagram(&mut self, from: u32, to: u32, payload: Bytes) {
        if self.partitions.cut(from as usize, to as usize, self.now) {
            self.counters.cut += 1;
            return;
        }
        let i = to as usize;
        match self.nodes[i].status {
            NodeStatus::Running => {
                self.counters.delivered += 1;
                let from_addr = self.nodes[from as usize].addr;
                let now = self.instant();
                if let Some(swim) = self.nodes[i].swim.as_mut() {
                    swim.handle_packet(from_addr, &payload, now);
                }
                self.after_input(i, false);
            }
            NodeStatus::Paused => {
                let limit = self.cfg.network.pause_buffer;
                let n = &mut self.nodes[i];
                if n.buffer_datagrams < limit {
                    n.buffer_datagrams += 1;
                    n.buffer.push_back(Buffered::Datagram { from, payload });
                    self.counters.buffered += 1;
                } else {
                    self.counters.buffer_overflow += 1;
                }
            }
            NodeStatus::Pending | NodeStatus::Crashed | NodeStatus::Left => self.counters.to_down_node += 1,
        }
    }

    fn on_stream_request(&mut self, from: u32, from_life: u32, to: u32, id: u64, payload: &[u8], sent_at: Nanos) {
        let i = to as usize;
        let reachable = self.nodes[i].status == NodeStatus::Running && !self.partitions.cut(from as usize, i, self.now);
        if !reachable {
            let refused = self.cfg.network.crash_refuses_streams
                && self.nodes[i].status == NodeStatus::Crashed
                && !self.partitions.cut(from as usize, i, self.now)
                && !self.cfg.network.refusal_lost(&mut self.net_rng);
            let (at, result) = if refused {
                (self.now + self.cfg.network.latency.sample(&mut self.net_rng), Err(CONNECTION_REFUSED))
            } else {
                ((sent_at + nanos(self.cfg.network.stream_timeout)).max(self.now), Err("stream timed out"))
            };
            self.queue.push(at, Action::StreamResponse { to: from, life: from_life, id, result });
            return;
        }
        let from_addr = self.nodes[from as usize].addr;
        let now = self.instant();
        let answer = self.nodes[i].swim.as_mut().and_then(|swim| swim.handle_stream_request(from_addr, payload, now));
        self.after_input(i, false);
        let result = match answer {
            Some(bytes) => {
                let t = &mut self.nodes[i].traffic;
                t.stream_bytes += bytes.len() as u64;
                Ok(bytes)
            }
            None => Err("stream closed without an answer"),
        };
        let retransmissions = nanos(self.cfg.network.stream_retransmissions(&mut self.net_rng));
        let mut at = self.now + self.cfg.network.latency.sample(&mut self.net_rng) + retransmissions;
        let timeout = sent_at + nanos(self.cfg.network.stream_timeout);
        let result = if at > timeout {
            at = timeout.max(self.now);
            Err("stream timed out")
        } else {
            result
        };
        self.queue.push(at, Action::StreamResponse { to: from, life: from_life, id, result });
    }

    fn on_stream_response(&mut self, to: u32, life: u32, id: u64, result: Result<Bytes, &'static str>) {
        let i = to as usize;
        if self.nodes[i].life != life {
            return;
        }
        if result.is_ok() {
            self.counters.streams_completed += 1;
        } else {
            self.counters.streams_failed += 1;
        }
        match self.nodes[i].status {
            NodeStatus::Running => self.deliver_stream_response(i, id, result),
            NodeStatus::Paused => self.nodes[i].buffer.push_back(Buffered::StreamResponse { id, result }),
            NodeStatus::Pending | NodeStatus::Crashed | NodeStatus::Left => {}
        }
    }

    fn deliver_stream_response(&mut self, i: usize, id: u64, result: Result<Bytes, &'static str>) {
        let now = self.instant();
        if let Some(swim) = self.nodes[i].swim.as_mut() {
            let response = match &result {
                Ok(bytes) => Ok(&bytes[..]),
                Err(e) if *e == CONNECTION_REFUSED => Err(swim::StreamError::Refused((*e).to_owned())),
                Err(e) => Err(swim::StreamError::Failed((*e).to_owned())),
            };
            swim.handle_stream_response(id, response, now);
        }
        self.after_input(i, false);
    }

    fn on_resume(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.status != NodeStatus::Paused || self.now < n.paused_until {
            return;
        }
        n.status = NodeStatus::Running;
        n.buffer_datagrams = 0;
        let buffered = std::mem::take(&mut n.buffer);
        for item in buffered {
            if self.nodes[i].status != NodeStatus::Running {
                break;
            }
            match item {
                Buffered::Datagram { from, payload } => {
                    self.counters.delivered += 1;
                    let from_addr = self.nodes[from as usize].addr;
                    let now = self.instant();
                    if let Some(swim) = self.nodes[i].swim.as_mut() {
                        swim.handle_packet(from_addr, &payload, now);
                    }
                    self.after_input(i, false);
                }
                Buffered::StreamResponse { id, result } => self.deliver_stream_response(i, id, result),
            }
        }
        let now = self.instant();
        if let Some(swim) = self.nodes[i].swim.as_mut() {
            swim.handle_timeout(now);
        }
        self.after_input(i, false);
    }

    /// After any input to node `i`: send what it wants sent, record its events, and make sure it
    /// is woken at its next deadline. `timed_out` is set after `handle_timeout`.
    fn after_input(&mut self, i: usize, timed_out: bool) {
        while let Some(t) = self.nodes[i].swim.as_mut().and_then(Swim::poll_transmit) {
            self.transmit(i, t);
        }
        while let Some(e) = self.nodes[i].swim.as_mut().and_then(Swim::poll_event) {
            self.observe(i, e);
        }
        let now = self.now;
        let Some(deadline) = self.nodes[i].swim.as_ref().and_then(Swim::poll_timeout) else { return };
        let mut at = self.to_nanos(deadline).max(now);
        if timed_out && at <= now {
            at = now + 1_000;
            self.counters.timer_clamps += 1;
        }
        let n = &mut self.nodes[i];
        if n.timer.is_none_or(|t| at < t) {
            n.timer = Some(at);
            let life = n.life;
            self.queue.push(at, Action::Timer { node: i as u32, life });
        }
    }

    fn transmit(&mut self, from: usize, t: Transmit) {
        let Transmit { to, payload, kind } = t;
        let Some(dst) = self.index_of(to) else {
            self.counters.unknown_destination += 1;
            if let TransmitKind::StreamRequest(id) = kind {
                let at = self.now + nanos(self.cfg.network.stream_timeout);
                let life = self.nodes[from].life;
                self.queue
                    .push(at, Action::StreamResponse { to: from as u32, life, id, result: Err("no route to host") });
            }
            return;
        };
        let traffic = &mut self.nodes[from].traffic;
        match kind {
            TransmitKind::Datagram => {
                traffic.datagrams += 1;
                traffic.datagram_bytes += payload.len() as u64;
                let net = &self.cfg.network;
                if net.lost(&mut self.net_rng) || net.egress_lost(from, &mut self.net_rng) {
                    self.counters.lost += 1;
                    return;
                }
                if self.partitions.cut(from, dst, self.now) {
                    self.counters.cut += 1;
                    return;
                }
                if net.duplicated(&mut self.net_rng) {
                    self.counters.duplicated += 1;
                    let at = self.now + net.latency.sample(&mut self.net_rng);
                    self.queue
                        .push(at, Action::Datagram { from: from as u32, to: dst as u32, payload: payload.clone() });
                }
                let at = self.now + net.latency.sample(&mut self.net_rng);
                self.queue.push(at, Action::Datagram { from: from as u32, to: dst as u32, payload });
            }
            TransmitKind::StreamRequest(id) => {
                traffic.streams += 1;
                traffic.stream_bytes += payload.len() as u64;
                let at = self.now + self.cfg.network.latency.sample(&mut self.net_rng);
                let from_life = self.nodes[from].life;
                self.queue.push(
                    at,
                    Action::StreamRequest {
                        from: from as u32,
                        from_life,
                        to: dst as u32,
                        id,
                        payload,
                        sent_at: self.now,
                    },
                );
            }
        }
    }

    fn observe(&mut self, observer: usize, event: Event) {
        let now = self.now;
        match &event {
            Event::JoinSucceeded { .. } => self.nodes[observer].joined = true,
            Event::JoinFailed { .. } => {
                let n = &self.nodes[observer];
                if !n.joined && n.join_attempts < self.cfg.formation.join_attempts {
                    let at = now + nanos(self.cfg.formation.join_retry);
                    self.queue.push(at, Action::Rejoin { node: observer as u32, life: n.life });
                }
            }
            Event::LeaveComplete => {
                let life = self.nodes[observer].life;
                self.queue.push(now, Action::Stop { node: observer as u32, life });
            }
            _ => {}
        }
        self.record_event(observer, &event);
    }

    pub(crate) fn to_nanos(&self, t: Instant) -> Nanos {
        nanos(t.saturating_duration_since(self.base))
    }

    /// The node a member entry is about, if it is one of ours (name and address both match).
    pub(crate) fn subject_of(&self, m: &Member) -> Option<usize> {
        self.index_of(m.addr).filter(|&i| self.nodes[i].name == m.name)
    }
}

fn validate(cfg: &SimConfig) -> Result<(), SimError> {
    fn invalid(field: &'static str, value: impl std::fmt::Debug, rule: &'static str) -> SimError {
        SimError::Invalid { field, value: format!("{value:?}"), rule }
    }
    if cfg.nodes == 0 || cfg.nodes > 1 << 24 {
        return Err(invalid("nodes", cfg.nodes, "must be between 1 and 16777216"));
    }
    let net = &cfg.network;
    if !(0.0..=1.0).contains(&net.loss) {
        return Err(invalid("network.loss", net.loss, "must be a probability between 0 and 1"));
    }
    if !(0.0..=1.0).contains(&net.duplicate) {
        return Err(invalid("network.duplicate", net.duplicate, "must be a probability between 0 and 1"));
    }
    match net.latency {
        crate::Latency::Uniform { min, max } if min > max => {
            return Err(invalid("network.latency", net.latency, "min must not exceed max"));
        }
        crate::Latency::LogNormal { sigma, .. } if !(0.0..=10.0).contains(&sigma) => {
            return Err(invalid("network.latency", net.latency, "sigma must be between 0 and 10"));
        }
        _ => {}
    }
    Ok(())
}

/// The name of node `i`.
pub fn node_name(i: usize) -> String {
    format!("node-{i}")
}

/// The address of node `i`: `10.0.0.0 + i + 1`, port [`PORT`].
pub fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(BASE_IP + 1 + i as u32), PORT))
}

/// Derive a seed from two numbers (splitmix64 finalizer).
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    splitmix(a ^ splitmix(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        let cfg = SimConfig::new(10_000, 1, swim::Config::lan());
        let sim = Simulation::new(cfg).unwrap();
        assert_eq!(node_addr(0).to_string(), "10.0.0.1:7946");
        assert_eq!(node_addr(9999).to_string(), "10.0.39.16:7946");
        for i in [0, 1, 255, 256, 9999] {
            assert_eq!(sim.index_of(node_addr(i)), Some(i));
        }
        assert_eq!(sim.index_of(node_addr(10_000)), None);
        assert_eq!(sim.index_of("10.0.0.1:7947".parse().unwrap()), None);
        assert_eq!(sim.index_of("10.0.0.0:7946".parse().unwrap()), None);
        assert_eq!(sim.index_of("[::1]:7946".parse().unwrap()), None);
    }

    #[test]
    fn formation_is_staggered_and_starts_with_node_zero() {
        let cfg = SimConfig::new(100, 3, swim::Config::lan());
        let sim = Simulation::new(cfg).unwrap();
        assert_eq!(sim.pending_actions(), 100);
        assert!(sim.live_nodes().next().is_none());
        assert_eq!(sim.status(0), NodeStatus::Pending);
    }

    #[test]
    fn invalid_configs_are_refused_with_the_field_named() {
        let mut cfg = SimConfig::new(0, 1, swim::Config::lan());
        assert!(Simulation::new(cfg.clone()).unwrap_err().to_string().starts_with("nodes"));
        cfg.nodes = 3;
        cfg.network.loss = 1.5;
        assert!(Simulation::new(cfg.clone()).unwrap_err().to_string().starts_with("network.loss"));
        cfg.network.loss = 0.0;
        cfg.swim.gossip_nodes = 0;
        assert!(Simulation::new(cfg).unwrap_err().to_string().contains("gossip_nodes"));
    }

    #[test]
    fn seeds_differ_per_node_and_life() {
        let a = mix(mix(1, 0), 1);
        let b = mix(mix(1, 1), 1);
        let c = mix(mix(1, 0), 2);
        let d = mix(mix(2, 0), 1);
        assert!(a != b && a != c && a != d && b != c);
    }
}
