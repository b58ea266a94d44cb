//! The agent's settings: Consul's JSON config files (`-config-file`, `-config-dir`, with
//! Consul's field names), then the flags over them, validated into [`Settings`]. A bad value
//! is named with its source and the rule it breaks.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::AgentArgs;

/// Consul's default ports.
pub(crate) const DEFAULT_HTTP_PORT: u16 = 8500;
pub(crate) const DEFAULT_SERF_LAN_PORT: u16 = 8301;
pub(crate) const DEFAULT_SERVER_PORT: u16 = 8300;
pub(crate) const DEFAULT_DNS_PORT: u16 = 8600;

/// What the agent runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) dev: bool,
    pub(crate) server: bool,
    pub(crate) bootstrap_expect: Option<u32>,
    pub(crate) node: String,
    pub(crate) datacenter: String,
    pub(crate) bind: IpAddr,
    pub(crate) client: IpAddr,
    pub(crate) http_port: u16,
    pub(crate) serf_lan_port: u16,
    pub(crate) server_port: u16,
    /// `None`: DNS off (`-dns-port -1`, as Consul's).
    pub(crate) dns_port: Option<u16>,
    /// `-domain` and the `dns_config` block.
    pub(crate) dns: crate::dns::DnsConfig,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) acl_master_token: Option<String>,
    pub(crate) encrypt: Option<String>,
    pub(crate) join: Vec<String>,
    pub(crate) retry_join: Vec<String>,
    pub(crate) log_level: String,
    /// Leave the pool gracefully on SIGTERM (Consul's `leave_on_terminate`: default true on
    /// client agents, false on servers).
    pub(crate) leave_on_terminate: bool,
    /// Do not leave on SIGINT (Consul's `skip_leave_on_interrupt`: default true on servers,
    /// false on client agents).
    pub(crate) skip_leave_on_interrupt: bool,
    /// What was ignored in the config files, to log once logging is set up.
    pub(crate) warnings: Vec<String>,

    // The agent's own services and checks.
    /// Service and check definitions of the config files, and the script-check flags.
    pub(crate) local: LocalDefinitions,
    /// `-primary-*`: the lock-held primary, when any of its flags is given.
    pub(crate) primary: Option<crate::primary::PrimarySettings>,
}

/// The `service`, `services`, `check` and `checks` of the config files (each with the file it
/// came from), checked at start as the API checks them, and whether script checks may run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LocalDefinitions {
    pub(crate) services: Vec<(Value, String)>,
    pub(crate) checks: Vec<(Value, String)>,
    pub(crate) enable_script_checks: bool,
    pub(crate) enable_local_script_checks: bool,
}

/// Values gathered from files and flags, each with where it came from (for messages).
#[derive(Debug, Default)]
struct Raw {
    values: BTreeMap<&'static str, (Value, String)>,
    lists: BTreeMap<&'static str, Vec<String>>,
    warnings: Vec<String>,
    local: LocalDefinitions,
}

impl Raw {
    fn set(&mut self, field: &'static str, value: Value, source: String) {
        self.values.insert(field, (value, source));
    }
}

/// Consul's JSON fields this agent reads, with the flag each one matches.
const FILE_FIELDS: &[(&str, &str)] = &[
    ("node_name", "node"),
    ("datacenter", "datacenter"),
    ("bind_addr", "bind"),
    ("client_addr", "client"),
    ("data_dir", "data-dir"),
    ("server", "server"),
    ("bootstrap_expect", "bootstrap-expect"),
    ("acl_master_token", "acl-master-token"),
    ("encrypt", "encrypt"),
    ("log_level", "log-level"),
    ("domain", "domain"),
    ("dns_config", "dns_config"),
    ("leave_on_terminate", "leave_on_terminate"),
    ("skip_leave_on_interrupt", "skip_leave_on_interrupt"),
];

