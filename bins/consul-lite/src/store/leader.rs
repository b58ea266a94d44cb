//! What only the leader does, in memory: refuse acquires inside a lock-delay window, and
//! invalidate sessions whose TTL ran out.
//!
//! Both are kept out of the replicated state on purpose, as in Consul: lock-delay is
//! enforced by wall clock on request (each server's clock would expire it at a different
//! moment if it were applied), and a TTL timer fires a [`Command::SessionDestroy`]
//! (service_registry::Command::SessionDestroy) write like any other client.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use service_registry::{Command, KvOp, ReleasedLock, TxnOp};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::StoreError;

/// Consul's session TTL multiplier: a session is invalidated after TTL × 2 without a renew.
pub(crate) const SESSION_TTL_MULTIPLIER: u32 = 2;

/// Keys that may not be acquired until a wall-clock instant (Consul's `KVSLockDelay`).
#[derive(Debug, Default)]
pub(crate) struct LockDelays {
    until: HashMap<String, SystemTime>,
}

impl LockDelays {
    /// Records the lock-delay of each released lock, from now.
    pub(crate) fn record(&mut self, released: &[ReleasedLock], now: SystemTime) {
        for lock in released.iter().filter(|lock| !lock.lock_delay.is_zero()) {
            let until = now + lock.lock_delay;
            let entry = self.until.entry(lock.key.clone()).or_insert(until);
            *entry = (*entry).max(until);
        }
        self.until.retain(|_, until| *until > now);
    }

    /// Refuses `command` if it acquires a key inside its window.
    pub(crate) fn check(&self, command: &Command, now: SystemTime) -> Result<(), StoreError> {
        let delayed = |key: &str, op_index: Option<usize>| match self.until.get(key) {
            Some(until) if *until > now => Err(StoreError::LockDelay {
                key: key.to_owned(),
                remaining: until.duration_since(now).unwrap_or_default(),
                op_index,
            }),
            _ => Ok(()),
        };
        match command {
            Command::Kv(KvOp::Acquire { key, .. }) => delayed(key, None),
            Command::Txn(ops) => {
                for (index, op) in ops.iter().enumerate() {
                    if let TxnOp::Lock { key, .. } = op {
                        delayed(key, Some(index))?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// One timer per session with a TTL: it fires `expire` after TTL × 2 unless renewed.
#[derive(Debug, Default)]
pub(crate) struct SessionTimers {
    timers: Mutex<HashMap<String, Timer>>,
}

#[derive(Debug)]
struct Timer {
    renew: Arc<Notify>,
    task: JoinHandle<()>,
}

impl SessionTimers {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Timer>> {
        self.timers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts (or restarts) the timer of session `id`; `expire` runs once it runs out.
    pub(crate) fn start<F>(&self, id: &str, ttl: Duration, expire: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let renew = Arc::new(Notify::new());
        let wait = ttl * SESSION_TTL_MULTIPLIER;
        let renewed = Arc::clone(&renew);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = renewed.notified() => {}
                    () = tokio::time::sleep(wait) => break,
                }
            }
            expire.await;
        });
        if let Some(old) = self.lock().insert(id.to_owned(), Timer { renew, task }) {
            old.task.abort();
        }
    }

    /// Restarts the timer of session `id`; false if it has none.
    pub(crate) fn renew(&self, id: &str) -> bool {
        match self.lock().get(id) {
            Some(timer) => {
                timer.renew.notify_one();
                true
            }
            None => false,
        }
    }

    /// Stops the timer of session `id` (destroyed, or invalidated otherwise).
    pub(crate) fn stop(&self, id: &str) {
        if let Some(timer) = self.lock().remove(id) {
            timer.task.abort();
        }
    }

    /// Forgets a timer that fired, without aborting the task it runs in.
    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Sessions with a running timer.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Stops every timer.
    pub(crate) fn stop_all(&self) {
        for (_, timer) in self.lock().drain() {
            timer.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acquire_inside_the_window_is_refused_and_after_it_allowed() {
        let mut delays = LockDelays::default();
        let now = SystemTime::now();
        let released = ReleasedLock { key: "k".into(), session: "s".into(), lock_delay: Duration::from_secs(15) };
        delays.record(&[released], now);
        let acquire = Command::Kv(KvOp::Acquire { key: "k".into(), value: vec![], flags: 0, session: "t".into() });
        assert!(matches!(delays.check(&acquire, now + Duration::from_secs(14)), Err(StoreError::LockDelay { .. })));
        assert!(delays.check(&acquire, now + Duration::from_secs(15)).is_ok());
        let other = Command::Kv(KvOp::Acquire { key: "j".into(), value: vec![], flags: 0, session: "t".into() });
        assert!(delays.check(&other, now).is_ok());
        let txn = Command::Txn(vec![
            TxnOp::Get { key: "j".into() },
            TxnOp::Lock { key: "k".into(), value: vec![], flags: 0, session: "t".into() },
        ]);
        assert!(matches!(delays.check(&txn, now), Err(StoreError::LockDelay { op_index: Some(1), .. })));
    }
}
