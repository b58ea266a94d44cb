//! A running cluster of one [`System`]: its nodes, their processes (killed when the cluster is
//! dropped), faults by signal, and observation by polling every live node's member list.
//!
//! Times are measured by polling: a sweep asks every live node for its member list in turn; a
//! change is timed at the end of the sweep that first saw it, so each figure is late by at most
//! one sweep (reported as the poll resolution).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::netns::{node_ip, Topology};
use crate::process::{Agent, Signal};
use crate::rpc::MemberView;
use crate::system::{default_net, write_handler, NodeSpec, System};

/// What the harness did to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Not started.
    Pending,
    /// Running.
    Running,
    /// SIGSTOP'ed.
    Stopped,
    /// SIGKILL'ed.
    Killed,
    /// Left (SIGINT) and exited.
    Left,
}

/// Where the agents run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Backend {
    /// Each node on its own 127.0.x.y address; no privileges needed.
    Loopback,
    /// Each node in its own network namespace on a bridge (root): exact traffic per agent,
    /// loss and partitions.
    Netns,
}

/// A cluster of `system` agents.
pub struct Cluster<'a> {
    system: &'a dyn System,
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
    agents: Vec<Option<Agent>>,
    /// What the harness did to each node.
    pub state: Vec<NodeState>,
    handler: PathBuf,
    /// The namespaces, with the namespace backend (dropped after the agents: fields drop in
    /// order, and `Drop` kills the agents first).
    topology: Option<Topology>,
    /// Network number: the third octet of every node's address.
    net: u8,
}

impl std::fmt::Debug for Cluster<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("system", &self.system.name()).field("state", &self.state).finish()
    }
}

/// Poll until `f` gives `Some`, every `every`, at most `timeout`.
pub fn poll_until<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

impl<'a> Cluster<'a> {
    /// A cluster of `n` nodes of `system` on loopback, with their directories under `base`;
    /// nothing runs yet.
    pub fn new(system: &'a dyn System, n: usize, base: &Path, profile: &str) -> anyhow::Result<Self> {
        Self::with_backend(system, n, base, profile, Backend::Loopback)
    }

    /// As [`Cluster::new`] on the given backend (the namespace backend creates the namespaces
    /// and the bridge now), on the system's usual network.
    pub fn with_backend(
        system: &'a dyn System,
        n: usize,
        base: &Path,
        profile: &str,
        backend: Backend,
    ) -> anyhow::Result<Self> {
        Self::on_net(system, n, base, profile, backend, default_net(system.id()))
    }

    /// As [`Cluster::with_backend`] on network number `net` (the third octet of the nodes'
    /// addresses), so that several clusters of one system can run at once.
    pub fn on_net(
        system: &'a dyn System,
        n: usize,
        base: &Path,
        profile: &str,
        backend: Backend,
        net: u8,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!((1..=240).contains(&n), "{n} nodes: between 1 and 240 (one address each)");
        std::fs::create_dir_all(base)?;
        let handler = write_handler(base)?;
        let mut nodes: Vec<NodeSpec> = (0..n).map(|i| NodeSpec::new(net, i, base, profile)).collect();
        let topology = match backend {
            Backend::Loopback => None,
            Backend::Netns => {
                let t = Topology::create(net, n)?;
                nodes = nodes
                    .into_iter()
                    .enumerate()
                    .map(|(i, node)| node.in_namespace(t.namespace(i), node_ip(net, i)))
                    .collect();
                Some(t)
            }
        };
        Ok(Self {
            system,
            agents: (0..n).map(|_| None).collect(),
            state: vec![NodeState::Pending; n],
            nodes,
            handler,
            topology,
            net,
        })
    }

    /// The loopback subnet of the cluster (`127.0.<net>.0/24`), for iptables rules.
    pub fn loopback_subnet(&self) -> String {
        format!("127.0.{}.0/24", self.net)
    }

    /// The namespaces, with the namespace backend.
    pub fn topology(&self) -> Option<&Topology> {
        self.topology.as_ref()
    }

