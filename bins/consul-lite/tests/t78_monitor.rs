//! `consul-lite monitor` and `/v1/agent/monitor`: a line logged after the stream connected
//! (a second agent joining) reaches it; bad levels and missing tokens are refused.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Agent;

/// A `consul-lite monitor` process, killed by its PID on drop; its stdout lines on a channel.
struct Monitor {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Monitor {
    fn start(agent: &Agent, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .arg("monitor")
            .args(args)
            .env("CONSUL_HTTP_ADDR", agent.addr())
            .env_remove("CONSUL_HTTP_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start consul-lite monitor");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The first line that `matches`, within `within`; panics with the lines seen otherwise.
    fn wait_for(&self, within: Duration, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line {what} within {within:?}; saw:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn monitor_shows_a_member_joining_after_it_connected() {
    let a = Agent::start("mon-a", &[]);
    let monitor = Monitor::start(&a, &["-log-level", "debug"]);
    // The agent logs the stream's opening once it is subscribed: from here on, nothing is missed.
    let opened = monitor
        .wait_for(Duration::from_secs(10), "saying the stream opened", |line| line.contains("monitor: stream opened"));
    assert!(opened.contains("[DEBUG]"), "hclog-style text line: {opened}");
    let join = format!("127.0.0.1:{}", a.serf);
    let b = Agent::start("mon-b", &["-join", &join]);
    // At info level, with the event name a Consul operator greps for.
    let joined = monitor.wait_for(Duration::from_secs(10), "naming the member that joined", |line| {
        line.contains(&format!("EventMemberJoin: {}", b.name))
    });
    assert!(joined.starts_with("20"), "a line starts with its time: {joined}");
    assert!(joined.contains("[INFO]"), "membership events are logged at info: {joined}");
}

#[test]
fn monitor_endpoint_refuses_bad_levels_and_missing_tokens() {
    let a = Agent::start("mon-c", &["-acl-master-token", "secret"]);
    let refused = a.get("/v1/agent/monitor");
    assert_eq!(refused.status, 403, "{}", refused.text());
    let bad = a.get("/v1/agent/monitor?loglevel=loud&token=secret");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.text(), "Unknown log level: loud\n");
    let wrong_method = a.put("/v1/agent/monitor?token=secret", b"");
    assert_eq!(wrong_method.status, 405);
    // The command reports the agent's refusal and exits non-zero.
    let (ok, _, stderr) = a.cli(&["monitor", "-log-level", "loud", "-token", "secret"]);
    assert!(!ok);
    assert!(stderr.contains("Unknown log level: loud"), "{stderr}");
}
