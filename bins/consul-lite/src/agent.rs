//! `consul-lite agent -dev | -server | (a client)`: the gossip pool, the store, the catalog
//! kept in step with the pool, and the HTTP API, until a signal or `/v1/agent/leave`.
//!
//! ```text
//!  Settings ─► bind HTTP ─► (-server: RaftStore on -data-dir, server RPC on -server-port,
//!      │                     which also serves client agents: server::subscribe)
//!      │     ─► Serf::start (server tags role=consul, dc, port, id, expect;
//!      │                     client tags role=node, dc, id) ─► -join / -retry-join
//!      │     ─► (-server: server::bootstrap::run: bootstrap, then voters follow the pool)
//!      │     ─► (client: servers from the pool's tags ─► RemoteStore::follow)
//!      ├─► DevStore | RaftStore | RemoteStore ◄── register this node (serfHealth passing,
//!      │       ▲                                   service "consul" on servers)
//!      │       └── reconcile (-dev, and the -server that leads): member alive → serfHealth
//!      │           passing, failed → critical (its sessions invalidated, locks released),
//!      │           left → deregistered
//!      ├─► local::LocalAgent: this agent's services and checks (checks/), written to the store
//!      ├─► primary (with -primary-http): the lock-held election over this agent's own API
//!      ├─► dns::DnsServer on -client:-dns-port (UDP + TCP), reading the store's registry
//!      └─► http_serve::serve(/v1 router) until SIGINT / SIGTERM / leave
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agent_support::logging::LogHub;
use anyhow::Context as _;
use gossip_core::{Keyring, Member, NodeConfig, Serf, SerfConfig, SerfEvent, SerfHandle, State, Tags};
use http_serve::{ServeConfig, ServeStats};
use rand::Rng as _;
use service_registry::{
    CheckRegistration, Command, HealthStatus, Registration, ServiceRegistration, SERF_HEALTH_CHECK,
};
use tokio::sync::watch;

use crate::config::Settings;
use crate::http::{AgentInfo, Api, ApiMetrics};
use crate::local::LocalAgent;
use crate::server::{self, bootstrap::ClusterSettings};
use crate::store::{DevStore, RemoteStore, Store};

/// How often `-retry-join` tries again once its first quick tries have failed (Consul: 30 s).
const RETRY_JOIN_INTERVAL: Duration = Duration::from_secs(30);
/// The first wait of `-retry-join` after a miss; it doubles up to [`RETRY_JOIN_INTERVAL`].
const RETRY_JOIN_FIRST: Duration = Duration::from_secs(1);

/// How often the catalog is compared with the pool when the pool does not change.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(2);

