//! The agent's services and checks registered through the API, kept in `-data-dir` so that a
//! restarted agent has them again (Consul keeps them in `data-dir/services` and
//! `data-dir/checks`). One file per service or check: `{"ID": ..., "Definition": <the
//! registration as received>}`, named by a hash of the ID, written to a temporary file, fsynced,
//! renamed over the old one and the directory fsynced, before the request is answered.
//!
//! Not kept: definitions from `-config-file`/`-config-dir` (read again at start), maintenance
//! checks, check statuses (a TTL check comes back `critical`; the others run again).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The two directories under `-data-dir`.
#[derive(Debug, Clone)]
pub(crate) struct DefinitionFiles {
    services: PathBuf,
    checks: PathBuf,
}

/// A definition read back: its ID and the registration body.
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    pub(crate) id: String,
    pub(crate) definition: Value,
    pub(crate) path: PathBuf,
}

impl DefinitionFiles {
    /// The files under `data_dir` (created when first written).
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self { services: data_dir.join("services"), checks: data_dir.join("checks") }
    }

    pub(crate) fn save_service(&self, id: &str, definition: &Value) -> std::io::Result<()> {
        save(&self.services, id, definition)
    }

    pub(crate) fn remove_service(&self, id: &str) -> std::io::Result<()> {
        remove(&self.services, id)
    }

    pub(crate) fn save_check(&self, id: &str, definition: &Value) -> std::io::Result<()> {
        save(&self.checks, id, definition)
    }

    pub(crate) fn remove_check(&self, id: &str) -> std::io::Result<()> {
        remove(&self.checks, id)
    }

    /// Every saved service and check; files that cannot be read are skipped with a warning.
    pub(crate) fn load(&self) -> (Vec<Saved>, Vec<Saved>) {
        (load(&self.services), load(&self.checks))
    }
}

/// FNV-1a, 64 bits: a stable file name for any ID.
fn file_name(id: &str) -> String {
    let hash = id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{hash:016x}.json")
}

fn save(dir: &Path, id: &str, definition: &Value) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(file_name(id));
    let temporary = dir.join(format!(".{}.tmp", file_name(id)));
    let body = serde_json::to_vec(&json!({ "ID": id, "Definition": definition })).map_err(std::io::Error::other)?;
    {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&body)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

fn remove(dir: &Path, id: &str) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(file_name(id))) {
        Ok(()) => std::fs::File::open(dir)?.sync_all(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

fn load(dir: &Path) -> Vec<Saved> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut saved = Vec::new();
    for path in paths {
        let read = std::fs::read(&path)
            .map_err(|error| error.to_string())
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).map_err(|error| error.to_string()));
        match read {
            Ok(value) => match (value.get("ID").and_then(Value::as_str), value.get("Definition")) {
                (Some(id), Some(definition)) => {
                    saved.push(Saved { id: id.to_owned(), definition: definition.clone(), path })
                }
                _ => tracing::warn!(path = %path.display(), "agent: skipping a saved definition without ID"),
            },
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "agent: skipping an unreadable saved definition")
            }
        }
    }
    saved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_definitions_read_back_and_removed_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let files = DefinitionFiles::new(dir.path());
        files.save_service("web-1", &json!({"Name": "web"})).unwrap();
        files.save_service("web-1", &json!({"Name": "web", "Port": 80})).unwrap();
        files.save_service("db", &json!({"Name": "db"})).unwrap();
        files.save_check("c/1", &json!({"Name": "c", "TTL": "5s"})).unwrap();
        let (services, checks) = files.load();
        let mut ids: Vec<&str> = services.iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["db", "web-1"]);
        let web = services.iter().find(|s| s.id == "web-1").unwrap();
        assert_eq!(web.definition, json!({"Name": "web", "Port": 80}));
        assert_eq!(checks[0].id, "c/1");
        files.remove_service("web-1").unwrap();
        files.remove_service("never").unwrap();
        assert_eq!(files.load().0.len(), 1);
        std::fs::write(dir.path().join("services/garbage.json"), b"{").unwrap();
        assert_eq!(files.load().0.len(), 1, "an unreadable file is skipped");
    }
}
