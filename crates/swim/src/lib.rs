//! The SWIM failure detector with the Lifeguard extensions, as a sans-io state machine.
//!
//! This crate holds the protocol logic of one node: probing, indirect probing, suspicion,
//! dissemination by piggybacked gossip, refutation, push-pull anti-entropy and graceful leave. It
//! does **no IO**: it never opens a socket, reads a clock or touches a global RNG. A driver (the
//! tokio one in `gossip-core`, or the simulator in `gossip-sim`) feeds it inputs and carries out
//! its outputs:
//!
//! ```text
//!             handle_packet(from, bytes, now)        poll_transmit() -> Transmit (datagram
//!  network -> handle_stream_request(from, frame, now)                  or stream request) -> network
//!             handle_stream_response(id, frame, now)
//!  clock   -> handle_timeout(now)                    poll_timeout()  -> when to call handle_timeout
//!  app     -> join / leave / set_tags / broadcast_user   poll_event() -> Event -> app
//! ```
//!
//! After every `handle_*` call or command the driver drains [`Swim::poll_transmit`] and
//! [`Swim::poll_event`] and re-arms its one timer from [`Swim::poll_timeout`].
//!
//! What it promises: nothing read from the network can make it panic; malformed, foreign-cluster,
//! wrong-key and future-version packets are dropped and counted in [`Stats::dropped`] by reason
//! and change no state. What it leaves to the driver: sockets, stream timeouts (a stream request
//! that never answers must be reported with [`Swim::handle_stream_response`] as an error), telling
//! a refused connection ([`StreamError::Refused`]: the evidence that a member's process is gone)
//! from every other failure, and the wall clock (the `generation` of [`LocalNode`]).
//!
//! Failure detection is fast where death is proven and patient where it is not: a probe whose
//! TCP fallback ping was refused (up to `tcp_ping_attempts` pings, each on its own connection,
//! so that a lossy path still carries one refusal) starts a short suspicion at once
//! (`suspicion_unit`; with `proof_suffices` its minimum, without waiting for confirmations); a
//! silent one (a stalled process, a host gone) starts memberlist's (`silent_suspicion_unit`),
//! which a process stopped for a few seconds outlives. The evidence travels in the suspicion, so
//! every node times it the same way (docs/protocol.md §6). Local health stretches how long a
//! probe waits, not the rhythm of answered probes (memberlist's rule).
//!
//! State per node grows with the cluster: about 130 bytes per member it knows when the names are
//! shared ([`Swim::preload`] with the same [`Name`]s), about 175 when it decoded its own copy of
//! each name (the `t30_memory` test bounds both), plus a bounded broadcast queue. A 50-member
//! node holds under 10 KB; a simulator holds 10,000 nodes of 10,000 members in 12.5 GB.
//!
//! The protocol, the timers and how they differ from memberlist and from the SWIM and Lifeguard
//! papers are described in `docs/protocol.md`.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use swim::{Config, LocalNode, Swim, Tags, TransmitKind};
//!
//! let now = Instant::now();
//! let node = |name: &str, port| LocalNode {
//!     name: name.into(),
//!     addr: ([127, 0, 0, 1], port).into(),
//!     tags: Tags::default(),
//!     generation: 1,
//! };
//! let mut a = Swim::new(Config::lan(), node("a", 7001), 1, now).unwrap();
//! let mut b = Swim::new(Config::lan(), node("b", 7002), 2, now).unwrap();
//! // b joins a: one push-pull exchange, carried by the driver over a stream.
//! b.join(&[([127, 0, 0, 1], 7001).into()], now);
//! let t = b.poll_transmit().unwrap();
//! let TransmitKind::StreamRequest(id) = t.kind else { unreachable!() };
//! let answer = a.handle_stream_request(([127, 0, 0, 1], 7002).into(), &t.payload, now).unwrap();
//! b.handle_stream_response(id, Ok(&answer), now);
//! assert_eq!(a.members().count(), 2);
//! assert_eq!(b.members().count(), 2);
//! ```

#![deny(missing_docs)]

mod api;
mod config;
mod convert;
mod peers;
mod probe;
mod suspicion;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gossip_transport::wire::{self, message::Body, stream_message::Body as StreamBody};
use gossip_transport::{encode_message, Codec, Keyring, PacketBuilder};
use membership::{Applied, BroadcastQueue, MemberId, MemberTable};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use membership::{AliveClaim, Incarnation, Member, Name, ProtocolRange, State, Tags, TagsError};

pub use api::{Event, LocalNode, StreamError, StreamId, Transmit, TransmitKind};
pub use config::{Config, ConfigError, Lifeguard};
pub use convert::{MAX_NAME_LEN, PROTOCOL};

use convert::ConvertError;
use peers::PeerSet;
use probe::{Awareness, Probe, ProbePhase, Relay, RttEstimate, TcpPing};
use suspicion::{Evidence, Suspicion, Timings};

/// Counters of what the node did; read with [`Swim::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Bytes of datagrams sent.
    pub bytes_sent: u64,
    /// Datagrams received (valid or not).
    pub packets_received: u64,
    /// Bytes of datagrams received.
    pub bytes_received: u64,
    /// Stream requests started.
    pub streams_sent: u64,
    /// Bytes of stream frames sent (requests and answers).
    pub stream_bytes_sent: u64,
    /// Messages sent by type (`ping`, `ack`, `alive`, ...), piggybacked ones included.
    pub messages_sent: BTreeMap<&'static str, u64>,
    /// Messages received by type.
    pub messages_received: BTreeMap<&'static str, u64>,
    /// Packets and messages dropped, by reason (decode errors, wrong cluster, ...).
    pub dropped: BTreeMap<&'static str, u64>,
    /// Probes started.
    pub probes: u64,
    /// Probes that ended without an ack.
    pub probes_failed: u64,
    /// Suspicions this node started.
    pub suspicions: u64,
    /// Of those, the ones whose death was proven (the target's TCP port refused the connection).
    pub suspicions_proven: u64,
    /// Times this node refuted news about itself.
    pub refutations: u64,
    /// Members this node declared dead.
    pub declared_dead: u64,
    /// Push-pull exchanges started with a failed member (reconnection attempts).
    pub reconnects: u64,
}

/// [`Swim::broadcast_user`] refused a payload; nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload of {len} bytes is over the limit of {max} bytes for one gossip message")]
pub struct PayloadTooLarge {
    /// Size of the refused payload.
    pub len: usize,
    /// The limit.
    pub max: usize,
}

/// Why [`Swim::force_leave`] refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForceLeaveError {
    /// No member of that name is known.
    #[error("no member named {0:?}")]
    Unknown(String),
    /// A node cannot force itself out; use leave.
    #[error("cannot force-leave the local node; use leave")]
    Local,
}

/// What a stream request was for.
#[derive(Debug, Clone, Copy)]
enum StreamPurpose {
    Join(SocketAddr),
    PushPull,
    TcpPing(u32),
}

/// Prefix of broadcast-queue keys of application payloads, so that they never collide with
/// node names.
const USER_KEY_PREFIX: char = '\u{0}';

/// A relay gives up on the target after this fraction of its direct-ack wait, so that its nack
/// reaches the requester before the requester's probe period ends.
const RELAY_TIMEOUT_FRACTION: f64 = 0.8;