/// Runs the agent until it is stopped.
pub(crate) async fn run(settings: Settings, logs: LogHub) -> anyhow::Result<()> {
    let client = !settings.dev && !settings.server;
    if settings.server && !settings.dev && settings.data_dir.is_none() {
        anyhow::bail!("-server needs -data-dir (data_dir): the Raft log and the node ID are kept there");
    }
    if settings.dev && settings.data_dir.is_some() {
        tracing::info!("-data-dir is accepted but unused in -dev mode: nothing is kept on disk");
    }
    http_serve::raise_fd_limit();
    let http_addr = SocketAddr::new(settings.client, settings.http_port);
    let listener = http_serve::bind(http_addr).with_context(|| format!("cannot listen for HTTP on {http_addr}"))?;
    // A -server keeps its node ID and its Raft log in -data-dir, and serves Raft on
    // -bind:-server-port before it joins the pool (its tags say where).
    let raft = if settings.dev || client { None } else { Some(server::start_store(&settings).await?) };
    let node_id = match (&raft, &settings.data_dir) {
        (Some((_, node_id)), _) => node_id.clone(),
        // A client keeps its node ID in -data-dir when it has one (and nothing else).
        (None, Some(dir)) if client => server::load_node_id(dir, uuid)
            .with_context(|| format!("data dir (-data-dir) {}: cannot read or create the node ID", dir.display()))?,
        (None, _) => uuid(),
    };
    let raft = raft.map(|(store, _)| store);
    let remote = client.then(|| RemoteStore::new(settings.bind));

    let mut node = NodeConfig::lan();
    node.name.clone_from(&settings.node);
    node.bind_addr = SocketAddr::new(settings.bind, settings.serf_lan_port);
    if let Some(key) = &settings.encrypt {
        node.keyring = Some(Keyring::new(gossip_core::Key::from_base64(key).context("-encrypt")?));
    }
    let tags = if client { client_tags(&settings, &node_id) } else { server_tags(&settings, &node_id) };
    node.tags = Tags::from_pairs(tags).context("gossip tags")?;
    let config = SerfConfig::new(node);
    config.validate().context("invalid gossip configuration")?;
    let serf = Serf::start(config).await.with_context(|| {
        format!("cannot start gossip on {}:{} (-bind, -serf-lan-port)", settings.bind, settings.serf_lan_port)
    })?;
    let handle = serf.handle();
    let advertise = handle.advertise_addr().ip().to_string();

    let (store, dev_store): (Arc<dyn Store>, Option<DevStore>) = match (&raft, &remote) {
        (Some(raft), _) => {
            // Client agents' requests and subscriptions arrive on the server port.
            let _first = raft.consensus().serve_clients(Arc::new(server::subscribe::AgentService::new(raft.clone())));
            (Arc::new(raft.clone()), None)
        }
        (None, Some(remote)) => (Arc::new(remote.clone()), None),
        (None, None) => {
            let dev = DevStore::new(SocketAddr::new(settings.bind, settings.server_port).to_string());
            (Arc::new(dev.clone()), Some(dev))
        }
    };
    // The server address the others know this server by: its gossip IP and the port tag.
    let server_addr = match &raft {
        Some(_) => SocketAddr::new(handle.advertise_addr().ip(), settings.server_port).to_string(),
        // A client serves no server port.
        None if client => String::new(),
        None => SocketAddr::new(settings.bind, settings.server_port).to_string(),
    };
    // DNS on -client:-dns-port, UDP and TCP, answered from this agent's registry.
    let dns = match settings.dns_port {
        None => None,
        Some(port) => {
            let addr = SocketAddr::new(settings.client, port);
            let view = Arc::new(crate::dns::StoreView(Arc::clone(&store)));
            let config = Arc::new(settings.dns.clone());
            match crate::dns::DnsServer::bind(addr, view, config, crate::dns::Limits::default()).await {
                Ok(dns) => Some(dns),
                Err(error) => {
                    serf.shutdown().await;
                    anyhow::bail!("cannot listen for DNS on {addr} (-client, -dns-port): {error}");
                }
            }
        }
    };
    let dns_addr = dns.as_ref().and_then(|dns| dns.local_addr().ok());
    if dev_store.is_some() {
        register_self(&*store, &settings, &node_id, &advertise).await?;
    }

    if !settings.join.is_empty() {
        let addrs = resolve(&settings.join).await?;
        if let Err(error) = handle.join(&addrs, false).await {
            serf.shutdown().await;
            anyhow::bail!("-join: could not join any of {:?}: {error}", settings.join);
        }
    }

    let (stop, mut stopping) = watch::channel(false);
    // The lock-held primary (primary.rs), driven over this agent's own HTTP API; it releases the
    // lock before a graceful leave or stop.
    let (primary, primary_tasks) = match &settings.primary {
        None => (None, Vec::new()),
        Some(primary) => {
            let token = settings.acl_master_token.clone();
            match crate::primary::start(primary, &settings.node, http_addr, token, handle.clone(), stopping.clone()) {
                Ok((primary, tasks)) => (Some(primary), tasks),
                Err(error) => {
                    serf.shutdown().await;
                    return Err(error);
                }
            }
        }
    };
    let local_settings = crate::local::LocalSettings::from_settings(&settings);
    let local = Arc::new(LocalAgent::new(settings.node.clone(), Arc::clone(&store), local_settings));
    let api = Arc::new(Api {
        local: Arc::clone(&local),
        store: Arc::clone(&store),
        serf: handle.clone(),
        info: AgentInfo {
            node: settings.node.clone(),
            node_id: node_id.clone(),
            datacenter: settings.datacenter.clone(),
            server_addr: server_addr.clone(),
            advertise: advertise.clone(),
            server: settings.server,
            dev: settings.dev,
        },
        acl_token: settings.acl_master_token.clone(),
        metrics: ApiMetrics::default(),
        serve_stats: Arc::new(ServeStats::default()),
        dns_stats: dns.as_ref().map(crate::dns::DnsServer::stats),
        stop: stop.clone(),
        primary: primary.clone(),
        logs,
    });

    let mut tasks = primary_tasks;
    if let Some(dns) = dns {
        tasks.push(tokio::spawn(dns.run()));
    }
    tasks.push(tokio::spawn(local.run(stopping.clone())));
    if !client {
        tasks.push(tokio::spawn(reconcile(
            handle.clone(),
            Arc::clone(&api.store),
            settings.node.clone(),
            settings.datacenter.clone(),
            stopping.clone(),
        )));
    }
    if let Some(remote) = &remote {
        tasks.push(tokio::spawn(find_servers(handle.clone(), remote.clone(), settings.datacenter.clone())));
        tasks.push(tokio::spawn(remote.clone().follow(stopping.clone())));
    }
    tasks.push(tokio::spawn(log_member_events(handle.clone(), stopping.clone())));
    if !settings.retry_join.is_empty() {
        tasks.push(tokio::spawn(retry_join(handle.clone(), settings.retry_join.clone(), stopping.clone())));
    }
    if !settings.dev {
        // Registered once the cluster takes writes (it may not have a leader yet; a client
        // may not have found a server yet).
        let (store, settings, node_id, advertise) =
            (Arc::clone(&store), settings.clone(), node_id.clone(), advertise.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                match register_self(&*store, &settings, &node_id, &advertise).await {
                    Ok(()) => return,
                    Err(error) => tracing::info!("{error:#}; trying again"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    if let Some(raft) = &raft {
        let cluster = ClusterSettings {
            node: settings.node.clone(),
            datacenter: settings.datacenter.clone(),
            expect: settings.bootstrap_expect,
            settle: raft.settle_time(),
        };
        tasks.push(tokio::spawn(server::bootstrap::run(handle.clone(), raft.clone(), cluster, stopping.clone())));
    }
    let mut serve_stop = stopping.clone();
    let server = tokio::spawn(http_serve::serve(
        listener,
        crate::http::router(Arc::clone(&api)),
        ServeConfig::default(),
        Arc::clone(&api.serve_stats),
        async move {
            let _ = serve_stop.wait_for(|stop| *stop).await;
        },
    ));
    println!("==> consul-lite agent running!");
    println!("           Node name: '{}'", settings.node);
    println!("          Datacenter: '{}'", settings.datacenter);
    match (&raft, &settings.data_dir) {
        (Some(_), Some(dir)) => println!("              Server: true (Raft, data in {})", dir.display()),
        _ if client => println!("              Server: false (client agent: no Raft state)"),
        _ => println!("              Server: {} (dev mode, in memory)", settings.server),
    }
    match dns_addr {
        Some(dns_addr) => println!("     Client Addr: {http_addr} (HTTP), {dns_addr} (DNS)"),
        None => println!("     Client Addr: {http_addr} (HTTP)"),
    }
    println!("        Cluster Addr: {} (LAN gossip: {})", advertise, handle.local_addr());
    tracing::info!(node = %settings.node, http = %http_addr, gossip = %handle.local_addr(), "agent running");

    let signal = wait_for_signal();
    tokio::pin!(signal);
    let graceful = tokio::select! {
        caught = &mut signal => {
            // Consul's leave_on_terminate / skip_leave_on_interrupt: by default a client agent
            // leaves the pool (the others see it "left" at once, not "failed" after the
            // failure detector's timeouts); a server just stops.
            let graceful = match caught {
                Signal::Terminate => settings.leave_on_terminate,
                Signal::Interrupt => !settings.skip_leave_on_interrupt,
            };
            tracing::info!(signal = caught.name(), graceful, "caught a signal; shutting down");
            graceful
        }
        _ = stopping.wait_for(|stop| *stop) => {
            tracing::info!("left the pool; shutting down");
            false
        }
    };
    if let Some(primary) = &primary {
        primary.resign().await;
    }
    if graceful {
        tracing::info!("gracefully leaving the pool");
        if let Err(error) = serf.leave().await {
            tracing::warn!(%error, "graceful leave failed; shutting down anyway");
        }
    }
    let _ = stop.send(true);
    if let Some(dev) = &dev_store {
        dev.stop();
    }
    let _ = server.await;
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
    if let Some(raft) = &raft {
        raft.shutdown().await;
    }
    serf.shutdown().await;
    Ok(())
}

/// The signals that stop the agent.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }
}

async fn wait_for_signal() -> Signal {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return std::future::pending::<Signal>().await;
    };
    tokio::select! {
        _ = interrupt.recv() => Signal::Interrupt,
        _ = terminate.recv() => Signal::Terminate,
    }
}

/// The tags Consul's servers gossip: role, datacenter, server port, node ID, versions.
fn server_tags(settings: &Settings, node_id: &str) -> Vec<(String, String)> {
    let mut tags = vec![
        ("role".to_owned(), "consul".to_owned()),
        ("dc".to_owned(), settings.datacenter.clone()),
        ("port".to_owned(), settings.server_port.to_string()),
        ("id".to_owned(), node_id.to_owned()),
        ("vsn".to_owned(), "2".to_owned()),
        ("vsn_min".to_owned(), "2".to_owned()),
        ("vsn_max".to_owned(), "3".to_owned()),
        ("raft_vsn".to_owned(), "3".to_owned()),
        ("build".to_owned(), format!("consul-lite-{}", env!("CARGO_PKG_VERSION"))),
    ];
    if settings.dev {
        tags.push(("bootstrap".to_owned(), "1".to_owned()));
    } else if let Some(expect) = settings.bootstrap_expect {
        tags.push(("expect".to_owned(), expect.to_string()));
    }
    tags
}

/// The tags Consul's client agents gossip: role `node`, datacenter, node ID, versions.
fn client_tags(settings: &Settings, node_id: &str) -> Vec<(String, String)> {
    vec![
        ("role".to_owned(), "node".to_owned()),
        ("dc".to_owned(), settings.datacenter.clone()),
        ("id".to_owned(), node_id.to_owned()),
        ("vsn".to_owned(), "2".to_owned()),
        ("vsn_min".to_owned(), "2".to_owned()),
        ("vsn_max".to_owned(), "3".to_owned()),
        ("build".to_owned(), format!("consul-lite-{}", env!("CARGO_PKG_VERSION"))),
    ]
}

/// A client agent's servers: the live members tagged as servers of its datacenter, kept up
/// to date as the pool changes.
async fn find_servers(serf: SerfHandle, remote: RemoteStore, datacenter: String) {
    let mut changes = serf.member_changes();
    loop {
        let live = server::servers(&serf.members(), &datacenter).into_iter().filter(server::ServerInfo::is_live);
        remote.set_servers(live.collect());
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// This node in the catalog: its address, a passing `serfHealth`, and on a server (or in
/// `-dev`) the `consul` service on the server port.
async fn register_self(store: &dyn Store, settings: &Settings, node_id: &str, address: &str) -> anyhow::Result<()> {
    let registration = Registration {
        node: settings.node.clone(),
        id: node_id.to_owned(),
        address: address.to_owned(),
        datacenter: settings.datacenter.clone(),
        tagged_addresses: [("lan".to_owned(), address.to_owned()), ("wan".to_owned(), address.to_owned())].into(),
        node_meta: [("consul-network-segment".to_owned(), String::new())].into(),
        service: settings.server.then(|| ServiceRegistration {
            id: "consul".into(),
            service: "consul".into(),
            port: settings.server_port,
            ..ServiceRegistration::default()
        }),
        checks: vec![serf_health(HealthStatus::Passing)],
    };
    let _applied =
        store.write(Command::Register(registration)).await.context("cannot register this node in the catalog")?;
    Ok(())
}

fn serf_health(status: HealthStatus) -> CheckRegistration {
    let output = match status {
        HealthStatus::Passing => "Agent alive and reachable",
        _ => "Agent not live or unreachable",
    };
    CheckRegistration {
        check_id: SERF_HEALTH_CHECK.into(),
        name: "Serf Health Status".into(),
        status,
        output: output.into(),
        check_type: "serf".into(),
        ..CheckRegistration::default()
    }
}

/// Keeps the catalog in step with the gossip pool, as Consul's leader does: a live member is
/// registered with `serfHealth` passing, a failed one gets it critical (which invalidates its
/// sessions and releases their locks), a member that left is deregistered.
async fn reconcile(
    serf: SerfHandle,
    store: Arc<dyn Store>,
    this_node: String,
    datacenter: String,
    mut stopping: watch::Receiver<bool>,
) {
    let mut changes = serf.member_changes();
    loop {
        // With Raft, only the leader reconciles (as Consul's does); the others would only
        // propose the same writes again.
        let leads = store.raft().is_none_or(|raft| raft.metrics().role == consensus::Role::Leader);
        for member in serf.members().into_iter().filter(|_| leads) {
            if let Some(command) = reconcile_command(&*store, &member, &this_node, &datacenter) {
                if member.state == State::Dead {
                    // Consul's leader logs the same line (its sessions go with the check).
                    tracing::info!(member = %member.name, "member failed, marking health critical");
                }
                if let Err(error) = store.write(command).await {
                    tracing::warn!(member = %member.name, %error, "cannot update the catalog for a member");
                }
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            // Leadership moves without the pool changing: look again now and then.
            () = tokio::time::sleep(RECONCILE_INTERVAL) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

fn reconcile_command(store: &dyn Store, member: &Member, this_node: &str, datacenter: &str) -> Option<Command> {
    let name = member.name.to_string();
    if name == this_node {
        return None;
    }
    let registry = store.read();
    let registered = registry.node(&name).is_some();
    let health = registry.check(&name, SERF_HEALTH_CHECK).map(|check| check.status);
    let address = member.addr.ip().to_string();
    let register = |status| {
        Command::Register(Registration {
            node: name.clone(),
            address: address.clone(),
            datacenter: datacenter.to_owned(),
            checks: vec![serf_health(status)],
            ..Registration::default()
        })
    };
    match member.state {
        State::Alive | State::Suspect => {
            let current = registry.node(&name).is_some_and(|node| node.address == address);
            (!current || health != Some(HealthStatus::Passing)).then(|| register(HealthStatus::Passing))
        }
        State::Dead => (registered && health != Some(HealthStatus::Critical)).then(|| register(HealthStatus::Critical)),
        State::Left => registered.then(|| Command::DeregisterNode { node: name.clone() }),
    }
}

/// The log target of membership events: the lines a Consul operator greps for.
const MEMBER_LOG: &str = "serf";

/// Logs every membership event at info level with the names Consul's agents log
/// (`serf: EventMemberJoin: node1 10.0.0.1`), so that `monitor` and the log show joins, failures
/// and departures as Consul's do.
async fn log_member_events(serf: SerfHandle, mut stopping: watch::Receiver<bool>) {
    let mut events = serf.events();
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        let name = match &event {
            SerfEvent::MemberJoin(_) => "EventMemberJoin",
            SerfEvent::MemberLeave(_) => "EventMemberLeave",
            SerfEvent::MemberFailed(_) => "EventMemberFailed",
            SerfEvent::MemberUpdate(_) => "EventMemberUpdate",
            SerfEvent::MemberReap(_) => "EventMemberReap",
            _ => continue,
        };
        for member in event.members() {
            tracing::info!(target: MEMBER_LOG, "serf: {name}: {} {}", member.name, member.addr.ip());
        }
    }
}

async fn resolve(addrs: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut resolved = Vec::new();
    for addr in addrs {
        let with_port = if addr.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
            addr.clone()
        } else {
            format!("{addr}:{}", crate::config::DEFAULT_SERF_LAN_PORT)
        };
        let found = tokio::net::lookup_host(with_port.as_str()).await;
        match found {
            Ok(found) => resolved.extend(found),
            Err(error) => tracing::warn!(%addr, %error, "cannot resolve a join address"),
        }
    }
    if resolved.is_empty() {
        anyhow::bail!("none of {addrs:?} resolves to an address");
    }
    Ok(resolved)
}

async fn retry_join(serf: SerfHandle, addrs: Vec<String>, mut stopping: watch::Receiver<bool>) {
    // Servers started together race: the first attempts come quickly (1 s, doubling), and only
    // then every RETRY_JOIN_INTERVAL, as Consul's retry_interval. Consul waits the whole 30 s
    // after a first miss, so three servers started at once can take 30 s to form.
    let mut wait = RETRY_JOIN_FIRST.min(RETRY_JOIN_INTERVAL);
    loop {
        match resolve(&addrs).await {
            Ok(resolved) => match serf.join(&resolved, false).await {
                Ok(count) => {
                    tracing::info!(count, "retry-join: joined the pool");
                    return;
                }
                Err(error) => tracing::warn!(%error, "retry-join: no address answered; retrying"),
            },
            Err(error) => tracing::warn!(%error, "retry-join"),
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        wait = (wait * 2).min(RETRY_JOIN_INTERVAL);
    }
}

/// A random (version 4) UUID: node and session IDs.
pub(crate) fn uuid() -> String {
    let mut bytes: [u8; 16] = rand::rng().random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}
