//! The messages of the server RPC: openraft's three RPCs, and requests a follower forwards to
//! the leader. Errors cross the wire as text (openraft's own error types carry values that do
//! not round-trip through a compact encoding), except a snapshot mismatch, which the leader acts on.

use openraft::error::SnapshotMismatch;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::types::{NodeId, TypeConfig};

/// What goes on the wire for every request: who sends it, which server (Raft id) it is meant
/// for, and the request. A server refuses an envelope addressed to another id with
/// [`Response::Refused`] and does nothing else with it: a server that came back at an old
/// address under a new id must not answer for its old identity.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The sender's Raft id.
    pub(crate) from: NodeId,
    /// The Raft id the sender believes is at the address it connected to.
    pub(crate) to: NodeId,
    pub(crate) request: Request,
}

/// A request from one server to another.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Work only the leader can do, sent by a follower on behalf of its caller.
    Forward(Forwarded),
    // Client agents (issue 14): requests from agents that hold no Raft state. The bytes are the
    // application's own encoding; the server hands them to its `ClientHandler`.
    /// One request, one [`Response::Client`] answer.
    Client(Vec<u8>),
    /// A subscription: the server answers with [`Response::Stream`] frames on this connection
    /// until either side closes it.
    Subscribe(Vec<u8>),
    /// What Raft state the server has (asked before a bootstrap, as Consul's servers ask each
    /// other for their latest index): answered with [`Response::Status`].
    Status,
}

/// What a follower asks the leader to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Forwarded {
    /// Append this command (postcard of the state machine's `Command`).
    Write(Vec<u8>),
    /// Confirm leadership with a quorum and answer the index a linearizable read must wait for.
    ReadIndex,
    /// Add a voter (as a learner first, then promoted).
    AddVoter { id: NodeId, addr: String },
    /// Remove a server from the configuration.
    RemovePeer { id: NodeId },
}

/// The answer to a [`Request`], of the same kind.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, String>),
    Vote(Result<VoteResponse<NodeId>, String>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, SnapshotFailure>),
    Forward(Result<ForwardReply, ForwardFailure>),
    /// The request was not looked at (any kind of request).
    Refused(Refusal),
    // Client agents (issue 14).
    /// The answer to [`Request::Client`]: the handler's bytes, or why there is none.
    Client(Result<Vec<u8>, String>),
    /// One item of a subscription ([`Request::Subscribe`]); an `Err` ends it.
    Stream(Result<Vec<u8>, String>),
    /// The answer to [`Request::Status`].
    Status(crate::consensus::PeerStatus),
}

/// Why a server refused a request without acting on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Refusal {
    /// The envelope was addressed to `addressed`, but this server is `actual` (its data dir was
    /// wiped and it came back under a new id, or the address now belongs to another server).
    WrongNode { addressed: NodeId, actual: NodeId },
}

/// Why an InstallSnapshot chunk was not taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum SnapshotFailure {
    /// The chunk does not follow what was received so far: the leader restarts the snapshot.
    Mismatch(SnapshotMismatch),
    Failed(String),
}

/// What the leader did with a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ForwardReply {
    Written { index: u64, response: Vec<u8> },
    ReadIndex(u64),
    MembershipChanged { index: u64 },
}

/// Why a forwarded request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ForwardFailure {
    /// The receiver is not (or no longer) the leader; it names the one it knows.
    NotLeader { leader: Option<(NodeId, String)> },
    /// The leader tried and failed.
    Failed(String),
}

#[cfg(test)]
mod tests {
    //! openraft's messages round-trip through postcard frames.

    use std::collections::{BTreeMap, BTreeSet};

