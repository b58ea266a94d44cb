//! Vivaldi network coordinates, as Serf's `coordinate` package: each node keeps a position in
//! an 8-dimensional Euclidean space plus a "height" (its access-link latency), and moves it after
//! every probe so that the distance between two coordinates predicts their round-trip time.
//!
//! The algorithm and its constants are Serf's (Dabek et al., "Vivaldi: A Decentralized Network
//! Coordinate System", SIGCOMM 2004, with the height vector and the adjustment term of Ledlie et
//! al., "Network Coordinates in the Wild", NSDI 2007, and a gravity towards the origin):
//!
//! - a median filter over the last 3 RTT samples of each peer;
//! - the Vivaldi update: the error estimate moves by `ce = 0.25` of the sample's relative error,
//!   weighted by this node's share of the total error, and the coordinate moves along the unit
//!   vector from the peer by `cc = 0.25 × weight × (rtt − distance)`; the heights absorb the part
//!   of the force a flat space cannot;
//! - an adjustment term, the mean of the last 20 `rtt − raw distance` residuals halved, added to
//!   distances (it absorbs what the Euclidean part and the height cannot);
//! - gravity: a pull towards the origin of `(distance to origin / 150 s)²`, which keeps the
//!   whole system from drifting.
//!
//! An update that yields a non-finite coordinate resets the node to the origin (counted as a
//! reset). Coordinates from the network are checked (dimension, finite values) before use.

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Distances and magnitudes below this are treated as zero.
const ZERO_THRESHOLD: f64 = 1.0e-6;

/// RTT samples outside `0 ..= MAX_RTT` are refused, as Serf does.
const MAX_RTT: Duration = Duration::from_secs(10);

/// The tuning of the algorithm; [`VivaldiConfig::default`] is Serf's `DefaultConfig`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VivaldiConfig {
    /// Dimensions of the Euclidean part.
    pub(crate) dimensionality: usize,
    /// Largest error estimate, and the error of a new coordinate.
    pub(crate) error_max: f64,
    /// How fast the error estimate moves.
    pub(crate) ce: f64,
    /// How fast the coordinate moves.
    pub(crate) cc: f64,
    /// Samples in the adjustment term's window (0: no adjustment).
    pub(crate) adjustment_window: usize,
    /// Smallest height, in seconds.
    pub(crate) height_min: f64,
    /// RTT samples per peer in the median filter.
    pub(crate) latency_filter: usize,
    /// Strength of the pull towards the origin (larger: weaker), in seconds.
    pub(crate) gravity_rho: f64,
}

impl Default for VivaldiConfig {
    fn default() -> Self {
        Self {
            dimensionality: 8,
            error_max: 1.5,
            ce: 0.25,
            cc: 0.25,
            adjustment_window: 20,
            height_min: 10.0e-6,
            latency_filter: 3,
            gravity_rho: 150.0,
        }
    }
}

/// A Vivaldi network coordinate (Serf's `coordinate.Coordinate`): all values in seconds.
///
/// [`Coordinate::distance_to`] estimates the round-trip time to the node holding `other`.
#[derive(Debug, Clone, PartialEq)]
pub struct Coordinate {
    /// Position in the Euclidean part (8 dimensions for coordinates made by this crate).
    pub vec: Vec<f64>,
    /// Confidence: the estimated relative error of this coordinate's predictions (lower is
    /// better; a new coordinate starts at 1.5).
    pub error: f64,
    /// A correction added to every distance from this coordinate.
    pub adjustment: f64,
    /// The node's distance from the Euclidean space: the latency of its access link.
    pub height: f64,
}

impl Coordinate {
    /// A coordinate at the origin, with the largest error: what a node starts with.
    pub fn new() -> Self {
        Self::with_config(&VivaldiConfig::default())
    }

    pub(crate) fn with_config(config: &VivaldiConfig) -> Self {
        Self {
            vec: vec![0.0; config.dimensionality],
            error: config.error_max,
            adjustment: 0.0,
            height: config.height_min,
        }
    }

