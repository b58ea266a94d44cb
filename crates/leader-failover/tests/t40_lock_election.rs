//! The lock-based election as a state machine: time passed in, requests answered by hand or by
//! a small in-memory lock server with lock-delay.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use leader_failover::{
    Election, KeyState, LockAction, LockConfigError, LockElection, LockElectionConfig, LockEvent, Role,
};

const MS: Duration = Duration::from_millis(1);

fn drain(election: &mut LockElection) -> Vec<LockAction> {
    std::iter::from_fn(|| election.poll_action()).collect()
}

fn held_by(session: &str, holder: &str, modify_index: u64) -> Option<KeyState> {
    Some(KeyState { session: Some(session.into()), holder: Some(holder.into()), lock_index: 1, modify_index })
}

fn free(modify_index: u64) -> Option<KeyState> {
    Some(KeyState { session: None, holder: Some("n1".into()), lock_index: 1, modify_index })
}

/// An election that holds the lock (session `s1`, token 7), confirmed at `start`.
fn primary(start: Instant) -> LockElection {
    let mut e = LockElection::new("n1", LockElectionConfig::default(), start);
    assert_eq!(
        drain(&mut e),
        [LockAction::CreateSession { name: "primary election".into(), lock_delay: Duration::from_secs(1), ttl: None }]
    );
    assert!(e.handle(LockEvent::SessionCreated { id: "s1".into() }, start).is_none());
    assert_eq!(
        drain(&mut e),
        [LockAction::Watch { index: 0 }, LockAction::Acquire { session: "s1".into(), value: "n1".into() }]
    );
    // No read of the key after the acquire: a consistent read decides.
    assert!(e.handle(LockEvent::Acquired { session: "s1".into(), key: None }, start).is_none());
    assert_eq!(drain(&mut e), [LockAction::Confirm]);
    assert_eq!(e.role(), Role::Standby, "not primary before a read shows the hold");
    let change = e.handle(LockEvent::Confirmed { key: held_by("s1", "n1", 7) }, start).unwrap();
    assert_eq!((change.from, change.to, change.fencing_token), (Role::Standby, Role::Primary, Some(7)));
    e
}

#[test]
fn acquires_confirms_and_exports_the_fencing_token() {
    let start = Instant::now();
    let e = primary(start);
    let view = e.view();
    assert_eq!(view.primary.as_deref(), Some("n1"));
    assert_eq!(view.fencing_token, Some(7));
    assert_eq!(view.valid_until, Some(start + Duration::from_secs(2)));
    assert_eq!(e.tags_for(Role::Primary), [("role".to_string(), "primary".to_string())]);
    // Next: the confirm after the interval.
    assert_eq!(e.next_deadline(), Some(start + Duration::from_millis(500)));
}

#[test]
fn an_acquire_with_a_read_of_the_key_is_primary_at_once_bounded_from_when_it_was_sent() {
    let start = Instant::now();
    let mut e = LockElection::new("n1", LockElectionConfig::default(), start);
    let _ = drain(&mut e);
    let _ = e.handle(LockEvent::SessionCreated { id: "s1".into() }, start);
    assert!(drain(&mut e).contains(&LockAction::Acquire { session: "s1".into(), value: "n1".into() }));
    // The answer (and the read after it) comes 40 ms after the acquire was sent.
    let answered = start + 40 * MS;
    let change = e.handle(LockEvent::Acquired { session: "s1".into(), key: held_by("s1", "n1", 7) }, answered).unwrap();
    assert_eq!((change.from, change.to, change.fencing_token), (Role::Standby, Role::Primary, Some(7)));
    assert!(drain(&mut e).is_empty(), "no confirm needed before serving");
    let view = e.view();
    assert_eq!(view.valid_until, Some(start + Duration::from_secs(2)), "the bound counts from the send");
    assert_eq!(e.next_deadline(), Some(start + Duration::from_millis(500)), "the first confirm");
    // A read that does not show the hold (another holder already) leaves it to a confirm.
    let mut e = LockElection::new("n2", LockElectionConfig::default(), start);
    let _ = drain(&mut e);
    let _ = e.handle(LockEvent::SessionCreated { id: "s2".into() }, start);
    let _ = drain(&mut e);
    assert!(e.handle(LockEvent::Acquired { session: "s2".into(), key: held_by("s3", "n3", 9) }, answered).is_none());
    assert_eq!(drain(&mut e), [LockAction::Confirm]);
    assert!(e.handle(LockEvent::Confirmed { key: held_by("s3", "n3", 9) }, answered).is_none());
    assert_eq!(e.role(), Role::Standby);
}

