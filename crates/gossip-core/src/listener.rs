//! The accept task: serves incoming TCP streams (push-pull, TCP pings) one frame each.
//!
//! Each accepted connection gets its own task, which reads one frame, hands it to the driver with
//! a oneshot for the answer, writes the answer back and closes. A semaphore caps the connections
//! served at once; the connection tasks live in a [`JoinSet`] that ends with the accept task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gossip_transport::net;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::actor::{Counters, InboundRequest};

/// Pause after a failed `accept` (for example out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The accept loop and what it needs.
pub(crate) struct Acceptor {
    pub(crate) listener: TcpListener,
    pub(crate) requests: mpsc::Sender<InboundRequest>,
    pub(crate) limit: Arc<Semaphore>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) stream_timeout: Duration,
}

impl Acceptor {
    /// Accept until shutdown is signalled; then stop every connection task and return.
    pub(crate) async fn run(mut self) {
        let mut connections = JoinSet::new();
        loop {
            // Reap finished connection tasks so that the set does not grow.
            while connections.try_join_next().is_some() {}
            let permit = tokio::select! {
                permit = Arc::clone(&self.limit).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => break,
                },
                _ = self.shutdown.changed() => break,
            };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = self.shutdown.changed() => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    Counters::bump(&self.counters.inbound_streams);
                    let connection = Connection {
                        stream,
                        peer,
                        requests: self.requests.clone(),
                        counters: Arc::clone(&self.counters),
                        stream_timeout: self.stream_timeout,
                        _permit: permit,
                    };
                    connections.spawn(connection.serve());
                }
                Err(error) => {
                    tracing::warn!(%error, "TCP accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
        connections.shutdown().await;
    }
}

/// One accepted connection.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    requests: mpsc::Sender<InboundRequest>,
    counters: Arc<Counters>,
    stream_timeout: Duration,
    /// Held while the connection is served.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(mut self) {
        if let Err(reason) = self.exchange().await {
            Counters::bump(&self.counters.inbound_stream_failures);
            tracing::debug!(peer = %self.peer, %reason, "inbound stream failed");
        }
    }

    /// Read one frame, get the answer from the driver, write it back.
    async fn exchange(&mut self) -> Result<(), String> {
        let timeout = self.stream_timeout;
        let frame = tokio::time::timeout(timeout, net::read_frame(&mut self.stream, gossip_transport::MAX_FRAME_LEN))
            .await
            .map_err(|_| format!("no request within {timeout:?}"))?
            .map_err(|error| format!("reading the request: {error}"))?;
        let (answer, answered) = oneshot::channel();
        let request = InboundRequest { from: self.peer, frame, answer };
        self.requests.send(request).await.map_err(|_| "the node is shutting down".to_owned())?;
        let Some(answer) = answered.await.map_err(|_| "the node is shutting down".to_owned())? else {
            // The state machine refused the request (undecodable, wrong key, ...): just close.
            return Ok(());
        };
        tokio::time::timeout(timeout, async {
            net::write_frame(&mut self.stream, &answer)
                .await
                .map_err(|error| format!("writing the answer: {error}"))?;
            self.stream.shutdown().await.map_err(|error| format!("closing: {error}"))
        })
        .await
        .map_err(|_| format!("answer not written within {timeout:?}"))?
    }
}
