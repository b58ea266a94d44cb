//! `cluster-bench kv`: consul-lite's replicated KV store against etcd 3.4, three servers each on
//! loopback, both with fsync on, measured interleaved in one run.
//!
//! - **Writes**: throughput and latency (median, p99) with 1, 16 and 64 clients in flight, each
//!   client one keep-alive HTTP/1.1 connection to one of the three servers (spread evenly;
//!   followers forward to the leader in both systems), writing 100-byte values to random keys
//!   among 1000. consul-lite: `PUT /v1/kv/<key>`; etcd: `POST /v3/kv/put` on its HTTP/JSON
//!   gateway (base64 keys and values). Both through the same blocking client, so the clients
//!   cost the same.
//! - **Reads**, with the same client counts: *default* (consul-lite's default read, answered by
//!   the server asked from its own state; etcd's `serializable` range, the same kind of local
//!   read) and *consistent* (consul-lite `?consistent`, a Raft read-index barrier; etcd's default
//!   linearizable range, also a read index).
//! - **Failover**: the leader is SIGKILLed and a client writes to a survivor until a write is
//!   acknowledged: the time from the kill to that acknowledgement. Election timeouts are
//!   comparable: consul-lite's are Consul's production ones (heartbeat 100 ms, election timeout
//!   drawn from 1 to 2 s), etcd runs with `--heartbeat-interval 100 --election-timeout 1000`
//!   (it draws its timeout from 1 to 2 s too). The killed server is restarted from its data dir
//!   before the next round.
//! - **RSS** of each server process after the load phases.
//!
//! Durability: consul-lite commits every log append with fsync (redb, `Durability::Immediate`);
//! etcd fsyncs its WAL before acknowledging (its default; `--unsafe-no-fsync` is not given).
//!
//! consul-lite is built with `cargo build --release -p consul-lite`, never with the `agent`
//! profile: that profile aborts on panic, and consul-lite's storage needs unwinding (redb
//! asserts on some damaged files, and the server turns that panic into an error naming the
//! file instead of dying without a word).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;

use crate::process::{Agent, RunDir};
use crate::stamp::{results_dir, workspace_root, Stamp};
use crate::stats::{ratio, Stat};

/// Options of one run.
#[derive(Debug, Clone)]
pub struct KvOptions {
    /// Clients in flight for each load phase.
    pub clients: Vec<usize>,
    /// Length of each load phase.
    pub phase: Duration,
    /// Rounds of every load phase per system (interleaved, the order alternating).
    pub rounds: usize,
    /// Leader kills per system.
    pub failovers: usize,
    /// The consul-lite binary (`None`: build it with `cargo build --release`).
    pub consul_bin: Option<PathBuf>,
    /// The etcd binary.
    pub etcd_bin: PathBuf,
    /// Write docs/results/kv.{md,json}.
    pub write: bool,
    /// Keep the servers' data and logs.
    pub keep: bool,
    /// The command line, for the stamp.
    pub command: String,
}

/// The two systems measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum System {
    /// consul-lite `-server`.
    ConsulLite,
    /// etcd 3.4.
    Etcd,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            Self::ConsulLite => "consul-lite",
            Self::Etcd => "etcd",
        }
    }
}

/// What kind of request a load phase sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Load {
    /// Writes of 100-byte values.
    Write,
    /// Default (local) reads.
    ReadDefault,
    /// Linearizable reads.
    ReadConsistent,
}

/// The result of one load phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// The system.
    pub system: System,
    /// The kind of request.
    pub load: Load,
    /// Clients in flight.
    pub clients: usize,
    /// Requests answered with success per second.
    pub ops_per_sec: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Requests that failed (any other answer, or none).
    pub errors: u64,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct KvResults {
    /// Where and how it ran.
    pub stamp: Stamp,
    /// Load phase length, seconds.
    pub phase_secs: f64,
    /// Every load phase, in the order run.
    pub phases: Vec<Phase>,
    /// Seconds from a leader's SIGKILL to the next acknowledged write, per system.
    pub failover_secs: Vec<(System, f64)>,
    /// Resident memory of each server process after the load phases, MiB, per system.
    pub rss_mib: Vec<(System, f64)>,
}

