//! Consul's DNS interface (port 8600): `<service>.service.consul`, `<node>.node.consul` and
//! the rest of Consul's names, over UDP and TCP, answered from the local agent's registry.
//!
//! - [`answer`](answer::answer) is the answering logic, a pure function of the question,
//!   the [`Registry`](service_registry::Registry), the [`DnsConfig`] and a random number generator (tested without
//!   sockets); [`Response::fit`](answer::Response::fit) trims a response to one UDP or
//!   TCP message as Consul does.
//! - [`server`] is the transport: one UDP socket and one TCP listener on the same address,
//!   with [`hickory_proto`]'s message types. It does not use `hickory-server`'s `Server`:
//!   that one spawns a task per UDP packet and per TCP connection without a bound, answers
//!   undecodable packets with FORMERR without a way to count them, and logs every query at
//!   `info`; here a malformed packet is counted and dropped, the UDP socket is served by one
//!   task, TCP connections are capped and closed when idle.
//!
//! # Staleness
//!
//! Answers come from the registry as applied on this agent ([`View::read`]), without asking
//! the leader: DNS keeps answering while the servers elect a leader, or while this server is
//! cut off from them (Consul's `allow_stale = true`). The answers are as old as this agent's
//! last contact with the leader ([`View::last_contact`]): 0 on the leader and in `-dev`, a
//! replication round trip on a follower, the time since the leader was lost during an
//! election. That age is bounded by `max_stale` (Consul's `dns_config.max_stale`): past it
//! the agent first waits (up to [`Limits::consistent_timeout`]) for a read barrier through
//! the leader ([`View::consistent`], Consul's "re-request without stale"), and answers
//! SERVFAIL if there is none. Consul's default `max_stale` (87600h) is kept: by default DNS
//! never stops answering for want of a leader.

pub(crate) mod answer;
pub(crate) mod server;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;

use crate::store::{BoxFuture, RegistryRead, Store};

pub(crate) use server::{DnsServer, DnsStats, Limits};

/// The DNS interface's settings: Consul's `-domain` and `dns_config` fields, with Consul's
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DnsConfig {
    domain: Name,
    domain_labels: Vec<String>,
    /// This agent's datacenter: names may give it (`.service.dc1.consul`); any other is
    /// unknown (NXDOMAIN).
    pub(crate) datacenter: String,
    /// TTL of node, address and NS records, seconds (`dns_config.node_ttl`, default 0).
    pub(crate) node_ttl: u32,
    /// TTLs of service records by service name, seconds (`dns_config.service_ttl`): an exact
    /// name, or a prefix ending with `*` (`"*"` matches every service); the exact name wins,
    /// then the longest prefix; default 0.
    pub(crate) service_ttl: BTreeMap<String, u32>,
    /// Answers per UDP reply to a query without EDNS (`dns_config.udp_answer_limit`,
    /// default 3, never above 8).
    pub(crate) udp_answer_limit: usize,
    /// A/AAAA answers of a service lookup, UDP and TCP (`dns_config.a_record_limit`; 0, the
    /// default, means no limit).
    pub(crate) a_record_limit: usize,
    /// Only instances whose checks all pass (`dns_config.only_passing`, default false:
    /// warning instances are answered too, critical ones never).
    pub(crate) only_passing: bool,
    /// Set the TC bit when answers were dropped to fit a UDP reply
    /// (`dns_config.enable_truncate`, default false).
    pub(crate) enable_truncate: bool,
    /// Answer from the local state (`dns_config.allow_stale`, default true).
    pub(crate) allow_stale: bool,
    /// How old the local state may be before a read barrier is needed
    /// (`dns_config.max_stale`, default 87600h).
    pub(crate) max_stale: Duration,
    /// The SOA's timers (`dns_config.soa`).
    pub(crate) soa: SoaConfig,
}

/// The SOA record's timers, seconds (Consul's `dns_config.soa` and its defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SoaConfig {
    /// `refresh`, default 3600.
    pub(crate) refresh: u32,
    /// `retry`, default 600.
    pub(crate) retry: u32,
    /// `expire`, default 86400.
    pub(crate) expire: u32,
    /// `min_ttl` (also the SOA record's own TTL, the negative-caching time), default 0.
    pub(crate) min_ttl: u32,
}

