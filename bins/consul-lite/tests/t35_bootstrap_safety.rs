//! Bootstrap safety, as Consul's `maybeBootstrap` has it: a server expecting N asks the
//! servers it sees for their Raft state before bootstrapping, and never starts a second
//! cluster beside an existing one.
//!
//! The cluster of three (b1, b2, b3) loses all its servers; a follower comes back alone (Raft
//! state, no quorum, so no leader that could add anyone; a restarted *leader* would claim
//! its committed term again at once, as openraft does, and add the new servers itself), and
//! two new servers a0 and c0 start with `-bootstrap-expect 3`. They see three live servers all
//! expecting 3, and a0 (the lowest name) would bootstrap a new cluster with the follower and
//! c0, in which a0 and c0 alone could elect a leader: a second cluster. a0 asks the follower,
//! finds a log, and gives up bootstrapping; once the other two return, the old cluster's
//! leader adds a0 and c0 as voters, with the old data.

mod common;
#[path = "common/servers.rs"]
mod servers;

use std::time::{Duration, Instant};

use servers::{agreed_leader, eventually, Server, WAIT};

#[test]
fn new_servers_expecting_three_beside_a_server_with_raft_state_never_bootstrap_another_cluster() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = servers::cluster("b", 3, root.path());
    let leader = eventually(WAIT, "a leader", || agreed_leader(&cluster));
    let r = cluster[leader].call("PUT", "/v1/kv/before", b"1", Duration::from_secs(10)).unwrap();
    assert_eq!(r.status, 200);
    for server in &mut cluster {
        server.kill();
    }
    // A follower alone: a log, no quorum, no leader.
    let alone = (leader + 1) % 3;
    cluster[alone].join = cluster[alone].serf;
    cluster[alone].spawn();
    let seed = cluster[alone].serf;
    let a0 = Server::start_logging("a0", root.path(), Some(seed), Some(3), "info");
    let c0 = Server::start_logging("c0", root.path(), Some(seed), Some(3), "info");
    let started = Instant::now();
    let decided = loop {
        let log = a0.log_text();
        if log.contains("already has Raft state") {
            break "found Raft state on the follower and did not bootstrap";
        } else if log.contains("bootstrapped the Raft cluster") {
            break "bootstrapped";
        }
        assert!(started.elapsed() < Duration::from_secs(15), "a0 did not decide within 15 s: {log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("a0 {decided} ({:?} after its start)", started.elapsed());
    assert_ne!(decided, "bootstrapped", "{}", a0.log_text());
    // No cluster among the new ones: nobody knows a leader.
    std::thread::sleep(Duration::from_secs(3));
    for server in [&a0, &c0, &cluster[alone]] {
        assert_eq!(server.leader(), "", "{} knows a leader: {}", server.name, server.log_text());
    }

    // The other two return: the old cluster has its quorum and adds a0 and c0.
    for other in (0..3).filter(|i| *i != alone) {
        cluster[other].join = seed;
        cluster[other].spawn();
    }
    cluster.push(a0);
    cluster.push(c0);
    eventually(WAIT, "five voters", || {
        let leader = agreed_leader(&cluster)?;
        let configuration = cluster[leader].configuration();
        (configuration.len() == 5 && configuration.iter().all(|(_, voter)| *voter)).then_some(())
    });
    for server in &cluster {
        eventually(WAIT, "the old data everywhere", || {
            (server.stale_value("before").as_deref() == Some("1")).then_some(())
        });
        if server.name.starts_with(['a', 'c']) {
            assert!(!server.log_text().contains("bootstrapped the Raft cluster"), "{}", server.name);
        }
    }
    for server in &mut cluster {
        server.kill();
    }
}
