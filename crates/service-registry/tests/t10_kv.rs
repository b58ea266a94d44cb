//! Key/value semantics, one test per rule (Consul's `agent/consul/state/kvs.go`).

mod common;

use common::{set, Harness};
use service_registry::{Command, Declined, Error, KvOp, Outcome, WatchTarget, MAX_VALUE_SIZE};

fn key(k: &str) -> WatchTarget {
    WatchTarget::Key(k.into())
}

fn prefix(p: &str) -> WatchTarget {
    WatchTarget::Prefix(p.into())
}

fn cas(k: &str, v: &str, index: u64) -> Command {
    Command::Kv(KvOp::Cas { key: k.into(), value: v.as_bytes().to_vec(), flags: 0, index })
}

#[test]
fn set_creates_the_entry_with_the_command_index_as_create_and_modify_index() {
    let mut h = Harness::new();
    h.next = 5;
    let applied = h.ok(set("a", "1"));
    assert_eq!(applied.outcome, Outcome::Done);
    let entry = h.registry.kv_get("a").unwrap();
    assert_eq!((entry.create_index, entry.modify_index), (5, 5));
    assert_eq!(entry.value, b"1");
    assert_eq!(entry.lock_index, 0);
    assert_eq!(entry.session, None);
}

#[test]
fn set_of_an_identical_entry_changes_nothing_not_even_the_modify_index() {
    let mut h = Harness::new();
    h.ok(set("a", "1"));
    let applied = h.ok(set("a", "1"));
    assert!(applied.changes.is_empty());
    assert_eq!(h.registry.kv_get("a").unwrap().modify_index, 1);
    assert_eq!(h.registry.index(&key("a")), 1);
}

#[test]
fn set_on_a_held_key_keeps_the_holder_and_resets_lock_index_as_consul_does() {
    let mut h = Harness::new();
    h.node("n1");
    h.session("s1", "n1");
    h.ok(common::acquire("a", "1", "s1"));
    h.ok(set("a", "2"));
    let entry = h.registry.kv_get("a").unwrap();
    assert_eq!(entry.session.as_deref(), Some("s1"));
    assert_eq!(entry.lock_index, 0, "kvsSetTxn takes LockIndex from the request");
    assert_eq!(entry.value, b"2");
}

#[test]
fn cas_with_index_zero_creates_only_if_absent() {
    let mut h = Harness::new();
    assert_eq!(h.ok(cas("a", "1", 0)).outcome, Outcome::Done);
    let applied = h.ok(cas("a", "2", 0));
    assert_eq!(applied.outcome, Outcome::Declined(Declined::IndexMismatch));
    assert!(applied.changes.is_empty());
    assert_eq!(h.registry.kv_get("a").unwrap().value, b"1");
}

#[test]
fn cas_with_the_current_modify_index_writes() {
    let mut h = Harness::new();
    h.ok(set("a", "1"));
    assert_eq!(h.ok(cas("a", "2", 1)).outcome, Outcome::Done);
    assert_eq!(h.registry.kv_get("a").unwrap().modify_index, 2);
}

#[test]
fn cas_with_a_stale_index_is_declined_and_changes_nothing() {
    let mut h = Harness::new();
    h.ok(set("a", "1"));
    h.ok(set("a", "2"));
    let applied = h.ok(cas("a", "3", 1));
    assert_eq!(applied.outcome, Outcome::Declined(Declined::IndexMismatch));
    assert_eq!(h.registry.kv_get("a").unwrap().value, b"2");
}

#[test]
fn cas_with_a_nonzero_index_on_a_missing_key_is_declined() {
    let mut h = Harness::new();
    let applied = h.ok(cas("a", "1", 7));
    assert_eq!(applied.outcome, Outcome::Declined(Declined::IndexMismatch));
    assert!(h.registry.kv_get("a").is_none());
}

#[test]
fn delete_leaves_a_tombstone_so_the_prefix_index_does_not_go_backwards() {
    let mut h = Harness::new();
    h.ok(set("p/a", "1"));
    h.ok(set("p/b", "1"));
    assert_eq!(h.registry.index(&prefix("p/")), 2);
    h.ok(Command::Kv(KvOp::Delete { key: "p/b".into() }));
    assert!(h.registry.kv_get("p/b").is_none());
    assert_eq!(h.registry.index(&prefix("p/")), 3);
    assert_eq!(h.registry.index(&key("p/b")), 3);
    assert_eq!(h.registry.tombstone_count(), 1);
}

#[test]
fn delete_of_a_missing_key_is_a_no_op_without_a_tombstone() {
    let mut h = Harness::new();
    let applied = h.ok(Command::Kv(KvOp::Delete { key: "nope".into() }));
    assert_eq!(applied.outcome, Outcome::Done);
    assert!(applied.changes.is_empty());
    assert_eq!(h.registry.tombstone_count(), 0);
}

