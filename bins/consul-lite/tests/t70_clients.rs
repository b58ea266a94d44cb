//! Client agents, as real processes on 127.0.0.1 with distinct free ports: three `-server`s
//! and five clients (`consul-lite agent` without `-server`, no data dir).
//!
//! - a client registers `web` with a TTL check and an HTTP check: `health/service/web?passing`
//!   on every client and DNS (`web.service.consul` SRV) on a client list it; either check
//!   fails → it leaves the answers everywhere;
//! - the client is SIGKILLed: gossip declares it failed, the leader marks its `serfHealth`
//!   critical, its service leaves the passing answers on the other clients and its session is
//!   invalidated (its lock released), within the gossip detection time plus [`CATALOG_MARGIN`]
//!   (both printed);
//! - the server a client follows is SIGKILLed: the client resubscribes to another and keeps
//!   answering; writes through a client go on across a SIGKILL of the leader;
//! - with two servers of three gone (no leader), `?stale` reads and DNS on a client still
//!   answer, `X-Consul-KnownLeader: false`, and a default write fails with 500.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, request, Response};
use serde_json::Value;

/// Bound on anything the test waits for.
const WAIT: Duration = Duration::from_secs(30);

/// What may pass between gossip declaring a node failed (as a server's member list shows it)
/// and its services leaving the passing answers on a client: the leader's reconcile (woken by
/// the member change), one Raft write, and the feed to the client.
const CATALOG_MARGIN: Duration = Duration::from_secs(3);