#[test]
fn a_refused_acquire_after_the_key_was_freed_is_retried_exactly_when_the_lock_delay_ends() {
    let start = Instant::now();
    let delay = Duration::from_millis(600);
    let config = LockElectionConfig { lock_delay: delay, ..LockElectionConfig::default() };
    let mut e = LockElection::new("n2", config, start);
    let _ = drain(&mut e);
    let _ = e.handle(LockEvent::SessionCreated { id: "s2".into() }, start);
    let _ = drain(&mut e);
    let _ = e.handle(LockEvent::AcquireRefused, start + MS);
    let _ = e.handle(LockEvent::Watched { key: held_by("s1", "n1", 4), index: 4 }, start + 2 * MS);
    let _ = drain(&mut e);
    // n1's session is invalidated; the watch shows the key freed at `freed`: acquire at once.
    let freed = start + Duration::from_secs(3);
    let _ = e.handle(LockEvent::Watched { key: free(8), index: 8 }, freed);
    assert!(drain(&mut e).contains(&LockAction::Acquire { session: "s2".into(), value: "n2".into() }));
    // Refused 30 ms later (the lock-delay): the next try is when the delay ends, not polled.
    let _ = e.handle(LockEvent::AcquireRefused, freed + 30 * MS);
    assert!(drain(&mut e).is_empty(), "no acquire before the delay ends");
    assert_eq!(e.next_deadline(), Some(freed + delay));
    let _ = e.update(&[], freed + delay - MS, SystemTime::now());
    assert!(drain(&mut e).is_empty(), "nothing before the delay ends");
    let _ = e.update(&[], freed + delay, SystemTime::now());
    assert_eq!(drain(&mut e), [LockAction::Acquire { session: "s2".into(), value: "n2".into() }]);
    // Refused past the delay's end (a longer delay elsewhere): polled every retry_interval.
    let _ = e.handle(LockEvent::AcquireRefused, freed + delay + 5 * MS);
    assert_eq!(e.next_deadline(), Some(freed + delay + 5 * MS + Duration::from_millis(250)));
}

#[test]
fn steps_down_when_no_confirm_succeeds_within_the_bound() {
    let start = Instant::now();
    let mut e = primary(start);
    let mut now = start;
    // Every confirm fails from now on (no quorum); the role holds until exactly start + 2 s.
    while now < start + Duration::from_secs(3) {
        now = e.next_deadline().unwrap();
        let change = e.update(&[], now, SystemTime::now());
        for action in drain(&mut e) {
            if action == LockAction::Confirm {
                assert!(e.handle(LockEvent::ConfirmFailed, now).is_none() || now >= start + Duration::from_secs(2));
            }
        }
        if let Some(change) = change {
            assert_eq!((change.from, change.to, change.fencing_token), (Role::Primary, Role::Standby, Some(7)));
            assert_eq!(now, start + Duration::from_secs(2), "steps down exactly at the bound");
            break;
        }
        assert!(now < start + Duration::from_secs(2), "still primary at {:?}", now - start);
    }
    assert_eq!(e.role(), Role::Standby);
    assert_eq!(e.view().fencing_token, None);
    // The hold comes back with the next successful confirm (the session still holds the key).
    let later = now + 300 * MS;
    let _ = e.update(&[], later, SystemTime::now());
    assert!(drain(&mut e).contains(&LockAction::Confirm));
    let change = e.handle(LockEvent::Confirmed { key: held_by("s1", "n1", 7) }, later).unwrap();
    assert_eq!((change.to, change.fencing_token), (Role::Primary, Some(7)));
}

