//! Event handlers: scripts run through `/bin/sh -c` for member events, user events and queries,
//! with Serf's environment variables and stdin format.
//!
//! ```text
//!  agent event loop ── dispatch(event) ──► match specs ──► try_send(job) ──► bounded queue
//!     (never waits)                                                             │
//!                                     dispatcher task: one semaphore permit per job
//!                                                             │
//!                          spawned task per job: /bin/sh -c SCRIPT, env + stdin, read stdout,
//!                          warn when slow, kill a query handler at the query's deadline,
//!                          first successful non-empty output of a query ──► reply slot
//! ```
//!
//! The gossip side never waits for a handler: when the queue is full the job is dropped, logged
//! and counted (`serf_handler_dropped_total`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Jobs waiting for a free slot; beyond this, new jobs are dropped (and counted).
const QUEUE_LEN: usize = 1024;
/// A handler running longer than this is logged as slow (Serf's threshold too).
const SLOW_AFTER: Duration = Duration::from_secs(1);
/// Most output kept from one handler run (a query response is much smaller anyway).
const OUTPUT_LIMIT: usize = 8 * 1024;

/// The event types a handler can be filtered on, with the names of `SERF_EVENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum EventKind {
    MemberJoin,
    MemberLeave,
    MemberFailed,
    MemberUpdate,
    MemberReap,
    User,
    Query,
}

impl EventKind {
    /// The name used in filters and in `SERF_EVENT`.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::MemberJoin => "member-join",
            Self::MemberLeave => "member-leave",
            Self::MemberFailed => "member-failed",
            Self::MemberUpdate => "member-update",
            Self::MemberReap => "member-reap",
            Self::User => "user",
            Self::Query => "query",
        }
    }

    /// The kind named `name` (`member-join`, ..., `user`, `query`).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        [
            Self::MemberJoin,
            Self::MemberLeave,
            Self::MemberFailed,
            Self::MemberUpdate,
            Self::MemberReap,
            Self::User,
            Self::Query,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One item of a filter: `*`, an event type, `user:NAME` or `query:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FilterItem {
    Any,
    Kind(EventKind),
    UserNamed(String),
    QueryNamed(String),
}

/// Which events a handler (or an event stream) wants: Serf's syntax, items joined by commas,
/// for example `member-join,member-failed,user:deploy,query:uptime`. Empty means every event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct EventFilter(Vec<FilterItem>);

impl EventFilter {
    /// Parse a filter; the error names the item that is not understood.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut items = Vec::new();
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let parsed = if item == "*" {
                FilterItem::Any
            } else if let Some(name) = item.strip_prefix("user:") {
                FilterItem::UserNamed(name.to_owned())
            } else if let Some(name) = item.strip_prefix("query:") {
                FilterItem::QueryNamed(name.to_owned())
            } else if let Some(kind) = EventKind::parse(item) {
                FilterItem::Kind(kind)
            } else {
                return Err(format!(
                    "unknown event type {item:?}; use member-join, member-leave, member-failed, member-update, \
                     member-reap, user, user:NAME, query, query:NAME or *"
                ));
            };
            items.push(parsed);
        }
        Ok(Self(items))
    }

    /// Whether an event of `kind` (named `name` for user events and queries) passes.
    pub(crate) fn matches(&self, kind: EventKind, name: Option<&str>) -> bool {
        self.0.is_empty()
            || self.0.iter().any(|item| match item {
                FilterItem::Any => true,
                FilterItem::Kind(wanted) => *wanted == kind,
                FilterItem::UserNamed(wanted) => kind == EventKind::User && name == Some(wanted.as_str()),
                FilterItem::QueryNamed(wanted) => kind == EventKind::Query && name == Some(wanted.as_str()),
            })
    }
}

/// A handler: `[FILTER=]SCRIPT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandlerSpec {
    pub(crate) filter: EventFilter,
    pub(crate) script: String,
}

impl HandlerSpec {
    /// Parse `[FILTER=]SCRIPT`. The part before the first `=` is a filter when it is written like
    /// one (lower-case letters, digits and `-:,*_.`); it must then be a valid filter. Anything
    /// else (`FOO=1 ./script.sh`, `./script.sh`) is all script, run for every event.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some((filter, script)) = text.split_once('=') {
            let looks_like_filter = !filter.is_empty()
                && filter.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-:,*_.".contains(c));
            if looks_like_filter {
                if script.trim().is_empty() {
                    return Err("no script after the filter".to_owned());
                }
                return Ok(Self { filter: EventFilter::parse(filter)?, script: script.to_owned() });
            }
        }
        if text.is_empty() {
            return Err("empty handler".to_owned());
        }
        Ok(Self { filter: EventFilter::default(), script: text.to_owned() })
    }
}

