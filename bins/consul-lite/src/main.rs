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
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Agent(args) => {
            let settings = config::resolve(&args)?;
            let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
            let logging = agent_support::logging::Logging::init_with(filter).map_err(anyhow::Error::msg)?;
            for warning in &settings.warnings {
                tracing::warn!("config: {warning}");
            }
            agent::run(settings, logging.hub()).await
        }
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
