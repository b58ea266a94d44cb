//! The envelope around every datagram and stream frame: magic, version, flags, cluster label,
//! then a CRC32-protected plaintext body or an AES-GCM ciphertext. See the crate documentation
//! for the byte layout.

use bytes::Bytes;
use prost::Message as _;

use crate::keyring::{Keyring, NONCE_LEN, TAG_LEN};
use crate::packet::encode_packet_body;
use crate::{wire, CodecError, DecodeError, PROTOCOL_MAJOR, PROTOCOL_MINOR};

/// First byte of every envelope: `'G'`.
pub const MAGIC: u8 = b'G';
/// Flag bit: the payload is an AES-GCM ciphertext (otherwise body and CRC32).
pub const FLAG_ENCRYPTED: u8 = 0x01;
/// Bytes before the label: magic, major, minor, flags, label length.
pub const HEADER_LEN: usize = 5;
/// Length of the CRC32 that ends a plaintext envelope.
pub const CRC_LEN: usize = 4;
/// Longest cluster label, in bytes (its length is one byte on the wire).
pub const MAX_LABEL_LEN: usize = 255;

/// Seals bodies into envelopes and opens received envelopes, for one cluster label and
/// optionally one keyring.
///
/// Without a keyring, envelopes are plaintext with a CRC32, and encrypted envelopes are refused.
/// With a keyring, everything sent is encrypted with the primary key, and plaintext envelopes are
/// refused. The label is checked either way.
///
/// `Codec` is cheap to clone relative to a packet's life (the label and the prepared ciphers),
/// but not free; share one per node.
#[derive(Clone, Debug)]
pub struct Codec {
    label: String,
    keyring: Option<Keyring>,
}

impl Codec {
    /// A plaintext codec for the cluster `label` (at most 255 bytes; may be empty).
    pub fn new(label: &str) -> Result<Self, CodecError> {
        if label.len() > MAX_LABEL_LEN {
            return Err(CodecError::LabelTooLong { len: label.len() });
        }
        Ok(Self { label: label.to_owned(), keyring: None })
    }

    /// The same codec, encrypting with `keyring` and refusing plaintext from now on.
    #[must_use]
    pub fn with_keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// The keyring, if encryption is on.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// The keyring for installing, using and removing keys, if encryption is on.
    pub fn keyring_mut(&mut self) -> Option<&mut Keyring> {
        self.keyring.as_mut()
    }

    /// The cluster label every envelope carries.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The key-free part of [`Codec::open`]'s checks, to run on a frame's header before its body
    /// is read. It does not follow later keyring changes, and needs not: whether a keyring is set
    /// never changes on a codec once built.
    pub fn header_check(&self) -> HeaderCheck {
        HeaderCheck { label: self.label.clone(), encrypted: self.keyring.is_some() }
    }

    /// Bytes the envelope adds around a body: `9 + label` in plaintext (header 5, CRC 4),
    /// `33 + label` encrypted (header 5, nonce 12, tag 16).
    pub fn overhead(&self) -> usize {
        let header = HEADER_LEN + self.label.len();
        match self.keyring {
            Some(_) => header + NONCE_LEN + TAG_LEN,
            None => header + CRC_LEN,
        }
    }

    /// The body budget that keeps a sealed datagram within `packet_budget` bytes, to pass to
    /// [`PacketBuilder::new`](crate::PacketBuilder::new). Zero if the envelope alone is larger.
    pub fn body_budget(&self, packet_budget: usize) -> usize {
        packet_budget.saturating_sub(self.overhead())
    }

