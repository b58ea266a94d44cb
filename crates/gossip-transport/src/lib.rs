//! Wire format of the gossip protocol (skeleton; see the helper's task).

#![deny(missing_docs)]

/// Messages generated from `proto/gossip.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod wire {
    include!(concat!(env!("OUT_DIR"), "/gossip.v1.rs"));
}
