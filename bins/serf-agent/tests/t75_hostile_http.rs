//! Issue 11, items 1 and 2: clients that connect and send nothing cannot lock out the RPC API or
//! the primary web service. Real agent, real sockets on 127.0.0.1; bounds in seconds.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{http, wait_for, Agent, AgentSpec};

/// Opens `count` connections that never send a byte; all within `bound`.
fn idle_connections(addr: &str, count: usize, bound: Duration) -> Vec<TcpStream> {
    let started = Instant::now();
    let addr = addr.parse().expect("an IP:PORT");
    let mut idle = Vec::with_capacity(count);
    for index in 0..count {
        let left = bound.checked_sub(started.elapsed()).unwrap_or_else(|| {
            panic!("only {index} of {count} idle connections opened within {bound:?}: the server stopped accepting")
        });
        idle.push(TcpStream::connect_timeout(&addr, left).expect("connect"));
    }
    idle
}

/// `http` within `bound`, timed.
fn prompt(addr: &str, path: &str, token: Option<&str>, bound: Duration) -> (u16, String) {
    let started = Instant::now();
    let answer = http(addr, "GET", path, "", token);
    assert!(started.elapsed() < bound, "GET {path} took {:?} (bound {bound:?})", started.elapsed());
    answer
}

#[test]
fn a_thousand_idle_connections_lock_out_neither_the_rpc_nor_the_primary() {
    // The test holds 2,000 sockets of its own.
    http_serve::raise_fd_limit();
    let dir = common::tempdir();
    let agent = Agent::start(
        dir.path(),
        AgentSpec::new("hostile0").with_http().args(["-tag", "role=primary", "-rpc-auth", "s3cret"]),
    );
    let primary = format!("127.0.0.1:{}", agent.spec.http.expect("-primary-http"));
    wait_for("the node to claim the primary role", Duration::from_secs(20), || {
        (common::try_http(&primary, "GET", "/", "", None).ok()?.0 == 200).then_some(())
    });

    // Opened within a few seconds (the servers' header read timeouts are 10 s and more), so
    // every one of them is still open when the requests below arrive.
    let started = Instant::now();
    let _rpc_idle = idle_connections(&agent.spec.rpc_addr(), 1000, Duration::from_secs(5));
    let _primary_idle = idle_connections(&primary, 1000, Duration::from_secs(5));

    let bound = Duration::from_secs(2);
    assert_eq!(prompt(&agent.spec.rpc_addr(), "/v1/health", None, bound).0, 200);
    // The token is checked as soon as the request head is read.
    assert_eq!(prompt(&agent.spec.rpc_addr(), "/v1/members", None, bound).0, 401);
    assert_eq!(prompt(&agent.spec.rpc_addr(), "/v1/members", Some("s3cret"), bound).0, 200);
    assert_eq!(prompt(&primary, "/", None, bound), (200, "primary: hostile0\n".to_owned()));
    assert!(started.elapsed() < Duration::from_secs(9), "the idle connections may have been closed meanwhile");

    // The serving layer's counters are in the metrics.
    let (status, metrics) = prompt(&agent.spec.rpc_addr(), "/metrics", Some("s3cret"), bound);
    assert_eq!(status, 200, "{metrics}");
    let open: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("serf_rpc_connections_open "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no serf_rpc_connections_open in {metrics}"));
    assert!(open >= 1000, "{open} RPC connections open, expected the 1000 idle ones too");
}
