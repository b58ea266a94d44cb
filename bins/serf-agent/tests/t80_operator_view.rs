//! Issue 12: what an operator reads. Membership and user events in the log and in `monitor` at
//! the default level, with the names Serf operators grep for; `members` after a failover shows one
//! primary at most and hides the election's claim tags.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{stdout, wait_for, Agent, AgentSpec, BIN};

/// `serf-agent monitor` against `agent`, its output in a file; killed by PID on drop.
struct Monitor {
    child: Child,
    out: std::path::PathBuf,
}

impl Monitor {
    fn start(dir: &std::path::Path, agent: &Agent) -> Self {
        let out = dir.join("monitor.out");
        let file = std::fs::File::create(&out).expect("create the monitor output");
        let child = Command::new(BIN)
            .args(["monitor", "-rpc-addr", &agent.spec.rpc_addr()])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("start serf-agent monitor");
        Self { child, out }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn member_and_user_events_are_logged_and_monitored_at_the_default_level() {
    let dir = common::tempdir();
    // The default level (the test helper starts agents at debug; the last flag wins).
    let a = Agent::start(dir.path(), AgentSpec::new("watcher").args(["-log-level", "info"]));
    let monitor = Monitor::start(dir.path(), &a);
    // The monitor is attached before anything happens: it has printed its first line by then.
    std::thread::sleep(Duration::from_millis(500));
    let mut b = Agent::start(dir.path(), AgentSpec::new("victim").args(["-join", &a.spec.gossip_addr()]));
    wait_for("victim to join", Duration::from_secs(10), || (a.members().len() == 2).then_some(()));

    let output = a.cli(&["event", "deploy", "v2"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    b.kill();

    let expected = [
        "EventMemberJoin: victim 127.0.0.1",
        "Received event: user-event: deploy",
        "EventMemberFailed: victim 127.0.0.1",
    ];
    let seen = wait_for("the events in monitor's output", Duration::from_secs(20), || {
        let text = monitor.text();
        expected.iter().all(|line| text.contains(line)).then_some(text)
    });
    // One line each, at info level, as Serf prints them.
    for line in expected {
        assert_eq!(seen.lines().filter(|l| l.contains(line)).count(), 1, "{line} in:\n{seen}");
        assert!(seen.lines().any(|l| l.contains(line) && l.contains("[INFO]")), "{line} at info in:\n{seen}");
    }
    let log = a.log_text();
    for line in expected {
        assert!(log.contains(line), "{line} missing from the agent's log:\n{log}");
    }
}

#[test]
fn members_after_a_failover_show_one_primary_and_no_claim_tags() {
    let dir = common::tempdir();
    let mut nodes = common::cluster(dir.path(), "fo", 3, |index, spec| {
        spec.with_http().args(["-tag", if index == 0 { "role=primary" } else { "role=standby" }])
    });
    let primary_of = |agent: &Agent| -> Option<String> {
        let view = agent.get_json("/v1/primary");
        view["primary"].as_str().map(str::to_owned)
    };
    wait_for("fo0 to hold the primary role", Duration::from_secs(20), || {
        (primary_of(&nodes[1]).as_deref() == Some("fo0")).then_some(())
    });
    nodes[0].kill();
    wait_for("another node to take the role", Duration::from_secs(20), || {
        primary_of(&nodes[1]).filter(|primary| primary != "fo0").map(|_| ())
    });
    wait_for("fo0 seen failed", Duration::from_secs(20), || {
        (nodes[1].status_of("fo0").as_deref() == Some("failed")).then_some(())
    });

    let output = nodes[1].cli(&["members"]);
    let text = stdout(&output);
    let rows_claiming =
        text.lines().filter(|line| line.split([',', ' ', '\t']).any(|tag| tag == "role=primary")).count();
    assert!(rows_claiming <= 1, "{rows_claiming} rows say role=primary:\n{text}");
    let failed_row = text.lines().find(|line| line.starts_with("fo0")).expect("a row for fo0");
    assert!(failed_row.contains("role=was-primary"), "{failed_row}");
    assert!(!text.contains("role_since") && !text.contains("role_pref"), "claim tags shown:\n{text}");

    let detailed = stdout(&nodes[1].cli(&["members", "-detailed"]));
    assert!(detailed.contains("role_since="), "claim tags with -detailed:\n{detailed}");
    assert!(detailed.contains(" generation="), "{detailed}");
}
