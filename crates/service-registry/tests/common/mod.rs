//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use service_registry::{
    Applied, CheckRegistration, Command, Error, HealthStatus, KvOp, Registration, Registry, ServiceRegistration,
    SessionBehavior, SessionSpec, SERF_HEALTH_CHECK,
};

/// What a command applied; not `#[must_use]`, for setup steps.
pub struct Step(pub Applied);

impl std::ops::Deref for Step {
    type Target = Applied;
    fn deref(&self) -> &Applied {
        &self.0
    }
}

/// A registry that counts its own indexes.
pub struct Harness {
    pub registry: Registry,
    pub next: u64,
}

impl Harness {
    pub fn new() -> Self {
        Self { registry: Registry::new(), next: 1 }
    }

    /// Applies at the next index; the index advances only on success.
    pub fn apply(&mut self, command: Command) -> Result<Applied, Error> {
        let result = self.registry.apply(self.next, command);
        if result.is_ok() {
            self.next += 1;
        }
        result
    }

    pub fn ok(&mut self, command: Command) -> Step {
        Step(self.apply(command).expect("command applies"))
    }

    /// Registers `node` with a passing serfHealth check.
    pub fn node(&mut self, node: &str) -> Step {
        self.ok(Command::Register(node_registration(node)))
    }

    /// Creates a session with Consul's defaults on `node`.
    pub fn session(&mut self, id: &str, node: &str) -> Step {
        self.ok(Command::SessionCreate(SessionSpec::new(id, node)))
    }

    pub fn session_with(&mut self, id: &str, node: &str, behavior: SessionBehavior, delay: Duration) -> Step {
        self.ok(Command::SessionCreate(SessionSpec { behavior, lock_delay: delay, ..SessionSpec::new(id, node) }))
    }
}

pub fn node_registration(node: &str) -> Registration {
    Registration {
        node: node.into(),
        address: "10.0.0.1".into(),
        datacenter: "dc1".into(),
        checks: vec![serf_health(HealthStatus::Passing)],
        ..Registration::default()
    }
}

pub fn serf_health(status: HealthStatus) -> CheckRegistration {
    CheckRegistration {
        check_id: SERF_HEALTH_CHECK.into(),
        name: "Serf Health Status".into(),
        status,
        check_type: "serf".into(),
        ..CheckRegistration::default()
    }
}

/// Registers `service` (ID = name) on `node` with a passing serfHealth and a service check
/// `service:<name>`.
pub fn service_registration(node: &str, service: &str, tags: &[&str], status: HealthStatus) -> Registration {
    Registration {
        service: Some(ServiceRegistration {
            service: service.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            port: 8080,
            ..ServiceRegistration::default()
        }),
        checks: vec![
            serf_health(HealthStatus::Passing),
            CheckRegistration {
                check_id: format!("service:{service}"),
                status,
                service_id: service.into(),
                ..CheckRegistration::default()
            },
        ],
        ..node_registration(node)
    }
}

pub fn set(key: &str, value: &str) -> Command {
    Command::Kv(KvOp::Set { key: key.into(), value: value.as_bytes().to_vec(), flags: 0 })
}

pub fn acquire(key: &str, value: &str, session: &str) -> Command {
    Command::Kv(KvOp::Acquire { key: key.into(), value: value.as_bytes().to_vec(), flags: 0, session: session.into() })
}

pub fn release(key: &str, value: &str, session: &str) -> Command {
    Command::Kv(KvOp::Release { key: key.into(), value: value.as_bytes().to_vec(), flags: 0, session: session.into() })
}
