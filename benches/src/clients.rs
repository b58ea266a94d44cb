//! consul-lite's client agents, measured on real processes on 127.0.0.1 (`cluster-bench
//! clients`): 3 servers, 5 client agents and 5 serf-agents in one run.
//!
//! - **Idle**: resident set (`VmRSS`) and CPU time over a window, per process, for each role
//!   (consul-lite server, consul-lite client, serf-agent), all started in the same run.
//! - **DNS**: `web.service.consul` A queries per second against one client agent (and one
//!   server for reference), from a few threads, each sending one query and waiting its answer.
//! - **Blocking-query fan-out**: W watchers (`GET /v1/kv/w/<i>?index=1&wait=5m`, distinct
//!   missing keys, spread over the client agents) for W in the steps given; for each step, the
//!   servers' CPU per write (writes of an unrelated key through a client), and how many
//!   watchers one write of a watched key wakes, and how fast.
//!
//! Reports, does not assert. The binaries are given (`--consul-bin`, `--agent-bin`) or taken
//! from `target/release/` of this workspace (`cargo build --release -p consul-lite -p
//! serf-agent`).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::process::{cpu_time, rss_bytes, Agent, RunDir};
use crate::stamp::Stamp;

/// What to run.
#[derive(Debug, Clone)]
pub struct ClientsOptions {
    /// The consul-lite binary.
    pub consul_bin: Option<PathBuf>,
    /// The serf-agent binary.
    pub agent_bin: Option<PathBuf>,
    /// Client agents (and serf-agents: the same number).
    pub clients: usize,
    /// The idle window, seconds.
    pub idle_secs: f64,
    /// Seconds of DNS queries.
    pub dns_secs: f64,
    /// Watchers at each fan-out step.
    pub watchers: Vec<usize>,
    /// Writes per fan-out step (for the servers' CPU per write).
    pub writes: usize,
    /// Write `docs/results/clients.md`.
    pub write: bool,
}

impl Default for ClientsOptions {
    fn default() -> Self {
        Self {
            consul_bin: None,
            agent_bin: None,
            clients: 5,
            idle_secs: 20.0,
            dns_secs: 5.0,
            watchers: vec![0, 1000, 10_000],
            writes: 200,
            write: false,
        }
    }
}

/// One process of the run.
struct Node {
    name: String,
    http: u16,
    dns: u16,
    agent: Agent,
}

