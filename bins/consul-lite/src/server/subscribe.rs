//! A server's side of client agents: their requests (writes, renews, read barriers, run
//! through this server's [`RaftStore`] exactly as its own HTTP API would) and their feed
//! subscriptions.
//!
//! ```text
//!  Request::Client(AgentRequest) ──► RaftStore::write | renew_session | consistent ──► AgentReply
//!  Request::Subscribe([FEED_FORMAT]) ──► task: Snapshot, then Entry… (Feed), Heartbeat when the
//!                                          │    server's view changes, else every KEEPALIVE
//!                                          └──► bounded channel ──► consensus writes frames
//!  view task (one per server): every VIEW_CHECK, the view (leader, peers, last contact) ──► watch
//! ```
//!
//! What an idle cluster costs: nothing flows on a subscription but a heartbeat every
//! [`KEEPALIVE`] while the server's leader and peers stay the same and it hears from the leader
//! (its last contact at most [`CONTACT_STALE`]). A new leader, a change of peers, or a server
//! losing contact (then every [`VIEW_CHECK`], so that clients see the contact age) is sent at
//! once.
//!
//! Bounds: a subscriber more than [`FEED_CAPACITY`](crate::store::feed::FEED_CAPACITY) entries
//! behind the server's apply, or with [`SUBSCRIBER_QUEUE`] items not yet written to its
//! socket, or that does not take a frame within the server's `rpc_timeout`, is dropped; it
//! resubscribes from a fresh snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use consensus::rpc::agents::{BoxFuture, ClientHandler};
use tokio::sync::{broadcast, mpsc, watch};

use crate::store::feed::{self, Published, ServerView};
use crate::store::remote::{AgentReply, AgentRequest, WireError, FEED_FORMAT};
use crate::store::{RaftStore, Store as _};

/// How often a server looks at its view (leader, last contact, peers) for a change to send.
pub(crate) const VIEW_CHECK: Duration = Duration::from_millis(500);

/// A subscription on which nothing else was sent carries the server's view this often: what
/// tells a client agent that the server is still there (it gives up after
/// [`SILENCE`](crate::store::remote::SILENCE)).
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(10);

/// A server whose last contact with the leader is above this sends its view at every
/// [`VIEW_CHECK`]; at or below it, a client agent reports the last contact the server last sent.
pub(crate) const CONTACT_STALE: Duration = Duration::from_secs(1);

/// Items queued for one subscriber's socket before it is dropped as too slow.
pub(crate) const SUBSCRIBER_QUEUE: usize = 1024;

/// The handler of client agents registered with this server's Raft.
pub(crate) struct AgentService {
    store: RaftStore,
    stats: Arc<AgentStats>,
    /// The view subscriptions send, updated by the view task when it changes.
    view: Arc<watch::Sender<ServerView>>,
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
    /// Serves client agents from `store`, and starts the task that follows the server's view
    /// (it ends when the service is dropped). Call it inside a Tokio runtime.
    pub(crate) fn new(store: RaftStore) -> Self {
        let view = Arc::new(watch::Sender::new(view_of(&store)));
        tokio::spawn(follow_view(store.clone(), Arc::downgrade(&view)));
        Self { store, stats: Arc::default(), view }
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
        tokio::spawn(stream(snapshot, entries, self.view.subscribe(), items, Arc::clone(&self.stats)));
        Ok(receiver)
    }
}

/// The server's view now.
fn view_of(store: &RaftStore) -> ServerView {
    ServerView { leader: store.leader(), last_contact: store.last_contact(), peers: store.peers() }
}

/// Whether `now` must be sent to client agents that were last sent `sent`: the leader or the
/// peers changed, or the server is (or just stopped being) out of contact with the leader.
fn worth_sending(sent: &ServerView, now: &ServerView) -> bool {
    sent.leader != now.leader
        || sent.peers != now.peers
        || now.last_contact > CONTACT_STALE
        || sent.last_contact > CONTACT_STALE
}

/// Every [`VIEW_CHECK`], publishes the server's view to the subscriptions when it is worth
/// sending; ends when the [`AgentService`] is dropped.
async fn follow_view(store: RaftStore, view: std::sync::Weak<watch::Sender<ServerView>>) {
    let mut check = tokio::time::interval(VIEW_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        check.tick().await;
        let Some(view) = view.upgrade() else { return };
        let now = view_of(&store);
        view.send_if_modified(|sent| {
            let changed = worth_sending(sent, &now);
            if changed {
                *sent = now;
            }
            changed
        });
    }
}

/// One subscription: the snapshot, then entries, and the server's view when it changes (or
/// after [`KEEPALIVE`] without anything sent), until the subscriber goes away or falls behind.
async fn stream(
    snapshot: Vec<u8>,
    mut entries: broadcast::Receiver<Published>,
    mut view: watch::Receiver<ServerView>,
    items: mpsc::Sender<Vec<u8>>,
    stats: Arc<AgentStats>,
) {
    let first = feed::heartbeat(&view.borrow_and_update());
    if items.try_send(snapshot).is_err() || items.try_send(first).is_err() {
        return;
    }
    let keepalive = tokio::time::sleep(KEEPALIVE);
    tokio::pin!(keepalive);
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
            changed = view.changed() => match changed {
                Ok(()) => feed::heartbeat(&view.borrow_and_update()),
                // The service is gone: the server is stopping.
                Err(_) => return,
            },
            () = &mut keepalive => feed::heartbeat(&view.borrow()),
            () = items.closed() => return,
        };
        keepalive.as_mut().reset(tokio::time::Instant::now() + KEEPALIVE);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn view(leader: Option<&str>, contact_ms: u64) -> ServerView {
        ServerView {
            leader: leader.map(str::to_owned),
            last_contact: Duration::from_millis(contact_ms),
            peers: vec!["10.0.0.1:8300".into(), "10.0.0.2:8300".into()],
        }
    }

    #[test]
    fn a_view_is_sent_when_the_leader_or_peers_change_or_contact_is_lost_not_as_contact_ticks() {
        let sent = view(Some("10.0.0.1:8300"), 40);
        assert!(!worth_sending(&sent, &view(Some("10.0.0.1:8300"), 90)), "heartbeats from the leader: nothing to say");
        assert!(worth_sending(&sent, &view(Some("10.0.0.2:8300"), 0)), "a new leader");
        assert!(worth_sending(&sent, &view(None, 0)), "no leader");
        let mut fewer = sent.clone();
        fewer.peers.pop();
        assert!(worth_sending(&sent, &fewer), "a peer removed");
        assert!(worth_sending(&sent, &view(Some("10.0.0.1:8300"), 1500)), "out of contact: the age is sent");
        assert!(worth_sending(&view(Some("10.0.0.1:8300"), 1500), &view(Some("10.0.0.1:8300"), 2000)), "and again");
        assert!(worth_sending(&view(Some("10.0.0.1:8300"), 2000), &sent), "back in contact");
    }
}
