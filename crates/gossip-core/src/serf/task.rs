//! The serf task: the one owner of the layer's state (buffers, coalescers, pending queries, the
//! Vivaldi client), fed by the node's tap and by the handles' commands.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use swim::{Event, Incarnation, State};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::buffer::{Admission, LamportBuffer};
use super::coalesce::{MemberCoalescer, MemberEventKind, UserCoalescer};
use super::coordinate::{CoordinateClient, CoordinateError};
use super::event::{SerfEvent, UserEvent};
use super::keys;
use super::messages::{self, wire, Body};
use super::query::{self, PendingQuery, Query, QueryParams, QueryResponse, Responder};
use super::snapshot::Record;
use super::stats::bump;
use super::{now, SerfError, Shared};
use crate::NodeError;

/// The periodic chores run this often: the snapshot's coordinate, and a safety net for the
/// rest. Everything else is event-driven, so that an idle agent is not woken for nothing: the
/// push-pull state and the snapshot clocks follow the clocks (checked after every input, and the
/// handles that move a clock say so), finished queries are swept at their deadlines.
const HOUSEKEEPING: Duration = Duration::from_secs(5);
/// A pending query is forgotten (its reply stream ends) this long after its deadline.
const QUERY_SWEEP_SLACK: Duration = Duration::from_millis(1);
/// The coordinate is written to the snapshot at most this often (Serf: every 60 s).
const COORDINATE_RECORD_INTERVAL: Duration = Duration::from_secs(60);
/// Most bytes of recent user events carried in a push-pull exchange (newest first).
const MAX_STATE_EVENT_BYTES: usize = 256 * 1024;
/// The push-pull state is refreshed right after every change: a node answering a join must give
/// the joiner its current clocks. Only a large state (many recent events) is refreshed at most
/// once per [`STATE_MIN_INTERVAL`], so that a burst of events does not re-encode it each time.
const LARGE_STATE: usize = 16 * 1024;
const STATE_MIN_INTERVAL: Duration = Duration::from_millis(20);
/// Longest deadline accepted from a received query.
const MAX_QUERY_TIMEOUT: Duration = Duration::from_secs(3600);

/// A request from a [`super::SerfHandle`] to the task.
pub(crate) enum Command {
    UserEvent {
        name: String,
        payload: Bytes,
        coalesce: bool,
        reply: oneshot::Sender<Result<(), SerfError>>,
    },
    Query {
        name: String,
        payload: Bytes,
        params: QueryParams,
        reply: oneshot::Sender<Result<QueryResponse, SerfError>>,
    },
    /// Answered once every tap event queued before it was handled, after the push-pull state
    /// was refreshed.
    Sync {
        reply: oneshot::Sender<()>,
    },
    Stats {
        reply: oneshot::Sender<TaskStats>,
    },
    /// This node's answer to its own query (an encoded message), delivered without the network.
    LocalReply(Bytes),
    /// Tell the cluster to forget a member this node force-left with prune.
    Prune(wire::Prune),
}

/// How many prune intents a node remembers, to pass each on once.
const PRUNE_MEMORY: usize = 64;

/// The task's part of [`super::SerfStats`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskStats {
    pub(crate) member_event_queue: usize,
    pub(crate) user_event_queue: usize,
    pub(crate) pending_queries: usize,
    pub(crate) coordinate_resets: u64,
}

pub(crate) struct Task {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tap: mpsc::Receiver<Event>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) events: broadcast::Sender<SerfEvent>,
    pub(crate) event_buffer: LamportBuffer<(String, Bytes)>,
    pub(crate) query_buffer: LamportBuffer<u32>,
    pub(crate) event_min_time: u64,
    pub(crate) query_min_time: u64,
    pub(crate) members: MemberCoalescer,
    pub(crate) users: UserCoalescer,
    pub(crate) vivaldi: Option<CoordinateClient>,
}

