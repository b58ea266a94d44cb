//! Protocol configuration: presets and validation.

use std::time::Duration;

/// Errors of [`Config::validate`]: each names the field and the rule it broke. Nothing is changed
/// when validation fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value outside its allowed range.
    #[error("{field}: {value} is invalid: {rule}")]
    Invalid {
        /// The field name, as in [`Config`].
        field: &'static str,
        /// The value given, formatted.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
}

/// Lifeguard extensions, each of which can be switched off to measure plain SWIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifeguard {
    /// Local health awareness: the maximum factor (≥ 1) by which this node stretches its probe
    /// interval and probe timeout when it misses acks and nacks. 1 turns it off. memberlist: 8.
    pub awareness_max_multiplier: u32,
    /// Dynamic suspicion: the suspicion timeout starts at its maximum and shrinks towards its
    /// minimum as independent confirmations arrive. Off: always the minimum (plain SWIM).
    pub dynamic_suspicion: bool,
    /// Buddy system: a ping to a suspect carries the suspicion so that it can refute at once.
    pub buddy: bool,
    /// Relays answer an indirect probe that failed with a nack, so that a prober can tell its own
    /// trouble from the target's.
    pub nack: bool,
    /// Count each relay's nack as an independent confirmation of a suspicion whose death is
    /// proven (the target's TCP port refused the prober's connection): the relay is alive and
    /// could not reach the target either. A silent target's nacks are not counted (a stalled
    /// process is silent to every relay at once), as memberlist never counts them; off to match
    /// memberlist everywhere.
    pub nack_confirms: bool,
    /// A suspicion whose death is proven (a refused TCP ping) needs no confirmations: it runs
    /// for its minimum timeout, and the prober suspects the moment the refusal arrives instead
    /// of waiting for its relays. Confirmations guard against an accuser that is itself slow or
    /// cut off; a refusal is an answer from the target's own host, which such an accuser does
    /// not get. Under heavy loss the relays' nacks are lost too (each crosses two lossy hops),
    /// and without this a proven death waited up to the maximum for them. Off (memberlist):
    /// proven suspicions count confirmations as silent ones do.
    pub proof_suffices: bool,
}

/// Configuration of one node's failure detector. Build it from a preset ([`Config::lan`],
/// [`Config::wan`], [`Config::local`]) and change fields; [`Config::validate`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Cluster label carried (and, with encryption, authenticated) by every packet; packets with
    /// another label are refused. At most 255 bytes.
    pub label: String,
    /// Time between two probes of this node (before health-awareness stretching). LAN: 1 s.
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking relays, at most. LAN: 500 ms. Must be less
    /// than `probe_interval`.
    pub probe_timeout: Duration,
    /// The least the direct-ack wait can adapt down to. The wait is the round-trip estimate of
    /// this node's acks (smoothed mean plus four deviations, as TCP's retransmission timer),
    /// clamped to `probe_timeout_min..=probe_timeout`; equal to `probe_timeout` keeps it fixed, as
    /// memberlist does. A short wait only asks relays (and tries TCP) sooner: a late ack still
    /// counts until the probe period ends. LAN: 100 ms.
    pub probe_timeout_min: Duration,
    /// Number of relays asked to probe indirectly after a missed ack. LAN: 3.
    pub indirect_checks: usize,
    /// Try a TCP ping when the direct ack is missed (alongside the relays).
    pub tcp_fallback_ping: bool,
    /// TCP pings per probe, at most: the first when the direct ack is missed, then one more each
    /// direct-ack wait while none has been answered or refused, each on a new connection. A
    /// killed process's host refuses each at once, but on a lossy path the SYN or the RST of
    /// one connection is lost (both cross at 30 % loss only half the time) and the kernel's
    /// own retry comes after 1 s, past the probe; separate connections are separate chances.
    /// memberlist: 1. LAN: 5.
    pub tcp_ping_attempts: u32,
    /// Time between gossip rounds. LAN: 200 ms.
    pub gossip_interval: Duration,
    /// Members sent a gossip packet each round. LAN: 3.
    pub gossip_nodes: usize,
    /// Dead members keep receiving gossip this long after they were declared dead, so that a live
    /// one can learn of it and refute. LAN: 30 s.
    pub gossip_to_dead: Duration,
    /// Suspicion timeout multiplier: the minimum timeout is
    /// `suspicion_mult × max(1, log10(n)) × suspicion_unit`. memberlist: 4.
    pub suspicion_mult: u32,
    /// The maximum suspicion timeout is `suspicion_max_mult` × the minimum. memberlist: 6.
    pub suspicion_max_mult: u32,
    /// The unit of the suspicion timeout when death is proven (the target's TCP port refused a
    /// connection: its host is up and its process gone). Then the timer only has to leave room
    /// for a refutation to travel, and with the buddy system and direct suspicion notices a
    /// refutation travels by gossip, not by probe: our presets use the gossip interval (200 ms
    /// on LAN); memberlist has one unit for all, the probe interval. See docs/protocol.md §6.
    pub suspicion_unit: Duration,
    /// The unit of the suspicion timeout when the evidence is silence (no answer, and a TCP
    /// connection that was accepted and got no answer, or no answer at all): a stalled process
    /// (a GC pause, a starved VM) looks like that, and so does a host that went away. Our
    /// presets use memberlist's unit, the probe interval (1 s on LAN: at least 4 s at n ≤ 10),
    /// so that a stall is tolerated as long as memberlist and Serf tolerate it.
    pub silent_suspicion_unit: Duration,
    /// A message is piggybacked `retransmit_mult × ceil(log10(n + 1))` times. LAN: 4.
    pub retransmit_mult: u32,
    /// Upper bound on queued broadcasts; the most-sent are dropped beyond it.
    pub max_broadcasts: usize,
    /// Period of the push-pull anti-entropy exchange, scaled up above 32 members; zero turns it
    /// off. LAN: 30 s.
    pub push_pull_interval: Duration,
    /// How often a node may try a push-pull with a random failed member, with probability
    /// failed / live (as Serf's reconnect): this is what heals a full partition, where neither
    /// side gossips to the other any more. Zero turns it off. LAN: 30 s.
    pub reconnect_interval: Duration,
    /// Dead members are removed from the table this long after they were declared dead.
    pub dead_reap: Duration,
    /// Left members are removed from the table this long after they left.
    pub left_reap: Duration,
    /// Maximum datagram size in bytes, envelope included. Default 1400.
    pub packet_budget: usize,
    /// How long a graceful leave may wait for its broadcast to go out.
    pub leave_propagate_max: Duration,
    /// Lifeguard switches.
    pub lifeguard: Lifeguard,
}

