//! Where a result came from: the command that produced it and the machine it ran on.
//!
//! Every file written to `docs/results/` carries a [`Stamp`], in JSON as an object and in
//! Markdown as a short block above the tables, so a figure can always be traced back to a run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

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

/// Replace what lies between the lines `<!-- results:NAME begin -->` and `<!-- results:NAME end -->`
/// of the Markdown file `doc` with `body`, so the tables in `docs/benchmarks.md` are the ones a
/// run just wrote. Returns `false` (and leaves the file alone) when the markers are not there.
pub fn splice_results(doc: &Path, name: &str, body: &str) -> std::io::Result<bool> {
    let text = std::fs::read_to_string(doc)?;
    let Some(spliced) = splice(&text, name, body) else { return Ok(false) };
    std::fs::write(doc, spliced)?;
    Ok(true)
}

fn splice(text: &str, name: &str, body: &str) -> Option<String> {
    let begin = format!("<!-- results:{name} begin -->\n");
    let end = format!("<!-- results:{name} end -->");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body = body.trim_end();
    Some(format!("{}{body}\n{}", &text[..start], &text[stop..]))
}

/// `docs/benchmarks.md` of this workspace.
pub fn benchmarks_doc() -> PathBuf {
    workspace_root().join("docs").join("benchmarks.md")
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

/// Now, UTC, as RFC 3339 to the second (`YYYY-MM-DDTHH:MM:SSZ`).
pub fn utc_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_rfc3339_utc_to_the_second() {
        let d = utc_now();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.ends_with('Z'), "{d}");
        let parsed = humantime::parse_rfc3339(&d).unwrap();
        let age = SystemTime::now().duration_since(parsed).unwrap();
        assert!(age.as_secs() < 5, "{d} is {age:?} old");
    }

    #[test]
    fn results_are_spliced_between_their_markers_only() {
        let doc = "intro\n<!-- results:a begin -->\nold a\n<!-- results:a end -->\n<!-- results:b begin -->\nold b\n<!-- results:b end -->\n";
        let out = splice(doc, "a", "new a\nline 2\n\n").unwrap();
        assert_eq!(
            out,
            "intro\n<!-- results:a begin -->\nnew a\nline 2\n<!-- results:a end -->\n<!-- results:b begin -->\nold b\n<!-- results:b end -->\n"
        );
        assert!(splice(doc, "c", "x").is_none());
        assert!(splice("<!-- results:a begin -->\nno end", "a", "x").is_none());
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
