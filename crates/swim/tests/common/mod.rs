//! A minimal virtual-clock harness: a few `Swim` nodes, a delivery queue with fixed latency and
//! optional loss, no sockets. The full simulator lives in `gossip-sim`; this one keeps the
//! state machine's own tests independent of it.

#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use swim::{Config, Event, LocalNode, State, StreamError, Swim, Tags, TransmitKind};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Delivery {
    Datagram { from: usize, to: SocketAddr, bytes: Vec<u8> },
    StreamRequest { from: usize, to: SocketAddr, id: u64, bytes: Vec<u8> },
    StreamResponse { to: usize, id: u64, result: Result<Vec<u8>, Failure> },
}

/// How a stream request failed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    Refused,
    Failed(String),
}

pub struct Cluster {
    pub nodes: Vec<Swim>,
    /// Crashed processes on live hosts: datagrams to them are lost, stream requests refused.
    pub crashed: HashSet<usize>,
    /// Hosts gone: datagrams to them are lost, stream requests time out.
    pub vanished: HashSet<usize>,
    /// Stalled processes (SIGSTOP): no timers run; datagrams wait for them (as in a socket
    /// buffer); stream requests are accepted by the kernel and time out unanswered.
    pub stalled: HashSet<usize>,
    /// Datagrams that reached a stalled node, delivered when it resumes.
    stall_buffer: Vec<(usize, usize, Vec<u8>)>,
    /// How long a stream request waits for its answer.
    pub stream_timeout: Duration,
    pub events: Vec<(Duration, usize, Event)>,
    /// Timer wake-ups (`handle_timeout` calls) per node.
    pub wakeups: Vec<u64>,
    pub base: Instant,
    pub now: Instant,
    pub loss: f64,
    /// A refusal's SYN and its RST are each lost with probability `loss` (the refusal then
    /// times out like silence), as on a lossy wire; off: refusals always arrive.
    pub lossy_refusals: bool,
    pub latency: Duration,
    queue: BinaryHeap<Reverse<(Instant, u64, Delivery)>>,
    seq: u64,
    rng: rand_chacha::ChaCha8Rng,
}

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250 + 1) as u8], 7946))
}

pub fn local(i: usize, generation: u64) -> LocalNode {
    LocalNode { name: format!("node{i}"), addr: addr(i), tags: Tags::default(), generation }
}

impl Cluster {
    /// `n` nodes, node 0 the seed, every other node joined to it and the cluster converged.
    pub fn new(n: usize, config: Config, seed: u64) -> Self {
        let base = Instant::now();
        let nodes =
            (0..n).map(|i| Swim::new(config.clone(), local(i, 1), seed * 1000 + i as u64, base).unwrap()).collect();
        let mut c = Self {
            nodes,
            crashed: HashSet::new(),
            vanished: HashSet::new(),
            stalled: HashSet::new(),
            stall_buffer: Vec::new(),
            stream_timeout: Duration::from_secs(10),
            events: Vec::new(),
            wakeups: vec![0; n],
            base,
            now: base,
            loss: 0.0,
            lossy_refusals: false,
            latency: Duration::from_micros(500),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        };
        for i in 1..n {
            c.nodes[i].join(&[addr(0)], base);
            c.drain(i);
        }
        c.run_for(Duration::from_secs(5));
        c
    }

