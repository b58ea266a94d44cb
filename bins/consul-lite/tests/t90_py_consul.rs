//! py-consul (PyPI 1.8.x), unchanged, against a real `consul-lite agent -dev`: KV with cas,
//! recurse and a blocking index, sessions with `lockdelay`, acquire/release and lock-delay,
//! catalog, health, an agent service with a TTL check, txn (`tests/py_consul_check.py`).
//!
//! The test creates a virtual environment under the target directory and installs py-consul
//! into it with pip. When pip cannot reach PyPI, it says so loudly and skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Agent;

/// A virtual environment with py-consul 1.8.x, made once per target directory.
fn venv() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-consul-venv");
    let python = dir.join("bin/python");
    let has_consul = |python: &Path| {
        Command::new(python)
            .args(["-c", "import consul, importlib.metadata as m; assert m.version('py-consul').startswith('1.8')"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if has_consul(&python) {
        return Ok(python);
    }
    let created = Command::new("python3").args(["-m", "venv", "--clear"]).arg(&dir).status();
    if !created.is_ok_and(|status| status.success()) {
        return Err(format!("python3 -m venv {} failed (is python3-venv installed?)", dir.display()));
    }
    let output = Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "py-consul>=1.8,<1.9"])
        .output()
        .map_err(|error| format!("cannot run pip: {error}"))?;
    if !output.status.success() {
        return Err(format!("pip install py-consul failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    if !has_consul(&python) {
        return Err("py-consul 1.8 is not importable after pip install".into());
    }
    Ok(python)
}

#[test]
fn py_consul_works_unchanged() {
    let python = match venv() {
        Ok(python) => python,
        Err(why) => {
            eprintln!("\n!!!!!!!! SKIPPED: py-consul compatibility NOT tested: {why} !!!!!!!!\n");
            return;
        }
    };
    let agent = Agent::start("py-node", &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py_consul_check.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args([agent.http.to_string(), agent.name.clone()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the py-consul check");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the py-consul check did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "py-consul check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("checks passed"), "{stdout}");
    println!("{}", stdout.trim());
}