impl Config {
    /// LAN preset. memberlist's `DefaultLANConfig` values for probe interval (1 s), probe timeout
    /// (500 ms, here the upper bound of an adaptive wait of at least 100 ms), gossip (200 ms to 3
    /// nodes), 3 indirect checks, suspicion mult 4 and max mult 6, retransmit mult 4, push-pull
    /// 30 s, and memberlist's suspicion unit (the 1 s probe interval) when the evidence is
    /// silence. Ours: the 200 ms suspicion unit and relay nacks as confirmations when death is
    /// proven (see [`Config::suspicion_unit`], [`Config::silent_suspicion_unit`] and
    /// [`Lifeguard::nack_confirms`]).
    pub fn lan() -> Self {
        Self {
            label: String::new(),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            probe_timeout_min: Duration::from_millis(100),
            indirect_checks: 3,
            tcp_fallback_ping: true,
            tcp_ping_attempts: 5,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            gossip_to_dead: Duration::from_secs(30),
            suspicion_mult: 4,
            suspicion_max_mult: 6,
            suspicion_unit: Duration::from_millis(200),
            silent_suspicion_unit: Duration::from_secs(1),
            retransmit_mult: 4,
            max_broadcasts: 1024,
            push_pull_interval: Duration::from_secs(30),
            reconnect_interval: Duration::from_secs(30),
            dead_reap: Duration::from_secs(24 * 3600),
            left_reap: Duration::from_secs(24 * 3600),
            packet_budget: 1400,
            leave_propagate_max: Duration::from_secs(3),
            lifeguard: Lifeguard {
                awareness_max_multiplier: 8,
                dynamic_suspicion: true,
                buddy: true,
                nack: true,
                nack_confirms: true,
                proof_suffices: true,
            },
        }
    }

    /// WAN preset: memberlist's `DefaultWANConfig` timings (probe 5 s, timeout 3 s, gossip 500 ms
    /// to 4 nodes, suspicion mult 6, push-pull 60 s).
    pub fn wan() -> Self {
        Self {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            probe_timeout_min: Duration::from_millis(500),
            gossip_interval: Duration::from_millis(500),
            gossip_nodes: 4,
            gossip_to_dead: Duration::from_secs(60),
            suspicion_mult: 6,
            suspicion_unit: Duration::from_millis(500),
            silent_suspicion_unit: Duration::from_secs(5),
            push_pull_interval: Duration::from_secs(60),
            reconnect_interval: Duration::from_secs(60),
            leave_propagate_max: Duration::from_secs(5),
            ..Self::lan()
        }
    }

    /// Local preset (one machine, loopback): memberlist's `DefaultLocalConfig` timings (probe
    /// 1 s, timeout 200 ms, gossip 100 ms, suspicion mult 3, push-pull 15 s), with LAN's
    /// retransmit multiplier of 4 instead of 2.
    pub fn local() -> Self {
        Self {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(200),
            probe_timeout_min: Duration::from_millis(50),
            indirect_checks: 1,
            gossip_interval: Duration::from_millis(100),
            gossip_to_dead: Duration::from_secs(15),
            suspicion_mult: 3,
            suspicion_unit: Duration::from_millis(100),
            silent_suspicion_unit: Duration::from_secs(1),
            // memberlist's local config uses 2; on one machine bytes are free, and 2 sends per
            // holder lets news about a joiner die out now and then in a small cluster.
            retransmit_mult: 4,
            push_pull_interval: Duration::from_secs(15),
            reconnect_interval: Duration::from_secs(10),
            leave_propagate_max: Duration::from_secs(1),
            ..Self::lan()
        }
    }

