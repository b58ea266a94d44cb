//! A restarted node (same name and address, new generation) is a new life: seen alive by all,
//! never reported failed because of its old life.

mod common;

use common::{alive_for_all, formed, run_until_true, secs};
use gossip_sim::{bounds, SimConfig};
use std::time::Duration;

/// 100 nodes, `lan` preset, no loss. Node 5 crashes; once every node knows, it restarts with a
/// larger generation and joins one running node. Every node must see the new life alive within
/// `dissemination time + 2 s` (join round trip and gossip; observed well under 1 s), and over the
/// next 200 s, which include push-pull exchanges carrying the old life's `dead` entry to nodes
/// that know the new life, nobody may report node 5 failed again and the new life must not need
/// to refute anything (stale news about the old life is ignored, not argued with).
#[test]
fn restart_after_crash_is_a_new_life() {
    let cfg = SimConfig::preset("lan", 100, 60).unwrap();
    let swim = cfg.swim.clone();
    let detection = bounds::crash_detection_bound(&swim, 100, 10);
    let mut sim = formed(cfg);
    let crash_at = sim.now() + secs(10);
    let restart_at = crash_at + detection;
    sim.crash(5, crash_at);
    sim.restart(5, restart_at);
    sim.run_until(restart_at - Duration::from_millis(1));
    let d = &sim.detections()[0];
    assert!(d.all.is_some(), "every node learned of the crash before the restart: {d:?}");
    let old_generation = d.generation;
    let failures_before = sim.failures().len();
    assert_eq!(failures_before, 99);

    sim.run_until(restart_at);
    assert!(sim.generation(5) > old_generation);
    let seen = run_until_true(
        &mut sim,
        restart_at + bounds::dissemination_time(&swim, 100) + secs(2),
        Duration::from_millis(100),
        |sim| alive_for_all(sim, 5),
    );
    assert!(seen.is_some(), "seed 60: the new life of node 5 is not seen alive by all");

    sim.run_until(restart_at + secs(200));
    let later: Vec<_> = sim.failures()[failures_before..].iter().collect();
    assert!(later.is_empty(), "seed 60: node reported failed after its restart: {later:#?}");
    assert_eq!(sim.swim(5).unwrap().stats().refutations, 0, "the new life argued with stale news");
    assert!(sim.is_converged(), "{:?}", sim.convergence());
}

/// A fast restart (the process comes back at once, before anyone noticed): nobody ever reports
/// node 9 failed, and every node sees its new generation alive.
#[test]
fn fast_restart_is_never_reported_failed() {
    let cfg = SimConfig::preset("lan", 100, 61).unwrap();
    let swim = cfg.swim.clone();
    let mut sim = formed(cfg);
    let restart_at = sim.now() + secs(10);
    let old_generation = sim.generation(9);
    sim.restart(9, restart_at);
    sim.run_until(restart_at);
    assert!(sim.generation(9) > old_generation);
    let seen = run_until_true(
        &mut sim,
        restart_at + bounds::dissemination_time(&swim, 100) + secs(2),
        Duration::from_millis(100),
        |sim| alive_for_all(sim, 9),
    );
    assert!(seen.is_some(), "seed 61: the new life of node 9 is not seen alive by all");
    sim.run_until(restart_at + secs(200));
    assert!(sim.failures().is_empty(), "seed 61: {:#?}", sim.failures());
    assert_eq!(sim.swim(9).unwrap().stats().refutations, 0, "the new life argued with stale news");
    assert!(sim.is_converged(), "{:?}", sim.convergence());
}
