//! The agent's configuration: one struct ([`AgentConfig`]) that is both the `agent` command's
//! flags (clap) and the keys of its config files (serde, JSON or TOML), merged in order (files of
//! `-config-file` and `-config-dir` first, flags last), then checked into [`Settings`], whose
//! errors name the key and the flag.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gossip_core::{Key, Keyring};

use crate::duration::parse_duration;
use crate::handlers::{HandlerSpec, DEFAULT_HANDLER_TIMEOUT};

/// Default gossip port (UDP and TCP), as Serf.
pub(crate) const DEFAULT_GOSSIP_PORT: u16 = 7946;
/// Default RPC address, as Serf.
pub(crate) const DEFAULT_RPC_ADDR: &str = "127.0.0.1:7373";

/// Flags of `serf-agent agent` and keys of its config files. Every field is optional so that
/// layers can be merged; [`Settings::from_config`] applies the defaults and checks the values.
#[derive(Debug, Default, Clone, PartialEq, clap::Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AgentConfig {
    /// Name of this node, unique in the cluster [default: the host name]
    #[arg(long = "node", value_name = "NAME")]
    #[serde(alias = "node")]
    pub(crate) node_name: Option<String>,

    /// Address to bind gossip to (UDP and TCP): IP or IP:PORT [default: 0.0.0.0:7946]
    #[arg(long, value_name = "ADDR")]
    pub(crate) bind: Option<String>,

    /// Address other nodes reach this one at: IP or IP:PORT [default: the bind address]
    #[arg(long, value_name = "ADDR")]
    pub(crate) advertise: Option<String>,

    /// Agent to join at start (repeatable); the agent exits when none can be joined
    #[arg(long = "join", value_name = "ADDR")]
    #[serde(alias = "start_join")]
    pub(crate) join: Vec<String>,

    /// Agent to join in the background, retrying until one answers (repeatable)
    #[arg(long = "retry-join", value_name = "ADDR")]
    pub(crate) retry_join: Vec<String>,

    /// Pause between two retry-join attempts [default: 30s]
    #[arg(long = "retry-interval", value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) retry_interval: Option<String>,

    /// Give up retry-join after this many attempts and exit; 0 retries forever [default: 0]
    #[arg(long = "retry-max", value_name = "N")]
    pub(crate) retry_max: Option<u32>,

    /// Tag of this node (repeatable); config key: tags = { KEY = VALUE }
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    #[serde(skip)]
    pub(crate) tag: Vec<(String, String)>,

    /// Tags from config files (`tags`).
    #[arg(skip)]
    pub(crate) tags: BTreeMap<String, String>,

    /// JSON file of tags: loaded at start over the other tags, rewritten by `serf-agent tags`
    #[arg(long = "tags-file", value_name = "PATH")]
    pub(crate) tags_file: Option<PathBuf>,

    /// Event handler (repeatable): `[FILTER=]SCRIPT`, FILTER like member-join,user:deploy,query:uptime
    #[arg(long = "event-handler", value_name = "[FILTER=]SCRIPT")]
    #[serde(alias = "event_handler")]
    pub(crate) event_handlers: Vec<String>,

    /// Encryption key: base64 of 16, 24 or 32 bytes (see `serf-agent keygen`)
    #[arg(long = "encrypt", value_name = "KEY")]
    pub(crate) encrypt_key: Option<String>,

    /// JSON file of base64 keys, the first one primary; kept up to date by `serf-agent keys`
    #[arg(long = "keyring-file", value_name = "PATH")]
    pub(crate) keyring_file: Option<PathBuf>,

    /// Snapshot file: a restarted agent rejoins the members it lists, without -join
    #[arg(long = "snapshot", value_name = "PATH")]
    pub(crate) snapshot_path: Option<PathBuf>,

    /// Rejoin from the snapshot even after a graceful leave
    #[arg(long = "rejoin", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) rejoin_after_leave: Option<bool>,

    /// Replay past user events when joining at start
    #[arg(long = "replay", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) replay_on_join: Option<bool>,

    /// Timing preset: lan, wan or local [default: lan]
    #[arg(long, value_name = "PROFILE")]
    pub(crate) profile: Option<String>,

    /// Cluster label carried by every packet; agents with another label are refused
    #[arg(long = "cluster-label", value_name = "LABEL")]
    pub(crate) cluster_label: Option<String>,

    /// Address of the RPC/HTTP API [default: 127.0.0.1:7373]
    #[arg(long = "rpc-addr", value_name = "ADDR")]
    pub(crate) rpc_addr: Option<String>,

    /// Token every RPC request must carry (Authorization: Bearer TOKEN or X-Serf-Token)
    #[arg(long = "rpc-auth", value_name = "TOKEN")]
    pub(crate) rpc_auth: Option<String>,

    /// Log level: trace, debug, info, warn, error, or a tracing filter [default: info]
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,

    /// Leave gracefully on SIGTERM (otherwise SIGTERM exits at once)
    #[arg(long = "leave-on-terminate", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) leave_on_terminate: Option<bool>,

    /// Exit on SIGINT without leaving (the others then see a failure)
    #[arg(long = "skip-leave-on-interrupt", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) skip_leave_on_interrupt: Option<bool>,

    /// Member events are batched for this long before handlers run [default: 50ms]
    #[arg(long = "coalesce-period", value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) coalesce_period: Option<String>,

    /// A batch of member events ends early after this long without a new one [default: 20ms]
    #[arg(long = "quiescent-period", value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) quiescent_period: Option<String>,

    /// User events sent with coalescing are held this long, the newest of a name delivered [default: 1s]
    #[arg(long = "user-coalesce-period", value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) user_coalesce_period: Option<String>,

    /// ... or until no such event came for this long [default: 200ms]
    #[arg(long = "user-quiescent-period", value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) user_quiescent_period: Option<String>,

    /// Pause between attempts to reconnect to a failed member [default: 30s]
    #[arg(long = "reconnect-interval", value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) reconnect_interval: Option<String>,

    /// Failed members are reaped after this long [default: 24h]
    #[arg(long = "reconnect-timeout", value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) reconnect_timeout: Option<String>,

    /// Left members are reaped after this long [default: 24h]
    #[arg(long = "tombstone-timeout", value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) tombstone_timeout: Option<String>,

    /// Do not compute network coordinates (rtt then has nothing to report)
    #[arg(long = "disable-coordinates", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) disable_coordinates: Option<bool>,

    /// Largest user event (name + payload) in bytes [default: 512]
    #[arg(long = "user-event-size-limit", value_name = "BYTES")]
    pub(crate) user_event_size_limit: Option<usize>,

    /// Largest query (name + payload + filters) in bytes [default: 1024]
    #[arg(long = "query-size-limit", value_name = "BYTES")]
    pub(crate) query_size_limit: Option<usize>,

    /// Largest query response in bytes [default: 1024]
    #[arg(long = "query-response-size-limit", value_name = "BYTES")]
    pub(crate) query_response_size_limit: Option<usize>,

    /// Event handlers running at the same time; 1 runs them strictly in order [default: 4]
    #[arg(long = "handler-concurrency", value_name = "N")]
    pub(crate) handler_concurrency: Option<usize>,

    /// An event handler still running after this long is killed with its process group; 0: no limit [default: 5m]
    #[arg(long = "handler-timeout", value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) handler_timeout: Option<String>,

    /// Script run when this node becomes primary
    #[arg(long = "primary-acquire", value_name = "SCRIPT")]
    pub(crate) primary_acquire: Option<String>,

    /// Script run when this node stops being primary
    #[arg(long = "primary-release", value_name = "SCRIPT")]
    pub(crate) primary_release: Option<String>,

    /// Serve the primary web service here: 200 while this node is primary, 503 otherwise
    #[arg(long = "primary-http", value_name = "ADDR")]
    pub(crate) primary_http: Option<String>,

    /// Tag whose value (primary or standby) makes a node eligible for the primary role [default: role]
    #[arg(long = "primary-tag", value_name = "TAG")]
    pub(crate) primary_tag: Option<String>,

    /// Tag holding a node's election priority: an integer, higher elected first (before name order)
    #[arg(long = "primary-priority-tag", value_name = "TAG")]
    pub(crate) primary_priority_tag: Option<String>,
}