#[test]
fn a_watch_showing_another_holder_steps_down_at_once_unless_it_is_older_than_the_hold() {
    let start = Instant::now();
    let mut e = primary(start);
    // A lagging server's answer from before the acquire (index 5 < token 7) is ignored.
    assert!(e.handle(LockEvent::Watched { key: free(5), index: 5 }, start + MS).is_none());
    assert_eq!(e.role(), Role::Primary);
    assert_eq!(drain(&mut e), [LockAction::Watch { index: 5 }]);
    let change = e.handle(LockEvent::Watched { key: held_by("s2", "n2", 9), index: 9 }, start + 2 * MS).unwrap();
    assert_eq!((change.from, change.to), (Role::Primary, Role::Standby));
    assert_eq!(change.primary.as_deref(), Some("n2"));
    assert_eq!(e.view().primary.as_deref(), Some("n2"));
    // It does not try to acquire a key someone holds; it watches from index 9.
    assert_eq!(drain(&mut e), [LockAction::Watch { index: 9 }]);
}

#[test]
fn a_refused_acquire_is_retried_after_the_interval_and_when_the_key_is_freed() {
    let start = Instant::now();
    let mut e = LockElection::new("n2", LockElectionConfig::default(), start);
    let _ = drain(&mut e);
    let _ = e.handle(LockEvent::SessionCreated { id: "s2".into() }, start);
    let _ = drain(&mut e);
    // Refused inside the lock-delay: again after retry_interval.
    assert!(e.handle(LockEvent::AcquireRefused, start).is_none());
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.next_deadline(), Some(start + Duration::from_millis(250)));
    // The key is held by n1: no retry until it is free.
    let _ = e.handle(LockEvent::Watched { key: held_by("s1", "n1", 4), index: 4 }, start + 10 * MS);
    assert_eq!(drain(&mut e), [LockAction::Watch { index: 4 }]);
    let _ = e.update(&[], start + Duration::from_secs(5), SystemTime::now());
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.view().primary.as_deref(), Some("n1"));
    // Freed (n1's session invalidated): acquire at once.
    let freed = start + Duration::from_secs(6);
    let _ = e.handle(LockEvent::Watched { key: free(8), index: 8 }, freed);
    assert_eq!(
        drain(&mut e),
        [LockAction::Watch { index: 8 }, LockAction::Acquire { session: "s2".into(), value: "n2".into() }]
    );
    assert_eq!(e.view().primary, None);
}

#[test]
fn a_lost_session_is_replaced() {
    let start = Instant::now();
    let mut e = primary(start);
    let change = e.handle(LockEvent::SessionGone { session: "s1".into() }, start + MS).unwrap();
    assert_eq!(change.to, Role::Standby);
    assert!(drain(&mut e).iter().any(|a| matches!(a, LockAction::CreateSession { .. })));
    // An answer about another (older) session changes nothing.
    assert!(e.handle(LockEvent::SessionGone { session: "old".into() }, start + 2 * MS).is_none());
}

#[test]
fn resigning_releases_then_destroys_the_session() {
    let start = Instant::now();
    let mut e = primary(start);
    // A confirm is due and queued, not yet sent: resigning drops it.
    let _ = e.update(&[], start + Duration::from_millis(500), SystemTime::now());
    let change = e.resign().unwrap();
    assert_eq!((change.from, change.to, change.fencing_token), (Role::Primary, Role::Standby, Some(7)));
    assert_eq!(
        drain(&mut e),
        [LockAction::Release { session: "s1".into() }, LockAction::DestroySession { session: "s1".into() }]
    );
    assert_eq!(e.next_deadline(), None);
    let _ = e.update(&[], start + Duration::from_secs(1), SystemTime::now());
    assert!(drain(&mut e).is_empty(), "a resigned election asks for nothing");
}

