//! Command-line parsing: Serf's single-dash flags (`-node`, `-rpc-addr`) are turned into clap's
//! double-dash form before clap sees them, so both `-node x` and `--node x` work.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{parse_key_value, AgentConfig, DEFAULT_RPC_ADDR};

/// Rewrite `-word[=value]` (a word of two or more characters starting with a letter) as
/// `--word[=value]`. Left alone: `--flags`, single-letter flags (`-h`), `-`, negative numbers,
/// and everything after `--`.
pub(crate) fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for (index, arg) in args.into_iter().enumerate() {
        if index == 0 || passthrough {
            out.push(arg);
            continue;
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

fn is_single_dash_word(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('-') else { return false };
    let word = rest.split('=').next().unwrap_or_default();
    word.len() > 1
        && word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `serf-agent`: a gossip agent and the commands that talk to it.
#[derive(Debug, Parser)]
#[command(
    name = "serf-agent",
    version,
    args_override_self = true,
    about = "A Serf-like gossip agent (its commands and flags, not its wire protocol or RPC): membership, failure detection, events, queries, and a primary role that fails over",
    after_help = "Flags take one dash or two (-node or --node). Client commands reach the agent at -rpc-addr \
                  (env SERF_RPC_ADDR, default 127.0.0.1:7373) with -rpc-auth (env SERF_RPC_AUTH).\n\
                  Exit codes: 0 success, 1 error, 2 bad usage."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run an agent
    Agent(Box<AgentArgs>),
    /// List the members of the cluster
    Members(MembersArgs),
    /// Join the agent to a cluster through other agents
    Join(JoinArgs),
    /// Make the agent leave the cluster gracefully and exit
    Leave(RpcArgs),
    /// Remove a failed member (it is marked left; -prune forgets it at once)
    ForceLeave(ForceLeaveArgs),
    /// Send a user event to the cluster
    Event(EventArgs),
    /// Send a query and print the acknowledgements and responses
    Query(QueryArgs),
    /// Stream the agent's log
    Monitor(MonitorArgs),
    /// Change the agent's tags
    Tags(TagsArgs),
    /// Show information and statistics about the agent
    Info(FormatArgs),
    /// Manage the encryption keys of the cluster
    Keys(KeysArgs),
    /// Generate a new encryption key
    Keygen,
    /// Estimate the round-trip time between nodes from network coordinates
    Rtt(RttArgs),
    /// Check that every member answers a ping query
    Reachability(ReachabilityArgs),
    /// Print the version
    Version,
    /// Show who is primary, as this agent sees it
    Primary(FormatArgs),
}

/// `agent`: the config file options, then the flags that mirror the config keys.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Config file, JSON or TOML by extension (repeatable, read in order)
    #[arg(long = "config-file", value_name = "PATH")]
    pub(crate) config_file: Vec<PathBuf>,
    /// Directory of config files (*.json, *.toml), read in lexical order (repeatable)
    #[arg(long = "config-dir", value_name = "DIR")]
    pub(crate) config_dir: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) config: AgentConfig,
}

/// How to reach the agent.
#[derive(Debug, Clone, Args)]
pub(crate) struct RpcArgs {
    /// Address of the agent's RPC API
    #[arg(long = "rpc-addr", value_name = "ADDR", env = "SERF_RPC_ADDR", default_value = DEFAULT_RPC_ADDR, value_parser = parse_rpc_addr)]
    pub(crate) rpc_addr: String,
    /// RPC token, if the agent requires one
    #[arg(long = "rpc-auth", value_name = "TOKEN", env = "SERF_RPC_AUTH", hide_env_values = true)]
    pub(crate) rpc_auth: Option<String>,
}

/// `HOST:PORT` or `IP:PORT`.
fn parse_rpc_addr(text: &str) -> Result<String, String> {
    if text.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(text.to_owned());
    }
    match text.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && port.parse::<u16>().is_ok() && !host.contains(char::is_whitespace) =>
        {
            Ok(text.to_owned())
        }
        _ => Err(format!("{text:?} is not IP:PORT or HOST:PORT")),
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub(crate) enum Format {
    #[default]
    Text,
    Json,
}