/// Parse `KEY=VALUE` (flags `-tag`, `members -tag`, `query -tag`); the error names the value.
pub(crate) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

impl AgentConfig {
    /// Lay `other` over `self`: its set options win, its lists are appended, its tags merged.
    pub(crate) fn merge(&mut self, other: Self) {
        macro_rules! take {
            ($($field:ident),* $(,)?) => {
                $( if other.$field.is_some() { self.$field = other.$field; } )*
            };
        }
        take!(
            node_name,
            bind,
            advertise,
            retry_interval,
            retry_max,
            tags_file,
            encrypt_key,
            keyring_file,
            snapshot_path,
            rejoin_after_leave,
            replay_on_join,
            profile,
            cluster_label,
            rpc_addr,
            rpc_auth,
            log_level,
            leave_on_terminate,
            skip_leave_on_interrupt,
            coalesce_period,
            quiescent_period,
            user_coalesce_period,
            user_quiescent_period,
            reconnect_interval,
            reconnect_timeout,
            tombstone_timeout,
            disable_coordinates,
            user_event_size_limit,
            query_size_limit,
            query_response_size_limit,
            handler_concurrency,
            handler_timeout,
            primary_acquire,
            primary_release,
            primary_http,
            primary_tag,
            primary_priority_tag,
        );
        self.join.extend(other.join);
        self.retry_join.extend(other.retry_join);
        self.event_handlers.extend(other.event_handlers);
        self.tags.extend(other.tags);
        self.tag.extend(other.tag);
    }

