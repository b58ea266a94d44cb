//! Queries: filters by node name and tag, acks and responses back to the originator, relays,
//! internal queries, the checks on sizes, deadlines and double answers.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::serf::{serf_cluster, serf_config, shutdown_serfs};
use common::{init_tracing, CONVERGE};
use gossip_core::{QueryParams, QueryReply, QueryResponse, Serf, SerfConfig, SerfError, SerfEvent, Tags};
use tokio::task::JoinHandle;

/// The local preset with the LAN preset's gossip budget: a query is gossiped like any broadcast,
/// `retransmit_mult × ceil(log10(n + 1))` times by each node that sees it. The local preset's 2
/// (memberlist's `DefaultLocalConfig`, as Serf would use it) leaves a 4-node cluster a few percent
/// chance per query that one node never hears it; the LAN preset's 4 (Serf's default) makes that
/// negligible, and these tests are about queries, not about the gossip budget.
fn query_config(name: &str) -> SerfConfig {
    let mut config = serf_config(name);
    config.node.swim.retransmit_mult = 4;
    config
}

/// Answers every query named "whoami" with the node's name; records every query delivered.
fn responder(serf: &Serf, seen: Arc<Mutex<Vec<(String, String)>>>) -> JoinHandle<()> {
    let mut events = serf.events();
    let name = serf.local_member().name;
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let SerfEvent::Query(query) = event {
                seen.lock().unwrap().push((name.to_string(), query.name.clone()));
                if query.name == "whoami" {
                    query.respond(Bytes::from(name.to_string())).await.unwrap();
                }
            }
        }
    })
}

/// Every reply until the deadline: acks and responses by node.
async fn collect(mut response: QueryResponse) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut acks = BTreeSet::new();
    let mut responses = BTreeMap::new();
    while let Some(reply) = response.next().await {
        match reply {
            QueryReply::Ack { from } => assert!(acks.insert(from), "duplicate ack"),
            QueryReply::Response { from, payload } => {
                let previous = responses.insert(from, String::from_utf8_lossy(&payload).into_owned());
                assert!(previous.is_none(), "duplicate response");
            }
        }
    }
    (acks, responses)
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

