//! One connection's life: the first-byte wait, hyper, eviction and the in-flight count.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tower_service::Service;

use crate::io::StallGuard;
use crate::{ServeConfig, ServeStats};

/// The open connections, so that the accept loop can close the one idle longest.
pub(crate) struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnectionState>>>,
}

/// What the registry and a connection's task share.
pub(crate) struct ConnectionState {
    id: u64,
    epoch: Instant,
    /// Requests whose response has not been sent to its last byte.
    in_flight: AtomicUsize,
    /// Milliseconds since the registry's epoch at which the connection last became idle.
    idle_since_ms: AtomicU64,
    /// Picked for eviction (not picked again while it closes).
    evicting: AtomicBool,
    evict: Notify,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self { epoch: Instant::now(), next_id: AtomicU64::new(0), open: Mutex::default() }
    }

    pub(crate) fn insert(&self) -> Arc<ConnectionState> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnectionState {
            id,
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        });
        state.mark_idle();
        self.lock().insert(id, Arc::clone(&state));
        state
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Asks the connection idle longest to close; false if none is idle. A scan of the open
    /// connections: it runs only when every slot is taken.
    pub(crate) fn evict_longest_idle(&self) -> bool {
        let open = self.lock();
        let victim = open
            .values()
            .filter(|state| state.is_idle() && !state.evicting.load(Ordering::Relaxed))
            .min_by_key(|state| state.idle_since_ms.load(Ordering::Relaxed));
        match victim {
            Some(state) => {
                state.evicting.store(true, Ordering::Relaxed);
                state.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnectionState>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ConnectionState {
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    fn mark_idle(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.idle_since_ms.store(ms, Ordering::Relaxed);
    }

    /// A request began: the connection is busy until the returned guard drops.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// Whether an eviction request should be obeyed now; a connection that turned busy since it
    /// was picked stays, and may be picked again later.
    fn accept_eviction(&self) -> bool {
        if self.is_idle() {
            return true;
        }
        self.evicting.store(false, Ordering::Relaxed);
        false
    }
}

/// Holds a request in flight; dropped when its response body has been sent (or abandoned).
struct InFlight(Arc<ConnectionState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.mark_idle();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until the body ends.
pub(crate) struct TrackedBody<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Everything a connection's task owns besides its socket.
pub(crate) struct Job<S> {
    pub(crate) service: S,
    pub(crate) state: Arc<ConnectionState>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: Arc<ServeConfig>,
    pub(crate) stats: Arc<ServeStats>,
    pub(crate) stopping: watch::Receiver<bool>,
    pub(crate) slot: OwnedSemaphorePermit,
}

/// Leaves the registry, the open count and the slot when the task ends, however it ends.
struct Departure {
    registry: Arc<Registry>,
    stats: Arc<ServeStats>,
    id: u64,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Departure {
    fn drop(&mut self) {
        self.registry.remove(self.id);
        self.stats.count_closed();
    }
}

/// Serves one connection until it ends, is evicted, times out or the server stops.
pub(crate) async fn run<S, B>(stream: TcpStream, peer: SocketAddr, job: Job<S>)
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Job { service, state, registry, config, stats, mut stopping, slot } = job;
    let _departure = Departure { registry, stats: Arc::clone(&stats), id: state.id, _slot: slot };

    // Until its first byte, a connection holds its socket and this future, nothing more.
    let first_byte = tokio::select! {
        () = stopped(&mut stopping) => return,
        () = state.evict.notified() => {
            stats.count_evicted();
            return;
        }
        readable = tokio::time::timeout(config.header_read_timeout, stream.readable()) => readable,
    };
    match first_byte {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return,
        Err(_) => {
            stats.count_idle_timeout();
            tracing::trace!(%peer, "http: no request within the header read timeout");
            return;
        }
    }

    let tracked = Arc::clone(&state);
    let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_flight = tracked.begin();
        let mut service = service.clone();
        async move {
            std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
            let response = service.call(request).await?;
            Ok::<_, Infallible>(response.map(|body| TrackedBody { body, _in_flight: in_flight }))
        }
    });
    let io = TokioIo::new(StallGuard::new(stream, config.write_stall_timeout, Arc::clone(&stats)));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes)
        .serve_connection(io, handler);
    tokio::pin!(connection);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                match result {
                    Err(error) if error.is_timeout() => stats.count_idle_timeout(),
                    Err(error) => tracing::trace!(%peer, %error, "http: connection ended with an error"),
                    Ok(()) => {}
                }
                return;
            }
            () = state.evict.notified() => {
                if state.accept_eviction() {
                    stats.count_evicted();
                    tracing::trace!(%peer, "http: idle connection closed to make room");
                    return;
                }
            }
            () = stopped(&mut stopping) => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
                return;
            }
        }
    }
}

/// Completes when the server stops (or is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}
