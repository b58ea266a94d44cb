//! A flood of 2,000 service registrations (each with a TTL check) on one agent does not stall
//! its gossip or its API: another agent of the pool sees it alive throughout, and its
//! `/v1/agent/members` keeps answering within a generous bound.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Agent;
use serde_json::json;

const SERVICES: usize = 2_000;
const WRITERS: usize = 8;
/// Generous: a members answer slower than this means the agent stalled.
const ANSWER_BOUND: Duration = Duration::from_secs(2);

#[test]
fn a_registration_flood_does_not_stall_gossip_or_the_api() {
    let a = Agent::start("t57-a", &[]);
    let join = format!("127.0.0.1:{}", a.serf);
    let b = Agent::start("t57-b", &["-join", &join]);
    let alive_on = |observer: &Agent| {
        observer
            .get("/v1/agent/members")
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Name"] == "t57-a" && m["Status"] == 1)
    };
    assert!(alive_on(&b), "b sees a before the flood");

    let done = Arc::new(AtomicBool::new(false));
    let registered = Arc::new(AtomicUsize::new(0));
    let (a_http, b_http) = (a.http, b.http);
    let monitor = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let (mut samples, mut slowest) = (0, Duration::ZERO);
            while !done.load(Ordering::SeqCst) {
                let started = Instant::now();
                let members = common::request(a_http, "GET", "/v1/agent/members", b"", &[]);
                slowest = slowest.max(started.elapsed());
                assert_eq!(members.status, 200);
                let seen = common::request(b_http, "GET", "/v1/agent/members", b"", &[]).json();
                let a_row = seen.as_array().unwrap().iter().find(|m| m["Name"] == "t57-a").cloned();
                assert_eq!(a_row.as_ref().map(|m| m["Status"].clone()), Some(json!(1)), "b sees a alive: {seen}");
                samples += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (samples, slowest)
        })
    };
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let registered = Arc::clone(&registered);
            std::thread::spawn(move || {
                for i in (writer..SERVICES).step_by(WRITERS) {
                    let body = json!({"Name": format!("svc-{}", i % 50), "ID": format!("svc-{i}"), "Port": 10_000 + i,
                                      "Check": {"TTL": "5m", "Status": "passing"}});
                    let reply =
                        common::request(a_http, "PUT", "/v1/agent/service/register", body.to_string().as_bytes(), &[]);
                    assert_eq!(reply.status, 200, "{reply:?}");
                    registered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("a writer failed");
    }
    let flood = started.elapsed();
    // Watch a little longer: a stall would show as a late suspicion.
    std::thread::sleep(Duration::from_secs(2));
    done.store(true, Ordering::SeqCst);
    let (samples, slowest) = monitor.join().expect("the monitor saw a stall");
    eprintln!("{SERVICES} registrations in {flood:?}; {samples} member samples, slowest members answer {slowest:?}");
    assert_eq!(registered.load(Ordering::Relaxed), SERVICES);
    assert!(samples >= 3, "the monitor ran");
    assert!(slowest < ANSWER_BOUND, "members answered in {slowest:?}");
    let services = a.get("/v1/agent/services").json();
    assert_eq!(services.as_object().unwrap().len(), SERVICES);
    assert_eq!(a.get("/v1/catalog/service/svc-7").json().as_array().unwrap().len(), SERVICES / 50);
    assert!(alive_on(&b), "b sees a after the flood");
}
