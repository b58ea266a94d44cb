use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn msg(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn sized(tag: u8, len: usize) -> Bytes {
    Bytes::from(vec![tag; len])
}

/// Fill with room for everything and no overhead.
fn fill_all(queue: &mut BroadcastQueue, cluster_size: usize) -> Vec<Bytes> {
    queue.fill(usize::MAX, cluster_size, |_| 0)
}

#[test]
fn retransmit_limit_is_mult_times_ceil_log10_of_n_plus_one() {
    let queue = BroadcastQueue::new(4, 10);
    let cases = [
        (0, 1), // ceil(log10(1)) = 0, raised to the minimum of one send
        (1, 4),
        (9, 4),
        (10, 8),
        (99, 8),
        (100, 12),
        (999, 12),
        (1000, 16),
        (10_000, 20),
        (usize::MAX, 80),
    ];
    for (n, limit) in cases {
        assert_eq!(queue.retransmit_limit(n), limit, "n = {n}");
    }
    assert_eq!(BroadcastQueue::new(0, 10).retransmit_limit(1000), 1);
    assert_eq!(BroadcastQueue::new(u32::MAX, 10).retransmit_limit(1000), u32::MAX);
}

#[test]
fn each_message_is_sent_exactly_limit_times() {
    for (n, limit) in [(1, 4), (10, 8)] {
        let mut queue = BroadcastQueue::new(4, 10);
        queue.push(None, msg("hello"));
        for _ in 0..limit {
            assert_eq!(fill_all(&mut queue, n), [msg("hello")]);
        }
        assert!(queue.is_empty(), "n = {n}");
        assert!(fill_all(&mut queue, n).is_empty());
        queue.check_invariants();
    }
}

#[test]
fn a_message_is_taken_at_most_once_per_fill() {
    let mut queue = BroadcastQueue::new(4, 10);
    queue.push(None, msg("a"));
    queue.push(None, msg("b"));
    assert_eq!(fill_all(&mut queue, 100).len(), 2);
}

#[test]
fn push_with_a_key_replaces_the_queued_message() {
    let mut queue = BroadcastQueue::new(4, 10);
    queue.push(Some("node-a"), msg("a1"));
    fill_all(&mut queue, 100); // a1 sent once
    queue.push(Some("node-a"), msg("a2"));
    queue.push(Some("node-b"), msg("b1"));
    queue.push(None, msg("x"));
    queue.push(None, msg("y")); // no key: never replaces
    assert_eq!(queue.len(), 4);
    queue.check_invariants();
    let sent = fill_all(&mut queue, 100);
    assert_eq!(sent, [msg("y"), msg("x"), msg("b1"), msg("a2")]);

    // The replacement starts over: it is sent the full number of times.
    let mut queue = BroadcastQueue::new(1, 10);
    queue.push(Some("k"), msg("old"));
    assert_eq!(fill_all(&mut queue, 1), [msg("old")]); // limit 1: gone
    queue.push(Some("k"), msg("new"));
    assert_eq!(fill_all(&mut queue, 1), [msg("new")]);
    assert!(queue.is_empty());
    queue.check_invariants();
}

#[test]
fn fill_respects_the_budget_including_overhead() {
    let mut queue = BroadcastQueue::new(4, 100);
    for tag in 0..5 {
        queue.push(None, sized(tag, 100));
    }
    // 3 × (100 + 2) = 306 fits in 350; a fourth would not.
    let sent = queue.fill(350, 10, |_| 2);
    assert_eq!(sent.len(), 3);
    assert!(queue.fill(101, 10, |_| 2).is_empty());
    assert!(queue.fill(0, 10, |_| 0).is_empty());
    // Exactly fitting is fine.
    assert_eq!(queue.fill(102, 10, |_| 2).len(), 1);
    // The overhead may depend on the length.
    assert_eq!(queue.fill(250, 10, |len| len).len(), 1);
}

#[test]
fn a_message_too_big_for_the_rest_is_skipped_and_smaller_ones_still_go() {
    let mut queue = BroadcastQueue::new(4, 100);
    queue.push(None, sized(1, 40));
    queue.push(None, sized(2, 500)); // newest, first in line, too big
    queue.push(None, sized(3, 30)); // newest of all
    let sent = queue.fill(100, 10, |_| 0);
    assert_eq!(sent, [sized(3, 30), sized(1, 40)]);
    // The skipped message kept its place: it goes first when there is room.
    let sent = queue.fill(1000, 10, |_| 0);
    assert_eq!(sent, [sized(2, 500), sized(3, 30), sized(1, 40)]);
}

#[test]
fn least_sent_first_then_newest_first() {
    let mut queue = BroadcastQueue::new(10, 100);
    let one = |queue: &mut BroadcastQueue| {
        let sent = queue.fill(1, 10, |_| 0);
        assert_eq!(sent.len(), 1);
        sent[0].clone()
    };
    queue.push(None, msg("1"));
    queue.push(None, msg("2"));
    queue.push(None, msg("3"));
    assert_eq!(one(&mut queue), msg("3")); // all unsent: newest
    assert_eq!(one(&mut queue), msg("2"));
    queue.push(None, msg("4"));
    assert_eq!(one(&mut queue), msg("4")); // unsent beats sent
    assert_eq!(one(&mut queue), msg("1")); // the last unsent
                                           // Now all sent once: newest first again.
    assert_eq!(one(&mut queue), msg("4"));
    assert_eq!(one(&mut queue), msg("3"));
}

#[test]
fn beyond_max_depth_the_most_sent_oldest_message_is_dropped() {
    let mut queue = BroadcastQueue::new(10, 3);
    queue.push(None, msg("1"));
    queue.push(None, msg("2"));
    queue.push(Some("k"), msg("3"));
    assert_eq!(queue.fill(1, 10, |_| 0), [msg("3")]); // "3" is now the most sent
    queue.push(None, msg("4"));
    assert_eq!(queue.len(), 3);
    queue.check_invariants(); // the key of the dropped message is forgotten
                              // All unsent now: the oldest goes.
    queue.push(None, msg("5"));
    assert_eq!(fill_all(&mut queue, 10), [msg("5"), msg("4"), msg("2")]);
    // A key freed by dropping may be used again.
    queue.push(Some("k"), msg("3'"));
    queue.check_invariants();
    assert_eq!(queue.len(), 3);
}

#[test]
fn max_depth_zero_holds_nothing() {
    let mut queue = BroadcastQueue::new(4, 0);
    queue.push(Some("k"), msg("x"));
    assert!(queue.is_empty());
    queue.check_invariants();
}

#[test]
fn clear_drops_everything() {
    let mut queue = BroadcastQueue::new(4, 10);
    queue.push(Some("k"), msg("x"));
    queue.push(None, msg("y"));
    queue.clear();
    assert!(queue.is_empty());
    queue.check_invariants();
    queue.push(Some("k"), msg("z"));
    assert_eq!(fill_all(&mut queue, 1), [msg("z")]);
}

#[test]
fn large_queue_drains_in_packet_sized_fills() {
    // 10,000 updates of ~60 bytes into 1,400-byte packets: every fill takes ~22 messages.
    let mut queue = BroadcastQueue::new(4, 20_000);
    for i in 0..10_000u32 {
        queue.push(Some(&format!("node-{i}")), sized((i % 251) as u8, 50 + (i % 20) as usize));
    }
    let limit = queue.retransmit_limit(10_000) as usize;
    let mut sent = 0;
    let mut fills = 0;
    while !queue.is_empty() {
        let picked = queue.fill(1400, 10_000, |_| 2);
        assert!(!picked.is_empty());
        assert!(picked.iter().map(|m| m.len() + 2).sum::<usize>() <= 1400);
        sent += picked.len();
        fills += 1;
    }
    assert_eq!(sent, 10_000 * limit);
    assert!(fills < sent / 15, "{fills} fills for {sent} messages");
}

#[derive(Debug, Clone)]
enum Op {
    Push { key: Option<u8>, len: usize },
    Fill { budget: usize },
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (prop::option::of(0u8..4), 1usize..200).prop_map(|(key, len)| Op::Push { key, len }),
        2 => (0usize..600).prop_map(|budget| Op::Fill { budget }),
    ]
}

