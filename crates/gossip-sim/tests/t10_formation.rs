//! A cluster forms: after the staggered joins, every node sees every node alive.

mod common;

use std::time::Duration;

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

/// A join storm: 50 nodes start within 0.5 s. Most nodes know only part of the cluster when news
/// of a joiner reaches them, so gossip alone can leave a node unaware of another until a
/// periodic push-pull, 15 to 45 s later (in 89 of 200 seeds before the settle exchange; memberlist's
/// settings do the same). With one push-pull a few gossip rounds after each join, every seed
/// converges within 4 s of the first start (observed: 1.5 s median, 3.5 s worst of 200 seeds).
#[test]
fn a_join_storm_converges_within_seconds() {
    for seed in 1..=20 {
        let mut cfg = SimConfig::preset("lan", 50, seed).unwrap();
        cfg.formation.spread = Duration::from_millis(500);
        let spread = cfg.formation.spread;
        let mut sim = Simulation::new(cfg).unwrap();
        sim.run_until(spread);
        assert_eq!(sim.live_nodes().count(), 50);
        let at = sim.run_until_converged(secs(4), Duration::from_millis(250));
        assert!(at.is_some(), "seed {seed}: not converged 4 s after the first start: {:?}", sim.convergence());
        assert_eq!(sim.failures().len(), 0, "seed {seed}: {:?}", sim.failures());
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

/// A preformed cluster is converged at time zero, with no join, no `MemberJoined` and every name
/// held once for the whole simulation; it then behaves as a formed one: a crash is detected by
/// everyone, nobody else is declared failed, and a restarted node joins the usual way.
#[test]
fn a_preformed_cluster_starts_converged_and_detects_a_crash() {
    let n = 200;
    let mut cfg = SimConfig::preset("lan", n, 7).unwrap();
    cfg.formation.preformed = true;
    let mut sim = Simulation::new(cfg).unwrap();
    sim.run_until(secs(0));
    assert_eq!(sim.live_nodes().count(), n, "every node starts at time zero");
    assert!(sim.is_converged(), "{:?}", sim.convergence());
    for o in [0, 99, 199] {
        assert_eq!(sim.view(o).filter(|m| m.state == State::Alive).count(), n);
        let stats = sim.swim(o).unwrap().stats();
        assert_eq!((stats.streams_sent, stats.packets_received), (0, 0), "node {o} did not join");
    }
    // Node 5's name in node 0's table and in node 150's is one allocation.
    let name = |o: usize| sim.swim(o).unwrap().member(sim.name(5)).unwrap().name.clone();
    assert!(name(0).ptr_eq(&name(150)));

    sim.crash(42, secs(20));
    sim.restart(17, secs(30));
    sim.run_until(secs(90));
    assert!(sim.is_converged(), "{:?}", sim.convergence());
    // Everyone but the restarted node, which never heard of node 42 alive, holds it dead.
    assert!((0..n).filter(|&o| o != 42 && o != 17).all(|o| sim.state_of(o, 42) == Some(State::Dead)));
    assert_eq!(sim.state_of(0, 17), Some(State::Alive));
    assert!(sim.false_failures().next().is_none(), "{:?}", sim.failures());
    assert_eq!(sim.failures().len(), n - 1, "only the crash is reported, once per live node");
}
