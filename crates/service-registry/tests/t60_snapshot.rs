//! Snapshots: the whole state, serialisable, restored equal and behaving the same.

mod common;

use common::{acquire, service_registration, set, Harness};
use service_registry::{Command, HealthStatus, KvOp, Registry, Snapshot, Topic, WatchTarget};

fn busy() -> Harness {
    let mut h = Harness::new();
    h.ok(Command::Register(service_registration("n1", "web", &["v1"], HealthStatus::Passing)));
    h.session("s1", "n1");
    h.ok(acquire("lock", "me", "s1"));
    h.ok(set("a/1", "x"));
    h.ok(set("a/2", "y"));
    h.ok(Command::Kv(KvOp::Delete { key: "a/2".into() }));
    h
}

#[test]
fn a_snapshot_encoded_and_restored_equals_the_registry_and_answers_the_same_indexes() {
    let h = busy();
    let json = serde_json::to_vec(&h.registry.snapshot()).unwrap();
    let restored = Registry::restore(serde_json::from_slice::<Snapshot>(&json).unwrap());
    assert_eq!(restored, h.registry);
    for target in [
        WatchTarget::Key("a/2".into()),
        WatchTarget::Prefix("a/".into()),
        WatchTarget::Topic(Topic::Service("web".into())),
        WatchTarget::Topic(Topic::Session("s1".into())),
    ] {
        assert_eq!(restored.index(&target), h.registry.index(&target), "{target:?}");
    }
}

#[test]
fn the_same_state_gives_the_same_snapshot_bytes() {
    let a = serde_json::to_vec(&busy().registry.snapshot()).unwrap();
    let b = serde_json::to_vec(&busy().registry.snapshot()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_restored_registry_behaves_identically_afterwards() {
    let mut h = busy();
    let mut restored = Registry::restore(h.registry.snapshot());
    let next = h.next;
    let command = Command::DeregisterNode { node: "n1".into() };
    let original = h.ok(command.clone());
    let copy = restored.apply(next, command).unwrap();
    assert_eq!(copy, original.0);
    assert_eq!(copy.released_locks.len(), 1, "the restored session still holds its lock");
    assert_eq!(restored, h.registry);
}