/// Runs the benchmark and prints (and with `write`, saves) the table.
pub fn run(options: &KvOptions) -> anyhow::Result<KvResults> {
    let stamp = Stamp::new(options.command.clone());
    let consul_bin = match &options.consul_bin {
        Some(bin) => bin.clone(),
        None => build_consul_lite()?,
    };
    let dir = RunDir::new("kv", options.keep)?;
    eprintln!("kv: starting 3 consul-lite servers and 3 etcd members under {}", dir.path().display());
    let mut clusters = [
        Cluster::start(System::ConsulLite, &consul_bin, &dir.path().join("consul-lite"))?,
        Cluster::start(System::Etcd, &options.etcd_bin, &dir.path().join("etcd"))?,
    ];
    for cluster in &clusters {
        cluster.wait_ready(Duration::from_secs(60))?;
        // Every key exists before the reads.
        let _ = load(cluster, Load::Write, 16, Duration::ZERO, Some(KEYS));
    }
    let mut phases = Vec::new();
    for round in 0..options.rounds {
        for load_kind in [Load::Write, Load::ReadDefault, Load::ReadConsistent] {
            for &clients in &options.clients {
                let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for i in order {
                    let phase = load(&clusters[i], load_kind, clients, options.phase, None);
                    eprintln!(
                        "kv: round {} {:<11} {:?} x{:<2}: {:>8.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
                        round + 1,
                        phase.system.name(),
                        phase.load,
                        phase.clients,
                        phase.ops_per_sec,
                        phase.p50_ms,
                        phase.p99_ms,
                        phase.errors
                    );
                    phases.push(phase);
                }
            }
        }
    }
    let mut rss_mib = Vec::new();
    for cluster in &clusters {
        for server in &cluster.servers {
            if let Some(bytes) = server.agent.as_ref().and_then(Agent::rss_bytes) {
                rss_mib.push((cluster.system, bytes as f64 / (1024.0 * 1024.0)));
            }
        }
    }
    let mut failover_secs = Vec::new();
    for try_ in 0..options.failovers {
        let order: [usize; 2] = if try_ % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let cluster = &mut clusters[i];
            let took = cluster.failover()?;
            eprintln!("kv: failover {} {}: {:.2} s", try_ + 1, cluster.system.name(), took.as_secs_f64());
            failover_secs.push((cluster.system, took.as_secs_f64()));
        }
    }
    let results = KvResults { stamp, phase_secs: options.phase.as_secs_f64(), phases, failover_secs, rss_mib };
    let markdown = render(&results);
    println!("{markdown}");
    if options.write {
        let dir = results_dir();
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("kv.md"), &markdown)?;
        std::fs::write(dir.join("kv.json"), serde_json::to_string_pretty(&results)?)?;
        eprintln!("kv: wrote {}", dir.join("kv.md").display());
    }
    Ok(results)
}

/// Keys written and read.
const KEYS: u64 = 1000;
/// Bytes per value.
const VALUE_LEN: usize = 100;

fn build_consul_lite() -> anyhow::Result<PathBuf> {
    // A plain release build, not the `agent` profile: see the module doc (redb needs unwinding).
    eprintln!("kv: cargo build --release -p consul-lite");
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "consul-lite"])
        .current_dir(workspace_root())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo build --release -p consul-lite failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
    Ok(target.join("release").join("consul-lite"))
}

/// One server process and how to reach and restart it.
struct Server {
    agent: Option<Agent>,
    args: Vec<String>,
    log: PathBuf,
    http: SocketAddr,
    /// consul-lite: the server RPC address (`/v1/status/leader` answers it).
    rpc: String,
}

