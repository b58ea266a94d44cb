//! Refused packets and streams made visible: a warning per peer address and reason at most every
//! [`WARN_INTERVAL`], with the number of refusals it stood for, and counters.
//!
//! Only the refusals an operator can act on are warnings: another cluster label, another key, no
//! key or an unexpected one, another protocol version, a stream frame over the
//! pre-authentication limit ([`RefusalReason`]). Corruption and garbage (bad magic, checksum,
//! malformed protobuf) stay at debug level: they say nothing about this cluster's configuration.
//!
//! The table of recent warnings is bounded ([`MAX_TRACKED`]): a flood from many (possibly forged)
//! source addresses shares one entry per reason once the table is full, so it cannot grow memory
//! or the log without bound.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use gossip_transport::RefusalReason;

/// At most one warning per peer address and reason this often; the next one says how many
/// refusals were not logged in between.
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Most (address, reason) pairs remembered; beyond, refusals share one entry per reason.
const MAX_TRACKED: usize = 1024;

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A UDP datagram (never answered).
    Packet,
    /// A TCP stream (answered with a refusal frame, then closed).
    Stream,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Packet => "gossip packet",
            Self::Stream => "gossip stream",
        })
    }
}

/// The rate-limited warnings and the counters of refusals, shared by the driver (datagrams) and
/// the connection tasks (streams).
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    recent: Mutex<HashMap<(IpAddr, &'static str), Window>>,
    warnings: AtomicU64,
    streams: Mutex<BTreeMap<&'static str, u64>>,
}

/// Since the last warning for one (address, reason).
#[derive(Debug, Clone, Copy)]
struct Window {
    warned_at: Instant,
    suppressed: u64,
}

impl Refusals {
    /// Record a refusal of `what` from `peer` for `reason`; `detail` says what exactly (a
    /// [`gossip_transport::DecodeError`], say). Warns unless a warning for the same address and
    /// reason was logged less than [`WARN_INTERVAL`] ago.
    pub(crate) fn refused(
        &self,
        what: Refused,
        peer: SocketAddr,
        reason: RefusalReason,
        detail: &dyn fmt::Display,
        now: Instant,
    ) {
        if what == Refused::Stream {
            *self.streams.lock().unwrap_or_else(PoisonError::into_inner).entry(reason.label()).or_default() += 1;
        }
        let Some(suppressed) = self.admit(peer.ip(), reason.label(), now) else {
            return;
        };
        self.warnings.fetch_add(1, Ordering::Relaxed);
        let hint = hint(reason);
        let reason = reason.label();
        if suppressed == 0 {
            tracing::warn!(%peer, reason, "refused a {what}: {detail} ({hint})");
        } else {
            tracing::warn!(
                %peer,
                reason,
                suppressed,
                "refused a {what}: {detail} ({hint}); {suppressed} more from this address for this reason \
                 were not logged in the last {}s",
                WARN_INTERVAL.as_secs()
            );
        }
    }

    /// Warnings logged so far.
    pub(crate) fn warnings(&self) -> u64 {
        self.warnings.load(Ordering::Relaxed)
    }

    /// Streams refused with a refusal frame, by reason.
    pub(crate) fn streams(&self) -> BTreeMap<&'static str, u64> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// `Some(refusals not logged since the last warning)` when a warning is due now.
    fn admit(&self, ip: IpAddr, reason: &'static str, now: Instant) -> Option<u64> {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = (ip, reason);
        if !recent.contains_key(&key) && recent.len() >= MAX_TRACKED {
            recent.retain(|_, window| now.saturating_duration_since(window.warned_at) < WARN_INTERVAL);
            if recent.len() >= MAX_TRACKED {
                // Full of recent entries: everyone else shares one entry per reason.
                key = (IpAddr::V6(Ipv6Addr::UNSPECIFIED), reason);
            }
        }
        match recent.get_mut(&key) {
            Some(window) if now.saturating_duration_since(window.warned_at) < WARN_INTERVAL => {
                window.suppressed += 1;
                None
            }
            Some(window) => {
                let suppressed = window.suppressed;
                *window = Window { warned_at: now, suppressed: 0 };
                Some(suppressed)
            }
            None => {
                recent.insert(key, Window { warned_at: now, suppressed: 0 });
                Some(0)
            }
        }
    }
}

/// What to check, for the operator reading the warning.
fn hint(reason: RefusalReason) -> &'static str {
    match reason {
        RefusalReason::UnsupportedVersion => "a node of an incompatible version",
        RefusalReason::LabelMismatch => "a node of another cluster, or a wrong cluster label on one side",
        RefusalReason::KeyMismatch => "a wrong encryption key on one side, or a tampered frame",
        RefusalReason::EncryptionRequired => "the peer has no encryption key and this node requires one",
        RefusalReason::EncryptionNotEnabled => "the peer encrypts and this node has no encryption key",
        RefusalReason::TooLarge => {
            "over max_unauthenticated_bytes: raise it if the cluster's push-pull state is that large"
        }
        _ => "see the reason",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_address_and_reason_per_interval() {
        let refusals = Refusals::default();
        let start = Instant::now();
        let a: SocketAddr = "10.0.0.1:7946".parse().unwrap();
        let a_other_port: SocketAddr = "10.0.0.1:50000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:7946".parse().unwrap();
        let label = RefusalReason::LabelMismatch;
        refusals.refused(Refused::Packet, a, label, &"x", start);
        refusals.refused(Refused::Stream, a_other_port, label, &"x", start);
        refusals.refused(Refused::Packet, a, RefusalReason::KeyMismatch, &"x", start);
        refusals.refused(Refused::Packet, b, label, &"x", start);
        assert_eq!(refusals.warnings(), 3);
        assert_eq!(refusals.admit(a.ip(), label.label(), start + Duration::from_secs(1)), None);
        assert_eq!(refusals.admit(a.ip(), label.label(), start + WARN_INTERVAL), Some(2));
        assert_eq!(refusals.streams(), BTreeMap::from([("label_mismatch", 1)]));
    }

    #[test]
    fn the_table_is_bounded() {
        let refusals = Refusals::default();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let peer = SocketAddr::from((std::net::Ipv4Addr::from(i), 1));
            refusals.refused(Refused::Packet, peer, RefusalReason::KeyMismatch, &"x", now);
        }
        assert!(refusals.recent.lock().unwrap().len() <= MAX_TRACKED + 1);
        assert_eq!(refusals.warnings(), MAX_TRACKED as u64 + 1);
    }
}
