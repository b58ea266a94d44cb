//! Stream frame decoding must never panic, whatever arrives.
//!
//! Each input is used twice, as in `decode_packet`: as a whole frame for a plaintext codec, a
//! labelled one and one with a keyring; and as a `StreamMessage` body sealed in a valid envelope,
//! so that arbitrary bytes reach the protobuf decoder. What decodes there must round-trip. The
//! key-free header check and the refusal-frame decoder run on every input too.

#![no_main]

use gossip_transport_fuzz::codecs;
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let mut rng = StdRng::seed_from_u64(0);
    let _ = gossip_transport::Refusal::decode(data);
    for codec in &codecs(&[2; 24]) {
        let _ = codec.decode_stream(data);
        // The key-free check a stream reader runs on the header first agrees with opening.
        if let Err(header) = codec.header_check().check(data) {
            assert_eq!(codec.open(data).err().map(|e| e.reason()), Some(header.reason()));
        }

        let frame = codec.seal(data, &mut rng);
        if let Ok(msg) = codec.decode_stream(&frame) {
            let again = codec.encode_stream(&msg, &mut rng);
            assert_eq!(codec.decode_stream(&again).ok(), Some(msg));
        }
    }
});
