//! The serving layer on real `127.0.0.1:0` listeners with raw TCP clients: idle floods, the
//! connection limit, slow clients, oversized heads and shutdown. Timing bounds are generous
//! (seconds): these check behaviour, not speed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_serve::{serve, ServeConfig, ServeStats};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    stats: Arc<ServeStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A body that sends 64 KiB chunks for ever: a client that stops reading blocks its writes.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))))
    }
}

/// A body that never sends anything: the request stays in flight.
struct Hanging;

impl hyper::body::Body for Hanging {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

async fn start(config: ServeConfig) -> Server {
    let router = Router::new()
        .route("/", get(|| async { "ok\n" }))
        .route("/endless", get(|| async { Body::new(Endless) }))
        .route("/hang", get(|| async { Body::new(Hanging) }));
    let listener = http_serve::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ServeStats::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router, config, Arc::clone(&stats), async move {
        let _ = stopped.await;
    }));
    Server { addr, stats, stop: Some(stop), task }
}

/// One `GET` with `Connection: close`: the status code, within `bound`.
async fn get_status(addr: SocketAddr, path: &str, bound: Duration) -> u16 {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8_lossy(&response)[9..12].parse().unwrap()
    };
    tokio::time::timeout(bound, exchange).await.expect("answered within the bound")
}

/// Reads until the server closes the connection (or `bound` passes: a panic).
async fn closed_by_server(stream: &mut TcpStream, bound: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server did not close the connection within {bound:?}");
}

async fn idle_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut idle = Vec::with_capacity(count);
    for _ in 0..count {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    idle
}

async fn wait_for(mut condition: impl FnMut() -> bool, bound: Duration) {
    let deadline = tokio::time::Instant::now() + bound;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {bound:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_answered_at_once_with_a_thousand_idle_connections_open() {
    let server = start(ServeConfig::default()).await;
    let _idle = idle_connections(server.addr, 1000).await;
    wait_for(|| server.stats.snapshot().accepted >= 1000, Duration::from_secs(10)).await;
    for _ in 0..5 {
        assert_eq!(get_status(server.addr, "/", Duration::from_secs(2)).await, 200);
    }
    let counters = server.stats.snapshot();
    assert_eq!(counters.evicted, 0, "nothing needed evicting below the limit: {counters:?}");
    assert!(counters.open >= 1000, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_limit_the_longest_idle_connection_makes_room() {
    let config = ServeConfig { max_connections: NonZeroUsize::new(8).unwrap(), ..ServeConfig::default() };
    let server = start(config).await;
    let mut oldest = TcpStream::connect(server.addr).await.unwrap();
    wait_for(|| server.stats.snapshot().accepted >= 1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Half-way through a request head is idle too (a slowloris client).
    let mut others = idle_connections(server.addr, 7).await;
    others[0].write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    wait_for(|| server.stats.snapshot().accepted >= 8, Duration::from_secs(5)).await;

    // The limit is reached: a new client is still served, and the oldest idle one was closed.
    assert_eq!(get_status(server.addr, "/", Duration::from_secs(3)).await, 200);
    closed_by_server(&mut oldest, Duration::from_secs(3)).await;
    assert!(server.stats.snapshot().evicted >= 1);
    // A burst of new clients keeps being served while idle ones give way.
    for _ in 0..10 {
        assert_eq!(get_status(server.addr, "/", Duration::from_secs(3)).await, 200);
    }
    assert!(server.stats.snapshot().open <= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_connections_are_never_evicted_and_new_clients_wait_for_one() {
    let config = ServeConfig { max_connections: NonZeroUsize::new(2).unwrap(), ..ServeConfig::default() };
    let server = start(config).await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        busy.push(stream);
    }
    wait_for(|| server.stats.snapshot().accepted >= 2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let waiting = tokio::spawn(get_status(server.addr, "/", Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !waiting.is_finished(),
        "served beyond the limit while every connection was busy: {:?}",
        server.stats.snapshot()
    );
    assert_eq!(server.stats.snapshot().evicted, 0);

    drop(busy.pop());
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap(), 200);
}

#[tokio::test]
async fn silent_and_slow_clients_are_closed_at_the_header_read_timeout() {
    let config = ServeConfig { header_read_timeout: Duration::from_millis(300), ..ServeConfig::default() };
    let server = start(config).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut trickle = TcpStream::connect(server.addr).await.unwrap();
    trickle.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let trickling = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return;
            }
        }
        panic!("a client trickling its headers was never cut off");
    };
    tokio::join!(closed_by_server(&mut silent, Duration::from_secs(3)), trickling);
    assert!(server.stats.snapshot().idle_timeouts >= 2, "{:?}", server.stats.snapshot());
}

#[tokio::test]
async fn a_keep_alive_connection_is_closed_when_idle_past_the_timeout() {
    let config = ServeConfig { header_read_timeout: Duration::from_millis(300), ..ServeConfig::default() };
    let server = start(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    closed_by_server(&mut stream, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_at_the_write_stall_timeout() {
    let config = ServeConfig { write_stall_timeout: Duration::from_millis(300), ..ServeConfig::default() };
    let server = start(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    wait_for(|| server.stats.snapshot().write_stalls >= 1, Duration::from_secs(10)).await;
    wait_for(|| server.stats.snapshot().open == 0, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let config = ServeConfig { max_header_bytes: 8 * 1024, ..ServeConfig::default() };
    let server = start(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let big = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(16 * 1024));
    let _ = stream.write_all(big.as_bytes()).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut response)).await.unwrap();
    assert!(response.starts_with(b"HTTP/1.1 431"), "{}", String::from_utf8_lossy(&response));
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns_promptly() {
    let mut server = start(ServeConfig::default()).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    assert!(kept.read(&mut buf).await.unwrap() > 0);

    server.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), &mut server.task).await.expect("serve returns promptly").unwrap();
    closed_by_server(&mut silent, Duration::from_secs(1)).await;
    closed_by_server(&mut kept, Duration::from_secs(1)).await;
    assert!(TcpStream::connect(server.addr).await.is_err(), "nobody listens any more");
}
