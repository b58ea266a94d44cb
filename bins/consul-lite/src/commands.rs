//! The client commands, printing what Consul's print.

use std::io::Read as _;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::cli::{ClientArgs, KvCommand, OperatorCommand, RaftCommand};
use crate::client::{encode_path, Client};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn status_name(status: u64) -> &'static str {
    match status {
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "none",
    }
}

/// `consul-lite members`
pub(crate) async fn members(args: &ClientArgs, detailed: bool) -> anyhow::Result<()> {
    let members = Client::new(args).json("/v1/agent/members").await?;
    let mut rows = vec![vec![
        "Node".to_owned(),
        "Address".to_owned(),
        "Status".to_owned(),
        "Type".to_owned(),
        "Build".to_owned(),
        "Protocol".to_owned(),
        "DC".to_owned(),
    ]];
    for member in members.as_array().into_iter().flatten() {
        let tag = |name: &str| member["Tags"][name].as_str().unwrap_or_default().to_owned();
        let mut row = vec![
            member["Name"].as_str().unwrap_or_default().to_owned(),
            format!("{}:{}", member["Addr"].as_str().unwrap_or_default(), member["Port"]),
            status_name(member["Status"].as_u64().unwrap_or(0)).to_owned(),
            if tag("role") == "consul" { "server".to_owned() } else { "client".to_owned() },
            tag("build"),
            tag("vsn"),
            tag("dc"),
        ];
        if detailed {
            let tags: Vec<String> = member["Tags"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            row.truncate(3);
            row.push(tags.join(","));
        }
        rows.push(row);
    }
    if detailed {
        rows[0] = vec!["Node".into(), "Address".into(), "Status".into(), "Tags".into()];
    }
    print_table(&rows);
    Ok(())
}

fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().filter_map(|row| row.get(c)).map(String::len).max().unwrap_or(0)).collect();
    for row in rows {
        let line: Vec<String> =
            row.iter().enumerate().map(|(c, cell)| format!("{cell:<width$}", width = widths[c])).collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// `consul-lite join`
pub(crate) async fn join(args: &ClientArgs, addresses: &[String]) -> anyhow::Result<()> {
    let client = Client::new(args);
    let mut joined = 0;
    for address in addresses {
        match client.ok(Method::PUT, &format!("/v1/agent/join/{}", encode_path(address)), None).await {
            Ok(_) => joined += 1,
            Err(error) => eprintln!("Error joining address '{address}': {error}"),
        }
    }
    if joined == 0 {
        bail!("Failed to join any nodes.");
    }
    println!("Successfully joined cluster by contacting {joined} nodes.");
    Ok(())
}

/// `consul-lite leave`
pub(crate) async fn leave(args: &ClientArgs) -> anyhow::Result<()> {
    Client::new(args).ok(Method::PUT, "/v1/agent/leave", None).await?;
    println!("Graceful leave complete");
    Ok(())
}

/// `consul-lite force-leave`
pub(crate) async fn force_leave(args: &ClientArgs, node: &str, prune: bool) -> anyhow::Result<()> {
    let path = format!("/v1/agent/force-leave/{}{}", encode_path(node), if prune { "?prune" } else { "" });
    Client::new(args).ok(Method::PUT, &path, None).await?;
    Ok(())
}

/// `consul-lite info`: the agent's stats, by section.
pub(crate) async fn info(args: &ClientArgs) -> anyhow::Result<()> {
    let this = Client::new(args).json("/v1/agent/self").await?;
    for (section, values) in this["Stats"].as_object().into_iter().flatten() {
        println!("{section}:");
        for (key, value) in values.as_object().into_iter().flatten() {
            println!("\t{key} = {}", value.as_str().map_or_else(|| value.to_string(), str::to_owned));
        }
    }
    Ok(())
}

/// `consul-lite version`
pub(crate) fn version() {
    println!("consul-lite v{}", env!("CARGO_PKG_VERSION"));
    println!("Protocol 2 spoken by default (Consul's HTTP API; its own gossip, not Consul's)");
}

/// `consul-lite operator raft list-peers | remove-peer`
pub(crate) async fn operator(command: OperatorCommand) -> anyhow::Result<()> {
    let OperatorCommand::Raft(command) = command;
    match command {
        RaftCommand::ListPeers { client } => {
            let answer = Client::new(&client).json("/v1/operator/raft/configuration").await?;
            let configuration: crate::server::operator::RaftConfiguration =
                serde_json::from_value(answer).context("the agent's Raft configuration")?;
            print!("{}", crate::server::operator::peers_table(&configuration));
        }
        RaftCommand::RemovePeer { client, address, id } => {
            let (query, what) = match (&id, &address) {
                (Some(id), _) => (format!("id={}", encode_path(id)), format!("ID {id}")),
                (None, Some(address)) => (format!("address={}", encode_path(address)), format!("address {address}")),
                (None, None) => bail!("remove-peer needs -address or -id"),
            };
            Client::new(&client).ok(Method::DELETE, &format!("/v1/operator/raft/peer?{query}"), None).await?;
            println!("Removed peer with {what}");
        }
    }
    Ok(())
}

/// `consul-lite snapshot save | restore`, printing what Consul's prints.
pub(crate) async fn snapshot(command: crate::cli::SnapshotCommand) -> anyhow::Result<()> {
    use crate::cli::SnapshotCommand;
    use crate::http::snapshot;
    match command {
        SnapshotCommand::Save { client, stale, file } => {
            let path = if stale { "/v1/snapshot?stale" } else { "/v1/snapshot" };
            let archive = Client::new(&client).ok(Method::GET, path, None).await?;
            let saved = snapshot::decode(&archive).context("the agent's snapshot does not verify")?;
            // Written beside the target, synced, then renamed over it: never a partial file.
            let tmp = file.with_extension("tmp");
            let write = || -> std::io::Result<()> {
                let mut out = std::fs::File::create(&tmp)?;
                std::io::Write::write_all(&mut out, &archive)?;
                out.sync_all()?;
                std::fs::rename(&tmp, &file)
            };
            write().with_context(|| format!("writing {}", file.display()))?;
            println!("Saved and verified snapshot to index {}", saved.last_index);
        }
        SnapshotCommand::Restore { client, file } => {
            let archive = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            snapshot::decode(&archive).with_context(|| format!("{}", file.display()))?;
            Client::new(&client).ok(Method::PUT, "/v1/snapshot", Some(archive)).await?;
            println!("Restored snapshot");
        }
    }
    Ok(())
}

/// `consul-lite kv ...`
pub(crate) async fn kv(command: KvCommand) -> anyhow::Result<()> {
    match command {
        KvCommand::Get { client, recurse, keys, separator, detailed, key } => {
            kv_get(&client, &key, recurse, keys, &separator, detailed).await
        }
        KvCommand::Put { client, cas, modify_index, flags, acquire, release, session, key, value } => {
            let value = read_value(value.as_deref())?;
            let mut query = vec![format!("flags={flags}")];
            if cas {
                let Some(index) = modify_index else { bail!("Must specify -modify-index with -cas!") };
                query.push(format!("cas={index}"));
            }
            if acquire || release {
                let Some(session) = session else { bail!("Must specify -session with -acquire or -release") };
                query.push(format!("{}={}", if acquire { "acquire" } else { "release" }, encode_path(&session)));
            }
            let path = format!("/v1/kv/{}?{}", encode_path(&key), query.join("&"));
            let body = Client::new(&client).ok(Method::PUT, &path, Some(value)).await?;
            if body.trim_ascii() != b"true" {
                if cas {
                    bail!("Error! Did not write to {key}: CAS failed");
                }
                bail!(
                    "Error! Did not write to {key}: the lock was not {}",
                    if acquire { "acquired" } else { "released" }
                );
            }
            println!("Success! Data written to: {key}");
            Ok(())
        }
        KvCommand::Delete { client, recurse, cas, modify_index, key } => {
            let mut query = Vec::new();
            if recurse {
                query.push("recurse".to_owned());
            }
            if cas {
                let Some(index) = modify_index else { bail!("Must specify -modify-index with -cas!") };
                query.push(format!("cas={index}"));
            }
            let path = format!("/v1/kv/{}?{}", encode_path(&key), query.join("&"));
            let body = Client::new(&client).ok(Method::DELETE, &path, None).await?;
            if body.trim_ascii() != b"true" {
                bail!("Error! Did not delete key {key}: CAS failed");
            }
            if recurse {
                println!("Success! Deleted keys with prefix: {key}");
            } else {
                println!("Success! Deleted key: {key}");
            }
            Ok(())
        }
        KvCommand::Export { client, prefix } => {
            let answer = Client::new(&client)
                .send(Method::GET, &format!("/v1/kv/{}?recurse", encode_path(&prefix)), None)
                .await?;
            let rows: Vec<Value> = match answer.status {
                StatusCode::NOT_FOUND => Vec::new(),
                status if status.is_success() => serde_json::from_slice(&answer.body)?,
                status => bail!("Unexpected response code: {}", status.as_u16()),
            };
            let export: Vec<Value> = rows
                .iter()
                .map(|row| json!({ "key": row["Key"], "flags": row["Flags"], "value": row["Value"].as_str().unwrap_or("") }))
                .collect();
            println!("{}", serde_json::to_string_pretty(&export)?);
            Ok(())
        }
        KvCommand::Import { client, prefix, data } => {
            let bytes = read_value(Some(&data))?;
            let rows: Vec<Value> = serde_json::from_slice(&bytes).context("the import data is not a JSON export")?;
            let http = Client::new(&client);
            for row in rows {
                let key = format!("{prefix}{}", row["key"].as_str().context("an entry without a key")?);
                let value = BASE64.decode(row["value"].as_str().unwrap_or("")).context("a value that is not base64")?;
                let flags = row["flags"].as_u64().unwrap_or(0);
                http.ok(Method::PUT, &format!("/v1/kv/{}?flags={flags}", encode_path(&key)), Some(value)).await?;
                println!("Imported: {key}");
            }
            Ok(())
        }
    }
}

async fn kv_get(
    args: &ClientArgs,
    key: &str,
    recurse: bool,
    keys: bool,
    separator: &str,
    detailed: bool,
) -> anyhow::Result<()> {
    let client = Client::new(args);
    let query = if keys {
        format!("keys&separator={}", encode_path(separator))
    } else if recurse {
        "recurse".to_owned()
    } else {
        String::new()
    };
    if !keys && !recurse && key.is_empty() {
        bail!("Must specify a key (or -recurse / -keys)");
    }
    let answer = client.send(Method::GET, &format!("/v1/kv/{}?{query}", encode_path(key)), None).await?;
    if answer.status == StatusCode::NOT_FOUND {
        if keys || recurse {
            return Ok(());
        }
        bail!("Error! No key exists at: {key}");
    }
    if !answer.status.is_success() {
        bail!(
            "Unexpected response code: {} ({})",
            answer.status.as_u16(),
            String::from_utf8_lossy(&answer.body).trim()
        );
    }
    let value: Value = serde_json::from_slice(&answer.body)?;
    if keys {
        for key in value.as_array().into_iter().flatten() {
            println!("{}", key.as_str().unwrap_or_default());
        }
        return Ok(());
    }
    for row in value.as_array().into_iter().flatten() {
        let data = BASE64.decode(row["Value"].as_str().unwrap_or("")).unwrap_or_default();
        let text = String::from_utf8_lossy(&data);
        if detailed {
            for field in ["CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex", "Session"] {
                println!(
                    "{field:<15} {}",
                    row[field].as_str().map_or_else(|| row[field].to_string(), str::to_owned).replace("null", "-")
                );
            }
            println!("{:<15} {text}", "Value");
        } else if recurse {
            println!("{}:{text}", row["Key"].as_str().unwrap_or_default());
        } else {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
    }
    Ok(())
}

/// A value argument: `-` reads stdin, `@file` reads the file, else the text itself.
fn read_value(value: Option<&str>) -> anyhow::Result<Vec<u8>> {
    match value {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut data = Vec::new();
            std::io::stdin().read_to_end(&mut data).context("reading stdin")?;
            Ok(data)
        }
        Some(text) => match text.strip_prefix('@') {
            Some(path) => std::fs::read(path).with_context(|| format!("reading {path}")),
            None => Ok(text.as_bytes().to_vec()),
        },
    }
}
