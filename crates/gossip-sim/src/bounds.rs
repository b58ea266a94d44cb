//! Timing bounds derived from a protocol configuration, as the protocol documents them. Tests
//! and reports compare what the simulation measured against these.

use std::time::Duration;

/// `max(1, log10(n))`, the node-count scale of the suspicion timeout.
pub fn node_scale(n: usize) -> f64 {
    (n.max(1) as f64).log10().max(1.0)
}

/// The minimum suspicion timeout when death is proven (the target refused a TCP connection):
/// `suspicion_mult × max(1, log10 n) × suspicion_unit`.
pub fn min_suspicion_timeout(config: &swim::Config, n: usize) -> Duration {
    config.suspicion_unit.mul_f64(f64::from(config.suspicion_mult) * node_scale(n))
}

/// The maximum suspicion timeout when death is proven: `suspicion_max_mult ×`
/// [`min_suspicion_timeout`]. With dynamic suspicion off, the timeout is always the minimum, so
/// this is a (loose) upper bound too.
pub fn max_proven_suspicion_timeout(config: &swim::Config, n: usize) -> Duration {
    min_suspicion_timeout(config, n) * config.suspicion_max_mult
}

/// The minimum suspicion timeout when the evidence is silence (a stalled process, a host gone):
/// `suspicion_mult × max(1, log10 n) × silent_suspicion_unit`.
pub fn min_silent_suspicion_timeout(config: &swim::Config, n: usize) -> Duration {
    config.silent_suspicion_unit.mul_f64(f64::from(config.suspicion_mult) * node_scale(n))
}

/// The longest any suspicion can last, whatever it rests on: `suspicion_max_mult ×` the larger
/// of [`min_suspicion_timeout`] and [`min_silent_suspicion_timeout`].
pub fn max_suspicion_timeout(config: &swim::Config, n: usize) -> Duration {
    min_suspicion_timeout(config, n).max(min_silent_suspicion_timeout(config, n)) * config.suspicion_max_mult
}

/// Rounds of gossip a broadcast rides on: `retransmit_mult × ceil(log10(n + 1))`.
pub fn retransmit_limit(config: &swim::Config, n: usize) -> u32 {
    config.retransmit_mult * ((n as f64 + 1.0).log10().ceil() as u32).max(1)
}

/// Time for a broadcast to have been piggybacked its full number of times from one node:
/// [`retransmit_limit`] gossip intervals.
pub fn dissemination_time(config: &swim::Config, n: usize) -> Duration {
    config.gossip_interval * retransmit_limit(config, n)
}

/// The push-pull period of a node that sees `n` live members: `push_pull_interval`, scaled as
/// memberlist does above 32 members by `ceil(log2(n) − log2(32)) + 1`.
pub fn push_pull_period(config: &swim::Config, n: usize) -> Duration {
    let n = n as f64;
    if n <= 32.0 {
        config.push_pull_interval
    } else {
        config.push_pull_interval.mul_f64((n.log2() - 32f64.log2()).ceil() + 1.0)
    }
}

/// An upper bound on the time for every live node of an `n`-node cluster without loss to learn
/// of a crash, whatever kind (a host gone is silent: its suspicion is the longest), from the
/// configuration alone:
///
/// ```text
///   first_probe_rounds × probe_interval   some node probes the crashed one
/// + probe_interval                         its direct and indirect probes fail
/// + max suspicion timeout                  (no confirmations needed)
/// + dissemination time                     the `dead` broadcast reaches everyone
/// ```
///
/// `first_probe_rounds` covers the wait until somebody probes the crashed node: with `n − 1`
/// nodes each probing one member per interval in a shuffled round-robin, the chance that nobody
/// probes a given member within `k` intervals is about `e^(−k)`; 10 rounds is a 1-in-20,000
/// event.
pub fn crash_detection_bound(config: &swim::Config, n: usize, first_probe_rounds: u32) -> Duration {
    config.probe_interval * first_probe_rounds
        + config.probe_interval
        + max_suspicion_timeout(config, n)
        + dissemination_time(config, n)
}

/// As [`crash_detection_bound`] for a process killed on a live host (its TCP port refuses, so
/// death is proven and the suspicion is the short one).
pub fn process_crash_detection_bound(config: &swim::Config, n: usize, first_probe_rounds: u32) -> Duration {
    config.probe_interval * first_probe_rounds
        + config.probe_interval
        + max_proven_suspicion_timeout(config, n)
        + dissemination_time(config, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_numbers() {
        let c = swim::Config::lan();
        // 4 × max(1, log10 10) × 200 ms = 800 ms; at 100 nodes twice that.
        assert_eq!(min_suspicion_timeout(&c, 10), Duration::from_millis(800));
        assert_eq!(min_suspicion_timeout(&c, 100), Duration::from_millis(1600));
        assert_eq!(min_suspicion_timeout(&c, 3), Duration::from_millis(800));
        assert_eq!(max_proven_suspicion_timeout(&c, 100), Duration::from_millis(9600));
        // Silence counts in probe intervals, as memberlist: 4 × 2 × 1 s, six times that at most.
        assert_eq!(min_silent_suspicion_timeout(&c, 100), Duration::from_secs(8));
        assert_eq!(max_suspicion_timeout(&c, 100), Duration::from_secs(48));
        assert_eq!(retransmit_limit(&c, 100), 12);
        assert_eq!(dissemination_time(&c, 100), Duration::from_millis(2400));
        assert_eq!(process_crash_detection_bound(&c, 100, 10), Duration::from_millis(11_000 + 9_600 + 2_400));
        assert_eq!(crash_detection_bound(&c, 100, 10), Duration::from_millis(11_000 + 48_000 + 2_400));
        assert_eq!(push_pull_period(&c, 32), Duration::from_secs(30));
        assert_eq!(push_pull_period(&c, 100), Duration::from_secs(90));
        assert_eq!(push_pull_period(&c, 1000), Duration::from_secs(180));
    }

    #[test]
    fn memberlist_lan_uses_the_probe_interval_as_unit() {
        let c = swim::Config::memberlist_lan();
        assert_eq!(max_suspicion_timeout(&c, 100), Duration::from_secs(48));
    }
}
