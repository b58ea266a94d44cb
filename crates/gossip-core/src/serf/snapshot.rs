//! Snapshots, as Serf's `Snapshotter`: an append-only text file of what a restarted node needs
//! to come back on its own: who was alive (to re-join them), the three Lamport clocks (so that
//! old events are not delivered again), this node's network coordinate, and whether it left.
//!
//! ```text
//! alive: web-2 10.0.0.2:7946      a member joined (the name is everything before the last space)
//! not-alive: web-3                a member failed or left
//! clock: 12                       member clock (last time seen)
//! event-clock: 40                 newest user event delivered
//! query-clock: 7                  newest query delivered
//! coordinate: {"Vec":[..],"Error":0.2,"Adjustment":0.0,"Height":0.0001}
//! leave                           this node left gracefully: forget the members and clocks
//! # comment
//! ```
//!
//! Writes happen off the hot path: the serf task hands [`Record`]s to a dedicated thread through
//! a bounded channel (a full channel drops the record and counts it, as Serf does); the thread
//! buffers them, flushes at least every 500 ms, fsyncs on leave and at shutdown, and compacts the
//! file (rewrites it with only the current state, then renames it over the old one) when it
//! grows past twice the size its state needs (at least 128 KiB).
//!
//! Replay ignores unknown lines and a last line cut short by a crash. Unlike current Serf,
//! which ignores `coordinate:` lines, the coordinate is restored (older Serf did this): a
//! restarted node starts from where it was rather than from the origin.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, BufWriter, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::coordinate::Coordinate;

/// Buffered lines are written out at least this often.
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Records waiting for the writer thread; more are dropped (and counted).
const QUEUE: usize = 1024;
/// Compaction never happens below this size.
const MIN_COMPACT_SIZE: u64 = 128 * 1024;
/// Estimated bytes per alive member in a compacted file.
const BYTES_PER_NODE: u64 = 128;

/// One thing to write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Alive { name: String, addr: SocketAddr },
    NotAlive { name: String },
    Clock(u64),
    EventClock(u64),
    QueryClock(u64),
    Coordinate(Coordinate),
    Leave,
}

/// What a snapshot file said.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Replayed {
    /// Members alive at the end, by name.
    pub(crate) alive: BTreeMap<String, SocketAddr>,
    pub(crate) clock: u64,
    pub(crate) event_clock: u64,
    pub(crate) query_clock: u64,
    pub(crate) coordinate: Option<Coordinate>,
    /// The node had left (and `rejoin_after_leave` was off): alive members and clocks were
    /// cleared by the `leave` line.
    pub(crate) left: bool,
}

/// Characters of an ignored snapshot line shown in the warning (a corrupt line can be kilobytes
/// of binary).
const LINE_PREVIEW_CHARS: usize = 64;

/// The start of a snapshot line for a log: at most [`LINE_PREVIEW_CHARS`] characters, escaped as
/// a Rust string, with `...` when cut.
struct LinePreview<'a>(&'a str);

impl std::fmt::Display for LinePreview<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = self.0.char_indices().nth(LINE_PREVIEW_CHARS).map_or(self.0.len(), |(at, _)| at);
        write!(f, "{:?}", &self.0[..end])?;
        if end < self.0.len() {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// Read the snapshot at `path` (an absent file is an empty snapshot).
pub(crate) fn replay(path: &Path, rejoin_after_leave: bool) -> io::Result<Replayed> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Replayed::default()),
        Err(error) => return Err(error),
    };
    let mut state = Replayed::default();
    let mut reader = BufReader::new(file);
    let mut raw = Vec::new();
    for number in 1.. {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 || raw.last() != Some(&b'\n') {
            // End of file, or a last line cut short by a crash.
            break;
        }
        let line = String::from_utf8_lossy(&raw[..raw.len() - 1]);
        let line = line.trim_end_matches('\r');
        if let Err(problem) = state.apply(line, rejoin_after_leave) {
            tracing::warn!(
                path = %path.display(),
                line = number,
                len = raw.len() - 1,
                start = %LinePreview(line),
                "snapshot: {problem} at line {number}, ignored"
            );
        }
    }
    Ok(state)
}

