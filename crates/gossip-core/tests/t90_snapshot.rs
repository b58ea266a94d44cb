//! Snapshots: a node restarted from its snapshot re-joins without seeds and does not deliver old
//! events again; a node that left does not re-join, unless told to.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::serf::{collect_for, serf_cluster, serf_config, shutdown_serfs, state_of, user_events, TempDir};
use common::{init_tracing, wait_for_event, wait_until, CONVERGE};
use gossip_core::{Serf, SerfConfig, SerfEvent, State};

fn with_snapshot(name: &str, dir: &TempDir) -> SerfConfig {
    SerfConfig { snapshot_path: Some(dir.path(&format!("{name}.snapshot"))), ..serf_config(name) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_rejoins_from_its_snapshot_without_seeds() {
    init_tracing();
    let dir = TempDir::new("snapshot-rejoin");
    let mut serfs = serf_cluster(3, |i| with_snapshot(&format!("sn-{i}"), &dir)).await;
    let mut events = serfs[2].events();
    serfs[0].user_event("before", Bytes::from_static(b"restart"), false).await.unwrap();
    wait_for_event("the event", &mut events, CONVERGE, |e| matches!(e, SerfEvent::User(u) if u.name == "before")).await;
    let event_time = serfs[2].stats().await.unwrap().event_time;

    // A crash-like stop (no leave); the others see it fail.
    let stopped = serfs.pop().unwrap();
    stopped.shutdown().await;
    wait_until("sn-2 failed", CONVERGE, || serfs.iter().all(|s| state_of(s, "sn-2") == Some(State::Dead))).await;
    let text = std::fs::read_to_string(dir.path("sn-2.snapshot")).unwrap();
    assert!(text.contains("alive: sn-0 ") && text.contains("alive: sn-1 "), "{text}");
    assert!(text.contains("event-clock: "), "{text}");

    // Started again from its snapshot, on another port, with no seeds.
    let restarted = Serf::start(with_snapshot("sn-2", &dir)).await.unwrap();
    let mut events = restarted.events();
    assert!(restarted.stats().await.unwrap().event_time >= event_time);
    wait_until("sn-2 re-joined", CONVERGE, || {
        common::serf::alive(&restarted) == 3 && serfs.iter().all(|s| state_of(s, "sn-2") == Some(State::Alive))
    })
    .await;
    // The re-join's push-pull brought the old event again: it is history, not delivered.
    let seen = user_events(&collect_for(&mut events, Duration::from_secs(1)).await);
    assert!(seen.is_empty(), "{seen:?}");
    // New events flow.
    serfs[1].user_event("after", Bytes::from_static(b"x"), false).await.unwrap();
    wait_for_event("the new event", &mut events, CONVERGE, |e| matches!(e, SerfEvent::User(u) if u.name == "after"))
        .await;
    serfs.push(restarted);
    shutdown_serfs(serfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_left_stays_out_unless_told_to_rejoin() {
    init_tracing();
    let dir = TempDir::new("snapshot-leave");
    let mut serfs = serf_cluster(3, |i| with_snapshot(&format!("lv-{i}"), &dir)).await;
    let leaving = serfs.pop().unwrap();
    leaving.leave().await.unwrap();
    leaving.shutdown().await;
    wait_until("lv-2 left", CONVERGE, || serfs.iter().all(|s| state_of(s, "lv-2") == Some(State::Left))).await;
    assert!(std::fs::read_to_string(dir.path("lv-2.snapshot")).unwrap().contains("\nleave\n"));

    // Restarted: it remembers that it left and stays alone.
    let alone = Serf::start(with_snapshot("lv-2", &dir)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(alone.members().len(), 1, "{:?}", alone.members());
    alone.shutdown().await;

    // With rejoin_after_leave (Serf's -rejoin), it comes back.
    let config = SerfConfig { rejoin_after_leave: true, ..with_snapshot("lv-2", &dir) };
    let back = Serf::start(config).await.unwrap();
    wait_until("lv-2 back", CONVERGE, || {
        common::serf::alive(&back) == 3 && serfs.iter().all(|s| state_of(s, "lv-2") == Some(State::Alive))
    })
    .await;
    serfs.push(back);
    shutdown_serfs(serfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_snapshot_path_is_a_start_error() {
    init_tracing();
    let dir = TempDir::new("snapshot-bad");
    // A directory where the file should be.
    let config = SerfConfig { snapshot_path: Some(dir.0.clone()), ..serf_config("bad") };
    let err = Serf::start(config).await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("snapshot ") && text.contains(&dir.0.display().to_string()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_path_that_cannot_be_opened_names_the_os_error_once() {
    let dir = TempDir::new("snapshot-missing-dir");
    let path = dir.path("no-such-dir/serf.snapshot");
    let err = match Serf::start(SerfConfig { snapshot_path: Some(path.clone()), ..serf_config("missing") }).await {
        Ok(_) => panic!("a snapshot in a missing directory cannot be opened"),
        Err(err) => err,
    };
    // What anyhow's `{:#}` prints: each error of the chain once.
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(chain.contains(&path.display().to_string()), "{chain}");
    assert_eq!(chain.matches("No such file or directory").count(), 1, "{chain}");
}
