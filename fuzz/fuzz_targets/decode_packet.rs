//! Datagram decoding must never panic, whatever arrives.
//!
//! Each input is used twice:
//! 1. as a whole datagram, given to a plaintext codec without label, one with a label, and one
//!    with a keyring (envelope checks, CRC, decryption attempts);
//! 2. as a packet *body* sealed in a valid envelope (plaintext and encrypted), so that arbitrary
//!    bytes reach the protobuf decoder behind a correct checksum or authentication tag. What
//!    decodes there must re-encode and decode to the same messages.

#![no_main]

use gossip_transport_fuzz::codecs;
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let mut rng = StdRng::seed_from_u64(0);
    for codec in &codecs(&[2; 16]) {
        let _ = codec.decode_packet(data);

        let datagram = codec.seal(data, &mut rng);
        if let Ok(messages) = codec.decode_packet(&datagram) {
            let again = codec.encode_packet(&messages, &mut rng);
            assert_eq!(codec.decode_packet(&again).ok(), Some(messages));
        }
    }
});
