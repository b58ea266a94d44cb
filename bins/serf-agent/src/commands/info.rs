//! `info` and `version`.

use crate::cli::FormatArgs;
use crate::rpc::api::InfoResponse;

use super::{client, is_json, print_json};

pub(super) async fn info(args: FormatArgs) -> anyhow::Result<()> {
    let info: InfoResponse = client(&args.rpc).get("/v1/info").await?;
    if is_json(args.format) {
        return print_json(&info);
    }
    for (section, values) in &info {
        println!("{section}:");
        for (key, value) in values {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            println!("\t{key} = {text}");
        }
    }
    Ok(())
}

pub(super) fn version() -> anyhow::Result<()> {
    println!("serf-agent v{}", env!("CARGO_PKG_VERSION"));
    let (major, minor) = crate::agent::WIRE_VERSION;
    println!("Gossip wire protocol: {major}.{minor}");
    Ok(())
}
