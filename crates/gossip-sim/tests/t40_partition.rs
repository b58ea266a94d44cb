//! A partition in two halves: failures are declared across it, and the views converge after it
//! heals.

mod common;

use common::{formed, secs};
use gossip_sim::{bounds, FailureCause, SimConfig};

/// 100 nodes, `lan` preset, no loss; nodes 0–49 and 50–99 cannot reach each other for 30 s.
///
/// During the partition each side declares members of the other failed (legitimately: cause
/// `Partitioned`). After it heals the views must converge within
/// `push_pull_period(100) + max suspicion timeout + dissemination time` = 90 + 9.6 + 2.4 s: the
/// first push-pull across the healed link hands each side the other's members (remote dead is
/// applied as suspect), the suspects refute within the suspicion timeout, and gossip spreads the
/// refutations.
#[test]
fn halves_partitioned_for_30s_converge_after_healing() {
    let cfg = SimConfig::preset("lan", 100, 40).unwrap();
    let swim = cfg.swim.clone();
    let mut sim = formed(cfg);
    let (a, b): (Vec<usize>, Vec<usize>) = ((0..50).collect(), (50..100).collect());
    let from = sim.now() + secs(10);
    let until = from + secs(30);
    sim.partition(&a, &b, from, until);
    sim.run_until(until);

    // Failures were declared across the partition, in both directions, and all legitimately.
    let across = |f: &gossip_sim::FailureRecord| {
        let s = f.subject.unwrap();
        (f.observer < 50) != (s < 50)
    };
    let a_declares_b = sim.failures().iter().filter(|f| f.observer < 50 && across(f)).count();
    let b_declares_a = sim.failures().iter().filter(|f| f.observer >= 50 && across(f)).count();
    assert!(a_declares_b > 0 && b_declares_a > 0, "{a_declares_b} / {b_declares_a} declarations across");
    assert!(sim.failures().iter().all(|f| f.cause == FailureCause::Partitioned), "{:?}", sim.failures());
    assert!(sim.failures().iter().all(across), "nobody declared a member of its own side failed");
    // Both sides stay internally consistent.
    assert!(a.iter().all(|&o| a.iter().all(|&s| o == s || sim.state_of(o, s) == Some(membership::State::Alive))));

    let bound = bounds::push_pull_period(&swim, 100)
        + bounds::max_suspicion_timeout(&swim, 100)
        + bounds::dissemination_time(&swim, 100);
    let healed = sim.run_until_converged(until + bound, secs(1));
    assert!(
        healed.is_some(),
        "seed 40: views not converged {bound:?} after the partition healed: {:?}",
        sim.convergence()
    );
    assert_eq!(sim.false_failures().count(), 0, "{:?}", sim.false_failures().collect::<Vec<_>>());
}