/// A `consul-lite agent` process (server or client), killed by PID on drop.
struct Agent {
    name: String,
    http: u16,
    server_port: u16,
    dns: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Agent {
    fn server(name: &str, root: &Path, join: u16, serf: u16) -> Self {
        let dir: PathBuf = root.join(name);
        let mut agent = Self::new(name, serf);
        let args = ["-server", "-bootstrap-expect", "3", "-data-dir", dir.to_str().unwrap()];
        agent.args.extend(args.iter().map(|a| (*a).to_owned()));
        agent.args.extend(["-server-port".to_owned(), agent.server_port.to_string()]);
        if join != serf {
            agent.args.extend(["-retry-join".to_owned(), format!("127.0.0.1:{join}")]);
        }
        agent.spawn();
        agent
    }

    fn client(name: &str, join: u16) -> Self {
        let mut agent = Self::new(name, free_port());
        agent.args.extend(["-retry-join".to_owned(), format!("127.0.0.1:{join}")]);
        agent.spawn();
        agent
    }

    fn new(name: &str, serf: u16) -> Self {
        let (http, server_port, dns) = (free_port(), free_port(), free_port());
        let args = [
            "agent",
            "-node",
            name,
            "-bind",
            "127.0.0.1",
            "-client",
            "127.0.0.1",
            "-http-port",
            &http.to_string(),
            "-serf-lan-port",
            &serf.to_string(),
            "-dns-port",
            &dns.to_string(),
            "-log-level",
            "warn",
        ]
        .map(str::to_owned)
        .to_vec();
        Self { name: name.to_owned(), http, server_port, dns, args, child: None }
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start consul-lite");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.http)).is_err() {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait"));
            assert!(exited.is_none(), "{} exited at start: {exited:?}", self.name);
            assert!(started.elapsed() < WAIT, "{} does not answer HTTP", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, by PID, and reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<Response> {
        TcpStream::connect(("127.0.0.1", self.http)).ok()?;
        Some(request(self.http, method, path, body, &[]))
    }

    fn get(&self, path: &str) -> Option<Response> {
        self.request("GET", path, b"")
    }

    fn json(&self, path: &str) -> Option<Value> {
        self.get(path).filter(|r| r.status == 200).map(|r| r.json())
    }

    fn put(&self, path: &str, body: &str) -> Response {
        self.request("PUT", path, body.as_bytes()).unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    /// The leader's server address as this agent knows it (empty if none).
    fn leader(&self) -> String {
        self.json("/v1/status/leader").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    /// The server a client follows (`Stats.client.following` of `/v1/agent/self`).
    fn following(&self) -> String {
        let stats = self.json("/v1/agent/self").map(|v| v["Stats"]["client"].clone()).unwrap_or_default();
        stats["following"].as_str().unwrap_or_default().to_owned()
    }

    fn subscriptions(&self) -> u64 {
        let stats = self.json("/v1/agent/self").map(|v| v["Stats"]["client"].clone()).unwrap_or_default();
        stats["subscriptions"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// The nodes of `health/service/web?passing` here.
    fn passing_web(&self) -> Option<Vec<String>> {
        let rows = self.json("/v1/health/service/web?passing")?;
        Some(rows.as_array()?.iter().map(|row| row["Node"]["Node"].as_str().unwrap_or_default().to_owned()).collect())
    }

    /// The targets of `web.service.consul` SRV here (with dig when present, else hickory).
    fn dns_web(&self) -> Option<Vec<String>> {
        if Path::new("/usr/bin/dig").exists() {
            let output = Command::new("/usr/bin/dig")
                .args(["@127.0.0.1", "-p", &self.dns.to_string(), "+short", "+time=2", "+tries=1"])
                .args(["web.service.consul", "SRV"])
                .output()
                .ok()?;
            if !output.status.success() {
                return None;
            }
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            return Some(text.lines().filter_map(|line| line.split_whitespace().nth(3).map(str::to_owned)).collect());
        }
        let reply = common::dns_ask(self.dns, "web.service.consul.", hickory_proto::rr::RecordType::SRV, false)?;
        Some(
            reply
                .answers
                .iter()
                .map(|record| record.data.to_string().split(' ').nth(3).unwrap_or("").to_owned())
                .collect(),
        )
    }

    /// The addresses of an A query here (hickory-proto's client).
    fn dns_a(&self, name: &str) -> Option<Vec<String>> {
        let reply = common::dns_ask(self.dns, name, hickory_proto::rr::RecordType::A, false)?;
        Some(reply.answers.iter().map(|record| record.data.to_string()).collect())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tiny HTTP endpoint for an HTTP check: 200 while the flag is set, 500 otherwise. The
/// listener thread lives as long as the test process.
fn health_endpoint() -> (u16, Arc<AtomicBool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&healthy);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let answer: &[u8] = if flag.load(Ordering::SeqCst) {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            } else {
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nsick"
            };
            let _ = std::io::Write::write_all(&mut stream, answer);
        }
    });
    (port, healthy)
}

#[test]
fn clients_register_discover_fail_over_and_read_stale_without_a_leader() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let seed = free_port();
    let mut servers: Vec<Agent> = ["s1", "s2", "s3"]
        .iter()
        .map(|name| Agent::server(name, root.path(), seed, if *name == "s1" { seed } else { free_port() }))
        .collect();
    let mut clients: Vec<Agent> = (1..=5).map(|i| Agent::client(&format!("c{i}"), seed)).collect();
    let all_nodes = 8;
    eventually(WAIT, "a leader, known on every client", || {
        let leader = servers[0].leader();
        (!leader.is_empty() && clients.iter().all(|c| c.leader() == leader)).then_some(())
    });
    // Every client registered itself (once it found a server) and sees the whole catalog.
    eventually(WAIT, "every node in every client's catalog", || {
        clients
            .iter()
            .all(|c| c.json("/v1/catalog/nodes").and_then(|n| n.as_array().map(Vec::len)) == Some(all_nodes))
            .then_some(())
    });
    let own = clients[0].json("/v1/catalog/node/c1").expect("c1 in the catalog");
    assert!(own["Node"]["ID"].as_str().is_some_and(|id| id.len() == 36), "a client registers its node ID: {own}");
    eprintln!("cluster of 3 servers and 5 clients formed in {:?}", started.elapsed());

    // c1 registers `web` with a TTL check (critical at start, as Consul's) and an HTTP check
    // against a small server of the test's, then passes the TTL check.
    let (http_port, healthy) = health_endpoint();
    let body = format!(
        r#"{{"Name": "web", "Port": 8080, "Checks": [{{"TTL": "30s"}},
            {{"HTTP": "http://127.0.0.1:{http_port}/health", "Interval": "200ms", "Timeout": "1s"}}]}}"#
    );
    let registered = clients[0].put("/v1/agent/service/register", &body);
    assert_eq!(registered.status, 200, "{}", registered.text());
    assert_eq!(clients[0].passing_web(), Some(vec![]), "not passing before the first update");
    assert_eq!(clients[0].put("/v1/agent/check/pass/service:web:1", "").status, 200);
    eventually(WAIT, "web passing on every client", || {
        clients.iter().all(|c| c.passing_web() == Some(vec!["c1".to_owned()])).then_some(())
    });
    let target = eventually(WAIT, "web in a client's DNS", || clients[1].dns_web().filter(|t| !t.is_empty()));
    assert_eq!(target, ["c1.node.dc1.consul."]);

    // The HTTP check fails (the endpoint answers 500): out of every answer; then back.
    healthy.store(false, Ordering::SeqCst);
    eventually(WAIT, "web out of ?passing on every client and out of DNS (HTTP check)", || {
        let gone = clients.iter().all(|c| c.passing_web() == Some(vec![]));
        (gone && clients[1].dns_web() == Some(vec![])).then_some(())
    });
    healthy.store(true, Ordering::SeqCst);
    eventually(WAIT, "web passing again (HTTP check)", || clients[2].passing_web().filter(|n| n == &["c1"]));

    // The TTL check fails: out of every answer.
    assert_eq!(clients[0].put("/v1/agent/check/fail/service:web:1", "").status, 200);
    eventually(WAIT, "web out of ?passing on every client and out of DNS", || {
        let gone = clients.iter().all(|c| c.passing_web() == Some(vec![]));
        (gone && clients[1].dns_web() == Some(vec![])).then_some(())
    });
    assert_eq!(clients[0].put("/v1/agent/check/pass/service:web:1", "").status, 200);
    eventually(WAIT, "web passing again", || clients[2].passing_web().filter(|n| n == &["c1"]));

    // A session of c1's (bound to its serfHealth) holding a lock, through c1.
    let session = clients[0].put("/v1/session/create", r#"{"Name": "c1-lock", "LockDelay": "0s"}"#);
    assert_eq!(session.status, 200, "{}", session.text());
    let session = session.json()["ID"].as_str().unwrap().to_owned();
    let acquired = clients[0].put(&format!("/v1/kv/primary?acquire={session}"), "c1");
    assert_eq!(acquired.text().trim(), "true");

    // SIGKILL c1: failed in gossip, then serfHealth critical, web out, session gone.
    let killed = Instant::now();
    clients[0].kill();
    let failed_in_gossip = eventually(WAIT, "c1 failed in a server's member list", || {
        let members = servers[0].json("/v1/agent/members")?;
        let c1 = members.as_array()?.iter().find(|m| m["Name"] == "c1")?.clone();
        (c1["Status"] == 4).then(|| killed.elapsed())
    });
    let out_of_answers = eventually(WAIT, "c1's web out of ?passing on c2", || {
        (clients[1].passing_web() == Some(vec![])).then(|| killed.elapsed())
    });
    let critical = clients[1].json("/v1/health/node/c1").expect("c1's checks");
    let serf_health = critical.as_array().unwrap().iter().find(|c| c["CheckID"] == "serfHealth").unwrap().clone();
    assert_eq!(serf_health["Status"], "critical", "{critical}");
    let session_gone = eventually(WAIT, "c1's session invalidated (seen on c3)", || {
        let info = clients[2].json(&format!("/v1/session/info/{session}"))?;
        (info.as_array()?.is_empty()).then(|| killed.elapsed())
    });
    let lock = clients[2].json("/v1/kv/primary").expect("the key stays (behavior release)");
    assert!(lock[0]["Session"].is_null(), "the lock was released: {lock}");
    eprintln!(
        "client SIGKILL: failed in gossip after {failed_in_gossip:?}; out of ?passing after {out_of_answers:?}; \
         session invalidated after {session_gone:?}"
    );
    assert!(
        out_of_answers <= failed_in_gossip + CATALOG_MARGIN,
        "out of the answers {out_of_answers:?} after the kill, gossip took {failed_in_gossip:?}: over the \
         {CATALOG_MARGIN:?} margin"
    );
    assert!(session_gone <= failed_in_gossip + CATALOG_MARGIN, "session invalidated after {session_gone:?}");

    // The server c2 follows is SIGKILLed: c2 follows another and keeps answering (and
    // writing) while the others elect a new leader if that one led.
    let followed = eventually(WAIT, "c2 follows a server", || Some(clients[1].following()).filter(|s| !s.is_empty()));
    let subscriptions = clients[1].subscriptions();
    let index = servers.iter().position(|s| s.name == followed).unwrap();
    servers[index].kill();
    let moved_at = Instant::now();
    let now_following = eventually(WAIT, "c2 follows another server", || {
        Some(clients[1].following()).filter(|s| !s.is_empty() && *s != followed)
    });
    assert!(clients[1].subscriptions() > subscriptions);
    eprintln!("c2 lost {followed}'s feed and follows {now_following} after {:?}", moved_at.elapsed());
    assert_eq!(clients[1].put("/v1/kv/after-move", "1").text().trim(), "true", "a write through c2");
    assert_eq!(clients[1].json("/v1/kv/after-move?consistent").map(|v| v[0]["Key"].clone()), Some("after-move".into()));
    assert_eq!(clients[1].passing_web(), Some(vec![]), "c2 answers (c1 is still out)");

    // Back to three servers (the killed one restarted from its data dir)...
    servers[index].spawn();
    eventually(WAIT, "the restarted server back in the configuration", || {
        (servers[index].json("/v1/status/peers")?.as_array()?.len() == 3 && !servers[index].leader().is_empty())
            .then_some(())
    });
    // ...then the leader is SIGKILLed between two writes through a client (one that follows a
    // follower if there is one: then its feed goes on too).
    let leader_addr = servers.iter().find(|s| s.child.is_some()).unwrap().leader();
    let leader = servers.iter().position(|s| leader_addr.ends_with(&format!(":{}", s.server_port))).unwrap();
    let writer = clients[1..]
        .iter()
        .position(|c| {
            let following = c.following();
            !following.is_empty() && following != servers[leader].name
        })
        .map_or(1, |i| i + 1);
    let mut acknowledged = Vec::new();
    let write_started = Instant::now();
    for i in 0..40 {
        if i == 10 {
            servers[leader].kill();
            eprintln!("leader {} SIGKILLed", servers[leader].name);
        }
        let key = format!("across/{i}");
        let written = clients[writer].put(&format!("/v1/kv/{key}"), &i.to_string());
        assert_eq!(
            (written.status, written.text().trim()),
            (200, "true"),
            "write {i} through {}",
            clients[writer].name
        );
        acknowledged.push(key);
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "40 writes through {} across the leader's SIGKILL in {:?}",
        clients[writer].name,
        write_started.elapsed()
    );
    for client in &clients[1..] {
        let keys = eventually(WAIT, "every acknowledged write on every client", || {
            let keys = client.json("/v1/kv/across/?keys&consistent")?;
            (keys.as_array()?.len() == acknowledged.len()).then_some(keys)
        });
        assert_eq!(keys.as_array().unwrap().len(), 40);
    }

    // Two servers of three gone: no leader. ?stale reads and DNS on the clients still answer.
    // The new leader goes, so that the last server is a follower that cannot elect itself (a
    // leader cut off from its quorum keeps calling itself leader in openraft 0.9).
    let survivors: Vec<usize> = (0..3).filter(|&i| servers[i].child.is_some()).collect();
    let new_leader = eventually(WAIT, "a new leader", || {
        let addr = servers[survivors[0]].leader();
        survivors.iter().copied().find(|&i| !addr.is_empty() && addr.ends_with(&format!(":{}", servers[i].server_port)))
    });
    servers[new_leader].kill();
    let lone = &servers[survivors.iter().copied().find(|&i| i != new_leader).unwrap()];
    eventually(WAIT, "no leader on the last server", || lone.leader().is_empty().then_some(()));
    for client in &clients[1..] {
        let reply = eventually(WAIT, "a ?stale read saying there is no leader", || {
            let reply = client.get("/v1/kv/after-move?stale")?;
            (reply.headers.get("x-consul-knownleader").map(String::as_str) == Some("false")).then_some(reply)
        });
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()[0]["Key"], "after-move");
        assert!(reply.index() > 0);
        let contact: u64 = reply.headers["x-consul-lastcontact"].parse().unwrap();
        assert!(contact > 0, "X-Consul-LastContact counts since the leader was last heard of");
    }
    assert_eq!(clients[1].dns_web(), Some(vec![]), "DNS answers (an empty SRV set: c1 is critical)");
    let own = clients[1].dns_a("c2.node.consul.");
    assert_eq!(own, Some(vec!["127.0.0.1".to_owned()]), "DNS answers a node without a leader");
    let refused = clients[1].put("/v1/kv/no-leader", "1");
    assert_eq!(refused.status, 500, "a write without a leader: {}", refused.text());
    eprintln!("t70 took {:?}", started.elapsed());
}
