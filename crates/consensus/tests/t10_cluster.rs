//! Three servers on loopback: bootstrap, election, writes through the leader and a follower,
//! the same sequence applied everywhere, linearizable reads on a follower.

mod common;

use std::time::Instant;

use common::{set, write, Cluster};
use consensus::{MembershipError, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_elect_and_apply_the_same_sequence() {
    let mut cluster = Cluster::bootstrap(3, |_| {}).await;
    let (leader, elected_in) = cluster.wait_leader().await;
    eprintln!("leader {leader} elected in {elected_in:?}");
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    assert_eq!(cluster.node(follower).metrics().role, Role::Follower);
    assert_eq!(cluster.node(follower).leader(), Some((leader, cluster.addrs[leader as usize - 1])));

    // Bootstrapping twice is refused, without harm.
    let again = cluster.node(leader).initialize([(1, cluster.addrs[0])]).await;
    assert!(matches!(again, Err(MembershipError::AlreadyInitialized { .. })), "{again:?}");

    let started = Instant::now();
    let mut last = 0;
    for i in 0..20 {
        let (index, previous) = write(cluster.node(leader), set(&format!("k{i}"), "leader")).await;
        assert!(previous.is_none());
        assert!(index > last);
        last = index;
    }
    let per_write = started.elapsed() / 20;
    let started = Instant::now();
    for i in 0..20 {
        let (index, previous) = write(cluster.node(follower), set(&format!("k{i}"), "follower")).await;
        assert_eq!(previous.as_deref(), Some("leader"), "the follower forwarded and got the answer");
        assert!(index > last);
        last = index;
    }
    let per_forwarded = started.elapsed() / 20;
    eprintln!("write latency: {per_write:?} through the leader, {per_forwarded:?} forwarded");

    // A linearizable read on a follower sees the last write.
    let read_index = cluster.node(follower).linearizable_barrier().await.unwrap();
    assert!(read_index >= last);
    let value = cluster.node(follower).with_state(|kv| kv.map.get("k19").cloned());
    assert_eq!(value.as_deref(), Some("follower"));

    cluster.wait_applied(last).await;
    let states = cluster.states();
    assert_eq!(states[0].applied.len(), 40);
    assert!(states.iter().all(|s| *s == states[0]), "servers differ: {states:#?}");

    let metrics = cluster.node(leader).metrics();
    assert_eq!(metrics.term, cluster.node(follower).metrics().term);
    assert_eq!(metrics.peers.iter().filter(|p| p.voter).count(), 3);
    assert!(metrics.last_contact.is_some());
    assert!(cluster.node(follower).metrics().last_contact.unwrap() < common::WAIT);
    cluster.shutdown().await;
}
