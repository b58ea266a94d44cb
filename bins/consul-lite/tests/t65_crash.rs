//! Crash safety of `-server` processes: SIGKILL in the middle of a burst of writes (the
//! leader alone, then all three servers at once), restart from the same `-data-dir`: every
//! acknowledged write is there and the servers start clean. Then a follower's Raft log is
//! damaged while it is down (its tail cut off, then bytes overwritten): the server refuses to
//! start with an error naming the file, or starts and catches up with every acknowledged
//! write; it never starts and serves a state missing acknowledged writes.

mod common;
#[path = "common/servers.rs"]
mod servers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use servers::{agreed_leader, call, eventually, Server, WAIT};

/// Writers through every running server until `stop`; the acknowledged (key, value)s.
fn burst(ports: Vec<u16>, writers: u32, stop: Arc<AtomicBool>, tag: &'static str) -> Vec<(String, String)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (ports, stop, acked) = (ports.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let port = ports[(n as usize + w as usize) % ports.len()];
                    let (key, value) = (format!("{tag}/{w}/{n}"), format!("{w}-{n}"));
                    let answer = call(port, "PUT", &format!("/v1/kv/{key}"), value.as_bytes(), Duration::from_secs(10));
                    if answer.is_ok_and(|r| r.status == 200 && r.text().trim() == "true") {
                        acked.lock().unwrap().push((key, value));
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("writer");
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

fn all_on(server: &Server, acked: &[(String, String)]) -> Option<()> {
    acked.iter().all(|(key, value)| server.stale_value(key).as_deref() == Some(value)).then_some(())
}

fn raft_log(server: &Server) -> std::path::PathBuf {
    server.dir.join("raft").join("raft.redb")
}

#[test]
fn sigkill_mid_burst_loses_no_acknowledged_write_and_a_damaged_log_is_never_served() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = servers::cluster("c", 3, root.path());
    let mut acked = Vec::new();

    // 1. The leader is killed mid-burst (writes through all three) and restarted.
    let leader = eventually(WAIT, "a leader", || agreed_leader(&cluster));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (ports, stop) = (cluster.iter().map(|s| s.http).collect(), stop.clone());
        std::thread::spawn(move || burst(ports, 4, stop, "leader-kill"))
    };
    std::thread::sleep(Duration::from_millis(1500));
    cluster[leader].kill();
    std::thread::sleep(Duration::from_millis(500));
    cluster[leader].spawn();
    eventually(WAIT, "a leader after the restart", || agreed_leader(&cluster));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let first = writer.join().unwrap();
    assert!(!first.is_empty());
    eprintln!("leader killed mid-burst: {} acknowledged writes", first.len());
    acked.extend(first);
    for server in &cluster {
        eventually(WAIT, "every acknowledged write on every server", || all_on(server, &acked));
    }

    // 2. All three are killed at once mid-burst, and restarted from their data dirs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (ports, stop) = (cluster.iter().map(|s| s.http).collect(), stop.clone());
        std::thread::spawn(move || burst(ports, 4, stop, "all-kill"))
    };
    std::thread::sleep(Duration::from_millis(1500));
    for server in &mut cluster {
        server.kill();
    }
    stop.store(true, Ordering::Relaxed);
    let second = writer.join().unwrap();
    assert!(!second.is_empty());
    eprintln!("all killed mid-burst: {} acknowledged writes", second.len());
    acked.extend(second);
    let restarted = Instant::now();
    for server in &mut cluster {
        server.spawn();
    }
    eventually(WAIT, "a leader after restarting all", || agreed_leader(&cluster));
    eprintln!("all three restarted: a leader after {:?}", restarted.elapsed());
    for server in &cluster {
        eventually(WAIT, "every acknowledged write after restarting all", || all_on(server, &acked));
        assert!(
            !server.log_text().contains("damaged") && !server.log_text().contains("panicked"),
            "{} did not start clean: {}",
            server.name,
            server.log_text()
        );
    }

    // 3. A follower's log loses its tail while it is down.
    let leader = eventually(WAIT, "a leader", || agreed_leader(&cluster));
    let victim = (leader + 1) % 3;
    for i in 0..50 {
        let (key, value) = (format!("before-damage/{i}"), i.to_string());
        let r = call(cluster[leader].http, "PUT", &format!("/v1/kv/{key}"), value.as_bytes(), Duration::from_secs(10));
        assert!(r.is_ok_and(|r| r.status == 200), "write {key}");
        acked.push((key, value));
    }
    eventually(WAIT, "the victim caught up", || all_on(&cluster[victim], &acked));
    cluster[victim].kill();
    let path = raft_log(&cluster[victim]);
    type Damage = fn(&[u8]) -> Vec<u8>;
    let damages: [(&str, Damage); 3] = [
        ("tail cut off", |bytes| bytes[..bytes.len() * 3 / 4].to_vec()),
        ("last 8 KiB overwritten", |bytes| {
            let mut bytes = bytes.to_vec();
            let from = bytes.len().saturating_sub(8192);
            bytes[from..].iter_mut().for_each(|b| *b = 0xA5);
            bytes
        }),
        ("a page in the middle overwritten", |bytes| {
            let mut bytes = bytes.to_vec();
            let from = bytes.len() / 2;
            bytes[from..from + 4096].iter_mut().for_each(|b| *b = 0x5A);
            bytes
        }),
    ];
    for (what, damage) in damages {
        let intact = std::fs::read(&path).unwrap();
        std::fs::write(&path, damage(&intact)).unwrap();
        match cluster[victim].spawn_expecting_exit(Duration::from_secs(5)) {
            Some((status, stderr)) => {
                assert!(!status.success(), "{what}: exited successfully");
                assert!(stderr.contains("raft.redb"), "{what}: the error does not name the file: {stderr}");
                eprintln!("{what}: refused: {}", stderr.lines().last().unwrap_or_default());
                // Put the intact file back (the refused start changed nothing that matters).
                std::fs::write(&path, &intact).unwrap();
            }
            None => {
                // It started: then it must hold (or catch up to) every acknowledged write.
                cluster[victim].spawn();
                eventually(WAIT, "a started server with a repaired log catches up", || {
                    all_on(&cluster[victim], &acked)
                });
                eprintln!("{what}: started and caught up");
                cluster[victim].kill();
            }
        }
    }

    // The untouched log starts again and the cluster is whole.
    cluster[victim].spawn();
    eventually(WAIT, "the victim back with every write", || all_on(&cluster[victim], &acked));
}
