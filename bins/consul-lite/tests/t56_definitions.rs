//! Where the agent's services and checks come from and where they go: definitions in config
//! files registered at start (and bad ones stopping the agent), API registrations kept in
//! `-data-dir` across a restart (TTL checks back `critical`), bad input answered 400 naming the
//! field with nothing written, and the `services` / `catalog` commands.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Agent};
use serde_json::{json, Value};

fn put_json(agent: &Agent, path: &str, body: &Value) -> common::Response {
    agent.put(path, body.to_string().as_bytes())
}

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

#[test]
fn config_file_definitions_are_registered_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("10-web.json"),
        json!({
            "service": {"name": "web", "id": "web-1", "port": 8080, "tags": ["a"],
                        "check": {"ttl": "30s", "status": "passing", "notes": "from a file"}},
            "services": [{"Name": "api", "Checks": [{"args": ["sh", "-c", "echo ok"], "interval": "1s"}]}],
            "check": {"id": "node-ttl", "name": "node ttl", "ttl": "30s"},
            "enable_local_script_checks": true
        })
        .to_string(),
    )
    .unwrap();
    let config_dir = dir.path().to_string_lossy().into_owned();
    let agent = Agent::start("t56-config", &["-config-dir", &config_dir]);
    let services = agent.get("/v1/agent/services").json();
    assert_eq!(services["web-1"]["Service"], "web", "{services}");
    assert_eq!(services["web-1"]["Port"], 8080);
    assert_eq!(services["api"]["Service"], "api");
    let checks = agent.get("/v1/agent/checks").json();
    assert_eq!(checks["service:web-1"]["Status"], "passing", "{checks}");
    assert_eq!(checks["service:web-1"]["Notes"], "from a file");
    assert_eq!(checks["node-ttl"]["Status"], "critical");
    // Written to the catalog by the first sync, at start.
    wait_for(Duration::from_secs(5), "web in the catalog, its check passing", || {
        let rows = agent.get("/v1/health/checks/web").json();
        (rows.as_array().unwrap().len() == 1 && rows[0]["Status"] == "passing").then_some(())
    });
    assert_eq!(agent.get("/v1/catalog/service/web").json()[0]["ServiceID"], "web-1");
    // The node check is critical: nothing on the node is passing.
    assert_eq!(agent.get("/v1/health/service/web?passing").json(), json!([]));
    // A script check from a config file runs with -enable-local-script-checks...
    wait_for(Duration::from_secs(10), "the config file's script check passing", || {
        let check = agent.get("/v1/agent/checks").json()["service:api"].clone();
        (check["Status"] == "passing").then_some(())
    });
    // ... but not one from the API (Consul's answer).
    let body = json!({"Name": "remote", "Check": {"Args": ["true"], "Interval": "10s"}});
    let reply = put_json(&agent, "/v1/agent/service/register", &body);
    assert_eq!(reply.status, 500, "{reply:?}");
    assert!(reply.text().contains("Scripts are disabled on this agent from remote calls"), "{reply:?}");
}

