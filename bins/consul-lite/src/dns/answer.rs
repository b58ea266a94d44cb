//! The answering logic, without sockets: a query name and type in, the records of Consul's
//! answer out ([`answer`]), and the trimming of a response to what one UDP or TCP message
//! carries ([`Response::fit`]).
//!
//! Every rule here follows Consul's `agent/dns.go` (the v1 DNS server, with its defaults):
//! `dispatch` for the names, `handleServiceQuery` / `lookupServiceNodes` (health filter:
//! `CheckServiceNodes.Filter(only_passing)`), `makeNodeServiceRecords` for the records of an
//! instance, `handleNodeQuery`, `makeSOARecord`, `trimUDPResponse` / `trimTCPResponse`.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom as _;
use rand::Rng;
use service_registry::{HealthStatus, Node, Registry, ServiceInstance};

use super::DnsConfig;

/// The most answers a plain (non-EDNS, 512-byte) UDP reply carries whatever
/// `udp_answer_limit` says (Consul's `maxUDPAnswerLimit`).
const MAX_UDP_ANSWER_LIMIT: usize = 8;
/// The size of a UDP reply to a query without EDNS (RFC 1035).
pub(crate) const DEFAULT_UDP_SIZE: usize = 512;
/// The largest UDP reply, whatever EDNS asks for (Consul's `maxUDPDatagramSize`).
const MAX_UDP_SIZE: usize = 65535 - 68;
/// The largest TCP reply (Consul's `trimTCPResponse`: 64 KiB less 12 bytes).
const MAX_TCP_SIZE: usize = 65523;
/// At most this many NS records (Consul's servers: "don't provide more than 3 servers").
const MAX_NAME_SERVERS: usize = 3;

/// What [`answer`] found: the response code and the three record sections of the reply.
/// Consul's answers are authoritative (AA set) and offer no recursion (no recursors here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// NOERROR, NXDOMAIN (with the SOA in `authorities`), REFUSED (outside the domain),
    /// NOTIMP (zone transfers).
    pub(crate) code: ResponseCode,
    /// Whether the AA bit is set: every name under the domain; not for REFUSED.
    pub(crate) authoritative: bool,
    /// The answer section.
    pub(crate) answers: Vec<Record>,
    /// The authority section: the SOA of an NXDOMAIN or NODATA answer, the NS records of an
    /// SOA answer.
    pub(crate) authorities: Vec<Record>,
    /// The additional section: the A/AAAA records of SRV targets (and NS glue).
    pub(crate) additionals: Vec<Record>,
}

impl Response {
    fn new(code: ResponseCode) -> Self {
        Self { code, authoritative: true, answers: Vec::new(), authorities: Vec::new(), additionals: Vec::new() }
    }

    /// Trims the response to what one message carries, as Consul's `trimUDPResponse` /
    /// `trimTCPResponse` do: over UDP without EDNS (`udp_size` 512) at most
    /// `min(udp_answer_limit, 8)` answers, then (UDP and TCP) answers dropped from the end
    /// until the message fits `udp_size` (UDP, at most 65467) or 65523 bytes (TCP); the
    /// authority section goes first, and the additional section keeps only the records of
    /// the SRV targets still answered. One answer is always kept, as in Consul. Returns
    /// whether answers were dropped (the TC bit is set only with `enable_truncate`).
    pub(crate) fn fit(&mut self, udp: bool, udp_size: usize, config: &DnsConfig) -> bool {
        let before = self.answers.len();
        let max_size = if udp { udp_size.clamp(DEFAULT_UDP_SIZE, MAX_UDP_SIZE) - 8 } else { MAX_TCP_SIZE };
        if udp && max_size + 8 == DEFAULT_UDP_SIZE {
            let limit = config.udp_answer_limit.min(MAX_UDP_ANSWER_LIMIT);
            if self.answers.len() > limit {
                self.answers.truncate(limit);
                self.sync_additionals();
            }
        }
        if self.answers.len() > 1 && self.encoded_len() > max_size {
            self.authorities.clear();
            // The largest count of answers that fits, by bisection (one answer always stays).
            let all = std::mem::take(&mut self.answers);
            let all_additionals = self.additionals.clone();
            let (mut fits, mut over) = (1, all.len());
            while over - fits > 1 {
                let mid = (fits + over) / 2;
                self.answers = all[..mid].to_vec();
                self.additionals.clone_from(&all_additionals);
                self.sync_additionals();
                if self.encoded_len() <= max_size {
                    fits = mid;
                } else {
                    over = mid;
                }
            }
            self.answers = all[..fits].to_vec();
            self.additionals = all_additionals;
            self.sync_additionals();
        }
        self.answers.len() < before
    }

