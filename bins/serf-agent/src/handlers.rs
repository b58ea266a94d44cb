//! Event handlers: scripts run through `/bin/sh -c` for member events, user events and queries,
//! with Serf's environment variables and stdin format.
//!
//! ```text
//!  agent event loop ── dispatch(event) ──► match specs ──► try_send(job) ──► event queue │ query queue
//!     (never waits)                                                             │             │
//!                    event dispatcher: one of `concurrency` slots per job ◄─────┘             │
//!                    query dispatcher: the reserved query slot, or one of the same slots ◄────┘
//!                                                             │
//!          spawned task per job: /bin/sh -c SCRIPT in its own process group, env + stdin,
//!          stdout and stderr captured as they come, warn when slow,
//!          at the timeout (or a query's deadline): what was printed so far ──► reply slot,
//!            then the whole group is killed (SIGTERM, SIGKILL after a grace);
//!          at the shell's exit: a short drain of the pipes (no wait for end-of-file),
//!            a successful non-empty output of a query ──► reply slot, and whatever the shell
//!            left running in its group is killed
//! ```
//!
//! The gossip side never waits for a handler: when a queue is full the job is dropped, logged
//! and counted (`serf_handler_dropped_total`). Event handlers cannot starve queries: a query
//! always has a slot of its own. No handler process outlives its run, nor the agent: every
//! process group is killed when its run ends and [`HandlerRunner::stop`] kills those still
//! running; a group whose run is dropped (the runtime shut down) gets SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use leader_failover::script::{signal_group, CapturedOutput, GroupSignal, ProcessGroup};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Jobs waiting for a free slot, per queue (events, queries); beyond this, new jobs are dropped
/// (and counted).
const QUEUE_LEN: usize = 1024;
/// A handler running longer than this is logged as slow (Serf's threshold too).
const SLOW_AFTER: Duration = Duration::from_secs(1);
/// Most output kept from one handler run (a query response is much smaller anyway).
const OUTPUT_LIMIT: usize = 8 * 1024;
/// How long a handler may run unless `-handler-timeout` says otherwise. Serf has no limit;
/// five minutes leaves room for a deploy script started by a user event and still frees the slot
/// of a hung handler.
pub(crate) const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(300);
/// Slots only query handlers use, on top of `-handler-concurrency`.
const RESERVED_QUERY_SLOTS: usize = 1;
/// Between SIGTERM and SIGKILL to a handler's process group.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// After the shell exits, how long its output may still take to be read. A process it left
/// behind may hold the pipes open: end-of-file is not waited for beyond this.
const DRAIN_BOUND: Duration = Duration::from_millis(100);
/// A query handler still running is answered for (with what it printed so far) a tenth of the
/// query's remaining time before the deadline, at most this much before, so that the answer
/// still reaches the asker in time.
const ANSWER_LEAD_MAX: Duration = Duration::from_millis(250);
/// Polling period while waiting for a process group to go.
const GROUP_POLL: Duration = Duration::from_millis(20);

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
    timeouts: Mutex<BTreeMap<EventKind, u64>>,
    kills: [AtomicU64; KillReason::ALL.len()],
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
    /// Still running at its timeout (or at the query's deadline): killed with its group.
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

/// Why a handler's process group was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum KillReason {
    /// The handler ran past its timeout or its query's deadline.
    Timeout,
    /// The shell exited and left processes running in its group.
    Leftover,
    /// The agent stopped.
    Shutdown,
}

impl KillReason {
    pub(crate) const ALL: [Self; 3] = [Self::Timeout, Self::Leftover, Self::Shutdown];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Leftover => "leftover",
            Self::Shutdown => "shutdown",
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

    fn timed_out(&self, kind: EventKind) {
        *self.timeouts.lock().unwrap_or_else(PoisonError::into_inner).entry(kind).or_default() += 1;
    }

