//! The wire format of the gossip protocol: messages, the envelope around every datagram and
//! stream frame, compound packets within a byte budget, TCP framing, and an in-memory network for
//! tests.
//!
//! What this crate promises: every decoder ([`Codec::open`], [`Codec::decode_packet`],
//! [`Codec::decode_stream`], [`net::read_frame`]) returns a typed [`DecodeError`] or
//! [`net::FrameError`] on any input and never panics; every refusal has a stable counter label
//! ([`DecodeError::reason`]); a packet built with [`PacketBuilder`] never exceeds its budget.
//!
//! What it does not do: no protocol logic (who to probe, what to gossip, when to time out lives in
//! `swim` and `membership`), no timers, no socket loops. The `net` module (feature `tokio`, on by
//! default) only frames streams and binds sockets; the driver in `gossip-core` owns them. Without
//! the feature the crate is pure and sans-io, as the `swim` state machine needs it.
//!
//! # Data flow
//!
//! ```text
//!  send:  wire::Message ──encode_message──▶ bytes ──PacketBuilder::push_encoded──▶ Packet body
//!         Packet body ──Codec::seal──▶ datagram (≤ packet budget) ──▶ UDP
//!         wire::StreamMessage ──Codec::encode_stream──▶ frame ──net::write_frame──▶ TCP
//!
//!  recv:  UDP ──▶ datagram ──Codec::decode_packet──▶ Vec<wire::Message>  or DecodeError
//!         TCP ──net::read_frame──▶ frame ──Codec::decode_stream──▶ wire::StreamMessage
//! ```
//!
//! # Envelope
//!
//! Every datagram and every stream frame is one envelope. Offsets in bytes, `L` is the label
//! length:
//!
//! ```text
//!  0        1        2        3        4        5 .. 5+L
//! +--------+--------+--------+--------+--------+-------------------+
//! | magic  | major  | minor  | flags  |   L    | label (L bytes)   |   header, 5 + L bytes
//! | 'G'    |   1    |   0    |        |        | UTF-8, 0..=255    |
//! | 0x47   |        |        |        |        |                   |
//! +--------+--------+--------+--------+--------+-------------------+
//!  flags: bit 0 = encrypted; other bits must be zero.
//!
//! plaintext (flags bit 0 clear):
//! +-------------------------------+------------------------------+
//! | body (protobuf)               | CRC32 (IEEE), big-endian u32 |
//! |                               | over header + body           |
//! +-------------------------------+------------------------------+
//!
//! encrypted (flags bit 0 set):
//! +------------------+-------------------------------+------------------+
//! | nonce (12 bytes, | AES-GCM ciphertext of body    | GCM tag          |
//! | random)          | (same length as the body)     | (16 bytes)       |
//! +------------------+-------------------------------+------------------+
//!  key: the primary key of the keyring (AES-128/192/256 by key length);
//!  associated data: the header, bytes 0 .. 5+L (version, flags and label are authenticated).
//! ```
//!
//! The body is a protobuf `Packet` (datagrams) or `StreamMessage` (stream frames), see
//! `proto/gossip.proto`. A stream frame is additionally preceded by a big-endian `u32` length on
//! the TCP stream ([`net::write_frame`]), at most [`MAX_FRAME_LEN`] bytes.
//!
//! Overhead ([`Codec::overhead`]): `9 + L` bytes in plaintext, `33 + L` encrypted.
//!
//! A receiver refuses, in this order: fewer bytes than the header ([`DecodeError::TooShort`]),
//! a first byte other than `'G'` ([`DecodeError::BadMagic`]), a major version other than
//! [`PROTOCOL_MAJOR`] ([`DecodeError::UnsupportedVersion`]; any minor is accepted), unknown flag
//! bits ([`DecodeError::UnknownFlags`]), another cluster's label ([`DecodeError::LabelMismatch`],
//! also without encryption), an encrypted envelope without a keyring
//! ([`DecodeError::EncryptedWithoutKeyring`]), a plaintext envelope when a keyring is set
//! ([`DecodeError::PlaintextRefused`]), no room for the CRC32 or for nonce and tag
//! ([`DecodeError::TooShort`] again), a bad CRC32 ([`DecodeError::Checksum`]), a ciphertext no
//! installed key authenticates ([`DecodeError::Decrypt`]), then a body that is not valid protobuf
//! ([`DecodeError::Malformed`]), has no message ([`DecodeError::Empty`]) or a message of no known
//! kind ([`DecodeError::MissingBody`]).
//!
//! Nonces are drawn at random for every envelope, as memberlist does; with one key shared by the
//! whole cluster, rotate it ([`Keyring::use_key`]) long before the cluster has sent 2^32
//! encrypted envelopes with it.
//!
//! # Entry types
//!
//! - [`wire`]: the generated protobuf messages.
//! - [`Codec`]: seals and opens envelopes for one cluster label and an optional [`Keyring`] of
//!   [`Key`]s.
//! - [`HeaderCheck`] ([`Codec::header_check`]): the checks that need no key (version, label,
//!   encryption mode), for a stream reader to run on a frame's first `5 + L` bytes before it
//!   buffers the body.
//! - [`refusal`]: the small unauthenticated frame a node answers a refused stream with, naming
//!   the reason (wrong label, key, version, too large), read by [`net::request`] as
//!   [`net::FrameError::Refused`].
//! - [`PacketBuilder`] and [`encode_message`]: fill one datagram body within a byte budget.
//! - `net` (feature `tokio`): [`read_frame`](net::read_frame),
//!   [`write_frame`](net::write_frame), [`request`](net::request), [`bind`](net::bind).
//! - [`memnet::MemoryNetwork`]: an in-memory datagram network for tests.
//!
//! # Example
//!
//! ```
//! use gossip_transport::{wire, Codec, Key, Keyring};
//!
//! let mut rng = rand::rng();
//! let key = Key::generate(&mut rng);
//! let codec = Codec::new("prod")?.with_keyring(Keyring::new(key));
//!
//! let ping = wire::Message {
//!     body: Some(wire::message::Body::Ping(wire::Ping {
//!         seq: 1,
//!         target: "node-b".into(),
//!         source: "node-a".into(),
//!         buddy: None,
//!     })),
//! };
//! let datagram = codec.encode_packet(&[ping.clone()], &mut rng);
//! assert_eq!(codec.decode_packet(&datagram)?, [ping]);
//!
//! // Another cluster's packets are refused with a countable reason.
//! let other = Codec::new("test")?;
//! assert_eq!(other.decode_packet(&datagram).unwrap_err().reason(), "label_mismatch");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
// The crate documentation links to the `net` module, which only exists with the `tokio` feature;
// without it those links cannot resolve, and that is expected.
#![cfg_attr(not(feature = "tokio"), allow(rustdoc::broken_intra_doc_links))]

