//! `tags`: set and delete tags of the agent.

use anyhow::bail;

use crate::cli::TagsArgs;
use crate::rpc::api::{TagsRequest, TagsResponse};

use super::client;

pub(super) async fn run(args: TagsArgs) -> anyhow::Result<()> {
    if args.set.is_empty() && args.delete.is_empty() {
        bail!("nothing to do: give -set KEY=VALUE or -delete KEY");
    }
    let request = TagsRequest { set: args.set.iter().cloned().collect(), delete: args.delete.clone() };
    let _: TagsResponse = client(&args.rpc).post("/v1/tags", &request).await?;
    println!("Successfully updated agent tags");
    Ok(())
}
