//! The DNS transport: one UDP socket and one TCP listener on the same address, decoding
//! queries and encoding replies with [`hickory_proto`], answering through
//! [`answer`].
//!
//! Hostile input:
//! - a packet that is not a DNS query with one question (undecodable, a response, no or
//!   several questions) is counted in [`DnsStats::malformed`] and dropped, never answered;
//!   nothing in decoding or answering panics on input;
//! - the UDP socket is served by one task: a query is answered in place (a registry read
//!   under a lock, no await), so a flood costs one task, not a task per packet; the few
//!   queries that must wait for a read barrier (state older than `max_stale`) run in at
//!   most [`Limits::max_waiting`] tasks, beyond which they are dropped (counted);
//! - at most [`Limits::max_tcp_connections`] TCP connections are served at once (a
//!   connection beyond that is closed at once, counted); a connection that sends nothing
//!   for [`Limits::tcp_idle`], or is slower than that to send a whole query or to take its
//!   reply, is closed.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::answer::{answer, Response, DEFAULT_UDP_SIZE};
use super::{DnsConfig, View};

/// Bounds on what the server holds for its clients.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// TCP connections served at once (default 128).
    pub(crate) max_tcp_connections: usize,
    /// How long a TCP connection may stay silent, or take to send one query or to take one
    /// reply, before it is closed (default 8 s, Consul's TCP idle timeout).
    pub(crate) tcp_idle: Duration,
    /// Queries waiting for a read barrier at once (default 64).
    pub(crate) max_waiting: usize,
    /// How long such a query waits for the barrier before SERVFAIL (default 2 s: within a
    /// stub resolver's usual 5 s timeout).
    pub(crate) consistent_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_tcp_connections: 128,
            tcp_idle: Duration::from_secs(8),
            max_waiting: 64,
            consistent_timeout: Duration::from_secs(2),
        }
    }
}

/// Counters of the DNS server, for `/v1/agent/self`-style reporting and tests.
#[derive(Debug, Default)]
pub(crate) struct DnsStats {
    /// Queries answered (UDP and TCP).
    pub(crate) answered: AtomicU64,
    /// Packets or TCP messages dropped as malformed.
    pub(crate) malformed: AtomicU64,
    /// Queries dropped or connections refused because a bound was reached.
    pub(crate) refused_busy: AtomicU64,
    /// TCP connections closed for being idle or slow.
    pub(crate) tcp_timeouts: AtomicU64,
    /// Queries answered SERVFAIL because the state was older than `max_stale` and no read
    /// barrier could be had.
    pub(crate) stale_failures: AtomicU64,
}

impl DnsStats {
    /// The counters as `/v1/agent/self`'s `Stats.dns` (strings, as Consul's stats are).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let n = |counter: &AtomicU64| counter.load(Ordering::Relaxed).to_string();
        serde_json::json!({
            "answered": n(&self.answered),
            "malformed": n(&self.malformed),
            "refused_busy": n(&self.refused_busy),
            "tcp_timeouts": n(&self.tcp_timeouts),
            "stale_failures": n(&self.stale_failures),
        })
    }
}

/// A bound DNS server; [`DnsServer::run`] serves until its future is dropped.
pub(crate) struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    view: Arc<dyn View>,
    config: Arc<DnsConfig>,
    limits: Limits,
    stats: Arc<DnsStats>,
    waiting: Arc<Semaphore>,
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (port 0: one free port for both).
    pub(crate) async fn bind(
        addr: SocketAddr,
        view: Arc<dyn View>,
        config: Arc<DnsConfig>,
        limits: Limits,
    ) -> io::Result<Self> {
        let (udp, tcp) = if addr.port() == 0 {
            bind_same_free_port(addr).await?
        } else {
            (UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?)
        };
        let shared = Arc::new(Shared {
            view,
            config,
            limits,
            stats: Arc::default(),
            waiting: Arc::new(Semaphore::new(limits.max_waiting)),
        });
        Ok(Self { udp, tcp, shared })
    }

    /// The address both sockets are bound to.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// The server's counters.
    pub(crate) fn stats(&self) -> Arc<DnsStats> {
        self.shared.stats.clone()
    }

    /// Serves UDP and TCP until the future is dropped (which closes the sockets and every
    /// connection).
    pub(crate) async fn run(self) {
        let udp = Arc::new(self.udp);
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_udp(udp, self.shared.clone()));
        tasks.spawn(serve_tcp(self.tcp, self.shared));
        while tasks.join_next().await.is_some() {}
    }
}

/// Binds UDP on a free port, then TCP on the same one (retrying a few times if TCP's is
/// taken).
async fn bind_same_free_port(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port")))
}

/// What to do with one received message.
enum Handled {
    /// Send this reply.
    Reply(Vec<u8>),
    /// Answer after a read barrier: the decoded query.
    Wait(Message),
    /// Send nothing.
    Drop,
}

