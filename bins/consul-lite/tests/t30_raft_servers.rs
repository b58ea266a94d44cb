//! Three `-server` processes on 127.0.0.1 with distinct free ports: bootstrap with
//! `-bootstrap-expect 3` through the gossip pool, writes through every server (followers
//! forward), leader SIGKILL → a new leader and writes accepted again, the old leader
//! restarted from its data dir catches up, and every acknowledged write is on every server.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, request, Response};

/// Bound on anything the test waits for.
const WAIT: Duration = Duration::from_secs(60);

struct Ports {
    http: u16,
    serf: u16,
    server: u16,
    dns: u16,
}

/// A `consul-lite agent -server` process, killed by its PID on drop.
struct Server {
    name: String,
    dir: PathBuf,
    ports: Ports,
    join: u16,
    /// `-bootstrap-expect 3`, or none (a server that joins an existing cluster).
    expect: bool,
    child: Option<Child>,
}

impl Server {
    fn start(name: &str, root: &Path, join: Option<u16>) -> Self {
        Self::start_with(name, root, join, true)
    }

    fn start_with(name: &str, root: &Path, join: Option<u16>, expect: bool) -> Self {
        Self::start_on(name, root, join, expect, free_port())
    }

    /// As [`Server::start_with`], with its gossip port given (a seed others were told to join
    /// before it started).
    fn start_on(name: &str, root: &Path, join: Option<u16>, expect: bool, serf: u16) -> Self {
        let ports = Ports { http: free_port(), serf, server: free_port(), dns: free_port() };
        let mut server = Self {
            name: name.to_owned(),
            dir: root.join(name),
            join: join.unwrap_or(ports.serf),
            ports,
            expect,
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let (http, serf, rpc, dns, join) = (
            self.ports.http.to_string(),
            self.ports.serf.to_string(),
            self.ports.server.to_string(),
            self.ports.dns.to_string(),
            format!("127.0.0.1:{}", self.join),
        );
        let dir = self.dir.to_string_lossy().into_owned();
        let mut args = vec!["agent", "-server"];
        if self.expect {
            args.extend(["-bootstrap-expect", "3"]);
        }
        args.extend([
            "-node",
            &self.name,
            "-data-dir",
            &dir,
            "-bind",
            "127.0.0.1",
            "-client",
            "127.0.0.1",
            "-http-port",
            &http,
            "-serf-lan-port",
            &serf,
            "-server-port",
            &rpc,
            "-dns-port",
            &dns,
            "-log-level",
            "error",
        ]);
        if self.join != self.ports.serf {
            args.extend(["-retry-join", join.as_str()]);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start consul-lite");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.ports.http)).is_err() {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait"));
            assert!(exited.is_none(), "{} exited at start: {exited:?}", self.name);
            assert!(started.elapsed() < WAIT, "{} does not answer HTTP", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, by PID, and reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<Response> {
        TcpStream::connect(("127.0.0.1", self.ports.http)).ok()?;
        Some(request(self.ports.http, method, path, body, &[]))
    }

    fn put(&self, key: &str, value: &str) -> Option<Response> {
        self.request("PUT", &format!("/v1/kv/{key}"), value.as_bytes())
    }

    /// The leader's server address as this server knows it (empty if none).
    fn leader(&self) -> String {
        self.request("GET", "/v1/status/leader", b"")
            .filter(|r| r.status == 200)
            .and_then(|r| serde_json::from_slice::<String>(&r.body).ok())
            .unwrap_or_default()
    }

    /// A client command against this server: (success, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .args(args)
            .env("CONSUL_HTTP_ADDR", format!("127.0.0.1:{}", self.ports.http))
            .output()
            .expect("run consul-lite");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    }

    /// The servers in the Raft configuration as this server knows it: (address, voter).
    fn configuration(&self) -> Vec<(String, bool)> {
        let Some(answer) = self.request("GET", "/v1/operator/raft/configuration", b"") else { return Vec::new() };
        let json = answer.json();
        let servers = json["Servers"].as_array().cloned().unwrap_or_default();
        servers.iter().map(|s| (s["Address"].as_str().unwrap_or("").to_owned(), s["Voter"] == true)).collect()
    }

    /// Whether this server's pool shows `name` failed (`Status` 4).
    fn member_failed(&self, name: &str) -> bool {
        let Some(answer) = self.request("GET", "/v1/agent/members", b"") else { return false };
        let members = answer.json();
        members.as_array().into_iter().flatten().any(|m| m["Name"] == name && m["Status"] == 4)
    }

    fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports.server)
    }

    /// `?stale` read of a key's value on this server.
    fn stale_value(&self, key: &str) -> Option<String> {
        let response = self.request("GET", &format!("/v1/kv/{key}?stale&raw"), b"")?;
        (response.status == 200).then(|| response.text())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> (T, Duration) {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return (value, started.elapsed());
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The leader's index in `servers`, once every running server names the same one.
fn agreed_leader(servers: &[Server]) -> Option<usize> {
    let leaders: Vec<String> = servers.iter().filter(|s| s.running()).map(Server::leader).collect();
    let first = leaders.first()?.clone();
    if first.is_empty() || leaders.iter().any(|l| *l != first) {
        return None;
    }
    servers.iter().position(|s| s.running() && s.rpc_addr() == first)
}

fn wrote(response: Option<Response>) -> bool {
    response.is_some_and(|r| r.status == 200 && r.text().trim() == "true")
}

#[test]
fn three_servers_bootstrap_fail_over_and_keep_every_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let s1 = Server::start("s1", root.path(), None);
    let mut servers = vec![s1];
    let seed = servers[0].ports.serf;
    servers.push(Server::start("s2", root.path(), Some(seed)));
    servers.push(Server::start("s3", root.path(), Some(seed)));
    let (leader, _) = eventually(WAIT, "a leader all three agree on", || agreed_leader(&servers));
    eprintln!("bootstrap: leader {} after {:?} from the first start", servers[leader].name, started.elapsed());

    // The Raft configuration lists the three servers, with one leader.
    let configuration = servers[0].request("GET", "/v1/operator/raft/configuration", b"").unwrap().json();
    let listed = configuration["Servers"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{configuration}");
    assert_eq!(listed.iter().filter(|s| s["Leader"] == true).count(), 1);
    let peers = servers[1].request("GET", "/v1/status/peers", b"").unwrap().json();
    assert_eq!(peers.as_array().unwrap().len(), 3, "{peers}");

    // A write through each server, read back from every server with ?consistent.
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let (key, value) = (format!("through/{}", server.name), format!("v{i}"));
        let (_, took) =
            eventually(WAIT, "a write through each server", || wrote(server.put(&key, &value)).then_some(()));
        eprintln!("write through {} ({}): {took:?}", server.name, if i == leader { "leader" } else { "follower" });
        acknowledged.push((key, value));
    }
    for server in &servers {
        for (key, value) in &acknowledged {
            let read = server.request("GET", &format!("/v1/kv/{key}?consistent&raw"), b"").unwrap();
            assert_eq!((read.status, read.text()), (200, value.clone()), "{key} on {}", server.name);
        }
    }

    // SIGKILL the leader; the others elect a new one and take writes again.
    // Meanwhile a survivor's DNS is asked every 50 ms: it answers from its own registry, so
    // it keeps answering while there is no leader (Consul's does not: hashicorp/consul#1554).
    let old = leader;
    let survivor = (old + 1) % 3;
    let stop_dns = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dns_probe = {
        let (port, stop) = (servers[survivor].ports.dns, stop_dns.clone());
        std::thread::spawn(move || {
            let (mut asked, mut answered) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                asked += 1;
                let reply = common::dns_ask(port, "consul.service.consul.", hickory_proto::rr::RecordType::A, false);
                answered += usize::from(reply.is_some_and(|r| !r.answers.is_empty()));
                std::thread::sleep(Duration::from_millis(50));
            }
            (asked, answered)
        })
    };
    let killed_at = Instant::now();
    servers[old].kill();
    let (new_leader, elected) = eventually(WAIT, "a new leader", || agreed_leader(&servers));
    assert_ne!(new_leader, old);
    let mut n = 0;
    let (_, _) = eventually(Duration::from_secs(20), "a write accepted after the leader died", || {
        n += 1;
        let (key, value) = (format!("after-kill/{n}"), format!("{n}"));
        wrote(servers[survivor].put(&key, &value)).then(|| acknowledged.push((key, value)))
    });
    let accepted = killed_at.elapsed();
    eprintln!(
        "failover: new leader {} seen {elected:?} after the SIGKILL; first write accepted {accepted:?} after it",
        servers[new_leader].name
    );
    assert!(accepted < Duration::from_secs(15), "writes accepted again only after {accepted:?}");
    stop_dns.store(true, std::sync::atomic::Ordering::Relaxed);
    let (asked, answered) = dns_probe.join().expect("DNS probe");
    eprintln!("DNS on {} during the failover: {answered} of {asked} queries answered", servers[survivor].name);
    assert!(asked > 0 && answered == asked, "DNS answered {answered} of {asked} queries during the election");

    // More writes while the old leader is down, through both survivors.
    for i in 0..20 {
        let server = &servers[(old + 1 + i % 2) % 3];
        let (key, value) = (format!("while-down/{i}"), format!("{i}"));
        let (_, _) =
            eventually(WAIT, "a write while a server is down", || wrote(server.put(&key, &value)).then_some(()));
        acknowledged.push((key, value));
    }

    // The old leader restarts from its data dir and catches up (joining the pool through a
    // server that stayed up).
    let restarted_at = Instant::now();
    servers[old].join = servers[(old + 1) % 3].ports.serf;
    servers[old].spawn();
    let (_, caught_up) = eventually(WAIT, "the restarted server catches up", || {
        acknowledged.iter().all(|(key, value)| servers[old].stale_value(key).as_deref() == Some(value)).then_some(())
    });
    eprintln!("restart: {} caught up {caught_up:?} after its restart", servers[old].name);
    let _ = restarted_at;
    let (_, _) = eventually(WAIT, "all agree on a leader after the restart", || agreed_leader(&servers));
    let (key, value) = ("after-restart".to_owned(), "x".to_owned());
    let (_, _) = eventually(WAIT, "a write through the restarted server", || {
        wrote(servers[old].put(&key, &value)).then_some(())
    });
    acknowledged.push((key, value));

    // operator raft list-peers: three servers, one leader; Raft in the metrics.
    let (ok, out, err) = servers[0].cli(&["operator", "raft", "list-peers"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
    assert_eq!(out.lines().filter(|l| l.contains(" leader ")).count(), 1, "{out}");
    let metrics = servers[0].request("GET", "/v1/agent/metrics?format=prometheus", b"").unwrap().text();
    assert!(metrics.contains("consul_raft_term ") && metrics.contains("consul_raft_leader_changes_total"), "{metrics}");

    // A fourth server without -bootstrap-expect joins the pool: the leader adds it as a voter.
    let mut s4 = Server::start_with("s4", root.path(), Some(servers[(old + 1) % 3].ports.serf), false);
    let (_, added) = eventually(WAIT, "s4 a voter", || {
        let configuration = servers[(old + 1) % 3].configuration();
        configuration.iter().any(|(addr, voter)| *addr == s4.rpc_addr() && *voter).then_some(())
    });
    eprintln!("join: s4 a voter {added:?} after its start");
    let (_, _) = eventually(WAIT, "s4 catches up", || {
        acknowledged.iter().all(|(key, value)| s4.stale_value(key).as_deref() == Some(value)).then_some(())
    });
    // It fails and will not return: once the pool sees it failed (the leader adds back a
    // server the pool shows alive), remove-peer takes it out (by address).
    s4.kill();
    let (_, _) = eventually(WAIT, "s4 failed in the pool", || servers[old].member_failed("s4").then_some(()));
    let (ok, out, err) = servers[old].cli(&["operator", "raft", "remove-peer", "-address", &s4.rpc_addr()]);
    assert!(ok && out.contains("Removed peer"), "{out}{err}");
    let (_, _) = eventually(WAIT, "s4 gone from the configuration", || {
        let configuration = servers[old].configuration();
        (configuration.len() == 3 && !configuration.iter().any(|(addr, _)| *addr == s4.rpc_addr())).then_some(())
    });
    let (ok, _, err) = servers[old].cli(&["operator", "raft", "remove-peer", "-address", "127.0.0.1:1"]);
    assert!(!ok && err.contains("no server with address"), "{err}");

    // A follower whose data dir is wiped comes back under a new node ID. Its old entry is
    // removed first (while it is down): the server RPC does not carry the target's Raft id,
    // so the leader must not replicate to the old id at an address the new one answers on.
    let (leader, _) = eventually(WAIT, "a leader", || agreed_leader(&servers));
    let wiped = (leader + 1) % 3;
    servers[wiped].kill();
    std::fs::remove_dir_all(&servers[wiped].dir).unwrap();
    let name = servers[wiped].name.clone();
    let (_, _) =
        eventually(WAIT, "the wiped server failed in the pool", || servers[leader].member_failed(&name).then_some(()));
    let (ok, out, err) =
        servers[leader].cli(&["operator", "raft", "remove-peer", "-address", &servers[wiped].rpc_addr()]);
    assert!(ok, "{out}{err}");
    servers[wiped].spawn();
    let (_, _) = eventually(WAIT, "the wiped server back in the configuration", || {
        let configuration = servers[leader].configuration();
        let addr = servers[wiped].rpc_addr();
        (configuration.len() == 3 && configuration.iter().any(|(a, voter)| *a == addr && *voter)).then_some(())
    });
    let (_, _) = eventually(WAIT, "the wiped server catches up", || {
        acknowledged.iter().all(|(key, value)| servers[wiped].stale_value(key).as_deref() == Some(value)).then_some(())
    });

    // Every acknowledged write is on every server.
    for server in &servers {
        let (_, _) = eventually(WAIT, "every acknowledged write on every server", || {
            acknowledged.iter().all(|(key, value)| server.stale_value(key).as_deref() == Some(value)).then_some(())
        });
    }
    let list = servers[0].request("GET", "/v1/kv/?recurse", b"").unwrap().json();
    assert_eq!(list.as_array().unwrap().len(), acknowledged.len(), "no write appeared twice or from nowhere");
}

/// Servers started together race: two point `-retry-join` at a seed that starts 1.5 s after
/// them. Their next tries come within seconds (Consul's retry_interval alone would make them wait
/// 30 s), so the three agree on a leader well within the bound.
#[test]
fn servers_started_before_their_seed_form_the_cluster_within_seconds() {
    let root = tempfile::tempdir().unwrap();
    let seed = free_port();
    let started = Instant::now();
    let early: Vec<Server> = ["r2", "r3"].iter().map(|name| Server::start(name, root.path(), Some(seed))).collect();
    std::thread::sleep(Duration::from_millis(1500));
    let mut servers = early;
    servers.insert(0, Server::start_on("r1", root.path(), None, true, seed));
    let (_, took) = eventually(Duration::from_secs(15), "a leader all three agree on", || agreed_leader(&servers));
    eprintln!("formed {:?} after the first start ({took:?} after the seed)", started.elapsed());
}