impl Replayed {
    /// Apply one line; `Err` says what is wrong with a line that was ignored.
    fn apply(&mut self, line: &str, rejoin_after_leave: bool) -> Result<(), &'static str> {
        let clock = |text: &str| text.trim().parse::<u64>().ok();
        if let Some(info) = line.strip_prefix("alive: ") {
            let parsed = info.rsplit_once(' ').and_then(|(name, addr)| Some((name, addr.parse::<SocketAddr>().ok()?)));
            match parsed {
                Some((name, addr)) if !name.is_empty() => {
                    self.alive.insert(name.to_owned(), addr);
                    self.left = false;
                }
                _ => return Err("unreadable alive line"),
            }
        } else if let Some(name) = line.strip_prefix("not-alive: ") {
            self.alive.remove(name);
        } else if let Some(value) = line.strip_prefix("clock: ") {
            self.clock = clock(value).unwrap_or(self.clock);
        } else if let Some(value) = line.strip_prefix("event-clock: ") {
            self.event_clock = clock(value).unwrap_or(self.event_clock);
        } else if let Some(value) = line.strip_prefix("query-clock: ") {
            self.query_clock = clock(value).unwrap_or(self.query_clock);
        } else if let Some(json) = line.strip_prefix("coordinate: ") {
            match coordinate_from_json(json) {
                Some(coordinate) => self.coordinate = Some(coordinate),
                None => return Err("unreadable coordinate"),
            }
        } else if line == "leave" {
            if rejoin_after_leave {
                tracing::info!("snapshot: ignoring the previous leave (rejoin_after_leave)");
            } else {
                self.alive.clear();
                self.clock = 0;
                self.event_clock = 0;
                self.query_clock = 0;
                self.left = true;
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            return Err("unrecognized line");
        }
        Ok(())
    }
}

/// The coordinate as Serf wrote it: `{"Vec":[...],"Error":..,"Adjustment":..,"Height":..}`.
fn coordinate_to_json(coordinate: &Coordinate) -> String {
    serde_json::json!({
        "Vec": coordinate.vec,
        "Error": coordinate.error,
        "Adjustment": coordinate.adjustment,
        "Height": coordinate.height,
    })
    .to_string()
}

fn coordinate_from_json(json: &str) -> Option<Coordinate> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let vec = value.get("Vec")?.as_array()?.iter().map(serde_json::Value::as_f64).collect::<Option<Vec<f64>>>()?;
    Some(Coordinate {
        vec,
        error: value.get("Error")?.as_f64()?,
        adjustment: value.get("Adjustment")?.as_f64()?,
        height: value.get("Height")?.as_f64()?,
    })
}

/// The writer thread's state: the open file and what a compaction writes.
#[derive(Debug)]
struct Writer {
    path: PathBuf,
    file: BufWriter<File>,
    offset: u64,
    alive: BTreeMap<String, SocketAddr>,
    clock: u64,
    event_clock: u64,
    query_clock: u64,
    coordinate: Option<Coordinate>,
    leaving: bool,
    rejoin_after_leave: bool,
    min_compact_size: u64,
    unflushed_since: Option<Instant>,
}