    use openraft::error::SnapshotMismatch;
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
        VoteResponse,
    };
    use openraft::{
        BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta, SnapshotSegmentId,
        StoredMembership, Vote,
    };

    use super::*;
    use crate::rpc::frame;
    use crate::types::Entry;

    fn round_trip<T: Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(value: &T) -> T {
        let bytes = frame::encode(value, 1 << 20).unwrap();
        let (back, used) = frame::decode::<T>(&bytes, 1 << 20).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        // Same bytes again: nothing was lost on the way.
        assert_eq!(frame::encode(&back, 1 << 20).unwrap(), bytes);
        back
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn membership() -> Membership<NodeId, BasicNode> {
        Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([
                (1, BasicNode::new("127.0.0.1:8300")),
                (2, BasicNode::new("127.0.0.2:8300")),
                (3, BasicNode::new("127.0.0.3:8300")),
                (4, BasicNode::new("127.0.0.4:8300")),
            ]),
        )
    }

    #[test]
    fn openraft_messages_round_trip() {
        let entries = vec![
            Entry { log_id: log_id(2, 5), payload: EntryPayload::Blank },
            Entry { log_id: log_id(2, 6), payload: EntryPayload::Normal(vec![1, 2, 3]) },
            Entry { log_id: log_id(2, 7), payload: EntryPayload::Membership(membership()) },
        ];
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(log_id(1, 4)),
            entries,
            leader_commit: Some(log_id(2, 5)),
        };
        let Request::AppendEntries(back) = round_trip(&Request::AppendEntries(append.clone())) else {
            panic!("kind changed")
        };
        assert_eq!(format!("{back:?}"), format!("{append:?}"));

        let vote = VoteRequest::new(Vote::new(3, 2), Some(log_id(2, 7)));
        let Request::Vote(back) = round_trip(&Request::Vote(vote.clone())) else { panic!("kind changed") };
        assert_eq!(back, vote);

        let install = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(2, 1),
            meta: SnapshotMeta {
                last_log_id: Some(log_id(2, 7)),
                last_membership: StoredMembership::new(Some(log_id(2, 7)), membership()),
                snapshot_id: "2-7-0".into(),
            },
            offset: 64,
            data: vec![9; 64],
            done: false,
        };
        let Request::InstallSnapshot(back) = round_trip(&Request::InstallSnapshot(install.clone())) else {
            panic!("kind changed")
        };
        assert_eq!(back, install);

        let envelope = Envelope { from: 3, to: u64::MAX, request: Request::Vote(vote.clone()) };
        let back = round_trip(&envelope);
        assert_eq!((back.from, back.to), (3, u64::MAX));
        let Request::Vote(back) = back.request else { panic!("kind changed") };
        assert_eq!(back, vote);

        for forwarded in [
            Forwarded::Write(vec![0, 255]),
            Forwarded::ReadIndex,
            Forwarded::AddVoter { id: u64::MAX, addr: "[::1]:8300".into() },
            Forwarded::RemovePeer { id: 0 },
        ] {
            let Request::Forward(back) = round_trip(&Request::Forward(forwarded.clone())) else {
                panic!("kind changed")
            };
            assert_eq!(back, forwarded);
        }
    }

    #[test]
    fn openraft_answers_round_trip() {
        for answer in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(log_id(2, 6))),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(Vote::new(4, 3)),
        ] {
            let before = format!("{answer:?}");
            let Response::AppendEntries(Ok(back)) = round_trip(&Response::AppendEntries(Ok(answer))) else {
                panic!("kind changed")
            };
            assert_eq!(format!("{back:?}"), before);
        }
        let vote = VoteResponse::new(Vote::new(3, 2), Some(log_id(2, 7)), true);
        let Response::Vote(Ok(back)) = round_trip(&Response::Vote(Ok(vote.clone()))) else { panic!("kind changed") };
        assert_eq!(back, vote);
        let installed = InstallSnapshotResponse { vote: Vote::new_committed(2, 1) };
        let before = format!("{installed:?}");
        let Response::InstallSnapshot(Ok(back)) = round_trip(&Response::InstallSnapshot(Ok(installed))) else {
            panic!("kind changed")
        };
        assert_eq!(format!("{back:?}"), before);
        let mismatch = SnapshotMismatch {
            expect: SnapshotSegmentId { id: "a".into(), offset: 0 },
            got: SnapshotSegmentId { id: "b".into(), offset: 64 },
        };
        let Response::InstallSnapshot(Err(SnapshotFailure::Mismatch(back))) =
            round_trip(&Response::InstallSnapshot(Err(SnapshotFailure::Mismatch(mismatch.clone()))))
        else {
            panic!("kind changed")
        };
        assert_eq!(back, mismatch);
        let failure = ForwardFailure::NotLeader { leader: Some((2, "127.0.0.2:8300".into())) };
        let Response::Forward(Err(back)) = round_trip(&Response::Forward(Err(failure.clone()))) else {
            panic!("kind changed")
        };
        assert_eq!(back, failure);
        let refusal = Refusal::WrongNode { addressed: 3, actual: 4 };
        let Response::Refused(back) = round_trip(&Response::Refused(refusal.clone())) else { panic!("kind changed") };
        assert_eq!(back, refusal);
        // Client agents' messages (issue 14).
        let Request::Client(back) = round_trip(&Request::Client(vec![7, 0])) else { panic!("kind changed") };
        assert_eq!(back, [7, 0]);
        let Request::Subscribe(back) = round_trip(&Request::Subscribe(vec![1])) else { panic!("kind changed") };
        assert_eq!(back, [1]);
        let Response::Client(Err(back)) = round_trip(&Response::Client(Err("no".into()))) else {
            panic!("kind changed")
        };
        assert_eq!(back, "no");
        let Response::Stream(Ok(back)) = round_trip(&Response::Stream(Ok(vec![3; 3]))) else { panic!("kind changed") };
        assert_eq!(back, [3; 3]);
        let reply = ForwardReply::Written { index: 9, response: vec![1] };
        let Response::Forward(Ok(back)) = round_trip(&Response::Forward(Ok(reply.clone()))) else {
            panic!("kind changed")
        };
        assert_eq!(back, reply);
    }
}
