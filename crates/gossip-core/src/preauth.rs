//! The budget of bytes the node buffers from inbound streams before it knows they come from a
//! member of its cluster ([`crate::NodeConfig::max_unauthenticated_bytes`]).
//!
//! A stream frame can only be authenticated whole (one AES-GCM tag, or one CRC32 and the label
//! without encryption), so its body must be buffered first. The connection task checks the
//! envelope header (version, label, encryption mode: no key needed) as soon as its `5 + L` bytes
//! are in, then reserves the frame's announced length from this budget before reading the body,
//! waiting for room when other streams hold it (within the stream timeout), and gives it back
//! once the driver has opened the frame. A frame larger than the whole budget is refused
//! without reading it. So however many connections announce however large frames, the bodies
//! buffered and not yet authenticated never exceed the budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default [`crate::NodeConfig::max_unauthenticated_bytes`]: 2 MiB.
pub const DEFAULT_MAX_UNAUTHENTICATED_BYTES: usize = 2 * 1024 * 1024;

/// The shared budget, and the gauge of what is buffered against it.
#[derive(Debug)]
pub(crate) struct PreAuthBudget {
    permits: Arc<Semaphore>,
    limit: usize,
    /// Bytes of frames read and not yet authenticated, now.
    buffered: AtomicU64,
    /// The highest `buffered` seen.
    peak: AtomicU64,
}

impl PreAuthBudget {
    /// A budget of `limit` bytes (validated by the configuration: at most `u32::MAX`).
    pub(crate) fn new(limit: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(limit)), limit, buffered: AtomicU64::new(0), peak: AtomicU64::new(0) }
    }

    /// The largest frame that can be reserved.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Reserve `len` bytes (at most [`PreAuthBudget::limit`]), waiting until other streams give
    /// back enough.
    pub(crate) async fn reserve(self: &Arc<Self>, len: usize) -> Result<Reservation, String> {
        let permits = u32::try_from(len).map_err(|_| format!("frame of {len} bytes over the budget"))?;
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| "the pre-authentication budget is closed".to_owned())?;
        Ok(Reservation { budget: Arc::clone(self), _permit: permit, buffered: 0 })
    }

    /// Bytes buffered now, not yet authenticated.
    pub(crate) fn buffered(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }

    /// The most bytes ever buffered at once, not yet authenticated.
    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// Room for one frame; the bytes count as buffered until it is dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<PreAuthBudget>,
    _permit: OwnedSemaphorePermit,
    buffered: u64,
}

impl Reservation {
    /// `bytes` more of the frame were read into memory.
    pub(crate) fn add(&mut self, bytes: usize) {
        let bytes = bytes as u64;
        self.buffered += bytes;
        let now = self.budget.buffered.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.budget.peak.fetch_max(now, Ordering::Relaxed);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.buffered.fetch_sub(self.buffered, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn reservations_wait_for_room_and_count_what_is_read() {
        let budget = Arc::new(PreAuthBudget::new(100));
        let mut first = budget.reserve(60).await.unwrap();
        first.add(60);
        let second = tokio::time::timeout(Duration::from_millis(50), budget.reserve(60)).await;
        assert!(second.is_err(), "no room for a second 60 bytes");
        let mut third = budget.reserve(40).await.unwrap();
        third.add(10);
        assert_eq!((budget.buffered(), budget.peak()), (70, 70));
        drop(first);
        assert_eq!(budget.buffered(), 10);
        let mut second = budget.reserve(60).await.unwrap();
        second.add(60);
        assert_eq!((budget.buffered(), budget.peak()), (70, 70));
        drop((second, third));
        assert_eq!(budget.buffered(), 0);
    }
}