#[test]
fn delete_tree_removes_exactly_the_keys_under_the_prefix_with_a_tombstone_each() {
    let mut h = Harness::new();
    for k in ["a", "a/1", "a/2", "ab", "b"] {
        h.ok(set(k, "x"));
    }
    let applied = h.ok(Command::Kv(KvOp::DeleteTree { prefix: "a/".into() }));
    let keys: Vec<&str> = h.registry.kv_list("").map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["a", "ab", "b"]);
    assert_eq!(applied.changes.keys, ["a/1".to_string(), "a/2".to_string()].into());
    // a narrower prefix sees the delete too (Consul's single tombstone at "a/" would not).
    assert_eq!(h.registry.index(&prefix("a/2")), 6);
}

#[test]
fn delete_cas_of_a_missing_key_succeeds_as_in_consul() {
    let mut h = Harness::new();
    let applied = h.ok(Command::Kv(KvOp::DeleteCas { key: "a".into(), index: 9 }));
    assert_eq!(applied.outcome, Outcome::Done);
}

#[test]
fn delete_cas_with_a_stale_index_is_declined() {
    let mut h = Harness::new();
    h.ok(set("a", "1"));
    let applied = h.ok(Command::Kv(KvOp::DeleteCas { key: "a".into(), index: 9 }));
    assert_eq!(applied.outcome, Outcome::Declined(Declined::IndexMismatch));
    assert!(h.registry.kv_get("a").is_some());
    let applied = h.ok(Command::Kv(KvOp::DeleteCas { key: "a".into(), index: 1 }));
    assert_eq!(applied.outcome, Outcome::Done);
    assert!(h.registry.kv_get("a").is_none());
}

#[test]
fn a_value_over_512_kib_is_refused_naming_its_size_and_the_limit_and_nothing_changes() {
    let mut h = Harness::new();
    h.ok(set("a", "1"));
    let before = h.registry.clone();
    let big = vec![0u8; MAX_VALUE_SIZE + 1];
    let error = h.apply(Command::Kv(KvOp::Set { key: "a".into(), value: big, flags: 0 })).unwrap_err();
    assert_eq!(error, Error::ValueTooLarge { key: "a".into(), size: MAX_VALUE_SIZE + 1, limit: MAX_VALUE_SIZE });
    assert!(error.to_string().contains("524289") && error.to_string().contains("524288"));
    assert_eq!(h.registry, before);
}

#[test]
fn a_value_of_exactly_512_kib_is_accepted() {
    let mut h = Harness::new();
    let value = vec![0u8; MAX_VALUE_SIZE];
    h.ok(Command::Kv(KvOp::Set { key: "a".into(), value, flags: 0 }));
}

#[test]
fn an_index_not_greater_than_the_last_applied_one_is_refused_and_nothing_changes() {
    let mut h = Harness::new();
    h.next = 10;
    h.ok(set("a", "1"));
    let before = h.registry.clone();
    for index in [0, 5, 10] {
        let error = h.registry.apply(index, set("b", "1")).unwrap_err();
        assert_eq!(error, Error::StaleIndex { index, last: 10 });
    }
    assert_eq!(h.registry, before);
    assert_eq!(h.registry.last_index(), 10);
}

#[test]
fn keys_with_a_separator_are_cut_after_the_separator_and_deduplicated() {
    let mut h = Harness::new();
    for k in ["web/a", "web/b/1", "web/b/2", "web/c/x/y", "webz"] {
        h.ok(set(k, "x"));
    }
    assert_eq!(h.registry.kv_keys("web/", "/"), ["web/a", "web/b/", "web/c/"]);
    assert_eq!(h.registry.kv_keys("web", "/"), ["web/", "webz"]);
    assert_eq!(h.registry.kv_keys("web/b", "").len(), 2);
}

#[test]
fn the_index_of_a_missing_key_or_empty_prefix_is_never_zero() {
    let h = Harness::new();
    assert_eq!(h.registry.index(&key("nothing")), 1);
    assert_eq!(h.registry.index(&prefix("")), 1);
}

#[test]
fn reap_removes_tombstones_up_to_the_index_and_no_answer_goes_backwards() {
    let mut h = Harness::new();
    h.ok(set("a", "1"));
    h.ok(set("b", "1"));
    h.ok(Command::Kv(KvOp::Delete { key: "a".into() })); // 3
    h.ok(Command::Kv(KvOp::Delete { key: "b".into() })); // 4
    let applied = h.ok(Command::ReapTombstones { up_to: 3 });
    assert!(applied.changes.is_empty());
    assert_eq!(h.registry.tombstone_count(), 1);
    assert_eq!(h.registry.index(&key("a")), 3, "the floor keeps the reaped delete's index");
    assert_eq!(h.registry.index(&key("b")), 4);
    h.ok(Command::ReapTombstones { up_to: 100 });
    assert_eq!(h.registry.tombstone_count(), 0);
    assert_eq!(h.registry.index(&key("b")), 4);
    assert_eq!(h.registry.index(&prefix("")), 4);
}
