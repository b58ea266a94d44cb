//! Leaving, failing, forcing out, pruning, rejoining from a snapshot, and the signals.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, stderr, stdout, wait_for, Agent, AgentSpec};

#[test]
fn force_leave_and_prune() {
    let dir = common::tempdir();
    let mut agents = cluster(dir.path(), "f", 4, |_, spec| spec);
    agents[2].kill();
    agents[3].kill();
    for name in ["f2", "f3"] {
        wait_for(&format!("{name} failed"), Duration::from_secs(20), || {
            (agents[0].status_of(name).as_deref() == Some("failed")).then_some(())
        });
    }
    // force-leave: failed → left, everywhere (by gossip, or at worst by the next push-pull:
    // with only one other live member, the gossip of the verdict may all go to the dead ones).
    let output = agents[0].cli(&["force-leave", "f2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    for agent in &agents[..2] {
        wait_for("f2 left", Duration::from_secs(25), || {
            (agent.status_of("f2").as_deref() == Some("left")).then_some(())
        });
    }
    // force-leave -prune: forgotten at once by the agent that ran it, and by every other agent
    // through the gossiped prune intent (their own reap timeout is 24 h).
    let output = agents[1].cli(&["force-leave", "-prune", "f3"]);
    assert!(output.status.success(), "{}", stderr(&output));
    for agent in &agents[..2] {
        wait_for("f3 pruned", Duration::from_secs(10), || agent.status_of("f3").is_none().then_some(()));
    }
    // Unknown member: 404, exit 1.
    let output = agents[0].cli(&["force-leave", "nobody"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no member named \"nobody\""), "{}", stderr(&output));
}

#[test]
fn restarted_agent_rejoins_from_its_snapshot() {
    let dir = common::tempdir();
    let snapshot = dir.path().join("s2.snapshot");
    let mut agents = cluster(dir.path(), "s", 3, |index, spec| {
        if index == 2 {
            spec.args(["-snapshot".to_owned(), snapshot.display().to_string()])
        } else {
            spec
        }
    });
    // The snapshot is flushed every half second or so: give it time before the crash.
    std::thread::sleep(Duration::from_secs(2));
    agents[2].kill();
    wait_for("s2 failed", Duration::from_secs(20), || {
        (agents[0].status_of("s2").as_deref() == Some("failed")).then_some(())
    });
    // Same name and ports, no -join: the snapshot brings it back.
    let spec = AgentSpec { args: vec!["-snapshot".into(), snapshot.display().to_string()], ..agents[2].spec.clone() };
    agents[2] = Agent::start(dir.path(), spec);
    for agent in &agents {
        wait_for("3 alive after the rejoin", Duration::from_secs(20), || {
            (agent.members().iter().filter(|(_, status)| status == "alive").count() == 3).then_some(())
        });
    }

    // After a graceful leave the snapshot does not rejoin (Serf's default)...
    agents[2].signal("INT");
    assert_eq!(agents[2].wait_exit(Duration::from_secs(15)), Some(0));
    wait_for("s2 left", Duration::from_secs(10), || {
        (agents[0].status_of("s2").as_deref() == Some("left")).then_some(())
    });
    let spec = AgentSpec { args: vec!["-snapshot".into(), snapshot.display().to_string()], ..agents[2].spec.clone() };
    agents[2] = Agent::start(dir.path(), spec.clone());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(agents[2].members().len(), 1, "{:?}", agents[2].members());
    agents[2].kill();
    // ... unless -rejoin.
    let spec = AgentSpec { args: [spec.args, vec!["-rejoin".into()]].concat(), ..spec };
    agents[2] = Agent::start(dir.path(), spec);
    wait_for("s2 back with -rejoin", Duration::from_secs(20), || {
        (agents[0].status_of("s2").as_deref() == Some("alive")).then_some(())
    });
}

#[test]
fn signals_and_leave() {
    let dir = common::tempdir();
    let mut agents =
        cluster(dir.path(), "g", 5, |index, spec| if index == 3 { spec.arg("-leave-on-terminate") } else { spec });

    // `serf-agent leave`: leaves and exits.
    let output = agents[4].cli(&["leave"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("Graceful leave complete"));
    assert_eq!(agents[4].wait_exit(Duration::from_secs(15)), Some(0));
    wait_for("g4 left", Duration::from_secs(10), || {
        (agents[0].status_of("g4").as_deref() == Some("left")).then_some(())
    });

    // SIGINT: graceful leave, exit 0; the others see `left`.
    agents[1].signal("INT");
    assert_eq!(agents[1].wait_exit(Duration::from_secs(15)), Some(0));
    wait_for("g1 left", Duration::from_secs(10), || {
        (agents[0].status_of("g1").as_deref() == Some("left")).then_some(())
    });

    // SIGTERM with leave_on_terminate: leaves.
    agents[3].signal("TERM");
    assert_eq!(agents[3].wait_exit(Duration::from_secs(15)), Some(0));
    wait_for("g3 left", Duration::from_secs(10), || {
        (agents[0].status_of("g3").as_deref() == Some("left")).then_some(())
    });

    // SIGTERM without leave_on_terminate: exits at once; the others see a failure.
    let sent = Instant::now();
    agents[2].signal("TERM");
    assert_eq!(agents[2].wait_exit(Duration::from_secs(10)), Some(0));
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
    wait_for("g2 failed", Duration::from_secs(20), || {
        (agents[0].status_of("g2").as_deref() == Some("failed")).then_some(())
    });
    assert!(agents[0].is_running());
}
