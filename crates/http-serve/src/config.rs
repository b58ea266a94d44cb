//! The serving limits.

use std::num::NonZeroUsize;
use std::time::Duration;

/// hyper's smallest read buffer; a smaller head limit would make it panic.
const MIN_HEADER_BYTES: usize = 8 * 1024;

/// The limits of [`serve`](crate::serve). Every field has a default that suits an agent's API on
/// loopback or a private network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Connections open at once, idle ones included (default 4096). At the limit a new client
    /// is served by closing the connection idle longest; when all are busy it waits in the listen
    /// backlog. Each open connection holds one file descriptor.
    pub max_connections: NonZeroUsize,
    /// A client must send a request's head (request line and headers) within this time after
    /// connecting, and after each response on a keep-alive connection, or the connection is
    /// closed (default 10 s).
    pub header_read_timeout: Duration,
    /// A response write that makes no progress for this long (a client that stopped reading)
    /// closes the connection (default 30 s). Streams that are idle but readable are not affected.
    pub write_stall_timeout: Duration,
    /// Largest request head accepted; larger ones get 431 (default 64 KiB, at least 8 KiB).
    pub max_header_bytes: usize,
    /// On shutdown, how long requests in flight get to finish before they are cut (default 5 s).
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_connections: NonZeroUsize::new(4096).unwrap_or(NonZeroUsize::MIN),
            header_read_timeout: Duration::from_secs(10),
            write_stall_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// A [`ServeConfig`] value that cannot work; the message names the field, the value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A timeout of zero would close every connection at once.
    #[error("{field}: {value:?} must be greater than zero")]
    ZeroTimeout {
        /// The field.
        field: &'static str,
        /// The value given.
        value: Duration,
    },
    /// The head limit is below hyper's smallest read buffer.
    #[error("max_header_bytes: {value} must be at least {min}")]
    HeaderLimitTooSmall {
        /// The value given.
        value: usize,
        /// The smallest allowed.
        min: usize,
    },
}

impl ServeConfig {
    /// The config, if every value can work.
    pub fn validate(self) -> Result<Self, ConfigError> {
        for (field, value) in
            [("header_read_timeout", self.header_read_timeout), ("write_stall_timeout", self.write_stall_timeout)]
        {
            if value.is_zero() {
                return Err(ConfigError::ZeroTimeout { field, value });
            }
        }
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(ConfigError::HeaderLimitTooSmall { value: self.max_header_bytes, min: MIN_HEADER_BYTES });
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(ServeConfig::default().validate().is_ok());
        let zero = ServeConfig { header_read_timeout: Duration::ZERO, ..ServeConfig::default() };
        assert_eq!(zero.validate().unwrap_err().to_string(), "header_read_timeout: 0ns must be greater than zero");
        let small = ServeConfig { max_header_bytes: 100, ..ServeConfig::default() };
        assert_eq!(small.validate().unwrap_err().to_string(), "max_header_bytes: 100 must be at least 8192");
    }
}
