//! The network-namespace backend (root): one namespace per node, each with a veth pair into a
//! bridge of our own, so that every byte an agent sends is counted on its veth (TCP included),
//! and loss and partitions are iptables rules inside the namespaces (the `statistic` match for
//! random loss; this kernel has no netem).
//!
//! ```text
//!   host: bridge cb<tag>br<net> 10.213.<net>.1/24 ── veth cb<tag>s<net>n<i> ─┐
//!                                                                          │ (veth pair)
//!   namespace cb<tag>-<net>-<i>:  eth0 10.213.<net>.<10+i>/24, lo ─────────┘   agent i
//!
//! (`net` is the cluster's network number, [`crate::system::default_net`] of its system.)
//! ```
//!
//! Everything is named after the harness's PID and removed when the [`Topology`] is dropped
//! (after the agents in it were killed): namespaces (which takes their veths along), the bridge,
//! and the `FORWARD` rule that lets bridged traffic through a host firewall whose policy drops.

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
        let gateway = format!("{}/24", gateway(net));
        let _ = ip(&["link", "del", &t.bridge]);
        ip(&["link", "add", &t.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &gateway, "dev", &t.bridge])?;
        ip(&["link", "set", &t.bridge, "up"])?;
        run("iptables", &["-w", "-I", "FORWARD", "-i", &t.bridge, "-o", &t.bridge, "-j", "ACCEPT"])?;
        t.forward_rule = true;
        for i in 0..n {
            let ns = format!("cb{tag}-{net}-{i}");
            let veth = format!("cb{tag}s{net}n{i}");
            let _ = ip(&["netns", "del", &ns]);
            ip(&["netns", "add", &ns])?;
            t.namespaces.push(ns.clone());
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            t.veths.push(veth.clone());
            ip(&["link", "set", &veth, "master", &t.bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            let addr = format!("{}/24", node_ip(net, i));
            ip(&["netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "eth0", "up"])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(t)
    }

    /// The namespace of node `i`.
    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// Packets and bytes each node has sent so far (its veth's receive counters on the host side).
    pub fn sent(&self) -> Vec<(u64, u64)> {
        self.veths
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

    fn in_ns(&self, i: usize, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["netns", "exec", self.namespaces[i].as_str(), "iptables", "-w"];
        full.extend_from_slice(args);
        ip(&full).map(drop)
    }

    /// Drop each packet a node receives from another node with probability `p` (traffic from
    /// the host, where the harness polls from, is spared). Packets are dropped on the way in, so
    /// the sender sees no error, as on a lossy wire (dropped in `OUTPUT`, `sendto` would fail
    /// with `EPERM`, and memberlist skips a probe whose ping it could not send).
    pub fn set_loss(&self, p: f64) -> anyhow::Result<()> {
        let subnet = format!("10.213.{}.0/24", self.net);
        let gateway = gateway(self.net).to_string();
        let p = p.to_string();
        for i in 0..self.namespaces.len() {
            self.in_ns(i, &["-A", "INPUT", "-s", &gateway, "-j", "ACCEPT"])?;
            self.in_ns(
                i,
                &[
                    "-A",
                    "INPUT",
                    "-s",
                    &subnet,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Cut every node of `a` off from every node of `b`, both ways: each node silently drops
    /// what it receives from the other side (TCP included; senders see no error, as when a
    /// switch between them fails).
    pub fn partition(&self, a: &[usize], b: &[usize]) -> anyhow::Result<()> {
        for (side, other) in [(a, b), (b, a)] {
            for &i in side {
                for &j in other {
                    let src = node_ip(self.net, j).to_string();
                    self.in_ns(i, &["-A", "INPUT", "-s", &src, "-j", "DROP"])?;
                }
            }
        }
        Ok(())
    }

    /// Remove every loss and partition rule.
    pub fn heal(&self) -> anyhow::Result<()> {
        for i in 0..self.namespaces.len() {
            self.in_ns(i, &["-F", "INPUT"])?;
        }
        Ok(())
    }
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
