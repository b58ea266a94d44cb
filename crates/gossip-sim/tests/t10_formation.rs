//! A cluster forms: after the staggered joins, every node sees every node alive.

mod common;

use common::{formation_bound, secs};
use gossip_sim::{SimConfig, Simulation};
use membership::State;

/// 100 nodes join one random running node each over 5 s; the views must converge within
/// [`formation_bound`] (spread + one scaled push-pull period (90 s at 100 nodes) + dissemination):
/// whatever gossip missed, the next push-pull repairs. Observed over seeds 1–10: 6 s median,
/// 34 s worst (one node missed by gossip until its first push-pull at 30 s).
#[test]
fn hundred_nodes_converge_after_formation() {
    for seed in 1..=5 {
        let cfg = SimConfig::preset("lan", 100, seed).unwrap();
        let bound = formation_bound(&cfg);
        let spread = cfg.formation.spread;
        let mut sim = Simulation::new(cfg).unwrap();
        sim.run_until(spread);
        assert_eq!(sim.live_nodes().count(), 100, "every node started by the end of the spread");
        let at = sim.run_until_converged(bound, secs(1));
        assert!(at.is_some(), "seed {seed}: not converged within {bound:?}: {:?}", sim.convergence());
        for o in 0..100 {
            let alive = sim.view(o).filter(|m| m.state == State::Alive).count();
            assert_eq!(alive, 100, "seed {seed}: node {o} sees {alive} alive");
            for s in 0..100 {
                assert_eq!(sim.state_of(o, s), Some(State::Alive), "seed {seed}: node {o} about node {s}");
            }
        }
        // Nobody was declared failed during a healthy formation.
        assert_eq!(sim.failures().len(), 0, "seed {seed}: {:?}", sim.failures());
        // And it stays converged.
        sim.run_for(secs(60));
        assert!(sim.is_converged(), "seed {seed}: {:?}", sim.convergence());
    }
}

/// A single node is a converged cluster of one; two nodes find each other.
#[test]
fn tiny_clusters() {
    let mut sim = Simulation::new(SimConfig::preset("lan", 1, 1).unwrap()).unwrap();
    sim.run_until(secs(10));
    assert!(sim.is_converged());
    assert_eq!(sim.view(0).count(), 1);
    let mut sim = Simulation::new(SimConfig::preset("lan", 2, 1).unwrap()).unwrap();
    sim.run_until(secs(10));
    assert!(sim.is_converged(), "{:?}", sim.convergence());
}
