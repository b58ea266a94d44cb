//! The network-namespace backend (root): one namespace per node, each with a veth pair into a
//! bridge of our own, so that every byte an agent sends is counted on its veth (TCP included),
//! and loss and partitions are iptables rules inside the namespaces (the `statistic` match for
//! random loss), changed from any thread through [`Links`]. Latency needs the kernel's `netem`
//! queueing discipline ([`Links::netem`], [`netem_available`]); the kernel this was measured on
//! has none, so the stress suite skips its latency setting there and says so.
//!
//! ```text
//!   host: bridge cb<tag>br<net> 10.213.<net>.1/24 ── veth cb<tag>s<net>n<i> ─┐
//!                                                                          │ (veth pair)
//!   namespace cb<tag>-<net>-<i>:  eth0 10.213.<net>.<10+i>/24, lo ─────────┘   agent i
//!
//! (`net` is the cluster's network number, [`crate::system::default_net`] of its system.)
//! ```
//!
//! Processes that are not application nodes (consul-lite's servers) get namespaces of their own
//! on the same bridge at addresses the caller chooses ([`Topology::attach`], giving [`Hosts`]),
//! so that a partition can cut them off too: [`Links::join`] puts both in one [`Links`].
//!
//! Everything is named after the harness's PID and removed when the [`Topology`] is dropped
//! (after the agents in it were killed): namespaces (which takes their veths along), the bridge,
//! and the `FORWARD` rule that lets bridged traffic through a host firewall whose policy drops.
//!
//! **No ARP: every neighbour is entered permanently.** Linux keeps one IPv4 neighbour table for
//! all network namespaces together, and its limits (`net.ipv4.neigh.default.gc_thresh1/2/3`,
//! 128/512/1024 by default, settable only in the host's namespace) count the entries of every
//! namespace. A cluster of n nodes that all talk to each other needs about n² entries (each
//! namespace resolves the other n - 1 nodes and the host), so 50 nodes need some 2,550: past
//! 1,024 the kernel refuses new entries ("neighbour: arp_cache: neighbor table overflow!"),
//! datagrams to a node whose address was not resolved yet are dropped, each namespace ends up
//! knowing only some twenty of its peers, and the host cannot reach most agents' RPC; neither
//! Serf nor serf-agent then forms a 50-node cluster. So each veth end and the bridge get a MAC
//! address derived from their IPv4 address ([`mac`]), and every namespace (and the host, on the
//! bridge) gets a `PERMANENT` entry for every other address of the network. Permanent entries
//! are exempt from those limits, no ARP is sent, and nothing outside our namespaces changes (no
//! host-wide sysctl). The veth counters therefore hold the agents' own IP traffic and no ARP.

use std::net::Ipv4Addr;
use std::process::Command;

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run("ip", args)
}

/// Start `program args` with `input` on its standard input (written at once; the pipe is closed
/// after it, so that the program sees the end of its input).
fn spawn_with_input(program: &str, args: &[&str], input: &str) -> anyhow::Result<std::process::Child> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child =
        Command::new(program).args(args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    child.stdin.take().ok_or_else(|| anyhow::anyhow!("{program}: no stdin"))?.write_all(input.as_bytes())?;
    Ok(child)
}