/// A member as a handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberLine {
    pub(crate) name: String,
    pub(crate) ip: IpAddr,
    pub(crate) tags: BTreeMap<String, String>,
}

impl MemberLine {
    /// Serf's stdin line: `name\taddr\trole\ttags\n`, tags as `k=v,k2=v2`, tabs and newlines in
    /// values escaped as `\t` and `\n`.
    fn stdin_line(&self) -> String {
        let tags: Vec<String> = self.tags.iter().map(|(key, value)| format!("{key}={value}")).collect();
        let role = self.tags.get("role").map(String::as_str).unwrap_or("");
        format!("{}\t{}\t{}\t{}\n", clean(&self.name), self.ip, clean(role), clean(&tags.join(",")))
    }
}

fn clean(text: &str) -> String {
    text.replace('\t', "\\t").replace('\n', "\\n")
}

/// The first successful, non-empty output of a query's handlers goes here.
pub(crate) type ReplySlot = Arc<Mutex<Option<oneshot::Sender<Bytes>>>>;

/// An event as handlers receive it.
#[derive(Debug)]
pub(crate) enum HandlerEvent {
    Members { kind: EventKind, members: Vec<MemberLine> },
    User { name: String, ltime: u64, payload: Bytes },
    Query { name: String, ltime: u64, payload: Bytes, deadline: tokio::time::Instant, reply: ReplySlot },
}

impl HandlerEvent {
    fn kind(&self) -> EventKind {
        match self {
            Self::Members { kind, .. } => *kind,
            Self::User { .. } => EventKind::User,
            Self::Query { .. } => EventKind::Query,
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Self::Members { .. } => None,
            Self::User { name, .. } | Self::Query { name, .. } => Some(name),
        }
    }

    /// Environment variables of this event, after `SERF_EVENT`.
    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Members { .. } => Vec::new(),
            Self::User { name, ltime, .. } => {
                vec![("SERF_USER_EVENT", name.clone()), ("SERF_USER_LTIME", ltime.to_string())]
            }
            Self::Query { name, ltime, .. } => {
                vec![("SERF_QUERY_NAME", name.clone()), ("SERF_QUERY_LTIME", ltime.to_string())]
            }
        }
    }

    fn stdin(&self) -> Bytes {
        match self {
            Self::Members { members, .. } => {
                Bytes::from(members.iter().map(MemberLine::stdin_line).collect::<String>())
            }
            Self::User { payload, .. } | Self::Query { payload, .. } => payload.clone(),
        }
    }
}

/// This node as handlers see it, read when each handler starts.
#[derive(Debug, Clone, Default)]
pub(crate) struct SelfInfo {
    pub(crate) name: String,
    pub(crate) tags: BTreeMap<String, String>,
}

/// Where handlers read who they run on.
pub(crate) type SelfSource = Arc<dyn Fn() -> SelfInfo + Send + Sync>;

/// Environment of a handler: `SERF_EVENT`, `SERF_SELF_NAME`, `SERF_SELF_ROLE`, `SERF_TAG_*` and
/// the event's own variables.
fn environment(event: &HandlerEvent, me: &SelfInfo) -> Vec<(String, String)> {
    let mut env = vec![
        ("SERF_EVENT".to_owned(), event.kind().as_str().to_owned()),
        ("SERF_SELF_NAME".to_owned(), me.name.clone()),
        ("SERF_SELF_ROLE".to_owned(), me.tags.get("role").cloned().unwrap_or_default()),
    ];
    for (key, value) in &me.tags {
        let name: String =
            key.to_uppercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        env.push((format!("SERF_TAG_{name}"), value.clone()));
    }
    env.extend(event.env().into_iter().map(|(key, value)| (key.to_owned(), value)));
    env
}

/// Counters of the handler runs, for the metrics.
#[derive(Debug, Default)]
pub(crate) struct HandlerStats {
    runs: Mutex<BTreeMap<(EventKind, RunOutcome), RunTotals>>,
    dropped: AtomicU64,
    running: AtomicI64,
    queued: AtomicI64,
}

/// How a handler run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RunOutcome {
    /// Exit status 0.
    Succeeded,
    /// Another exit status, or killed by a signal.
    Failed,
    /// Could not be started.
    NotStarted,
    /// A query handler still running at the query's deadline, killed.
    TimedOut,
}

