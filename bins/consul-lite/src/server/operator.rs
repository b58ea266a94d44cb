//! `operator raft`: the Raft configuration as Consul shows it, and which peer a
//! `remove-peer` names.
//!
//! `GET /v1/operator/raft/configuration` answers Consul's shape:
//! `{"Servers": [{"ID", "Node", "Address", "Leader", "ProtocolVersion", "Voter",
//! "LastIndex"}], "Index"}`, where `ID` is the server's node ID when the pool shows it (its
//! Raft id in decimal otherwise), and `Index` is the last index applied on the answering
//! server (Consul: the index of the configuration). `consul-lite operator raft list-peers`
//! prints it as Consul's table; `remove-peer -id ID | -address IP:PORT` resolves to a Raft
//! id with [`resolve_peer`].

use consensus::{Metrics, NodeId};
use serde::{Deserialize, Serialize};

use super::ServerInfo;

/// Consul's `RaftConfigurationResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RaftConfiguration {
    /// The servers in the configuration, leader first, then by address.
    pub(crate) servers: Vec<RaftServer>,
    /// The last index applied on the answering server.
    pub(crate) index: u64,
}

/// Consul's `RaftServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RaftServer {
    /// The node ID (or the Raft id in decimal when the pool does not show the server).
    #[serde(rename = "ID")]
    pub(crate) id: String,
    /// The node name, empty when the pool does not show the server.
    pub(crate) node: String,
    /// The server RPC address.
    pub(crate) address: String,
    /// Whether it leads, as the answering server knows.
    pub(crate) leader: bool,
    /// Consul's Raft protocol version (3).
    pub(crate) protocol_version: String,
    /// Whether it votes.
    pub(crate) voter: bool,
    /// The answering server's last log index for itself, 0 for the others (not tracked).
    #[serde(default)]
    pub(crate) last_index: u64,
}

/// The configuration as this server knows it; `servers` (from the pool) name the peers.
pub(crate) fn configuration(metrics: &Metrics, servers: &[ServerInfo]) -> RaftConfiguration {
    let mut list: Vec<RaftServer> = metrics
        .peers
        .iter()
        .map(|peer| {
            let known = servers.iter().find(|server| server.raft_id == peer.id);
            RaftServer {
                id: known.map_or_else(|| peer.id.to_string(), |server| server.node_id.clone()),
                node: known.map(|server| server.name.clone()).unwrap_or_default(),
                address: peer.addr.clone(),
                leader: metrics.leader == Some(peer.id),
                protocol_version: "3".into(),
                voter: peer.voter,
                last_index: if peer.id == metrics.id { metrics.last_log_index.unwrap_or(0) } else { 0 },
            }
        })
        .collect();
    list.sort_by(|a, b| b.leader.cmp(&a.leader).then_with(|| a.address.cmp(&b.address)));
    RaftConfiguration { servers: list, index: metrics.applied_index.unwrap_or(0).max(1) }
}

/// Which server `remove-peer` means: by node ID, Raft id (decimal) or server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeerRef {
    /// `-id` (`?id=`).
    Id(String),
    /// `-address` (`?address=`).
    Address(String),
}

/// Why `remove-peer` names no server. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PeerError {
    /// No server in the configuration matches.
    #[error("no server with {what} {value:?} in the Raft configuration")]
    NotFound {
        /// `ID` or `address`.
        what: &'static str,
        /// The value given.
        value: String,
    },
}