/// Commands with only the RPC flags and `-format`.
#[derive(Debug, Args)]
pub(crate) struct FormatArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
}

/// `members`.
#[derive(Debug, Args)]
pub(crate) struct MembersArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Only members whose status (alive, suspect, failed, left) matches this regexp
    #[arg(long, value_name = "REGEXP")]
    pub(crate) status: Option<String>,
    /// Only members whose name matches this regexp
    #[arg(long, value_name = "REGEXP")]
    pub(crate) name: Option<String>,
    /// Only members whose tag KEY matches the regexp (repeatable)
    #[arg(long = "tag", value_name = "KEY=REGEXP", value_parser = parse_key_value)]
    pub(crate) tag: Vec<(String, String)>,
    /// Show protocol versions and incarnations
    #[arg(long)]
    pub(crate) detailed: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
}

/// `join`.
#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Replay past user events to the joined node
    #[arg(long)]
    pub(crate) replay: bool,
    /// Addresses of agents to join (gossip port, default 7946)
    #[arg(required = true, value_name = "ADDR")]
    pub(crate) addrs: Vec<String>,
}

/// `force-leave`.
#[derive(Debug, Args)]
pub(crate) struct ForceLeaveArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Forget the member at once instead of keeping it as left until the tombstone timeout
    #[arg(long)]
    pub(crate) prune: bool,
    /// The member to remove
    pub(crate) node: String,
}

/// `event`.
#[derive(Debug, Args)]
pub(crate) struct EventArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Let handlers see only the last of several events of this name sent close together
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
    pub(crate) coalesce: bool,
    /// Event name
    pub(crate) name: String,
    /// Payload
    pub(crate) payload: Option<String>,
}

/// `query`.
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Only this node answers (repeatable)
    #[arg(long = "node", value_name = "NAME")]
    pub(crate) node: Vec<String>,
    /// Only nodes whose tag KEY matches the regexp answer (repeatable)
    #[arg(long = "tag", value_name = "KEY=REGEXP", value_parser = parse_key_value)]
    pub(crate) tag: Vec<(String, String)>,
    /// How long to wait for answers, e.g. 5s [default: scaled with the cluster size]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub(crate) timeout: Option<String>,
    /// Do not ask for acknowledgements
    #[arg(long = "no-ack")]
    pub(crate) no_ack: bool,
    /// Relay each response through this many other members (more reliable, more traffic)
    #[arg(long = "relay-factor", value_name = "N", default_value_t = 0)]
    pub(crate) relay_factor: u8,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
    /// Query name
    pub(crate) name: String,
    /// Payload
    pub(crate) payload: Option<String>,
}

fn parse_duration_arg(text: &str) -> Result<String, String> {
    crate::duration::parse_duration(text).map(|_| text.to_owned())
}

/// `monitor`.
#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Least severe level shown: trace, debug, info, warn, error
    #[arg(long = "log-level", value_name = "LEVEL", default_value = "info", value_parser = parse_level_arg)]
    pub(crate) log_level: String,
}

fn parse_level_arg(text: &str) -> Result<String, String> {
    agent_support::logging::parse_level(text)
        .map(|_| text.to_owned())
        .ok_or_else(|| format!("{text:?} is not a log level (trace, debug, info, warn, error)"))
}

/// `tags`.
#[derive(Debug, Args)]
pub(crate) struct TagsArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Set a tag (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) set: Vec<(String, String)>,
    /// Delete a tag (repeatable)
    #[arg(long = "delete", value_name = "KEY")]
    pub(crate) delete: Vec<String>,
}

