//! Configuration of a [`crate::Node`]: addresses, identity, timings of the driver, and the
//! protocol configuration handed to the `swim` state machine.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use gossip_transport::Keyring;
use swim::Tags;

/// The port serf and memberlist gossip on (UDP and TCP).
pub const DEFAULT_PORT: u16 = 7946;

/// Longest node name accepted, in bytes (the wire protocol's limit, enforced by `swim` too).
pub const MAX_NAME_LEN: usize = 128;

/// Bounds of [`NodeConfig::max_unauthenticated_bytes`].
const MIN_UNAUTHENTICATED_BYTES: usize = 64 * 1024;
const MAX_UNAUTHENTICATED_BYTES: usize = 1024 * 1024 * 1024;

/// Errors of [`NodeConfig::validate`]: each names the field and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeConfigError {
    /// A field of [`NodeConfig`] has a value outside its allowed range.
    #[error("{field}: {value} is invalid: {rule}")]
    Invalid {
        /// The field name, as in [`NodeConfig`].
        field: &'static str,
        /// The value given, formatted.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The protocol configuration ([`NodeConfig::swim`]) is invalid.
    #[error("swim.{0}")]
    Swim(#[from] swim::ConfigError),
}

/// Everything a [`crate::Node`] needs to start.
///
/// Build it from a preset and change the fields you need:
///
/// ```
/// use gossip_core::NodeConfig;
///
/// let config = NodeConfig { name: "web-1".into(), ..NodeConfig::lan() };
/// config.validate().unwrap();
/// ```
///
/// The presets pick the protocol timings of [`swim::Config`]'s presets of the same name; only
/// [`NodeConfig::local`] also changes the bind address (loopback, port chosen by the OS), since
/// several nodes on one machine cannot share port 7946.
#[derive(Clone)]
pub struct NodeConfig {
    /// Unique name of this node in the cluster: at most [`MAX_NAME_LEN`] bytes, not empty.
    /// Presets use the host name, as Serf does.
    pub name: String,
    /// Address the UDP socket and the TCP listener bind to (same port for both). Port 0 lets the
    /// OS choose; [`crate::NodeHandle::local_addr`] tells which. Default `0.0.0.0:7946`.
    pub bind_addr: SocketAddr,
    /// Address other nodes reach this one at, as published in the member list. `None`: the bind
    /// address, or, when that is unspecified (`0.0.0.0` / `::`), the local address of the
    /// interface holding the default route (found with an unsent UDP `connect`); start fails when
    /// there is none. A port of 0 here means the bound port.
    pub advertise_addr: Option<SocketAddr>,
    /// Tags published with this node (at most 512 bytes encoded; see [`swim::Tags`]).
    pub tags: Tags,
    /// Protocol configuration: timings, packet budget, Lifeguard switches, cluster label.
    pub swim: swim::Config,
    /// Encrypt and authenticate every packet and stream frame with this keyring. Nodes with
    /// disjoint keyrings cannot talk to each other. `None`: plain text.
    pub keyring: Option<Keyring>,
    /// Bound on one stream (TCP) exchange: connect, write the request, read the answer; and on
    /// reading a request from / writing an answer to an accepted connection. Default 10 s
    /// (memberlist's `TCPTimeout`).
    pub stream_timeout: Duration,
    /// How many times [`crate::NodeHandle::join`] tries the whole list of seeds before it gives up
    /// (at least 1). Default 1, as `serf join`; agents that retry-join raise it.
    pub join_attempts: u32,
    /// Pause between two join attempts. Default 5 s.
    pub join_retry_interval: Duration,
    /// Most accepted TCP connections served at the same time; further connections wait in the
    /// kernel's backlog. At least 1. Default 128.
    pub max_inbound_streams: usize,
    /// Most bytes of inbound stream frames buffered, across all connections, before they are
    /// authenticated (key and label); also the largest stream frame accepted. A frame's header
    /// (version, label, encryption mode) is checked before its body is read, and the body waits
    /// for room in this budget; a larger frame is refused with a refusal frame. Push-pull state
    /// takes about 60 to 100 bytes per member, so the default 2 MiB
    /// ([`crate::DEFAULT_MAX_UNAUTHENTICATED_BYTES`]) fits clusters of about 20,000 members;
    /// raise it for larger ones. From 64 KiB to 1 GiB.
    pub max_unauthenticated_bytes: usize,
    /// Events buffered per [`crate::EventStream`] before the slowest stream starts missing
    /// events (see [`crate::EventStream`] for what it is told). At least 1. Default 1024.
    pub event_buffer: usize,
}

impl NodeConfig {
    /// LAN preset: [`swim::Config::lan`], bind `0.0.0.0:7946`, name = host name.
    pub fn lan() -> Self {
        Self::with_swim(swim::Config::lan())
    }

    /// WAN preset: [`swim::Config::wan`], bind `0.0.0.0:7946`, name = host name.
    pub fn wan() -> Self {
        Self::with_swim(swim::Config::wan())
    }

    /// Local preset (several nodes on one machine): [`swim::Config::local`], bind
    /// `127.0.0.1:0` (port chosen by the OS), name = host name, join retries every second.
    pub fn local() -> Self {
        Self {
            bind_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            join_retry_interval: Duration::from_secs(1),
            ..Self::with_swim(swim::Config::local())
        }
    }

    /// A preset by name: `lan`, `wan`, `local`, or any other preset name [`swim::Config::preset`]
    /// knows (with the LAN driver settings).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "local" => Some(Self::local()),
            _ => swim::Config::preset(name).map(Self::with_swim),
        }
    }

    /// The LAN driver settings around the given protocol configuration.
    pub fn with_swim(swim: swim::Config) -> Self {
        Self {
            name: host_name(),
            bind_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            advertise_addr: None,
            tags: Tags::default(),
            swim,
            keyring: None,
            stream_timeout: Duration::from_secs(10),
            join_attempts: 1,
            join_retry_interval: Duration::from_secs(5),
            max_inbound_streams: 128,
            max_unauthenticated_bytes: crate::DEFAULT_MAX_UNAUTHENTICATED_BYTES,
            event_buffer: 1024,
        }
    }

    /// Check every field; the error names the first field that breaks a rule. Called by
    /// [`crate::Node::start`].
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        fn invalid(field: &'static str, value: impl fmt::Debug, rule: &'static str) -> NodeConfigError {
            NodeConfigError::Invalid { field, value: format!("{value:?}"), rule }
        }
        if self.name.is_empty() {
            return Err(invalid("name", &self.name, "must not be empty"));
        }
        if self.name.len() > MAX_NAME_LEN {
            return Err(invalid("name", &self.name, "must be at most 128 bytes"));
        }
        if let Some(addr) = self.advertise_addr {
            if addr.ip().is_unspecified() {
                return Err(invalid("advertise_addr", addr, "must be an address other nodes can reach"));
            }
            if addr.ip().is_multicast() {
                return Err(invalid("advertise_addr", addr, "must not be a multicast address"));
            }
        }
        if self.stream_timeout.is_zero() {
            return Err(invalid("stream_timeout", self.stream_timeout, "must be greater than zero"));
        }
        if self.join_attempts == 0 {
            return Err(invalid("join_attempts", self.join_attempts, "must be at least 1"));
        }
        if self.max_inbound_streams == 0 {
            return Err(invalid("max_inbound_streams", self.max_inbound_streams, "must be at least 1"));
        }
        if !(MIN_UNAUTHENTICATED_BYTES..=MAX_UNAUTHENTICATED_BYTES).contains(&self.max_unauthenticated_bytes) {
            let rule = "must be from 65536 (64 KiB) to 1073741824 (1 GiB)";
            return Err(invalid("max_unauthenticated_bytes", self.max_unauthenticated_bytes, rule));
        }
        if self.event_buffer == 0 {
            return Err(invalid("event_buffer", self.event_buffer, "must be at least 1"));
        }
        self.swim.validate()?;
        Ok(())
    }
}

