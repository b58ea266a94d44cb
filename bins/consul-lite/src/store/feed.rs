//! The feed of applied log entries a server streams to client agents, and the replica a
//! client agent keeps from it.
//!
//! ```text
//!  server: ReplicatedRegistry::apply ──(under the registry's write lock)──► Feed::publish
//!            │                                                               │ broadcast (bounded)
//!  Feed::subscribe: (index, Snapshot, receiver) under the read lock ──► server::subscribe task
//!            ──► FeedItem::Snapshot, then FeedItem::Entry… in index order, FeedItem::Heartbeat
//!                (the server's view: when it changes, else as a keepalive)
//!  client agent: Replica::reset(snapshot) / Replica::apply(entry) ──► Changes ──► WatchHub::fire
//! ```
//!
//! Entries are published while the registry's write lock is held, and a subscription takes
//! its snapshot and its receiver under the read lock: the subscriber gets every entry after
//! the snapshot, none twice, none missing. A subscriber that falls more than
//! [`FEED_CAPACITY`] entries behind is dropped (it resubscribes from a fresh snapshot); a
//! snapshot installed from the leader ([`Feed::reset`]) ends every subscription the same way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_registry::{Changes, Command, Registry, Snapshot};
use tokio::sync::broadcast;

use super::replicated::changed_between;

/// Entries a subscription may fall behind the server's apply before it is dropped.
pub(crate) const FEED_CAPACITY: usize = 4096;

/// What a server streams to a subscribed client agent: a snapshot first, then every entry
/// the server applies after it, in index order, with heartbeats in between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FeedItem {
    /// The registry as applied up to log `index`.
    Snapshot {
        /// The index of the last entry the snapshot holds.
        index: u64,
        /// The registry.
        registry: Snapshot,
    },
    /// The log entry at `index`: a registry command, or `None` for an entry that leaves the
    /// registry as it is (a renew, or a command the registry refused).
    Entry {
        /// Its log index.
        index: u64,
        /// The command.
        command: Option<Command>,
    },
    /// The server's view of its cluster: after the snapshot, whenever it changes (see
    /// [`crate::server::subscribe`]), and as a keepalive when nothing else was sent for
    /// [`KEEPALIVE`](crate::server::subscribe::KEEPALIVE).
    Heartbeat(ServerView),
}

/// The same encoding as [`FeedItem`] (same variants, same order), borrowing: what a server
/// encodes without cloning the command.
#[derive(Serialize)]
enum FeedItemRef<'a> {
    Snapshot { index: u64, registry: &'a Snapshot },
    Entry { index: u64, command: Option<&'a Command> },
}

/// What a server knows of its cluster, for a client agent's `X-Consul-KnownLeader`,
/// `X-Consul-LastContact` and `/v1/status/*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServerView {
    /// The leader's server address, if known.
    pub(crate) leader: Option<String>,
    /// Time since the server last heard from the leader (0 on the leader).
    pub(crate) last_contact: Duration,
    /// The voters' server addresses.
    pub(crate) peers: Vec<String>,
}

/// What a server publishes as it applies entries.
#[derive(Debug, Clone)]
pub(crate) enum Published {
    /// An encoded [`FeedItem::Entry`].
    Entry(Arc<Vec<u8>>),
    /// The registry was replaced (a snapshot from the leader): subscriptions must start again.
    Reset,
}

/// The server side: entries published as they are applied.
#[derive(Debug)]
pub(crate) struct Feed {
    sender: broadcast::Sender<Published>,
    /// The index of the last entry published (or restored).
    index: AtomicU64,
}

impl Default for Feed {
    fn default() -> Self {
        Self { sender: broadcast::Sender::new(FEED_CAPACITY), index: AtomicU64::new(0) }
    }
}

impl Feed {
    /// Publishes the entry at `index`. Call it with the registry's write lock held. Costs
    /// nothing while no client agent subscribes.
    pub(crate) fn publish(&self, index: u64, command: Option<&Command>) {
        let encoded = self.encode(index, command);
        self.send(index, encoded);
    }

    /// The entry at `index` encoded, before the registry consumes the command (`None` while
    /// no client agent subscribes); [`Feed::send`] publishes it.
    pub(crate) fn prepare(&self, index: u64, command: &Command) -> Option<Vec<u8>> {
        self.encode(index, Some(command))
    }

