//! The Raft state machine of a server: the [`Registry`] as [`consensus`] replicates it.
//!
//! [`ReplicatedRegistry`] is what `consensus::Consensus` drives on every server, leader and
//! followers alike: each log entry is a [`RaftCommand`], applied in log order; the answer
//! ([`RaftReply`]) travels back to the server that proposed it, so it must (and does) encode
//! with postcard, errors included ([`Refusal`] mirrors [`service_registry::Error`], which
//! does not derive serde).
//!
//! Besides the registry, applying an entry does what must happen on every server at that
//! moment, outside the replicated state:
//!
//! - wakes the blocking queries whose data changed ([`WatchHub::fire`]): a `?stale` or default
//!   read waiting on a follower wakes when the follower applies the change;
//! - records the lock-delay of every lock released by a session invalidation, by this
//!   server's wall clock ([`LockDelays`], as Consul's state store does on every server; only
//!   the server that takes an acquire checks it);
//! - tells the leader side ([`SessionEvent`], over a channel) which sessions with a TTL
//!   started, ended, or were renewed through the log, so that the leader's TTL timers follow;
//! - publishes the last applied index, so that a write through a follower resolves only once
//!   the follower applied it too.
//!
//! The registry lives behind its own lock (not consensus's), so that
//! [`Store::read`](super::Store::read) can hand out a read guard.
//!
//! Snapshots are the registry's [`Snapshot`] in postcard, behind a format byte and the last
//! applied entry's index ([`SNAPSHOT_FORMAT`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use service_registry::{Applied, Changes, Command, Outcome, Registry, Snapshot, Topic, TxnError};
use tokio::sync::{mpsc, watch};

use super::feed::{Feed, Published};
use super::{LockDelays, StoreError, WatchHub};

/// The first byte of a snapshot: the layout of what follows. Bump it when [`SnapshotBody`],
/// [`Snapshot`] or anything inside changes shape.
pub(crate) const SNAPSHOT_FORMAT: u8 = 1;

/// One entry of the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RaftCommand {
    /// A registry command, applied with [`Registry::apply`] at the entry's index (boxed:
    /// commands are large, renews small; postcard encodes a box as its content).
    Registry(Box<Command>),
    /// Restart a session's TTL timer, on whichever server leads. A renew that reaches a
    /// follower travels through the log this way, since the timers live on the leader; the
    /// registry does not change.
    RenewSession {
        /// The session ID.
        id: String,
    },
    /// Replace the whole registry with a saved one (`PUT /v1/snapshot`), in one entry so that
    /// every server swaps it at the same index, all or nothing. Every index a read answers
    /// afterwards is at least the entry's, so blocking queries never see an index go back.
    Restore(Box<Snapshot>),
}

impl RaftCommand {
    /// An entry for a registry command.
    pub(crate) fn registry(command: Command) -> Self {
        Self::Registry(Box::new(command))
    }
}

/// What applying a [`RaftCommand`] answers, sent back to the server that proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RaftReply {
    /// The registry applied the command.
    Applied(Applied),
    /// The registry refused the command; nothing changed.
    Refused(Refusal),
    /// A renew: whether the session exists.
    Renewed {
        /// Whether the session exists.
        exists: bool,
    },
    /// A restore: the registry was replaced at this index.
    Restored {
        /// The entry's index.
        index: u64,
    },
}

/// [`service_registry::Error`] in a form that encodes, variant for variant; [`Refusal::Other`]
/// carries the message of a variant this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Refusal {
    /// See [`service_registry::Error::StaleIndex`].
    StaleIndex { index: u64, last: u64 },
    /// See [`service_registry::Error::ValueTooLarge`].
    ValueTooLarge { key: String, size: usize, limit: usize },
    /// See [`service_registry::Error::Missing`].
    Missing { what: String },
    /// See [`service_registry::Error::SessionNotFound`].
    SessionNotFound { session: String },
    /// See [`service_registry::Error::SessionExists`].
    SessionExists { session: String },
    /// See [`service_registry::Error::NodeNotFound`].
    NodeNotFound { node: String },
    /// See [`service_registry::Error::ServiceNotFound`].
    ServiceNotFound { node: String, service_id: String },
    /// See [`service_registry::Error::CheckNotFound`].
    CheckNotFound { node: String, check_id: String },
    /// See [`service_registry::Error::CheckCritical`].
    CheckCritical { node: String, check_id: String },
    /// See [`service_registry::Error::TxnFailed`].
    TxnFailed { errors: Vec<TxnError> },
    /// A refusal this version cannot name, with its message.
    Other { message: String },
}

