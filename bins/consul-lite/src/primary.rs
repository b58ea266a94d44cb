//! The agent's primary, consul-style: a [`LockElection`] driven over this agent's own `/v1` HTTP
//! API on loopback (as `consul lock` drives Consul's), so it works the same on any agent that
//! serves the API. The role is published in a gossip tag, the hooks run on changes, and the
//! primary web service answers `GET /`.
//!
//! ```text
//!  LockElection ──poll_action──► perform (one task per request, over client::Client)
//!       ▲                          PUT /v1/session/create   {LockDelay, NodeChecks: [serfHealth]}
//!       │                          PUT /v1/kv/KEY?acquire=S (value: node name), and after a
//!       │                            `true` GET /v1/kv/KEY (this agent's own write: the token)
//!       │                          GET /v1/kv/KEY?consistent         (confirm, bounded by B)
//!       │                          GET /v1/kv/KEY?index=N&wait=30s   (watch)
//!       └──── LockEvent ◄──────────┘
//!  RoleChange ──► gossip tag (-primary-tag = primary|standby)
//!             └─► HookRunner (-primary-acquire / -primary-release, FENCING_TOKEN)
//!  PrimaryView ──► watch ──► serve_primary_http (-primary-http): 200 / 503, X-Fencing-Token
//!  PrimaryHandle::resign (graceful leave): release hook, then release the key and destroy the
//!  session, so that the next node acquires without waiting for the lock-delay.
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use base64::Engine as _;
use gossip_core::SerfHandle;
use hyper::{Method, StatusCode};
use leader_failover::{
    Election as _, HookRunner, Hooks, KeyState, LockAction, LockElection, LockElectionConfig, LockEvent, PrimaryView,
    RoleChange,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::cli::{AgentArgs, ClientArgs};
use crate::client::{encode_path, Client};

/// The lock key when `-primary-key` is not given.
pub(crate) const DEFAULT_KEY: &str = "service/primary/leader";
/// The gossip tag carrying `primary` / `standby`. Not Consul's `role`: that one says `consul`
/// on servers (`node` on Consul's clients) and is how servers find each other.
pub(crate) const DEFAULT_TAG: &str = "primary_role";
/// The lock-delay D of the election's session: short, for failover (the API's default stays
/// 15 s). It must exceed [`CONFIRM_INTERVAL`] plus one read (a holder whose session is
/// invalidated while it can still read sees it on its next confirm, or at once through its
/// watch), and with the step-down bound it must cover the gossip's shortest detection:
/// B < D + T (`leader_failover::lock`; T is 0.9 s with the LAN timings: 1.3 s < 0.5 s + 0.9 s).
pub(crate) const DEFAULT_LOCK_DELAY: Duration = Duration::from_millis(500);
/// The step-down bound B.
pub(crate) const DEFAULT_STEP_DOWN: Duration = Duration::from_millis(1300);
/// How often the primary confirms its hold.
const CONFIRM_INTERVAL: Duration = Duration::from_millis(200);
/// How long one blocking read of the key waits.
const WATCH_WAIT: &str = "30s";
/// How long a graceful leave waits for the release hook and the release.
const RELEASE_WAIT: Duration = Duration::from_secs(10);
/// Tags the agent gossips for Consul's protocol; the election must not take one of them.
const SERVER_TAGS: &[&str] =
    &["role", "dc", "port", "id", "vsn", "vsn_min", "vsn_max", "raft_vsn", "build", "bootstrap", "expect"];

/// `-primary-*`: the lock-held primary. Present when any `-primary-*` flag is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrimarySettings {
    pub(crate) http: Option<SocketAddr>,
    pub(crate) acquire: Option<String>,
    pub(crate) release: Option<String>,
    pub(crate) key: String,
    pub(crate) lock_delay: Duration,
    pub(crate) step_down: Duration,
    pub(crate) tag: String,
}

