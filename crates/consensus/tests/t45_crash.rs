//! Crash safety: a server killed with SIGKILL in the middle of a burst of writes restarts with
//! every write it acknowledged.
//!
//! The server runs in a child process (this test binary again, running `crash_child`), which
//! prints each acknowledged key; the parent kills it mid-burst and opens its data dir.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{set, write, Kv, WAIT};
use consensus::{Config, Consensus};

const DIR_VAR: &str = "CONSENSUS_CRASH_CHILD_DIR";

/// The child: one server that bootstraps itself and writes until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs as the child process of killed_mid_burst_keeps_acknowledged_writes"]
async fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let node = Consensus::start(Config::local(1, &dir), Kv::default()).await.unwrap();
    node.initialize([(1, node.local_addr())]).await.unwrap();
    for i in 0.. {
        write(&node, set(&format!("k{i}"), "v")).await;
        println!("ack k{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_burst_keeps_acknowledged_writes() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("s1");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    let started = Instant::now();
    while acked.len() < 200 {
        assert!(started.elapsed() < WAIT, "the child acknowledged only {}", acked.len());
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(key) = line.strip_prefix("ack ") {
                    acked.push(key.to_owned());
                }
            }
            _ => panic!("the child stopped after {} writes", acked.len()),
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-burst
    let _ = child.wait();
    // Acknowledgements printed before the kill but not yet read count too.
    for line in lines.map_while(Result::ok) {
        if let Some(key) = line.strip_prefix("ack ") {
            acked.push(key.to_owned());
        }
    }

    let node = Consensus::start(Config::local(1, &dir), Kv::default()).await.unwrap();
    let started = Instant::now();
    while node.leader().is_none() {
        assert!(started.elapsed() < WAIT, "no leader after restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.linearizable_barrier().await.unwrap();
    let missing: Vec<&String> = node.with_state(|kv| acked.iter().filter(|k| !kv.map.contains_key(*k)).collect());
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let applied = node.with_state(|kv| kv.map.len());
    eprintln!("{} writes acknowledged before SIGKILL, {applied} present after restart", acked.len());
    node.shutdown().await;
}
