//! Real `consul-lite` processes on 127.0.0.1 with free ports, stopped by PID on drop, and a
//! raw HTTP/1.1 client (one connection per request) that shows exactly what was answered.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port free for TCP and UDP on 127.0.0.1 (gossip uses both on one port), never handed out
/// twice in one test process, and below the kernel's ephemeral range (32768 and up), so that
/// no outgoing connection of a test running beside it takes it before its agent binds it.
pub fn free_port() -> u16 {
    static USED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    // Spread the processes of parallel test binaries over the range.
    let mut candidate = 20_000 + u16::try_from(std::process::id() % 10_000).unwrap_or(0);
    for _ in 0..10_000 {
        candidate = if candidate >= 32_000 { 20_000 } else { candidate + 1 };
        let mut used = USED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if used.contains(&candidate) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", candidate)).is_ok() && UdpSocket::bind(("127.0.0.1", candidate)).is_ok() {
            used.push(candidate);
            return candidate;
        }
    }
    panic!("no free port found below the ephemeral range");
}

/// A running agent; killed (by its PID) and waited for on drop.
pub struct Agent {
    child: Child,
    pub name: String,
    pub http: u16,
    pub serf: u16,
    /// The DNS port (UDP and TCP).
    pub dns: u16,
}

impl Agent {
    /// `consul-lite agent -dev -node NAME` with free ports and `extra` flags; returns once the
    /// HTTP API answers (within 20 s).
    pub fn start(name: &str, extra: &[&str]) -> Self {
        // A free port may be taken by a parallel test between the check and the start:
        // try again with other ports.
        for _ in 0..4 {
            if let Some(agent) = Self::try_start(name, extra) {
                return agent;
            }
        }
        panic!("consul-lite did not start in 4 tries");
    }

    fn try_start(name: &str, extra: &[&str]) -> Option<Self> {
        let http = free_port();
        let serf = free_port();
        let dns = free_port();
        let (http_s, serf_s, dns_s) = (http.to_string(), serf.to_string(), dns.to_string());
        let mut args = vec![
            "agent",
            "-dev",
            "-node",
            name,
            "-http-port",
            &http_s,
            "-serf-lan-port",
            &serf_s,
            "-dns-port",
            &dns_s,
            "-log-level",
            "warn",
        ];
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start consul-lite");
        let mut agent = Self { child, name: name.to_owned(), http, serf, dns };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = agent.child.try_wait().expect("try_wait") {
                eprintln!("consul-lite exited at start ({status}); trying other ports");
                return None;
            }
            let token = extra.iter().position(|a| *a == "-acl-master-token").map(|i| extra[i + 1]);
            let path = match token {
                Some(token) => format!("/v1/agent/self?token={token}"),
                None => "/v1/agent/self".to_owned(),
            };
            // Ours, not another process that took one of the free ports first (another test's
            // agent, whose DNS-over-TCP listener closes an HTTP request without a word): then
            // ours exits on its bind error and the loop above tries other ports.
            if probe(http, &path).is_some_and(|self_| self_.contains(&format!("\"NodeName\":\"{name}\""))) {
                return Some(agent);
            }
            assert!(Instant::now() < deadline, "consul-lite did not answer within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<http port>`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.http)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (waiting at most `within`).
    pub fn exited_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.child.try_wait().expect("try_wait").is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn request(&self, method: &str, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Response {
        request(self.http, method, path, body, headers)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, b"", &[])
    }

    pub fn put(&self, path: &str, body: &[u8]) -> Response {
        self.request("PUT", path, body, &[])
    }

    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, b"", &[])
    }

    /// Runs a client command against this agent; returns (exit success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .args(args)
            .env("CONSUL_HTTP_ADDR", self.addr())
            .env_remove("CONSUL_HTTP_TOKEN")
            .output()
            .expect("run consul-lite");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// `X-Consul-Index`, which must be present.
    pub fn index(&self) -> u64 {
        self.headers
            .get("x-consul-index")
            .unwrap_or_else(|| panic!("no X-Consul-Index in {self:?}"))
            .parse()
            .expect("a numeric index")
    }
}

/// The body of a 200 answer to `GET path`, or `None` for anything else (nothing listening,
/// a connection closed without an answer, another status): never panics.
fn probe(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// One request on its own connection (`Connection: close`), read to the end.
pub fn request(port: u16, method: &str, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(700))).expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    // A refused upload may be answered (and the connection closed) before all of it is sent.
    // (No half-close: hyper takes it for a client that went away.)
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Response {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no head in {raw:?}"));
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        body = dechunk(&body);
    }
    Response { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
    out
}

/// Asks a DNS server on 127.0.0.1:`port` one question over UDP (or TCP), with hickory-proto's
/// message types; `None` if nothing decodable came back within 2 s.
pub fn dns_ask(
    port: u16,
    name: &str,
    qtype: hickory_proto::rr::RecordType,
    tcp: bool,
) -> Option<hickory_proto::op::Message> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    let mut query = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    query.add_query(Query::query(hickory_proto::rr::Name::from_ascii(name).ok()?, qtype));
    let bytes = query.to_vec().ok()?;
    let timeout = Some(Duration::from_secs(2));
    let reply = if tcp {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(timeout).ok()?;
        stream.write_all(&(bytes.len() as u16).to_be_bytes()).ok()?;
        stream.write_all(&bytes).ok()?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).ok()?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply).ok()?;
        reply
    } else {
        let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
        socket.set_read_timeout(timeout).ok()?;
        socket.send_to(&bytes, ("127.0.0.1", port)).ok()?;
        let mut buf = vec![0u8; 65536];
        let len = socket.recv(&mut buf).ok()?;
        buf.truncate(len);
        buf
    };
    let reply = Message::from_vec(&reply).ok()?;
    (reply.metadata.id == query.metadata.id).then_some(reply)
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u16)
}
