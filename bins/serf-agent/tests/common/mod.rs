//! Helpers of the integration tests: real `serf-agent` processes on 127.0.0.1, each killed by
//! PID when its guard is dropped; a tiny HTTP client; bounded waits.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_serf-agent");

/// Ports handed out by this test process, never handed out twice.
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port free for TCP and UDP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut used = USED_PORTS.lock().unwrap();
        if used.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port found");
}

/// Poll `check` every 100 ms until it returns `Some`, for at most `bound`; panic naming `what`.
pub fn wait_for<T>(what: &str, bound: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {bound:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Options of one agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub name: String,
    pub gossip: u16,
    pub rpc: u16,
    pub http: Option<u16>,
    pub args: Vec<String>,
}

impl AgentSpec {
    pub fn new(name: &str) -> Self {
        Self { name: name.to_owned(), gossip: free_port(), rpc: free_port(), http: None, args: Vec::new() }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn with_http(mut self) -> Self {
        self.http = Some(free_port());
        self
    }

    pub fn gossip_addr(&self) -> String {
        format!("127.0.0.1:{}", self.gossip)
    }

    pub fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.rpc)
    }
}

/// A running agent; killed (SIGKILL, by PID) when dropped.
pub struct Agent {
    pub spec: AgentSpec,
    pub log: PathBuf,
    child: Option<Child>,
    token: Option<String>,
}

impl Agent {
    /// Start an agent and wait until its RPC answers. Logs go to `dir/NAME.log`.
    pub fn start(dir: &Path, spec: AgentSpec) -> Self {
        let mut agent = Self::spawn(dir, spec);
        agent.wait_ready();
        agent
    }

    /// Start an agent without waiting.
    pub fn spawn(dir: &Path, spec: AgentSpec) -> Self {
        let log = dir.join(format!("{}.log", spec.name));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open the log file");
        let mut args: Vec<String> = vec![
            "agent".into(),
            "-node".into(),
            spec.name.clone(),
            "-bind".into(),
            spec.gossip_addr(),
            "-rpc-addr".into(),
            spec.rpc_addr(),
            "-profile".into(),
            "local".into(),
            "-log-level".into(),
            "debug".into(),
        ];
        if let Some(http) = spec.http {
            args.push("-primary-http".into());
            args.push(format!("127.0.0.1:{http}"));
        }
        args.extend(spec.args.iter().cloned());
        let token = spec.args.iter().position(|arg| arg == "-rpc-auth").and_then(|i| spec.args.get(i + 1)).cloned();
        let child = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log file"))
            .stderr(file)
            .spawn()
            .expect("start serf-agent");
        Self { spec, log, child: Some(child), token }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the RPC answers; panic with the log if the process exits first.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = try_http(&self.spec.rpc_addr(), "GET", "/v1/health", "", None) {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("agent {} exited at start ({status}):\n{}", self.spec.name, self.log_text());
                }
            }
            if Instant::now() > deadline {
                panic!("agent {} not ready after 20 s:\n{}", self.spec.name, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send a signal by PID.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait (bounded) for the process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("agent {} did not exit within {bound:?}:\n{}", self.spec.name, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// `GET` or `POST` on the RPC, with this agent's token.
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http(&self.spec.rpc_addr(), method, path, body, self.token.as_deref())
    }

    pub fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.http("GET", path, "");
        assert_eq!(status, 200, "GET {path} on {}: {body}", self.spec.name);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Members as this agent sees them: name → status.
    pub fn members(&self) -> Vec<(String, String)> {
        let value = self.get_json("/v1/members");
        value["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["name"].as_str().unwrap().to_owned(), m["status"].as_str().unwrap().to_owned()))
            .collect()
    }

    pub fn status_of(&self, node: &str) -> Option<String> {
        self.members().into_iter().find(|(name, _)| name == node).map(|(_, status)| status)
    }

    /// Run a client command against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new(BIN);
        command.args(args).arg("-rpc-addr").arg(self.spec.rpc_addr()).env_remove("SERF_RPC_ADDR");
        if let Some(token) = &self.token {
            command.env("SERF_RPC_AUTH", token);
        } else {
            command.env_remove("SERF_RPC_AUTH");
        }
        command.output().expect("run serf-agent")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            eprintln!("---- last lines of {}'s log ----\n{tail}", self.spec.name);
        }
    }
}

/// Run the binary with arbitrary arguments (no agent involved).
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SERF_RPC_ADDR")
        .env_remove("SERF_RPC_AUTH")
        .output()
        .expect("run serf-agent")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// One HTTP/1.1 request with `Connection: close`; status and body. Panics when the server
/// cannot be reached.
pub fn http(addr: &str, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    try_http(addr, method, path, body, token).unwrap_or_else(|error| panic!("{method} {path} on {addr}: {error}"))
}

pub fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let addr: SocketAddr = addr.parse().expect("an IP:PORT");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text:?}")))?;
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_owned() };
    Ok((status, body))
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        text = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Start `count` agents named `{prefix}0..`, the first alone, the others joining it; wait until
/// every one lists all of them alive.
pub fn cluster(dir: &Path, prefix: &str, count: usize, extra: impl Fn(usize, AgentSpec) -> AgentSpec) -> Vec<Agent> {
    let mut agents: Vec<Agent> = Vec::new();
    for index in 0..count {
        let mut spec = extra(index, AgentSpec::new(&format!("{prefix}{index}")));
        if index > 0 {
            spec = spec.arg("-join").arg(agents[0].spec.gossip_addr());
        }
        agents.push(Agent::start(dir, spec));
    }
    for agent in &agents {
        wait_for(&format!("{} to list {count} alive members", agent.spec.name), Duration::from_secs(20), || {
            let members = agent.members();
            (members.iter().filter(|(_, status)| status == "alive").count() == count).then_some(())
        });
    }
    agents
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("serf-agent-test").tempdir().expect("temp dir")
}