impl From<service_registry::Error> for Refusal {
    fn from(error: service_registry::Error) -> Self {
        use service_registry::Error as E;
        match error {
            E::StaleIndex { index, last } => Self::StaleIndex { index, last },
            E::ValueTooLarge { key, size, limit } => Self::ValueTooLarge { key, size, limit },
            E::Missing { what } => Self::Missing { what: what.to_owned() },
            E::SessionNotFound { session } => Self::SessionNotFound { session },
            E::SessionExists { session } => Self::SessionExists { session },
            E::NodeNotFound { node } => Self::NodeNotFound { node },
            E::ServiceNotFound { node, service_id } => Self::ServiceNotFound { node, service_id },
            E::CheckNotFound { node, check_id } => Self::CheckNotFound { node, check_id },
            E::CheckCritical { node, check_id } => Self::CheckCritical { node, check_id },
            E::TxnFailed { errors } => Self::TxnFailed { errors },
            other => Self::Other { message: other.to_string() },
        }
    }
}

impl Refusal {
    /// The store error a client gets: the registry's own error wherever it has a variant.
    pub(crate) fn into_store_error(self) -> StoreError {
        use service_registry::Error as E;
        let error = match self {
            Self::StaleIndex { index, last } => E::StaleIndex { index, last },
            Self::ValueTooLarge { key, size, limit } => E::ValueTooLarge { key, size, limit },
            Self::Missing { what } => E::Missing { what: missing_what(&what) },
            Self::SessionNotFound { session } => E::SessionNotFound { session },
            Self::SessionExists { session } => E::SessionExists { session },
            Self::NodeNotFound { node } => E::NodeNotFound { node },
            Self::ServiceNotFound { node, service_id } => E::ServiceNotFound { node, service_id },
            Self::CheckNotFound { node, check_id } => E::CheckNotFound { node, check_id },
            Self::CheckCritical { node, check_id } => E::CheckCritical { node, check_id },
            Self::TxnFailed { errors } => E::TxnFailed { errors },
            Self::Other { message } => return StoreError::Failed { reason: message },
        };
        StoreError::Refused(error)
    }
}

/// The registry names what is missing with a `&'static str`: map the text back to it.
fn missing_what(what: &str) -> &'static str {
    const KNOWN: &[&str] = &["check ID", "key", "node name", "service name", "session ID", "session"];
    KNOWN.iter().copied().find(|known| *known == what).unwrap_or("field")
}

/// What the leader side must hear about sessions, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionEvent {
    /// A session with a TTL was created: its timer starts (on the leader).
    Started {
        /// The session ID.
        id: String,
        /// Its TTL.
        ttl: Duration,
    },
    /// A session is gone (destroyed or invalidated): its timer stops.
    Ended {
        /// The session ID.
        id: String,
    },
    /// A renew went through the log: the leader restarts the session's timer.
    Renewed {
        /// The session ID.
        id: String,
    },
}

/// What the state machine shares with the store that reads it.
#[derive(Debug)]
pub(crate) struct SharedRegistry {
    registry: RwLock<Registry>,
    /// Blocking queries waiting on this server.
    pub(crate) hub: WatchHub,
    /// Lock-delays of released locks, by this server's wall clock.
    pub(crate) lock_delays: Mutex<LockDelays>,
    /// The index of the last log entry applied by [`ReplicatedRegistry`].
    applied: watch::Sender<u64>,
    /// Session facts for the leader side.
    events: mpsc::UnboundedSender<SessionEvent>,
    /// Applied entries, for the client agents subscribed here.
    pub(crate) feed: Feed,
}

impl SharedRegistry {
    /// The registry as applied here. Hold it briefly, never across an `.await`.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Registry> {
        // Registry::apply leaves the registry unchanged when it fails and nothing else
        // writes it: a poisoned lock still guards a consistent registry.
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A subscription for a client agent: the snapshot item and the entries after it (see
    /// [`Feed`]).
    pub(crate) fn subscribe_feed(&self) -> (Vec<u8>, tokio::sync::broadcast::Receiver<Published>) {
        self.feed.subscribe(&self.read())
    }

    /// The index of the last entry applied here (0 before any).
    pub(crate) fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the entry at `index` is applied here, at most `timeout`; whether it is.
    pub(crate) async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|applied| *applied >= index)).await.is_ok_and(|r| r.is_ok())
    }

    fn lock_delays(&self) -> std::sync::MutexGuard<'_, LockDelays> {
        self.lock_delays.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, event: SessionEvent) {
        // The receiver is gone only while the store shuts down: nothing to time then.
        let _ = self.events.send(event);
    }
}

