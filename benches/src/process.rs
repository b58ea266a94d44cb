//! Processes the harness starts, killed by PID when dropped, and what `/proc` says about them.
//!
//! Every agent runs as an [`Agent`]: dropping it sends `SIGCONT` (a stopped process cannot die
//! until it runs) and `SIGKILL` to its PID and reaps it, so no agent outlives the harness, even
//! on an error or a panic. Nothing is ever killed by name.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// PIDs of the agents started and not yet reaped, for [`on_stop_signal`].
static RUNNING: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn running() -> std::sync::MutexGuard<'static, BTreeSet<u32>> {
    RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn stop_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset reads it; both only touch `set`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in STOP_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Call first in `main`, before any thread starts: SIGINT, SIGTERM and SIGHUP no longer end the
/// harness abruptly; a thread waits for them, kills every agent still running (by PID), runs
/// `cleanup` (network set-up) and exits with 128 + the signal. Agents start with the signals
/// unblocked again, so that SIGINT still makes them leave.
pub fn on_stop_signal(cleanup: fn()) {
    let set = stop_signal_set();
    // SAFETY: blocks signals for this thread (and the threads it will start); `set` is valid.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` and `sig` are valid for the call.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        eprintln!("\ncluster-bench: signal {sig}: killing the agents it started and removing its network set-up");
        for pid in running().iter() {
            let _ = send_group_signal(*pid, Signal::Cont);
            let _ = send_group_signal(*pid, Signal::Kill);
        }
        cleanup();
        std::process::exit(128 + sig);
    });
}

/// A signal the harness sends to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A crash: the process ends at once, with no goodbye.
    Kill,
    /// A stall: the process stops running (as a long GC pause or a frozen VM).
    Stop,
    /// The end of a stall.
    Cont,
    /// A graceful leave (both Serf and serf-agent leave the cluster on SIGINT).
    Interrupt,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Self::Kill => libc::SIGKILL,
            Self::Stop => libc::SIGSTOP,
            Self::Cont => libc::SIGCONT,
            Self::Interrupt => libc::SIGINT,
        }
    }
}