impl Shared {
    /// Decodes a query and answers it if the local state is fresh enough.
    fn handle(&self, bytes: &[u8], udp: bool) -> Handled {
        let Some(request) = decode(bytes) else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            return Handled::Drop;
        };
        if request.metadata.op_code != OpCode::Query {
            return self.encode(reply_to(&request, Response::code(ResponseCode::NotImp)), &request, udp);
        }
        let fresh = self.config.allow_stale && self.view.last_contact() <= self.config.max_stale;
        if !fresh {
            return Handled::Wait(request);
        }
        self.answer(&request, udp)
    }

    fn answer(&self, request: &Message, udp: bool) -> Handled {
        let query = &request.queries[0];
        let mut response = {
            let registry = self.view.read();
            answer(query.name(), query.query_type(), &registry, &self.config, &mut rand::rng())
        };
        let udp_size = request.edns.as_ref().map_or(DEFAULT_UDP_SIZE, |e| usize::from(e.max_payload()));
        let trimmed = response.fit(udp, udp_size, &self.config);
        let mut message = reply_to(request, response);
        message.metadata.truncation = trimmed && udp && self.config.enable_truncate;
        self.encode(message, request, udp)
    }

    fn encode(&self, mut message: Message, request: &Message, _udp: bool) -> Handled {
        if let Some(edns) = &request.edns {
            let mut reply = Edns::new();
            reply.set_max_payload(edns.max_payload().max(DEFAULT_UDP_SIZE as u16));
            message.set_edns(reply);
        }
        self.stats.answered.fetch_add(1, Ordering::Relaxed);
        match message.to_vec() {
            Ok(bytes) => Handled::Reply(bytes),
            Err(error) => {
                tracing::warn!(%error, "DNS: could not encode a reply; answering SERVFAIL");
                let failed = reply_to(request, Response::code(ResponseCode::ServFail));
                failed.to_vec().map_or(Handled::Drop, Handled::Reply)
            }
        }
    }

    /// Answers a query whose local state is too old: after a read barrier, or SERVFAIL.
    async fn answer_after_barrier(&self, request: Message, udp: bool) -> Handled {
        let barrier = tokio::time::timeout(self.limits.consistent_timeout, self.view.consistent()).await;
        if barrier == Ok(true) {
            return self.answer(&request, udp);
        }
        self.stats.stale_failures.fetch_add(1, Ordering::Relaxed);
        self.encode(reply_to(&request, Response::code(ResponseCode::ServFail)), &request, udp)
    }
}

impl Response {
    /// A response with only a code (AA unset).
    fn code(code: ResponseCode) -> Self {
        Self { code, authoritative: false, answers: Vec::new(), authorities: Vec::new(), additionals: Vec::new() }
    }
}

/// A query this server answers: a decodable message of type query with exactly one
/// question.
fn decode(bytes: &[u8]) -> Option<Message> {
    let message = Message::from_vec(bytes).ok()?;
    (message.metadata.message_type == MessageType::Query && message.queries.len() == 1).then_some(message)
}

/// The reply message to `request` carrying `response`.
fn reply_to(request: &Message, response: Response) -> Message {
    let mut message = Message::response(request.metadata.id, request.metadata.op_code);
    message.metadata.authoritative = response.authoritative;
    message.metadata.recursion_desired = request.metadata.recursion_desired;
    message.metadata.recursion_available = false;
    message.metadata.checking_disabled = request.metadata.checking_disabled;
    message.metadata.response_code = response.code;
    message.add_queries(request.queries.iter().cloned());
    message.add_answers(response.answers);
    message.add_authorities(response.authorities);
    message.add_additionals(response.additionals);
    message
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65536];
    let mut waiting = JoinSet::new();
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors of earlier replies (connection refused) and the like.
                tracing::debug!(%error, "DNS: UDP receive error");
                continue;
            }
        };
        while waiting.try_join_next().is_some() {}
        match shared.handle(&buf[..len], true) {
            Handled::Reply(reply) => {
                let _ = socket.send_to(&reply, peer).await;
            }
            Handled::Drop => {}
            Handled::Wait(request) => {
                let Ok(permit) = shared.waiting.clone().try_acquire_owned() else {
                    shared.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let (socket, shared) = (socket.clone(), shared.clone());
                waiting.spawn(async move {
                    if let Handled::Reply(reply) = shared.answer_after_barrier(request, true).await {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                    drop(permit);
                });
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let connections = Arc::new(Semaphore::new(shared.limits.max_tcp_connections));
    let mut tasks = JoinSet::new();
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(%error, "DNS: TCP accept error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            shared.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        tasks.spawn(async move {
            serve_connection(stream, &shared).await;
            drop(permit);
        });
    }
}

/// Serves one TCP connection: length-prefixed queries, one at a time, until the client
/// closes it, sends garbage, or stays idle or slow for `tcp_idle`.
async fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let idle = shared.limits.tcp_idle;
    let timed_out = || {
        shared.stats.tcp_timeouts.fetch_add(1, Ordering::Relaxed);
    };
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(idle, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => return timed_out(),
        }
        let len = usize::from(u16::from_be_bytes(len));
        let mut query = vec![0u8; len];
        match tokio::time::timeout(idle, stream.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => return timed_out(),
        }
        let handled = match shared.handle(&query, false) {
            Handled::Wait(request) => {
                let Ok(_permit) = shared.waiting.clone().try_acquire_owned() else {
                    shared.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                shared.answer_after_barrier(request, false).await
            }
            handled => handled,
        };
        let Handled::Reply(reply) = handled else {
            // A malformed message: the stream cannot be trusted any more.
            return;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else { return };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        match tokio::time::timeout(idle, stream.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => return timed_out(),
        }
    }
}