/// Runs `consul-lite agent -dev` with a config file that must be refused; its stderr.
fn refused_config(config: &Value, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let (http, serf) = (free_port().to_string(), free_port().to_string());
    let mut args = vec!["agent", "-dev", "-node", "t56-bad", "-http-port", &http, "-serf-lan-port", &serf];
    args.extend(["-dns-port", "-1", "-config-file", file.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let output = Command::new(env!("CARGO_BIN_EXE_consul-lite")).args(&args).output().expect("run consul-lite");
    assert!(!output.status.success(), "{config} must be refused");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_config_definitions_stop_the_agent_naming_the_file_and_field() {
    let error = refused_config(&json!({"service": {"port": 80}}), &[]);
    assert!(error.contains("bad.json") && error.contains("Missing service name"), "{error}");
    let error = refused_config(&json!({"services": [{"name": "a", "check": {"http": "http://x/"}}]}), &[]);
    assert!(error.contains("Invalid Check.Interval"), "{error}");
    let error = refused_config(&json!({"service": {"name": "a", "check": {"args": ["true"], "interval": "5s"}}}), &[]);
    assert!(error.contains("Scripts are disabled on this agent"), "{error}");
    let error = refused_config(&json!({"check": {"name": "c", "ttl": "5s", "service_id": "nope"}}), &[]);
    assert!(error.contains("ServiceID \"nope\""), "{error}");
    let error = refused_config(&json!({"services": {"name": "a"}}), &[]);
    assert!(error.contains("expected a list"), "{error}");
}

#[test]
fn agent_endpoints_answer_bad_input_with_400_naming_the_field() {
    let agent = Agent::start("t56-bad-input", &[]);
    let service_cases = [
        (json!({"Port": 80}), "Missing service name"),
        (json!({"Name": "web", "Port": "80"}), "Port"),
        (json!({"Name": "web", "Check": {"HTTP": "http://127.0.0.1/", "Interval": "often"}}), "Invalid Check.Interval"),
        (json!({"Name": "web", "Check": {"HTTP": "https://127.0.0.1/", "Interval": "5s"}}), "https"),
        (json!({"Name": "web", "Check": {"H2PING": "127.0.0.1:1", "Interval": "5s"}}), "Invalid Check.H2PING"),
        (json!({"Name": "web", "Check": {"TTL": "5s", "TCP": "127.0.0.1:1"}}), "only one of"),
        (json!({"Name": "web", "Checks": [{"TTL": "5s"}, {"TCP": "127.0.0.1:1"}]}), "Invalid Checks[1].Interval"),
        (json!({"Name": "web", "Check": {"TTL": "5s", "FailuresBeforeCritical": "3"}}), "FailuresBeforeCritical"),
    ];
    for (body, expected) in service_cases {
        let reply = put_json(&agent, "/v1/agent/service/register", &body);
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        assert!(reply.text().contains(expected), "{body}: {:?} should say {expected}", reply.text());
    }
    let check_cases = [
        (json!({"TTL": "5s"}), "Missing check name"),
        (json!({"Name": "c"}), "Invalid check.TTL"),
        (json!({"Name": "c", "TCP": "127.0.0.1:1", "Interval": "5s", "Timeout": "-1s"}), "Invalid check.Timeout"),
        (json!({"Name": "c", "DockerContainerID": "abc", "Interval": "5s"}), "Invalid check.DockerContainerID"),
        (json!({"Name": "c", "Script": "true", "Interval": "5s"}), "Invalid check.Script"),
        (json!({"Name": "c", "TTL": "5s", "Status": "fine"}), "Invalid check.Status"),
    ];
    for (body, expected) in check_cases {
        let reply = put_json(&agent, "/v1/agent/check/register", &body);
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        assert!(reply.text().contains(expected), "{body}: {:?} should say {expected}", reply.text());
    }
    assert_eq!(agent.get("/v1/agent/services").json(), json!({}), "nothing written");
    assert_eq!(agent.get("/v1/agent/checks").json(), json!({}));
    assert_eq!(agent.get("/v1/catalog/service/web").json(), json!([]));
}

/// A single `-server -bootstrap-expect 1` agent on `data_dir` (the mode that keeps state).
struct Server {
    child: Child,
    http: u16,
}

impl Server {
    fn start(data_dir: &std::path::Path, ports: (u16, u16, u16)) -> Self {
        let (http, serf, rpc) = (ports.0.to_string(), ports.1.to_string(), ports.2.to_string());
        let dir = data_dir.to_string_lossy().into_owned();
        let child = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .args(["agent", "-server", "-bootstrap-expect", "1", "-node", "t56-keep", "-data-dir", &dir])
            .args(["-http-port", &http, "-serf-lan-port", &serf, "-server-port", &rpc, "-dns-port", "-1"])
            .args(["-log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start consul-lite");
        let mut server = Self { child, http: ports.0 };
        wait_for(Duration::from_secs(20), "the server's HTTP API", || {
            assert!(server.child.try_wait().unwrap().is_none(), "the server exited at start");
            TcpStream::connect(("127.0.0.1", server.http)).ok()
        });
        server
    }

    fn get(&self, path: &str) -> common::Response {
        common::request(self.http, "GET", path, b"", &[])
    }

    fn put(&self, path: &str, body: &Value) -> common::Response {
        common::request(self.http, "PUT", path, body.to_string().as_bytes(), &[])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn api_registrations_are_kept_in_the_data_dir_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ports = (free_port(), free_port(), free_port());
    let server = Server::start(dir.path(), ports);
    let web = json!({"Name": "web", "ID": "web-1", "Port": 80, "Check": {"TTL": "30s", "Status": "passing"}});
    // Until there is a leader and this node is in the catalog, a registration is refused.
    wait_for(Duration::from_secs(20), "a registration accepted", || {
        (server.put("/v1/agent/service/register", &web).status == 200).then_some(())
    });
    let node_check = json!({"Name": "disk", "CheckID": "disk", "TTL": "30s"});
    assert_eq!(server.put("/v1/agent/check/register", &node_check).status, 200);
    assert_eq!(server.put("/v1/agent/check/pass/disk", &json!(null)).status, 200);
    let gone = json!({"Name": "gone", "Check": {"TTL": "30s"}});
    assert_eq!(server.put("/v1/agent/service/register", &gone).status, 200);
    assert_eq!(server.put("/v1/agent/service/deregister/gone", &json!(null)).status, 200);
    assert_eq!(server.get("/v1/agent/checks").json()["disk"]["Status"], "passing");
    drop(server); // SIGKILL: what was acknowledged is on disk already.

    let server = Server::start(dir.path(), ports);
    let services = server.get("/v1/agent/services").json();
    let mut ids: Vec<&String> = services.as_object().unwrap().keys().collect();
    ids.sort();
    assert_eq!(ids, ["web-1"], "{services}");
    assert_eq!(services["web-1"]["Port"], 80);
    let checks = server.get("/v1/agent/checks").json();
    assert_eq!(checks["service:web-1"]["Status"], "critical", "TTL checks come back critical: {checks}");
    assert_eq!(checks["disk"]["Status"], "critical", "{checks}");
    // The catalog follows once the agent syncs (after the election).
    wait_for(Duration::from_secs(20), "the catalog's TTL check critical", || {
        let rows = server.get("/v1/health/checks/web").json();
        (rows[0]["Status"] == "critical").then_some(())
    });
    assert_eq!(server.put("/v1/agent/service/deregister/web-1", &json!(null)).status, 200);
    assert_eq!(server.put("/v1/agent/check/deregister/disk", &json!(null)).status, 200);
    drop(server);

    let server = Server::start(dir.path(), ports);
    assert_eq!(server.get("/v1/agent/services").json(), json!({}), "deregistered stays deregistered");
    assert_eq!(server.get("/v1/agent/checks").json(), json!({}));
}

#[test]
fn services_and_catalog_commands() {
    let agent = Agent::start("t56-cli", &[]);
    let (ok, out, err) =
        agent.cli(&["services", "register", "-name", "web", "-port", "8080", "-tag", "b", "-tag", "a"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "Registered service: web");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api.json");
    std::fs::write(&file, json!({"services": [{"name": "api", "id": "api-1", "port": 9000}]}).to_string()).unwrap();
    let (ok, out, err) = agent.cli(&["services", "register", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "Registered service: api");
    assert_eq!(agent.get("/v1/agent/services").json()["web"]["Tags"], json!(["b", "a"]));

    let (ok, out, _) = agent.cli(&["catalog", "services"]);
    assert!(ok);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["api", "consul", "web"]);
    let (ok, out, _) = agent.cli(&["catalog", "services", "-tags"]);
    assert!(ok);
    let web = out.lines().find(|line| line.starts_with("web")).unwrap_or_default().to_owned();
    assert!(web.split_whitespace().eq(["web", "a,b"]), "{out}");
    let (ok, out, _) = agent.cli(&["catalog", "nodes", "-service", "api"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].split_whitespace().eq(["Node", "ID", "Address", "DC"]), "{out}");
    assert!(lines[1].starts_with("t56-cli") && lines[1].ends_with("dc1"), "{out}");
    let (ok, _, err) = agent.cli(&["catalog", "nodes", "-service", "nothing"]);
    assert!(ok && err.contains("No nodes match"), "{err}");

    let (ok, out, err) = agent.cli(&["services", "deregister", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "Deregistered service: api-1");
    let (ok, out, _) = agent.cli(&["services", "deregister", "-id", "web"]);
    assert!(ok);
    assert_eq!(out.trim(), "Deregistered service: web");
    assert_eq!(agent.get("/v1/agent/services").json(), json!({}));
    let (ok, _, err) = agent.cli(&["services", "deregister", "-id", "web"]);
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, _, err) = agent.cli(&["services", "register"]);
    assert!(!ok && err.contains("-name"), "{err}");
}
