//! Calling other servers: a pool of idle connections per peer address, and openraft's network
//! (one client per target, all sharing the pool).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use tokio::net::{TcpSocket, TcpStream};

use super::frame::{self, FrameError};
use super::message::{Envelope, Refusal, Request, Response, SnapshotFailure};
use super::RpcError;
use crate::types::{NodeId, TypeConfig};

/// Idle connections kept per peer.
const IDLE_PER_PEER: usize = 4;

/// Connections to peers, reused between calls.
#[derive(Debug)]
pub(crate) struct Peers {
    /// This server's Raft id, sent as the sender of every request.
    me: NodeId,
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
    max_frame: u32,
    connect_timeout: Duration,
    /// The address connections are made from (see [`connect`]).
    source: Option<IpAddr>,
}

impl Peers {
    pub(crate) fn new(me: NodeId, max_frame: u32, connect_timeout: Duration, source: Option<IpAddr>) -> Self {
        Self { me, idle: Mutex::default(), max_frame, connect_timeout, source }
    }

    /// An idle connection to `addr` that is still open: one the peer closed (it stopped, or
    /// closed it idle) is dropped here, before a request is written to it, so that a request
    /// that cannot be sent twice is not lost to a connection known dead.
    fn take_idle(&self, addr: &str) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(addr)?;
        while let Some(stream) = list.pop() {
            let mut byte = [0u8; 1];
            match stream.try_read(&mut byte) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(stream),
                // Closed (0 bytes), failed, or bytes nobody asked for: not usable.
                _ => continue,
            }
        }
        None
    }

    fn put_idle(&self, addr: &str, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr.to_owned()).or_default();
        if list.len() < IDLE_PER_PEER {
            list.push(stream);
        }
    }

    /// Drops every idle connection (at shutdown).
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    async fn connect(&self, addr: &str) -> Result<TcpStream, RpcError> {
        connect(addr, self.source, self.connect_timeout).await
    }

    /// Sends `request` to server `to` at `addr` and waits at most `timeout` for the answer
    /// (connecting is bounded apart). A pooled connection that turns out closed is replaced
    /// once when `idempotent`: the peer closed it idle, so it never saw the request. A server
    /// at `addr` that is not `to` refuses the request: [`RpcError::WrongNode`].
    pub(crate) async fn call(
        &self,
        to: NodeId,
        addr: &str,
        request: Request,
        timeout: Duration,
        idempotent: bool,
    ) -> Result<Response, RpcError> {
        let envelope = Envelope { from: self.me, to, request };
        let frame = frame::encode(&envelope, self.max_frame)
            .map_err(|source| RpcError::Frame { addr: addr.to_owned(), source })?;
        loop {
            let (mut stream, reused) = match self.take_idle(addr) {
                Some(stream) => (stream, true),
                None => (self.connect(addr).await?, false),
            };
            let exchange = async {
                frame::write(&mut stream, &frame).await?;
                frame::read::<Response, _>(&mut stream, self.max_frame).await
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(Ok(Some(response))) => {
                    self.put_idle(addr, stream);
                    return match response {
                        Response::Refused(Refusal::WrongNode { addressed, actual }) => {
                            Err(RpcError::WrongNode { addr: addr.to_owned(), addressed, actual })
                        }
                        response => Ok(response),
                    };
                }
                Ok(Ok(None) | Err(FrameError::Io(_))) if reused && idempotent => continue,
                Ok(Ok(None)) => return Err(RpcError::Closed { addr: addr.to_owned() }),
                Ok(Err(source)) => return Err(RpcError::Frame { addr: addr.to_owned(), source }),
                Err(_) => return Err(RpcError::Timeout { addr: addr.to_owned(), after: timeout }),
            }
        }
    }
}

/// Connects to `addr` within `timeout`, with Nagle off. From `source` when it is given, not
/// unspecified and of `addr`'s family (as Consul sets its RPC source address to the bind
/// address): the peer, and anyone counting traffic, sees the connection come from this agent's
/// address, not from whatever address the kernel picks (127.0.0.1 on loopback).
pub(crate) async fn connect(addr: &str, source: Option<IpAddr>, timeout: Duration) -> Result<TcpStream, RpcError> {
    let connecting = async {
        let bound = source.filter(|ip| !ip.is_unspecified()).zip(addr.parse::<SocketAddr>().ok());
        match bound {
            Some((ip, target)) if ip.is_ipv4() == target.is_ipv4() => {
                let socket = if ip.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(target).await
            }
            _ => TcpStream::connect(addr).await,
        }
    };
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(source)) => Err(RpcError::Connect { addr: addr.to_owned(), source }),
        Err(_) => Err(RpcError::ConnectTimeout { addr: addr.to_owned(), after: timeout }),
    }
}

/// openraft's network factory: hands out clients that share the pool.
pub(crate) struct Network {
    pub(crate) peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient { target, addr: node.addr.clone(), peers: Arc::clone(&self.peers) }
    }
}

/// openraft's client for one target server.
pub(crate) struct PeerClient {
    target: NodeId,
    addr: String,
    peers: Arc<Peers>,
}

type RaftRpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerClient {
    async fn call<E: std::error::Error>(
        &self,
        request: Request,
        option: &RPCOption,
    ) -> Result<Response, RaftRpcError<E>> {
        self.peers.call(self.target, &self.addr, request, option.hard_ttl(), true).await.map_err(|e| match e {
            // Another server at the target's address refused the request: for openraft the
            // target is unreachable (it backs off), and no answer is taken as coming from it.
            RpcError::Connect { .. } | RpcError::ConnectTimeout { .. } | RpcError::WrongNode { .. } => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            _ => RPCError::Network(NetworkError::new(&e)),
        })
    }

    fn remote<E: std::error::Error>(&self, message: String) -> RaftRpcError<E> {
        RPCError::Network(NetworkError::new(&RpcError::Remote { addr: self.addr.clone(), message }))
    }

    fn unexpected<E: std::error::Error>(&self, wanted: &'static str) -> RaftRpcError<E> {
        RPCError::Network(NetworkError::new(&RpcError::Unexpected { addr: self.addr.clone(), wanted }))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftRpcError> {
        match self.call(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(Ok(response)) => Ok(response),
            Response::AppendEntries(Err(message)) => Err(self.remote(message)),
            _ => Err(self.unexpected("an AppendEntries answer")),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RaftRpcError<InstallSnapshotError>> {
        match self.call(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(Ok(response)) => Ok(response),
            Response::InstallSnapshot(Err(SnapshotFailure::Mismatch(mismatch))) => Err(RPCError::RemoteError(
                RemoteError::new(self.target, RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch))),
            )),
            Response::InstallSnapshot(Err(SnapshotFailure::Failed(message))) => Err(self.remote(message)),
            _ => Err(self.unexpected("an InstallSnapshot answer")),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RaftRpcError> {
        match self.call(Request::Vote(rpc), &option).await? {
            Response::Vote(Ok(response)) => Ok(response),
            Response::Vote(Err(message)) => Err(self.remote(message)),
            _ => Err(self.unexpected("a Vote answer")),
        }
    }
}
