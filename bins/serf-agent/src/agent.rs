//! The running agent: the serf layer, the RPC server, the event loop (handlers, event streams,
//! election), the primary web service, retry-join, and the signals.
//!
//! ```text
//!                     ┌──────────────── Agent::start ─────────────────┐
//!  Settings ──► bind RPC (+ primary http) ──► Serf::start ──► -join (must reach one)
//!                     └───────────────────────────────────────────────┘
//!  tasks:
//!   event loop ◄── SerfEventStream ──► HandlerRunner::dispatch (never waits)
//!              │                   └─► broadcast of EventRecords ──► GET /v1/stream
//!              └── ElectionDriver::update (member changes and events, deadlines) ──► tags, hooks, view
//!   RPC server (AgentContext as Routes)      primary web service      retry-join
//!  main task: signals ── SIGINT: leave, exit 0 ── SIGTERM: exit (leave with leave_on_terminate)
//!                     ── SIGHUP: reload handlers, tags, log level ── POST /v1/leave: exit 0
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use gossip_core::{NodeConfig, Serf, SerfConfig, SerfEvent, SerfEventStream, SerfHandle, Tags};
use leader_failover::{PrimaryView, Role};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{resolve_join_addr, ConfigSources, Settings};
use crate::handlers::{EventKind, HandlerEvent, HandlerLimits, HandlerRunner, MemberLine, SelfInfo};
use crate::primary::{ElectionDriver, ElectionSetup, ElectionStats};
use crate::rpc::api::{EventRecord, MemberInfo, Payload};
use crate::rpc::server::RpcStats;
use crate::tags::TagPublisher;
use agent_support::logging::{LogHub, Logging};

/// The gossip wire protocol version this agent speaks: (major, minor).
pub(crate) const WIRE_VERSION: (u8, u8) = (gossip_transport::PROTOCOL_MAJOR, gossip_transport::PROTOCOL_MINOR);

/// How often the election looks at the member list even when nothing says it changed: a safety
/// net only. The election runs on every change of the member list (`member_changes`, which also
/// covers suspects, recoveries and an event stream that fell behind), at its own deadlines, and on
/// member events; a timer that fires often would cost every idle agent wake-ups.
const ELECTION_TICK: Duration = Duration::from_secs(10);
/// Event records buffered per `/v1/stream` client.
const EVENT_STREAM_BUFFER: usize = 1024;
/// Bound on stopping the tasks at exit.
const STOP_BOUND: Duration = Duration::from_secs(3);
/// Bound on the release hook plus the leave.
const RESIGN_BOUND: Duration = Duration::from_secs(12);

/// Why the main task should stop.
#[derive(Debug)]
pub(crate) enum ExitRequest {
    /// The agent left through `POST /v1/leave`: exit 0.
    Left,
    /// Something fatal happened (retry-join gave up): exit 1.
    Fatal(String),
}

/// Commands to the event loop, which owns the election.
#[derive(Debug)]
enum ElectionCommand {
    Resign(oneshot::Sender<()>),
}

/// What the RPC routes need of the agent. One per agent, shared.
pub(crate) struct AgentContext {
    pub(crate) serf: SerfHandle,
    pub(crate) name: String,
    pub(crate) rpc_addr: SocketAddr,
    pub(crate) settings: Settings,
    pub(crate) tags: TagPublisher,
    pub(crate) handlers: HandlerRunner,
    pub(crate) logs: LogHub,
    pub(crate) events: broadcast::Sender<Arc<EventRecord>>,
    pub(crate) primary: watch::Receiver<PrimaryView>,
    pub(crate) election_enabled: bool,
    pub(crate) election_stats: Arc<ElectionStats>,
    pub(crate) rpc_stats: Arc<RpcStats>,
    pub(crate) started: Instant,
    pub(crate) shutdown: watch::Receiver<bool>,
    exit: mpsc::Sender<ExitRequest>,
    election: mpsc::Sender<ElectionCommand>,
    leaving: tokio::sync::Mutex<bool>,
}

