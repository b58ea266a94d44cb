//! `gossip-sim`: run a failure-detection scenario over simulated nodes and print what it
//! measured. See the `gossip_sim` crate docs.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use gossip_sim::{
    bounds, parse_node_at, parse_partition, parse_pause, parse_seconds, Fault, Latency, Outcome, Scenario, SimConfig,
    SpecError, Summary, TraceLevel,
};

/// Deterministic simulation of a SWIM/Lifeguard cluster.
#[derive(Debug, Parser)]
#[command(name = "gossip-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Form a cluster, inject faults, and report detection times, false failures and traffic.
    Scenario(Box<ScenarioArgs>),
    /// Stalls against deaths over many seeds: how often a node stopped for 1, 2, 3, 4 s (and
    /// back) is declared failed, and how long a killed process and a vanished host take to be
    /// known by all, per preset. Prints a Markdown table.
    Stalls {
        /// Cluster size.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Presets, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "lan,memberlist-lan,local")]
        presets: Vec<String>,
        /// Stall lengths in seconds, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
        stalls: Vec<String>,
        /// Seeds per preset and fault.
        #[arg(long, default_value_t = 200)]
        runs: u64,
        /// First seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Show the protocol presets with the bounds derived from them.
    Presets {
        /// Cluster size the bounds are computed for.
        #[arg(long, default_value_t = 100)]
        nodes: usize,
    },
}

#[derive(Debug, Args)]
struct ScenarioArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Seed of the first run (run k uses seed + k).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs, each with its own seed; results are summarised over all of them.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Protocol preset: lan, wan, local, memberlist-lan, swim-paper.
    #[arg(long, default_value = "lan")]
    preset: String,
    /// Turn the TCP fallback ping off (streams are not lossy in the model, so with it on, loss
    /// alone rarely fails a probe).
    #[arg(long)]
    no_tcp_fallback: bool,
    /// Crashes kill the process, not the host: a TCP connection to a crashed node is refused at
    /// once (as after a SIGKILL), instead of timing out (a host that went away).
    #[arg(long)]
    process_crash: bool,
    /// Datagram loss probability (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Minimum one-way latency in milliseconds.
    #[arg(long, default_value_t = 0.2)]
    latency_min_ms: f64,
    /// Maximum one-way latency in milliseconds.
    #[arg(long, default_value_t = 1.0)]
    latency_max_ms: f64,
    /// Crashes of random distinct nodes, spread over the first 85% of the fault phase.
    #[arg(long, default_value_t = 0)]
    crashes: usize,
    /// Length of the fault phase in seconds (after formation).
    #[arg(long, default_value = "600")]
    duration: String,
    /// Seconds over which node starts are spread during formation.
    #[arg(long, default_value = "5")]
    spread: String,
    /// Skip formation: every node starts at time zero already knowing every other node as alive,
    /// as a cluster formed long ago (no joins, no join gossip). For large clusters, where forming
    /// is most of the work; the fault phase runs as usual.
    #[arg(long)]
    preformed: bool,
    /// Start the fault phase right after the last node started instead of waiting for the
    /// formed cluster to converge.
    #[arg(long)]
    no_wait: bool,
    /// Crash a node: NODE:AT (seconds from the start of the fault phase). Repeatable.
    #[arg(long = "crash", value_name = "NODE:AT")]
    crash: Vec<String>,
    /// Pause a node: NODE:FROM:UNTIL. Repeatable.
    #[arg(long = "pause", value_name = "NODE:FROM:UNTIL")]
    pause: Vec<String>,
    /// Partition: A/B:FROM:UNTIL with node sets like 0-49,60, or half:FROM:UNTIL. Repeatable.
    #[arg(long = "partition", value_name = "A/B:FROM:UNTIL")]
    partition: Vec<String>,
    /// Restart a node (new generation): NODE:AT. Repeatable.
    #[arg(long = "restart", value_name = "NODE:AT")]
    restart: Vec<String>,
    /// Make a node leave gracefully: NODE:AT. Repeatable.
    #[arg(long = "leave", value_name = "NODE:AT")]
    leave: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

