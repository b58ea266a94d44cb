//! Wall-clock cost of a large simulation, phase by phase:
//! `cargo run --release -p gossip-sim --example scale -- NODES MINUTES [PRESET]`.

use std::time::{Duration, Instant};

use gossip_sim::{SimConfig, Simulation, TraceLevel};

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let minutes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let preset = args.next().unwrap_or_else(|| "lan".to_owned());
    let mut cfg = SimConfig::preset(&preset, nodes, 1).expect("known preset");
    cfg.trace = TraceLevel::Off;
    let spread = cfg.formation.spread;
    let wall = Instant::now();
    let mut sim = Simulation::new(cfg).expect("valid configuration");
    sim.run_until(spread);
    println!("{nodes} nodes: all started at {:?} virtual, {:.2} s wall", spread, wall.elapsed().as_secs_f64());
    let formed = sim.run_until_converged(spread + Duration::from_secs(600), Duration::from_secs(1));
    println!(
        "formation converged at {:?} virtual, {:.2} s wall",
        formed.map(|t| t.as_secs_f64()),
        wall.elapsed().as_secs_f64()
    );
    sim.reset_traffic();
    let start = sim.now();
    for m in 1..=minutes {
        sim.run_until(start + Duration::from_secs(60 * m));
        println!("+{m} min virtual: {:.2} s wall", wall.elapsed().as_secs_f64());
    }
    let t = sim.traffic();
    println!(
        "{:.2} datagrams and {:.0} bytes per node per second; {} events",
        t.datagrams_per_node_sec,
        t.datagram_bytes_per_node_sec,
        sim.event_count()
    );
}
