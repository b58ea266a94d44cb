//! The lock-held primary across a network partition (root: one network namespace per agent,
//! joined by a bridge of our own; the partition is iptables rules inside the namespaces). Five
//! `-server` agents with `-primary-http`; the holder is cut off with one other server (a
//! minority): it steps down within the step-down bound, the majority elects another primary only
//! after that, and at most one agent answers `GET /` 200 at any time; after the partition heals
//! there is one primary.
//!
//! ```text
//!  host: bridge lk<tag>br 10.214.<net>.1/24 ── veth lk<tag>v<i> ── namespace lk<tag>-<i>:
//!        eth0 10.214.<net>.<10+i>/24, the agent on the default ports and -primary-http :8080
//! ```
//!
//! Without root (or without `ip`/`iptables`, or where namespaces cannot be made) the test says
//! so loudly and returns.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on anything the test waits for.
const WAIT: Duration = Duration::from_secs(45);
/// The agents' step-down bound (their default).
const STEP_DOWN: Duration = Duration::from_millis(1300);
const NODES: usize = 5;

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// The bridge and the namespaces, removed on drop.
struct Topology {
    tag: u32,
    net: u8,
    created: Vec<String>,
    bridge: Option<String>,
    forward: bool,
}

impl Topology {
    fn create() -> Result<Self, String> {
        let tag = std::process::id() % 10_000;
        let net = u8::try_from(100 + std::process::id() % 150).unwrap_or(100);
        let mut topology = Self { tag, net, created: Vec::new(), bridge: None, forward: false };
        let bridge = format!("lk{tag}br");
        let _ = run("ip", &["link", "del", &bridge]);
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        topology.bridge = Some(bridge.clone());
        run("ip", &["addr", "add", &format!("{}/24", topology.gateway()), "dev", &bridge])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        run("iptables", &["-w", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT"])?;
        topology.forward = true;
        for i in 0..NODES {
            let ns = topology.namespace(i);
            let veth = format!("lk{tag}v{i}");
            let _ = run("ip", &["netns", "del", &ns]);
            run("ip", &["netns", "add", &ns])?;
            topology.created.push(ns.clone());
            run("ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            run("ip", &["link", "set", &veth, "master", &bridge])?;
            run("ip", &["link", "set", &veth, "up"])?;
            let addr = format!("{}/24", topology.ip(i));
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(topology)
    }

    fn namespace(&self, i: usize) -> String {
        format!("lk{}-{i}", self.tag)
    }

    fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 214, self.net, 10 + i as u8)
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 214, self.net, 1)
    }

    /// Every node of `a` drops what it receives from every node of `b`, and the other way round
    /// (TCP included; the host, where the test polls from, still reaches everyone).
    fn partition(&self, a: &[usize], b: &[usize]) {
        for (side, other) in [(a, b), (b, a)] {
            for &i in side {
                let mut rules = String::from("*filter\n");
                for &j in other {
                    rules.push_str(&format!("-A INPUT -s {} -j DROP\n", self.ip(j)));
                }
                rules.push_str("COMMIT\n");
                self.restore(i, &rules);
            }
        }
    }

    fn heal(&self) {
        for i in 0..NODES {
            self.restore(i, "*filter\n-F INPUT\nCOMMIT\n");
        }
    }

    fn restore(&self, i: usize, rules: &str) {
        let ns = self.namespace(i);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "iptables-restore", "-w", "--noflush"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("iptables-restore");
        child.stdin.take().expect("stdin").write_all(rules.as_bytes()).expect("write rules");
        assert!(child.wait().expect("iptables-restore").success(), "iptables-restore in {ns}");
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in &self.created {
            let _ = run("ip", &["netns", "del", ns]);
        }
        if let Some(bridge) = &self.bridge {
            let _ = run("ip", &["link", "del", bridge]);
            if self.forward {
                let _ = run("iptables", &["-w", "-D", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]);
            }
        }
    }
}

/// An agent in its namespace (`ip netns exec` execs it: the PID is the agent's), killed on drop.
struct Agent {
    name: String,
    ip: Ipv4Addr,
    child: Child,
}

impl Agent {
    fn start(topology: &Topology, i: usize, root: &Path) -> Self {
        let name = format!("s{}", i + 1);
        let ip = topology.ip(i).to_string();
        let dir = root.join(&name).to_string_lossy().into_owned();
        let primary = format!("{ip}:8080");
        let seed = format!("{}:8301", topology.ip(0));
        let ns = topology.namespace(i);
        let mut args = vec!["netns", "exec", &ns, env!("CARGO_BIN_EXE_consul-lite"), "agent", "-server"];
        args.extend(["-node", &name, "-data-dir", &dir, "-bind", &ip, "-client", &ip, "-dns-port", "-1"]);
        args.extend(["-log-level", "error", "-primary-http", &primary]);
        if i < 3 {
            args.extend(["-bootstrap-expect", "3"]);
        }
        if i > 0 {
            args.extend(["-retry-join", &seed]);
        }
        let child = Command::new("ip").args(&args).stdout(Stdio::null()).spawn().expect("start consul-lite");
        Self { name, ip: topology.ip(i), child }
    }

