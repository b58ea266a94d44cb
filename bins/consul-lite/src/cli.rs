//! Command-line parsing: Consul's single-dash flags (`-node`, `-http-addr`) are turned into
//! clap's double-dash form before clap sees them, so both `-node x` and `--node x` work.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Rewrites `-word[=value]` (two or more characters, starting with a letter) as
/// `--word[=value]`. Left alone: `--flags`, single letters, `-`, negative numbers, and all
/// after `--`.
pub(crate) fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    // `lock` and `watch` run a command given after their flags: as Go's flag package, stop at
    // the first argument that is not a flag (or a flag's value), and leave the command alone.
    let mut command_flags: Option<&[&str]> = None;
    let mut takes_value = false;
    for (index, arg) in args.into_iter().enumerate() {
        if index == 0 || passthrough {
            out.push(arg);
            continue;
        }
        if index == 1 {
            command_flags = match arg.to_str() {
                Some("lock") => Some(LOCK_VALUE_FLAGS),
                Some("watch") => Some(WATCH_VALUE_FLAGS),
                _ => None,
            };
            out.push(arg);
            continue;
        }
        if let (Some(flags), Some(text)) = (command_flags, arg.to_str()) {
            let word = text.trim_start_matches('-');
            let is_flag = text.starts_with('-') && text != "-";
            if !is_flag && !takes_value {
                // The first positional argument: everything from here on is passed through.
                passthrough = true;
                out.push("--".into());
                out.push(arg);
                continue;
            }
            takes_value = is_flag && !word.contains('=') && flags.contains(&word);
        }
        if arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        match arg.to_str() {
            Some(text) if is_single_dash_word(text) => out.push(OsString::from(format!("-{text}"))),
            _ => out.push(arg),
        }
    }
    out
}

/// The flags of `lock` that take a value (the others are switches).
const LOCK_VALUE_FLAGS: &[&str] = &["n", "timeout", "name", "monitor-retry", "http-addr", "token"];
/// The flags of `watch` that take a value.
const WATCH_VALUE_FLAGS: &[&str] = &["type", "key", "prefix", "service", "tag", "state", "http-addr", "token"];

