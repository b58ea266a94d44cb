//! `consul-lite`: a Consul-like agent and CLI. Consul's `/v1` HTTP API (key/value with
//! blocking queries, sessions and locks, transactions, the catalog, the agent's pool) and
//! Consul's commands, over this project's SWIM gossip ([`gossip_core`]), the registry state
//! machine ([`service_registry`]) and the hardened HTTP layer ([`http_serve`]).
//!
//! # What it does now
//!
//! - `consul-lite agent -dev`: one server with an in-memory registry (nothing kept on disk),
//!   joined to a LAN gossip pool with Consul's server tags (`role=consul`, `dc`, `port`),
//!   registered in its own catalog with a passing `serfHealth`; other members of the pool
//!   are registered as they join, marked critical when they fail (invalidating their
//!   sessions), and deregistered when they leave.
//! - The HTTP API on `-client:-http-port` (127.0.0.1:8500), with what Consul's clients rely
//!   on: `X-Consul-Index` / `X-Consul-LastContact` / `X-Consul-KnownLeader` on every read,
//!   blocking queries (`?index&wait`) woken only by changes to their own data, 404 with an
//!   index for a missing key, presence flags, JSON keys in any case, Go durations, Consul's
//!   plain-text errors and status codes, an optional master token.
//! - `consul-lite agent -server -bootstrap-expect N -data-dir DIR`: a server whose registry
//!   is replicated through Raft ([`consensus`]) with the other servers found in the pool
//!   (bootstrapped by the lowest name once N are alive; later servers added as voters by the
//!   leader); any server takes writes (followers forward them), `?consistent` reads go
//!   through the Raft read barrier, default and `?stale` reads are the server's own state.
//! - DNS on `-client:-dns-port` (127.0.0.1:8600), UDP and TCP ([`dns`]): Consul's
//!   `<service>.service.consul` (A, SRV with the target's address as an additional record),
//!   `<node>.node.consul`, NXDOMAIN with the SOA, answered from this agent's registry.
//! - Client agents (`consul-lite agent` without `-server` or `-dev`): no Raft state; a replica
//!   of the registry fed by a subscription to one server, writes and read barriers sent to a
//!   server over the server port ([`store`]'s remote store).
//! - The agent's own services and checks (HTTP, TCP, TTL, script; from the API or config files;
//!   kept in `-data-dir`), written to the catalog and kept in step with it ([`local`],
//!   [`checks`]).
//! - Client commands: `members`, `join`, `leave`, `force-leave`, `info`, `kv get|put|delete|
//!   export|import`, `operator raft list-peers|remove-peer`, `snapshot save|restore`,
//!   `services register|deregister`, `catalog services|nodes`, `lock`, `watch`, `monitor`,
//!   `version`.
//! - The lock-held primary (`-primary-http`, `-primary-acquire`, `-primary-release`): a
//!   `leader_failover::LockElection` driven over the agent's own API ([`primary`]).
//! - Threads: a client agent runs on a single-threaded runtime (as serf-agent: no idle workers,
//!   one malloc arena); a server or `-dev` agent on two workers. What an agent's resident set
//!   is made of, and why, is measured by `benches/consul-rss.sh` (`docs/consul-lite.md`).
//!
//! # What it does not do yet
//!
//! Consul's full ACL system, autopilot, events, prepared queries, WAN federation. See
//! `docs/consul-lite.md`.
//!
//! # Layout
//!
//! ```text
//!  cli ─► config (files + flags ─► Settings) ─► agent (gossip, catalog reconcile, HTTP)
//!                                                  │
//!  http/ (one module per endpoint family) ─► store::Store ─► DevStore (Registry + WatchHub
//!                                                              + leader side: lock-delays,
//!                                                              session TTL timers)
//!                                                           └► RaftStore (consensus + the
//!                                                              replicated registry)
//!  server/ (bootstrap and voters from the pool, operator raft) ─► RaftStore
//!  commands ─► client (hyper, one connection per request)
//! ```

mod agent;
mod checks;
mod cli;
mod client;
mod commands;
mod commands_lock;
mod commands_monitor;
mod commands_services;
mod config;
mod dns;
mod duration;
mod http;
mod local;
mod primary;
mod server;
mod store;
mod watch;

use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse_from(cli::normalize_args(std::env::args_os()));
    // An agent's settings are read before the runtime is built: they decide its threads.
    let settings = match &cli.command {
        Command::Agent(args) => match config::resolve(args) {
            Ok(settings) => Some(settings),
            Err(error) => {
                eprintln!("{error:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let runtime = match runtime_for(settings.as_ref()) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match settings {
        Some(settings) => runtime.block_on(run_agent(settings)),
        None => runtime.block_on(run(cli.command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime for an agent with `settings`, or for a command (`None`). A client agent's work
/// is small and IO-bound (gossip, its replica's feed, its checks, its API): one thread, as
/// serf-agent, which keeps its memory low (no idle workers and their stacks, one malloc arena:
/// glibc gives every thread that allocates an arena of its own). A server (or `-dev`) keeps two
/// workers: Raft, the replicated store and the clients' feeds must not wait behind one
/// another's work. Commands keep two workers too.
fn runtime_for(settings: Option<&config::Settings>) -> std::io::Result<tokio::runtime::Runtime> {
    match settings {
        Some(settings) if !settings.server && !settings.dev => {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        _ => tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build(),
    }
}

async fn run_agent(settings: config::Settings) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
    let logging = agent_support::logging::Logging::init_with(filter).map_err(anyhow::Error::msg)?;
    for warning in &settings.warnings {
        tracing::warn!("config: {warning}");
    }
    agent::run(settings, logging.hub()).await
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Agent(args) => run_agent(config::resolve(&args)?).await,
        Command::Members { client, detailed } => commands::members(&client, detailed).await,
        Command::Join { client, addresses } => commands::join(&client, &addresses).await,
        Command::Leave { client } => commands::leave(&client).await,
        Command::ForceLeave { client, prune, node } => commands::force_leave(&client, &node, prune).await,
        Command::Info { client } => commands::info(&client).await,
        Command::Kv(command) => commands::kv(command).await,
        Command::Operator(command) => commands::operator(command).await,
        Command::Snapshot(command) => commands::snapshot(command).await,
        Command::Services(command) => commands_services::services(command).await,
        Command::Catalog(command) => commands_services::catalog(command).await,
        Command::Lock(args) => commands_lock::run(args).await,
        Command::Watch(args) => watch::run(args).await,
        Command::Monitor(args) => commands_monitor::run(args).await,
        Command::Version => {
            commands::version();
            Ok(())
        }
    }
}
