//! Median with min–max of a set of measurements, and how two compare.

use serde::Serialize;

/// Median, extremes and count of a set of values (seconds, MiB, ...).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// Number of values.
    pub n: usize,
    /// Median (the mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Stat {
    /// The statistics of `values` (non-finite values ignored); `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Self { n, median, min: v[0], max: v[n - 1] })
    }

    /// `median (min–max)` with `decimals` digits.
    pub fn show(&self, decimals: usize) -> String {
        if self.n == 1 {
            format!("{:.*}", decimals, self.median)
        } else {
            format!("{:.*} ({:.*}–{:.*})", decimals, self.median, decimals, self.min, decimals, self.max)
        }
    }
}

/// `ours / theirs` of the medians, when both exist and theirs is not zero.
pub fn ratio(ours: Option<&Stat>, theirs: Option<&Stat>) -> Option<f64> {
    let (a, b) = (ours?, theirs?);
    (b.median.abs() > f64::EPSILON).then(|| a.median / b.median)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        let s = Stat::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 2.0, 1.0, 3.0));
        assert_eq!(Stat::of([1.0, 2.0, 3.0, 10.0]).unwrap().median, 2.5);
        assert!(Stat::of([]).is_none());
        assert_eq!(s.show(1), "2.0 (1.0–3.0)");
        assert_eq!(ratio(Some(&s), Stat::of([4.0]).as_ref()), Some(0.5));
    }
}
