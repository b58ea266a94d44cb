//! iptables rules on loopback addresses the harness chose, for what needs the kernel's help:
//! bytes and packets sent per agent (a counting rule per source address), random loss between
//! agents (the `statistic` match; this kernel has no netem). Root only.
//!
//! On loopback a dialing agent's TCP packets leave from 127.0.0.1, not from its own address, so
//! TCP can be counted and dropped by the gossip port but not attributed to an agent or cut
//! between two groups of agents: partitions need the network-namespace backend.
//!
//! Every rule lives in a chain of our own (`CB<pid>A` for accounting, jumped to from `OUTPUT`;
//! `CB<pid>F` for faults, jumped to from `INPUT`); dropping the guard removes the jumps and the
//! chains. Rules only ever match source and destination addresses in 127.0.0.0/8 chosen by the
//! harness.
//!
//! Loss is applied on the way *in*: a packet dropped in `OUTPUT` makes the sender's `sendto`
//! fail with `EPERM`, which no real network does, and which memberlist (Serf) treats as its own
//! error and skips the probe instead of suspecting the peer. Dropped in `INPUT`, a packet is
//! lost silently, as on a wire.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::system::which;

fn iptables(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("iptables").arg("-w").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "iptables {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether iptables can be used here (root and the binary present).
pub fn available() -> bool {
    crate::process::is_root() && which("iptables").is_some() && iptables(&["-L", "OUTPUT", "-n"]).is_ok()
}

/// The built-in chains ours are jumped to from.
const HOOKS: [&str; 2] = ["OUTPUT", "INPUT"];

/// A chain of ours, jumped to from `OUTPUT` or `INPUT`; removed when dropped.
#[derive(Debug)]
pub struct Chain {
    name: String,
    hook: &'static str,
}

impl Chain {
    /// Create chain `CB<pid><suffix>` and jump to it from the top of `OUTPUT`.
    pub fn new(suffix: &str) -> anyhow::Result<Self> {
        Self::hooked(suffix, "OUTPUT")
    }

    /// Create chain `CB<pid><suffix>` and jump to it from the top of `INPUT` (for loss: see the
    /// module doc).
    pub fn on_input(suffix: &str) -> anyhow::Result<Self> {
        Self::hooked(suffix, "INPUT")
    }

    fn hooked(suffix: &str, hook: &'static str) -> anyhow::Result<Self> {
        let name = format!("CB{}{suffix}", std::process::id());
        for h in HOOKS {
            let _ = iptables(&["-D", h, "-j", &name]);
        }
        let _ = iptables(&["-F", &name]);
        let _ = iptables(&["-X", &name]);
        iptables(&["-N", &name])?;
        let chain = Self { name, hook };
        iptables(&["-I", hook, "1", "-j", &chain.name])?;
        Ok(chain)
    }

    /// Remove every rule of the chain.
    pub fn flush(&self) -> anyhow::Result<()> {
        iptables(&["-F", &self.name]).map(drop)
    }

    /// Append a rule (arguments after `-A CHAIN`).
    pub fn append(&self, rule: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["-A", self.name.as_str()];
        args.extend_from_slice(rule);
        iptables(&args).map(drop)
    }

    /// Packets and bytes matched by each rule so far, in rule order.
    pub fn counters(&self) -> anyhow::Result<Vec<(u64, u64)>> {
        let text = iptables(&["-L", &self.name, "-v", "-x", "-n"])?;
        Ok(text
            .lines()
            .skip(2)
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
            })
            .collect())
    }
}

/// Gossip traffic accounting for one cluster: UDP sent from each agent's address (exact), and
/// TCP to or from the gossip port within the cluster's /24 (push-pull, TCP probes; a dialing
/// agent's packets leave from 127.0.0.1 on loopback, so TCP is only known per cluster).
pub fn count_gossip(chain: &Chain, ips: &[Ipv4Addr], net: &str) -> anyhow::Result<()> {
    chain.flush()?;
    for ip in ips {
        chain.append(&["-p", "udp", "-s", &format!("{ip}/32")])?;
    }
    let port = crate::system::GOSSIP_PORT.to_string();
    chain.append(&["-p", "tcp", "-d", net, "--dport", &port])?;
    chain.append(&["-p", "tcp", "-s", net, "--sport", &port])?;
    Ok(())
}

/// Random loss with probability `p` on the cluster's gossip: UDP between its addresses, TCP to
/// and from its gossip port (in a chain made with [`Chain::on_input`]).
pub fn random_loss(chain: &Chain, net: &str, p: f64) -> anyhow::Result<()> {
    let p = format!("{p}");
    let port = crate::system::GOSSIP_PORT.to_string();
    let stat = ["-m", "statistic", "--mode", "random", "--probability", p.as_str(), "-j", "DROP"];
    for head in [
        vec!["-p", "udp", "-s", net, "-d", net],
        vec!["-p", "tcp", "-d", net, "--dport", port.as_str()],
        vec!["-p", "tcp", "-s", net, "--sport", port.as_str()],
    ] {
        let mut rule = head;
        rule.extend_from_slice(&stat);
        chain.append(&rule)?;
    }
    Ok(())
}

impl Drop for Chain {
    fn drop(&mut self) {
        let _ = iptables(&["-D", self.hook, "-j", &self.name]);
        let _ = iptables(&["-F", &self.name]);
        let _ = iptables(&["-X", &self.name]);
    }
}

/// Remove the chains this process may have created (after a signal, when no `Drop` runs).
pub fn remove_leftovers() {
    for suffix in ["A", "F"] {
        let name = format!("CB{}{suffix}", std::process::id());
        for h in HOOKS {
            let _ = iptables(&["-D", h, "-j", &name]);
        }
        let _ = iptables(&["-F", &name]);
        let _ = iptables(&["-X", &name]);
    }
}
