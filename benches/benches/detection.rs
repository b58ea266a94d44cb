//! The failure-detection comparison in the simulator, as a `cargo bench` target:
//!
//! ```text
//! cargo bench -p cluster-bench --bench detection                       # N = 10, 100, 1000
//! cargo bench -p cluster-bench --bench detection -- --nodes 10000      # or DETECTION_NODES=...
//! cargo bench -p cluster-bench --bench detection -- --quick            # 10 and 100, fewer faults
//! ```
//!
//! Prints the table and writes `docs/results/detection.{md,json}`. When cargo passes a name
//! filter (`cargo bench -- encode`) that does not match "detection", it does nothing.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value_flags = ["--nodes", "--presets", "--events", "--loss", "--loss-window", "--seed", "--jobs"];
    // Positional words that are not values of our flags are criterion-style name filters.
    let mut skip_next = false;
    let mut names = Vec::new();
    for a in &args {
        if skip_next {
            skip_next = false;
            continue;
        }
        if value_flags.contains(&a.as_str()) {
            skip_next = true;
        } else if !a.starts_with('-') {
            names.push(a.clone());
        }
    }
    if !names.is_empty() && !names.iter().any(|n| "detection".contains(n.as_str())) {
        return Ok(());
    }
    if args.iter().any(|a| a == "--list") {
        println!("detection: bench");
        return Ok(());
    }
    let options = cluster_bench::detection::parse_args(&args)?;
    let shown: Vec<&String> = args.iter().filter(|a| *a != "--bench").collect();
    let mut command = "cargo bench -p cluster-bench --bench detection".to_owned();
    if !shown.is_empty() {
        command.push_str(" --");
        for a in shown {
            command.push(' ');
            command.push_str(a);
        }
    }
    if let Ok(v) = std::env::var("DETECTION_NODES") {
        command = format!("DETECTION_NODES={v} {command}");
    }
    let report = cluster_bench::detection::run(&options, &command)?;
    println!("{}", report.markdown());
    Ok(())
}
