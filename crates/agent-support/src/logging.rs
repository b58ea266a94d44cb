//! Logging: `tracing` to stderr at a level that can be changed at run time (SIGHUP), plus a
//! [`LogHub`] that feeds the agent's log records to `monitor` streams, each at its own level.
//!
//! ```text
//!  tracing events ──► registry ─┬─► fmt layer (stderr) ◄── reloadable EnvFilter (-log-level, SIGHUP)
//!                               └─► monitor layer ── broadcast ──► monitor streams
//!                                     enabled up to the most verbose level any stream asked for
//! ```

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter, LevelFilter};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, reload, Layer, Registry};

/// Log records buffered per monitor stream before a slow one skips some.
pub const MONITOR_BUFFER: usize = 1024;

/// Parse a log level (`trace`, `debug`, `info`, `warn`, `error`, Serf's `err`, `off`) or a
/// `tracing` filter with directives (`info,swim=debug`).
pub fn parse_filter(text: &str) -> Result<EnvFilter, String> {
    let text = text.trim();
    if let Some(level) = parse_level(text) {
        return Ok(EnvFilter::default().add_directive(level.into()));
    }
    if !text.contains(['=', ',']) {
        return Err("not a log level: use trace, debug, info, warn, error or a filter like info,swim=debug".to_owned());
    }
    EnvFilter::builder().parse(text).map_err(|error| format!("not a log filter: {error}"))
}

/// A plain level name.
pub fn parse_level(text: &str) -> Option<LevelFilter> {
    Some(match text.trim().to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" | "warning" => LevelFilter::WARN,
        "error" | "err" => LevelFilter::ERROR,
        "off" => LevelFilter::OFF,
        _ => return None,
    })
}

/// The installed logging: change the stderr level, reach the monitor hub.
#[derive(Clone)]
pub struct Logging {
    reload: reload::Handle<EnvFilter, Registry>,
    hub: LogHub,
}

impl Logging {
    /// Install the global subscriber, stderr at `level` (see [`parse_filter`]). Call once, early.
    pub fn init(level: &str) -> Result<Self, String> {
        Self::init_with(parse_filter(level)?)
    }

    /// Install the global subscriber, stderr filtered by `filter`. Call once, early.
    pub fn init_with(filter: EnvFilter) -> Result<Self, String> {
        let (filter, reload) = reload::Layer::new(filter);
        let hub = LogHub::new();
        let monitor_hub = hub.clone();
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::registry()
            .with(fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(filter))
            .with(
                MonitorLayer { hub: hub.clone() }
                    .with_filter(filter_fn(move |metadata| *metadata.level() <= monitor_hub.max_level())),
            )
            .try_init()
            .map_err(|error| format!("cannot install the logger: {error}"))?;
        Ok(Self { reload, hub })
    }

    /// Change the stderr log level (SIGHUP).
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let filter = parse_filter(level)?;
        self.reload.reload(filter).map_err(|error| format!("cannot change the log level: {error}"))
    }

    /// The hub monitor streams subscribe to.
    pub fn hub(&self) -> LogHub {
        self.hub.clone()
    }
}

/// One log record as `monitor` streams carry it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct LogRecord {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// `TRACE` .. `ERROR`.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The message followed by its fields as `key=value`.
    pub message: String,
}

/// Fan-out of log records to monitor streams. The monitor layer is enabled only up to the most
/// verbose level some stream asked for, so nobody pays for debug records nobody reads.
#[derive(Clone)]
pub struct LogHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    sender: broadcast::Sender<Arc<LogRecord>>,
    /// Open subscriptions per level, index = `level_index`.
    subscribers: Mutex<[usize; 6]>,
    /// The most verbose level subscribed, as `level_index`.
    max: AtomicUsize,
}

fn level_index(level: LevelFilter) -> usize {
    match level.into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(Level::TRACE) => 5,
    }
}

fn index_level(index: usize) -> LevelFilter {
    [LevelFilter::OFF, LevelFilter::ERROR, LevelFilter::WARN, LevelFilter::INFO, LevelFilter::DEBUG, LevelFilter::TRACE]
        [index.min(5)]
}

impl Default for LogHub {
    fn default() -> Self {
        Self::new()
    }
}

impl LogHub {
    /// A hub with no subscribers (the monitor layer is then disabled).
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(MONITOR_BUFFER);
        Self { inner: Arc::new(HubInner { sender, subscribers: Mutex::new([0; 6]), max: AtomicUsize::new(0) }) }
    }

    fn max_level(&self) -> LevelFilter {
        index_level(self.inner.max.load(Ordering::Relaxed))
    }

    /// Records at `level` and above from now on, until the subscription is dropped.
    pub fn subscribe(&self, level: LevelFilter) -> LogSubscription {
        let receiver = self.inner.sender.subscribe();
        let index = level_index(level);
        let mut subscribers = self.inner.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        subscribers[index] += 1;
        self.refresh(&subscribers);
        LogSubscription { hub: self.clone(), receiver, level, index }
    }

    fn refresh(&self, subscribers: &[usize; 6]) {
        let max = subscribers.iter().rposition(|count| *count > 0).unwrap_or(0);
        self.inner.max.store(max, Ordering::Relaxed);
        tracing::callsite::rebuild_interest_cache();
    }

    fn publish(&self, record: LogRecord) {
        if self.inner.sender.receiver_count() > 0 {
            let _ = self.inner.sender.send(Arc::new(record));
        }
    }
}

