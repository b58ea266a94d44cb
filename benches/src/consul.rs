//! consul-lite as a [`System`]: the consul-style design, where every application node runs a
//! client agent and a few Raft servers hold the catalog and the key/value store.
//!
//! ```text
//!  node 0 starts ─▶ 3 servers (127.0.<net>.2..4, -server -bootstrap-expect 3) ─▶ a leader
//!                └▶ client node00 (-retry-join the servers, -primary-http) ─▶ lock on the primary key
//!  node k starts ─▶ client nodeK joins the servers' pool
//! ```
//!
//! The servers belong to the cluster whose node 0 started them: starting node 0 again (a new
//! cluster, or a new round) stops the old servers and starts new ones. They are not
//! application nodes: [`System::members`] leaves them out, so "every node lists N alive" means
//! the same N application nodes as for the serf-style systems, and the servers are counted
//! separately ([`ConsulLite::server_agents`]) where resources are reported.
//!
//! Each agent gets the node's address and the same ports as the other systems (gossip 7946,
//! HTTP API on the "RPC" port 7373, primary web service 8080); DNS is off.
//!
//! In network namespaces ([`crate::netns`]) each server gets a namespace of its own on the
//! cluster's bridge, at `10.213.<net>.2..4`, so that a partition can cut a server off as well as
//! a node: call [`ConsulLite::place_servers`] with the cluster's topology before starting node 0
//! ([`System::start`] refuses a node in a namespace otherwise). The harness reads every agent's
//! HTTP API from the host through the bridge, as it reads serf-agent's.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::cluster::poll_until;
use crate::netns::{Hosts, Links, Topology};
use crate::process::Agent;
use crate::rpc::{self, MemberView};
use crate::system::{NodeSpec, System, GOSSIP_PORT, RPC_PORT};

/// Servers per cluster, as Consul's recommended smallest production cluster.
pub const SERVERS: usize = 3;
/// Server RPC (Raft) port of every server (on its own address).
pub const SERVER_PORT: u16 = 8300;
/// The lock-delay the client agents' election uses (`-primary-lock-delay`).
pub const LOCK_DELAY: &str = "500ms";

/// How a server was started: its namespace (if any), its arguments and its log file.
type ServerLaunch = (Option<String>, Vec<String>, PathBuf);

/// consul-lite: `SERVERS` Raft servers per cluster plus one client agent per application node.
#[derive(Debug)]
pub struct ConsulLite {
    /// The `consul-lite` binary.
    pub bin: PathBuf,
    /// The client agents' `-primary-lock-delay`.
    pub lock_delay: String,
    name: String,
    id: u8,
    servers: Mutex<Vec<Agent>>,
    /// How each server of the current cluster was started (arguments, log), to restart it.
    server_args: Mutex<[Option<ServerLaunch>; SERVERS]>,
    /// The addresses of the current cluster's servers.
    server_addrs: Mutex<Vec<Ipv4Addr>>,
    /// The servers' namespaces (namespace backend), from [`ConsulLite::place_servers`]; dropped
    /// after the servers (field order).
    hosts: Mutex<Option<Hosts>>,
}

impl ConsulLite {
    /// consul-lite at `bin`, with the election's lock-delay the harness uses ([`LOCK_DELAY`]).
    pub fn new(bin: PathBuf) -> Self {
        Self {
            bin,
            lock_delay: LOCK_DELAY.to_owned(),
            name: "consul-lite".to_owned(),
            id: 2,
            servers: Mutex::default(),
            server_args: Mutex::default(),
            server_addrs: Mutex::default(),
            hosts: Mutex::default(),
        }
    }

    /// consul-lite whose clients' election uses `lock_delay` (e.g. Consul's default `15s`),
    /// named `consul-lite (lock-delay 15s)` in tables, on the address range of system number `id`
    /// (distinct from [`ConsulLite::new`]'s 2, so both can be alive in one run).
    pub fn with_lock_delay(bin: PathBuf, lock_delay: &str, id: u8) -> Self {
        Self {
            bin,
            name: format!("consul-lite (lock-delay {lock_delay})"),
            lock_delay: lock_delay.to_owned(),
            id,
            servers: Mutex::default(),
            server_args: Mutex::default(),
            server_addrs: Mutex::default(),
            hosts: Mutex::default(),
        }
    }

