//! The lock-held primary on real processes: five `-server` agents on 127.0.0.1 with
//! `-primary-http`; exactly one answers `GET /` 200 with its fencing token; SIGKILL of its node
//! moves the role (not before the lock-delay); a graceful leave of the next holder hands the role
//! over without the lock-delay; the hooks get `FENCING_TOKEN`, and the role is in the gossip tags;
//! a holder left without a quorum (the other voter SIGSTOPped) steps down within the bound.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, request};

/// Bound on anything the test waits for.
const WAIT: Duration = Duration::from_secs(45);
/// The lock-delay the agents use here: long enough that a handover that waited for it is told
/// apart from one that did not, on a loaded machine.
const LOCK_DELAY: Duration = Duration::from_secs(2);
/// The step-down bound (the agent's default).
const STEP_DOWN: Duration = Duration::from_millis(1300);

/// A `consul-lite agent -server -primary-http ...`, killed by its PID on drop.
struct Node {
    name: String,
    http: u16,
    primary: u16,
    child: Option<Child>,
}

impl Node {
    fn start(name: &str, root: &Path, join: Option<u16>, expect: bool) -> (Self, u16) {
        let (http, serf, rpc, dns, primary) = (free_port(), free_port(), free_port(), free_port(), free_port());
        let dir = root.join(name).to_string_lossy().into_owned();
        let log = root.join("hooks.log").to_string_lossy().into_owned();
        let ports = [http, serf, rpc, dns].map(|p| p.to_string());
        let primary_addr = format!("127.0.0.1:{primary}");
        let acquire = format!("echo \"acquire $PRIMARY_NODE $FENCING_TOKEN\" >> {log}");
        let release = format!("echo \"release $PRIMARY_NODE $FENCING_TOKEN\" >> {log}");
        let lock_delay = format!("{}s", LOCK_DELAY.as_secs());
        let mut args = vec!["agent", "-server", "-node", name, "-data-dir", &dir, "-bind", "127.0.0.1"];
        args.extend(["-http-port", &ports[0], "-serf-lan-port", &ports[1], "-server-port", &ports[2]]);
        args.extend(["-dns-port", &ports[3], "-log-level", "error", "-primary-http", &primary_addr]);
        args.extend(["-primary-acquire", &acquire, "-primary-release", &release, "-primary-lock-delay", &lock_delay]);
        if expect {
            args.extend(["-bootstrap-expect", "3"]);
        }
        let join = join.map(|port| format!("127.0.0.1:{port}"));
        if let Some(join) = &join {
            args.extend(["-retry-join", join]);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start consul-lite");
        let mut node = Self { name: name.to_owned(), http, primary, child: Some(child) };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", http)).is_err() {
            let exited = node.child.as_mut().and_then(|c| c.try_wait().expect("try_wait"));
            assert!(exited.is_none(), "{name} exited at start: {exited:?}");
            assert!(started.elapsed() < WAIT, "{name} does not answer HTTP");
            std::thread::sleep(Duration::from_millis(50));
        }
        (node, serf)
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }

