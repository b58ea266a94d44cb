//! [`SerfEvent`]s and the [`SerfEventStream`] that delivers them.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use swim::Member;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::query::Query;

/// What the serf layer tells the application, as Serf's events. Member events come in batches
/// (see [`super::SerfConfig::member_coalesce_period`]).
#[derive(Debug, Clone)]
pub enum SerfEvent {
    /// Members joined (this node included, once, at start).
    MemberJoin(Vec<Member>),
    /// Members left gracefully (or were forced to leave).
    MemberLeave(Vec<Member>),
    /// Members were declared failed.
    MemberFailed(Vec<Member>),
    /// Members changed their tags or address.
    MemberUpdate(Vec<Member>),
    /// Failed or left members were forgotten (after `reconnect_timeout` / `tombstone_timeout`,
    /// or a force-leave with prune).
    MemberReap(Vec<Member>),
    /// A user event.
    User(UserEvent),
    /// A query this node matches; answer it with [`Query::respond`].
    Query(Query),
}

impl SerfEvent {
    /// The event's name as Serf's handlers know it: `member-join`, `member-leave`,
    /// `member-failed`, `member-update`, `member-reap`, `user`, `query`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MemberJoin(_) => "member-join",
            Self::MemberLeave(_) => "member-leave",
            Self::MemberFailed(_) => "member-failed",
            Self::MemberUpdate(_) => "member-update",
            Self::MemberReap(_) => "member-reap",
            Self::User(_) => "user",
            Self::Query(_) => "query",
        }
    }

    /// The members of a member event (empty for user events and queries).
    pub fn members(&self) -> &[Member] {
        match self {
            Self::MemberJoin(members)
            | Self::MemberLeave(members)
            | Self::MemberFailed(members)
            | Self::MemberUpdate(members)
            | Self::MemberReap(members) => members,
            Self::User(_) | Self::Query(_) => &[],
        }
    }
}

/// A user event (Serf's `UserEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEvent {
    /// The event's Lamport time.
    pub ltime: u64,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Bytes,
    /// Sent with coalescing: only the newest event of this name within the window was delivered.
    pub coalesce: bool,
}

/// The serf layer's events; ends when the layer shuts down.
///
/// The first stream taken from a [`super::Serf`] receives every event since start (this node's
/// own join, the members of a re-join from the snapshot); each later one the events from the
/// moment it was created. **Lag:** as [`crate::EventStream`], a stream more than
/// `node.event_buffer` events behind skips the oldest and counts them in
/// [`SerfEventStream::missed`]; the layer never waits for a reader.
#[derive(Debug)]
pub struct SerfEventStream {
    inner: BroadcastStream<SerfEvent>,
    missed: u64,
}

impl SerfEventStream {
    pub(crate) fn new(receiver: broadcast::Receiver<SerfEvent>) -> Self {
        Self { inner: BroadcastStream::new(receiver), missed: 0 }
    }

    /// A stream that has already ended.
    pub(crate) fn ended() -> Self {
        let (sender, receiver) = broadcast::channel(1);
        drop(sender);
        Self::new(receiver)
    }

    /// The next event; `None` once the layer has stopped and every buffered event was read.
    pub async fn recv(&mut self) -> Option<SerfEvent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Events this stream skipped because it fell behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

impl Stream for SerfEventStream {
    type Item = SerfEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SerfEvent>> {
        loop {
            match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                Some(Ok(event)) => return Poll::Ready(Some(event)),
                Some(Err(BroadcastStreamRecvError::Lagged(skipped))) => {
                    self.missed += skipped;
                    tracing::warn!(skipped, total = self.missed, "serf event stream fell behind and skipped events");
                }
                None => return Poll::Ready(None),
            }
        }
    }
}
