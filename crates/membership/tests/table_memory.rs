//! The heap a member table holds per member, measured with a counting allocator.
//!
//! The simulator runs 10,000 nodes that each know 10,000 members: 10^8 entries, so every byte
//! per entry is 100 MB. This bounds the cost of one entry (record, name index, name, spare room)
//! so that a change that makes the table fatter fails here rather than in a 10,000-node run.
//! One test per binary: the allocator counts every thread's allocations.

use std::net::SocketAddr;
use std::time::Instant;

use membership::{AliveClaim, Incarnation, MemberTable, Name, ProtocolRange, Tags};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

const PROTOCOL: ProtocolRange = ProtocolRange { min: 1, max: 1, cur: 1 };

fn claim(name: Name, i: u32) -> AliveClaim {
    AliveClaim {
        name,
        addr: SocketAddr::from((std::net::Ipv4Addr::from(u32::from_be_bytes([10, 0, 0, 1]) + i), 7946)),
        incarnation: Incarnation::new(1, 0),
        tags: Tags::default(),
        protocol: PROTOCOL,
    }
}

/// Heap bytes held by a table of `n` members besides the local node, learned in a scrambled
/// order (as gossip delivers them), with names given as `names(i)`.
fn table_heap(n: u32, names: impl Fn(u32) -> Name) -> usize {
    let now = Instant::now();
    let before = counting_alloc::live();
    let mut table = MemberTable::new(claim("local".into(), 0), now);
    for k in 0..n {
        // A fixed permutation of 0..n (n is prime to 7919).
        let i = (u64::from(k) * 7919 % u64::from(n)) as u32;
        let _ = table.apply_alive(claim(names(i), i + 1), now);
    }
    assert_eq!(table.len(), n as usize + 1);
    let held = counting_alloc::live() - before;
    drop(table);
    held
}

#[test]
fn a_member_costs_at_most_about_125_bytes_plus_its_name() {
    let n = 10_000;
    let record = size_of::<membership::Member>();
    // Each table with its own copy of every name (as when names come off the wire).
    let own = table_heap(n, |i| Name::from(format!("node-{i:04}"))) as f64 / f64::from(n);
    // Names shared with the caller (as a simulator that hands every node the same names).
    let shared: Vec<Name> = (0..n).map(|i| Name::from(format!("node-{i:04}"))).collect();
    let with_shared = table_heap(n, |i| shared[i as usize].clone()) as f64 / f64::from(n);
    eprintln!("record {record} B; per member: {own:.1} B with its own name, {with_shared:.1} B with a shared name");
    assert!(record <= 104, "Member grew to {record} bytes");
    assert!(with_shared <= 125.0, "{with_shared:.1} bytes per member without the name");
    // The name's allocation: 16 bytes of counts and 9 of text, rounded up to 8 (32). The slack
    // is for other threads' allocations while the table was built (the counter is global; a
    // loaded machine made it 32.1 once, about 1 KB in all); a fatter name costs 8 bytes more.
    assert!(own - with_shared <= 33.0, "a name costs {:.1} bytes", own - with_shared);
}
