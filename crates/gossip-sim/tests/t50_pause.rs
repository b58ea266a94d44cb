//! A paused process is declared failed, then refutes when it resumes.

mod common;

use common::{alive_for_all, formed, run_until_true, secs};
use gossip_sim::{bounds, FailureCause, SimConfig};
use membership::State;

/// 100 nodes, `lan` preset, no loss; node 7 stalls for longer than the crash-detection bound (61.4
/// s: a stall is silence, so its suspicion counts in probe intervals, 8 s to 48 s at 100 nodes).
/// By the time it resumes every other node holds it `Dead`. On resume it reads its
/// buffered datagrams (news of its own death among them), refutes, and every node sees it alive
/// again within `push_pull_period + dissemination time` (92.4 s; the push-pull is the fallback
/// should no buffered datagram mention its death). Observed: within 1 s; asserted below 5 s.
#[test]
fn paused_node_is_declared_failed_then_refutes() {
    let cfg = SimConfig::preset("lan", 100, 50).unwrap();
    let swim = cfg.swim.clone();
    let detection = bounds::crash_detection_bound(&swim, 100, 10);
    let mut sim = formed(cfg);
    let from = sim.now() + secs(10);
    let until = from + detection + secs(5);
    assert!(until - from > detection);
    sim.pause(7, from, until);
    sim.run_until(until - secs(1));

    // Declared failed by everyone during the pause, legitimately.
    for o in (0..100).filter(|&o| o != 7) {
        assert_eq!(sim.state_of(o, 7), Some(State::Dead), "node {o} about the paused node");
    }
    let declared = sim.failures().iter().filter(|f| f.subject == Some(7)).count();
    assert_eq!(declared, 99);
    assert!(sim.failures().iter().all(|f| f.cause == FailureCause::Paused));

    sim.run_until(until);
    let refuted_by_all = run_until_true(
        &mut sim,
        until + bounds::push_pull_period(&swim, 100) + bounds::dissemination_time(&swim, 100),
        std::time::Duration::from_millis(100),
        |sim| alive_for_all(sim, 7),
    );
    let at = refuted_by_all.unwrap_or_else(|| panic!("seed 50: node 7 not seen alive by all after resuming"));
    assert!(at - until < secs(5), "refutation took {:?}", at - until);
    assert!(sim.swim(7).unwrap().stats().refutations >= 1, "node 7 refuted its death");
    sim.run_for(secs(60));
    assert!(sim.is_converged(), "{:?}", sim.convergence());
    // Node 7's own timers ran late on resume; anything it declared is `ObserverPaused`. Nothing
    // else was declared, and nothing was a false failure.
    assert_eq!(sim.false_failures().count(), 0, "{:?}", sim.false_failures().collect::<Vec<_>>());
    assert!(sim.failures().iter().all(|f| f.subject == Some(7) || f.observer == 7));
}
