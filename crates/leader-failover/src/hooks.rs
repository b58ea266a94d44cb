//! Role-change hooks: the `acquire` and `release` scripts.

use std::fmt;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::script::{CapturedOutput, ProcessGroup};
use crate::{Role, RoleChange};

/// How long a hook may run before it is killed, unless told otherwise.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Captured stdout and stderr are cut to this many bytes each.
const MAX_CAPTURED_OUTPUT: usize = 64 * 1024;
/// Between SIGTERM and SIGKILL to a script's process group.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// After the shell exits, how long its output may still take to be read (a process it left
/// running may hold the pipes open; end-of-file is not waited for beyond this).
const DRAIN_BOUND: Duration = Duration::from_millis(100);

/// Scripts run on a change of the local role, each through `/bin/sh -c`.
///
/// The environment of the script (each variable also with a `SERF_` prefix, e.g.
/// `SERF_PRIMARY_NODE`, for scripts written for Serf-based setups):
///
/// | variable           | value                                                               |
/// |--------------------|---------------------------------------------------------------------|
/// | `PRIMARY_NODE`     | this node's name                                                    |
/// | `PRIMARY_ADDR`     | this node's address, `ip:port`                                      |
/// | `PRIMARY_IP`       | this node's IP address                                              |
/// | `PREVIOUS_PRIMARY` | [`RoleChange::previous_primary`], empty if none                     |
/// | `NEW_PRIMARY`      | [`RoleChange::primary`], the primary after the change, empty if none |
/// | `ROLE_FROM`        | the role before: `primary`, `standby` or `ineligible`               |
/// | `ROLE_TO`          | the role after                                                      |
/// | `ROLE_HOOK`        | `acquire` or `release`                                              |
/// | `FENCING_TOKEN`    | [`RoleChange::fencing_token`]: the lock's fencing token (lock-based election), empty if none |
///
/// Stdin is empty; stdout and stderr are captured and logged with `tracing` when the script ends.
///
/// Each script runs in its own process group. At the timeout the whole group gets SIGTERM, and
/// SIGKILL one second later if anything is left; when the shell exits, whatever it left running
/// in the group is ended the same way (a process meant to outlive the hook must leave the group,
/// e.g. with `setsid`), and its output is taken without waiting for the end of the pipes that
/// such a process may hold. If the future running a hook is dropped (the runtime shuts down),
/// its group gets SIGKILL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Runs when this node becomes primary (e.g. add the virtual IP, start the service).
    pub acquire: Option<String>,
    /// Runs when this node stops being primary: step-down, or graceful shutdown after
    /// [`Election::resign`](crate::Election::resign).
    pub release: Option<String>,
}

/// Which hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// Becoming primary.
    Acquire,
    /// Leaving primary.
    Release,
}

impl HookKind {
    /// `acquire` or `release`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Acquire => "acquire",
            Self::Release => "release",
        }
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hook that ran to completion with success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutcome {
    /// Which hook ran.
    pub kind: HookKind,
    /// Its exit status (success).
    pub status: ExitStatus,
    /// Captured stdout (lossy UTF-8, at most 64 KiB).
    pub stdout: String,
    /// Captured stderr (lossy UTF-8, at most 64 KiB).
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// A hook that could not run or did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// `/bin/sh` could not be started.
    #[error("{kind} hook: cannot start /bin/sh: {source}")]
    Spawn {
        /// Which hook.
        kind: HookKind,
        /// The error.
        source: std::io::Error,
    },
    /// Waiting for the script or reading its output failed.
    #[error("{kind} hook: waiting for the script failed: {source}")]
    Wait {
        /// Which hook.
        kind: HookKind,
        /// The error.
        source: std::io::Error,
    },
    /// The script ran longer than the timeout and was killed.
    #[error("{kind} hook: killed after the timeout of {after:?}")]
    TimedOut {
        /// Which hook.
        kind: HookKind,
        /// The timeout.
        after: Duration,
    },
    /// The script exited with a failure status.
    #[error("{kind} hook: exited with {status}: {stderr}")]
    Failed {
        /// Which hook.
        kind: HookKind,
        /// The exit status.
        status: ExitStatus,
        /// Captured stdout.
        stdout: String,
        /// Captured stderr.
        stderr: String,
    },
    /// The [`HookRunner`] stopped (its runtime shut down) before the hook ran.
    #[error("hook runner stopped before the hook ran")]
    RunnerStopped,
}

impl Hooks {
    /// The hook a change calls for, if it is configured: `acquire` on becoming primary, `release`
    /// on leaving primary, nothing otherwise.
    pub fn script_for(&self, change: &RoleChange) -> Option<(HookKind, &str)> {
        let kind = hook_kind(change)?;
        let script = match kind {
            HookKind::Acquire => self.acquire.as_deref(),
            HookKind::Release => self.release.as_deref(),
        }?;
        Some((kind, script))
    }

