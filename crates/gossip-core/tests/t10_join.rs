//! Forming a cluster: joins, join errors, start errors.

mod common;

use std::time::Duration;

use common::{config, init_tracing, shutdown_all, wait_for_event, CONVERGE};
use gossip_core::{Event, JoinError, Node, NodeConfig, StartError, State};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_join_and_see_each_other() {
    init_tracing();
    let nodes = common::cluster(5, |i| config(&format!("join-{i}"))).await;
    for node in &nodes {
        let members = node.members();
        assert_eq!(members.len(), 5, "{members:?}");
        assert!(members.iter().all(|m| m.state == State::Alive), "{members:?}");
        let names: Vec<_> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["join-0", "join-1", "join-2", "join-3", "join-4"]);
        assert_eq!(node.local_member().addr, node.local_addr());
    }
    shutdown_all(nodes).await;
}

/// Start five nodes and join each through the first one only: the others learn of each newcomer
/// from the seed's gossip (or, failing that, from push-pull anti-entropy).
async fn join_through_one_seed(prefix: &str, make: impl Fn(String) -> NodeConfig, bound: Duration) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 0..5 {
        nodes.push(Node::start(make(format!("{prefix}-{i}"))).await.unwrap());
    }
    let seed = nodes[0].advertise_addr();
    for node in &nodes[1..] {
        assert_eq!(node.join(&[seed]).await, Ok(1));
    }
    let started = tokio::time::Instant::now();
    common::wait_until("every node sees every node alive", bound, || {
        nodes.iter().all(|node| common::alive_count(node) == 5)
    })
    .await;
    eprintln!("{prefix}: converged {:?} after the last join", started.elapsed());
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_join_through_one_seed() {
    init_tracing();
    let nodes = join_through_one_seed("seeded", |name| config(&name), common::ANTI_ENTROPY).await;
    shutdown_all(nodes).await;
}

/// Without push-pull, joins must spread by gossip alone, within a few gossip rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_spread_by_gossip_alone() {
    init_tracing();
    let no_push_pull = |name: String| {
        let mut config = config(&name);
        config.swim.push_pull_interval = Duration::ZERO;
        config
    };
    let nodes = join_through_one_seed("gossiped", no_push_pull, Duration::from_secs(5)).await;
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_is_reported_as_events_on_both_sides() {
    init_tracing();
    let a = Node::start(config("events-a")).await.unwrap();
    let b = Node::start(config("events-b")).await.unwrap();
    let mut a_events = a.events();
    let mut b_events = b.events();

    assert_eq!(b.join(&[a.advertise_addr(), a.advertise_addr()]).await, Ok(1), "duplicates count once");
    // The joiner knows the seed's members as soon as join returns.
    assert!(b.members().iter().any(|m| m.name == "events-a" && m.state == State::Alive));

    let joined = |name: &'static str| move |e: &Event| matches!(e, Event::MemberJoined(m) if m.name == name);
    wait_for_event("a sees b join", &mut a_events, CONVERGE, joined("events-b")).await;
    wait_for_event("b sees a join", &mut b_events, CONVERGE, joined("events-a")).await;

    shutdown_all(vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_fails_naming_unreachable_seeds_after_every_attempt() {
    init_tracing();
    let node = Node::start(NodeConfig {
        join_attempts: 2,
        join_retry_interval: Duration::from_millis(100),
        stream_timeout: Duration::from_secs(2),
        ..config("lonely")
    })
    .await
    .unwrap();
    let nobody = common::unused_addr();

    let err = node.join(&[nobody]).await.unwrap_err();
    let JoinError::Unreachable { seeds, attempts, reasons } = &err else { panic!("unexpected error {err:?}") };
    assert_eq!(seeds, &[nobody]);
    assert_eq!(*attempts, 2);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0].0, nobody);
    assert!(err.to_string().contains(&nobody.to_string()), "{err}");

    assert_eq!(node.join(&[]).await, Err(JoinError::NoSeeds));
    assert_eq!(node.members().len(), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_retries_until_a_seed_comes_up() {
    init_tracing();
    let joiner = Node::start(NodeConfig {
        join_attempts: 20,
        join_retry_interval: Duration::from_millis(200),
        ..config("patient")
    })
    .await
    .unwrap();
    let seed_addr = common::unused_addr();
    let handle = joiner.handle();
    let join = tokio::spawn(async move { handle.join(&[seed_addr]).await });

    tokio::time::sleep(Duration::from_millis(700)).await;
    let seed = Node::start(NodeConfig { bind_addr: seed_addr, ..config("late-seed") }).await.unwrap();

    assert_eq!(join.await.unwrap(), Ok(1));
    common::wait_until("the seed sees the joiner", CONVERGE, || common::alive_count(&seed) == 2).await;
    shutdown_all(vec![joiner, seed]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_errors_name_the_problem() {
    init_tracing();
    let first = Node::start(config("first")).await.unwrap();
    let taken = first.local_addr();

    let err = Node::start(NodeConfig { bind_addr: taken, ..config("second") }).await.unwrap_err();
    assert!(matches!(err, StartError::Bind { addr, .. } if addr == taken), "{err:?}");
    assert!(err.to_string().contains(&taken.to_string()), "{err}");

    let err = Node::start(NodeConfig { name: String::new(), ..NodeConfig::local() }).await.unwrap_err();
    assert!(matches!(err, StartError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("name"), "{err}");

    first.shutdown().await;
}

/// `member_changes` reports a join as soon as the member list has it, and ends with the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_changes_report_a_join() {
    init_tracing();
    let a = Node::start(config("changes-a")).await.unwrap();
    let b = Node::start(config("changes-b")).await.unwrap();
    let mut changes = a.member_changes();
    assert!(!changes.has_changed().unwrap(), "nothing changed since the call");
    assert_eq!(b.join(&[a.advertise_addr()]).await, Ok(1));
    tokio::time::timeout(CONVERGE, async {
        while a.members().len() < 2 {
            changes.changed().await.expect("the node runs");
        }
    })
    .await
    .expect("a change for the join");
    let handle = a.handle();
    shutdown_all(vec![a, b]).await;
    let mut changes = handle.member_changes();
    assert!(changes.changed().await.is_err(), "no more changes once the node stopped");
}
