//! Transactions (Consul's `state/txn.go`): all or nothing, every failure reported.

mod common;

use common::{acquire, set, Harness};
use service_registry::{Command, Error, KvEntry, Outcome, TxnError, TxnOp};

fn txn_set(k: &str, v: &str) -> TxnOp {
    TxnOp::Set { key: k.into(), value: v.as_bytes().to_vec(), flags: 0 }
}

fn results(outcome: &Outcome) -> &[KvEntry] {
    match outcome {
        Outcome::Txn(entries) => entries,
        other => panic!("not a txn outcome: {other:?}"),
    }
}

#[test]
fn a_transaction_applies_all_its_operations_at_one_index() {
    let mut h = Harness::new();
    let applied = h.ok(Command::Txn(vec![txn_set("a", "1"), txn_set("b", "2")]));
    assert_eq!(h.registry.kv_get("a").unwrap().modify_index, applied.index);
    assert_eq!(h.registry.kv_get("b").unwrap().modify_index, applied.index);
    assert_eq!(results(&applied.outcome).len(), 2);
}

#[test]
fn a_failing_operation_rolls_back_everything_and_every_failure_is_reported_with_its_position() {
    let mut h = Harness::new();
    h.ok(set("exists", "x"));
    let before = h.registry.clone();
    let error = h
        .apply(Command::Txn(vec![
            txn_set("a", "1"),
            TxnOp::CheckNotExists { key: "exists".into() },
            TxnOp::Delete { key: "exists".into() },
            TxnOp::Get { key: "missing".into() },
            TxnOp::Cas { key: "exists".into(), value: vec![], flags: 0, index: 99 },
        ]))
        .unwrap_err();
    assert_eq!(
        error,
        Error::TxnFailed {
            errors: vec![
                TxnError { op_index: 1, what: "key \"exists\" exists".into() },
                TxnError { op_index: 3, what: "key \"missing\" doesn't exist".into() },
                // the delete at op 2 made "exists" missing, so the CAS is stale
                TxnError { op_index: 4, what: "failed to set key \"exists\", index is stale".into() },
            ]
        }
    );
    assert_eq!(h.registry, before, "nothing half-applied");
}

#[test]
fn later_operations_see_earlier_writes() {
    let mut h = Harness::new();
    let applied = h.ok(Command::Txn(vec![
        txn_set("a", "1"),
        TxnOp::Get { key: "a".into() },
        TxnOp::CheckIndex { key: "a".into(), index: 1 },
    ]));
    let entries = results(&applied.outcome);
    assert_eq!(entries[1].value, b"1");
}

#[test]
fn results_carry_values_only_for_gets() {
    let mut h = Harness::new();
    h.ok(set("t/a", "A"));
    let applied = h.ok(Command::Txn(vec![
        txn_set("t/b", "B"),
        TxnOp::Get { key: "t/a".into() },
        TxnOp::GetTree { prefix: "t/".into() },
    ]));
    let values: Vec<&[u8]> = results(&applied.outcome).iter().map(|e| e.value.as_slice()).collect();
    assert_eq!(values, [b"".as_slice(), b"A", b"A", b"B"]);
}

#[test]
fn lock_and_unlock_failures_carry_consuls_messages() {
    let mut h = Harness::new();
    h.node("n1");
    h.session("s1", "n1");
    h.session("s2", "n1");
    h.ok(acquire("k", "v", "s1"));
    let error = h
        .apply(Command::Txn(vec![
            TxnOp::Lock { key: "k".into(), value: vec![], flags: 0, session: "s2".into() },
            TxnOp::Unlock { key: "k".into(), value: vec![], flags: 0, session: "s2".into() },
            TxnOp::Lock { key: "j".into(), value: vec![], flags: 0, session: "ghost".into() },
            TxnOp::CheckSession { key: "k".into(), session: "s2".into() },
        ]))
        .unwrap_err();
    let Error::TxnFailed { errors } = error else { panic!() };
    let whats: Vec<&str> = errors.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(
        whats,
        [
            "failed to lock key \"k\", lock is already held",
            "failed to unlock key \"k\", lock isn't held, or is held by another session",
            "invalid session \"ghost\"",
            "failed session check for key \"k\", current session \"s1\" != \"s2\"",
        ]
    );
}

#[test]
fn an_oversize_value_in_a_transaction_fails_that_operation() {
    let mut h = Harness::new();
    let big = vec![0u8; service_registry::MAX_VALUE_SIZE + 1];
    let error = h.apply(Command::Txn(vec![TxnOp::Set { key: "a".into(), value: big, flags: 0 }])).unwrap_err();
    let Error::TxnFailed { errors } = error else { panic!() };
    assert!(errors[0].what.contains("524289"), "{}", errors[0].what);
}

#[test]
fn a_key_created_and_deleted_by_one_transaction_leaves_no_trace_and_fires_nothing() {
    let mut h = Harness::new();
    h.ok(set("b", "x"));
    let applied = h.ok(Command::Txn(vec![txn_set("a", "1"), TxnOp::Delete { key: "a".into() }]));
    assert!(applied.changes.is_empty());
    assert_eq!(h.registry.tombstone_count(), 0);
    assert_eq!(h.registry.index(&service_registry::WatchTarget::Prefix("a".into())), 1);
}