/// Reads the config files and applies the flags over them.
pub(crate) fn resolve(args: &AgentArgs) -> anyhow::Result<Settings> {
    let mut raw = Raw::default();
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in &args.config_dir {
        let entries = std::fs::read_dir(dir)
            .map_err(|error| anyhow::anyhow!("config dir (-config-dir) {}: {error}", dir.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files.extend(args.config_file.iter().cloned());
    for file in &files {
        read_file(file, &mut raw)?;
    }
    apply_flags(args, &mut raw);
    let mut settings = settings(args.dev, &raw)?;
    // The gossip's shortest failure detection: a refused probe (the process is gone) after the
    // shortest probe timeout, then the shortest suspicion (mult × unit).
    let swim = gossip_core::NodeConfig::lan().swim;
    let min_detection = swim.probe_timeout_min + swim.suspicion_unit * swim.suspicion_mult;
    settings.primary = crate::primary::PrimarySettings::from_args(args, min_detection)?;
    Ok(settings)
}

fn read_file(path: &Path, raw: &mut Raw) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("config file (-config-file) {}: {error}", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|error| anyhow::anyhow!("config file {}: not valid JSON: {error}", path.display()))?;
    let Value::Object(map) = value else {
        anyhow::bail!("config file {}: expected a JSON object", path.display());
    };
    let source = |field: &str| format!("{field} in {}", path.display());
    for (key, value) in map {
        if let Some((field, _)) = FILE_FIELDS.iter().find(|(name, _)| *name == key) {
            raw.set(field, value, source(field));
            continue;
        }
        match key.as_str() {
            "ports" => {
                let Value::Object(ports) = value else {
                    anyhow::bail!("{}: expected an object of ports", source("ports"));
                };
                for (name, port) in ports {
                    let field = match name.as_str() {
                        "http" => "ports.http",
                        "serf_lan" => "ports.serf_lan",
                        "server" => "ports.server",
                        "dns" => "ports.dns",
                        other => {
                            raw.warnings.push(format!("{}: ignoring ports.{other}: not used", path.display()));
                            continue;
                        }
                    };
                    raw.set(field, port, source(field));
                }
            }
            "acl" => {
                // acl.tokens.master / acl.tokens.initial_management: the token every request needs.
                let token = value
                    .get("tokens")
                    .and_then(|tokens| tokens.get("initial_management").or_else(|| tokens.get("master")))
                    .cloned();
                if let Some(token) = token {
                    raw.set("acl_master_token", token, source("acl.tokens"));
                }
            }
            "retry_join" | "start_join" => {
                let list =
                    strings(&value).ok_or_else(|| anyhow::anyhow!("{}: expected a list of addresses", source(&key)))?;
                let field = if key == "retry_join" { "retry_join" } else { "start_join" };
                raw.lists.insert(field, list);
            }
            // The agent's own services and checks.
            "service" | "services" | "check" | "checks" => {
                let items = match value {
                    Value::Array(items) if key.ends_with('s') => items,
                    object @ Value::Object(_) if !key.ends_with('s') => vec![object],
                    _ if key.ends_with('s') => anyhow::bail!("{}: expected a list of objects", source(&key)),
                    _ => anyhow::bail!("{}: expected an object", source(&key)),
                };
                let list = if key.starts_with("service") { &mut raw.local.services } else { &mut raw.local.checks };
                list.extend(items.into_iter().map(|item| (item, source(&key))));
            }
            "enable_script_checks" | "enable_local_script_checks" => {
                let Value::Bool(enabled) = value else { anyhow::bail!("{}: expected true or false", source(&key)) };
                if key == "enable_script_checks" {
                    raw.local.enable_script_checks |= enabled;
                } else {
                    raw.local.enable_local_script_checks |= enabled;
                }
            }
            other => {
                raw.warnings.push(format!("{}: ignoring {other:?}: consul-lite does not use it", path.display()));
            }
        }
    }
    Ok(())
}

fn strings(value: &Value) -> Option<Vec<String>> {
    value.as_array()?.iter().map(|item| item.as_str().map(str::to_owned)).collect()
}

fn apply_flags(args: &AgentArgs, raw: &mut Raw) {
    let mut flag = |field: &'static str, name: &str, value: Option<&String>| {
        if let Some(value) = value {
            raw.set(field, Value::String(value.clone()), format!("-{name}"));
        }
    };
    flag("node_name", "node", args.node.as_ref());
    flag("datacenter", "datacenter", args.datacenter.as_ref());
    flag("bind_addr", "bind", args.bind.as_ref());
    flag("client_addr", "client", args.client.as_ref());
    flag("ports.http", "http-port", args.http_port.as_ref());
    flag("ports.serf_lan", "serf-lan-port", args.serf_lan_port.as_ref());
    flag("ports.server", "server-port", args.server_port.as_ref());
    flag("ports.dns", "dns-port", args.dns_port.as_ref());
    flag("bootstrap_expect", "bootstrap-expect", args.bootstrap_expect.as_ref());
    flag("acl_master_token", "acl-master-token", args.acl_master_token.as_ref());
    flag("encrypt", "encrypt", args.encrypt.as_ref());
    flag("log_level", "log-level", args.log_level.as_ref());
    flag("domain", "domain", args.domain.as_ref());
    if let Some(dir) = &args.data_dir {
        raw.set("data_dir", Value::String(dir.display().to_string()), "-data-dir".into());
    }
    if args.server {
        raw.set("server", Value::Bool(true), "-server".into());
    }
    if !args.join.is_empty() {
        raw.lists.insert("start_join", args.join.clone());
    }
    if !args.retry_join.is_empty() {
        raw.lists.insert("retry_join", args.retry_join.clone());
    }
    raw.local.enable_script_checks |= args.enable_script_checks;
    raw.local.enable_local_script_checks |= args.enable_local_script_checks;
}

/// Checks the config files' service and check definitions as the API would (a bad one stops
/// the agent at start, as in Consul), script checks against the flags.
fn check_definitions(local: &LocalDefinitions) -> anyhow::Result<()> {
    use crate::local::{LocalSettings, Source};
    let flags = LocalSettings {
        enable_script_checks: local.enable_script_checks,
        enable_local_script_checks: local.enable_local_script_checks,
        ..LocalSettings::default()
    };
    let scripts = |checks: &[crate::local::LocalCheck], source: &str| -> anyhow::Result<()> {
        let script = checks.iter().any(|c| matches!(c.spec.kind, crate::checks::CheckKind::Script { .. }));
        match flags.script_refusal(Source::Local) {
            Some(refusal) if script => anyhow::bail!("{source}: {refusal}"),
            _ => Ok(()),
        }
    };
    let mut ids = std::collections::BTreeSet::new();
    for (value, source) in &local.services {
        let (service, checks) = crate::http::local::service_definition(value, "service")
            .map_err(|error| anyhow::anyhow!("{source}: {}", error.message))?;
        scripts(&checks, source)?;
        if !ids.insert(service.id.clone()) {
            anyhow::bail!("{source}: service ID {:?} is defined twice", service.id);
        }
    }
    for (value, source) in &local.checks {
        let check = crate::http::local::check_definition(value, "check", None, None)
            .map_err(|error| anyhow::anyhow!("{source}: {}", error.message))?;
        scripts(std::slice::from_ref(&check), source)?;
        if !check.check.service_id.is_empty() && !ids.contains(&check.check.service_id) {
            anyhow::bail!(
                "{source}: check {:?}: ServiceID {:?} is not defined in the config files",
                check.check.check_id,
                check.check.service_id
            );
        }
    }
    Ok(())
}

fn text<'a>(raw: &'a Raw, field: &str) -> anyhow::Result<Option<(&'a str, &'a str)>> {
    match raw.values.get(field) {
        None => Ok(None),
        Some((Value::String(text), source)) => Ok(Some((text, source))),
        Some((other, source)) => anyhow::bail!("{source}: {other} must be a string"),
    }
}

