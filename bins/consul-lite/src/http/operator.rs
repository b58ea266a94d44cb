//! `/v1/operator/raft/configuration` and `/v1/operator/raft/peer`: the Raft configuration
//! as Consul shows it, and removing a server from it (`operator raft list-peers |
//! remove-peer`). A `-dev` agent is its own single server.

use super::{Api, ApiError, ApiRequest, ApiResult, Reply};
use crate::server::operator::{self, PeerRef, RaftConfiguration, RaftServer};
use crate::server::servers;

/// `GET /v1/operator/raft/configuration`.
pub(crate) fn configuration(api: &Api) -> ApiResult {
    let Some(raft) = api.store.raft() else {
        let this = RaftServer {
            id: api.info.node_id.clone(),
            node: api.info.node.clone(),
            address: api.info.server_addr.clone(),
            leader: true,
            protocol_version: "3".into(),
            voter: true,
            last_index: 0,
        };
        return Ok(Reply::json(&RaftConfiguration { servers: vec![this], index: 1 }));
    };
    let known = servers(&api.serf.members(), &api.info.datacenter);
    Ok(Reply::json(&operator::configuration(&raft.metrics(), &known)))
}

/// `DELETE /v1/operator/raft/peer?id=ID` or `?address=IP:PORT`: 200 once the leader removed
/// it (a server not in the configuration: nothing to do).
pub(crate) async fn remove_peer(api: &Api, request: &ApiRequest) -> ApiResult {
    let id = request.query.get("id").filter(|id| !id.is_empty());
    let address = request.query.get("address").filter(|address| !address.is_empty());
    let reference = match (id, address) {
        (Some(id), None) => PeerRef::Id(id.to_owned()),
        (None, Some(address)) => PeerRef::Address(address.to_owned()),
        _ => {
            return Err(ApiError::bad_request(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
            ))
        }
    };
    let Some(raft) = api.store.raft() else {
        return Err(ApiError::bad_request("a -dev agent has no Raft configuration to change"));
    };
    let known = servers(&api.serf.members(), &api.info.datacenter);
    let id = operator::resolve_peer(&reference, &raft.metrics(), &known)
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    raft.consensus().remove_peer(id).await.map_err(|error| ApiError::internal(error.to_string()))?;
    tracing::info!(id, ?reference, "removed a server from the Raft configuration (operator)");
    Ok(Reply::empty())
}