impl ScenarioArgs {
    fn scenario(&self) -> Result<Scenario, String> {
        let mut cfg = SimConfig::preset(&self.preset, self.nodes, self.seed).ok_or_else(|| {
            format!("unknown preset {:?}: expected lan, wan, local, memberlist-lan or swim-paper", self.preset)
        })?;
        cfg.network.loss = self.loss;
        cfg.network.crash_refuses_streams = self.process_crash;
        if self.no_tcp_fallback {
            cfg.swim.tcp_fallback_ping = false;
        }
        let ms = |v: f64, name: &str| {
            Duration::try_from_secs_f64(v / 1000.0)
                .map_err(|_| format!("{name}: {v} is not a valid number of milliseconds"))
        };
        cfg.network.latency = Latency::Uniform {
            min: ms(self.latency_min_ms, "--latency-min-ms")?,
            max: ms(self.latency_max_ms, "--latency-max-ms")?,
        };
        cfg.formation.spread = parse_seconds(&self.spread).map_err(|e| format!("--spread: {e}"))?;
        cfg.formation.preformed = self.preformed;
        cfg.trace = TraceLevel::Off;
        let mut s = Scenario::new(cfg, parse_seconds(&self.duration).map_err(|e| format!("--duration: {e}"))?);
        s.wait_converged = !self.no_wait;
        s.random_crashes = self.crashes;
        let n = self.nodes;
        fn err(flag: &'static str) -> impl Fn(SpecError) -> String {
            move |e| format!("{flag}: {e}")
        }
        for spec in &self.crash {
            let (node, at) = parse_node_at(spec, n).map_err(err("--crash"))?;
            s.faults.push(Fault::Crash { node, at });
        }
        for spec in &self.restart {
            let (node, at) = parse_node_at(spec, n).map_err(err("--restart"))?;
            s.faults.push(Fault::Restart { node, at });
        }
        for spec in &self.leave {
            let (node, at) = parse_node_at(spec, n).map_err(err("--leave"))?;
            s.faults.push(Fault::Leave { node, at });
        }
        for spec in &self.pause {
            s.faults.push(parse_pause(spec, n).map_err(err("--pause"))?);
        }
        for spec in &self.partition {
            s.faults.push(parse_partition(spec, n).map_err(err("--partition"))?);
        }
        s.validate().map_err(|e| e.to_string())?;
        Ok(s)
    }
}

fn run_scenario(args: &ScenarioArgs) -> Result<(), String> {
    let scenario = args.scenario()?;
    let started = Instant::now();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut walls = Vec::new();
    for k in 0..args.runs.max(1) {
        let run_started = Instant::now();
        let outcome = scenario.with_seed(args.seed + k).run().map_err(|e| e.to_string())?;
        walls.push(run_started.elapsed().as_secs_f64());
        if !args.json {
            println!("=== run {} (seed {}), {:.2} s wall ===", k + 1, args.seed + k, walls[k as usize]);
            print_outcome(&outcome);
            println!();
        }
        outcomes.push(outcome);
    }
    let summary = Summary::new(&outcomes);
    let wall = started.elapsed().as_secs_f64();
    if args.json {
        let doc = serde_json::json!({
            "nodes": args.nodes,
            "preset": args.preset,
            "loss": args.loss,
            "duration": scenario.duration.as_secs_f64(),
            "summary": summary,
            "runs": outcomes,
            "wall_seconds": walls,
            "total_wall_seconds": wall,
        });
        println!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
    } else if outcomes.len() > 1 {
        println!(
            "=== summary ({} runs, preset {}, loss {}), {wall:.2} s wall ===",
            outcomes.len(),
            args.preset,
            args.loss
        );
        print!("{summary}");
    }
    Ok(())
}

fn print_outcome(o: &Outcome) {
    match o.formation {
        Some(t) => println!("formation converged at {:.1} s", t.as_secs_f64()),
        None => println!(
            "formation: not waited for or not converged; faults start at {:.1} s",
            o.faults_start.as_secs_f64()
        ),
    }
    for f in &o.faults {
        println!("fault: {f:?}");
    }
    match o.converged_after_heal {
        Some(t) => println!("views converged {:.1} s after the last fault", t.as_secs_f64()),
        None => println!("views had NOT converged at the end"),
    }
    println!("{}", o.report);
}