/// The task's running state around [`Task`].
struct Running {
    task: Task,
    pending: HashMap<(u64, u32), PendingQuery>,
    /// Newest user event and query delivered (for the snapshot).
    newest_event: u64,
    newest_query: u64,
    /// What the snapshot and the push-pull state were last told.
    recorded: (u64, u64, u64),
    state_sent: Option<(u64, u64, u64)>,
    /// The push-pull state is stale; refresh it at this time.
    state_due: Option<Instant>,
    state_refreshed: Instant,
    state_len: usize,
    coordinate_recorded: Instant,
    helpers: JoinSet<()>,
    rng: SmallRng,
    /// Prune intents seen lately (name, generation, incarnation), oldest first.
    prunes: VecDeque<(String, u64, u64)>,
}

impl Task {
    pub(crate) async fn run(self) {
        let mut running = Running {
            pending: HashMap::new(),
            newest_event: 0,
            newest_query: 0,
            recorded: (0, 0, 0),
            state_sent: None,
            state_due: None,
            state_refreshed: now(),
            state_len: 0,
            coordinate_recorded: now(),
            helpers: JoinSet::new(),
            rng: SmallRng::from_rng(&mut rand::rng()),
            prunes: VecDeque::new(),
            task: self,
        };
        running.run().await;
    }
}

impl Running {
    async fn run(&mut self) {
        self.start().await;
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shared = Arc::clone(&self.task.shared);
        loop {
            self.clocks_checked();
            if self.state_due.is_some_and(|at| at <= now()) {
                self.refresh_state().await;
            }
            let sweep = self.pending.values().map(|pending| pending.deadline + QUERY_SWEEP_SLACK).min();
            let due = [self.task.members.deadline(), self.task.users.deadline(), self.state_due, sweep]
                .into_iter()
                .flatten()
                .min();
            let flush_at = tokio::time::Instant::from_std(due.unwrap_or_else(now));
            let task = &mut self.task;
            tokio::select! {
                biased;
                _ = task.shutdown.changed() => break,
                Some(event) = task.tap.recv() => self.swim_event(event).await,
                Some(command) = task.commands.recv() => self.command(command).await,
                () = shared.clocks_moved.notified() => {}
                () = tokio::time::sleep_until(flush_at), if due.is_some() => self.flush_due(),
                _ = housekeeping.tick() => self.housekeeping().await,
                Some(_) = self.helpers.join_next(), if !self.helpers.is_empty() => {}
            }
        }
        // Deliver what is being coalesced, leave the last clocks and coordinate in the snapshot.
        for event in self.task.members.flush() {
            self.emit(event);
        }
        for event in self.task.users.flush() {
            self.emit(SerfEvent::User(event));
        }
        self.record_clocks();
        self.record_coordinate();
        self.helpers.shutdown().await;
        // An untaken first stream would keep delivered queries, and through them the shared
        // state, alive.
        self.task.shared.drop_first_stream();
        tracing::debug!(node = %self.task.shared.settings.name, "serf task stopped");
    }

    /// This node joins (its own member-join event, its snapshot line); coordinates and state go
    /// out with the first acks and push-pulls.
    async fn start(&mut self) {
        let local = self.task.shared.node.local_member();
        self.record(Record::Alive { name: local.name.to_string(), addr: local.addr });
        self.task.members.push(MemberEventKind::Join, local, now());
        if let Some(client) = &self.task.vivaldi {
            let payload = messages::encode_coordinate(client.coordinate());
            let _ = self.task.shared.node.set_ack_payload(payload).await;
        }
        self.refresh_state().await;
    }

    // -------------------------------------------------------------------------------------
    // Inputs

