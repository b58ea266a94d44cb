//! Tests of the answering logic (no sockets) and of the transport (loopback sockets).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::rngs::StdRng;
use rand::SeedableRng as _;
use service_registry::{
    CheckRegistration, Command, HealthStatus, Registration, Registry, ServiceRegistration, Weights,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::answer::{answer, Response};
use super::{DnsConfig, DnsServer, FixedView, Limits};

/// A registry under construction, one command per index.
struct Catalog {
    registry: Registry,
    index: u64,
}

impl Catalog {
    fn new() -> Self {
        Self { registry: Registry::new(), index: 0 }
    }

    fn apply(&mut self, command: Command) {
        self.index += 1;
        let _applied = self.registry.apply(self.index, command).expect("command applies");
    }

    /// A node with a `serfHealth` check in `node_status`.
    fn node(&mut self, name: &str, address: &str, node_status: HealthStatus) -> &mut Self {
        self.apply(Command::Register(Registration {
            node: name.into(),
            address: address.into(),
            datacenter: "dc1".into(),
            checks: vec![CheckRegistration {
                check_id: "serfHealth".into(),
                name: "Serf Health Status".into(),
                status: node_status,
                ..CheckRegistration::default()
            }],
            ..Registration::default()
        }));
        self
    }

    /// An instance of `service` on `node`, with one service check in `status`.
    fn service(&mut self, node: &str, service: ServiceRegistration, status: HealthStatus) -> &mut Self {
        let id = if service.id.is_empty() { service.service.clone() } else { service.id.clone() };
        let address = self.registry.node(node).expect("node registered first").address.clone();
        self.apply(Command::Register(Registration {
            node: node.into(),
            address,
            datacenter: "dc1".into(),
            service: Some(service),
            checks: vec![CheckRegistration {
                check_id: format!("service:{id}"),
                name: format!("check of {id}"),
                status,
                service_id: id,
                ..CheckRegistration::default()
            }],
            ..Registration::default()
        }));
        self
    }
}

fn svc(name: &str, port: u16, tags: &[&str]) -> ServiceRegistration {
    ServiceRegistration {
        service: name.into(),
        port,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..ServiceRegistration::default()
    }
}

fn config() -> DnsConfig {
    DnsConfig::new("consul", "dc1").expect("valid domain")
}

fn ask(registry: &Registry, config: &DnsConfig, name: &str, qtype: RecordType) -> Response {
    let name = Name::from_ascii(name).expect("valid name");
    answer(&name, qtype, registry, config, &mut StdRng::seed_from_u64(7))
}

fn ips(records: &[Record]) -> BTreeSet<IpAddr> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ip_set(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|ip| ip.parse().expect("ip")).collect()
}

/// web on four nodes: passing, warning (service check), critical (service check), and a
/// node whose serfHealth is critical.
fn health_catalog() -> Catalog {
    let mut c = Catalog::new();
    c.node("n1", "10.0.0.1", HealthStatus::Passing).service("n1", svc("web", 80, &["primary"]), HealthStatus::Passing);
    c.node("n2", "10.0.0.2", HealthStatus::Passing).service("n2", svc("web", 80, &[]), HealthStatus::Warning);
    c.node("n3", "10.0.0.3", HealthStatus::Passing).service("n3", svc("web", 80, &[]), HealthStatus::Critical);
    c.node("n4", "10.0.0.4", HealthStatus::Critical).service("n4", svc("web", 80, &[]), HealthStatus::Passing);
    c.node("n5", "10.0.0.5", HealthStatus::Passing).service("n5", svc("web", 80, &[]), HealthStatus::Maintenance);
    c
}

#[test]
fn a_answers_skip_critical_instances_and_nodes_and_keep_warning_by_default() {
    let c = health_catalog();
    let response = ask(&c.registry, &config(), "web.service.consul.", RecordType::A);
    assert_eq!(response.code, ResponseCode::NoError);
    assert!(response.authoritative);
    assert_eq!(ips(&response.answers), ip_set(&["10.0.0.1", "10.0.0.2"]));
    assert!(response.answers.iter().all(|r| r.name == Name::from_ascii("web.service.consul.").unwrap()));

    let mut only_passing = config();
    only_passing.only_passing = true;
    let response = ask(&c.registry, &only_passing, "web.service.consul.", RecordType::A);
    assert_eq!(ips(&response.answers), ip_set(&["10.0.0.1"]));
}