/// A monitor stream's view of the log.
pub struct LogSubscription {
    hub: LogHub,
    receiver: broadcast::Receiver<Arc<LogRecord>>,
    level: LevelFilter,
    index: usize,
}

impl LogSubscription {
    /// The next record at this subscription's level; `Err(n)` when `n` were skipped because the
    /// reader was too slow; `None` never (the hub lives as long as the process).
    pub async fn recv(&mut self) -> Result<Arc<LogRecord>, u64> {
        loop {
            match self.receiver.recv().await {
                Ok(record) => {
                    let wanted = record.level.parse::<Level>().map(|level| level <= self.level).unwrap_or(true);
                    if wanted {
                        return Ok(record);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => return Err(skipped),
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

impl Drop for LogSubscription {
    fn drop(&mut self) {
        let mut subscribers = self.hub.inner.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        subscribers[self.index] = subscribers[self.index].saturating_sub(1);
        self.hub.refresh(&subscribers);
    }
}

/// The layer that turns events into [`LogRecord`]s for the hub.
struct MonitorLayer {
    hub: LogHub,
}

impl<S: Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let metadata = event.metadata();
        self.hub.publish(LogRecord {
            time: rfc3339(SystemTime::now()),
            level: metadata.level().to_string(),
            target: metadata.target().to_owned(),
            message: visitor.finish(),
        });
    }
}

#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl MessageVisitor {
    fn finish(self) -> String {
        if self.fields.is_empty() {
            self.message
        } else if self.message.is_empty() {
            self.fields.trim_start().to_owned()
        } else {
            format!("{}{}", self.message, self.fields)
        }
    }
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

/// `2026-01-02T03:04:05.678Z` (RFC 3339, UTC, milliseconds).
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn levels_and_filters() {
        assert!(parse_filter("debug").is_ok());
        assert!(parse_filter("ERR").is_ok());
        assert!(parse_filter("info,swim=debug").is_ok());
        assert!(parse_filter("loud").unwrap_err().contains("not a log level"));
        assert!(parse_filter("swim=loud").is_err());
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let time = UNIX_EPOCH + Duration::from_millis(1_709_251_199_123); // 2024-02-29T23:59:59.123Z
        assert_eq!(rfc3339(time), "2024-02-29T23:59:59.123Z");
    }

    #[tokio::test]
    async fn hub_tracks_the_most_verbose_subscriber() {
        let hub = LogHub::new();
        assert_eq!(hub.max_level(), LevelFilter::OFF);
        let info = hub.subscribe(LevelFilter::INFO);
        let mut debug = hub.subscribe(LevelFilter::DEBUG);
        assert_eq!(hub.max_level(), LevelFilter::DEBUG);
        hub.publish(LogRecord { time: String::new(), level: "DEBUG".into(), target: "t".into(), message: "m".into() });
        assert_eq!(debug.recv().await.unwrap().message, "m");
        drop(debug);
        assert_eq!(hub.max_level(), LevelFilter::INFO);
        drop(info);
        assert_eq!(hub.max_level(), LevelFilter::OFF);
    }

    #[tokio::test]
    async fn a_slow_reader_skips_and_is_told_how_many() {
        let hub = LogHub::new();
        let mut slow = hub.subscribe(LevelFilter::INFO);
        let record = |n: usize| LogRecord {
            time: String::new(),
            level: "INFO".into(),
            target: "t".into(),
            message: n.to_string(),
        };
        // Publishing never waits for the reader: past the buffer, the oldest records go.
        for n in 0..MONITOR_BUFFER + 10 {
            hub.publish(record(n));
        }
        assert_eq!(slow.recv().await.unwrap_err(), 10);
        assert_eq!(slow.recv().await.unwrap().message, "10");
    }

    #[tokio::test]
    async fn a_subscription_gets_its_level_and_above_only() {
        let hub = LogHub::new();
        let mut warn = hub.subscribe(LevelFilter::WARN);
        let _debug = hub.subscribe(LevelFilter::DEBUG);
        for level in ["DEBUG", "INFO", "ERROR"] {
            hub.publish(LogRecord {
                time: String::new(),
                level: level.into(),
                target: "t".into(),
                message: level.into(),
            });
        }
        assert_eq!(warn.recv().await.unwrap().message, "ERROR");
    }
}
