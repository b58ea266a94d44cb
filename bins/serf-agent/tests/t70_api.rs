//! The client commands and RPC routes not covered elsewhere: join, members filters, tags, info,
//! rtt, monitor, primary hooks.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{stderr, stdout, wait_for, Agent, AgentSpec, BIN};

#[test]
fn join_members_tags_info_rtt() {
    let dir = common::tempdir();
    let a = Agent::start(dir.path(), AgentSpec::new("api0").args(["-tag", "role=web", "-tag", "dc=east"]));
    let b = Agent::start(dir.path(), AgentSpec::new("api1").args(["-tag", "role=db"]));

    // `join` through the RPC.
    let output = b.cli(&["join", &a.spec.gossip_addr()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("Successfully joined cluster by contacting 1 nodes."), "{}", stdout(&output));
    wait_for("2 members", Duration::from_secs(10), || (a.members().len() == 2).then_some(()));

    // Filters are regular expressions on the whole value.
    let names = |args: &[&str]| -> Vec<String> {
        let output = a.cli(&[&["members", "-format", "json"], args].concat());
        assert!(output.status.success(), "{}", stderr(&output));
        let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        json["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names(&["-tag", "role=db"]), ["api1"]);
    assert_eq!(names(&["-tag", "role=d"]), Vec::<String>::new());
    assert_eq!(names(&["-name", "api.*", "-status", "alive"]), ["api0", "api1"]);
    assert_eq!(names(&["-status", "failed"]), Vec::<String>::new());
    let output = a.cli(&["members", "-detailed"]);
    assert!(stdout(&output).contains("protocol=1/1/1"), "{}", stdout(&output));

    // Tags: set and delete, seen by the other node.
    let output = a.cli(&["tags", "-set", "version=2", "-delete", "dc"]);
    assert!(output.status.success(), "{}", stderr(&output));
    wait_for("the new tags on api1", Duration::from_secs(10), || {
        let members = b.get_json("/v1/members?name=api0");
        let tags = &members["members"][0]["tags"];
        (tags["version"] == "2" && tags.get("dc").is_none()).then_some(())
    });

    // info, text and JSON.
    let output = a.cli(&["info"]);
    assert!(stdout(&output).contains("agent:\n\tadvertise_addr = "), "{}", stdout(&output));
    let output = a.cli(&["info", "-format", "json"]);
    let info: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(info["agent"]["name"], "api0");
    assert_eq!(info["serf"]["members"], 2);

    // rtt from coordinates (after a few probes).
    let rtt = wait_for("coordinates", Duration::from_secs(20), || {
        let output = a.cli(&["rtt", "api1"]);
        output.status.success().then(|| stdout(&output))
    });
    assert!(rtt.contains("Estimated api0 <-> api1 rtt:"), "{rtt}");
    wait_for("api0's coordinate on api1", Duration::from_secs(20), || {
        b.cli(&["rtt", "api0", "api1"]).status.success().then_some(())
    });
    let output = a.cli(&["rtt", "nobody"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no member named \"nobody\""), "{}", stderr(&output));

    // Nodes that take no part in the election say so.
    let output = a.cli(&["primary", "-format", "json"]);
    let view: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!((view["enabled"].clone(), view["role"].clone()), (false.into(), "ineligible".into()), "{view}");
}

#[test]
fn monitor_streams_the_log() {
    let dir = common::tempdir();
    let a = Agent::start(dir.path(), AgentSpec::new("mon0").args(["-log-level", "warn"]));
    let mut monitor = Command::new(BIN)
        .args(["monitor", "-log-level", "debug", "-rpc-addr", &a.spec.rpc_addr()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(monitor.stdout.take().unwrap());
    let trigger = std::thread::spawn({
        let rpc = a.spec.rpc_addr();
        move || {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(300));
                let _ = common::try_http(&rpc, "POST", "/v1/tags", r#"{"set":{"poke":"1"}}"#, None);
            }
        }
    });
    // The agent logs at warn on stderr, but the monitor asked for debug and gets it (the RPC
    // server logs each request at debug).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let line = loop {
        let line = rx.recv_timeout(Duration::from_secs(15)).expect("a DEBUG line from monitor");
        if line.contains("[DEBUG]") {
            break line;
        }
    };
    assert!(line.contains("Z [DEBUG] serf_agent::rpc::server: rpc request"), "{line}");
    let _ = monitor.kill();
    let _ = monitor.wait();
    trigger.join().unwrap();
    assert!(!a.log_text().contains(" DEBUG "), "the agent's own log stays at warn");
}

#[test]
fn primary_hooks_run_with_their_environment() {
    let dir = common::tempdir();
    let out = dir.path().join("acquired");
    let hook = format!(
        "env | grep -E '^(PRIMARY_NODE|NEW_PRIMARY|ROLE_TO)=' | sort > {0}.tmp && mv {0}.tmp {0}",
        out.display()
    );
    let a = Agent::start(
        dir.path(),
        AgentSpec::new("p0").with_http().args(["-tag", "role=primary", "-primary-acquire", &hook]),
    );
    let text = wait_for("the acquire hook", Duration::from_secs(20), || std::fs::read_to_string(&out).ok());
    assert_eq!(text, "NEW_PRIMARY=p0\nPRIMARY_NODE=p0\nROLE_TO=primary\n");
    let view = a.get_json("/v1/primary");
    assert_eq!((view["primary"].clone(), view["role"].clone()), ("p0".into(), "primary".into()), "{view}");
    let (status, body) = common::http(&format!("127.0.0.1:{}", a.spec.http.unwrap()), "GET", "/", "", None);
    assert_eq!((status, body.trim()), (200, "primary: p0"));
    // The election's tags cannot be set by hand.
    let output = a.cli(&["tags", "-set", "role=standby"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("managed by the primary election"), "{}", stderr(&output));
}