impl Writer {
    fn open(path: &Path, replayed: &Replayed, rejoin_after_leave: bool) -> io::Result<Self> {
        let file = OpenOptions::new().append(true).create(true).open(path)?;
        let offset = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file: BufWriter::new(file),
            offset,
            alive: replayed.alive.clone(),
            clock: replayed.clock,
            event_clock: replayed.event_clock,
            query_clock: replayed.query_clock,
            coordinate: replayed.coordinate.clone(),
            leaving: false,
            rejoin_after_leave,
            min_compact_size: MIN_COMPACT_SIZE,
            unflushed_since: None,
        })
    }

    fn apply(&mut self, record: Record) -> io::Result<()> {
        let line = match record {
            // After a leave, member changes are no longer recorded (as Serf).
            Record::Alive { .. } | Record::NotAlive { .. } if self.leaving => return Ok(()),
            Record::Alive { name, addr } => {
                if self.alive.get(&name) == Some(&addr) {
                    return Ok(());
                }
                let line = format!("alive: {name} {addr}\n");
                self.alive.insert(name, addr);
                line
            }
            Record::NotAlive { name } => {
                if self.alive.remove(&name).is_none() {
                    return Ok(());
                }
                format!("not-alive: {name}\n")
            }
            Record::Clock(time) if time > self.clock => {
                self.clock = time;
                format!("clock: {time}\n")
            }
            Record::EventClock(time) if time > self.event_clock => {
                self.event_clock = time;
                format!("event-clock: {time}\n")
            }
            Record::QueryClock(time) if time > self.query_clock => {
                self.query_clock = time;
                format!("query-clock: {time}\n")
            }
            Record::Clock(_) | Record::EventClock(_) | Record::QueryClock(_) => return Ok(()),
            Record::Coordinate(coordinate) => {
                let line = format!("coordinate: {}\n", coordinate_to_json(&coordinate));
                self.coordinate = Some(coordinate);
                line
            }
            Record::Leave => {
                self.leaving = true;
                if !self.rejoin_after_leave {
                    self.alive.clear();
                }
                self.append("leave\n")?;
                return self.flush(true);
            }
        };
        self.append(&line)
    }

    fn append(&mut self, line: &str) -> io::Result<()> {
        self.file.write_all(line.as_bytes())?;
        self.offset += line.len() as u64;
        self.unflushed_since.get_or_insert_with(Instant::now);
        if self.offset > self.max_size() {
            self.compact()?;
        }
        Ok(())
    }

    fn max_size(&self) -> u64 {
        (self.alive.len() as u64 * BYTES_PER_NODE * 2).max(self.min_compact_size)
    }

    fn flush(&mut self, sync: bool) -> io::Result<()> {
        self.file.flush()?;
        if sync {
            self.file.get_ref().sync_data()?;
        }
        self.unflushed_since = None;
        Ok(())
    }

    fn flush_if_due(&mut self) -> io::Result<()> {
        match self.unflushed_since {
            Some(since) if since.elapsed() >= FLUSH_INTERVAL => self.flush(false),
            _ => Ok(()),
        }
    }

    /// Rewrite the file with the current state only, beside it, then rename it over.
    fn compact(&mut self) -> io::Result<()> {
        let mut aside = self.path.clone().into_os_string();
        aside.push(".compact");
        let aside = PathBuf::from(aside);
        let mut lines = String::new();
        for (name, addr) in &self.alive {
            lines.push_str(&format!("alive: {name} {addr}\n"));
        }
        lines.push_str(&format!("clock: {}\n", self.clock));
        lines.push_str(&format!("event-clock: {}\n", self.event_clock));
        lines.push_str(&format!("query-clock: {}\n", self.query_clock));
        if let Some(coordinate) = &self.coordinate {
            lines.push_str(&format!("coordinate: {}\n", coordinate_to_json(coordinate)));
        }
        if self.leaving {
            lines.push_str("leave\n");
        }
        {
            let mut file = File::create(&aside)?;
            file.write_all(lines.as_bytes())?;
            file.sync_all()?;
        }
        // What is buffered for the old file is in the compacted one already.
        let _ = self.file.flush();
        std::fs::rename(&aside, &self.path)?;
        let file = OpenOptions::new().append(true).open(&self.path)?;
        self.file = BufWriter::new(file);
        self.offset = lines.len() as u64;
        self.unflushed_since = None;
        tracing::debug!(path = %self.path.display(), bytes = self.offset, "snapshot compacted");
        Ok(())
    }
}

/// What the writer thread is told.
enum Message {
    Record(Record),
    Close,
}

/// The handle on the writer thread.
#[derive(Debug)]
pub(crate) struct Snapshotter {
    sender: SyncSender<Message>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    queued: Arc<AtomicUsize>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Record(record) => record.fmt(f),
            Self::Close => f.write_str("Close"),
        }
    }
}

impl Snapshotter {
    /// Open `path` for appending (creating it) and start the writer thread.
    pub(crate) fn start(path: &Path, replayed: &Replayed, rejoin_after_leave: bool) -> io::Result<Self> {
        Self::start_with(Writer::open(path, replayed, rejoin_after_leave)?)
    }

    fn start_with(mut writer: Writer) -> io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel::<Message>(QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let queued_in_thread = Arc::clone(&queued);
        let thread = std::thread::Builder::new().name("serf-snapshot".into()).spawn(move || {
            loop {
                match receiver.recv_timeout(FLUSH_INTERVAL) {
                    Ok(Message::Record(record)) => {
                        queued_in_thread.fetch_sub(1, Ordering::Relaxed);
                        if let Err(error) = writer.apply(record) {
                            tracing::error!(path = %writer.path.display(), %error, "snapshot write failed");
                        }
                    }
                    Ok(Message::Close) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {}
                }
                if let Err(error) = writer.flush_if_due() {
                    tracing::error!(path = %writer.path.display(), %error, "snapshot flush failed");
                }
            }
            if let Err(error) = writer.flush(true) {
                tracing::error!(path = %writer.path.display(), %error, "snapshot flush failed");
            }
        })?;
        Ok(Self { sender, thread: Mutex::new(Some(thread)), queued, dropped: AtomicU64::new(0) })
    }

