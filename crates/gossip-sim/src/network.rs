//! The network model: latency, loss, duplication, stream timeouts and partitions.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::queue::Nanos;

/// How long a message takes from one node to another, drawn independently for every datagram and
/// every stream frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub enum Latency {
    /// Uniform between `min` and `max` (inclusive of `min`).
    Uniform {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
    /// Log-normal: `median × e^(sigma × z)` for a standard normal `z`, clamped to `max`. A long
    /// right tail, as on a busy network; `sigma` 0.5 puts the 99th percentile at about 3.2 ×
    /// the median.
    LogNormal {
        /// The median delay.
        median: Duration,
        /// Shape: the standard deviation of the delay's logarithm.
        sigma: f64,
        /// Upper clamp.
        max: Duration,
    },
}

impl Latency {
    /// A LAN: uniform 0.2–1 ms.
    pub const LAN: Self = Self::Uniform { min: Duration::from_micros(200), max: Duration::from_millis(1) };

    /// Draw one delay, in nanoseconds.
    pub(crate) fn sample(&self, rng: &mut ChaCha8Rng) -> Nanos {
        match *self {
            Self::Uniform { min, max } => {
                let (min, max) = (nanos(min), nanos(max));
                if max <= min {
                    min
                } else {
                    rng.random_range(min..=max)
                }
            }
            Self::LogNormal { median, sigma, max } => {
                let z = standard_normal(rng);
                let d = nanos(median) as f64 * (sigma * z).exp();
                (d as Nanos).min(nanos(max))
            }
        }
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::LAN
    }
}

/// A standard normal draw (Box–Muller; one of the pair is discarded to keep the draw count fixed).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    // `1 - u` keeps the argument of `ln` in (0, 1].
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Everything about the network that is not a fault injected at a given time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkModel {
    /// One-way delay of datagrams and stream frames.
    pub latency: Latency,
    /// Probability that a datagram is lost, independently of every other (0 to 1). Streams are
    /// not lossy.
    pub loss: f64,
    /// Probability that a delivered datagram arrives twice (the copy with its own delay). Off by
    /// default.
    pub duplicate: f64,
    /// How long a stream to a crashed, paused or unreachable node takes to fail.
    pub stream_timeout: Duration,
    /// A crash is a process that died on a host that is still up (SIGKILL, a panic, the OOM
    /// killer): its host refuses a stream to it after one latency, as a TCP RST, instead of
    /// letting it time out. Off by default: a crash takes the whole host away.
    pub crash_refuses_streams: bool,
    /// Datagrams held for a paused node (its socket buffer); more are dropped.
    pub pause_buffer: usize,
    /// A refused connection's SYN and its RST are each lost with probability
    /// [`NetworkModel::loss`], as on a lossy wire; a refusal so lost times out like a silent
    /// host's (the kernel's first SYN retry comes after 1 s, past a probe's wait). Off by
    /// default: streams are lossless, refusals included.
    pub lossy_refusals: bool,
    /// Streams to live nodes cross the lossy wire as TCP does: the handshake's SYN and SYN-ACK
    /// are each lost with probability [`NetworkModel::loss`] and retried after 1 s, 2 s, 4 s...
    /// (Linux's initial retransmission timeout), the request and the answer each after 200 ms,
    /// 400 ms... (its minimum); an exchange whose retries take past
    /// [`NetworkModel::stream_timeout`] times out. So a TCP ping to a live member over a lossy
    /// path often misses its probe, as on real links. Off by default: streams are lossless.
    pub lossy_streams: bool,
    /// One-way loss: `(node, p)` loses each datagram `node` sends with probability `p`, on top
    /// of [`NetworkModel::loss`] (what it receives is untouched). Empty by default.
    pub egress_loss: Vec<(usize, f64)>,
}

impl Default for NetworkModel {
    fn default() -> Self {
        Self {
            latency: Latency::LAN,
            loss: 0.0,
            duplicate: 0.0,
            stream_timeout: Duration::from_secs(1),
            crash_refuses_streams: false,
            pause_buffer: 2000,
            egress_loss: Vec::new(),
            lossy_refusals: false,
            lossy_streams: false,
        }
    }
}

impl NetworkModel {
    /// Draw whether one datagram is lost.
    pub(crate) fn lost(&self, rng: &mut ChaCha8Rng) -> bool {
        self.loss > 0.0 && rng.random::<f64>() < self.loss
    }