    /// The estimated round-trip time between the nodes holding `self` and `other`: the Euclidean
    /// distance plus both heights, plus both adjustments when that stays positive.
    ///
    /// Coordinates of different dimensionality are compared on the dimensions they share;
    /// a non-finite estimate is reported as zero (or [`Duration::MAX`] when infinite).
    pub fn distance_to(&self, other: &Self) -> Duration {
        let raw = self.raw_distance_to(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        let seconds = if adjusted > 0.0 { adjusted } else { raw };
        Duration::try_from_secs_f64(seconds).unwrap_or(if seconds > 0.0 { Duration::MAX } else { Duration::ZERO })
    }

    /// Whether every component is finite.
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|v| v.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    fn raw_distance_to(&self, other: &Self) -> f64 {
        magnitude(&diff(&self.vec, &other.vec)) + self.height + other.height
    }

    /// Move by `force` along the unit vector from `other` (towards it when negative).
    fn apply_force(&self, config: &VivaldiConfig, force: f64, other: &Self, rng: &mut SmallRng) -> Self {
        let mut moved = self.clone();
        let (unit, mag) = unit_vector_at(&self.vec, &other.vec, rng);
        for (v, u) in moved.vec.iter_mut().zip(&unit) {
            *v += u * force;
        }
        if mag > ZERO_THRESHOLD {
            moved.height = ((moved.height + other.height) * force / mag + moved.height).max(config.height_min);
        }
        moved
    }
}

impl Default for Coordinate {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a sample was not used; the coordinate is unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum CoordinateError {
    #[error("coordinate of {got} dimensions, expected {expected}")]
    Dimensions { got: usize, expected: usize },
    #[error("coordinate with non-finite components")]
    Invalid,
    #[error("round-trip time {0:?} outside 0 ..= 10 s")]
    Rtt(Duration),
    #[error("the update produced a non-finite coordinate; reset to the origin")]
    Reset,
}

/// This node's side of the algorithm (Serf's `coordinate.Client`).
#[derive(Debug)]
pub(crate) struct CoordinateClient {
    config: VivaldiConfig,
    coord: Coordinate,
    origin: Coordinate,
    adjustment_index: usize,
    adjustment_samples: Vec<f64>,
    latency_samples: HashMap<String, Vec<f64>>,
    resets: u64,
    rng: SmallRng,
}

impl CoordinateClient {
    /// A client at the origin; `seed` drives the random direction used when two coordinates
    /// coincide.
    pub(crate) fn new(config: VivaldiConfig, seed: u64) -> Self {
        Self {
            coord: Coordinate::with_config(&config),
            origin: Coordinate { error: 0.0, ..Coordinate::with_config(&config) },
            adjustment_index: 0,
            adjustment_samples: vec![0.0; config.adjustment_window],
            latency_samples: HashMap::new(),
            resets: 0,
            rng: SmallRng::seed_from_u64(seed),
            config,
        }
    }

    /// This node's coordinate.
    pub(crate) fn coordinate(&self) -> &Coordinate {
        &self.coord
    }

    /// Start from `coord` (restored from a snapshot), if it is usable.
    pub(crate) fn set_coordinate(&mut self, coord: Coordinate) -> Result<(), CoordinateError> {
        self.check(&coord)?;
        self.coord = coord;
        Ok(())
    }

    /// How many times an update produced a non-finite coordinate and the client reset.
    pub(crate) fn resets(&self) -> u64 {
        self.resets
    }

    /// Forget the RTT samples of a node that is gone.
    pub(crate) fn forget(&mut self, node: &str) {
        self.latency_samples.remove(node);
    }

    /// A probe of `node`, whose coordinate is `other`, took `rtt`: move; returns the new
    /// coordinate.
    pub(crate) fn update(
        &mut self,
        node: &str,
        other: &Coordinate,
        rtt: Duration,
    ) -> Result<&Coordinate, CoordinateError> {
        self.check(other)?;
        if rtt > MAX_RTT {
            return Err(CoordinateError::Rtt(rtt));
        }
        let rtt = self.latency_filter(node, rtt.as_secs_f64());
        self.update_vivaldi(other, rtt);
        self.update_adjustment(other, rtt);
        self.update_gravity();
        if !self.coord.is_valid() {
            self.resets += 1;
            self.coord = Coordinate::with_config(&self.config);
            return Err(CoordinateError::Reset);
        }
        Ok(&self.coord)
    }