    /// One config file, JSON or TOML by its extension.
    pub(crate) fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let file_error = |reason: String| ConfigError::File { path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(|error| file_error(error.to_string()))?;
        match path.extension().and_then(|ext| ext.to_str()) {
            Some("json") => serde_json::from_str(&text).map_err(|error| file_error(error.to_string())),
            Some("toml") => toml::from_str(&text).map_err(|error| file_error(error.to_string().trim_end().to_owned())),
            _ => Err(file_error("unknown extension: config files end in .json or .toml".to_owned())),
        }
    }
}

/// Where the configuration comes from, kept so that SIGHUP can read it again.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigSources {
    /// `-config-file`, in order.
    pub(crate) files: Vec<PathBuf>,
    /// `-config-dir`: every `.json` and `.toml` file inside, in lexical order.
    pub(crate) dirs: Vec<PathBuf>,
    /// The flags, applied last.
    pub(crate) flags: AgentConfig,
}

impl ConfigSources {
    /// Read every file and merge them with the flags.
    pub(crate) fn load(&self) -> Result<AgentConfig, ConfigError> {
        let mut config = AgentConfig::default();
        for path in &self.files {
            config.merge(AgentConfig::from_file(path)?);
        }
        for dir in &self.dirs {
            let entries = std::fs::read_dir(dir)
                .map_err(|error| ConfigError::Dir { path: dir.clone(), reason: error.to_string() })?;
            let mut paths: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| matches!(path.extension().and_then(|e| e.to_str()), Some("json" | "toml")))
                .filter(|path| path.is_file())
                .collect();
            paths.sort();
            for path in paths {
                config.merge(AgentConfig::from_file(&path)?);
            }
        }
        config.merge(self.flags.clone());
        Ok(config)
    }
}

/// A configuration that could not be loaded or is invalid. Messages name the file, or the key
/// and its flag, and the value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// A config file could not be read or parsed.
    #[error("config file {}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A config directory (`-config-dir`) could not be read.
    #[error("config dir {}: {reason}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A value breaks a rule.
    #[error("{key} (-{flag}): {value:?} is invalid: {reason}")]
    Invalid {
        /// The config key.
        key: &'static str,
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A secret value is invalid (the value itself is not repeated).
    #[error("{key} (-{flag}): {reason}")]
    Secret {
        /// The config key.
        key: &'static str,
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(key: &'static str, flag: &'static str, value: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, flag, value: value.into(), reason: reason.into() }
}

/// Settings of the primary election and its hooks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PrimarySettings {
    /// Run when this node becomes primary.
    pub(crate) acquire: Option<String>,
    /// Run when this node stops being primary.
    pub(crate) release: Option<String>,
    /// Where to serve the primary web service.
    pub(crate) http: Option<SocketAddr>,
    /// Tag that makes a node eligible (value `primary` or `standby`) and that carries its role.
    pub(crate) tag: String,
    /// Optional tag holding an election priority.
    pub(crate) priority_tag: Option<String>,
}

/// A checked configuration, defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) node_name: Option<String>,
    pub(crate) bind: SocketAddr,
    pub(crate) advertise: Option<SocketAddr>,
    pub(crate) join: Vec<String>,
    pub(crate) retry_join: Vec<String>,
    pub(crate) retry_interval: Duration,
    pub(crate) retry_max: u32,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) tags_file: Option<PathBuf>,
    pub(crate) event_handlers: Vec<HandlerSpec>,
    pub(crate) keyring: Option<Keyring>,
    pub(crate) keyring_file: Option<PathBuf>,
    pub(crate) snapshot_path: Option<PathBuf>,
    pub(crate) rejoin_after_leave: bool,
    pub(crate) replay_on_join: bool,
    pub(crate) profile: String,
    pub(crate) cluster_label: Option<String>,
    pub(crate) rpc_addr: SocketAddr,
    pub(crate) rpc_auth: Option<String>,
    pub(crate) log_level: String,
    pub(crate) leave_on_terminate: bool,
    pub(crate) skip_leave_on_interrupt: bool,
    pub(crate) coalesce_period: Option<Duration>,
    pub(crate) quiescent_period: Option<Duration>,
    pub(crate) user_coalesce_period: Option<Duration>,
    pub(crate) user_quiescent_period: Option<Duration>,
    pub(crate) reconnect_interval: Option<Duration>,
    pub(crate) reconnect_timeout: Option<Duration>,
    pub(crate) tombstone_timeout: Option<Duration>,
    pub(crate) disable_coordinates: bool,
    pub(crate) user_event_size_limit: Option<usize>,
    pub(crate) query_size_limit: Option<usize>,
    pub(crate) query_response_size_limit: Option<usize>,
    pub(crate) handler_concurrency: usize,
    /// `None`: handlers run without a time limit.
    pub(crate) handler_timeout: Option<Duration>,
    pub(crate) primary: PrimarySettings,
}