    /// The environment a hook runs with (see the type docs), `SERF_` copies included.
    pub fn env(kind: HookKind, change: &RoleChange, node: &str, addr: SocketAddr) -> Vec<(String, String)> {
        let vars = [
            ("PRIMARY_NODE", node.to_owned()),
            ("PRIMARY_ADDR", addr.to_string()),
            ("PRIMARY_IP", addr.ip().to_string()),
            ("PREVIOUS_PRIMARY", change.previous_primary.clone().unwrap_or_default()),
            ("NEW_PRIMARY", change.primary.clone().unwrap_or_default()),
            ("ROLE_FROM", change.from.to_string()),
            ("ROLE_TO", change.to.to_string()),
            ("ROLE_HOOK", kind.to_string()),
            ("FENCING_TOKEN", change.fencing_token.map(|token| token.to_string()).unwrap_or_default()),
        ];
        let serf = vars.iter().map(|(k, v)| (format!("SERF_{k}"), v.clone()));
        vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).chain(serf).collect()
    }

    /// Runs the hook for `change` (see [`script_for`](Self::script_for)) with
    /// [`DEFAULT_HOOK_TIMEOUT`] and waits for it. `Ok(None)` when no hook applies.
    ///
    /// This waits for the script: a driver loop should use a [`HookRunner`] instead.
    pub async fn run(
        &self,
        change: &RoleChange,
        node: &str,
        addr: SocketAddr,
    ) -> Result<Option<HookOutcome>, HookError> {
        self.run_with_timeout(change, node, addr, DEFAULT_HOOK_TIMEOUT).await
    }

    /// As [`run`](Self::run), killing the script after `timeout`.
    pub async fn run_with_timeout(
        &self,
        change: &RoleChange,
        node: &str,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Option<HookOutcome>, HookError> {
        let Some((kind, script)) = self.script_for(change) else {
            return Ok(None);
        };
        let started = Instant::now();
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .envs(Self::env(kind, change, node, addr))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that the script is killed with everything it started.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HookError::Spawn { kind, source })?;
        // If this future is dropped (the runtime shuts down), the guard kills the whole group.
        let mut group = ProcessGroup::of(&child);
        tracing::info!(hook = %kind, node, from = %change.from, to = %change.to, "role hook started");
        let (stdout_text, mut stdout_reader) = CapturedOutput::read(child.stdout.take(), MAX_CAPTURED_OUTPUT);
        let (stderr_text, mut stderr_reader) = CapturedOutput::read(child.stderr.take(), MAX_CAPTURED_OUTPUT);
        let waited = tokio::time::timeout(timeout, child.wait()).await;
        let status = match waited {
            Ok(Ok(status)) => status,
            Ok(Err(source)) => {
                tracing::warn!(hook = %kind, node, error = %source, "role hook: waiting failed");
                group.end(&mut child, KILL_GRACE).await;
                return Err(HookError::Wait { kind, source });
            }
            Err(_) => {
                tracing::warn!(hook = %kind, node, timeout_ms = timeout.as_millis(), "role hook killed after timeout, with its process group");
                group.end(&mut child, KILL_GRACE).await;
                stdout_reader.abort();
                stderr_reader.abort();
                return Err(HookError::TimedOut { kind, after: timeout });
            }
        };
        // The shell is gone; read what it wrote, without waiting for an end-of-file that a
        // process it left running may hold off. Then that process is killed.
        let _ = tokio::time::timeout(DRAIN_BOUND, async {
            let _ = (&mut stdout_reader).await;
            let _ = (&mut stderr_reader).await;
        })
        .await;
        let output = std::process::Output { status, stdout: stdout_text.take(), stderr: stderr_text.take() };
        if group.end(&mut child, KILL_GRACE).await {
            tracing::info!(hook = %kind, node, "killed the processes the role hook left running (detach them with setsid to keep them)");
        }
        stdout_reader.abort();
        stderr_reader.abort();
        let (stdout, stderr) = (captured(&output.stdout), captured(&output.stderr));
        let elapsed = started.elapsed();
        let elapsed_ms = elapsed.as_millis();
        if !output.status.success() {
            tracing::warn!(hook = %kind, node, status = %output.status, elapsed_ms, %stdout, %stderr, "role hook failed");
            return Err(HookError::Failed { kind, status: output.status, stdout, stderr });
        }
        tracing::info!(hook = %kind, node, status = %output.status, elapsed_ms, %stdout, %stderr, "role hook finished");
        Ok(Some(HookOutcome { kind, status: output.status, stdout, stderr, elapsed }))
    }
}

