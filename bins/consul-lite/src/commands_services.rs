//! `consul-lite services register|deregister` and `consul-lite catalog services|nodes`, printing
//! what Consul's commands print.

use std::path::Path;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use hyper::Method;
use serde_json::{json, Map, Value};

use crate::cli::ClientArgs;
use crate::client::{encode_path, Client};

/// `consul-lite services ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ServicesCommand {
    /// Register a service with the local agent (from flags, or from a JSON definition file).
    Register {
        #[command(flatten)]
        client: ClientArgs,
        /// The service name.
        #[arg(long)]
        name: Option<String>,
        /// The service ID (default: the name).
        #[arg(long)]
        id: Option<String>,
        /// The service port.
        #[arg(long)]
        port: Option<u16>,
        /// The service address (default: the node's).
        #[arg(long)]
        address: Option<String>,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Metadata as key=value (repeatable).
        #[arg(long = "meta")]
        meta: Vec<String>,
        /// A JSON file with `service` or `services` (Consul's definition format).
        file: Option<String>,
    },
    /// Deregister a service from the local agent (by ID, or the services of a definition file).
    Deregister {
        #[command(flatten)]
        client: ClientArgs,
        /// The service ID.
        #[arg(long)]
        id: Option<String>,
        /// A JSON file with `service` or `services`: each is deregistered by its ID (or name).
        file: Option<String>,
    },
}

/// `consul-lite catalog ...`
#[derive(Debug, Subcommand)]
pub(crate) enum CatalogCommand {
    /// List the services in the catalog.
    Services {
        #[command(flatten)]
        client: ClientArgs,
        /// Show each service's tags.
        #[arg(long)]
        tags: bool,
    },
    /// List the nodes in the catalog.
    Nodes {
        #[command(flatten)]
        client: ClientArgs,
        /// Only the nodes providing this service.
        #[arg(long)]
        service: Option<String>,
    },
}

/// The service definitions of a file: `service` (an object) or `services` (a list), keys in
/// any letter case; a file that is itself one definition (with a `Name`) is taken as well.
fn definitions(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
    let Value::Object(map) = &value else { bail!("{}: expected a JSON object", path.display()) };
    let get = |name: &str| map.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value);
    match (get("service"), get("services")) {
        (Some(service @ Value::Object(_)), None) => Ok(vec![service.clone()]),
        (None, Some(Value::Array(services))) => Ok(services.clone()),
        (None, None) if get("name").is_some() => Ok(vec![value.clone()]),
        _ => bail!("{}: expected \"service\": {{...}} or \"services\": [...]", path.display()),
    }
}

fn field<'a>(definition: &'a Value, name: &str) -> Option<&'a str> {
    definition.as_object()?.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str())
}

/// `consul-lite services register|deregister`
pub(crate) async fn services(command: ServicesCommand) -> anyhow::Result<()> {
    match command {
        ServicesCommand::Register { client, name, id, port, address, tags, meta, file } => {
            let definitions = match (file, &name) {
                (Some(file), None) => definitions(Path::new(&file))?,
                (None, Some(name)) => {
                    let mut service = Map::new();
                    service.insert("Name".into(), json!(name));
                    if let Some(id) = id {
                        service.insert("ID".into(), json!(id));
                    }
                    if let Some(port) = port {
                        service.insert("Port".into(), json!(port));
                    }
                    if let Some(address) = address {
                        service.insert("Address".into(), json!(address));
                    }
                    if !tags.is_empty() {
                        service.insert("Tags".into(), json!(tags));
                    }
                    let mut pairs = Map::new();
                    for pair in meta {
                        let (key, value) =
                            pair.split_once('=').with_context(|| format!("-meta {pair:?}: expected key=value"))?;
                        pairs.insert(key.to_owned(), json!(value));
                    }
                    if !pairs.is_empty() {
                        service.insert("Meta".into(), Value::Object(pairs));
                    }
                    vec![Value::Object(service)]
                }
                (Some(_), Some(_)) => bail!("Error: give either -name or a file, not both"),
                (None, None) => bail!("Error: give -name or a file with service definitions"),
            };
            let http = Client::new(&client);
            for definition in definitions {
                let body = serde_json::to_vec(&definition)?;
                http.ok(Method::PUT, "/v1/agent/service/register", Some(body))
                    .await
                    .context("Error registering service")?;
                println!("Registered service: {}", field(&definition, "name").unwrap_or_default());
            }
            Ok(())
        }
        ServicesCommand::Deregister { client, id, file } => {
            let ids: Vec<String> = match (file, id) {
                (None, Some(id)) => vec![id],
                (Some(file), None) => definitions(Path::new(&file))?
                    .iter()
                    .map(|d| field(d, "id").or_else(|| field(d, "name")).map(str::to_owned))
                    .collect::<Option<_>>()
                    .context("a service definition without ID or name")?,
                (Some(_), Some(_)) => bail!("Error: give either -id or a file, not both"),
                (None, None) => bail!("Error: give -id or a file with service definitions"),
            };
            let http = Client::new(&client);
            for id in ids {
                http.ok(Method::PUT, &format!("/v1/agent/service/deregister/{}", encode_path(&id)), None)
                    .await
                    .context("Error deregistering service")?;
                println!("Deregistered service: {id}");
            }
            Ok(())
        }
    }
}

/// `consul-lite catalog services|nodes`
pub(crate) async fn catalog(command: CatalogCommand) -> anyhow::Result<()> {
    match command {
        CatalogCommand::Services { client, tags } => {
            let services = Client::new(&client).json("/v1/catalog/services").await?;
            let Some(services) = services.as_object() else { bail!("unexpected answer: {services}") };
            let mut rows: Vec<Vec<String>> = services
                .iter()
                .map(|(name, tags)| {
                    let mut tags: Vec<&str> = tags.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    tags.sort_unstable();
                    vec![name.clone(), tags.join(",")]
                })
                .collect();
            rows.sort();
            if rows.is_empty() {
                eprintln!("No services match the given query - try expanding your search.");
            }
            for row in &rows {
                if tags {
                    let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
                    println!("{:<width$}  {}", row[0], row[1]);
                } else {
                    println!("{}", row[0]);
                }
            }
            Ok(())
        }
        CatalogCommand::Nodes { client, service } => {
            let http = Client::new(&client);
            let rows = match &service {
                Some(service) => http.json(&format!("/v1/catalog/service/{}", encode_path(service))).await?,
                None => http.json("/v1/catalog/nodes").await?,
            };
            let mut table = vec![vec!["Node".to_owned(), "ID".to_owned(), "Address".to_owned(), "DC".to_owned()]];
            let mut seen = std::collections::BTreeSet::new();
            for row in rows.as_array().into_iter().flatten() {
                let node = row["Node"].as_str().unwrap_or_default().to_owned();
                if !seen.insert(node.clone()) {
                    continue;
                }
                let id: String = row["ID"].as_str().unwrap_or_default().chars().take(8).collect();
                let address = row["Address"].as_str().unwrap_or_default().to_owned();
                table.push(vec![node, id, address, row["Datacenter"].as_str().unwrap_or_default().to_owned()]);
            }
            if table.len() == 1 {
                eprintln!("No nodes match the given query - try expanding your search.");
                return Ok(());
            }
            table[1..].sort();
            let widths: Vec<usize> = (0..4).map(|c| table.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
            for row in table {
                let cells: Vec<String> =
                    row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
                println!("{}", cells.join("  ").trim_end());
            }
            Ok(())
        }
    }
}
