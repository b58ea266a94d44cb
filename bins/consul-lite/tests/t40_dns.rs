//! The DNS interface of a real `consul-lite agent -dev` process: Consul's names over UDP and
//! TCP, asked with `dig` (Debian's `bind9-dnsutils`, installed here when missing and this
//! is root on Debian) and with a small hickory-proto client; garbage packets and idle TCP
//! connections do not stop the answers.
//!
//! There is no `PUT /v1/catalog/register` endpoint yet: the records asked for are those the
//! agent registers itself (its node, the `consul` service on the server port) and the nodes
//! the gossip pool brings in. Registrations of other services (tags, health filtering,
//! SRV of many instances) are tested against `Registry::apply` commands in the `dns`
//! module's unit tests.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{dns_ask, Agent};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

/// `dig`, installed with apt when it is missing and this is root on Debian; `None` otherwise
/// (the hickory-proto client still asks everything).
fn dig() -> Option<&'static str> {
    static DIG: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    *DIG.get_or_init(|| {
        let present = || Command::new("dig").arg("-v").output().is_ok_and(|o| o.status.success());
        if present() {
            return Some("dig");
        }
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if !root || !std::path::Path::new("/etc/debian_version").exists() {
            eprintln!("dig is missing (not root on Debian): asking with the hickory-proto client only");
            return None;
        }
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q", "bind9-dnsutils"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = Command::new("apt-get").args(["update", "-q"]).status();
            install();
        }
        if present() {
            Some("dig")
        } else {
            eprintln!("dig could not be installed: asking with the hickory-proto client only");
            None
        }
    })
}

