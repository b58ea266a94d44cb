//! Tags, user broadcasts and counters across a running cluster.

mod common;

use bytes::Bytes;
use common::{config, init_tracing, shutdown_all, wait_for_event, CONVERGE};
use gossip_core::{Event, NodeError, Tags};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_changes_reach_every_member() {
    init_tracing();
    let nodes = common::cluster(3, |i| config(&format!("tags-{i}"))).await;
    let mut streams: Vec<_> = nodes.iter().map(|node| node.events()).collect();

    let tags = Tags::from_pairs([("role", "db"), ("dc", "eu-1")]).unwrap();
    nodes[2].set_tags(tags.clone()).await.unwrap();
    assert_eq!(nodes[2].local_member().tags, tags);

    for (node, events) in nodes.iter().zip(&mut streams).take(2) {
        wait_for_event(
            "tags update",
            events,
            CONVERGE,
            |e| matches!(e, Event::MemberUpdated(m) if m.name == "tags-2" && m.tags.get("role") == Some("db")),
        )
        .await;
        assert_eq!(common::member(node, "tags-2").unwrap().tags, tags);
    }
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_broadcasts_reach_every_member() {
    init_tracing();
    let nodes = common::cluster(3, |i| config(&format!("user-{i}"))).await;
    let mut streams: Vec<_> = nodes.iter().map(|node| node.events()).collect();

    nodes[0].broadcast_user(Some("greeting"), Bytes::from_static(b"hello")).await.unwrap();
    for events in streams.iter_mut().skip(1) {
        wait_for_event("user payload", events, CONVERGE, |e| matches!(e, Event::User(p) if p == "hello")).await;
    }

    let too_large = Bytes::from(vec![0u8; 1000]);
    let err = nodes[0].broadcast_user(None, too_large).await.unwrap_err();
    assert!(matches!(err, NodeError::PayloadTooLarge { len: 1000, limit } if limit < 700), "{err:?}");
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_traffic() {
    init_tracing();
    let nodes = common::cluster(2, |i| config(&format!("stats-{i}"))).await;
    let joiner = nodes[1].stats().await.unwrap();
    assert!(joiner.driver.stream_requests >= 1, "{joiner:?}");
    let seed = nodes[0].stats().await.unwrap();
    assert!(seed.driver.inbound_streams >= 1, "{seed:?}");
    // Probes go out every second in the local preset.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let seed = nodes[0].stats().await.unwrap();
    assert!(seed.swim.packets_sent > 0 && seed.swim.packets_received > 0, "{seed:?}");
    assert_eq!(seed.driver.udp_send_errors, 0);
    shutdown_all(nodes).await;
}
