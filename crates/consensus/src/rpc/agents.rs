//! Client agents on the server port: agents that hold no Raft state call a server with requests
//! of the application's own encoding, and subscribe to a stream of items from it.
//!
//! ```text
//!  agent ── AgentClient::request(bytes) ──► server: ClientHandler::request ──► answer bytes
//!  agent ── AgentClient::subscribe(bytes) ─► server: ClientHandler::subscribe ─► mpsc::Receiver
//!        ◄── Response::Stream(item) … (one frame per item, in order, same connection) ──┘
//! ```
//!
//! This crate only carries the bytes: what a request means, and what a subscription streams,
//! is the application's ([`ClientHandler`], registered with
//! [`Consensus::serve_clients`](crate::Consensus::serve_clients)). A server without a handler
//! refuses both with a message. Bounds: each frame of a subscription must be written within
//! the server's `rpc_timeout` (a stalled agent is dropped), and the handler's channel has a
//! capacity of its choosing (a handler drops its sender when the channel is full, which ends
//! the subscription).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::client::{self, Peers};
use super::frame::{self, FrameError};
use super::message::{Envelope, Request, Response};
use super::RpcError;
use crate::consensus::Core;
use crate::types::NodeId;

/// The sender id agents put in their envelopes: they have no Raft id.
const AGENT_ID: NodeId = 0;

/// A boxed future, so that [`ClientHandler`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a server does with client agents' requests and subscriptions (the application's side).
pub trait ClientHandler: Send + Sync + 'static {
    /// Answers one request.
    fn request(&self, request: Vec<u8>) -> BoxFuture<'_, Vec<u8>>;

    /// Starts a subscription: the items to send, in order, until the sender is dropped. The
    /// server stops reading the receiver (and closes the connection) when the agent does not
    /// take a frame within the server's `rpc_timeout`. `Err` refuses the subscription with
    /// that message.
    fn subscribe(&self, request: Vec<u8>) -> Result<mpsc::Receiver<Vec<u8>>, String>;
}

/// An agent's calls to servers: requests over pooled connections, subscriptions each on a
/// connection of its own.
#[derive(Debug)]
pub struct AgentClient {
    peers: Peers,
    max_frame: u32,
    connect_timeout: Duration,
    source: Option<IpAddr>,
}

impl AgentClient {
    /// A client whose frames are at most `max_frame` bytes (the servers' `max_frame_size`), and
    /// whose connection attempts give up after `connect_timeout`. Connections are made from
    /// `source` (the agent's bind address, as Consul's clients do) when it is given and not
    /// unspecified; else from the address the kernel picks.
    pub fn new(max_frame: u32, connect_timeout: Duration, source: Option<IpAddr>) -> Self {
        let peers = Peers::new(AGENT_ID, max_frame, connect_timeout, source);
        Self { peers, max_frame, connect_timeout, source }
    }

    /// Sends `request` to server `server` (its Raft id) at `addr`, and waits at most `timeout`
    /// for the answer. Set `idempotent` when sending it twice does no harm: a pooled connection
    /// the server closed idle is then replaced once.
    pub async fn request(
        &self,
        server: NodeId,
        addr: &str,
        request: Vec<u8>,
        timeout: Duration,
        idempotent: bool,
    ) -> Result<Vec<u8>, RpcError> {
        match self.peers.call(server, addr, Request::Client(request), timeout, idempotent).await? {
            Response::Client(Ok(answer)) => Ok(answer),
            Response::Client(Err(message)) => Err(RpcError::Remote { addr: addr.to_owned(), message }),
            _ => Err(RpcError::Unexpected { addr: addr.to_owned(), wanted: "an answer to a client agent" }),
        }
    }

