//! The process's file-descriptor limit: every open connection holds one.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Where a raise stops when the hard limit is unlimited.
const UNLIMITED_TARGET: u64 = 1 << 20;

/// Raises the soft limit on open files to the hard limit, as Go programs (Serf, Consul) do at
/// start, so that idle clients run out of connection slots, which are evicted, before the agent
/// runs out of file descriptors. Returns the soft limit in force afterwards (`None`: unlimited).
pub fn raise_fd_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.unwrap_or(UNLIMITED_TARGET);
    match limit.current {
        Some(current) if current < target => {
            let raised = Rlimit { current: Some(target), maximum: limit.maximum };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => Some(target),
                Err(error) => {
                    tracing::debug!(%error, current, target, "cannot raise the open-files limit");
                    Some(current)
                }
            }
        }
        current => current,
    }
}

/// `wanted` connections, or half the soft file-descriptor limit if that is lower (the other half
/// is the process's own: sockets, files, other servers).
pub(crate) fn connection_capacity(wanted: usize) -> usize {
    match getrlimit(Resource::Nofile).current {
        Some(soft) => wanted.min(usize::try_from(soft / 2).unwrap_or(usize::MAX)).max(1),
        None => wanted,
    }
}
