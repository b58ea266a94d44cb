//! A history test: three `-server` processes, four clients doing `?consistent` reads, PUTs
//! and CAS PUTs on three keys through every server while the leader is SIGKILLed and
//! restarted from its data dir three times. Afterwards every acknowledged write is on every
//! server, and each key's history of consistent reads, writes and CAS writes is
//! linearizable (checked by `common/linearizable.rs`, whose own tests show it refuses
//! histories that are not). Writes whose outcome the client could not learn are "maybe"
//! operations, as in Knossos.

mod common;
#[path = "common/linearizable.rs"]
mod linearizable;
#[path = "common/servers.rs"]
mod servers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use linearizable::{Op, Timed};
use servers::{agreed_leader, call, eventually, Failure, WAIT};

const KEYS: [&str; 3] = ["h/a", "h/b", "h/c"];
const CLIENTS: u32 = 4;
/// Longer than a write may wait for a leader (7 s) and an election.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A small deterministic generator (xorshift), seeded per client.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A `?consistent` read: (value, ModifyIndex), `None` when absent; `Err` when it failed.
fn consistent_read(port: u16, key: &str) -> Result<Option<(u32, u64)>, ()> {
    let response = call(port, "GET", &format!("/v1/kv/{key}?consistent"), b"", TIMEOUT).map_err(|_| ())?;
    match response.status {
        404 => Ok(None),
        200 => {
            let rows = response.json();
            let row = &rows[0];
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(row["Value"].as_str().expect("a value"))
                .expect("base64");
            let value = String::from_utf8(bytes).unwrap().parse().expect("a number this test wrote");
            Ok(Some((value, row["ModifyIndex"].as_u64().expect("ModifyIndex"))))
        }
        _ => Err(()),
    }
}

/// What a write's answer says: applied or not (`Some`), unknown (`None`), or nothing to
/// record (certainly not applied).
enum Outcome {
    Known(bool),
    Unknown,
    NotApplied,
}

fn write(port: u16, path: &str, value: u32) -> Outcome {
    match call(port, "PUT", path, value.to_string().as_bytes(), TIMEOUT) {
        Err(Failure::NotSent) => Outcome::NotApplied,
        Err(Failure::Unknown) => Outcome::Unknown,
        Ok(r) if r.status == 200 && r.text().trim() == "true" => Outcome::Known(true),
        Ok(r) if r.status == 200 && r.text().trim() == "false" => Outcome::Known(false),
        // Nothing written: the server found no leader within its hold time.
        Ok(r) if r.status == 500 && r.text().contains("No cluster leader") => Outcome::NotApplied,
        // "may or may not have been applied"
        Ok(r) if r.status == 500 => Outcome::Unknown,
        Ok(r) => panic!("unexpected answer to PUT {path}: {} {}", r.status, r.text()),
    }
}

struct Shared {
    ports: Vec<u16>,
    histories: HashMap<&'static str, Mutex<Vec<Timed>>>,
    /// Unique keys whose PUT was acknowledged: (key, value).
    durable: Mutex<Vec<(String, String)>>,
    stop: AtomicBool,
}

impl Shared {
    fn record(&self, key: &str, op: Op, call: Instant, ret: Option<Instant>) {
        self.histories[key].lock().unwrap().push(Timed { op, call, ret });
    }
}

fn client(id: u32, shared: Arc<Shared>) -> usize {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (u64::from(id + 1) * 0x1234_5678_9ABC));
    let mut next_value = id * 1_000_000;
    let mut ops = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let port = shared.ports[rng.below(shared.ports.len() as u64) as usize];
        let key = KEYS[rng.below(KEYS.len() as u64) as usize];
        ops += 1;
        next_value += 1;
        let value = next_value;
        match rng.below(10) {
            // A consistent read.
            0..=3 => {
                let call_at = Instant::now();
                if let Ok(read) = consistent_read(port, key) {
                    shared.record(key, Op::Read(read.map(|(v, _)| v)), call_at, Some(Instant::now()));
                }
            }
            // A plain PUT.
            4..=5 => {
                let call_at = Instant::now();
                match write(port, &format!("/v1/kv/{key}"), value) {
                    Outcome::Known(applied) => {
                        shared.record(key, Op::Write { value, applied: Some(applied) }, call_at, Some(Instant::now()))
                    }
                    Outcome::Unknown => shared.record(key, Op::Write { value, applied: None }, call_at, None),
                    Outcome::NotApplied => {}
                }
            }
            // Read, then CAS on the ModifyIndex read (0: only if absent).
            6..=8 => {
                let call_at = Instant::now();
                let Ok(read) = consistent_read(port, key) else { continue };
                shared.record(key, Op::Read(read.map(|(v, _)| v)), call_at, Some(Instant::now()));
                let (expected, index) = match read {
                    Some((v, index)) => (Some(v), index),
                    None => (None, 0),
                };
                let call_at = Instant::now();
                match write(port, &format!("/v1/kv/{key}?cas={index}"), value) {
                    Outcome::Known(applied) => shared.record(
                        key,
                        Op::Cas { expected, value, applied: Some(applied) },
                        call_at,
                        Some(Instant::now()),
                    ),
                    Outcome::Unknown => shared.record(key, Op::Cas { expected, value, applied: None }, call_at, None),
                    Outcome::NotApplied => {}
                }
            }
            // A write to a key of its own, to check afterwards that it is on every server.
            _ => {
                let key = format!("d/{id}/{value}");
                if let Outcome::Known(true) = write(port, &format!("/v1/kv/{key}"), value) {
                    shared.durable.lock().unwrap().push((key, value.to_string()));
                }
            }
        }
    }
    ops
}

