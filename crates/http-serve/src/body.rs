//! Reading a request body within a size and a time.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Body;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is (or declared itself) larger than the limit; nothing was kept.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body did not arrive in time (a client sending slowly, or not at all).
    #[error("request body not received within {after:?}")]
    TimedOut {
        /// The time allowed.
        after: Duration,
    },
    /// The connection failed while the body was read.
    #[error("cannot read the request body: {0}")]
    Read(String),
}

/// Reads `body` whole, refusing it as soon as its declared length (`Content-Length`) or the bytes
/// received exceed `limit`, and giving up after `timeout`. Call it after authentication, so that
/// an unauthenticated client never makes the server buffer a body.
pub async fn read_body<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if usize::try_from(body.size_hint().lower()).map_or(true, |declared| declared > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::TimedOut { after: timeout }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge { limit }),
        Ok(Err(error)) => Err(BodyError::Read(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn bodies_within_the_limit_are_read_and_larger_ones_refused() {
        let ok = read_body(Full::new(Bytes::from_static(b"hello")), 5, Duration::from_secs(1)).await.unwrap();
        assert_eq!(ok, Bytes::from_static(b"hello"));
        let big = read_body(Full::new(Bytes::from_static(b"hello!")), 5, Duration::from_secs(1)).await;
        assert!(matches!(big, Err(BodyError::TooLarge { limit: 5 })), "{big:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_times_out() {
        let result = read_body(Never, 1024, Duration::from_secs(3)).await;
        assert!(matches!(result, Err(BodyError::TimedOut { .. })), "{result:?}");
    }

    /// A body whose bytes never come.
    struct Never;

    impl Body for Never {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }
}
