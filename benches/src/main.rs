//! `cluster-bench`: the README's demo, the side-by-side comparison of serf-agent and HashiCorp
//! Serf on real processes, and the simulator comparison. See `docs/benchmarks.md`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Benchmarks of serf-agent against HashiCorp Serf, and of the protocol in the simulator.
#[derive(Debug, Parser)]
#[command(name = "cluster-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start 5 serf-agents on loopback, kill the primary, print a live timeline and a summary.
    Demo {
        /// Number of agents.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Timing profile of the agents (lan, local).
        #[arg(long, default_value = "lan")]
        profile: String,
        /// The serf-agent binary (default: build and use target/release/serf-agent).
        #[arg(long)]
        agent_bin: Option<PathBuf>,
        /// Do not run `cargo build --release -p serf-agent` first.
        #[arg(long)]
        no_build: bool,
        /// Keep the agents' logs and handler output.
        #[arg(long)]
        keep: bool,
        /// Also write the summary to docs/results/demo.md.
        #[arg(long)]
        write: bool,
    },
    /// The failure-detection comparison in the simulator (same as `cargo bench --bench detection`).
    Detection {
        /// Flags: --nodes 10,100,1000 --presets a,b --events K --loss 0.1 --loss-window SECS
        /// --seed S --jobs J --no-write --quick
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo run --release -p cluster-bench -- {}", args.join(" "))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { nodes, profile, agent_bin, no_build, keep, write } => {
            cluster_bench::demo::run(&cluster_bench::demo::DemoOptions {
                nodes,
                profile,
                agent_bin,
                build: !no_build,
                keep,
                write,
                command: command_line(),
            })?;
        }
        Command::Detection { args } => {
            let options = cluster_bench::detection::parse_args(&args)?;
            let report = cluster_bench::detection::run(&options, &command_line())?;
            println!("{}", report.markdown());
        }
    }
    Ok(())
}
