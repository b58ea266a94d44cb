//! A server's cluster: finding the other servers through the gossip pool, bootstrapping Raft
//! once `-bootstrap-expect` of them are alive, adding later servers as voters, and
//! `operator raft`.
//!
//! Servers advertise themselves in their gossip tags as Consul's do: `role=consul`, `dc`,
//! `port` (the server RPC port, 8300), `id` (the node ID, kept in `data-dir/node-id`) and,
//! with `-bootstrap-expect N`, `expect=N`. Every member of the pool with `role=consul` in
//! this datacenter is a [`ServerInfo`]; its Raft id is derived from its node ID
//! ([`raft_id`]), and its server address is its gossip IP with the `port` tag.
//!
//! ```text
//!  gossip members ──► ServerInfo (role=consul, dc, port, id) ──► bootstrap::plan_bootstrap
//!        │                                                          (lowest name initializes)
//!        └──────────────────────────────────────────────────► bootstrap::plan_membership
//!                                                               (the leader adds / removes)
//!  Raft metrics + ServerInfo ──► operator::configuration (/v1/operator/raft/configuration)
//! ```

pub(crate) mod bootstrap;
pub(crate) mod operator;
pub(crate) mod subscribe;

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use consensus::NodeId;
use gossip_core::{Member, State, Tags};

use crate::config::Settings;
use crate::store::RaftStore;

/// The file in `-data-dir` that keeps the node ID across restarts (Consul's name).
pub(crate) const NODE_ID_FILE: &str = "node-id";

/// The subdirectory of `-data-dir` holding the Raft log and snapshots (Consul's name).
pub(crate) const RAFT_DIR: &str = "raft";

/// Starts a `-server`'s store: the node ID from `-data-dir/node-id` (created on first
/// start), the Raft log and snapshots in `-data-dir/raft`, server RPC on
/// `-bind:-server-port`, Consul's production Raft timings ([`consensus::Config::lan`]).
/// Returns the store and the node ID.
pub(crate) async fn start_store(settings: &Settings) -> anyhow::Result<(RaftStore, String)> {
    let Some(data_dir) = &settings.data_dir else {
        anyhow::bail!("-server needs -data-dir (data_dir): the Raft log and the node ID are kept there");
    };
    let node_id = load_node_id(data_dir, crate::agent::uuid)
        .with_context(|| format!("data dir (-data-dir) {}: cannot read or create the node ID", data_dir.display()))?;
    let mut config = consensus::Config::lan(raft_id(&node_id), data_dir.join(RAFT_DIR));
    config.bind_addr = SocketAddr::new(settings.bind, settings.server_port);
    let store = RaftStore::start(config).await.with_context(|| {
        format!("cannot start Raft (-data-dir {}, -server-port {})", data_dir.display(), settings.server_port)
    })?;
    tracing::info!(node_id = %node_id, raft_id = store.consensus().id(), "raft started");
    Ok((store, node_id))
}

/// A server seen in the gossip pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerInfo {
    /// Its node name.
    pub(crate) name: String,
    /// Its node ID (the `id` tag).
    pub(crate) node_id: String,
    /// Its Raft id, derived from the node ID.
    pub(crate) raft_id: NodeId,
    /// Its server RPC address: the gossip IP and the `port` tag.
    pub(crate) addr: SocketAddr,
    /// Its `-bootstrap-expect` (the `expect` tag), if any.
    pub(crate) expect: Option<u32>,
    /// Its gossip state.
    pub(crate) state: State,
}

impl ServerInfo {
    /// The server a gossip member advertises, if it is a server of datacenter `dc`.
    pub(crate) fn from_member(member: &Member, dc: &str) -> Option<Self> {
        Self::from_parts(member.name.as_str(), member.addr, &member.tags, member.state, dc)
    }

    /// The server a member with this name, gossip address, tags and state advertises.
    fn from_parts(name: &str, gossip_addr: SocketAddr, tags: &Tags, state: State, dc: &str) -> Option<Self> {
        if tags.get("role") != Some("consul") || tags.get("dc") != Some(dc) {
            return None;
        }
        let port: u16 = tags.get("port")?.parse().ok()?;
        let node_id = tags.get("id").filter(|id| !id.is_empty())?.to_owned();
        Some(Self {
            name: name.to_owned(),
            raft_id: raft_id(&node_id),
            node_id,
            addr: SocketAddr::new(gossip_addr.ip(), port),
            expect: tags.get("expect").and_then(|expect| expect.parse().ok()),
            state,
        })
    }

    /// Whether it answers gossip (alive or suspect).
    pub(crate) fn is_live(&self) -> bool {
        self.state.is_live()
    }
}