#[test]
fn a_service_whose_instances_are_all_critical_is_nxdomain() {
    let mut c = Catalog::new();
    c.node("n1", "10.0.0.1", HealthStatus::Passing).service("n1", svc("db", 5432, &[]), HealthStatus::Critical);
    let response = ask(&c.registry, &config(), "db.service.consul.", RecordType::A);
    assert_eq!(response.code, ResponseCode::NXDomain);
    assert!(response.answers.is_empty());
    assert!(matches!(response.authorities[0].data, RData::SOA(_)));
}

#[test]
fn tags_filter_in_both_name_forms() {
    let c = health_catalog();
    let cfg = config();
    let response = ask(&c.registry, &cfg, "primary.web.service.consul.", RecordType::A);
    assert_eq!(ips(&response.answers), ip_set(&["10.0.0.1"]));

    let response = ask(&c.registry, &cfg, "_web._primary.service.consul.", RecordType::SRV);
    assert_eq!(response.answers.len(), 1);
    let response = ask(&c.registry, &cfg, "_web._tcp.service.consul.", RecordType::SRV);
    assert_eq!(response.answers.len(), 2, "_tcp is no tag: {response:?}");
    let response = ask(&c.registry, &cfg, "_web._tcp.consul.", RecordType::SRV);
    assert_eq!(response.answers.len(), 2, "RFC 2782 without .service");

    let response = ask(&c.registry, &cfg, "secondary.web.service.consul.", RecordType::A);
    assert_eq!(response.code, ResponseCode::NXDomain);
}

#[test]
fn srv_names_the_node_and_carries_its_address_in_the_additional_section() {
    let mut c = Catalog::new();
    c.node("n1", "10.0.0.1", HealthStatus::Passing).service("n1", svc("web", 8080, &[]), HealthStatus::Passing);
    let mut own = svc("api", 9090, &[]);
    own.address = "10.1.2.3".into();
    own.weights = Some(Weights { passing: 10, warning: 1 });
    c.service("n1", own, HealthStatus::Passing);

    for name in
        ["web.service.consul.", "_web._tcp.service.consul.", "web.service.dc1.consul.", "web.service.dc1.dc.consul."]
    {
        let response = ask(&c.registry, &config(), name, RecordType::SRV);
        assert_eq!(response.code, ResponseCode::NoError, "{name}");
        let [Record { data: RData::SRV(srv), ttl: 0, .. }] = &response.answers[..] else {
            panic!("one SRV for {name}: {response:?}")
        };
        assert_eq!((srv.priority, srv.weight, srv.port), (1, 1, 8080));
        assert_eq!(srv.target, Name::from_ascii("n1.node.dc1.consul.").unwrap());
        assert_eq!(response.additionals.len(), 1);
        assert_eq!(response.additionals[0].name, srv.target);
        assert_eq!(ips(&response.additionals), ip_set(&["10.0.0.1"]));
    }

    // An instance with its own address: the target is <hex>.addr.<dc>, which resolves.
    let response = ask(&c.registry, &config(), "api.service.consul.", RecordType::SRV);
    let RData::SRV(srv) = &response.answers[0].data else { panic!("SRV") };
    assert_eq!((srv.weight, srv.port), (10, 9090));
    assert_eq!(srv.target, Name::from_ascii("0a010203.addr.dc1.consul.").unwrap());
    assert_eq!(ips(&response.additionals), ip_set(&["10.1.2.3"]));
    let response = ask(&c.registry, &config(), "0a010203.addr.dc1.consul.", RecordType::A);
    assert_eq!(ips(&response.answers), ip_set(&["10.1.2.3"]));
    let response = ask(&c.registry, &config(), "api.service.consul.", RecordType::A);
    assert_eq!(ips(&response.answers), ip_set(&["10.1.2.3"]));
}

