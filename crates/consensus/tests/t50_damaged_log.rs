//! A truncated or corrupted log: start refuses with an error naming the file, never panics, and
//! never comes up without entries it had acknowledged.

mod common;

use std::path::Path;

use common::{set, write, Cluster, Kv};
use consensus::{Consensus, StartError, StoreError};

/// A single-server cluster with some acknowledged writes, stopped; answers its data dir.
async fn stopped_server_with_writes() -> (Cluster, u64) {
    let mut cluster = Cluster::bootstrap(1, |c| c.snapshot_threshold = 1000).await;
    cluster.wait_leader().await;
    let mut last = 0;
    for i in 0..30 {
        last = write(cluster.node(1), set(&format!("k{i}"), &"v".repeat(100))).await.0;
    }
    cluster.stop(1).await;
    (cluster, last)
}

fn start_config(dir: &Path) -> consensus::Config {
    consensus::Config::local(1, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_log_is_refused() {
    let (cluster, _) = stopped_server_with_writes().await;
    let file = cluster.dirs[0].join("raft.redb");
    let len = std::fs::metadata(&file).unwrap().len();
    for keep in [len / 2, len / 4, 100, 0] {
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..keep as usize]).unwrap();
        let err = match Consensus::start(start_config(&cluster.dirs[0]), Kv::default()).await {
            Ok(node) => {
                // redb may accept a file cut to nothing as a new database; it must then not
                // claim the old entries, and must not be a silent success with a log that
                // lost acknowledged entries while keeping the vote.
                let m = node.metrics();
                node.shutdown().await;
                assert!(keep == 0 && m.last_log_index.is_none(), "{keep}: started with {m:?}");
                continue;
            }
            Err(e) => e,
        };
        eprintln!("truncated to {keep} of {len} bytes: {err}");
        assert!(
            matches!(
                err,
                StartError::Store(StoreError::Open { .. } | StoreError::Corrupt { .. })
                    | StartError::StorePanicked { .. }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("raft.redb") || err.to_string().contains("data dir"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_bytes_are_refused_or_harmless() {
    let (cluster, last) = stopped_server_with_writes().await;
    let file = cluster.dirs[0].join("raft.redb");
    let pristine = std::fs::read(&file).unwrap();
    let (mut refused, mut started) = (0, 0);
    // Flip a byte at offsets spread over the file; each case starts from the pristine file.
    let step = (pristine.len() / 24).max(1);
    for offset in (0..pristine.len()).step_by(step) {
        let mut bytes = pristine.clone();
        bytes[offset] ^= 0x5a;
        std::fs::write(&file, &bytes).unwrap();
        match Consensus::start(start_config(&cluster.dirs[0]), Kv::default()).await {
            Err(e) => {
                refused += 1;
                eprintln!("byte {offset} flipped: refused: {e}");
            }
            Ok(node) => {
                // It started: every acknowledged entry must be there and apply.
                started += 1;
                let m = node.metrics();
                let ok = m.last_log_index.is_some_and(|l| l >= last);
                node.shutdown().await;
                assert!(ok, "byte {offset} flipped: started without entry {last}: {m:?}");
            }
        }
    }
    eprintln!("{refused} refused, {started} started intact");
    std::fs::write(&file, &pristine).unwrap();
    let node = Consensus::start(start_config(&cluster.dirs[0]), Kv::default()).await.unwrap();
    node.shutdown().await;
}