    /// Stop the servers of the current cluster (the clients belong to the
    /// [`crate::cluster::Cluster`]) and remove their namespaces, if any.
    pub fn stop_servers(&self) {
        self.kill_servers();
        lock(&self.hosts).take();
    }

    fn kill_servers(&self) {
        for mut server in self.lock_servers().drain(..) {
            server.kill();
        }
    }

    /// The loopback address of server `k` of the cluster on network `net` (third octet).
    pub fn server_ip(net: u8, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, net, 2 + k as u8)
    }

    /// The address of server `k` of the cluster on network `net` in the namespace backend
    /// (below the nodes' `10.213.<net>.10..`).
    pub fn netns_server_ip(net: u8, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, net, 2 + k as u8)
    }

    /// Make namespaces for the servers of the next cluster on `topology`'s bridge (stopping the
    /// servers of the current one first). Call before starting the cluster's node 0.
    pub fn place_servers(&self, topology: &Topology) -> anyhow::Result<()> {
        self.stop_servers();
        let addrs: Vec<Ipv4Addr> = (0..SERVERS).map(|k| Self::netns_server_ip(topology.net(), k)).collect();
        *lock(&self.hosts) = Some(topology.attach(&addrs)?);
        Ok(())
    }

    /// The servers' namespaces as [`Links`] members (to [`Links::join`] to the cluster's), in
    /// server order; `None` on loopback.
    pub fn server_links(&self) -> Option<Links> {
        lock(&self.hosts).as_ref().map(Hosts::links)
    }

    /// Bytes each server has sent so far (namespace backend; `None` on loopback).
    pub fn server_sent(&self) -> Option<Vec<(u64, u64)>> {
        lock(&self.hosts).as_ref().map(Hosts::sent)
    }

    /// The addresses of the current cluster's servers, in server order.
    pub fn server_addrs(&self) -> Vec<Ipv4Addr> {
        lock(&self.server_addrs).clone()
    }

    /// PIDs of the running servers of the current cluster.
    pub fn server_agents(&self) -> Vec<u32> {
        self.lock_servers().iter().map(Agent::pid).collect()
    }

    fn lock_server_args(&self) -> std::sync::MutexGuard<'_, [Option<ServerLaunch>; SERVERS]> {
        lock(&self.server_args)
    }

    /// The server (by number) that the servers, asked in turn, name as the Raft leader.
    pub fn leader_server(&self) -> Option<usize> {
        let addrs = self.server_addrs();
        addrs.iter().find_map(|&ip| {
            let http = SocketAddr::from((ip, RPC_PORT));
            let r = rpc::http_timeout(http, "GET", "/v1/status/leader", None, Duration::from_millis(300)).ok()?;
            let leader: String = serde_json::from_slice(&r.body).ok()?;
            addrs.iter().position(|a| leader.starts_with(&format!("{a}:")))
        })
    }

    /// Send `signal` to server `k` (SIGKILL also reaps it).
    pub fn signal_server(&self, k: usize, signal: crate::process::Signal) -> anyhow::Result<()> {
        let mut servers = self.lock_servers();
        let server = servers.get_mut(k).ok_or_else(|| anyhow::anyhow!("no server {k}"))?;
        if signal == crate::process::Signal::Kill {
            server.kill();
        } else {
            server.signal(signal)?;
        }
        Ok(())
    }

    /// Start server `k` again with its arguments and data directory (after a kill).
    pub fn restart_server(&self, k: usize) -> anyhow::Result<()> {
        let (netns, args, log) =
            self.lock_server_args()[k].clone().ok_or_else(|| anyhow::anyhow!("server {k} was never started"))?;
        let agent = Agent::spawn_in(netns.as_deref(), &self.bin, &args, &log)?;
        let mut servers = self.lock_servers();
        let slot = servers.get_mut(k).ok_or_else(|| anyhow::anyhow!("no server {k}"))?;
        *slot = agent;
        Ok(())
    }

    fn lock_servers(&self) -> std::sync::MutexGuard<'_, Vec<Agent>> {
        lock(&self.servers)
    }

    /// Start the servers of the cluster that `first` (node 0) belongs to, and wait for a leader.
    fn start_servers(&self, first: &NodeSpec) -> anyhow::Result<()> {
        self.kill_servers();
        let net = first.ip.octets()[2];
        // (address, namespace) of each server.
        let placed: Vec<(Ipv4Addr, Option<String>)> = match (&first.netns, lock(&self.hosts).as_ref()) {
            (None, _) => (0..SERVERS).map(|k| (Self::server_ip(net, k), None)).collect(),
            (Some(_), Some(h)) => (0..SERVERS).map(|k| (h.addr(k), Some(h.namespace(k).to_owned()))).collect(),
            (Some(ns), None) => anyhow::bail!(
                "consul-lite: node {} is in namespace {ns} but the servers have none: call                  ConsulLite::place_servers with the cluster's topology first",
                first.name
            ),
        };
        *lock(&self.server_addrs) = placed.iter().map(|(ip, _)| *ip).collect();
        let mut servers = self.lock_servers();
        let base = first.dir.parent().unwrap_or(&first.dir).join("servers");
        let seeds: Vec<String> =
            placed.iter().map(|(ip, _)| SocketAddr::from((*ip, GOSSIP_PORT)).to_string()).collect();
        for (k, (ip, netns)) in placed.iter().enumerate() {
            let ip = *ip;
            let dir = base.join(format!("server{k}"));
            std::fs::create_dir_all(&dir)?;
            let mut args: Vec<String> = vec![
                "agent".into(),
                "-server".into(),
                "-bootstrap-expect".into(),
                SERVERS.to_string(),
                "-node".into(),
                format!("server{k}"),
                "-data-dir".into(),
                dir.join("data").display().to_string(),
            ];
            args.extend(common_flags(ip));
            args.extend(["-server-port".into(), SERVER_PORT.to_string()]);
            for seed in seeds.iter().filter(|s| !s.starts_with(&format!("{ip}:"))) {
                args.extend(["-retry-join".into(), seed.clone()]);
            }
            servers.push(Agent::spawn_in(netns.as_deref(), &self.bin, &args, &dir.join("agent.log"))?);
            self.lock_server_args()[k] = Some((netns.clone(), args, dir.join("agent.log")));
        }
        let http = SocketAddr::from((placed[0].0, RPC_PORT));
        let leader = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
            let r = rpc::http_timeout(http, "GET", "/v1/status/leader", None, Duration::from_millis(500)).ok()?;
            (r.status == 200 && r.body.len() > 2).then_some(())
        });
        if leader.is_none() {
            let tail = servers.first().map(|a| a.log_tail(15)).unwrap_or_default();
            anyhow::bail!(
                "consul-lite: the {SERVERS} servers elected no leader within 30 s; server0's log ends:\n{tail}"
            );
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Flags every consul-lite agent of the harness gets: its address for gossip and HTTP, the
/// shared ports, DNS off, warnings only.
fn common_flags(ip: Ipv4Addr) -> Vec<String> {
    [
        "-bind",
        &ip.to_string(),
        "-client",
        &ip.to_string(),
        "-http-port",
        &RPC_PORT.to_string(),
        "-serf-lan-port",
        &GOSSIP_PORT.to_string(),
        "-dns-port",
        "-1",
        "-log-level",
        "warn",
    ]
    .map(str::to_owned)
    .to_vec()
}

impl Drop for ConsulLite {
    fn drop(&mut self) {
        for mut server in self.lock_servers().drain(..) {
            server.kill();
        }
    }
}

impl System for ConsulLite {
    fn name(&self) -> &str {
        &self.name
    }

    fn id(&self) -> u8 {
        self.id
    }

    fn failover(&self) -> &str {
        "lock held through a session on serfHealth (-primary-http)"
    }

    fn start(&self, node: &NodeSpec, join: Option<&NodeSpec>, _handler: &Path) -> anyhow::Result<Agent> {
        if join.is_none() {
            self.start_servers(node)?;
        }
        std::fs::create_dir_all(&node.dir)?;
        let mut args: Vec<String> = vec!["agent".into(), "-node".into(), node.name.clone()];
        args.extend(common_flags(node.ip));
        for ip in self.server_addrs() {
            args.extend(["-retry-join".into(), SocketAddr::from((ip, GOSSIP_PORT)).to_string()]);
        }
        args.extend([
            "-primary-http".into(),
            node.http.to_string(),
            "-primary-lock-delay".into(),
            self.lock_delay.clone(),
        ]);
        Agent::spawn_in(node.netns.as_deref(), &self.bin, &args, &node.dir.join("agent.log"))
    }

    fn members(&self, node: &NodeSpec) -> anyhow::Result<Vec<MemberView>> {
        let r = rpc::http(node.rpc, "GET", "/v1/agent/members", None)?;
        anyhow::ensure!(r.status == 200, "GET /v1/agent/members: HTTP {}", r.status);
        let members: Vec<serde_json::Value> = serde_json::from_slice(&r.body)?;
        Ok(members
            .iter()
            // The servers are not application nodes.
            .filter(|m| m.pointer("/Tags/role").and_then(|r| r.as_str()) != Some("consul"))
            .filter_map(|m| {
                let status = match m.get("Status")?.as_u64()? {
                    1 => "alive",
                    2 => "leaving",
                    3 => "left",
                    4 => "failed",
                    _ => "none",
                };
                Some(MemberView { name: m.get("Name")?.as_str()?.to_owned(), status: status.to_owned() })
            })
            .collect())
    }

    fn user_event(&self, _node: &NodeSpec, _name: &str) -> anyhow::Result<()> {
        anyhow::bail!("consul-lite has no user events (Consul's /v1/event/fire is not implemented)")
    }

    fn serves_primary(&self, node: &NodeSpec) -> bool {
        rpc::http_timeout(node.http, "GET", "/", None, Duration::from_millis(200)).is_ok_and(|r| r.status == 200)
    }

    fn catalog_excludes(&self, observer: &NodeSpec, victim: &str) -> Option<bool> {
        Some(catalog_marks_critical(observer, victim))
    }

    fn extra_agents(&self) -> Vec<u32> {
        self.server_agents()
    }
}

/// Whether the catalog, read through `observer`'s HTTP API, has `victim`'s `serfHealth` check
/// critical (the consul-style design's "failure recognised": its services leave the passing
/// answers and its sessions are invalidated).
pub fn catalog_marks_critical(observer: &NodeSpec, victim: &str) -> bool {
    let path = format!("/v1/health/node/{victim}?stale");
    let Ok(r) = rpc::http_timeout(observer.rpc, "GET", &path, None, Duration::from_millis(300)) else {
        return false;
    };
    let Ok(checks) = serde_json::from_slice::<Vec<serde_json::Value>>(&r.body) else { return false };
    checks.iter().any(|c| {
        c.get("CheckID").and_then(|v| v.as_str()) == Some("serfHealth")
            && c.get("Status").and_then(|v| v.as_str()) == Some("critical")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_sit_below_the_application_nodes() {
        let node = NodeSpec::new(crate::system::default_net(2), 0, Path::new("/tmp/x"), "lan");
        assert_eq!(node.ip, Ipv4Addr::new(127, 0, 12, 10));
        assert_eq!(ConsulLite::server_ip(12, 0), Ipv4Addr::new(127, 0, 12, 2));
        assert!(ConsulLite::server_ip(12, SERVERS - 1).octets()[3] < node.ip.octets()[3]);
        assert!(common_flags(node.ip).windows(2).any(|w| w[0] == "-dns-port" && w[1] == "-1"));
        let in_ns = node.in_namespace("ns", crate::netns::node_ip(12, 0));
        assert!(ConsulLite::netns_server_ip(12, SERVERS - 1).octets()[3] < in_ns.ip.octets()[3]);
    }

    #[test]
    fn a_node_in_a_namespace_needs_the_servers_placed() {
        let consul = ConsulLite::new(PathBuf::from("/nonexistent/consul-lite"));
        let node = NodeSpec::new(12, 0, Path::new("/tmp/x"), "lan").in_namespace("ns", crate::netns::node_ip(12, 0));
        let e = consul.start(&node, None, Path::new("/dev/null")).unwrap_err().to_string();
        assert!(e.contains("place_servers"), "{e}");
    }
}
