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
    /// Start 5 serf-agents on loopback, kill the primary, print a live timeline; then the same with
    /// HashiCorp Serf (when installed or installable) and both side by side.
    Demo {
        /// Number of agents.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Timing profile of the agents (lan, local).
        #[arg(long, default_value = "lan")]
        profile: String,
        #[command(flatten)]
        bins: Binaries,
        /// Do not run the scenario with HashiCorp Serf afterwards (by default it runs when `serf` is
        /// on PATH, or after benches/setup.sh installs it when running as root with apt-get).
        #[arg(long)]
        no_serf: bool,
        /// Do not run the consul-style scenario (consul-lite: 3 Raft servers, a client agent per
        /// node, the primary held by a lock).
        #[arg(long)]
        no_consul: bool,
        /// The consul-lite binary (default: build it as `cluster_bench::system::CONSUL_BUILD` says).
        #[arg(long)]
        consul_bin: Option<PathBuf>,
        /// Keep the agents' logs and handler output.
        #[arg(long)]
        keep: bool,
        /// Also write the summary to docs/results/demo.md.
        #[arg(long)]
        write: bool,
    },
    /// Measure serf-agent and HashiCorp Serf side by side (interleaved) and write tables and plots.
    Compare {
        /// Cluster sizes, comma-separated (each 5 to 240).
        #[arg(long, value_delimiter = ',', default_value = "5,20,50")]
        sizes: Vec<usize>,
        /// Short run: 1 round, 3 setup tries, 10 s steady window, no lossy run; results in
        /// docs/results/compare-quick.*.
        #[arg(long)]
        quick: bool,
        /// Full rounds per system and size (default 3, quick 1).
        #[arg(long)]
        rounds: Option<usize>,
        /// Full rounds at sizes of 5 nodes or fewer (default 5, quick: as --rounds); small
        /// clusters are cheap and vary most from round to round.
        #[arg(long)]
        small_rounds: Option<usize>,
        /// Setup times per system and size, rounds included (default 10, quick 3).
        #[arg(long)]
        setup_tries: Option<usize>,
        /// Steady-state window for RSS, CPU and traffic, seconds (default 30, quick 10).
        #[arg(long)]
        steady_secs: Option<f64>,
        /// The steady window starts at least this long after the first agent started (default
        /// 60, quick 0): Serf's first periodic push-pull comes 30 to 60 s after start.
        #[arg(long)]
        steady_after_secs: Option<f64>,
        /// Seconds under random loss to count false failures (root and iptables; default 600,
        /// quick 0); the lossy clusters of every system and size run at once in this window.
        #[arg(long)]
        loss_secs: Option<f64>,
        /// Loss probability of the lossy run.
        #[arg(long, default_value_t = 0.1)]
        loss: f64,
        /// Where the agents run: loopback (127.0.x.y, no privileges) or netns (root: one network
        /// namespace per agent on a bridge, exact traffic, partitions).
        #[arg(long, value_enum, default_value_t = BackendArg::Loopback)]
        backend: BackendArg,
        /// Seconds of partition into halves after the lossy run (netns backend; default 30,
        /// quick 0).
        #[arg(long)]
        partition_secs: Option<f64>,
        /// Timing profile of both systems.
        #[arg(long, default_value = "lan")]
        profile: String,
        #[command(flatten)]
        bins: Binaries,
        /// Measure serf-agent alone.
        #[arg(long)]
        ours_only: bool,
        /// Base name of the result files in docs/results/ (default compare, or compare-quick).
        #[arg(long)]
        name: Option<String>,
        /// Do not write result files.
        #[arg(long)]
        no_write: bool,
        /// Keep the agents' logs and handler output.
        #[arg(long)]
        keep: bool,
    },
    /// Where a setup's time goes: start N agents of each system (interleaved), then split the
    /// setup time into starting the processes, each node's convergence and the poll's cost.
    Setup {
        /// Cluster size.
        #[arg(long, default_value_t = 50)]
        nodes: usize,
        /// Setups per system.
        #[arg(long, default_value_t = 5)]
        tries: usize,
        /// Timing profile of both systems.
        #[arg(long, default_value = "lan")]
        profile: String,
        /// Seconds of pause between setups.
        #[arg(long, default_value_t = 2.0)]
        pause: f64,
        #[command(flatten)]
        bins: Binaries,
        /// Print every sweep of the member lists.
        #[arg(long)]
        verbose: bool,
    },
    /// consul-lite's replicated KV against etcd 3.4: three servers each on loopback, fsync on,
    /// interleaved: write and read throughput and latency, leader failover, RSS
    /// (benches/setup.sh installs etcd-server). Writes docs/results/kv.{md,json} with --write.
    Kv {
        /// Clients in flight, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        clients: Vec<usize>,
        /// Seconds per load phase (default 10, quick 4).
        #[arg(long)]
        phase_secs: Option<f64>,
        /// Rounds of every load phase per system (default 2, quick 1).
        #[arg(long)]
        rounds: Option<usize>,
        /// Leader kills per system (default 3, quick 2).
        #[arg(long)]
        failovers: Option<usize>,
        /// Short run: 4 s phases, 1 round, 2 failovers.
        #[arg(long)]
        quick: bool,
        /// The consul-lite binary (default: `cargo build --release -p consul-lite`).
        #[arg(long)]
        consul_bin: Option<PathBuf>,
        /// The etcd binary.
        #[arg(long, default_value = "etcd")]
        etcd_bin: PathBuf,
        /// Write docs/results/kv.md and kv.json.
        #[arg(long)]
        write: bool,
        /// Keep the servers' data and logs.
        #[arg(long)]
        keep: bool,
    },
    /// A live member stopped (SIGSTOP) for 1, 2 and 3 s, then continued: how often does any node
    /// declare it failed? And SIGKILL detection times. serf-agent and HashiCorp Serf (when
    /// installed), 5-node loopback clusters; writes docs/results/stress.md and .json.
    ///
    /// With --suite: every system and profile under loss, bursts, one-way loss, latency, stall
    /// bursts and a CPU quota, in network namespaces (root): false failures per node-hour and
    /// SIGKILL detection; writes docs/results/stress-suite.* and frontier.*. With --sim: the same
    /// settings in the simulator; writes docs/results/frontier-sim.*.
    Stress {
        /// Nodes per cluster.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Stall lengths in seconds, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        stalls: Vec<f64>,
        /// Stalls of each length.
        #[arg(long, default_value_t = 6)]
        repeats: usize,
        /// SIGKILL rounds.
        #[arg(long, default_value_t = 3)]
        kills: usize,
        /// Timing profile of both systems.
        #[arg(long, default_value = "lan")]
        profile: String,
        #[command(flatten)]
        bins: Binaries,
        /// Measure serf-agent alone.
        #[arg(long)]
        ours_only: bool,
        /// Base name of the result files in docs/results/ (default: stress, stress-suite with
        /// --suite, frontier-sim with --sim).
        #[arg(long)]
        name: Option<String>,
        /// Do not write result files.
        #[arg(long)]
        no_write: bool,
        /// Keep the agents' logs.
        #[arg(long)]
        keep: bool,
        /// Run the stress suite on real processes (network namespaces; root) instead of the stalls.
        #[arg(long, conflicts_with = "sim")]
        suite: bool,
        /// Run the stress suite in the simulator.
        #[arg(long)]
        sim: bool,
        /// Suite: settings, comma-separated (none, loss<pct>, bursty, oneway<pct>,
        /// latency<ms>j<ms>, stalls<ms>r<ms>, cpu<pct>).
        #[arg(long, value_delimiter = ',', default_value = cluster_bench::stress_suite::DEFAULT_SETTINGS)]
        settings: Vec<String>,
        /// Suite: system:profile pairs, comma-separated (the simulator takes its presets from the
        /// serf-agent ones and memberlist-lan for Serf lan).
        #[arg(long, value_delimiter = ',', default_value = cluster_bench::stress_suite::DEFAULT_SYSTEMS)]
        systems: Vec<String>,
        /// Suite: seconds each cell watches for false failures (virtual seconds with --sim).
        #[arg(long, default_value_t = 150.0)]
        observe: f64,
        /// Suite: cells run at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Simulator: seeds per preset and setting.
        #[arg(long, default_value_t = 20)]
        runs: u64,
    },
    /// The two designs side by side on loopback: serf-agent, consul-lite (3 servers + a client per
    /// node, lock-held primary) and HashiCorp Serf, interleaved; writes docs/results/designs.*.
    /// With --netns in network namespaces, with partitions (root); writes designs-netns.*.
    Designs {
        /// Application nodes per cluster, comma-separated (default 5,20; --quick: 5).
        #[arg(long, value_delimiter = ',')]
        sizes: Option<Vec<usize>>,
        /// CI-sized: 5 nodes, one round, a 5 s window, no 15 s lock-delay run; writes
        /// docs/results/designs-quick.*.
        #[arg(long)]
        quick: bool,
        /// Rounds per system and size (default 2; --quick: 1).
        #[arg(long)]
        rounds: Option<usize>,
        /// Steady-state window, seconds (default 15; --quick: 5).
        #[arg(long)]
        steady_secs: Option<f64>,
        /// The consul-lite binary (default: build it as `cluster_bench::system::CONSUL_BUILD` says).
        #[arg(long)]
        consul_bin: Option<PathBuf>,
        /// Do not run the fault schedule (availability; runs by default except with --quick).
        #[arg(long)]
        no_schedule: bool,
        /// Run the fault schedule alone, at the smallest size.
        #[arg(long)]
        schedule_only: bool,
        /// Run in network namespaces instead of on loopback (root, ip, iptables): one namespace
        /// per agent, consul-lite's servers included, on a bridge; adds the partition scenarios
        /// (the primary's node cut off; consul-lite also with the Raft leader server) and a
        /// partition and heal to the fault schedule; no 15 s lock-delay run. Writes
        /// docs/results/designs-netns.* (designs-netns-quick.* with --quick).
        #[arg(long, conflicts_with = "also_netns")]
        netns: bool,
        /// Run on loopback, then the same again in network namespaces (as --netns): two reports.
        #[arg(long)]
        also_netns: bool,
        /// How long each partition is held with --netns, seconds.
        #[arg(long, default_value_t = 12.0)]
        partition_secs: f64,
        #[command(flatten)]
        bins: Binaries,
        /// Base name of the result files in docs/results/ (default designs, or designs-quick;
        /// the namespace run adds -netns).
        #[arg(long)]
        name: Option<String>,
        /// Do not write result files.
        #[arg(long)]
        no_write: bool,
        /// Keep the agents' logs.
        #[arg(long)]
        keep: bool,
    },
    /// Re-render the Markdown report and plots of a `designs` JSON file (docs/results/designs.json).
    DesignsRender {
        /// The JSON file.
        json: PathBuf,
    },
    /// Re-render the Markdown report and plots of a `compare` JSON file (e.g. docs/results/compare.json).
    Render {
        /// The JSON file.
        json: PathBuf,
    },
    /// consul-lite's client agents beside serf-agent, one run: idle RSS and CPU, DNS queries per
    /// second against a client, blocking-query fan-out (servers' CPU per write as watchers grow).
    Clients {
        /// The consul-lite binary (default: target/release/consul-lite).
        #[arg(long)]
        consul_bin: Option<PathBuf>,
        /// The serf-agent binary (default: target/release/serf-agent).
        #[arg(long)]
        agent_bin: Option<PathBuf>,
        /// Client agents (and serf-agents).
        #[arg(long, default_value_t = 5)]
        clients: usize,
        /// Idle window, seconds.
        #[arg(long, default_value_t = 20.0)]
        idle_secs: f64,
        /// Seconds of DNS queries per agent.
        #[arg(long, default_value_t = 5.0)]
        dns_secs: f64,
        /// Watchers at each fan-out step, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0,1000,10000")]
        watchers: Vec<usize>,
        /// Writes per fan-out step.
        #[arg(long, default_value_t = 200)]
        writes: usize,
        /// Write docs/results/clients.md.
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

/// Which binaries to run (shared by the subcommands that start agents).
#[derive(Debug, clap::Args)]
struct Binaries {
    /// The serf-agent binary (default: build it as `cluster_bench::system::AGENT_BUILD` says and
    /// use target/<arch>-unknown-linux-gnu/agent/serf-agent).
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// Do not build serf-agent first.
    #[arg(long)]
    no_build: bool,
    /// The HashiCorp Serf binary (default: `serf` on PATH).
    #[arg(long)]
    serf_bin: Option<PathBuf>,
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    Loopback,
    Netns,
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo run --release -p cluster-bench -- {}", args.join(" "))
}

fn main() -> anyhow::Result<()> {
    // Before any thread starts: Ctrl-C or a kill still stops every agent and removes the
    // network set-up.
    cluster_bench::process::on_stop_signal(|| {
        cluster_bench::iptables::remove_leftovers();
        cluster_bench::netns::remove_leftovers();
        cluster_bench::stress_suite::remove_leftovers();
    });
    let cli = Cli::parse();
    match cli.command {
        Command::Demo {
            nodes,
            profile,
            bins: Binaries { agent_bin, no_build, serf_bin },
            no_serf,
            no_consul,
            consul_bin,
            keep,
            write,
        } => {
            cluster_bench::demo::run(&cluster_bench::demo::DemoOptions {
                nodes,
                profile,
                agent_bin,
                build: !no_build,
                serf: !no_serf,
                serf_bin,
                consul: !no_consul,
                consul_bin,
                keep,
                write,
                command: command_line(),
            })?;
        }
        Command::Compare {
            sizes,
            quick,
            rounds,
            small_rounds,
            setup_tries,
            steady_secs,
            steady_after_secs,
            loss_secs,
            loss,
            backend,
            partition_secs,
            profile,
            bins: Binaries { agent_bin, no_build, serf_bin },
            ours_only,
            name,
            no_write,
            keep,
        } => {
            let mut o = cluster_bench::compare::CompareOptions::new(quick);
            o.sizes = sizes;
            o.rounds = rounds.unwrap_or(o.rounds).max(1);
            if small_rounds.is_some() {
                o.small_rounds = small_rounds;
            } else if rounds.is_some() {
                o.small_rounds = None;
            }
            o.setup_tries = setup_tries.unwrap_or(o.setup_tries);
            o.steady_secs = steady_secs.unwrap_or(o.steady_secs);
            o.steady_after_secs = steady_after_secs.unwrap_or(o.steady_after_secs);
            o.loss_secs = loss_secs.unwrap_or(o.loss_secs);
            o.loss = loss;
            o.backend = match backend {
                BackendArg::Loopback => cluster_bench::cluster::Backend::Loopback,
                BackendArg::Netns => cluster_bench::cluster::Backend::Netns,
            };
            o.partition_secs = partition_secs.unwrap_or(o.partition_secs);
            o.profile = profile;
            o.agent_bin = agent_bin;
            o.build = !no_build;
            o.serf_bin = serf_bin;
            o.ours_only = ours_only;
            o.keep = keep;
            if let Some(name) = name {
                o.name = name;
            }
            if no_write {
                o.out_dir = None;
            }
            o.command = command_line();
            let report = cluster_bench::compare::run(&o)?;
            println!("{}", report.markdown());
        }
        Command::Setup { nodes, tries, profile, pause, bins: Binaries { agent_bin, no_build, serf_bin }, verbose } => {
            cluster_bench::setup::run(&cluster_bench::setup::SetupOptions {
                nodes,
                tries,
                profile,
                agent_bin,
                build: !no_build,
                serf_bin,
                pause_secs: pause,
                verbose,
            })?;
        }
        Command::Stress {
            nodes,
            stalls,
            repeats,
            kills,
            profile,
            bins: Binaries { agent_bin, no_build, serf_bin },
            ours_only,
            name,
            no_write,
            keep,
            suite,
            sim,
            settings,
            systems,
            observe,
            parallel,
            runs,
        } => {
            if suite || sim {
                let settings = settings
                    .iter()
                    .map(|s| cluster_bench::stress_suite::Setting::parse(s))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let systems = systems
                    .iter()
                    .map(|s| {
                        s.split_once(':')
                            .map(|(a, b)| (a.to_owned(), b.to_owned()))
                            .ok_or_else(|| anyhow::anyhow!("--systems: {s:?} is not system:profile"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let observe =
                    std::time::Duration::try_from_secs_f64(observe).map_err(|e| anyhow::anyhow!("--observe: {e}"))?;
                if sim {
                    let report = cluster_bench::stress_sim::run(&cluster_bench::stress_sim::SimOptions {
                        nodes,
                        systems,
                        settings,
                        observe,
                        runs,
                        name: (!no_write).then(|| name.unwrap_or_else(|| "frontier-sim".into())),
                        command: command_line(),
                    })?;
                    println!("{}", report.markdown());
                    return Ok(());
                }
                let report = cluster_bench::stress_suite::run(&cluster_bench::stress_suite::SuiteOptions {
                    nodes,
                    systems,
                    settings,
                    observe,
                    kills,
                    parallel,
                    agent_bin,
                    build: !no_build,
                    serf_bin,
                    name: (!no_write).then(|| name.unwrap_or_else(|| "stress-suite".into())),
                    keep,
                    command: command_line(),
                })?;
                println!("{}", report.markdown());
                return Ok(());
            }
            let stalls = stalls
                .iter()
                .map(|&s| std::time::Duration::try_from_secs_f64(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--stalls: {e}"))?;
            let report = cluster_bench::stress::run(&cluster_bench::stress::StressOptions {
                nodes,
                stalls,
                repeats,
                kills,
                profile,
                agent_bin,
                build: !no_build,
                serf_bin,
                ours_only,
                name: (!no_write).then(|| name.unwrap_or_else(|| "stress".into())),
                keep,
                command: command_line(),
                ..Default::default()
            })?;
            println!("{}", report.markdown());
        }
        Command::Designs {
            sizes,
            quick,
            rounds,
            steady_secs,
            consul_bin,
            no_schedule,
            schedule_only,
            netns,
            also_netns,
            partition_secs,
            bins: Binaries { agent_bin, no_build, serf_bin },
            name,
            no_write,
            keep,
        } => {
            let mut o = cluster_bench::designs::DesignsOptions::new(quick);
            o.sizes = sizes.unwrap_or(o.sizes);
            o.rounds = rounds.unwrap_or(o.rounds).max(1);
            o.steady_secs = steady_secs.unwrap_or(o.steady_secs);
            o.agent_bin = agent_bin;
            o.consul_bin = consul_bin;
            o.schedule = o.schedule && !no_schedule;
            o.schedule_only = schedule_only;
            o.serf_bin = serf_bin;
            o.build = !no_build;
            o.keep = keep;
            o.partition_secs = partition_secs;
            if let Some(name) = name {
                o.name = name;
            }
            if no_write {
                o.out_dir = None;
            }
            o.command = command_line();
            if netns && !cluster_bench::netns::available() {
                anyhow::bail!("--netns needs root, ip and iptables");
            }
            let mut runs = Vec::new();
            if !netns {
                runs.push(o.clone());
            }
            if netns || also_netns {
                let mut n = o.clone();
                n.backend = cluster_bench::cluster::Backend::Netns;
                n.default_lock_delay = false;
                n.name = cluster_bench::designs::netns_name(&o.name);
                // The loopback run built the agents already.
                n.build = o.build && !also_netns;
                runs.push(n);
            }
            for o in runs {
                let report = cluster_bench::designs::run(&o)?;
                println!("{}", report.markdown());
            }
        }
        Command::DesignsRender { json } => {
            let report = cluster_bench::designs::render(&json)?;
            println!("{}", report.markdown());
        }
        Command::Kv { clients, phase_secs, rounds, failovers, quick, consul_bin, etcd_bin, write, keep } => {
            let options = cluster_bench::kv::KvOptions {
                clients,
                phase: std::time::Duration::from_secs_f64(phase_secs.unwrap_or(if quick { 4.0 } else { 10.0 })),
                rounds: rounds.unwrap_or(if quick { 1 } else { 2 }),
                failovers: failovers.unwrap_or(if quick { 2 } else { 3 }),
                consul_bin,
                etcd_bin,
                write,
                keep,
                command: command_line(),
            };
            let _results = cluster_bench::kv::run(&options)?;
        }
        Command::Render { json } => {
            let report = cluster_bench::compare::render(&json)?;
            println!("{}", report.markdown());
        }
        Command::Clients { consul_bin, agent_bin, clients, idle_secs, dns_secs, watchers, writes, write } => {
            let options = cluster_bench::clients::ClientsOptions {
                consul_bin,
                agent_bin,
                clients,
                idle_secs,
                dns_secs,
                watchers,
                writes,
                write,
            };
            println!("{}", cluster_bench::clients::run(&options, &command_line())?);
        }
        Command::Detection { args } => {
            let options = cluster_bench::detection::parse_args(&args)?;
            let report = cluster_bench::detection::run(&options, &command_line())?;
            println!("{}", report.markdown());
        }
    }
    Ok(())
}
