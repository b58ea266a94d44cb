//! A cluster of `consul-lite agent -server` processes on 127.0.0.1 with free ports, each
//! killed (SIGKILL, by PID) on drop, and an HTTP client that never panics and says whether a
//! failed request may have reached the server (for histories with "maybe" operations).

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, Response};

/// Bound on anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(45);

/// A `consul-lite agent -server` process.
pub struct Server {
    pub name: String,
    pub dir: PathBuf,
    pub http: u16,
    pub serf: u16,
    pub rpc: u16,
    pub dns: u16,
    /// The gossip port to `-retry-join` (its own: join nobody).
    pub join: u16,
    /// `-bootstrap-expect`, if any.
    pub expect: Option<u32>,
    child: Option<Child>,
    /// Where its stderr goes (appended across restarts).
    pub log: PathBuf,
    /// `-log-level`.
    pub log_level: &'static str,
}

impl Server {
    /// Starts `name` with its data dir under `root`; returns once its HTTP port answers.
    pub fn start(name: &str, root: &Path, join: Option<u16>, expect: Option<u32>) -> Self {
        Self::start_logging(name, root, join, expect, "warn")
    }

    /// As [`Server::start`], with `-log-level level`.
    pub fn start_logging(name: &str, root: &Path, join: Option<u16>, expect: Option<u32>, level: &'static str) -> Self {
        let serf = free_port();
        let mut server = Self {
            name: name.to_owned(),
            dir: root.join(name),
            http: free_port(),
            serf,
            rpc: free_port(),
            dns: free_port(),
            join: join.unwrap_or(serf),
            expect,
            child: None,
            log: root.join(format!("{name}.log")),
            log_level: level,
        };
        server.spawn();
        server
    }