    /// The system.
    pub fn system(&self) -> &'a dyn System {
        self.system
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Start node `i` joining `join` and wait until its RPC answers (up to 20 s).
    pub fn start_node(&mut self, i: usize, join: Option<usize>, wait: bool) -> anyhow::Result<()> {
        let seed = join.map(|j| self.nodes[j].clone());
        let agent = self.system.start(&self.nodes[i], seed.as_ref(), &self.handler)?;
        self.agents[i] = Some(agent);
        self.state[i] = NodeState::Running;
        if wait {
            let node = &self.nodes[i];
            let ok = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
                if self.agents[i].as_mut().is_some_and(Agent::has_exited) {
                    return Some(false);
                }
                self.system.members(node).ok().map(|_| true)
            });
            if ok != Some(true) {
                let tail = self.agents[i].as_ref().map(|a| a.log_tail(15)).unwrap_or_default();
                anyhow::bail!(
                    "{} {} did not come up (RPC {}); its log ends:\n{tail}",
                    self.system.name(),
                    node.name,
                    node.rpc
                );
            }
        }
        Ok(())
    }

    /// Start every node: node 0 alone, then the others one after the other, each joining node 0,
    /// without waiting between them; then wait until every node lists all `n` alive. Returns
    /// the time from the first start to that moment (the setup time), or an error after
    /// `timeout`.
    pub fn start_all(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        self.start_node(0, None, true)?;
        for i in 1..self.len() {
            self.start_node(i, Some(0), false)?;
        }
        let all: Vec<usize> = (0..self.len()).collect();
        let n = self.len();
        let converged = poll_until(timeout, Duration::from_millis(50), || {
            for &i in &all {
                if self.agents[i].as_mut().is_some_and(Agent::has_exited) {
                    return Some(Err(i));
                }
            }
            let views = self.sweep(&all);
            views.iter().all(|(_, v)| v.as_ref().is_some_and(|m| count_alive(m) == n)).then_some(Ok(()))
        });
        match converged {
            Some(Ok(())) => Ok(t0.elapsed()),
            Some(Err(i)) => {
                let tail = self.agents[i].as_ref().map(|a| a.log_tail(15)).unwrap_or_default();
                anyhow::bail!(
                    "{} {} exited during setup; its log ends:\n{tail}",
                    self.system.name(),
                    self.nodes[i].name
                )
            }
            None => {
                anyhow::bail!("{}: {n} nodes did not all see each other alive within {timeout:?}", self.system.name())
            }
        }
    }

    /// Nodes the harness has not killed, stopped or made leave.
    pub fn running(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.state[i] == NodeState::Running).collect()
    }

    /// Ask each of `observers` for its member list (`None` where it did not answer).
    pub fn sweep(&self, observers: &[usize]) -> Vec<(usize, Option<Vec<MemberView>>)> {
        observers.iter().map(|&i| (i, self.system.members(&self.nodes[i]).ok())).collect()
    }

    /// Send `signal` to node `i` and record what it did.
    pub fn signal(&mut self, i: usize, signal: Signal) -> anyhow::Result<()> {
        let agent = self.agents[i].as_mut().ok_or_else(|| anyhow::anyhow!("node {i} is not running"))?;
        agent.signal(signal)?;
        self.state[i] = match signal {
            Signal::Kill => NodeState::Killed,
            Signal::Stop => NodeState::Stopped,
            Signal::Cont => NodeState::Running,
            Signal::Interrupt => NodeState::Left,
        };
        if matches!(signal, Signal::Kill | Signal::Stop) {
            self.system.disconnect(&self.nodes[i]);
        }
        if signal == Signal::Kill {
            agent.kill();
        }
        Ok(())
    }

    /// Wait up to `timeout` for node `i` to exit by itself (after a leave); kill it if it does not.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> bool {
        let exited = self.agents[i].as_mut().is_some_and(|a| a.wait_exit(timeout));
        if !exited {
            if let Some(a) = self.agents[i].as_mut() {
                a.kill();
            }
        }
        exited
    }

    /// The agent process of node `i`.
    pub fn agent(&self, i: usize) -> Option<&Agent> {
        self.agents[i].as_ref()
    }

    /// Nodes among the running ones that serve the primary service now.
    pub fn primaries(&self) -> Vec<usize> {
        self.running().into_iter().filter(|&i| self.system.serves_primary(&self.nodes[i])).collect()
    }

    /// Kill every agent (also done on drop).
    pub fn shutdown(&mut self) {
        for a in self.agents.iter_mut().flatten() {
            a.kill();
        }
        for n in &self.nodes {
            self.system.disconnect(n);
        }
    }
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Members with status `alive`.
pub fn count_alive(members: &[MemberView]) -> usize {
    members.iter().filter(|m| m.status == "alive").count()
}

