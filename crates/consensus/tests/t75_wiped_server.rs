//! A server whose data dir is wiped comes back at the same address under a NEW id before the
//! leader removed its old id. The leader keeps replicating to the old id at that address; the new
//! server must refuse those requests (they are not for it), so the leader backs off instead of
//! taking the new server's empty log as the old follower's (openraft's log-reversion assertion
//! panicked a debug-build leader). The cluster keeps taking writes; once the old id is removed
//! and the new one added, the new server catches up from a snapshot.

mod common;

use std::time::{Duration, Instant};

use common::{set, write, Cluster, WAIT};
use consensus::{Consensus, NodeId, Role};

fn compact_often(c: &mut consensus::Config) {
    c.snapshot_threshold = 10;
    c.trailing_logs = 0;
    c.snapshot_chunk_size = 64; // several chunks per snapshot
}

/// Starts a server with `id` on `addr` from an empty `dir`, retrying while the port is busy.
async fn start_at(id: NodeId, dir: &std::path::Path, addr: std::net::SocketAddr) -> Consensus<common::Kv> {
    let mut c = common::config(id, dir);
    compact_often(&mut c);
    c.bind_addr = addr;
    let started = Instant::now();
    loop {
        match Consensus::start(c.clone(), common::Kv::default()).await {
            Ok(node) => return node,
            Err(consensus::StartError::Bind { .. }) if started.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("start of {id}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_server_back_under_a_new_id_at_the_same_address() {
    let mut cluster = Cluster::bootstrap(3, compact_often).await;
    let (leader, _) = cluster.wait_leader().await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != victim).unwrap();
    let mut last = 0;
    for i in 0..15 {
        last = write(cluster.node(leader), set(&format!("a{i}"), "v")).await.0;
    }
    cluster.wait_applied(last).await;

    // The victim goes away, its data dir is wiped, and a new server (id 4) starts on the same
    // address. The leader still has the victim's id in the configuration.
    let addr = cluster.addrs[victim as usize - 1];
    cluster.stop(victim).await;
    let dir = cluster.dirs[victim as usize - 1].clone();
    std::fs::remove_dir_all(&dir).unwrap();
    let new_id: NodeId = 4;
    let fresh = start_at(new_id, &dir, addr).await;
    cluster.dirs.push(dir);
    cluster.addrs.push(addr);
    cluster.nodes.push(Some(fresh));
    assert!(cluster.node(leader).metrics().peers.iter().any(|p| p.id == victim));

    // The cluster keeps taking writes (two of three voters), over several heartbeats and
    // compactions, while the leader keeps trying the victim's id at the new server's address.
    for i in 0..40 {
        last = write(cluster.node(leader), set(&format!("b{i}"), &"v".repeat(20))).await.0;
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = cluster.node(leader).metrics();
    assert_eq!(m.role, Role::Leader, "{m:?}");
    assert!(m.purged_index.is_some_and(|p| p >= 10), "no compaction: {m:?}");
    // The new server took nothing meant for the victim.
    let n = cluster.node(new_id).metrics();
    assert_eq!((n.applied_index, n.last_log_index, n.snapshots_installed), (None, None, 0), "{n:?}");
    assert_eq!(n.term, 0, "the new server took the victim's vote: {n:?}");

    // Tidy up: remove the old id, add the new one at the same address (through a follower).
    cluster.node(leader).remove_peer(victim).await.unwrap();
    cluster.node(other).add_voter(new_id, addr).await.unwrap();
    let (index, _) = write(cluster.node(leader), set("after", "x")).await;
    last = last.max(index);
    cluster.wait_applied(last).await;

    let n = cluster.node(new_id).metrics();
    assert!(n.snapshots_installed >= 1, "the new server did not catch up from a snapshot: {n:?}");
    let m = cluster.node(leader).metrics();
    assert_eq!(m.role, Role::Leader, "{m:?}");
    let voters: Vec<NodeId> = m.peers.iter().filter(|p| p.voter).map(|p| p.id).collect();
    let mut expected = vec![leader, other, new_id];
    expected.sort_unstable();
    assert_eq!(voters, expected);
    let states = cluster.states();
    assert_eq!(states.len(), 3);
    assert!(states.iter().all(|s| *s == states[0]), "servers differ: {states:#?}");
    assert_eq!(states[0].map.len(), 15 + 40 + 1);
    cluster.shutdown().await;
}