impl PrimarySettings {
    /// The settings from the flags; `None` when no `-primary-*` flag is given. `min_detection`
    /// is the gossip's shortest time to declare a node failed: the step-down bound must stay
    /// below the lock-delay plus that (see `leader_failover::lock`).
    pub(crate) fn from_args(args: &AgentArgs, min_detection: Duration) -> anyhow::Result<Option<Self>> {
        let given = args.primary_http.is_some()
            || args.primary_acquire.is_some()
            || args.primary_release.is_some()
            || args.primary_key.is_some()
            || args.primary_lock_delay.is_some()
            || args.primary_step_down.is_some()
            || args.primary_tag.is_some();
        if !given {
            return Ok(None);
        }
        let http = match &args.primary_http {
            None => None,
            Some(text) => Some(
                text.parse::<SocketAddr>()
                    .map_err(|_| anyhow::anyhow!("-primary-http: {text:?} must be IP:PORT (like 127.0.0.1:8080)"))?,
            ),
        };
        let duration = |flag: &str, value: &Option<String>, default: Duration| -> anyhow::Result<Duration> {
            match value {
                None => Ok(default),
                Some(text) => crate::duration::parse(text).map_err(|error| anyhow::anyhow!("-{flag}: {error}")),
            }
        };
        let lock_delay = duration("primary-lock-delay", &args.primary_lock_delay, DEFAULT_LOCK_DELAY)?;
        let step_down = duration("primary-step-down", &args.primary_step_down, DEFAULT_STEP_DOWN)?;
        let tag = args.primary_tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_owned());
        if tag.is_empty() || SERVER_TAGS.contains(&tag.as_str()) {
            anyhow::bail!(
                "-primary-tag: {tag:?} must be non-empty and not one of the agent's own tags {SERVER_TAGS:?}"
            );
        }
        let settings = Self {
            http,
            acquire: args.primary_acquire.clone().filter(|script| !script.is_empty()),
            release: args.primary_release.clone().filter(|script| !script.is_empty()),
            key: args.primary_key.clone().unwrap_or_else(|| DEFAULT_KEY.to_owned()),
            lock_delay,
            step_down,
            tag,
        };
        let config = settings.election_config().validate().map_err(|error| anyhow::anyhow!("-primary-*: {error}"))?;
        if lock_delay <= config.confirm_interval {
            anyhow::bail!(
                "-primary-lock-delay: {lock_delay:?} must be more than the primary's confirm interval ({:?}), or a \
                 primary whose session was invalidated could serve after the next one took over",
                config.confirm_interval
            );
        }
        if step_down >= lock_delay + min_detection {
            anyhow::bail!(
                "-primary-step-down: {step_down:?} must be less than -primary-lock-delay ({lock_delay:?}) plus the \
                 gossip's shortest failure detection ({min_detection:?}), or two primaries could coexist"
            );
        }
        Ok(Some(settings))
    }

    fn election_config(&self) -> LockElectionConfig {
        LockElectionConfig {
            key: self.key.clone(),
            session_name: "consul-lite primary".to_owned(),
            lock_delay: self.lock_delay,
            session_ttl: None,
            confirm_interval: CONFIRM_INTERVAL.min(self.step_down / 2),
            step_down_after: self.step_down,
            retry_interval: Duration::from_millis(250),
            role_tag: self.tag.clone(),
            replace_own_stale_session: true,
        }
    }
}

/// Asks the running election to step down for good (graceful leave).
#[derive(Debug, Clone)]
pub(crate) struct PrimaryHandle {
    resign: mpsc::Sender<oneshot::Sender<()>>,
}

impl PrimaryHandle {
    /// Runs the release hook (when primary), releases the key and destroys the session, then
    /// returns (at most after [`RELEASE_WAIT`]); the election stops.
    pub(crate) async fn resign(&self) {
        let (done, wait) = oneshot::channel();
        if self.resign.send(done).await.is_ok() && tokio::time::timeout(RELEASE_WAIT, wait).await.is_err() {
            tracing::warn!(after = ?RELEASE_WAIT, "primary: graceful release not finished; leaving anyway");
        }
    }
}

