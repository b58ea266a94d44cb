//! The serf layer's events: user events (exactly once, de-duplicated, size-checked, coalesced,
//! replayed or not on join), member events (batched), coordinates.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::serf::{alive, collect_for, serf_cluster, serf_config, shutdown_serfs, state_of, user_events};
use common::{init_tracing, wait_for_event, wait_until, CONVERGE};
use gossip_core::{Serf, SerfConfig, SerfError, SerfEvent, State, Tags};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_events_reach_every_node_exactly_once() {
    init_tracing();
    let serfs = serf_cluster(3, |i| serf_config(&format!("ev-{i}"))).await;
    let mut streams: Vec<_> = serfs.iter().map(|serf| serf.events()).collect();

    serfs[0].user_event("deploy", Bytes::from_static(b"v1"), false).await.unwrap();
    for i in 0..5 {
        serfs[1].user_event(&format!("batch-{i}"), Bytes::from(format!("p{i}")), false).await.unwrap();
    }
    let expected: BTreeSet<(String, String)> = std::iter::once(("deploy".to_owned(), "v1".to_owned()))
        .chain((0..5).map(|i| (format!("batch-{i}"), format!("p{i}"))))
        .collect();
    for (i, events) in streams.iter_mut().enumerate() {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + CONVERGE;
        while seen.len() < expected.len() {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (event, _) =
                wait_for_event("user events", events, remaining, |e| matches!(e, SerfEvent::User(_))).await;
            seen.extend(user_events(&[event]));
        }
        // Re-broadcasts keep arriving for a while: none may be delivered again.
        seen.extend(user_events(&collect_for(events, Duration::from_millis(1500)).await));
        let unique: BTreeSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique, expected, "ev-{i}");
        assert_eq!(seen.len(), expected.len(), "ev-{i} got duplicates: {seen:?}");
    }
    // Every node re-broadcast what it saw first, so copies did arrive and were dropped.
    let mut duplicates = 0;
    for serf in &serfs {
        let stats = serf.stats().await.unwrap();
        assert_eq!(stats.counters.user_events, 6, "{stats:?}");
        assert!(stats.event_time >= 5, "{stats:?}");
        duplicates += stats.counters.user_event_duplicates;
    }
    assert!(duplicates > 0, "no duplicate ever arrived");
    shutdown_serfs(serfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_events_are_refused_with_a_clear_error() {
    init_tracing();
    let serf = Serf::start(serf_config("big")).await.unwrap();
    let err = serf.user_event("name", Bytes::from(vec![0u8; 509]), false).await.unwrap_err();
    assert!(matches!(err, SerfError::EventTooLarge { len: 513, max: 512 }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("513") && text.contains("512"), "{text}");
    // Exactly at the limit is fine.
    serf.user_event("name", Bytes::from(vec![0u8; 508]), false).await.unwrap();
    // A smaller configured limit is the limit.
    let small = Serf::start(SerfConfig { max_user_event_size: 10, ..serf_config("small") }).await.unwrap();
    let err = small.user_event("abcdef", Bytes::from_static(b"ghijk"), false).await.unwrap_err();
    assert!(matches!(err, SerfError::EventTooLarge { len: 11, max: 10 }), "{err:?}");
    assert_eq!(serf.stats().await.unwrap().counters.user_events, 1);
    serf.shutdown().await;
    small.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_events_deliver_only_the_newest_of_each_name() {
    init_tracing();
    let make = |i: usize| SerfConfig {
        user_coalesce_period: Duration::from_secs(1),
        user_quiescent_period: Duration::from_millis(500),
        ..serf_config(&format!("co-{i}"))
    };
    let serfs = serf_cluster(3, make).await;
    let mut streams: Vec<_> = serfs.iter().map(|serf| serf.events()).collect();
    for version in 1..=5 {
        serfs[0].user_event("config", Bytes::from(format!("v{version}")), true).await.unwrap();
    }
    // Not coalesced: delivered as is, at once.
    serfs[0].user_event("ping", Bytes::from_static(b"now"), false).await.unwrap();
    for (i, events) in streams.iter_mut().enumerate() {
        wait_for_event(
            "the newest config",
            events,
            CONVERGE,
            |e| matches!(e, SerfEvent::User(u) if u.name == "config" && u.payload == "v5" && u.coalesce),
        )
        .await;
        let mut seen = user_events(&collect_for(events, Duration::from_millis(1500)).await);
        seen.retain(|(name, _)| name == "config");
        assert!(seen.is_empty(), "co-{i} delivered older config events too: {seen:?}");
    }
    // The sender coalesced its own five at once: only v5 was delivered there.
    let stats = serfs[0].stats().await.unwrap();
    assert_eq!(stats.counters.user_events, 6, "{stats:?}");
    shutdown_serfs(serfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_without_replay_ignores_old_events_and_with_replay_delivers_them() {
    init_tracing();
    let serfs = serf_cluster(2, |i| serf_config(&format!("rp-{i}"))).await;
    serfs[0].user_event("old-1", Bytes::from_static(b"a"), false).await.unwrap();
    serfs[0].user_event("old-2", Bytes::from_static(b"b"), false).await.unwrap();
    let mut events = serfs[1].events();
    wait_for_event("old-2 at rp-1", &mut events, CONVERGE, |e| matches!(e, SerfEvent::User(u) if u.name == "old-2"))
        .await;

    let quiet = Serf::start(serf_config("rp-quiet")).await.unwrap();
    let mut quiet_events = quiet.events();
    assert_eq!(quiet.join(&[serfs[0].advertise_addr()], false).await.unwrap(), 1);
    let replaying = Serf::start(serf_config("rp-replay")).await.unwrap();
    let mut replay_events = replaying.events();
    assert_eq!(replaying.join(&[serfs[0].advertise_addr()], true).await.unwrap(), 1);

    let replayed = user_events(&collect_for(&mut replay_events, Duration::from_secs(2)).await);
    let replayed: BTreeSet<_> = replayed.into_iter().map(|(name, _)| name).collect();
    assert_eq!(replayed, BTreeSet::from(["old-1".to_owned(), "old-2".to_owned()]));
    let ignored = user_events(&collect_for(&mut quiet_events, Duration::from_millis(500)).await);
    assert!(ignored.is_empty(), "{ignored:?}");
    // Both still get new events, and the quiet one's clock caught up with the cluster's.
    serfs[1].user_event("new", Bytes::from_static(b"c"), false).await.unwrap();
    for events in [&mut quiet_events, &mut replay_events] {
        wait_for_event("new", events, CONVERGE, |e| matches!(e, SerfEvent::User(u) if u.name == "new")).await;
    }
    assert!(quiet.stats().await.unwrap().event_time >= 3);
    let mut all = serfs;
    all.extend([quiet, replaying]);
    shutdown_serfs(all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_events_arrive_in_batches_within_the_coalesce_window() {
    init_tracing();
    let seed = Serf::start(serf_config("mb-seed")).await.unwrap();
    let mut events = seed.events();
    // The first stream sees the node's own join.
    let (own, _) = wait_for_event("own join", &mut events, CONVERGE, |e| matches!(e, SerfEvent::MemberJoin(_))).await;
    assert_eq!(own.members().iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["mb-seed"]);
    assert_eq!(own.name(), "member-join");

    let mut joiners = Vec::new();
    for i in 0..3 {
        joiners.push(Serf::start(serf_config(&format!("mb-{i}"))).await.unwrap());
    }
    let seed_addr = seed.advertise_addr();
    let joins: Vec<_> = joiners.iter().map(|joiner| joiner.handle()).collect();
    let joined = common::join_all(joins.into_iter().map(|h| async move { h.join(&[seed_addr], false).await })).await;
    assert!(joined.iter().all(|r| matches!(r, Ok(1))), "{joined:?}");
    let joined_at = Instant::now();

    let mut batches = Vec::new();
    let mut names = BTreeSet::new();
    while names.len() < 3 {
        let (event, _) =
            wait_for_event("joins", &mut events, CONVERGE, |e| matches!(e, SerfEvent::MemberJoin(_))).await;
        if batches.is_empty() {
            // Batched by 50 ms / 20 ms: the handler learns within about 100 ms (bound kept loose for
            // loaded test machines).
            let latency = joined_at.elapsed();
            println!("first member-join batch {latency:?} after the joins returned");
            assert!(latency < Duration::from_millis(1000), "first batch after {latency:?}");
        }
        names.extend(event.members().iter().map(|m| m.name.clone()));
        batches.push(event);
    }
    assert_eq!(names, BTreeSet::from(["mb-0".into(), "mb-1".into(), "mb-2".into()]));
    assert!(batches.len() <= 2, "three simultaneous joins in {} batches: {batches:?}", batches.len());

    // A leave, a failure, a tag update: each its event. Everyone must know everyone first: a
    // leave gossiped to a node that has not heard of the leaver yet is ignored there.
    wait_until("all know all", CONVERGE, || alive(&seed) == 4 && joiners.iter().all(|j| alive(j) == 4)).await;
    let leaving = joiners.pop().unwrap();
    leaving.leave().await.unwrap();
    leaving.shutdown().await;
    let (left, _) = wait_for_event("leave", &mut events, CONVERGE, |e| matches!(e, SerfEvent::MemberLeave(_))).await;
    assert_eq!(left.members()[0].name, "mb-2");
    assert_eq!(left.members()[0].state, State::Left);

    joiners[1].set_tags(Tags::from_pairs([("role", "db")]).unwrap()).await.unwrap();
    let (update, _) =
        wait_for_event("update", &mut events, CONVERGE, |e| matches!(e, SerfEvent::MemberUpdate(_))).await;
    assert_eq!(update.members()[0].tags.get("role"), Some("db"));

    let crashed = joiners.pop().unwrap();
    crashed.shutdown().await;
    let (failed, _) =
        wait_for_event("failure", &mut events, CONVERGE, |e| matches!(e, SerfEvent::MemberFailed(_))).await;
    assert_eq!(failed.members()[0].name, "mb-1");

    // Force-leave with prune: left, then reaped at once (one batch: only the reap is delivered).
    seed.force_leave("mb-1", true).await.unwrap();
    let (reaped, _) = wait_for_event("reap", &mut events, CONVERGE, |e| matches!(e, SerfEvent::MemberReap(_))).await;
    assert_eq!(reaped.members()[0].name, "mb-1");
    assert_eq!(state_of(&seed, "mb-1"), None);
    // The prune is gossiped: the other node forgets mb-1 too, long before its 24 h tombstone.
    wait_until("mb-0 forgets mb-1", CONVERGE, || state_of(&joiners[0], "mb-1").is_none()).await;
    assert_eq!(joiners[0].stats().await.unwrap().counters.prunes, 1);
    assert!(matches!(seed.force_leave("nobody", false).await, Err(SerfError::Node(_))));

    let stats = seed.stats().await.unwrap();
    assert_eq!((stats.alive, stats.left), (2, 1), "{stats:?}");
    assert!(stats.counters.suspicions >= 1, "{stats:?}");
    joiners.push(seed);
    shutdown_serfs(joiners).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinates_ride_on_acks() {
    init_tracing();
    let serfs = serf_cluster(2, |i| serf_config(&format!("co-ord-{i}"))).await;
    // Probes go out every second in the local preset.
    wait_until("each node has the other's coordinate", CONVERGE, || {
        serfs[0].member_coordinate("co-ord-1").is_some() && serfs[1].member_coordinate("co-ord-0").is_some()
    })
    .await;
    let mine = serfs[0].coordinate().unwrap();
    assert_eq!(mine.vec.len(), 8);
    assert_eq!(serfs[0].member_coordinate("co-ord-0"), Some(mine.clone()));
    // On loopback the estimated RTT is small.
    let theirs = serfs[0].member_coordinate("co-ord-1").unwrap();
    assert!(mine.distance_to(&theirs) < Duration::from_millis(100), "{mine:?} {theirs:?}");
    assert!(serfs[0].stats().await.unwrap().counters.coordinate_updates >= 1);

    let plain = Serf::start(SerfConfig { disable_coordinates: true, ..serf_config("co-ord-off") }).await.unwrap();
    assert_eq!(plain.coordinate(), None);
    assert_eq!(alive(&plain), 1);
    let mut all = serfs;
    all.push(plain);
    shutdown_serfs(all).await;
}
