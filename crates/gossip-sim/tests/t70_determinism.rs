//! The same seed gives the same run, event for event.

mod common;

use common::secs;
use gossip_sim::{Fault, Report, Scenario, SimConfig, Simulation, TraceLevel, TraceRecord};

fn run(seed: u64, faults: &[Fault], loss: f64) -> (Vec<TraceRecord>, Report) {
    let mut cfg = SimConfig::preset("lan", 60, seed).unwrap();
    cfg.network.loss = loss;
    cfg.trace = TraceLevel::All;
    let mut sim = Simulation::new(cfg).unwrap();
    sim.run_until(secs(10));
    for f in faults {
        sim.apply(f, secs(10));
    }
    sim.run_until(secs(150));
    (sim.trace().to_vec(), sim.report())
}

fn assert_same_trace(faults: &[Fault], loss: f64) {
    let (trace_a, report_a) = run(70, faults, loss);
    let (trace_b, report_b) = run(70, faults, loss);
    assert!(trace_a.len() > 1000, "a real run: {} events", trace_a.len());
    if let Some(i) = trace_a.iter().zip(&trace_b).position(|(a, b)| a != b) {
        panic!("runs diverge at event {i}: {:?} vs {:?}", trace_a[i], trace_b[i]);
    }
    assert_eq!(trace_a.len(), trace_b.len());
    assert_eq!(report_a, report_b);
    let (trace_c, report_c) = run(71, faults, loss);
    assert_ne!(report_a.trace_hash, report_c.trace_hash, "another seed, another run");
    assert_ne!(trace_a, trace_c);
}

/// Crashes one at a time under loss.
#[test]
fn same_seed_same_trace_with_crashes_and_loss() {
    let faults = [
        Fault::Crash { node: 3, at: secs(5) },
        Fault::Crash { node: 40, at: secs(40) },
        Fault::Restart { node: 3, at: secs(80) },
    ];
    assert_same_trace(&faults, 0.05);
}

/// Many simultaneous suspicions per node (a partition, a pause, simultaneous crashes): any
/// dependence on hash-map iteration order in the protocol shows here.
#[test]
fn same_seed_same_trace_with_partition_and_pause() {
    let faults = [
        Fault::Partition { a: (0..20).collect(), b: (20..60).collect(), from: secs(5), until: secs(35) },
        Fault::Pause { node: 30, from: secs(10), until: secs(40) },
        Fault::Crash { node: 41, at: secs(50) },
        Fault::Crash { node: 42, at: secs(50) },
        Fault::Crash { node: 43, at: secs(50) },
    ];
    assert_same_trace(&faults, 0.02);
}

/// The scenario runner is deterministic too (formation wait, random crashes, report).
#[test]
fn scenario_runs_are_reproducible() {
    let mut s = Scenario::new(SimConfig::preset("lan", 40, 72).unwrap(), secs(120));
    s.random_crashes = 3;
    s.sim.network.loss = 0.05;
    let a = s.run().unwrap();
    let b = s.run().unwrap();
    assert_eq!(a.report, b.report);
    assert_eq!(a.formation, b.formation);
    assert_eq!(a.report.detections.len(), 3);
}
