//! A system under test: how to start one of its agents, read a node's member list, send a user
//! event, and tell whether a node serves the primary service. Killing, stopping and leaving are
//! signals to the agent's PID and the same for every system ([`crate::process::Signal`]).
//!
//! Two systems are here: [`SerfAgent`] (ours, `bins/serf-agent`, with its built-in primary
//! election and web service) and [`HashicorpSerf`] (the Debian package `serf`, with the
//! handler-based failover of the original demo). The third, consul-lite (servers plus a client
//! agent per node), is in [`crate::consul`].
//!
//! Every node gets its own loopback address (`127.0.<net>.<10 + index>`, where the network
//! number `net` is [`default_net`] of its system, or another one when several clusters of one
//! system run at once) with the usual ports (gossip 7946, RPC 7373, primary web service 8080), so
//! both systems use the same ports and no agent can collide with a process on 127.0.0.1.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::process::Agent;
use crate::rpc::{self, MemberView, SerfRpc};

/// Gossip port of every node (on its own address).
pub const GOSSIP_PORT: u16 = 7946;
/// RPC port of every node.
pub const RPC_PORT: u16 = 7373;
/// Primary web service port of every node.
pub const HTTP_PORT: u16 = 8080;

/// One node of a cluster under test.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Index in the cluster (0 is started first and is the first primary).
    pub index: usize,
    /// Node name: `node00`, `node01`, ... (zero-padded, so names sort as numbers).
    pub name: String,
    /// Its loopback address.
    pub ip: Ipv4Addr,
    /// Gossip address.
    pub gossip: SocketAddr,
    /// RPC address.
    pub rpc: SocketAddr,
    /// Primary web service address.
    pub http: SocketAddr,
    /// Its directory: log, handler output, role file.
    pub dir: PathBuf,
    /// `primary` for node 0, `standby` for the others: every node is eligible.
    pub role: &'static str,
    /// Timing profile (`lan` by default, as both systems default to).
    pub profile: String,
    /// The network namespace the agent runs in (namespace backend), or `None` (loopback).
    pub netns: Option<String>,
}

impl NodeSpec {
    /// The spec of node `index` of a cluster on network number `net` (`127.0.<net>.<10 +
    /// index>`), with its directory under `base`.
    pub fn new(net: u8, index: usize, base: &Path, profile: &str) -> Self {
        let ip = Ipv4Addr::new(127, 0, net, 10 + index as u8);
        let name = format!("node{index:02}");
        Self {
            index,
            dir: base.join(&name),
            name,
            ip,
            gossip: SocketAddr::from((ip, GOSSIP_PORT)),
            rpc: SocketAddr::from((ip, RPC_PORT)),
            http: SocketAddr::from((ip, HTTP_PORT)),
            role: if index == 0 { "primary" } else { "standby" },
            profile: profile.to_owned(),
            netns: None,
        }
    }

    /// The same node in network namespace `netns` at address `ip` (same ports).
    pub fn in_namespace(mut self, netns: &str, ip: Ipv4Addr) -> Self {
        self.ip = ip;
        self.gossip = SocketAddr::from((ip, GOSSIP_PORT));
        self.rpc = SocketAddr::from((ip, RPC_PORT));
        self.http = SocketAddr::from((ip, HTTP_PORT));
        self.netns = Some(netns.to_owned());
        self
    }

    /// The file the event handler appends `EVENT NAME UNIX_NANOS` lines to.
    pub fn events_file(&self) -> PathBuf {
        self.dir.join("events")
    }

    /// The role file the handler-based failover keeps (`primary` or `standby`).
    pub fn role_file(&self) -> PathBuf {
        self.dir.join("role")
    }
}

/// The network number (third octet: `127.0.<net>.x` on loopback, `10.213.<net>.x` in
/// namespaces) of the clusters of system `id`: 10 for ours, 11 for Serf. Clusters that run at
/// the same time as another of the same system (the lossy runs) take `default_net(id) + 2 * k`.
pub fn default_net(id: u8) -> u8 {
    10 + id
}

