//! `consul-lite watch -type T ... [HANDLER...]`, as `consul watch`: blocking queries on one view
//! of the agent's API; on every new index the handler runs (`/bin/sh -c`, the JSON on stdin,
//! `CONSUL_INDEX` in its environment) and is waited for before the next query. Without a
//! handler the JSON is printed once (indented by four spaces, as Consul's) and the command exits.
//!
//! | type        | query                                                                 |
//! |-------------|-----------------------------------------------------------------------|
//! | `key`       | `/v1/kv/KEY` (the entry, or `null` while it does not exist)            |
//! | `keyprefix` | `/v1/kv/PREFIX?recurse` (`[]` while nothing is under it)               |
//! | `services`  | `/v1/catalog/services`                                                |
//! | `nodes`     | `/v1/catalog/nodes`                                                   |
//! | `service`   | `/v1/health/service/SERVICE` (`-tag`, `-passing`)                     |
//! | `checks`    | `/v1/health/checks/SERVICE` with `-service`, else `/v1/health/state/STATE` (`any`) |

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use hyper::{Method, StatusCode};
use serde::Serialize as _;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use crate::cli::WatchArgs;
use crate::client::{encode_path, Client};

/// How long one blocking query waits (below the client's 60 s request bound).
const WAIT: &str = "50s";
/// The first wait after a failed query; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs the watch until the process is stopped (or once, without a handler).
pub(crate) async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let view = View::of(&args)?;
    let client = Client::new(&args.client);
    let handler = (!args.handler.is_empty()).then(|| args.handler.join(" "));
    let mut index: u64 = 0;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let path = view.path(index);
        let answer = match client.send(Method::GET, &path, None).await {
            Ok(answer) if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND => answer,
            Ok(answer) if handler.is_none() => bail!(
                "Unexpected response code: {} ({})",
                answer.status.as_u16(),
                String::from_utf8_lossy(&answer.body).trim()
            ),
            Ok(answer) => {
                eprintln!(
                    "watch: {path}: {} {}; retrying in {backoff:?}",
                    answer.status.as_u16(),
                    String::from_utf8_lossy(&answer.body).trim()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(error) if handler.is_none() => return Err(error),
            Err(error) => {
                eprintln!("watch: {error:#}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        let new_index = answer.index.unwrap_or(0);
        let data = view.data(answer.status, &answer.body)?;
        let Some(handler) = &handler else {
            println!("{}", indented(&data)?);
            return Ok(());
        };
        if new_index != index || index == 0 {
            invoke(handler, &data, new_index).await;
        }
        // An index that went backwards (a restored server) starts over, as Consul's clients do.
        index = if new_index < index { 0 } else { new_index };
    }
}

/// What is watched.
enum View {
    Key(String),
    KeyPrefix(String),
    Services,
    Nodes,
    Service { name: String, tag: Option<String>, passing: bool },
    ServiceChecks(String),
    State(String),
}

impl View {
    fn of(args: &WatchArgs) -> anyhow::Result<Self> {
        let view = match args.kind.as_str() {
            "key" => match &args.key {
                Some(key) if !key.is_empty() => Self::Key(key.trim_start_matches('/').to_owned()),
                _ => bail!("Must specify a single key to watch (-key)"),
            },
            "keyprefix" => match &args.prefix {
                Some(prefix) => Self::KeyPrefix(prefix.trim_start_matches('/').to_owned()),
                None => bail!("Must specify a single prefix to watch (-prefix)"),
            },
            "services" => Self::Services,
            "nodes" => Self::Nodes,
            "service" => match &args.service {
                Some(name) if !name.is_empty() => {
                    Self::Service { name: name.clone(), tag: args.tag.clone(), passing: args.passing }
                }
                _ => bail!("Must specify a single service to watch (-service)"),
            },
            "checks" => match (&args.service, &args.state) {
                (Some(_), Some(_)) => bail!("Cannot specify both -service and -state"),
                (Some(service), None) => Self::ServiceChecks(service.clone()),
                (None, state) => {
                    let state = state.clone().unwrap_or_else(|| "any".to_owned());
                    if !matches!(state.as_str(), "any" | "passing" | "warning" | "critical") {
                        bail!("-state: {state:?} must be any, passing, warning or critical");
                    }
                    Self::State(state)
                }
            },
            "" => bail!("Watch type must be specified (-type)"),
            other => bail!("Unsupported watch type: {other} (key, keyprefix, services, nodes, service, checks)"),
        };
        Ok(view)
    }

    fn path(&self, index: u64) -> String {
        let mut query: Vec<String> = Vec::new();
        let base = match self {
            Self::Key(key) => format!("/v1/kv/{}", encode_path(key)),
            Self::KeyPrefix(prefix) => {
                query.push("recurse".into());
                format!("/v1/kv/{}", encode_path(prefix))
            }
            Self::Services => "/v1/catalog/services".to_owned(),
            Self::Nodes => "/v1/catalog/nodes".to_owned(),
            Self::Service { name, tag, passing } => {
                if let Some(tag) = tag {
                    query.push(format!("tag={}", encode_path(tag)));
                }
                if *passing {
                    query.push("passing".into());
                }
                format!("/v1/health/service/{}", encode_path(name))
            }
            Self::ServiceChecks(name) => format!("/v1/health/checks/{}", encode_path(name)),
            Self::State(state) => format!("/v1/health/state/{state}"),
        };
        if index > 0 {
            query.push(format!("index={index}"));
            query.push(format!("wait={WAIT}"));
        }
        if query.is_empty() {
            base
        } else {
            format!("{base}?{}", query.join("&"))
        }
    }

    /// The data handed to the handler: a key is its one entry (or `null`), a missing prefix `[]`.
    fn data(&self, status: StatusCode, body: &[u8]) -> anyhow::Result<serde_json::Value> {
        if status == StatusCode::NOT_FOUND {
            return Ok(match self {
                Self::Key(_) => serde_json::Value::Null,
                _ => serde_json::Value::Array(Vec::new()),
            });
        }
        let value: serde_json::Value = serde_json::from_slice(body).context("the agent's answer is not JSON")?;
        Ok(match (self, value) {
            (Self::Key(_), serde_json::Value::Array(mut rows)) if !rows.is_empty() => rows.swap_remove(0),
            (_, value) => value,
        })
    }
}

fn indented(value: &serde_json::Value) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    value.serialize(&mut serializer)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Runs the handler with the JSON on stdin and waits for it; a failure is reported, not fatal.
async fn invoke(handler: &str, data: &serde_json::Value, index: u64) {
    let Ok(json) = indented(data) else { return };
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(handler)
        .env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            eprintln!("watch: cannot start the handler: {error}");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A handler that does not read its stdin closes the pipe: fine.
        let _ = stdin.write_all(json.as_bytes()).await;
        let _ = stdin.write_all(b"\n").await;
    }
    match child.wait().await {
        Ok(status) if !status.success() => eprintln!("watch: handler exited with {status}"),
        Err(error) => eprintln!("watch: waiting for the handler: {error}"),
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ClientArgs;

    fn args(kind: &str) -> WatchArgs {
        WatchArgs {
            client: ClientArgs { http_addr: "127.0.0.1:8500".into(), token: None },
            kind: kind.into(),
            key: None,
            prefix: None,
            service: None,
            tag: None,
            state: None,
            passing: false,
            handler: Vec::new(),
        }
    }

    #[test]
    fn each_type_has_its_query() {
        let path = |args: WatchArgs, index| View::of(&args).unwrap().path(index);
        assert_eq!(path(WatchArgs { key: Some("a b".into()), ..args("key") }, 0), "/v1/kv/a%20b");
        assert_eq!(
            path(WatchArgs { prefix: Some("p/".into()), ..args("keyprefix") }, 7),
            "/v1/kv/p/?recurse&index=7&wait=50s"
        );
        let service =
            WatchArgs { service: Some("web".into()), passing: true, tag: Some("v1".into()), ..args("service") };
        assert_eq!(path(service, 0), "/v1/health/service/web?tag=v1&passing");
        assert_eq!(path(args("checks"), 0), "/v1/health/state/any");
        assert_eq!(path(args("nodes"), 3), "/v1/catalog/nodes?index=3&wait=50s");
    }

    #[test]
    fn bad_arguments_are_named() {
        let error = |args: WatchArgs| View::of(&args).err().unwrap().to_string();
        assert_eq!(error(args("key")), "Must specify a single key to watch (-key)");
        assert!(error(args("events")).starts_with("Unsupported watch type: events"));
        assert!(error(WatchArgs { state: Some("bad".into()), ..args("checks") }).starts_with("-state"));
    }
}
