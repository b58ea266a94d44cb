//! SIGTERM and SIGINT as Consul handles them (`leave_on_terminate`, `skip_leave_on_interrupt`),
//! on real processes on 127.0.0.1: three `-server`s and three client agents.
//!
//! - a client agent leaves the pool on SIGTERM by default: the servers list it `left` (Consul's
//!   status 3, never `failed`) and the catalog no longer has the node;
//! - a client agent leaves on SIGINT by default too;
//! - a client agent with `"leave_on_terminate": false` in its config file does not: it is
//!   `failed` (4) and its node stays in the catalog with `serfHealth` critical;
//! - a server does not leave on SIGTERM (a server that leaves shrinks the quorum): `failed`, and
//!   the Raft configuration keeps three servers.

mod common;
#[path = "common/servers.rs"]
mod servers;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use serde_json::Value;
use servers::{cluster, eventually, Server};

/// Bound on anything the test waits for.
const WAIT: Duration = Duration::from_secs(30);

/// A client agent (`consul-lite agent` without `-server`), killed by its PID on drop.
struct Client {
    name: String,
    http: u16,
    child: Option<Child>,
}

impl Client {
    fn start(name: &str, join: u16, config: Option<&Path>) -> Self {
        let (http, serf, dns) = (free_port(), free_port(), free_port());
        let mut args: Vec<String> =
            ["agent", "-node", name, "-bind", "127.0.0.1", "-client", "127.0.0.1"].map(str::to_owned).to_vec();
        for (flag, port) in [("-http-port", http), ("-serf-lan-port", serf), ("-dns-port", dns)] {
            args.extend([flag.to_owned(), port.to_string()]);
        }
        args.extend(["-retry-join".to_owned(), format!("127.0.0.1:{join}"), "-log-level".into(), "warn".into()]);
        if let Some(config) = config {
            args.extend(["-config-file".to_owned(), config.display().to_string()]);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start consul-lite");
        let mut client = Self { name: name.to_owned(), http, child: Some(child) };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", client.http)).is_err() {
            let exited = client.child.as_mut().and_then(|c| c.try_wait().expect("try_wait"));
            assert!(exited.is_none(), "{} exited at start: {exited:?}", client.name);
            assert!(started.elapsed() < WAIT, "{} does not answer HTTP", client.name);
            std::thread::sleep(Duration::from_millis(25));
        }
        client
    }

    /// Sends `signal` by PID and waits for the process to exit by itself.
    fn stop_with(&mut self, signal: &str) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill").args(["-s", signal, &child.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill -s {signal}");
        let started = Instant::now();
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                return;
            }
            if started.elapsed() > WAIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit within {WAIT:?} of SIG{signal}", self.name);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `name`'s status (Consul's numbers: 1 alive, 3 left, 4 failed) in `server`'s member list.
fn status(server: &Server, name: &str) -> Option<u64> {
    let answer = server.call("GET", "/v1/agent/members", b"", Duration::from_secs(5)).ok()?;
    let members: Value = serde_json::from_slice(&answer.body).ok()?;
    members.as_array()?.iter().find(|m| m["Name"] == name).and_then(|m| m["Status"].as_u64())
}

/// The nodes in the catalog, read on `server` (`?stale`: whatever it has applied).
fn catalog_nodes(server: &Server) -> Option<Vec<String>> {
    let answer = server.call("GET", "/v1/catalog/nodes?stale", b"", Duration::from_secs(5)).ok()?;
    let nodes: Value = serde_json::from_slice(&answer.body).ok()?;
    Some(nodes.as_array()?.iter().filter_map(|n| n["Node"].as_str().map(str::to_owned)).collect())
}

/// `node`'s serfHealth status in the catalog, read on `server`.
fn serf_health(server: &Server, node: &str) -> Option<String> {
    let answer = server.call("GET", &format!("/v1/health/node/{node}?stale"), b"", Duration::from_secs(5)).ok()?;
    let checks: Value = serde_json::from_slice(&answer.body).ok()?;
    let check = checks.as_array()?.iter().find(|c| c["CheckID"] == "serfHealth")?;
    check["Status"].as_str().map(str::to_owned)
}

#[test]
fn clients_leave_on_terminate_and_interrupt_servers_do_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let servers = cluster("lt", 3, dir.path());
    let seed = servers[0].serf;
    let stay = dir.path().join("stay.json");
    std::fs::write(&stay, br#"{"leave_on_terminate": false}"#).expect("config file");
    let mut term = Client::start("term", seed, None);
    let mut int = Client::start("int", seed, None);
    let mut stays = Client::start("stays", seed, Some(&stay));
    for name in ["term", "int", "stays"] {
        eventually(WAIT, &format!("{name} in the catalog"), || {
            catalog_nodes(&servers[0])?.iter().any(|n| n == name).then_some(())
        });
        eventually(WAIT, &format!("{name} alive"), || (status(&servers[0], name)? == 1).then_some(()));
    }

    // A client leaves on SIGTERM: `left`, and the leader deregisters the node.
    term.stop_with("TERM");
    eventually(WAIT, "term listed left", || match status(&servers[0], "term")? {
        3 => Some(()),
        4 => panic!("term was declared failed: SIGTERM did not leave the pool"),
        _ => None,
    });
    eventually(WAIT, "term gone from the catalog", || {
        (!catalog_nodes(&servers[0])?.iter().any(|n| n == "term")).then_some(())
    });

    // ... and on SIGINT.
    int.stop_with("INT");
    eventually(WAIT, "int listed left", || match status(&servers[0], "int")? {
        3 => Some(()),
        4 => panic!("int was declared failed: SIGINT did not leave the pool"),
        _ => None,
    });

    // leave_on_terminate = false: the node fails, and stays in the catalog, critical.
    stays.stop_with("TERM");
    eventually(WAIT, "stays listed failed", || match status(&servers[0], "stays")? {
        4 => Some(()),
        3 => panic!("stays left the pool although leave_on_terminate is false"),
        _ => None,
    });
    eventually(WAIT, "stays' serfHealth critical", || (serf_health(&servers[0], "stays")? == "critical").then_some(()));

    // A server does not leave on SIGTERM: it fails, and the Raft configuration keeps it.
    let mut servers = servers;
    let lt3 = servers.pop().expect("three servers");
    let pid = lt3.pid().expect("running");
    let killed = Command::new("kill").args(["-s", "TERM", &pid.to_string()]).status().expect("kill");
    assert!(killed.success());
    eventually(WAIT, "lt3 listed failed", || match status(&servers[0], "lt3")? {
        4 => Some(()),
        3 => panic!("the server lt3 left the pool on SIGTERM"),
        _ => None,
    });
    assert_eq!(servers[0].configuration().len(), 3, "the Raft configuration lost lt3");
    drop(lt3);
}
