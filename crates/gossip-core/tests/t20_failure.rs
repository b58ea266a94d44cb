//! Failure detection with real sockets: a node killed abruptly is declared failed by all others.

mod common;

use std::time::Instant;

use common::{config, init_tracing, shutdown_all, wait_for_event, CONVERGE};
use gossip_core::{Event, State};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_is_declared_failed_by_all_others() {
    init_tracing();
    let mut nodes = common::cluster(5, |i| config(&format!("fail-{i}"))).await;
    let mut streams: Vec<_> = nodes.iter().map(|node| node.events()).collect();

    let victim = nodes.pop().unwrap();
    streams.pop();
    let killed_at = Instant::now();
    victim.kill().await;

    for (node, events) in nodes.iter().zip(&mut streams) {
        let observer = node.local_member().name;
        let (event, before) = wait_for_event(
            &format!("{observer} sees fail-4 failed"),
            events,
            CONVERGE,
            |e| matches!(e, Event::MemberFailed(m) if m.name == "fail-4"),
        )
        .await;
        let Event::MemberFailed(failed) = event else { unreachable!() };
        assert_eq!(failed.state, State::Dead);
        assert!(
            !before.iter().any(|e| matches!(e, Event::MemberFailed(m) if m.name != "fail-4")),
            "{observer} declared a live node failed: {before:?}"
        );
        assert_eq!(common::member(node, "fail-4").map(|m| m.state), Some(State::Dead));
    }
    eprintln!("all 4 survivors declared fail-4 failed within {:?}", killed_at.elapsed());

    // The survivors still agree on each other.
    for node in &nodes {
        assert_eq!(common::alive_count(node), 4, "{:?}", node.members());
    }
    shutdown_all(nodes).await;
}
