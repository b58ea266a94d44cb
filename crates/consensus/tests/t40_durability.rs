//! Acknowledged writes survive a restart of every server.

mod common;

use common::{set, write, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_full_restart() {
    // Compaction on, so that the restart goes through a snapshot and a log after it.
    let mut cluster = Cluster::bootstrap(3, |c| {
        c.snapshot_threshold = 16;
        c.trailing_logs = 4;
    })
    .await;
    let (leader, _) = cluster.wait_leader().await;
    let mut last = 0;
    for i in 0..50 {
        last = write(cluster.node(leader), set(&format!("k{i}"), &i.to_string())).await.0;
    }
    cluster.wait_applied(last).await;
    let before = cluster.states();
    let snapshot_before = cluster.node(leader).metrics().snapshot_index;
    assert!(snapshot_before.is_some());

    cluster.shutdown().await;
    for id in 1..=3 {
        cluster.restart(id).await;
    }
    let (leader, _) = cluster.wait_leader().await;
    // The new leader's first entry commits everything before it.
    let (index, _) = write(cluster.node(leader), set("after", "restart")).await;
    assert!(index > last);
    cluster.wait_applied(index).await;
    for (after, before) in cluster.states().iter().zip(&before) {
        let mut after = after.clone();
        after.map.remove("after");
        after.applied.pop();
        assert_eq!(&after, before);
    }
    cluster.shutdown().await;
}