    /// Keeps only the additional records of the targets of the SRV answers left (Consul's
    /// `syncExtra`). A response with no SRV answer keeps its additional section as it is.
    fn sync_additionals(&mut self) {
        let targets: HashSet<Name> = self
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some(srv.target.to_lowercase()),
                _ => None,
            })
            .collect();
        if targets.is_empty() && !self.answers.iter().any(|r| r.record_type() == RecordType::SRV) {
            return;
        }
        let mut seen = HashSet::new();
        self.additionals.retain(|r| {
            let name = r.name.to_lowercase();
            targets.contains(&name) && seen.insert((name, r.data.clone()))
        });
    }

    /// The size of the message carrying these records (header and question estimated).
    fn encoded_len(&self) -> usize {
        let mut message = hickory_proto::op::Message::response(0, hickory_proto::op::OpCode::Query);
        message.add_answers(self.answers.iter().cloned());
        message.add_authorities(self.authorities.iter().cloned());
        message.add_additionals(self.additionals.iter().cloned());
        // The question: at most 255 bytes of name, 4 of type and class.
        message.to_vec().map_or(usize::MAX, |bytes| bytes.len() + 64)
    }
}

/// Answers one question as Consul's DNS interface does, from `registry` (the local agent's
/// view). `rng` shuffles the instances of a service.
///
/// - `[<tag>.]<service>.service[.<dc>].<domain>`, `_<service>._<tag|tcp>.service[.<dc>].<domain>`
///   (and, for SRV, `_<service>._<tag|tcp>[.<dc>].<domain>`): the instances of the service
///   whose checks (the node's and the instance's) are not critical (nor in maintenance),
///   or all passing with `only_passing`, with the tag when one is given, in random order:
///   A/AAAA records of their addresses, or SRV `1 <weight> <port> <target>` with the
///   target's address in the additional section;
/// - `<node>.node[.<dc>].<domain>`: the node's address;
/// - `<hex>.addr[.<dc>].<domain>`: the address spelled in hexadecimal (SRV targets of
///   instances with an address of their own);
/// - SOA and NS questions for any name under the domain: the zone's SOA, and the servers
///   (instances of the `consul` service) as name servers;
/// - an unknown name or datacenter under the domain: NXDOMAIN with the SOA in the authority
///   section; a known one with no record of the type asked: NOERROR, no answer, the SOA;
/// - names outside the domain: REFUSED (Consul without recursors).
///
/// Names match in any letter case. The UDP limits are applied after, by [`Response::fit`].
pub(crate) fn answer(
    query_name: &Name,
    query_type: RecordType,
    registry: &Registry,
    config: &DnsConfig,
    rng: &mut impl Rng,
) -> Response {
    let labels: Vec<String> =
        query_name.iter().map(|label| String::from_utf8_lossy(label).to_ascii_lowercase()).collect();
    let domain = config.domain_labels();
    if labels.len() < domain.len() || labels[labels.len() - domain.len()..] != domain[..] {
        let mut response = Response::new(ResponseCode::Refused);
        response.authoritative = false;
        return response;
    }
    let labels = &labels[..labels.len() - domain.len()];
    let cx = Context { query_name, query_type, registry, config };

    match query_type {
        RecordType::SOA => {
            let mut response = Response::new(ResponseCode::NoError);
            response.answers.push(cx.soa());
            let (ns, glue) = cx.name_servers(rng);
            response.authorities = ns;
            response.additionals = glue;
            return response;
        }
        RecordType::NS => {
            let mut response = Response::new(ResponseCode::NoError);
            let (ns, glue) = cx.name_servers(rng);
            response.answers = ns;
            response.additionals = glue;
            return response;
        }
        RecordType::AXFR | RecordType::IXFR => return Response::new(ResponseCode::NotImp),
        _ => {}
    }

    // Consul's dispatch: the rightmost kind label splits the name into parts and suffixes;
    // for SRV, a label starting with `_` stands for `service` (RFC 2782 without it).
    let mut kind = None;
    for i in (0..labels.len()).rev() {
        match labels[i].as_str() {
            "service" | "node" | "addr" | "connect" | "virtual" | "ingress" | "query" => {
                kind = Some((labels[i].as_str(), &labels[..i], &labels[i + 1..]));
                break;
            }
            label if query_type == RecordType::SRV && label.starts_with('_') => {
                kind = Some(("service", &labels[..=i], &labels[i + 1..]));
                break;
            }
            _ => {}
        }
    }
    let result = match kind {
        Some(("service", parts, suffixes)) if !parts.is_empty() => match cx.datacenter(suffixes) {
            Some(dc) => cx.service(parts, &dc, rng),
            None => Err(Lookup::NotFound),
        },
        Some(("node", parts, suffixes)) if !parts.is_empty() => match cx.datacenter(suffixes) {
            Some(dc) => cx.node(&parts.join("."), &dc),
            None => Err(Lookup::NotFound),
        },
        Some(("addr", [hex], suffixes)) => match cx.datacenter(suffixes) {
            Some(_) => cx.addr(hex),
            None => Err(Lookup::NotFound),
        },
        // Connect, virtual IPs, ingress gateways, prepared queries: not in consul-lite.
        _ => Err(Lookup::NotFound),
    };
    match result {
        Ok(response) => response,
        Err(Lookup::NoData) => {
            let mut response = Response::new(ResponseCode::NoError);
            response.authorities.push(cx.soa());
            response
        }
        Err(Lookup::NotFound) => {
            let mut response = Response::new(ResponseCode::NXDomain);
            response.authorities.push(cx.soa());
            response
        }
    }
}