/// Runs the measurements and returns the report (Markdown).
pub fn run(options: &ClientsOptions, command: &str) -> anyhow::Result<String> {
    let stamp = Stamp::new(command);
    raise_fd_limit();
    let consul = locate(options.consul_bin.as_deref(), "consul-lite")?;
    let serf_agent = locate(options.agent_bin.as_deref(), "serf-agent")?;
    let dir = RunDir::new("clients", false)?;
    let seed = free_port();
    let mut servers = Vec::new();
    for i in 1..=3 {
        let serf = if i == 1 { seed } else { free_port() };
        let data = dir.path().join(format!("s{i}"));
        let extra = ["-server", "-bootstrap-expect", "3", "-data-dir", data.to_str().unwrap_or_default()];
        servers.push(start_consul(&consul, dir.path(), &format!("s{i}"), serf, seed, &extra)?);
    }
    let mut clients = Vec::new();
    for i in 1..=options.clients {
        clients.push(start_consul(&consul, dir.path(), &format!("c{i}"), free_port(), seed, &[])?);
    }
    let mut serfs = Vec::new();
    let serf_seed = free_port();
    for i in 1..=options.clients {
        let port = if i == 1 { serf_seed } else { free_port() };
        let mut args: Vec<String> =
            ["agent", "-node", &format!("a{i}"), "-bind", &format!("127.0.0.1:{port}")].map(str::to_owned).to_vec();
        args.extend(["-rpc-addr".into(), format!("127.0.0.1:{}", free_port()), "-log-level".into(), "warn".into()]);
        if i > 1 {
            args.extend(["-join".into(), format!("127.0.0.1:{serf_seed}")]);
        }
        serfs.push(Agent::spawn(&serf_agent, &args, &dir.path().join(format!("a{i}.log")))?);
        if i == 1 {
            // The others join it at start (-join): it must be listening first.
            wait_for(Duration::from_secs(30), "the first serf-agent listens", || {
                TcpStream::connect(("127.0.0.1", serf_seed)).is_ok()
            })?;
        }
    }
    let formed = Instant::now();
    let nodes = 3 + options.clients;
    wait_for(Duration::from_secs(60), "every client agent sees every node", || {
        clients.iter().all(|c| {
            get(c.http, "/v1/catalog/nodes")
                .is_some_and(|(status, body)| status == 200 && body.matches("\"Node\":").count() == nodes)
        })
    })?;
    let formed = formed.elapsed();
    for (i, agent) in serfs.iter_mut().enumerate() {
        anyhow::ensure!(!agent.has_exited(), "serf-agent a{} exited: {}", i + 1, agent.log_tail(5));
    }

    let mut out = String::new();
    out.push_str("# consul-lite client agents\n\n");
    out.push_str(&stamp.markdown());
    out.push_str(&format!(
        "- 3 consul-lite servers, {n} consul-lite client agents and {n} serf-agents on 127.0.0.1, lan timings; \
         binaries: `{}`, `{}`\n- the consul-lite cluster formed (every client sees every node) {:.1} s after the last start\n\n",
        consul.display(),
        serf_agent.display(),
        formed.as_secs_f64(),
        n = options.clients
    ));

    // Idle.
    std::thread::sleep(Duration::from_secs(3));
    let all: Vec<(&str, u32)> = servers
        .iter()
        .map(|s| ("consul-lite server", s.agent.pid()))
        .chain(clients.iter().map(|c| ("consul-lite client", c.agent.pid())))
        .chain(serfs.iter().map(|a| ("serf-agent", a.pid())))
        .collect();
    let before: Vec<Duration> = all.iter().map(|(_, pid)| cpu_time(*pid).unwrap_or_default()).collect();
    std::thread::sleep(Duration::from_secs_f64(options.idle_secs));
    let window = options.idle_secs;
    out.push_str(&format!(
        "## Idle\n\nEach process over a {window:.0} s window with nothing to do (no requests): mean (min–max) per role.\n\n\
         | role | processes | VmRSS (MiB) | CPU (ms per s) |\n|---|---:|---:|---:|\n"
    ));
    for role in ["consul-lite server", "consul-lite client", "serf-agent"] {
        let rows: Vec<(f64, f64)> = all
            .iter()
            .zip(&before)
            .filter(|((r, _), _)| *r == role)
            .map(|((_, pid), cpu0)| {
                let rss = rss_bytes(*pid).unwrap_or(0) as f64 / (1024.0 * 1024.0);
                let cpu = cpu_time(*pid).unwrap_or_default().saturating_sub(*cpu0).as_secs_f64() * 1000.0 / window;
                (rss, cpu)
            })
            .collect();
        let (rss, cpu): (Vec<f64>, Vec<f64>) = rows.iter().copied().unzip();
        out.push_str(&format!("| {role} | {} | {} | {} |\n", rows.len(), spread(&rss, 2), spread(&cpu, 2)));
    }

    // DNS.
    let registered = put(clients[0].http, "/v1/agent/service/register", r#"{"Name": "web", "Port": 8080}"#)
        .context("register web")?;
    anyhow::ensure!(registered.0 == 200, "registering web: {}", registered.1);
    wait_for(Duration::from_secs(20), "web in every agent's DNS", || {
        clients.iter().chain(&servers).all(|n| dns_query(n.dns, 7, Duration::from_secs(1)) == Some(true))
    })?;
    out.push_str(&format!(
        "\n## DNS\n\n`web.service.consul` A (one instance, passing), over UDP, for {:.0} s from 4 threads, each sending \
         one query and waiting for its answer.\n\n| agent | queries/s | failed |\n|---|---:|---:|\n",
        options.dns_secs
    ));
    for node in [&clients[1], &servers[0]] {
        let (answered, failed) = dns_load(node.dns, 4, Duration::from_secs_f64(options.dns_secs));
        let kind = if node.name.starts_with('c') { "client" } else { "server" };
        out.push_str(&format!("| {} ({kind}) | {:.0} | {failed} |\n", node.name, answered as f64 / options.dns_secs));
    }

    // Blocking-query fan-out.
    out.push_str(&format!(
        "\n## Blocking-query fan-out\n\nW watchers on distinct missing keys (`GET /v1/kv/w/<i>?index=1&wait=5m`), spread \
         over the {} client agents; then {} writes of an unrelated key through a client (servers' CPU per write, \
         summed over the 3 servers; the clients' too), then one write of a watched key: how many watchers answered \
         within 2 s, and how long the first took.\n\n\
         | watchers | servers' CPU per write (µs) | clients' CPU per write (µs) | write latency (ms, mean) | woken by one write | wake-up (ms) |\n\
         |---:|---:|---:|---:|---:|---:|\n",
        clients.len(),
        options.writes
    ));
    let mut watchers: Vec<TcpStream> = Vec::new();
    let mut next_key = 0usize;
    for &target in &options.watchers {
        while watchers.len() < target {
            let client = &clients[watchers.len() % clients.len()];
            let mut stream = TcpStream::connect(("127.0.0.1", client.http)).context("connect a watcher")?;
            let head = format!(
                "GET /v1/kv/w/{next_key}?index=1&wait=5m HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes())?;
            watchers.push(stream);
            next_key += 1;
        }
        wait_for(Duration::from_secs(60), "every watcher waiting", || {
            let waiting: usize = clients.iter().map(|c| waiting(c.http).unwrap_or(0)).sum();
            waiting >= target
        })?;
        let cpu =
            |nodes: &[Node]| -> Duration { nodes.iter().map(|n| cpu_time(n.agent.pid()).unwrap_or_default()).sum() };
        let (servers0, clients0) = (cpu(&servers), cpu(&clients));
        let started = Instant::now();
        for i in 0..options.writes {
            let (status, body) = put(clients[i % clients.len()].http, "/v1/kv/bench/other", &i.to_string())?;
            anyhow::ensure!(status == 200, "a write answered {status}: {body}");
        }
        let took = started.elapsed();
        let per_write = |d: Duration| d.as_secs_f64() * 1e6 / options.writes as f64;
        let (servers_cpu, clients_cpu) =
            (per_write(cpu(&servers).saturating_sub(servers0)), per_write(cpu(&clients).saturating_sub(clients0)));
        let (woken, wake) = if target == 0 {
            ("–".to_owned(), "–".to_owned())
        } else {
            let key = target - 1;
            let wrote = Instant::now();
            put(clients[0].http, &format!("/v1/kv/w/{key}"), "1")?;
            let acknowledged = wrote.elapsed();
            let (count, first) = readable(&watchers, Duration::from_secs(2));
            // From the start of the write to the first watcher with an answer to read.
            let wake = first.map_or("–".to_owned(), |d| format!("{:.1}", (acknowledged + d).as_secs_f64() * 1000.0));
            (count.to_string(), wake)
        };
        out.push_str(&format!(
            "| {target} | {servers_cpu:.0} | {clients_cpu:.0} | {:.1} | {woken} | {wake} |\n",
            took.as_secs_f64() * 1000.0 / options.writes as f64
        ));
        // The woken watcher is done: replace it so the next step starts from a full set.
        watchers.retain(|stream| !is_readable(stream));
    }
    drop(watchers);
    out.push_str(
        "\nBlocking queries wait at the client agent that took them, woken by its replica; the servers carry one \
         feed subscription per client agent whatever the number of watchers, so their CPU per write does not \
         depend on W.\n",
    );
    drop(serfs);
    drop(clients);
    drop(servers);
    if options.write {
        let path = crate::stamp::results_dir().join("clients.md");
        std::fs::write(&path, &out).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(out)
}

fn locate(explicit: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    let path = explicit
        .map_or_else(|| crate::stamp::workspace_root().join("target").join("release").join(name), Path::to_owned);
    anyhow::ensure!(
        path.is_file(),
        "{} not found: build it (`cargo build --release -p consul-lite -p serf-agent`) or give its path",
        path.display()
    );
    Ok(path)
}

fn start_consul(bin: &Path, dir: &Path, name: &str, serf: u16, seed: u16, extra: &[&str]) -> anyhow::Result<Node> {
    let (http, dns, server) = (free_port(), free_port(), free_port());
    let mut args: Vec<String> = [
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
        "-server-port",
        &server.to_string(),
        "-log-level",
        "warn",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    if serf != seed {
        args.extend(["-retry-join".into(), format!("127.0.0.1:{seed}")]);
    }
    let agent = Agent::spawn(bin, &args, &dir.join(format!("{name}.log")))?;
    wait_for(Duration::from_secs(30), "the agent answers HTTP", || TcpStream::connect(("127.0.0.1", http)).is_ok())?;
    Ok(Node { name: name.to_owned(), http, dns, agent })
}

/// `mean (min–max)` of `values`.
fn spread(values: &[f64], decimals: usize) -> String {
    if values.is_empty() {
        return "–".into();
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{mean:.decimals$} ({min:.decimals$}–{max:.decimals$})")
}

fn wait_for(within: Duration, what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while !done() {
        anyhow::ensure!(started.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A port free for TCP and UDP on 127.0.0.1 (gossip uses both), below the ephemeral range.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(0, 21_000 + (std::process::id() % 8000) as u16, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One HTTP/1.1 request on its own connection: the status and the body.
fn http(port: u16, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let status = raw.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    http(port, "GET", path, "").ok()
}

fn put(port: u16, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    http(port, "PUT", path, body)
}

/// `consul_blocking_queries_waiting` of an agent's metrics.
fn waiting(port: u16) -> Option<usize> {
    let (_, body) = get(port, "/v1/agent/metrics?format=prometheus")?;
    body.lines().find(|l| l.starts_with("consul_blocking_queries_waiting "))?.split_whitespace().nth(1)?.parse().ok()
}

/// A DNS query for `web.service.consul` A with id `id`.
fn dns_message(id: u16) -> Vec<u8> {
    let mut query = id.to_be_bytes().to_vec();
    query.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["web", "service", "consul"] {
        query.push(label.len() as u8);
        query.extend(label.as_bytes());
    }
    query.extend([0, 0, 1, 0, 1]);
    query
}

/// Asks once: `Some(true)` for an answer with at least one record, `Some(false)` for another
/// answer, `None` for none within `timeout`.
fn dns_query(port: u16, id: u16, timeout: Duration) -> Option<bool> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(timeout)).ok()?;
    socket.send_to(&dns_message(id), ("127.0.0.1", port)).ok()?;
    let mut buf = [0u8; 1500];
    let len = socket.recv(&mut buf).ok()?;
    Some(len >= 12 && buf[..2] == id.to_be_bytes() && buf[3] & 0x0f == 0 && u16::from_be_bytes([buf[6], buf[7]]) > 0)
}

/// `threads` threads asking in a loop for `duration`: (answered with records, failed).
fn dns_load(port: u16, threads: usize, duration: Duration) -> (u64, u64) {
    let until = Instant::now() + duration;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u64, 0u64);
                let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else { return (0, 1) };
                let _ = socket.set_read_timeout(Some(Duration::from_secs(1)));
                let mut id = (t as u16) << 12;
                let mut buf = [0u8; 1500];
                while Instant::now() < until {
                    id = id.wrapping_add(1);
                    let answered = socket.send_to(&dns_message(id), ("127.0.0.1", port)).is_ok()
                        && socket.recv(&mut buf).is_ok_and(|len| len >= 12 && buf[..2] == id.to_be_bytes());
                    if answered {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    handles.into_iter().filter_map(|h| h.join().ok()).fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

/// How many of `streams` have something to read within `timeout`, and when the first did
/// (one `poll` over all of them, so that 10,000 cost one system call per look).
fn readable(streams: &[TcpStream], timeout: Duration) -> (usize, Option<Duration>) {
    let started = Instant::now();
    let mut fds: Vec<libc::pollfd> =
        streams.iter().map(|s| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    let mut first = None;
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        let wait_ms = if first.is_some() { left.as_millis().min(50) } else { left.as_millis() };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms as libc::c_int) };
        if ready > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        if started.elapsed() >= timeout {
            return (fds.iter().filter(|fd| fd.revents != 0).count(), first);
        }
        if first.is_some() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn is_readable(stream: &TcpStream) -> bool {
    let mut poll = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, a zero timeout.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents != 0
}

/// Raises the soft file-descriptor limit to the hard one (10,000 watchers hold one each).
fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid rlimit out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 && limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: a valid rlimit.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
}
