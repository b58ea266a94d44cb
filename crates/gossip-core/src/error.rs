//! Errors of the node: one enum per area (start, join, the other operations).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::NodeConfigError;

/// Why [`crate::Node::start`] failed. Nothing is left running when it does.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] NodeConfigError),
    /// The UDP socket or the TCP listener could not be bound.
    // The OS error is the `source`, not part of this message: reporters that print the chain
    // (anyhow's `{:#}`) would show it twice.
    #[error("cannot bind UDP and TCP to {addr}")]
    Bind {
        /// The address asked for ([`crate::NodeConfig::bind_addr`]).
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The bind address is unspecified, no `advertise_addr` is configured and no address could be
    /// found for this host.
    #[error("cannot choose an address to advertise for bind address {bind_addr}: {reason}; set advertise_addr")]
    NoAdvertiseAddr {
        /// The bind address.
        bind_addr: SocketAddr,
        /// Why no address was found.
        reason: String,
    },
    /// The OS random number generator failed (the node's RNG is seeded from it).
    #[error("cannot seed the random number generator: {0}")]
    Entropy(String),
}

/// Why [`crate::NodeHandle::join`] failed. The node keeps running either way, and may still learn of
/// the cluster later if another node joins it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The list of seeds was empty.
    #[error("no seeds to join")]
    NoSeeds,
    /// No seed answered a push-pull exchange in any attempt.
    #[error(
        "could not join any of the seeds {} after {attempts} attempt(s); last reasons: {}",
        format_addrs(.seeds),
        format_reasons(.reasons)
    )]
    Unreachable {
        /// The seeds tried (duplicates removed).
        seeds: Vec<SocketAddr>,
        /// Number of attempts made.
        attempts: u32,
        /// Why each seed failed in the last attempt.
        reasons: Vec<(SocketAddr, String)>,
    },
    /// The node was shut down.
    #[error("the node is shut down")]
    Stopped,
}

/// Why an operation of a running node ([`crate::NodeHandle::leave`], [`crate::NodeHandle::set_tags`],
/// [`crate::NodeHandle::broadcast_user`], [`crate::NodeHandle::stats`]) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node was shut down (or its driver task ended); nothing was done.
    #[error("the node is shut down")]
    Stopped,
    /// The leave was broadcast but not confirmed within the bound; the node counts as left
    /// locally and the others will learn it from gossip or by failure detection.
    #[error("leave not confirmed within {after:?}")]
    LeaveTimedOut {
        /// The bound waited.
        after: Duration,
    },
    /// A user payload too large to ride on a probe; nothing was queued.
    #[error("user payload of {len} bytes is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Size of the payload.
        len: usize,
        /// The limit ([`swim::Swim::max_user_payload`]).
        limit: usize,
    },
    /// [`crate::NodeHandle::force_leave`] refused (unknown member, or the local node); nothing
    /// was changed.
    #[error("force-leave refused: {0}")]
    ForceLeave(#[from] swim::ForceLeaveError),
    /// A keyring operation on a node started without a keyring (no encryption); nothing was
    /// changed.
    #[error("encryption is not enabled on this node: there is no keyring")]
    NoKeyring,
    /// The keyring refused the operation (a key not installed, removing the primary key);
    /// nothing was changed.
    #[error("keyring: {reason}")]
    Keyring {
        /// Why, naming the key by fingerprint.
        reason: String,
    },
}

fn format_addrs(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    format!("[{}]", list.join(", "))
}

fn format_reasons(reasons: &[(SocketAddr, String)]) -> String {
    if reasons.is_empty() {
        return "none".to_owned();
    }
    let list: Vec<String> = reasons.iter().map(|(addr, reason)| format!("{addr}: {reason}")).collect();
    list.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_error_names_seeds_and_reasons() {
        let seed: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let err = JoinError::Unreachable {
            seeds: vec![seed],
            attempts: 2,
            reasons: vec![(seed, "connection refused".into())],
        };
        let text = err.to_string();
        assert!(text.contains("[127.0.0.1:1]") && text.contains("2 attempt"), "{text}");
        assert!(text.contains("127.0.0.1:1: connection refused"), "{text}");
    }
}
