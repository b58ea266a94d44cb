//! Thin tokio helpers: TCP stream framing, one-shot request/response, and binding the UDP and TCP
//! sockets of a node on one port. Everything else (which socket to read, when, what to answer) is
//! the driver's business.
//!
//! A stream frame is a big-endian `u32` length followed by that many bytes, one envelope
//! ([`Codec::encode_stream`](crate::Codec::encode_stream)):
//!
//! ```text
//! +----------------+---------------------------+
//! | len: u32 (BE)  | envelope (len bytes)      |
//! +----------------+---------------------------+
//! ```

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::refusal::Refusal;

/// Bytes of the length prefix before every frame.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// How many times [`bind`] retries when the TCP port picked for an ephemeral UDP port is taken.
const BIND_ATTEMPTS: usize = 10;

/// A frame could not be read, written or exchanged.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The underlying socket failed; a stream that ends in the middle of a frame shows up here as
    /// [`io::ErrorKind::UnexpectedEof`].
    #[error("stream i/o: {0}")]
    Io(#[from] io::Error),
    /// The length prefix announces more than the reader accepts (or a writer was given more than
    /// a `u32` can describe). Nothing of the payload was read.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced (or given) frame length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The exchange did not complete within its deadline.
    #[error("timed out")]
    Timeout,
    /// The peer closed the stream cleanly before the first byte of a frame.
    #[error("stream closed by the peer")]
    Closed,
    /// [`request`] only: the peer closed the stream without answering and without a refusal
    /// frame (an older peer, or a request it could not decode).
    #[error("the peer closed the stream without answering: wrong encryption key or cluster label? (its log says why)")]
    ClosedWithoutAnswer,
    /// [`request`] only: the peer answered with a refusal frame saying why it refused the request
    /// (see [`Refusal`]).
    #[error("refused by the peer: {0}")]
    Refused(Refusal),
}

/// Reads one length-prefixed frame. A length over `max` is refused with
/// [`FrameError::TooLarge`] before any payload is read or memory reserved for it; memory then
/// grows with the bytes actually received, not with the announced length.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Bytes, FrameError> {
    let mut prefix = [0u8; LENGTH_PREFIX_LEN];
    let mut filled = 0;
    while filled < LENGTH_PREFIX_LEN {
        match r.read(&mut prefix[filled..]).await? {
            0 if filled == 0 => return Err(FrameError::Closed),
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            n => filled += n,
        }
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut frame = Vec::with_capacity(len.min(64 * 1024));
    let read = (&mut *r).take(len as u64).read_to_end(&mut frame).await?;
    if read < len {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Bytes::from(frame))
}

/// Writes one frame with its length prefix and flushes. Prefix and frame go out in one write, so
/// Nagle's algorithm cannot hold the payload back behind a lone prefix.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> Result<(), FrameError> {
    let len =
        u32::try_from(frame.len()).map_err(|_| FrameError::TooLarge { len: frame.len(), max: u32::MAX as usize })?;
    let mut buffer = Vec::with_capacity(LENGTH_PREFIX_LEN + frame.len());
    buffer.extend_from_slice(&len.to_be_bytes());
    buffer.extend_from_slice(frame);
    w.write_all(&buffer).await?;
    w.flush().await?;
    Ok(())
}

/// Connects to `to`, sends `frame`, and reads one frame back (at most `max` bytes), all within
/// `timeout`. The connection is closed afterwards.
///
/// A [refusal frame](crate::refusal) in place of the answer is [`FrameError::Refused`]; a peer
/// that closes without answering is [`FrameError::ClosedWithoutAnswer`].
pub async fn request(to: SocketAddr, frame: &[u8], timeout: Duration, max: usize) -> Result<Bytes, FrameError> {
    let exchange = async {
        let mut stream = TcpStream::connect(to).await?;
        stream.set_nodelay(true)?;
        write_frame(&mut stream, frame).await?;
        match read_frame(&mut stream, max).await {
            Ok(answer) => match Refusal::decode(&answer) {
                Some(refusal) => Err(FrameError::Refused(refusal)),
                None => Ok(answer),
            },
            Err(FrameError::Closed) => Err(FrameError::ClosedWithoutAnswer),
            Err(error) => Err(error),
        }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| FrameError::Timeout)?
}

/// Binds a UDP socket and a TCP listener on the same address and port.
///
/// With port 0, the UDP socket picks a free port and the listener binds to the same one; if that
/// TCP port is taken, both are dropped and the pair is tried again, up to 10 times.
pub async fn bind(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(addr).await?;
        return Ok((udp, tcp));
    }
    let mut last_error = None;
    for _ in 0..BIND_ATTEMPTS {
        let udp = UdpSocket::bind(addr).await?;
        let picked = udp.local_addr()?;
        match TcpListener::bind(picked).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}
