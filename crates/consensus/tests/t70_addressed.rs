//! Every server RPC request names the Raft id it is for; a server refuses one meant for another
//! id and changes nothing (its vote, term and log stay as they were).

mod common;

use std::time::Duration;

use common::{set, write, Cluster};
use consensus::rpc::frame::VERSION;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A frame: length, version, body.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(VERSION);
    out.extend_from_slice(body);
    out
}

/// postcard's varint for a u64.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An envelope from `from` to `to` carrying a Vote request of `candidate` at `term` (no log).
fn vote_request(from: u64, to: u64, term: u64, candidate: u64) -> Vec<u8> {
    let mut body = Vec::new();
    varint(from, &mut body);
    varint(to, &mut body);
    body.push(1); // Request::Vote
    varint(term, &mut body);
    varint(candidate, &mut body);
    body.push(0); // not committed
    body.push(0); // last_log_id: None
    frame(&body)
}

/// An envelope from `from` to `to` carrying an empty AppendEntries of leader `leader` at `term`.
fn append_request(from: u64, to: u64, term: u64, leader: u64) -> Vec<u8> {
    let mut body = Vec::new();
    varint(from, &mut body);
    varint(to, &mut body);
    body.push(0); // Request::AppendEntries
    varint(term, &mut body);
    varint(leader, &mut body);
    body.push(1); // committed
    body.push(0); // prev_log_id: None
    body.push(0); // no entries
    body.push(0); // leader_commit: None
    frame(&body)
}

/// Sends one frame and reads the answer's body (version byte and message).
async fn exchange(stream: &mut TcpStream, frame: &[u8]) -> Vec<u8> {
    stream.write_all(frame).await.unwrap();
    let mut header = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header)).await.unwrap().unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).await.unwrap();
    body
}

/// `Response::Refused(Refusal::WrongNode { addressed, actual })`.
fn refused(addressed: u64, actual: u64) -> Vec<u8> {
    let mut body = vec![VERSION, 4, 0];
    varint(addressed, &mut body);
    varint(actual, &mut body);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_another_id_is_refused_and_changes_nothing() {
    let mut cluster = Cluster::bootstrap(1, |_| {}).await;
    cluster.wait_leader().await;
    write(cluster.node(1), set("a", "1")).await;
    let before = cluster.node(1).metrics();
    let state_before = cluster.node(1).with_state(common::Kv::clone);
    let high = before.term + 100;

    let mut s = TcpStream::connect(cluster.addrs[0]).await.unwrap();
    // A Vote and an AppendEntries of a higher term, addressed to server 7: refused, naming 1.
    let vote = exchange(&mut s, &vote_request(9, 7, high, 9)).await;
    let append = exchange(&mut s, &append_request(9, 7, high, 9)).await;
    // The server did not move (checked before the answers, so that a server acting on them
    // fails here, on what it changed).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = cluster.node(1).metrics();
    assert_eq!(after.term, before.term, "a request for another id changed the term");
    assert_eq!(after.leader, Some(1), "a request for another id changed the leader");
    assert_eq!(after.last_log_index, before.last_log_index, "a request for another id changed the log");
    assert_eq!(cluster.node(1).with_state(common::Kv::clone), state_before);
    assert_eq!(vote, refused(7, 1));
    assert_eq!(append, refused(7, 1));

    // The same requests addressed to server 1 are acted on (the bytes above are valid
    // requests): the Vote gets a Vote answer (Ok; the leader's lease refuses the vote itself),
    // the AppendEntries of a higher term makes the server take that term.
    let answer = exchange(&mut s, &vote_request(9, 1, high, 9)).await;
    assert_eq!(answer[..3], [VERSION, 1, 0], "a Vote answer: {answer:?}");
    let answer = exchange(&mut s, &append_request(9, 1, high, 9)).await;
    assert_eq!(answer[..3], [VERSION, 0, 0], "an AppendEntries answer: {answer:?}");
    let started = std::time::Instant::now();
    while cluster.node(1).metrics().term < high {
        assert!(started.elapsed() < common::WAIT, "the addressed AppendEntries was not acted on");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Still serving.
    let (index, _) = write(cluster.node(1), set("b", "2")).await;
    assert!(index > before.last_log_index.unwrap());
    cluster.shutdown().await;
}
