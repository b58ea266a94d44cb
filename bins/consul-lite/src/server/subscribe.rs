//! A server's side of client agents: their requests (writes, renews, read barriers, run
//! through this server's [`RaftStore`] exactly as its own HTTP API would) and their feed
//! subscriptions.
//!
//! ```text
//!  Request::Client(AgentRequest) ──► RaftStore::write | renew_session | consistent ──► AgentReply
//!  Request::Subscribe([FEED_FORMAT]) ──► task: Snapshot, then Entry… (Feed), Heartbeat every 500 ms
//!                                          └──► bounded channel ──► consensus writes frames
//! ```
//!
//! Bounds: a subscriber more than [`FEED_CAPACITY`](crate::store::feed::FEED_CAPACITY) entries
//! behind the server's apply, or with [`SUBSCRIBER_QUEUE`] items not yet written to its
//! socket, or that does not take a frame within the server's `rpc_timeout`, is dropped; it
//! resubscribes from a fresh snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use consensus::rpc::agents::{BoxFuture, ClientHandler};
use tokio::sync::{broadcast, mpsc};

use crate::store::feed::{self, Published, ServerView};
use crate::store::remote::{AgentReply, AgentRequest, WireError, FEED_FORMAT};
use crate::store::{RaftStore, Store as _};

/// How often a subscription carries the server's view (leader, last contact, peers); also
/// what tells a client agent the server is still there.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(500);

/// Items queued for one subscriber's socket before it is dropped as too slow.
pub(crate) const SUBSCRIBER_QUEUE: usize = 1024;

/// The handler of client agents registered with this server's Raft.
pub(crate) struct AgentService {
    store: RaftStore,
    stats: Arc<AgentStats>,
}

/// Counters of client agents at one server.
#[derive(Debug, Default)]
pub(crate) struct AgentStats {
    /// Subscriptions started.
    pub(crate) subscribed: AtomicU64,
    /// Subscriptions dropped because the subscriber fell behind.
    pub(crate) dropped_slow: AtomicU64,
    /// Requests answered.
    pub(crate) requests: AtomicU64,
}

impl AgentService {
    /// Serves client agents from `store`.
    pub(crate) fn new(store: RaftStore) -> Self {
        Self { store, stats: Arc::default() }
    }

    async fn answer(&self, request: AgentRequest) -> AgentReply {
        let store = &self.store;
        match request {
            AgentRequest::Write(command) => AgentReply::Written(store.write(*command).await.map_err(WireError::from)),
            AgentRequest::Renew { id } => AgentReply::Renewed(store.renew_session(&id).await.map_err(WireError::from)),
            AgentRequest::Barrier => AgentReply::Barrier(match store.consistent().await {
                Ok(()) => Ok(store.feed_index()),
                Err(error) => Err(error.into()),
            }),
        }
    }
}

impl ClientHandler for AgentService {
    fn request(&self, request: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let reply = match postcard::from_bytes::<AgentRequest>(&request) {
                Ok(request) => self.answer(request).await,
                Err(error) => AgentReply::Unreadable(format!("the request does not decode: {error}")),
            };
            postcard::to_allocvec(&reply).unwrap_or_default()
        })
    }

    fn subscribe(&self, request: Vec<u8>) -> Result<mpsc::Receiver<Vec<u8>>, String> {
        if request != [FEED_FORMAT] {
            return Err(format!("unknown feed request {request:?}: this server streams feed format {FEED_FORMAT}"));
        }
        let (items, receiver) = mpsc::channel(SUBSCRIBER_QUEUE);
        let (snapshot, entries) = self.store.subscribe_feed();
        self.stats.subscribed.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(stream(self.store.clone(), snapshot, entries, items, Arc::clone(&self.stats)));
        Ok(receiver)
    }
}

/// One subscription: the snapshot, then entries and heartbeats until the subscriber goes
/// away or falls behind.
async fn stream(
    store: RaftStore,
    snapshot: Vec<u8>,
    mut entries: broadcast::Receiver<Published>,
    items: mpsc::Sender<Vec<u8>>,
    stats: Arc<AgentStats>,
) {
    let view = || ServerView { leader: store.leader(), last_contact: store.last_contact(), peers: store.peers() };
    if items.try_send(snapshot).is_err() || items.try_send(feed::heartbeat(&view())).is_err() {
        return;
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let item = tokio::select! {
            entry = entries.recv() => match entry {
                Ok(Published::Entry(bytes)) => Vec::clone(&bytes),
                // The registry was replaced: the subscriber starts again from a snapshot.
                Ok(Published::Reset) | Err(broadcast::error::RecvError::Closed) => return,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "client agent feed: a subscriber fell behind; dropped");
                    stats.dropped_slow.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            _ = heartbeat.tick() => feed::heartbeat(&view()),
            () = items.closed() => return,
        };
        match items.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!("client agent feed: a subscriber's queue is full; dropped");
                stats.dropped_slow.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}