struct Cluster {
    system: System,
    bin: PathBuf,
    servers: Vec<Server>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(0, |a| a.port())
}

impl Cluster {
    fn start(system: System, bin: &Path, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ports: Vec<[u16; 3]> = (0..3).map(|_| [free_port(), free_port(), free_port()]).collect();
        let mut servers = Vec::new();
        for (i, [http, peer, serf]) in ports.iter().copied().enumerate() {
            let name = format!("{}{}", if system == System::Etcd { "e" } else { "c" }, i + 1);
            let data = dir.join(&name).to_string_lossy().into_owned();
            let args: Vec<String> = match system {
                System::ConsulLite => {
                    let mut args = vec![
                        "agent",
                        "-server",
                        "-bootstrap-expect",
                        "3",
                        "-node",
                        &name,
                        "-data-dir",
                        &data,
                        "-bind",
                        "127.0.0.1",
                        "-client",
                        "127.0.0.1",
                        "-dns-port",
                        "-1",
                        "-log-level",
                        "warn",
                    ]
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>();
                    args.extend(["-http-port".into(), http.to_string()]);
                    args.extend(["-server-port".into(), peer.to_string()]);
                    args.extend(["-serf-lan-port".into(), serf.to_string()]);
                    if i > 0 {
                        args.extend(["-retry-join".into(), format!("127.0.0.1:{}", ports[0][2])]);
                    }
                    args
                }
                System::Etcd => {
                    let cluster: Vec<String> = ports
                        .iter()
                        .enumerate()
                        .map(|(j, p)| format!("e{}=http://127.0.0.1:{}", j + 1, p[1]))
                        .collect();
                    vec![
                        format!("--name={name}"),
                        format!("--data-dir={data}"),
                        format!("--listen-client-urls=http://127.0.0.1:{http}"),
                        format!("--advertise-client-urls=http://127.0.0.1:{http}"),
                        format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                        format!("--initial-cluster={}", cluster.join(",")),
                        "--initial-cluster-state=new".into(),
                        "--initial-cluster-token=kv-bench".into(),
                        "--heartbeat-interval=100".into(),
                        "--election-timeout=1000".into(),
                        "--logger=zap".into(),
                        "--log-level=warn".into(),
                    ]
                }
            };
            let log = dir.join(format!("{name}.log"));
            let agent = Agent::spawn(bin, &args, &log)?;
            servers.push(Server {
                agent: Some(agent),
                args,
                log,
                http: SocketAddr::from(([127, 0, 0, 1], http)),
                rpc: format!("127.0.0.1:{peer}"),
            });
        }
        Ok(Self { system, bin: bin.to_owned(), servers })
    }