    /// Draw whether one datagram `from` sends is lost to its one-way loss (no draw when it has
    /// none, so runs without one-way loss draw exactly as before).
    pub(crate) fn egress_lost(&self, from: usize, rng: &mut ChaCha8Rng) -> bool {
        self.egress_loss.iter().find(|(n, _)| *n == from).is_some_and(|&(_, p)| p > 0.0 && rng.random::<f64>() < p)
    }

    /// Draw whether a refusal is lost ([`NetworkModel::lossy_refusals`]; no draw when off).
    pub(crate) fn refusal_lost(&self, rng: &mut ChaCha8Rng) -> bool {
        self.lossy_refusals && self.loss > 0.0 && (rng.random::<f64>() < self.loss || rng.random::<f64>() < self.loss)
    }

    /// Draw the time a stream exchange with a live node loses to TCP retransmissions
    /// ([`NetworkModel::lossy_streams`]; zero and no draw when off).
    pub(crate) fn stream_retransmissions(&self, rng: &mut ChaCha8Rng) -> Duration {
        if !self.lossy_streams || self.loss <= 0.0 {
            return Duration::ZERO;
        }
        let mut lost = || rng.random::<f64>() < self.loss;
        let limit = Duration::from_secs(120);
        let mut delay = Duration::ZERO;
        // The handshake: SYN and SYN-ACK both across, retried on the SYN timer.
        let mut rto = Duration::from_secs(1);
        while (lost() || lost()) && delay < limit {
            delay += rto;
            rto *= 2;
        }
        // The request, then the answer, each retransmitted on the data timer.
        for _ in 0..2 {
            let mut rto = Duration::from_millis(200);
            while lost() && delay < limit {
                delay += rto;
                rto *= 2;
            }
        }
        delay
    }

    /// Draw whether one datagram is duplicated.
    pub(crate) fn duplicated(&self, rng: &mut ChaCha8Rng) -> bool {
        self.duplicate > 0.0 && rng.random::<f64>() < self.duplicate
    }
}

/// A partition: no datagram or stream crosses between side `a` and side `b` from `from` until
/// `until`. Nodes in neither side are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// One side (node indexes).
    pub a: Vec<usize>,
    /// The other side (node indexes).
    pub b: Vec<usize>,
    /// Start (virtual time since the start of the simulation).
    pub from: Duration,
    /// End.
    pub until: Duration,
}

/// The partitions in force over a run, in a form that answers "is this link cut now?" in time
/// proportional to the number of partitions (usually zero or one).
#[derive(Debug, Default)]
pub(crate) struct Partitions {
    windows: Vec<PartitionWindow>,
}

#[derive(Debug)]
struct PartitionWindow {
    /// Per node: 0 = neither side, 1 = side a, 2 = side b.
    side: Vec<u8>,
    from: Nanos,
    until: Nanos,
}

impl Partitions {
    /// Add a partition over a cluster of `nodes` nodes. Nodes listed on both sides are treated as
    /// side `a`.
    pub(crate) fn add(&mut self, nodes: usize, partition: &Partition) {
        let mut side = vec![0u8; nodes];
        for &i in &partition.b {
            if let Some(s) = side.get_mut(i) {
                *s = 2;
            }
        }
        for &i in &partition.a {
            if let Some(s) = side.get_mut(i) {
                *s = 1;
            }
        }
        self.windows.push(PartitionWindow { side, from: nanos(partition.from), until: nanos(partition.until) });
    }

    /// Whether the link between `x` and `y` is cut at `at`.
    pub(crate) fn cut(&self, x: usize, y: usize, at: Nanos) -> bool {
        self.windows.iter().any(|w| {
            at >= w.from && at < w.until && {
                let (sx, sy) = (w.side[x], w.side[y]);
                sx != 0 && sy != 0 && sx != sy
            }
        })
    }

    /// Whether `node` is on either side of a partition that is active at `at` or ended less than
    /// `grace` before it.
    pub(crate) fn involves(&self, node: usize, at: Nanos, grace: Nanos) -> bool {
        self.windows.iter().any(|w| w.side[node] != 0 && at >= w.from && at < w.until.saturating_add(grace))
    }
}

