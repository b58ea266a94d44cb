//! Isolation is loud, and costs no memory: a node of another cluster (wrong key, wrong label, no
//! key, another version) is refused with a reason the joiner reads in its error, the refusing
//! node warns (rate-limited) with the peer address and the reason, and streams that announce
//! large frames without authenticating never make a node buffer more than its
//! pre-authentication budget.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{config, shutdown_all};
use gossip_core::{JoinError, Key, Keyring, Node, NodeConfig, DEFAULT_MAX_UNAUTHENTICATED_BYTES};
use gossip_transport::net::{read_frame, FrameError};
use gossip_transport::{Codec, Refusal, RefusalReason, FLAG_ENCRYPTED, MAGIC, PROTOCOL_MAJOR};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Bound on anything that should take well under a second.
const GUARD: Duration = Duration::from_secs(10);

fn key(byte: u8) -> Key {
    Key::from_bytes(&[byte; 32]).unwrap()
}

fn node(name: &str, label: &str, keyring: Option<Keyring>) -> NodeConfig {
    let mut config = NodeConfig { keyring, stream_timeout: Duration::from_secs(5), ..config(name) };
    config.swim.label = label.to_owned();
    config
}

/// Everything logged at WARN and above by this test binary (one global subscriber).
fn warnings() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&log);
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&writer)))
            .init();
        log
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The warnings logged so far that mention `needle`.
fn warned(needle: &str) -> Vec<String> {
    let log = warnings().lock().unwrap();
    String::from_utf8_lossy(&log).lines().filter(|line| line.contains(needle)).map(str::to_owned).collect()
}

