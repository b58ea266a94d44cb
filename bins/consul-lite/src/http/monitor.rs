//! `/v1/agent/monitor`: the agent's log lines as they are logged, until the client goes away
//! or the agent stops.
//!
//! As Consul: `?loglevel=` (default `info`; `trace`, `debug`, `info`, `warn`, `err`/`error`;
//! anything else is a 400 `Unknown log level: X`), plain-text lines
//! (`2026-01-02T03:04:05.678Z [INFO]  consul_lite::agent: message`) or, with `?logjson`, one
//! JSON object per line (`@timestamp`, `@level`, `@module`, `@message`). The ACL token is
//! checked before routing, as for every endpoint. Opening a stream is logged at debug level,
//! after it has subscribed: a debug stream's first line says that it is connected.
//!
//! A slow reader never holds the agent up: the log layer ([`agent_support::logging`]) keeps a
//! bounded buffer per stream, and a stream that falls behind skips the records it missed and
//! gets a `WARN` line saying how many. A client that stops reading altogether is dropped by
//! the HTTP layer's write timeout.

use std::time::SystemTime;

use agent_support::logging::{self, LogRecord};
use agent_support::ChannelBody;
use axum::body::Body;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Api, ApiError, ApiRequest, ApiResult, Reply};

/// Lines queued between the log subscription and the connection.
const LINE_BUFFER: usize = 64;

/// The module named on the line that reports skipped records.
const MONITOR_MODULE: &str = "consul_lite::monitor";

/// `GET /v1/agent/monitor`
pub(super) fn monitor(api: &Api, request: &ApiRequest) -> ApiResult {
    let level_text = request.query.get("loglevel").filter(|text| !text.is_empty()).unwrap_or("info");
    let level = logging::parse_level(level_text)
        .filter(|level| *level != tracing::level_filters::LevelFilter::OFF)
        .ok_or_else(|| ApiError::bad_request(format!("Unknown log level: {level_text}")))?;
    let json = request.query.has("logjson");
    let mut subscription = api.logs.subscribe(level);
    // The first line a debug stream gets: it is connected from here on.
    tracing::debug!(loglevel = %level, json, "monitor: stream opened");
    let mut stopping = api.stop.subscribe();
    let (lines, receiver) = mpsc::channel(LINE_BUFFER);
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                record = subscription.recv() => match record {
                    Ok(record) => format_line(&record, json),
                    Err(skipped) => format_line(&skipped_record(skipped), json),
                },
                () = lines.closed() => return,
                changed = stopping.wait_for(|stop| *stop) => {
                    let _ = changed;
                    return;
                }
            };
            if lines.send(line).await.is_err() {
                return;
            }
        }
    });
    let content_type = if json { "application/json" } else { "text/plain; charset=utf-8" };
    Ok(Reply::stream(content_type, Body::new(ChannelBody::new(receiver))))
}

fn skipped_record(skipped: u64) -> LogRecord {
    LogRecord {
        time: logging::rfc3339(SystemTime::now()),
        level: "WARN".to_owned(),
        target: MONITOR_MODULE.to_owned(),
        message: format!("monitor fell behind: {skipped} log lines skipped"),
    }
}

/// One line, as Consul's monitor writes it (hclog's text format, or its JSON format).
fn format_line(record: &LogRecord, json: bool) -> Bytes {
    let mut line = if json {
        serde_json::json!({
            "@timestamp": record.time,
            "@level": record.level.to_ascii_lowercase(),
            "@module": record.target,
            "@message": record.message,
        })
        .to_string()
    } else {
        let level = format!("[{}]", record.level.to_ascii_uppercase());
        format!("{} {level:<7} {}: {}", record.time, record.target, record.message)
    };
    line.push('\n');
    Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(level: &str) -> LogRecord {
        LogRecord {
            time: "2026-01-02T03:04:05.678Z".to_owned(),
            level: level.to_owned(),
            target: "consul_lite::agent".to_owned(),
            message: "member joined node=b".to_owned(),
        }
    }

    #[test]
    fn text_lines_as_hclog() {
        assert_eq!(
            format_line(&record("INFO"), false),
            "2026-01-02T03:04:05.678Z [INFO]  consul_lite::agent: member joined node=b\n"
        );
        assert_eq!(
            format_line(&record("ERROR"), false),
            "2026-01-02T03:04:05.678Z [ERROR] consul_lite::agent: member joined node=b\n"
        );
    }

    #[test]
    fn json_lines() {
        let line = format_line(&record("WARN"), true);
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["@level"], "warn");
        assert_eq!(value["@module"], "consul_lite::agent");
        assert_eq!(value["@message"], "member joined node=b");
        assert_eq!(value["@timestamp"], "2026-01-02T03:04:05.678Z");
        assert!(line.ends_with(b"\n"));
    }

    #[test]
    fn skipped_lines_say_how_many() {
        let line = format_line(&skipped_record(7), false);
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.contains("[WARN]  consul_lite::monitor: monitor fell behind: 7 log lines skipped"), "{text}");
    }
}
