//! Coalescing, as Serf's `coalesceLoop`: events that arrive close together are delivered as one
//! batch when the window closes: `period` after the first event, or `quiescent` after the last
//! one, whichever comes first. A zero `period` or `quiescent` delivers at once.
//!
//! - [`MemberCoalescer`]: one event per member (its latest), grouped into one
//!   [`SerfEvent`] per kind; a kind already delivered for that member is not repeated (except
//!   updates), as Serf's `memberEventCoalescer`. Its window widens in a burst: a batch that opens
//!   within one window of the last one's close gets twice the period and quiescence, up to
//!   [`BURST_MAX_PERIOD`], and a quiet spell of one window brings it back. A lone change (a
//!   failure in a quiet cluster) is delivered within the configured 50 ms; fifty nodes joining
//!   at once reach each handler in about five batches instead of thirty.
//! - [`UserCoalescer`]: for user events sent with `coalesce = true`, only the events of the
//!   newest Lamport time of each name are delivered, as Serf's `userEventCoalescer`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use swim::Member;

use super::event::{SerfEvent, UserEvent};

/// The kinds of member event, in the order a flush delivers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum MemberEventKind {
    Join,
    Update,
    Leave,
    Failed,
    Reap,
}

impl MemberEventKind {
    fn event(self, members: Vec<Member>) -> SerfEvent {
        match self {
            Self::Join => SerfEvent::MemberJoin(members),
            Self::Update => SerfEvent::MemberUpdate(members),
            Self::Leave => SerfEvent::MemberLeave(members),
            Self::Failed => SerfEvent::MemberFailed(members),
            Self::Reap => SerfEvent::MemberReap(members),
        }
    }
}

/// The member window widens in a burst of batches up to this period (see the module docs).
pub(crate) const BURST_MAX_PERIOD: Duration = Duration::from_secs(1);

/// When a batch is due.
#[derive(Debug)]
struct Window {
    period: Duration,
    quiescent: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
    /// Factor on both periods, doubled for each batch of a burst, up to `max_scale`.
    scale: u32,
    max_scale: u32,
    /// When the last batch was due.
    last_close: Option<Instant>,
}

impl Window {
    /// A window of fixed width.
    fn new(period: Duration, quiescent: Duration) -> Self {
        Self { period, quiescent, first: None, last: None, scale: 1, max_scale: 1, last_close: None }
    }

    /// A window that widens in a burst, up to a period of `max_period`.
    fn widening(period: Duration, quiescent: Duration, max_period: Duration) -> Self {
        let mut window = Self::new(period, quiescent);
        if !period.is_zero() && !quiescent.is_zero() {
            while period * (window.max_scale * 2) <= max_period {
                window.max_scale *= 2;
            }
        }
        window
    }

