//! The primary web service on a real `127.0.0.1:0` listener, with a raw HTTP/1.1 client.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, UNIX_EPOCH};

use leader_failover::{serve_primary_http, serve_primary_http_with, PrimaryHttpConfig, PrimaryView, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    view: watch::Sender<PrimaryView>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn start(local: &str, initial: PrimaryView, config: Option<PrimaryHttpConfig>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (view, rx) = watch::channel(initial);
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let local = local.to_owned();
    let task = tokio::spawn(async move {
        match config {
            Some(config) => serve_primary_http_with(listener, rx, local, shutdown, config).await,
            None => serve_primary_http(listener, rx, local, shutdown).await,
        }
    });
    Server { addr, view, stop, task }
}

fn view(primary: Option<&str>, local_role: Role) -> PrimaryView {
    PrimaryView {
        primary: primary.map(str::to_owned),
        since: primary.map(|_| UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
        eligible: vec!["node1".into(), "node2".into()],
        local_role,
        fencing_token: None,
        valid_until: None,
    }
}

/// Sends one request with `Connection: close`; returns the status code and the body.
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    parse(&response)
}

fn parse(response: &str) -> (u16, String) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

#[tokio::test]
async fn status_page_is_200_on_the_primary_and_503_elsewhere() {
    let server = start("node2", view(Some("node1"), Role::Standby), None).await;
    assert_eq!(request(server.addr, "GET", "/").await, (503, "not primary; primary: node1\n".to_owned()));

    server.view.send_replace(view(None, Role::Standby));
    assert_eq!(request(server.addr, "GET", "/").await, (503, "no primary\n".to_owned()));

    server.view.send_replace(view(Some("node2"), Role::Primary));
    assert_eq!(request(server.addr, "GET", "/").await, (200, "primary: node2\n".to_owned()));
    assert_eq!(request(server.addr, "HEAD", "/").await.0, 200);
    assert_eq!(request(server.addr, "POST", "/").await.0, 405);
}

#[tokio::test]
async fn primary_endpoint_returns_the_view_as_json() {
    let server = start("node2", view(Some("node1"), Role::Standby), None).await;
    let (status, body) = request(server.addr, "GET", "/primary").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "node": "node2",
            "primary": "node1",
            "since": 1_700_000_000_123_u64,
            "eligible": ["node1", "node2"],
            "local_role": "standby",
        })
    );

    server.view.send_replace(view(None, Role::Ineligible));
    let (_, body) = request(server.addr, "GET", "/primary").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&json["primary"], &json["since"], &json["local_role"]),
        (&serde_json::Value::Null, &serde_json::Value::Null, &serde_json::json!("ineligible"))
    );
}

#[tokio::test]
async fn unknown_paths_are_404_json() {
    let server = start("node2", view(None, Role::Standby), None).await;
    let (status, body) = request(server.addr, "GET", "/v1/nope").await;
    assert_eq!(status, 404);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json, serde_json::json!({"error": "not found", "path": "/v1/nope"}));
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let server = start("node2", view(None, Role::Standby), None).await;
    // An idle keep-alive connection that has already been served once.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503"));

    server.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), server.task).await.expect("server returns promptly").unwrap();
    // The idle connection was closed, and nobody listens any more.
    assert_eq!(tokio::time::timeout(Duration::from_secs(1), idle.read(&mut buf)).await.unwrap().unwrap_or(0), 0);
    assert!(TcpStream::connect(server.addr).await.is_err());
}

/// Issue 11: 300 silent connections used to take every serving slot for 10 s, so the primary
/// looked dead to its load balancer. Idle connections now cost a file descriptor each, not a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_lock_the_primary_out() {
    let server = start("node2", view(Some("node2"), Role::Primary), None).await;
    // All within the header read timeout (10 s), so that none has been closed for idling: the
    // server must accept them all (before the fix the 257th waited in the backlog) and still answer.
    let started = std::time::Instant::now();
    let mut idle = Vec::new();
    let opening = async {
        for _ in 0..1000 {
            idle.push(TcpStream::connect(server.addr).await.unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(5), opening).await.expect("1000 connections accepted within 5 s");
    for _ in 0..3 {
        let answer = tokio::time::timeout(Duration::from_secs(2), request(server.addr, "GET", "/")).await;
        assert_eq!(answer.expect("answered within 2 s"), (200, "primary: node2\n".to_owned()));
    }
    assert!(started.elapsed() < Duration::from_secs(9), "the idle connections may have timed out meanwhile");
}

#[tokio::test]
async fn at_the_connection_limit_an_idle_client_makes_room_for_a_new_one() {
    let config = PrimaryHttpConfig { max_connections: NonZeroUsize::MIN, ..PrimaryHttpConfig::default() };
    let server = start("node2", view(Some("node2"), Role::Primary), Some(config)).await;

    // An idle keep-alive connection holds the only slot.
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    first.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    assert!(first.read(&mut buf).await.unwrap() > 0);

    // A new client is served at once, and the idle one is closed to make room.
    let answer = tokio::time::timeout(Duration::from_secs(3), request(server.addr, "GET", "/")).await;
    assert_eq!(answer.expect("served at the limit"), (200, "primary: node2\n".to_owned()));
    let closed = tokio::time::timeout(Duration::from_secs(3), first.read(&mut buf)).await;
    assert_eq!(closed.expect("the idle connection was closed").unwrap_or(0), 0);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_header_read_timeout() {
    let config = PrimaryHttpConfig { header_read_timeout: Duration::from_millis(200), ..PrimaryHttpConfig::default() };
    let server = start("node2", view(None, Role::Standby), Some(config)).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 512];
    let closed =
        tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf)).await.expect("closed by the server");
    // hyper may answer 408 before closing; either way the connection ends.
    let n = closed.unwrap_or(0);
    if n > 0 {
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
        assert_eq!(silent.read(&mut buf).await.unwrap_or(0), 0);
    }
}
