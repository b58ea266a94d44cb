//! Bad input gets a clear message and a non-zero exit (CLI) or a 4xx with a JSON error (RPC),
//! and the agent keeps running and loses nothing.

mod common;

use common::{run, stderr, stdout, Agent, AgentSpec};

#[test]
fn version_keygen_and_help() {
    let output = run(&["version"]);
    assert!(output.status.success());
    assert!(stdout(&output).starts_with("serf-agent v"), "{}", stdout(&output));

    let output = run(&["keygen"]);
    assert!(output.status.success());
    let key = stdout(&output);
    assert_eq!(key.trim().len(), 44, "a base64 32-byte key: {key}");

    let output = run(&["agent", "-h"]);
    assert!(output.status.success());
    assert!(stdout(&output).contains("--event-handler"), "{}", stdout(&output));
}

#[test]
fn unknown_flags_and_bad_values_exit_non_zero_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["agent", "-bogus-flag"], "--bogus-flag"),
        (&["members", "-rpc-addr", "not-an-address"], "\"not-an-address\""),
        (&["agent", "-tag", "novalue"], "\"novalue\" is not KEY=VALUE"),
        (&["agent", "-bind", "999.1.1.1"], "bind (-bind): \"999.1.1.1\""),
        (&["agent", "-join", "bad host"], "join (-join): \"bad host\""),
        (&["agent", "-rpc-addr", "localhost"], "rpc_addr (-rpc-addr): \"localhost\""),
        (&["agent", "-encrypt", "c2hvcnQ="], "encrypt_key (-encrypt): not a valid key"),
        (&["agent", "-profile", "mars"], "profile (-profile): \"mars\""),
        (&["agent", "-event-handler", "member-jion=true"], "\"member-jion\""),
        (&["agent", "-retry-interval", "5 parsecs"], "retry_interval (-retry-interval)"),
        (&["keys", "-install", "!!"], ""),
        (&["query", "-timeout", "soon", "q"], "soon"),
    ];
    for (args, expected) in cases {
        let output = run(args);
        assert!(!output.status.success(), "{args:?} succeeded: {}", stdout(&output));
        let text = stderr(&output);
        assert!(text.contains(expected), "{args:?}: {text:?} lacks {expected:?}");
    }
    let big_tag = format!("big={}", "x".repeat(600));
    let output = run(&["agent", "-tag", &big_tag]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("tags (-tag)"), "{}", stderr(&output));
}

#[test]
fn bad_config_files_name_the_file_and_key() {
    let dir = common::tempdir();
    let path = dir.path().join("agent.json");
    std::fs::write(&path, r#"{"node_name": "a", "bnid": "127.0.0.1"}"#).unwrap();
    let output = run(&["agent", "-config-file", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("agent.json") && text.contains("bnid"), "{text}");

    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "log_level = \"loud\"\n").unwrap();
    let output = run(&["agent", "-config-file", path.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("log_level (-log-level): \"loud\""), "{}", stderr(&output));
}

#[test]
fn client_without_agent_says_where_it_looked() {
    let port = common::free_port();
    let output = run(&["members", "-rpc-addr", &format!("127.0.0.1:{port}")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(&format!("cannot reach the agent at 127.0.0.1:{port}")), "{}", stderr(&output));
}

#[test]
fn rpc_errors_are_json_and_the_agent_keeps_running() {
    let dir = common::tempdir();
    let agent = Agent::start(dir.path(), AgentSpec::new("bad0").args(["-rpc-auth", "s3cret"]));
    let addr = agent.spec.rpc_addr();

    // No token, wrong token.
    let (status, body) = common::http(&addr, "GET", "/v1/members", "", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.starts_with("{\"error\":"), "{body}");
    let (status, body) = common::http(&addr, "GET", "/v1/members", "", Some("wrong"));
    assert_eq!(status, 403, "{body}");
    let output = run(&["members", "-rpc-addr", &addr, "-rpc-auth", "wrong"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("403"), "{}", stderr(&output));

    // Unknown route, wrong method, bad JSON, oversized body.
    let (status, body) = agent.http("GET", "/v1/nope", "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let (status, _) = agent.http("DELETE", "/v1/members", "");
    assert_eq!(status, 405);
    let (status, body) = agent.http("POST", "/v1/event", "{not json");
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        agent.http("POST", "/v1/event", &format!("{{\"name\":\"x\",\"payload\":\"{}\"}}", "y".repeat(70_000)));
    assert_eq!(status, 413, "{body}");

    // An oversized event: 413 from the RPC, exit 1 and the limit from the CLI.
    let payload = "p".repeat(600);
    let (status, body) = agent.http("POST", "/v1/event", &format!("{{\"name\":\"big\",\"payload\":\"{payload}\"}}"));
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("larger than the limit"), "{body}");
    let output = agent.cli(&["event", "big", &payload]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("413"), "{}", stderr(&output));

    // Oversized tags, a bad key, a bad regexp.
    let output = agent.cli(&["tags", "-set", &format!("big={}", "x".repeat(600))]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let (status, body) = agent.http("POST", "/v1/keys/install", r#"{"key":"not-a-key"}"#);
    assert_eq!(status, 400, "{body}");
    let (status, body) = agent.http("GET", "/v1/members?name=%28", "");
    assert_eq!(status, 400, "{body}");

    // Still running, nothing lost.
    let (status, body) = agent.http("GET", "/v1/members", "");
    assert_eq!(status, 200, "{body}");
    let output = agent.cli(&["members"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("bad0"), "{}", stdout(&output));
    let output = agent.cli(&["tags", "-set", "ok=1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(agent.get_json("/v1/tags")["tags"]["ok"], "1");
}

#[test]
fn join_failure_at_start_exits_non_zero() {
    let dir = common::tempdir();
    let unused = common::free_port();
    let mut agent = Agent::spawn(dir.path(), AgentSpec::new("lonely").args(["-join", &format!("127.0.0.1:{unused}")]));
    let code = agent.wait_exit(std::time::Duration::from_secs(30));
    assert_eq!(code, Some(1));
    assert!(agent.log_text().contains("join (-join): could not join"), "{}", agent.log_text());
}

#[test]
fn retry_join_gives_up_after_retry_max() {
    let dir = common::tempdir();
    let unused = common::free_port();
    let mut agent = Agent::spawn(
        dir.path(),
        AgentSpec::new("retrying").args([
            "-retry-join",
            &format!("127.0.0.1:{unused}"),
            "-retry-interval",
            "100ms",
            "-retry-max",
            "2",
        ]),
    );
    let code = agent.wait_exit(std::time::Duration::from_secs(30));
    assert_eq!(code, Some(1));
    assert!(agent.log_text().contains("retry_join (-retry-join): could not join any of"), "{}", agent.log_text());
    assert!(agent.log_text().contains("in 2 attempt(s)"), "{}", agent.log_text());
}