    pub fn index(&self, to: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.local_member().addr == to)
    }

    fn push(&mut self, at: Instant, d: Delivery) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, d)));
    }

    pub fn drain(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            let at = self.now + self.latency;
            match t.kind {
                TransmitKind::Datagram => {
                    self.push(at, Delivery::Datagram { from: i, to: t.to, bytes: t.payload.to_vec() })
                }
                TransmitKind::StreamRequest(id) => {
                    self.push(at, Delivery::StreamRequest { from: i, to: t.to, id, bytes: t.payload.to_vec() })
                }
            }
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events.push((self.now - self.base, i, e));
        }
    }

    fn deliver(&mut self, d: Delivery) {
        match d {
            Delivery::Datagram { from, to, bytes } => {
                if self.loss > 0.0 && self.rng.random::<f64>() < self.loss {
                    return;
                }
                let Some(j) = self.index(to) else { return };
                if self.crashed.contains(&j) || self.vanished.contains(&j) {
                    return;
                }
                if self.stalled.contains(&j) {
                    self.stall_buffer.push((from, j, bytes));
                    return;
                }
                let from_addr = self.nodes[from].local_member().addr;
                self.nodes[j].handle_packet(from_addr, &bytes, self.now);
                self.drain(j);
            }
            Delivery::StreamRequest { from, to, id, bytes } => {
                let (answer, at) = match self.index(to) {
                    Some(j) if self.vanished.contains(&j) || self.stalled.contains(&j) => {
                        (Err(Failure::Failed("timed out".into())), self.now + self.stream_timeout)
                    }
                    Some(j) if !self.crashed.contains(&j) => {
                        let from_addr = self.nodes[from].local_member().addr;
                        let a = self.nodes[j].handle_stream_request(from_addr, &bytes, self.now);
                        self.drain(j);
                        (a.map(|b| b.to_vec()).ok_or_else(|| Failure::Failed("closed".into())), self.now + self.latency)
                    }
                    _ if self.lossy_refusals
                        && (self.rng.random::<f64>() < self.loss || self.rng.random::<f64>() < self.loss) =>
                    {
                        (Err(Failure::Failed("timed out".into())), self.now + self.stream_timeout)
                    }
                    _ => (Err(Failure::Refused), self.now + self.latency),
                };
                self.push(at, Delivery::StreamResponse { to: from, id, result: answer });
            }
            Delivery::StreamResponse { to, id, result } => {
                if self.is_down(to) || self.stalled.contains(&to) {
                    return;
                }
                let r = match &result {
                    Ok(bytes) => Ok(&bytes[..]),
                    Err(Failure::Refused) => Err(StreamError::Refused("connection refused".into())),
                    Err(Failure::Failed(reason)) => Err(StreamError::Failed(reason.clone())),
                };
                self.nodes[to].handle_stream_response(id, r, self.now);
                self.drain(to);
            }
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next_timer = (0..self.nodes.len())
                .filter(|&i| !self.is_down(i) && !self.stalled.contains(&i))
                .filter_map(|i| self.nodes[i].poll_timeout().map(|t| (t, i)))
                .min();
            let next_delivery = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let timer_first = match (next_timer, next_delivery) {
                (Some((t, _)), Some(d)) => t <= d,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if timer_first {
                let (t, i) = next_timer.unwrap();
                if t > end {
                    break;
                }
                self.now = self.now.max(t);
                self.wakeups[i] += 1;
                self.nodes[i].handle_timeout(self.now);
                self.drain(i);
            } else {
                let Reverse((t, _, d)) = self.queue.pop().unwrap();
                if t > end {
                    self.queue.push(Reverse((t, 0, d)));
                    break;
                }
                self.now = self.now.max(t);
                self.deliver(d);
            }
        }
        self.now = end;
    }

    fn is_down(&self, i: usize) -> bool {
        self.crashed.contains(&i) || self.vanished.contains(&i)
    }

    /// Stall node `i` (SIGSTOP).
    pub fn stall(&mut self, i: usize) {
        self.stalled.insert(i);
    }

    /// Resume a stalled node (SIGCONT): it reads the datagrams that waited for it, then runs
    /// its timers.
    pub fn resume(&mut self, i: usize) {
        self.stalled.remove(&i);
        let buffered: Vec<_> = self.stall_buffer.iter().filter(|(_, j, _)| *j == i).cloned().collect();
        self.stall_buffer.retain(|(_, j, _)| *j != i);
        for (from, j, bytes) in buffered {
            let from_addr = self.nodes[from].local_member().addr;
            self.nodes[j].handle_packet(from_addr, &bytes, self.now);
            self.drain(j);
        }
        self.nodes[i].handle_timeout(self.now);
        self.drain(i);
    }

    /// The first time any node other than `of` reported it failed, since `since`.
    pub fn first_failure_of(&self, of: usize, since: Duration) -> Option<Duration> {
        let name = format!("node{of}");
        self.events
            .iter()
            .filter(|(t, i, e)| *t >= since && *i != of && matches!(e, Event::MemberFailed(m) if m.name == name))
            .map(|(t, _, _)| *t)
            .next()
    }

    /// Virtual time since the cluster was built.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    pub fn state(&self, observer: usize, of: usize) -> Option<State> {
        self.nodes[observer].member(&format!("node{of}")).map(|m| m.state)
    }

    /// Whether every live node sees `of` in one of `states`.
    pub fn all_see(&self, of: usize, states: &[State]) -> bool {
        (0..self.nodes.len())
            .filter(|&i| i != of && !self.is_down(i) && !self.stalled.contains(&i))
            .all(|i| self.state(i, of).is_some_and(|s| states.contains(&s)))
    }

    /// Run in small steps until `cond` holds; returns the virtual time it took.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Self) -> bool) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            if cond(self) {
                return Some(self.now - start);
            }
            self.run_for(Duration::from_millis(10));
        }
        cond(self).then(|| self.now - start)
    }

    pub fn inject(&mut self, to: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        self.nodes[to].handle_packet(from, bytes, now);
        self.drain(to);
    }

    pub fn payload(bytes: &Bytes) -> Vec<u8> {
        bytes.to_vec()
    }
}
