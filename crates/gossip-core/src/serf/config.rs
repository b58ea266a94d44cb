//! [`SerfConfig`]: the serf layer's settings around a [`NodeConfig`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::SerfError;
use crate::NodeConfig;

/// Everything [`super::Serf::start`] needs: the node's configuration and the serf layer's.
///
/// ```
/// use gossip_core::{NodeConfig, SerfConfig};
///
/// let config = SerfConfig::new(NodeConfig { name: "web-1".into(), ..NodeConfig::lan() });
/// assert_eq!(config.event_buffer, 512);
/// config.validate().unwrap();
/// ```
///
/// Three settings override the node's: [`SerfConfig::reconnect_interval`] becomes
/// `node.swim.reconnect_interval`, [`SerfConfig::reconnect_timeout`] `node.swim.dead_reap` and
/// [`SerfConfig::tombstone_timeout`] `node.swim.left_reap`.
#[derive(Clone)]
pub struct SerfConfig {
    /// The node: name, addresses, tags, protocol timings, keyring, ...
    pub node: NodeConfig,
    /// Lamport times of user events remembered for de-duplication. An event older than the
    /// event clock minus this is ignored. Serf: 512.
    pub event_buffer: usize,
    /// Lamport times of queries remembered for de-duplication. Serf: 512.
    pub query_buffer: usize,
    /// Largest user event: name plus payload, in bytes. Serf: 512. The effective limit is lower
    /// when one gossip message cannot carry it (see the module docs).
    pub max_user_event_size: usize,
    /// Largest query, encoded, in bytes. Serf: 1024 (the effective limit is lower with the
    /// default packet budget, see the module docs).
    pub max_query_size: usize,
    /// Largest query response, encoded, in bytes. Serf: 1024 (same remark).
    pub max_query_response_size: usize,
    /// Default query timeout = `node.swim.gossip_interval × query_timeout_mult × ceil(log10(n + 1))`
    /// for `n` live members. Serf: 16.
    pub query_timeout_mult: u32,
    /// Member events are delivered in batches: at most this long after the first event of a
    /// batch. Default 50 ms, so that a handler runs within about 100 ms of a change (Serf's agent:
    /// 3 s). In a burst (a batch that opens within one window of the last one's close) this and
    /// the quiescent period double per batch, up to a period of 1 s, so that a join storm does
    /// not start a handler per gossip packet; one quiet window restores them. Zero: no batching.
    pub member_coalesce_period: Duration,
    /// ... or as soon as no member event came for this long. Default 20 ms (Serf's agent: 1 s).
    pub member_quiescent_period: Duration,
    /// User events sent with `coalesce = true` are held at most this long, and only the newest of
    /// each name is delivered. Default 1 s (Serf's agent: 3 s). Zero: no coalescing.
    pub user_coalesce_period: Duration,
    /// ... or until no such event came for this long. Default 200 ms (Serf's agent: 1 s).
    pub user_quiescent_period: Duration,
    /// Append-only file of the node's view (alive members, clocks, coordinate, leave), replayed
    /// at start to restore the clocks and re-join the members that were alive. `None`: none.
    pub snapshot_path: Option<PathBuf>,
    /// Re-join from the snapshot even if the node had left gracefully (Serf's `-rejoin`).
    pub rejoin_after_leave: bool,
    /// How often each node may try a push-pull with one random failed member, with probability
    /// failed / live, so that the cluster tries each failed member about once per interval
    /// (Serf's reconnect; heals partitions, finds members that came back). Serf: 30 s.
    pub reconnect_interval: Duration,
    /// A failed member is reaped (forgotten, [`super::SerfEvent::MemberReap`]) after this long.
    /// Serf: 24 h.
    pub reconnect_timeout: Duration,
    /// A member that left is reaped after this long. Serf: 24 h.
    pub tombstone_timeout: Duration,
    /// Do not compute Vivaldi network coordinates (nor send them in acks).
    pub disable_coordinates: bool,
    /// A JSON list of base64 keys, primary first (Serf's `-keyring-file`): loaded at start in
    /// place of `node.keyring` when the file exists, and rewritten after every key operation that
    /// changes this node's keyring, so that a rotation survives a restart. `None`: none.
    pub keyring_file: Option<PathBuf>,
}