    /// Wraps a raw protobuf body in the envelope. `rng` draws the nonce when encrypting (use a
    /// cryptographically secure RNG in production); it is not used for plaintext.
    pub fn seal(&self, body: &[u8], rng: &mut dyn rand::RngCore) -> Bytes {
        let mut out = Vec::with_capacity(self.overhead() + body.len());
        let flags = if self.keyring.is_some() { FLAG_ENCRYPTED } else { 0 };
        out.extend_from_slice(&[
            MAGIC,
            PROTOCOL_MAJOR,
            PROTOCOL_MINOR,
            flags,
            self.label.len() as u8, // checked <= 255 in `new`
        ]);
        out.extend_from_slice(self.label.as_bytes());
        let header_len = out.len();

        match &self.keyring {
            Some(keyring) => {
                let mut nonce = [0u8; NONCE_LEN];
                rng.fill_bytes(&mut nonce);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(body);
                let (aad, rest) = out.split_at_mut(header_len);
                let tag = keyring.seal_in_place(&nonce, aad, &mut rest[NONCE_LEN..]);
                out.extend_from_slice(&tag);
            }
            None => {
                out.extend_from_slice(body);
                let crc = crc32fast::hash(&out);
                out.extend_from_slice(&crc.to_be_bytes());
            }
        }
        Bytes::from(out)
    }

    /// Checks the envelope of a received datagram or frame and returns its body.
    pub fn open(&self, datagram: &[u8]) -> Result<Bytes, DecodeError> {
        let header_len = check_header(&self.label, self.keyring.is_some(), datagram)?;
        match &self.keyring {
            None => {
                let need = header_len + CRC_LEN;
                if datagram.len() < need {
                    return Err(too_short(datagram, need));
                }
                let (covered, crc) = datagram.split_at(datagram.len() - CRC_LEN);
                let expected = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
                let computed = crc32fast::hash(covered);
                if expected != computed {
                    return Err(DecodeError::Checksum { expected, computed });
                }
                Ok(Bytes::copy_from_slice(&covered[header_len..]))
            }
            Some(keyring) => {
                let need = header_len + NONCE_LEN + TAG_LEN;
                if datagram.len() < need {
                    return Err(too_short(datagram, need));
                }
                let (aad, payload) = datagram.split_at(header_len);
                let (nonce, sealed) = payload.split_at(NONCE_LEN);
                keyring.open(nonce, aad, sealed).map(Bytes::from).ok_or(DecodeError::Decrypt { keys: keyring.len() })
            }
        }
    }

    /// Encodes `messages` as one compound packet and seals it. The caller keeps the result within
    /// the packet budget, usually by filling a [`PacketBuilder`](crate::PacketBuilder) instead.
    pub fn encode_packet(&self, messages: &[wire::Message], rng: &mut dyn rand::RngCore) -> Bytes {
        self.seal(&encode_packet_body(messages), rng)
    }

    /// Opens a datagram and decodes its messages. A packet without messages, or with a message
    /// of no known kind, is refused.
    pub fn decode_packet(&self, datagram: &[u8]) -> Result<Vec<wire::Message>, DecodeError> {
        let body = self.open(datagram)?;
        let packet = wire::Packet::decode(body)?;
        if packet.messages.is_empty() {
            return Err(DecodeError::Empty);
        }
        if let Some(index) = packet.messages.iter().position(|m| m.body.is_none()) {
            return Err(DecodeError::MissingBody { index });
        }
        Ok(packet.messages)
    }

    /// Encodes and seals one stream message: the frame, without its length prefix.
    pub fn encode_stream(&self, msg: &wire::StreamMessage, rng: &mut dyn rand::RngCore) -> Bytes {
        self.seal(&msg.encode_to_vec(), rng)
    }

    /// Opens a stream frame (length prefix already removed) and decodes its message.
    pub fn decode_stream(&self, frame: &[u8]) -> Result<wire::StreamMessage, DecodeError> {
        let body = self.open(frame)?;
        let msg = wire::StreamMessage::decode(body)?;
        if msg.body.is_none() {
            return Err(DecodeError::MissingBody { index: 0 });
        }
        Ok(msg)
    }
}

