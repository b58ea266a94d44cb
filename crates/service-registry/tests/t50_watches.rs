//! Blocking-query change tracking: a watch fires exactly when its own data changed.

mod common;

use std::collections::BTreeSet;

use common::{acquire, serf_health, service_registration, set, Harness};
use service_registry::{Command, HealthStatus, KvOp, Registration, Topic, WatchId, WatchTarget, Watches};

fn topic(t: Topic) -> WatchTarget {
    WatchTarget::Topic(t)
}

#[test]
fn with_ten_thousand_watched_keys_one_write_fires_exactly_its_own_watchers() {
    let mut h = Harness::new();
    let mut watches = Watches::new();
    let ids: Vec<WatchId> =
        (0..10_000).map(|i| watches.watch(WatchTarget::Key(format!("svc/{i:05}/leader")))).collect();
    let dir = watches.watch(WatchTarget::Prefix("svc/01234/".into()));
    let root = watches.watch(WatchTarget::Prefix("svc/".into()));
    let other_dir = watches.watch(WatchTarget::Prefix("svc/01235/".into()));
    let catalog = watches.watch(topic(Topic::Nodes));
    assert_eq!(watches.len(), 10_004);

    let applied = h.ok(set("svc/01234/leader", "me"));
    let fired = watches.fired(&applied.changes);
    assert_eq!(fired, BTreeSet::from([ids[1234], dir, root]));
    assert!(!fired.contains(&other_dir) && !fired.contains(&catalog));

    // Every write fires its own key's watcher and nothing else among the keys.
    for i in [0usize, 4321, 9999] {
        let applied = h.ok(set(&format!("svc/{i:05}/leader"), "x"));
        assert_eq!(watches.fired(&applied.changes), BTreeSet::from([ids[i], root]));
    }
}

#[test]
fn a_write_that_changes_nothing_fires_nothing() {
    let mut h = Harness::new();
    let mut watches = Watches::new();
    watches.watch(WatchTarget::Key("a".into()));
    h.ok(set("a", "1"));
    let applied = h.ok(set("a", "1"));
    assert!(watches.fired(&applied.changes).is_empty());
}

#[test]
fn an_unwatched_id_no_longer_fires() {
    let mut h = Harness::new();
    let mut watches = Watches::new();
    let id = watches.watch(WatchTarget::Prefix("a".into()));
    assert_eq!(watches.unwatch(id), Some(WatchTarget::Prefix("a".into())));
    assert!(watches.is_empty());
    let applied = h.ok(set("a/b", "1"));
    assert!(watches.fired(&applied.changes).is_empty());
}

#[test]
fn a_session_invalidation_fires_the_released_keys_and_the_session_watchers() {
    let mut h = Harness::new();
    h.node("n1");
    h.session("s1", "n1");
    h.ok(acquire("lock/primary", "me", "s1"));
    let mut watches = Watches::new();
    let lock = watches.watch(WatchTarget::Key("lock/primary".into()));
    let session = watches.watch(topic(Topic::Session("s1".into())));
    let node_sessions = watches.watch(topic(Topic::NodeSessions("n1".into())));
    let other_key = watches.watch(WatchTarget::Key("lock/other".into()));
    let critical = watches.watch(topic(Topic::ChecksInState(HealthStatus::Critical)));
    let warning = watches.watch(topic(Topic::ChecksInState(HealthStatus::Warning)));
    let applied = h.ok(Command::Register(Registration {
        checks: vec![serf_health(HealthStatus::Critical)],
        ..common::node_registration("n1")
    }));
    let fired = watches.fired(&applied.changes);
    assert_eq!(fired, BTreeSet::from([lock, session, node_sessions, critical]));
    assert!(!fired.contains(&other_key) && !fired.contains(&warning));
}

#[test]
fn a_service_watch_fires_only_for_its_own_service() {
    let mut h = Harness::new();
    h.ok(Command::Register(service_registration("n1", "web", &["v1"], HealthStatus::Passing)));
    h.ok(Command::Register(service_registration("n2", "db", &["v1"], HealthStatus::Passing)));
    let mut watches = Watches::new();
    let web = watches.watch(topic(Topic::Service("web".into())));
    let db = watches.watch(topic(Topic::Service("db".into())));
    let services = watches.watch(topic(Topic::Services));
    let n1 = watches.watch(topic(Topic::Node("n1".into())));
    let nodes = watches.watch(topic(Topic::Nodes));

    // The db check goes to warning: db and its node, not web, not the lists.
    let applied = h.ok(Command::Register(service_registration("n2", "db", &["v1"], HealthStatus::Warning)));
    assert_eq!(watches.fired(&applied.changes), BTreeSet::from([db]));

    // A node-level check of n1 changes: every service on n1 and n1 itself.
    let applied = h.ok(Command::Register(Registration {
        checks: vec![serf_health(HealthStatus::Warning)],
        ..common::node_registration("n1")
    }));
    assert_eq!(watches.fired(&applied.changes), BTreeSet::from([web, n1]));

    // A second web instance with the same tags: web changes, the services list does not.
    let applied = h.ok(Command::Register(service_registration("n2", "web", &["v1"], HealthStatus::Passing)));
    let fired = watches.fired(&applied.changes);
    assert!(fired.contains(&web) && !fired.contains(&services) && !fired.contains(&nodes));

    // A new tag: the services list changes.
    let applied = h.ok(Command::Register(service_registration("n2", "web", &["v2"], HealthStatus::Passing)));
    assert!(watches.fired(&applied.changes).contains(&services));
}

#[test]
fn the_index_of_a_service_moves_only_when_its_data_changes() {
    let mut h = Harness::new();
    h.ok(Command::Register(service_registration("n1", "web", &[], HealthStatus::Passing)));
    h.ok(Command::Register(service_registration("n2", "db", &[], HealthStatus::Passing)));
    let web = topic(Topic::Service("web".into()));
    assert_eq!(h.registry.index(&web), 1);
    h.ok(set("unrelated", "x"));
    h.ok(Command::Register(service_registration("n2", "db", &[], HealthStatus::Critical)));
    assert_eq!(h.registry.index(&web), 1);
    let applied = h.ok(Command::DeregisterService { node: "n1".into(), service_id: "web".into() });
    assert_eq!(h.registry.index(&web), applied.index);
    // Reaping forgets the gone service but its index does not go backwards.
    h.ok(Command::ReapTombstones { up_to: applied.index });
    assert_eq!(h.registry.index(&web), applied.index);
}

#[test]
fn a_delete_tree_fires_the_watchers_of_each_deleted_key_and_its_prefixes() {
    let mut h = Harness::new();
    h.ok(set("a/1", "x"));
    h.ok(set("a/2/b", "x"));
    h.ok(set("b", "x"));
    let mut watches = Watches::new();
    let k1 = watches.watch(WatchTarget::Key("a/1".into()));
    let p2 = watches.watch(WatchTarget::Prefix("a/2".into()));
    let b = watches.watch(WatchTarget::Key("b".into()));
    let applied = h.ok(Command::Kv(KvOp::DeleteTree { prefix: "a/".into() }));
    let fired = watches.fired(&applied.changes);
    assert_eq!(fired, BTreeSet::from([k1, p2]));
    assert!(!fired.contains(&b));
}
