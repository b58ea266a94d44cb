//! Event handlers: Serf's environment and stdin, filters, and SIGHUP reloading handlers, tags
//! and the log level.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{stdout, wait_for, Agent, AgentSpec};

/// A handler script that records its environment and stdin in `out/EVENT.N` (atomically).
fn recorder(dir: &Path, out: &Path) -> String {
    std::fs::create_dir_all(out).unwrap();
    let script = dir.join("record.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nf=\"{}/$SERF_EVENT.$(date +%s%N).$$\"\n{{ env | grep '^SERF_' | sort; echo '--stdin--'; cat; }} > \"$f.tmp\" && mv \"$f.tmp\" \"$f.txt\"\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script.display().to_string()
}

/// The records of `event` written so far.
fn records(out: &Path, event: &str) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(&format!("{event}.")) && name.ends_with(".txt")
        })
        .collect();
    names.sort();
    names.iter().map(|path| std::fs::read_to_string(path).unwrap()).collect()
}

#[test]
fn handlers_get_serfs_environment_and_stdin() {
    let dir = common::tempdir();
    let out = dir.path().join("out");
    let script = recorder(dir.path(), &out);
    let a = Agent::start(
        dir.path(),
        AgentSpec::new("h0").args([
            "-tag",
            "role=web",
            "-tag",
            "dc=east-1",
            "-event-handler",
            &format!("member-join,member-leave,user:deploy={script}"),
        ]),
    );
    let mut b = Agent::start(
        dir.path(),
        AgentSpec::new("h1").args(["-tag", "role=db", "-tag", "rack=r2", "-join", &a.spec.gossip_addr()]),
    );

    let join = wait_for("a member-join record naming h1", Duration::from_secs(15), || {
        records(&out, "member-join").into_iter().find(|record| record.contains("h1\t"))
    });
    assert!(join.contains("SERF_EVENT=member-join\n"), "{join}");
    assert!(join.contains("SERF_SELF_NAME=h0\n"), "{join}");
    assert!(join.contains("SERF_SELF_ROLE=web\n"), "{join}");
    assert!(join.contains("SERF_TAG_DC=east-1\n"), "{join}");
    assert!(join.contains("SERF_TAG_ROLE=web\n"), "{join}");
    assert!(join.contains("h1\t127.0.0.1\tdb\track=r2,role=db\n"), "{join}");

    // A matching user event: name, Lamport time, payload on stdin. Another name: no run.
    let output = b.cli(&["event", "-coalesce=false", "deploy", "v1.2.3"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let output = b.cli(&["event", "-coalesce=false", "other", "x"]);
    assert!(output.status.success());
    let user = wait_for("the deploy handler", Duration::from_secs(15), || records(&out, "user").into_iter().next());
    assert!(user.contains("SERF_EVENT=user\n"), "{user}");
    assert!(user.contains("SERF_USER_EVENT=deploy\n"), "{user}");
    assert!(user.contains("SERF_USER_LTIME="), "{user}");
    assert!(user.ends_with("--stdin--\nv1.2.3"), "{user:?}");

    // h1 leaves: member-leave with its line.
    b.signal("INT");
    assert_eq!(b.wait_exit(Duration::from_secs(15)), Some(0));
    let leave =
        wait_for("a member-leave record", Duration::from_secs(15), || records(&out, "member-leave").into_iter().next());
    assert!(leave.contains("h1\t127.0.0.1\tdb\t"), "{leave}");

    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(records(&out, "user").len(), 1, "only the deploy event matched");

    // Handler runs are counted in the metrics.
    let (_, metrics) = a.http("GET", "/metrics", "");
    assert!(metrics.contains("serf_handler_runs_total{event=\"member-join\",result=\"ok\"}"), "{metrics}");
}

#[test]
fn sighup_reloads_handlers_tags_and_log_level() {
    let dir = common::tempdir();
    let out = dir.path().join("out");
    let script = recorder(dir.path(), &out);
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "log_level = \"info\"\n[tags]\nversion = \"1\"\n").unwrap();
    let a = Agent::start(dir.path(), AgentSpec::new("r0").args(["-config-file", config.to_str().unwrap()]));
    assert_eq!(a.get_json("/v1/tags")["tags"]["version"], "1");

    let output = a.cli(&["event", "-coalesce=false", "deploy", "before"]);
    assert!(output.status.success());
    std::fs::write(
        &config,
        format!("log_level = \"debug\"\nevent_handlers = [\"user:deploy={script}\"]\n[tags]\nversion = \"2\"\n"),
    )
    .unwrap();
    a.signal("HUP");
    wait_for("the reloaded tags", Duration::from_secs(10), || {
        (a.get_json("/v1/tags")["tags"]["version"] == "2").then_some(())
    });
    let output = a.cli(&["event", "-coalesce=false", "deploy", "after"]);
    assert!(output.status.success());
    let user = wait_for("the reloaded handler", Duration::from_secs(15), || records(&out, "user").into_iter().next());
    assert!(user.ends_with("after"), "{user}");
    assert!(a.log_text().contains("configuration reloaded"), "{}", a.log_text());

    // A broken config on SIGHUP is refused and the agent keeps running with the old one.
    std::fs::write(&config, "bogus_key = 1\n").unwrap();
    a.signal("HUP");
    wait_for("the reload error in the log", Duration::from_secs(10), || {
        a.log_text().contains("reload failed").then_some(())
    });
    let output = a.cli(&["members"]);
    assert!(output.status.success() && stdout(&output).contains("r0"));
    assert_eq!(a.get_json("/v1/tags")["tags"]["version"], "2");
}
