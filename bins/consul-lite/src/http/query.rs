//! Query strings as Go's `url.Values` reads them, and the options every read takes:
//! consistency (`?stale`, `?consistent`) and blocking (`?index`, `?wait`).

use std::time::Duration;

use rand::Rng as _;
use service_registry::WatchTarget;

use super::{Api, ApiError, ApiMetrics};

/// A blocking query's wait when `?wait` is absent (Consul: 5 min).
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
/// The longest wait (Consul: 10 min); longer ones are cut to this.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(10 * 60);
/// Jitter up to wait / 16 is added, so that many clients do not all come back at once.
const JITTER_FRACTION: u32 = 16;

/// The parameters of a query string, in order, decoded. A parameter counts as present
/// whatever its value (`?recurse`, `?recurse=false` and `?recurse=` all recurse, as in
/// Consul).
#[derive(Debug, Default)]
pub(crate) struct QueryString {
    pairs: Vec<(String, String)>,
}

impl QueryString {
    /// Parses `a=1&b&c=%20`.
    pub(crate) fn parse(raw: &str) -> Self {
        let pairs = raw
            .split('&')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (name, value) = part.split_once('=').unwrap_or((part, ""));
                (percent_decode(name, true), percent_decode(value, true))
            })
            .collect();
        Self { pairs }
    }

    /// Whether the parameter is present, whatever its value.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// The parameter's first value (`""` for `?name`), as Go's `Values.Get`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The parameter's first value parsed as an unsigned integer; 400 naming the parameter.
    pub(crate) fn uint(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("Invalid ?{name}: {text:?} is not an unsigned integer"))),
        }
    }

    /// The parameter parsed as a bool, an empty value meaning true (Consul's `?passing`).
    pub(crate) fn flag_bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some("" | "1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!("Invalid ?{name}: {other:?} is not a boolean"))),
        }
    }

    /// The query re-encoded (for Consul's "Conflicting flags" message).
    pub(crate) fn encode(&self) -> String {
        let mut pairs: Vec<String> = self.pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
        pairs.sort();
        pairs.join("&")
    }
}

/// Decodes `%XX` escapes (and `+` as a space in a query); invalid escapes stay as they are,
/// invalid UTF-8 is replaced.
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The options of a read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadOptions {
    /// `?index`: block until the data's index is above it (0 or absent: do not block).
    pub(crate) index: u64,
    /// `?wait`, capped at [`MAX_WAIT`], jitter not included.
    pub(crate) wait: Duration,
}

impl ReadOptions {
    /// Parses `?stale`, `?consistent` (both at once is a 400), `?index`, `?wait`, with
    /// Consul's messages.
    pub(crate) fn parse(query: &QueryString) -> Result<Self, ApiError> {
        if query.has("stale") && query.has("consistent") {
            return Err(ApiError::bad_request("Cannot specify ?stale with ?consistent, conflicting semantics."));
        }
        let wait = match query.get("wait").filter(|w| !w.is_empty()) {
            None => DEFAULT_WAIT,
            Some(text) => crate::duration::parse(text)
                .map_err(|error| ApiError::bad_request(format!("Invalid wait time: {error}")))?,
        };
        let index = match query.get("index").filter(|i| !i.is_empty()) {
            None => 0,
            Some(text) => text
                .parse()
                .map_err(|_| ApiError::bad_request(format!("Invalid index: {text:?} is not an unsigned integer")))?,
        };
        Ok(Self { index, wait: wait.min(MAX_WAIT) })
    }

    /// Blocks while `target`'s index is at most `?index`, for at most the wait plus jitter.
    pub(crate) async fn block(&self, api: &Api, target: &WatchTarget) {
        if self.index == 0 {
            return;
        }
        ApiMetrics::count(&api.metrics.blocking_queries);
        let jitter_max = self.wait / JITTER_FRACTION;
        let jitter =
            if jitter_max.is_zero() { Duration::ZERO } else { rand::rng().random_range(Duration::ZERO..=jitter_max) };
        api.store.wait(target.clone(), self.index, self.wait + jitter).await;
    }

    /// Parses the options and blocks: what every blocking read starts with. With
    /// `?consistent`, then waits for the Raft barrier (the leader confirms it leads with a
    /// quorum, and this server applies everything committed before): the read that follows
    /// is linearizable. Default and `?stale` reads are of this server's state as it is.
    pub(crate) async fn parse_and_block(api: &Api, query: &QueryString, target: &WatchTarget) -> Result<(), ApiError> {
        Self::parse(query)?.block(api, target).await;
        if query.has("consistent") {
            api.store.consistent().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_flags_count_whatever_their_value() {
        let query = QueryString::parse("recurse=false&keys&separator=%2F&token=a+b");
        assert!(query.has("recurse"));
        assert!(query.has("keys"));
        assert_eq!(query.get("separator"), Some("/"));
        assert_eq!(query.get("token"), Some("a b"));
        assert!(!query.has("raw"));
    }

    #[test]
    fn options_are_checked_with_consuls_messages() {
        let both = ReadOptions::parse(&QueryString::parse("stale&consistent")).unwrap_err();
        assert_eq!(both.status, 400);
        assert!(ReadOptions::parse(&QueryString::parse("wait=5")).unwrap_err().message.starts_with("Invalid wait"));
        assert!(ReadOptions::parse(&QueryString::parse("index=x")).unwrap_err().message.starts_with("Invalid index"));
        let long = ReadOptions::parse(&QueryString::parse("index=3&wait=1h")).unwrap();
        assert_eq!((long.index, long.wait), (3, MAX_WAIT));
        assert_eq!(ReadOptions::parse(&QueryString::parse("")).unwrap().wait, DEFAULT_WAIT);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%zz%", false), "a/b%zz%");
        assert_eq!(percent_decode("a+b", false), "a+b");
    }
}