#[test]
fn node_lookups() {
    let c = health_catalog();
    let cfg = config();
    for name in ["n1.node.consul.", "n1.node.dc1.consul.", "N1.NODE.Consul."] {
        let response = ask(&c.registry, &cfg, name, RecordType::A);
        assert_eq!(response.code, ResponseCode::NoError, "{name}");
        assert_eq!(ips(&response.answers), ip_set(&["10.0.0.1"]), "{name}");
        assert_eq!(response.answers[0].name, Name::from_ascii(name).unwrap());
    }
    // A node whose serfHealth is critical still resolves (Consul does not filter nodes).
    assert_eq!(ips(&ask(&c.registry, &cfg, "n4.node.consul.", RecordType::A).answers), ip_set(&["10.0.0.4"]));
    // IPv4 node, AAAA question: no data.
    let response = ask(&c.registry, &cfg, "n1.node.consul.", RecordType::AAAA);
    assert_eq!((response.code, response.answers.len()), (ResponseCode::NoError, 0));

    let response = ask(&c.registry, &cfg, "nope.node.consul.", RecordType::A);
    assert_eq!(response.code, ResponseCode::NXDomain);
    let response = ask(&c.registry, &cfg, "n1.node.dc2.consul.", RecordType::A);
    assert_eq!(response.code, ResponseCode::NXDomain, "another datacenter is unknown");

    let mut ttl = config();
    ttl.node_ttl = 30;
    assert_eq!(ask(&c.registry, &ttl, "n1.node.consul.", RecordType::A).answers[0].ttl, 30);
}

#[test]
fn unknown_names_are_nxdomain_with_the_soa_and_foreign_names_refused() {
    let c = health_catalog();
    let cfg = config();
    for name in ["nope.service.consul.", "consul.", "foo.consul.", "web.service.dc2.consul.", "x.query.consul."] {
        let response = ask(&c.registry, &cfg, name, RecordType::A);
        assert_eq!(response.code, ResponseCode::NXDomain, "{name}");
        assert!(response.answers.is_empty());
        let [Record { name: soa_name, data: RData::SOA(soa), ttl: 0, .. }] = &response.authorities[..] else {
            panic!("the SOA for {name}: {response:?}")
        };
        assert_eq!(*soa_name, Name::from_ascii("consul.").unwrap());
        assert_eq!(soa.mname, Name::from_ascii("ns.consul.").unwrap());
        assert_eq!(soa.rname, Name::from_ascii("hostmaster.consul.").unwrap());
        assert_eq!((soa.refresh, soa.retry, soa.expire, soa.minimum), (3600, 600, 86400, 0));
        assert_eq!(soa.serial, c.registry.last_index() as u32);
    }
    // A service that exists, asked for a type it has no records of: NODATA with the SOA.
    let response = ask(&c.registry, &cfg, "web.service.consul.", RecordType::AAAA);
    assert_eq!((response.code, response.answers.len(), response.authorities.len()), (ResponseCode::NoError, 0, 1));

    for name in ["example.com.", "consul.example.com.", "."] {
        let response = ask(&c.registry, &cfg, name, RecordType::A);
        assert_eq!(response.code, ResponseCode::Refused, "{name}");
        assert!(!response.authoritative);
    }
    // Another domain.
    let other = DnsConfig::new("Cluster.Local.", "dc1").unwrap();
    assert_eq!(ask(&c.registry, &other, "web.service.cluster.local.", RecordType::A).answers.len(), 2);
    assert_eq!(ask(&c.registry, &other, "web.service.consul.", RecordType::A).code, ResponseCode::Refused);
    // Zone transfers are not implemented.
    assert_eq!(ask(&c.registry, &cfg, "consul.", RecordType::AXFR).code, ResponseCode::NotImp);
}