    /// Hand a record to the writer; dropped (and counted) when its queue is full.
    pub(crate) fn record(&self, record: Record) {
        match self.sender.try_send(Message::Record(record)) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("snapshot queue full: a record was dropped");
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Record the leave, waiting for room in the queue if need be: unlike the other records,
    /// losing it would make a restart re-join a cluster this node left.
    pub(crate) async fn leave(&self) {
        let sender = self.sender.clone();
        self.queued.fetch_add(1, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || sender.send(Message::Record(Record::Leave))).await;
    }

    /// Records waiting for the writer.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Records dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Write out everything queued, fsync, stop the thread. Records sent afterwards are lost.
    pub(crate) async fn close(&self) {
        let sender = self.sender.clone();
        let Some(thread) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
        let _ = tokio::task::spawn_blocking(move || {
            let _ = sender.send(Message::Close);
            let _ = thread.join();
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gossip-core-snapshot-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("serf.snapshot")
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn ignored_lines_are_logged_by_a_bounded_preview() {
        let binary: String = (0..4096u32).map(|i| char::from_u32(i % 0x300).unwrap_or('?')).collect();
        let preview = LinePreview(&binary).to_string();
        assert!(preview.ends_with("..."), "{preview}");
        assert!(preview.len() < 64 * 10 + 5, "{} bytes", preview.len());
        assert_eq!(LinePreview("bogus line").to_string(), "\"bogus line\"");
        assert_eq!(LinePreview(&"é".repeat(64)).to_string(), format!("{:?}", "é".repeat(64)));
        assert_eq!(LinePreview(&"é".repeat(65)).to_string(), format!("{:?}...", "é".repeat(64)));
        assert_eq!(Replayed::default().apply("alive: x", false), Err("unreadable alive line"));
    }

    #[test]
    fn replay_reads_what_serf_writes() {
        let path = temp_path("replay");
        let coordinate = Coordinate { vec: vec![0.5; 8], error: 0.25, adjustment: -0.001, height: 0.0001 };
        let text = format!(
            "alive: a 127.0.0.1:1\nalive: node with spaces 127.0.0.1:2\nalive: c 127.0.0.1:3\nnot-alive: c\n\
             clock: 5\nevent-clock: 9\nquery-clock: 2\nbogus line\n# comment\ncoordinate: {}\nclock: 6\nalive: cut",
            coordinate_to_json(&coordinate)
        );
        std::fs::write(&path, text).unwrap();
        let replayed = replay(&path, false).unwrap();
        let alive: Vec<(&str, SocketAddr)> = replayed.alive.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        assert_eq!(alive, [("a", addr(1)), ("node with spaces", addr(2))]);
        assert_eq!((replayed.clock, replayed.event_clock, replayed.query_clock), (6, 9, 2));
        assert_eq!(replayed.coordinate, Some(coordinate));
        assert!(!replayed.left);

        std::fs::write(&path, "alive: a 127.0.0.1:1\nclock: 5\nleave\n").unwrap();
        let replayed = replay(&path, false).unwrap();
        assert!(replayed.left && replayed.alive.is_empty() && replayed.clock == 0);
        let replayed = replay(&path, true).unwrap();
        assert!(!replayed.left && replayed.alive.len() == 1 && replayed.clock == 5);
        assert_eq!(replay(&path.with_extension("absent"), false).unwrap(), Replayed::default());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn writer_appends_dedups_and_compacts() {
        let path = temp_path("compact");
        let mut writer = Writer::open(&path, &Replayed::default(), false).unwrap();
        writer.min_compact_size = 300;
        writer.apply(Record::Alive { name: "a".into(), addr: addr(1) }).unwrap();
        writer.apply(Record::Alive { name: "a".into(), addr: addr(1) }).unwrap();
        writer.apply(Record::Clock(3)).unwrap();
        writer.apply(Record::Clock(2)).unwrap();
        writer.flush(false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "alive: a 127.0.0.1:1\nclock: 3\n");
        // Churn until the file passes the threshold: it is rewritten with the state only.
        for i in 0..40 {
            writer.apply(Record::Alive { name: format!("n{i}"), addr: addr(100 + i) }).unwrap();
            writer.apply(Record::NotAlive { name: format!("n{i}") }).unwrap();
        }
        writer.apply(Record::EventClock(7)).unwrap();
        writer.flush(false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() < 300, "{text}");
        let replayed = replay(&path, false).unwrap();
        assert_eq!(replayed.alive.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!((replayed.clock, replayed.event_clock), (3, 7));
        // A leave is durable and stops member records.
        writer.apply(Record::Leave).unwrap();
        writer.apply(Record::Alive { name: "z".into(), addr: addr(9) }).unwrap();
        writer.flush(false).unwrap();
        assert!(replay(&path, false).unwrap().left);
        assert!(!std::fs::read_to_string(&path).unwrap().contains("alive: z"));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn the_thread_writes_everything_before_close_returns() {
        let path = temp_path("thread");
        let snapshotter = Snapshotter::start(&path, &Replayed::default(), false).unwrap();
        snapshotter.record(Record::Alive { name: "a".into(), addr: addr(1) });
        snapshotter.record(Record::QueryClock(4));
        snapshotter.close().await;
        let replayed = replay(&path, false).unwrap();
        assert_eq!(replayed.alive.len(), 1);
        assert_eq!(replayed.query_clock, 4);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