/// The servers of datacenter `dc` among `members`, in name order.
pub(crate) fn servers(members: &[Member], dc: &str) -> Vec<ServerInfo> {
    sorted(members.iter().filter_map(|member| ServerInfo::from_member(member, dc)).collect())
}

fn sorted(mut servers: Vec<ServerInfo>) -> Vec<ServerInfo> {
    servers.sort_by(|a, b| a.name.cmp(&b.name));
    servers.dedup_by(|a, b| a.name == b.name);
    servers
}

/// A server's Raft id: the 64-bit FNV-1a hash of its node ID, so that every server derives
/// the same id from the `id` tag, and a server keeps it across restarts (its node ID is
/// kept in the data dir). A server whose data dir is wiped gets a new node ID, and so a new
/// Raft id: it never votes twice in a term under an old identity.
pub(crate) fn raft_id(node_id: &str) -> NodeId {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    node_id.to_ascii_lowercase().bytes().fold(OFFSET, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
}

/// The node ID kept in `data_dir/node-id`, created (a new UUID) on first start. Written
/// to a temporary file, synced, then renamed, so that a crash leaves either no file or a
/// whole one.
pub(crate) fn load_node_id(data_dir: &Path, new_id: impl FnOnce() -> String) -> io::Result<String> {
    let path = data_dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a node ID: {text:?}", path.display()),
                ));
            }
            Ok(id.to_owned())
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let id = new_id();
            let temporary = data_dir.join(format!("{NODE_ID_FILE}.tmp"));
            {
                use std::io::Write as _;
                let mut file = std::fs::File::create(&temporary)?;
                file.write_all(id.as_bytes())?;
                file.sync_all()?;
            }
            std::fs::rename(&temporary, &path)?;
            std::fs::File::open(data_dir)?.sync_all()?;
            Ok(id)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::Tags;

    /// A server as a member of the pool would advertise it.
    pub(crate) fn server(name: &str, ip: [u8; 4], port: u16, state: State) -> ServerInfo {
        let port = port.to_string();
        let tags = [("role", "consul"), ("dc", "dc1"), ("port", port.as_str()), ("id", name)];
        let tags = Tags::from_pairs(tags).unwrap();
        ServerInfo::from_parts(name, SocketAddr::from((ip, 8301)), &tags, state, "dc1").unwrap()
    }

    #[test]
    fn servers_are_members_with_consul_tags_in_this_datacenter() {
        let gossip = SocketAddr::from(([10, 0, 0, 1], 8301));
        let parse = |name: &str, tags: &[(&str, &str)]| {
            ServerInfo::from_parts(name, gossip, &Tags::from_pairs(tags.iter().copied()).unwrap(), State::Alive, "dc1")
        };
        let found = parse("s1", &[("role", "consul"), ("dc", "dc1"), ("port", "8310"), ("id", "u1"), ("expect", "3")]);
        let found = found.expect("a server");
        assert_eq!(found.addr, "10.0.0.1:8310".parse().unwrap());
        assert_eq!((found.raft_id, found.expect), (raft_id("u1"), Some(3)));
        assert!(parse("s", &[("role", "consul"), ("dc", "dc2"), ("port", "8300"), ("id", "u")]).is_none());
        assert!(parse("s", &[("role", "consul"), ("dc", "dc1"), ("port", "x"), ("id", "u")]).is_none());
        assert!(parse("s", &[("role", "consul"), ("dc", "dc1"), ("port", "8300")]).is_none(), "no id");
        assert!(parse("s", &[("role", "node"), ("dc", "dc1"), ("port", "8300"), ("id", "u")]).is_none());
        let list = sorted(vec![
            server("s2", [10, 0, 0, 2], 8300, State::Alive),
            server("s1", [10, 0, 0, 1], 8300, State::Alive),
        ]);
        assert_eq!(list.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["s1", "s2"]);
    }

    #[test]
    fn raft_ids_are_stable_and_distinct() {
        assert_eq!(raft_id("e35bde83-4e9c-434f-a6ef-453f44ee21ea"), raft_id("E35BDE83-4E9C-434F-A6EF-453F44EE21EA"));
        assert_ne!(raft_id("a"), raft_id("b"));
        // FNV-1a's published test vector.
        assert_eq!(raft_id("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_node_id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = load_node_id(&data, || "id-1".into()).unwrap();
        assert_eq!(first, "id-1");
        let again = load_node_id(&data, || unreachable!("kept")).unwrap();
        assert_eq!(again, "id-1");
        std::fs::write(data.join(NODE_ID_FILE), "  \n").unwrap();
        let damaged = load_node_id(&data, || unreachable!("not replaced")).unwrap_err();
        assert!(damaged.to_string().contains("not a node ID"), "{damaged}");
    }
}
