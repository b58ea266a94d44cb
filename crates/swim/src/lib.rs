//! The SWIM failure detector with the Lifeguard extensions, as a sans-io state machine.
//! (API contract; implementation in progress.)

#![deny(missing_docs)]

mod api;
mod config;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
pub use membership::{Incarnation, Member, State, Tags, TagsError};

pub use api::{Event, LocalNode, StreamId, Transmit, TransmitKind};
pub use config::{Config, ConfigError, Lifeguard};

/// Counters of what the node did; read with [`Swim::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Bytes of datagrams sent.
    pub bytes_sent: u64,
    /// Datagrams received (valid or not).
    pub packets_received: u64,
    /// Bytes of datagrams received.
    pub bytes_received: u64,
    /// Packets dropped by reason (decode errors, wrong cluster, ...).
    pub dropped: std::collections::BTreeMap<&'static str, u64>,
    /// Probes started.
    pub probes: u64,
    /// Probes that ended without an ack.
    pub probes_failed: u64,
    /// Suspicions this node started.
    pub suspicions: u64,
    /// Times this node refuted news about itself.
    pub refutations: u64,
    /// Members this node declared dead.
    pub declared_dead: u64,
}

/// One node's failure detector and membership state. See the crate docs.
#[derive(Debug)]
pub struct Swim {
    _private: (),
}

impl Swim {
    /// A node that knows only itself. `seed` seeds its RNG; `now` is the current time.
    pub fn new(config: Config, local: LocalNode, seed: u64, now: Instant) -> Result<Self, ConfigError> {
        let _ = (config, local, seed, now);
        todo!()
    }
    /// Start push-pull exchanges with each seed; [`Event::JoinSucceeded`] / [`Event::JoinFailed`]
    /// report each outcome.
    pub fn join(&mut self, seeds: &[SocketAddr], now: Instant) {
        let _ = (seeds, now);
        todo!()
    }
    /// Leave gracefully: broadcast it; [`Event::LeaveComplete`] tells when it has gone out. The
    /// node keeps answering probes until the driver stops calling it.
    pub fn leave(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }
    /// Change the local tags and broadcast them.
    pub fn set_tags(&mut self, tags: Tags, now: Instant) {
        let _ = (tags, now);
        todo!()
    }
    /// Broadcast an application payload by gossip. With `key`, a newer payload with the same key
    /// replaces one still queued.
    pub fn broadcast_user(&mut self, key: Option<&str>, payload: Bytes) {
        let _ = (key, payload);
        todo!()
    }
    /// Encrypt with this keyring from now on (every installed key is tried on receive).
    pub fn set_keyring(&mut self, keyring: gossip_transport::Keyring) {
        let _ = keyring;
        todo!()
    }
    /// The keyring in force, if encryption is on.
    pub fn keyring_mut(&mut self) -> Option<&mut gossip_transport::Keyring> {
        todo!()
    }
    /// A datagram arrived.
    pub fn handle_packet(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let _ = (from, bytes, now);
        todo!()
    }
    /// A stream frame arrived from a peer that opened a stream; returns the frame to answer with.
    #[must_use]
    pub fn handle_stream_request(&mut self, from: SocketAddr, frame: &[u8], now: Instant) -> Option<Bytes> {
        let _ = (from, frame, now);
        todo!()
    }
    /// The answer (or failure) of a [`TransmitKind::StreamRequest`].
    pub fn handle_stream_response(&mut self, id: StreamId, response: Result<&[u8], String>, now: Instant) {
        let _ = (id, response, now);
        todo!()
    }
    /// Time passed: run the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }
    /// The next thing to send. Call until `None` after every `handle_*` and command.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }
    /// The next event. Call until `None` after every `handle_*` and command.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }
    /// When [`Swim::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
    /// All members, tombstones included.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        std::iter::empty()
    }
    /// This node.
    pub fn local_member(&self) -> &Member {
        todo!()
    }
    /// Counters.
    pub fn stats(&self) -> &Stats {
        todo!()
    }
    /// The configuration in force.
    pub fn config(&self) -> &Config {
        todo!()
    }
}