    fn check(&self, other: &Coordinate) -> Result<(), CoordinateError> {
        if other.vec.len() != self.config.dimensionality {
            return Err(CoordinateError::Dimensions { got: other.vec.len(), expected: self.config.dimensionality });
        }
        if !other.is_valid() {
            return Err(CoordinateError::Invalid);
        }
        Ok(())
    }

    /// The median of the last few samples of `node`, this one included.
    fn latency_filter(&mut self, node: &str, rtt: f64) -> f64 {
        let samples = self.latency_samples.entry(node.to_owned()).or_default();
        samples.push(rtt);
        if samples.len() > self.config.latency_filter {
            samples.remove(0);
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn update_vivaldi(&mut self, other: &Coordinate, rtt: f64) {
        let c = &self.config;
        let dist = self.coord.distance_to(other).as_secs_f64();
        let rtt = rtt.max(ZERO_THRESHOLD);
        let wrongness = (dist - rtt).abs() / rtt;
        let total_error = (self.coord.error + other.error).max(ZERO_THRESHOLD);
        let weight = self.coord.error / total_error;
        self.coord.error = (c.ce * weight * wrongness + self.coord.error * (1.0 - c.ce * weight)).min(c.error_max);
        let force = c.cc * weight * (rtt - dist);
        self.coord = self.coord.apply_force(c, force, other, &mut self.rng);
    }

    fn update_adjustment(&mut self, other: &Coordinate, rtt: f64) {
        let window = self.config.adjustment_window;
        if window == 0 {
            return;
        }
        // The adjustment terms themselves do not figure in: the raw distance.
        self.adjustment_samples[self.adjustment_index] = rtt - self.coord.raw_distance_to(other);
        self.adjustment_index = (self.adjustment_index + 1) % window;
        self.coord.adjustment = self.adjustment_samples.iter().sum::<f64>() / (2.0 * window as f64);
    }

    fn update_gravity(&mut self) {
        let dist = self.origin.distance_to(&self.coord).as_secs_f64();
        let force = -(dist / self.config.gravity_rho).powi(2);
        self.coord = self.coord.apply_force(&self.config, force, &self.origin, &mut self.rng);
    }
}

fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn magnitude(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The unit vector from `b` to `a` and the distance between them; a random direction when they
/// coincide.
fn unit_vector_at(a: &[f64], b: &[f64], rng: &mut SmallRng) -> (Vec<f64>, f64) {
    let mut v = diff(a, b);
    let mag = magnitude(&v);
    if mag > ZERO_THRESHOLD {
        return (v.iter().map(|x| x / mag).collect(), mag);
    }
    for x in &mut v {
        *x = rng.random::<f64>() - 0.5;
    }
    let mag = magnitude(&v);
    if mag > ZERO_THRESHOLD {
        return (v.iter().map(|x| x / mag).collect(), 0.0);
    }
    let mut unit = vec![0.0; v.len()];
    if let Some(first) = unit.first_mut() {
        *first = 1.0;
    }
    (unit, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn distance_is_euclidean_plus_heights_plus_adjustments() {
        let a = Coordinate { vec: vec![0.0, 0.0, 0.0], error: 1.0, adjustment: 0.0, height: 0.0 };
        let b = Coordinate { vec: vec![3.0, 4.0, 0.0], error: 1.0, adjustment: 0.0, height: 0.0 };
        assert!((secs(a.distance_to(&b)) - 5.0).abs() < 1e-9);
        let b = Coordinate { height: 0.5, adjustment: 0.25, ..b };
        assert!((secs(a.distance_to(&b)) - 5.75).abs() < 1e-9);
        // A negative adjustment that would make the distance negative is ignored.
        let b = Coordinate { adjustment: -10.0, ..b };
        assert!((secs(a.distance_to(&b)) - 5.5).abs() < 1e-9);
        let bad = Coordinate { vec: vec![f64::NAN; 3], ..a.clone() };
        assert!(!bad.is_valid());
        assert_eq!(a.distance_to(&bad), Duration::ZERO);
    }

    #[test]
    fn two_nodes_settle_at_their_rtt() {
        let mut a = CoordinateClient::new(VivaldiConfig::default(), 1);
        let mut b = CoordinateClient::new(VivaldiConfig::default(), 2);
        let rtt = Duration::from_millis(20);
        for _ in 0..200 {
            let cb = b.coordinate().clone();
            a.update("b", &cb, rtt).unwrap();
            let ca = a.coordinate().clone();
            b.update("a", &ca, rtt).unwrap();
        }
        let estimate = secs(a.coordinate().distance_to(b.coordinate()));
        assert!((estimate - 0.020).abs() < 0.002, "estimate {estimate}");
        assert!(a.coordinate().error < 0.2, "{:?}", a.coordinate());
    }

    #[test]
    fn bad_samples_are_refused() {
        let mut a = CoordinateClient::new(VivaldiConfig::default(), 1);
        let wrong_dims = Coordinate { vec: vec![0.0; 3], ..Coordinate::new() };
        assert!(matches!(
            a.update("x", &wrong_dims, Duration::from_millis(1)),
            Err(CoordinateError::Dimensions { .. })
        ));
        let nan = Coordinate { height: f64::NAN, ..Coordinate::new() };
        assert_eq!(a.update("x", &nan, Duration::from_millis(1)), Err(CoordinateError::Invalid));
        assert!(matches!(a.update("x", &Coordinate::new(), Duration::from_secs(11)), Err(CoordinateError::Rtt(_))));
        assert_eq!(a.coordinate(), &Coordinate::new());
    }

    /// A synthetic network: nodes on a 2-D plane (up to 100 ms across) with access links of 1 to
    /// 10 ms; the RTT is the distance plus both access links. After a simulation in which every
    /// node updates against a random peer per round (as probes do), the coordinates predict every
    /// pair's RTT with a small relative error.
    #[test]
    fn converges_on_a_synthetic_latency_matrix() {
        let n = 25;
        let mut rng = SmallRng::seed_from_u64(42);
        let places: Vec<(f64, f64, f64)> = (0..n)
            .map(|_| (rng.random_range(0.0..0.070), rng.random_range(0.0..0.070), rng.random_range(0.001..0.010)))
            .collect();
        let truth = |i: usize, j: usize| {
            let (xi, yi, hi) = places[i];
            let (xj, yj, hj) = places[j];
            ((xi - xj).powi(2) + (yi - yj).powi(2)).sqrt() + hi + hj
        };
        let mut clients: Vec<CoordinateClient> =
            (0..n).map(|i| CoordinateClient::new(VivaldiConfig::default(), i as u64)).collect();
        for _ in 0..1000 {
            for i in 0..n {
                let j = rng.random_range(0..n);
                if i == j {
                    continue;
                }
                let other = clients[j].coordinate().clone();
                let rtt = Duration::from_secs_f64(truth(i, j));
                clients[i].update(&format!("node-{j}"), &other, rtt).unwrap();
            }
        }
        let mut total = 0.0;
        let mut worst: f64 = 0.0;
        let mut pairs = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                let estimate = secs(clients[i].coordinate().distance_to(clients[j].coordinate()));
                let error = (estimate - truth(i, j)).abs() / truth(i, j);
                total += error;
                worst = worst.max(error);
                pairs += 1.0;
            }
        }
        let average = total / pairs;
        assert!(average < 0.05, "average relative error {average:.4}, worst {worst:.4}");
        assert!(worst < 0.35, "average relative error {average:.4}, worst {worst:.4}");
        assert!(clients.iter().all(|c| c.resets() == 0));
    }
}
