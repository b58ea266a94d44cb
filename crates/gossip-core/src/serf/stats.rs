//! [`SerfStats`] and the layer's counters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::NodeStats;

/// Counters and gauges of the serf layer and its node ([`super::SerfHandle::stats`]), as Serf's
/// `serf info` stats plus the layer's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SerfStats {
    /// Members known, tombstones included (Serf's `members` counts the same).
    pub members: usize,
    /// Members alive.
    pub alive: usize,
    /// Members suspected of failing (not a Serf state: they count as alive there).
    pub suspect: usize,
    /// Members failed and not yet reaped.
    pub failed: usize,
    /// Members that left and are not yet reaped.
    pub left: usize,
    /// Member Lamport clock.
    pub member_time: u64,
    /// User event Lamport clock.
    pub event_time: u64,
    /// Query Lamport clock.
    pub query_time: u64,
    /// Member events waiting in the batch being coalesced.
    pub member_event_queue: usize,
    /// User events (sent with `coalesce`) waiting in the coalescing window.
    pub user_event_queue: usize,
    /// Queries this node sent and still listens to.
    pub pending_queries: usize,
    /// Records waiting for the snapshot writer.
    pub snapshot_queue: usize,
    /// Encryption is on (a keyring is configured).
    pub encrypted: bool,
    /// Times the Vivaldi coordinate was reset after going non-finite.
    pub coordinate_resets: u64,
    /// The layer's counters.
    pub counters: SerfCounters,
    /// The node's (and its state machine's) counters.
    pub node: NodeStats,
}

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        /// What the serf layer did since start: deliveries, duplicates, refusals.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct SerfCounters {
            $( $(#[$doc])* pub $name: u64, )*
        }

        /// The live counters behind [`SerfCounters`].
        #[derive(Debug, Default)]
        pub(crate) struct AtomicCounters {
            $( pub(crate) $name: AtomicU64, )*
        }

        impl AtomicCounters {
            pub(crate) fn read(&self) -> SerfCounters {
                SerfCounters { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }
    };
}

counters! {
    /// User events delivered (each once).
    user_events,
    /// User events received again and dropped as duplicates.
    user_event_duplicates,
    /// User events refused: older than the buffer reaches, older than the minimum time (a join
    /// without replay, a restart), or their Lamport time already holds too many events.
    user_events_refused,
    /// Queries delivered to the application or answered by the layer.
    queries,
    /// Queries received again and dropped as duplicates.
    query_duplicates,
    /// Queries refused as too old.
    queries_refused,
    /// Queries seen for the first time that this node's filters excluded.
    queries_filtered,
    /// Acks this node sent.
    query_acks_sent,
    /// Acks received for this node's queries (one per node).
    query_acks_received,
    /// Responses received for this node's queries (one per node).
    query_responses_received,
    /// Acks and responses received again (through relays) and dropped.
    query_reply_duplicates,
    /// Acks and responses for no query this node is waiting on (late, or not ours).
    query_replies_unmatched,
    /// Acks and responses dropped because the reader of the [`super::QueryResponse`] fell behind.
    query_replies_dropped,
    /// Responses this node relayed for others.
    relays_forwarded,
    /// Prune intents from other nodes (`force-leave -prune`) applied here.
    prunes,
    /// Members suspected (not a Serf event: counted, not delivered).
    suspicions,
    /// Suspected members that refuted (not a Serf event: counted, not delivered).
    recoveries,
    /// Vivaldi updates applied.
    coordinate_updates,
    /// Ack payloads whose coordinate was refused (bad dimensions, non-finite, RTT out of range).
    coordinate_rejections,
    /// User payloads that were not the serf layer's (another tag byte): ignored.
    foreign_payloads,
    /// Serf payloads that did not decode: ignored.
    decode_errors,
    /// Reconnection attempts to failed members (push-pulls the node started with one).
    reconnect_attempts,
    /// Snapshot records dropped because the writer's queue was full.
    snapshot_dropped,
}

/// Add one.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