    /// (Re)starts the process from its data dir.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let ports = [self.http, self.serf, self.rpc, self.dns].map(|p| p.to_string());
        let dir = self.dir.to_string_lossy().into_owned();
        let mut args: Vec<String> = vec!["agent".into(), "-server".into()];
        if let Some(expect) = self.expect {
            args.extend(["-bootstrap-expect".into(), expect.to_string()]);
        }
        for (flag, value) in [
            ("-node", self.name.as_str()),
            ("-data-dir", &dir),
            ("-bind", "127.0.0.1"),
            ("-client", "127.0.0.1"),
            ("-http-port", &ports[0]),
            ("-serf-lan-port", &ports[1]),
            ("-server-port", &ports[2]),
            ("-dns-port", &ports[3]),
            ("-log-level", self.log_level),
        ] {
            args.extend([flag.to_owned(), value.to_owned()]);
        }
        if self.join != self.serf {
            args.extend(["-retry-join".into(), format!("127.0.0.1:{}", self.join)]);
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start consul-lite");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.http)).is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                self.child = None;
                panic!("{} exited at start ({status}): {}", self.name, self.log_text());
            }
            assert!(started.elapsed() < WAIT, "{} does not answer HTTP", self.name);
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Starts the process and waits for it to exit by itself (a refused data dir): its exit
    /// status and what it wrote to stderr, or `None` if it was still running after `within`
    /// (then it is killed).
    pub fn spawn_expecting_exit(&mut self, within: Duration) -> Option<(std::process::ExitStatus, String)> {
        let before = std::fs::read_to_string(&self.log).map(|s| s.len()).unwrap_or(0);
        let ports = [self.http, self.serf, self.rpc, self.dns].map(|p| p.to_string());
        let dir = self.dir.to_string_lossy().into_owned();
        let mut args: Vec<String> = vec!["agent".into(), "-server".into()];
        if let Some(expect) = self.expect {
            args.extend(["-bootstrap-expect".into(), expect.to_string()]);
        }
        for (flag, value) in [
            ("-node", self.name.as_str()),
            ("-data-dir", &dir),
            ("-http-port", &ports[0]),
            ("-serf-lan-port", &ports[1]),
            ("-server-port", &ports[2]),
            ("-dns-port", &ports[3]),
        ] {
            args.extend([flag.to_owned(), value.to_owned()]);
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start consul-lite");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("try_wait") {
                let text = self.log_text();
                return Some((status, text.get(before..).unwrap_or_default().to_owned()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process, by PID.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("running").to_string();
        let status = Command::new("kill").args(["-s", signal, &pid]).status().expect("run kill");
        assert!(status.success(), "kill -s {signal} {pid}");
    }

    /// SIGKILL, by PID, and reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process dies of SIGKILL too; continue it anyway so nothing lingers.
            let _ = Command::new("kill").args(["-s", "CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.rpc)
    }

    /// A request with a timeout; see [`call`].
    pub fn call(&self, method: &str, path: &str, body: &[u8], timeout: Duration) -> Result<Response, Failure> {
        call(self.http, method, path, body, timeout)
    }

    /// The leader's server address as this server knows it (empty if none or not answering).
    pub fn leader(&self) -> String {
        self.call("GET", "/v1/status/leader", b"", Duration::from_secs(2))
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| serde_json::from_slice::<String>(&r.body).ok())
            .unwrap_or_default()
    }

    /// A key's value read on this server alone (`?stale`), `None` if absent or not answering.
    pub fn stale_value(&self, key: &str) -> Option<String> {
        let response = self.call("GET", &format!("/v1/kv/{key}?stale&raw"), b"", Duration::from_secs(5)).ok()?;
        (response.status == 200).then(|| response.text())
    }

    /// The servers in the Raft configuration as this server knows it: (address, voter).
    pub fn configuration(&self) -> Vec<(String, bool)> {
        let Ok(answer) = self.call("GET", "/v1/operator/raft/configuration", b"", Duration::from_secs(5)) else {
            return Vec::new();
        };
        if answer.status != 200 {
            return Vec::new();
        }
        let json = answer.json();
        let servers = json["Servers"].as_array().cloned().unwrap_or_default();
        servers.iter().map(|s| (s["Address"].as_str().unwrap_or("").to_owned(), s["Voter"] == true)).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `n` servers named `{prefix}1..n` expecting `n`, joined through the first; returns
/// once all agree on a leader.
pub fn cluster(prefix: &str, n: u32, root: &Path) -> Vec<Server> {
    let mut servers = vec![Server::start(&format!("{prefix}1"), root, None, Some(n))];
    let seed = servers[0].serf;
    for i in 2..=n {
        servers.push(Server::start(&format!("{prefix}{i}"), root, Some(seed), Some(n)));
    }
    eventually(WAIT, "a leader all servers agree on", || agreed_leader(&servers));
    servers
}

/// Polls `check` every 25 ms until it gives a value; panics after `within`.
pub fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The leader's index in `servers`, once every running server names the same one.
pub fn agreed_leader(servers: &[Server]) -> Option<usize> {
    let leaders: Vec<String> = servers.iter().filter(|s| s.running()).map(Server::leader).collect();
    let first = leaders.first()?.clone();
    if first.is_empty() || leaders.iter().any(|l| *l != first) {
        return None;
    }
    servers.iter().position(|s| s.running() && s.rpc_addr() == first)
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing was sent (the connection was refused): certainly not applied.
    NotSent,
    /// Sent, but no complete answer came (a reset, a timeout): it may have been applied.
    Unknown,
}

/// One request on its own connection (`Connection: close`), bounded by `timeout` in all.
pub fn call(port: u16, method: &str, path: &str, body: &[u8], timeout: Duration) -> Result<Response, Failure> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout.min(Duration::from_secs(2)))
        .map_err(|_| Failure::NotSent)?;
    let deadline = Instant::now() + timeout;
    stream.set_write_timeout(Some(timeout)).map_err(|_| Failure::NotSent)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).map_err(|_| Failure::Unknown)?;
    stream.write_all(body).map_err(|_| Failure::Unknown)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Unknown);
        }
        stream.set_read_timeout(Some(left)).map_err(|_| Failure::Unknown)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => return Err(Failure::Unknown),
        }
    }
    parse(&raw).ok_or(Failure::Unknown)
}

fn parse(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        body = dechunk(&body)?;
    } else if let Some(length) = headers.get("content-length").and_then(|l| l.parse::<usize>().ok()) {
        if body.len() < length {
            return None; // cut short
        }
    }
    Some(Response { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(line_end + 2..line_end + 2 + size)?);
        data = data.get(line_end + 2 + size + 2..)?;
    }
}