/// The status `members` gives `name`, if listed.
pub fn status_of<'m>(members: &'m [MemberView], name: &str) -> Option<&'m str> {
    members.iter().find(|m| m.name == name).map(|m| m.status.as_str())
}

/// When each observer first showed a subject in one of the wanted states.
#[derive(Debug, Clone)]
pub struct Propagation {
    /// Per observer (by index): the delay from the fault, if seen.
    pub seen: Vec<(usize, Option<Duration>)>,
    /// Earliest.
    pub first: Option<Duration>,
    /// When every observer had (if all did).
    pub all: Option<Duration>,
    /// Average time of one sweep (the resolution of these figures).
    pub resolution: Duration,
    /// The observers that never showed a wanted status, with the status they showed last
    /// (`no answer` if they never answered).
    pub missing: Vec<(usize, String)>,
}

impl Cluster<'_> {
    /// Poll the `observers` until each lists `subject` with a status in `want` (once seen, an
    /// observer is not asked again), timing from `t0`; give up after `timeout`. `on_change` is
    /// called for each status change an observer shows, for live timelines.
    pub fn wait_for_status(
        &self,
        subject: &str,
        want: &[&str],
        observers: &[usize],
        t0: Instant,
        timeout: Duration,
        mut on_change: impl FnMut(usize, &str, Duration),
    ) -> Propagation {
        let mut seen: Vec<(usize, Option<Duration>)> = observers.iter().map(|&o| (o, None)).collect();
        let mut last: Vec<Option<String>> = vec![None; observers.len()];
        let deadline = t0 + timeout;
        let mut sweeps = 0u32;
        let sweep_start = Instant::now();
        while Instant::now() < deadline && seen.iter().any(|(_, s)| s.is_none()) {
            let started = Instant::now();
            for (k, (o, s)) in seen.iter_mut().enumerate() {
                if s.is_some() {
                    continue;
                }
                let Ok(members) = self.system.members(&self.nodes[*o]) else { continue };
                let status = status_of(&members, subject).unwrap_or("absent").to_owned();
                let at = t0.elapsed();
                if last[k].as_deref() != Some(status.as_str()) {
                    on_change(*o, &status, at);
                    last[k] = Some(status.clone());
                }
                if want.contains(&status.as_str()) {
                    *s = Some(at);
                }
            }
            sweeps += 1;
            // At most 20 sweeps a second, so small clusters are not hammered.
            let spent = started.elapsed();
            if spent < Duration::from_millis(50) {
                std::thread::sleep(Duration::from_millis(50) - spent);
            }
        }
        let first = seen.iter().filter_map(|(_, s)| *s).min();
        let all = if seen.iter().all(|(_, s)| s.is_some()) { seen.iter().filter_map(|(_, s)| *s).max() } else { None };
        let missing = seen
            .iter()
            .zip(&last)
            .filter(|((_, s), _)| s.is_none())
            .map(|((o, _), status)| (*o, status.clone().unwrap_or_else(|| "no answer".to_owned())))
            .collect();
        Propagation { seen, first, all, resolution: sweep_start.elapsed() / sweeps.max(1), missing }
    }
}

/// Lines `EVENT NAME UNIX_NANOS` of a node's events file.
pub fn read_events(file: &Path) -> Vec<(String, String, u128)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (kind, name, ts) = (f.next()?, f.next()?, f.next()?.parse().ok()?);
            Some((kind.to_owned(), name.to_owned(), ts))
        })
        .collect()
}

/// Now as Unix nanoseconds (the handler's `date +%s%N` clock).
pub fn unix_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
