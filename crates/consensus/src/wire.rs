//! Entry points to the server RPC decoder for fuzzing and tests, without naming the messages.

use crate::rpc::frame::{self, FrameError};
use crate::rpc::message::{Envelope, Response};

/// Decodes the first frame in `buf` as a request (an envelope: sender, target id, request): `Ok(None)` if more bytes are needed, else
/// how many bytes the frame took.
pub fn decode_request(buf: &[u8], max_frame: u32) -> Result<Option<usize>, FrameError> {
    Ok(frame::decode::<Envelope>(buf, max_frame)?.map(|(_, used)| used))
}

/// Decodes the first frame in `buf` as a response: `Ok(None)` if more bytes are needed, else
/// how many bytes the frame took.
pub fn decode_response(buf: &[u8], max_frame: u32) -> Result<Option<usize>, FrameError> {
    Ok(frame::decode::<Response>(buf, max_frame)?.map(|(_, used)| used))
}

/// Decodes a request and encodes it again: a decoded frame must encode to the same bytes.
/// Returns the re-encoded frame.
pub fn reencode_request(buf: &[u8], max_frame: u32) -> Result<Option<Vec<u8>>, FrameError> {
    match frame::decode::<Envelope>(buf, max_frame)? {
        Some((request, _)) => frame::encode(&request, max_frame).map(Some),
        None => Ok(None),
    }
}
