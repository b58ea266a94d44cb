//! The two designs' failure-detection timing, as a `cargo bench` target: a quick real-process
//! run of `cluster-bench designs` (5 application nodes, one round each of serf-agent, consul-lite
//! with 3 servers, and HashiCorp Serf when it is on `PATH`), on loopback, about 90 s.
//!
//! ```text
//! cargo bench -p cluster-bench --bench designs
//! ```
//!
//! Real processes rather than the simulator: the consul-style reaction path (servers' serfHealth,
//! session invalidation, lock-delay, the next client's acquire over HTTP) is consul-lite's own
//! code, which the simulator does not model. Prints the report and writes
//! `docs/results/designs-quick.{md,json}` and its plots. When cargo passes a name filter that
//! does not match "designs", it does nothing.

fn main() -> anyhow::Result<()> {
    let names: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !names.is_empty() && !names.iter().any(|n| "designs".contains(n.as_str())) {
        return Ok(());
    }
    let mut o = cluster_bench::designs::DesignsOptions::new(true);
    o.command = "cargo bench -p cluster-bench --bench designs".to_owned();
    let report = cluster_bench::designs::run(&o)?;
    println!("{}", report.markdown());
    Ok(())
}