    /// memberlist's LAN configuration exactly (Serf's default), for like-for-like comparisons:
    /// the LAN timings with a fixed probe timeout, the suspicion unit set to the probe interval
    /// whatever the evidence, relay nacks not counted as confirmations, one TCP ping per probe,
    /// and a proven death confirmed like any other suspicion.
    pub fn memberlist_lan() -> Self {
        let mut config = Self::lan();
        config.probe_timeout_min = config.probe_timeout;
        config.suspicion_unit = config.probe_interval;
        config.silent_suspicion_unit = config.probe_interval;
        config.tcp_ping_attempts = 1;
        config.lifeguard.nack_confirms = false;
        config.lifeguard.proof_suffices = false;
        config
    }

    /// SWIM as in the 2002 paper: no Lifeguard, fixed suspicion timeout.
    pub fn swim_paper() -> Self {
        let mut config = Self::memberlist_lan();
        config.lifeguard = Lifeguard {
            awareness_max_multiplier: 1,
            dynamic_suspicion: false,
            buddy: false,
            nack: false,
            nack_confirms: false,
            proof_suffices: false,
        };
        config
    }

    /// A preset by name: `lan`, `wan`, `local`, `memberlist-lan` or `swim-paper`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "lan" => Some(Self::lan()),
            "wan" => Some(Self::wan()),
            "local" => Some(Self::local()),
            "memberlist-lan" => Some(Self::memberlist_lan()),
            "swim-paper" => Some(Self::swim_paper()),
            _ => None,
        }
    }

    /// Check every field; the error names the first field that breaks a rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(field: &'static str, value: impl std::fmt::Debug, rule: &'static str) -> ConfigError {
            ConfigError::Invalid { field, value: format!("{value:?}"), rule }
        }
        let nonzero = |field, d: Duration| {
            if d.is_zero() {
                Err(invalid(field, d, "must be greater than zero"))
            } else {
                Ok(())
            }
        };
        if self.label.len() > 255 {
            return Err(invalid("label", &self.label, "must be at most 255 bytes"));
        }
        nonzero("probe_interval", self.probe_interval)?;
        nonzero("probe_timeout", self.probe_timeout)?;
        if self.probe_timeout >= self.probe_interval {
            return Err(invalid("probe_timeout", self.probe_timeout, "must be less than probe_interval"));
        }
        nonzero("probe_timeout_min", self.probe_timeout_min)?;
        if self.probe_timeout_min > self.probe_timeout {
            return Err(invalid("probe_timeout_min", self.probe_timeout_min, "must be at most probe_timeout"));
        }
        nonzero("gossip_interval", self.gossip_interval)?;
        nonzero("suspicion_unit", self.suspicion_unit)?;
        nonzero("silent_suspicion_unit", self.silent_suspicion_unit)?;
        if self.gossip_nodes == 0 {
            return Err(invalid("gossip_nodes", self.gossip_nodes, "must be at least 1"));
        }
        if self.suspicion_mult == 0 {
            return Err(invalid("suspicion_mult", self.suspicion_mult, "must be at least 1"));
        }
        if self.suspicion_max_mult == 0 {
            return Err(invalid("suspicion_max_mult", self.suspicion_max_mult, "must be at least 1"));
        }
        if self.tcp_ping_attempts == 0 {
            return Err(invalid("tcp_ping_attempts", self.tcp_ping_attempts, "must be at least 1"));
        }
        if self.retransmit_mult == 0 {
            return Err(invalid("retransmit_mult", self.retransmit_mult, "must be at least 1"));
        }
        if self.max_broadcasts == 0 {
            return Err(invalid("max_broadcasts", self.max_broadcasts, "must be at least 1"));
        }
        if !(512..=65_000).contains(&self.packet_budget) {
            return Err(invalid("packet_budget", self.packet_budget, "must be between 512 and 65000 bytes"));
        }
        if self.lifeguard.awareness_max_multiplier == 0 {
            return Err(invalid(
                "lifeguard.awareness_max_multiplier",
                self.lifeguard.awareness_max_multiplier,
                "must be at least 1 (1 turns local health awareness off)",
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::lan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for name in ["lan", "wan", "local", "memberlist-lan", "swim-paper"] {
            Config::preset(name).unwrap().validate().unwrap();
        }
        assert!(Config::preset("nope").is_none());
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = Config::lan();
        c.probe_timeout = Duration::from_secs(2);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("probe_timeout") && err.contains("less than probe_interval"), "{err}");
        let mut c = Config::lan();
        c.gossip_nodes = 0;
        assert!(c.validate().unwrap_err().to_string().starts_with("gossip_nodes"));
        let mut c = Config::lan();
        c.probe_timeout_min = Duration::from_millis(600);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("probe_timeout_min") && err.contains("at most probe_timeout"), "{err}");
    }
}
