//! Log compaction and snapshot install: a server whose data dir is wiped and that is added again
//! can only catch up from a snapshot, because the leader purged the log.

mod common;

use common::{set, write, Cluster};

fn compact_often(c: &mut consensus::Config) {
    c.snapshot_threshold = 10;
    c.trailing_logs = 0;
    c.snapshot_chunk_size = 64; // several chunks per snapshot
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_server_gets_a_snapshot() {
    let mut cluster = Cluster::bootstrap(3, compact_often).await;
    let (leader, _) = cluster.wait_leader().await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();

    cluster.stop(victim).await;
    std::fs::remove_dir_all(&cluster.dirs[victim as usize - 1]).unwrap();
    cluster.node(leader).remove_peer(victim).await.unwrap();
    let voters = cluster.node(leader).metrics().peers;
    assert!(voters.iter().all(|p| p.id != victim), "{voters:?}");

    let mut last = 0;
    for i in 0..40 {
        last = write(cluster.node(leader), set(&format!("k{i}"), &"v".repeat(20))).await.0;
    }
    cluster.wait_applied(last).await;
    // Compaction happened: the leader's log no longer starts at 1.
    let m = cluster.node(leader).metrics();
    eprintln!(
        "leader: snapshot at {:?}, purged up to {:?}, {} built",
        m.snapshot_index, m.purged_index, m.snapshots_built
    );
    assert!(m.purged_index.is_some_and(|p| p >= 10), "{m:?}");
    assert!(m.snapshots_built >= 1);

    // The wiped server comes back empty on its old address and is added as a voter again,
    // through a follower (the request is forwarded to the leader).
    cluster.restart(victim).await;
    assert_eq!(cluster.node(victim).metrics().applied_index, None);
    let via = (1..=3).find(|id| *id != leader && *id != victim).unwrap();
    cluster.node(via).add_voter(victim, cluster.addrs[victim as usize - 1]).await.unwrap();
    let (index, _) = write(cluster.node(leader), set("after", "x")).await;
    cluster.wait_applied(index).await;

    let m = cluster.node(victim).metrics();
    assert!(m.snapshots_installed >= 1, "no snapshot installed: {m:?}");
    assert!(m.peers.iter().any(|p| p.id == victim && p.voter), "{m:?}");
    let states = cluster.states();
    assert!(states.iter().all(|s| *s == states[0]), "servers differ: {states:#?}");
    assert_eq!(states[0].map.len(), 41);
    cluster.shutdown().await;
}
