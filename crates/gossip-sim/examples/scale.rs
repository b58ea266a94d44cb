//! Wall-clock cost of a large simulation, phase by phase:
//! `cargo run --release -p gossip-sim --example scale -- NODES MINUTES [PRESET]`.
//!
//! Prints, every virtual second of formation, how many members the nodes know (min and mean of
//! their live counts), then the wall time of each virtual minute after formation.

use std::time::{Duration, Instant};

use gossip_sim::{SimConfig, Simulation, TraceLevel};

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let minutes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let preset = args.next().unwrap_or_else(|| "lan".to_owned());
    let mut cfg = SimConfig::preset(&preset, nodes, 1).expect("known preset");
    cfg.trace = TraceLevel::Off;
    let limit = cfg.formation.spread + Duration::from_secs(600);
    let wall = Instant::now();
    let mut sim = Simulation::new(cfg).expect("valid configuration");
    let mut formed = None;
    while sim.now() < limit {
        sim.run_for(Duration::from_secs(1));
        let counts: Vec<usize> = (0..nodes).filter_map(|i| sim.swim(i)).map(|s| s.live_count()).collect();
        let min = counts.iter().min().copied().unwrap_or(0);
        let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
        println!(
            "t={:>4.0}s virtual  {:>7.1}s wall  started {:>6}  live count min {min:>6} mean {mean:>8.1}",
            sim.now().as_secs_f64(),
            wall.elapsed().as_secs_f64(),
            counts.len()
        );
        if min == nodes && sim.is_converged() {
            formed = Some(sim.now());
            break;
        }
    }
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
        "{:.2} datagrams and {:.0} bytes per node per second; {} events; total {:.2} s wall",
        t.datagrams_per_node_sec,
        t.datagram_bytes_per_node_sec,
        sim.event_count(),
        wall.elapsed().as_secs_f64()
    );
}