/// `keys`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("operation").required(true).args(["install", "use_key", "remove", "list"])))]
pub(crate) struct KeysArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Install a new key on every member
    #[arg(long, value_name = "KEY")]
    pub(crate) install: Option<String>,
    /// Make an installed key the primary key on every member
    #[arg(long = "use", value_name = "KEY")]
    pub(crate) use_key: Option<String>,
    /// Remove a key from every member
    #[arg(long, value_name = "KEY")]
    pub(crate) remove: Option<String>,
    /// List the keys installed in the cluster and how many members hold each
    #[arg(long)]
    pub(crate) list: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
}

/// `rtt`.
#[derive(Debug, Args)]
pub(crate) struct RttArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// First node (or the only one: then from the agent's node)
    pub(crate) node: String,
    /// Second node
    pub(crate) other: Option<String>,
}

/// `reachability`.
#[derive(Debug, Args)]
pub(crate) struct ReachabilityArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// List every member that answered too
    #[arg(long)]
    pub(crate) verbose: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let argv = std::iter::once("serf-agent").chain(args.iter().copied()).map(OsString::from);
        Cli::try_parse_from(normalize_args(argv))
    }

    #[test]
    fn single_dash_words_become_double_dash() {
        let argv: Vec<OsString> =
            ["serf-agent", "agent", "-node=a", "-tag", "x=-1", "-h", "-", "-5", "--bind", "x", "--", "-payload"]
                .map(OsString::from)
                .to_vec();
        let out: Vec<String> = normalize_args(argv).into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(
            out,
            ["serf-agent", "agent", "--node=a", "--tag", "x=-1", "-h", "-", "-5", "--bind", "x", "--", "-payload"]
        );
    }

    #[test]
    fn agent_flags_in_serf_style() {
        let cli = parse(&[
            "agent",
            "-node",
            "n0",
            "-node",
            "n1",
            "-bind=127.0.0.1:7000",
            "-tag",
            "role=primary",
            "-rejoin",
            "-join",
            "a",
        ])
        .unwrap();
        let Command::Agent(args) = cli.command else { panic!("not agent") };
        assert_eq!(args.config.node_name.as_deref(), Some("n1"));
        assert_eq!(args.config.tag, vec![("role".to_owned(), "primary".to_owned())]);
        assert_eq!(args.config.rejoin_after_leave, Some(true));
        assert_eq!(args.config.join, vec!["a".to_owned()]);
        // As Go's flag package: a repeated single-value flag takes its last value; lists append.
        let cli = parse(&["agent", "-join", "a", "-join", "b", "-log-level", "info", "-log-level", "debug"]).unwrap();
        let Command::Agent(args) = cli.command else { panic!("not agent") };
        assert_eq!(args.config.join, ["a", "b"]);
        assert_eq!(args.config.log_level.as_deref(), Some("debug"));
    }

    #[test]
    fn client_flags_and_errors() {
        let cli = parse(&["members", "-status", "alive", "-tag", "role=prim.*", "-format", "json"]).unwrap();
        let Command::Members(args) = cli.command else { panic!("not members") };
        assert_eq!(args.format, Format::Json);
        assert_eq!(args.rpc.rpc_addr, "127.0.0.1:7373");

        let err = parse(&["members", "-bogus"]).unwrap_err().to_string();
        assert!(err.contains("--bogus"), "{err}");
        let err = parse(&["members", "-rpc-addr", "nowhere"]).unwrap_err().to_string();
        assert!(err.contains("\"nowhere\""), "{err}");
        let err = parse(&["agent", "-tag", "novalue"]).unwrap_err().to_string();
        assert!(err.contains("\"novalue\" is not KEY=VALUE"), "{err}");
        let err = parse(&["query", "-timeout", "5 parsecs", "q"]).unwrap_err().to_string();
        assert!(err.contains("unit"), "{err}");
        assert!(parse(&["keys"]).is_err());
        assert!(parse(&["event", "deploy", "v1", "-coalesce=false"]).is_ok());
    }
}
