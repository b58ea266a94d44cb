//! `event`, `query` and `reachability` (a query of its own).

use std::collections::BTreeMap;

use anyhow::bail;
use hyper::Method;
use serde::Serialize;

use crate::cli::{EventArgs, QueryArgs, ReachabilityArgs};
use crate::rpc::api::{EventRequest, QueryRequest, QueryStreamItem, ReachabilityResponse};

use super::{client, is_json, print_json};

pub(super) async fn event(args: EventArgs) -> anyhow::Result<()> {
    let request = EventRequest {
        name: args.name.clone(),
        payload: args.payload.clone(),
        payload_base64: None,
        coalesce: args.coalesce,
    };
    let _: serde_json::Value = client(&args.rpc).post("/v1/event", &request).await?;
    println!("Event '{}' dispatched! Coalescing enabled: {}", args.name, args.coalesce);
    Ok(())
}

/// What `query -format json` prints.
#[derive(Debug, Default, Serialize)]
struct QueryOutput {
    acks: Vec<String>,
    responses: BTreeMap<String, String>,
}

pub(super) async fn query(args: QueryArgs) -> anyhow::Result<()> {
    let request = QueryRequest {
        name: args.name.clone(),
        payload: args.payload.clone(),
        payload_base64: None,
        filter_nodes: args.node.clone(),
        filter_tags: args.tag.iter().cloned().collect(),
        request_ack: !args.no_ack,
        relay_factor: args.relay_factor,
        timeout: args.timeout.clone(),
    };
    let json = is_json(args.format);
    let mut output = QueryOutput::default();
    client(&args.rpc)
        .stream(Method::POST, "/v1/query", Some(&request), |line| {
            let item: QueryStreamItem = serde_json::from_str(line)?;
            match item {
                QueryStreamItem::Started { .. } if !json => println!("Query '{}' dispatched", args.name),
                QueryStreamItem::Started { .. } => {}
                QueryStreamItem::Ack { from } => {
                    if !json {
                        println!("Ack from '{from}'");
                    }
                    output.acks.push(from);
                }
                QueryStreamItem::Response { from, payload } => {
                    let text = payload.display();
                    if !json {
                        println!("Response from '{from}': {}", text.trim_end());
                    }
                    output.responses.insert(from, text);
                }
                QueryStreamItem::Done { acks, responses } => {
                    if !json {
                        println!("Total Acks: {acks}");
                        println!("Total Responses: {responses}");
                    }
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await?;
    if json {
        print_json(&output)?;
    }
    Ok(())
}

pub(super) async fn reachability(args: ReachabilityArgs) -> anyhow::Result<()> {
    let response: ReachabilityResponse = client(&args.rpc).post("/v1/reachability", &serde_json::json!({})).await?;
    if is_json(args.format) {
        print_json(&response)?;
    } else {
        println!("Total live members: {}", response.members);
        println!("Acknowledgements: {} within {} ms", response.acks.len(), response.timeout_ms);
        if args.verbose {
            for node in &response.acks {
                println!("\tAck from '{node}'");
            }
        }
        for node in &response.unknown {
            println!("Ack from '{node}', which this agent does not list as live");
        }
        if response.missing.is_empty() {
            println!("Successfully contacted all live nodes");
        } else {
            for node in &response.missing {
                println!("Missing ack from: {node}");
            }
        }
    }
    if !response.missing.is_empty() {
        bail!("{} live member(s) did not answer", response.missing.len());
    }
    Ok(())
}
