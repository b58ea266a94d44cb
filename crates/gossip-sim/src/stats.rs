//! Summary statistics of a set of durations.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// The distribution of a set of durations: count, median, 99th percentile, extremes, mean.
///
/// Percentiles use the nearest-rank method: the p-th percentile of `n` sorted samples is the
/// sample at rank `ceil(p/100 × n)` (1-based), so it is always one of the samples; with fewer than
/// 100 samples the 99th percentile is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Distribution {
    /// Number of samples.
    pub count: usize,
    /// Smallest sample.
    #[serde(serialize_with = "secs")]
    pub min: Duration,
    /// Median (50th percentile, nearest rank).
    #[serde(serialize_with = "secs")]
    pub median: Duration,
    /// 99th percentile (nearest rank).
    #[serde(serialize_with = "secs")]
    pub p99: Duration,
    /// Largest sample.
    #[serde(serialize_with = "secs")]
    pub max: Duration,
    /// Arithmetic mean.
    #[serde(serialize_with = "secs")]
    pub mean: Duration,
}

impl Distribution {
    /// The distribution of `samples` (all zero when there are none).
    pub fn from_samples(samples: impl IntoIterator<Item = Duration>) -> Self {
        let mut v: Vec<Duration> = samples.into_iter().collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_unstable();
        let total: Duration = v.iter().sum();
        Self {
            count: v.len(),
            min: v[0],
            median: percentile(&v, 50.0),
            p99: percentile(&v, 99.0),
            max: v[v.len() - 1],
            mean: total / v.len() as u32,
        }
    }
}

/// Nearest-rank percentile of sorted, non-empty `sorted`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return write!(f, "no samples");
        }
        write!(
            f,
            "n={} median {:.3}s  p99 {:.3}s  max {:.3}s  (min {:.3}s, mean {:.3}s)",
            self.count,
            self.median.as_secs_f64(),
            self.p99.as_secs_f64(),
            self.max.as_secs_f64(),
            self.min.as_secs_f64(),
            self.mean.as_secs_f64()
        )
    }
}

/// Serialize a duration as fractional seconds.
pub(crate) fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Serialize an optional duration as fractional seconds or `null`.
pub(crate) fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn empty_is_all_zero() {
        let d = Distribution::from_samples([]);
        assert_eq!(d, Distribution::default());
        assert_eq!(d.to_string(), "no samples");
    }

    #[test]
    fn single_sample() {
        let d = Distribution::from_samples([ms(7)]);
        assert_eq!((d.count, d.min, d.median, d.p99, d.max, d.mean), (1, ms(7), ms(7), ms(7), ms(7), ms(7)));
    }

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=100 ms, shuffled.
        let samples: Vec<Duration> = (1..=100u64).map(|i| ms((i * 37) % 100 + 1)).collect();
        let d = Distribution::from_samples(samples);
        assert_eq!(d.count, 100);
        assert_eq!(d.min, ms(1));
        assert_eq!(d.median, ms(50));
        assert_eq!(d.p99, ms(99));
        assert_eq!(d.max, ms(100));
        assert_eq!(d.mean, Duration::from_micros(50_500));
    }

    #[test]
    fn small_sets_use_the_maximum_for_p99() {
        let d = Distribution::from_samples([ms(3), ms(1), ms(2), ms(10)]);
        assert_eq!(d.median, ms(2));
        assert_eq!(d.p99, ms(10));
    }
}
