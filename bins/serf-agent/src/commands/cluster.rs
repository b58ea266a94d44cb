//! `join`, `leave`, `force-leave`.

use crate::cli::{ForceLeaveArgs, JoinArgs, RpcArgs};
use crate::rpc::api::{ForceLeaveRequest, JoinRequest, JoinResponse};

use super::client;

pub(super) async fn join(args: JoinArgs) -> anyhow::Result<()> {
    let request = JoinRequest { addrs: args.addrs.clone(), replay: args.replay };
    let response: JoinResponse = client(&args.rpc).post("/v1/join", &request).await?;
    println!("Successfully joined cluster by contacting {} nodes.", response.joined);
    Ok(())
}

pub(super) async fn leave(args: RpcArgs) -> anyhow::Result<()> {
    let _: serde_json::Value = client(&args).post("/v1/leave", &serde_json::json!({})).await?;
    println!("Graceful leave complete");
    Ok(())
}

pub(super) async fn force_leave(args: ForceLeaveArgs) -> anyhow::Result<()> {
    let request = ForceLeaveRequest { node: args.node.clone(), prune: args.prune };
    let _: serde_json::Value = client(&args.rpc).post("/v1/force-leave", &request).await?;
    Ok(())
}
