//! Configuration: identity, addresses, data directory, timings, log compaction and RPC bounds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::NodeId;

/// Consul's server RPC port.
pub const DEFAULT_SERVER_PORT: u16 = 8300;

/// How a server runs Raft. Build one with [`Config::lan`] (Consul's production timings) or
/// [`Config::local`] (fast timings for tests and a single machine), then set the fields; call
/// [`validate`](Config::validate) (done by `Consensus::start`) to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This server's Raft id: stable across restarts (the binary derives it from the node ID).
    pub node_id: NodeId,
    /// Where the log (`raft.redb`) and the snapshot (`snapshot.bin`) live; created if missing.
    pub data_dir: PathBuf,
    /// Address the server RPC listener binds (Consul's server port, 8300). Port 0 picks a free
    /// port; [`Consensus::local_addr`](crate::Consensus::local_addr) tells which.
    pub bind_addr: SocketAddr,
    /// Interval at which the leader sends heartbeats (empty AppendEntries) to each follower
    /// when it has nothing else to send; also how often a follower looks at its election
    /// timer. Each heartbeat is a round trip on the server port, so this is most of what an
    /// idle cluster sends. Consul (raft_multiplier 1): 100 to 200 ms; [`Config::lan`]: 400 ms.
    pub heartbeat_interval: Duration,
    /// A follower that hears nothing from the leader for a random time in
    /// `election_timeout_min..election_timeout_max` (drawn once per start, looked at every
    /// `heartbeat_interval`) starts an election. Consul (raft_multiplier 1): 1 to 2 s;
    /// [`Config::lan`]: 1.5 to 2 s. Rules (openraft's followers refuse votes for
    /// `election_timeout_max / 2` after hearing from the leader, its leader lease): `max` below
    /// `2 × min`, and `heartbeat_interval` well below `min - max / 2`.
    pub election_timeout_min: Duration,
    /// See `election_timeout_min`.
    pub election_timeout_max: Duration,
    /// Take a snapshot (and then purge the log) once this many entries were applied since the
    /// last one. Consul: 16384.
    pub snapshot_threshold: u64,
    /// Entries kept in the log behind a snapshot, so that a follower slightly behind catches up
    /// from the log rather than from a snapshot. Consul: 10240.
    pub trailing_logs: u64,
    /// Most entries in one AppendEntries message. Consul: 64.
    pub max_append_entries: u64,
    /// Snapshots are sent in chunks of this many bytes.
    pub snapshot_chunk_size: u64,
    /// Largest RPC frame accepted or sent, in bytes; checked before anything is allocated.
    /// Must hold `max_append_entries` of the largest command, and a snapshot chunk.
    pub max_frame_size: u32,
    /// Bound on connecting to a peer.
    pub connect_timeout: Duration,
    /// Bound on one RPC (write the request, read the answer) to a peer, and on reading the rest
    /// of a frame once its header arrived.
    pub rpc_timeout: Duration,
    /// Bound on one InstallSnapshot chunk round trip.
    pub install_snapshot_timeout: Duration,
    /// Most inbound RPC connections served at once.
    pub max_connections: usize,
}

impl Config {
    /// Timings for a LAN, close to Consul's production ones (raft_multiplier 1, elections after
    /// 1 to 2 s without a leader): elections after 1.5 to 2 s without hearing from the leader,
    /// heartbeats every 400 ms (Consul: 100 to 200 ms; over TCP a lost heartbeat is sent again
    /// by the kernel, and three fit in the shortest election timeout); snapshots every 16384
    /// entries keeping 10240; the server port 8300 on all interfaces.
    pub fn lan(node_id: NodeId, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            node_id,
            data_dir: data_dir.into(),
            bind_addr: SocketAddr::from(([0, 0, 0, 0], DEFAULT_SERVER_PORT)),
            heartbeat_interval: Duration::from_millis(400),
            election_timeout_min: Duration::from_millis(1500),
            election_timeout_max: Duration::from_millis(2000),
            snapshot_threshold: 16384,
            trailing_logs: 10240,
            max_append_entries: 64,
            snapshot_chunk_size: 1 << 20,
            max_frame_size: 64 << 20,
            connect_timeout: Duration::from_secs(5),
            rpc_timeout: Duration::from_secs(10),
            install_snapshot_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }

    /// Fast timings for tests and clusters on one machine: heartbeats every 75 ms, elections
    /// after 0.9 to 1.2 s without hearing from the leader; loopback on a port the OS picks.
    pub fn local(node_id: NodeId, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            heartbeat_interval: Duration::from_millis(75),
            election_timeout_min: Duration::from_millis(900),
            election_timeout_max: Duration::from_millis(1200),
            connect_timeout: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(2),
            install_snapshot_timeout: Duration::from_secs(5),
            ..Self::lan(node_id, data_dir)
        }
    }

    /// Checks the values, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ms = |name: &'static str, d: Duration| -> Result<u64, ConfigError> {
            if d.is_zero() || !d.subsec_nanos().is_multiple_of(1_000_000) {
                return Err(ConfigError::Millis { name, value: d });
            }
            Ok(d.as_millis() as u64)
        };
        let heartbeat = ms("heartbeat_interval", self.heartbeat_interval)?;
        let min = ms("election_timeout_min", self.election_timeout_min)?;
        let max = ms("election_timeout_max", self.election_timeout_max)?;
        if min >= max {
            return Err(ConfigError::ElectionRange { min, max });
        }
        if max >= 2 * min {
            return Err(ConfigError::ElectionSpread { min, max });
        }
        if heartbeat >= min - max / 2 {
            return Err(ConfigError::HeartbeatNotBelowElection { heartbeat, room: min - max / 2 });
        }
        for (name, value) in [
            ("snapshot_threshold", self.snapshot_threshold),
            ("max_append_entries", self.max_append_entries),
            ("snapshot_chunk_size", self.snapshot_chunk_size),
            ("max_frame_size", u64::from(self.max_frame_size)),
            ("max_connections", self.max_connections as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { name });
            }
        }
        // A chunk travels inside a frame with its metadata: leave room for it.
        let chunk_room = u64::from(self.max_frame_size).saturating_sub(FRAME_OVERHEAD);
        if self.snapshot_chunk_size > chunk_room {
            return Err(ConfigError::ChunkOverFrame { chunk: self.snapshot_chunk_size, frame: self.max_frame_size });
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("rpc_timeout", self.rpc_timeout),
            ("install_snapshot_timeout", self.install_snapshot_timeout),
        ] {
            ms(name, d)?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::NoDataDir);
        }
        Ok(())
    }

    /// The openraft configuration these values stand for. openraft 0.9 runs its timers every
    /// 1.5 × its `heartbeat_interval` and sends a heartbeat at each such tick, so it gets two
    /// thirds of ours. Its followers elect after its leader lease (its `election_timeout_max`)
    /// plus a random time in its `election_timeout_min..election_timeout_max`; so its max is
    /// half of ours, and its min what is left of our min after that lease.
    pub(crate) fn to_openraft(&self) -> openraft::Config {
        let ms = |d: Duration| d.as_millis() as u64;
        let lease = ms(self.election_timeout_max) / 2;
        openraft::Config {
            cluster_name: "consul-lite".into(),
            heartbeat_interval: (ms(self.heartbeat_interval) * 2 / 3).max(1),
            election_timeout_min: ms(self.election_timeout_min).saturating_sub(lease),
            election_timeout_max: lease,
            install_snapshot_timeout: self.install_snapshot_timeout.as_millis() as u64,
            max_payload_entries: self.max_append_entries,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_threshold),
            max_in_snapshot_log_to_keep: self.trailing_logs,
            snapshot_max_chunk_size: self.snapshot_chunk_size,
            // A follower more than this many entries behind gets a snapshot instead of the log.
            replication_lag_threshold: self.trailing_logs.max(self.snapshot_threshold),
            ..openraft::Config::default()
        }
    }
}

/// Room kept in a frame for what travels beside a snapshot chunk (vote, metadata, id).
pub(crate) const FRAME_OVERHEAD: u64 = 4096;

