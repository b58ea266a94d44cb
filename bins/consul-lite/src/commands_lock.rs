//! `consul-lite lock PREFIX CHILD...`, as `consul lock`: holds the lock `PREFIX/.lock` through a
//! session bound to the agent's node (`serfHealth`) with a 15 s TTL renewed every 7.5 s, runs the
//! child while it holds it, and stops the child (SIGTERM to its process group, SIGKILL 5 s later)
//! when the lock is lost. The lock is driven by the same [`LockElection`] as the agent's primary,
//! over the agent's HTTP API.
//!
//! ```text
//!  acquire (until -timeout) ─► sh -c CHILD ─┬─ child exits ─────────► release, exit with its code
//!                                           ├─ lock lost ───────────► stop the child, release, exit 1
//!                                           └─ SIGINT / SIGTERM ────► stop the child, release, exit 1
//! ```

use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use hyper::Method;
use leader_failover::script::ProcessGroup;
use leader_failover::{Election as _, LockElection, LockElectionConfig, LockEvent, Role};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::cli::LockArgs;
use crate::client::{encode_path, Client};
use crate::primary::{key_state, perform};

/// The session TTL, as `consul lock` (`api.DefaultLockSessionTTL`).
const SESSION_TTL: Duration = Duration::from_secs(15);
/// The session's lock-delay: the API's default, as `consul lock` leaves it.
const LOCK_DELAY: Duration = Duration::from_secs(15);
/// Between failed checks of the lock (`api.DefaultMonitorRetryTime`).
const MONITOR_RETRY_TIME: Duration = Duration::from_secs(2);
/// Between SIGTERM and SIGKILL to the child's process group.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Runs the command; exits the process with the child's code when it is not 0.
pub(crate) async fn run(args: LockArgs) -> anyhow::Result<()> {
    if args.limit != 1 {
        bail!("-n {}: a semaphore (-n > 1) is not implemented; only -n 1 (a lock)", args.limit);
    }
    let prefix = args.prefix.trim_matches('/');
    if prefix.is_empty() {
        bail!("Missing prefix: give the key prefix to lock (the lock is PREFIX/.lock)");
    }
    let timeout = crate::duration::parse(&args.timeout).map_err(|error| anyhow::anyhow!("-timeout: {error}"))?;
    let key = format!("{prefix}/.lock");
    // Ride out -monitor-retry failed checks, 2 s apart; always below the lock-delay, so that the
    // child is stopped before anyone else can take the lock (see leader_failover::lock).
    let step_down = (MONITOR_RETRY_TIME * (args.monitor_retry + 1)).min(LOCK_DELAY - Duration::from_secs(1));
    let config = LockElectionConfig {
        key: key.clone(),
        session_name: args.name.clone(),
        lock_delay: LOCK_DELAY,
        session_ttl: Some(SESSION_TTL),
        confirm_interval: Duration::from_secs(1).min(step_down / 2),
        step_down_after: step_down,
        retry_interval: Duration::from_millis(500),
        role_tag: "role".to_owned(),
        replace_own_stale_session: false,
    }
    .validate()
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    let client = Client::new(&args.client);
    let node = client
        .json("/v1/agent/self")
        .await
        .context("Lock setup failed")?
        .pointer("/Config/NodeName")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let verbose = |text: &str| {
        if args.verbose {
            println!("{text}");
        }
    };
    verbose(&format!("Setting up lock at path: {key}"));
    verbose("Attempting lock acquisition");
    let mut lock = LockRun::new(LockElection::new(node.clone(), config, Instant::now()), client.clone(), &key, &node);
    let mut signals = Signals::new()?;

    let give_up = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    while lock.election.role() != Role::Primary {
        tokio::select! {
            () = lock.step() => {}
            () = sleep_until(give_up) => {
                eprintln!("Shutdown triggered or timeout during lock acquisition");
                lock.release().await;
                std::process::exit(1);
            }
            () = signals.recv() => {
                eprintln!("Shutdown triggered or timeout during lock acquisition");
                lock.release().await;
                std::process::exit(1);
            }
        }
    }

    let script = args.child.join(" ");
    verbose(&format!("Starting handler '{script}'"));
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .env("CONSUL_LOCK_HELD", "true")
        .env("FENCING_TOKEN", lock.election.view().fencing_token.map(|t| t.to_string()).unwrap_or_default())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start /bin/sh -c {script:?}"))?;
    let mut group = ProcessGroup::of(&child);
    let code = loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.context("waiting for the child")?;
                verbose("Child terminated, releasing lock");
                // What the child left running in its group goes with it.
                group.end(&mut child, KILL_GRACE).await;
                break status.code().unwrap_or(1);
            }
            () = lock.step() => {
                if lock.election.role() != Role::Primary {
                    eprintln!("Lock lost, killing child");
                    group.end(&mut child, KILL_GRACE).await;
                    break 1;
                }
            }
            () = signals.recv() => {
                verbose("Shutdown triggered, killing child");
                group.end(&mut child, KILL_GRACE).await;
                break 1;
            }
        }
    };
    lock.release().await;
    verbose("Lock release and cleanup done");
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// The election, its requests in flight, and their answers.
struct LockRun {
    election: LockElection,
    client: Client,
    key: String,
    value: String,
    events_tx: mpsc::UnboundedSender<LockEvent>,
    events: mpsc::UnboundedReceiver<LockEvent>,
}