    fn touch(&mut self, now: Instant) {
        if self.first.is_none() {
            // A new batch: part of a burst if it opens within one window of the last close.
            let in_burst = self.last_close.is_some_and(|closed| now < closed + self.period * self.scale);
            self.scale = if in_burst { (self.scale * 2).min(self.max_scale) } else { 1 };
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    fn deadline(&self) -> Option<Instant> {
        Some((self.first? + self.period * self.scale).min(self.last? + self.quiescent * self.scale))
    }

    fn close(&mut self) {
        if let Some(due) = self.deadline() {
            self.last_close = Some(due);
        }
        self.first = None;
        self.last = None;
    }
}

/// Batches member events (see the module docs).
#[derive(Debug)]
pub(crate) struct MemberCoalescer {
    window: Window,
    latest: BTreeMap<String, (MemberEventKind, Member)>,
    delivered: HashMap<String, MemberEventKind>,
}

impl MemberCoalescer {
    pub(crate) fn new(period: Duration, quiescent: Duration) -> Self {
        Self {
            window: Window::widening(period, quiescent, BURST_MAX_PERIOD),
            latest: BTreeMap::new(),
            delivered: HashMap::new(),
        }
    }

    /// Take an event; it is delivered by the [`MemberCoalescer::flush`] due at
    /// [`MemberCoalescer::deadline`].
    pub(crate) fn push(&mut self, kind: MemberEventKind, member: Member, now: Instant) {
        self.window.touch(now);
        self.latest.insert(member.name.to_string(), (kind, member));
    }

    /// When the pending batch is due (`None`: nothing pending).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.window.deadline()
    }

    /// Members waiting in the batch.
    pub(crate) fn pending(&self) -> usize {
        self.latest.len()
    }

    /// Close the window: one event per kind, members in name order.
    pub(crate) fn flush(&mut self) -> Vec<SerfEvent> {
        self.window.close();
        let mut batches: BTreeMap<MemberEventKind, Vec<Member>> = BTreeMap::new();
        for (name, (kind, member)) in std::mem::take(&mut self.latest) {
            if self.delivered.get(&name) == Some(&kind) && kind != MemberEventKind::Update {
                continue;
            }
            if kind == MemberEventKind::Reap {
                self.delivered.remove(&name);
            } else {
                self.delivered.insert(name, kind);
            }
            batches.entry(kind).or_default().push(member);
        }
        batches.into_iter().map(|(kind, members)| kind.event(members)).collect()
    }
}

/// Keeps the newest user events of each name (see the module docs).
#[derive(Debug)]
pub(crate) struct UserCoalescer {
    window: Window,
    latest: BTreeMap<String, (u64, Vec<UserEvent>)>,
}

impl UserCoalescer {
    pub(crate) fn new(period: Duration, quiescent: Duration) -> Self {
        Self { window: Window::new(period, quiescent), latest: BTreeMap::new() }
    }

    /// Take an event sent with `coalesce = true`.
    pub(crate) fn push(&mut self, event: UserEvent, now: Instant) {
        self.window.touch(now);
        match self.latest.get_mut(&event.name) {
            Some((ltime, events)) if *ltime == event.ltime => events.push(event),
            Some((ltime, _)) if *ltime > event.ltime => {}
            _ => {
                self.latest.insert(event.name.clone(), (event.ltime, vec![event]));
            }
        }
    }

    /// When the pending events are due (`None`: nothing pending).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.window.deadline()
    }

    /// Events waiting.
    pub(crate) fn pending(&self) -> usize {
        self.latest.values().map(|(_, events)| events.len()).sum()
    }

