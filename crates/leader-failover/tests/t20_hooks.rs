//! Role-change hooks run real scripts through `/bin/sh`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use leader_failover::{HookError, HookKind, HookRunner, Hooks, Role, RoleChange};

fn addr() -> SocketAddr {
    ([10, 0, 0, 7], 7946).into()
}

fn acquired() -> RoleChange {
    RoleChange {
        from: Role::Standby,
        to: Role::Primary,
        primary: Some("node7".into()),
        previous_primary: Some("node1".into()),
        fencing_token: None,
    }
}

fn released() -> RoleChange {
    RoleChange {
        from: Role::Primary,
        to: Role::Standby,
        primary: Some("node1".into()),
        previous_primary: Some("node7".into()),
        fencing_token: None,
    }
}

/// A script that writes its environment to the file named by its first argument.
fn env_dumper(dir: &Path) -> String {
    let script = dir.join("dump-env.sh");
    std::fs::write(&script, "#!/bin/sh\nenv > \"$1\"\necho dumped\n").unwrap();
    format!("sh {} {}", script.display(), dir.join("env.txt").display())
}

fn read_env(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dir.join("env.txt"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn acquire_runs_with_the_documented_environment() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = Hooks { acquire: Some(env_dumper(dir.path())), release: None };
    let outcome = hooks.run(&acquired(), "node7", addr()).await.unwrap().unwrap();
    assert_eq!(outcome.kind, HookKind::Acquire);
    assert!(outcome.status.success());
    assert_eq!(outcome.stdout, "dumped");

    let env = read_env(dir.path());
    for prefix in ["", "SERF_"] {
        let var = |name: &str| env.get(&format!("{prefix}{name}")).map(String::as_str);
        assert_eq!(var("PRIMARY_NODE"), Some("node7"));
        assert_eq!(var("PRIMARY_ADDR"), Some("10.0.0.7:7946"));
        assert_eq!(var("PRIMARY_IP"), Some("10.0.0.7"));
        assert_eq!(var("PREVIOUS_PRIMARY"), Some("node1"));
        assert_eq!(var("NEW_PRIMARY"), Some("node7"));
        assert_eq!(var("ROLE_FROM"), Some("standby"));
        assert_eq!(var("ROLE_TO"), Some("primary"));
        assert_eq!(var("ROLE_HOOK"), Some("acquire"));
    }
}

#[tokio::test]
async fn release_runs_on_leaving_primary_and_nothing_runs_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = Hooks { acquire: Some("exit 9".into()), release: Some(env_dumper(dir.path())) };
    let outcome = hooks.run(&released(), "node7", addr()).await.unwrap().unwrap();
    assert_eq!(outcome.kind, HookKind::Release);
    let env = read_env(dir.path());
    assert_eq!(env.get("ROLE_FROM").map(String::as_str), Some("primary"));
    assert_eq!(env.get("ROLE_TO").map(String::as_str), Some("standby"));
    assert_eq!(env.get("NEW_PRIMARY").map(String::as_str), Some("node1"));

    let unrelated = RoleChange {
        from: Role::Standby,
        to: Role::Ineligible,
        primary: None,
        previous_primary: None,
        fencing_token: None,
    };
    assert!(hooks.run(&unrelated, "node7", addr()).await.unwrap().is_none());
    let unconfigured = Hooks::default();
    assert!(unconfigured.run(&acquired(), "node7", addr()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_failing_script_reports_its_status_and_stderr() {
    let hooks = Hooks { acquire: Some("echo 'no such device' >&2; exit 3".into()), release: None };
    let err = hooks.run(&acquired(), "node7", addr()).await.unwrap_err();
    let HookError::Failed { kind, status, stderr, .. } = &err else { panic!("unexpected {err:?}") };
    assert_eq!((*kind, status.code(), stderr.as_str()), (HookKind::Acquire, Some(3), "no such device"));
    assert_eq!(err.to_string(), "acquire hook: exited with exit status: 3: no such device");
}

#[tokio::test]
async fn a_script_over_its_timeout_is_killed() {
    let hooks = Hooks { acquire: Some("sleep 30".into()), release: None };
    let started = Instant::now();
    let err = hooks.run_with_timeout(&acquired(), "node7", addr(), Duration::from_millis(200)).await.unwrap_err();
    assert!(matches!(err, HookError::TimedOut { kind: HookKind::Acquire, .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn the_runner_does_not_block_and_keeps_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.txt");
    let hooks = Hooks {
        acquire: Some(format!("sleep 0.3; echo acquire-$PRIMARY_NODE >> {}", log.display())),
        release: Some(format!("echo release-$ROLE_TO >> {}", log.display())),
    };
    let runner = HookRunner::spawn(hooks, "node7", addr());
    let submitted = Instant::now();
    let first = runner.submit(acquired());
    let second = runner.submit(released());
    assert!(submitted.elapsed() < Duration::from_millis(250), "submit must not wait for the script");

    assert_eq!(second.wait().await.unwrap().unwrap().kind, HookKind::Release);
    assert_eq!(first.wait().await.unwrap().unwrap().kind, HookKind::Acquire);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "acquire-node7\nrelease-standby\n");

    // A dropped ticket still runs; finish() waits for it.
    drop(runner.submit(acquired()));
    runner.finish().await;
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);
}
