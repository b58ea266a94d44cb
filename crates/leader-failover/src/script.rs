//! Running a script as one unit: its own process group, ended whole, and its output read
//! without waiting for pipes that a process it left behind may hold. The role hooks use it, and
//! so do serf-agent's event handlers.
//!
//! ```text
//!  Command::process_group(0) ─► spawn ─► ProcessGroup::of(&child)   (its id is the shell's PID)
//!                                   └──► CapturedOutput::read(stdout / stderr)  (reader tasks)
//!  the shell exits, or a timeout ─► ProcessGroup::end(child, grace): SIGTERM to the group,
//!                                   SIGKILL to what is left after `grace`; reaps the shell
//!  dropped before end (the runtime stops) ─► SIGKILL to the group
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Child;
use tokio::task::JoinHandle;

/// How often [`ProcessGroup::end`] looks whether the group is gone.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// A signal for a whole process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSignal {
    /// SIGTERM: please stop.
    Terminate,
    /// SIGKILL: stop now.
    Kill,
}

impl GroupSignal {
    const fn raw(self) -> Signal {
        match self {
            Self::Terminate => Signal::TERM,
            Self::Kill => Signal::KILL,
        }
    }
}

/// Sends `signal` to every process of group `id`; whether at least one got it. Ids 0 and 1 are
/// refused (`kill(0)` is the caller's own group, `kill(-1)` every process it may signal).
pub fn signal_group(id: i32, signal: GroupSignal) -> bool {
    group_pid(id).is_some_and(|pid| rustix::process::kill_process_group(pid, signal.raw()).is_ok())
}

fn group_pid(id: i32) -> Option<Pid> {
    Pid::from_raw(id).filter(|_| id > 1)
}

/// The process group a script leads (spawned with `process_group(0)`, so the group's id is the
/// shell's PID). Ended whole by [`ProcessGroup::end`], or with SIGKILL when dropped before that
/// (the task running the script was dropped: the runtime is stopping).
#[derive(Debug)]
pub struct ProcessGroup {
    id: Option<Pid>,
}

impl ProcessGroup {
    /// The group `child` leads; `child` must have been spawned with `process_group(0)`.
    pub fn of(child: &Child) -> Self {
        Self { id: child.id().and_then(|id| i32::try_from(id).ok()).and_then(group_pid) }
    }

    /// The group's id, while it has not been ended.
    pub fn id(&self) -> Option<i32> {
        self.id.map(Pid::as_raw_nonzero).map(std::num::NonZeroI32::get)
    }

    /// Sends `signal` to the whole group; whether at least one process got it.
    pub fn signal(&self, signal: GroupSignal) -> bool {
        self.id().is_some_and(|id| signal_group(id, signal))
    }

    /// Whether no process of the group is left (zombies count until reaped).
    pub fn is_gone(&self) -> bool {
        self.id.is_none_or(|pid| rustix::process::test_kill_process_group(pid).is_err())
    }

    /// Reaps the members of the group that became this process's children: only when it is
    /// PID 1 (a container) or a subreaper do the processes a script left behind come to it, and
    /// then nobody else reaps them. The shell itself is reaped by tokio.
    fn reap_orphans(&self) {
        if let Some(pid) = self.id {
            while let Ok(Some(_)) = rustix::process::waitpgid(pid, rustix::process::WaitOptions::NOHANG) {}
        }
    }

    /// Ends the group: SIGTERM to all of it, then SIGKILL to whatever is left after `grace`;
    /// reaps the shell (`child`). Returns whether any process was still there to signal. Takes
    /// about `grace` at most when something ignores SIGTERM (twice that for a process stuck in
    /// the kernel, which even SIGKILL does not end at once).
    pub async fn end(&mut self, child: &mut Child, grace: Duration) -> bool {
        let signalled = self.signal(GroupSignal::Terminate);
        if signalled {
            let deadline = tokio::time::Instant::now() + grace;
            let _ = tokio::time::timeout_at(deadline, child.wait()).await;
            loop {
                self.reap_orphans();
                if self.is_gone() || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(GROUP_POLL).await;
            }
            if !self.is_gone() {
                self.signal(GroupSignal::Kill);
                let _ = tokio::time::timeout(grace, child.wait()).await;
                self.reap_orphans();
            }
        }
        self.id = None;
        signalled
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal(GroupSignal::Kill);
    }
}

/// What a script wrote to one pipe so far (at most a limit), filled by a reader task as the
/// output comes.
#[derive(Debug, Clone, Default)]
pub struct CapturedOutput(Arc<Mutex<Vec<u8>>>);

impl CapturedOutput {
    /// Reads `pipe` to its end in a task, keeping the first `limit` bytes; the rest is read and
    /// dropped, so that the script never blocks on a full pipe. Abort the task (or let it end)
    /// once the output is taken: a process the script left behind may hold the pipe open.
    pub fn read(pipe: Option<impl AsyncRead + Unpin + Send + 'static>, limit: usize) -> (Self, JoinHandle<()>) {
        let captured = Self::default();
        let kept = captured.clone();
        let reader = tokio::spawn(async move {
            let Some(mut pipe) = pipe else { return };
            let mut buffer = [0u8; 4096];
            while let Ok(read @ 1..) = pipe.read(&mut buffer).await {
                let mut kept = kept.0.lock().unwrap_or_else(PoisonError::into_inner);
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..read.min(room)]);
            }
        });
        (captured, reader)
    }

    /// The bytes read so far (taken: a second call returns what came since).
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
