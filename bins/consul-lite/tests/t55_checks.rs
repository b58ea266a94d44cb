//! The agent runs its own checks, as Consul's does: an HTTP check against a tiny local server
//! (2xx passing, 429 warning, 500 critical, with the status line and body as output, and the
//! service leaving `health/service/web?passing`), a TCP check, a script check that hangs
//! (killed with its process group at its timeout, and stopped on deregister), the thresholds,
//! `DeregisterCriticalServiceAfter`, and service and node maintenance.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Agent;
use serde_json::{json, Value};

fn put_json(agent: &Agent, path: &str, body: &Value) -> common::Response {
    agent.put(path, body.to_string().as_bytes())
}

/// Polls `probe` every 100 ms until it returns `Some`, at most `within`.
fn wait_for<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check(agent: &Agent, id: &str) -> Value {
    agent.get("/v1/agent/checks").json()[id].clone()
}

fn wait_status(agent: &Agent, id: &str, status: &str, within: Duration) -> Value {
    wait_for(within, &format!("check {id} {status}"), || {
        let check = check(agent, id);
        (check["Status"] == status).then_some(check)
    })
}

fn passing(agent: &Agent, service: &str) -> usize {
    agent.get(&format!("/v1/health/service/{service}?passing")).json().as_array().unwrap().len()
}

/// A tiny HTTP server on 127.0.0.1 answering every request with the status in `status` and the
/// body `ok <status>`; the request heads it got are kept.
struct TinyServer {
    port: u16,
    status: Arc<AtomicU16>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl TinyServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(200));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (answer, seen) = (Arc::clone(&status), Arc::clone(&requests));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                let code = answer.load(Ordering::SeqCst);
                let reason = match code {
                    200 => "OK",
                    429 => "Too Many Requests",
                    _ => "Internal Server Error",
                };
                let body = format!("ok {code}");
                let reply = format!(
                    "HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        Self { port, status, requests }
    }
}