impl Default for NodeConfig {
    /// The LAN preset ([`NodeConfig::lan`]).
    fn default() -> Self {
        Self::lan()
    }
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("bind_addr", &self.bind_addr)
            .field("advertise_addr", &self.advertise_addr)
            .field("tags", &self.tags)
            .field("swim", &self.swim)
            // Key material stays out of logs.
            .field("keyring", &self.keyring.as_ref().map(|_| "<redacted>"))
            .field("stream_timeout", &self.stream_timeout)
            .field("join_attempts", &self.join_attempts)
            .field("join_retry_interval", &self.join_retry_interval)
            .field("max_inbound_streams", &self.max_inbound_streams)
            .field("max_unauthenticated_bytes", &self.max_unauthenticated_bytes)
            .field("event_buffer", &self.event_buffer)
            .finish()
    }
}

/// The host name, as Serf uses for a default node name; `"gossip-node"` when it cannot be read.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty() && name.len() <= MAX_NAME_LEN)
        .unwrap_or_else(|| "gossip-node".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for name in ["lan", "wan", "local", "memberlist-lan", "swim-paper"] {
            let config = NodeConfig::preset(name).unwrap();
            config.validate().unwrap();
        }
        assert!(NodeConfig::preset("nope").is_none());
        assert_eq!(NodeConfig::local().bind_addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(NodeConfig::default().bind_addr.port(), DEFAULT_PORT);
    }

    #[test]
    fn validate_names_the_field() {
        let config = NodeConfig { name: String::new(), ..NodeConfig::local() };
        assert!(config.validate().unwrap_err().to_string().starts_with("name:"));

        let config = NodeConfig { join_attempts: 0, ..NodeConfig::local() };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("join_attempts: 0") && err.contains("at least 1"), "{err}");

        let config = NodeConfig { advertise_addr: Some("0.0.0.0:7946".parse().unwrap()), ..NodeConfig::local() };
        assert!(config.validate().unwrap_err().to_string().starts_with("advertise_addr:"));

        let mut config = NodeConfig::local();
        config.swim.gossip_nodes = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("swim.gossip_nodes"), "{err}");
    }

    #[test]
    fn debug_hides_the_keyring() {
        let text = format!("{:?}", NodeConfig::local());
        assert!(text.contains("keyring: None"), "{text}");
    }
}