/// One node's failure detector and membership state. See the crate docs.
#[derive(Debug)]
pub struct Swim {
    config: Config,
    codec: Codec,
    rng: ChaCha8Rng,
    table: MemberTable,
    broadcasts: BroadcastQueue,
    /// Alive and suspect members other than this node.
    live: PeerSet,
    /// Members declared dead, still sent gossip until the instant given.
    recently_dead: Vec<(Name, SocketAddr, Instant)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    awareness: Awareness,
    /// Round trips of direct acks: how long a probe waits before asking relays.
    rtt: RttEstimate,
    seq: u32,
    /// This round's probe targets, in order; a member removed from the table is replaced by
    /// the local node's id (skipped), so that a reused id never stands for another member.
    probe_order: Vec<MemberId>,
    probe_cursor: usize,
    next_probe: Instant,
    probe: Option<Probe>,
    relays: BTreeMap<u32, Relay>,
    suspicions: BTreeMap<String, Suspicion>,
    next_gossip: Instant,
    next_push_pull: Option<Instant>,
    next_reconnect: Option<Instant>,
    next_reap: Instant,
    streams: HashMap<StreamId, StreamPurpose>,
    next_stream: StreamId,
    leave_deadline: Option<Instant>,
    left: bool,
    /// Sent in every ack this node gives (network coordinates of a higher layer).
    ack_payload: Bytes,
    /// Sent in every push-pull exchange (event clocks of a higher layer).
    local_state: Bytes,
}

impl Swim {
    /// A node that knows only itself. `seed` seeds its RNG; `now` is the current time.
    pub fn new(config: Config, local: LocalNode, seed: u64, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let codec = Codec::new(&config.label).map_err(|_| ConfigError::Invalid {
            field: "label",
            value: format!("{:?}", config.label),
            rule: "must be at most 255 bytes",
        })?;
        if convert::check_name(&local.name).is_err() {
            return Err(ConfigError::Invalid {
                field: "name",
                value: format!("{:?}", local.name),
                rule: "must be 1 to 128 bytes",
            });
        }
        let claim = AliveClaim {
            name: local.name.into(),
            addr: local.addr,
            incarnation: Incarnation { generation: local.generation, incarnation: 0 },
            tags: local.tags,
            protocol: PROTOCOL,
        };
        let own_alive = encode_message(&wire::Message { body: Some(Body::Alive(convert::alive_to_wire(&claim))) });
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Spread the first probe and gossip over one period so that nodes started together do not
        // probe in lockstep.
        let first_probe = now + config.probe_interval.mul_f64(rng.random::<f64>());
        let first_gossip = now + config.gossip_interval.mul_f64(rng.random::<f64>());
        let next_push_pull = (!config.push_pull_interval.is_zero())
            .then(|| now + config.push_pull_interval.mul_f64(0.5 + rng.random::<f64>()));
        let next_reconnect = (!config.reconnect_interval.is_zero())
            .then(|| now + config.reconnect_interval.mul_f64(0.5 + rng.random::<f64>()));
        // Announce ourselves by gossip as soon as there is anyone to tell (as memberlist's
        // setAlive): a join's push-pull reaches one seed, gossip reaches everyone.
        let mut broadcasts = BroadcastQueue::new(config.retransmit_mult, config.max_broadcasts);
        broadcasts.push(Some(&claim.name), own_alive);
        Ok(Self {
            broadcasts,
            awareness: Awareness::new(config.lifeguard.awareness_max_multiplier),
            rtt: RttEstimate::new(config.probe_timeout_min, config.probe_timeout),
            table: MemberTable::new(claim, now),
            codec,
            rng,
            live: PeerSet::default(),
            recently_dead: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            seq: 0,
            probe_order: Vec::new(),
            probe_cursor: 0,
            next_probe: first_probe,
            probe: None,
            relays: BTreeMap::new(),
            suspicions: BTreeMap::new(),
            next_gossip: first_gossip,
            next_push_pull,
            next_reconnect,
            next_reap: now + config.probe_interval,
            streams: HashMap::new(),
            next_stream: 0,
            leave_deadline: None,
            left: false,
            ack_payload: Bytes::new(),
            local_state: Bytes::new(),
            config,
        })
    }

    /// Start from a known membership: add every claim as an alive member, as if this node had
    /// learned of it and the news had long since spread. Nothing is reported or gossiped (no
    /// [`Event::MemberJoined`], nothing queued), and each member joins the probe rotation at the
    /// next round. Claims about this node, and claims the table would not take as new (a
    /// duplicate, a name known at another address), are skipped.
    ///
    /// For simulations and tests that begin from a formed cluster (`gossip-sim scenario
    /// --preformed`); a real node learns its members by [`Swim::join`]. Give every node the same
    /// [`Name`]s and the cluster's names are held once, not once per node.
    pub fn preload(&mut self, members: impl IntoIterator<Item = AliveClaim>, now: Instant) {
        let members = members.into_iter();
        self.table.reserve(members.size_hint().0);
        for claim in members {
            if claim.name == *self.table.local_name() {
                continue;
            }
            if let Applied::Changed { member, previous: None, .. } = self.table.apply_alive(claim, now) {
                if let Some(id) = self.table.id(&member.name) {
                    self.live.insert(id);
                }
            }
        }
    }

    /// Encrypt with this keyring from now on (every installed key is tried on receive, the
    /// primary key seals).
    pub fn set_keyring(&mut self, keyring: Keyring) {
        self.codec = self.codec.clone().with_keyring(keyring);
    }

    /// The keyring in force, if encryption is on: install, use and remove keys through it.
    pub fn keyring_mut(&mut self) -> Option<&mut Keyring> {
        self.codec.keyring_mut()
    }

    /// Start push-pull exchanges with each seed; [`Event::JoinSucceeded`] / [`Event::JoinFailed`]
    /// report each outcome.
    pub fn join(&mut self, seeds: &[SocketAddr], now: Instant) {
        let _ = now;
        for &seed in seeds {
            let msg = self.push_pull_message(true);
            self.stream_request(seed, &msg, StreamPurpose::Join(seed));
        }
    }

    /// Leave gracefully: broadcast it; [`Event::LeaveComplete`] tells when it has gone out (or
    /// when `leave_propagate_max` has passed). The node stops probing but keeps answering probes
    /// until the driver stops calling it.
    pub fn leave(&mut self, now: Instant) {
        if self.left {
            if self.leave_deadline.is_none() {
                self.events.push_back(Event::LeaveComplete);
            }
            return;
        }
        self.left = true;
        self.probe = None;
        let incarnation = self.table.leave_local(now);
        let name = self.table.local().name.to_string();
        let msg = Body::Dead(wire::Dead {
            node: name.clone(),
            generation: incarnation.generation,
            incarnation: incarnation.incarnation,
            from: name.clone(),
            left: true,
        });
        self.broadcast(&name, msg);
        if self.live.len() == 0 {
            self.events.push_back(Event::LeaveComplete);
            return;
        }
        // Send it at once rather than waiting for the next gossip round.
        self.gossip(now);
        self.leave_deadline = Some(now + self.config.leave_propagate_max);
    }

    /// Serf's `force-leave`: declare a member left on its behalf and spread it (for a failed node
    /// that will not come back). A live member that hears it refutes and stays. With `prune`, the
    /// member is also removed from this node's table at once ([`Event::MemberReaped`]) instead
    /// of staying as a tombstone until `left_reap`.
    pub fn force_leave(&mut self, name: &str, prune: bool, now: Instant) -> Result<(), ForceLeaveError> {
        if name == self.table.local().name {
            return Err(ForceLeaveError::Local);
        }
        let Some(member) = self.table.get(name) else {
            return Err(ForceLeaveError::Unknown(name.to_owned()));
        };
        let dead = wire::Dead {
            node: name.to_owned(),
            generation: member.incarnation.generation,
            incarnation: member.incarnation.incarnation,
            from: self.table.local().name.to_string(),
            left: true,
        };
        let addr = member.addr;
        self.on_dead(&dead, SocketAddr::from(([0, 0, 0, 0], 0)), now);
        // Tell the member itself: if it is alive after all, it refutes at once.
        self.send(addr, vec![Body::Dead(dead)]);
        if prune {
            if let Some(id) = self.table.id(name) {
                self.live.remove(id);
            }
            if let Some(member) = self.table.remove(name) {
                self.forget_removed_probe_targets();
                self.recently_dead.retain(|(n, _, _)| n != name);
                self.suspicions.remove(name);
                self.events.push_back(Event::MemberReaped(member));
            }
        }
        Ok(())
    }