impl Settings {
    /// Apply the defaults and check every value; the first bad one is reported.
    pub(crate) fn from_config(config: &AgentConfig) -> Result<Self, ConfigError> {
        let node_name = match &config.node_name {
            Some(name) if name.is_empty() || name.len() > gossip_core::MAX_NAME_LEN => {
                return Err(invalid("node_name", "node", name, "must be 1 to 128 bytes"));
            }
            Some(name) if name.chars().any(char::is_control) => {
                return Err(invalid("node_name", "node", name, "must not contain control characters"));
            }
            other => other.clone(),
        };
        let bind = match &config.bind {
            Some(text) => {
                parse_ip_port(text, DEFAULT_GOSSIP_PORT).map_err(|reason| invalid("bind", "bind", text, reason))?
            }
            None => SocketAddr::from(([0, 0, 0, 0], DEFAULT_GOSSIP_PORT)),
        };
        let advertise = match &config.advertise {
            Some(text) => {
                let addr = parse_ip_port(text, bind.port())
                    .map_err(|reason| invalid("advertise", "advertise", text, reason))?;
                if addr.ip().is_unspecified() {
                    return Err(invalid("advertise", "advertise", text, "must be an address other nodes can reach"));
                }
                Some(addr)
            }
            None => None,
        };
        for (key, flag, list) in [("join", "join", &config.join), ("retry_join", "retry-join", &config.retry_join)] {
            for addr in list {
                check_host_port(addr).map_err(|reason| invalid(key, flag, addr, reason))?;
            }
        }
        let duration =
            |key: &'static str, flag: &'static str, value: &Option<String>| -> Result<Option<Duration>, ConfigError> {
                value
                    .as_deref()
                    .map(|text| {
                        if text.trim_start().starts_with('-') {
                            return Err(invalid(
                                key,
                                flag,
                                text,
                                "must not be negative; write it as 250ms, 30s, 1m30s or 24h",
                            ));
                        }
                        parse_duration(text).map_err(|reason| invalid(key, flag, text, reason))
                    })
                    .transpose()
            };
        let retry_interval =
            duration("retry_interval", "retry-interval", &config.retry_interval)?.unwrap_or(Duration::from_secs(30));
        if retry_interval.is_zero() {
            return Err(invalid("retry_interval", "retry-interval", "0", "must be greater than zero"));
        }
        let handler_timeout = match duration("handler_timeout", "handler-timeout", &config.handler_timeout)? {
            None => Some(DEFAULT_HANDLER_TIMEOUT),
            Some(Duration::ZERO) => None,
            Some(timeout) => Some(timeout),
        };

        let mut tags = config.tags.clone();
        tags.extend(config.tag.iter().cloned());
        if let Some(path) = &config.tags_file {
            if path.exists() {
                tags.extend(read_tags_file(path)?);
            }
        }
        check_tags(&tags)?;

        let event_handlers = config
            .event_handlers
            .iter()
            .map(|text| {
                HandlerSpec::parse(text).map_err(|reason| invalid("event_handlers", "event-handler", text, reason))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let keyring = load_keyring(config.encrypt_key.as_deref(), config.keyring_file.as_deref())?;

        let profile = config.profile.clone().unwrap_or_else(|| "lan".to_owned());
        if gossip_core::NodeConfig::preset(&profile).is_none() {
            return Err(invalid("profile", "profile", &profile, "must be lan, wan or local"));
        }
        if let Some(label) = &config.cluster_label {
            if label.len() > 255 {
                return Err(invalid("cluster_label", "cluster-label", label, "must be at most 255 bytes"));
            }
        }
        let rpc_addr_text = config.rpc_addr.as_deref().unwrap_or(DEFAULT_RPC_ADDR);
        let rpc_addr = rpc_addr_text
            .parse::<SocketAddr>()
            .map_err(|_| invalid("rpc_addr", "rpc-addr", rpc_addr_text, "must be IP:PORT"))?;
        if let Some(token) = &config.rpc_auth {
            if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
                return Err(ConfigError::Secret {
                    key: "rpc_auth",
                    flag: "rpc-auth",
                    reason: "the token must be non-empty printable text without spaces".to_owned(),
                });
            }
        }
        let log_level = config.log_level.clone().unwrap_or_else(|| "info".to_owned());
        agent_support::logging::parse_filter(&log_level)
            .map_err(|reason| invalid("log_level", "log-level", &log_level, reason))?;

        let positive =
            |key: &'static str, flag: &'static str, value: Option<usize>| -> Result<Option<usize>, ConfigError> {
                match value {
                    Some(0) => Err(invalid(key, flag, "0", "must be at least 1")),
                    other => Ok(other),
                }
            };
        let handler_concurrency =
            positive("handler_concurrency", "handler-concurrency", config.handler_concurrency)?.unwrap_or(4);
        let user_event_size_limit =
            positive("user_event_size_limit", "user-event-size-limit", config.user_event_size_limit)?;
        if let Some(limit) = user_event_size_limit {
            let label = config.cluster_label.as_deref().unwrap_or("");
            let max = max_user_event_size(&profile, label, keyring.as_ref());
            if limit > max {
                let encrypted = if keyring.is_some() { "encrypted, " } else { "" };
                return Err(invalid(
                    "user_event_size_limit",
                    "user-event-size-limit",
                    limit.to_string(),
                    format!(
                        "must be at most {max} bytes, the largest user event one gossip message carries \
                         (profile {profile}, {encrypted}cluster label of {} bytes)",
                        label.len()
                    ),
                ));
            }
        }
        let primary_http = match &config.primary_http {
            Some(text) => Some(
                text.parse::<SocketAddr>()
                    .map_err(|_| invalid("primary_http", "primary-http", text, "must be IP:PORT"))?,
            ),
            None => None,
        };
        let primary_tag = config.primary_tag.clone().unwrap_or_else(|| "role".to_owned());
        if primary_tag.is_empty() {
            return Err(invalid("primary_tag", "primary-tag", "", "must not be empty"));
        }

        Ok(Self {
            node_name,
            bind,
            advertise,
            join: config.join.clone(),
            retry_join: config.retry_join.clone(),
            retry_interval,
            retry_max: config.retry_max.unwrap_or(0),
            tags,
            tags_file: config.tags_file.clone(),
            event_handlers,
            keyring,
            keyring_file: config.keyring_file.clone(),
            snapshot_path: config.snapshot_path.clone(),
            rejoin_after_leave: config.rejoin_after_leave.unwrap_or(false),
            replay_on_join: config.replay_on_join.unwrap_or(false),
            profile,
            cluster_label: config.cluster_label.clone(),
            rpc_addr,
            rpc_auth: config.rpc_auth.clone(),
            log_level,
            leave_on_terminate: config.leave_on_terminate.unwrap_or(false),
            skip_leave_on_interrupt: config.skip_leave_on_interrupt.unwrap_or(false),
            coalesce_period: duration("coalesce_period", "coalesce-period", &config.coalesce_period)?,
            quiescent_period: duration("quiescent_period", "quiescent-period", &config.quiescent_period)?,
            user_coalesce_period: duration(
                "user_coalesce_period",
                "user-coalesce-period",
                &config.user_coalesce_period,
            )?,
            user_quiescent_period: duration(
                "user_quiescent_period",
                "user-quiescent-period",
                &config.user_quiescent_period,
            )?,
            reconnect_interval: duration("reconnect_interval", "reconnect-interval", &config.reconnect_interval)?,
            reconnect_timeout: duration("reconnect_timeout", "reconnect-timeout", &config.reconnect_timeout)?,
            tombstone_timeout: duration("tombstone_timeout", "tombstone-timeout", &config.tombstone_timeout)?,
            disable_coordinates: config.disable_coordinates.unwrap_or(false),
            user_event_size_limit,
            query_size_limit: positive("query_size_limit", "query-size-limit", config.query_size_limit)?,
            query_response_size_limit: positive(
                "query_response_size_limit",
                "query-response-size-limit",
                config.query_response_size_limit,
            )?,
            handler_concurrency,
            handler_timeout,
            primary: PrimarySettings {
                acquire: config.primary_acquire.clone(),
                release: config.primary_release.clone(),
                http: primary_http,
                tag: primary_tag,
                priority_tag: config.primary_priority_tag.clone(),
            },
        })
    }
}

/// Bytes a user event message adds around its name and payload (gossip-core's serf layer,
/// `USER_EVENT_FRAMING`).
const USER_EVENT_FRAMING: usize = 24;
/// Bytes the SWIM layer keeps beside a user message in a packet (`swim::Swim::max_user_payload`).
const USER_MESSAGE_ROOM: usize = 16;

/// The largest user event (name + payload) one gossip message carries: half the profile's packet
/// budget, less the envelope (cluster label, CRC or encryption) and the event's framing. The serf
/// layer cuts a larger `max_user_event_size` down to this; the agent refuses it instead, so that
/// the configured limit is the one that applies. The unit tests check it against the layer.
pub(crate) fn max_user_event_size(profile: &str, label: &str, keyring: Option<&Keyring>) -> usize {
    let Some(node) = gossip_core::NodeConfig::preset(profile) else { return 0 };
    let Ok(codec) = gossip_transport::Codec::new(label) else { return 0 };
    let codec = match keyring {
        Some(keyring) => codec.with_keyring(keyring.clone()),
        None => codec,
    };
    (node.swim.packet_budget / 2).saturating_sub(codec.overhead() + USER_MESSAGE_ROOM + USER_EVENT_FRAMING)
}

/// `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address; `default_port` when none is given.
pub(crate) fn parse_ip_port(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    Err("not an IP address or IP:PORT".to_owned())
}

/// `HOST`, `HOST:PORT`, `IP`, `IP:PORT` or `[IPv6]:PORT`: a join address, resolved when used.
pub(crate) fn check_host_port(text: &str) -> Result<(), String> {
    if parse_ip_port(text, 0).is_ok() {
        return Ok(());
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    if let Some(port) = port {
        port.parse::<u16>().map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
    }
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        });
    if valid_host {
        Ok(())
    } else {
        Err("not a host name, IP address, HOST:PORT or IP:PORT".to_owned())
    }
}