/// The reasons of a failed join, for one seed.
fn join_reason(err: &JoinError, seed: SocketAddr) -> String {
    match err {
        JoinError::Unreachable { reasons, .. } => {
            reasons.iter().find(|(addr, _)| *addr == seed).map(|(_, reason)| reason.clone()).unwrap_or_default()
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

async fn refused_streams(node: &Node, reason: &str) -> u64 {
    node.stats().await.unwrap().driver.refused_streams.get(reason).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_named_on_both_sides() {
    warnings();
    let seed = Node::start(node("keyed-seed", "", Some(Keyring::new(key(1))))).await.unwrap();
    let intruder = Node::start(node("wrong-key", "", Some(Keyring::new(key(2))))).await.unwrap();
    let plain = Node::start(node("no-key", "", None)).await.unwrap();
    let addr = seed.advertise_addr();

    let err = intruder.join(&[addr]).await.unwrap_err();
    let reason = join_reason(&err, addr);
    assert!(reason.contains("wrong encryption key"), "{err}");
    assert_eq!(refused_streams(&seed, "decrypt").await, 1);

    let err = plain.join(&[addr]).await.unwrap_err();
    assert!(join_reason(&err, addr).contains("no encryption key"), "{err}");
    assert_eq!(refused_streams(&seed, "plaintext_refused").await, 1);

    // And the other way round: an encrypting node joining a plaintext one.
    let err = intruder.join(&[plain.advertise_addr()]).await.unwrap_err();
    assert!(join_reason(&err, plain.advertise_addr()).contains("encryption not enabled on the peer"), "{err}");

    let stats = seed.stats().await.unwrap().driver;
    assert!(stats.refusal_warnings >= 2, "{stats:?}");
    let lines = warned("reason=\"decrypt\"");
    assert!(lines.iter().any(|line| line.contains("WARN") && line.contains("127.0.0.1")), "{lines:?}");
    assert!(!warned("reason=\"plaintext_refused\"").is_empty());

    shutdown_all(vec![seed, intruder, plain]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_label_is_named_on_both_sides() {
    warnings();
    let seed = Node::start(node("prod-seed", "prod", None)).await.unwrap();
    let stranger = Node::start(node("test-node", "test", None)).await.unwrap();
    let addr = seed.advertise_addr();

    let err = stranger.join(&[addr]).await.unwrap_err();
    assert!(join_reason(&err, addr).contains("wrong cluster label"), "{err}");
    assert_eq!(refused_streams(&seed, "label_mismatch").await, 1);
    let lines = warned("reason=\"label_mismatch\"");
    assert!(
        lines.iter().any(|line| line.contains("WARN") && line.contains("127.0.0.1") && line.contains("\"test\"")),
        "{lines:?}"
    );

    shutdown_all(vec![seed, stranger]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_datagrams_warn_once_per_interval() {
    warnings();
    let seed = Node::start(node("udp-seed", "udp", None)).await.unwrap();
    let before = seed.stats().await.unwrap().driver.refusal_warnings;

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other_cluster = Codec::new("elsewhere").unwrap().seal(b"anything", &mut rand::rng());
    for _ in 0..50 {
        socket.send_to(&other_cluster, seed.local_addr()).await.unwrap();
    }
    let dropped = || async { seed.stats().await.unwrap().swim.dropped.get("label_mismatch").copied().unwrap_or(0) };
    let deadline = tokio::time::Instant::now() + GUARD;
    while dropped().await < 50 {
        assert!(tokio::time::Instant::now() < deadline, "datagrams not all received");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Fifty refusals from one address for one reason: one warning.
    assert_eq!(seed.stats().await.unwrap().driver.refusal_warnings, before + 1);
    let lines = warned("refused a gossip packet");
    assert!(lines.iter().any(|line| line.contains("\"elsewhere\"")), "{lines:?}");

    seed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_protocol_version_gets_a_refusal_frame() {
    let seed = Node::start(node("version-seed", "", None)).await.unwrap();
    let mut stream = TcpStream::connect(seed.local_addr()).await.unwrap();
    // A frame of a future major version, announcing a megabyte it never sends.
    let header = [MAGIC, PROTOCOL_MAJOR + 1, 0, 0, 0];
    let mut request = (1_000_000u32).to_be_bytes().to_vec();
    request.extend_from_slice(&header);
    stream.write_all(&request).await.unwrap();
    let answer = tokio::time::timeout(GUARD, read_frame(&mut stream, 1024)).await.unwrap().unwrap();
    let refusal = Refusal::decode(&answer).expect("a refusal frame");
    assert_eq!(refusal.reason, RefusalReason::UnsupportedVersion);
    assert_eq!(refusal.major, PROTOCOL_MAJOR);
    assert!(matches!(read_frame(&mut stream, 1024).await, Err(FrameError::Closed | FrameError::Io(_))));
    assert_eq!(refused_streams(&seed, "unsupported_version").await, 1);
    assert_eq!(seed.stats().await.unwrap().driver.unauthenticated_bytes_peak, 0);
    seed.shutdown().await;
}

/// Connect and send a frame header of the node's cluster (encrypted, no label) announcing `len`
/// bytes, then `send` bytes of garbage; returns the answer frame (or why there is none).
async fn unauthenticated_frame(to: SocketAddr, len: u32, send: usize) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(to).await.map_err(|e| e.to_string())?;
    let mut request = len.to_be_bytes().to_vec();
    request.extend_from_slice(&[MAGIC, PROTOCOL_MAJOR, 0, FLAG_ENCRYPTED, 0]);
    request.resize(request.len() + send, 0xA5);
    let exchange = async {
        // The node may answer (and close) before it has read everything.
        let _ = stream.write_all(&request).await;
        read_frame(&mut stream, 1024).await.map(|frame| frame.to_vec()).map_err(|e| e.to_string())
    };
    tokio::time::timeout(GUARD, exchange).await.map_err(|_| "no answer".to_owned())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_frames_stay_within_the_budget() {
    let seed = Node::start(node("budget-seed", "", Some(Keyring::new(key(7))))).await.unwrap();
    let addr = seed.local_addr();
    let budget = DEFAULT_MAX_UNAUTHENTICATED_BYTES as u64;

    // 32 connections at once, each announcing and sending 512 KiB that no key opens: 16 MiB in
    // all, eight times the budget. Each is read (within the budget), refused as a wrong key.
    let frame_len = 512 * 1024;
    let clients: Vec<_> =
        (0..32).map(|_| tokio::spawn(unauthenticated_frame(addr, frame_len as u32, frame_len - 5))).collect();
    for client in clients {
        let answer = client.await.unwrap().expect("an answer");
        assert_eq!(Refusal::decode(&answer).map(|r| r.reason), Some(RefusalReason::KeyMismatch));
    }
    let stats = seed.stats().await.unwrap().driver;
    assert!(stats.unauthenticated_bytes_peak <= budget, "{stats:?}");
    assert!(stats.unauthenticated_bytes_peak >= frame_len as u64, "the frames were read: {stats:?}");
    assert_eq!(stats.unauthenticated_bytes, 0, "{stats:?}");
    assert_eq!(stats.refused_streams.get("decrypt"), Some(&32));

    // 64 connections announcing 20 MiB each (the old frame limit): refused on their header, before
    // any of the body is read.
    let clients: Vec<_> =
        (0..64).map(|_| tokio::spawn(unauthenticated_frame(addr, 20 * 1024 * 1024, 16 * 1024))).collect();
    for client in clients {
        let answer = client.await.unwrap().expect("an answer");
        assert_eq!(Refusal::decode(&answer).map(|r| r.reason), Some(RefusalReason::TooLarge));
    }
    let stats = seed.stats().await.unwrap().driver;
    assert!(stats.unauthenticated_bytes_peak <= budget, "{stats:?}");
    assert_eq!(stats.refused_streams.get("too_large"), Some(&64));

    // A member of the cluster still joins.
    let member = Node::start(node("budget-member", "", Some(Keyring::new(key(7))))).await.unwrap();
    assert_eq!(member.join(&[seed.advertise_addr()]).await, Ok(1));
    shutdown_all(vec![seed, member]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_close_is_explained() {
    // A "peer" that reads the request and closes without a word, as older nodes do.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 64 * 1024];
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
        }
    });
    let joiner = Node::start(node("joiner", "", None)).await.unwrap();
    let err = joiner.join(&[addr]).await.unwrap_err();
    assert!(join_reason(&err, addr).contains("wrong encryption key or cluster label?"), "{err}");
    joiner.shutdown().await;
}