mod envelope;
mod error;
mod keyring;
pub mod memnet;
#[cfg(feature = "tokio")]
pub mod net;
mod packet;
pub mod refusal;

pub use envelope::{Codec, HeaderCheck, CRC_LEN, FLAG_ENCRYPTED, HEADER_LEN, MAGIC, MAX_LABEL_LEN};
pub use error::{CodecError, DecodeError, KeyError};
pub use keyring::{Key, Keyring};
pub use packet::{encode_message, PacketBuilder};
pub use refusal::{Refusal, RefusalReason};

/// Messages generated from `proto/gossip.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod wire {
    include!(concat!(env!("OUT_DIR"), "/gossip.v1.rs"));
}

/// Major protocol version. Envelopes with another major version are refused.
pub const PROTOCOL_MAJOR: u8 = 1;
/// Minor protocol version. Any minor version of the same major is accepted; a minor release only
/// adds protobuf fields older nodes skip. A new message kind is refused by older nodes
/// ([`DecodeError::MissingBody`]), so it may only be sent once every member advertises support
/// for it (`protocol_max` in `Alive`).
pub const PROTOCOL_MINOR: u8 = 0;
/// Default largest datagram, envelope included, in bytes: fits a 1500-byte Ethernet MTU with
/// room for IP and UDP headers (and some tunnelling).
pub const DEFAULT_PACKET_BUDGET: usize = 1400;
/// Largest TCP stream frame accepted by default, in bytes (20 MiB), envelope included.
pub const MAX_FRAME_LEN: usize = 20 * 1024 * 1024;