    /// Publishes what [`Feed::prepare`] encoded. Call it with the registry's write lock held.
    pub(crate) fn send(&self, index: u64, encoded: Option<Vec<u8>>) {
        self.index.fetch_max(index, Ordering::SeqCst);
        if let Some(bytes) = encoded {
            let _ = self.sender.send(Published::Entry(Arc::new(bytes)));
        }
    }

    fn encode(&self, index: u64, command: Option<&Command>) -> Option<Vec<u8>> {
        if self.sender.receiver_count() == 0 {
            return None;
        }
        postcard::to_allocvec(&FeedItemRef::Entry { index, command }).ok()
    }

    /// The registry was replaced with a state at `index`: every subscription ends. Call it
    /// with the registry's write lock held.
    pub(crate) fn reset(&self, index: u64) {
        self.index.store(index, Ordering::SeqCst);
        let _ = self.sender.send(Published::Reset);
    }

    /// The index of the last entry published: everything a subscriber needs to have applied
    /// to hold what this server holds.
    pub(crate) fn index(&self) -> u64 {
        self.index.load(Ordering::SeqCst)
    }

    /// A new subscription: the snapshot item (of `registry`, read under the lock the
    /// publisher writes under) and the entries after it.
    pub(crate) fn subscribe(&self, registry: &Registry) -> (Vec<u8>, broadcast::Receiver<Published>) {
        let receiver = self.sender.subscribe();
        let snapshot = registry.snapshot();
        let item = FeedItemRef::Snapshot { index: self.index(), registry: &snapshot };
        // Plain structs of strings, integers and collections encode into a Vec without fail.
        (postcard::to_allocvec(&item).unwrap_or_default(), receiver)
    }
}

/// Encodes a heartbeat item.
pub(crate) fn heartbeat(view: &ServerView) -> Vec<u8> {
    postcard::to_allocvec(&FeedItem::Heartbeat(view.clone())).unwrap_or_default()
}

/// The client agent's copy of the registry, fed by one server at a time.
#[derive(Debug, Default)]
pub(crate) struct Replica {
    registry: Registry,
    /// The index of the last entry applied (or of the snapshot).
    index: u64,
    /// Whether a snapshot came since the last [`Replica::lose`].
    synced: bool,
}

/// An item that does not fit where the replica is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FeedError {
    /// An entry before any snapshot of this subscription.
    #[error("an entry at {index} came before the subscription's snapshot")]
    NotSynced {
        /// The entry's index.
        index: u64,
    },
    /// An entry at or below the replica's index: the stream went backwards.
    #[error("an entry at {index} came after the replica reached {at}")]
    Backwards {
        /// The entry's index.
        index: u64,
        /// The replica's index.
        at: u64,
    },
}

impl Replica {
    /// The registry as replicated.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The index of the last entry applied here.
    pub(crate) fn index(&self) -> u64 {
        self.index
    }

    /// The subscription was lost: entries are refused until the next snapshot. The registry
    /// stays as it is (reads go on, stale).
    pub(crate) fn lose(&mut self) {
        self.synced = false;
    }

    /// Replaces the registry with a server's snapshot; what changed, for the watches. A
    /// snapshot older than what is held is taken too (another server, further behind): its
    /// state is the one whose entries follow.
    pub(crate) fn reset(&mut self, index: u64, snapshot: Snapshot) -> Changes {
        let changes = changed_between(&self.registry.snapshot(), &snapshot);
        self.registry = Registry::restore(snapshot);
        self.index = index;
        self.synced = true;
        changes
    }

    /// Applies the entry at `index`; what changed, for the watches. A command the registry
    /// refuses changes nothing (the server refused it too).
    pub(crate) fn apply(&mut self, index: u64, command: Option<Command>) -> Result<Changes, FeedError> {
        if !self.synced {
            return Err(FeedError::NotSynced { index });
        }
        if index <= self.index {
            return Err(FeedError::Backwards { index, at: self.index });
        }
        self.index = index;
        Ok(match command.map(|command| self.registry.apply(index, command)) {
            Some(Ok(applied)) => applied.changes,
            _ => Changes::default(),
        })
    }
}

