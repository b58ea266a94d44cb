//! [`EventStream`]: the node's events as a `Stream`.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use swim::Event;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

/// The events of one node, from the moment [`crate::NodeHandle::events`] was called; ends when the node
/// stops.
///
/// Every stream receives every event (a tokio `broadcast` channel behind it), buffered up to
/// [`crate::NodeConfig::event_buffer`] events. **Lag:** a stream that falls further behind than
/// the buffer skips the oldest events it has not read: the node never waits for a slow reader.
/// The stream then continues with the oldest event still buffered; [`EventStream::missed`] counts
/// the events skipped so far and a `tracing` warning is logged each time. An application that
/// cannot afford to miss a membership change reconciles with [`crate::NodeHandle::members`] when
/// `missed()` grows.
///
/// Use it as a [`futures_core::Stream`] (with `tokio_stream::StreamExt` for example) or with the
/// inherent [`EventStream::recv`].
#[derive(Debug)]
pub struct EventStream {
    inner: BroadcastStream<Event>,
    missed: u64,
}

impl EventStream {
    pub(crate) fn new(receiver: broadcast::Receiver<Event>) -> Self {
        Self { inner: BroadcastStream::new(receiver), missed: 0 }
    }

    /// A stream that has already ended (the node was stopped before it was asked for one).
    pub(crate) fn ended() -> Self {
        let (sender, receiver) = broadcast::channel(1);
        drop(sender);
        Self::new(receiver)
    }

    /// The next event; `None` once the node has stopped and every buffered event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Number of events this stream skipped because it fell behind (see the type's docs).
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                Some(Ok(event)) => return Poll::Ready(Some(event)),
                Some(Err(BroadcastStreamRecvError::Lagged(skipped))) => {
                    self.missed += skipped;
                    tracing::warn!(skipped, total = self.missed, "event stream fell behind and skipped events");
                }
                None => return Poll::Ready(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lagging_stream_skips_and_counts() {
        let (sender, receiver) = broadcast::channel(2);
        let mut stream = EventStream::new(receiver);
        for _ in 0..5 {
            sender.send(Event::LeaveComplete).unwrap();
        }
        drop(sender);
        let mut received = 0;
        while let Some(event) = stream.recv().await {
            assert_eq!(event, Event::LeaveComplete);
            received += 1;
        }
        assert_eq!(received, 2);
        assert_eq!(stream.missed(), 3);
    }

    #[tokio::test]
    async fn works_as_a_stream() {
        use tokio_stream::StreamExt;

        let (sender, receiver) = broadcast::channel(8);
        let stream = EventStream::new(receiver);
        sender.send(Event::LeaveComplete).unwrap();
        sender.send(Event::User(bytes::Bytes::from_static(b"x"))).unwrap();
        drop(sender);
        let events: Vec<Event> = stream.collect().await;
        assert_eq!(events.len(), 2);
    }

    #[tokio::test]
    async fn ended_stream_ends() {
        assert_eq!(EventStream::ended().recv().await, None);
    }
}
