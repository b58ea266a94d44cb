//! What the fuzz targets share: the codecs every input goes through.

use gossip_transport::{Codec, Key, Keyring};

/// A plaintext codec without label, one with a label, and one with a keyring whose primary key is
/// AES-256 and whose second installed key is `second_key` (16, 24 or 32 bytes), so that receive
/// tries more than one key.
pub fn codecs(second_key: &[u8]) -> [Codec; 3] {
    let mut ring = Keyring::new(Key::from_bytes(&[1; 32]).expect("valid key"));
    ring.install(Key::from_bytes(second_key).expect("valid key"));
    [
        Codec::new("").expect("valid label"),
        Codec::new("fuzz").expect("valid label"),
        Codec::new("fuzz").expect("valid label").with_keyring(ring),
    ]
}