/// Why a lookup has no answer.
enum Lookup {
    /// NXDOMAIN, with the SOA.
    NotFound,
    /// NOERROR without answers, with the SOA (RFC 2308 NODATA).
    NoData,
}

/// One question being answered.
struct Context<'a> {
    query_name: &'a Name,
    query_type: RecordType,
    registry: &'a Registry,
    config: &'a DnsConfig,
}

/// An instance that passed the health filter, with what its records need.
struct Candidate<'a> {
    instance: ServiceInstance<'a>,
    weight: u16,
}

impl Context<'_> {
    /// The datacenter named by the suffixes after the kind label (none, `<dc>`, or
    /// `<dc>.dc`), if it is this agent's: other datacenters are unknown (no WAN federation).
    fn datacenter(&self, suffixes: &[String]) -> Option<String> {
        let dc = match suffixes {
            [] => return Some(self.config.datacenter.clone()),
            [dc] => dc,
            [dc, kind] if kind == "dc" => dc,
            _ => return None,
        };
        dc.eq_ignore_ascii_case(&self.config.datacenter).then(|| self.config.datacenter.clone())
    }

    /// The zone's SOA record (Consul's `makeSOARecord`), named by the domain. Its serial is
    /// the registry's last applied index (Consul uses the clock).
    fn soa(&self) -> Record {
        let domain = self.config.domain_name();
        let name = |prefix: &str| Name::from_ascii(prefix).and_then(|n| n.append_domain(&domain)).unwrap_or_default();
        let soa = &self.config.soa;
        let rdata = SOA::new(
            name("ns"),
            name("hostmaster"),
            self.registry.last_index() as u32,
            soa.refresh as i32,
            soa.retry as i32,
            soa.expire as i32,
            soa.min_ttl,
        );
        Record::from_rdata(domain, soa.min_ttl, RData::SOA(rdata))
    }

    /// NS records for the domain: up to 3 servers (instances of `consul` that pass the
    /// health filter), in random order, with their addresses as glue.
    fn name_servers(&self, rng: &mut impl Rng) -> (Vec<Record>, Vec<Record>) {
        let domain = self.config.domain_name();
        let mut servers = self.candidates("consul", None);
        servers.shuffle(rng);
        let (mut ns, mut glue) = (Vec::new(), Vec::new());
        for server in servers {
            let node = server.instance.node;
            let Some(target) = self.node_fqdn(&node.name, &node.datacenter.to_ascii_lowercase()) else {
                continue;
            };
            let Ok(ip) = node.address.parse::<IpAddr>() else { continue };
            let target = target.to_lowercase();
            if ns.iter().any(|r: &Record| matches!(&r.data, RData::NS(NS(t)) if *t == target)) {
                continue;
            }
            ns.push(Record::from_rdata(domain.clone(), self.config.node_ttl, RData::NS(NS(target.clone()))));
            glue.push(address_record(target, ip, self.config.node_ttl));
            if ns.len() == MAX_NAME_SERVERS {
                break;
            }
        }
        (ns, glue)
    }

    /// `<node>.node.<dc>.<domain>.`, as Consul names SRV targets (the node's name as
    /// registered). `None` if the node's name is not a valid DNS name.
    fn node_fqdn(&self, node: &str, dc: &str) -> Option<Name> {
        Name::from_ascii(format!("{node}.node.{dc}")).ok()?.append_domain(&self.config.domain_name()).ok()
    }

    /// The instances of `service` (matched in any letter case) with `tag` (any case), that
    /// pass the health filter: no check critical or in maintenance (Consul's default,
    /// `only_passing = false`: warning counts as healthy), or every check passing with
    /// `only_passing`.
    fn candidates(&self, service: &str, tag: Option<&str>) -> Vec<Candidate<'_>> {
        let mut instances = self.registry.service_instances(service);
        if instances.is_empty() {
            // Registry names are case-sensitive; DNS is not.
            let names: Vec<String> = self
                .registry
                .services()
                .into_keys()
                .filter(|name| name.eq_ignore_ascii_case(service) && *name != service)
                .map(str::to_owned)
                .collect();
            for name in names {
                instances.extend(self.registry.service_instances(&name));
            }
        }
        instances
            .into_iter()
            .filter(|i| tag.is_none_or(|tag| i.service.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))))
            .filter(|i| {
                i.checks.iter().all(|c| match c.status {
                    HealthStatus::Passing => true,
                    HealthStatus::Warning => !self.config.only_passing,
                    HealthStatus::Critical | HealthStatus::Maintenance => false,
                })
            })
            .map(|instance| {
                let weight = weight(&instance);
                Candidate { instance, weight }
            })
            .collect()
    }

    /// A service lookup (Consul's `handleServiceQuery`).
    fn service(&self, parts: &[String], dc: &str, rng: &mut impl Rng) -> Result<Response, Lookup> {
        let (service, tag) = match parts {
            [service, tag] if service.starts_with('_') && tag.starts_with('_') => {
                // RFC 2782: _<service>._<protocol|tag>; `_tcp` means no tag.
                let tag = &tag[1..];
                (&service[1..], (tag != "tcp").then_some(tag.to_owned()))
            }
            [tags @ .., service] => (service.as_str(), (!tags.is_empty()).then(|| tags.join("."))),
            [] => return Err(Lookup::NotFound),
        };
        let mut candidates = self.candidates(service, tag.as_deref());
        if candidates.is_empty() {
            return Err(Lookup::NotFound);
        }
        candidates.shuffle(rng);
        let ttl = self.config.service_ttl(service);
        let mut response = Response::new(ResponseCode::NoError);
        if self.query_type == RecordType::SRV {
            let mut handled = HashSet::new();
            for candidate in &candidates {
                let (node, svc) = (candidate.instance.node, candidate.instance.service);
                if !handled.insert((node.name.as_str(), svc.address.as_str(), svc.port)) {
                    continue;
                }
                let (target, extra) = match self.instance_address(node, &svc.address) {
                    Address::Ip(ip, true) => {
                        let Some(target) = self.addr_fqdn(ip, dc) else { continue };
                        (target.clone(), Some(address_record(target, ip, ttl)))
                    }
                    Address::Ip(ip, false) => {
                        let Some(target) = self.node_fqdn(&node.name, dc) else { continue };
                        (target.clone(), Some(address_record(target, ip, ttl)))
                    }
                    Address::Host(host) => (host, None),
                    Address::None => continue,
                };
                let srv = SRV::new(1, candidate.weight, svc.port, target);
                response.answers.push(Record::from_rdata(self.query_name.clone(), ttl, RData::SRV(srv)));
                response.additionals.extend(extra);
            }
        } else {
            let mut handled = HashSet::new();
            let mut cname = None;
            let mut count = 0;
            for candidate in &candidates {
                let (node, svc) = (candidate.instance.node, candidate.instance.service);
                let record = match self.instance_address(node, &svc.address) {
                    Address::Ip(ip, _) => match self.address_for_type(ip) {
                        Some(ip) => address_record(self.query_name.clone(), ip, ttl),
                        None => continue,
                    },
                    Address::Host(host) => {
                        if cname.is_none() {
                            cname = Some(Record::from_rdata(self.query_name.clone(), ttl, RData::CNAME(CNAME(host))));
                        }
                        continue;
                    }
                    Address::None => continue,
                };
                if !handled.insert(record.data.clone()) {
                    continue;
                }
                response.answers.push(record);
                count += 1;
                if count == self.config.a_record_limit {
                    break;
                }
            }
            if response.answers.is_empty() {
                response.answers.extend(cname);
            }
        }
        if response.answers.is_empty() {
            return Err(Lookup::NoData);
        }
        Ok(response)
    }

    /// The address an instance is reached at: its own, else its node's. `Ip(_, true)` when
    /// it is the instance's own address (SRV targets it as `<hex>.addr.<dc>`).
    fn instance_address(&self, node: &Node, service_address: &str) -> Address {
        if !service_address.is_empty() {
            if let Ok(ip) = service_address.parse::<IpAddr>() {
                return Address::Ip(ip, true);
            }
            // Consul: a service address that is the name asked for uses the node's address.
            let is_query =
                Name::from_ascii(service_address).is_ok_and(|n| n.to_lowercase() == self.query_name.to_lowercase());
            if !is_query {
                return host_address(service_address);
            }
        }
        if node.address.is_empty() {
            return Address::None;
        }
        match node.address.parse::<IpAddr>() {
            Ok(ip) => Address::Ip(ip, false),
            Err(_) => host_address(&node.address),
        }
    }

    /// `ip` if it fits the question's type: IPv4 for A, IPv6 for AAAA, either for ANY.
    fn address_for_type(&self, ip: IpAddr) -> Option<IpAddr> {
        match (self.query_type, ip) {
            (RecordType::A, IpAddr::V4(_)) | (RecordType::AAAA, IpAddr::V6(_)) | (RecordType::ANY, _) => Some(ip),
            _ => None,
        }
    }

    /// `<hex>.addr.<dc>.<domain>.` (Consul's `encodeIPAsFqdn`).
    fn addr_fqdn(&self, ip: IpAddr, dc: &str) -> Option<Name> {
        let hex: String = match ip {
            IpAddr::V4(v4) => v4.octets().iter().map(|b| format!("{b:02x}")).collect(),
            IpAddr::V6(v6) => v6.octets().iter().map(|b| format!("{b:02x}")).collect(),
        };
        Name::from_ascii(format!("{hex}.addr.{dc}")).ok()?.append_domain(&self.config.domain_name()).ok()
    }

    /// A node lookup (Consul's `handleNodeQuery`): A, AAAA and ANY questions only; others
    /// answer NOERROR with nothing (and no SOA), before the node is even looked up.
    fn node(&self, name: &str, _dc: &str) -> Result<Response, Lookup> {
        if !matches!(self.query_type, RecordType::A | RecordType::AAAA | RecordType::ANY) {
            return Ok(Response::new(ResponseCode::NoError));
        }
        let node = self
            .registry
            .node(name)
            .or_else(|| self.registry.nodes().find(|n| n.name.eq_ignore_ascii_case(name)))
            .ok_or(Lookup::NotFound)?;
        let ttl = self.config.node_ttl;
        let mut response = Response::new(ResponseCode::NoError);
        match node.address.parse::<IpAddr>() {
            Ok(ip) => {
                if let Some(ip) = self.address_for_type(ip) {
                    response.answers.push(address_record(self.query_name.clone(), ip, ttl));
                }
            }
            Err(_) => {
                if let Address::Host(host) = host_address(&node.address) {
                    response.answers.push(Record::from_rdata(self.query_name.clone(), ttl, RData::CNAME(CNAME(host))));
                }
            }
        }
        Ok(response)
    }

    /// `<hex>.addr[.<dc>].<domain>`: 8 hex digits for IPv4, 32 for IPv6.
    fn addr(&self, hex: &str) -> Result<Response, Lookup> {
        let bytes: Option<Vec<u8>> = hex
            .as_bytes()
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok().filter(|p| p.len() == 2)?, 16).ok())
            .collect();
        let ip = match bytes.as_deref() {
            Some(&[a, b, c, d]) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            Some(b) if b.len() == 16 => {
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).map_err(|_| Lookup::NotFound)?))
            }
            _ => return Err(Lookup::NotFound),
        };
        let mut response = Response::new(ResponseCode::NoError);
        if let Some(ip) = self.address_for_type(ip) {
            response.answers.push(address_record(self.query_name.clone(), ip, self.config.node_ttl));
        }
        Ok(response)
    }
}

/// Where an instance is reached.
enum Address {
    /// An IP address; `true` when it is the instance's own address.
    Ip(IpAddr, bool),
    /// A host name (answered as a CNAME, or an SRV target without glue: no recursors here).
    Host(Name),
    /// No address at all.
    None,
}

fn host_address(host: &str) -> Address {
    match Name::from_ascii(host) {
        Ok(mut name) => {
            name.set_fqdn(true);
            Address::Host(name)
        }
        Err(_) => Address::None,
    }
}

/// An A or AAAA record for `ip`.
fn address_record(name: Name, ip: IpAddr, ttl: u32) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, ttl, data)
}

/// The SRV weight of an instance (Consul's `findWeight`): its `Weights.Warning` when one
/// of its checks warns, else `Weights.Passing`; 1 and 1 without weights.
fn weight(instance: &ServiceInstance<'_>) -> u16 {
    let (passing, warning) = instance.service.weights.map_or((1, 1), |w| (w.passing, w.warning));
    let warns = instance.checks.iter().any(|c| c.status == HealthStatus::Warning);
    let weight = if warns { warning } else { passing };
    weight.min(u32::from(u16::MAX)) as u16
}