    /// Change the local tags and broadcast them.
    pub fn set_tags(&mut self, tags: Tags, now: Instant) {
        let _ = now;
        // After a leave nothing is broadcast (the tags go out with a rejoin's claim).
        if let Some(claim) = self.table.set_local_tags(tags) {
            let name = claim.name.clone();
            self.broadcast(&name, Body::Alive(convert::alive_to_wire(&claim)));
        }
    }

    /// Broadcast an application payload by gossip. With `key`, a newer payload with the same key
    /// replaces one still queued. Receivers get [`Event::User`]; they do not re-gossip it (a
    /// higher layer decides that, after de-duplication).
    ///
    /// A payload must fit one packet with room to spare for the probe it rides on: at most
    /// [`Swim::max_user_payload`] bytes; a larger one is refused and nothing is queued.
    pub fn broadcast_user(&mut self, key: Option<&str>, payload: Bytes) -> Result<(), PayloadTooLarge> {
        let max = self.max_user_payload();
        if payload.len() > max {
            return Err(PayloadTooLarge { len: payload.len(), max });
        }
        let encoded = encode_message(&wire::Message { body: Some(Body::User(wire::User { payload })) });
        let key = key.map(|k| format!("{USER_KEY_PREFIX}{k}"));
        self.broadcasts.push(key.as_deref(), encoded);
        Ok(())
    }

    /// Send an application payload to one node now, in one datagram (with piggybacked gossip).
    /// Delivery is best effort, as for any datagram.
    pub fn send_user(&mut self, to: SocketAddr, payload: Bytes) -> Result<(), PayloadTooLarge> {
        let max = self.max_user_payload();
        if payload.len() > max {
            return Err(PayloadTooLarge { len: payload.len(), max });
        }
        self.send(to, vec![Body::User(wire::User { payload })]);
        Ok(())
    }

    /// As [`Swim::send_user`], without piggybacked gossip. For replies to a node that most
    /// likely holds the queued news already (the serf layer's query acks and responses go to
    /// the node that just gossiped the query): piggybacking would spend the news's limited
    /// transmissions on a node that has it, instead of on gossip to the others.
    pub fn send_user_alone(&mut self, to: SocketAddr, payload: Bytes) -> Result<(), PayloadTooLarge> {
        let max = self.max_user_payload();
        if payload.len() > max {
            return Err(PayloadTooLarge { len: payload.len(), max });
        }
        self.send_with(to, None, vec![Body::User(wire::User { payload })], false);
        Ok(())
    }

    /// Set the payload this node puts in every ack it sends (for example its network
    /// coordinate); the prober gets it in [`Event::ProbeAck`].
    pub fn set_ack_payload(&mut self, payload: Bytes) {
        self.ack_payload = payload;
    }

    /// Set the opaque state this node sends in every push-pull exchange (for example the event
    /// clocks of a higher layer); the other side gets it in [`Event::RemoteState`].
    pub fn set_local_state(&mut self, state: Bytes) {
        self.local_state = state;
    }

    /// The largest payload [`Swim::broadcast_user`] accepts: half the packet budget less the
    /// envelope, so that it can ride on any probe or ack.
    pub fn max_user_payload(&self) -> usize {
        (self.config.packet_budget / 2).saturating_sub(self.codec.overhead() + 16)
    }

    /// A datagram arrived.
    pub fn handle_packet(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        self.stats.packets_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        match self.codec.decode_packet(bytes) {
            Ok(messages) => {
                for message in messages {
                    match message.body {
                        Some(body) => self.handle_message(from, body, now),
                        None => self.drop_count("empty_message"),
                    }
                }
            }
            Err(e) => self.drop_count(e.reason()),
        }
    }

