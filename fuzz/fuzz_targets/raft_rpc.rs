//! The consensus crate's server RPC decoder (frames carrying openraft's AppendEntries, Vote and
//! InstallSnapshot, and forwarded requests, each in an envelope naming the sender's and the
//! target's Raft ids; answers, refusals included) must never panic, whatever arrives, and must
//! refuse oversized frames from their header.
//!
//! Each input is decoded as a request and as a response, both as it is and behind a valid
//! header of the right length (so arbitrary bytes reach the postcard decoder). A request that
//! decodes must encode to a frame that decodes and encodes to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;

const MAX: u32 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let _ = consensus::wire::decode_request(data, MAX);
    let _ = consensus::wire::decode_response(data, MAX);

    let mut framed = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    framed.push(consensus::rpc::frame::VERSION);
    framed.extend_from_slice(data);
    let _ = consensus::wire::decode_response(&framed, MAX);
    if let Ok(Some(again)) = consensus::wire::reencode_request(&framed, MAX) {
        let twice = consensus::wire::reencode_request(&again, MAX)
            .expect("a re-encoded request decodes")
            .expect("a re-encoded request is whole");
        assert_eq!(again, twice);
    }
    // Oversized: refused from the header alone.
    if data.len() >= 4 && u32::from_be_bytes([data[0], data[1], data[2], data[3]]) > MAX {
        assert!(consensus::wire::decode_request(&data[..4], MAX).is_err());
    }
});