/// Resolve a join address (host names included), with the default gossip port when none is given.
pub(crate) async fn resolve_join_addr(text: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = parse_ip_port(text, DEFAULT_GOSSIP_PORT) {
        return Ok(vec![addr]);
    }
    let with_port =
        if text.rsplit_once(':').is_some() { text.to_owned() } else { format!("{text}:{DEFAULT_GOSSIP_PORT}") };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|error| format!("cannot resolve {text:?}: {error}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{text:?} resolves to no address"));
    }
    Ok(addrs)
}

/// Check tags the way the gossip layer will (size of the encoded set).
pub(crate) fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if let Some(key) = tags.keys().find(|key| key.is_empty()) {
        return Err(invalid("tags", "tag", format!("{key}="), "a tag needs a name"));
    }
    gossip_core::Tags::new(tags.clone()).map_err(|error| {
        let shown: Vec<String> = tags.iter().map(|(key, value)| format!("{key}={value}")).collect();
        let mut shown = shown.join(",");
        if shown.len() > 80 {
            let mut cut = 80;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push('…');
        }
        invalid("tags", "tag", shown, error.to_string())
    })?;
    Ok(())
}

/// A tags file: a JSON object of strings.
pub(crate) fn read_tags_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let file_error = |reason: String| ConfigError::File { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(|error| file_error(error.to_string()))?;
    serde_json::from_str(&text).map_err(|error| file_error(format!("not a JSON object of strings: {error}")))
}

