//! The acceptance scenario of the issue, with real processes: 5 agents; `members` on node4 lists
//! 5 alive; the primary web service answers node0; `kill -9` node0; within seconds node4 shows
//! node0 failed and the web service answers node1; node0 restarted from its snapshot rejoins as
//! a standby.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, http, stdout, wait_for, Agent, AgentSpec};

fn web(agent: &AgentSpec) -> (u16, String) {
    let addr = format!("127.0.0.1:{}", agent.http.expect("primary http"));
    common::try_http(&addr, "GET", "/", "", None).unwrap_or((0, String::new()))
}

#[test]
fn primary_fails_over_and_the_old_primary_returns_as_standby() {
    let dir = common::tempdir();
    let snapshots = dir.path().to_owned();
    let mut agents = cluster(dir.path(), "node", 5, |index, spec| {
        let role = if index == 0 { "primary" } else { "standby" };
        let snapshot = snapshots.join(format!("node{index}.snapshot"));
        spec.with_http().args([
            "-tag".to_owned(),
            format!("role={role}"),
            "-snapshot".to_owned(),
            snapshot.display().to_string(),
        ])
    });

    // `serf-agent members` on node4 lists 5 alive.
    let output = agents[4].cli(&["members"]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert_eq!(text.lines().filter(|line| line.contains(" alive ")).count(), 5, "{text}");

    // The primary web service: node0 answers 200, the others 503 naming node0.
    wait_for("node0 to be primary", Duration::from_secs(20), || {
        let (status, body) = web(&agents[0].spec);
        (status == 200 && body.contains("primary: node0")).then_some(())
    });
    wait_for("every node to see node0 as primary", Duration::from_secs(10), || {
        agents[1..]
            .iter()
            .all(|agent| {
                let (status, body) = web(&agent.spec);
                status == 503 && body.contains("node0")
            })
            .then_some(())
    });
    let output = agents[4].cli(&["primary"]);
    assert!(stdout(&output).contains("primary: node0"), "{}", stdout(&output));

    // kill -9 node0.
    let killed = Instant::now();
    agents[0].kill();

    // Within seconds node4 shows node0 failed, and node1 answers as primary.
    wait_for("node4 to show node0 failed", Duration::from_secs(15), || {
        (agents[4].status_of("node0").as_deref() == Some("failed")).then_some(())
    });
    let detected = killed.elapsed();
    wait_for("node1 to serve as primary", Duration::from_secs(10), || {
        let (status, body) = web(&agents[1].spec);
        (status == 200 && body.contains("primary: node1")).then_some(())
    });
    let failed_over = killed.elapsed();
    eprintln!("node0 failed on node4 after {detected:?}; node1 primary after {failed_over:?}");
    assert!(failed_over < Duration::from_secs(15), "{failed_over:?}");
    let output = agents[4].cli(&["members"]);
    assert!(
        stdout(&output).lines().any(|line| line.starts_with("node0") && line.contains(" failed ")),
        "{}",
        stdout(&output)
    );
    for agent in &agents[2..] {
        wait_for("the standbys to point at node1", Duration::from_secs(10), || {
            let (status, body) = web(&agent.spec);
            (status == 503 && body.contains("node1")).then_some(())
        });
    }

    // node0 restarted from its snapshot (no -join) rejoins, as a standby.
    let spec = AgentSpec { args: agents[0].spec.args.clone(), ..agents[0].spec.clone() };
    assert!(!spec.args.iter().any(|arg| arg == "-join"), "node0 never had -join");
    agents[0] = Agent::start(dir.path(), spec);
    wait_for("node4 to see node0 alive again", Duration::from_secs(20), || {
        (agents[4].status_of("node0").as_deref() == Some("alive")).then_some(())
    });
    wait_for("node0 to see node1 as primary", Duration::from_secs(10), || {
        let view = agents[0].get_json("/v1/primary");
        (view["primary"] == "node1" && view["role"] == "standby").then_some(())
    });
    let (status, body) = web(&agents[0].spec);
    assert_eq!((status, body.contains("node1")), (503, true), "{body}");
    let (status, body) = web(&agents[1].spec);
    assert_eq!(status, 200, "{body}");
    let tags = &agents[4].get_json("/v1/members")["members"];
    let node0 = tags.as_array().unwrap().iter().find(|m| m["name"] == "node0").unwrap();
    assert_eq!(node0["tags"]["role"], "standby", "{node0}");

    // Metrics on the RPC address, in Prometheus text format, once node1 too has heard that node0
    // is back (node4 may hear it first).
    let metrics = wait_for("node1 to count 5 alive members in /metrics", Duration::from_secs(10), || {
        let (status, metrics) = http(&agents[1].spec.rpc_addr(), "GET", "/metrics", "", None);
        (status == 200 && metrics.contains("serf_members{state=\"alive\"} 5")).then_some(metrics)
    });
    assert!(metrics.contains("serf_primary_is_primary 1"), "{metrics}");
    assert!(metrics.contains("# TYPE serf_probes_total counter"), "{metrics}");
}