    /// Close the window: the newest events of each name, names in order.
    pub(crate) fn flush(&mut self) -> Vec<UserEvent> {
        self.window.close();
        std::mem::take(&mut self.latest).into_values().flat_map(|(_, events)| events).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use swim::{Incarnation, ProtocolRange, State, Tags};

    fn member(name: &str, now: Instant) -> Member {
        Member {
            name: name.into(),
            addr: ([127, 0, 0, 1], 7946).into(),
            incarnation: Incarnation::new(1, 0),
            state: State::Alive,
            tags: Tags::default(),
            protocol: ProtocolRange { min: 1, max: 1, cur: 1 },
            state_changed: now,
        }
    }

    fn names(event: &SerfEvent) -> Vec<&str> {
        match event {
            SerfEvent::MemberJoin(m)
            | SerfEvent::MemberLeave(m)
            | SerfEvent::MemberFailed(m)
            | SerfEvent::MemberUpdate(m)
            | SerfEvent::MemberReap(m) => m.iter().map(|m| m.name.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn member_events_batch_until_quiet_or_the_period_ends() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = MemberCoalescer::new(ms(50), ms(20));
        assert_eq!(c.deadline(), None);
        c.push(MemberEventKind::Join, member("a", t0), t0);
        assert_eq!(c.deadline(), Some(t0 + ms(20)));
        c.push(MemberEventKind::Join, member("b", t0), t0 + ms(10));
        c.push(MemberEventKind::Failed, member("c", t0), t0 + ms(25));
        assert_eq!(c.deadline(), Some(t0 + ms(45)));
        // A steady stream is cut at the period.
        c.push(MemberEventKind::Join, member("d", t0), t0 + ms(40));
        assert_eq!(c.deadline(), Some(t0 + ms(50)));
        let events = c.flush();
        assert_eq!(events.len(), 2);
        assert!(matches!(&events[0], SerfEvent::MemberJoin(_)));
        assert_eq!(names(&events[0]), ["a", "b", "d"]);
        assert_eq!(names(&events[1]), ["c"]);
        assert_eq!(c.deadline(), None);
    }

    #[test]
    fn the_window_widens_in_a_burst_and_narrows_after_a_quiet_spell() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = MemberCoalescer::new(ms(50), ms(20));
        // A join storm: an event every 5 ms for 3 s. Batches close at 50, 150, 350, 750 ms,
        // then every 800 ms (the widest window under BURST_MAX_PERIOD): 7 instead of 60.
        let mut closes = Vec::new();
        let mut t = t0;
        while t < t0 + ms(3_000) {
            if c.deadline().is_some_and(|due| due <= t) {
                closes.push((c.deadline().unwrap() - t0).as_millis());
                assert!(!c.flush().is_empty());
            }
            c.push(MemberEventKind::Join, member(&format!("n{}", (t - t0).as_millis()), t0), t);
            t += ms(5);
        }
        assert_eq!(closes, [50, 150, 350, 750, 1_550, 2_350]);
        // Events stop; the last batch closes 800 ms after it opened.
        let due = c.deadline().unwrap();
        assert_eq!(due, t0 + ms(3_150));
        c.flush();
        // A lone change after a quiet spell as long as the widest window: back to 50 / 20 ms.
        let later = due + ms(800);
        c.push(MemberEventKind::Failed, member("x", t0), later);
        assert_eq!(c.deadline(), Some(later + ms(20)));
    }

    #[test]
    fn the_latest_event_of_a_member_wins_and_repeats_are_dropped() {
        let t0 = Instant::now();
        let mut c = MemberCoalescer::new(Duration::from_millis(50), Duration::from_millis(20));
        c.push(MemberEventKind::Join, member("a", t0), t0);
        c.push(MemberEventKind::Failed, member("a", t0), t0);
        let events = c.flush();
        assert!(matches!(events.as_slice(), [SerfEvent::MemberFailed(m)] if m[0].name == "a"));
        // Failed again: already delivered, dropped. Updates always pass.
        c.push(MemberEventKind::Failed, member("a", t0), t0);
        assert!(c.flush().is_empty());
        c.push(MemberEventKind::Update, member("b", t0), t0);
        c.flush();
        c.push(MemberEventKind::Update, member("b", t0), t0);
        assert_eq!(c.flush().len(), 1);
    }

    #[test]
    fn zero_periods_deliver_at_once() {
        let t0 = Instant::now();
        let mut c = MemberCoalescer::new(Duration::ZERO, Duration::ZERO);
        c.push(MemberEventKind::Join, member("a", t0), t0);
        assert_eq!(c.deadline(), Some(t0));
    }

    #[test]
    fn user_events_keep_the_newest_time_of_each_name() {
        let t0 = Instant::now();
        let mut c = UserCoalescer::new(Duration::from_secs(1), Duration::from_millis(200));
        let event = |ltime, name: &str, payload: &'static str| UserEvent {
            ltime,
            name: name.into(),
            payload: Bytes::from_static(payload.as_bytes()),
            coalesce: true,
        };
        c.push(event(3, "deploy", "v1"), t0);
        c.push(event(5, "deploy", "v3"), t0);
        c.push(event(4, "deploy", "v2"), t0);
        c.push(event(5, "deploy", "v3b"), t0);
        c.push(event(1, "other", "x"), t0);
        assert_eq!(c.pending(), 3);
        let flushed: Vec<_> = c.flush().into_iter().map(|e| (e.ltime, e.payload)).collect();
        assert_eq!(flushed, [(5, "v3".into()), (5, "v3b".into()), (1, "x".into())]);
        assert_eq!(c.pending(), 0);
    }
}