    async fn swim_event(&mut self, event: Event) {
        let now = now();
        let counters = &self.task.shared.counters;
        match event {
            Event::User(payload) => self.payload(payload).await,
            Event::ProbeAck { node, rtt, payload } => self.probe_ack(&node, rtt, &payload).await,
            Event::RemoteState { join, state } => self.remote_state(join, &state),
            Event::MemberJoined(member) => {
                self.record(Record::Alive { name: member.name.to_string(), addr: member.addr });
                self.task.members.push(MemberEventKind::Join, member, now);
            }
            Event::MemberUpdated(member) => {
                self.record(Record::Alive { name: member.name.to_string(), addr: member.addr });
                self.task.members.push(MemberEventKind::Update, member, now);
            }
            Event::MemberLeft(member) => {
                self.record(Record::NotAlive { name: member.name.to_string() });
                self.task.members.push(MemberEventKind::Leave, member, now);
            }
            Event::MemberFailed(member) => {
                self.record(Record::NotAlive { name: member.name.to_string() });
                self.task.members.push(MemberEventKind::Failed, member, now);
            }
            Event::MemberReaped(member) => {
                if let Some(client) = &mut self.task.vivaldi {
                    client.forget(&member.name);
                }
                self.task.shared.forget_coordinate(&member.name);
                self.task.members.push(MemberEventKind::Reap, member, now);
            }
            Event::MemberSuspected(member) => {
                tracing::info!(target: "serf", "Suspect {} {} has failed: suspicion started", member.name, member.addr.ip());
                bump(&counters.suspicions);
            }
            Event::MemberRecovered(member) => {
                tracing::info!(target: "serf", "{} {} refuted the suspicion: alive", member.name, member.addr.ip());
                bump(&counters.recoveries);
            }
            _ => {}
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::UserEvent { name, payload, coalesce, reply } => {
                let result = self.send_user_event(name, payload, coalesce).await;
                let _ = reply.send(result);
            }
            Command::Query { name, payload, params, reply } => {
                let result = self.send_query(name, payload, params).await;
                let _ = reply.send(result);
            }
            Command::Sync { reply } => {
                self.refresh_state().await;
                let _ = reply.send(());
            }
            Command::LocalReply(message) => {
                if let Ok(Body::QueryResponse(response)) = messages::decode_message(&message) {
                    self.query_response(response);
                }
            }
            Command::Prune(prune) => {
                if self.admit_prune(&prune) {
                    let raw = messages::encode_message(Body::Prune(prune));
                    if let Err(error) = self.task.shared.node.broadcast_user(None, raw).await {
                        tracing::warn!(%error, "could not broadcast the prune");
                    }
                }
            }
            Command::Stats { reply } => {
                let _ = reply.send(TaskStats {
                    member_event_queue: self.task.members.pending(),
                    user_event_queue: self.task.users.pending(),
                    pending_queries: self.pending.len(),
                    coordinate_resets: self.task.vivaldi.as_ref().map_or(0, CoordinateClient::resets),
                });
            }
        }
    }

    /// A user payload: one of the layer's messages, or someone else's.
    async fn payload(&mut self, raw: Bytes) {
        let counters = &self.task.shared.counters;
        let body = match messages::decode_message(&raw) {
            Ok(body) => body,
            Err(messages::DecodeError::NotOurs(_)) => return bump(&counters.foreign_payloads),
            Err(error) => {
                tracing::debug!(%error, "undecodable serf message");
                return bump(&counters.decode_errors);
            }
        };
        match body {
            Body::UserEvent(event) => {
                let admission = self.user_event(event.ltime, event.name, event.payload, event.coalesce);
                if admission == Admission::New {
                    // As Serf: whoever sees an event first passes it on.
                    self.rebroadcast(raw).await;
                }
            }
            Body::Query(query) => {
                if self.query(query) {
                    self.rebroadcast(raw).await;
                }
            }
            Body::QueryResponse(response) => self.query_response(response),
            Body::Relay(relay) => self.relay(relay).await,
            Body::Prune(prune) => {
                if self.admit_prune(&prune) {
                    self.rebroadcast(raw).await;
                    self.prune(prune).await;
                }
            }
        }
    }

    /// Remember a prune intent; `false` if it was seen already.
    fn admit_prune(&mut self, prune: &wire::Prune) -> bool {
        let key = (prune.node.clone(), prune.generation, prune.incarnation);
        if self.prunes.contains(&key) {
            return false;
        }
        if self.prunes.len() == PRUNE_MEMORY {
            self.prunes.pop_front();
        }
        self.prunes.push_back(key);
        true
    }