impl Default for SoaConfig {
    fn default() -> Self {
        Self { refresh: 3600, retry: 600, expire: 86400, min_ttl: 0 }
    }
}

/// Consul's default domain.
pub(crate) const DEFAULT_DOMAIN: &str = "consul.";

impl DnsConfig {
    /// Consul's defaults for `datacenter`, under `domain` (e.g. `consul.`; the trailing dot
    /// is optional, letter case does not matter). Fails on a domain that is not a DNS name.
    pub(crate) fn new(domain: &str, datacenter: &str) -> Result<Self, String> {
        let mut name = Name::from_ascii(domain.trim())
            .map_err(|e| format!("{domain:?} is not a domain name: {e}"))?
            .to_lowercase();
        name.set_fqdn(true);
        if name.is_root() {
            return Err(format!("{domain:?} is not a domain name: it is the root"));
        }
        let domain_labels = name.iter().map(|l| String::from_utf8_lossy(l).to_ascii_lowercase()).collect();
        Ok(Self {
            domain: name,
            domain_labels,
            datacenter: datacenter.to_ascii_lowercase(),
            node_ttl: 0,
            service_ttl: BTreeMap::new(),
            udp_answer_limit: 3,
            a_record_limit: 0,
            only_passing: false,
            enable_truncate: false,
            allow_stale: true,
            max_stale: Duration::from_secs(87_600 * 3600),
            soa: SoaConfig::default(),
        })
    }

    /// The domain, lowercase, fully qualified.
    pub(crate) fn domain_name(&self) -> Name {
        self.domain.clone()
    }

    /// The domain's labels, lowercase.
    pub(crate) fn domain_labels(&self) -> &[String] {
        &self.domain_labels
    }