fn is_single_dash_word(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('-') else { return false };
    let word = rest.split('=').next().unwrap_or_default();
    word.len() > 1
        && word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `consul-lite`: a Consul-like agent and the commands that talk to it.
#[derive(Debug, Parser)]
#[command(
    name = "consul-lite",
    version,
    args_override_self = true,
    about = "A Consul-like agent (Consul's /v1 HTTP API, DNS and commands) over SWIM gossip: Raft servers (-server) or one in-memory server (-dev)",
    after_help = "Flags take one dash or two (-node or --node). Client commands reach the agent at -http-addr \
                  (env CONSUL_HTTP_ADDR, default 127.0.0.1:8500) with -token (env CONSUL_HTTP_TOKEN)."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run an agent: a Raft server (`-server -bootstrap-expect N -data-dir DIR`) or `-dev`.
    Agent(Box<AgentArgs>),
    /// List the members of the gossip pool.
    Members {
        #[command(flatten)]
        client: ClientArgs,
        /// Show every tag.
        #[arg(long)]
        detailed: bool,
    },
    /// Ask the agent to join a pool through other agents' gossip addresses.
    Join {
        #[command(flatten)]
        client: ClientArgs,
        /// Gossip addresses (`host[:port]`, port 8301 by default).
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Make the agent leave the pool gracefully and stop.
    Leave {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Declare a failed member left on its behalf.
    ForceLeave {
        #[command(flatten)]
        client: ClientArgs,
        /// Forget the member at once.
        #[arg(long)]
        prune: bool,
        /// The member's name.
        node: String,
    },
    /// Show what the agent reports about itself.
    Info {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The key/value store.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Operator tools (`operator raft list-peers | remove-peer`).
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Save the servers' state to a file, or restore it (`snapshot save|restore FILE`).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Print the version.
    Version,
    /// The local agent's services (`services register | deregister`).
    #[command(subcommand)]
    Services(crate::commands_services::ServicesCommand),
    /// The catalog (`catalog services | nodes`).
    #[command(subcommand)]
    Catalog(crate::commands_services::CatalogCommand),
    /// Hold a lock (`PREFIX/.lock`) while a child command runs, as `consul lock`.
    Lock(LockArgs),
    /// Watch a view of the catalog or the key/value store; run a handler on every change.
    Watch(WatchArgs),
    /// Stream the agent's log lines until interrupted (`GET /v1/agent/monitor`).
    Monitor(MonitorArgs),
}

/// `consul-lite monitor [-log-level L] [-log-json]`
#[derive(Debug, Clone, Args)]
pub(crate) struct MonitorArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// The most verbose level to show: trace, debug, info, warn, err.
    #[arg(long, default_value = "info")]
    pub(crate) log_level: String,
    /// Lines as JSON objects (`@timestamp`, `@level`, `@module`, `@message`).
    #[arg(long)]
    pub(crate) log_json: bool,
}

/// `consul-lite snapshot ...`
#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Save the registry (KV, catalog, sessions) to FILE (`GET /v1/snapshot`).
    Save {
        #[command(flatten)]
        client: ClientArgs,
        /// Take it from the agent's own state, without the read barrier.
        #[arg(long)]
        stale: bool,
        /// Where to write it (replaced atomically once verified).
        file: PathBuf,
    },
    /// Replace the whole registry with FILE's, on every server (`PUT /v1/snapshot`).
    Restore {
        #[command(flatten)]
        client: ClientArgs,
        /// A file written by `snapshot save`.
        file: PathBuf,
    },
}

/// `consul-lite lock [-n 1] [-timeout D] [-name N] [-monitor-retry N] PREFIX CHILD...`
#[derive(Debug, Clone, Args)]
pub(crate) struct LockArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// How many may hold the lock at once (only 1: the semaphore is not implemented).
    #[arg(short = 'n', default_value_t = 1)]
    pub(crate) limit: u32,
    /// Give up acquiring after this long (Go duration; 0: wait forever).
    #[arg(long, default_value = "0s")]
    pub(crate) timeout: String,
    /// The session's name.
    #[arg(long, default_value = "Consul lock")]
    pub(crate) name: String,
    /// How many consecutive failed checks of the lock (2 s apart) to ride out before taking it
    /// as lost.
    #[arg(long, default_value_t = 3)]
    pub(crate) monitor_retry: u32,
    /// Print what the command does.
    #[arg(long)]
    pub(crate) verbose: bool,
    /// The key prefix: the lock is `PREFIX/.lock`.
    pub(crate) prefix: String,
    /// The command to run while holding the lock (joined with spaces, run by `/bin/sh -c`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) child: Vec<String>,
}

/// `consul-lite watch -type T [-key K] [-prefix P] [-service S] [-tag T] [-passing] [HANDLER...]`
#[derive(Debug, Clone, Args)]
pub(crate) struct WatchArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// key, keyprefix, services, service, nodes or checks.
    #[arg(long = "type")]
    pub(crate) kind: String,
    /// The key (type key).
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// The key prefix (type keyprefix).
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// The service (type service; type checks: that service's checks).
    #[arg(long)]
    pub(crate) service: Option<String>,
    /// Only instances with this tag (type service).
    #[arg(long)]
    pub(crate) tag: Option<String>,
    /// The check state (type checks without -service: any, passing, warning, critical).
    #[arg(long)]
    pub(crate) state: Option<String>,
    /// Only passing instances (type service).
    #[arg(long)]
    pub(crate) passing: bool,
    /// Run on every change with the JSON on stdin (joined with spaces, `/bin/sh -c`); without
    /// it the JSON is printed once.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) handler: Vec<String>,
}

