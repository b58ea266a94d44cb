//! Locks and sessions, one test per rule (Consul's `kvsLockTxn`, `kvsUnlockTxn`,
//! `sessionCreateTxn`, `validateSessionChecksTxn`, `deleteSessionTxn`).

mod common;

use std::time::Duration;

use common::{acquire, release, serf_health, service_registration, Harness};
use service_registry::{
    Command, Declined, Error, HealthStatus, Outcome, Registration, ReleasedLock, SessionBehavior, SessionSpec,
    MAX_LOCK_DELAY,
};

fn locked() -> Harness {
    let mut h = Harness::new();
    h.node("n1");
    h.session("s1", "n1");
    h.session("s2", "n1");
    h
}

#[test]
fn acquire_with_a_session_that_does_not_exist_is_an_error_and_changes_nothing() {
    let mut h = locked();
    let before = h.registry.clone();
    let error = h.apply(acquire("k", "v", "ghost")).unwrap_err();
    assert_eq!(error, Error::SessionNotFound { session: "ghost".into() });
    assert_eq!(h.registry, before);
}

#[test]
fn acquire_with_an_empty_session_is_an_error() {
    let mut h = locked();
    let error = h.apply(acquire("k", "v", "")).unwrap_err();
    assert_eq!(error, Error::Missing { what: "session" });
}

#[test]
fn acquire_of_a_missing_key_creates_it_with_lock_index_1() {
    let mut h = locked();
    let applied = h.ok(acquire("k", "v", "s1"));
    assert_eq!(applied.outcome, Outcome::Done);
    let entry = h.registry.kv_get("k").unwrap();
    assert_eq!(entry.lock_index, 1);
    assert_eq!(entry.session.as_deref(), Some("s1"));
}

#[test]
fn acquire_of_a_free_key_increments_lock_index_and_sets_the_session() {
    let mut h = locked();
    h.ok(acquire("k", "v", "s1"));
    h.ok(release("k", "v", "s1"));
    h.ok(acquire("k", "v2", "s2"));
    let entry = h.registry.kv_get("k").unwrap();
    assert_eq!(entry.lock_index, 2);
    assert_eq!(entry.session.as_deref(), Some("s2"));
    assert_eq!(entry.value, b"v2");
}

#[test]
fn acquire_by_the_holder_again_updates_value_and_flags_without_incrementing_lock_index() {
    let mut h = locked();
    h.ok(acquire("k", "v", "s1"));
    let index = h.next;
    h.ok(acquire("k", "v2", "s1"));
    let entry = h.registry.kv_get("k").unwrap();
    assert_eq!(entry.lock_index, 1);
    assert_eq!(entry.value, b"v2");
    assert_eq!(entry.modify_index, index);
}

#[test]
fn acquire_by_the_holder_with_the_same_value_changes_nothing() {
    let mut h = locked();
    h.ok(acquire("k", "v", "s1"));
    let modify = h.registry.kv_get("k").unwrap().modify_index;
    let applied = h.ok(acquire("k", "v", "s1"));
    assert_eq!(applied.outcome, Outcome::Done);
    assert!(applied.changes.is_empty());
    assert_eq!(h.registry.kv_get("k").unwrap().modify_index, modify);
}

#[test]
fn acquire_of_a_key_held_by_another_session_is_declined_and_modify_index_does_not_move() {
    let mut h = locked();
    h.ok(acquire("k", "v", "s1"));
    let before = h.registry.kv_get("k").unwrap().clone();
    let applied = h.ok(acquire("k", "stolen", "s2"));
    assert_eq!(applied.outcome, Outcome::Declined(Declined::LockHeld));
    assert!(applied.changes.is_empty());
    assert_eq!(h.registry.kv_get("k").unwrap(), &before);
}

#[test]
fn release_by_the_holder_clears_the_session_keeps_lock_index_and_writes_the_value() {
    let mut h = locked();
    h.ok(acquire("k", "v", "s1"));
    let applied = h.ok(release("k", "released", "s1"));
    assert_eq!(applied.outcome, Outcome::Done);
    let entry = h.registry.kv_get("k").unwrap();
    assert_eq!(entry.session, None);
    assert_eq!(entry.lock_index, 1);
    assert_eq!(entry.value, b"released");
    assert!(applied.released_locks.is_empty(), "an explicit release has no lock-delay");
}

#[test]
fn release_by_a_non_holder_or_of_a_missing_key_is_declined() {
    let mut h = locked();
    h.ok(acquire("k", "v", "s1"));
    let applied = h.ok(release("k", "v", "s2"));
    assert_eq!(applied.outcome, Outcome::Declined(Declined::NotLockHolder));
    assert_eq!(h.registry.kv_get("k").unwrap().session.as_deref(), Some("s1"));
    let applied = h.ok(release("missing", "v", "s1"));
    assert_eq!(applied.outcome, Outcome::Declined(Declined::NotLockHolder));
    assert!(h.registry.kv_get("missing").is_none());
}

#[test]
fn session_create_fails_if_the_node_does_not_exist() {
    let mut h = Harness::new();
    let error = h.apply(Command::SessionCreate(SessionSpec::new("s1", "ghost"))).unwrap_err();
    assert_eq!(error, Error::NodeNotFound { node: "ghost".into() });
}

#[test]
fn session_create_fails_if_a_named_check_is_not_registered_default_serf_health_included() {
    let mut h = Harness::new();
    h.ok(Command::Register(Registration { node: "n1".into(), ..Registration::default() }));
    let error = h.apply(Command::SessionCreate(SessionSpec::new("s1", "n1"))).unwrap_err();
    assert_eq!(error, Error::CheckNotFound { node: "n1".into(), check_id: "serfHealth".into() });
    // With no checks at all, it is accepted.
    let spec = SessionSpec { node_checks: vec![], ..SessionSpec::new("s1", "n1") };
    h.ok(Command::SessionCreate(spec));
}

