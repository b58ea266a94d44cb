//! State of probes in flight: this node's own probe and the indirect probes it relays.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use membership::Name;

/// This node's current probe of one member.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub(crate) seq: u32,
    pub(crate) target: Name,
    pub(crate) target_addr: SocketAddr,
    pub(crate) phase: ProbePhase,
    /// When the direct ack is given up on and relays are asked.
    pub(crate) indirect_at: Instant,
    /// When the probe ends (the end of the probe period).
    pub(crate) ends_at: Instant,
    /// Relays asked, by address, with their names.
    pub(crate) relays: Vec<(Name, SocketAddr)>,
    /// Relays that answered with a nack.
    pub(crate) nacks: BTreeSet<Name>,
    /// The TCP fallback pings, all together.
    pub(crate) tcp: TcpPing,
    /// Their streams still open.
    pub(crate) tcp_streams: Vec<u64>,
    /// TCP pings sent so far.
    pub(crate) tcp_sent: u32,
    /// When the next TCP ping goes out if none has been answered or refused by then.
    pub(crate) next_tcp: Option<Instant>,
    /// The direct-ack wait of this probe (stretched by local health): the spacing of the TCP
    /// pings.
    pub(crate) wait: Duration,
    /// When the ping went out, for the round-trip time.
    pub(crate) sent_at: Instant,
}

/// Where the TCP fallback pings of a probe stand, all together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpPing {
    /// Not sent (the probe is still direct, or the fallback is off).
    NotSent,
    /// Out (one or more), none refused yet.
    Pending,
    /// A connection was refused: the target's process is gone (proof of death).
    Refused,
    /// Every one sent failed otherwise (no answer in time, closed, ...) and no more will be
    /// sent: silence.
    Failed,
}

impl TcpPing {
    /// Whether it is over without an ack (or was never sent).
    pub(crate) fn is_settled(self) -> bool {
        !matches!(self, Self::Pending)
    }
}

/// Where a probe stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbePhase {
    /// Waiting for the direct ack.
    Direct,
    /// Relays asked; waiting for any ack until the period ends.
    Indirect,
    /// An ack arrived; nothing more to do.
    Acked,
}

/// An indirect probe this node runs for another node.
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    pub(crate) requester: SocketAddr,
    pub(crate) requester_seq: u32,
    pub(crate) want_nack: bool,
    pub(crate) deadline: Instant,
}

/// Local health awareness (Lifeguard): a score in `0..max` that stretches this node's probe
/// interval and timeout by `score + 1` when it misses acks and nacks, and relaxes on success.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Awareness {
    score: u32,
    max: u32,
}

impl Awareness {
    pub(crate) fn new(max_multiplier: u32) -> Self {
        Self { score: 0, max: max_multiplier.max(1) }
    }

    pub(crate) fn apply(&mut self, delta: i32) {
        let s = i64::from(self.score) + i64::from(delta);
        self.score = s.clamp(0, i64::from(self.max - 1)) as u32;
    }

    pub(crate) fn multiplier(self) -> u32 {
        self.score + 1
    }
}

/// Round-trip estimate of this node's direct acks, as TCP's retransmission timer (RFC 6298):
/// a smoothed mean and mean deviation, and a timeout of the mean plus four deviations, clamped.
/// Before the first sample the timeout is the upper bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RttEstimate {
    /// Smoothed round-trip time and its mean deviation, once there is a sample.
    smoothed: Option<(Duration, Duration)>,
    min: Duration,
    max: Duration,
}

impl RttEstimate {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self { smoothed: None, min, max: max.max(min) }
    }

    /// Take in one round trip (late acks too, so that a slow spell raises the estimate).
    pub(crate) fn sample(&mut self, rtt: Duration) {
        // An ack later than the bound says only "at least the bound": cap it, so that one stall
        // does not keep the estimate up for long after.
        let rtt = rtt.min(self.max);
        self.smoothed = Some(match self.smoothed {
            None => (rtt, rtt / 2),
            Some((srtt, dev)) => {
                let err = rtt.abs_diff(srtt);
                (srtt * 7 / 8 + rtt / 8, dev * 3 / 4 + err / 4)
            }
        });
    }

    /// How long to wait for a direct ack.
    pub(crate) fn timeout(&self) -> Duration {
        match self.smoothed {
            None => self.max,
            Some((srtt, dev)) => (srtt + dev * 4).clamp(self.min, self.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_estimate_adapts_within_bounds() {
        let ms = Duration::from_millis;
        let mut e = RttEstimate::new(ms(100), ms(500));
        assert_eq!(e.timeout(), ms(500), "no sample: the upper bound");
        for _ in 0..20 {
            e.sample(ms(1));
        }
        assert_eq!(e.timeout(), ms(100), "a fast network: the lower bound");
        e.sample(ms(2_000));
        assert_eq!(e.timeout(), ms(500), "one stall: back to the upper bound at once");
        for _ in 0..40 {
            e.sample(ms(1));
        }
        assert_eq!(e.timeout(), ms(100), "and down again once acks are fast");
        for _ in 0..40 {
            e.sample(ms(200));
        }
        let t = e.timeout();
        assert!(t > ms(200) && t < ms(250), "a steady 200 ms: a little above it, {t:?}");
        let mut fixed = RttEstimate::new(ms(500), ms(500));
        fixed.sample(ms(1));
        assert_eq!(fixed.timeout(), ms(500), "min = max: fixed");
    }

    #[test]
    fn awareness_is_bounded() {
        let mut a = Awareness::new(8);
        assert_eq!(a.multiplier(), 1);
        a.apply(3);
        assert_eq!(a.multiplier(), 4);
        a.apply(100);
        assert_eq!(a.multiplier(), 8);
        a.apply(-100);
        assert_eq!(a.multiplier(), 1);
        let mut off = Awareness::new(1);
        off.apply(5);
        assert_eq!(off.multiplier(), 1);
    }
}