/// Send `signal` to the process `pid`.
pub fn send_signal(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) with a PID the harness spawned and a valid signal number; no memory is
    // shared with the call.
    let rc = unsafe { libc::kill(pid, signal.number()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Send `signal` to every process of the process group `pgid` (an agent and its handlers: each
/// agent leads a group of its own).
pub fn send_group_signal(pgid: u32, signal: Signal) -> std::io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| std::io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) on a process group the harness created (led by a child it spawned); no
    // memory is shared with the call.
    let rc = unsafe { libc::kill(-pgid, signal.number()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A running agent process, killed (by PID) and reaped when dropped.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    log: PathBuf,
    exited: bool,
}

impl Agent {
    /// Start `program args` with stdout and stderr appended to `log`.
    pub fn spawn(program: &Path, args: &[String], log: &Path) -> anyhow::Result<Self> {
        Self::spawn_in(None, program, args, log)
    }

    /// As [`Agent::spawn`], inside the network namespace `netns` when given (through
    /// `ip netns exec`, which execs the program: the PID is the agent's).
    pub fn spawn_in(netns: Option<&str>, program: &Path, args: &[String], log: &Path) -> anyhow::Result<Self> {
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        // SAFETY: only async-signal-safe calls between fork and exec: reset the signal mask
        // inherited from the harness (see `on_stop_signal`).
        unsafe {
            command.pre_exec(|| {
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                // A process group of its own, led by the agent: its event handlers (children
                // that outlive it when it is killed) are stopped with it (see `Agent::kill`).
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", program.display()))?;
        running().insert(child.id());
        Ok(Self { child, log: log.to_owned(), exited: false })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file (stdout and stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Send a signal (nothing happens if the process has already been reaped).
    pub fn signal(&mut self, signal: Signal) -> std::io::Result<()> {
        if self.exited {
            return Ok(());
        }
        send_signal(self.pid(), signal)
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        if !self.exited {
            self.exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if self.exited {
                running().remove(&self.child.id());
            }
        }
        self.exited
    }

    /// Wait up to `timeout` for the process to exit by itself; `true` if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.has_exited() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.has_exited()
    }

    /// SIGKILL and reap (bounded: a killed process is reaped within milliseconds).
    ///
    /// The whole process group the agent leads goes with it: event handlers it started and
    /// that are still running would otherwise outlive it and take CPU from whatever the harness
    /// measures next (HashiCorp Serf runs its handlers a second after a member change, so a
    /// cluster torn down right after its setup left 50 handlers, each running `serf members`,
    /// in the next cluster's setup). The group's ID is the agent's PID, which the harness
    /// started; a group is not signalled once the agent has been reaped (it may have emptied).
    pub fn kill(&mut self) {
        if self.exited {
            return;
        }
        let _ = send_group_signal(self.pid(), Signal::Cont);
        let _ = send_group_signal(self.pid(), Signal::Kill);
        let _ = self.wait_exit(Duration::from_secs(5));
    }

    /// Resident memory now, from `/proc/PID/status`.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.pid())
    }

    /// Anonymous resident memory now (see [`rss_anon_bytes`]).
    pub fn rss_anon_bytes(&self) -> Option<u64> {
        rss_anon_bytes(self.pid())
    }

    /// CPU time used so far by its threads (see [`cpu_time`]).
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.pid())
    }

    /// The last `lines` lines of the log, to show why an agent failed.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `VmRSS` of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:").map(|kb| kb * 1024)
}

/// `RssAnon` of a process (heap, stacks: what the program allocated, without the mapped
/// binary and libraries), in bytes.
pub fn rss_anon_bytes(pid: u32) -> Option<u64> {
    status_kib(pid, "RssAnon:").map(|kb| kb * 1024)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of a process: the sum over its threads of `/proc/PID/task/TID/schedstat` (time on
/// a CPU, nanoseconds), which is precise where `/proc/PID/stat` counts 10 ms clock ticks; falls
/// back to the ticks when schedstat is not available.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    let mut threads = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else { continue };
        if let Some(ns) = text.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()) {
            total += ns;
            threads += 1;
        }
    }
    if threads > 0 {
        Some(Duration::from_nanos(total))
    } else {
        cpu_ticks(pid)
    }
}

/// User + system CPU time of a process from `/proc/PID/stat` (clock-tick resolution).
pub fn cpu_ticks(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are utime and stime; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100);
    Some(Duration::from_secs_f64((utime + stime) as f64 / ticks as f64))
}

/// Whether the harness runs as root (needed for iptables loss and accounting, and namespaces).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A directory for one run's state (logs, handler output, snapshots), removed when dropped
/// unless kept.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl RunDir {
    /// A fresh directory `cluster-bench-<pid>-<tag>` under the system's temporary directory.
    pub fn new(tag: &str, keep: bool) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("cluster-bench-{}-{tag}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(Self { path, keep })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_agent_is_killed_and_proc_is_read() {
        let dir = RunDir::new("process-test", false).unwrap();
        let log = dir.path().join("sleep.log");
        let mut agent = Agent::spawn(Path::new("sleep"), &["30".into()], &log).unwrap();
        let pid = agent.pid();
        assert!(rss_bytes(pid).is_some_and(|r| r > 0));
        assert!(cpu_time(pid).is_some());
        agent.signal(Signal::Stop).unwrap();
        assert!(!agent.has_exited());
        drop(agent);
        assert!(rss_bytes(pid).is_none(), "process {pid} still exists");
    }

    #[test]
    fn killing_an_agent_stops_the_children_it_started() {
        let dir = RunDir::new("process-group-test", false).unwrap();
        let log = dir.path().join("sh.log");
        let pid_file = dir.path().join("child.pid");
        // An "agent" that starts a long-running child (as a handler would) and waits for it.
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let agent = Agent::spawn(Path::new("/bin/sh"), &["-c".into(), script], &log).unwrap();
        let child = poll(|| std::fs::read_to_string(&pid_file).ok()?.trim().parse::<u32>().ok());
        assert!(rss_bytes(child).is_some(), "the child {child} did not start");
        drop(agent);
        // The child is killed with the group; once dead it is reaped by init, so /proc goes too.
        let gone = (0..250).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            // Gone from /proc, or a zombie waiting for init.
            std::fs::read_to_string(format!("/proc/{child}/stat")).map_or(true, |s| s.contains(") Z "))
        });
        assert!(gone, "the child {child} outlived its killed parent");
    }

    fn poll<T>(mut f: impl FnMut() -> Option<T>) -> T {
        for _ in 0..250 {
            if let Some(v) = f() {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out");
    }
}