/// A configuration value that cannot work. Nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that is zero or not a whole number of milliseconds.
    #[error("{name} = {value:?}: must be a positive whole number of milliseconds")]
    Millis {
        /// The field.
        name: &'static str,
        /// Its value.
        value: Duration,
    },
    /// The election timeout range is empty.
    #[error("election timeout: min ({min} ms) must be < max ({max} ms)")]
    ElectionRange {
        /// `election_timeout_min` in ms.
        min: u64,
        /// `election_timeout_max` in ms.
        max: u64,
    },
    /// The election timeout range is too wide for openraft's leader lease.
    #[error("election timeout: max ({max} ms) must be < 2 × min ({min} ms)")]
    ElectionSpread {
        /// `election_timeout_min` in ms.
        min: u64,
        /// `election_timeout_max` in ms.
        max: u64,
    },
    /// Heartbeats would not reach followers before they start elections.
    #[error(
        "heartbeat_interval ({heartbeat} ms) must be < election_timeout_min - election_timeout_max / 2 \
         ({room} ms)"
    )]
    HeartbeatNotBelowElection {
        /// `heartbeat_interval` in ms.
        heartbeat: u64,
        /// `election_timeout_min - election_timeout_max / 2` in ms.
        room: u64,
    },
    /// A count or size that must be positive is zero.
    #[error("{name} = 0: must be at least 1")]
    Zero {
        /// The field.
        name: &'static str,
    },
    /// A snapshot chunk would not fit in a frame.
    #[error(
        "snapshot_chunk_size ({chunk} bytes) must leave {FRAME_OVERHEAD} bytes of room in \
         max_frame_size ({frame} bytes)"
    )]
    ChunkOverFrame {
        /// `snapshot_chunk_size`.
        chunk: u64,
        /// `max_frame_size`.
        frame: u32,
    },
    /// `data_dir` is empty.
    #[error("data_dir is empty: a server needs a directory for its log and snapshots")]
    NoDataDir,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_map_to_openraft() {
        for config in [Config::lan(1, "/tmp/x"), Config::local(1, "/tmp/x")] {
            config.validate().unwrap();
            config.to_openraft().validate().unwrap();
        }
    }

    #[test]
    fn openraft_gets_timings_that_come_to_ours() {
        let raft = Config::lan(1, "/tmp/x").to_openraft();
        // Ticks (and heartbeats) every 1.5 × its heartbeat interval: ours, 400 ms.
        assert_eq!(raft.heartbeat_interval * 3 / 2, 399);
        // A follower elects after the lease (its max) plus its min..max: ours, 1.5 to 2 s.
        assert_eq!(raft.election_timeout_max + raft.election_timeout_min, 1500);
        assert_eq!(raft.election_timeout_max * 2, 2000);
        let raft = Config::local(1, "/tmp/x").to_openraft();
        assert_eq!((raft.heartbeat_interval, raft.election_timeout_min, raft.election_timeout_max), (50, 300, 600));
    }

    #[test]
    fn bad_values_are_named() {
        let base = Config::local(1, "/tmp/x");
        let err = Config { election_timeout_min: Duration::from_millis(1200), ..base.clone() }.validate().unwrap_err();
        assert_eq!(err.to_string(), "election timeout: min (1200 ms) must be < max (1200 ms)");
        let err = Config { election_timeout_max: Duration::from_millis(1800), ..base.clone() }.validate().unwrap_err();
        assert_eq!(err.to_string(), "election timeout: max (1800 ms) must be < 2 × min (900 ms)");
        let err = Config { heartbeat_interval: Duration::from_micros(1500), ..base.clone() }.validate().unwrap_err();
        assert!(err.to_string().starts_with("heartbeat_interval = 1.5ms"), "{err}");
        let err = Config { heartbeat_interval: Duration::from_millis(300), ..base.clone() }.validate().unwrap_err();
        assert!(err
            .to_string()
            .contains("(300 ms) must be < election_timeout_min - election_timeout_max / 2 (300 ms)"));
        let err = Config { max_append_entries: 0, ..base.clone() }.validate().unwrap_err();
        assert_eq!(err.to_string(), "max_append_entries = 0: must be at least 1");
        let err = Config { snapshot_chunk_size: 1 << 20, max_frame_size: 1 << 20, ..base }.validate().unwrap_err();
        assert!(matches!(err, ConfigError::ChunkOverFrame { .. }), "{err}");
    }
}