#[test]
fn consistent_reads_and_cas_writes_stay_linearizable_through_leader_kills() {
    let root = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut cluster = servers::cluster("h", 3, root.path());
    let shared = Arc::new(Shared {
        ports: cluster.iter().map(|s| s.http).collect(),
        histories: KEYS.iter().map(|k| (*k, Mutex::new(Vec::new()))).collect(),
        durable: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let shared = shared.clone();
            std::thread::spawn(move || client(id, shared))
        })
        .collect();

    // The nemesis: three times, let the clients run, SIGKILL the leader, keep it down
    // through the election, restart it from its data dir and wait for the cluster to agree.
    for round in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        let leader = eventually(WAIT, "a leader all agree on", || agreed_leader(&cluster));
        let killed_at = Instant::now();
        cluster[leader].kill();
        let survivors_agree = |cluster: &[servers::Server]| agreed_leader(cluster).filter(|l| *l != leader);
        eventually(WAIT, "a new leader", || survivors_agree(&cluster));
        eprintln!("round {round}: killed {}; new leader after {:?}", cluster[leader].name, killed_at.elapsed());
        std::thread::sleep(Duration::from_secs(1));
        cluster[leader].spawn();
    }
    std::thread::sleep(Duration::from_secs(2));
    shared.stop.store(true, Ordering::Relaxed);
    let ops: usize = clients.into_iter().map(|c| c.join().expect("client")).sum();
    eventually(WAIT, "a leader after the last restart", || agreed_leader(&cluster));

    // A last consistent read of each key through every server ends each history.
    for key in KEYS {
        for server in &cluster {
            let call_at = Instant::now();
            let read = eventually(WAIT, "a final consistent read", || consistent_read(server.http, key).ok());
            shared.record(key, Op::Read(read.map(|(v, _)| v)), call_at, Some(Instant::now()));
        }
    }

    // Linearizable, key by key.
    for key in KEYS {
        let history = shared.histories[key].lock().unwrap().clone();
        let count = |pred: fn(&Op) -> bool| history.iter().filter(|t| pred(&t.op)).count();
        let maybe = history.iter().filter(|t| t.ret.is_none()).count();
        eprintln!(
            "{key}: {} operations ({} reads, {} writes, {} CAS, {maybe} with unknown outcome)",
            history.len(),
            count(|op| matches!(op, Op::Read(_))),
            count(|op| matches!(op, Op::Write { .. })),
            count(|op| matches!(op, Op::Cas { .. })),
        );
        let checked_at = Instant::now();
        if let Err(error) = linearizable::check(None, &history) {
            let prefix = &error.longest_prefix;
            panic!(
                "{key}: not linearizable: the longest order found has {} operations, ending {:?}; none of {:?} \
                 can follow it",
                prefix.len(),
                &prefix[prefix.len().saturating_sub(8)..],
                error.stuck
            );
        }
        eprintln!("{key}: linearizable (checked in {:?})", checked_at.elapsed());
        assert!(count(|op| matches!(op, Op::Cas { applied: Some(true), .. })) > 0, "{key}: no CAS succeeded");
    }

    // Every acknowledged write is on every server.
    let durable = shared.durable.lock().unwrap().clone();
    assert!(!durable.is_empty());
    for server in &cluster {
        eventually(WAIT, "every acknowledged write on every server", || {
            durable.iter().all(|(key, value)| server.stale_value(key).as_deref() == Some(value)).then_some(())
        });
    }
    eprintln!("{ops} operations, {} acknowledged unique writes, in {:?}", durable.len(), started.elapsed());
    for server in &mut cluster {
        server.kill();
    }
}