#[test]
fn soa_and_ns_questions_name_the_servers() {
    let mut c = Catalog::new();
    c.node("s1", "10.0.0.9", HealthStatus::Passing).service("s1", svc("consul", 8300, &[]), HealthStatus::Passing);
    let response = ask(&c.registry, &config(), "consul.", RecordType::SOA);
    assert_eq!(response.code, ResponseCode::NoError);
    assert!(matches!(response.answers[0].data, RData::SOA(_)));
    let response = ask(&c.registry, &config(), "consul.", RecordType::NS);
    let RData::NS(ns) = &response.answers[0].data else { panic!("NS: {response:?}") };
    assert_eq!(ns.0, Name::from_ascii("s1.node.dc1.consul.").unwrap());
    assert_eq!(ips(&response.additionals), ip_set(&["10.0.0.9"]));
}

#[test]
fn names_match_in_any_letter_case() {
    let mut c = Catalog::new();
    c.node("Node-A", "10.0.0.1", HealthStatus::Passing).service(
        "Node-A",
        svc("Web", 80, &["Primary"]),
        HealthStatus::Passing,
    );
    let cfg = config();
    for name in
        ["web.service.consul.", "WEB.Service.CONSUL.", "primary.web.service.consul.", "PRIMARY.wEb.service.consul."]
    {
        let response = ask(&c.registry, &cfg, name, RecordType::A);
        assert_eq!(ips(&response.answers), ip_set(&["10.0.0.1"]), "{name}");
    }
    let response = ask(&c.registry, &cfg, "_WEB._TCP.service.consul.", RecordType::SRV);
    assert_eq!(response.answers.len(), 1);
    assert_eq!(ips(&ask(&c.registry, &cfg, "node-a.node.consul.", RecordType::A).answers), ip_set(&["10.0.0.1"]));
}

fn many(n: u8) -> Catalog {
    let mut c = Catalog::new();
    for i in 1..=n {
        let node = format!("node-{i}");
        c.node(&node, &format!("10.0.1.{i}"), HealthStatus::Passing).service(
            &node,
            svc("web", 80, &[]),
            HealthStatus::Passing,
        );
    }
    c
}

#[test]
fn udp_replies_without_edns_carry_three_answers() {
    let c = many(10);
    let cfg = config();
    let mut response = ask(&c.registry, &cfg, "web.service.consul.", RecordType::A);
    assert_eq!(response.answers.len(), 10);
    let full = response.clone();
    assert!(response.fit(true, 512, &cfg));
    assert_eq!(response.answers.len(), 3);
    assert!(ips(&response.answers).is_subset(&ips(&full.answers)));

    // EDNS with a large buffer, or TCP: everything that fits.
    let mut response = full.clone();
    assert!(!response.fit(true, 4096, &cfg));
    assert_eq!(response.answers.len(), 10);
    let mut response = full.clone();
    assert!(!response.fit(false, 512, &cfg));
    assert_eq!(response.answers.len(), 10);

    // SRV: the additional section follows the answers left.
    let mut response = ask(&c.registry, &cfg, "web.service.consul.", RecordType::SRV);
    assert_eq!((response.answers.len(), response.additionals.len()), (10, 10));
    response.fit(true, 512, &cfg);
    assert_eq!((response.answers.len(), response.additionals.len()), (3, 3));
    for answer in &response.answers {
        let RData::SRV(srv) = &answer.data else { panic!("SRV") };
        assert!(response.additionals.iter().any(|a| a.name == srv.target));
    }

    // The limit is configurable, never above 8.
    let mut five = config();
    five.udp_answer_limit = 5;
    let mut response = full.clone();
    response.fit(true, 512, &five);
    assert_eq!(response.answers.len(), 5);
    five.udp_answer_limit = 50;
    let mut response = full;
    response.fit(true, 512, &five);
    assert_eq!(response.answers.len(), 8);

    // a_record_limit caps A answers over any transport.
    let mut limited = config();
    limited.a_record_limit = 2;
    assert_eq!(ask(&c.registry, &limited, "web.service.consul.", RecordType::A).answers.len(), 2);
}