impl AgentContext {
    /// Leave gracefully: give up the primary role (release hook first), then leave the cluster.
    /// Idempotent.
    pub(crate) async fn leave(&self) -> Result<(), String> {
        let mut left = self.leaving.lock().await;
        if *left {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        if self.election.send(ElectionCommand::Resign(done)).await.is_ok() {
            let _ = tokio::time::timeout(RESIGN_BOUND, wait).await;
        }
        tracing::info!("leaving the cluster");
        self.serf.leave().await.map_err(|error| error.to_string())?;
        *left = true;
        tracing::info!("left the cluster");
        Ok(())
    }

    /// Ask the main task to exit after a leave through the API.
    pub(crate) async fn request_exit(&self) {
        let _ = self.exit.send(ExitRequest::Left).await;
    }
}

/// Run an agent until it is told to stop; the exit code says how it ended.
pub(crate) async fn run(settings: Settings, sources: ConfigSources, logging: Logging) -> ExitCode {
    let agent = match Agent::start(settings, &logging).await {
        Ok(agent) => agent,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    agent.run(&sources, &logging).await
}

struct Agent {
    serf: Serf,
    context: Arc<AgentContext>,
    configured_role: Option<String>,
    shutdown: watch::Sender<bool>,
    exits: mpsc::Receiver<ExitRequest>,
    tasks: Vec<JoinHandle<()>>,
}

impl Agent {
    async fn start(settings: Settings, logging: &Logging) -> anyhow::Result<Self> {
        // Listeners first: a port in use fails the start before anything joins.
        let rpc_listener = http_serve::bind(settings.rpc_addr)
            .with_context(|| format!("rpc_addr (-rpc-addr): cannot listen on {}", settings.rpc_addr))?;
        let rpc_addr = rpc_listener.local_addr()?;
        let primary_listener = match settings.primary.http {
            Some(addr) => Some(
                http_serve::bind(addr)
                    .with_context(|| format!("primary_http (-primary-http): cannot listen on {addr}"))?,
            ),
            None => None,
        };

        let mut node = NodeConfig::preset(&settings.profile).context("unknown profile")?;
        if let Some(name) = &settings.node_name {
            node.name.clone_from(name);
        }
        node.bind_addr = settings.bind;
        node.advertise_addr = settings.advertise;
        if let Some(label) = &settings.cluster_label {
            node.swim.label.clone_from(label);
        }
        node.keyring = settings.keyring.clone();
        let name = node.name.clone();

        // Tags: the user's, and the election's for an eligible node (which owns the role tag).
        let mut user_tags = settings.tags.clone();
        let configured = user_tags.get(&settings.primary.tag).cloned();
        let setup = ElectionSetup::new(&settings.primary, configured.as_deref())
            .map_err(|error| anyhow::anyhow!("primary election: {error}"))?;
        if setup.configured_role.is_some() {
            user_tags.remove(&settings.primary.tag);
        }
        let tags = TagPublisher::new(
            user_tags,
            ElectionDriver::initial_tags(&setup, &name),
            setup.reserved_tags(),
            setup.configured_role.clone().map(|role| (settings.primary.tag.clone(), role)),
            settings.tags_file.clone(),
        );
        node.tags = Tags::new(tags.composed().await).context("tags (-tag)")?;

        let mut config = SerfConfig::new(node);
        if let Some(period) = settings.coalesce_period {
            config.member_coalesce_period = period;
            config.member_quiescent_period = config.member_quiescent_period.min(period);
        }
        if let Some(period) = settings.quiescent_period {
            config.member_quiescent_period = period;
        }
        if let Some(period) = settings.user_coalesce_period {
            config.user_coalesce_period = period;
            config.user_quiescent_period = config.user_quiescent_period.min(period);
        }
        if let Some(period) = settings.user_quiescent_period {
            config.user_quiescent_period = period;
        }
        if let Some(interval) = settings.reconnect_interval {
            config.reconnect_interval = interval;
        }
        if let Some(timeout) = settings.reconnect_timeout {
            config.reconnect_timeout = timeout;
        }
        if let Some(timeout) = settings.tombstone_timeout {
            config.tombstone_timeout = timeout;
        }
        if let Some(limit) = settings.user_event_size_limit {
            config.max_user_event_size = limit;
        }
        if let Some(limit) = settings.query_size_limit {
            config.max_query_size = limit;
        }
        if let Some(limit) = settings.query_response_size_limit {
            config.max_query_response_size = limit;
        }
        config.disable_coordinates = settings.disable_coordinates;
        config.snapshot_path.clone_from(&settings.snapshot_path);
        config.rejoin_after_leave = settings.rejoin_after_leave;
        config.keyring_file.clone_from(&settings.keyring_file);
        if let (Some(path), Some(keyring)) = (&settings.keyring_file, &settings.keyring) {
            // The serf layer loads the file in place of -encrypt: make it hold both.
            crate::config::write_keyring_file(path, keyring)
                .with_context(|| format!("keyring_file (-keyring-file): cannot write {}", path.display()))?;
        }
        config.validate().context("invalid configuration")?;

        let serf = Serf::start(config).await.context("cannot start the agent")?;
        let handle = serf.handle();
        let events = handle.events();
        tags.attach(handle.clone());

        if !settings.join.is_empty() {
            let addrs = resolve_all(&settings.join).await;
            let joined = match addrs {
                Ok(addrs) => handle.join(&addrs, settings.replay_on_join).await.map_err(|error| error.to_string()),
                Err(error) => Err(error),
            };
            match joined {
                Ok(count) => tracing::info!(count, "joined the cluster"),
                Err(error) => {
                    serf.shutdown().await;
                    bail!("join (-join): could not join any of {:?}: {error}", settings.join);
                }
            }
        }

        let (shutdown, stopping) = watch::channel(false);
        let (exit, exits) = mpsc::channel(4);
        let (election_commands, election_rx) = mpsc::channel(4);
        let (records, _) = broadcast::channel(EVENT_STREAM_BUFFER);
        let (view_tx, view_rx) = watch::channel(PrimaryView::empty(Role::Ineligible));
        let election_stats = Arc::new(ElectionStats::default());

        let whoami_serf = handle.clone();
        let handlers = HandlerRunner::start(
            settings.event_handlers.clone(),
            HandlerLimits { concurrency: settings.handler_concurrency, timeout: settings.handler_timeout },
            Arc::new(move || {
                let member = whoami_serf.local_member();
                SelfInfo { name: member.name.to_string(), tags: member.tags.as_map().clone() }
            }),
        );
        let driver = ElectionDriver::new(
            &setup,
            &name,
            handle.clone(),
            tags.clone(),
            &settings.primary,
            view_tx,
            Arc::clone(&election_stats),
        );

        let rpc_stats = Arc::new(RpcStats::default());
        let context = Arc::new(AgentContext {
            serf: handle.clone(),
            name: name.clone(),
            rpc_addr,
            tags,
            handlers: handlers.clone(),
            logs: logging.hub(),
            events: records.clone(),
            primary: view_rx.clone(),
            election_enabled: setup.configured_role.is_some(),
            election_stats,
            rpc_stats: Arc::clone(&rpc_stats),
            started: Instant::now(),
            shutdown: stopping.clone(),
            exit: exit.clone(),
            election: election_commands,
            leaving: tokio::sync::Mutex::new(false),
            settings: settings.clone(),
        });

        let mut tasks = Vec::new();
        let changes = handle.member_changes();
        tasks.push(tokio::spawn(event_loop(events, changes, handlers, records, driver, election_rx, stopping.clone())));
        tasks.push(tokio::spawn(crate::rpc::server::serve(
            rpc_listener,
            Arc::clone(&context),
            settings.rpc_auth.clone(),
            rpc_stats,
            stopping.clone(),
        )));
        if let Some(listener) = primary_listener {
            tracing::info!(addr = %listener.local_addr()?, "primary web service listening");
            let mut stop = stopping.clone();
            tasks.push(tokio::spawn(leader_failover::serve_primary_http(
                listener,
                view_rx,
                name.clone(),
                async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                },
            )));
        }
        if !settings.retry_join.is_empty() {
            tasks.push(tokio::spawn(retry_join(
                handle.clone(),
                settings.retry_join.clone(),
                settings.retry_interval,
                settings.retry_max,
                settings.replay_on_join,
                exit,
                stopping,
            )));
        }
        tracing::info!(
            node = %name,
            gossip = %handle.local_addr(),
            advertise = %handle.advertise_addr(),
            rpc = %rpc_addr,
            "agent running"
        );
        Ok(Self { serf, context, configured_role: setup.configured_role, shutdown, exits, tasks })
    }

    /// Wait for a signal or an exit request, then stop.
    async fn run(mut self, sources: &ConfigSources, logging: &Logging) -> ExitCode {
        let code = match self.wait(sources, logging).await {
            Ok(code) => code,
            Err(error) => {
                tracing::error!("{error:#}");
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        };
        self.stop().await;
        code
    }

    async fn wait(&mut self, sources: &ConfigSources, logging: &Logging) -> anyhow::Result<ExitCode> {
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
        let mut hangup = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;
        loop {
            tokio::select! {
                _ = interrupt.recv() => {
                    if self.context.settings.skip_leave_on_interrupt {
                        tracing::info!("caught SIGINT; exiting without leaving (skip_leave_on_interrupt)");
                        return Ok(ExitCode::SUCCESS);
                    }
                    tracing::info!("caught SIGINT; leaving gracefully (send it again to exit at once)");
                    return Ok(self.graceful_leave(&mut interrupt, &mut terminate).await);
                }
                _ = terminate.recv() => {
                    if self.context.settings.leave_on_terminate {
                        tracing::info!("caught SIGTERM; leaving gracefully (leave_on_terminate)");
                        return Ok(self.graceful_leave(&mut interrupt, &mut terminate).await);
                    }
                    tracing::info!("caught SIGTERM; exiting without leaving");
                    return Ok(ExitCode::SUCCESS);
                }
                _ = hangup.recv() => self.reload(sources, logging).await,
                request = self.exits.recv() => match request {
                    Some(ExitRequest::Left) | None => return Ok(ExitCode::SUCCESS),
                    Some(ExitRequest::Fatal(reason)) => bail!(reason),
                },
            }
        }
    }

    async fn graceful_leave(
        &self,
        interrupt: &mut tokio::signal::unix::Signal,
        terminate: &mut tokio::signal::unix::Signal,
    ) -> ExitCode {
        tokio::select! {
            result = self.context.leave() => match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "graceful leave failed");
                    ExitCode::FAILURE
                }
            },
            _ = interrupt.recv() => {
                tracing::warn!("second signal: exiting without finishing the leave");
                ExitCode::FAILURE
            }
            _ = terminate.recv() => {
                tracing::warn!("second signal: exiting without finishing the leave");
                ExitCode::FAILURE
            }
        }
    }

    /// SIGHUP: read the configuration again and apply what can change at run time: event
    /// handlers, tags and the log level. Anything else needs a restart.
    async fn reload(&self, sources: &ConfigSources, logging: &Logging) {
        tracing::info!("caught SIGHUP; reloading handlers, tags and log level");
        let settings = match sources.load().and_then(|config| Settings::from_config(&config)) {
            Ok(settings) => settings,
            Err(error) => {
                tracing::error!(%error, "reload failed; keeping the running configuration");
                return;
            }
        };
        if let Err(error) = logging.set_level(&settings.log_level) {
            tracing::error!(%error, "cannot change the log level");
        }
        self.context.handlers.replace(settings.event_handlers.clone());
        let mut user = settings.tags.clone();
        if self.configured_role.is_some() {
            user.remove(&self.context.settings.primary.tag);
        }
        match self.context.tags.replace_user(user).await {
            Ok(()) => tracing::info!(handlers = settings.event_handlers.len(), "configuration reloaded"),
            Err(error) => tracing::error!(%error, "cannot apply the reloaded tags"),
        }
    }

    /// Stop every task (bounded) and the serf layer (which flushes the snapshot).
    async fn stop(self) {
        let Self { serf, context, shutdown, tasks, .. } = self;
        let _ = shutdown.send(true);
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(STOP_BOUND, all).await.is_err() {
            tracing::warn!("some tasks did not stop in time");
        }
        // No handler outlives the agent: their process groups get SIGTERM, then SIGKILL.
        context.handlers.stop().await;
        drop(context);
        if tokio::time::timeout(STOP_BOUND, serf.shutdown()).await.is_err() {
            tracing::warn!("the gossip layer did not stop in time");
        }
        tracing::info!("agent stopped");
    }
}