/// The Raft id of the server `reference` names in `metrics`' configuration.
pub(crate) fn resolve_peer(
    reference: &PeerRef,
    metrics: &Metrics,
    servers: &[ServerInfo],
) -> Result<NodeId, PeerError> {
    match reference {
        PeerRef::Id(id) => metrics
            .peers
            .iter()
            .find(|peer| {
                peer.id.to_string() == *id
                    || servers.iter().any(|server| server.raft_id == peer.id && server.node_id.eq_ignore_ascii_case(id))
                    || super::raft_id(id) == peer.id
            })
            .map(|peer| peer.id)
            .ok_or_else(|| PeerError::NotFound { what: "ID", value: id.clone() }),
        PeerRef::Address(addr) => metrics
            .peers
            .iter()
            .find(|peer| peer.addr == *addr)
            .map(|peer| peer.id)
            .ok_or_else(|| PeerError::NotFound { what: "address", value: addr.clone() }),
    }
}

/// `operator raft list-peers`: Consul's table.
pub(crate) fn peers_table(configuration: &RaftConfiguration) -> String {
    let rows: Vec<[String; 6]> = configuration
        .servers
        .iter()
        .map(|server| {
            let state = if server.leader { "leader" } else { "follower" };
            [
                server.node.clone(),
                server.id.clone(),
                server.address.clone(),
                state.to_owned(),
                server.voter.to_string(),
                server.protocol_version.clone(),
            ]
        })
        .collect();
    let header = ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use consensus::{Peer, Role};
    use gossip_core::State;

    use super::super::tests::server;
    use super::*;

    fn metrics() -> (Metrics, Vec<ServerInfo>) {
        let servers: Vec<ServerInfo> =
            (1..=3).map(|i| server(&format!("s{i}"), [127, 0, 0, 1], 8300 + i, State::Alive)).collect();
        let peers = servers.iter().map(|s| Peer { id: s.raft_id, addr: s.addr.to_string(), voter: true }).collect();
        let metrics = Metrics {
            id: servers[0].raft_id,
            role: Role::Follower,
            term: 2,
            leader: Some(servers[1].raft_id),
            last_log_index: Some(9),
            applied_index: Some(9),
            snapshot_index: None,
            purged_index: None,
            last_contact: None,
            snapshots_built: 0,
            snapshots_installed: 0,
            peers,
        };
        (metrics, servers)
    }

    #[test]
    fn the_configuration_has_consuls_shape() {
        let (metrics, servers) = metrics();
        let configuration = configuration(&metrics, &servers);
        let json = serde_json::to_value(&configuration).unwrap();
        assert_eq!(json["Index"], 9);
        let first = &json["Servers"][0];
        assert_eq!(first["Node"], "s2", "the leader first");
        assert_eq!(first["ID"], "s2");
        assert_eq!(first["Address"], "127.0.0.1:8302");
        assert_eq!(first["Leader"], true);
        assert_eq!(first["Voter"], true);
        assert_eq!(first["ProtocolVersion"], "3");
        let back: RaftConfiguration = serde_json::from_value(json).unwrap();
        assert_eq!(back, configuration);
        let table = peers_table(&configuration);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("Node  ID"), "{table}");
        assert!(lines[1].starts_with("s2    s2  127.0.0.1:8302  leader    true   3"), "{table}");
    }

    #[test]
    fn remove_peer_finds_a_server_by_node_id_raft_id_or_address() {
        let (metrics, servers) = metrics();
        let s3 = servers[2].raft_id;
        assert_eq!(resolve_peer(&PeerRef::Id("s3".into()), &metrics, &servers), Ok(s3));
        assert_eq!(resolve_peer(&PeerRef::Id(s3.to_string()), &metrics, &servers), Ok(s3));
        assert_eq!(resolve_peer(&PeerRef::Address("127.0.0.1:8303".into()), &metrics, &servers), Ok(s3));
        // A server gone from the pool is still found by its node ID (the hash).
        assert_eq!(resolve_peer(&PeerRef::Id("s3".into()), &metrics, &[]), Ok(s3));
        let missing = resolve_peer(&PeerRef::Address("127.0.0.1:1".into()), &metrics, &servers).unwrap_err();
        assert_eq!(missing.to_string(), "no server with address \"127.0.0.1:1\" in the Raft configuration");
    }
}