#[test]
fn http_check_follows_the_status_code_and_takes_the_service_out_of_passing() {
    let agent = Agent::start("t55-http", &[]);
    let server = TinyServer::start();
    let url = format!("http://127.0.0.1:{}/health?x=1", server.port);
    let body = json!({
        "Name": "web", "Port": server.port,
        "Check": {"HTTP": url, "Method": "POST", "Header": {"X-Probe": ["yes"]}, "Interval": "1s", "Timeout": "2s"}
    });
    assert_eq!(put_json(&agent, "/v1/agent/service/register", &body).status, 200);
    // Critical until the first run (Consul's default), then passing.
    let passed = wait_status(&agent, "service:web", "passing", Duration::from_secs(10));
    assert_eq!(passed["Type"], "http");
    assert_eq!(passed["Output"], format!("HTTP POST {url}: 200 OK Output: ok 200"));
    assert_eq!(passed["Definition"]["Interval"], "1s");
    wait_for(Duration::from_secs(5), "web in ?passing", || (passing(&agent, "web") == 1).then_some(()));
    let head = server.requests.lock().unwrap()[0].clone();
    assert!(head.starts_with("POST /health?x=1 HTTP/1.1\r\n"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("x-probe: yes") && head.contains("user-agent: consul health check"), "{head}");

    server.status.store(429, Ordering::SeqCst);
    let warned = wait_status(&agent, "service:web", "warning", Duration::from_secs(10));
    assert!(warned["Output"].as_str().unwrap().contains(": 429 Too Many Requests Output: ok 429"), "{warned}");

    server.status.store(500, Ordering::SeqCst);
    let failed = wait_status(&agent, "service:web", "critical", Duration::from_secs(10));
    assert!(failed["Output"].as_str().unwrap().contains(": 500 Internal Server Error Output: ok 500"), "{failed}");
    wait_for(Duration::from_secs(5), "web out of ?passing", || (passing(&agent, "web") == 0).then_some(()));
    let health = agent.get("/v1/health/checks/web").json();
    assert_eq!(health[0]["Status"], "critical", "the catalog has it too: {health}");

    server.status.store(200, Ordering::SeqCst);
    wait_status(&agent, "service:web", "passing", Duration::from_secs(10));
    wait_for(Duration::from_secs(5), "web back in ?passing", || (passing(&agent, "web") == 1).then_some(()));
}

#[test]
fn tcp_check_passes_while_the_port_listens() {
    let agent = Agent::start("t55-tcp", &[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let body = json!({"Name": "db-tcp", "ServiceID": "", "TCP": address, "Interval": "1s", "Timeout": "1s"});
    assert_eq!(put_json(&agent, "/v1/agent/check/register", &body).status, 200);
    let passed = wait_status(&agent, "db-tcp", "passing", Duration::from_secs(10));
    assert_eq!(passed["Output"], format!("TCP connect {address}: Success"));
    assert_eq!(passed["Type"], "tcp");
    drop(listener);
    let failed = wait_status(&agent, "db-tcp", "critical", Duration::from_secs(10));
    assert!(failed["Output"].as_str().unwrap().contains(&address), "{failed}");
    // A node check: the node's health shows it.
    let node = agent.get("/v1/health/node/t55-tcp").json();
    let ids: Vec<&str> = node.as_array().unwrap().iter().map(|c| c["CheckID"].as_str().unwrap()).collect();
    assert!(ids.contains(&"db-tcp"), "{node}");
}

/// Whether process group `id` still has a process (`kill -0 -- -id`).
fn group_alive(id: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-0", "--", &format!("-{id}")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn pids(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[test]
fn a_hanging_script_is_killed_with_its_group_at_its_timeout_and_stops_on_deregister() {
    let agent = Agent::start("t55-script", &["-enable-script-checks"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pids");
    // The shell writes its PID (its group's id) and waits on a child that would run for 60 s.
    let script = format!("echo $$ >> {}; echo started; sleep 60 & wait", file.display());
    let body = json!({"Name": "hang", "Check": {"Args": ["sh", "-c", script], "Interval": "2s", "Timeout": "1s"}});
    assert_eq!(put_json(&agent, "/v1/agent/service/register", &body).status, 200);
    let failed = wait_status(&agent, "service:hang", "critical", Duration::from_secs(3)); // critical at start
    assert_eq!(failed["Type"], "script");
    let failed = wait_for(Duration::from_secs(10), "a timed-out run", || {
        let check = check(&agent, "service:hang");
        check["Output"].as_str().unwrap().starts_with("Timed out (1s) running check").then_some(check)
    });
    assert!(failed["Output"].as_str().unwrap().contains("started"), "the output so far: {failed}");
    let first = pids(&file).first().cloned().expect("the script ran");
    wait_for(Duration::from_secs(3), "the timed-out group gone", || (!group_alive(&first)).then_some(()));

    // Deregistered: no run left, none started after.
    assert_eq!(agent.put("/v1/agent/service/deregister/hang", b"").status, 200);
    for pid in pids(&file) {
        wait_for(Duration::from_secs(3), "every group gone", || (!group_alive(&pid)).then_some(()));
    }
    let runs = pids(&file).len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pids(&file).len(), runs, "no run after deregister");
}

#[test]
fn script_exit_codes_and_thresholds() {
    let agent = Agent::start("t55-thresholds", &["-enable-script-checks"]);
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::write(&code, "0").unwrap();
    let script = format!("echo run; exit $(cat {})", code.display());
    let body = json!({
        "Name": "t", "Args": ["sh", "-c", script], "Interval": "1s",
        "SuccessBeforePassing": 2, "FailuresBeforeWarning": 1, "FailuresBeforeCritical": 3
    });
    assert_eq!(put_json(&agent, "/v1/agent/check/register", &body).status, 200);
    // The first result applies at once (Consul's counters start at their thresholds).
    let passed = wait_status(&agent, "t", "passing", Duration::from_secs(10));
    assert_eq!(passed["Output"], "run\n");

    // Exit 2: warning from the first failure, critical only at the third (1 s apart).
    std::fs::write(&code, "2").unwrap();
    let failing_since = Instant::now();
    wait_status(&agent, "t", "warning", Duration::from_secs(10));
    wait_status(&agent, "t", "critical", Duration::from_secs(10));
    let took = failing_since.elapsed();
    assert!(took >= Duration::from_millis(1_900), "critical after 3 failures 1 s apart, not {took:?}");

    // Exit 0 again: passing only at the second success.
    std::fs::write(&code, "0").unwrap();
    let passing_since = Instant::now();
    wait_status(&agent, "t", "passing", Duration::from_secs(10));
    let took = passing_since.elapsed();
    assert!(took >= Duration::from_millis(900), "passing after 2 successes 1 s apart, not {took:?}");

    // Exit 1 is a warning in any case (counted as a success by the thresholds).
    std::fs::write(&code, "1").unwrap();
    wait_status(&agent, "t", "warning", Duration::from_secs(10));
}

#[test]
fn a_service_critical_for_its_deregister_after_is_removed() {
    let agent = Agent::start("t55-reap", &[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().to_string();
    let closed = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let check = |address: &str| json!({"TCP": address, "Interval": "1s", "DeregisterCriticalServiceAfter": "2s"});
    let registered = Instant::now();
    for (name, address) in [("gone", &closed), ("stays", &open)] {
        let body = json!({"Name": name, "Check": check(address)});
        assert_eq!(put_json(&agent, "/v1/agent/service/register", &body).status, 200);
    }
    wait_for(Duration::from_secs(10), "the critical service removed", || {
        agent.get("/v1/agent/services").json().get("gone").is_none().then_some(())
    });
    assert!(registered.elapsed() >= Duration::from_millis(1_900), "not before 2 s critical");
    assert_eq!(agent.get("/v1/catalog/service/gone").json(), json!([]), "out of the catalog too");
    assert!(agent.get("/v1/agent/checks").json().get("service:gone").is_none());
    let services = agent.get("/v1/agent/services").json();
    assert!(services.get("stays").is_some(), "a passing one stays: {services}");
    assert_eq!(passing(&agent, "stays"), 1);
}

#[test]
fn service_and_node_maintenance_are_critical_checks() {
    let agent = Agent::start("t55-maint", &[]);
    let body = json!({"Name": "web", "Check": {"TTL": "60s", "Status": "passing"}});
    assert_eq!(put_json(&agent, "/v1/agent/service/register", &body).status, 200);
    assert_eq!(passing(&agent, "web"), 1);

    let reply = agent.put("/v1/agent/service/maintenance/web?enable=true&reason=upgrading", b"");
    assert_eq!(reply.status, 200, "{reply:?}");
    let maintenance = check(&agent, "_service_maintenance:web");
    assert_eq!(maintenance["Status"], "critical");
    assert_eq!(maintenance["Notes"], "upgrading");
    assert_eq!(maintenance["ServiceID"], "web");
    assert_eq!(maintenance["Name"], "Service Maintenance Mode");
    assert_eq!(passing(&agent, "web"), 0, "out of ?passing");
    assert_eq!(agent.put("/v1/agent/service/maintenance/web?enable=false", b"").status, 200);
    assert_eq!(check(&agent, "_service_maintenance:web"), Value::Null);
    assert_eq!(passing(&agent, "web"), 1);

    assert_eq!(agent.put("/v1/agent/maintenance?enable=true", b"").status, 200);
    let node = check(&agent, "_node_maintenance");
    assert_eq!(node["Status"], "critical");
    assert_eq!(
        node["Notes"],
        "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
    );
    assert_eq!(passing(&agent, "web"), 0, "a node in maintenance serves nothing");
    assert_eq!(agent.put("/v1/agent/maintenance?enable=false", b"").status, 200);
    assert_eq!(passing(&agent, "web"), 1);

    // Bad input, with Consul's answers.
    let reply = agent.put("/v1/agent/service/maintenance/web", b"");
    assert_eq!((reply.status, reply.text().trim()), (400, "Missing value for enable"));
    let reply = agent.put("/v1/agent/maintenance?enable=maybe", b"");
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("Invalid value for enable"), "{reply:?}");
    let reply = agent.put("/v1/agent/service/maintenance/nope?enable=true", b"");
    assert_eq!((reply.status, reply.text().trim()), (404, "No service registered with ID \"nope\""));
    assert_eq!(agent.get("/v1/agent/maintenance?enable=true").status, 405);
    // pass/warn/fail are for TTL checks only.
    assert_eq!(agent.put("/v1/agent/maintenance?enable=true", b"").status, 200);
    let reply = agent.put("/v1/agent/check/pass/_node_maintenance", b"");
    assert_eq!(reply.status, 500);
    assert!(reply.text().contains("does not have associated TTL"), "{reply:?}");
}
