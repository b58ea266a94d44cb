//! The driver task: the one owner of the [`Swim`] state machine.
//!
//! It waits on every input at once (a datagram, a command, an accepted stream's request, a
//! finished outgoing stream request, the timer, shutdown), hands it to the state machine, then
//! drains the outputs: datagrams are sent from here, stream requests are spawned into a
//! [`JoinSet`] whose results come back as inputs, events go to the waiters of `join`/`leave`, to
//! the broadcast channel and to the members snapshot.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gossip_transport::net::{self, FrameError};
use gossip_transport::{HeaderCheck, Key, RefusalReason};
use swim::{Event, Member, StreamError, StreamId, Swim, Tags, TransmitKind};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::{self, JoinSet};

use crate::refusals::{Refusals, Refused};
use crate::timer::Timer;
use crate::NodeError;

/// Largest datagram accepted (the UDP maximum); the receive buffer is reused.
const RECV_BUFFER_LEN: usize = 64 * 1024;

/// The members snapshot is refreshed after every membership event and command, and at least this
/// often otherwise (incarnation changes without an event).
const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(1);

/// A request from a [`crate::NodeHandle`] to the driver.
pub(crate) enum Command {
    /// Start a push-pull exchange with each seed; each outcome is sent on `outcomes`.
    Join { seeds: Vec<SocketAddr>, outcomes: mpsc::UnboundedSender<JoinOutcome> },
    /// Leave gracefully; `done` is answered on [`Event::LeaveComplete`].
    Leave { done: oneshot::Sender<()> },
    /// Change the local tags.
    SetTags { tags: Tags, done: oneshot::Sender<()> },
    /// Gossip an application payload.
    BroadcastUser { key: Option<String>, payload: Bytes, done: oneshot::Sender<Result<(), swim::PayloadTooLarge>> },
    /// Send an application payload to one address, in one datagram (with piggybacked gossip
    /// unless `alone`).
    SendUser { to: SocketAddr, payload: Bytes, alone: bool, done: oneshot::Sender<Result<(), swim::PayloadTooLarge>> },
    /// Put this payload in every ack from now on.
    SetAckPayload(Bytes),
    /// Send this state in every push-pull exchange from now on.
    SetLocalState(Bytes),
    /// Declare a member left on its behalf.
    ForceLeave { name: String, prune: bool, done: oneshot::Sender<Result<(), swim::ForceLeaveError>> },
    /// Change or read the keyring; answers the keys installed afterwards, primary first.
    Keyring { op: KeyringOp, done: oneshot::Sender<Result<Vec<Key>, NodeError>> },
    /// Read the state machine's counters and its health multiplier.
    Stats { reply: oneshot::Sender<(swim::Stats, u32)> },
}

/// An operation on the keyring of a running node ([`crate::NodeHandle::keyring`]). Each acts on
/// this node only; the serf layer's key queries apply them across the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringOp {
    /// Install a key (a no-op when it is installed already): packets sealed with it open here.
    Install(Key),
    /// Make an installed key the primary key, which seals everything sent from now on.
    Use(Key),
    /// Remove an installed key other than the primary.
    Remove(Key),
    /// Change nothing; just list the keys.
    List,
}

/// The outcome of one seed of a join: `Err` carries the reason.
pub(crate) type JoinOutcome = (SocketAddr, Result<(), String>);

/// One frame read from an accepted TCP connection, waiting for the state machine's answer.
pub(crate) struct InboundRequest {
    pub(crate) from: SocketAddr,
    pub(crate) frame: Bytes,
    pub(crate) answer: oneshot::Sender<Answer>,
}

/// What the connection task does with an inbound request once the state machine has seen it.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Write this frame back.
    Frame(Bytes),
    /// Answer with a refusal frame for this reason (only a wrong key gets here: the connection
    /// task checked the header already).
    Refuse(RefusalReason),
    /// Close without an answer (undecodable, unexpected, ...).
    Close,
}