/// A system under test.
pub trait System: Send + Sync {
    /// Short name for tables: `serf-agent`, `serf`.
    fn name(&self) -> &str;
    /// Number that selects the address range (see [`default_net`]); distinct per system.
    fn id(&self) -> u8;
    /// How the primary role moves, for the report.
    fn failover(&self) -> &str;
    /// Start the agent of `node`, joining `join` (none for the first node). The agent runs
    /// the handler script `handler` for every event.
    fn start(&self, node: &NodeSpec, join: Option<&NodeSpec>, handler: &Path) -> anyhow::Result<Agent>;
    /// The members `node` knows, with their status.
    fn members(&self, node: &NodeSpec) -> anyhow::Result<Vec<MemberView>>;
    /// Send a user event from `node` (not coalesced).
    fn user_event(&self, node: &NodeSpec, name: &str) -> anyhow::Result<()>;
    /// Whether `node` serves the primary service now (a client would get an answer from it).
    fn serves_primary(&self, node: &NodeSpec) -> bool;
    /// Forget any connection to `node` (it was killed or stopped).
    fn disconnect(&self, _node: &NodeSpec) {}
    /// Whether the service catalog, as `observer` reads it, has taken `victim` out of the
    /// passing answers; `None` for a system without a catalog (the serf-style ones).
    fn catalog_excludes(&self, _observer: &NodeSpec, _victim: &str) -> Option<bool> {
        None
    }
    /// Processes the system runs besides one agent per node (consul-lite's servers), by PID.
    fn extra_agents(&self) -> Vec<u32> {
        Vec::new()
    }
}

/// The event handler every agent runs: it appends `EVENT NAME UNIX_NANOS` to the node's events
/// file for each member in a member event and for each user event; with a Serf binary and RPC
/// address it also keeps the node's role file as the original demo's failover did (the first
/// alive eligible member by name is primary).
pub fn write_handler(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("handler.sh");
    std::fs::write(
        &path,
        r#"#!/bin/sh
# cluster-bench event handler. Arguments: NODE_DIR [SERF_BIN RPC_ADDR]
dir=$1
now=$(date +%s%N)
case "$SERF_EVENT" in
user)
    cat >/dev/null
    echo "user $SERF_USER_EVENT $now" >>"$dir/events"
    ;;
member-*)
    while read -r name rest; do
        [ -n "$name" ] && echo "$SERF_EVENT $name $now" >>"$dir/events"
    done
    if [ -n "$3" ]; then
        # Handler-based failover (HashiCorp Serf has no election): the first alive eligible
        # member by name is the primary.
        first=$("$2" members -rpc-addr "$3" -status alive -tag 'role=primary|standby' | awk '{print $1}' | sort | head -n 1)
        if [ "$first" = "$SERF_SELF_NAME" ]; then role=primary; else role=standby; fi
        old=$(cat "$dir/role" 2>/dev/null)
        if [ "$role" != "$old" ]; then
            echo "$role" >"$dir/role.tmp" && mv "$dir/role.tmp" "$dir/role"
            echo "role $role $(date +%s%N)" >>"$dir/events"
        fi
    fi
    ;;
*)
    cat >/dev/null
    ;;
esac
"#,
    )?;
    Ok(path)
}

fn handler_command(handler: &Path, node: &NodeSpec, failover: Option<(&Path, SocketAddr)>) -> String {
    let mut cmd = format!("/bin/sh {} {}", handler.display(), node.dir.display());
    if let Some((bin, rpc)) = failover {
        cmd.push_str(&format!(" {} {rpc}", bin.display()));
    }
    cmd
}

/// Start `bin agent` for `node` with the flags both systems share (Serf's names: `-node`,
/// `-bind`, `-rpc-addr`, `-tag`, `-profile`, `-event-handler`, `-log-level`, `-join`), then
/// `extra`, inside the node's namespace when it has one.
fn start_agent(
    bin: &Path,
    node: &NodeSpec,
    join: Option<&NodeSpec>,
    event_handler: &str,
    extra: &[String],
) -> anyhow::Result<Agent> {
    std::fs::create_dir_all(&node.dir)?;
    let mut args: Vec<String> = [
        "agent",
        "-node",
        &node.name,
        "-bind",
        &node.gossip.to_string(),
        "-rpc-addr",
        &node.rpc.to_string(),
        "-tag",
        &format!("role={}", node.role),
        "-profile",
        &node.profile,
        "-event-handler",
        event_handler,
        "-log-level",
        "warn",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend_from_slice(extra);
    if let Some(seed) = join {
        args.extend(["-join".into(), seed.gossip.to_string()]);
    }
    Agent::spawn_in(node.netns.as_deref(), bin, &args, &node.dir.join("agent.log"))
}

/// Ours: `bins/serf-agent`, with the built-in election and primary web service.
#[derive(Debug, Clone)]
pub struct SerfAgent {
    /// The `serf-agent` binary.
    pub bin: PathBuf,
}

impl System for SerfAgent {
    fn name(&self) -> &str {
        "serf-agent"
    }

    fn id(&self) -> u8 {
        0
    }

    fn failover(&self) -> &str {
        "built-in election (-primary-http)"
    }

    fn start(&self, node: &NodeSpec, join: Option<&NodeSpec>, handler: &Path) -> anyhow::Result<Agent> {
        let primary_http = ["-primary-http".to_owned(), node.http.to_string()];
        start_agent(&self.bin, node, join, &handler_command(handler, node, None), &primary_http)
    }

    fn members(&self, node: &NodeSpec) -> anyhow::Result<Vec<MemberView>> {
        let r = rpc::http(node.rpc, "GET", "/v1/members", None)?;
        anyhow::ensure!(r.status == 200, "GET /v1/members: HTTP {}", r.status);
        let v: serde_json::Value = serde_json::from_slice(&r.body)?;
        let members = v.get("members").and_then(|m| m.as_array()).cloned().unwrap_or_default();
        Ok(members
            .iter()
            .filter_map(|m| {
                Some(MemberView {
                    name: m.get("name")?.as_str()?.to_owned(),
                    status: m.get("status")?.as_str()?.to_owned(),
                })
            })
            .collect())
    }

    fn user_event(&self, node: &NodeSpec, name: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "name": name, "payload": "", "coalesce": false }).to_string();
        let r = rpc::http(node.rpc, "POST", "/v1/event", Some(&body))?;
        anyhow::ensure!(r.status == 200, "POST /v1/event: HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body));
        Ok(())
    }

    fn serves_primary(&self, node: &NodeSpec) -> bool {
        rpc::http_timeout(node.http, "GET", "/", None, Duration::from_millis(200)).is_ok_and(|r| r.status == 200)
    }
}

