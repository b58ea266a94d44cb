//! One hardened HTTP/1.1 serving layer for every HTTP surface of the project: serf-agent's RPC
//! API, the primary's web service and consul-lite's `/v1` API all serve an [axum] `Router` (or
//! any tower service) through [`serve`], so that a limit or a fix lands once.
//!
//! # What it promises
//!
//! - **An idle connection costs a file descriptor, not serving capacity.** A client that connects
//!   and sends nothing waits in a cheap first-byte wait (no buffers, no timers but one), and a
//!   request that does arrive is answered at once however many such connections are open, up to
//!   [`ServeConfig::max_connections`].
//! - **At the connection limit, idle connections make room.** When every slot is taken, a new
//!   client is served by closing the connection that has been idle longest (no request in flight:
//!   connected and silent, half-way through its headers, or between keep-alive requests). Only
//!   when every connection is busy does a new client wait in the listen backlog.
//! - **Slow clients are cut.** A request's head must arrive within
//!   [`ServeConfig::header_read_timeout`] (from the connection's start, and between keep-alive
//!   requests); a head larger than [`ServeConfig::max_header_bytes`] is refused with 431; a
//!   response write that makes no progress for [`ServeConfig::write_stall_timeout`] (a client
//!   that stopped reading) closes the connection; [`read_body`] bounds a request body's size and
//!   time.
//! - **Shutdown is prompt.** On shutdown the listener closes, idle connections close at once, and
//!   requests in flight get [`ServeConfig::shutdown_grace`] to finish.
//! - Counters of all of this in [`ServeStats`], for the agents' metrics.
//!
//! # What it does not do
//!
//! - No routing, authentication or response shapes: those belong to the router a server passes
//!   in (axum), so that each server answers errors the way the system it imitates does (Consul's
//!   plain-text bodies for consul-lite, JSON for serf-agent). Authentication runs in the router as
//!   soon as the request head is read, before any body is.
//! - No TLS and no HTTP/2: the agents serve loopback and private networks, like Serf's and
//!   Consul's default HTTP listeners.
//! - No per-client-address limit: on loopback every client shares one address.
//! - It does not use `axum::serve`, which has none of the limits above; the accept loop and the
//!   connection lifecycle are here, and hyper parses HTTP.
//!
//! ```text
//!  TcpListener ── accept ── slot free? ──no──► close the longest-idle connection (or wait: all busy)
//!      │
//!      ▼
//!  first-byte wait ── header_read_timeout / evicted / shutdown ──► closed
//!      │ readable
//!      ▼
//!  hyper http1 (head ≤ max_header_bytes, header_read_timeout per request)
//!      │ request ──► service (axum Router) ──► response body (in flight until its last byte)
//!      └── write makes no progress for write_stall_timeout ──► closed
//! ```

#![deny(missing_docs)]

mod body;
mod config;
mod connection;
mod fd_limit;
mod io;
mod stats;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower_service::Service;

pub use body::{read_body, BodyError};
pub use config::{ConfigError, ServeConfig};
pub use fd_limit::raise_fd_limit;
pub use stats::{ServeCounters, ServeStats};

use connection::Registry;

/// Connections the kernel completes before the server accepts them (std's default is 128, which a
/// burst of clients fills before a busy single-threaded agent comes back to accept).
const BACKLOG: u32 = 1024;

/// How long the accept loop waits for a slot before it tries to make room again.
const SLOT_RETRY: Duration = Duration::from_millis(100);
/// How long the accept loop backs off after a failed accept (out of file descriptors and the like).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A listener on `addr` with a backlog of 1024 (as Go servers use the system's maximum), for
/// [`serve`]. Must be called inside a tokio runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `service` on `listener` until `shutdown` completes, within the limits of `config`;
/// `stats` counts what happens (share it with the metrics).
///
/// `config` must be valid ([`ServeConfig::validate`]); an invalid one is logged and replaced by
/// the default rather than risking a panic inside hyper. `max_connections` is lowered to half of
/// the process's file-descriptor limit if it is above it (call [`raise_fd_limit`] at start).
///
/// Returns when the listener is closed and every connection has ended, at most
/// [`ServeConfig::shutdown_grace`] after `shutdown`.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    config: ServeConfig,
    stats: Arc<ServeStats>,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let config = match config.validate() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "http: invalid serving limits; using the defaults");
            ServeConfig::default()
        }
    };
    let capacity = fd_limit::connection_capacity(config.max_connections.get());
    if capacity < config.max_connections.get() {
        tracing::warn!(
            configured = config.max_connections.get(),
            capacity,
            "http: max connections lowered to half of the file-descriptor limit"
        );
    }
    let addr = listener.local_addr().ok();
    let slots = Arc::new(Semaphore::new(capacity));
    let registry = Arc::new(Registry::new());
    let config = Arc::new(config);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut last_accept_warning = None;
    tokio::pin!(shutdown);
    'accept: loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    stats.count_accept_error();
                    // Out of file descriptors: idle connections give theirs back.
                    registry.evict_longest_idle();
                    let now = tokio::time::Instant::now();
                    if last_accept_warning.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10)) {
                        last_accept_warning = Some(now);
                        tracing::warn!(?addr, %error, "http: accept failed; backing off");
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        // A client is here: serve it in a free slot, or in one that the connection idle longest
        // gives up. While every connection is busy it waits, and the next clients wait in the
        // listen backlog.
        let slot = loop {
            if let Ok(slot) = Arc::clone(&slots).try_acquire_owned() {
                break slot;
            }
            registry.evict_longest_idle();
            tokio::select! {
                () = &mut shutdown => break 'accept,
                slot = Arc::clone(&slots).acquire_owned() => match slot {
                    Ok(slot) => break slot,
                    Err(_) => break 'accept, // never closed
                },
                () = tokio::time::sleep(SLOT_RETRY) => {}
            }
        };
        while connections.try_join_next().is_some() {}
        stats.count_accepted();
        let _ = stream.set_nodelay(true);
        let state = registry.insert();
        let job = connection::Job {
            service: service.clone(),
            state,
            registry: Arc::clone(&registry),
            config: Arc::clone(&config),
            stats: Arc::clone(&stats),
            stopping: stopping.clone(),
            slot,
        };
        connections.spawn(connection::run(stream, peer, job));
    }
    drop(listener);
    let _ = stop.send(true);
    let drained =
        tokio::time::timeout(config.shutdown_grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(?addr, open = connections.len(), "http: cutting connections after the shutdown grace");
        connections.shutdown().await;
    }
}