/// Starts the election against the agent's API at `api` (with `token`), and the web service on
/// `-primary-http` until `stopping` is true.
pub(crate) fn start(
    settings: &PrimarySettings,
    node: &str,
    api: SocketAddr,
    token: Option<String>,
    serf: SerfHandle,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<(PrimaryHandle, Vec<JoinHandle<()>>)> {
    let client = Client::new(&ClientArgs { http_addr: loopback(api).to_string(), token });
    let (view_tx, view_rx) = watch::channel(PrimaryView::empty(leader_failover::Role::Standby));
    let mut tasks = Vec::new();
    if let Some(addr) = settings.http {
        let listener =
            http_serve::bind(addr).with_context(|| format!("cannot listen for the primary web service on {addr}"))?;
        let mut stop = stopping.clone();
        tasks.push(tokio::spawn(leader_failover::serve_primary_http(listener, view_rx, node.to_owned(), async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })));
    }
    let hooks = HookRunner::spawn(
        Hooks { acquire: settings.acquire.clone(), release: settings.release.clone() },
        node,
        serf.advertise_addr(),
    );
    let (resign, resign_rx) = mpsc::channel(1);
    let driver = Driver {
        election: LockElection::new(node, settings.election_config(), Instant::now()),
        client,
        key: settings.key.clone(),
        node: node.to_owned(),
        serf,
        hooks,
        view: view_tx,
        confirm_timeout: settings.step_down,
    };
    tasks.push(tokio::spawn(driver.run(resign_rx)));
    Ok((PrimaryHandle { resign }, tasks))
}

/// The API address to call: a wildcard `-client` is reached on loopback.
fn loopback(api: SocketAddr) -> SocketAddr {
    match api.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => SocketAddr::from(([127, 0, 0, 1], api.port())),
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, api.port())),
        _ => api,
    }
}

struct Driver {
    election: LockElection,
    client: Client,
    key: String,
    node: String,
    serf: SerfHandle,
    hooks: HookRunner,
    view: watch::Sender<PrimaryView>,
    confirm_timeout: Duration,
}

impl Driver {
    async fn run(mut self, mut resign: mpsc::Receiver<oneshot::Sender<()>>) {
        let (events_tx, mut events) = mpsc::unbounded_channel::<LockEvent>();
        let mut members = self.serf.member_changes();
        self.publish_tags(leader_failover::Role::Standby).await;
        let mut change = self.election.update(&self.serf.members(), Instant::now(), SystemTime::now());
        loop {
            self.publish_view();
            if let Some(change) = change.take() {
                let _ = self.apply(change).await;
            }
            while let Some(action) = self.election.poll_action() {
                let (client, key, node, tx) =
                    (self.client.clone(), self.key.clone(), self.node.clone(), events_tx.clone());
                let confirm_timeout = self.confirm_timeout;
                tokio::spawn(async move {
                    if let Some(event) = perform(&client, &key, &node, action, confirm_timeout).await {
                        let _ = tx.send(event);
                    }
                });
            }
            let deadline = self.election.next_deadline().map(tokio::time::Instant::from_std);
            change = tokio::select! {
                Some(event) = events.recv() => self.election.handle(event, Instant::now()),
                () = sleep_until(deadline) => self.election.update(&self.serf.members(), Instant::now(), SystemTime::now()),
                changed = members.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.election.update(&self.serf.members(), Instant::now(), SystemTime::now())
                }
                request = resign.recv() => {
                    self.resign().await;
                    if let Some(done) = request {
                        let _ = done.send(());
                    }
                    return;
                }
            };
        }
    }

    /// Steps down for good: the release hook first (the service stops here before anyone else
    /// can take over), then the key is released and the session destroyed, in that order.
    async fn resign(&mut self) {
        let change = self.election.resign();
        self.publish_view();
        if let Some(change) = change {
            if let Some(hook) = self.apply(change).await {
                let _ = hook.wait().await;
            }
        }
        while let Some(action) = self.election.poll_action() {
            let _ = perform(&self.client, &self.key, &self.node, action, self.confirm_timeout).await;
        }
        tracing::info!(node = %self.node, "primary: released the lock for a graceful leave");
    }

    fn publish_view(&self) {
        let new = self.election.view();
        self.view.send_if_modified(|view| {
            if *view == new {
                return false;
            }
            *view = new;
            true
        });
    }

    /// Publishes the role tag and queues the hook.
    async fn apply(&self, change: RoleChange) -> Option<leader_failover::HookTicket> {
        tracing::info!(
            from = %change.from,
            to = %change.to,
            primary = change.primary.as_deref().unwrap_or("none"),
            fencing_token = ?change.fencing_token,
            "primary role changed"
        );
        self.publish_tags(change.to).await;
        let hooked = matches!(
            (change.from, change.to),
            (leader_failover::Role::Primary, _) | (_, leader_failover::Role::Primary)
        );
        hooked.then(|| self.hooks.submit(change))
    }
}

