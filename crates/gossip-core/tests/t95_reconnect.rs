//! Reconnection: the cluster keeps trying to join failed members, so that a member that comes
//! back at its address (or the other side of a healed partition) is found again without anyone
//! running join.

mod common;

use std::time::Duration;

use common::serf::{serf_cluster, serf_config, shutdown_serfs, state_of};
use common::{init_tracing, wait_until, CONVERGE};
use gossip_core::{Serf, SerfConfig, State};

fn fast_reconnect(name: &str) -> SerfConfig {
    let mut config = SerfConfig { reconnect_interval: Duration::from_millis(300), ..serf_config(name) };
    // No gossip to the dead: only reconnection can find the member again.
    config.node.swim.gossip_to_dead = Duration::ZERO;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_member_that_comes_back_is_reconnected() {
    init_tracing();
    let mut serfs = serf_cluster(3, |i| fast_reconnect(&format!("rc-{i}"))).await;
    let gone = serfs.pop().unwrap();
    let addr = gone.local_addr();
    gone.shutdown().await;
    wait_until("rc-2 failed", CONVERGE, || serfs.iter().all(|s| state_of(s, "rc-2") == Some(State::Dead))).await;

    // Let probes of the old life that were in flight end (a ping reaching the new life would
    // carry news of its death, which it answers with its alive: another way back, and not the
    // one under test).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // It comes back at the same address, knowing nobody, joining nobody.
    let mut config = fast_reconnect("rc-2");
    config.node.bind_addr = addr;
    let back = Serf::start(config).await.unwrap();
    assert_eq!(back.members().len(), 1);
    wait_until("rc-2 reconnected", CONVERGE, || {
        common::serf::alive(&back) == 3 && serfs.iter().all(|s| state_of(s, "rc-2") == Some(State::Alive))
    })
    .await;
    let mut attempts = 0;
    for serf in &serfs {
        attempts += serf.stats().await.unwrap().counters.reconnect_attempts;
    }
    assert!(attempts > 0);
    serfs.push(back);
    shutdown_serfs(serfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_members_are_reaped_after_the_reconnect_timeout() {
    init_tracing();
    let make = |i: usize| SerfConfig { reconnect_timeout: Duration::from_secs(1), ..serf_config(&format!("rp-{i}")) };
    let mut serfs = serf_cluster(2, make).await;
    let mut events = serfs[0].events();
    serfs.pop().unwrap().shutdown().await;
    common::wait_for_event(
        "reap",
        &mut events,
        CONVERGE,
        |e| matches!(e, gossip_core::SerfEvent::MemberReap(m) if m[0].name == "rp-1"),
    )
    .await;
    assert_eq!(state_of(&serfs[0], "rp-1"), None);
    shutdown_serfs(serfs).await;
}