fn number(raw: &Raw, field: &str, default: u64, min: u64, max: u64) -> anyhow::Result<u64> {
    let Some((value, source)) = raw.values.get(field) else { return Ok(default) };
    let parsed = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => anyhow::bail!("{source}: {value} must be a whole number from {min} to {max}"),
    }
}

fn port(raw: &Raw, field: &str, default: u16) -> anyhow::Result<u16> {
    number(raw, field, u64::from(default), 1, 65_535).map(|port| port as u16)
}

fn address(raw: &Raw, field: &str, default: IpAddr) -> anyhow::Result<IpAddr> {
    match text(raw, field)? {
        None => Ok(default),
        Some((text, source)) => {
            text.parse().map_err(|_| anyhow::anyhow!("{source}: {text:?} must be an IP address (like 127.0.0.1)"))
        }
    }
}

fn settings(dev: bool, raw: &Raw) -> anyhow::Result<Settings> {
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let node = match text(raw, "node_name")? {
        Some((node, source)) => {
            if node.is_empty() || node.len() > gossip_core::MAX_NAME_LEN {
                anyhow::bail!("{source}: {node:?} must be 1 to {} bytes", gossip_core::MAX_NAME_LEN);
            }
            node.to_owned()
        }
        None => hostname(),
    };
    let datacenter = match text(raw, "datacenter")? {
        Some((dc, source)) => {
            let valid = !dc.is_empty() && dc.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                anyhow::bail!("{source}: {dc:?} must be letters, digits, '-' or '_' (not empty)");
            }
            dc.to_ascii_lowercase()
        }
        None => "dc1".to_owned(),
    };
    let server = match raw.values.get("server") {
        None => dev,
        Some((Value::Bool(server), _)) => *server || dev,
        Some((other, source)) => anyhow::bail!("{source}: {other} must be true or false"),
    };
    // Consul's defaults depend on the mode: a client leaves on SIGTERM and SIGINT, a server on
    // neither (a server that leaves shrinks the Raft quorum).
    let flag_or = |field: &str, default: bool| -> anyhow::Result<bool> {
        match raw.values.get(field) {
            None => Ok(default),
            Some((Value::Bool(value), _)) => Ok(*value),
            Some((other, source)) => anyhow::bail!("{source}: {other} must be true or false"),
        }
    };
    let leave_on_terminate = flag_or("leave_on_terminate", !server)?;
    let skip_leave_on_interrupt = flag_or("skip_leave_on_interrupt", server)?;
    let bootstrap_expect = match raw.values.get("bootstrap_expect") {
        None => None,
        Some(_) => Some(number(raw, "bootstrap_expect", 0, 1, 7)? as u32),
    };
    let log_level = match text(raw, "log_level")? {
        None => "info".to_owned(),
        Some((level, source)) => match level.to_ascii_lowercase().as_str() {
            "trace" | "debug" | "info" | "warn" => level.to_ascii_lowercase(),
            "err" | "error" => "error".to_owned(),
            _ => anyhow::bail!("{source}: {level:?} must be one of trace, debug, info, warn, err"),
        },
    };
    let encrypt = match text(raw, "encrypt")? {
        None => None,
        Some((key, source)) => {
            gossip_core::Key::from_base64(key)
                .map_err(|error| anyhow::anyhow!("{source}: not a valid gossip key: {error}"))?;
            Some(key.to_owned())
        }
    };
    // Consul's -dns-port -1 turns DNS off.
    let dns_port = match raw.values.get("ports.dns") {
        Some((Value::Number(n), _)) if n.as_i64() == Some(-1) => None,
        Some((Value::String(text), _)) if text.trim() == "-1" => None,
        _ => Some(port(raw, "ports.dns", DEFAULT_DNS_PORT)?),
    };
    let (dns, dns_ignored) = crate::dns::DnsConfig::from_settings(
        text(raw, "domain")?,
        &datacenter,
        raw.values.get("dns_config").map(|(value, source)| (value, source.as_str())),
    )
    .map_err(|error| anyhow::anyhow!(error))?;
    let settings = Settings {
        dev,
        server,
        bootstrap_expect,
        node,
        datacenter,
        bind: address(raw, "bind_addr", loopback)?,
        client: address(raw, "client_addr", loopback)?,
        http_port: port(raw, "ports.http", DEFAULT_HTTP_PORT)?,
        serf_lan_port: port(raw, "ports.serf_lan", DEFAULT_SERF_LAN_PORT)?,
        server_port: port(raw, "ports.server", DEFAULT_SERVER_PORT)?,
        dns_port,
        dns,
        data_dir: text(raw, "data_dir")?.map(|(dir, _)| PathBuf::from(dir)),
        acl_master_token: text(raw, "acl_master_token")?.map(|(token, _)| token.to_owned()).filter(|t| !t.is_empty()),
        encrypt,
        join: raw.lists.get("start_join").cloned().unwrap_or_default(),
        retry_join: raw.lists.get("retry_join").cloned().unwrap_or_default(),
        log_level,
        leave_on_terminate,
        skip_leave_on_interrupt,
        warnings: raw.warnings.iter().cloned().chain(dns_ignored).collect(),
        local: raw.local.clone(),
        primary: None,
    };
    check_definitions(&settings.local)?;
    // Client agents (issue 14): a client holds no Raft state.
    if !settings.server && settings.bootstrap_expect.is_some() {
        anyhow::bail!("-bootstrap-expect (bootstrap_expect) needs -server: a client agent holds no Raft state");
    }
    if settings.bind == settings.client && settings.http_port == settings.serf_lan_port {
        anyhow::bail!(
            "-http-port and -serf-lan-port: both are {} on {}; they must differ",
            settings.http_port,
            settings.bind
        );
    }
    Ok(settings)
}