#[test]
fn udp_replies_fit_the_buffer_even_with_edns() {
    let c = many(200);
    let cfg = config();
    let mut response = ask(&c.registry, &cfg, "web.service.consul.", RecordType::SRV);
    assert_eq!(response.answers.len(), 200);
    assert!(response.fit(true, 1232, &cfg));
    let mut message = Message::response(1, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii("web.service.consul.").unwrap(), RecordType::SRV));
    message.add_answers(response.answers.clone());
    message.add_additionals(response.additionals.clone());
    let len = message.to_vec().unwrap().len();
    assert!(len <= 1232 && response.answers.len() > 3, "{len} bytes, {} answers", response.answers.len());
}

#[test]
fn instances_come_in_random_order_and_ttls_are_configurable() {
    let c = many(6);
    let mut cfg = config();
    let name = Name::from_ascii("web.service.consul.").unwrap();
    let orders: BTreeSet<Vec<Record>> = (0..20)
        .map(|seed| answer(&name, RecordType::A, &c.registry, &cfg, &mut StdRng::seed_from_u64(seed)).answers)
        .collect();
    assert!(orders.len() > 5, "20 seeds gave {} orders", orders.len());

    cfg.service_ttl.insert("web".into(), 10);
    cfg.service_ttl.insert("w*".into(), 20);
    cfg.service_ttl.insert("*".into(), 5);
    assert!(ask(&c.registry, &cfg, "web.service.consul.", RecordType::A).answers.iter().all(|r| r.ttl == 10));
    cfg.service_ttl.remove("web");
    assert!(ask(&c.registry, &cfg, "web.service.consul.", RecordType::SRV).answers.iter().all(|r| r.ttl == 20));
    assert_eq!(cfg.service_ttl("db"), 5);
}

// ---- the transport, on loopback ----

fn query(name: &str, qtype: RecordType, id: u16) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message.metadata.recursion_desired = true;
    message.to_vec().unwrap()
}

async fn start(c: Catalog, limits: Limits) -> (SocketAddr, Arc<super::DnsStats>, tokio::task::JoinHandle<()>) {
    let view = Arc::new(FixedView(RwLock::new(c.registry)));
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), view, Arc::new(config()), limits).await.unwrap();
    let addr = server.local_addr().unwrap();
    let stats = server.stats();
    (addr, stats, tokio::spawn(server.run()))
}

