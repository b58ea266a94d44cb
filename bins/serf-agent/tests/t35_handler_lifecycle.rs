//! Handlers that cannot wedge the agent: hung event handlers do not starve queries, a query
//! handler's background child does not hold its answer, a hung handler is killed at its timeout
//! (and counted), and no handler process outlives the agent. Plus the config errors of issue 11.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{stderr, stdout, wait_for, Agent, AgentSpec};

/// Whether process `pid` runs: `/proc/PID` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// A handler script that starts a child, records `SHELL_PID CHILD_PID` in `DIR/pids.$$`
/// (atomically), and waits for the child: a handler that hangs, with a process under it.
fn hanging_script(dir: &Path) -> String {
    let script = dir.join("hang.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep 600 &\necho \"$$ $!\" > \"{0}/pids.$$.tmp\" && mv \"{0}/pids.$$.tmp\" \"{0}/pids.$$\"\nwait\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script.display().to_string()
}

/// The PIDs the hanging handlers recorded so far.
fn recorded_pids(dir: &Path) -> Vec<u32> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with("pids.") && !name.ends_with(".tmp")
        })
        .flat_map(|entry| {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            text.split_whitespace().map(|pid| pid.parse::<u32>().unwrap()).collect::<Vec<_>>()
        })
        .collect()
}

/// Wait (bounded) until none of `pids` runs.
fn wait_all_gone(pids: &[u32], bound: Duration) {
    wait_for(&format!("handler processes {pids:?} to be gone"), bound, || {
        pids.iter().all(|&pid| !alive(pid)).then_some(())
    });
}

/// Kill what a failed test leaves running (by PID, never by name).
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            if alive(*pid) {
                let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            }
        }
    }
}

/// One sample of the agent's metrics, or 0 when it is absent.
fn metric(agent: &Agent, sample: &str) -> f64 {
    let (status, text) = agent.http("GET", "/metrics", "");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[test]
fn four_hung_member_handlers_do_not_starve_a_query() {
    let dir = common::tempdir();
    let script = hanging_script(dir.path());
    // Four handlers of the node's own member-join that never end fill the default concurrency (4).
    let mut spec = AgentSpec::new("starve0");
    for _ in 0..4 {
        spec = spec.arg("-event-handler").arg(format!("member-join={script}"));
    }
    let agent = Agent::start(dir.path(), spec.arg("-event-handler").arg("query:ping=echo pong"));
    wait_for("four hung handlers running", Duration::from_secs(15), || {
        (metric(&agent, "serf_handler_running") == 4.0 && recorded_pids(dir.path()).len() == 8).then_some(())
    });
    let _cleanup = KillOnDrop(recorded_pids(dir.path()));

    let output = agent.cli(&["query", "-timeout", "3s", "-format", "json", "ping"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON output");
    assert!(json["responses"]["starve0"].as_str().is_some_and(|text| text.starts_with("pong")), "{json}");
}

#[test]
fn a_query_handler_with_a_background_child_answers_at_once() {
    let dir = common::tempdir();
    let pid_file = dir.path().join("child.pid");
    let handler = format!("query:bg=echo answer; sleep 60 & echo $! > {}", pid_file.display());
    let agent = Agent::start(dir.path(), AgentSpec::new("bg0").arg("-event-handler").arg(handler));

    // Follow the query's NDJSON stream and time the response.
    let mut stream = TcpStream::connect(agent.spec.rpc_addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = r#"{"name":"bg","timeout":"10s"}"#;
    let asked = Instant::now();
    write!(
        stream,
        "POST /v1/query HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = None;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if line.contains("\"type\":\"response\"") {
            answer = Some((asked.elapsed(), line));
            break;
        }
        if line.contains("\"type\":\"done\"") {
            break;
        }
    }
    let (after, line) = answer.expect("a response before the query's deadline");
    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(record["payload"].as_str().is_some_and(|text| text.starts_with("answer")), "{line}");
    assert!(after < Duration::from_secs(4), "answered after {after:?}, not at once");

    // The child it left behind does not outlive the handler.
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let _cleanup = KillOnDrop(vec![pid]);
    wait_all_gone(&[pid], Duration::from_secs(10));
}

#[test]
fn no_handler_process_remains_after_sigterm() {
    let dir = common::tempdir();
    let script = hanging_script(dir.path());
    let mut agent =
        Agent::start(dir.path(), AgentSpec::new("term0").arg("-event-handler").arg(format!("member-join={script}")));
    let pids = wait_for("the hung handler's PIDs", Duration::from_secs(15), || {
        let pids = recorded_pids(dir.path());
        (pids.len() == 2).then_some(pids)
    });
    let _cleanup = KillOnDrop(pids.clone());
    assert!(pids.iter().all(|&pid| alive(pid)), "{pids:?}");

    agent.signal("TERM");
    assert_eq!(agent.wait_exit(Duration::from_secs(15)), Some(0));
    wait_all_gone(&pids, Duration::from_secs(10));
}

#[test]
fn a_hung_handler_is_killed_at_its_timeout_and_counted() {
    let dir = common::tempdir();
    let script = hanging_script(dir.path());
    let agent = Agent::start(
        dir.path(),
        AgentSpec::new("timeout0").args(["-handler-timeout", "1s", "-event-handler", &format!("member-join={script}")]),
    );
    let pids = wait_for("the hung handler's PIDs", Duration::from_secs(15), || {
        let pids = recorded_pids(dir.path());
        (pids.len() == 2).then_some(pids)
    });
    let _cleanup = KillOnDrop(pids.clone());
    wait_all_gone(&pids, Duration::from_secs(10));
    wait_for("the timeout in the metrics", Duration::from_secs(10), || {
        (metric(&agent, "serf_handler_timeouts_total{event=\"member-join\"}") == 1.0
            && metric(&agent, "serf_handler_kills_total{reason=\"timeout\"}") == 1.0
            && metric(&agent, "serf_handler_runs_total{event=\"member-join\",result=\"timeout\"}") == 1.0)
            .then_some(())
    });
    assert_eq!(metric(&agent, "serf_handler_running"), 0.0);
}

/// Run `serf-agent agent ARGS` (gossip and RPC on free loopback ports) expecting it to refuse
/// its configuration: its exit code and stderr. An agent that starts anyway is killed (by PID)
/// after a bound, and the test fails.
fn refused_agent(args: &[&str]) -> (Option<i32>, String) {
    let spec = AgentSpec::new("refused");
    let mut child = std::process::Command::new(common::BIN)
        .args(["agent", "-node", "refused", "-bind", &spec.gossip_addr(), "-rpc-addr", &spec.rpc_addr()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start serf-agent");
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serf-agent agent {args:?} started instead of refusing its configuration");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (output.status.code(), stderr(&output))
}

#[test]
fn config_errors_name_the_directory_the_flag_and_the_rule() {
    let (code, text) = refused_agent(&["-config-dir", "/nonexistent"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.starts_with("error: config dir /nonexistent: "), "{text}");

    let (code, text) = refused_agent(&["-retry-interval", "-5s"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("retry_interval (-retry-interval): \"-5s\" is invalid: must not be negative"), "{text}");

    let (code, text) = refused_agent(&["-user-event-size-limit", "100000"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("user_event_size_limit (-user-event-size-limit)") && text.contains("at most"), "{text}");

    // The snapshot's cause is printed once.
    let dir = common::tempdir();
    let snapshot = dir.path().join("missing-dir").join("snapshot");
    let (code, text) = refused_agent(&["-snapshot", snapshot.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");
}