/// Write a tags file atomically (a temporary file renamed over it).
pub(crate) fn write_tags_file(path: &Path, tags: &BTreeMap<String, String>) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(tags).map_err(std::io::Error::other)?;
    write_atomically(path, text.as_bytes())
}

/// The keyring: from the keyring file when it exists (the `-encrypt` key is installed in it as
/// well), else from `-encrypt` alone (and then written to the keyring file, if one is named).
pub(crate) fn load_keyring(encrypt: Option<&str>, keyring_file: Option<&Path>) -> Result<Option<Keyring>, ConfigError> {
    let encrypt_key = encrypt
        .map(|text| {
            Key::from_base64(text).map_err(|error| ConfigError::Secret {
                key: "encrypt_key",
                flag: "encrypt",
                reason: format!(
                    "not a valid key ({error}); it must be base64 of 16, 24 or 32 bytes, as `serf-agent keygen` prints"
                ),
            })
        })
        .transpose()?;
    let from_file = match keyring_file {
        Some(path) if path.exists() => Some(read_keyring_file(path)?),
        _ => None,
    };
    Ok(match (from_file, encrypt_key) {
        (Some(mut keyring), Some(key)) => {
            if !keyring.contains(&key) {
                keyring.install(key);
            }
            Some(keyring)
        }
        (Some(keyring), None) => Some(keyring),
        (None, Some(key)) => Some(Keyring::new(key)),
        (None, None) => None,
    })
}