    /// The TTL of `service`'s records (Consul's `GetTTLForService`): the exact name, else
    /// the longest `prefix*` that matches, else 0.
    pub(crate) fn service_ttl(&self, service: &str) -> u32 {
        if let Some(ttl) = self.service_ttl.get(service) {
            return *ttl;
        }
        self.service_ttl
            .iter()
            .filter_map(|(key, ttl)| Some((key.strip_suffix('*')?, *ttl)))
            .filter(|(prefix, _)| service.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(0, |(_, ttl)| ttl)
    }
}

impl DnsConfig {
    /// The settings from `-domain` (or the `domain` field) and the `dns_config` block of the
    /// config files, with Consul's field names: `node_ttl`, `service_ttl` (an object of Go
    /// durations by service name or `prefix*`), `udp_answer_limit`, `a_record_limit`,
    /// `only_passing`, `enable_truncate`, `allow_stale`, `max_stale`, `soa` (`refresh`,
    /// `retry`, `expire`, `min_ttl`, seconds). Each value is given with where it came from,
    /// for messages. Returns the fields ignored, to log.
    pub(crate) fn from_settings(
        domain: Option<(&str, &str)>,
        datacenter: &str,
        dns_config: Option<(&serde_json::Value, &str)>,
    ) -> Result<(Self, Vec<String>), String> {
        let mut config = match domain {
            None => Self::new(DEFAULT_DOMAIN, datacenter)?,
            Some((domain, source)) => Self::new(domain, datacenter).map_err(|e| format!("{source}: {e}"))?,
        };
        let mut ignored = Vec::new();
        let Some((block, source)) = dns_config else { return Ok((config, ignored)) };
        let serde_json::Value::Object(block) = block else {
            return Err(format!("{source}: expected an object"));
        };
        let seconds = |field: &str, value: &serde_json::Value| -> Result<u32, String> {
            let text =
                value.as_str().ok_or_else(|| format!("{source}: {field}: {value} must be a duration like \"10s\""))?;
            let duration = crate::duration::parse(text).map_err(|e| format!("{source}: {field}: {e}"))?;
            Ok(duration.as_secs().min(u64::from(u32::MAX)) as u32)
        };
        let count = |field: &str, value: &serde_json::Value, min: u64| -> Result<usize, String> {
            match value.as_u64() {
                Some(n) if n >= min && n <= 1 << 16 => Ok(n as usize),
                _ => Err(format!("{source}: {field}: {value} must be a whole number from {min} to 65536")),
            }
        };
        let flag = |field: &str, value: &serde_json::Value| -> Result<bool, String> {
            value.as_bool().ok_or_else(|| format!("{source}: {field}: {value} must be true or false"))
        };
        for (key, value) in block {
            match key.as_str() {
                "node_ttl" => config.node_ttl = seconds("node_ttl", value)?,
                "service_ttl" => {
                    let serde_json::Value::Object(ttls) = value else {
                        return Err(format!("{source}: service_ttl: expected an object of durations by service"));
                    };
                    for (service, ttl) in ttls {
                        let ttl = seconds(&format!("service_ttl.{service}"), ttl)?;
                        config.service_ttl.insert(service.clone(), ttl);
                    }
                }
                "udp_answer_limit" => config.udp_answer_limit = count("udp_answer_limit", value, 1)?,
                "a_record_limit" => config.a_record_limit = count("a_record_limit", value, 0)?,
                "only_passing" => config.only_passing = flag("only_passing", value)?,
                "enable_truncate" => config.enable_truncate = flag("enable_truncate", value)?,
                "allow_stale" => config.allow_stale = flag("allow_stale", value)?,
                "max_stale" => {
                    let text =
                        value.as_str().ok_or_else(|| format!("{source}: max_stale: {value} must be a duration"))?;
                    config.max_stale = crate::duration::parse(text).map_err(|e| format!("{source}: max_stale: {e}"))?;
                }
                "soa" => {
                    let serde_json::Value::Object(soa) = value else {
                        return Err(format!("{source}: soa: expected an object"));
                    };
                    for (field, value) in soa {
                        let n = value.as_u64().filter(|n| *n <= u64::from(i32::MAX as u32)).ok_or_else(|| {
                            format!("{source}: soa.{field}: {value} must be a whole number of seconds")
                        })? as u32;
                        match field.as_str() {
                            "refresh" => config.soa.refresh = n,
                            "retry" => config.soa.retry = n,
                            "expire" => config.soa.expire = n,
                            "min_ttl" => config.soa.min_ttl = n,
                            other => ignored.push(format!("{source}: ignoring soa.{other}: not used")),
                        }
                    }
                }
                other => ignored.push(format!("{source}: ignoring dns_config.{other}: consul-lite does not use it")),
            }
        }
        Ok((config, ignored))
    }
}

/// What the DNS server reads: the registry as applied here, and how fresh it is.
pub(crate) trait View: Send + Sync + 'static {
    /// The registry as applied on this agent; hold it briefly, never across an `.await`.
    fn read(&self) -> RegistryRead<'_>;
    /// Time since this agent last heard from the leader (0 on the leader).
    fn last_contact(&self) -> Duration;
    /// Resolves `true` once the local registry holds every write committed before the call
    /// (the leader confirmed), `false` if that cannot be had.
    fn consistent(&self) -> BoxFuture<'_, bool>;
}

/// The agent's [`Store`] as the DNS server's [`View`].
pub(crate) struct StoreView(pub(crate) Arc<dyn Store>);

impl View for StoreView {
    fn read(&self) -> RegistryRead<'_> {
        self.0.read()
    }

    fn last_contact(&self) -> Duration {
        self.0.last_contact()
    }

    fn consistent(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.0.consistent().await.is_ok() })
    }
}

/// A registry that is always current: for tests.
#[cfg(test)]
pub(crate) struct FixedView(pub(crate) std::sync::RwLock<service_registry::Registry>);

#[cfg(test)]
impl View for FixedView {
    fn read(&self) -> RegistryRead<'_> {
        Box::new(self.0.read().expect("registry lock"))
    }

    fn last_contact(&self) -> Duration {
        Duration::ZERO
    }

    fn consistent(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}