/// How client commands reach the agent.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClientArgs {
    /// The agent's HTTP address (`host:port` or `http://host:port`).
    #[arg(long, env = "CONSUL_HTTP_ADDR", default_value = "127.0.0.1:8500")]
    pub(crate) http_addr: String,
    /// The ACL token to send (`X-Consul-Token`).
    #[arg(long, env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

/// `consul-lite operator ...`
#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCommand {
    /// The Raft servers.
    #[command(subcommand)]
    Raft(RaftCommand),
}

/// `consul-lite operator raft ...`
#[derive(Debug, Subcommand)]
pub(crate) enum RaftCommand {
    /// List the servers in the Raft configuration, with the leader and who votes.
    ListPeers {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a server from the Raft configuration (a failed server that will not return).
    RemovePeer {
        #[command(flatten)]
        client: ClientArgs,
        /// The server's RPC address (`IP:port`).
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        address: Option<String>,
        /// The server's node ID (or its Raft id).
        #[arg(long)]
        id: Option<String>,
    },
}

/// `consul-lite kv ...`
#[derive(Debug, Subcommand)]
pub(crate) enum KvCommand {
    /// Print a key's value (or the keys under a prefix).
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// Every key under the prefix, as `key:value` lines.
        #[arg(long)]
        recurse: bool,
        /// Only the keys under the prefix.
        #[arg(long)]
        keys: bool,
        /// With -keys: stop listing at this separator.
        #[arg(long, default_value = "/")]
        separator: String,
        /// Every field of the entry.
        #[arg(long)]
        detailed: bool,
        /// The key or prefix.
        #[arg(default_value = "")]
        key: String,
    },
    /// Write a value (`-` reads stdin, `@file` reads a file).
    Put {
        #[command(flatten)]
        client: ClientArgs,
        /// Write only if the key's modify index is -modify-index (0: only if absent).
        #[arg(long)]
        cas: bool,
        /// The modify index for -cas.
        #[arg(long)]
        modify_index: Option<u64>,
        /// Opaque flags stored with the value.
        #[arg(long, default_value_t = 0)]
        flags: u64,
        /// Acquire the lock on the key for -session.
        #[arg(long)]
        acquire: bool,
        /// Release the lock on the key held by -session.
        #[arg(long)]
        release: bool,
        /// The session for -acquire / -release.
        #[arg(long)]
        session: Option<String>,
        /// The key.
        key: String,
        /// The value (empty if absent).
        value: Option<String>,
    },
    /// Delete a key (or a prefix with -recurse).
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        /// Delete every key under the prefix.
        #[arg(long)]
        recurse: bool,
        /// Delete only if the key's modify index is -modify-index.
        #[arg(long)]
        cas: bool,
        /// The modify index for -cas.
        #[arg(long)]
        modify_index: Option<u64>,
        /// The key or prefix.
        key: String,
    },
    /// Print every key under a prefix as Consul's JSON export.
    Export {
        #[command(flatten)]
        client: ClientArgs,
        /// The prefix.
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Write the keys of a JSON export (an argument, `@file`, or `-` for stdin).
    Import {
        #[command(flatten)]
        client: ClientArgs,
        /// Prepended to every key.
        #[arg(long, default_value = "")]
        prefix: String,
        /// The export (default: stdin).
        #[arg(default_value = "-")]
        data: String,
    },
}