    /// `GET /` on the primary web service: (status, fencing token).
    fn primary_status(&self) -> Option<(u16, Option<u64>)> {
        if !self.running() {
            return None;
        }
        TcpStream::connect(("127.0.0.1", self.primary)).ok()?;
        let response = request(self.primary, "GET", "/", b"", &[]);
        let token = response.headers.get("x-fencing-token").and_then(|t| t.parse().ok());
        Some((response.status, token))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts `consul-lite leave` against this agent (not waited for).
    fn start_leave(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .args(["leave", "-http-addr", &format!("127.0.0.1:{}", self.http)])
            .stdout(Stdio::null())
            .spawn()
            .expect("run consul-lite leave")
    }

    /// Waits for the agent to exit by itself.
    fn wait_exit(&mut self) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + WAIT;
        while child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "{} did not stop after leave", self.name);
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends a signal (`-STOP`, `-CONT`) to the agent, by PID.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    fn peers(&self) -> usize {
        if !self.running() || TcpStream::connect(("127.0.0.1", self.http)).is_err() {
            return 0;
        }
        let response = request(self.http, "GET", "/v1/status/peers", b"", &[]);
        serde_json::from_slice::<Vec<String>>(&response.body).map_or(0, |peers| peers.len())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The nodes answering 200 (index, fencing token) in one round of `GET /`.
fn primaries(nodes: &[Node]) -> Vec<(usize, Option<u64>)> {
    nodes
        .iter()
        .enumerate()
        .filter_map(|(i, node)| node.primary_status().filter(|(status, _)| *status == 200).map(|(_, t)| (i, t)))
        .collect()
}

/// Waits until exactly one node answers 200, and it stays so for a few rounds.
fn one_primary(nodes: &[Node], within: Duration) -> (usize, u64, Duration) {
    let started = Instant::now();
    let mut seen: Option<usize> = None;
    let mut stable = 0;
    loop {
        let found = primaries(nodes);
        assert!(found.len() <= 1, "two primaries: {found:?}");
        match found.first() {
            Some(&(i, Some(token))) if seen == Some(i) => {
                stable += 1;
                if stable >= 3 {
                    return (i, token, started.elapsed());
                }
            }
            Some(&(i, token)) => {
                assert!(token.is_some(), "the primary's 200 carries X-Fencing-Token");
                seen = Some(i);
                stable = 1;
            }
            None => (seen, stable) = (None, 0),
        }
        assert!(started.elapsed() < within, "no single primary within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The time until a node other than `old` answers 200.
fn new_primary(nodes: &[Node], old: usize, since: Instant) -> (usize, Duration) {
    loop {
        let found = primaries(nodes);
        assert!(found.len() <= 1, "two primaries: {found:?}");
        if let Some(&(i, _)) = found.iter().find(|(i, _)| *i != old) {
            return (i, since.elapsed());
        }
        assert!(since.elapsed() < WAIT, "no new primary within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn hook_lines(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("hooks.log")).unwrap_or_default().lines().map(str::to_owned).collect()
}

fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn one_lock_held_primary_fails_over_on_sigkill_and_hands_over_on_leave() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root: PathBuf = dir.path().to_owned();
    let (s1, seed) = Node::start("s1", &root, None, true);
    let (s2, _) = Node::start("s2", &root, Some(seed), true);
    let (s3, _) = Node::start("s3", &root, Some(seed), true);
    let (s4, _) = Node::start("s4", &root, Some(seed), false);
    let (s5, _) = Node::start("s5", &root, Some(seed), false);
    let mut nodes = vec![s1, s2, s3, s4, s5];
    // Five voters: a quorum (three) survives the SIGKILL and the leave below, whether or not the
    // leader has removed the node that left from the Raft configuration.
    eventually(WAIT, "five voters", || nodes.iter().all(|n| n.peers() == 5));

    // Exactly one primary, with a fencing token its acquire hook got too.
    let (holder, token, took) = one_primary(&nodes, WAIT);
    eprintln!("first primary: {} (fencing token {token}) {took:?} after the five voters", nodes[holder].name);
    let acquired = format!("acquire {} {token}", nodes[holder].name);
    eventually(Duration::from_secs(10), "the acquire hook", || hook_lines(&root).contains(&acquired));
    // The role is in the gossip tags.
    let other = (holder + 1) % nodes.len();
    eventually(Duration::from_secs(10), "role tags", || {
        let members = request(nodes[other].http, "GET", "/v1/agent/members", b"", &[]).json();
        members.as_array().into_iter().flatten().all(|m| {
            let want = if m["Name"] == nodes[holder].name.as_str() { "primary" } else { "standby" };
            m["Tags"]["primary_role"] == want
        })
    });

    // SIGKILL of the holder's node: another serves 200, not before the lock-delay.
    let killed = Instant::now();
    nodes[holder].kill();
    let (next, took) = new_primary(&nodes, holder, killed);
    eprintln!(
        "failover after SIGKILL of {}: {} serves GET / 200 after {took:?} (lock-delay {LOCK_DELAY:?})",
        nodes[holder].name, nodes[next].name
    );
    assert!(took >= LOCK_DELAY, "the lock moved after {took:?}, inside the lock-delay");
    assert!(took < WAIT, "{took:?}");
    let (next, next_token, _) = one_primary(&nodes, WAIT);
    assert!(next_token > token, "fencing token {next_token} not above {token}");

    // A graceful leave of the new holder: released first, so the next one takes over without
    // waiting for the lock-delay.
    let leaving = Instant::now();
    let mut leave = nodes[next].start_leave();
    let (third, took) = new_primary(&nodes, next, leaving);
    assert!(leave.wait().expect("leave").success(), "consul-lite leave failed");
    nodes[next].wait_exit();
    eprintln!("handover on leave of {}: {} serves 200 after {took:?}", nodes[next].name, nodes[third].name);
    assert!(took < LOCK_DELAY, "the graceful handover took {took:?}, as long as the lock-delay");
    let released = format!("release {} {next_token}", nodes[next].name);
    assert!(hook_lines(&root).contains(&released), "release hook before the leave: {:?}", hook_lines(&root));
    let (holder, third_token, _) = one_primary(&nodes, WAIT);
    assert!(third_token > next_token);

    // Three of five voters run. SIGSTOP one of the two others: the holder has no quorum, cannot
    // confirm its hold with a ?consistent read, and steps down within the bound.
    let paused = nodes.iter().position(|n| n.running() && n.name != nodes[holder].name).expect("a second node");
    let stopped = Instant::now();
    nodes[paused].signal("-STOP");
    loop {
        match nodes[holder].primary_status() {
            Some((200, _)) => {}
            other => {
                let took = stopped.elapsed();
                eprintln!(
                    "{} without a quorum: answers {other:?} {took:?} after the pause (step-down bound {STEP_DOWN:?})",
                    nodes[holder].name
                );
                assert!(took <= STEP_DOWN + Duration::from_secs(1), "stepped down after {took:?}");
                break;
            }
        }
        assert!(stopped.elapsed() < WAIT, "the holder did not step down");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Still 503 a while later (nothing confirms), then the quorum is back: one primary again.
    std::thread::sleep(Duration::from_millis(500));
    assert_ne!(nodes[holder].primary_status().map(|(status, _)| status), Some(200));
    nodes[paused].signal("-CONT");
    let (_, token, took) = one_primary(&nodes, WAIT);
    eprintln!("quorum back: one primary again after {took:?} (fencing token {token})");
    assert!(token >= third_token);
}