    fn killed(&self, reason: KillReason) {
        self.kills[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Runs by event kind and outcome.
    pub(crate) fn runs(&self) -> BTreeMap<(EventKind, RunOutcome), RunTotals> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Runs stopped at their timeout or their query's deadline, by event kind.
    pub(crate) fn timeouts(&self) -> BTreeMap<EventKind, u64> {
        self.timeouts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Process groups killed (at least one process signalled) for `reason`.
    pub(crate) fn kills(&self, reason: KillReason) -> u64 {
        self.kills[reason as usize].load(Ordering::Relaxed)
    }

    /// Jobs dropped because a queue was full (or a query's deadline passed before a slot was free).
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

/// How many handlers run at once and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandlerLimits {
    /// Handlers running at once (`-handler-concurrency`); queries have one more slot of their own.
    pub(crate) concurrency: usize,
    /// Longest run (`-handler-timeout`); `None`: no limit (a query handler still ends at the
    /// query's deadline).
    pub(crate) timeout: Option<Duration>,
}

impl Default for HandlerLimits {
    fn default() -> Self {
        Self { concurrency: 4, timeout: Some(DEFAULT_HANDLER_TIMEOUT) }
    }
}

struct Job {
    script: String,
    event: Arc<HandlerEvent>,
}

/// The process groups of the handlers running now, and whether new ones may start.
#[derive(Debug, Default)]
struct LiveGroups {
    stopped: bool,
    groups: BTreeSet<i32>,
}

type SharedGroups = Arc<Mutex<LiveGroups>>;

fn lock(groups: &SharedGroups) -> std::sync::MutexGuard<'_, LiveGroups> {
    groups.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What every run needs.
struct RunContext {
    stats: Arc<HandlerStats>,
    groups: SharedGroups,
    timeout: Option<Duration>,
    whoami: SelfSource,
}

impl RunContext {
    /// Run `job` in a task of its own, holding `slot` until it ends.
    fn start(self: &Arc<Self>, job: Job, slot: OwnedSemaphorePermit) {
        self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        let me = (self.whoami)();
        let context = Arc::clone(self);
        tokio::spawn(async move {
            context.stats.running.fetch_add(1, Ordering::Relaxed);
            run(&job, &me, &context).await;
            context.stats.running.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// Runs handlers for events without ever making the caller wait. Clone it freely.
#[derive(Clone)]
pub(crate) struct HandlerRunner {
    events: mpsc::Sender<Job>,
    queries: mpsc::Sender<Job>,
    specs: Arc<RwLock<Arc<Vec<HandlerSpec>>>>,
    stats: Arc<HandlerStats>,
    groups: SharedGroups,
}

impl fmt::Debug for HandlerRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerRunner").field("specs", &self.specs()).finish_non_exhaustive()
    }
}

impl HandlerRunner {
    /// Start the dispatcher tasks: at most `limits.concurrency` handlers run at a time, plus one
    /// query handler in the reserved slot.
    pub(crate) fn start(specs: Vec<HandlerSpec>, limits: HandlerLimits, whoami: SelfSource) -> Self {
        let (events, event_jobs) = mpsc::channel::<Job>(QUEUE_LEN);
        let (queries, query_jobs) = mpsc::channel::<Job>(QUEUE_LEN);
        let stats = Arc::new(HandlerStats::default());
        let groups = SharedGroups::default();
        let context = Arc::new(RunContext {
            stats: Arc::clone(&stats),
            groups: Arc::clone(&groups),
            timeout: limits.timeout,
            whoami,
        });
        let slots = Arc::new(Semaphore::new(limits.concurrency.max(1)));
        let reserved = Arc::new(Semaphore::new(RESERVED_QUERY_SLOTS));
        tokio::spawn(dispatch_events(event_jobs, Arc::clone(&slots), Arc::clone(&context)));
        tokio::spawn(dispatch_queries(query_jobs, slots, reserved, context));
        Self { events, queries, specs: Arc::new(RwLock::new(Arc::new(specs))), stats, groups }
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
        let queue = if event.kind() == EventKind::Query { &self.queries } else { &self.events };
        let mut queued = 0;
        for spec in self.specs().iter().filter(|spec| spec.filter.matches(event.kind(), event.name())) {
            let job = Job { script: spec.script.clone(), event: Arc::clone(&event) };
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
            match queue.try_send(job) {
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

    /// The agent stops: start no more handlers, and kill the process groups of those running
    /// (SIGTERM, then SIGKILL to those still there after [`KILL_GRACE`]). Returns within about
    /// the grace.
    pub(crate) async fn stop(&self) {
        let running: Vec<i32> = {
            let mut live = lock(&self.groups);
            live.stopped = true;
            live.groups.iter().copied().collect()
        };
        if running.is_empty() {
            return;
        }
        tracing::info!(count = running.len(), "agent stopping: killing the event handlers still running");
        for &id in &running {
            if signal_group(id, GroupSignal::Terminate) {
                self.stats.killed(KillReason::Shutdown);
            }
        }
        let deadline = tokio::time::Instant::now() + KILL_GRACE;
        while !lock(&self.groups).groups.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(GROUP_POLL).await;
        }
        let left: Vec<i32> = lock(&self.groups).groups.iter().copied().collect();
        for id in left {
            tracing::warn!(pgid = id, "event handler still running after SIGTERM; SIGKILL");
            signal_group(id, GroupSignal::Kill);
        }
    }
}

/// Start event handlers as slots free up, in order.
async fn dispatch_events(mut jobs: mpsc::Receiver<Job>, slots: Arc<Semaphore>, context: Arc<RunContext>) {
    while let Some(job) = jobs.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
        context.start(job, slot);
    }
}

/// Start query handlers in the reserved slot, or in a shared one when that is free first, so
/// that event handlers that hang cannot keep queries from running.
async fn dispatch_queries(
    mut jobs: mpsc::Receiver<Job>,
    slots: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
    context: Arc<RunContext>,
) {
    while let Some(job) = jobs.recv().await {
        let slot = match Arc::clone(&reserved).try_acquire_owned() {
            Ok(slot) => Ok(slot),
            Err(_) => tokio::select! {
                slot = Arc::clone(&reserved).acquire_owned() => slot,
                slot = Arc::clone(&slots).acquire_owned() => slot,
            },
        };
        let Ok(slot) = slot else { break };
        context.start(job, slot);
    }
}

/// Run one handler to its end, its timeout or its query's deadline.
async fn run(job: &Job, me: &SelfInfo, context: &RunContext) {
    let event = &*job.event;
    let kind = event.kind();
    let stats = &*context.stats;
    let started = Instant::now();
    let now = tokio::time::Instant::now();
    let mut ends_at = context.timeout.map(|timeout| now + timeout);
    if let HandlerEvent::Query { deadline, .. } = event {
        let lead = (deadline.saturating_duration_since(now) / 10).min(ANSWER_LEAD_MAX);
        let answer_at = *deadline - lead;
        if answer_at <= now {
            tracing::warn!(event = %kind, script = %job.script, "query deadline passed before a handler slot was free; not run");
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        ends_at = Some(ends_at.map_or(answer_at, |at| at.min(answer_at)));
    }
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&job.script)
        .envs(environment(event, me))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let (mut child, mut group) = match TrackedGroup::spawn(&mut command, &context.groups) {
        Ok(Some(spawned)) => spawned,
        Ok(None) => {
            tracing::debug!(event = %kind, script = %job.script, "agent stopping; event handler not started");
            return;
        }
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
    let (stdout, mut stdout_reader) = CapturedOutput::read(child.stdout.take(), OUTPUT_LIMIT);
    let (stderr, mut stderr_reader) = CapturedOutput::read(child.stderr.take(), OUTPUT_LIMIT);

    let slow = tokio::time::sleep(SLOW_AFTER);
    tokio::pin!(slow);
    let mut warned = false;
    let exit = loop {
        tokio::select! {
            status = child.wait() => break Some(status.ok()),
            () = &mut slow, if !warned => {
                warned = true;
                tracing::warn!(event = %kind, script = %job.script, after = ?SLOW_AFTER, "event handler is slow");
            }
            () = sleep_until_or_forever(ends_at) => break None,
        }
    };
    match exit {
        Some(status) => {
            // The shell is gone; what it wrote is in the pipes. Read it, but do not wait for an
            // end-of-file that a process it left behind may hold off.
            let _ = tokio::time::timeout(DRAIN_BOUND, async {
                let _ = (&mut stdout_reader).await;
                let _ = (&mut stderr_reader).await;
            })
            .await;
            let output = stdout.take();
            let errors = stderr.take();
            let succeeded = status.is_some_and(|status| status.success());
            if succeeded && !output.is_empty() {
                reply(event, &output);
            }
            if group.end(&mut child).await {
                stats.killed(KillReason::Leftover);
                tracing::info!(event = %kind, script = %job.script, "killed the processes the event handler left running (detach them with setsid to keep them)");
            }
            let took = started.elapsed();
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
        }
        None => {
            // A query is answered with what the handler printed so far, before it is killed.
            let output = stdout.take();
            let answered = !output.is_empty() && reply(event, &output);
            let limit =
                if matches!(event, HandlerEvent::Query { .. }) { "the query's deadline" } else { "its timeout" };
            tracing::warn!(event = %kind, script = %job.script, took = ?started.elapsed(), answered, "event handler still running at {limit}; killing its process group");
            stats.timed_out(kind);
            if group.end(&mut child).await {
                stats.killed(KillReason::Timeout);
            }
            stats.record(kind, RunOutcome::TimedOut, started.elapsed());
        }
    }
    writer.abort();
    stdout_reader.abort();
    stderr_reader.abort();
}

/// Hand `output` to a query's reply slot, if this is a query not answered yet.
fn reply(event: &HandlerEvent, output: &[u8]) -> bool {
    let HandlerEvent::Query { reply, .. } = event else { return false };
    let sender = reply.lock().unwrap_or_else(PoisonError::into_inner).take();
    sender.is_some_and(|sender| sender.send(Bytes::copy_from_slice(output)).is_ok())
}

async fn sleep_until_or_forever(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The process group of one handler run ([`leader_failover::script::ProcessGroup`]), registered
/// in the runner's live groups while the run lasts, so that [`HandlerRunner::stop`] finds it;
/// killed with SIGKILL if dropped before [`TrackedGroup::end`] (the run's task dropped when the
/// runtime shuts down).
struct TrackedGroup {
    group: ProcessGroup,
    id: i32,
    groups: SharedGroups,
}

impl TrackedGroup {
    /// Spawn `command` (set up with `process_group(0)`) and register its group; `None` once the
    /// runner is stopped. Under the lock, so that a stop either sees the group or prevents it.
    fn spawn(command: &mut Command, groups: &SharedGroups) -> std::io::Result<Option<(Child, Self)>> {
        let mut live = lock(groups);
        if live.stopped {
            return Ok(None);
        }
        let child = command.spawn()?;
        let group = ProcessGroup::of(&child);
        let id = group.id().unwrap_or(0);
        live.groups.insert(id);
        Ok(Some((child, Self { group, id, groups: Arc::clone(groups) })))
    }

    /// End the group (SIGTERM, SIGKILL after [`KILL_GRACE`]) and reap the shell; whether any
    /// process was still there to signal.
    async fn end(&mut self, child: &mut Child) -> bool {
        let signalled = self.group.end(child, KILL_GRACE).await;
        lock(&self.groups).groups.remove(&self.id);
        signalled
    }
}

impl Drop for TrackedGroup {
    fn drop(&mut self) {
        // The inner group kills what is left, if the run did not end it.
        lock(&self.groups).groups.remove(&self.id);
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

    fn limits(concurrency: usize) -> HandlerLimits {
        HandlerLimits { concurrency, ..HandlerLimits::default() }
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
        let runner = HandlerRunner::start(vec![HandlerSpec::parse(&script).unwrap()], limits(2), me());
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
            limits(2),
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
        let runner =
            HandlerRunner::start(vec![HandlerSpec::parse("query=sleep 30; echo late").unwrap()], limits(1), me());
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
        let runner = HandlerRunner::start(vec![HandlerSpec::parse("exit 3").unwrap()], limits(1), me());
        runner.dispatch(HandlerEvent::User { name: "x".into(), ltime: 1, payload: Bytes::new() });
        let stats = runner.stats();
        wait_for(|| stats.runs().contains_key(&(EventKind::User, RunOutcome::Failed))).await;
        runner.replace(vec![]);
        assert_eq!(runner.dispatch(HandlerEvent::User { name: "x".into(), ltime: 2, payload: Bytes::new() }), 0);
    }

    /// Whether process `pid` runs (a zombie does not count).
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
            .unwrap_or(false)
    }

    fn query(name: &str, within: Duration) -> (HandlerEvent, oneshot::Receiver<Bytes>) {
        let (sender, receiver) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + within;
        let reply = Arc::new(Mutex::new(Some(sender)));
        (HandlerEvent::Query { name: name.into(), ltime: 1, payload: Bytes::new(), deadline, reply }, receiver)
    }

    #[tokio::test]
    async fn a_background_child_does_not_hold_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("query=echo answer; sleep 60 & echo $! > {}", pid_file.display());
        let runner = HandlerRunner::start(vec![HandlerSpec::parse(&script).unwrap()], limits(1), me());
        let (event, receiver) = query("q", Duration::from_secs(30));
        let asked = Instant::now();
        runner.dispatch(event);
        let answer = tokio::time::timeout(Duration::from_secs(10), receiver).await.unwrap().unwrap();
        assert_eq!(&answer[..], b"answer\n");
        assert!(asked.elapsed() < Duration::from_secs(5), "answered after {:?}", asked.elapsed());
        // What it left running is killed.
        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
        wait_for(|| !alive(&pid)).await;
        let stats = runner.stats();
        wait_for(|| stats.kills(KillReason::Leftover) == 1).await;
    }

    #[tokio::test]
    async fn a_handler_past_its_timeout_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 60 & echo $! > {0}.tmp; mv {0}.tmp {0}; wait", pid_file.display());
        let limits = HandlerLimits { concurrency: 1, timeout: Some(Duration::from_millis(300)) };
        let runner = HandlerRunner::start(vec![HandlerSpec::parse(&script).unwrap()], limits, me());
        runner.dispatch(HandlerEvent::User { name: "x".into(), ltime: 1, payload: Bytes::new() });
        wait_for(|| pid_file.exists()).await;
        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
        let stats = runner.stats();
        wait_for(|| stats.runs().contains_key(&(EventKind::User, RunOutcome::TimedOut))).await;
        assert_eq!(stats.timeouts().get(&EventKind::User), Some(&1));
        assert_eq!(stats.kills(KillReason::Timeout), 1);
        wait_for(|| !alive(&pid)).await;
    }

    #[tokio::test]
    async fn queries_run_while_event_handlers_hang_and_stop_kills_them() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let hang = format!("user=echo $$ > {0}.tmp; mv {0}.tmp {0}; sleep 60", pid_file.display());
        let specs = vec![HandlerSpec::parse(&hang).unwrap(), HandlerSpec::parse("query=echo pong").unwrap()];
        let runner = HandlerRunner::start(specs, limits(1), me());
        runner.dispatch(HandlerEvent::User { name: "x".into(), ltime: 1, payload: Bytes::new() });
        let stats = runner.stats();
        wait_for(|| pid_file.exists() && stats.running() == 1).await;
        let (event, receiver) = query("q", Duration::from_secs(30));
        runner.dispatch(event);
        let answer = tokio::time::timeout(Duration::from_secs(10), receiver).await.unwrap().unwrap();
        assert_eq!(&answer[..], b"pong\n");

        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
        runner.stop().await;
        wait_for(|| !alive(&pid)).await;
        assert_eq!(stats.kills(KillReason::Shutdown), 1);
        // Nothing starts after a stop.
        assert_eq!(runner.dispatch(HandlerEvent::User { name: "x".into(), ltime: 2, payload: Bytes::new() }), 1);
        wait_for(|| stats.queued() == 0 && stats.running() == 0).await;
        assert!(!stats.runs().contains_key(&(EventKind::User, RunOutcome::Succeeded)));
    }
}
