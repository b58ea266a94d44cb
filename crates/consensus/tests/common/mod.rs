//! A toy key/value state machine and a cluster of in-process servers on loopback.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use consensus::{Config, Consensus, NodeId, Role, StateMachine, WriteError};
use serde::{Deserialize, Serialize};

/// A map of strings, and the log of what was applied at which index.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub map: BTreeMap<String, String>,
    pub applied: Vec<(u64, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum KvCommand {
    Set(String, String),
    Delete(String),
}

#[derive(Debug, thiserror::Error)]
#[error("bad kv snapshot: {0}")]
pub struct KvRestoreError(String);

impl StateMachine for Kv {
    type Command = KvCommand;
    type Response = Option<String>;
    type RestoreError = KvRestoreError;

    fn apply(&mut self, index: u64, command: KvCommand) -> Option<String> {
        match command {
            KvCommand::Set(k, v) => {
                self.applied.push((index, k.clone()));
                self.map.insert(k, v)
            }
            KvCommand::Delete(k) => {
                self.applied.push((index, format!("-{k}")));
                self.map.remove(&k)
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("kv encodes")
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), KvRestoreError> {
        *self = serde_json::from_slice(snapshot).map_err(|e| KvRestoreError(e.to_string()))?;
        Ok(())
    }
}

pub fn set(k: &str, v: &str) -> KvCommand {
    KvCommand::Set(k.into(), v.into())
}

/// Generous bound on anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn config(id: NodeId, dir: &Path) -> Config {
    Config::local(id, dir)
}

/// Servers 1..=n, each with its own data dir; slot i holds server i+1.
pub struct Cluster {
    pub _root: tempfile::TempDir,
    pub dirs: Vec<PathBuf>,
    pub addrs: Vec<SocketAddr>,
    pub nodes: Vec<Option<Consensus<Kv>>>,
    pub tweak: fn(&mut Config),
}

impl Cluster {
    /// Starts `n` servers and bootstraps them from server 1.
    pub async fn bootstrap(n: usize, tweak: fn(&mut Config)) -> Self {
        let root = tempfile::tempdir().unwrap();
        let mut cluster = Self {
            dirs: (1..=n).map(|i| root.path().join(format!("s{i}"))).collect(),
            _root: root,
            addrs: Vec::new(),
            nodes: Vec::new(),
            tweak,
        };
        for i in 0..n {
            let mut c = config(i as NodeId + 1, &cluster.dirs[i]);
            (cluster.tweak)(&mut c);
            let node = Consensus::start(c, Kv::default()).await.unwrap();
            cluster.addrs.push(node.local_addr());
            cluster.nodes.push(Some(node));
        }
        let members: Vec<(NodeId, SocketAddr)> =
            cluster.addrs.iter().enumerate().map(|(i, a)| (i as NodeId + 1, *a)).collect();
        cluster.node(1).initialize(members).await.unwrap();
        cluster
    }

    pub fn node(&self, id: NodeId) -> &Consensus<Kv> {
        self.nodes[id as usize - 1].as_ref().expect("server is running")
    }

    pub fn running(&self) -> impl Iterator<Item = &Consensus<Kv>> {
        self.nodes.iter().flatten()
    }

    /// Waits until every running server agrees on one leader; answers it and how long it took.
    pub async fn wait_leader(&self) -> (NodeId, Duration) {
        let started = Instant::now();
        loop {
            let leaders: Vec<Option<NodeId>> = self.running().map(|n| n.metrics().leader).collect();
            if let Some(Some(leader)) = leaders.first() {
                let agreed = leaders.iter().all(|l| *l == Some(*leader));
                let alive = self.nodes[*leader as usize - 1].as_ref().is_some_and(|n| n.metrics().role == Role::Leader);
                if agreed && alive {
                    return (*leader, started.elapsed());
                }
            }
            assert!(started.elapsed() < WAIT, "no leader within {WAIT:?}: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every running server applied at least `index`.
    pub async fn wait_applied(&self, index: u64) {
        let started = Instant::now();
        loop {
            let applied: Vec<Option<u64>> = self.running().map(|n| n.metrics().applied_index).collect();
            if applied.iter().all(|a| a.is_some_and(|a| a >= index)) {
                return;
            }
            assert!(started.elapsed() < WAIT, "not applied up to {index}: {applied:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(&mut self, id: NodeId) {
        let node = self.nodes[id as usize - 1].take().expect("running");
        node.shutdown().await;
    }

    /// Starts server `id` again from its data dir, on its old address.
    pub async fn restart(&mut self, id: NodeId) {
        let mut c = config(id, &self.dirs[id as usize - 1]);
        (self.tweak)(&mut c);
        c.bind_addr = self.addrs[id as usize - 1];
        let started = Instant::now();
        let node = loop {
            match Consensus::start(c.clone(), Kv::default()).await {
                Ok(node) => break node,
                // The old listener's port may take a moment to be free again.
                Err(consensus::StartError::Bind { .. }) if started.elapsed() < WAIT => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("restart of {id}: {e}"),
            }
        };
        self.nodes[id as usize - 1] = Some(node);
    }

    pub async fn shutdown(&mut self) {
        for id in 1..=self.nodes.len() as NodeId {
            if self.nodes[id as usize - 1].is_some() {
                self.stop(id).await;
            }
        }
    }

    pub fn states(&self) -> Vec<Kv> {
        self.running().map(|n| n.with_state(Kv::clone)).collect()
    }
}

/// Writes through `node`, retrying while there is no leader (bounded).
pub async fn write(node: &Consensus<Kv>, command: KvCommand) -> (u64, Option<String>) {
    let started = Instant::now();
    loop {
        match node.write(&command).await {
            Ok(done) => return done,
            Err(
                e @ (WriteError::NoLeader
                | WriteError::LeaderChanged { .. }
                | WriteError::Forward { .. }
                | WriteError::Raft { .. }),
            ) if started.elapsed() < WAIT => {
                tracing::debug!("write retry: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("write {command:?}: {e}"),
        }
    }
}