/// Decodes a feed item.
pub(crate) fn decode(bytes: &[u8]) -> Result<FeedItem, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use consensus::StateMachine as _;
    use service_registry::{KvOp, WatchTarget};

    use super::*;
    use crate::store::replicated::{RaftCommand, ReplicatedRegistry};

    fn set(key: &str, value: &str) -> Command {
        Command::Kv(KvOp::Set { key: key.into(), value: value.as_bytes().to_vec(), flags: 0 })
    }

    fn entry(bytes: &[u8]) -> (u64, Option<Command>) {
        match decode(bytes).unwrap() {
            FeedItem::Entry { index, command } => (index, command),
            other => panic!("not an entry: {other:?}"),
        }
    }

    #[test]
    fn a_subscription_gets_every_entry_after_its_snapshot_once_and_the_replica_ends_equal() {
        let (mut machine, shared, _events) = ReplicatedRegistry::new();
        let _ = machine.apply(1, RaftCommand::registry(set("a", "1")));
        let _ = machine.apply(2, RaftCommand::registry(set("b", "1")));
        let (snapshot, mut entries) = shared.subscribe_feed();
        let _ = machine.apply(3, RaftCommand::registry(set("a", "2")));
        let _ = machine.apply(5, RaftCommand::RenewSession { id: "nope".into() });
        // Refused by the registry (no such session): fed without its command.
        let acquire = Command::Kv(KvOp::Acquire { key: "l".into(), value: vec![], flags: 0, session: "nope".into() });
        let _ = machine.apply(6, RaftCommand::registry(acquire));
        assert_eq!(shared.feed.index(), 6);

        let mut replica = Replica::default();
        let FeedItem::Snapshot { index, registry } = decode(&snapshot).unwrap() else { panic!("not a snapshot") };
        assert_eq!(index, 2);
        let changes = replica.reset(index, registry);
        assert!(changes.keys.contains("a") && changes.keys.contains("b"), "{changes:?}");
        let mut seen = Vec::new();
        while let Ok(Published::Entry(bytes)) = entries.try_recv() {
            let (index, command) = entry(&bytes);
            seen.push((index, command.is_some()));
            let changes = replica.apply(index, command).unwrap();
            assert_eq!(changes.keys.contains("a"), index == 3, "entry {index}: {changes:?}");
        }
        assert_eq!(seen, [(3, true), (5, false), (6, false)]);
        assert_eq!(replica.index(), 6);
        assert_eq!(replica.registry().snapshot(), shared.read().snapshot(), "the replica equals the server");
        assert_eq!(replica.registry().index(&WatchTarget::Key("a".into())), 3);
    }

    #[test]
    fn the_replica_refuses_entries_before_a_snapshot_and_going_backwards() {
        let mut replica = Replica::default();
        assert_eq!(replica.apply(1, Some(set("a", "1"))), Err(FeedError::NotSynced { index: 1 }));
        let _ = replica.reset(4, Registry::new().snapshot());
        assert_eq!(replica.apply(4, Some(set("a", "1"))), Err(FeedError::Backwards { index: 4, at: 4 }));
        assert!(replica.apply(7, Some(set("a", "1"))).unwrap().keys.contains("a"));
        // A lost subscription: reads go on (stale), entries wait for the next snapshot.
        replica.lose();
        assert!(replica.registry().kv_get("a").is_some());
        assert_eq!(replica.apply(8, None), Err(FeedError::NotSynced { index: 8 }));
        // The next server's snapshot replaces the state; what differs wakes the watches.
        let changes = replica.reset(9, Registry::new().snapshot());
        assert!(changes.keys.contains("a"));
        assert!(replica.registry().kv_get("a").is_none());
        assert!(replica.apply(10, None).unwrap().is_empty());
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_told_and_a_restored_snapshot_ends_every_subscription() {
        let (mut machine, shared, _events) = ReplicatedRegistry::new();
        let (_snapshot, mut slow) = shared.subscribe_feed();
        for index in 1..=(FEED_CAPACITY as u64 + 1) {
            let _ = machine.apply(index, RaftCommand::registry(set("k", &index.to_string())));
        }
        assert!(matches!(slow.try_recv(), Err(broadcast::error::TryRecvError::Lagged(1))));

        let (_snapshot, mut live) = shared.subscribe_feed();
        let bytes = machine.snapshot();
        machine.restore(&bytes).unwrap();
        assert!(matches!(live.try_recv(), Ok(Published::Reset)));
        let (snapshot, _) = shared.subscribe_feed();
        let FeedItem::Snapshot { index, .. } = decode(&snapshot).unwrap() else { panic!("not a snapshot") };
        assert_eq!(index, FEED_CAPACITY as u64 + 1);
    }
}