    /// A stream frame arrived from a peer that opened a stream; returns the frame to answer with
    /// (`None`: close the stream without an answer). `from` is the connection's peer address
    /// (for TCP, usually an ephemeral port, not the peer's gossip address); it is only logged.
    #[must_use]
    pub fn handle_stream_request(&mut self, from: SocketAddr, frame: &[u8], now: Instant) -> Option<Bytes> {
        let msg = match self.codec.decode_stream(frame) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!(%from, reason = e.reason(), "stream request refused");
                self.drop_count(e.reason());
                return None;
            }
        };
        let answer = match msg.body? {
            StreamBody::PushPull(pp) => {
                self.count_received("push_pull");
                self.merge(&pp, pp.join, now);
                self.push_pull_message(false)
            }
            StreamBody::Ping(ping) => {
                self.count_received("ping");
                if ping.target != self.table.local().name {
                    self.drop_count("wrong_target");
                    return None;
                }
                wire::StreamMessage {
                    body: Some(StreamBody::Ack(wire::Ack { seq: ping.seq, payload: self.ack_payload.clone() })),
                }
            }
            StreamBody::Ack(_) | StreamBody::Error(_) => {
                self.drop_count("unexpected_stream_message");
                return None;
            }
        };
        let frame = self.codec.encode_stream(&answer, &mut self.rng);
        self.stats.stream_bytes_sent += frame.len() as u64;
        Some(frame)
    }

    /// The answer (or failure) of a [`TransmitKind::StreamRequest`]. Say whether a failure was a
    /// refused connection ([`StreamError::Refused`]): for a TCP fallback ping that is proof that
    /// the target's process is gone, and its suspicion is short; any other failure is silence.
    pub fn handle_stream_response(&mut self, id: StreamId, response: Result<&[u8], StreamError>, now: Instant) {
        let Some(purpose) = self.streams.remove(&id) else { return };
        let decoded =
            response.and_then(|frame| self.codec.decode_stream(frame).map_err(|e| StreamError::Failed(e.to_string())));
        match (purpose, decoded) {
            (StreamPurpose::Join(seed), Ok(wire::StreamMessage { body: Some(StreamBody::PushPull(pp)) })) => {
                // The answer to our own join: a join for the layer above too, whatever the flag
                // of the answer says (it describes the answering side's message).
                self.merge(&pp, true, now);
                self.schedule_settle_push_pull(now);
                self.events.push_back(Event::JoinSucceeded { seed });
            }
            (StreamPurpose::Join(seed), Ok(other)) => {
                let reason = match other.body {
                    Some(StreamBody::Error(e)) => format!("refused: {e}"),
                    _ => "unexpected answer".to_owned(),
                };
                self.events.push_back(Event::JoinFailed { seed, reason });
            }
            (StreamPurpose::Join(seed), Err(e)) => {
                self.events.push_back(Event::JoinFailed { seed, reason: e.reason().to_owned() })
            }
            (StreamPurpose::PushPull, Ok(wire::StreamMessage { body: Some(StreamBody::PushPull(pp)) })) => {
                self.merge(&pp, false, now);
            }
            (StreamPurpose::PushPull, _) => self.drop_count("push_pull_failed"),
            (StreamPurpose::TcpPing(seq), Ok(wire::StreamMessage { body: Some(StreamBody::Ack(ack)) })) => {
                if ack.seq == seq {
                    if let Some(probe) = self.probe.as_mut().filter(|p| p.seq == seq) {
                        probe.phase = ProbePhase::Acked;
                    }
                }
            }
            (StreamPurpose::TcpPing(seq), outcome) => {
                let proof_suffices = self.config.lifeguard.proof_suffices;
                if let Some(probe) = self.probe.as_mut().filter(|p| p.seq == seq) {
                    probe.tcp_streams.retain(|&s| s != id);
                    if matches!(outcome, Err(StreamError::Refused(_))) {
                        probe.tcp = TcpPing::Refused;
                        probe.next_tcp = None;
                    } else if probe.tcp == TcpPing::Pending && probe.tcp_streams.is_empty() && probe.next_tcp.is_none()
                    {
                        probe.tcp = TcpPing::Failed;
                    }
                    let proven = probe.tcp == TcpPing::Refused && proof_suffices;
                    let all_nacked = probe.nacks.len() == probe.relays.len() && probe.tcp.is_settled();
                    if probe.phase == ProbePhase::Indirect && (proven || all_nacked) {
                        // Proof needs no relay (`proof_suffices`), or every relay has nacked
                        // already: this answer was the last word.
                        self.finish_probe(now);
                    }
                }
            }
        }
    }

    /// Time passed: run the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // This node's probe.
        if let Some(probe) = &self.probe {
            if probe.phase == ProbePhase::Direct && now >= probe.indirect_at {
                self.start_indirect(now);
            } else if probe.phase == ProbePhase::Indirect && probe.next_tcp.is_some_and(|t| now >= t) {
                self.send_tcp_ping(now);
            }
        }
        if self.probe.as_ref().is_some_and(|p| now >= p.ends_at) {
            self.finish_probe(now);
        }
        // The next probe is due; one still waiting for its answer (its period stretched by
        // local health) runs to its end first, as memberlist's probe loop does.
        let unanswered = self.probe.as_ref().is_some_and(|p| p.phase != ProbePhase::Acked && now < p.ends_at);
        if !self.left && now >= self.next_probe && !unanswered {
            if self.probe.is_some() {
                self.finish_probe(now);
            }
            self.start_probe(now);
        }
        // Indirect probes relayed for others.
        if !self.relays.is_empty() {
            let expired: Vec<u32> = self.relays.iter().filter(|(_, r)| now >= r.deadline).map(|(&s, _)| s).collect();
            for seq in expired {
                if let Some(relay) = self.relays.remove(&seq) {
                    if relay.want_nack {
                        let nack = Body::Nack(wire::Nack { seq: relay.requester_seq });
                        self.send(relay.requester, vec![nack]);
                    }
                }
            }
        }
        // Suspicions whose time is up.
        if !self.suspicions.is_empty() {
            let due: Vec<String> =
                self.suspicions.iter().filter(|(_, s)| now >= s.deadline()).map(|(n, _)| n.clone()).collect();
            for name in due {
                self.suspicion_expired(&name, now);
            }
        }
        if now >= self.next_gossip {
            self.gossip(now);
            self.next_gossip = now + self.config.gossip_interval;
        }
        if let Some(at) = self.next_push_pull {
            if now >= at {
                self.start_push_pull();
                // Jitter, so that nodes started together do not exchange in step.
                let jitter = 0.75 + 0.5 * self.rng.random::<f64>();
                self.next_push_pull = Some(now + self.push_pull_interval().mul_f64(jitter));
            }
        }
        if let Some(at) = self.next_reconnect {
            if now >= at {
                self.reconnect();
                self.next_reconnect = Some(now + self.config.reconnect_interval);
            }
        }
        // Late notices to suspects, from nodes that have not heard a refutation yet.
        let notices: Vec<(String, SocketAddr, Incarnation, Evidence)> = self
            .suspicions
            .iter_mut()
            .filter(|(_, s)| s.next_notice().is_some_and(|t| now >= t))
            .filter_map(|(name, s)| {
                s.notice_sent();
                let m = self.table.get(name)?;
                Some((name.clone(), m.addr, s.incarnation, s.evidence))
            })
            .collect();
        for (name, addr, incarnation, evidence) in notices {
            let local = self.table.local().name.clone();
            let body = self.suspect_body(&name, incarnation, &local, evidence);
            self.send_to_member(addr, Some(&name), vec![body]);
        }
        if now >= self.next_reap {
            self.reap(now);
            self.next_reap = now + self.config.probe_interval;
        }
        if let Some(deadline) = self.leave_deadline {
            if now >= deadline || self.broadcasts.is_empty() {
                self.leave_deadline = None;
                self.events.push_back(Event::LeaveComplete);
            }
        }
    }

    /// The next thing to send. Call until `None` after every `handle_*` and command.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let next = self.transmits.pop_front();
        if next.is_none() {
            shrink_drained(&mut self.transmits);
        }
        next
    }

    /// The next event. Call until `None` after every `handle_*` and command.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let next = self.events.pop_front();
        if next.is_none() {
            shrink_drained(&mut self.events);
        }
        next
    }

    /// When [`Swim::handle_timeout`] must be called next (it may be in the past: call it now).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            if next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        };
        // Reaping runs at most once a probe interval, and only when a tombstone is due: an
        // idle node with none sleeps through it.
        if let Some(due) = self.table.next_reap(self.config.dead_reap, self.config.left_reap) {
            consider(due.max(self.next_reap));
        }
        if !self.left {
            // Not before the current probe has ended, unless it was answered.
            let busy_until = self.probe.as_ref().filter(|p| p.phase != ProbePhase::Acked).map(|p| p.ends_at);
            consider(busy_until.map_or(self.next_probe, |t| t.max(self.next_probe)));
        }
        if let Some(p) = &self.probe {
            if p.phase == ProbePhase::Direct {
                consider(p.indirect_at);
            }
            if let Some(t) = p.next_tcp.filter(|_| p.phase == ProbePhase::Indirect) {
                consider(t);
            }
            consider(p.ends_at);
        }
        for r in self.relays.values() {
            consider(r.deadline);
        }
        for s in self.suspicions.values() {
            consider(s.deadline());
            if let Some(t) = s.next_notice() {
                consider(t);
            }
        }
        if !self.broadcasts.is_empty() || self.suspicions.values().any(|s| s.originated_here) {
            consider(self.next_gossip);
        }
        if let Some(t) = self.next_push_pull {
            consider(t);
        }
        if let Some(t) = self.next_reconnect {
            consider(t);
        }
        if let Some(t) = self.leave_deadline {
            consider(t);
        }
        next
    }

    /// All members, tombstones included, in name order (sorted on each call: `O(n log n)`).
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.table.iter()
    }

    /// All members, tombstones included, in no particular order (a deterministic one): `O(n)`,
    /// where [`Swim::members`] sorts by name.
    pub fn members_unordered(&self) -> impl Iterator<Item = &Member> {
        self.table.iter_unordered()
    }

    /// One member by name.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.table.get(name)
    }

    /// This node.
    pub fn local_member(&self) -> &Member {
        self.table.local()
    }

    /// Members alive or suspect, this node included.
    pub fn live_count(&self) -> usize {
        self.table.live_count()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current local health multiplier (1 = healthy, up to
    /// `lifeguard.awareness_max_multiplier`).
    pub fn health_multiplier(&self) -> u32 {
        self.awareness.multiplier()
    }

    // ---------------------------------------------------------------------------------------
    // Messages

    fn handle_message(&mut self, from: SocketAddr, body: Body, now: Instant) {
        self.count_received(message_kind(&body));
        match body {
            Body::Ping(ping) => self.on_ping(from, ping, now),
            Body::IndirectPing(req) => self.on_indirect_ping(from, req, now),
            Body::Ack(ack) => self.on_ack(from, ack, now),
            Body::Nack(nack) => self.on_nack(from, nack.seq, now),
            Body::Alive(alive)
                if self.is_stale_alive(
                    &alive.node,
                    alive.addr.as_ref(),
                    alive.generation,
                    alive.incarnation,
                    &alive.tags,
                ) => {}
            Body::Alive(alive) => match convert::alive_from_wire(&alive) {
                Ok(claim) => self.on_alive(claim, Some(from), now),
                Err(e) => self.drop_count(e.reason()),
            },
            Body::Suspect(s) => self.on_suspect_message(&s, from, now),
            Body::Dead(d) => {
                self.on_dead(&d, from, now);
            }
            Body::User(user) => self.events.push_back(Event::User(user.payload)),
        }
    }

    /// Whether an `alive` message is one the table would ignore: about another member, known,
    /// at the same address (or not live), at an incarnation not newer than known, and valid
    /// (without tags, so there are none to check). Most `alive` messages are repeats while news
    /// spreads; this answers them without building a claim.
    fn is_stale_alive(
        &self,
        node: &str,
        addr: Option<&wire::Address>,
        generation: u64,
        incarnation: u64,
        tags: &[wire::Tag],
    ) -> bool {
        if !tags.is_empty() {
            return false;
        }
        let Some(id) = self.table.id(node).filter(|&id| id != self.table.local_id()) else {
            return false;
        };
        let (Some(member), Ok(addr)) = (self.table.member(id), convert::socket_addr(addr)) else {
            return false;
        };
        (member.addr == addr || !member.is_live())
            && convert::incarnation(generation, incarnation) <= member.incarnation
    }

    fn on_ping(&mut self, from: SocketAddr, ping: wire::Ping, now: Instant) {
        if ping.target != self.table.local().name {
            self.drop_count("wrong_target");
            return;
        }
        if let Some(buddy) = &ping.buddy {
            self.on_suspect_message(buddy, from, now);
        }
        self.send(from, vec![Body::Ack(wire::Ack { seq: ping.seq, payload: self.ack_payload.clone() })]);
    }

    fn on_indirect_ping(&mut self, from: SocketAddr, req: wire::IndirectPing, now: Instant) {
        let target_addr = match convert::socket_addr(req.target_addr.as_ref()) {
            Ok(a) => a,
            Err(e) => return self.drop_count(e.reason()),
        };
        let seq = self.next_seq();
        self.relays.insert(
            seq,
            Relay {
                requester: from,
                requester_seq: req.seq,
                want_nack: req.want_nack && self.config.lifeguard.nack,
                // Answer within the requester's window: it asked after its own probe timeout and
                // decides at the end of its probe period, one probe timeout or more later.
                deadline: now + self.rtt.timeout().mul_f64(RELAY_TIMEOUT_FRACTION),
            },
        );
        let ping = wire::Ping { seq, target: req.target, source: self.table.local().name.to_string(), buddy: None };
        self.send(target_addr, vec![Body::Ping(ping)]);
    }

    fn on_ack(&mut self, from: SocketAddr, ack: wire::Ack, now: Instant) {
        if let Some(probe) = self.probe.as_mut().filter(|p| p.seq == ack.seq) {
            if probe.phase == ProbePhase::Acked {
                return;
            }
            if probe.phase == ProbePhase::Direct {
                self.awareness.apply(-1);
            }
            probe.phase = ProbePhase::Acked;
            if from == probe.target_addr {
                let rtt = now - probe.sent_at;
                self.rtt.sample(rtt);
                let event = Event::ProbeAck { node: probe.target.to_string(), rtt, payload: ack.payload };
                self.events.push_back(event);
            }
            return;
        }
        if let Some(relay) = self.relays.remove(&ack.seq) {
            let ack = Body::Ack(wire::Ack { seq: relay.requester_seq, payload: ack.payload });
            self.send(relay.requester, vec![ack]);
        }
    }

    fn on_nack(&mut self, from: SocketAddr, seq: u32, now: Instant) {
        let Some(probe) = self.probe.as_mut().filter(|p| p.seq == seq && p.phase == ProbePhase::Indirect) else {
            return;
        };
        if let Some((name, _)) = probe.relays.iter().find(|(_, a)| *a == from) {
            probe.nacks.insert(name.clone());
        }
        if probe.nacks.len() == probe.relays.len() && probe.tcp.is_settled() {
            // Every relay tried and failed, and so did TCP: waiting for the end of the period
            // would add nothing.
            self.finish_probe(now);
        }
    }

    fn on_alive(&mut self, claim: AliveClaim, from: Option<SocketAddr>, now: Instant) {
        match self.table.apply_alive(claim.clone(), now) {
            Applied::Changed { previous, member, tags_changed } => {
                let wire_alive = convert::alive_to_wire(&claim);
                let name = member.name.clone();
                if self.suspicions.get(name.as_str()).is_some_and(|s| s.incarnation < member.incarnation) {
                    self.suspicions.remove(name.as_str());
                }
                let id = self.table.id(&name).expect("a member just added or changed is in the table");
                self.live.insert(id);
                self.recently_dead.retain(|(n, _, _)| *n != name);
                let event = match previous {
                    None | Some(State::Dead | State::Left) => {
                        self.add_probe_target(id);
                        Event::MemberJoined(member)
                    }
                    Some(State::Suspect) => Event::MemberRecovered(member),
                    Some(State::Alive) => {
                        let _ = tags_changed;
                        Event::MemberUpdated(member)
                    }
                };
                self.events.push_back(event);
                self.broadcast(&name, Body::Alive(wire_alive));
            }
            Applied::Refuted(local) => self.refute(local, from),
            Applied::Conflict { existing, claim } => {
                self.drop_count("name_conflict");
                self.events.push_back(Event::NameConflict { existing, claimed_addr: claim.addr });
            }
            _ => {}
        }
    }

    fn on_suspect_message(&mut self, s: &wire::Suspect, from: SocketAddr, now: Instant) {
        if convert::check_name(&s.node).is_err() || convert::check_name(&s.from).is_err() {
            return self.drop_count(ConvertError::Name.reason());
        }
        let incarnation = convert::incarnation(s.generation, s.incarnation);
        // Unknown values (a newer peer's) and an older peer's absent field: silence.
        let evidence = match wire::Evidence::try_from(s.evidence) {
            Ok(wire::Evidence::Refused) => Evidence::Refused,
            _ => Evidence::Silence,
        };
        self.suspect(&s.node, incarnation, &s.from, evidence, &[], Some(from), now);
    }

    /// Apply a suspicion of `name` reported by `from` (this node's name when it is the prober)
    /// on `evidence`, with `extra` independent confirmations (relays that nacked).
    #[allow(clippy::too_many_arguments)] // the inputs of one rule; a struct would only rename them
    fn suspect(
        &mut self,
        name: &str,
        incarnation: Incarnation,
        from: &str,
        evidence: Evidence,
        extra: &[String],
        informer: Option<SocketAddr>,
        now: Instant,
    ) {
        let local_name = self.table.local().name.clone();
        match self.table.apply_suspect(name, incarnation, now) {
            Applied::Changed { member, .. } => {
                let originated_here = from == local_name;
                let timings = self.suspicion_timings(evidence);
                let mut suspicion = Suspicion::new(member.incarnation, from, originated_here, evidence, timings, now);
                for confirmer in extra {
                    suspicion.confirm(confirmer);
                }
                self.suspicions.insert(name.to_owned(), suspicion);
                if originated_here {
                    self.stats.suspicions += 1;
                    if evidence == Evidence::Refused {
                        self.stats.suspicions_proven += 1;
                    }
                    if self.config.lifeguard.buddy {
                        // Tell the suspect directly, so that a live one refutes at once.
                        let notice = self.suspect_body(name, member.incarnation, from, evidence);
                        self.send(member.addr, vec![notice]);
                    }
                }
                let body = self.suspect_body(name, member.incarnation, from, evidence);
                self.broadcast(name, body);
                self.events.push_back(Event::MemberSuspected(member));
            }
            Applied::Refuted(local) => self.refute(local, informer),
            _ if name == local_name && !self.left => self.answer_stale_news(informer),
            _ => {
                let proven = self.suspicion_timings(Evidence::Refused);
                let confirmed = match self.suspicions.get_mut(name) {
                    Some(s) if s.incarnation == incarnation => {
                        // Proof for a silent suspicion shortens it (and is news to pass on).
                        let mut any = evidence == Evidence::Refused && s.prove(proven);
                        any |= s.confirm(from);
                        for confirmer in extra {
                            any |= s.confirm(confirmer);
                        }
                        any.then_some(s.evidence)
                    }
                    _ => None,
                };
                if let Some(evidence) = confirmed {
                    // Re-gossip so that others count this confirmation (and the proof) too.
                    let body = self.suspect_body(name, incarnation, from, evidence);
                    self.broadcast(name, body);
                }
            }
        }
    }

    /// The suspicion timings for a cluster of this node's size on `evidence`: proven death
    /// counts in `suspicion_unit`, silence in `silent_suspicion_unit`.
    fn suspicion_timings(&self, evidence: Evidence) -> Timings {
        let n = self.table.live_count();
        let c = &self.config;
        let unit = match evidence {
            Evidence::Refused => c.suspicion_unit,
            Evidence::Silence => c.silent_suspicion_unit,
        };
        let min = suspicion::min_timeout(c.suspicion_mult, n, unit);
        let max = min * c.suspicion_max_mult;
        let mut expected = c.suspicion_mult.saturating_sub(2);
        if (n as u32).saturating_sub(2) < expected || !c.lifeguard.dynamic_suspicion {
            expected = 0;
        }
        if evidence == Evidence::Refused && c.lifeguard.proof_suffices {
            // Proof needs no confirmation: the minimum at once.
            expected = 0;
        }
        Timings { min, max, expected }
    }

    fn suspicion_expired(&mut self, name: &str, now: Instant) {
        let Some(suspicion) = self.suspicions.remove(name) else { return };
        let still_suspect =
            self.table.get(name).is_some_and(|m| m.state == State::Suspect && m.incarnation == suspicion.incarnation);
        if !still_suspect {
            return;
        }
        let local = self.table.local().name.to_string();
        let dead = wire::Dead {
            node: name.to_owned(),
            generation: suspicion.incarnation.generation,
            incarnation: suspicion.incarnation.incarnation,
            from: local,
            left: false,
        };
        if self.on_dead(&dead, SocketAddr::from(([0, 0, 0, 0], 0)), now) {
            self.stats.declared_dead += 1;
        }
    }

    /// Apply a `dead` message; returns whether it changed the table.
    fn on_dead(&mut self, d: &wire::Dead, from: SocketAddr, now: Instant) -> bool {
        if convert::check_name(&d.node).is_err() {
            self.drop_count(ConvertError::Name.reason());
            return false;
        }
        let incarnation = convert::incarnation(d.generation, d.incarnation);
        match self.table.apply_dead(&d.node, incarnation, d.left, now) {
            Applied::Changed { member, .. } => {
                self.suspicions.remove(member.name.as_str());
                if let Some(id) = self.table.id(&member.name) {
                    self.live.remove(id);
                }
                if member.state == State::Dead {
                    self.recently_dead.push((member.name.clone(), member.addr, now + self.config.gossip_to_dead));
                }
                self.broadcast(&member.name, Body::Dead(d.clone()));
                let event =
                    if member.state == State::Left { Event::MemberLeft(member) } else { Event::MemberFailed(member) };
                self.events.push_back(event);
                // A verdict is news everyone is waiting for (they hold the member as suspect on a
                // long timer): pass it on now rather than at the next gossip tick. This spends the
                // same retransmissions, only earlier.
                self.gossip(now);
                self.next_gossip = now + self.config.gossip_interval;
                true
            }
            Applied::Refuted(local) => {
                self.refute(local, Some(from).filter(|a| a.port() != 0));
                false
            }
            _ => {
                if d.node == self.table.local().name && !self.left {
                    self.answer_stale_news(Some(from).filter(|a| a.port() != 0));
                }
                false
            }
        }
    }

    /// News said this node is suspect or dead: the table raised our incarnation; tell everyone,
    /// and the informer directly.
    fn refute(&mut self, local: AliveClaim, informer: Option<SocketAddr>) {
        self.stats.refutations += 1;
        self.awareness.apply(1);
        let body = Body::Alive(convert::alive_to_wire(&local));
        if let Some(to) = informer {
            self.send(to, vec![body.clone()]);
        }
        self.broadcast(&local.name, body);
    }

    /// Someone told us old news about ourselves (a suspicion we already refuted): it missed the
    /// refutation, so send it our current alive directly.
    fn answer_stale_news(&mut self, informer: Option<SocketAddr>) {
        let Some(to) = informer else { return };
        let claim = AliveClaim::from(self.table.local());
        self.send(to, vec![Body::Alive(convert::alive_to_wire(&claim))]);
    }

    fn suspect_body(&self, name: &str, incarnation: Incarnation, from: &str, evidence: Evidence) -> Body {
        Body::Suspect(wire::Suspect {
            node: name.to_owned(),
            generation: incarnation.generation,
            incarnation: incarnation.incarnation,
            from: from.to_owned(),
            evidence: wire_evidence(evidence),
        })
    }

    // ---------------------------------------------------------------------------------------
    // Probing

    fn start_probe(&mut self, now: Instant) {
        // Local health stretches the probe (its direct-ack wait and how long it waits for any
        // answer), not the rhythm of answered ones: as memberlist, a node that gets acks probes
        // once a probe interval whatever its score, and one that does not waits the stretched
        // period for each probe before the next.
        let multiplier = self.awareness.multiplier();
        self.next_probe = now + self.config.probe_interval;
        let ends_at = now + self.config.probe_interval * multiplier;
        let Some(target) = self.next_probe_target() else { return };
        let Some(member) = self.table.get(&target) else { return };
        let (addr, state, incarnation) = (member.addr, member.state, member.incarnation);
        let seq = self.next_seq();
        let local = self.table.local().name.to_string();
        let evidence = self.suspicions.get(target.as_str()).map_or(Evidence::Silence, |s| s.evidence);
        let buddy = (self.config.lifeguard.buddy && state == State::Suspect).then(|| wire::Suspect {
            node: target.to_string(),
            generation: incarnation.generation,
            incarnation: incarnation.incarnation,
            from: local.clone(),
            evidence: wire_evidence(evidence),
        });
        self.stats.probes += 1;
        self.send(addr, vec![Body::Ping(wire::Ping { seq, target: target.to_string(), source: local, buddy })]);
        let wait = self.rtt.timeout() * multiplier;
        self.probe = Some(Probe {
            seq,
            target,
            target_addr: addr,
            phase: ProbePhase::Direct,
            indirect_at: now + wait,
            ends_at,
            relays: Vec::new(),
            nacks: Default::default(),
            tcp: TcpPing::NotSent,
            tcp_streams: Vec::new(),
            tcp_sent: 0,
            next_tcp: None,
            wait,
            sent_at: now,
        });
    }

    fn next_probe_target(&mut self) -> Option<Name> {
        let local = self.table.local_id();
        for _ in 0..2 {
            while self.probe_cursor < self.probe_order.len() {
                let id = self.probe_order[self.probe_cursor];
                self.probe_cursor += 1;
                if let Some(m) = self.table.member(id).filter(|m| m.is_live() && id != local) {
                    return Some(m.name.clone());
                }
            }
            // A round is over: start a new one in a new random order.
            self.probe_order = self.live.iter().collect();
            self.probe_order.shuffle(&mut self.rng);
            self.probe_cursor = 0;
        }
        None
    }

    fn add_probe_target(&mut self, id: MemberId) {
        // Insert at a random place of the rest of the round, as memberlist does.
        let lo = self.probe_cursor.min(self.probe_order.len());
        let at = self.rng.random_range(lo..=self.probe_order.len());
        self.probe_order.insert(at, id);
    }

    /// After members left the table: point their entries of this round at the local node (which
    /// the round skips), before their ids can be given to new members. The length of the round
    /// is kept, and with it every random draw that depends on it.
    fn forget_removed_probe_targets(&mut self) {
        let local = self.table.local_id();
        for id in &mut self.probe_order {
            if self.table.member(*id).is_none() {
                *id = local;
            }
        }
    }

    fn start_indirect(&mut self, now: Instant) {
        let Some(probe) = self.probe.as_ref() else { return };
        let (seq, target, target_addr) = (probe.seq, probe.target.clone(), probe.target_addr);
        let k = self.config.indirect_checks;
        let exclude: Vec<MemberId> = self.table.id(&target).into_iter().collect();
        let candidates = self.live.choose(k + 3, &exclude, &mut self.rng);
        let relays: Vec<(Name, SocketAddr)> = candidates
            .into_iter()
            .filter_map(|id| self.table.member(id))
            .filter(|m| m.state == State::Alive)
            .map(|m| (m.name.clone(), m.addr))
            .take(k)
            .collect();
        let local = self.table.local();
        let (source, source_addr) = (local.name.to_string(), local.addr);
        let target = target.to_string();
        for (_, relay_addr) in &relays {
            let req = wire::IndirectPing {
                seq,
                target: target.clone(),
                target_addr: Some(convert::address(target_addr)),
                want_nack: self.config.lifeguard.nack,
                source: source.clone(),
                source_addr: Some(convert::address(source_addr)),
            };
            self.send(*relay_addr, vec![Body::IndirectPing(req)]);
        }
        if let Some(probe) = self.probe.as_mut() {
            probe.phase = ProbePhase::Indirect;
            probe.relays = relays;
        }
        if self.config.tcp_fallback_ping {
            self.send_tcp_ping(now);
        }
    }

    /// Send the probe's next TCP ping, on a new connection, and plan the one after it: each
    /// connection has its own chance of its SYN and its RST getting through.
    fn send_tcp_ping(&mut self, now: Instant) {
        let attempts = self.config.tcp_ping_attempts;
        let Some(probe) = self.probe.as_ref() else { return };
        let (seq, target_addr) = (probe.seq, probe.target_addr);
        let local = self.table.local();
        let ping = wire::Ping { seq, target: probe.target.to_string(), source: local.name.to_string(), buddy: None };
        let msg = wire::StreamMessage { body: Some(StreamBody::Ping(ping)) };
        let id = self.stream_request(target_addr, &msg, StreamPurpose::TcpPing(seq));
        if let Some(probe) = self.probe.as_mut() {
            probe.tcp = TcpPing::Pending;
            probe.tcp_streams.push(id);
            probe.tcp_sent += 1;
            probe.next_tcp = (probe.tcp_sent < attempts).then(|| now + probe.wait);
        }
    }

    fn finish_probe(&mut self, now: Instant) {
        let Some(probe) = self.probe.take() else { return };
        for id in &probe.tcp_streams {
            self.streams.remove(id);
        }
        if probe.phase == ProbePhase::Acked {
            return;
        }
        if probe.phase == ProbePhase::Direct {
            // The period ended before the indirect phase could start (a stretched clock).
            return;
        }
        self.stats.probes_failed += 1;
        // Lifeguard: missed nacks mean the trouble may be ours. Not when the target's host
        // refused and the probe ended on it (`proof_suffices`): that answer came in time, and
        // the relays were not waited for.
        let expected_nacks = if self.config.lifeguard.nack { probe.relays.len() } else { 0 };
        let ended_on_proof = probe.tcp == TcpPing::Refused && self.config.lifeguard.proof_suffices;
        if ended_on_proof {
            // No change.
        } else if expected_nacks > 0 {
            self.awareness.apply((expected_nacks - probe.nacks.len().min(expected_nacks)) as i32);
        } else {
            self.awareness.apply(1);
        }
        let Some(member) = self.table.get(&probe.target) else { return };
        // Alive: start a suspicion. Suspect (someone else accused it first): our failed probe is
        // an independent confirmation, and so is each nack.
        if !matches!(member.state, State::Alive | State::Suspect) {
            return;
        }
        let incarnation = member.incarnation;
        // A refused TCP ping proves the process gone; anything else is silence, which a stalled
        // process also produces, and then the relays' nacks are no independent evidence either
        // (the target was silent to everyone at once).
        let evidence = if probe.tcp == TcpPing::Refused { Evidence::Refused } else { Evidence::Silence };
        let confirmers: Vec<String> = if self.config.lifeguard.nack_confirms && evidence == Evidence::Refused {
            probe.nacks.into_iter().map(String::from).collect()
        } else {
            Vec::new()
        };
        let local = self.table.local().name.clone();
        self.suspect(&probe.target, incarnation, &local, evidence, &confirmers, None, now);
    }

    // ---------------------------------------------------------------------------------------
    // Gossip, push-pull, reaping

    fn gossip(&mut self, now: Instant) {
        // Direct notices to the members this node suspects (Lifeguard's buddy idea, pushed
        // rather than waiting for the next probe).
        if self.config.lifeguard.buddy {
            let notices: Vec<(SocketAddr, Body)> = self
                .suspicions
                .iter()
                .filter(|(_, s)| s.originated_here)
                .filter_map(|(name, s)| {
                    let m = self.table.get(name)?;
                    Some((m.addr, self.suspect_body(name, s.incarnation, &self.table.local().name, s.evidence)))
                })
                .collect();
            for (addr, body) in notices {
                self.send(addr, vec![body]);
            }
        }
        if self.broadcasts.is_empty() {
            return;
        }
        self.recently_dead.retain(|(_, _, until)| *until > now);
        let k = self.config.gossip_nodes;
        let mut targets: Vec<(Name, SocketAddr)> = (self.live.choose(k, &[], &mut self.rng).into_iter())
            .filter_map(|id| self.table.member(id))
            .map(|m| (m.name.clone(), m.addr))
            .collect();
        if !self.recently_dead.is_empty() {
            // The recently dead get a chance at one extra slot, after the live targets: they must
            // hear news so that a live one wrongly declared dead can refute, but never at the
            // expense of a live member (with a small retransmit limit that could lose a leave).
            let total = self.live.len() + self.recently_dead.len();
            if self.rng.random_range(0..total) < self.recently_dead.len() {
                let (n, a, _) = &self.recently_dead[self.rng.random_range(0..self.recently_dead.len())];
                targets.push((n.clone(), *a));
            }
        }
        for (name, addr) in targets {
            if self.broadcasts.is_empty() {
                break;
            }
            self.send_to_member(addr, Some(&name), Vec::new());
        }
    }

    /// After a join, one push-pull with a random member as soon as the gossip of joins made at
    /// the same time has run its course (one retransmit limit of gossip rounds, jittered), unless
    /// one is due sooner. In a join storm most nodes know only part of the cluster when news of
    /// a joiner reaches them, so they spend its retransmissions on the few members they know, and
    /// the news can die out before it reaches everyone; the periodic push-pull would repair that
    /// only 15 to 45 s later (memberlist and Serf have no such step). One exchange per join.
    fn schedule_settle_push_pull(&mut self, now: Instant) {
        let Some(next) = self.next_push_pull else { return };
        let rounds = self.broadcasts.retransmit_limit(self.table.live_count());
        let settle = now + (self.config.gossip_interval * rounds).mul_f64(1.0 + 0.5 * self.rng.random::<f64>());
        if settle < next {
            self.next_push_pull = Some(settle);
        }
    }

    fn push_pull_interval(&self) -> Duration {
        // memberlist's scaling: the interval grows with log2(n) above 32 members.
        let n = self.table.live_count() as f64;
        let base = self.config.push_pull_interval;
        if n <= 32.0 {
            base
        } else {
            base.mul_f64((n.log2() - 32f64.log2()).ceil() + 1.0)
        }
    }

    fn start_push_pull(&mut self) {
        if self.left {
            return;
        }
        let Some(addr) =
            self.live.choose(1, &[], &mut self.rng).into_iter().find_map(|id| self.table.member(id)).map(|m| m.addr)
        else {
            return;
        };
        let msg = self.push_pull_message(false);
        self.stream_request(addr, &msg, StreamPurpose::PushPull);
    }

    /// Serf's reconnect: with probability failed / live, a push-pull with one random failed
    /// member. If it is alive after all (a healed partition), the exchange tells each side the
    /// other is alive: the answer carries the refutation the exchange provoked.
    fn reconnect(&mut self) {
        if self.left {
            return;
        }
        let mut failed: Vec<&Member> = self.table.dead().collect();
        failed.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let failed: Vec<SocketAddr> = failed.into_iter().map(|m| m.addr).collect();
        if failed.is_empty() {
            return;
        }
        let probability = failed.len() as f64 / self.table.live_count().max(1) as f64;
        if self.rng.random::<f64>() >= probability {
            return;
        }
        let addr = failed[self.rng.random_range(0..failed.len())];
        self.stats.reconnects += 1;
        let msg = self.push_pull_message(false);
        self.stream_request(addr, &msg, StreamPurpose::PushPull);
    }

    fn push_pull_message(&self, join: bool) -> wire::StreamMessage {
        let members = self.table.iter().map(convert::member_to_wire).collect();
        wire::StreamMessage {
            body: Some(StreamBody::PushPull(wire::PushPull { join, members, user_state: self.local_state.clone() })),
        }
    }

    /// Merge a remote full state: alive as alive; suspect as alive then suspect; dead as suspect
    /// (never an instant death: the member gets its chance to refute); left as left. `join`: the
    /// exchange is a join, started by either side.
    fn merge(&mut self, pp: &wire::PushPull, join: bool, now: Instant) {
        if !pp.user_state.is_empty() {
            self.events.push_back(Event::RemoteState { join, state: pp.user_state.clone() });
        }
        // As memberlist: a suspicion learnt from a peer's state is started in our own name, so
        // that many exchanges never count as independent confirmations, and we notify the
        // suspect directly so that a live one refutes at once.
        let local_name = self.table.local().name.clone();
        for m in &pp.members {
            if m.status == wire::MemberStatus::Alive as i32
                && self.is_stale_alive(&m.node, m.addr.as_ref(), m.generation, m.incarnation, &m.tags)
            {
                // The common case of anti-entropy: nothing new about this one.
                continue;
            }
            let (claim, state) = match convert::member_from_wire(m) {
                Ok(x) => x,
                Err(e) => {
                    self.drop_count(e.reason());
                    continue;
                }
            };
            let (name, incarnation) = (claim.name.clone(), claim.incarnation);
            match state {
                State::Alive => self.on_alive(claim, None, now),
                // A peer's table says nothing of what its suspicion rested on: silence.
                State::Suspect => {
                    self.on_alive(claim, None, now);
                    self.suspect(&name, incarnation, &local_name, Evidence::Silence, &[], None, now);
                }
                State::Dead => self.suspect(&name, incarnation, &local_name, Evidence::Silence, &[], None, now),
                State::Left => {
                    let d = wire::Dead {
                        node: name.to_string(),
                        generation: incarnation.generation,
                        incarnation: incarnation.incarnation,
                        from: name.to_string(),
                        left: true,
                    };
                    self.on_dead(&d, SocketAddr::from(([0, 0, 0, 0], 0)), now);
                }
            }
        }
    }

    fn reap(&mut self, now: Instant) {
        // Only dead and left members are reaped, and those are never in `live`.
        let reaped = self.table.reap(now, self.config.dead_reap, self.config.left_reap);
        if reaped.is_empty() {
            return;
        }
        self.forget_removed_probe_targets();
        debug_assert!(self.live.iter().all(|id| self.table.member(id).is_some_and(Member::is_live)));
        for member in reaped {
            self.recently_dead.retain(|(n, _, _)| *n != member.name);
            self.events.push_back(Event::MemberReaped(member));
        }
    }

    // ---------------------------------------------------------------------------------------
    // Output

    fn broadcast(&mut self, key: &str, body: Body) {
        let encoded = encode_message(&wire::Message { body: Some(body) });
        self.broadcasts.push(Some(key), encoded);
    }

    /// Send `messages` to `to` in one datagram, filling the rest of the packet budget with
    /// queued broadcasts. Nothing is sent when there is nothing to send.
    fn send(&mut self, to: SocketAddr, messages: Vec<Body>) {
        self.send_to_member(to, None, messages);
    }

    /// As [`Swim::send`], to a member by name: news about that member itself is not piggybacked
    /// (it knows better), which leaves the transmission for a member that needs it.
    fn send_to_member(&mut self, to: SocketAddr, name: Option<&str>, messages: Vec<Body>) {
        self.send_with(to, name, messages, true);
    }

    /// Send `messages` to `to` in one datagram, with queued broadcasts when `piggyback`.
    fn send_with(&mut self, to: SocketAddr, name: Option<&str>, messages: Vec<Body>, piggyback: bool) {
        let budget = self.config.packet_budget.saturating_sub(self.codec.overhead());
        let mut builder = PacketBuilder::new(budget);
        for body in messages {
            let kind = message_kind(&body);
            if builder.push(&wire::Message { body: Some(body) }) {
                *self.stats.messages_sent.entry(kind).or_default() += 1;
            } else {
                self.drop_count("too_large_to_send");
            }
        }
        let live = self.table.live_count();
        let piggyback = if piggyback {
            self.broadcasts.fill_for(builder.remaining(), live, |len| PacketBuilder::message_cost(len) - len, name)
        } else {
            Vec::new()
        };
        for encoded in &piggyback {
            if builder.push_encoded(encoded) {
                *self.stats.messages_sent.entry("piggyback").or_default() += 1;
            }
        }
        if builder.is_empty() {
            return;
        }
        let payload = self.codec.seal(&builder.finish(), &mut self.rng);
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += payload.len() as u64;
        self.transmits.push_back(Transmit { to, payload, kind: TransmitKind::Datagram });
    }

    fn stream_request(&mut self, to: SocketAddr, msg: &wire::StreamMessage, purpose: StreamPurpose) -> StreamId {
        let id = self.next_stream;
        self.next_stream += 1;
        let payload = self.codec.encode_stream(msg, &mut self.rng);
        self.stats.streams_sent += 1;
        self.stats.stream_bytes_sent += payload.len() as u64;
        self.streams.insert(id, purpose);
        self.transmits.push_back(Transmit { to, payload, kind: TransmitKind::StreamRequest(id) });
        id
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn drop_count(&mut self, reason: &'static str) {
        *self.stats.dropped.entry(reason).or_default() += 1;
    }

    fn count_received(&mut self, kind: &'static str) {
        *self.stats.messages_received.entry(kind).or_default() += 1;
    }
}

/// Give back a drained queue's room when a burst (a join's thousand `MemberJoined`, say) grew it:
/// thousands of simulated nodes would otherwise each keep the largest burst they ever saw.
fn shrink_drained<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > 64 {
        *queue = VecDeque::new();
    }
}

/// The wire value of `evidence` (the `Suspect.evidence` field).
fn wire_evidence(evidence: Evidence) -> i32 {
    let e = match evidence {
        Evidence::Silence => wire::Evidence::Silence,
        Evidence::Refused => wire::Evidence::Refused,
    };
    e as i32
}

fn message_kind(body: &Body) -> &'static str {
    match body {
        Body::Ping(_) => "ping",
        Body::IndirectPing(_) => "indirect_ping",
        Body::Ack(_) => "ack",
        Body::Nack(_) => "nack",
        Body::Alive(_) => "alive",
        Body::Suspect(_) => "suspect",
        Body::Dead(_) => "dead",
        Body::User(_) => "user",
    }
}
