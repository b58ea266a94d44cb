//! Garbage on the server RPC port: the connection is closed, the server keeps serving.

mod common;

use std::time::Duration;

use common::{set, write, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn closed_by_server(mut stream: TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_connection_only() {
    let mut cluster = Cluster::bootstrap(1, |_| {}).await;
    cluster.wait_leader().await;
    let addr = cluster.addrs[0];

    // An oversized frame header (4 GiB): refused from the header.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert!(closed_by_server(s).await);

    // A wrong version byte.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 0, 0, 2, 99, 0]).await.unwrap();
    assert!(closed_by_server(s).await);

    // A body that is not a message.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 0, 0, 5, consensus::rpc::frame::VERSION, 200, 200, 200, 200]).await.unwrap();
    assert!(closed_by_server(s).await);

    // Random bytes.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 0, 0, 64]).await.unwrap();
    s.write_all(&[0x5a; 64]).await.unwrap();
    assert!(closed_by_server(s).await);

    let (index, _) = write(cluster.node(1), set("still", "serving")).await;
    assert!(index > 0);
    cluster.shutdown().await;
}
