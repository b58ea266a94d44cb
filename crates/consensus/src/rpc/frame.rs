//! Frames on the server RPC stream: a 4-byte big-endian length, then that many bytes: a version
//! byte and the message in postcard. The length is checked against a bound before anything is
//! allocated; decoding never panics and says what was wrong.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The frame format version this build speaks. Version 2: every request is an envelope naming
/// the sender's and the target's Raft ids, and a server answers a request for another id with a
/// refusal. Version 1 (no ids) is refused: servers of both versions do not talk to each other.
pub const VERSION: u8 = 2;

/// Bytes before a frame's body: the length.
pub const HEADER_LEN: usize = 4;

/// A frame that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length in the header is over the bound (refused before reading the body).
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// The length the header announced (or the encoded size, when sending).
        len: u64,
        /// The bound.
        max: u32,
    },
    /// The header announced an empty frame: not even a version byte.
    #[error("empty frame: no version byte")]
    Empty,
    /// A version this build does not speak.
    #[error("frame version {got} is not supported (this server speaks version {VERSION})")]
    Version {
        /// The version byte received.
        got: u8,
    },
    /// The body is not a valid message.
    #[error("frame body ({len} bytes) does not decode: {reason}")]
    Decode {
        /// Body length.
        len: usize,
        /// What postcard said.
        reason: postcard::Error,
    },
    /// The message ended before the frame did.
    #[error("{extra} bytes left over after the message in a frame of {len} bytes")]
    Trailing {
        /// Unread bytes.
        extra: usize,
        /// Body length.
        len: usize,
    },
    /// The body did not arrive in time after its header.
    #[error("the {len} bytes of a frame did not arrive within {after:?} of its header")]
    BodyTimeout {
        /// Body length.
        len: usize,
        /// The bound.
        after: std::time::Duration,
    },
    /// A message that cannot be encoded (a bug, not bad input).
    #[error("message does not encode: {0}")]
    Encode(postcard::Error),
    /// The stream failed or closed.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `message` as one frame, refusing one over `max` bytes.
pub(crate) fn encode<T: Serialize>(message: &T, max: u32) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; HEADER_LEN];
    out.push(VERSION);
    let mut out = postcard::to_extend(message, out).map_err(FrameError::Encode)?;
    let len = (out.len() - HEADER_LEN) as u64;
    if len > u64::from(max) {
        return Err(FrameError::TooLarge { len, max });
    }
    out[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// The body length a header announces, checked against `max`.
pub fn body_len(header: [u8; HEADER_LEN], max: u32) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    if len > max {
        return Err(FrameError::TooLarge { len: u64::from(len), max });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    Ok(len as usize)
}

/// Decodes a frame body (version byte and message).
pub(crate) fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let Some((&version, message)) = body.split_first() else {
        return Err(FrameError::Empty);
    };
    if version != VERSION {
        return Err(FrameError::Version { got: version });
    }
    match postcard::take_from_bytes::<T>(message) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(FrameError::Trailing { extra: rest.len(), len: body.len() }),
        Err(reason) => Err(FrameError::Decode { len: body.len(), reason }),
    }
}

/// Decodes the first frame in `buf`: `Ok(None)` when more bytes are needed, else the message
/// and how many bytes it took.
pub(crate) fn decode<T: DeserializeOwned>(buf: &[u8], max: u32) -> Result<Option<(T, usize)>, FrameError> {
    let Some((header, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = body_len(*header, max)?;
    let Some(body) = rest.get(..len) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body)?, HEADER_LEN + len)))
}

/// Reads one frame. `Ok(None)` when the stream closed cleanly before a header.
pub(crate) async fn read<T, R>(reader: &mut R, max: u32) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    read_bounded(reader, max, None).await
}

/// Reads one frame; once its header is in, the body must arrive within `body_timeout`.
pub(crate) async fn read_bounded<T, R>(
    reader: &mut R,
    max: u32,
    body_timeout: Option<std::time::Duration>,
) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        filled += n;
    }
    let len = body_len(header, max)?;
    let mut body = vec![0u8; len];
    match body_timeout {
        None => reader.read_exact(&mut body).await.map(drop)?,
        Some(after) => match tokio::time::timeout(after, reader.read_exact(&mut body)).await {
            Ok(read) => read.map(drop)?,
            Err(_) => return Err(FrameError::BodyTimeout { len, after }),
        },
    }
    decode_body(&body).map(Some)
}

/// Writes one encoded frame and flushes.
pub(crate) async fn write<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> Result<(), FrameError> {
    writer.write_all(frame).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let frame = encode(&(1u64, "x".to_string(), vec![1u8, 2, 3]), 1024).unwrap();
        let (value, used) = decode::<(u64, String, Vec<u8>)>(&frame, 1024).unwrap().unwrap();
        assert_eq!(value, (1, "x".into(), vec![1, 2, 3]));
        assert_eq!(used, frame.len());
        assert!(decode::<(u64, String, Vec<u8>)>(&frame[..frame.len() - 1], 1024).unwrap().is_none());
    }

    #[test]
    fn oversized_refused_from_the_header_alone() {
        // Only the header is given: refusing it cannot have needed the body.
        let header = u32::MAX.to_be_bytes();
        let err = decode::<Vec<u8>>(&header, 1 << 20).unwrap_err();
        assert_eq!(err.to_string(), "frame of 4294967295 bytes is over the limit of 1048576 bytes");
        let err = encode(&vec![0u8; 100], 50).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { max: 50, .. }), "{err}");
    }

    #[test]
    fn typed_errors() {
        assert!(matches!(decode::<u8>(&[0, 0, 0, 0], 10), Err(FrameError::Empty)));
        assert!(matches!(decode::<u8>(&[0, 0, 0, 2, 9, 1], 10), Err(FrameError::Version { got: 9 })));
        assert!(matches!(decode::<u8>(&[0, 0, 0, 3, VERSION, 1, 2], 10), Err(FrameError::Trailing { extra: 1, .. })));
        assert!(matches!(decode::<String>(&[0, 0, 0, 3, VERSION, 5, b'a'], 10), Err(FrameError::Decode { .. })));
    }

    #[tokio::test]
    async fn stream_read_refuses_oversized_before_reading_the_body() {
        let (mut a, mut b) = tokio::io::duplex(64);
        // Announce 1 GiB and send nothing more: the reader must refuse at once, not wait.
        a.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
        let err = read::<Vec<u8>, _>(&mut b, 1 << 20).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
        drop(a);
        assert!(read::<Vec<u8>, _>(&mut b, 1 << 20).await.unwrap().is_none());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<crate::rpc::message::Request>(&bytes, 1 << 16);
            let _ = decode::<crate::rpc::message::Response>(&bytes, 1 << 16);
        }

        #[test]
        fn random_bodies_behind_a_valid_header_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let mut frame = (body.len() as u32 + 1).to_be_bytes().to_vec();
            frame.push(VERSION);
            frame.extend_from_slice(&body);
            let _ = decode::<crate::rpc::message::Request>(&frame, 1 << 16);
            let _ = decode::<crate::rpc::message::Response>(&frame, 1 << 16);
        }
    }
}
