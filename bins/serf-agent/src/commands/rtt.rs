//! `rtt`: estimated round-trip time between two nodes, from their network coordinates.

use crate::cli::RttArgs;
use crate::rpc::api::RttResponse;
use crate::rpc::server::percent_encode;

use super::client;

pub(super) async fn run(args: RttArgs) -> anyhow::Result<()> {
    let mut path = format!("/v1/rtt?node={}", percent_encode(&args.node));
    if let Some(other) = &args.other {
        path.push_str(&format!("&node={}", percent_encode(other)));
    }
    let response: RttResponse = client(&args.rpc).get(&path).await?;
    println!("Estimated {} <-> {} rtt: {:.3} ms", response.from, response.to, response.rtt_ms);
    Ok(())
}