fn tagged(i: usize) -> SerfConfig {
    let mut config = query_config(&format!("q-{i}"));
    let role = match i {
        1 | 2 => Some("web"),
        3 => Some("db"),
        _ => None,
    };
    if let Some(role) = role {
        config.node.tags = Tags::from_pairs([("role", role), ("dc", "eu-1")]).unwrap();
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_reach_only_matching_nodes_and_answers_come_back() {
    init_tracing();
    let serfs = serf_cluster(4, tagged).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = serfs.iter().map(|serf| responder(serf, Arc::clone(&seen))).collect();
    let timeout = Some(Duration::from_secs(2));

    // Every node, the originator included.
    let params = QueryParams { request_ack: true, timeout, ..Default::default() };
    let (acks, responses) = collect(serfs[0].query("whoami", Bytes::new(), params).await.unwrap()).await;
    assert_eq!(acks, names(&["q-0", "q-1", "q-2", "q-3"]));
    assert_eq!(responses.keys().cloned().collect::<BTreeSet<_>>(), acks);
    assert!(responses.iter().all(|(from, payload)| from == payload), "{responses:?}");

    // By tag (a regexp searched in the value, as Serf), all filters must match.
    let params = QueryParams {
        filter_tags: vec![("role".into(), "^web$".into()), ("dc".into(), "eu".into())],
        request_ack: true,
        timeout,
        ..Default::default()
    };
    seen.lock().unwrap().clear();
    let (acks, responses) = collect(serfs[3].query("whoami", Bytes::new(), params).await.unwrap()).await;
    assert_eq!(acks, names(&["q-1", "q-2"]));
    assert_eq!(responses.keys().cloned().collect::<BTreeSet<_>>(), names(&["q-1", "q-2"]));
    let delivered: BTreeSet<String> = seen.lock().unwrap().iter().map(|(node, _)| node.clone()).collect();
    assert_eq!(delivered, names(&["q-1", "q-2"]), "only matching nodes deliver the query");

    // By name.
    let params = QueryParams { filter_nodes: vec!["q-3".into(), "q-0".into()], timeout, ..Default::default() };
    seen.lock().unwrap().clear();
    let (acks, responses) = collect(serfs[1].query("whoami", Bytes::new(), params).await.unwrap()).await;
    assert!(acks.is_empty(), "no acks unless asked: {acks:?}");
    assert_eq!(responses.keys().cloned().collect::<BTreeSet<_>>(), names(&["q-0", "q-3"]));
    let delivered: BTreeSet<String> = seen.lock().unwrap().iter().map(|(node, _)| node.clone()).collect();
    assert_eq!(delivered, names(&["q-0", "q-3"]));

    // A query nobody matches ends at its deadline with nothing.
    let params = QueryParams { filter_tags: vec![("role".into(), "cache".into())], timeout, ..Default::default() };
    let response = serfs[0].query("whoami", Bytes::new(), params).await.unwrap();
    let deadline = response.deadline();
    let (acks, responses) = collect(response).await;
    assert!(acks.is_empty() && responses.is_empty());
    assert!(std::time::Instant::now() >= deadline);

    for task in tasks {
        task.abort();
    }
    shutdown_serfs(serfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_answers_are_delivered_once() {
    init_tracing();
    let serfs = serf_cluster(4, |i| query_config(&format!("rl-{i}"))).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = serfs.iter().map(|serf| responder(serf, Arc::clone(&seen))).collect();
    let params =
        QueryParams { request_ack: true, relay_factor: 2, timeout: Some(Duration::from_secs(2)), ..Default::default() };
    let (acks, responses) = collect(serfs[0].query("whoami", Bytes::new(), params).await.unwrap()).await;
    for serf in &serfs {
        let s = serf.stats().await.unwrap();
        eprintln!(
            "DEBUG {} {:?} {:?} {:?}",
            serf.local_member().name,
            s.counters,
            s.node.swim.messages_received,
            s.node.swim.dropped
        );
    }
    assert_eq!(acks, names(&["rl-0", "rl-1", "rl-2", "rl-3"]));
    assert_eq!(responses.len(), 4);
    // The relays did forward copies, which the originator dropped as duplicates.
    let mut forwarded = 0;
    for serf in &serfs {
        forwarded += serf.stats().await.unwrap().counters.relays_forwarded;
    }
    assert!(forwarded > 0, "no relay forwarded anything");
    let stats = serfs[0].stats().await.unwrap();
    assert!(stats.counters.query_reply_duplicates > 0, "{:?}", stats.counters);
    assert_eq!(stats.counters.query_responses_received, 4);
    for task in tasks {
        task.abort();
    }
    shutdown_serfs(serfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_ping_is_acked_and_never_delivered() {
    init_tracing();
    let serfs = serf_cluster(3, |i| query_config(&format!("pg-{i}"))).await;
    let mut streams: Vec<_> = serfs.iter().map(|serf| serf.events()).collect();
    let params = QueryParams { request_ack: true, timeout: Some(Duration::from_secs(2)), ..Default::default() };
    let (acks, responses) = collect(serfs[0].query("_serf_ping", Bytes::new(), params).await.unwrap()).await;
    assert_eq!(acks, names(&["pg-0", "pg-1", "pg-2"]));
    assert!(responses.is_empty());
    for events in &mut streams {
        let delivered = common::serf::collect_for(events, Duration::from_millis(200)).await;
        assert!(!delivered.iter().any(|e| matches!(e, SerfEvent::Query(_))), "{delivered:?}");
    }
    shutdown_serfs(serfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_deadlines_and_double_answers_are_checked() {
    init_tracing();
    let serfs = serf_cluster(2, |i| serf_config(&format!("chk-{i}"))).await;
    let mut events = serfs[1].events();

    // The default timeout: gossip interval (100 ms) × 16 × ceil(log10(2 + 1)).
    let response = serfs[0].query("slow", Bytes::new(), QueryParams::default()).await.unwrap();
    let left = response.deadline().saturating_duration_since(std::time::Instant::now());
    assert!(left > Duration::from_millis(1200) && left <= Duration::from_millis(1600), "{left:?}");
    let (query_event, _) = common::wait_for_event(
        "the query",
        &mut events,
        CONVERGE,
        |e| matches!(e, SerfEvent::Query(q) if q.name == "slow"),
    )
    .await;
    let SerfEvent::Query(query) = query_event else { unreachable!() };
    assert_eq!(query.from, "chk-0");
    assert_eq!(query.source_addr(), serfs[0].advertise_addr());

    let err = query.respond(Bytes::from(vec![b'x'; 2000])).await.unwrap_err();
    assert!(matches!(err, SerfError::ResponseTooLarge { max, .. } if max < 1024), "{err:?}");
    query.respond(Bytes::from_static(b"first")).await.unwrap();
    let err = query.clone().respond(Bytes::from_static(b"second")).await.unwrap_err();
    assert!(matches!(err, SerfError::AlreadyResponded { id, .. } if id == query.id), "{err}");
    let (_, responses) = collect(response).await;
    assert_eq!(responses.get("chk-1").map(String::as_str), Some("first"));

    // Past the deadline.
    let params = QueryParams { timeout: Some(Duration::from_millis(300)), ..Default::default() };
    let _late = serfs[0].query("late", Bytes::new(), params).await.unwrap();
    let (late, _) = common::wait_for_event(
        "the late query",
        &mut events,
        CONVERGE,
        |e| matches!(e, SerfEvent::Query(q) if q.name == "late"),
    )
    .await;
    let SerfEvent::Query(late) = late else { unreachable!() };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = late.respond(Bytes::new()).await.unwrap_err();
    assert!(matches!(err, SerfError::DeadlinePassed { .. }), "{err}");

    // Too large a query; a filter that is no regexp.
    let err = serfs[0].query("big", Bytes::from(vec![0u8; 2000]), QueryParams::default()).await.unwrap_err();
    assert!(matches!(err, SerfError::QueryTooLarge { len, max } if len > 2000 && max <= 1024), "{err:?}");
    let params = QueryParams { filter_tags: vec![("role".into(), "[".into())], ..Default::default() };
    let err = serfs[0].query("bad", Bytes::new(), params).await.unwrap_err();
    assert!(matches!(err, SerfError::InvalidFilter { .. }), "{err:?}");

    shutdown_serfs(serfs).await;
}