impl RunOutcome {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "ok",
            Self::Failed => "failed",
            Self::NotStarted => "error",
            Self::TimedOut => "timeout",
        }
    }
}

/// Count and total duration of the runs of one kind and outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RunTotals {
    pub(crate) count: u64,
    pub(crate) seconds: f64,
}

impl HandlerStats {
    fn record(&self, kind: EventKind, outcome: RunOutcome, took: Duration) {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let totals = runs.entry((kind, outcome)).or_default();
        totals.count += 1;
        totals.seconds += took.as_secs_f64();
    }

    /// Runs by event kind and outcome.
    pub(crate) fn runs(&self) -> BTreeMap<(EventKind, RunOutcome), RunTotals> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Jobs dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Handlers running now.
    pub(crate) fn running(&self) -> i64 {
        self.running.load(Ordering::Relaxed)
    }

    /// Jobs waiting for a slot.
    pub(crate) fn queued(&self) -> i64 {
        self.queued.load(Ordering::Relaxed)
    }
}

struct Job {
    script: String,
    event: Arc<HandlerEvent>,
}

/// Runs handlers for events without ever making the caller wait. Clone it freely.
#[derive(Clone)]
pub(crate) struct HandlerRunner {
    queue: mpsc::Sender<Job>,
    specs: Arc<RwLock<Arc<Vec<HandlerSpec>>>>,
    stats: Arc<HandlerStats>,
}

impl fmt::Debug for HandlerRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerRunner").field("specs", &self.specs()).finish_non_exhaustive()
    }
}

impl HandlerRunner {
    /// Start the dispatcher task: at most `concurrency` handlers run at a time.
    pub(crate) fn start(specs: Vec<HandlerSpec>, concurrency: usize, whoami: SelfSource) -> Self {
        let (queue, mut jobs) = mpsc::channel::<Job>(QUEUE_LEN);
        let stats = Arc::new(HandlerStats::default());
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        let dispatcher_stats = Arc::clone(&stats);
        tokio::spawn(async move {
            while let Some(job) = jobs.recv().await {
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { break };
                dispatcher_stats.queued.fetch_sub(1, Ordering::Relaxed);
                let stats = Arc::clone(&dispatcher_stats);
                let me = whoami();
                tokio::spawn(async move {
                    stats.running.fetch_add(1, Ordering::Relaxed);
                    run(&job, &me, &stats).await;
                    stats.running.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
        });
        Self { queue, specs: Arc::new(RwLock::new(Arc::new(specs))), stats }
    }

    /// Replace the handlers (SIGHUP); jobs already queued run with their old script.
    pub(crate) fn replace(&self, specs: Vec<HandlerSpec>) {
        *self.specs.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(specs);
    }

    /// The handlers configured now.
    pub(crate) fn specs(&self) -> Arc<Vec<HandlerSpec>> {
        Arc::clone(&self.specs.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The counters.
    pub(crate) fn stats(&self) -> Arc<HandlerStats> {
        Arc::clone(&self.stats)
    }

    /// Queue a run of every handler whose filter matches; returns how many were queued. Never
    /// waits: a full queue drops the job (logged and counted).
    pub(crate) fn dispatch(&self, event: HandlerEvent) -> usize {
        let event = Arc::new(event);
        let mut queued = 0;
        for spec in self.specs().iter().filter(|spec| spec.filter.matches(event.kind(), event.name())) {
            let job = Job { script: spec.script.clone(), event: Arc::clone(&event) };
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
            match self.queue.try_send(job) {
                Ok(()) => queued += 1,
                Err(_) => {
                    self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(event = %event.kind(), script = %spec.script, "handler queue full, run dropped");
                }
            }
        }
        queued
    }
}

/// Run one handler to its end.
async fn run(job: &Job, me: &SelfInfo, stats: &HandlerStats) {
    let event = &*job.event;
    let kind = event.kind();
    let started = Instant::now();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&job.script)
        .envs(environment(event, me))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            tracing::error!(event = %kind, script = %job.script, %error, "cannot start event handler");
            stats.record(kind, RunOutcome::NotStarted, started.elapsed());
            return;
        }
    };
    let input = event.stdin();
    let stdin = child.stdin.take();
    let writer = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            // A handler that does not read its stdin closes the pipe: that is fine.
            let _ = stdin.write_all(&input).await;
        }
    });
    let stdout = tokio::spawn(read_limited(child.stdout.take()));
    let stderr = tokio::spawn(read_limited(child.stderr.take()));

    let deadline = match event {
        HandlerEvent::Query { deadline, .. } => Some(*deadline),
        _ => None,
    };
    let slow = tokio::time::sleep(SLOW_AFTER);
    tokio::pin!(slow);
    let mut warned = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.ok(),
            () = &mut slow, if !warned => {
                warned = true;
                tracing::warn!(event = %kind, script = %job.script, after = ?SLOW_AFTER, "event handler is slow");
            }
            () = sleep_until_or_forever(deadline) => {
                tracing::warn!(event = %kind, script = %job.script, "query handler still running at the query's deadline; killed");
                let _ = child.kill().await;
                let _ = writer.await;
                stats.record(kind, RunOutcome::TimedOut, started.elapsed());
                return;
            }
        }
    };
    let _ = writer.await;
    let output = stdout.await.unwrap_or_default();
    let errors = stderr.await.unwrap_or_default();
    let took = started.elapsed();
    let succeeded = status.is_some_and(|status| status.success());
    stats.record(kind, if succeeded { RunOutcome::Succeeded } else { RunOutcome::Failed }, took);
    if !errors.is_empty() {
        tracing::info!(event = %kind, script = %job.script, stderr = %String::from_utf8_lossy(&errors).trim_end(), "event handler wrote to stderr");
    }
    if succeeded {
        tracing::debug!(event = %kind, script = %job.script, ?took, output = %String::from_utf8_lossy(&output).trim_end(), "event handler done");
    } else {
        let status = status.map_or_else(|| "unknown".to_owned(), |status| status.to_string());
        tracing::warn!(event = %kind, script = %job.script, %status, ?took, "event handler failed");
    }
    if let HandlerEvent::Query { reply, .. } = event {
        if succeeded && !output.is_empty() {
            let sender = reply.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(sender) = sender {
                let _ = sender.send(Bytes::from(output));
            }
        }
    }
}