    /// Forget the member of a prune intent if it left or failed here, or is alive at no newer
    /// incarnation than the sender knew (it has not refuted since). Never this node.
    async fn prune(&mut self, prune: wire::Prune) {
        let shared = Arc::clone(&self.task.shared);
        if prune.node == shared.settings.name {
            return;
        }
        let Some(member) = shared.node.members().into_iter().find(|m| m.name == prune.node) else {
            return;
        };
        let intent = Incarnation::new(prune.generation, prune.incarnation);
        if !matches!(member.state, State::Left | State::Dead) && member.incarnation > intent {
            tracing::debug!(node = %prune.node, "prune ignored: the member refuted since");
            return;
        }
        if let Err(error) = shared.node.force_leave(&prune.node, true).await {
            tracing::debug!(node = %prune.node, %error, "prune not applied");
        }
        bump(&shared.counters.prunes);
    }

    /// Admit and deliver one user event (sent here, gossiped, or replayed by a push-pull).
    fn user_event(&mut self, ltime: u64, name: String, payload: Bytes, coalesce: bool) -> Admission {
        let shared = &self.task.shared;
        shared.clocks.event.witness(ltime);
        let clock = shared.clocks.event.time();
        let admission =
            self.task.event_buffer.admit(ltime, (name.clone(), payload.clone()), clock, self.task.event_min_time);
        match admission {
            Admission::New => {
                bump(&shared.counters.user_events);
                self.newest_event = self.newest_event.max(ltime);
                self.state_changed();
                let event = UserEvent { ltime, name, payload, coalesce };
                if coalesce {
                    self.task.users.push(event, now());
                } else {
                    self.emit(SerfEvent::User(event));
                }
            }
            Admission::Duplicate => bump(&shared.counters.user_event_duplicates),
            Admission::TooOld | Admission::SlotFull => {
                tracing::debug!(ltime, clock, ?admission, "user event refused");
                bump(&shared.counters.user_events_refused);
            }
        }
        admission
    }

    /// Admit a query; deliver it (or answer it, for internal ones) when this node matches.
    /// Returns whether it is new (to be re-broadcast).
    fn query(&mut self, query: wire::Query) -> bool {
        let shared = Arc::clone(&self.task.shared);
        shared.clocks.query.witness(query.ltime);
        let clock = shared.clocks.query.time();
        match self.task.query_buffer.admit(query.ltime, query.id, clock, self.task.query_min_time) {
            Admission::New => {}
            Admission::Duplicate => {
                bump(&shared.counters.query_duplicates);
                return false;
            }
            Admission::TooOld | Admission::SlotFull => {
                bump(&shared.counters.queries_refused);
                return false;
            }
        }
        self.newest_query = self.newest_query.max(query.ltime);
        self.state_changed();
        let local = shared.node.local_member();
        if !query::matches(&query, &local.name, &local.tags) {
            bump(&shared.counters.queries_filtered);
            return true;
        }
        let Some(source_addr) = messages::socket_addr(query.source_addr.as_ref()) else {
            bump(&shared.counters.decode_errors);
            return true;
        };
        let timeout = Duration::from_millis(query.timeout_ms).min(MAX_QUERY_TIMEOUT);
        let responder = Arc::new(Responder {
            shared: Arc::clone(&shared),
            local_name: local.name.to_string(),
            source_name: query.source_node.clone(),
            source_addr,
            relay_factor: u8::try_from(query.relay_factor).unwrap_or(u8::MAX),
            deadline: now() + timeout,
            max_response: shared.settings.max_query_response_size,
            responded: Default::default(),
        });
        bump(&shared.counters.queries);
        if query.request_ack {
            let responder = Arc::clone(&responder);
            let (ltime, id) = (query.ltime, query.id);
            bump(&shared.counters.query_acks_sent);
            self.helpers.spawn(async move {
                if let Err(error) = responder.ack(ltime, id).await {
                    tracing::debug!(%error, "could not send a query ack");
                }
            });
        }
        let delivered = Query {
            ltime: query.ltime,
            id: query.id,
            name: query.name,
            payload: query.payload,
            from: query.source_node,
            responder,
        };
        if !delivered.name.starts_with(keys::INTERNAL_PREFIX) {
            self.emit(SerfEvent::Query(delivered));
            return true;
        }
        match delivered.name.as_str() {
            // Reachability: the ack above is the answer.
            keys::PING => {}
            // This node's own use-key: the handle applies it once the others answered, so that
            // the query goes out sealed with the key every node still reads.
            keys::USE_KEY if delivered.from == shared.settings.name => {}
            keys::INSTALL_KEY | keys::USE_KEY | keys::REMOVE_KEY | keys::LIST_KEYS => {
                let node = shared.node.clone();
                self.helpers.spawn(keys::answer(delivered, node, shared.settings.keyring_file.clone()));
            }
            other => tracing::debug!(query = other, "unknown internal query ignored"),
        }
        true
    }