/// The [`consensus::StateMachine`] of a server: the registry, and what applying an entry
/// must do on this server besides (see the module doc).
#[derive(Debug)]
pub(crate) struct ReplicatedRegistry {
    shared: Arc<SharedRegistry>,
}

impl ReplicatedRegistry {
    /// An empty registry; the shared half goes to the store, the receiver to its leader side.
    pub(crate) fn new() -> (Self, Arc<SharedRegistry>, mpsc::UnboundedReceiver<SessionEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(SharedRegistry {
            registry: RwLock::new(Registry::new()),
            hub: WatchHub::default(),
            lock_delays: Mutex::new(LockDelays::default()),
            applied: watch::Sender::new(0),
            events,
            feed: Feed::default(),
        });
        (Self { shared: Arc::clone(&shared) }, shared, receiver)
    }

    fn apply_registry(&self, index: u64, command: Command) -> RaftReply {
        let ttl = match &command {
            Command::SessionCreate(spec) => spec.ttl.map(|ttl| (spec.id.clone(), ttl)),
            _ => None,
        };
        let applied = {
            let mut registry = self.shared.registry.write().unwrap_or_else(PoisonError::into_inner);
            // The feed gets the command only if it applies (a refused one changes nothing).
            let fed = self.shared.feed.prepare(index, &command);
            let applied = match registry.apply(index, command) {
                Ok(applied) => {
                    self.shared.feed.send(index, fed);
                    applied
                }
                Err(error) => {
                    self.shared.feed.publish(index, None);
                    return RaftReply::Refused(error.into());
                }
            };
            self.shared.lock_delays().record(&applied.released_locks, SystemTime::now());
            for topic in &applied.changes.topics {
                if let Topic::Session(id) = topic {
                    if registry.session(id).is_none() {
                        self.shared.send(SessionEvent::Ended { id: id.clone() });
                    }
                }
            }
            if let (Some((id, ttl)), Outcome::Done) = (ttl, &applied.outcome) {
                self.shared.send(SessionEvent::Started { id, ttl });
            }
            applied
        };
        let _woken = self.shared.hub.fire(&applied.changes);
        RaftReply::Applied(applied)
    }

    /// Swaps in a saved registry at `index`: its own indexes kept, every floor raised to
    /// `index` (so no index a read answers goes back), the blocking queries whose data differ
    /// woken, and the leader side told which TTL sessions ended and which (re)start.
    fn apply_restore(&self, index: u64, mut snapshot: Snapshot) -> RaftReply {
        snapshot.last_index = index;
        snapshot.kv_floor = snapshot.kv_floor.max(index);
        snapshot.catalog_floor = snapshot.catalog_floor.max(index);
        {
            let mut registry = self.shared.registry.write().unwrap_or_else(PoisonError::into_inner);
            for session in registry.sessions() {
                self.shared.send(SessionEvent::Ended { id: session.id.clone() });
            }
            for session in &snapshot.sessions {
                if let Some(ttl) = session.ttl {
                    self.shared.send(SessionEvent::Started { id: session.id.clone(), ttl });
                }
            }
            *registry = Registry::restore(snapshot);
        }
        // The floors moved: every index changed. Wake every blocking query.
        let _woken = self.shared.hub.fire_all();
        RaftReply::Restored { index }
    }
}

impl consensus::StateMachine for ReplicatedRegistry {
    type Command = RaftCommand;
    type Response = RaftReply;
    type RestoreError = RestoreError;

    fn apply(&mut self, index: u64, command: RaftCommand) -> RaftReply {
        let reply = match command {
            RaftCommand::Registry(command) => self.apply_registry(index, *command),
            RaftCommand::RenewSession { id } => {
                let exists = {
                    // Under the write lock, as every publication (see Feed).
                    let registry = self.shared.registry.write().unwrap_or_else(PoisonError::into_inner);
                    self.shared.feed.publish(index, None);
                    registry.session(&id).is_some()
                };
                if exists {
                    self.shared.send(SessionEvent::Renewed { id });
                }
                RaftReply::Renewed { exists }
            }
            RaftCommand::Restore(snapshot) => self.apply_restore(index, *snapshot),
        };
        self.shared.applied.send_modify(|applied| *applied = (*applied).max(index));
        reply
    }