/// A duration in nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn uniform_latency_stays_in_range_and_spreads() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let lat = Latency::LAN;
        let samples: Vec<Nanos> = (0..10_000).map(|_| lat.sample(&mut rng)).collect();
        assert!(samples.iter().all(|&s| (200_000..=1_000_000).contains(&s)));
        let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
        assert!((mean - 600_000.0).abs() < 20_000.0, "mean {mean}");
    }

    #[test]
    fn degenerate_uniform_is_constant() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let lat = Latency::Uniform { min: Duration::from_millis(3), max: Duration::from_millis(3) };
        assert_eq!(lat.sample(&mut rng), 3_000_000);
    }

    #[test]
    fn log_normal_has_its_median_and_is_clamped() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let lat = Latency::LogNormal { median: Duration::from_millis(1), sigma: 0.5, max: Duration::from_millis(4) };
        let mut samples: Vec<Nanos> = (0..20_001).map(|_| lat.sample(&mut rng)).collect();
        samples.sort_unstable();
        let median = samples[samples.len() / 2] as f64;
        assert!((median - 1e6).abs() < 5e4, "median {median}");
        assert_eq!(*samples.last().unwrap(), 4_000_000);
    }

    #[test]
    fn loss_rate_is_respected() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let net = NetworkModel { loss: 0.1, ..NetworkModel::default() };
        let lost = (0..100_000).filter(|_| net.lost(&mut rng)).count();
        assert!((9_000..11_000).contains(&lost), "{lost}");
        let none = NetworkModel::default();
        assert!((0..1000).all(|_| !none.lost(&mut rng) && !none.duplicated(&mut rng)));
    }

    #[test]
    fn a_refusal_is_lost_with_its_syn_or_its_rst() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let net = NetworkModel { loss: 0.3, lossy_refusals: true, ..NetworkModel::default() };
        // 1 - 0.7² = 0.51.
        let lost = (0..100_000).filter(|_| net.refusal_lost(&mut rng)).count();
        assert!((49_500..52_500).contains(&lost), "{lost}");
        let off = NetworkModel { loss: 0.3, ..NetworkModel::default() };
        assert!((0..1000).all(|_| !off.refusal_lost(&mut rng)));
    }

    #[test]
    fn lossy_streams_lose_time_to_retransmissions() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let net = NetworkModel { loss: 0.3, lossy_streams: true, ..NetworkModel::default() };
        let delays: Vec<Duration> = (0..100_000).map(|_| net.stream_retransmissions(&mut rng)).collect();
        // Nothing lost in the four packets: 0.7^4 = 0.24.
        let clean = delays.iter().filter(|d| d.is_zero()).count() as f64 / 1e5;
        assert!((clean - 0.24).abs() < 0.01, "{clean}");
        // A lost SYN or SYN-ACK (0.51) costs at least the 1 s SYN timer; a few more exchanges
        // get there by data retransmissions alone (200 + 400 + 800 ms: three losses in a row).
        let slow = delays.iter().filter(|d| **d >= Duration::from_secs(1)).count() as f64 / 1e5;
        assert!((0.51..0.56).contains(&slow), "{slow}");
        let off = NetworkModel { loss: 0.3, ..NetworkModel::default() };
        assert!((0..1000).all(|_| off.stream_retransmissions(&mut rng).is_zero()));
    }

    #[test]
    fn one_way_loss_hits_only_its_sender() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let net = NetworkModel { egress_loss: vec![(1, 0.5)], ..NetworkModel::default() };
        let lost = (0..100_000).filter(|_| net.egress_lost(1, &mut rng)).count();
        assert!((48_000..52_000).contains(&lost), "{lost}");
        assert!((0..1000).all(|_| !net.egress_lost(0, &mut rng) && !net.egress_lost(2, &mut rng)));
    }

    #[test]
    fn partitions_cut_only_across_sides_and_only_in_their_window() {
        let mut p = Partitions::default();
        p.add(
            6,
            &Partition { a: vec![0, 1], b: vec![2, 3], from: Duration::from_secs(10), until: Duration::from_secs(20) },
        );
        let s = 1_000_000_000;
        assert!(p.cut(0, 2, 10 * s));
        assert!(p.cut(3, 1, 15 * s));
        assert!(!p.cut(0, 1, 15 * s), "same side");
        assert!(!p.cut(0, 4, 15 * s), "node 4 is in neither side");
        assert!(!p.cut(0, 2, 9 * s), "before");
        assert!(!p.cut(0, 2, 20 * s), "after (end is exclusive)");
        assert!(p.involves(0, 25 * s, 10 * s));
        assert!(!p.involves(0, 31 * s, 10 * s));
        assert!(!p.involves(5, 15 * s, 10 * s));
    }
}