#[test]
fn session_create_fails_if_a_named_check_is_critical() {
    let mut h = Harness::new();
    h.ok(Command::Register(Registration {
        checks: vec![serf_health(HealthStatus::Critical)],
        ..common::node_registration("n1")
    }));
    let error = h.apply(Command::SessionCreate(SessionSpec::new("s1", "n1"))).unwrap_err();
    assert_eq!(error, Error::CheckCritical { node: "n1".into(), check_id: "serfHealth".into() });
}

#[test]
fn session_create_accepts_warning_and_maintenance_checks() {
    for status in [HealthStatus::Warning, HealthStatus::Maintenance] {
        let mut h = Harness::new();
        h.ok(Command::Register(Registration { checks: vec![serf_health(status)], ..common::node_registration("n1") }));
        h.ok(Command::SessionCreate(SessionSpec::new("s1", "n1")));
    }
}

#[test]
fn session_create_with_an_existing_id_is_refused() {
    let mut h = locked();
    let error = h.apply(Command::SessionCreate(SessionSpec::new("s1", "n1"))).unwrap_err();
    assert_eq!(error, Error::SessionExists { session: "s1".into() });
}

#[test]
fn deregistering_the_node_invalidates_its_sessions_and_releases_their_locks() {
    let mut h = locked();
    h.ok(acquire("k", "v", "s1"));
    let applied = h.ok(Command::DeregisterNode { node: "n1".into() });
    assert!(h.registry.session("s1").is_none());
    assert!(h.registry.session("s2").is_none());
    let entry = h.registry.kv_get("k").unwrap();
    assert_eq!(entry.session, None);
    assert_eq!(entry.lock_index, 1, "release keeps LockIndex");
    assert_eq!(entry.value, b"v");
    assert_eq!(entry.modify_index, applied.index);
    assert_eq!(
        applied.released_locks,
        [ReleasedLock { key: "k".into(), session: "s1".into(), lock_delay: Duration::from_secs(15) }]
    );
}

#[test]
fn a_check_turning_critical_invalidates_the_sessions_that_name_it() {
    let mut h = locked();
    h.ok(acquire("k", "v", "s1"));
    let applied = h.ok(Command::Register(Registration {
        checks: vec![serf_health(HealthStatus::Critical)],
        ..common::node_registration("n1")
    }));
    assert_eq!(h.registry.sessions().count(), 0);
    assert_eq!(h.registry.kv_get("k").unwrap().session, None);
    assert_eq!(applied.released_locks.len(), 1);
}

#[test]
fn a_check_turning_warning_does_not_invalidate_sessions() {
    let mut h = locked();
    h.ok(Command::Register(Registration {
        checks: vec![serf_health(HealthStatus::Warning)],
        ..common::node_registration("n1")
    }));
    assert_eq!(h.registry.sessions().count(), 2);
}

#[test]
fn deleting_a_check_invalidates_the_sessions_that_name_it() {
    let mut h = locked();
    h.ok(Command::DeregisterCheck { node: "n1".into(), check_id: "serfHealth".into() });
    assert_eq!(h.registry.sessions().count(), 0);
}

#[test]
fn deregistering_a_service_deletes_its_checks_and_invalidates_their_sessions() {
    let mut h = Harness::new();
    h.ok(Command::Register(service_registration("n1", "web", &[], HealthStatus::Passing)));
    let spec = SessionSpec { service_checks: vec!["service:web".into()], ..SessionSpec::new("s1", "n1") };
    h.ok(Command::SessionCreate(spec));
    h.session("s2", "n1");
    h.ok(Command::DeregisterService { node: "n1".into(), service_id: "web".into() });
    assert!(h.registry.check("n1", "service:web").is_none());
    assert!(h.registry.session("s1").is_none());
    assert!(h.registry.session("s2").is_some(), "s2 does not name the service check");
}

#[test]
fn behavior_delete_deletes_the_held_keys_leaving_tombstones() {
    let mut h = Harness::new();
    h.node("n1");
    h.session_with("s1", "n1", SessionBehavior::Delete, Duration::ZERO);
    h.ok(acquire("a", "v", "s1"));
    h.ok(acquire("b", "v", "s1"));
    h.ok(common::set("c", "v"));
    let applied = h.ok(Command::SessionDestroy { id: "s1".into() });
    assert!(h.registry.kv_get("a").is_none() && h.registry.kv_get("b").is_none());
    assert!(h.registry.kv_get("c").is_some());
    assert_eq!(h.registry.tombstone_count(), 2);
    let keys: Vec<&str> = applied.released_locks.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert!(applied.released_locks.iter().all(|r| r.lock_delay.is_zero()));
}

#[test]
fn the_reported_lock_delay_is_capped_at_60_seconds() {
    let mut h = Harness::new();
    h.node("n1");
    h.session_with("s1", "n1", SessionBehavior::Release, Duration::from_secs(600));
    h.ok(acquire("a", "v", "s1"));
    let applied = h.ok(Command::SessionDestroy { id: "s1".into() });
    assert_eq!(applied.released_locks[0].lock_delay, MAX_LOCK_DELAY);
}

#[test]
fn destroying_a_missing_session_is_a_no_op() {
    let mut h = locked();
    let applied = h.ok(Command::SessionDestroy { id: "ghost".into() });
    assert!(applied.changes.is_empty());
}