    /// `GET /` on the primary web service: whether it answers 200 (bounded by 300 ms, so that
    /// a round over every agent stays short).
    fn is_primary(&self) -> bool {
        let addr = SocketAddr::from((self.ip, 8080));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
        let head = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        if stream.write_all(head.as_bytes()).is_err() {
            return false;
        }
        let mut answer = [0u8; 12];
        std::io::Read::read_exact(&mut stream, &mut answer).is_ok() && answer.starts_with(b"HTTP/1.1 200")
    }

    fn peers(&self) -> usize {
        let addr = SocketAddr::from((self.ip, 8500));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err() {
            return 0;
        }
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else { return 0 };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let head = format!("GET /v1/status/peers HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        if stream.write_all(head.as_bytes()).is_err() {
            return 0;
        }
        let mut raw = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut raw);
        let text = String::from_utf8_lossy(&raw);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        serde_json::from_str::<Vec<String>>(body.trim()).map_or(0, |peers| peers.len())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which agents answer 200 now (one round).
fn primaries(agents: &[Agent]) -> Vec<usize> {
    (0..agents.len()).filter(|&i| agents[i].is_primary()).collect()
}

fn can_make_namespaces() -> bool {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false);
    let probe = format!("lkprobe{}", std::process::id() % 10_000);
    is_root && run("ip", &["netns", "add", &probe]).is_ok() && run("ip", &["netns", "del", &probe]).is_ok()
}

#[test]
fn a_holder_cut_off_with_a_minority_steps_down_before_the_majority_elects_another() {
    if !can_make_namespaces() {
        eprintln!("SKIPPED: network namespaces need root and `ip`/`iptables` (CI runs this as root)");
        return;
    }
    let topology = Topology::create().expect("network namespaces");
    let dir = tempfile::tempdir().expect("temp dir");
    let agents: Vec<Agent> = (0..NODES).map(|i| Agent::start(&topology, i, dir.path())).collect();
    let started = Instant::now();
    while !agents.iter().all(|a| a.peers() == NODES) {
        assert!(started.elapsed() < WAIT, "five voters not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let holder = loop {
        let found = primaries(&agents);
        assert!(found.len() <= 1, "two primaries: {found:?}");
        if let [holder] = found[..] {
            break holder;
        }
        assert!(started.elapsed() < 2 * WAIT, "no primary");
        std::thread::sleep(Duration::from_millis(50));
    };
    // The holder and one other server on one side, the three others on the other.
    let minority = [holder, (holder + 1) % NODES];
    let majority: Vec<usize> = (0..NODES).filter(|i| !minority.contains(i)).collect();
    eprintln!(
        "primary {}; cutting it off with {} from {:?}",
        agents[holder].name,
        agents[minority[1]].name,
        majority.iter().map(|&i| agents[i].name.as_str()).collect::<Vec<_>>()
    );
    let cut = Instant::now();
    topology.partition(&minority, &majority);
    let mut last_old: Option<Duration> = None;
    let new = loop {
        let found = primaries(&agents);
        let at = cut.elapsed();
        assert!(found.len() <= 1, "two primaries at {at:?} after the cut: {found:?}");
        if found == [holder] {
            last_old = Some(at);
        }
        if let Some(&new) = found.iter().find(|&&i| i != holder) {
            break (new, at);
        }
        assert!(at < WAIT, "the majority elected no primary within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (new, first_new) = new;
    let stepped_down = last_old.unwrap_or_default();
    eprintln!(
        "partition: {} last answered 200 {stepped_down:?} after the cut (bound {STEP_DOWN:?}); {} first answered 200 \
         {first_new:?} after it",
        agents[holder].name, agents[new].name
    );
    assert!(majority.contains(&new), "the new primary {} is on the majority side", agents[new].name);
    assert!(stepped_down <= STEP_DOWN + Duration::from_millis(500), "the old primary served until {stepped_down:?}");
    assert!(first_new > stepped_down, "overlap");
    // A while longer: still one primary at most, the old one silent.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let found = primaries(&agents);
        assert!(found.len() <= 1 && !found.contains(&holder), "during the partition: {found:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    topology.heal();
    let healed = Instant::now();
    let mut stable = 0;
    while stable < 20 {
        let found = primaries(&agents);
        assert!(found.len() <= 1, "two primaries after the heal: {found:?}");
        stable = if found.len() == 1 { stable + 1 } else { 0 };
        assert!(healed.elapsed() < WAIT, "no single primary after the heal");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("healed: one primary, {:?} after the heal", healed.elapsed());
}
