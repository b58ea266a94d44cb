//! Encryption keys and the keyring used to seal and open encrypted packets.
//!
//! A [`Keyring`] holds one *primary* key, used to encrypt everything this node sends, and any
//! number of further installed keys, all of which are tried when a packet arrives. Rotating the
//! cluster key is the usual three steps (as with `serf keys`): install the new key everywhere,
//! make it primary everywhere ([`Keyring::use_key`]), remove the old one everywhere.

use std::fmt;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aes::{Aes128, Aes192, Aes256};
use aes_gcm::{AeadInPlace, Aes128Gcm, Aes256Gcm, AesGcm, Nonce, Tag};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::KeyError;

/// Length of the random nonce that precedes every ciphertext.
pub(crate) const NONCE_LEN: usize = 12;
/// Length of the AES-GCM authentication tag that ends every ciphertext.
pub(crate) const TAG_LEN: usize = 16;

type Aes192Gcm = AesGcm<Aes192, U12>;

/// An AES key of 16, 24 or 32 bytes (AES-128, AES-192 or AES-256 in GCM mode).
///
/// `Debug` and errors never show the key bytes, only its length and [`Key::fingerprint`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    bytes: [u8; 32],
    len: u8,
}

impl Key {
    /// A key from raw bytes; refuses any length other than 16, 24 or 32.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if !matches!(bytes.len(), 16 | 24 | 32) {
            return Err(KeyError::InvalidLength { len: bytes.len() });
        }
        let mut key = Self { bytes: [0; 32], len: bytes.len() as u8 };
        key.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(key)
    }

    /// A key from standard base64 with padding, the form `serf keygen` prints.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = BASE64.decode(text.trim())?;
        Self::from_bytes(&bytes)
    }

    /// The key as standard base64 with padding.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.as_bytes())
    }

    /// A new random 32-byte (AES-256) key. Pass a cryptographically secure RNG
    /// (`rand::rngs::OsRng`, `rand::rng()`), not a seeded test RNG.
    pub fn generate(rng: &mut dyn rand::RngCore) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self { bytes, len: 32 }
    }

    /// The raw key bytes (16, 24 or 32 of them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// A short identifier that is safe to log: the first four bytes, in hex, of the AES encryption
    /// of an all-zero block under this key (the "key check value" of payment systems). Two nodes
    /// show the same fingerprint exactly when they hold the same key (up to a 2^-32 collision).
    pub fn fingerprint(&self) -> String {
        let mut block = GenericArray::from([0u8; 16]);
        match self.len {
            16 => Aes128::new(GenericArray::from_slice(self.as_bytes())).encrypt_block(&mut block),
            24 => Aes192::new(GenericArray::from_slice(self.as_bytes())).encrypt_block(&mut block),
            _ => Aes256::new(GenericArray::from_slice(self.as_bytes())).encrypt_block(&mut block),
        }
        block[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn cipher(&self) -> Cipher {
        let bytes = self.as_bytes();
        match self.len {
            16 => Cipher::Aes128(Box::new(Aes128Gcm::new(GenericArray::from_slice(bytes)))),
            24 => Cipher::Aes192(Box::new(Aes192Gcm::new(GenericArray::from_slice(bytes)))),
            _ => Cipher::Aes256(Box::new(Aes256Gcm::new(GenericArray::from_slice(bytes)))),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("bits", &(usize::from(self.len) * 8))
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// An AES-GCM instance with its key schedule computed once, when the key is installed.
#[derive(Clone)]
enum Cipher {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<Aes256Gcm>),
}

impl Cipher {
    fn encrypt(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buffer: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = Nonce::from_slice(nonce);
        let tag = match self {
            Self::Aes128(c) => c.encrypt_in_place_detached(nonce, aad, buffer),
            Self::Aes192(c) => c.encrypt_in_place_detached(nonce, aad, buffer),
            Self::Aes256(c) => c.encrypt_in_place_detached(nonce, aad, buffer),
        };
        // AES-GCM refuses only plaintexts over 64 GiB; nothing this crate seals comes close.
        tag.expect("AES-GCM plaintext under 64 GiB").into()
    }

    fn decrypt(&self, nonce: &[u8], aad: &[u8], buffer: &mut [u8], tag: &[u8]) -> bool {
        let nonce = Nonce::from_slice(nonce);
        let tag = Tag::from_slice(tag);
        match self {
            Self::Aes128(c) => c.decrypt_in_place_detached(nonce, aad, buffer, tag),
            Self::Aes192(c) => c.decrypt_in_place_detached(nonce, aad, buffer, tag),
            Self::Aes256(c) => c.decrypt_in_place_detached(nonce, aad, buffer, tag),
        }
        .is_ok()
    }
}

#[derive(Clone)]
struct InstalledKey {
    key: Key,
    cipher: Cipher,
}

impl InstalledKey {
    fn new(key: Key) -> Self {
        let cipher = key.cipher();
        Self { key, cipher }
    }
}

/// The keys of one node: a primary key that seals outgoing packets, and every installed key
/// (primary included) tried in turn on incoming packets.
#[derive(Clone)]
pub struct Keyring {
    /// Installed keys, primary first, the rest in installation order. Never empty.
    keys: Vec<InstalledKey>,
}

impl Keyring {
    /// A keyring holding only `primary`.
    pub fn new(primary: Key) -> Self {
        Self { keys: vec![InstalledKey::new(primary)] }
    }

    /// Installs `key` so that packets sealed with it open here. Installing a key twice is a no-op.
    pub fn install(&mut self, key: Key) {
        if !self.contains(&key) {
            self.keys.push(InstalledKey::new(key));
        }
    }

    /// Makes the installed `key` the primary key, used to seal everything sent from now on.
    /// The previous primary stays installed.
    pub fn use_key(&mut self, key: &Key) -> Result<(), KeyError> {
        let index = self.position(key)?;
        let entry = self.keys.remove(index);
        self.keys.insert(0, entry);
        Ok(())
    }

    /// Removes an installed key. The primary key cannot be removed.
    pub fn remove(&mut self, key: &Key) -> Result<(), KeyError> {
        match self.position(key)? {
            0 => Err(KeyError::RemovePrimary { fingerprint: key.fingerprint() }),
            index => {
                self.keys.remove(index);
                Ok(())
            }
        }
    }

    /// The key that seals outgoing packets.
    pub fn primary(&self) -> &Key {
        &self.keys[0].key
    }

    /// All installed keys, primary first.
    pub fn keys(&self) -> impl Iterator<Item = &Key> + '_ {
        self.keys.iter().map(|entry| &entry.key)
    }

    /// Whether `key` is installed.
    pub fn contains(&self, key: &Key) -> bool {
        self.keys().any(|k| k == key)
    }

    /// Number of installed keys (at least one).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always `false`: a keyring holds at least its primary key.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn position(&self, key: &Key) -> Result<usize, KeyError> {
        self.keys().position(|k| k == key).ok_or_else(|| KeyError::NotInstalled { fingerprint: key.fingerprint() })
    }

    /// Encrypts `buffer` in place with the primary key and returns the tag.
    pub(crate) fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buffer: &mut [u8]) -> [u8; TAG_LEN] {
        self.keys[0].cipher.encrypt(nonce, aad, buffer)
    }

    /// Tries every installed key, primary first, on `sealed` (`ciphertext | tag`, nonce already
    /// split off). Returns the plaintext, or `None` if no key authenticates it.
    pub(crate) fn open(&self, nonce: &[u8], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (ciphertext, tag) = sealed.split_at(sealed.len().checked_sub(TAG_LEN)?);
        if nonce.len() != NONCE_LEN {
            return None;
        }
        let mut buffer = Vec::with_capacity(ciphertext.len());
        for entry in &self.keys {
            buffer.clear();
            buffer.extend_from_slice(ciphertext);
            if entry.cipher.decrypt(nonce, aad, &mut buffer, tag) {
                return Some(buffer);
            }
        }
        None
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("primary", self.primary()).field("installed", &self.keys.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::from_bytes(&[byte; 32]).expect("32-byte key")
    }

    #[test]
    fn key_lengths() {
        for len in [16, 24, 32] {
            let k = Key::from_bytes(&vec![7; len]).expect("valid length");
            assert_eq!(k.as_bytes().len(), len);
        }
        for len in [0, 1, 15, 17, 31, 33, 64] {
            let err = Key::from_bytes(&vec![7; len]).unwrap_err();
            assert!(matches!(err, KeyError::InvalidLength { len: l } if l == len));
            assert!(err.to_string().contains(&len.to_string()));
        }
    }

    #[test]
    fn base64_round_trip() {
        let k = Key::generate(&mut rand::rng());
        let text = k.to_base64();
        assert_eq!(Key::from_base64(&text).expect("own base64"), k);
        // The form `serf keygen` prints: 32 bytes, standard alphabet, padded.
        let serf = "HvY8ubRZMgafUOWvrOadwOckVa1wN3QWAo46FVKbVN8=";
        assert_eq!(Key::from_base64(serf).expect("serf key").as_bytes().len(), 32);
        assert!(matches!(Key::from_base64("not base64!"), Err(KeyError::Base64(_))));
        assert!(matches!(Key::from_base64("AAAA"), Err(KeyError::InvalidLength { len: 3 })));
    }

    #[test]
    fn debug_hides_key_bytes() {
        let k = Key::from_bytes(&[0xab; 16]).expect("16-byte key");
        let shown = format!("{k:?} {:?}", Keyring::new(k.clone()));
        assert!(!shown.contains("171"), "{shown}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(!shown.contains(&k.to_base64()), "{shown}");
        assert!(shown.contains(&k.fingerprint()), "{shown}");
    }

    #[test]
    fn fingerprint_is_stable_and_distinct() {
        assert_eq!(key(1).fingerprint(), key(1).fingerprint());
        assert_ne!(key(1).fingerprint(), key(2).fingerprint());
        assert_eq!(key(1).fingerprint().len(), 8);
        // Known answer: AES-128 of the zero block under the zero key is 66e94bd4ef8a2c3b...
        let zero = Key::from_bytes(&[0; 16]).expect("16-byte key");
        assert_eq!(zero.fingerprint(), "66e94bd4");
    }

    #[test]
    fn keyring_operations() {
        let mut ring = Keyring::new(key(1));
        assert_eq!(ring.primary(), &key(1));
        ring.install(key(2));
        ring.install(key(2));
        ring.install(key(3));
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.keys().cloned().collect::<Vec<_>>(), [key(1), key(2), key(3)]);

        ring.use_key(&key(3)).expect("installed");
        assert_eq!(ring.keys().cloned().collect::<Vec<_>>(), [key(3), key(1), key(2)]);

        assert!(matches!(ring.use_key(&key(9)), Err(KeyError::NotInstalled { .. })));
        let err = ring.remove(&key(3)).unwrap_err();
        assert!(matches!(err, KeyError::RemovePrimary { .. }));
        assert!(err.to_string().contains(&key(3).fingerprint()));
        assert!(matches!(ring.remove(&key(9)), Err(KeyError::NotInstalled { .. })));
        ring.remove(&key(1)).expect("not primary");
        assert_eq!(ring.keys().cloned().collect::<Vec<_>>(), [key(3), key(2)]);
    }

    #[test]
    fn seal_and_open_with_each_key_size() {
        for len in [16, 24, 32] {
            let ring = Keyring::new(Key::from_bytes(&vec![5; len]).expect("valid length"));
            let nonce = [9; NONCE_LEN];
            let mut buffer = b"hello".to_vec();
            let tag = ring.seal_in_place(&nonce, b"aad", &mut buffer);
            assert_ne!(buffer, b"hello");
            buffer.extend_from_slice(&tag);
            assert_eq!(ring.open(&nonce, b"aad", &buffer).as_deref(), Some(&b"hello"[..]));
            assert_eq!(ring.open(&nonce, b"other aad", &buffer), None);
            assert_eq!(ring.open(&nonce, b"aad", &buffer[..TAG_LEN - 1]), None);
        }
    }
}
