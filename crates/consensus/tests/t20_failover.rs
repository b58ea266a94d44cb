//! The leader stops: a new one is elected and takes writes; the old one restarts from its data
//! dir and catches up.

mod common;

use std::time::{Duration, Instant};

use common::{set, write, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_leader_after_shutdown_and_the_old_one_catches_up() {
    let mut cluster = Cluster::bootstrap(3, |_| {}).await;
    let (old, _) = cluster.wait_leader().await;
    for i in 0..10 {
        write(cluster.node(old), set(&format!("before{i}"), "x")).await;
    }

    let stopped_at = Instant::now();
    cluster.stop(old).await;
    let (new, _) = cluster.wait_leader().await;
    let elected = stopped_at.elapsed();
    assert_ne!(new, old);
    let (index, _) = write(cluster.node(new), set("after", "y")).await;
    let first_write = stopped_at.elapsed();
    eprintln!("leader {old} stopped: {new} elected after {elected:?}, first write after {first_write:?}");
    assert!(first_write < Duration::from_secs(10));
    let other = (1..=3).find(|id| *id != old && *id != new).unwrap();
    write(cluster.node(other), set("after2", "z")).await;

    cluster.restart(old).await;
    let (index2, _) = write(cluster.node(new), set("after3", "w")).await;
    assert!(index2 > index);
    cluster.wait_applied(index2).await;
    let states = cluster.states();
    assert!(states.iter().all(|s| *s == states[0]), "servers differ: {states:#?}");
    assert_eq!(cluster.node(old).with_state(|kv| kv.map.len()), 13);
    cluster.shutdown().await;
}
