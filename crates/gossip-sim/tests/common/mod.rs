//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use gossip_sim::{bounds, SimConfig, Simulation};
use membership::State;

/// Seconds.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A bound on formation: every node started, then one (scaled) push-pull period for anything
/// gossip missed, then the dissemination time of the news that period brings.
pub fn formation_bound(cfg: &SimConfig) -> Duration {
    cfg.formation.spread
        + bounds::push_pull_period(&cfg.swim, cfg.nodes)
        + bounds::dissemination_time(&cfg.swim, cfg.nodes)
}

/// Build and form a cluster; panics (naming the seed) if formation does not converge within
/// [`formation_bound`].
pub fn formed(cfg: SimConfig) -> Simulation {
    let bound = formation_bound(&cfg);
    let (seed, spread) = (cfg.seed, cfg.formation.spread);
    let mut sim = Simulation::new(cfg).expect("valid configuration");
    sim.run_until(spread);
    let at = sim.run_until_converged(bound, secs(1));
    assert!(at.is_some(), "seed {seed}: formation did not converge within {bound:?}: {:?}", sim.convergence());
    sim
}

/// How many live nodes other than `subject` see it `Alive` in its current generation.
pub fn seen_alive_by(sim: &Simulation, subject: usize) -> usize {
    sim.live_nodes().filter(|&o| o != subject && sim.state_of(o, subject) == Some(State::Alive)).count()
}

/// Whether every live node other than `subject` sees it alive.
pub fn alive_for_all(sim: &Simulation, subject: usize) -> bool {
    seen_alive_by(sim, subject) == sim.live_nodes().filter(|&o| o != subject).count()
}

/// Run until `pred` holds (checked every `step`) or `limit`; returns the time it first held.
pub fn run_until_true(
    sim: &mut Simulation,
    limit: Duration,
    step: Duration,
    mut pred: impl FnMut(&Simulation) -> bool,
) -> Option<Duration> {
    loop {
        if pred(sim) {
            return Some(sim.now());
        }
        if sim.now() >= limit {
            return None;
        }
        let next = (sim.now() + step).min(limit);
        sim.run_until(next);
    }
}