/// What `members()` and `local_member()` read without a round trip to the driver.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) members: Vec<Member>,
    pub(crate) local: Member,
}

impl Snapshot {
    pub(crate) fn of(swim: &Swim) -> Self {
        Self { members: swim.members().cloned().collect(), local: swim.local_member().clone() }
    }
}

/// Counters kept by the driver tasks (the state machine keeps its own, see [`swim::Stats`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) udp_send_errors: AtomicU64,
    pub(crate) udp_recv_errors: AtomicU64,
    pub(crate) stream_requests: AtomicU64,
    pub(crate) stream_request_failures: AtomicU64,
    pub(crate) inbound_streams: AtomicU64,
    pub(crate) inbound_stream_failures: AtomicU64,
    pub(crate) tap_dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The driver's side of the channels, and the state it owns.
pub(crate) struct Actor {
    pub(crate) swim: Swim,
    pub(crate) udp: UdpSocket,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) inbound: mpsc::Receiver<InboundRequest>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) snapshot: Arc<RwLock<Snapshot>>,
    /// Bumped after every refresh of `snapshot` that follows a membership change (not after the
    /// periodic refreshes), so that a reader can wait for changes instead of polling.
    pub(crate) members_changed: watch::Sender<u64>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) stream_timeout: Duration,
    /// A second, lossless-unless-full copy of every event for a layer above (the serf layer):
    /// events are offered with `try_send`, so the driver never waits for it; a full tap drops the
    /// event and counts it in `Counters::tap_dropped`.
    pub(crate) tap: Option<mpsc::Sender<Event>>,
    /// The key-free envelope checks, to tell why a datagram is refused.
    pub(crate) header_check: HeaderCheck,
    pub(crate) refusals: Arc<Refusals>,
}

/// What woke the driver up.
enum Input {
    Datagram(io::Result<(usize, SocketAddr)>),
    Command(Command),
    Inbound(InboundRequest),
    StreamDone(Result<(task::Id, Result<Bytes, StreamError>), task::JoinError>),
    Timer,
    Shutdown,
}

/// The driver's bookkeeping around the state machine.
struct Driver {
    actor: Actor,
    /// Outgoing stream requests in flight, and the stream id of each task.
    outbound: JoinSet<Result<Bytes, StreamError>>,
    outbound_ids: HashMap<task::Id, StreamId>,
    join_waiters: Vec<JoinWaiter>,
    leave_waiters: Vec<oneshot::Sender<()>>,
    leave: LeaveProgress,
    snapshot_dirty: bool,
    snapshot_taken: Instant,
    /// Events drained from the state machine, waiting for dispatch (reused buffer).
    events: Vec<Event>,
}

/// Where the node is in a graceful leave: a second `leave` joins the first one's wait, or returns
/// at once when the leave is complete (the state machine reports it only once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaveProgress {
    Staying,
    Leaving,
    Left,
}

/// A `join` call waiting for the outcome of each of its seeds.
struct JoinWaiter {
    pending: HashSet<SocketAddr>,
    outcomes: mpsc::UnboundedSender<JoinOutcome>,
}

/// The current time on tokio's clock (so that a paused test clock drives the state machine too).
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Actor {
    /// Run until shutdown is signalled (or the [`crate::Node`] is dropped).
    pub(crate) async fn run(self) {
        let mut driver = Driver {
            actor: self,
            outbound: JoinSet::new(),
            outbound_ids: HashMap::new(),
            join_waiters: Vec::new(),
            leave_waiters: Vec::new(),
            leave: LeaveProgress::Staying,
            snapshot_dirty: false,
            snapshot_taken: now(),
            events: Vec::new(),
        };
        driver.run().await;
    }
}

