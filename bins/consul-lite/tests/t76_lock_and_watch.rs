//! `consul-lite lock` and `consul-lite watch` against a `-dev` agent: the child runs while the
//! lock is held and is stopped when the session is destroyed; the child's exit code comes back;
//! `-timeout`; a watch handler gets the JSON on stdin on every change.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Agent;

/// A command started in the background, killed (by its PID) on drop.
struct Background(Child);

impl Background {
    fn start(agent: &Agent, args: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
            .args(args)
            .env("CONSUL_HTTP_ADDR", agent.addr())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start consul-lite");
        Self(child)
    }

    /// Waits (bounded) for the exit; the exit code and stderr.
    fn exit_within(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        while self.0.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "still running after {within:?}");
            std::thread::sleep(Duration::from_millis(25));
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = self.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        (self.0.try_wait().expect("try_wait").and_then(|status| status.code()), stderr)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(agent: &Agent, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_consul-lite"))
        .args(args)
        .env("CONSUL_HTTP_ADDR", agent.addr())
        .output()
        .expect("run consul-lite")
}

fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The session holding `key`, once one does.
fn holder(agent: &Agent, key: &str) -> String {
    eventually("the lock held", || {
        let response = agent.get(&format!("/v1/kv/{key}"));
        (response.status == 200).then(|| response.json()[0]["Session"].as_str().map(str::to_owned)).flatten()
    })
}

fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn lock_runs_the_child_and_stops_it_when_the_session_is_destroyed() {
    let agent = Agent::start("lock1", &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("pid");
    let child = format!("echo $$ > {0}.tmp; mv {0}.tmp {0}; exec sleep 60", pid_file.display());
    let lock = Background::start(&agent, &["lock", "-verbose", "svc/db", &child]);
    let session = holder(&agent, "svc/db/.lock");
    let pid = eventually("the child started", || Some(read(&pid_file).trim().to_owned()).filter(|p| !p.is_empty()));
    assert!(alive(&pid));
    // The session is bound to the agent's serfHealth, with Consul lock's 15 s TTL.
    let info = agent.get(&format!("/v1/session/info/{session}")).json();
    assert_eq!(info[0]["Name"], "Consul lock");
    assert_eq!(info[0]["TTL"], "15s");
    assert_eq!(info[0]["NodeChecks"], serde_json::json!(["serfHealth"]));

    // Destroying the session loses the lock: the child is stopped, the command exits 1.
    let destroyed = Instant::now();
    assert_eq!(agent.put(&format!("/v1/session/destroy/{session}"), b"").text().trim(), "true");
    let (code, stderr) = lock.exit_within(Duration::from_secs(15));
    eprintln!("lock lost → child stopped and lock exited after {:?}", destroyed.elapsed());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("Lock lost, killing child"), "{stderr}");
    assert!(!alive(&pid), "the child {pid} still runs");
}

#[test]
fn lock_returns_the_childs_exit_code_times_out_and_refuses_a_semaphore() {
    let agent = Agent::start("lock2", &[]);
    let output = run(&agent, &["lock", "svc/a", "test \"$CONSUL_LOCK_HELD\" = true && exit 3"]);
    assert_eq!(output.status.code(), Some(3), "{}", String::from_utf8_lossy(&output.stderr));
    // Released and cleaned up.
    assert_eq!(agent.get("/v1/kv/svc/a/.lock").status, 404);

    // While another holds the lock, -timeout gives up.
    let _holder = Background::start(&agent, &["lock", "svc/b", "sleep 60"]);
    holder(&agent, "svc/b/.lock");
    let started = Instant::now();
    let output = run(&agent, &["lock", "-timeout", "1s", "svc/b", "echo ran"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("timeout during lock acquisition"));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("ran"));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    let output = run(&agent, &["lock", "-n", "3", "svc/c", "true"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("semaphore (-n > 1) is not implemented"));
}

#[test]
fn watch_handlers_get_the_json_on_stdin_and_without_one_it_is_printed_once() {
    let agent = Agent::start("watch1", &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let handler = format!("cat >> {0}; echo \"index=$CONSUL_INDEX\" >> {0}", out.display());
    let _watch = Background::start(&agent, &["watch", "-type", "key", "-key", "w/k", &handler]);
    // The first run: the key does not exist yet.
    eventually("the first handler run", || read(&out).contains("null").then_some(()));
    assert_eq!(agent.put("/v1/kv/w/k", b"v1").text().trim(), "true");
    eventually("the handler run for v1", || read(&out).contains("\"djE=\"").then_some(()));
    assert_eq!(agent.put("/v1/kv/w/k", b"v2").text().trim(), "true");
    eventually("the handler run for v2", || read(&out).contains("\"djI=\"").then_some(()));
    let text = read(&out);
    let runs = text.matches("index=").count();
    assert_eq!(runs, 3, "one run per change: {text}");

    // Without a handler: the JSON once, then exit 0.
    let output = run(&agent, &["watch", "-type", "keyprefix", "-prefix", "w/"]);
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json[0]["Key"], "w/k");
    let output = run(&agent, &["watch", "-type", "services"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert!(json.get("consul").is_some(), "{json}");

    let output = run(&agent, &["watch", "-type", "events"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Unsupported watch type: events"));
}