async fn sleep_until_or_forever(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Read a pipe to its end, keeping the first [`OUTPUT_LIMIT`] bytes (the rest is drained so that
/// the handler never blocks on a full pipe).
async fn read_limited(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut pipe) = pipe else { return Vec::new() };
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return kept,
            Ok(read) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..read.min(room)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_match() {
        let filter = EventFilter::parse("member-join,user:deploy,query:uptime").unwrap();
        assert!(filter.matches(EventKind::MemberJoin, None));
        assert!(!filter.matches(EventKind::MemberLeave, None));
        assert!(filter.matches(EventKind::User, Some("deploy")));
        assert!(!filter.matches(EventKind::User, Some("other")));
        assert!(filter.matches(EventKind::Query, Some("uptime")));
        assert!(EventFilter::parse("").unwrap().matches(EventKind::MemberReap, None));
        assert!(EventFilter::parse("*").unwrap().matches(EventKind::Query, Some("x")));
        assert!(EventFilter::parse("user").unwrap().matches(EventKind::User, Some("x")));
        let err = EventFilter::parse("member-join,membr-leave").unwrap_err();
        assert!(err.contains("\"membr-leave\""), "{err}");
    }

    #[test]
    fn specs_split_filter_from_script() {
        let spec = HandlerSpec::parse("member-join,member-leave=./handle.sh arg").unwrap();
        assert_eq!(spec.script, "./handle.sh arg");
        assert!(spec.filter.matches(EventKind::MemberLeave, None));
        let spec = HandlerSpec::parse("./handle.sh").unwrap();
        assert_eq!(spec.filter, EventFilter::default());
        // An environment assignment is script, not filter.
        let spec = HandlerSpec::parse("FOO=1 ./handle.sh").unwrap();
        assert_eq!(spec.script, "FOO=1 ./handle.sh");
        assert!(HandlerSpec::parse("user:deploy=").is_err());
        assert!(HandlerSpec::parse("bogus=./x.sh").is_err());
        assert!(HandlerSpec::parse("  ").is_err());
    }

    #[test]
    fn stdin_lines_are_serfs() {
        let member = MemberLine {
            name: "node\t1".into(),
            ip: "10.0.0.1".parse().unwrap(),
            tags: BTreeMap::from([("role".into(), "web".into()), ("dc".into(), "east".into())]),
        };
        assert_eq!(member.stdin_line(), "node\\t1\t10.0.0.1\tweb\tdc=east,role=web\n");
    }

    #[test]
    fn environment_has_serfs_variables() {
        let me = SelfInfo {
            name: "n1".into(),
            tags: BTreeMap::from([("role".into(), "standby".into()), ("dc-name.x".into(), "east".into())]),
        };
        let event = HandlerEvent::User { name: "deploy".into(), ltime: 7, payload: Bytes::new() };
        let env: BTreeMap<String, String> = environment(&event, &me).into_iter().collect();
        assert_eq!(env["SERF_EVENT"], "user");
        assert_eq!(env["SERF_SELF_NAME"], "n1");
        assert_eq!(env["SERF_SELF_ROLE"], "standby");
        assert_eq!(env["SERF_TAG_ROLE"], "standby");
        assert_eq!(env["SERF_TAG_DC_NAME_X"], "east");
        assert_eq!(env["SERF_USER_EVENT"], "deploy");
        assert_eq!(env["SERF_USER_LTIME"], "7");
    }

    fn me() -> SelfSource {
        Arc::new(|| SelfInfo { name: "me".into(), tags: BTreeMap::from([("role".into(), "primary".into())]) })
    }

    async fn wait_for(mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn member_handler_gets_env_and_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!("member-join=(env | grep ^SERF_ | sort; cat) > {}.tmp && mv {0}.tmp {0}", out.display());
        let runner = HandlerRunner::start(vec![HandlerSpec::parse(&script).unwrap()], 2, me());
        let member = MemberLine { name: "a".into(), ip: "127.0.0.1".parse().unwrap(), tags: BTreeMap::new() };
        assert_eq!(runner.dispatch(HandlerEvent::Members { kind: EventKind::MemberLeave, members: vec![] }), 0);
        let event = HandlerEvent::Members { kind: EventKind::MemberJoin, members: vec![member] };
        assert_eq!(runner.dispatch(event), 1);
        wait_for(|| out.exists()).await;
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("SERF_EVENT=member-join\n"), "{text}");
        assert!(text.contains("SERF_SELF_ROLE=primary\n"), "{text}");
        assert!(text.ends_with("a\t127.0.0.1\t\t\n"), "{text}");
        let stats = runner.stats();
        wait_for(|| stats.runs().values().map(|totals| totals.count).sum::<u64>() == 1).await;
        assert!(stats.runs().contains_key(&(EventKind::MemberJoin, RunOutcome::Succeeded)));
    }

    #[tokio::test]
    async fn query_handler_output_is_the_reply() {
        let runner = HandlerRunner::start(
            vec![
                HandlerSpec::parse("query:uptime=echo up $SERF_QUERY_NAME; cat").unwrap(),
                HandlerSpec::parse("query:other=echo wrong").unwrap(),
            ],
            2,
            me(),
        );
        let (sender, receiver) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let reply = Arc::new(Mutex::new(Some(sender)));
        let event = HandlerEvent::Query { name: "uptime".into(), ltime: 1, payload: Bytes::from("!"), deadline, reply };
        assert_eq!(runner.dispatch(event), 1);
        let answer = tokio::time::timeout(Duration::from_secs(10), receiver).await.unwrap().unwrap();
        assert_eq!(&answer[..], b"up uptime\n!");
    }

    #[tokio::test]
    async fn slow_query_handler_is_killed_at_the_deadline() {
        let runner = HandlerRunner::start(vec![HandlerSpec::parse("query=sleep 30; echo late").unwrap()], 1, me());
        let (sender, receiver) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        let reply = Arc::new(Mutex::new(Some(sender)));
        runner.dispatch(HandlerEvent::Query { name: "q".into(), ltime: 1, payload: Bytes::new(), deadline, reply });
        // The slot is dropped unanswered.
        assert!(tokio::time::timeout(Duration::from_secs(10), receiver).await.unwrap().is_err());
        let stats = runner.stats();
        wait_for(|| stats.runs().contains_key(&(EventKind::Query, RunOutcome::TimedOut))).await;
    }

    #[tokio::test]
    async fn failing_handler_is_counted() {
        let runner = HandlerRunner::start(vec![HandlerSpec::parse("exit 3").unwrap()], 1, me());
        runner.dispatch(HandlerEvent::User { name: "x".into(), ltime: 1, payload: Bytes::new() });
        let stats = runner.stats();
        wait_for(|| stats.runs().contains_key(&(EventKind::User, RunOutcome::Failed))).await;
        runner.replace(vec![]);
        assert_eq!(runner.dispatch(HandlerEvent::User { name: "x".into(), ltime: 2, payload: Bytes::new() }), 0);
    }
}