proptest! {
    #[test]
    fn queue_keeps_its_promises(
        mult in 0u32..4,
        max_depth in 0usize..8,
        cluster_size in 0usize..200,
        ops in prop::collection::vec(any_op(), 0..80),
    ) {
        let overhead = |len: usize| 1 + len / 100;
        let cost = |len: usize| overhead(len) + len;
        let mut queue = BroadcastQueue::new(mult, max_depth);
        let limit = queue.retransmit_limit(cluster_size);
        let mut sends: HashMap<Bytes, u32> = HashMap::new();
        for (id, op) in ops.into_iter().enumerate() {
            match op {
                Op::Push { key, len } => {
                    // Unique contents: the id in the first bytes.
                    let mut bytes = (id as u64).to_be_bytes().to_vec();
                    bytes.resize(len.max(8), b'.');
                    let key = key.map(|k| k.to_string());
                    queue.push(key.as_deref(), Bytes::from(bytes));
                }
                Op::Fill { budget } => {
                    let before: Vec<(Slot, Bytes)> =
                        queue.queue.iter().map(|(s, q)| (*s, q.message.clone())).collect();
                    let picked = queue.fill(budget, cluster_size, overhead);
                    let spent: usize = picked.iter().map(|m| cost(m.len())).sum();
                    prop_assert!(spent <= budget);
                    let remaining = budget - spent;
                    // Picked in queue order (least sent, then newest), each once.
                    let positions: Vec<usize> = picked
                        .iter()
                        .map(|m| before.iter().position(|(_, b)| b == m).unwrap())
                        .collect();
                    prop_assert!(positions.windows(2).all(|w| w[0] < w[1]));
                    // Whatever was left out did not fit what was left of the budget.
                    for (_, message) in &before {
                        if !picked.contains(message) {
                            prop_assert!(cost(message.len()) > remaining);
                        }
                    }
                    for message in picked {
                        let count = sends.entry(message).or_insert(0);
                        *count += 1;
                        prop_assert!(*count <= limit);
                    }
                }
            }
            queue.check_invariants();
            prop_assert!(queue.len() <= max_depth);
        }
    }
}

#[test]
fn fill_for_leaves_news_about_the_destination_for_others() {
    let mut queue = BroadcastQueue::new(1, 10);
    queue.push(Some("node-a"), msg("about-a"));
    queue.push(Some("node-b"), msg("about-b"));
    let to_a = queue.fill_for(1400, 1, |_| 2, Some("node-a"));
    assert_eq!(to_a, vec![msg("about-b")]);
    // The news about node-a was not spent: it is still there for the next packet.
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.fill_for(1400, 1, |_| 2, Some("node-c")), vec![msg("about-a")]);
}
