//! `primary`: who is primary, as this agent sees it.

use crate::cli::FormatArgs;
use crate::rpc::api::PrimaryResponse;

use super::{client, is_json, print_json};

pub(super) async fn run(args: FormatArgs) -> anyhow::Result<()> {
    let view: PrimaryResponse = client(&args.rpc).get("/v1/primary").await?;
    if is_json(args.format) {
        return print_json(&view);
    }
    println!("node: {}", view.node);
    println!("role: {}", view.role);
    match (&view.primary, &view.since) {
        (Some(primary), Some(since)) => println!("primary: {primary} (since {since})"),
        (Some(primary), None) => println!("primary: {primary}"),
        (None, _) => println!("primary: none"),
    }
    println!("eligible: {}", view.eligible.join(", "));
    Ok(())
}
