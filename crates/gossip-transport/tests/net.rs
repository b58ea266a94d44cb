//! Real-socket tests of the tokio helpers, on 127.0.0.1.

#![cfg(feature = "tokio")]

use std::io;
use std::time::{Duration, Instant};

use gossip_transport::net::{bind, read_frame, request, write_frame, FrameError};
use gossip_transport::MAX_FRAME_LEN;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bound for anything that should be instant; only reached if a test would hang.
const GUARD: Duration = Duration::from_secs(10);

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0")
}

/// Serves one connection: echoes every frame back until the client closes.
fn spawn_echo(listener: TcpListener) {
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        while let Ok(frame) = read_frame(&mut stream, MAX_FRAME_LEN).await {
            write_frame(&mut stream, &frame).await.expect("echo");
        }
    });
}

#[tokio::test]
async fn frames_round_trip_over_tcp() {
    let listener = listener().await;
    let addr = listener.local_addr().expect("local addr");
    spawn_echo(listener);

    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let frames: Vec<Vec<u8>> =
        vec![Vec::new(), b"hello".to_vec(), (0..200_000u32).map(|i| i as u8).collect(), vec![0xff; 3]];
    for frame in &frames {
        write_frame(&mut stream, frame).await.expect("write");
    }
    for frame in &frames {
        let echoed =
            tokio::time::timeout(GUARD, read_frame(&mut stream, MAX_FRAME_LEN)).await.expect("no hang").expect("read");
        assert_eq!(&echoed[..], &frame[..]);
    }
}

#[tokio::test]
async fn wire_format_is_a_big_endian_length_prefix() {
    let mut buffer = Vec::new();
    write_frame(&mut buffer, b"abc").await.expect("write to a Vec");
    assert_eq!(buffer, b"\x00\x00\x00\x03abc");
}

#[tokio::test]
async fn oversized_length_is_refused_without_reading_the_payload() {
    let listener = listener().await;
    let addr = listener.local_addr().expect("local addr");
    let mut client = TcpStream::connect(addr).await.expect("connect");
    let (mut server, _) = listener.accept().await.expect("accept");

    // Announce a frame one byte over the limit, send only a few bytes of it, keep the stream open.
    let len = MAX_FRAME_LEN as u32 + 1;
    client.write_all(&len.to_be_bytes()).await.expect("prefix");
    client.write_all(b"rest").await.expect("some payload");

    let err = tokio::time::timeout(GUARD, read_frame(&mut server, MAX_FRAME_LEN))
        .await
        .expect("refused at once, not waiting for the payload")
        .unwrap_err();
    match err {
        FrameError::TooLarge { len: l, max } => {
            assert_eq!((l, max), (len as usize, MAX_FRAME_LEN));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The payload bytes are still unread on the stream.
    let mut rest = [0u8; 4];
    server.read_exact(&mut rest).await.expect("payload still there");
    assert_eq!(&rest, b"rest");

    // A small limit applies the same way.
    client.write_all(&[0, 0, 0, 11]).await.expect("prefix");
    let err = read_frame(&mut server, 10).await.unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { len: 11, max: 10 }));
}

#[tokio::test]
async fn closed_and_truncated_streams() {
    // Clean close before a frame.
    let err = read_frame(&mut &b""[..], MAX_FRAME_LEN).await.unwrap_err();
    assert!(matches!(err, FrameError::Closed), "{err:?}");
    // Close inside the prefix.
    let err = read_frame(&mut &b"\x00\x00"[..], MAX_FRAME_LEN).await.unwrap_err();
    assert!(matches!(&err, FrameError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof), "{err:?}");
    // Close inside the payload.
    let err = read_frame(&mut &b"\x00\x00\x00\x05abc"[..], MAX_FRAME_LEN).await.unwrap_err();
    assert!(matches!(&err, FrameError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof), "{err:?}");
    // Exactly one frame, then a clean close.
    let mut input = &b"\x00\x00\x00\x02hi"[..];
    assert_eq!(read_frame(&mut input, MAX_FRAME_LEN).await.expect("frame"), &b"hi"[..]);
    assert!(matches!(read_frame(&mut input, MAX_FRAME_LEN).await, Err(FrameError::Closed)));
}

#[tokio::test]
async fn request_gets_the_answer() {
    let listener = listener().await;
    let addr = listener.local_addr().expect("local addr");
    spawn_echo(listener);
    let answer = request(addr, b"push-pull", GUARD, MAX_FRAME_LEN).await.expect("answer");
    assert_eq!(&answer[..], b"push-pull");
}

#[tokio::test]
async fn request_times_out_when_the_peer_never_answers() {
    let listener = listener().await;
    let addr = listener.local_addr().expect("local addr");
    // Accept and hold the connection without answering.
    let holder = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(GUARD).await;
        drop(stream);
    });

    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let err = request(addr, b"ping", timeout, MAX_FRAME_LEN).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, FrameError::Timeout), "{err:?}");
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < GUARD, "{elapsed:?}");
    holder.abort();
}

#[tokio::test]
async fn request_reports_a_peer_that_closes_without_answering() {
    let listener = listener().await;
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let _ = read_frame(&mut stream, MAX_FRAME_LEN).await;
    });
    let err = request(addr, b"ping", GUARD, MAX_FRAME_LEN).await.unwrap_err();
    assert!(matches!(err, FrameError::ClosedWithoutAnswer | FrameError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn request_reports_a_refusal_frame() {
    use gossip_transport::{Refusal, RefusalReason};
    let listener = listener().await;
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let _ = read_frame(&mut stream, MAX_FRAME_LEN).await;
        write_frame(&mut stream, &Refusal::new(RefusalReason::LabelMismatch).encode()).await.expect("refuse");
    });
    let err = request(addr, b"push-pull", GUARD, MAX_FRAME_LEN).await.unwrap_err();
    assert!(matches!(err, FrameError::Refused(Refusal { reason: RefusalReason::LabelMismatch, .. })), "{err:?}");
    assert!(err.to_string().contains("wrong cluster label"), "{err}");
}

#[tokio::test]
async fn request_to_a_closed_port_fails() {
    let addr = listener().await.local_addr().expect("local addr"); // dropped: nobody listens
    let err = request(addr, b"ping", GUARD, MAX_FRAME_LEN).await.unwrap_err();
    assert!(matches!(err, FrameError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn bind_uses_one_port_for_udp_and_tcp() {
    let (udp, tcp) = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let udp_addr = udp.local_addr().expect("udp addr");
    let tcp_addr = tcp.local_addr().expect("tcp addr");
    assert_ne!(udp_addr.port(), 0);
    assert_eq!(udp_addr, tcp_addr);

    // Both work: a datagram arrives, a connection is accepted.
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sender.send_to(b"hi", udp_addr).await.expect("send");
    let mut buf = [0u8; 8];
    let (n, _) = tokio::time::timeout(GUARD, udp.recv_from(&mut buf)).await.expect("no hang").expect("recv");
    assert_eq!(&buf[..n], b"hi");
    let _client = TcpStream::connect(tcp_addr).await.expect("connect");
    tokio::time::timeout(GUARD, tcp.accept()).await.expect("no hang").expect("accept");

    // A port already taken is reported, not silently replaced.
    let err = bind(udp_addr).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
}
