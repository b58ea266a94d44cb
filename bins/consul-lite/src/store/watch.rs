//! Blocking queries waiting for their data to change: [`service_registry::Watches`] says which
//! watches a command concerns, and each waiting query has a [`Notify`] to be woken by.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use service_registry::{Changes, WatchId, WatchTarget, Watches};
use tokio::sync::Notify;

/// The watches of the blocking queries waiting on one store. Shared by every implementation
/// of [`Store`](super::Store): whoever applies commands calls [`WatchHub::fire`] after each.
#[derive(Debug, Default)]
pub(crate) struct WatchHub {
    inner: Mutex<HubInner>,
}

#[derive(Debug, Default)]
struct HubInner {
    watches: Watches,
    wakers: HashMap<WatchId, Arc<Notify>>,
}

/// A registered watch; unregistered on drop.
struct Registered<'a> {
    hub: &'a WatchHub,
    id: WatchId,
    notify: Arc<Notify>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        inner.watches.unwatch(self.id);
        inner.wakers.remove(&self.id);
    }
}

impl WatchHub {
    fn lock(&self) -> MutexGuard<'_, HubInner> {
        // A panic while holding this lock leaves the maps consistent (each change is one
        // insert or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the queries whose data `changes` changed; returns how many.
    pub(crate) fn fire(&self, changes: &Changes) -> usize {
        if changes.is_empty() {
            return 0;
        }
        let inner = self.lock();
        let fired = inner.watches.fired(changes);
        for id in &fired {
            if let Some(notify) = inner.wakers.get(id) {
                notify.notify_one();
            }
        }
        fired.len()
    }

    /// Wakes every waiting query (the whole registry was replaced: a snapshot restore); each
    /// reads its index again and goes back to waiting if it did not move. Returns how many.
    pub(crate) fn fire_all(&self) -> usize {
        let inner = self.lock();
        for notify in inner.wakers.values() {
            notify.notify_one();
        }
        inner.wakers.len()
    }

    /// Queries waiting now.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().watches.len()
    }

    /// Waits until `index()` (the target's index, read from the registry) is above `above`,
    /// or `timeout` passes; returns the index then. The watch is registered before the first
    /// read, so a write between the read and the wait still wakes it (a [`Notify`] keeps
    /// the permit).
    pub(crate) async fn wait_above(
        &self,
        target: WatchTarget,
        above: u64,
        timeout: Duration,
        index: impl Fn() -> u64,
    ) -> u64 {
        let registered = {
            let mut inner = self.lock();
            let id = inner.watches.watch(target);
            let notify = Arc::new(Notify::new());
            inner.wakers.insert(id, Arc::clone(&notify));
            Registered { hub: self, id, notify }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = index();
            if now > above {
                return now;
            }
            if tokio::time::timeout_at(deadline, registered.notify.notified()).await.is_err() {
                return index();
            }
        }
    }
}