impl SerfConfig {
    /// Serf's defaults (and ours for the coalescing periods) around `node`.
    pub fn new(node: NodeConfig) -> Self {
        Self {
            node,
            event_buffer: 512,
            query_buffer: 512,
            max_user_event_size: 512,
            max_query_size: 1024,
            max_query_response_size: 1024,
            query_timeout_mult: 16,
            member_coalesce_period: Duration::from_millis(50),
            member_quiescent_period: Duration::from_millis(20),
            user_coalesce_period: Duration::from_secs(1),
            user_quiescent_period: Duration::from_millis(200),
            snapshot_path: None,
            rejoin_after_leave: false,
            reconnect_interval: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(24 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            disable_coordinates: false,
            keyring_file: None,
        }
    }

    /// Check every field (the node's too); the error names the first that breaks a rule.
    pub fn validate(&self) -> Result<(), SerfError> {
        fn invalid(field: &'static str, value: impl fmt::Debug, rule: &'static str) -> SerfError {
            SerfError::Config { field, value: format!("{value:?}"), rule }
        }
        self.node.validate()?;
        let at_least_one = [
            ("event_buffer", self.event_buffer),
            ("query_buffer", self.query_buffer),
            ("max_user_event_size", self.max_user_event_size),
            ("max_query_size", self.max_query_size),
            ("max_query_response_size", self.max_query_response_size),
            ("query_timeout_mult", self.query_timeout_mult as usize),
        ];
        for (field, value) in at_least_one {
            if value == 0 {
                return Err(invalid(field, value, "must be at least 1"));
            }
        }
        if self.member_quiescent_period > self.member_coalesce_period {
            return Err(invalid(
                "member_quiescent_period",
                self.member_quiescent_period,
                "must not be longer than member_coalesce_period",
            ));
        }
        if self.user_quiescent_period > self.user_coalesce_period {
            return Err(invalid(
                "user_quiescent_period",
                self.user_quiescent_period,
                "must not be longer than user_coalesce_period",
            ));
        }
        let positive = [
            ("reconnect_interval", self.reconnect_interval),
            ("reconnect_timeout", self.reconnect_timeout),
            ("tombstone_timeout", self.tombstone_timeout),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(invalid(field, value, "must be greater than zero"));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for SerfConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerfConfig")
            .field("node", &self.node)
            .field("event_buffer", &self.event_buffer)
            .field("query_buffer", &self.query_buffer)
            .field("max_user_event_size", &self.max_user_event_size)
            .field("max_query_size", &self.max_query_size)
            .field("max_query_response_size", &self.max_query_response_size)
            .field("query_timeout_mult", &self.query_timeout_mult)
            .field("member_coalesce_period", &self.member_coalesce_period)
            .field("member_quiescent_period", &self.member_quiescent_period)
            .field("user_coalesce_period", &self.user_coalesce_period)
            .field("user_quiescent_period", &self.user_quiescent_period)
            .field("snapshot_path", &self.snapshot_path)
            .field("rejoin_after_leave", &self.rejoin_after_leave)
            .field("reconnect_interval", &self.reconnect_interval)
            .field("reconnect_timeout", &self.reconnect_timeout)
            .field("tombstone_timeout", &self.tombstone_timeout)
            .field("disable_coordinates", &self.disable_coordinates)
            .field("keyring_file", &self.keyring_file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_errors_name_the_field() {
        SerfConfig::new(NodeConfig::local()).validate().unwrap();
        let config = SerfConfig { event_buffer: 0, ..SerfConfig::new(NodeConfig::local()) };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("event_buffer: 0") && err.contains("at least 1"), "{err}");
        let config =
            SerfConfig { member_quiescent_period: Duration::from_secs(1), ..SerfConfig::new(NodeConfig::local()) };
        assert!(config.validate().unwrap_err().to_string().starts_with("member_quiescent_period"));
        let config = SerfConfig { reconnect_interval: Duration::ZERO, ..SerfConfig::new(NodeConfig::local()) };
        assert!(config.validate().unwrap_err().to_string().starts_with("reconnect_interval"));
        let config = SerfConfig::new(NodeConfig { name: String::new(), ..NodeConfig::local() });
        assert!(config.validate().unwrap_err().to_string().starts_with("node.name"), "{config:?}");
    }
}
