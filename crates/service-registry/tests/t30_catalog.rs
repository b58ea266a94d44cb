//! Catalog register and deregister, one test per rule (Consul's `ensureRegistrationTxn`,
//! `ensureCheckTxn`, `deleteNodeTxn`, `deleteServiceTxn`).

mod common;

use common::{service_registration, Harness};
use service_registry::{
    CheckRegistration, Command, Error, HealthStatus, Registration, ServiceRegistration, Topic, WatchTarget,
};

#[test]
fn register_creates_the_node_the_service_and_its_checks_in_one_command() {
    let mut h = Harness::new();
    let applied = h.ok(Command::Register(service_registration("n1", "web", &["v1"], HealthStatus::Passing)));
    let node = h.registry.node("n1").unwrap();
    assert_eq!((node.create_index, node.modify_index), (1, 1));
    let service = h.registry.node_services("n1").next().unwrap();
    assert_eq!((service.id.as_str(), service.service.as_str(), service.port), ("web", "web", 8080));
    assert_eq!(h.registry.node_checks("n1").count(), 2);
    assert!(applied.changes.topics.contains(&Topic::Services));
    assert!(applied.changes.topics.contains(&Topic::Service("web".into())));
}

#[test]
fn a_service_id_defaults_to_the_service_name() {
    let mut h = Harness::new();
    h.ok(Command::Register(Registration {
        service: Some(ServiceRegistration { service: "db".into(), ..ServiceRegistration::default() }),
        ..common::node_registration("n1")
    }));
    assert_eq!(h.registry.node_services("n1").next().unwrap().id, "db");
}

#[test]
fn a_check_copies_its_service_name_and_tags() {
    let mut h = Harness::new();
    h.ok(Command::Register(service_registration("n1", "web", &["a", "b"], HealthStatus::Passing)));
    let check = h.registry.check("n1", "service:web").unwrap();
    assert_eq!(check.service_name, "web");
    assert_eq!(check.service_tags, ["a", "b"]);
}

#[test]
fn a_check_naming_an_unknown_service_is_refused_and_nothing_of_the_registration_applies() {
    let mut h = Harness::new();
    let reg = Registration {
        checks: vec![CheckRegistration {
            check_id: "c".into(),
            service_id: "ghost".into(),
            ..CheckRegistration::default()
        }],
        ..common::node_registration("n1")
    };
    let error = h.apply(Command::Register(reg)).unwrap_err();
    assert_eq!(error, Error::ServiceNotFound { node: "n1".into(), service_id: "ghost".into() });
    assert!(h.registry.node("n1").is_none(), "the node of a refused registration is not created");
    assert_eq!(h.registry.last_index(), 0);
}

#[test]
fn a_registration_without_a_node_name_is_refused() {
    let mut h = Harness::new();
    let error = h.apply(Command::Register(Registration::default())).unwrap_err();
    assert_eq!(error, Error::Missing { what: "node name" });
}

#[test]
fn a_check_registered_without_status_is_critical_as_in_consul() {
    assert_eq!(CheckRegistration::default().status, HealthStatus::Critical);
}

#[test]
fn re_registering_identical_records_changes_nothing_and_moves_no_index() {
    let mut h = Harness::new();
    let reg = service_registration("n1", "web", &["v1"], HealthStatus::Passing);
    h.ok(Command::Register(reg.clone()));
    let applied = h.ok(Command::Register(reg));
    assert!(applied.changes.is_empty());
    assert_eq!(h.registry.node("n1").unwrap().modify_index, 1);
    assert_eq!(h.registry.index(&WatchTarget::Topic(Topic::Service("web".into()))), 1);
}

#[test]
fn updating_a_check_moves_its_modify_index_and_keeps_its_create_index() {
    let mut h = Harness::new();
    h.ok(Command::Register(service_registration("n1", "web", &[], HealthStatus::Passing)));
    h.ok(Command::Register(service_registration("n1", "web", &[], HealthStatus::Warning)));
    let check = h.registry.check("n1", "service:web").unwrap();
    assert_eq!((check.create_index, check.modify_index), (1, 2));
    assert_eq!(h.registry.node("n1").unwrap().modify_index, 1, "the node did not change");
}

#[test]
fn deregistering_a_node_removes_its_services_and_checks() {
    let mut h = Harness::new();
    h.ok(Command::Register(service_registration("n1", "web", &[], HealthStatus::Passing)));
    h.ok(Command::Register(service_registration("n2", "web", &[], HealthStatus::Passing)));
    h.ok(Command::DeregisterNode { node: "n1".into() });
    assert!(h.registry.node("n1").is_none());
    assert_eq!(h.registry.node_services("n1").count(), 0);
    assert_eq!(h.registry.node_checks("n1").count(), 0);
    let instances = h.registry.service_instances("web");
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].node.name, "n2");
}

#[test]
fn deregistering_a_service_removes_its_checks_but_not_the_node_checks() {
    let mut h = Harness::new();
    h.ok(Command::Register(service_registration("n1", "web", &[], HealthStatus::Passing)));
    h.ok(Command::DeregisterService { node: "n1".into(), service_id: "web".into() });
    let checks: Vec<&str> = h.registry.node_checks("n1").map(|c| c.check_id.as_str()).collect();
    assert_eq!(checks, ["serfHealth"]);
    assert!(h.registry.services().is_empty());
}

#[test]
fn deregistering_something_missing_is_a_no_op() {
    let mut h = Harness::new();
    for command in [
        Command::DeregisterNode { node: "x".into() },
        Command::DeregisterService { node: "x".into(), service_id: "y".into() },
        Command::DeregisterCheck { node: "x".into(), check_id: "y".into() },
    ] {
        assert!(h.ok(command).changes.is_empty());
    }
}

#[test]
fn a_service_instance_carries_the_node_checks_and_its_own_checks_only() {
    let mut h = Harness::new();
    h.ok(Command::Register(service_registration("n1", "web", &[], HealthStatus::Passing)));
    h.ok(Command::Register(service_registration("n1", "db", &[], HealthStatus::Critical)));
    let web = h.registry.service_instances("web");
    let ids: Vec<&str> = web[0].checks.iter().map(|c| c.check_id.as_str()).collect();
    assert_eq!(ids, ["serfHealth", "service:web"]);
    let critical: Vec<&str> =
        h.registry.checks_in_state(Some(HealthStatus::Critical)).map(|c| c.check_id.as_str()).collect();
    assert_eq!(critical, ["service:db"]);
}

#[test]
fn a_check_without_an_id_takes_its_name_and_one_without_either_is_refused() {
    let mut h = Harness::new();
    let reg = |check_id: &str, name: &str| Registration {
        checks: vec![CheckRegistration {
            check_id: check_id.into(),
            name: name.into(),
            ..CheckRegistration::default()
        }],
        ..common::node_registration("n1")
    };
    h.ok(Command::Register(reg("", "disk")));
    assert!(h.registry.check("n1", "disk").is_some());
    let error = h.apply(Command::Register(reg("", ""))).unwrap_err();
    assert_eq!(error, Error::Missing { what: "check ID" });
}