/// A keyring file: a JSON array of base64 keys, the first one primary (Serf's format).
pub(crate) fn read_keyring_file(path: &Path) -> Result<Keyring, ConfigError> {
    let file_error = |reason: String| ConfigError::File { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(|error| file_error(error.to_string()))?;
    let keys: Vec<String> =
        serde_json::from_str(&text).map_err(|error| file_error(format!("not a JSON array of base64 keys: {error}")))?;
    let mut keys = keys.iter().enumerate().map(|(index, text)| {
        Key::from_base64(text).map_err(|error| file_error(format!("key #{index} is not a valid key: {error}")))
    });
    let primary = keys.next().ok_or_else(|| file_error("holds no key".to_owned()))??;
    let mut keyring = Keyring::new(primary);
    for key in keys {
        keyring.install(key?);
    }
    Ok(keyring)
}

/// Write a keyring file (primary first), readable by its owner only.
pub(crate) fn write_keyring_file(path: &Path, keyring: &Keyring) -> std::io::Result<()> {
    let primary = keyring.primary().clone();
    let mut keys = vec![primary.to_base64()];
    keys.extend(keyring.keys().filter(|key| **key != primary).map(Key::to_base64));
    let text = serde_json::to_string_pretty(&keys).map_err(std::io::Error::other)?;
    write_atomically(path, text.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        config: AgentConfig,
    }

    fn flags(args: &[&str]) -> AgentConfig {
        let argv = std::iter::once("test").chain(args.iter().copied());
        Flags::try_parse_from(argv).unwrap().config
    }

    #[test]
    fn defaults_are_serfs() {
        let settings = Settings::from_config(&AgentConfig::default()).unwrap();
        assert_eq!(settings.bind, "0.0.0.0:7946".parse().unwrap());
        assert_eq!(settings.rpc_addr, "127.0.0.1:7373".parse().unwrap());
        assert_eq!(settings.profile, "lan");
        assert_eq!(settings.retry_interval, Duration::from_secs(30));
        assert_eq!(settings.primary.tag, "role");
        assert!(settings.keyring.is_none());
    }

    #[test]
    fn flags_override_files_and_lists_append() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("a.json");
        std::fs::write(
            &json,
            r#"{"node_name": "from-json", "join": ["10.0.0.1"], "tags": {"dc": "east", "rack": "1"}}"#,
        )
        .unwrap();
        let toml_path = dir.path().join("b.toml");
        std::fs::write(&toml_path, "bind = \"127.0.0.1:8000\"\nrejoin_after_leave = true\n[tags]\nrack = \"2\"\n")
            .unwrap();
        let sources = ConfigSources {
            files: vec![],
            dirs: vec![dir.path().to_owned()],
            flags: flags(&["--node", "from-flag", "--join", "10.0.0.2:7000", "--tag", "role=primary"]),
        };
        let merged = sources.load().unwrap();
        let settings = Settings::from_config(&merged).unwrap();
        assert_eq!(settings.node_name.as_deref(), Some("from-flag"));
        assert_eq!(settings.bind, "127.0.0.1:8000".parse().unwrap());
        assert!(settings.rejoin_after_leave);
        assert_eq!(settings.join, vec!["10.0.0.1".to_owned(), "10.0.0.2:7000".to_owned()]);
        let tags: Vec<(&str, &str)> = settings.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(tags, vec![("dc", "east"), ("rack", "2"), ("role", "primary")]);
    }

    #[test]
    fn bool_flags_take_optional_values() {
        assert_eq!(flags(&["--rejoin"]).rejoin_after_leave, Some(true));
        assert_eq!(flags(&["--rejoin=false"]).rejoin_after_leave, Some(false));
        assert_eq!(flags(&[]).rejoin_after_leave, None);
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, r#"{"node_nam": "x"}"#).unwrap();
        let err = AgentConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("node_nam") && err.contains("bad.json"), "{err}");
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, "x").unwrap();
        assert!(AgentConfig::from_file(&path).unwrap_err().to_string().contains(".json or .toml"));
    }

    #[test]
    fn bad_values_name_key_flag_and_value() {
        let check = |config: AgentConfig, expected: &[&str]| {
            let err = Settings::from_config(&config).unwrap_err().to_string();
            for part in expected {
                assert!(err.contains(part), "{err:?} lacks {part:?}");
            }
        };
        check(AgentConfig { bind: Some("nowhere".into()), ..Default::default() }, &["bind (-bind)", "\"nowhere\""]);
        check(
            AgentConfig { rpc_addr: Some("1.2.3.4".into()), ..Default::default() },
            &["rpc_addr (-rpc-addr)", "1.2.3.4"],
        );
        check(AgentConfig { join: vec!["a b".into()], ..Default::default() }, &["join (-join)", "\"a b\""]);
        check(AgentConfig { join: vec!["host:99999".into()], ..Default::default() }, &["join", "99999"]);
        check(
            AgentConfig { retry_interval: Some("5 parsecs".into()), ..Default::default() },
            &["retry_interval", "unit"],
        );
        check(AgentConfig { profile: Some("mars".into()), ..Default::default() }, &["profile", "mars"]);
        check(
            AgentConfig { encrypt_key: Some("not-base64!".into()), ..Default::default() },
            &["encrypt_key (-encrypt)"],
        );
        check(AgentConfig { event_handlers: vec!["member-jion=x.sh".into()], ..Default::default() }, &["member-jion"]);
        check(AgentConfig { log_level: Some("loud".into()), ..Default::default() }, &["log_level", "loud"]);
        let big = "x".repeat(600);
        check(AgentConfig { tag: vec![("big".into(), big)], ..Default::default() }, &["tags (-tag)", "limit"]);
    }

    #[test]
    fn host_port_forms() {
        for ok in ["10.0.0.1", "10.0.0.1:7946", "[::1]:7946", "::1", "node-1.example.com", "node-1:7000", "localhost"] {
            check_host_port(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "a b", "host:", "host:x", "-bad", "a..b"] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keyring_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let first = Key::from_bytes(&[1; 32]).unwrap();
        let second = Key::from_bytes(&[2; 16]).unwrap();
        let mut keyring = Keyring::new(first.clone());
        keyring.install(second.clone());
        write_keyring_file(&path, &keyring).unwrap();
        let read = read_keyring_file(&path).unwrap();
        assert_eq!(read.primary(), &first);
        assert!(read.contains(&second));
        // -encrypt adds its key to an existing keyring file, keeping the file's primary.
        let third = Key::from_bytes(&[3; 24]).unwrap();
        let loaded = load_keyring(Some(&third.to_base64()), Some(&path)).unwrap().unwrap();
        assert_eq!(loaded.primary(), &first);
        assert!(loaded.contains(&third));
        std::fs::write(&path, "[]").unwrap();
        assert!(read_keyring_file(&path).unwrap_err().to_string().contains("no key"));
    }

    #[test]
    fn tags_file_is_read_over_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tags.json");
        write_tags_file(&path, &BTreeMap::from([("dc".to_owned(), "west".to_owned())])).unwrap();
        let config = AgentConfig {
            tag: vec![("dc".into(), "east".into()), ("role".into(), "standby".into())],
            tags_file: Some(path),
            ..Default::default()
        };
        let settings = Settings::from_config(&config).unwrap();
        assert_eq!(settings.tags.get("dc").map(String::as_str), Some("west"));
        assert_eq!(settings.tags.get("role").map(String::as_str), Some("standby"));
    }

    #[test]
    fn item_8_errors_name_the_directory_the_flag_and_the_rule() {
        // A -config-dir that cannot be read is called a dir.
        let sources = ConfigSources { dirs: vec![PathBuf::from("/nonexistent")], ..Default::default() };
        let err = sources.load().unwrap_err().to_string();
        assert!(err.starts_with("config dir /nonexistent: "), "{err}");

        // A negative duration is taken as the flag's value and refused naming the flag and the rule.
        let config = flags(&["--retry-interval", "-5s"]);
        assert_eq!(config.retry_interval.as_deref(), Some("-5s"));
        let err = Settings::from_config(&config).unwrap_err().to_string();
        assert_eq!(
            err,
            "retry_interval (-retry-interval): \"-5s\" is invalid: must not be negative; write it as 250ms, 30s, \
             1m30s or 24h"
        );
        let err = Settings::from_config(&flags(&["--handler-timeout=-1s"])).unwrap_err().to_string();
        assert!(err.starts_with("handler_timeout (-handler-timeout): \"-1s\""), "{err}");

        // The user event limit stops at what one gossip message carries, and says so.
        let err = Settings::from_config(&AgentConfig { user_event_size_limit: Some(100_000), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("user_event_size_limit (-user-event-size-limit): \"100000\" is invalid"), "{err}");
        assert!(err.contains("at most 651 bytes"), "{err}");
        let settings =
            Settings::from_config(&AgentConfig { user_event_size_limit: Some(651), ..Default::default() }).unwrap();
        assert_eq!(settings.user_event_size_limit, Some(651));
    }

    #[test]
    fn handler_timeout_defaults_and_zero_means_none() {
        let settings = Settings::from_config(&AgentConfig::default()).unwrap();
        assert_eq!(settings.handler_timeout, Some(DEFAULT_HANDLER_TIMEOUT));
        assert_eq!(Settings::from_config(&flags(&["--handler-timeout", "0"])).unwrap().handler_timeout, None);
        let settings = Settings::from_config(&flags(&["--handler-timeout", "90s"])).unwrap();
        assert_eq!(settings.handler_timeout, Some(Duration::from_secs(90)));
    }

    #[tokio::test]
    async fn the_user_event_bound_is_what_the_gossip_layer_carries() {
        for (label, keyring) in [("", None), ("prod", Some(Keyring::new(Key::from_bytes(&[7; 32]).unwrap())))] {
            let max = max_user_event_size("local", label, keyring.as_ref());
            let mut node = gossip_core::NodeConfig::preset("local").unwrap();
            node.name = "bound".into();
            node.bind_addr = "127.0.0.1:0".parse().unwrap();
            node.swim.label = label.into();
            node.keyring = keyring;
            let mut config = gossip_core::SerfConfig::new(node);
            config.max_user_event_size = max + 100;
            let serf = gossip_core::Serf::start(config).await.unwrap();
            // A one-byte name and a payload of max - 1 bytes fit; one byte more does not.
            let payload = bytes::Bytes::from(vec![b'x'; max - 1]);
            serf.user_event("e", payload, false).await.unwrap();
            let err = serf.user_event("e", bytes::Bytes::from(vec![b'x'; max]), false).await.unwrap_err();
            assert!(
                matches!(err, gossip_core::SerfError::EventTooLarge { max: layer, .. } if layer == max),
                "label {label:?}: {err}"
            );
            serf.shutdown().await;
        }
    }
}