/// HashiCorp Serf (the Debian package), with the handler-based failover of the original demo.
#[derive(Debug)]
pub struct HashicorpSerf {
    /// The `serf` binary.
    pub bin: PathBuf,
    /// One persistent RPC connection per node, by RPC address.
    connections: Mutex<HashMap<SocketAddr, Arc<Mutex<Option<SerfRpc>>>>>,
}

impl HashicorpSerf {
    /// Serf at `bin`.
    pub fn new(bin: PathBuf) -> Self {
        Self { bin, connections: Mutex::new(HashMap::new()) }
    }

    /// `serf` from `PATH`, if installed.
    pub fn find() -> Option<Self> {
        which("serf").map(Self::new)
    }

    fn with_rpc<T>(&self, node: &NodeSpec, f: impl FnOnce(&mut SerfRpc) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let slot = {
            let mut map = self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(node.rpc).or_default().clone()
        };
        let mut conn = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if conn.is_none() {
            *conn = Some(SerfRpc::connect(node.rpc)?);
        }
        let result = conn.as_mut().map_or_else(|| Err(anyhow::anyhow!("no connection")), f);
        if result.is_err() {
            // The stream may hold half a response: start afresh next time.
            *conn = None;
        }
        result
    }
}

impl System for HashicorpSerf {
    fn name(&self) -> &str {
        "serf"
    }

    fn id(&self) -> u8 {
        1
    }

    fn failover(&self) -> &str {
        "event-handler script (first alive eligible member)"
    }

    fn start(&self, node: &NodeSpec, join: Option<&NodeSpec>, handler: &Path) -> anyhow::Result<Agent> {
        start_agent(&self.bin, node, join, &handler_command(handler, node, Some((&self.bin, node.rpc))), &[])
    }

    fn members(&self, node: &NodeSpec) -> anyhow::Result<Vec<MemberView>> {
        self.with_rpc(node, SerfRpc::members)
    }

    fn user_event(&self, node: &NodeSpec, name: &str) -> anyhow::Result<()> {
        self.with_rpc(node, |rpc| rpc.user_event(name, "", false))
    }

    fn serves_primary(&self, node: &NodeSpec) -> bool {
        // The demo's service runs on the node whose handler made it primary; the cluster only
        // asks live, running nodes (a killed or stopped node serves nothing).
        std::fs::read_to_string(node.role_file()).is_ok_and(|r| r.trim() == "primary")
    }

    fn disconnect(&self, node: &NodeSpec) {
        let mut map = self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(&node.rpc);
    }
}

/// The first executable called `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// How the harness builds the serf-agent it measures and runs (the demo too): the `agent` profile
/// of the workspace (release, optimised for size), linked statically against glibc and not
/// position-independent, for the host's architecture. Each of the three makes the agent's
/// resident set smaller (its RSS is mostly the pages of its own code): see `docs/benchmarks.md`.
pub const AGENT_BUILD: &str = "RUSTFLAGS='-C target-feature=+crt-static -C relocation-model=static' cargo build --profile agent -p serf-agent --target <arch>-unknown-linux-gnu";