    /// Subscribes at server `server` at `addr`: the items come from [`Subscription::next`].
    pub async fn subscribe(&self, server: NodeId, addr: &str, request: Vec<u8>) -> Result<Subscription, RpcError> {
        let envelope = Envelope { from: AGENT_ID, to: server, request: Request::Subscribe(request) };
        let frame = frame::encode(&envelope, self.max_frame)
            .map_err(|source| RpcError::Frame { addr: addr.to_owned(), source })?;
        let mut stream = client::connect(addr, self.source, self.connect_timeout).await?;
        let sent = tokio::time::timeout(self.connect_timeout, frame::write(&mut stream, &frame)).await;
        match sent {
            Ok(Ok(())) => Ok(Subscription { stream, addr: addr.to_owned(), max_frame: self.max_frame }),
            Ok(Err(source)) => Err(RpcError::Frame { addr: addr.to_owned(), source }),
            Err(_) => Err(RpcError::Timeout { addr: addr.to_owned(), after: self.connect_timeout }),
        }
    }
}

/// A subscription at one server: its items, in the order the server's handler sent them.
#[derive(Debug)]
pub struct Subscription {
    stream: TcpStream,
    addr: String,
    max_frame: u32,
}

impl Subscription {
    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The next item, waiting at most `timeout` for it. [`RpcError::Closed`] when the server
    /// ended the subscription, [`RpcError::Remote`] when it refused it.
    pub async fn next(&mut self, timeout: Duration) -> Result<Vec<u8>, RpcError> {
        let read = frame::read::<Response, _>(&mut self.stream, self.max_frame);
        let addr = || self.addr.clone();
        match tokio::time::timeout(timeout, read).await {
            Err(_) => Err(RpcError::Timeout { addr: addr(), after: timeout }),
            Ok(Ok(None)) => Err(RpcError::Closed { addr: addr() }),
            Ok(Err(source)) => Err(RpcError::Frame { addr: addr(), source }),
            Ok(Ok(Some(Response::Stream(Ok(item))))) => Ok(item),
            Ok(Ok(Some(Response::Stream(Err(message))))) => Err(RpcError::Remote { addr: addr(), message }),
            Ok(Ok(Some(_))) => Err(RpcError::Unexpected { addr: addr(), wanted: "a subscription item" }),
        }
    }
}

/// Answers [`Request::Client`] with the handler, or refuses it without one.
pub(crate) async fn answer(core: &Core, request: Vec<u8>) -> Response {
    match core.client_handler() {
        Some(handler) => Response::Client(Ok(handler.request(request).await)),
        None => Response::Client(Err(NO_HANDLER.to_owned())),
    }
}

const NO_HANDLER: &str = "this server takes no client agents";

/// Serves a subscription on `stream` until the handler's sender is dropped or the agent stops
/// taking frames; the connection is closed after.
pub(crate) async fn stream(stream: &mut TcpStream, core: &Core, request: Vec<u8>) {
    let max = core.config.max_frame_size;
    let after = core.config.rpc_timeout;
    let send = |item: Result<Vec<u8>, String>| frame::encode(&Response::Stream(item), max);
    let mut items = match core.client_handler().map(|handler| handler.subscribe(request)) {
        Some(Ok(items)) => items,
        Some(Err(message)) => return refuse(stream, send(Err(message)), after).await,
        None => return refuse(stream, send(Err(NO_HANDLER.to_owned())), after).await,
    };
    while let Some(item) = items.recv().await {
        let bytes = match send(Ok(item)) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(%error, "server RPC: a subscription item does not fit in a frame; ending it");
                return;
            }
        };
        match tokio::time::timeout(after, frame::write(stream, &bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "server RPC: a subscriber went away");
                return;
            }
            Err(_) => {
                tracing::info!(?after, "server RPC: a subscriber did not take a frame in time; dropped");
                return;
            }
        }
    }
}

async fn refuse(stream: &mut TcpStream, frame: Result<Vec<u8>, FrameError>, after: Duration) {
    if let Ok(bytes) = frame {
        let _ = tokio::time::timeout(after, frame::write(stream, &bytes)).await;
    }
}