/// Checks the header of an envelope without its payload: magic, version, flags, label, and
/// whether its encryption matches this side's (`encrypted`: a keyring is configured). Returns the
/// header length (`5 + label`). These checks need no key, so a stream reader can refuse a frame
/// of another cluster, version or encryption mode after its first `5 + L` bytes.
fn check_header(label: &str, encrypted: bool, datagram: &[u8]) -> Result<usize, DecodeError> {
    let Some(&[magic, major, minor, flags, label_len]) = datagram.get(..HEADER_LEN) else {
        return Err(too_short(datagram, HEADER_LEN));
    };
    if magic != MAGIC {
        return Err(DecodeError::BadMagic { got: magic });
    }
    if major != PROTOCOL_MAJOR {
        return Err(DecodeError::UnsupportedVersion { major, minor });
    }
    if flags & !FLAG_ENCRYPTED != 0 {
        return Err(DecodeError::UnknownFlags { flags });
    }
    let header_len = HEADER_LEN + usize::from(label_len);
    let Some(theirs) = datagram.get(HEADER_LEN..header_len) else {
        return Err(too_short(datagram, header_len));
    };
    if theirs != label.as_bytes() {
        return Err(DecodeError::LabelMismatch {
            expected: label.to_owned(),
            got: String::from_utf8_lossy(theirs).into_owned(),
        });
    }
    match (encrypted, flags & FLAG_ENCRYPTED != 0) {
        (false, true) => Err(DecodeError::EncryptedWithoutKeyring),
        (true, false) => Err(DecodeError::PlaintextRefused),
        _ => Ok(header_len),
    }
}

/// The checks of an envelope's header that need no key ([`Codec::header_check`]): what a stream
/// reader runs on the first `5 + L` bytes of a frame before it buffers the rest.
///
/// Holds the label and whether encryption is on, never key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderCheck {
    label: String,
    encrypted: bool,
}

impl HeaderCheck {
    /// The checks for a node of cluster `label` (at most 255 bytes) that encrypts (`encrypted`:
    /// it has a keyring) or not; the same as [`Codec::header_check`] of such a node's codec.
    pub fn new(label: &str, encrypted: bool) -> Result<Self, CodecError> {
        if label.len() > MAX_LABEL_LEN {
            return Err(CodecError::LabelTooLong { len: label.len() });
        }
        Ok(Self { label: label.to_owned(), encrypted })
    }

    /// Checks magic, version, flags, label and encryption mode, in the order
    /// [`Codec::open`] does, on the first bytes of an envelope (more bytes are ignored); returns
    /// the header length `5 + L`. With fewer than 5 bytes, or fewer than `5 + L`, the error is
    /// [`DecodeError::TooShort`] whose `need` says how many bytes the header has.
    pub fn check(&self, header: &[u8]) -> Result<usize, DecodeError> {
        check_header(&self.label, self.encrypted, header)
    }
}