fn run_stalls(
    nodes: usize,
    presets: &[String],
    stalls: &[String],
    runs: u64,
    seed: u64,
    json: bool,
) -> Result<(), String> {
    let stalls =
        stalls.iter().map(|s| parse_seconds(s).map_err(|e| format!("--stalls: {e}"))).collect::<Result<Vec<_>, _>>()?;
    if !(3..=1000).contains(&nodes) {
        return Err(format!("--nodes {nodes}: between 3 and 1000"));
    }
    let sweep =
        gossip_sim::stalls::StallSweep { nodes, presets: presets.to_vec(), stalls, runs, seed, ..Default::default() };
    let started = Instant::now();
    let report = gossip_sim::stalls::run(&sweep).map_err(|e| e.to_string())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        print!("{report}");
        println!(
            "\n{nodes} nodes, {runs} seeds per cell from seed {seed}; a stall is watched until 40 s after it ends; {:.1} s wall",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn show_presets(nodes: usize) {
    println!(
        "{:<15} {:>7} {:>8} {:>7} {:>10} {:>10} {:>10} {:>10}",
        "preset", "probe", "timeout", "gossip", "susp min", "susp max", "dissem", "bound(all)"
    );
    for name in ["lan", "memberlist-lan", "swim-paper", "local", "wan"] {
        let Some(c) = swim::Config::preset(name) else { continue };
        println!(
            "{:<15} {:>6.1}s {:>7.1}s {:>6.1}s {:>9.1}s {:>9.1}s {:>9.1}s {:>9.1}s",
            name,
            c.probe_interval.as_secs_f64(),
            c.probe_timeout.as_secs_f64(),
            c.gossip_interval.as_secs_f64(),
            bounds::min_suspicion_timeout(&c, nodes).as_secs_f64(),
            bounds::max_suspicion_timeout(&c, nodes).as_secs_f64(),
            bounds::dissemination_time(&c, nodes).as_secs_f64(),
            bounds::crash_detection_bound(&c, nodes, 10).as_secs_f64(),
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Scenario(args) => run_scenario(args),
        Command::Presets { nodes } => {
            show_presets(*nodes);
            Ok(())
        }
        Command::Stalls { nodes, presets, stalls, runs, seed, json } => {
            run_stalls(*nodes, presets, stalls, *runs, *seed, *json)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gossip-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> ScenarioArgs {
        let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
        match cli.command {
            Command::Scenario(a) => *a,
            Command::Presets { .. } | Command::Stalls { .. } => panic!("not a scenario"),
        }
    }

    #[test]
    fn scenario_flags_build_the_scenario() {
        let a = args(
            "gossip-sim scenario --nodes 100 --seed 1 --preset lan --loss 0.1 --crashes 5 --duration 600 \
             --pause 7:30:50 --partition half:100:130 --partition 0-9/10-19:5:6 --crash 3:12 --restart 4:20",
        );
        let s = a.scenario().unwrap();
        assert_eq!(s.sim.nodes, 100);
        assert_eq!(s.sim.network.loss, 0.1);
        assert_eq!(s.random_crashes, 5);
        assert_eq!(s.duration, Duration::from_secs(600));
        assert_eq!(s.faults.len(), 5);
        assert!(s.faults.contains(&Fault::Pause {
            node: 7,
            from: Duration::from_secs(30),
            until: Duration::from_secs(50)
        }));
        assert!(s.faults.contains(&Fault::Crash { node: 3, at: Duration::from_secs(12) }));
        assert!(s.wait_converged);
    }

    #[test]
    fn bad_flags_are_named() {
        let e = args("gossip-sim scenario --preset nope").scenario().unwrap_err();
        assert!(e.contains("nope"), "{e}");
        let e = args("gossip-sim scenario --nodes 10 --pause 12:1:2").scenario().unwrap_err();
        assert!(e.starts_with("--pause") && e.contains("node 12"), "{e}");
        let e = args("gossip-sim scenario --loss 2").scenario();
        assert!(e.is_ok(), "loss is checked when the simulation is built");
        assert!(Cli::try_parse_from(["gossip-sim", "scenario", "--nodes", "x"]).is_err());
    }
}