/// `consul-lite agent` flags (Consul's names). Values given here override config files.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct AgentArgs {
    /// One in-memory server with everything on, for quick starts (nothing is kept).
    #[arg(long)]
    pub(crate) dev: bool,
    /// Run as a server: the registry replicated through Raft (needs -data-dir).
    #[arg(long)]
    pub(crate) server: bool,
    /// Servers to see alive in the pool before bootstrapping Raft (the lowest name does).
    #[arg(long)]
    pub(crate) bootstrap_expect: Option<String>,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub(crate) node: Option<String>,
    /// The datacenter (default dc1).
    #[arg(long)]
    pub(crate) datacenter: Option<String>,
    /// Address for gossip and server RPC (default 127.0.0.1 with -dev).
    #[arg(long)]
    pub(crate) bind: Option<String>,
    /// Address for the HTTP API (default 127.0.0.1).
    #[arg(long)]
    pub(crate) client: Option<String>,
    /// HTTP API port (default 8500).
    #[arg(long)]
    pub(crate) http_port: Option<String>,
    /// Gossip (LAN) port, UDP and TCP (default 8301).
    #[arg(long)]
    pub(crate) serf_lan_port: Option<String>,
    /// Server RPC port (default 8300); reported as the leader's address.
    #[arg(long)]
    pub(crate) server_port: Option<String>,
    /// DNS port, UDP and TCP, on -client (default 8600; -1 turns DNS off).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) dns_port: Option<String>,
    /// The DNS domain answered (default consul.).
    #[arg(long)]
    pub(crate) domain: Option<String>,
    /// Data directory (accepted; -dev keeps nothing on disk).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// When set, every HTTP request must carry this token (X-Consul-Token or ?token=).
    #[arg(long)]
    pub(crate) acl_master_token: Option<String>,
    /// Gossip encryption key (base64, 16, 24 or 32 bytes).
    #[arg(long)]
    pub(crate) encrypt: Option<String>,
    /// Join these gossip addresses at start (must reach one).
    #[arg(long = "join")]
    pub(crate) join: Vec<String>,
    /// Join these gossip addresses at start, retrying until one answers.
    #[arg(long = "retry-join")]
    pub(crate) retry_join: Vec<String>,
    /// A JSON config file with Consul's field names (repeatable; later ones win).
    #[arg(long = "config-file")]
    pub(crate) config_file: Vec<PathBuf>,
    /// A directory of `*.json` config files, read in name order (repeatable).
    #[arg(long = "config-dir")]
    pub(crate) config_dir: Vec<PathBuf>,
    /// Log level: trace, debug, info, warn, err (default info).
    #[arg(long)]
    pub(crate) log_level: Option<String>,

    // Script checks (the agent's own services and checks).
    /// Run script checks (`Args`) from any source, the HTTP API included.
    #[arg(long)]
    pub(crate) enable_script_checks: bool,
    /// Run script checks only when they come from config files.
    #[arg(long)]
    pub(crate) enable_local_script_checks: bool,

    // The lock-held primary (any of these turns the election on; see primary.rs).
    /// Serve the primary web service here: 200 while this node holds the primary lock, 503 otherwise.
    #[arg(long = "primary-http", value_name = "ADDR")]
    pub(crate) primary_http: Option<String>,
    /// Script run when this node becomes primary (env PRIMARY_NODE, FENCING_TOKEN, ...).
    #[arg(long = "primary-acquire", value_name = "SCRIPT")]
    pub(crate) primary_acquire: Option<String>,
    /// Script run when this node stops being primary.
    #[arg(long = "primary-release", value_name = "SCRIPT")]
    pub(crate) primary_release: Option<String>,
    /// The lock key of the primary [default: service/primary/leader].
    #[arg(long = "primary-key", value_name = "KEY")]
    pub(crate) primary_key: Option<String>,
    /// Lock-delay of the election's session [default: 1s].
    #[arg(long = "primary-lock-delay", value_name = "DURATION")]
    pub(crate) primary_lock_delay: Option<String>,
    /// Step-down bound: a primary that cannot confirm its lock for this long stops [default: 1.5s].
    #[arg(long = "primary-step-down", value_name = "DURATION")]
    pub(crate) primary_step_down: Option<String>,
    /// Gossip tag carrying primary / standby [default: primary_role].
    #[arg(long = "primary-tag", value_name = "TAG")]
    pub(crate) primary_tag: Option<String>,
}