impl Driver {
    /// Sets the role tag for `role` on this node's gossip tags, keeping the others.
    async fn publish_tags(&self, role: leader_failover::Role) {
        let mut tags = self.serf.local_member().tags;
        let mut changed = false;
        for (key, value) in self.election.tags_for(role) {
            changed |= tags.get(&key) != Some(value.as_str());
            if let Err(error) = tags.insert(key, value) {
                tracing::error!(%error, "cannot publish the role tag");
            }
        }
        if changed {
            if let Err(error) = self.serf.set_tags(tags).await {
                tracing::error!(%error, "cannot publish the role tag");
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Performs one action over the API; the answer as the election's event (`None` for the
/// requests whose answer it does not need: release, destroy).
pub(crate) async fn perform(
    client: &Client,
    key: &str,
    value: &str,
    action: LockAction,
    confirm_timeout: Duration,
) -> Option<LockEvent> {
    let key_path = format!("/v1/kv/{}", encode_path(key));
    match action {
        LockAction::CreateSession { name, lock_delay, ttl } => {
            let mut body = serde_json::json!({
                "Name": name,
                "LockDelay": format!("{}ms", lock_delay.as_millis()),
                "NodeChecks": [service_registry::SERF_HEALTH_CHECK],
                "Behavior": "release",
            });
            if let Some(ttl) = ttl {
                body["TTL"] = Value::String(format!("{}s", ttl.as_secs()));
            }
            let answer = client.send(Method::PUT, "/v1/session/create", Some(body.to_string().into_bytes())).await;
            let id = answer.ok().filter(|answer| answer.status.is_success()).and_then(|answer| {
                serde_json::from_slice::<Value>(&answer.body).ok()?.get("ID")?.as_str().map(str::to_owned)
            });
            Some(match id {
                Some(id) => LockEvent::SessionCreated { id },
                None => {
                    tracing::warn!("primary: cannot create a session; retrying");
                    LockEvent::SessionFailed
                }
            })
        }
        LockAction::Acquire { session, value } => {
            let path = format!("{key_path}?acquire={}", encode_path(&session));
            Some(match client.send(Method::PUT, &path, Some(value.into_bytes())).await {
                Ok(answer) if answer.status.is_success() => match answer.body.trim_ascii() {
                    b"true" => {
                        // A default read on this agent holds the agent's own writes: the key as
                        // acquired, whose ModifyIndex is the fencing token. Serving starts now.
                        let read = client.send(Method::GET, &key_path, None).await;
                        let key = read.ok().and_then(|answer| key_state(&answer.status, &answer.body)).flatten();
                        LockEvent::Acquired { session, key }
                    }
                    _ => LockEvent::AcquireRefused,
                },
                Ok(answer) if String::from_utf8_lossy(&answer.body).contains("invalid session") => {
                    LockEvent::SessionGone { session }
                }
                _ => LockEvent::AcquireFailed,
            })
        }
        LockAction::Confirm => {
            let path = format!("{key_path}?consistent");
            let read = client.send(Method::GET, &path, None);
            Some(match tokio::time::timeout(confirm_timeout, read).await {
                Ok(Ok(answer)) => match key_state(&answer.status, &answer.body) {
                    Some(key) => LockEvent::Confirmed { key },
                    None => LockEvent::ConfirmFailed,
                },
                _ => LockEvent::ConfirmFailed,
            })
        }
        LockAction::Watch { index } => {
            let path = match index {
                0 => key_path,
                index => format!("{key_path}?index={index}&wait={WATCH_WAIT}"),
            };
            Some(match client.send(Method::GET, &path, None).await {
                Ok(answer) => match (key_state(&answer.status, &answer.body), answer.index) {
                    (Some(key), Some(index)) => LockEvent::Watched { key, index },
                    _ => LockEvent::WatchFailed,
                },
                Err(_) => LockEvent::WatchFailed,
            })
        }
        LockAction::Renew { session } => {
            let path = format!("/v1/session/renew/{}", encode_path(&session));
            Some(match client.send(Method::PUT, &path, None).await {
                Ok(answer) if answer.status.is_success() => LockEvent::Renewed,
                Ok(answer) if answer.status == StatusCode::NOT_FOUND => LockEvent::SessionGone { session },
                _ => LockEvent::RenewFailed,
            })
        }
        LockAction::Release { session } => {
            let path = format!("{key_path}?release={}", encode_path(&session));
            if let Err(error) = client.ok(Method::PUT, &path, Some(value.as_bytes().to_vec())).await {
                tracing::warn!(%error, "primary: cannot release the lock");
            }
            None
        }
        LockAction::DestroySession { session } => {
            let path = format!("/v1/session/destroy/{}", encode_path(&session));
            if let Err(error) = client.ok(Method::PUT, &path, None).await {
                tracing::warn!(%error, "primary: cannot destroy a session");
            }
            None
        }
    }
}

/// The key from a KV read: `Some(None)` for a 404, `None` for an error.
pub(crate) fn key_state(status: &StatusCode, body: &[u8]) -> Option<Option<KeyState>> {
    if *status == StatusCode::NOT_FOUND {
        return Some(None);
    }
    if !status.is_success() {
        return None;
    }
    let rows: Value = serde_json::from_slice(body).ok()?;
    let row = rows.as_array()?.first()?;
    let holder = row
        .get("Value")
        .and_then(Value::as_str)
        .and_then(|value| base64::engine::general_purpose::STANDARD.decode(value).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    Some(Some(KeyState {
        session: row.get("Session").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned),
        holder,
        lock_index: row.get("LockIndex").and_then(Value::as_u64).unwrap_or(0),
        modify_index: row.get("ModifyIndex").and_then(Value::as_u64)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AgentArgs {
        AgentArgs { dev: true, ..AgentArgs::default() }
    }

    #[test]
    fn no_primary_flag_no_election_and_defaults_otherwise() {
        assert_eq!(PrimarySettings::from_args(&args(), Duration::from_secs(1)).unwrap(), None);
        let with_http = AgentArgs { primary_http: Some("127.0.0.1:8080".into()), ..args() };
        let settings = PrimarySettings::from_args(&with_http, Duration::from_secs(1)).unwrap().unwrap();
        assert_eq!(settings.key, DEFAULT_KEY);
        assert_eq!((settings.lock_delay, settings.step_down), (DEFAULT_LOCK_DELAY, DEFAULT_STEP_DOWN));
        assert_eq!(settings.tag, "primary_role");
    }

    #[test]
    fn bad_primary_flags_are_named() {
        let bad =
            |args: AgentArgs| PrimarySettings::from_args(&args, Duration::from_millis(900)).unwrap_err().to_string();
        assert!(bad(AgentArgs { primary_http: Some("nope".into()), ..args() }).starts_with("-primary-http: \"nope\""));
        assert!(bad(AgentArgs { primary_tag: Some("role".into()), ..args() }).starts_with("-primary-tag: \"role\""));
        let error = bad(AgentArgs { primary_step_down: Some("2s".into()), ..args() });
        assert!(error.contains("must be less than -primary-lock-delay (500ms)"), "{error}");
        // The default bound is right below the default lock-delay plus the detection (0.9 s).
        let error = bad(AgentArgs { primary_step_down: Some("1.4s".into()), ..args() });
        assert!(error.contains("must be less than -primary-lock-delay (500ms) plus"), "{error}");
        let error = bad(AgentArgs { primary_lock_delay: Some("200ms".into()), ..args() });
        assert!(
            error.starts_with("-primary-lock-delay: 200ms must be more than the primary's confirm interval"),
            "{error}"
        );
        let error = bad(AgentArgs { primary_lock_delay: Some("x".into()), ..args() });
        assert!(error.starts_with("-primary-lock-delay: invalid duration"), "{error}");
    }

    #[test]
    fn key_rows_are_read_as_consul_writes_them() {
        let body =
            br#"[{"Key":"k","Value":"bjE=","Flags":0,"Session":"s1","LockIndex":2,"CreateIndex":3,"ModifyIndex":9}]"#;
        let key = key_state(&StatusCode::OK, body).unwrap().unwrap();
        assert_eq!(
            key,
            KeyState { session: Some("s1".into()), holder: Some("n1".into()), lock_index: 2, modify_index: 9 }
        );
        assert_eq!(key_state(&StatusCode::NOT_FOUND, b""), Some(None));
        assert_eq!(key_state(&StatusCode::INTERNAL_SERVER_ERROR, b"No cluster leader"), None);
    }
}