/// Resolve join addresses; fails only when none resolves.
async fn resolve_all(addrs: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut resolved = Vec::new();
    let mut errors = Vec::new();
    for addr in addrs {
        match resolve_join_addr(addr).await {
            Ok(found) => resolved.extend(found),
            Err(error) => errors.push(error),
        }
    }
    if resolved.is_empty() {
        return Err(errors.join("; "));
    }
    for error in errors {
        tracing::warn!(%error, "skipping a join address");
    }
    Ok(resolved)
}

/// `-retry-join`: try until one answers, `max` attempts (0: forever); giving up is fatal.
async fn retry_join(
    serf: SerfHandle,
    addrs: Vec<String>,
    interval: Duration,
    max: u32,
    replay: bool,
    exit: mpsc::Sender<ExitRequest>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = match resolve_all(&addrs).await {
            Ok(resolved) => serf.join(&resolved, replay).await.map_err(|error| error.to_string()),
            Err(error) => Err(error),
        };
        match result {
            Ok(count) => {
                tracing::info!(count, attempt, "retry-join: joined the cluster");
                return;
            }
            Err(error) => tracing::warn!(attempt, %error, "retry-join: attempt failed"),
        }
        if max > 0 && attempt >= max {
            let reason = format!("retry_join (-retry-join): could not join any of {addrs:?} in {attempt} attempt(s)");
            let _ = exit.send(ExitRequest::Fatal(reason)).await;
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stopped(&mut shutdown) => return,
        }
    }
}