    /// Waits until every server agrees on a leader and a write through each succeeds.
    fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let leaders: Vec<Option<usize>> = (0..self.servers.len()).map(|i| self.leader_seen_by(i)).collect();
            let agreed = leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]);
            if agreed && (0..self.servers.len()).all(|i| self.write_once(i, 0, Duration::from_secs(5)).is_ok()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let tails: Vec<String> =
                    self.servers.iter().filter_map(|s| s.agent.as_ref()).map(|a| a.log_tail(5)).collect();
                bail!("{}: no leader within {within:?}:\n{}", self.system.name(), tails.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The leader's index as server `i` knows it.
    fn leader_seen_by(&self, i: usize) -> Option<usize> {
        let server = &self.servers[i];
        server.agent.as_ref()?;
        let mut conn = Conn::new(server.http, Duration::from_secs(2));
        match self.system {
            System::ConsulLite => {
                let (status, body) = conn.request("GET", "/v1/status/leader", b"").ok()?;
                let leader: String = serde_json::from_slice(&body).ok().filter(|_| status == 200)?;
                self.servers.iter().position(|s| s.rpc == leader)
            }
            System::Etcd => {
                let leader_of = |conn: &mut Conn| -> Option<(String, String)> {
                    let (status, body) = conn.request("POST", "/v3/maintenance/status", b"{}").ok()?;
                    let json: serde_json::Value = serde_json::from_slice(&body).ok().filter(|_| status == 200)?;
                    Some((json["header"]["member_id"].as_str()?.to_owned(), json["leader"].as_str()?.to_owned()))
                };
                let (_, leader) = leader_of(&mut conn)?;
                self.servers.iter().position(|s| {
                    s.agent.is_some()
                        && leader_of(&mut Conn::new(s.http, Duration::from_secs(2))).is_some_and(|(me, _)| me == leader)
                })
            }
        }
    }

    fn request(&self, load: Load, key: u64, value: &[u8]) -> (&'static str, String, Vec<u8>) {
        let key = format!("bench/{key:04}");
        match (self.system, load) {
            (System::ConsulLite, Load::Write) => ("PUT", format!("/v1/kv/{key}"), value.to_vec()),
            (System::ConsulLite, Load::ReadDefault) => ("GET", format!("/v1/kv/{key}"), Vec::new()),
            (System::ConsulLite, Load::ReadConsistent) => ("GET", format!("/v1/kv/{key}?consistent"), Vec::new()),
            (System::Etcd, Load::Write) => {
                let body = format!(r#"{{"key":"{}","value":"{}"}}"#, base64(key.as_bytes()), base64(value));
                ("POST", "/v3/kv/put".into(), body.into_bytes())
            }
            (System::Etcd, Load::ReadDefault) => {
                let body = format!(r#"{{"key":"{}","serializable":true}}"#, base64(key.as_bytes()));
                ("POST", "/v3/kv/range".into(), body.into_bytes())
            }
            (System::Etcd, Load::ReadConsistent) => {
                let body = format!(r#"{{"key":"{}"}}"#, base64(key.as_bytes()));
                ("POST", "/v3/kv/range".into(), body.into_bytes())
            }
        }
    }

    /// Whether an answer is a success for this system and load.
    fn succeeded(&self, load: Load, status: u16, body: &[u8]) -> bool {
        match (self.system, load) {
            (System::ConsulLite, Load::Write) => status == 200 && body.starts_with(b"true"),
            (System::ConsulLite, _) => status == 200,
            (System::Etcd, Load::Write) => status == 200 && body.windows(8).any(|w| w == b"\"header\""),
            (System::Etcd, _) => status == 200 && body.windows(5).any(|w| w == b"\"kvs\""),
        }
    }

    fn write_once(&self, server: usize, key: u64, timeout: Duration) -> anyhow::Result<()> {
        let (method, path, body) = self.request(Load::Write, key, &[b'x'; VALUE_LEN]);
        let mut conn = Conn::new(self.servers[server].http, timeout);
        let (status, answer) = conn.request(method, &path, &body)?;
        if !self.succeeded(Load::Write, status, &answer) {
            bail!("{status} {}", String::from_utf8_lossy(&answer));
        }
        Ok(())
    }

    /// SIGKILLs the leader, writes through a survivor until one is acknowledged, restarts the
    /// killed server from its data dir and waits for the cluster to be ready again.
    fn failover(&mut self) -> anyhow::Result<Duration> {
        self.wait_ready(Duration::from_secs(60))?;
        let leader = (0..3).find_map(|i| self.leader_seen_by(i)).context("no leader")?;
        let survivor = (leader + 1) % 3;
        let killed_at = Instant::now();
        if let Some(mut agent) = self.servers[leader].agent.take() {
            agent.kill();
        }
        let mut n = 0;
        let took = loop {
            n += 1;
            if self.write_once(survivor, n % KEYS, Duration::from_secs(3)).is_ok() {
                break killed_at.elapsed();
            }
            if killed_at.elapsed() > Duration::from_secs(60) {
                bail!("{}: no write acknowledged within 60 s of the leader's kill", self.system.name());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let server = &mut self.servers[leader];
        server.agent = Some(Agent::spawn(&self.bin, &server.args, &server.log)?);
        self.wait_ready(Duration::from_secs(60))?;
        std::thread::sleep(Duration::from_secs(2));
        Ok(took)
    }
}

/// Runs `clients` clients for `duration` (or, with `count`, until `count` requests were sent
/// in all: keys 0..count, for preloading).
fn load(cluster: &Cluster, kind: Load, clients: usize, duration: Duration, count: Option<u64>) -> Phase {
    let next = std::sync::atomic::AtomicU64::new(0);
    let started = Instant::now();
    let deadline = started + duration;
    let value = [b'v'; VALUE_LEN];
    let per_client: Vec<(Vec<u32>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (next, value) = (&next, &value);
                scope.spawn(move || {
                    let addr = cluster.servers[c % cluster.servers.len()].http;
                    let mut conn = Conn::new(addr, Duration::from_secs(10));
                    let mut latencies = Vec::new();
                    let mut errors = 0;
                    let mut rng = 0x2545_F491_4F6C_DD1D_u64 ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9);
                    loop {
                        let key = match count {
                            Some(count) => {
                                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                if k >= count {
                                    break;
                                }
                                k
                            }
                            None => {
                                if Instant::now() >= deadline {
                                    break;
                                }
                                rng ^= rng << 13;
                                rng ^= rng >> 7;
                                rng ^= rng << 17;
                                rng % KEYS
                            }
                        };
                        let (method, path, body) = cluster.request(kind, key, value);
                        let sent = Instant::now();
                        match conn.request(method, &path, &body) {
                            Ok((status, answer)) if cluster.succeeded(kind, status, &answer) => {
                                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                            }
                            _ => errors += 1,
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let errors = per_client.iter().map(|(_, e)| e).sum();
    let mut all: Vec<u32> = per_client.into_iter().flat_map(|(l, _)| l).collect();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        f64::from(all[i]) / 1000.0
    };
    Phase {
        system: cluster.system,
        load: kind,
        clients,
        ops_per_sec: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

/// A keep-alive HTTP/1.1 connection (reconnected after any error), blocking.
struct Conn {
    addr: SocketAddr,
    timeout: Duration,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Self { addr, timeout, stream: None }
    }

    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let result = self.exchange(method, path, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            self.stream = Some(BufReader::new(stream));
        }
        let reader = self.stream.as_mut().context("connected")?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n", self.addr, body.len());
        if method == "POST" {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        reader.get_mut().write_all(&request)?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no status line")?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                bail!("connection closed in the head");
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                match name.as_str() {
                    "content-length" => length = value.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = value.contains("chunked"),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut answer = Vec::new();
        if chunked {
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16).context("chunk size")?;
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                answer.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = length {
            answer.resize(length, 0);
            reader.read_exact(&mut answer)?;
        } else {
            reader.read_to_end(&mut answer)?;
            close = true;
        }
        if close {
            self.stream = None;
        }
        Ok((status, answer))
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The Markdown report: the stamp, the table with ratios, the targets.
pub fn render(results: &KvResults) -> String {
    let find = |system: System, load: Load, clients: usize| -> Vec<&Phase> {
        results.phases.iter().filter(|p| p.system == system && p.load == load && p.clients == clients).collect()
    };
    let stat = |phases: &[&Phase], f: fn(&Phase) -> f64| Stat::of(phases.iter().map(|p| f(p)));
    let mut clients: Vec<usize> = results.phases.iter().map(|p| p.clients).collect();
    clients.sort_unstable();
    clients.dedup();
    let mut out = String::from("# consul-lite KV vs etcd 3.4\n\n");
    out.push_str(&results.stamp.markdown());
    out.push_str(&format!(
        "\nThree servers of each on loopback, fsync on in both, measured interleaved in one run \
         ({:.0} s per load phase; figures are the median of the rounds, with min–max). Latency in ms. \
         Ratio: consul-lite / etcd (above 1 means consul-lite is higher).\n\n",
        results.phase_secs
    ));
    out.push_str("| measure | consul-lite | etcd 3.4 | ratio |\n|---|---|---|---|\n");
    let mut row = |name: String, a: Option<Stat>, b: Option<Stat>, decimals: usize| {
        let show = |s: &Option<Stat>| s.as_ref().map_or("–".into(), |s| s.show(decimals));
        let r = ratio(a.as_ref(), b.as_ref()).map_or("–".into(), |r| format!("{r:.2}"));
        out.push_str(&format!("| {name} | {} | {} | {r} |\n", show(&a), show(&b)));
    };
    let labels =
        [(Load::Write, "writes"), (Load::ReadDefault, "default reads"), (Load::ReadConsistent, "consistent reads")];
    for (load, label) in labels {
        for &c in &clients {
            let (a, b) = (find(System::ConsulLite, load, c), find(System::Etcd, load, c));
            row(format!("{label}, {c} clients: ops/s"), stat(&a, |p| p.ops_per_sec), stat(&b, |p| p.ops_per_sec), 0);
            row(format!("{label}, {c} clients: median"), stat(&a, |p| p.p50_ms), stat(&b, |p| p.p50_ms), 2);
            row(format!("{label}, {c} clients: p99"), stat(&a, |p| p.p99_ms), stat(&b, |p| p.p99_ms), 2);
        }
    }
    let of =
        |list: &[(System, f64)], system: System| Stat::of(list.iter().filter(|(s, _)| *s == system).map(|(_, v)| *v));
    let failover = (of(&results.failover_secs, System::ConsulLite), of(&results.failover_secs, System::Etcd));
    row("leader SIGKILL → next acknowledged write (s)".into(), failover.0, failover.1, 2);
    let rss = (of(&results.rss_mib, System::ConsulLite), of(&results.rss_mib, System::Etcd));
    row("RSS per server after the load (MiB)".into(), rss.0, rss.1, 1);
    let errors: Vec<String> = results
        .phases
        .iter()
        .filter(|p| p.errors > 0)
        .map(|p| format!("{} {:?} x{}: {}", p.system.name(), p.load, p.clients, p.errors))
        .collect();
    out.push_str(&format!(
        "\nFailed requests: {}.\n",
        if errors.is_empty() { "none".to_owned() } else { errors.join(", ") }
    ));
    out.push_str("\nTargets of issue 13 (reported, not asserted):\n\n");
    let top = clients.last().copied().unwrap_or(64);
    let (wa, wb) = (find(System::ConsulLite, Load::Write, top), find(System::Etcd, Load::Write, top));
    let target = |name: &str, r: Option<f64>, met: fn(f64) -> bool| {
        r.map_or(format!("- {name}: not measured\n"), |r| {
            format!("- {name}: ratio {r:.2}, {}\n", if met(r) { "met" } else { "missed" })
        })
    };
    out.push_str(&target(
        &format!("write throughput at {top} clients ≥ etcd's"),
        ratio(stat(&wa, |p| p.ops_per_sec).as_ref(), stat(&wb, |p| p.ops_per_sec).as_ref()),
        |r| r >= 1.0,
    ));
    out.push_str(&target(
        &format!("write p99 at {top} clients ≤ etcd's"),
        ratio(stat(&wa, |p| p.p99_ms).as_ref(), stat(&wb, |p| p.p99_ms).as_ref()),
        |r| r <= 1.0,
    ));
    out.push_str(&target("failover ≤ etcd's", ratio(failover.0.as_ref(), failover.1.as_ref()), |r| r <= 1.0));
    out.push_str(&target("RSS ≤ 0.5 × etcd's", ratio(rss.0.as_ref(), rss.1.as_ref()), |r| r <= 0.5));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"bench/0001"), "YmVuY2gvMDAwMQ==");
    }
}