/// The flags of [`AGENT_BUILD`].
const AGENT_RUSTFLAGS: [&str; 4] = ["-C", "target-feature=+crt-static", "-C", "relocation-model=static"];

/// The target triple of [`AGENT_BUILD`]: an explicit target, so that the static flags apply to
/// the agent and not to build scripts and proc-macros.
fn agent_target() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// Locate `serf-agent`: `explicit` if given, else build it as [`AGENT_BUILD`] says (when cargo
/// is available; a no-op when it is up to date) and use
/// `target/<arch>-unknown-linux-gnu/agent/serf-agent` of this workspace (or of
/// `$CARGO_TARGET_DIR`).
pub fn locate_serf_agent(explicit: Option<&Path>, build: bool) -> anyhow::Result<PathBuf> {
    locate_static_build(explicit, build, "serf-agent", "agent", AGENT_BUILD)
}

/// How the harness builds consul-lite: as serf-agent ([`AGENT_BUILD`]: static, not
/// position-independent) but with the `consul` profile (thin LTO), whose panics unwind: a
/// server's storage (redb) relies on unwinding to leave its files consistent, so consul-lite is
/// never built with the `agent` profile (panic = abort).
pub const CONSUL_BUILD: &str = "RUSTFLAGS='-C target-feature=+crt-static -C relocation-model=static' cargo build --profile consul -p consul-lite --target <arch>-unknown-linux-gnu";

/// Locate `consul-lite`: `explicit` if given, else build it as [`CONSUL_BUILD`] says and use
/// `target/<arch>-unknown-linux-gnu/consul/consul-lite`.
pub fn locate_consul_lite(explicit: Option<&Path>, build: bool) -> anyhow::Result<PathBuf> {
    locate_static_build(explicit, build, "consul-lite", "consul", CONSUL_BUILD)
}

/// `explicit` if given, else `package` built with `profile`, statically, for the host's target
/// (`how` is the command line to show).
fn locate_static_build(
    explicit: Option<&Path>,
    build: bool,
    package: &str,
    profile: &str,
    how: &str,
) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(is_executable(p), "{} is not an executable", p.display());
        return Ok(p.to_owned());
    }
    let root = crate::stamp::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let triple = agent_target();
    let bin = target.join(&triple).join(profile).join(package);
    if build {
        let cargo = std::env::var_os("CARGO").map(PathBuf::from).or_else(|| which("cargo"));
        if let Some(cargo) = cargo {
            eprintln!("building {package}: {how}");
            let status = std::process::Command::new(cargo)
                .args(["build", "--profile", profile, "-p", package, "--target", &triple])
                .env("CARGO_ENCODED_RUSTFLAGS", AGENT_RUSTFLAGS.join("\x1f"))
                .env_remove("RUSTFLAGS")
                .current_dir(&root)
                .status()?;
            anyhow::ensure!(status.success(), "building {package} failed ({status}): {how}");
        } else if !bin.exists() {
            anyhow::bail!("cargo not found and {} does not exist", bin.display());
        }
    }
    anyhow::ensure!(is_executable(&bin), "{} not found; build it with {how}", bin.display());
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_and_names() {
        let n = NodeSpec::new(default_net(1), 3, Path::new("/tmp/x"), "lan");
        assert_eq!(n.name, "node03");
        assert_eq!(n.gossip.to_string(), "127.0.11.13:7946");
        assert_eq!(n.rpc.to_string(), "127.0.11.13:7373");
        assert_eq!(n.role, "standby");
        assert_eq!(NodeSpec::new(default_net(0), 0, Path::new("/tmp/x"), "lan").role, "primary");
    }

    #[test]
    fn the_handler_records_user_and_member_events() {
        let dir = crate::process::RunDir::new("handler-test", false).unwrap();
        let handler = write_handler(dir.path()).unwrap();
        let node_dir = dir.path().join("node00");
        std::fs::create_dir_all(&node_dir).unwrap();
        let run = |event: &str, stdin: &str| {
            use std::io::Write;
            let mut child = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("/bin/sh {} {}", handler.display(), node_dir.display()))
                .env("SERF_EVENT", event)
                .env("SERF_USER_EVENT", "ping")
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
            assert!(child.wait().unwrap().success());
        };
        run("user", "");
        run("member-failed", "node03\t127.0.10.13:7946\t\trole=standby\nnode04\t127.0.10.14:7946\t\t\n");
        let events = std::fs::read_to_string(node_dir.join("events")).unwrap();
        let kinds: Vec<(&str, &str)> = events
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f[0], f[1])
            })
            .collect();
        assert_eq!(kinds, [("user", "ping"), ("member-failed", "node03"), ("member-failed", "node04")]);
    }
}
