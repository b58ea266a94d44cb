//! The refusal frame: what a node answers on a stream it refuses for a reason the requester can
//! act on (another cluster label, another key, another protocol version, a frame too large), so
//! that a node that cannot join says why instead of "the peer closed the stream".
//!
//! It is sent in place of an answer, with the usual length prefix, and then the stream is closed.
//! It is not an envelope (it cannot be: the two sides do not share a key or a label), so it is
//! neither encrypted nor authenticated, and carries nothing secret: a reason code and the
//! refusing node's protocol version, both of which a requester could learn anyway (every
//! envelope carries the version; an encrypted cluster is visible from the flags byte of its
//! packets).
//!
//! ```text
//!  0        1        2        3
//! +--------+--------+--------+--------+
//! | 'R'    | major  | minor  | reason |   4 bytes, after the u32 length prefix (= 4)
//! | 0x52   |        |        |  code  |
//! +--------+--------+--------+--------+
//! ```
//!
//! A refusal cannot be mistaken for an envelope: every envelope starts with `'G'` and is at least
//! 9 bytes. It is only ever sent on TCP, after the requester has sent at least one header (more
//! bytes than the refusal), once per connection: it cannot amplify anything, and a forged source
//! address never gets one. Datagrams are never answered with a refusal.

use std::fmt;

use crate::{DecodeError, PROTOCOL_MAJOR, PROTOCOL_MINOR};

/// First byte of a refusal frame: `'R'`.
pub const REFUSAL_MAGIC: u8 = b'R';
/// Length of a refusal frame, without its length prefix.
pub const REFUSAL_LEN: usize = 4;

/// Why a node refused a stream, as told to the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The frame's major protocol version is not the refusing node's.
    UnsupportedVersion,
    /// The frame carries another cluster label.
    LabelMismatch,
    /// No key installed on the refusing node opens the frame.
    KeyMismatch,
    /// The refusing node requires encryption and the frame is plaintext.
    EncryptionRequired,
    /// The refusing node has no keyring and the frame is encrypted.
    EncryptionNotEnabled,
    /// The frame is larger than the refusing node buffers before it can authenticate it.
    TooLarge,
    /// A code this build does not know (sent by a newer node).
    Other(u8),
}

impl RefusalReason {
    /// The reason for a frame refused with `error`, when it is one the requester can act on
    /// (`None` for corruption and garbage: bad magic, checksum, malformed body, ...).
    pub fn of(error: &DecodeError) -> Option<Self> {
        match error {
            DecodeError::UnsupportedVersion { .. } => Some(Self::UnsupportedVersion),
            DecodeError::LabelMismatch { .. } => Some(Self::LabelMismatch),
            DecodeError::Decrypt { .. } => Some(Self::KeyMismatch),
            DecodeError::PlaintextRefused => Some(Self::EncryptionRequired),
            DecodeError::EncryptedWithoutKeyring => Some(Self::EncryptionNotEnabled),
            _ => None,
        }
    }

    /// The same stable snake_case label as [`DecodeError::reason`] for the reasons that come from
    /// a decode error (`"label_mismatch"`, `"decrypt"`, ...), `"too_large"` and `"other"`.
    pub fn label(self) -> &'static str {
        match self {
            Self::UnsupportedVersion => "unsupported_version",
            Self::LabelMismatch => "label_mismatch",
            Self::KeyMismatch => "decrypt",
            Self::EncryptionRequired => "plaintext_refused",
            Self::EncryptionNotEnabled => "encrypted_without_keyring",
            Self::TooLarge => "too_large",
            Self::Other(_) => "other",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::UnsupportedVersion => 1,
            Self::LabelMismatch => 2,
            Self::KeyMismatch => 3,
            Self::EncryptionRequired => 4,
            Self::EncryptionNotEnabled => 5,
            Self::TooLarge => 6,
            Self::Other(code) => code,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::UnsupportedVersion,
            2 => Self::LabelMismatch,
            3 => Self::KeyMismatch,
            4 => Self::EncryptionRequired,
            5 => Self::EncryptionNotEnabled,
            6 => Self::TooLarge,
            code => Self::Other(code),
        }
    }
}

/// A refusal frame: the reason and the refusing node's protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: RefusalReason,
    /// The refusing node's major protocol version.
    pub major: u8,
    /// The refusing node's minor protocol version.
    pub minor: u8,
}

impl Refusal {
    /// A refusal for `reason`, from a node of this build's protocol version.
    pub fn new(reason: RefusalReason) -> Self {
        Self { reason, major: PROTOCOL_MAJOR, minor: PROTOCOL_MINOR }
    }

    /// The frame to send (without its length prefix).
    pub fn encode(&self) -> [u8; REFUSAL_LEN] {
        [REFUSAL_MAGIC, self.major, self.minor, self.reason.code()]
    }

    /// The refusal in `frame`, if it is one (`None` for anything else, an envelope included).
    pub fn decode(frame: &[u8]) -> Option<Self> {
        match *frame {
            [REFUSAL_MAGIC, major, minor, code] => Some(Self { reason: RefusalReason::from_code(code), major, minor }),
            _ => None,
        }
    }
}

impl fmt::Display for Refusal {
    /// Reads after "refused by the peer: ".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            RefusalReason::UnsupportedVersion => write!(
                f,
                "unsupported protocol version: the peer speaks {}.{}, this node {PROTOCOL_MAJOR}.{PROTOCOL_MINOR}",
                self.major, self.minor
            ),
            RefusalReason::LabelMismatch => {
                f.write_str("wrong cluster label: the peer's cluster label differs from this node's")
            }
            RefusalReason::KeyMismatch => {
                f.write_str("wrong encryption key: none of the peer's keys opens this node's frames")
            }
            RefusalReason::EncryptionRequired => {
                f.write_str("no encryption key: the peer requires encryption and this node has no keyring")
            }
            RefusalReason::EncryptionNotEnabled => {
                f.write_str("encryption not enabled on the peer: it has no keyring and this node encrypts")
            }
            RefusalReason::TooLarge => {
                f.write_str("the frame is larger than the peer buffers before authenticating it")
            }
            RefusalReason::Other(code) => write!(f, "reason code {code}, unknown to this version"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_never_an_envelope() {
        for code in 0..=u8::MAX {
            let refusal = Refusal::new(RefusalReason::from_code(code));
            assert_eq!(Refusal::decode(&refusal.encode()), Some(refusal));
            assert_eq!(refusal.reason.code(), code);
            assert!(!refusal.to_string().is_empty());
        }
        assert_eq!(Refusal::decode(b"G\x01\x00\x00"), None);
        assert_eq!(Refusal::decode(b"R\x01\x00"), None);
        assert_eq!(Refusal::decode(b"R\x01\x00\x02\x00"), None);
    }

    #[test]
    fn reasons_match_decode_errors() {
        let label = DecodeError::LabelMismatch { expected: "a".into(), got: "b".into() };
        assert_eq!(RefusalReason::of(&label), Some(RefusalReason::LabelMismatch));
        assert_eq!(RefusalReason::LabelMismatch.label(), label.reason());
        let decrypt = DecodeError::Decrypt { keys: 1 };
        assert_eq!(RefusalReason::of(&decrypt).map(RefusalReason::label), Some(decrypt.reason()));
        assert_eq!(RefusalReason::of(&DecodeError::Checksum { expected: 0, computed: 1 }), None);
    }
}