async fn udp_ask(addr: SocketAddr, bytes: &[u8]) -> Message {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await.unwrap().unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

async fn tcp_ask(stream: &mut tokio::net::TcpStream, bytes: &[u8]) -> Message {
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await.unwrap();
    Message::from_vec(&reply).unwrap()
}

#[tokio::test]
async fn udp_and_tcp_answer_and_survive_garbage_and_idle_connections() {
    let limits = Limits { tcp_idle: Duration::from_millis(300), max_tcp_connections: 4, ..Limits::default() };
    let (addr, stats, server) = start(many(5), limits).await;

    let reply = udp_ask(addr, &query("web.service.consul.", RecordType::A, 77)).await;
    assert_eq!(reply.metadata.id, 77);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative && !reply.metadata.recursion_available);
    assert_eq!(reply.answers.len(), 3, "UDP without EDNS: 3 answers");

    // Garbage: counted, dropped, and the next query is answered.
    let garbage = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for packet in [&b""[..], b"\x00", &[0xff; 11], &[0xab; 300], &query("x.", RecordType::A, 1)[..15]] {
        garbage.send_to(packet, addr).await.unwrap();
    }
    let mut response_packet = Message::response(5, OpCode::Query);
    response_packet.add_query(Query::query(Name::from_ascii("web.service.consul.").unwrap(), RecordType::A));
    garbage.send_to(&response_packet.to_vec().unwrap(), addr).await.unwrap();
    let reply = udp_ask(addr, &query("n1.node.consul.", RecordType::A, 78)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    let reply = udp_ask(addr, &query("node-1.node.consul.", RecordType::A, 79)).await;
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(stats.malformed.load(std::sync::atomic::Ordering::Relaxed), 6);
    let mut buf = [0u8; 512];
    let silent = tokio::time::timeout(Duration::from_millis(200), garbage.recv_from(&mut buf)).await;
    assert!(silent.is_err(), "garbage is never answered");

    // EDNS with a large buffer: every answer.
    let mut big = Message::new(80, MessageType::Query, OpCode::Query);
    big.add_query(Query::query(Name::from_ascii("web.service.consul.").unwrap(), RecordType::SRV));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    big.set_edns(edns);
    let reply = udp_ask(addr, &big.to_vec().unwrap()).await;
    assert_eq!((reply.answers.len(), reply.additionals.len()), (5, 5));
    assert!(reply.edns.is_some());

    // Idle TCP connections, up to the cap, then one more: answers go on over UDP, and over
    // TCP once the idle ones are closed.
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let reply = udp_ask(addr, &query("web.service.consul.", RecordType::A, 81)).await;
    assert_eq!(reply.answers.len(), 3);
    for mut stream in idle {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "an idle connection is closed: {read:?}");
    }
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let reply = tcp_ask(&mut stream, &query("web.service.consul.", RecordType::A, 82)).await;
    assert_eq!(reply.answers.len(), 5, "TCP: every answer");
    let reply = tcp_ask(&mut stream, &query("_web._tcp.service.consul.", RecordType::SRV, 83)).await;
    assert_eq!((reply.metadata.id, reply.answers.len()), (83, 5));
    assert!(stats.tcp_timeouts.load(std::sync::atomic::Ordering::Relaxed) >= 4);
    assert!(stats.refused_busy.load(std::sync::atomic::Ordering::Relaxed) >= 1);

    // Garbage over TCP closes that connection only.
    let mut bad = tokio::net::TcpStream::connect(addr).await.unwrap();
    bad.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(bad.read(&mut byte).await, Ok(0) | Err(_)));
    let reply = udp_ask(addr, &query("example.com.", RecordType::A, 84)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    server.abort();
}

// ---- settings ----

#[test]
fn dns_config_takes_consuls_fields_and_names_bad_values() {
    let block = serde_json::json!({
        "node_ttl": "30s",
        "service_ttl": {"web": "10s", "*": "5s"},
        "udp_answer_limit": 5,
        "a_record_limit": 2,
        "only_passing": true,
        "enable_truncate": true,
        "max_stale": "10s",
        "soa": {"min_ttl": 60, "serial": 1},
        "recursor_timeout": "2s",
    });
    let (config, ignored) =
        DnsConfig::from_settings(Some(("Example.", "-domain")), "dc1", Some((&block, "dns_config in a.json"))).unwrap();
    assert_eq!(config.domain_name(), Name::from_ascii("example.").unwrap());
    assert_eq!((config.node_ttl, config.service_ttl("web"), config.service_ttl("db")), (30, 10, 5));
    assert_eq!((config.udp_answer_limit, config.a_record_limit), (5, 2));
    assert!(config.only_passing && config.enable_truncate && config.allow_stale);
    assert_eq!(config.max_stale, Duration::from_secs(10));
    assert_eq!((config.soa.min_ttl, config.soa.refresh), (60, 3600));
    assert_eq!(ignored.len(), 2, "{ignored:?}");

    let (defaults, _) = DnsConfig::from_settings(None, "dc1", None).unwrap();
    assert_eq!(defaults, config_default());
    let bad = serde_json::json!({"node_ttl": 30});
    let error = DnsConfig::from_settings(None, "dc1", Some((&bad, "dns_config in a.json"))).unwrap_err();
    assert!(error.starts_with("dns_config in a.json: node_ttl: 30 must be a duration"), "{error}");
    let error = DnsConfig::from_settings(Some(("a..b", "-domain")), "dc1", None).unwrap_err();
    assert!(error.starts_with("-domain: "), "{error}");
}

fn config_default() -> DnsConfig {
    let config = DnsConfig::new("consul.", "dc1").unwrap();
    assert_eq!((config.node_ttl, config.udp_answer_limit, config.a_record_limit), (0, 3, 0));
    assert!(!config.only_passing && config.allow_stale && !config.enable_truncate);
    assert_eq!(config.max_stale, Duration::from_secs(87_600 * 3600));
    config
}