#[test]
fn a_stale_session_of_this_node_is_destroyed_when_asked() {
    let start = Instant::now();
    let config = LockElectionConfig { replace_own_stale_session: true, ..LockElectionConfig::default() };
    let mut e = LockElection::new("n1", config, start);
    let _ = drain(&mut e);
    let _ = e.handle(LockEvent::SessionCreated { id: "new".into() }, start);
    let _ = drain(&mut e);
    let _ = e.handle(LockEvent::AcquireRefused, start);
    let _ = e.handle(LockEvent::Watched { key: held_by("old", "n1", 3), index: 3 }, start);
    assert_eq!(drain(&mut e), [LockAction::DestroySession { session: "old".into() }, LockAction::Watch { index: 3 }]);
    // Only once; another node's session is left alone.
    let _ = e.handle(LockEvent::Watched { key: held_by("old", "n1", 3), index: 3 }, start);
    assert_eq!(drain(&mut e), [LockAction::Watch { index: 3 }]);
}

#[test]
fn bad_configurations_are_named() {
    let bad = |config: LockElectionConfig| config.validate().unwrap_err();
    let d = LockElectionConfig::default;
    assert_eq!(bad(LockElectionConfig { key: "/x".into(), ..d() }), LockConfigError::Key { key: "/x".into() });
    assert_eq!(
        bad(LockElectionConfig { confirm_interval: Duration::from_secs(2), ..d() }).to_string(),
        "confirm interval (2s) must be less than the step-down bound (2s)"
    );
    assert_eq!(
        bad(LockElectionConfig { lock_delay: Duration::from_secs(61), ..d() }).to_string(),
        "lock-delay: 61s must be at most 60s"
    );
    assert!(matches!(
        bad(LockElectionConfig { session_ttl: Some(Duration::from_secs(5)), ..d() }),
        LockConfigError::Ttl(_)
    ));
    assert!(d().validate().is_ok());
}

/// A lock server as Consul's: sessions, one key, lock-delay on invalidation, none on release.
struct FakeServer {
    index: u64,
    sessions: BTreeSet<String>,
    key: Option<KeyState>,
    delay_until: Option<Instant>,
    next_id: u32,
}

impl FakeServer {
    fn new() -> Self {
        Self { index: 1, sessions: BTreeSet::new(), key: None, delay_until: None, next_id: 0 }
    }

    fn invalidate(&mut self, session: &str, lock_delay: Duration, now: Instant) {
        self.sessions.remove(session);
        if let Some(key) = self.key.as_mut().filter(|key| key.session.as_deref() == Some(session)) {
            self.index += 1;
            key.session = None;
            key.modify_index = self.index;
            self.delay_until = Some(now + lock_delay);
        }
    }

    fn answer(&mut self, action: LockAction, now: Instant) -> Option<LockEvent> {
        Some(match action {
            LockAction::CreateSession { .. } => {
                self.next_id += 1;
                let id = format!("s{}", self.next_id);
                self.sessions.insert(id.clone());
                LockEvent::SessionCreated { id }
            }
            LockAction::Acquire { session, value } => {
                if !self.sessions.contains(&session) {
                    return Some(LockEvent::SessionGone { session });
                }
                let held = self.key.as_ref().and_then(|key| key.session.clone());
                if held.as_ref().is_some_and(|h| *h != session) || self.delay_until.is_some_and(|until| now < until) {
                    return Some(LockEvent::AcquireRefused);
                }
                self.index += 1;
                let lock_index = self.key.as_ref().map_or(0, |key| key.lock_index) + u64::from(held.is_none());
                self.key = Some(KeyState {
                    session: Some(session.clone()),
                    holder: Some(value),
                    lock_index,
                    modify_index: self.index,
                });
                LockEvent::Acquired { session, key: self.key.clone() }
            }
            LockAction::Confirm => LockEvent::Confirmed { key: self.key.clone() },
            // The watch answers only on a change: the test re-polls it each tick.
            LockAction::Watch { index } if index >= self.index => return None,
            LockAction::Watch { .. } => LockEvent::Watched { key: self.key.clone(), index: self.index },
            LockAction::Renew { .. } => LockEvent::Renewed,
            LockAction::Release { session } => {
                if let Some(key) = self.key.as_mut().filter(|key| key.session.as_deref() == Some(session.as_str())) {
                    self.index += 1;
                    key.session = None;
                    key.modify_index = self.index;
                }
                return None;
            }
            LockAction::DestroySession { session } => {
                self.invalidate(&session, Duration::from_secs(1), now);
                return None;
            }
        })
    }
}