/// `dig @127.0.0.1 -p PORT ARGS... +short` (with `+tcp` when asked), trimmed lines.
fn dig_short(port: u16, args: &[&str]) -> Option<Vec<String>> {
    let dig = dig()?;
    let output = Command::new(dig)
        .args(["@127.0.0.1", "-p", &port.to_string(), "+short", "+time=2", "+tries=2"])
        .args(args)
        .output()
        .expect("run dig");
    assert!(output.status.success(), "dig {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    Some(String::from_utf8_lossy(&output.stdout).lines().map(|l| l.trim().to_owned()).collect())
}

/// The full `dig` output.
fn dig_full(port: u16, args: &[&str]) -> Option<String> {
    let dig = dig()?;
    let output = Command::new(dig)
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=2"])
        .args(args)
        .output()
        .expect("run dig");
    // Whitespace collapsed: dig aligns columns with tabs and spaces.
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    Some(text.lines().map(|line| line.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n"))
}

fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn consul_names_over_udp_and_tcp_with_dig_and_hickory() {
    let a = Agent::start("dns-a", &[]);
    let b = Agent::start("dns-b", &["-join", &format!("127.0.0.1:{}", a.serf)]);

    for tcp in [false, true] {
        // The agent's own `consul` service (on the default server port 8300): SRV with the
        // node's A record in the additional section.
        let reply = dns_ask(a.dns, "consul.service.consul.", RecordType::SRV, tcp).expect("an SRV reply");
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        let [answer] = &reply.answers[..] else { panic!("one SRV answer: {reply:?}") };
        let RData::SRV(srv) = &answer.data else { panic!("SRV: {answer:?}") };
        assert_eq!((srv.priority, srv.weight, srv.port), (1, 1, 8300));
        assert_eq!(srv.target.to_ascii(), "dns-a.node.dc1.consul.");
        assert_eq!(reply.additionals.len(), 1, "{reply:?}");
        assert_eq!(reply.additionals[0].name, srv.target);
        assert!(matches!(reply.additionals[0].data, RData::A(a) if a.0 == std::net::Ipv4Addr::LOCALHOST));
        assert_eq!(answer.ttl, 0, "Consul's default service TTL");

        // RFC 2782 form, A, and the node.
        let reply = dns_ask(a.dns, "_consul._tcp.service.consul.", RecordType::SRV, tcp).unwrap();
        assert_eq!(reply.answers.len(), 1);
        let reply = dns_ask(a.dns, "consul.service.dc1.consul.", RecordType::A, tcp).unwrap();
        assert_eq!(reply.answers.len(), 1);
        let reply = dns_ask(a.dns, "DNS-A.node.consul.", RecordType::A, tcp).unwrap();
        assert!(
            matches!(&reply.answers[..], [r] if matches!(r.data, RData::A(a) if a.0 == std::net::Ipv4Addr::LOCALHOST))
        );

        // Unknown: NXDOMAIN with the SOA; outside the domain: REFUSED.
        let reply = dns_ask(a.dns, "nope.service.consul.", RecordType::A, tcp).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert!(matches!(&reply.authorities[..], [r] if matches!(r.data, RData::SOA(_))));
        let reply = dns_ask(a.dns, "example.com.", RecordType::A, tcp).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    }

    // The node that joined the pool is in this agent's catalog, so in its DNS.
    let reply = eventually(Duration::from_secs(20), "dns-b in dns-a's catalog", || {
        dns_ask(a.dns, "dns-b.node.consul.", RecordType::A, false).filter(|r| !r.answers.is_empty())
    });
    assert_eq!(reply.answers.len(), 1);

    // The same with dig, as users ask.
    if let Some(srv) = dig_short(a.dns, &["consul.service.consul", "SRV"]) {
        assert_eq!(srv, ["1 1 8300 dns-a.node.dc1.consul."]);
        let full = dig_full(a.dns, &["consul.service.consul", "SRV"]).unwrap();
        assert!(full.contains("status: NOERROR") && full.contains("flags: qr aa"), "{full}");
        assert!(
            full.contains("ADDITIONAL SECTION:") && full.contains("dns-a.node.dc1.consul. 0 IN A 127.0.0.1"),
            "{full}"
        );
        assert_eq!(dig_short(a.dns, &["consul.service.consul", "A"]).unwrap(), ["127.0.0.1"]);
        assert_eq!(dig_short(a.dns, &["+tcp", "consul.service.consul", "A"]).unwrap(), ["127.0.0.1"]);
        assert_eq!(dig_short(a.dns, &["dns-a.node.consul"]).unwrap(), ["127.0.0.1"]);
        assert_eq!(dig_short(a.dns, &["dns-b.node.dc1.consul"]).unwrap(), ["127.0.0.1"]);
        let missing = dig_full(a.dns, &["web.service.consul", "SRV"]).unwrap();
        assert!(missing.contains("status: NXDOMAIN"), "{missing}");
        assert!(missing.contains("consul. 0 IN SOA ns.consul. hostmaster.consul."), "{missing}");
    }
    drop(b);
}

#[test]
fn garbage_packets_and_idle_connections_do_not_stop_answers() {
    let agent = Agent::start("dns-hostile", &[]);
    let ask = |tcp| dns_ask(agent.dns, "consul.service.consul.", RecordType::A, tcp).map(|r| r.answers.len());
    assert_eq!(ask(false), Some(1));

    // Garbage over UDP: never answered, counted, and answers go on.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let packets: [&[u8]; 5] = [b"", b"\x00\x01", &[0xff; 12], &[0x5a; 600], b"GET / HTTP/1.1\r\n\r\n"];
    for packet in packets {
        socket.send_to(packet, ("127.0.0.1", agent.dns)).unwrap();
    }
    socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 512];
    assert!(socket.recv(&mut buf).is_err(), "garbage is never answered");
    assert_eq!(ask(false), Some(1));

    // Idle TCP connections (they send nothing) and a TCP connection sending garbage.
    let idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(("127.0.0.1", agent.dns)).unwrap()).collect();
    let mut garbage = TcpStream::connect(("127.0.0.1", agent.dns)).unwrap();
    garbage.write_all(&[0, 4, 1, 2, 3, 4]).unwrap();
    assert_eq!(ask(false), Some(1), "UDP answers with idle TCP connections open");
    assert_eq!(ask(true), Some(1), "TCP answers with idle TCP connections open");
    garbage.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(matches!(garbage.read(&mut buf), Ok(0) | Err(_)), "a connection sending garbage is closed");

    // The idle ones are closed by the agent after its 8 s idle timeout.
    let started = Instant::now();
    for mut stream in idle {
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let read = stream.read(&mut buf);
        assert!(
            matches!(read, Ok(0) | Err(_)) && !matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        );
    }
    let closed = started.elapsed();
    assert!(closed < Duration::from_secs(12), "idle connections closed after {closed:?}");
    assert_eq!(ask(true), Some(1));

    let stats = agent.get("/v1/agent/self").json();
    let dns = &stats["Stats"]["dns"];
    let count = |field: &str| dns[field].as_str().and_then(|n| n.parse::<u64>().ok()).unwrap_or_default();
    assert!(count("malformed") >= 6, "{dns}");
    assert!(count("tcp_timeouts") >= 20, "{dns}");
    assert!(count("answered") >= 5, "{dns}");
}