impl LockRun {
    fn new(election: LockElection, client: Client, key: &str, value: &str) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        Self { election, client, key: key.to_owned(), value: value.to_owned(), events_tx, events }
    }

    /// Sends the due requests, then waits for one answer or deadline and feeds it in.
    async fn step(&mut self) {
        while let Some(action) = self.election.poll_action() {
            let (client, key, value, tx) =
                (self.client.clone(), self.key.clone(), self.value.clone(), self.events_tx.clone());
            let confirm_timeout = self.election.config().step_down_after;
            tokio::spawn(async move {
                if let Some(event) = perform(&client, &key, &value, action, confirm_timeout).await {
                    let _ = tx.send(event);
                }
            });
        }
        let deadline = self.election.next_deadline().map(tokio::time::Instant::from_std);
        let _change = tokio::select! {
            Some(event) = self.events.recv() => self.election.handle(event, Instant::now()),
            () = sleep_until(deadline) => self.election.update(&[], Instant::now(), SystemTime::now()),
        };
    }

    /// Releases the lock and destroys the session (in order), then deletes the key if nobody
    /// holds it (Consul's cleanup).
    async fn release(&mut self) {
        let _ = self.election.resign();
        let confirm_timeout = self.election.config().step_down_after;
        while let Some(action) = self.election.poll_action() {
            let _ = perform(&self.client, &self.key, &self.value, action, confirm_timeout).await;
        }
        let path = format!("/v1/kv/{}", encode_path(&self.key));
        let Ok(answer) = self.client.send(Method::GET, &path, None).await else { return };
        if let Some(Some(key)) = key_state(&answer.status, &answer.body) {
            if key.session.is_none() {
                let cas = format!("{path}?cas={}", key.modify_index);
                let _ = self.client.send(Method::DELETE, &cas, None).await;
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

/// SIGINT and SIGTERM.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use crate::cli::normalize_args;

    fn normalized(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from);
        normalize_args(args).into_iter().map(|arg| arg.into_string().unwrap()).collect()
    }

    #[test]
    fn the_child_command_is_left_alone() {
        assert_eq!(
            normalized(&["c", "lock", "-n", "1", "-timeout", "5s", "-verbose", "svc", "ls", "-la"]),
            ["c", "lock", "-n", "1", "--timeout", "5s", "--verbose", "--", "svc", "ls", "-la"]
        );
        assert_eq!(
            normalized(&["c", "watch", "-type=key", "-key", "k", "cat", "-nu"]),
            ["c", "watch", "--type=key", "--key", "k", "--", "cat", "-nu"]
        );
        assert_eq!(normalized(&["c", "kv", "get", "-recurse", "x"]), ["c", "kv", "get", "--recurse", "x"]);
    }
}
