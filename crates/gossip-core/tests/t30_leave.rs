//! Graceful leave, shutdown and kill: what the others see, what is left running.

mod common;

use std::time::Duration;

use common::{config, init_tracing, shutdown_all, wait_for_event, ANTI_ENTROPY};
use gossip_core::{Event, JoinError, Node, NodeError, State, Tags};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_leave_is_seen_as_left_by_all_others() {
    init_tracing();
    let mut nodes = common::cluster(5, |i| config(&format!("leave-{i}"))).await;
    let mut streams: Vec<_> = nodes.iter().map(|node| node.events()).collect();

    let leaver = nodes.pop().unwrap();
    streams.pop();
    leaver.leave().await.expect("leave confirmed");
    // Leaving again is a no-op that returns at once.
    let again = tokio::time::timeout(Duration::from_millis(500), leaver.leave()).await;
    assert_eq!(again.expect("second leave returned at once"), Ok(()));
    leaver.shutdown().await;

    for (node, events) in nodes.iter().zip(&mut streams) {
        let observer = node.local_member().name;
        // Gossip normally brings the leave within a few rounds; a node it misses learns it from
        // push-pull anti-entropy, possibly after declaring the silent node failed.
        let (_, before) = wait_for_event(
            &format!("{observer} sees leave-4 left"),
            events,
            ANTI_ENTROPY,
            |e| matches!(e, Event::MemberLeft(m) if m.name == "leave-4"),
        )
        .await;
        assert!(
            !before.iter().any(|e| matches!(e, Event::MemberFailed(m) if m.name != "leave-4")),
            "{observer} declared a live node failed: {before:?}"
        );
        if before.iter().any(|e| matches!(e, Event::MemberFailed(_))) {
            eprintln!("note: {observer} declared leave-4 failed before it learned of the leave");
        }
        assert_eq!(common::member(node, "leave-4").map(|m| m.state), Some(State::Left));
    }
    shutdown_all(nodes).await;
}

/// Tasks alive on this runtime (the test body itself is not one).
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_every_task_and_frees_the_port() {
    init_tracing();
    let baseline = alive_tasks();
    let nodes = common::cluster(3, |i| config(&format!("stop-{i}"))).await;
    assert!(alive_tasks() > baseline);

    let mut nodes = nodes.into_iter();
    let node = nodes.next().unwrap();
    let others: Vec<Node> = nodes.collect();
    let addr = node.local_addr();
    let handle = node.handle();
    let mut events = node.events();

    node.shutdown().await;

    // Operations on a stopped node fail cleanly; its event streams end.
    assert_eq!(handle.join(&[others[0].advertise_addr()]).await, Err(JoinError::Stopped));
    assert_eq!(handle.set_tags(Tags::default()).await, Err(NodeError::Stopped));
    assert_eq!(handle.leave().await, Err(NodeError::Stopped));
    assert!(handle.stats().await.is_err());
    let drained = tokio::time::timeout(Duration::from_secs(1), async { while events.recv().await.is_some() {} }).await;
    assert!(drained.is_ok(), "event stream did not end");
    assert_eq!(handle.events().recv().await, None);

    // Both sockets are closed: the same port can be bound again at once.
    let (udp, tcp) = gossip_transport::net::bind(addr).await.expect("rebind the stopped node's port");
    drop((udp, tcp));

    shutdown_all(others).await;
    // Nothing left behind: every task the nodes spawned has ended.
    common::wait_until("every task has ended", Duration::from_secs(2), || alive_tasks() == baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_stops_every_task_and_frees_the_port() {
    init_tracing();
    let baseline = alive_tasks();
    let node = Node::start(config("victim")).await.unwrap();
    let addr = node.local_addr();
    node.kill().await;
    common::wait_until("every task has ended", Duration::from_secs(2), || alive_tasks() == baseline).await;
    let (udp, tcp) = gossip_transport::net::bind(addr).await.expect("rebind the killed node's port");
    drop((udp, tcp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_node_stops_its_tasks() {
    init_tracing();
    let baseline = alive_tasks();
    let node = Node::start(config("dropped")).await.unwrap();
    let handle = node.handle();
    drop(node);
    common::wait_until("every task has ended", Duration::from_secs(2), || alive_tasks() == baseline).await;
    assert_eq!(handle.leave().await, Err(NodeError::Stopped));
}