fn too_short(datagram: &[u8], need: usize) -> DecodeError {
    DecodeError::TooShort { len: datagram.len(), need }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::{wire, Key};

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn key(byte: u8) -> Key {
        Key::from_bytes(&[byte; 32]).expect("32-byte key")
    }

    fn ping() -> wire::Message {
        wire::Message {
            body: Some(wire::message::Body::Ping(wire::Ping {
                seq: 42,
                target: "b".into(),
                source: "a".into(),
                buddy: None,
            })),
        }
    }

    fn plain(label: &str) -> Codec {
        Codec::new(label).expect("short label")
    }

    fn encrypted(label: &str, key: Key) -> Codec {
        plain(label).with_keyring(Keyring::new(key))
    }

    /// Asserts that `codec` refuses `datagram` and returns the error.
    fn refused(codec: &Codec, datagram: &[u8]) -> DecodeError {
        let err = codec.decode_packet(datagram).unwrap_err();
        assert!(!err.to_string().is_empty());
        err
    }

    #[test]
    fn layout_of_a_plain_envelope() {
        let sealed = plain("ab").seal(b"xyz", &mut rng());
        assert_eq!(&sealed[..7], b"G\x01\x00\x00\x02ab");
        assert_eq!(&sealed[7..10], b"xyz");
        let crc = crc32fast::hash(&sealed[..10]).to_be_bytes();
        assert_eq!(&sealed[10..], crc);
        assert_eq!(sealed.len(), 3 + plain("ab").overhead());
    }

    #[test]
    fn layout_of_an_encrypted_envelope() {
        let codec = encrypted("ab", key(1));
        let sealed = codec.seal(b"xyz", &mut rng());
        assert_eq!(&sealed[..7], b"G\x01\x00\x01\x02ab");
        assert_eq!(sealed.len(), 7 + 12 + 3 + 16);
        assert_eq!(sealed.len(), 3 + codec.overhead());
        assert!(!sealed.windows(3).any(|w| w == b"xyz"));
        assert_eq!(codec.open(&sealed).expect("own seal"), &b"xyz"[..]);
    }

    #[test]
    fn overhead_numbers() {
        assert_eq!(plain("").overhead(), 9);
        assert_eq!(plain("prod").overhead(), 13);
        assert_eq!(encrypted("", key(1)).overhead(), 33);
        assert_eq!(encrypted("prod", key(1)).overhead(), 37);
        assert_eq!(plain("").body_budget(1400), 1391);
        assert_eq!(plain("").body_budget(3), 0);
    }

    #[test]
    fn label_limits() {
        assert!(Codec::new(&"x".repeat(255)).is_ok());
        let err = Codec::new(&"x".repeat(256)).unwrap_err();
        assert!(matches!(err, CodecError::LabelTooLong { len: 256 }));
        assert!(err.to_string().contains("256"));
    }

    #[test]
    fn refuses_too_short() {
        let codec = plain("");
        for len in 0..HEADER_LEN {
            let err = refused(&codec, &b"G\x01\x00\x00\x00"[..len]);
            assert_eq!(err.reason(), "too_short");
        }
        // Header promises a label longer than the datagram.
        let err = refused(&codec, b"G\x01\x00\x00\x05ab");
        assert!(matches!(err, DecodeError::TooShort { len: 7, need: 10 }));
        // Plain envelope without room for the CRC.
        let err = refused(&codec, b"G\x01\x00\x00\x00abc");
        assert!(matches!(err, DecodeError::TooShort { len: 8, need: 9 }));
        // Encrypted envelope without room for nonce and tag.
        let codec = encrypted("", key(1));
        let err = refused(&codec, &[b'G', 1, 0, 1, 0, 0, 0, 0]);
        assert!(matches!(err, DecodeError::TooShort { len: 8, need: 33 }));
    }

    #[test]
    fn refuses_bad_magic() {
        let mut datagram = plain("").encode_packet(&[ping()], &mut rng()).to_vec();
        datagram[0] = b'X';
        let err = refused(&plain(""), &datagram);
        assert!(matches!(err, DecodeError::BadMagic { got: b'X' }));
        assert_eq!(err.reason(), "bad_magic");
    }

    #[test]
    fn refuses_other_major_accepts_other_minor() {
        let codec = plain("");
        let mut datagram = codec.encode_packet(&[ping()], &mut rng()).to_vec();
        datagram[2] = 9; // minor: accepted once the CRC is fixed up
        let n = datagram.len();
        let crc = crc32fast::hash(&datagram[..n - 4]).to_be_bytes();
        datagram[n - 4..].copy_from_slice(&crc);
        assert_eq!(codec.decode_packet(&datagram).expect("any minor"), [ping()]);

        datagram[1] = 2;
        let err = refused(&codec, &datagram);
        assert!(matches!(err, DecodeError::UnsupportedVersion { major: 2, minor: 9 }));
        assert_eq!(err.reason(), "unsupported_version");
    }

    #[test]
    fn refuses_unknown_flags() {
        let mut datagram = plain("").encode_packet(&[ping()], &mut rng()).to_vec();
        datagram[3] = 0x80;
        let err = refused(&plain(""), &datagram);
        assert!(matches!(err, DecodeError::UnknownFlags { flags: 0x80 }));
        assert_eq!(err.reason(), "unknown_flags");
    }

    #[test]
    fn refuses_other_label() {
        for (ours, theirs) in [("prod", "test"), ("", "test"), ("prod", ""), ("a", "ab")] {
            let datagram = plain(theirs).encode_packet(&[ping()], &mut rng());
            let err = refused(&plain(ours), &datagram);
            match &err {
                DecodeError::LabelMismatch { expected, got } => {
                    assert_eq!((expected.as_str(), got.as_str()), (ours, theirs));
                }
                other => panic!("expected a label mismatch, got {other:?}"),
            }
            assert_eq!(err.reason(), "label_mismatch");
        }
        // Checked with encryption too, before any decryption is attempted.
        let datagram = encrypted("test", key(1)).encode_packet(&[ping()], &mut rng());
        let err = refused(&encrypted("prod", key(1)), &datagram);
        assert_eq!(err.reason(), "label_mismatch");
    }

    #[test]
    fn header_check_refuses_without_the_body() {
        let frame = encrypted("prod", key(1)).encode_stream(
            &wire::StreamMessage { body: Some(wire::stream_message::Body::Error("x".into())) },
            &mut rng(),
        );
        let header = &frame[..HEADER_LEN + 4];
        assert_eq!(encrypted("prod", key(2)).header_check().check(header).expect("same label"), HEADER_LEN + 4);
        let reason = |codec: Codec, bytes: &[u8]| codec.header_check().check(bytes).unwrap_err().reason();
        assert_eq!(reason(encrypted("test", key(1)), header), "label_mismatch");
        assert_eq!(reason(plain("prod"), header), "encrypted_without_keyring");
        assert_eq!(reason(encrypted("prod", key(1)), &plain("prod").seal(b"", &mut rng())), "plaintext_refused");
        assert_eq!(reason(plain("prod"), &header[..HEADER_LEN + 2]), "too_short");
        assert_eq!(reason(plain("prod"), &header[..3]), "too_short");
        let mut newer = header.to_vec();
        newer[1] = PROTOCOL_MAJOR + 1;
        assert_eq!(reason(plain("prod"), &newer), "unsupported_version");
        // The same verdicts as opening the whole frame.
        assert_eq!(encrypted("test", key(1)).open(&frame).unwrap_err().reason(), "label_mismatch");
    }

    #[test]
    fn refuses_bad_checksum() {
        let codec = plain("prod");
        let good = codec.encode_packet(&[ping()], &mut rng());
        for i in 0..good.len() {
            let mut datagram = good.to_vec();
            datagram[i] ^= 0x10;
            // Flips in the header are caught by earlier checks; everything else by the CRC.
            if i >= 5 + 4 {
                let err = refused(&codec, &datagram);
                assert!(matches!(err, DecodeError::Checksum { .. }), "byte {i}: {err:?}");
                assert_eq!(err.reason(), "checksum");
            }
        }
    }

    #[test]
    fn refuses_encrypted_without_keyring() {
        let datagram = encrypted("", key(1)).encode_packet(&[ping()], &mut rng());
        let err = refused(&plain(""), &datagram);
        assert!(matches!(err, DecodeError::EncryptedWithoutKeyring));
        assert_eq!(err.reason(), "encrypted_without_keyring");
    }

    #[test]
    fn refuses_plaintext_with_keyring() {
        let datagram = plain("").encode_packet(&[ping()], &mut rng());
        let err = refused(&encrypted("", key(1)), &datagram);
        assert!(matches!(err, DecodeError::PlaintextRefused));
        assert_eq!(err.reason(), "plaintext_refused");
    }

    #[test]
    fn refuses_unknown_key_and_tampering() {
        let sender = encrypted("", key(1));
        let datagram = sender.encode_packet(&[ping()], &mut rng());

        let mut ring = Keyring::new(key(2));
        ring.install(key(3));
        let err = refused(&plain("").with_keyring(ring), &datagram);
        assert!(matches!(err, DecodeError::Decrypt { keys: 2 }));
        assert_eq!(err.reason(), "decrypt");

        // Any flipped bit after the header breaks authentication (the header is AAD).
        for i in 5..datagram.len() {
            let mut tampered = datagram.to_vec();
            tampered[i] ^= 0x01;
            assert_eq!(refused(&sender, &tampered).reason(), "decrypt", "byte {i}");
        }
    }

    #[test]
    fn header_is_authenticated() {
        // Changing the minor version (not checked by itself) must still break decryption.
        let sender = encrypted("", key(1));
        let mut datagram = sender.encode_packet(&[ping()], &mut rng()).to_vec();
        datagram[2] = 7;
        assert_eq!(refused(&sender, &datagram).reason(), "decrypt");
    }

    #[test]
    fn refuses_malformed_body() {
        let codec = plain("");
        let datagram = codec.seal(&[0xff, 0xff, 0xff], &mut rng());
        let err = refused(&codec, &datagram);
        assert!(matches!(err, DecodeError::Malformed(_)));
        assert_eq!(err.reason(), "malformed");
        let err = codec.decode_stream(&datagram).unwrap_err();
        assert_eq!(err.reason(), "malformed");
    }

    #[test]
    fn refuses_empty_packet_and_missing_body() {
        let codec = plain("");
        let err = refused(&codec, &codec.encode_packet(&[], &mut rng()));
        assert!(matches!(err, DecodeError::Empty));
        assert_eq!(err.reason(), "empty");

        let datagram = codec.encode_packet(&[ping(), wire::Message { body: None }], &mut rng());
        let err = refused(&codec, &datagram);
        assert!(matches!(err, DecodeError::MissingBody { index: 1 }));
        assert_eq!(err.reason(), "missing_body");

        let frame = codec.encode_stream(&wire::StreamMessage { body: None }, &mut rng());
        let err = codec.decode_stream(&frame).unwrap_err();
        assert!(matches!(err, DecodeError::MissingBody { index: 0 }));
    }

    #[test]
    fn stream_round_trip() {
        for codec in [plain("x"), encrypted("x", key(4))] {
            let msg = wire::StreamMessage { body: Some(wire::stream_message::Body::Error("too large".into())) };
            let frame = codec.encode_stream(&msg, &mut rng());
            assert_eq!(codec.decode_stream(&frame).expect("own frame"), msg);
        }
    }

    #[test]
    fn nonces_differ() {
        let codec = encrypted("", key(1));
        let mut rng = rng();
        let a = codec.seal(b"same", &mut rng);
        let b = codec.seal(b"same", &mut rng);
        assert_ne!(a, b);
    }

    #[test]
    fn reasons_are_distinct() {
        let errors = [
            DecodeError::TooShort { len: 0, need: 5 },
            DecodeError::BadMagic { got: 0 },
            DecodeError::UnsupportedVersion { major: 2, minor: 0 },
            DecodeError::UnknownFlags { flags: 2 },
            DecodeError::LabelMismatch { expected: String::new(), got: String::new() },
            DecodeError::Checksum { expected: 0, computed: 1 },
            DecodeError::EncryptedWithoutKeyring,
            DecodeError::Decrypt { keys: 1 },
            DecodeError::PlaintextRefused,
            DecodeError::Empty,
            DecodeError::MissingBody { index: 0 },
        ];
        let mut reasons: Vec<_> = errors.iter().map(DecodeError::reason).collect();
        reasons.push("malformed");
        let count = reasons.len();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), count);
        for reason in reasons {
            assert!(reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
