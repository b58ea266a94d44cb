//! The heap one node holds per member it knows, measured with a counting allocator: the member
//! table, the peer set, the probe order and whatever queue a burst of news left behind.
//!
//! Measured as a slope between two cluster sizes, so that what does not grow with the cluster
//! (the bounded broadcast queue, the node's own state) cancels out. The simulator's 10,000
//! nodes hold 10^8 of these. One test per binary: the allocator counts every thread's
//! allocations.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use swim::{AliveClaim, Config, Incarnation, LocalNode, Name, Swim, Tags, TransmitKind, PROTOCOL};

#[path = "../../membership/tests/support/counting_alloc.rs"]
mod counting_alloc;

fn addr(i: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(u32::from_be_bytes([10, 0, 0, 1]) + i), 7946))
}

fn node(name: &str, i: u32, now: Instant) -> Swim {
    let local = LocalNode { name: name.into(), addr: addr(i), tags: Tags::default(), generation: 1 };
    Swim::new(Config::lan(), local, u64::from(i), now).unwrap()
}

fn claims(names: &[Name]) -> impl Iterator<Item = AliveClaim> + '_ {
    names.iter().zip(10..).map(|(name, i)| AliveClaim {
        name: name.clone(),
        addr: addr(i),
        incarnation: Incarnation::new(1, 0),
        tags: Tags::default(),
        protocol: PROTOCOL,
    })
}

/// Drain what the node has to say and run its timers up to `until`, as a driver would (the
/// datagrams go nowhere).
fn settle(node: &mut Swim, until: Instant) {
    while let Some(at) = node.poll_timeout().filter(|&at| at <= until) {
        node.handle_timeout(at);
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
    }
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
}

/// Heap held by a node that was handed `names` with [`Swim::preload`] and ran its first probe.
fn preloaded(names: &[Name]) -> usize {
    let now = Instant::now();
    let before = counting_alloc::live();
    let mut a = node("a", 0, now);
    a.preload(claims(names), now);
    settle(&mut a, now + Duration::from_secs(2));
    assert_eq!(a.live_count(), names.len() + 1);
    let held = counting_alloc::live() - before;
    drop(a);
    held
}

/// Heap held by a node that joined a seed knowing `names`: every member learned from the wire
/// (its own copy of each name), a `MemberJoined` for each, the gossip queue filled.
fn joined(names: &[Name]) -> usize {
    let now = Instant::now();
    let mut seed = node("seed", 1, now);
    seed.preload(claims(names), now);
    let before = counting_alloc::live();
    let mut a = node("a", 0, now);
    a.join(&[addr(1)], now);
    let request = a.poll_transmit().unwrap();
    let TransmitKind::StreamRequest(id) = request.kind else { panic!("a join is a stream request") };
    let answer = seed.handle_stream_request(addr(0), &request.payload, now).unwrap();
    a.handle_stream_response(id, Ok(&answer), now);
    drop((request, answer));
    settle(&mut a, now + Duration::from_secs(2));
    assert_eq!(a.live_count(), names.len() + 2);
    let held = counting_alloc::live() - before;
    drop(a);
    held
}

#[test]
fn a_node_holds_about_130_bytes_per_member_and_bursts_leave_nothing_behind() {
    let names: Vec<Name> = (0..8000).map(|i| Name::from(format!("node-{i:04}"))).collect();
    let (small, large) = (&names[..4000], &names[..]);
    let slope = |f: fn(&[Name]) -> usize| (f(large) as f64 - f(small) as f64) / (large.len() - small.len()) as f64;
    let shared = slope(preloaded);
    let own = slope(joined);
    eprintln!("per member: {shared:.1} B with shared names (preloaded), {own:.1} B learned by a join");
    // Table (about 117 B), peer set (8 B), probe order (4 B).
    assert!(shared <= 140.0, "{shared:.1} bytes per member with shared names");
    // The same plus the node's own copy of each name (32 B). A join's burst of events that
    // left its queue at full size would add about 130 B per member.
    assert!(own <= 190.0, "{own:.1} bytes per member learned by a join");
}