    fn snapshot(&self) -> Vec<u8> {
        let body = SnapshotBody { applied: self.shared.applied_index(), registry: self.shared.read().snapshot() };
        let mut bytes = vec![SNAPSHOT_FORMAT];
        // Serialising plain structs of strings, integers, durations and collections into a
        // Vec cannot fail with postcard.
        bytes.extend(postcard::to_allocvec(&body).unwrap_or_default());
        bytes
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), RestoreError> {
        let (format, rest) = bytes.split_first().ok_or(RestoreError::Empty)?;
        if *format != SNAPSHOT_FORMAT {
            return Err(RestoreError::Format { found: *format, expected: SNAPSHOT_FORMAT });
        }
        let body: SnapshotBody = postcard::from_bytes(rest).map_err(RestoreError::Decode)?;
        let applied = body.applied;
        let changes = {
            let mut registry = self.shared.registry.write().unwrap_or_else(PoisonError::into_inner);
            let before = registry.snapshot();
            let changes = changed_between(&before, &body.registry);
            *registry = Registry::restore(body.registry);
            self.shared.feed.reset(applied);
            changes
        };
        self.shared.applied.send_replace(applied);
        let _woken = self.shared.hub.fire(&changes);
        Ok(())
    }
}

/// What a snapshot holds after its format byte.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotBody {
    /// The index of the last log entry applied (a renew or a registry command).
    applied: u64,
    /// The registry.
    registry: Snapshot,
}

/// Every key and topic present in either state whose record differs: what a blocking query
/// must be woken for when one state replaces the other (a snapshot installed from the
/// leader). Wakes a little more than needed (a woken query whose index did not move goes
/// back to waiting), never less for keys, prefixes and recorded topics.
pub(crate) fn changed_between(before: &Snapshot, after: &Snapshot) -> Changes {
    let mut keys = BTreeSet::new();
    let entries = |s: &Snapshot| -> Vec<(String, u64)> {
        let live = s.kv.iter().map(|e| (e.key.clone(), e.modify_index));
        live.chain(s.tombstones.iter().cloned()).collect()
    };
    let (old, new) = (entries(before), entries(after));
    let old_set: BTreeSet<&(String, u64)> = old.iter().collect();
    let new_set: BTreeSet<&(String, u64)> = new.iter().collect();
    for (key, _) in old_set.symmetric_difference(&new_set) {
        keys.insert(key.clone());
    }
    let old_topics: BTreeSet<&(Topic, u64)> = before.topic_index.iter().collect();
    let new_topics: BTreeSet<&(Topic, u64)> = after.topic_index.iter().collect();
    let topics = old_topics.symmetric_difference(&new_topics).map(|(topic, _)| topic.clone()).collect();
    Changes { keys, topics }
}