    /// An ack or response to a query of this node.
    fn query_response(&mut self, response: wire::QueryResponse) {
        let counters = &self.task.shared.counters;
        let key = (response.ltime, response.id);
        let Some(pending) = self.pending.get_mut(&key) else {
            return bump(&counters.query_replies_unmatched);
        };
        if now() > pending.deadline {
            return bump(&counters.query_replies_unmatched);
        }
        let reply = if response.ack {
            if !pending.acks.insert(response.from.clone()) {
                return bump(&counters.query_reply_duplicates);
            }
            bump(&counters.query_acks_received);
            query::QueryReply::Ack { from: response.from }
        } else {
            if !pending.responses.insert(response.from.clone()) {
                return bump(&counters.query_reply_duplicates);
            }
            bump(&counters.query_responses_received);
            query::QueryReply::Response { from: response.from, payload: response.payload }
        };
        match pending.replies.try_send(reply) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => bump(&counters.query_replies_dropped),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // Nobody listens any more.
                self.pending.remove(&key);
            }
        }
    }

    /// Pass a relayed response on to its destination (responses only: the layer is no open
    /// relay).
    async fn relay(&mut self, relay: wire::Relay) {
        let counters = &self.task.shared.counters;
        let Some(dest) = messages::socket_addr(relay.dest_addr.as_ref()) else {
            return bump(&counters.decode_errors);
        };
        if !matches!(messages::decode_message(&relay.message), Ok(Body::QueryResponse(_))) {
            return bump(&counters.decode_errors);
        }
        bump(&counters.relays_forwarded);
        if let Err(error) = self.task.shared.node.send_user_alone(dest, relay.message).await {
            tracing::debug!(%dest, %error, "could not relay a query response");
        }
    }

    /// An ack of this node's probe carried the member's coordinate: a Vivaldi sample.
    async fn probe_ack(&mut self, node: &str, rtt: Duration, payload: &[u8]) {
        let Some(client) = &mut self.task.vivaldi else { return };
        if payload.is_empty() {
            return;
        }
        let counters = &self.task.shared.counters;
        let Ok(other) = messages::decode_coordinate(payload) else {
            return bump(&counters.coordinate_rejections);
        };
        let local = match client.update(node, &other, rtt) {
            Ok(local) => local.clone(),
            Err(CoordinateError::Reset) => {
                tracing::warn!(node, "network coordinate reset after an invalid update");
                client.coordinate().clone()
            }
            Err(error) => {
                tracing::debug!(node, %error, "coordinate sample refused");
                return bump(&counters.coordinate_rejections);
            }
        };
        bump(&counters.coordinate_updates);
        self.task.shared.set_coordinates(local.clone(), node, other);
        let _ = self.task.shared.node.set_ack_payload(messages::encode_coordinate(&local)).await;
    }

    /// The other side's clocks and recent events, from a push-pull exchange.
    fn remote_state(&mut self, join: bool, raw: &[u8]) {
        let shared = Arc::clone(&self.task.shared);
        let state = match messages::decode_state(raw) {
            Ok(state) => state,
            Err(messages::DecodeError::NotOurs(_)) => return bump(&shared.counters.foreign_payloads),
            Err(_) => return bump(&shared.counters.decode_errors),
        };
        // No message of the remote's current times exists yet: witness one less, as Serf.
        for (clock, time) in [
            (&shared.clocks.member, state.member_ltime),
            (&shared.clocks.event, state.event_ltime),
            (&shared.clocks.query, state.query_ltime),
        ] {
            if time > 0 {
                clock.witness(time - 1);
            }
        }
        self.state_changed();
        if join && shared.ignore_old_events.load(Ordering::SeqCst) && state.event_ltime > self.task.event_min_time {
            // A join without replay: everything the cluster did before is history.
            self.task.event_min_time = state.event_ltime;
        }
        for slot in state.events {
            for event in slot.events {
                self.user_event(slot.ltime, event.name, event.payload, false);
            }
        }
    }

    // -------------------------------------------------------------------------------------
    // Commands

    async fn send_user_event(&mut self, name: String, payload: Bytes, coalesce: bool) -> Result<(), SerfError> {
        let shared = Arc::clone(&self.task.shared);
        let len = name.len() + payload.len();
        let max = shared.settings.max_user_event_size;
        if len > max {
            return Err(SerfError::EventTooLarge { len, max });
        }
        let ltime = shared.clocks.event.time();
        shared.clocks.event.increment();
        let body = wire::UserEvent { ltime, name: name.clone(), payload: payload.clone(), coalesce };
        let raw = messages::encode_message(Body::UserEvent(body));
        let limit = shared.node.max_user_payload();
        if raw.len() > limit {
            // The effective limit leaves room for the framing, so this does not happen; refuse
            // before delivering anything all the same.
            return Err(NodeError::PayloadTooLarge { len: raw.len(), limit }.into());
        }
        self.user_event(ltime, name, payload, coalesce);
        shared.node.broadcast_user(None, raw).await?;
        Ok(())
    }

    async fn send_query(
        &mut self,
        name: String,
        payload: Bytes,
        params: QueryParams,
    ) -> Result<QueryResponse, SerfError> {
        let shared = Arc::clone(&self.task.shared);
        query::check_filters(&params.filter_tags)?;
        let live = shared.node.live_members().len();
        let timeout = params.timeout.unwrap_or_else(|| shared.default_query_timeout(live));
        let ltime = shared.clocks.query.time();
        let id: u32 = self.rng.random();
        let query = wire::Query {
            ltime,
            id,
            source_node: shared.settings.name.clone(),
            source_addr: Some(messages::address(shared.node.advertise_addr())),
            filter_nodes: params.filter_nodes,
            filter_tags: params.filter_tags.into_iter().map(|(tag, expr)| wire::TagFilter { tag, expr }).collect(),
            request_ack: params.request_ack,
            relay_factor: u32::from(params.relay_factor),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1),
            name,
            payload,
        };
        let raw = messages::encode_message(Body::Query(query.clone()));
        let max = shared.settings.max_query_size.min(shared.node.max_user_payload());
        if raw.len() > max {
            return Err(SerfError::QueryTooLarge { len: raw.len(), max });
        }
        let deadline = now() + timeout;
        let (replies, replies_rx) = mpsc::channel(2 * live + 64);
        self.pending.insert(
            (ltime, id),
            PendingQuery { deadline, acks: Default::default(), responses: Default::default(), replies },
        );
        // As Serf, the query is handled here too: this node may match and answer itself.
        self.query(query);
        shared.node.broadcast_user(None, raw).await?;
        Ok(QueryResponse { id, ltime, deadline, num_nodes: live, replies: replies_rx })
    }

    // -------------------------------------------------------------------------------------
    // Timers

    fn flush_due(&mut self) {
        let now = now();
        self.sweep_queries(now);
        if self.task.members.deadline().is_some_and(|at| at <= now) {
            for event in self.task.members.flush() {
                self.emit(event);
            }
        }
        if self.task.users.deadline().is_some_and(|at| at <= now) {
            for event in self.task.users.flush() {
                self.emit(SerfEvent::User(event));
            }
        }
    }

    /// Forget the queries past their deadline (their reply streams end) or nobody listens to.
    fn sweep_queries(&mut self, now: Instant) {
        self.pending.retain(|_, pending| pending.deadline >= now && !pending.replies.is_closed());
    }

    /// After every input: when a clock moved since the push-pull state was last refreshed, it is
    /// due; the snapshot learns the new clocks.
    fn clocks_checked(&mut self) {
        let clocks = &self.task.shared.clocks;
        let times = (clocks.member.time(), clocks.event.time(), clocks.query.time());
        if self.state_sent != Some(times) {
            self.state_changed();
        }
        self.record_clocks();
    }

    async fn housekeeping(&mut self) {
        let now = now();
        self.sweep_queries(now);
        self.refresh_state().await;
        self.record_clocks();
        if now.saturating_duration_since(self.coordinate_recorded) >= COORDINATE_RECORD_INTERVAL {
            self.record_coordinate();
        }
    }

    // -------------------------------------------------------------------------------------
    // Outputs

    fn emit(&self, event: SerfEvent) {
        // Nobody listening is not an error.
        let _ = self.task.events.send(event);
    }

    async fn rebroadcast(&self, raw: Bytes) {
        if let Err(error) = self.task.shared.node.broadcast_user_detached(raw).await {
            tracing::debug!(%error, "could not re-broadcast");
        }
    }

    fn record(&self, record: Record) {
        if let Some(snapshot) = &self.task.shared.snapshot {
            snapshot.record(record);
        }
    }

    fn record_clocks(&mut self) {
        let clocks = &self.task.shared.clocks;
        let now = (clocks.member.time().saturating_sub(1), self.newest_event, self.newest_query);
        if now == self.recorded {
            return;
        }
        let before = std::mem::replace(&mut self.recorded, now);
        if now.0 > before.0 {
            self.record(Record::Clock(now.0));
        }
        if now.1 > before.1 {
            self.record(Record::EventClock(now.1));
        }
        if now.2 > before.2 {
            self.record(Record::QueryClock(now.2));
        }
    }

    fn record_coordinate(&mut self) {
        self.coordinate_recorded = now();
        if let Some(client) = &self.task.vivaldi {
            self.record(Record::Coordinate(client.coordinate().clone()));
        }
    }

    /// The push-pull state must be refreshed: now, unless it is large and was refreshed moments
    /// ago.
    fn state_changed(&mut self) {
        let at =
            if self.state_len > LARGE_STATE { now().max(self.state_refreshed + STATE_MIN_INTERVAL) } else { now() };
        self.state_due.get_or_insert(at);
    }

    /// Tell the node what to send in push-pull exchanges, when it changed.
    async fn refresh_state(&mut self) {
        let clocks = &self.task.shared.clocks;
        let times = (clocks.member.time(), clocks.event.time(), clocks.query.time());
        if self.state_due.is_none() && self.state_sent == Some(times) {
            return;
        }
        let mut budget = MAX_STATE_EVENT_BYTES;
        let mut events = Vec::new();
        'slots: for slot in self.task.event_buffer.newest_first() {
            let mut bodies = Vec::with_capacity(slot.items.len());
            for (name, payload) in &slot.items {
                let size = name.len() + payload.len() + 8;
                if size > budget {
                    if !bodies.is_empty() {
                        events.push(wire::EventSlot { ltime: slot.ltime, events: bodies });
                    }
                    break 'slots;
                }
                budget -= size;
                bodies.push(wire::EventBody { name: name.clone(), payload: payload.clone() });
            }
            events.push(wire::EventSlot { ltime: slot.ltime, events: bodies });
        }
        let state = wire::PushPullState { member_ltime: times.0, event_ltime: times.1, query_ltime: times.2, events };
        let encoded = messages::encode_state(&state);
        let len = encoded.len();
        if self.task.shared.node.set_local_state(encoded).await.is_ok() {
            self.state_len = len;
            self.state_sent = Some(times);
            self.state_due = None;
            self.state_refreshed = now();
        }
    }
}