impl Driver {
    async fn run(&mut self) {
        let mut buf = vec![0u8; RECV_BUFFER_LEN];
        let mut timer = Timer::new();
        // Whatever the state machine wants to do from the start.
        self.drain().await;
        loop {
            let deadline = self.actor.swim.poll_timeout();
            timer.set(deadline, now());
            let actor = &mut self.actor;
            let input = tokio::select! {
                received = actor.udp.recv_from(&mut buf) => Input::Datagram(received),
                Some(command) = actor.commands.recv() => Input::Command(command),
                Some(request) = actor.inbound.recv() => Input::Inbound(request),
                Some(done) = self.outbound.join_next_with_id(), if !self.outbound.is_empty() => Input::StreamDone(done),
                () = timer.fired(), if deadline.is_some() => Input::Timer,
                _ = actor.shutdown.changed() => Input::Shutdown,
            };
            match input {
                Input::Datagram(Ok((len, from))) => self.datagram(from, &buf[..len]),
                Input::Datagram(Err(error)) => {
                    Counters::bump(&self.actor.counters.udp_recv_errors);
                    tracing::warn!(%error, "UDP receive failed");
                    // A persistent error must not turn this loop into a busy loop.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Input::Command(command) => self.command(command),
                Input::Inbound(request) => {
                    let swim = &mut self.actor.swim;
                    let decrypts_before = decrypt_failures(swim);
                    let answer = match swim.handle_stream_request(request.from, &request.frame, now()) {
                        Some(frame) => Answer::Frame(frame),
                        None if decrypt_failures(swim) > decrypts_before => Answer::Refuse(RefusalReason::KeyMismatch),
                        None => Answer::Close,
                    };
                    // The connection task may have timed out and gone; then the answer is moot.
                    let _ = request.answer.send(answer);
                }
                Input::StreamDone(done) => self.stream_done(done),
                Input::Timer => self.actor.swim.handle_timeout(now()),
                Input::Shutdown => break,
            }
            self.drain().await;
        }
        // Outgoing requests die with the driver; their answers would have nowhere to go.
        self.outbound.shutdown().await;
        tracing::debug!(node = %self.actor.swim.local_member().name, "driver stopped");
    }

    /// Hand a datagram to the state machine; warn (rate-limited) when it is refused for a wrong
    /// label, key or version. The header checks need no key; a wrong key shows as one more
    /// `decrypt` drop in the state machine's counters.
    fn datagram(&mut self, from: SocketAddr, datagram: &[u8]) {
        let swim = &mut self.actor.swim;
        let decrypts_before = decrypt_failures(swim);
        swim.handle_packet(from, datagram, now());
        let refusals = &self.actor.refusals;
        match self.actor.header_check.check(datagram) {
            Err(error) => {
                if let Some(reason) = RefusalReason::of(&error) {
                    refusals.refused(Refused::Packet, from, reason, &error, now());
                }
            }
            Ok(_) if decrypt_failures(swim) > decrypts_before => {
                let detail = "no installed key opens it";
                refusals.refused(Refused::Packet, from, RefusalReason::KeyMismatch, &detail, now());
            }
            Ok(_) => {}
        }
    }

    fn command(&mut self, command: Command) {
        let now = now();
        let swim = &mut self.actor.swim;
        match command {
            Command::Join { seeds, outcomes } => {
                self.join_waiters.push(JoinWaiter { pending: seeds.iter().copied().collect(), outcomes });
                swim.join(&seeds, now);
            }
            Command::Leave { done } => match self.leave {
                LeaveProgress::Staying => {
                    self.leave = LeaveProgress::Leaving;
                    self.leave_waiters.push(done);
                    swim.leave(now);
                }
                LeaveProgress::Leaving => self.leave_waiters.push(done),
                LeaveProgress::Left => {
                    let _ = done.send(());
                }
            },
            Command::SetTags { tags, done } => {
                swim.set_tags(tags, now);
                // The caller reads `local_member()` next: refresh before answering.
                self.publish_snapshot(now, true);
                let _ = done.send(());
            }
            Command::BroadcastUser { key, payload, done } => {
                let _ = done.send(swim.broadcast_user(key.as_deref(), payload));
            }
            Command::SendUser { to, payload, alone, done } => {
                let sent = if alone { swim.send_user_alone(to, payload) } else { swim.send_user(to, payload) };
                let _ = done.send(sent);
                return;
            }
            Command::SetAckPayload(payload) => {
                swim.set_ack_payload(payload);
                return;
            }
            Command::SetLocalState(state) => {
                swim.set_local_state(state);
                return;
            }
            Command::ForceLeave { name, prune, done } => {
                let result = swim.force_leave(&name, prune, now);
                self.publish_snapshot(now, true);
                let _ = done.send(result);
            }
            Command::Keyring { op, done } => {
                let _ = done.send(keyring_op(swim, op));
                return;
            }
            Command::Stats { reply } => {
                let _ = reply.send((swim.stats().clone(), swim.health_multiplier()));
                return;
            }
        }
        self.snapshot_dirty = true;
    }

    fn stream_done(&mut self, done: Result<(task::Id, Result<Bytes, StreamError>), task::JoinError>) {
        let (task_id, result) = match done {
            Ok((task_id, result)) => (task_id, result),
            Err(error) => (error.id(), Err(StreamError::Failed(format!("stream request task failed: {error}")))),
        };
        let Some(stream_id) = self.outbound_ids.remove(&task_id) else {
            return;
        };
        if let Err(reason) = &result {
            Counters::bump(&self.actor.counters.stream_request_failures);
            tracing::debug!(stream_id, %reason, "stream request failed");
        }
        let response = result.as_deref().map_err(Clone::clone);
        self.actor.swim.handle_stream_response(stream_id, response, now());
    }

    /// Drain every output of the state machine: transmits, events; then refresh the snapshot.
    async fn drain(&mut self) {
        while let Some(transmit) = self.actor.swim.poll_transmit() {
            match transmit.kind {
                TransmitKind::Datagram => {
                    if let Err(error) = self.actor.udp.send_to(&transmit.payload, transmit.to).await {
                        Counters::bump(&self.actor.counters.udp_send_errors);
                        tracing::debug!(to = %transmit.to, %error, "UDP send failed");
                    }
                }
                TransmitKind::StreamRequest(stream_id) => {
                    self.spawn_stream_request(stream_id, transmit.to, transmit.payload)
                }
            }
        }
        // Snapshot first, dispatch second: whoever an event wakes up (a `join` caller, an event
        // stream reader) already finds the change in `members()`.
        let mut events = std::mem::take(&mut self.events);
        while let Some(event) = self.actor.swim.poll_event() {
            if is_membership_change(&event) {
                self.snapshot_dirty = true;
            }
            events.push(event);
        }
        let now = now();
        if self.snapshot_dirty || now.saturating_duration_since(self.snapshot_taken) >= SNAPSHOT_MAX_AGE {
            self.publish_snapshot(now, self.snapshot_dirty);
        }
        for event in events.drain(..) {
            self.dispatch(event);
        }
        self.events = events;
    }

    /// Refresh the members snapshot; `changed`: after a membership change or a command, which
    /// the watchers of [`Actor::members_changed`] hear of.
    fn publish_snapshot(&mut self, now: Instant, changed: bool) {
        let snapshot = Snapshot::of(&self.actor.swim);
        *self.actor.snapshot.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
        self.snapshot_dirty = false;
        self.snapshot_taken = now;
        if changed {
            self.actor.members_changed.send_modify(|version| *version = version.wrapping_add(1));
        }
    }

    fn spawn_stream_request(&mut self, stream_id: StreamId, to: SocketAddr, payload: Bytes) {
        Counters::bump(&self.actor.counters.stream_requests);
        let timeout = self.actor.stream_timeout;
        let handle = self.outbound.spawn(async move {
            net::request(to, &payload, timeout, gossip_transport::MAX_FRAME_LEN).await.map_err(stream_error)
        });
        self.outbound_ids.insert(handle.id(), stream_id);
    }

    fn dispatch(&mut self, event: Event) {
        match &event {
            Event::JoinSucceeded { seed } => self.join_outcome(*seed, Ok(())),
            Event::JoinFailed { seed, reason } => self.join_outcome(*seed, Err(reason.clone())),
            Event::LeaveComplete => {
                self.leave = LeaveProgress::Left;
                for done in self.leave_waiters.drain(..) {
                    let _ = done.send(());
                }
            }
            Event::NameConflict { existing, claimed_addr } => {
                tracing::warn!(name = %existing.name, known = %existing.addr, %claimed_addr, "refused a claim on a live member's name");
            }
            event if is_membership_change(event) => {
                tracing::debug!(node = %self.actor.swim.local_member().name, ?event, "membership event");
            }
            _ => {}
        }
        if let Some(tap) = &self.actor.tap {
            if tap.try_send(event.clone()).is_err() && !tap.is_closed() {
                Counters::bump(&self.actor.counters.tap_dropped);
                tracing::warn!("the layer above fell behind: an event was dropped from its tap");
            }
        }
        // No receiver is not an error: nobody asked for events.
        let _ = self.actor.events.send(event);
    }

    fn join_outcome(&mut self, seed: SocketAddr, outcome: Result<(), String>) {
        self.join_waiters.retain_mut(|waiter| {
            if waiter.pending.remove(&seed) {
                let _ = waiter.outcomes.send((seed, outcome.clone()));
            }
            !waiter.pending.is_empty() && !waiter.outcomes.is_closed()
        });
    }
}

/// A failed stream request as the state machine needs it: a refused connection (nothing
/// listens on the peer's port: its process is gone) apart from every other failure.
fn stream_error(error: FrameError) -> StreamError {
    match &error {
        FrameError::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => StreamError::Refused(error.to_string()),
        _ => StreamError::Failed(error.to_string()),
    }
}

/// Apply `op` to the state machine's keyring; the keys installed afterwards, primary first.
fn keyring_op(swim: &mut Swim, op: KeyringOp) -> Result<Vec<Key>, NodeError> {
    let keyring = swim.keyring_mut().ok_or(NodeError::NoKeyring)?;
    let refused = |error: gossip_transport::KeyError| NodeError::Keyring { reason: error.to_string() };
    match op {
        KeyringOp::Install(key) => keyring.install(key),
        KeyringOp::Use(key) => keyring.use_key(&key).map_err(refused)?,
        KeyringOp::Remove(key) => keyring.remove(&key).map_err(refused)?,
        KeyringOp::List => {}
    }
    Ok(keyring.keys().cloned().collect())
}

/// Frames and datagrams the state machine could not open with any installed key, so far.
fn decrypt_failures(swim: &Swim) -> u64 {
    swim.stats().dropped.get("decrypt").copied().unwrap_or(0)
}

/// Whether an event changes what `members()` returns (other changes reach the snapshot within
/// [`SNAPSHOT_MAX_AGE`]).
fn is_membership_change(event: &Event) -> bool {
    matches!(
        event,
        Event::MemberJoined(_)
            | Event::MemberUpdated(_)
            | Event::MemberSuspected(_)
            | Event::MemberRecovered(_)
            | Event::MemberFailed(_)
            | Event::MemberLeft(_)
            | Event::MemberReaped(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The evidence the failure detector rests on, from real sockets: a port nobody listens on
    /// refuses (a killed process); a listener that never answers (a stopped process: the kernel
    /// accepts the connection) times out, which is silence.
    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_silent_listener_is_not() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let timeout = Duration::from_millis(300);
        let refused = net::request(closed_addr, b"ping", timeout, 1024).await.map_err(stream_error);
        assert!(matches!(refused, Err(StreamError::Refused(_))), "{refused:?}");
        // Bound and listening, never accepted nor answered.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let unanswered = net::request(silent_addr, b"ping", timeout, 1024).await.map_err(stream_error);
        assert!(matches!(unanswered, Err(StreamError::Failed(_))), "{unanswered:?}");
        drop(silent);
    }
}
