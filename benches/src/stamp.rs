//! Where a result came from: the command that produced it and the machine it ran on.
//!
//! Every file written to `docs/results/` carries a [`Stamp`], in JSON as an object and in
//! Markdown as a short block above the tables, so a figure can always be traced back to a run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The command and the machine of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stamp {
    /// The command line as a user would type it again.
    pub command: String,
    /// `uname -a`.
    pub uname: String,
    /// Logical CPUs (`nproc`).
    pub nproc: usize,
    /// Load average (1, 5, 15 minutes) at the start, from `/proc/loadavg`: other work on the
    /// machine makes timings noisy, and this says how busy it was.
    pub loadavg: String,
    /// Start of the run, UTC, ISO 8601.
    pub date: String,
    /// `git rev-parse --short HEAD` of the workspace, with `+dirty` when the tree has changes.
    pub commit: String,
}

impl Stamp {
    /// Stamp a run of `command` on this machine, now.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            uname: run("uname", &["-a"]).unwrap_or_else(|| "unknown".into()),
            nproc: std::thread::available_parallelism().map_or(1, usize::from),
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
            date: utc_now(),
            commit: git_commit().unwrap_or_else(|| "unknown".into()),
        }
    }

    /// The stamp as a Markdown block (a list), to put above the tables.
    pub fn markdown(&self) -> String {
        format!(
            "- command: `{}`\n- machine: `{}`, {} CPUs, load average {} at the start\n- date: {} (commit {})\n",
            self.command, self.uname, self.nproc, self.loadavg, self.date, self.commit
        )
    }
}

/// `docs/results/` of this workspace (found from this package's directory at build time).
pub fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("docs").join("results")
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn git_commit() -> Option<String> {
    let root = workspace_root();
    let root = root.to_str()?;
    let head = run("git", &["-C", root, "rev-parse", "--short", "HEAD"])?;
    let dirty =
        run("git", &["-C", root, "status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}+dirty") } else { head })
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }

    #[test]
    fn stamp_has_a_command_and_a_machine() {
        let s = Stamp::new("cargo bench");
        assert_eq!(s.command, "cargo bench");
        assert!(s.nproc >= 1);
        assert!(s.markdown().contains("`cargo bench`"));
        assert_eq!(s.date.len(), 20);
    }
}
