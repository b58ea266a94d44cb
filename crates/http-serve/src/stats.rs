//! Counters of the serving layer.

use std::sync::atomic::{AtomicU64, Ordering};

/// What [`serve`](crate::serve) has done, counted as it happens; share one per server with the
/// metrics. All counters are totals since start except [`ServeCounters::open`].
#[derive(Debug, Default)]
pub struct ServeStats {
    accepted: AtomicU64,
    open: AtomicU64,
    evicted: AtomicU64,
    idle_timeouts: AtomicU64,
    write_stalls: AtomicU64,
    accept_errors: AtomicU64,
}

/// A copy of [`ServeStats`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeCounters {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Idle connections closed to make room for a new client at the connection limit.
    pub evicted: u64,
    /// Connections closed because no request head arrived within the header read timeout.
    pub idle_timeouts: u64,
    /// Connections closed because a response write made no progress within the stall timeout.
    pub write_stalls: u64,
    /// Failed accepts (out of file descriptors and the like).
    pub accept_errors: u64,
}

impl ServeStats {
    /// The counters now.
    pub fn snapshot(&self) -> ServeCounters {
        ServeCounters {
            accepted: self.accepted.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            idle_timeouts: self.idle_timeouts.load(Ordering::Relaxed),
            write_stalls: self.write_stalls.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn count_evicted(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_idle_timeout(&self) {
        self.idle_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_write_stall(&self) {
        self.write_stalls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }
}
