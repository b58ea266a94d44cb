//! Helpers shared by the integration tests: real nodes on 127.0.0.1, ports chosen by the OS, and
//! bounded waits.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_core::{Event, EventStream, Member, Node, NodeConfig, SerfEvent, SerfEventStream, State};

pub(crate) mod serf;

/// Generous bound on every wait for the cluster to converge (the local preset converges in a few
/// seconds; CI machines are slow and shared).
pub(crate) const CONVERGE: Duration = Duration::from_secs(20);

/// Bound for news that gossip alone may fail to deliver to every node and that push-pull
/// anti-entropy (every 15 s in the local preset) then brings: two rounds and some slack.
pub(crate) const ANTI_ENTROPY: Duration = Duration::from_secs(40);

/// The local preset (loopback, port 0) with a name.
pub(crate) fn config(name: &str) -> NodeConfig {
    NodeConfig { name: name.to_owned(), ..NodeConfig::local() }
}

/// Start `count` nodes configured by `make(i)`, join each through every node started before it,
/// and wait until every node sees all of them alive.
///
/// Joining through all earlier nodes (as `serf agent -join a -join b ...` does) makes formation
/// deterministic: every earlier node takes part in a push-pull exchange with the newcomer. Joining
/// through one seed, where the others learn of the newcomer by gossip, is tested on its own in
/// `t10_join.rs`.
pub(crate) async fn cluster(count: usize, make: impl Fn(usize) -> NodeConfig) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::with_capacity(count);
    for i in 0..count {
        let node = Node::start(make(i)).await.expect("start");
        let seeds: Vec<SocketAddr> = nodes.iter().map(|node| node.advertise_addr()).collect();
        if !seeds.is_empty() {
            assert_eq!(node.join(&seeds).await.expect("join"), seeds.len());
        }
        nodes.push(node);
    }
    wait_until("every node sees every node alive", CONVERGE, || nodes.iter().all(|node| alive_count(node) == count))
        .await;
    nodes
}

/// Members of `node` in state Alive.
pub(crate) fn alive_count(node: &Node) -> usize {
    node.members().iter().filter(|member| member.state == State::Alive).count()
}

/// The member named `name` as `node` sees it.
pub(crate) fn member(node: &Node, name: &str) -> Option<Member> {
    node.members().into_iter().find(|member| member.name == name)
}

/// Poll `done` every 50 ms until it holds; panic naming `what` after `bound`.
pub(crate) async fn wait_until(what: &str, bound: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + bound;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {bound:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An event stream the waits read: the node's and the serf layer's.
pub(crate) trait Events {
    type Event: std::fmt::Debug;
    fn next_event(&mut self) -> impl Future<Output = Option<Self::Event>>;
}

impl Events for EventStream {
    type Event = Event;
    fn next_event(&mut self) -> impl Future<Output = Option<Event>> {
        self.recv()
    }
}

impl Events for SerfEventStream {
    type Event = SerfEvent;
    fn next_event(&mut self) -> impl Future<Output = Option<SerfEvent>> {
        self.recv()
    }
}

/// Read `events` until one matches; panic naming `what` after `bound` or if the stream ends.
/// Returns the matching event and every event read before it.
pub(crate) async fn wait_for_event<S: Events>(
    what: &str,
    events: &mut S,
    bound: Duration,
    mut matches: impl FnMut(&S::Event) -> bool,
) -> (S::Event, Vec<S::Event>) {
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, events.next_event()).await {
            Ok(Some(event)) if matches(&event) => return (event, before),
            Ok(Some(event)) => before.push(event),
            Ok(None) => panic!("event stream ended while waiting for {what}; saw {before:?}"),
            Err(_) => panic!("timed out after {bound:?} waiting for {what}; saw {before:?}"),
        }
    }
}

/// Shut every node down, concurrently.
pub(crate) async fn shutdown_all(nodes: Vec<Node>) {
    join_all(nodes.into_iter().map(Node::shutdown)).await;
}

/// Await every future (spawned, so that they run concurrently); panics propagate.
pub(crate) async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("task panicked"));
    }
    outputs
}

/// A loopback address where nothing listens (bound, then released).
pub(crate) fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// Log to the test output when `RUST_LOG` is set.
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
