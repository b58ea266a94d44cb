//! Error types: one enum per failure area.
//!
//! None of these errors change any state: a refused datagram or frame is simply not delivered, a
//! refused key operation leaves the keyring as it was.

use thiserror::Error;

/// Why a datagram or stream frame was refused.
///
/// Every variant maps to a short, stable label through [`DecodeError::reason`], meant for a
/// per-reason counter (`gossip_packets_refused_total{reason="checksum"}`).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends before the part of the envelope named by `need` bytes.
    #[error("datagram too short: {len} bytes, at least {need} needed")]
    TooShort {
        /// Bytes received.
        len: usize,
        /// Bytes the envelope needs up to the point where it ran out.
        need: usize,
    },
    /// The first byte is not the magic `'G'` (0x47): not a gossip packet at all.
    #[error("bad magic byte 0x{got:02x}, expected 0x47 ('G')")]
    BadMagic {
        /// The first byte received.
        got: u8,
    },
    /// The sender speaks a major protocol version this build does not understand.
    #[error("unsupported protocol version {major}.{minor}, this node speaks major version {ours}", ours = crate::PROTOCOL_MAJOR)]
    UnsupportedVersion {
        /// Major version of the packet.
        major: u8,
        /// Minor version of the packet.
        minor: u8,
    },
    /// The flags byte has bits set that this version does not know; they could change the layout.
    #[error("unknown envelope flags 0x{flags:02x}")]
    UnknownFlags {
        /// The flags byte received.
        flags: u8,
    },
    /// The packet belongs to another cluster (a different label).
    #[error("cluster label mismatch: expected {expected:?}, got {got:?}")]
    LabelMismatch {
        /// Our label.
        expected: String,
        /// The packet's label (invalid UTF-8 replaced by U+FFFD).
        got: String,
    },
    /// The CRC32 of a plaintext packet does not match its content: corrupted in flight.
    #[error("checksum mismatch: packet says 0x{expected:08x}, content hashes to 0x{computed:08x}")]
    Checksum {
        /// The checksum carried by the packet.
        expected: u32,
        /// The checksum computed over the received bytes.
        computed: u32,
    },
    /// The packet is encrypted but this node has no keyring.
    #[error("packet is encrypted but no keyring is configured")]
    EncryptedWithoutKeyring,
    /// The packet is encrypted and none of the installed keys opens it (wrong key, or tampered).
    #[error("no installed key decrypts the packet ({keys} tried)")]
    Decrypt {
        /// How many keys were tried.
        keys: usize,
    },
    /// The packet is plaintext but this node requires encryption.
    #[error("plaintext packet refused: a keyring is configured and encryption is required")]
    PlaintextRefused,
    /// The envelope is fine but the protobuf body does not decode.
    #[error("malformed message body: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The packet decodes but carries no message.
    #[error("packet carries no message")]
    Empty,
    /// A message decodes but has no body (none of the known kinds is set). This is also what a
    /// message kind added by a newer protocol version looks like to this node.
    #[error("message {index} of the packet has no body")]
    MissingBody {
        /// Position of the message in the packet (0 for a stream frame).
        index: usize,
    },
}

impl DecodeError {
    /// A short, stable snake_case label for counters and logs, e.g. `"checksum"`.
    ///
    /// The labels are part of the metrics interface: they do not change between releases.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "too_short",
            Self::BadMagic { .. } => "bad_magic",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::UnknownFlags { .. } => "unknown_flags",
            Self::LabelMismatch { .. } => "label_mismatch",
            Self::Checksum { .. } => "checksum",
            Self::EncryptedWithoutKeyring => "encrypted_without_keyring",
            Self::Decrypt { .. } => "decrypt",
            Self::PlaintextRefused => "plaintext_refused",
            Self::Malformed(_) => "malformed",
            Self::Empty => "empty",
            Self::MissingBody { .. } => "missing_body",
        }
    }
}

/// A key could not be built or a keyring operation was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// AES keys are 16, 24 or 32 bytes (AES-128, AES-192, AES-256).
    #[error("key must be 16, 24 or 32 bytes, got {len}")]
    InvalidLength {
        /// Length of the rejected key.
        len: usize,
    },
    /// The text is not standard base64 (with padding).
    #[error("key is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The key is not installed in the keyring.
    #[error("key {fingerprint} is not installed in the keyring")]
    NotInstalled {
        /// A short, non-secret identifier of the key, see [`Key::fingerprint`](crate::Key::fingerprint).
        fingerprint: String,
    },
    /// The primary key cannot be removed; make another key primary first.
    #[error("key {fingerprint} is the primary key and cannot be removed; use another key first")]
    RemovePrimary {
        /// A short, non-secret identifier of the key, see [`Key::fingerprint`](crate::Key::fingerprint).
        fingerprint: String,
    },
}

/// A [`Codec`](crate::Codec) could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The cluster label is longer than the 255 bytes its length byte can describe.
    #[error("cluster label is {len} bytes, at most 255 allowed")]
    LabelTooLong {
        /// Length of the rejected label in bytes.
        len: usize,
    },
}