/// The host name, as Consul's default node name.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "consul-lite".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AgentArgs {
        AgentArgs { dev: true, ..AgentArgs::default() }
    }

    #[test]
    fn dev_defaults_are_consuls() {
        let settings = resolve(&args()).unwrap();
        assert_eq!((settings.http_port, settings.serf_lan_port, settings.server_port), (8500, 8301, 8300));
        assert_eq!(settings.datacenter, "dc1");
        assert!(settings.server);
        assert_eq!(settings.bind, IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn bad_values_are_named_with_the_rule() {
        let bad = |args: AgentArgs| resolve(&args).unwrap_err().to_string();
        let port = bad(AgentArgs { http_port: Some("0".into()), ..args() });
        assert_eq!(port, "-http-port: \"0\" must be a whole number from 1 to 65535");
        let dc = bad(AgentArgs { datacenter: Some("dc 1".into()), ..args() });
        assert!(dc.starts_with("-datacenter: \"dc 1\" must be letters"), "{dc}");
        let bind = bad(AgentArgs { bind: Some("localhost".into()), ..args() });
        assert!(bind.contains("must be an IP address"), "{bind}");
        let same = bad(AgentArgs { http_port: Some("9000".into()), serf_lan_port: Some("9000".into()), ..args() });
        assert!(same.contains("must differ"), "{same}");
    }

    #[test]
    fn config_files_use_consuls_names_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.json");
        std::fs::write(
            &file,
            r#"{"node_name": "n1", "datacenter": "east", "ports": {"http": 18500, "serf_lan": 18301},
                "acl": {"tokens": {"initial_management": "secret"}}, "ui": true}"#,
        )
        .unwrap();
        let settings =
            resolve(&AgentArgs { config_dir: vec![dir.path().into()], node: Some("n2".into()), ..args() }).unwrap();
        assert_eq!(settings.node, "n2");
        assert_eq!(settings.datacenter, "east");
        assert_eq!((settings.http_port, settings.serf_lan_port), (18500, 18301));
        assert_eq!(settings.acl_master_token.as_deref(), Some("secret"));
        assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);
        std::fs::write(&file, r#"{"ports": {"http": "x"}}"#).unwrap();
        let error = resolve(&AgentArgs { config_file: vec![file.clone()], ..args() }).unwrap_err().to_string();
        assert!(
            error.starts_with("ports.http in ") && error.ends_with("must be a whole number from 1 to 65535"),
            "{error}"
        );
    }
}
