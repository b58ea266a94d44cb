//! Helpers for the serf layer's tests: clusters of `Serf`s on 127.0.0.1, event waits, temporary
//! directories.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gossip_core::{Serf, SerfConfig, SerfEvent, SerfEventStream, State};

use super::{config, join_all, wait_until, CONVERGE};

/// The serf defaults around the local preset, with a name.
pub(crate) fn serf_config(name: &str) -> SerfConfig {
    SerfConfig::new(config(name))
}

/// Start `count` serfs configured by `make(i)`, join each through every one started before it
/// (without replay), and wait until every one sees all of them alive.
pub(crate) async fn serf_cluster(count: usize, make: impl Fn(usize) -> SerfConfig) -> Vec<Serf> {
    let mut serfs: Vec<Serf> = Vec::with_capacity(count);
    for i in 0..count {
        let serf = Serf::start(make(i)).await.expect("start");
        let seeds: Vec<SocketAddr> = serfs.iter().map(|serf| serf.advertise_addr()).collect();
        if !seeds.is_empty() {
            assert_eq!(serf.join(&seeds, false).await.expect("join"), seeds.len());
        }
        serfs.push(serf);
    }
    wait_until("every serf sees every serf alive", CONVERGE, || serfs.iter().all(|serf| alive(serf) == count)).await;
    serfs
}

/// Members of `serf` in state Alive.
pub(crate) fn alive(serf: &Serf) -> usize {
    serf.members().iter().filter(|member| member.state == State::Alive).count()
}

/// The state of `name` as `serf` sees it.
pub(crate) fn state_of(serf: &Serf, name: &str) -> Option<State> {
    serf.members().into_iter().find(|member| member.name == name).map(|member| member.state)
}

/// Every event `events` delivers within `window`.
pub(crate) async fn collect_for(events: &mut SerfEventStream, window: Duration) -> Vec<SerfEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        seen.push(event);
    }
    seen
}

/// The user events among `events`, as (name, payload) strings.
pub(crate) fn user_events(events: &[SerfEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|event| match event {
            SerfEvent::User(user) => Some((user.name.clone(), String::from_utf8_lossy(&user.payload).into_owned())),
            _ => None,
        })
        .collect()
}

/// Shut every serf down, concurrently.
pub(crate) async fn shutdown_serfs(serfs: Vec<Serf>) {
    join_all(serfs.into_iter().map(Serf::shutdown)).await;
}

/// A fresh, empty directory for one test (removed by [`TempDir`]'s drop).
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = std::env::temp_dir().join(format!("gossip-core-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