#[test]
fn dns_port_minus_one_turns_dns_off() {
    use crate::cli::AgentArgs;
    let args = |port: &str| AgentArgs { dev: true, dns_port: Some(port.into()), ..AgentArgs::default() };
    assert_eq!(crate::config::resolve(&args("-1")).unwrap().dns_port, None);
    assert_eq!(crate::config::resolve(&args("8653")).unwrap().dns_port, Some(8653));
    let defaults = crate::config::resolve(&AgentArgs { dev: true, ..AgentArgs::default() }).unwrap();
    assert_eq!((defaults.dns_port, defaults.dns.domain_name().to_ascii()), (Some(8600), "consul.".to_owned()));
    assert!(crate::config::resolve(&args("0")).is_err());

    // From a config file, with -domain over the file's domain.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dns.json");
    std::fs::write(
        &file,
        r#"{"domain": "file.", "ports": {"dns": 8654}, "dns_config": {"node_ttl": "1m", "udp_answer_limit": 0}}"#,
    )
    .unwrap();
    let from_file = |domain: Option<&str>| {
        crate::config::resolve(&AgentArgs {
            dev: true,
            config_file: vec![file.clone()],
            domain: domain.map(str::to_owned),
            ..AgentArgs::default()
        })
    };
    let error = from_file(None).unwrap_err().to_string();
    assert!(error.contains("udp_answer_limit: 0 must be a whole number from 1"), "{error}");
    std::fs::write(&file, r#"{"domain": "file.", "ports": {"dns": 8654}, "dns_config": {"node_ttl": "1m"}}"#).unwrap();
    let settings = from_file(None).unwrap();
    assert_eq!((settings.dns_port, settings.dns.node_ttl), (Some(8654), 60));
    assert_eq!(settings.dns.domain_name().to_ascii(), "file.");
    assert_eq!(from_file(Some("flag")).unwrap().dns.domain_name().to_ascii(), "flag.");
}

/// A registry last in contact with a leader long ago; a read barrier succeeds or not.
struct StaleView {
    registry: RwLock<Registry>,
    barrier: bool,
}

impl super::View for StaleView {
    fn read(&self) -> crate::store::RegistryRead<'_> {
        Box::new(self.registry.read().expect("registry lock"))
    }

    fn last_contact(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn consistent(&self) -> crate::store::BoxFuture<'_, bool> {
        let barrier = self.barrier;
        Box::pin(async move { barrier })
    }
}

#[tokio::test]
async fn state_older_than_max_stale_needs_a_read_barrier_or_is_servfail() {
    for (barrier, max_stale, expected) in [
        (false, Duration::from_secs(87_600 * 3600), ResponseCode::NoError), // Consul's default: stale is fine
        (true, Duration::from_secs(10), ResponseCode::NoError),             // too stale, barrier had
        (false, Duration::from_secs(10), ResponseCode::ServFail),           // too stale, no leader
    ] {
        let view = Arc::new(StaleView { registry: RwLock::new(many(2).registry), barrier });
        let mut cfg = config();
        cfg.max_stale = max_stale;
        let server =
            DnsServer::bind("127.0.0.1:0".parse().unwrap(), view, Arc::new(cfg), Limits::default()).await.unwrap();
        let (addr, stats) = (server.local_addr().unwrap(), server.stats());
        let task = tokio::spawn(server.run());
        let reply = udp_ask(addr, &query("web.service.consul.", RecordType::A, 9)).await;
        assert_eq!(reply.metadata.response_code, expected, "barrier {barrier}, max_stale {max_stale:?}");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let reply = tcp_ask(&mut stream, &query("web.service.consul.", RecordType::A, 10)).await;
        assert_eq!(reply.metadata.response_code, expected);
        let failures = stats.stale_failures.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(failures, if expected == ResponseCode::ServFail { 2 } else { 0 });
        task.abort();
    }
}
