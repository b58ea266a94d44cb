//! The accept task: serves incoming TCP streams (push-pull, TCP pings) one frame each.
//!
//! Each accepted connection gets its own task, which reads one frame, hands it to the driver with
//! a oneshot for the answer, writes the answer back and closes. A semaphore caps the connections
//! served at once; the connection tasks live in a [`JoinSet`] that ends with the accept task.
//!
//! Before the driver sees a frame, the connection task checks its envelope header (version,
//! cluster label, encryption mode) as soon as those `5 + L` bytes are in, and reads the body only
//! within the [pre-authentication budget](crate::preauth). A frame refused for a reason the
//! requester can act on (those header checks, a wrong key found by the driver, a frame over the
//! budget) is answered with a [refusal frame](gossip_transport::refusal) and logged as a
//! warning, rate-limited ([`crate::refusals`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gossip_transport::net::{self, LENGTH_PREFIX_LEN};
use gossip_transport::{HeaderCheck, Refusal, RefusalReason, HEADER_LEN, MAX_LABEL_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::actor::{self, Answer, Counters, InboundRequest};
use crate::preauth::{PreAuthBudget, Reservation};
use crate::refusals::{Refusals, Refused};

/// Pause after a failed `accept` (for example out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// After a refusal frame, how long the connection stays open, reading and discarding what the
/// requester still sends, so that closing does not reset the connection (and discard the
/// refusal) before the requester has read it.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// At most this many bytes are read and discarded while lingering after a refusal.
const REFUSAL_DRAIN_MAX: usize = 64 * 1024;

/// The accept loop and what it needs.
pub(crate) struct Acceptor {
    pub(crate) listener: TcpListener,
    pub(crate) requests: mpsc::Sender<InboundRequest>,
    pub(crate) limit: Arc<Semaphore>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) stream_timeout: Duration,
    /// The key-free envelope checks run on each frame's header.
    pub(crate) header_check: HeaderCheck,
    pub(crate) budget: Arc<PreAuthBudget>,
    pub(crate) refusals: Arc<Refusals>,
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
                        header_check: self.header_check.clone(),
                        budget: Arc::clone(&self.budget),
                        refusals: Arc::clone(&self.refusals),
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
    header_check: HeaderCheck,
    budget: Arc<PreAuthBudget>,
    refusals: Arc<Refusals>,
    /// Held while the connection is served.
    _permit: OwnedSemaphorePermit,
}

/// Why no request frame was read.
enum ReadError {
    /// Refused for a reason the requester is told; `detail` is for the log.
    Refused { reason: RefusalReason, detail: String },
    /// Anything else: garbage, a stream cut short, an i/o error.
    Failed(String),
}

impl From<std::io::Error> for ReadError {
    fn from(error: std::io::Error) -> Self {
        Self::Failed(format!("reading the request: {error}"))
    }
}

impl Connection {
    async fn serve(mut self) {
        if let Err(reason) = self.exchange().await {
            Counters::bump(&self.counters.inbound_stream_failures);
            tracing::debug!(peer = %self.peer, %reason, "inbound stream failed");
        }
    }

    /// Read one frame, get the answer from the driver, write it back (or the refusal).
    async fn exchange(&mut self) -> Result<(), String> {
        let timeout = self.stream_timeout;
        let read = tokio::time::timeout(timeout, self.read_request())
            .await
            .map_err(|_| format!("no request within {timeout:?}"))?;
        let (frame, reservation) = match read {
            Ok(read) => read,
            Err(ReadError::Refused { reason, detail }) => return self.refuse(reason, &detail).await,
            Err(ReadError::Failed(reason)) => return Err(reason),
        };
        let (answer, answered) = oneshot::channel();
        let request = InboundRequest { from: self.peer, frame, answer };
        self.requests.send(request).await.map_err(|_| "the node is shutting down".to_owned())?;
        let answer = answered.await.map_err(|_| "the node is shutting down".to_owned())?;
        // The driver has opened (or refused) the frame and dropped it.
        drop(reservation);
        let answer = match answer {
            Answer::Frame(answer) => answer,
            Answer::Refuse(reason) => {
                let detail = "no installed key opens the frame";
                return self.refuse(reason, detail).await;
            }
            // Refused for a reason the requester cannot act on (undecodable, ...): just close.
            Answer::Close => return Ok(()),
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

    /// Read one frame: the length prefix, then the envelope header, which is checked before
    /// anything else is read, then the body within the pre-authentication budget.
    async fn read_request(&mut self) -> Result<(bytes::Bytes, Reservation), ReadError> {
        let mut prefix = [0u8; LENGTH_PREFIX_LEN];
        if self.stream.read(&mut prefix[..1]).await? == 0 {
            return Err(ReadError::Failed("stream closed by the peer before a request".to_owned()));
        }
        self.stream.read_exact(&mut prefix[1..]).await?;
        let len = u32::from_be_bytes(prefix) as usize;

        let mut header = [0u8; HEADER_LEN + MAX_LABEL_LEN];
        let fixed = len.min(HEADER_LEN);
        self.stream.read_exact(&mut header[..fixed]).await?;
        let header_len = if fixed == HEADER_LEN { len.min(HEADER_LEN + usize::from(header[4])) } else { fixed };
        self.stream.read_exact(&mut header[fixed..header_len]).await?;
        let header = &header[..header_len];
        if let Err(error) = self.header_check.check(header) {
            return Err(match RefusalReason::of(&error) {
                Some(reason) => ReadError::Refused { reason, detail: error.to_string() },
                None => ReadError::Failed(format!("request refused: {error}")),
            });
        }

        let limit = self.budget.limit().min(gossip_transport::MAX_FRAME_LEN);
        if len > limit {
            let detail = format!("frame of {len} bytes, more than the {limit} bytes buffered before authentication");
            return Err(ReadError::Refused { reason: RefusalReason::TooLarge, detail });
        }
        let mut reservation = self.budget.reserve(len).await.map_err(ReadError::Failed)?;
        let mut frame = Vec::with_capacity(len);
        frame.extend_from_slice(header);
        reservation.add(header.len());
        while frame.len() < len {
            let remaining = (len - frame.len()) as u64;
            let read = (&mut self.stream).take(remaining).read_buf(&mut frame).await?;
            if read == 0 {
                return Err(ReadError::Failed(format!("stream closed after {} of {len} bytes", frame.len())));
            }
            reservation.add(read);
        }
        Ok((frame.into(), reservation))
    }

    /// Log and count the refusal, answer with a refusal frame and close.
    async fn refuse(&mut self, reason: RefusalReason, detail: &str) -> Result<(), String> {
        self.refusals.refused(Refused::Stream, self.peer, reason, &detail, actor::now());
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            net::write_frame(&mut self.stream, &Refusal::new(reason).encode()).await?;
            self.stream.shutdown().await?;
            // Read and discard what the requester still sends, until it closes.
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            while drained < REFUSAL_DRAIN_MAX {
                match self.stream.read(&mut sink).await? {
                    0 => break,
                    read => drained += read,
                }
            }
            Ok::<_, net::FrameError>(())
        })
        .await;
        Ok(())
    }
}
