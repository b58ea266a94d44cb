//! The gossip pool and the catalog kept in step with it (two real agents), the client
//! commands, and bad flags.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Agent;

/// Polls `condition` every 100 ms for at most `within`.
fn eventually(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn members_join_catalog_and_a_failed_node_loses_its_sessions() {
    let a = Agent::start("alpha", &[]);
    let mut b = Agent::start("beta", &[]);
    let join = a.put(&format!("/v1/agent/join/127.0.0.1:{}", b.serf), b"");
    assert_eq!(join.status, 200, "{}", join.text());
    eventually(Duration::from_secs(10), "both members on alpha", || {
        a.get("/v1/agent/members").json().as_array().unwrap().len() == 2
    });
    let members = a.get("/v1/agent/members").json();
    let beta = members.as_array().unwrap().iter().find(|m| m["Name"] == "beta").unwrap().clone();
    assert_eq!(beta["Status"], 1);
    assert_eq!(beta["Tags"]["role"], "consul");
    assert_eq!(beta["Tags"]["dc"], "dc1");
    assert_eq!(beta["Port"], b.serf);

    // alpha's catalog registers beta with a passing serfHealth; a session on beta holds a lock.
    eventually(Duration::from_secs(10), "beta in alpha's catalog", || {
        a.get("/v1/health/node/beta")
            .json()
            .as_array()
            .is_some_and(|checks| checks.iter().any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing"))
    });
    let session = a.put("/v1/session/create", br#"{"Node": "beta", "LockDelay": "0s"}"#).json()["ID"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(a.put(&format!("/v1/kv/leader?acquire={session}"), b"beta").text().trim(), "true");

    // beta dies: alpha's gossip declares it failed, serfHealth goes critical, the session is
    // invalidated and the lock released.
    let index = a.get("/v1/kv/leader").index();
    // SIGKILL, by PID.
    sigkill(b.pid());
    assert!(b.exited_within(Duration::from_secs(5)));
    let port = a.http;
    let waited = std::thread::spawn(move || {
        common::request(port, "GET", &format!("/v1/kv/leader?index={index}&wait=60s"), b"", &[])
    });
    let answer = waited.join().unwrap();
    assert!(answer.json()[0].get("Session").is_none(), "lock released: {}", answer.text());
    assert_eq!(a.get(&format!("/v1/session/info/{session}")).json(), serde_json::json!([]));
    let checks = a.get("/v1/health/node/beta").json();
    assert_eq!(checks[0]["Status"], "critical");
    let members = a.get("/v1/agent/members").json();
    assert_eq!(members.as_array().unwrap().iter().find(|m| m["Name"] == "beta").unwrap()["Status"], 4);

    // force-leave: beta is marked left, and deregistered.
    assert_eq!(a.put("/v1/agent/force-leave/beta", b"").status, 200);
    eventually(Duration::from_secs(10), "beta deregistered", || a.get("/v1/catalog/node/beta").json().is_null());
}

fn sigkill(pid: u32) {
    let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill");
    assert!(status.success());
}

#[test]
fn client_commands() {
    let mut agent = Agent::start("cli", &[]);
    let (ok, out, err) = agent.cli(&["kv", "put", "-flags", "3", "app/x", "hello"]);
    assert!(ok, "{err}");
    assert_eq!(out, "Success! Data written to: app/x\n");
    assert_eq!(agent.cli(&["kv", "get", "app/x"]).1, "hello\n");
    let index = agent.get("/v1/kv/app/x").json()[0]["ModifyIndex"].as_u64().unwrap();
    let (ok, _, err) = agent.cli(&["kv", "put", "-cas", "-modify-index", &(index + 5).to_string(), "app/x", "no"]);
    assert!(!ok && err.contains("CAS failed"), "{err}");
    assert!(agent.cli(&["kv", "put", "-cas", "-modify-index", &index.to_string(), "app/x", "yes"]).0);
    agent.cli(&["kv", "put", "-flags", "5", "app/y/z", "deep"]);
    assert_eq!(agent.cli(&["kv", "get", "-recurse", "app"]).1, "app/x:yes\napp/y/z:deep\n");
    assert_eq!(agent.cli(&["kv", "get", "-keys", "app/"]).1, "app/x\napp/y/\n");
    let (ok, _, err) = agent.cli(&["kv", "get", "nothing"]);
    assert!(!ok && err.contains("No key exists at: nothing"), "{err}");

    let export = agent.cli(&["kv", "export", "app/"]).1;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &export).unwrap();
    let (ok, out, err) = agent.cli(&["kv", "import", "-prefix", "copy/", &format!("@{}", file.path().display())]);
    assert!(ok, "{err}");
    assert_eq!(out, "Imported: copy/app/x\nImported: copy/app/y/z\n");
    assert_eq!(agent.get("/v1/kv/copy/app/y/z").json()[0]["Flags"], 5);

    assert_eq!(agent.cli(&["kv", "delete", "-recurse", "app"]).1, "Success! Deleted keys with prefix: app\n");
    assert_eq!(agent.get("/v1/kv/app?recurse").status, 404);

    let (ok, out, _) = agent.cli(&["members"]);
    assert!(ok && out.contains("cli") && out.contains("alive") && out.contains("server"), "{out}");
    let (ok, out, _) = agent.cli(&["info"]);
    assert!(ok && out.contains("leader = true"), "{out}");
    let (ok, out, _) = agent.cli(&["version"]);
    assert!(ok && out.starts_with("consul-lite v"), "{out}");

    let (ok, out, _) = agent.cli(&["leave"]);
    assert!(ok && out.contains("Graceful leave complete"), "{out}");
    assert!(agent.exited_within(Duration::from_secs(10)), "the agent stops after leave");
}

#[test]
fn bad_flags_are_named_with_the_rule() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_consul-lite")).args(args).output().expect("run");
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (ok, err) = run(&["agent", "-dev", "-http-port", "70000"]);
    assert!(!ok && err.contains("-http-port: \"70000\" must be a whole number from 1 to 65535"), "{err}");
    let (ok, err) = run(&["agent", "-dev", "-datacenter", "d c"]);
    assert!(!ok && err.contains("-datacenter"), "{err}");
    let (ok, err) = run(&["agent", "-server", "-bootstrap-expect", "3"]);
    assert!(!ok && err.contains("-server needs -data-dir"), "{err}");
    // A client agent (no -server) holds no Raft state: -bootstrap-expect is refused.
    let (ok, err) = run(&["agent", "-node", "c1", "-bootstrap-expect", "3"]);
    assert!(!ok && err.contains("-bootstrap-expect (bootstrap_expect) needs -server"), "{err}");
    let (ok, err) = run(&["agent", "-dev", "-config-file", "/nonexistent/c.json"]);
    assert!(!ok && err.contains("/nonexistent/c.json"), "{err}");
}