/// The event loop: events to handlers and streams, membership to the election.
async fn event_loop(
    mut events: SerfEventStream,
    mut changes: watch::Receiver<u64>,
    handlers: HandlerRunner,
    records: broadcast::Sender<Arc<EventRecord>>,
    mut election: ElectionDriver,
    mut commands: mpsc::Receiver<ElectionCommand>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(ELECTION_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut watching = true;
    loop {
        let deadline = election.next_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    let membership = !matches!(event, SerfEvent::User(_) | SerfEvent::Query(_));
                    deliver(event, &handlers, &records);
                    if membership {
                        election.update().await;
                    }
                }
                None => break,
            },
            changed = changes.changed(), if watching => match changed {
                Ok(()) => election.update().await,
                // The node stopped: the event stream ends next.
                Err(_) => watching = false,
            },
            _ = tick.tick() => election.update().await,
            () = sleep_until(deadline) => election.update().await,
            Some(command) = commands.recv() => match command {
                ElectionCommand::Resign(done) => {
                    election.resign().await;
                    let _ = done.send(());
                }
            },
            () = stopped(&mut shutdown) => break,
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The log target of membership and user events: the lines a Serf operator greps for
/// (`EventMemberJoin: node1 10.0.0.1`, `Received event: user-event: deploy`), at info level.
const EVENT_LOG: &str = "serf";

/// One event to the handlers and to the event streams, and a log line.
fn deliver(event: SerfEvent, handlers: &HandlerRunner, records: &broadcast::Sender<Arc<EventRecord>>) {
    let name = event.name();
    let mut record = EventRecord {
        event: name.to_owned(),
        members: Vec::new(),
        name: None,
        ltime: None,
        coalesce: None,
        id: None,
        from: None,
        payload: Payload::default(),
    };
    match event {
        SerfEvent::User(user) => {
            tracing::info!(target: EVENT_LOG, "Received event: user-event: {}", user.name);
            record.name = Some(user.name.clone());
            record.ltime = Some(user.ltime);
            record.coalesce = Some(user.coalesce);
            record.payload = Payload::from_bytes(&user.payload);
            let _ = records.send(Arc::new(record));
            handlers.dispatch(HandlerEvent::User { name: user.name, ltime: user.ltime, payload: user.payload });
        }
        SerfEvent::Query(query) => {
            tracing::info!(target: EVENT_LOG, "Received event: query: {} (from {})", query.name, query.from);
            record.name = Some(query.name.clone());
            record.ltime = Some(query.ltime);
            record.id = Some(query.id);
            record.from = Some(query.from.clone());
            record.payload = Payload::from_bytes(&query.payload);
            let _ = records.send(Arc::new(record));
            let (reply, answer) = oneshot::channel();
            let deadline = tokio::time::Instant::from_std(query.deadline());
            let event = HandlerEvent::Query {
                name: query.name.clone(),
                ltime: query.ltime,
                payload: query.payload.clone(),
                deadline,
                reply: Arc::new(Mutex::new(Some(reply))),
            };
            if handlers.dispatch(event) > 0 {
                tokio::spawn(async move {
                    if let Ok(Ok(output)) = tokio::time::timeout_at(deadline, answer).await {
                        if let Err(error) = query.respond(output).await {
                            tracing::warn!(query = %query.name, %error, "cannot send the handler's response");
                        }
                    }
                });
            }
        }
        member_event => {
            let kind = match member_event {
                SerfEvent::MemberJoin(_) => EventKind::MemberJoin,
                SerfEvent::MemberLeave(_) => EventKind::MemberLeave,
                SerfEvent::MemberFailed(_) => EventKind::MemberFailed,
                SerfEvent::MemberUpdate(_) => EventKind::MemberUpdate,
                _ => EventKind::MemberReap,
            };
            let members = member_event.members();
            let serf_name = match kind {
                EventKind::MemberJoin => "EventMemberJoin",
                EventKind::MemberLeave => "EventMemberLeave",
                EventKind::MemberFailed => "EventMemberFailed",
                EventKind::MemberUpdate => "EventMemberUpdate",
                _ => "EventMemberReap",
            };
            for member in members {
                tracing::info!(target: EVENT_LOG, "{serf_name}: {} {}", member.name, member.addr.ip());
            }
            record.members = members.iter().map(MemberInfo::from_member).collect();
            let _ = records.send(Arc::new(record));
            let lines = members
                .iter()
                .map(|member| MemberLine {
                    name: member.name.to_string(),
                    ip: member.addr.ip(),
                    tags: member.tags.as_map().clone(),
                })
                .collect();
            handlers.dispatch(HandlerEvent::Members { kind, members: lines });
        }
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
