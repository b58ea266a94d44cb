//! temp
use std::time::Duration;
use gossip_sim::{SimConfig, Simulation};
fn main() {
    for preset in ["lan", "memberlist-lan", "swim-paper"] {
    for nodes in [50, 100] {
        let mut total = 0; let mut observers = std::collections::BTreeSet::new();
        for seed in 0..10 {
            let mut cfg = SimConfig::preset(preset, nodes, seed).unwrap();
            cfg.network.loss = 0.1;
            cfg.swim.tcp_fallback_ping = false;
            let mut sim = Simulation::new(cfg).unwrap();
            sim.run_until(Duration::from_secs(5));
            sim.run_until_converged(Duration::from_secs(200), Duration::from_secs(1));
            let start = sim.now();
            sim.run_until(start + Duration::from_secs(600));
            let f: Vec<_> = sim.false_failures().cloned().collect();
            total += f.len();
            for x in &f { observers.insert((seed, x.subject, (x.at.as_secs_f64()) as u64)); }
        }
        println!("{preset} {nodes} nodes no-tcp 10% loss: {total} false failures in 10 x 10 min; distinct (seed,subject,sec) {}", observers.len());
    }}
}