/// Wait for a child of [`spawn_with_input`]; an error names it and gives its stderr.
fn finish(child: std::process::Child, what: &str) -> anyhow::Result<()> {
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

/// `ip [-n netns] -batch -` with `commands` (one `ip` command per line, without the `ip`) on its
/// standard input: one process for many commands; it stops at the first that fails.
fn ip_batch(netns: Option<&str>, commands: &str) -> anyhow::Result<()> {
    let mut args = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-batch", "-"]);
    finish(spawn_with_input("ip", &args, commands)?, &format!("ip {}", args.join(" ")))
}

/// The short tag of this process in every name (interface names are at most 15 bytes).
fn tag() -> u32 {
    std::process::id() % 10_000
}

/// Remove the namespaces, bridges and `FORWARD` rules this process may have created (after a
/// signal, when no `Drop` runs).
pub fn remove_leftovers() {
    let prefix = format!("cb{}-", tag());
    if let Ok(list) = ip(&["netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with(&prefix)) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
    let bridge_prefix = format!("cb{}br", tag());
    if let Ok(list) = ip(&["-o", "link", "show", "type", "bridge"]) {
        // Lines look like `7: cb123br10: <BROADCAST,...> mtu ...`.
        for bridge in list.lines().filter_map(|l| l.split(": ").nth(1)).filter(|b| b.starts_with(&bridge_prefix)) {
            let _ = ip(&["link", "del", bridge]);
            let _ = run("iptables", &["-w", "-D", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]);
        }
    }
}

/// Whether namespaces can be made here (root, `ip` and `iptables` present).
pub fn available() -> bool {
    crate::process::is_root() && crate::system::which("ip").is_some() && crate::system::which("iptables").is_some()
}

/// The address of node `index` on network number `net` in the namespace backend.
pub fn node_ip(net: u8, index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, net, 10 + index as u8)
}

/// The host's address on the bridge of network `net` (where the harness polls from).
fn gateway(net: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, net, 1)
}

/// The MAC address of the interface that has IPv4 address `addr` (a node's `eth0`, or the
/// bridge for the host's address): `02:cb` (locally administered, unicast) and the four bytes
/// of the address, so that every neighbour entry can be written before anything runs.
pub fn mac(addr: Ipv4Addr) -> String {
    let [a, b, c, d] = addr.octets();
    format!("02:cb:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// `ip neigh` commands (for [`ip_batch`]) that enter each of `addrs` as a permanent neighbour on
/// `dev`.
fn permanent_neighbours(addrs: impl IntoIterator<Item = Ipv4Addr>, dev: &str) -> String {
    addrs.into_iter().map(|a| format!("neigh replace {a} lladdr {} dev {dev} nud permanent\n", mac(a))).collect()
}

/// A bridge and one namespace per node.
#[derive(Debug)]
pub struct Topology {
    net: u8,
    bridge: String,
    namespaces: Vec<String>,
    veths: Vec<String>,
    forward_rule: bool,
}

impl Topology {
    /// Create the bridge and `n` namespaces on network number `net` (10.213.`net`.0/24).
    pub fn create(net: u8, n: usize) -> anyhow::Result<Self> {
        let tag = tag();
        let mut t = Self {
            net,
            bridge: format!("cb{tag}br{net}"),
            namespaces: Vec::new(),
            veths: Vec::new(),
            forward_rule: false,
        };
        let gateway_addr = gateway(net);
        let gateway = format!("{gateway_addr}/24");
        let _ = ip(&["link", "del", &t.bridge]);
        // A fixed address: a bridge otherwise takes the lowest of its ports' and changes it as
        // ports come, which would break the namespaces' permanent entry for the host.
        ip(&["link", "add", &t.bridge, "address", &mac(gateway_addr), "type", "bridge"])?;
        ip(&["addr", "add", &gateway, "dev", &t.bridge])?;
        ip(&["link", "set", &t.bridge, "up"])?;
        run("iptables", &["-w", "-I", "FORWARD", "-i", &t.bridge, "-o", &t.bridge, "-j", "ACCEPT"])?;
        t.forward_rule = true;
        for i in 0..n {
            let ns = format!("cb{tag}-{net}-{i}");
            let veth = format!("cb{tag}s{net}n{i}");
            let _ = ip(&["netns", "del", &ns]);
            // A namespace deleted while a process still ran in it lives on with its veth.
            let _ = ip(&["link", "del", &veth]);
            ip(&["netns", "add", &ns])?;
            t.namespaces.push(ns.clone());
            let eth0_mac = mac(node_ip(net, i));
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "address", &eth0_mac, "netns", &ns])?;
            t.veths.push(veth.clone());
            ip(&["link", "set", &veth, "master", &t.bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            // Addresses, links up, then the neighbours (taking a link down would flush them):
            // the host and every other node, permanently (see the module doc).
            let mut commands = format!("addr add {}/24 dev eth0\nlink set eth0 up\nlink set lo up\n", node_ip(net, i));
            let others = (0..n).filter(|&j| j != i).map(|j| node_ip(net, j));
            commands.push_str(&permanent_neighbours(std::iter::once(gateway_addr).chain(others), "eth0"));
            ip_batch(Some(&ns), &commands)?;
        }
        // The host's side: every node, for the harness's polls.
        ip_batch(None, &permanent_neighbours((0..n).map(|i| node_ip(net, i)), &t.bridge))?;
        Ok(t)
    }

    /// Its network number (third octet of every address).
    pub fn net(&self) -> u8 {
        self.net
    }

    /// The namespace of node `i`.
    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// Packets and bytes each node has sent so far (its veth's receive counters on the host side).
    pub fn sent(&self) -> Vec<(u64, u64)> {
        veth_counters(&self.veths)
    }

    /// What it takes to change this topology's rules and queues from another thread.
    pub fn links(&self) -> Links {
        let addrs = (0..self.namespaces.len()).map(|i| node_ip(self.net, i)).collect();
        Links { net: self.net, namespaces: self.namespaces.clone(), addrs }
    }

    /// Give each of `addrs` (on this topology's network, outside the nodes' addresses
    /// `10.213.<net>.10..`) a namespace of its own on the bridge, set up as a node's (permanent
    /// neighbours both ways, with every node, the host and each other): for processes that are
    /// not application nodes, such as consul-lite's servers. They are removed when the returned
    /// [`Hosts`] is dropped (after the processes in them were killed).
    pub fn attach(&self, addrs: &[Ipv4Addr]) -> anyhow::Result<Hosts> {
        let net = self.net;
        let nodes: Vec<Ipv4Addr> = (0..self.namespaces.len()).map(|i| node_ip(net, i)).collect();
        for a in addrs {
            anyhow::ensure!(
                a.octets()[..3] == [10, 213, net] && *a != gateway(net) && !nodes.contains(a),
                "host address {a}: must be in 10.213.{net}.0/24 and not the bridge's or a node's"
            );
        }
        let tag = tag();
        let mut h = Hosts { net, namespaces: Vec::new(), veths: Vec::new(), addrs: addrs.to_vec() };
        for (k, &addr) in addrs.iter().enumerate() {
            let ns = format!("cb{tag}-{net}-h{k}");
            let veth = format!("cb{tag}s{net}h{k}");
            let _ = ip(&["netns", "del", &ns]);
            let _ = ip(&["link", "del", &veth]);
            ip(&["netns", "add", &ns])?;
            h.namespaces.push(ns.clone());
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "address", &mac(addr), "netns", &ns])?;
            h.veths.push(veth.clone());
            ip(&["link", "set", &veth, "master", &self.bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            let mut commands = format!("addr add {addr}/24 dev eth0\nlink set eth0 up\nlink set lo up\n");
            let others = nodes.iter().chain(addrs).copied().filter(|&o| o != addr);
            commands.push_str(&permanent_neighbours(std::iter::once(gateway(net)).chain(others), "eth0"));
            ip_batch(Some(&ns), &commands)?;
        }
        for ns in &self.namespaces {
            ip_batch(Some(ns), &permanent_neighbours(addrs.iter().copied(), "eth0"))?;
        }
        ip_batch(None, &permanent_neighbours(addrs.iter().copied(), &self.bridge))?;
        Ok(h)
    }

    /// Drop each packet a node receives from another node with probability `p` (traffic from
    /// the host, where the harness polls from, is spared). Packets are dropped on the way in, so
    /// the sender sees no error, as on a lossy wire (dropped in `OUTPUT`, `sendto` would fail
    /// with `EPERM`, and memberlist skips a probe whose ping it could not send).
    pub fn set_loss(&self, p: f64) -> anyhow::Result<()> {
        self.links().set_loss(p)
    }

    /// Cut every node of `a` off from every node of `b`, both ways: each node silently drops
    /// what it receives from the other side (TCP included; senders see no error, as when a
    /// switch between them fails).
    pub fn partition(&self, a: &[usize], b: &[usize]) -> anyhow::Result<()> {
        self.links().partition(a, b)
    }

    /// Remove every loss and partition rule.
    pub fn heal(&self) -> anyhow::Result<()> {
        self.links().heal()
    }
}

/// Namespaces attached to a [`Topology`]'s bridge for processes that are not application nodes
/// ([`Topology::attach`]); removed when dropped.
#[derive(Debug)]
pub struct Hosts {
    net: u8,
    namespaces: Vec<String>,
    veths: Vec<String>,
    addrs: Vec<Ipv4Addr>,
}

impl Hosts {
    /// The namespace of host `k`.
    pub fn namespace(&self, k: usize) -> &str {
        &self.namespaces[k]
    }

    /// The address of host `k`.
    pub fn addr(&self, k: usize) -> Ipv4Addr {
        self.addrs[k]
    }

    /// Packets and bytes each host has sent so far (as [`Topology::sent`]).
    pub fn sent(&self) -> Vec<(u64, u64)> {
        veth_counters(&self.veths)
    }

    /// Their rules, as a topology's ([`Links::join`] them to the topology's).
    pub fn links(&self) -> Links {
        Links { net: self.net, namespaces: self.namespaces.clone(), addrs: self.addrs.clone() }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        // The veths go with the namespaces; one whose namespace is gone already is removed here.
        for veth in &self.veths {
            let _ = ip(&["link", "del", veth]);
        }
    }
}

/// The receive counters (packets, bytes) of host-side veths: what the other end sent.
fn veth_counters(veths: &[String]) -> Vec<(u64, u64)> {
    veths
        .iter()
        .map(|v| {
            let read = |f: &str| {
                std::fs::read_to_string(format!("/sys/class/net/{v}/statistics/{f}"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0)
            };
            (read("rx_packets"), read("rx_bytes"))
        })
        .collect()
}

/// The namespaces of a [`Topology`] (and of attached [`Hosts`]), to change their iptables rules
/// and queueing disciplines (from any thread; the topology itself still owns and removes them).
/// Member `i` is node `i`, then the hosts joined, in order.
#[derive(Debug, Clone)]
pub struct Links {
    net: u8,
    namespaces: Vec<String>,
    addrs: Vec<Ipv4Addr>,
}

impl Links {
    /// These members followed by `other`'s (numbered from `self.len()`).
    #[must_use]
    pub fn join(mut self, other: Self) -> Self {
        self.namespaces.extend(other.namespaces);
        self.addrs.extend(other.addrs);
        self
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.namespaces.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// Apply iptables rules (lines of `iptables-restore` for the filter table, e.g. `-A INPUT
    /// ...` or `-F INPUT`) in several namespaces at once: one `iptables-restore --noflush` per
    /// namespace, all started before any is waited for, so that a partition of 50 nodes is cut
    /// in a fraction of a second rather than by 1,250 `iptables` calls one after the other
    /// (which took 7 to 13 s of a 20 s partition on this machine).
    pub fn apply_rules(&self, rules: impl IntoIterator<Item = (usize, Vec<String>)>) -> anyhow::Result<()> {
        let mut children = Vec::new();
        for (i, lines) in rules {
            let input = format!("*filter\n{}\nCOMMIT\n", lines.join("\n"));
            let ns = self.namespaces[i].as_str();
            let args = ["netns", "exec", ns, "iptables-restore", "-w", "--noflush"];
            children.push((ns, spawn_with_input("ip", &args, &input)));
        }
        // Wait for every child, even after an error, so that none is left unreaped.
        let mut first_error = None;
        for (ns, child) in children {
            let result = child.and_then(|c| finish(c, &format!("iptables-restore in {ns}")));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// As [`Topology::set_loss`].
    pub fn set_loss(&self, p: f64) -> anyhow::Result<()> {
        let lines = loss_rules(self.net, p);
        self.apply_rules((0..self.namespaces.len()).map(|i| (i, lines.clone())))
    }

    /// As [`Topology::partition`] (members by number: nodes, then joined hosts).
    pub fn partition(&self, a: &[usize], b: &[usize]) -> anyhow::Result<()> {
        self.apply_rules(self.partition_plan(a, b))
    }

    /// The rules of [`Links::partition`]: per member of either side, drop what comes from each
    /// member of the other.
    fn partition_plan(&self, a: &[usize], b: &[usize]) -> Vec<(usize, Vec<String>)> {
        let addrs = |side: &[usize]| side.iter().map(|&j| self.addrs[j]).collect::<Vec<_>>();
        let (to_a, to_b) = (addrs(a), addrs(b));
        let mut plan: Vec<(usize, Vec<String>)> = a.iter().map(|&i| (i, partition_rules(&to_b))).collect();
        plan.extend(b.iter().map(|&i| (i, partition_rules(&to_a))));
        plan
    }

    /// Lose each packet node `node` sends to another node with probability `p`, and nothing
    /// else (one-way loss): every other node drops what it receives from `node` with that
    /// probability, so `node`'s `sendto` sees no error.
    pub fn one_way_loss(&self, node: usize, p: f64) -> anyhow::Result<()> {
        let lines = one_way_rules(self.addrs[node], p);
        self.apply_rules((0..self.namespaces.len()).filter(|&i| i != node).map(|i| (i, lines.clone())))
    }

    /// Cut each node of `cut` off from every other node, both ways (what a node in the bad
    /// state of a burst suffers): every node's `INPUT` is rewritten from scratch.
    pub fn isolate(&self, cut: &[usize]) -> anyhow::Result<()> {
        let n = self.namespaces.len();
        let rules = (0..n).map(|i| {
            let from: Vec<Ipv4Addr> = if cut.contains(&i) {
                (0..n).filter(|&j| j != i).map(|j| self.addrs[j]).collect()
            } else {
                cut.iter().copied().filter(|&j| j != i).map(|j| self.addrs[j]).collect()
            };
            let mut lines = vec!["-F INPUT".to_owned()];
            lines.extend(partition_rules(&from));
            (i, lines)
        });
        self.apply_rules(rules)
    }

    /// Remove every loss and partition rule.
    pub fn heal(&self) -> anyhow::Result<()> {
        self.apply_rules((0..self.namespaces.len()).map(|i| (i, vec!["-F INPUT".to_owned()])))
    }

    /// `tc qdisc replace dev eth0 root netem <netem>` in every namespace (e.g. `delay 50ms
    /// 40ms`): every packet a node sends goes through it. Fails where the kernel has no
    /// `sch_netem` (see [`netem_available`]).
    pub fn netem(&self, netem: &[&str]) -> anyhow::Result<()> {
        for ns in &self.namespaces {
            let mut args = vec!["-n", ns.as_str(), "qdisc", "replace", "dev", "eth0", "root", "netem"];
            args.extend_from_slice(netem);
            run("tc", &args)?;
        }
        Ok(())
    }

    /// Remove what [`Links::netem`] set.
    pub fn clear_netem(&self) {
        for ns in &self.namespaces {
            let _ = run("tc", &["-n", ns, "qdisc", "del", "dev", "eth0", "root"]);
        }
    }
}

/// Whether this kernel has the `netem` queueing discipline (tried on the loopback interface of a
/// scratch namespace, removed at once).
pub fn netem_available() -> bool {
    let ns = format!("cb{}-netem", tag());
    if ip(&["netns", "add", &ns]).is_err() {
        return false;
    }
    let ok = run("tc", &["-n", &ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]).is_ok();
    let _ = ip(&["netns", "del", &ns]);
    ok
}

/// The `iptables-restore` lines of [`Topology::set_loss`] on network `net`.
fn loss_rules(net: u8, p: f64) -> Vec<String> {
    vec![
        format!("-A INPUT -s {} -j ACCEPT", gateway(net)),
        format!("-A INPUT -s 10.213.{net}.0/24 -m statistic --mode random --probability {p} -j DROP"),
    ]
}

/// The `iptables-restore` lines of [`Links::one_way_loss`]: drop what comes from `from` with
/// probability `p`.
fn one_way_rules(from: Ipv4Addr, p: f64) -> Vec<String> {
    vec![format!("-A INPUT -s {from} -m statistic --mode random --probability {p} -j DROP")]
}

/// The `iptables-restore` lines that make a member drop what it receives from each address of
/// `other`.
fn partition_rules(other: &[Ipv4Addr]) -> Vec<String> {
    other.iter().map(|a| format!("-A INPUT -s {a} -j DROP")).collect()
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        if self.forward_rule {
            let _ = run("iptables", &["-w", "-D", "FORWARD", "-i", &self.bridge, "-o", &self.bridge, "-j", "ACCEPT"]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_follow_addresses() {
        assert_eq!(mac(node_ip(10, 0)), "02:cb:0a:d5:0a:0a");
        assert_eq!(mac(node_ip(17, 49)), "02:cb:0a:d5:11:3b");
        assert_eq!(mac(gateway(11)), "02:cb:0a:d5:0b:01");
        // Locally administered (bit 1) and unicast (bit 0 clear) in the first byte.
        let first = u8::from_str_radix(&mac(node_ip(10, 3))[..2], 16).unwrap();
        assert_eq!(first & 0b11, 0b10);
    }

    #[test]
    fn iptables_restore_lines() {
        assert_eq!(
            loss_rules(12, 0.1),
            [
                "-A INPUT -s 10.213.12.1 -j ACCEPT",
                "-A INPUT -s 10.213.12.0/24 -m statistic --mode random --probability 0.1 -j DROP"
            ]
        );
        assert_eq!(
            one_way_rules(node_ip(12, 1), 0.5),
            ["-A INPUT -s 10.213.12.11 -m statistic --mode random --probability 0.5 -j DROP"]
        );
        assert_eq!(
            partition_rules(&[node_ip(10, 2), node_ip(10, 3)]),
            ["-A INPUT -s 10.213.10.12 -j DROP", "-A INPUT -s 10.213.10.13 -j DROP"]
        );
    }

    #[test]
    fn joined_hosts_are_members_after_the_nodes() {
        let ns = |k: usize| format!("ns{k}");
        let nodes = Links { net: 10, namespaces: vec![ns(0), ns(1)], addrs: vec![node_ip(10, 0), node_ip(10, 1)] };
        let servers = Links { net: 10, namespaces: vec![ns(2)], addrs: vec![Ipv4Addr::new(10, 213, 10, 2)] };
        let all = nodes.join(servers);
        assert_eq!(all.len(), 3);
        // Node 0 and the server against node 1.
        let plan = all.partition_plan(&[0, 2], &[1]);
        assert_eq!(
            plan,
            [
                (0, vec!["-A INPUT -s 10.213.10.11 -j DROP".to_owned()]),
                (2, vec!["-A INPUT -s 10.213.10.11 -j DROP".to_owned()]),
                (1, vec!["-A INPUT -s 10.213.10.10 -j DROP".to_owned(), "-A INPUT -s 10.213.10.2 -j DROP".to_owned()]),
            ]
        );
    }

    #[test]
    fn neighbour_commands() {
        let text = permanent_neighbours([gateway(10), node_ip(10, 1)], "eth0");
        assert_eq!(
            text,
            "neigh replace 10.213.10.1 lladdr 02:cb:0a:d5:0a:01 dev eth0 nud permanent\n\
             neigh replace 10.213.10.11 lladdr 02:cb:0a:d5:0a:0b dev eth0 nud permanent\n"
        );
    }
}