fn hook_kind(change: &RoleChange) -> Option<HookKind> {
    match (change.from == Role::Primary, change.to == Role::Primary) {
        (false, true) => Some(HookKind::Acquire),
        (true, false) => Some(HookKind::Release),
        _ => None,
    }
}

fn captured(bytes: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_CAPTURED_OUTPUT)]).into_owned();
    text.truncate(text.trim_end().len());
    text
}

type HookResult = Result<Option<HookOutcome>, HookError>;

struct HookJob {
    change: RoleChange,
    done: oneshot::Sender<HookResult>,
}

/// Runs hooks in the background, one at a time, in the order the changes were submitted, so that
/// a `release` never overtakes the `acquire` before it.
///
/// [`submit`](Self::submit) never waits; the returned [`HookTicket`] can be awaited (tests,
/// graceful shutdown) or dropped (the hook still runs).
///
/// ```no_run
/// # async fn example(change: leader_failover::RoleChange) {
/// use leader_failover::{HookRunner, Hooks};
///
/// let hooks = Hooks { acquire: Some("ip addr add 10.0.0.100/24 dev eth0".into()), release: None };
/// let runner = HookRunner::spawn(hooks, "node1", ([10, 0, 0, 1], 7946).into());
/// let ticket = runner.submit(change); // returns at once
/// let result = ticket.wait().await; // only where waiting is wanted
/// # }
/// ```
#[derive(Debug)]
pub struct HookRunner {
    jobs: mpsc::UnboundedSender<HookJob>,
    worker: JoinHandle<()>,
}

/// The pending result of a submitted hook.
#[derive(Debug)]
#[must_use = "dropping the ticket is fine, but then nobody learns how the hook went"]
pub struct HookTicket {
    done: oneshot::Receiver<HookResult>,
}

impl HookTicket {
    /// Waits until the hook has run; `Ok(None)` when no hook applied to the change.
    pub async fn wait(self) -> Result<Option<HookOutcome>, HookError> {
        self.done.await.unwrap_or(Err(HookError::RunnerStopped))
    }
}

impl HookRunner {
    /// Starts the runner for node `node` at `addr`, with [`DEFAULT_HOOK_TIMEOUT`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(hooks: Hooks, node: impl Into<String>, addr: SocketAddr) -> Self {
        Self::spawn_with_timeout(hooks, node, addr, DEFAULT_HOOK_TIMEOUT)
    }

    /// As [`spawn`](Self::spawn), killing each script after `timeout`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn_with_timeout(hooks: Hooks, node: impl Into<String>, addr: SocketAddr, timeout: Duration) -> Self {
        let node = node.into();
        let (jobs, mut queue) = mpsc::unbounded_channel::<HookJob>();
        let worker = tokio::spawn(async move {
            while let Some(job) = queue.recv().await {
                let result = hooks.run_with_timeout(&job.change, &node, addr, timeout).await;
                // The submitter may have dropped its ticket: fine.
                let _ = job.done.send(result);
            }
        });
        Self { jobs, worker }
    }

    /// Queues the hook for `change` (if one applies) and returns at once.
    pub fn submit(&self, change: RoleChange) -> HookTicket {
        let (done, ticket) = oneshot::channel();
        // If the worker is gone, the job (and its sender) is dropped: the ticket says so.
        let _ = self.jobs.send(HookJob { change, done });
        HookTicket { done: ticket }
    }

    /// Stops accepting changes and waits until every queued hook has run.
    pub async fn finish(self) {
        drop(self.jobs);
        let _ = self.worker.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquired() -> RoleChange {
        RoleChange {
            from: Role::Standby,
            to: Role::Primary,
            primary: Some("n1".into()),
            previous_primary: None,
            fencing_token: None,
        }
    }

    fn addr() -> SocketAddr {
        ([127, 0, 0, 1], 7946).into()
    }

    /// Whether process `pid` runs (a zombie does not count).
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
            .unwrap_or(false)
    }

    async fn wait_gone(pid: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(Instant::now() < deadline, "process {pid} still runs");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_background_child_does_not_hold_the_hook_and_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo done; sleep 60 & echo $! > {}", pid_file.display());
        let hooks = Hooks { acquire: Some(script), release: None };
        let started = Instant::now();
        let outcome = hooks.run(&acquired(), "n1", addr()).await.unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert_eq!(outcome.stdout, "done");
        wait_gone(std::fs::read_to_string(&pid_file).unwrap().trim()).await;
    }

    #[tokio::test]
    async fn the_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 60 & echo $! > {0}.tmp; mv {0}.tmp {0}; wait", pid_file.display());
        let hooks = Hooks { acquire: Some(script), release: None };
        let err = hooks.run_with_timeout(&acquired(), "n1", addr(), Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(err, HookError::TimedOut { .. }), "{err:?}");
        wait_gone(std::fs::read_to_string(&pid_file).unwrap().trim()).await;
    }
}