/// Two nodes on one lock server, 1 ms ticks. At 3 s n1's node is cut off: every request it sends
/// fails; the server invalidates its session `detection` later (the failure detector). Returns
/// when n2 became primary, checking at every tick that at most one node is primary.
fn failover(detection: Duration, lock_delay: Duration) -> Duration {
    let start = Instant::now();
    let config = LockElectionConfig { lock_delay, ..LockElectionConfig::default() };
    let mut server = FakeServer::new();
    let mut nodes = [LockElection::new("n1", config.clone(), start), LockElection::new("n2", config, start + 100 * MS)];
    let mut watches: BTreeMap<usize, u64> = BTreeMap::new();
    let cut = start + Duration::from_secs(3);
    let mut invalidated = false;
    for tick in 0..20_000u64 {
        let now = start + Duration::from_millis(tick);
        if !invalidated && now >= cut + detection {
            let holder = server.key.as_ref().and_then(|key| key.session.clone()).unwrap();
            server.invalidate(&holder, lock_delay, now);
            invalidated = true;
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            if i == 1 && tick < 100 {
                continue;
            }
            let _ = node.update(&[], now, SystemTime::now());
            // Pending watches are answered when the index moves (not across the cut).
            let cut_off = i == 0 && now >= cut;
            if let Some(index) = watches.get(&i).copied().filter(|_| !cut_off) {
                if let Some(event) = server.answer(LockAction::Watch { index }, now) {
                    watches.remove(&i);
                    let _ = node.handle(event, now);
                }
            }
            while let Some(action) = node.poll_action() {
                let event = match (&action, cut_off) {
                    (LockAction::Confirm, true) => Some(LockEvent::ConfirmFailed),
                    (LockAction::Watch { .. }, true) => None,
                    (LockAction::Acquire { .. }, true) => Some(LockEvent::AcquireFailed),
                    (LockAction::Watch { index }, false) => {
                        let event = server.answer(action.clone(), now);
                        if event.is_none() {
                            watches.insert(i, *index);
                        }
                        event
                    }
                    _ => server.answer(action.clone(), now),
                };
                if let Some(event) = event {
                    let _ = node.handle(event, now);
                }
            }
        }
        let primaries = nodes.iter().filter(|node| node.view().local_role == Role::Primary).count();
        assert!(primaries <= 1, "two primaries at {:?}", now - start);
        if now + MS == cut {
            assert_eq!(nodes[0].role(), Role::Primary, "n1 holds the lock before the cut");
        }
        if nodes[1].role() == Role::Primary {
            let token = nodes[1].view().fencing_token.unwrap();
            assert!(token > 2, "the new holder's fencing token {token} is above the old one's");
            return now - cut;
        }
    }
    panic!("n2 never became primary");
}

#[test]
fn failover_after_a_cut_never_has_two_primaries() {
    // The failure detector takes 1.5 s; lock-delay 1 s; step-down bound 2 s < 1 s + 1.5 s.
    let took = failover(Duration::from_millis(1500), Duration::from_secs(1));
    assert_eq!(took, Duration::from_millis(2500), "n2 primary exactly at detection + lock-delay");
    // A lock-delay that is no multiple of retry_interval (250 ms) is not rounded up to one.
    let took = failover(Duration::from_millis(1500), Duration::from_millis(600));
    assert_eq!(took, Duration::from_millis(2100), "n2 primary exactly at detection + lock-delay");
}

#[test]
#[should_panic(expected = "two primaries")]
fn a_step_down_bound_above_lock_delay_plus_detection_lets_two_primaries_coexist() {
    // The invariant check above can fail: with detection 0.3 s, 2 s > 1 s + 0.3 s.
    let _ = failover(Duration::from_millis(300), Duration::from_secs(1));
}
