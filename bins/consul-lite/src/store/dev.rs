//! The `-dev` store: one in-memory [`Registry`], this process its only server and leader.

use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};

use service_registry::{Applied, Command, Outcome, Registry, Session, Topic, WatchTarget};

use super::{BoxFuture, LockDelays, RegistryRead, SessionTimers, Store, StoreError, WatchHub};

/// An in-memory registry behind a lock; the index counts up by one per applied command
/// (a refused command uses no index). Nothing survives a restart.
#[derive(Debug, Clone)]
pub(crate) struct DevStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: RwLock<Registry>,
    lock_delays: Mutex<LockDelays>,
    timers: SessionTimers,
    hub: WatchHub,
    /// This server's address, reported as the leader and the only peer.
    server_addr: String,
}

impl DevStore {
    /// An empty store whose server answers at `server_addr` (`/v1/status/leader`).
    pub(crate) fn new(server_addr: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry: RwLock::new(Registry::new()),
                lock_delays: Mutex::new(LockDelays::default()),
                timers: SessionTimers::default(),
                hub: WatchHub::default(),
                server_addr,
            }),
        }
    }

    /// Stops the session timers (at shutdown).
    pub(crate) fn stop(&self) {
        self.inner.timers.stop_all();
    }

    /// Session TTL timers running.
    #[cfg(test)]
    fn timers(&self) -> usize {
        self.inner.timers.len()
    }
}

impl Inner {
    fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        // apply() leaves the registry unchanged when it fails, and nothing else writes it: a
        // poisoned lock still guards a consistent registry.
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply(self: &Arc<Self>, command: Command) -> Result<Applied, StoreError> {
        let ttl = match &command {
            Command::SessionCreate(spec) => spec.ttl.map(|ttl| (spec.id.clone(), ttl)),
            _ => None,
        };
        let applied = {
            let mut registry = self.registry.write().unwrap_or_else(PoisonError::into_inner);
            let mut lock_delays = self.lock_delays.lock().unwrap_or_else(PoisonError::into_inner);
            let now = SystemTime::now();
            lock_delays.check(&command, now)?;
            let index = registry.last_index() + 1;
            let applied = registry.apply(index, command)?;
            lock_delays.record(&applied.released_locks, now);
            // Timers of sessions that are gone (destroyed, invalidated with their node or
            // checks) stop; a new session with a TTL gets one.
            for topic in &applied.changes.topics {
                if let Topic::Session(id) = topic {
                    if registry.session(id).is_none() {
                        self.timers.stop(id);
                    }
                }
            }
            if let (Some((id, ttl)), Outcome::Done) = (ttl, &applied.outcome) {
                self.start_timer(&id, ttl);
            }
            applied
        };
        self.hub.fire(&applied.changes);
        Ok(applied)
    }

    fn start_timer(self: &Arc<Self>, id: &str, ttl: Duration) {
        let store: Weak<Self> = Arc::downgrade(self);
        let session = id.to_owned();
        self.timers.start(id, ttl, async move {
            let Some(store) = store.upgrade() else { return };
            store.timers.forget(&session);
            tracing::info!(session = %session, "session TTL expired; invalidating it");
            if let Err(error) = store.apply(Command::SessionDestroy { id: session.clone() }) {
                tracing::warn!(session = %session, %error, "cannot invalidate an expired session");
            }
        });
    }
}

impl Store for DevStore {
    fn write(&self, command: Command) -> BoxFuture<'_, Result<Applied, StoreError>> {
        Box::pin(async move { self.inner.apply(command) })
    }

    fn read(&self) -> RegistryRead<'_> {
        Box::new(self.inner.registry())
    }

    fn wait(&self, target: WatchTarget, above: u64, timeout: Duration) -> BoxFuture<'_, u64> {
        Box::pin(async move {
            let watched = target.clone();
            self.inner.hub.wait_above(watched, above, timeout, || self.inner.registry().index(&target)).await
        })
    }

    fn renew_session(&self, id: &str) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        let id = id.to_owned();
        Box::pin(async move {
            let session = self.inner.registry().session(&id).cloned();
            if session.is_some() {
                self.inner.timers.renew(&id);
            }
            Ok(session)
        })
    }

    fn leader(&self) -> Option<String> {
        Some(self.inner.server_addr.clone())
    }

    fn peers(&self) -> Vec<String> {
        vec![self.inner.server_addr.clone()]
    }

    fn last_contact(&self) -> Duration {
        Duration::ZERO
    }

    fn waiting(&self) -> usize {
        self.inner.hub.waiting()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_registry::{CheckRegistration, HealthStatus, KvOp, Registration, SessionSpec};

    fn node(store: &DevStore) {
        let registration = Registration {
            node: "n1".into(),
            address: "127.0.0.1".into(),
            checks: vec![CheckRegistration {
                check_id: "serfHealth".into(),
                status: HealthStatus::Passing,
                ..CheckRegistration::default()
            }],
            ..Registration::default()
        };
        let _applied = store.inner.apply(Command::Register(registration)).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_ttl_session_is_invalidated_after_twice_its_ttl_unless_renewed() {
        let store = DevStore::new("127.0.0.1:8300".into());
        node(&store);
        let spec = SessionSpec { ttl: Some(Duration::from_secs(10)), ..SessionSpec::new("s1", "n1") };
        let _applied = store.write(Command::SessionCreate(spec)).await.unwrap();
        assert_eq!(store.timers(), 1);
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(store.renew_session("s1").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(store.read().session("s1").is_some(), "renewed 15 s ago: alive until 20 s after");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(store.read().session("s1").is_none(), "expired 20 s after the renew");
        assert_eq!(store.timers(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn destroying_a_session_stops_its_timer_and_a_blocking_wait_wakes_only_for_its_key() {
        let store = DevStore::new("127.0.0.1:8300".into());
        node(&store);
        let spec = SessionSpec { ttl: Some(Duration::from_secs(10)), ..SessionSpec::new("s1", "n1") };
        let _applied = store.write(Command::SessionCreate(spec)).await.unwrap();
        let _applied = store.write(Command::SessionDestroy { id: "s1".into() }).await.unwrap();
        assert_eq!(store.timers(), 0);

        let set = |key: &str| Command::Kv(KvOp::Set { key: key.into(), value: b"v".to_vec(), flags: 0 });
        let start = store.read().index(&WatchTarget::Key("a".into()));
        let waiting = store.wait(WatchTarget::Key("a".into()), start, Duration::from_secs(60));
        let writes = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _applied = store.write(set("b")).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            store.write(set("a")).await.unwrap()
        };
        let (woke_at, applied) = tokio::join!(waiting, writes);
        assert_eq!(woke_at, applied.index);
    }
}