/// A snapshot that cannot be restored; the registry is left as it was.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    /// Zero bytes.
    #[error("the registry snapshot is empty")]
    Empty,
    /// Written by a version with another layout.
    #[error("registry snapshot format {found}, this version reads format {expected}")]
    Format {
        /// The format byte found.
        found: u8,
        /// The format this version writes.
        expected: u8,
    },
    /// The bytes do not decode.
    #[error("the registry snapshot does not decode: {0}")]
    Decode(postcard::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::StateMachine as _;
    use service_registry::{CheckRegistration, HealthStatus, KvOp, Registration, SessionSpec, WatchTarget};

    fn set(key: &str, value: &str) -> RaftCommand {
        RaftCommand::registry(Command::Kv(KvOp::Set { key: key.into(), value: value.as_bytes().to_vec(), flags: 0 }))
    }

    fn node(name: &str) -> RaftCommand {
        RaftCommand::registry(Command::Register(Registration {
            node: name.into(),
            address: "127.0.0.1".into(),
            checks: vec![CheckRegistration {
                check_id: "serfHealth".into(),
                status: HealthStatus::Passing,
                ..CheckRegistration::default()
            }],
            ..Registration::default()
        }))
    }

    fn session(id: &str, ttl: Option<u64>, lock_delay: u64) -> RaftCommand {
        RaftCommand::registry(Command::SessionCreate(SessionSpec {
            ttl: ttl.map(Duration::from_secs),
            lock_delay: Duration::from_secs(lock_delay),
            ..SessionSpec::new(id, "n1")
        }))
    }

    fn roundtrip<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
        postcard::from_bytes(&postcard::to_allocvec(value).unwrap()).unwrap()
    }

    #[test]
    fn applies_at_the_log_index_and_answers_what_the_registry_did() {
        let (mut machine, shared, _events) = ReplicatedRegistry::new();
        let RaftReply::Applied(applied) = machine.apply(3, set("a", "1")) else { panic!("not applied") };
        assert_eq!(applied.index, 3);
        assert_eq!(applied.outcome, Outcome::Done);
        assert_eq!(shared.read().index(&WatchTarget::Key("a".into())), 3);
        assert_eq!(shared.applied_index(), 3);
        // A gap (Raft's own entries) is fine; a refusal changes nothing but the applied index.
        let acquire = RaftCommand::registry(Command::Kv(KvOp::Acquire {
            key: "a".into(),
            value: vec![],
            flags: 0,
            session: "nope".into(),
        }));
        let reply = machine.apply(9, acquire);
        assert_eq!(reply, RaftReply::Refused(Refusal::SessionNotFound { session: "nope".into() }));
        assert_eq!(shared.read().last_index(), 3);
        assert_eq!(shared.applied_index(), 9);
    }

    #[test]
    fn commands_and_replies_encode_with_postcard_errors_included() {
        let (mut machine, _shared, _events) = ReplicatedRegistry::new();
        for (index, command) in [node("n1"), session("s1", Some(10), 15), set("a", "1")].into_iter().enumerate() {
            assert_eq!(roundtrip(&command), command);
            let reply = machine.apply(index as u64 + 1, command);
            assert_eq!(roundtrip(&reply), reply);
        }
        let txn = RaftCommand::registry(Command::Txn(vec![service_registry::TxnOp::Get { key: "a".into() }]));
        let reply = machine.apply(10, txn);
        assert!(matches!(&reply, RaftReply::Applied(Applied { outcome: Outcome::Txn(rows), .. }) if rows.len() == 1));
        assert_eq!(roundtrip(&reply), reply);
        let too_big = RaftCommand::registry(Command::Kv(KvOp::Set {
            key: "big".into(),
            value: vec![0; service_registry::MAX_VALUE_SIZE + 1],
            flags: 0,
        }));
        let reply = machine.apply(11, too_big);
        assert!(matches!(reply, RaftReply::Refused(Refusal::ValueTooLarge { .. })), "{reply:?}");
        assert_eq!(roundtrip(&reply), reply);
        let renew = RaftCommand::RenewSession { id: "s1".into() };
        assert_eq!(roundtrip(&renew), renew);
        assert_eq!(roundtrip(&RaftReply::Renewed { exists: true }), RaftReply::Renewed { exists: true });
    }

    #[test]
    fn a_refusal_maps_back_to_the_registry_error() {
        let errors = [
            service_registry::Error::Missing { what: "node name" },
            service_registry::Error::SessionNotFound { session: "s".into() },
            service_registry::Error::TxnFailed {
                errors: vec![TxnError { op_index: 1, what: "failed to lock key \"a\"".into() }],
            },
            service_registry::Error::ValueTooLarge { key: "k".into(), size: 9, limit: 8 },
        ];
        for error in errors {
            let refusal = roundtrip(&Refusal::from(error.clone()));
            match refusal.into_store_error() {
                StoreError::Refused(back) => assert_eq!(back, error),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn sessions_with_a_ttl_are_reported_to_the_leader_side_in_log_order() {
        let (mut machine, _shared, mut events) = ReplicatedRegistry::new();
        let _ = machine.apply(1, node("n1"));
        let _ = machine.apply(2, session("s1", Some(10), 0));
        let _ = machine.apply(3, session("s2", None, 0));
        let _ = machine.apply(4, RaftCommand::RenewSession { id: "s1".into() });
        assert_eq!(
            machine.apply(5, RaftCommand::RenewSession { id: "zz".into() }),
            RaftReply::Renewed { exists: false }
        );
        let _ = machine.apply(6, RaftCommand::registry(Command::SessionDestroy { id: "s1".into() }));
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            seen.push(event);
        }
        assert_eq!(
            seen,
            [
                SessionEvent::Started { id: "s1".into(), ttl: Duration::from_secs(10) },
                SessionEvent::Renewed { id: "s1".into() },
                SessionEvent::Ended { id: "s1".into() },
            ]
        );
    }

    #[test]
    fn an_invalidated_session_records_the_lock_delay_of_its_locks() {
        let (mut machine, shared, _events) = ReplicatedRegistry::new();
        let _ = machine.apply(1, node("n1"));
        let _ = machine.apply(2, session("s1", None, 15));
        let acquire = |session: &str| {
            RaftCommand::registry(Command::Kv(KvOp::Acquire {
                key: "lock".into(),
                value: vec![],
                flags: 0,
                session: session.into(),
            }))
        };
        assert!(matches!(machine.apply(3, acquire("s1")), RaftReply::Applied(_)));
        let _ = machine.apply(4, RaftCommand::registry(Command::SessionDestroy { id: "s1".into() }));
        let RaftCommand::Registry(command) = acquire("s2") else { unreachable!() };
        let refused = shared.lock_delays().check(&command, SystemTime::now());
        assert!(matches!(refused, Err(StoreError::LockDelay { .. })), "{refused:?}");
    }

    #[tokio::test]
    async fn a_waiting_query_wakes_when_its_key_is_applied_and_not_for_others() {
        let (mut machine, shared, _events) = ReplicatedRegistry::new();
        let _ = machine.apply(1, set("other", "x"));
        let waiter = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let target = WatchTarget::Key("a".into());
                let read = Arc::clone(&shared);
                shared.hub.wait_above(target.clone(), 1, Duration::from_secs(10), || read.read().index(&target)).await
            })
        };
        while shared.hub.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let _ = machine.apply(2, set("b", "x"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "woken by an unrelated key");
        let _ = machine.apply(5, set("a", "x"));
        assert_eq!(waiter.await.unwrap(), 5);
        assert!(shared.wait_applied(5, Duration::from_millis(1)).await);
        assert!(!shared.wait_applied(6, Duration::from_millis(10)).await);
    }

    #[tokio::test]
    async fn snapshot_restore_round_trips_and_wakes_queries_whose_data_changed() {
        let (mut leader, leader_shared, _events) = ReplicatedRegistry::new();
        let _ = leader.apply(1, node("n1"));
        let _ = leader.apply(2, session("s1", Some(30), 5));
        let _ = leader.apply(3, set("a", "1"));
        let _ = leader.apply(4, set("b", "2"));
        let _ = leader.apply(5, RaftCommand::registry(Command::Kv(KvOp::Delete { key: "b".into() })));
        let _ = leader.apply(6, RaftCommand::RenewSession { id: "s1".into() });
        let bytes = leader.snapshot();
        assert_eq!(bytes[0], SNAPSHOT_FORMAT);

        let (mut follower, shared, _events) = ReplicatedRegistry::new();
        let _ = follower.apply(1, set("b", "old"));
        let waiter = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let target = WatchTarget::Key("b".into());
                let read = Arc::clone(&shared);
                shared.hub.wait_above(target.clone(), 1, Duration::from_secs(10), || read.read().index(&target)).await
            })
        };
        while shared.hub.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        follower.restore(&bytes).unwrap();
        assert_eq!(waiter.await.unwrap(), 5, "the delete's tombstone index");
        assert_eq!(*shared.read(), *leader_shared.read());
        assert_eq!(shared.applied_index(), 6);
        assert_eq!(follower.snapshot(), bytes, "the same state gives the same bytes");

        // Both go on identically.
        assert_eq!(follower.apply(8, set("c", "3")), leader.apply(8, set("c", "3")));
        assert_eq!(*shared.read(), *leader_shared.read());
    }

    #[test]
    fn a_bad_snapshot_is_refused_and_changes_nothing() {
        let (mut machine, shared, _events) = ReplicatedRegistry::new();
        let _ = machine.apply(1, set("a", "1"));
        let before = shared.read().clone();
        assert!(matches!(machine.restore(&[]), Err(RestoreError::Empty)));
        assert!(matches!(machine.restore(&[9, 1, 2]), Err(RestoreError::Format { found: 9, .. })));
        assert!(matches!(machine.restore(&[SNAPSHOT_FORMAT, 0xff, 0xff]), Err(RestoreError::Decode(_))));
        assert_eq!(*shared.read(), before);
        assert_eq!(shared.applied_index(), 1);
    }
}
