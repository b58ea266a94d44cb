use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::ProtocolRange;

const PROTOCOL: ProtocolRange = ProtocolRange { min: 1, max: 2, cur: 2 };
const LOCAL: &str = "local";
const LOCAL_PORT: u16 = 7000;
/// The local node starts at this incarnation in every test.
const LOCAL_INC: Incarnation = Incarnation::new(1, 5);

fn inc(generation: u64, incarnation: u64) -> Incarnation {
    Incarnation::new(generation, incarnation)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn claim(name: &str, port: u16, incarnation: Incarnation) -> AliveClaim {
    AliveClaim { name: name.into(), addr: addr(port), incarnation, tags: Tags::default(), protocol: PROTOCOL }
}

fn local_claim() -> AliveClaim {
    claim(LOCAL, LOCAL_PORT, LOCAL_INC)
}

fn table(now: Instant) -> MemberTable {
    MemberTable::new(local_claim(), now)
}

fn state_of(table: &MemberTable, name: &str) -> Option<(State, Incarnation)> {
    table.get(name).map(|m| (m.state, m.incarnation))
}

fn refuted_incarnation(applied: &Applied) -> Incarnation {
    match applied {
        Applied::Refuted(claim) => claim.incarnation,
        other => panic!("expected a refutation, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The ordering rules, one row per (known state, news) pair.

#[derive(Debug, Clone, Copy)]
enum News {
    Alive(Incarnation),
    Suspect(Incarnation),
    Dead(Incarnation),
    Left(Incarnation),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ignored,
    Changed(Option<State>),
}
use Outcome::{Changed, Ignored};

fn apply(table: &mut MemberTable, name: &str, news: News, now: Instant) -> Applied {
    match news {
        News::Alive(i) => table.apply_alive(claim(name, 1, i), now),
        News::Suspect(i) => table.apply_suspect(name, i, now),
        News::Dead(i) => table.apply_dead(name, i, false, now),
        News::Left(i) => table.apply_dead(name, i, true, now),
    }
}

/// A table where member "m" (port 1) is in `known` at incarnation `J`, or unknown.
fn with_member(known: Option<State>, now: Instant) -> MemberTable {
    let mut t = table(now);
    let Some(state) = known else {
        return t;
    };
    t.apply_alive(claim("m", 1, J), now);
    match state {
        State::Alive => {}
        State::Suspect => drop(t.apply_suspect("m", J, now)),
        State::Dead => drop(t.apply_dead("m", J, false, now)),
        State::Left => drop(t.apply_dead("m", J, true, now)),
    }
    assert_eq!(state_of(&t, "m"), Some((state, J)));
    t
}

const J: Incarnation = Incarnation::new(1, 5);
const LO: Incarnation = Incarnation::new(1, 4);
const HI: Incarnation = Incarnation::new(1, 6);
const OLD_GEN: Incarnation = Incarnation::new(0, 99);
const NEW_GEN: Incarnation = Incarnation::new(2, 0);

/// (known state of "m" at `J`, news, outcome, (state, incarnation) after).
type Row = (Option<State>, News, Outcome, Option<(State, Incarnation)>);

#[test]
fn ordering_rules() {
    use News::{Alive as A, Dead as D, Left as L, Suspect as S};
    use State::{Alive, Dead, Left, Suspect};
    #[rustfmt::skip]
    let cases: &[Row] = &[
        // unknown member: only alive adds it
        (None, A(J), Changed(None), Some((Alive, J))),
        (None, S(J), Ignored, None),
        (None, D(J), Ignored, None),
        (None, L(J), Ignored, None),
        // alive(j)
        (Some(Alive), A(LO), Ignored, Some((Alive, J))),
        (Some(Alive), A(J), Ignored, Some((Alive, J))),
        (Some(Alive), A(HI), Changed(Some(Alive)), Some((Alive, HI))),
        (Some(Alive), S(LO), Ignored, Some((Alive, J))),
        (Some(Alive), S(J), Changed(Some(Alive)), Some((Suspect, J))),
        (Some(Alive), S(HI), Changed(Some(Alive)), Some((Suspect, HI))),
        (Some(Alive), D(LO), Ignored, Some((Alive, J))),
        (Some(Alive), D(J), Changed(Some(Alive)), Some((Dead, J))),
        (Some(Alive), D(HI), Changed(Some(Alive)), Some((Dead, HI))),
        (Some(Alive), L(LO), Ignored, Some((Alive, J))),
        (Some(Alive), L(J), Changed(Some(Alive)), Some((Left, J))),
        // suspect(j)
        (Some(Suspect), A(LO), Ignored, Some((Suspect, J))),
        (Some(Suspect), A(J), Ignored, Some((Suspect, J))),
        (Some(Suspect), A(HI), Changed(Some(Suspect)), Some((Alive, HI))),
        (Some(Suspect), S(LO), Ignored, Some((Suspect, J))),
        (Some(Suspect), S(J), Ignored, Some((Suspect, J))),
        (Some(Suspect), S(HI), Ignored, Some((Suspect, HI))), // incarnation kept
        (Some(Suspect), D(LO), Ignored, Some((Suspect, J))),
        (Some(Suspect), D(J), Changed(Some(Suspect)), Some((Dead, J))),
        (Some(Suspect), D(HI), Changed(Some(Suspect)), Some((Dead, HI))),
        (Some(Suspect), L(J), Changed(Some(Suspect)), Some((Left, J))),
        // dead(j)
        (Some(Dead), A(LO), Ignored, Some((Dead, J))),
        (Some(Dead), A(J), Ignored, Some((Dead, J))),
        (Some(Dead), A(HI), Changed(Some(Dead)), Some((Alive, HI))), // rejoin
        (Some(Dead), S(J), Ignored, Some((Dead, J))),
        (Some(Dead), S(HI), Ignored, Some((Dead, J))), // not kept: alive(HI) must still win
        (Some(Dead), D(LO), Ignored, Some((Dead, J))),
        (Some(Dead), D(J), Ignored, Some((Dead, J))),
        (Some(Dead), D(HI), Ignored, Some((Dead, HI))), // incarnation kept
        (Some(Dead), L(LO), Ignored, Some((Dead, J))),
        (Some(Dead), L(J), Changed(Some(Dead)), Some((Left, J))),
        (Some(Dead), L(HI), Changed(Some(Dead)), Some((Left, HI))),
        // left(j)
        (Some(Left), A(LO), Ignored, Some((Left, J))),
        (Some(Left), A(J), Ignored, Some((Left, J))),
        (Some(Left), A(HI), Changed(Some(Left)), Some((Alive, HI))), // rejoin
        (Some(Left), S(HI), Ignored, Some((Left, J))),
        (Some(Left), D(J), Ignored, Some((Left, J))),
        (Some(Left), D(HI), Ignored, Some((Left, HI))), // incarnation kept
        (Some(Left), L(J), Ignored, Some((Left, J))),
        (Some(Left), L(HI), Ignored, Some((Left, HI))),
        // generations: a new life outranks any incarnation of the old one, news of the old is stale
        (Some(Alive), A(NEW_GEN), Changed(Some(Alive)), Some((Alive, NEW_GEN))),
        (Some(Suspect), A(NEW_GEN), Changed(Some(Suspect)), Some((Alive, NEW_GEN))),
        (Some(Dead), A(NEW_GEN), Changed(Some(Dead)), Some((Alive, NEW_GEN))),
        (Some(Left), A(NEW_GEN), Changed(Some(Left)), Some((Alive, NEW_GEN))),
        (Some(Alive), S(NEW_GEN), Changed(Some(Alive)), Some((Suspect, NEW_GEN))),
        (Some(Alive), D(NEW_GEN), Changed(Some(Alive)), Some((Dead, NEW_GEN))),
        (Some(Alive), A(OLD_GEN), Ignored, Some((Alive, J))),
        (Some(Alive), S(OLD_GEN), Ignored, Some((Alive, J))),
        (Some(Alive), D(OLD_GEN), Ignored, Some((Alive, J))),
        (Some(Alive), L(OLD_GEN), Ignored, Some((Alive, J))),
        (Some(Dead), A(OLD_GEN), Ignored, Some((Dead, J))),
    ];
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_secs(1);
    for (row, &(known, news, expected, after)) in cases.iter().enumerate() {
        let mut t = with_member(known, t0);
        let applied = apply(&mut t, "m", news, t1);
        let outcome = match &applied {
            Applied::Ignored => Ignored,
            Applied::Changed { previous, member, .. } => {
                assert_eq!(Some(member), t.get("m"), "row {row}: Changed carries the member");
                Changed(*previous)
            }
            other => panic!("row {row}: {known:?} + {news:?} gave {other:?}"),
        };
        assert_eq!(outcome, expected, "row {row}: {known:?} + {news:?}");
        assert_eq!(state_of(&t, "m"), after, "row {row}: {known:?} + {news:?}");
        // state_changed moves exactly when the state does.
        if let (Some(before), Some(member)) = (known, t.get("m")) {
            let expected_changed = if member.state == before { t0 } else { t1 };
            assert_eq!(member.state_changed, expected_changed, "row {row}: state_changed");
        }
        assert_eq!(t.local().state, Alive, "row {row}");
        t.check_invariants();
    }
}

// ---------------------------------------------------------------------------------------------
// Address conflicts.

#[test]
fn live_member_claimed_from_another_address_is_a_conflict_at_any_incarnation() {
    let now = Instant::now();
    for known in [State::Alive, State::Suspect] {
        for incarnation in [LO, J, HI, NEW_GEN] {
            let mut t = with_member(Some(known), now);
            let before = t.get("m").cloned().unwrap();
            let refused = claim("m", 2, incarnation);
            let applied = t.apply_alive(refused.clone(), now);
            assert_eq!(
                applied,
                Applied::Conflict { existing: before.clone(), claim: refused },
                "{known:?} at {incarnation:?}"
            );
            assert_eq!(t.get("m"), Some(&before), "a conflict changes nothing");
        }
    }
}

#[test]
fn dead_or_left_member_may_move_with_a_newer_incarnation() {
    let now = Instant::now();
    for known in [State::Dead, State::Left] {
        let mut t = with_member(Some(known), now);
        assert_eq!(t.apply_alive(claim("m", 2, J), now), Applied::Ignored);
        assert_eq!(t.get("m").unwrap().addr, addr(1));
        let applied = t.apply_alive(claim("m", 2, HI), now);
        assert!(matches!(applied, Applied::Changed { previous: Some(p), .. } if p == known), "{applied:?}");
        let member = t.get("m").unwrap();
        assert_eq!((member.addr, member.state), (addr(2), State::Alive));
        t.check_invariants();
    }
}

// ---------------------------------------------------------------------------------------------
// Tags and protocol changes.

#[test]
fn tags_only_change_on_a_live_member_is_flagged() {
    let now = Instant::now();
    let mut t = with_member(Some(State::Alive), now);
    let mut tagged = claim("m", 1, HI);
    tagged.tags = Tags::from_pairs([("role", "web")]).unwrap();
    let applied = t.apply_alive(tagged, now);
    let Applied::Changed { previous, member, tags_changed } = applied else {
        panic!("{applied:?}");
    };
    assert_eq!((previous, tags_changed), (Some(State::Alive), true));
    assert_eq!(member.tags.get("role"), Some("web"));

    // A protocol change counts as well.
    let mut upgraded = member.claim();
    upgraded.incarnation = upgraded.incarnation.next();
    upgraded.protocol.cur = 1;
    assert!(matches!(t.apply_alive(upgraded, now), Applied::Changed { tags_changed: true, .. }));

    // A newer incarnation with the same content is a change, but not of tags.
    let mut same = t.get("m").unwrap().claim();
    same.incarnation = same.incarnation.next();
    assert!(matches!(
        t.apply_alive(same, now),
        Applied::Changed { previous: Some(State::Alive), tags_changed: false, .. }
    ));

    // A new member never has tags_changed.
    assert!(matches!(
        t.apply_alive(claim("new", 3, J), now),
        Applied::Changed { previous: None, tags_changed: false, .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Refutation of news about the local node.

#[test]
fn suspect_or_dead_about_local_is_refuted_above_the_claim() {
    let now = Instant::now();
    let cases = [(LOCAL_INC, inc(1, 6)), (inc(1, 9), inc(1, 10)), (inc(1, u64::MAX), inc(2, 0))];
    for (claimed, expected) in cases {
        for kind in ["suspect", "dead", "left"] {
            let mut t = table(now);
            let applied = match kind {
                "suspect" => t.apply_suspect(LOCAL, claimed, now),
                "dead" => t.apply_dead(LOCAL, claimed, false, now),
                _ => t.apply_dead(LOCAL, claimed, true, now),
            };
            assert_eq!(refuted_incarnation(&applied), expected, "{kind} {claimed:?}");
            assert!(expected > claimed);
            let local = t.local();
            assert_eq!(local.incarnation, expected);
            assert_eq!(local.state, State::Alive);
            assert_eq!(local.state_changed, now, "a refutation is not a state change");
            // The refutation announces us as we are.
            assert_eq!(applied, Applied::Refuted(local.claim()));
        }
    }
}

#[test]
fn stale_suspect_or_dead_about_local_is_ignored() {
    let now = Instant::now();
    let mut t = table(now);
    assert_eq!(t.apply_suspect(LOCAL, inc(1, 4), now), Applied::Ignored);
    assert_eq!(t.apply_dead(LOCAL, inc(1, 4), false, now), Applied::Ignored);
    assert_eq!(t.apply_dead(LOCAL, OLD_GEN, true, now), Applied::Ignored);
    assert_eq!(t.local().incarnation, LOCAL_INC);
}

#[test]
fn alive_about_local_is_refuted_when_newer_or_different() {
    let now = Instant::now();
    let with_tags = |incarnation| {
        let mut c = claim(LOCAL, LOCAL_PORT, incarnation);
        c.tags = Tags::from_pairs([("forged", "yes")]).unwrap();
        c
    };
    let cases: [(AliveClaim, Option<Incarnation>); 6] = [
        (local_claim(), None),                                  // our own news, echoed
        (with_tags(LOCAL_INC), Some(inc(1, 6))),                // same incarnation, other tags
        (claim(LOCAL, 9999, LOCAL_INC), Some(inc(1, 6))),       // same incarnation, other address
        (claim(LOCAL, LOCAL_PORT, inc(1, 7)), Some(inc(1, 8))), // newer, even if identical
        (with_tags(inc(1, 4)), None),                           // older: stale
        (claim(LOCAL, LOCAL_PORT, NEW_GEN), Some(inc(2, 1))),   // newer generation: adopted
    ];
    for (news, expected) in cases {
        let mut t = table(now);
        let applied = t.apply_alive(news.clone(), now);
        match expected {
            None => assert_eq!(applied, Applied::Ignored, "{news:?}"),
            Some(expected) => {
                assert_eq!(refuted_incarnation(&applied), expected, "{news:?}");
                assert!(expected > news.incarnation);
                // Our content stands, not the claim's.
                let local = t.local();
                assert_eq!((local.addr, &local.tags), (addr(LOCAL_PORT), &Tags::default()));
            }
        }
    }
}

#[test]
fn after_leaving_news_about_local_is_ignored() {
    let now = Instant::now();
    let mut t = table(now);
    assert_eq!(t.leave_local(now), LOCAL_INC);
    assert_eq!(t.apply_suspect(LOCAL, HI, now), Applied::Ignored);
    assert_eq!(t.apply_dead(LOCAL, HI, false, now), Applied::Ignored);
    assert_eq!(t.apply_dead(LOCAL, HI, true, now), Applied::Ignored);
    assert_eq!(t.apply_alive(claim(LOCAL, LOCAL_PORT, HI), now), Applied::Ignored);
    assert_eq!(state_of(&t, LOCAL), Some((State::Left, LOCAL_INC)));
}

// ---------------------------------------------------------------------------------------------
// Generations: a restarted node.

#[test]
fn restarted_node_overrides_its_old_life_and_old_news_is_ignored_after() {
    let now = Instant::now();
    let mut t = table(now);
    t.apply_alive(claim("node", 1, inc(1, 40)), now);
    let restarted = claim("node", 1, inc(2, 0));
    assert!(matches!(t.apply_alive(restarted, now), Applied::Changed { previous: Some(State::Alive), .. }));
    // Late news about the old life, at any incarnation, is stale.
    for old in [inc(1, 40), inc(1, 99), inc(1, u64::MAX)] {
        assert_eq!(t.apply_suspect("node", old, now), Applied::Ignored);
        assert_eq!(t.apply_dead("node", old, false, now), Applied::Ignored);
        assert_eq!(t.apply_dead("node", old, true, now), Applied::Ignored);
        assert_eq!(t.apply_alive(claim("node", 1, old), now), Applied::Ignored);
    }
    assert_eq!(state_of(&t, "node"), Some((State::Alive, inc(2, 0))));
}

#[test]
fn restarted_node_at_a_new_address_waits_for_its_old_life_to_be_declared_dead() {
    let now = Instant::now();
    let mut t = table(now);
    t.apply_alive(claim("node", 1, inc(1, 40)), now);
    let moved = claim("node", 2, inc(2, 0));
    assert!(matches!(t.apply_alive(moved.clone(), now), Applied::Conflict { .. }));
    t.apply_dead("node", inc(1, 40), false, now);
    assert!(matches!(t.apply_alive(moved, now), Applied::Changed { previous: Some(State::Dead), .. }));
    let member = t.get("node").unwrap();
    assert_eq!((member.state, member.addr, member.incarnation), (State::Alive, addr(2), inc(2, 0)));
}

// ---------------------------------------------------------------------------------------------
// The local node's own life.

#[test]
fn new_table_holds_the_local_node_alive() {
    let now = Instant::now();
    let t = table(now);
    assert_eq!(t.len(), 1);
    assert!(!t.is_empty());
    assert_eq!(t.live_count(), 1);
    assert_eq!(t.local_name(), LOCAL);
    assert!(t.contains(LOCAL));
    let local = t.local();
    assert_eq!((local.state, local.incarnation, local.state_changed), (State::Alive, LOCAL_INC, now));
    assert_eq!(local.claim(), local_claim());
    assert_eq!(t.iter().count(), 1);
}

#[test]
fn leave_then_rejoin() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_secs(1);
    let t2 = t0 + Duration::from_secs(2);
    let mut t = table(t0);
    assert_eq!(t.leave_local(t1), LOCAL_INC);
    assert_eq!(t.local().state, State::Left);
    assert_eq!(t.local().state_changed, t1);
    assert_eq!(t.live_count(), 0);
    // Leaving twice changes nothing.
    assert_eq!(t.leave_local(t2), LOCAL_INC);
    assert_eq!(t.local().state_changed, t1);
    // The local node is never reaped.
    assert!(t.reap(t2, Duration::ZERO, Duration::ZERO).is_empty());
    t.check_invariants();

    let claim = t.rejoin_local(t2);
    assert_eq!(claim.incarnation, inc(1, 6));
    assert_eq!((t.local().state, t.local().state_changed), (State::Alive, t2));
    assert_eq!(t.live_count(), 1);
    t.check_invariants();
}

#[test]
fn set_local_tags_and_bump_raise_the_incarnation() {
    let now = Instant::now();
    let mut t = table(now);
    let tags = Tags::from_pairs([("role", "db")]).unwrap();
    let claim = t.set_local_tags(tags.clone()).expect("alive: a claim");
    assert_eq!((claim.incarnation, &claim.tags), (inc(1, 6), &tags));
    assert_eq!(t.local().tags, tags);
    let claim = t.bump_local();
    assert_eq!(claim.incarnation, inc(1, 7));
    assert_eq!(t.local().incarnation, inc(1, 7));
    assert_eq!(t.local().state, State::Alive);
}

#[test]
fn tags_set_after_a_leave_make_no_claim_until_the_rejoin() {
    let now = Instant::now();
    let mut t = table(now);
    let left_at = t.leave_local(now);
    let tags = Tags::from_pairs([("role", "db")]).unwrap();
    assert!(t.set_local_tags(tags.clone()).is_none(), "a claim newer than the leave would undo it");
    assert_eq!((t.local().state, t.local().incarnation), (State::Left, left_at));
    let claim = t.rejoin_local(now);
    assert_eq!(claim.tags, tags, "the rejoin carries the tags set meanwhile");
    assert!(claim.incarnation > left_at);
    t.check_invariants();
}

#[test]
fn live_count_follows_every_transition() {
    let now = Instant::now();
    let mut t = table(now);
    for (port, name) in [(1, "a"), (2, "b"), (3, "c")] {
        t.apply_alive(claim(name, port, J), now);
    }
    assert_eq!(t.live_count(), 4);
    t.apply_suspect("b", J, now);
    assert_eq!(t.live_count(), 4);
    t.apply_dead("c", J, false, now);
    assert_eq!(t.live_count(), 3);
    t.apply_dead("b", J, true, now);
    assert_eq!(t.live_count(), 2);
    t.apply_alive(claim("c", 3, HI), now);
    assert_eq!(t.live_count(), 3);
    assert_eq!(t.len(), 4);
    t.check_invariants();
}

// ---------------------------------------------------------------------------------------------
// Reaping.

#[test]
fn reap_removes_tombstones_strictly_after_their_ttl() {
    let t0 = Instant::now();
    let died = t0 + Duration::from_secs(1);
    let (dead_ttl, left_ttl) = (Duration::from_secs(10), Duration::from_secs(20));
    let mut t = table(t0);
    for (port, name) in [(1, "dead"), (2, "left"), (3, "back"), (4, "alive")] {
        t.apply_alive(claim(name, port, J), t0);
    }
    t.apply_dead("dead", J, false, died);
    t.apply_dead("left", J, true, died);
    t.apply_dead("back", J, false, died);
    t.apply_alive(claim("back", 3, HI), died); // came back: no longer a tombstone

    let names = |members: Vec<Member>| members.into_iter().map(|m| m.name).collect::<Vec<_>>();
    let tick = Duration::from_nanos(1);
    assert_eq!(t.next_reap(dead_ttl, left_ttl), Some(died + dead_ttl + tick));
    assert!(t.reap(died + dead_ttl, dead_ttl, left_ttl).is_empty());
    assert_eq!(names(t.reap(died + dead_ttl + tick, dead_ttl, left_ttl)), ["dead"]);
    assert_eq!(t.next_reap(dead_ttl, left_ttl), Some(died + left_ttl + tick));
    assert!(t.reap(died + left_ttl, dead_ttl, left_ttl).is_empty());
    assert_eq!(names(t.reap(died + left_ttl + tick, dead_ttl, left_ttl)), ["left"]);
    assert_eq!(t.next_reap(dead_ttl, left_ttl), None, "no tombstones left");
    assert!(t.reap(died + Duration::from_secs(3600), dead_ttl, left_ttl).is_empty());
    assert_eq!(t.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["alive", "back", "local"]);
    t.check_invariants();

    // A reaped member is forgotten: it may come back at any incarnation.
    assert!(matches!(t.apply_alive(claim("dead", 1, LO), died), Applied::Changed { previous: None, .. }));
}

#[test]
fn dead_then_left_restarts_the_clock_with_the_left_ttl() {
    let t0 = Instant::now();
    let mut t = with_member(Some(State::Dead), t0);
    let t1 = t0 + Duration::from_secs(5);
    t.apply_dead("m", J, true, t1);
    let ttl = Duration::from_secs(10);
    assert!(t.reap(t0 + ttl + Duration::from_secs(1), ttl, ttl).is_empty());
    assert_eq!(t.reap(t1 + ttl + Duration::from_secs(1), ttl, ttl).len(), 1);
    t.check_invariants();
}

#[test]
fn reap_with_a_ttl_longer_than_the_clock_removes_nothing() {
    let now = Instant::now();
    let mut t = with_member(Some(State::Dead), now);
    assert!(t.reap(now, Duration::MAX, Duration::MAX).is_empty());
    assert_eq!(t.next_reap(Duration::MAX, Duration::MAX), None, "never, rather than an overflow");
    assert!(t.contains("m"));
}

// ---------------------------------------------------------------------------------------------
// Push-pull merge.

#[test]
fn merge_learns_live_members_and_never_kills_instantly() {
    let now = Instant::now();
    let mut t = table(now);
    t.apply_alive(claim("known-alive", 10, J), now);
    t.apply_alive(claim("leaving", 11, J), now);
    let remote = [
        (claim("a", 1, J), State::Alive),
        (claim("b", 2, J), State::Suspect),
        (claim("c", 3, J), State::Dead),
        (claim("d", 4, J), State::Left),
        (claim("known-alive", 10, J), State::Dead),
        (claim("leaving", 11, J), State::Left),
    ];
    let outcomes = t.merge(remote, now);
    let summary: Vec<_> = outcomes
        .iter()
        .map(|applied| match applied {
            Applied::Changed { previous, member, .. } => (member.name.as_str(), *previous, member.state),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a", None, State::Alive),
            ("b", None, State::Alive),
            ("b", Some(State::Alive), State::Suspect),
            ("known-alive", Some(State::Alive), State::Suspect),
            ("leaving", Some(State::Alive), State::Left),
        ]
    );
    assert!(!t.contains("c") && !t.contains("d"), "tombstones are not learned");
    t.check_invariants();
}

#[test]
fn merge_refutes_remote_news_about_local_once() {
    let now = Instant::now();
    for state in [State::Suspect, State::Dead, State::Left] {
        let mut t = table(now);
        let outcomes = t.merge([(local_claim(), state)], now);
        assert_eq!(outcomes.len(), 1, "{state:?}: {outcomes:?}");
        assert_eq!(refuted_incarnation(&outcomes[0]), inc(1, 6));
    }
    let mut t = table(now);
    assert!(t.merge([(local_claim(), State::Alive)], now).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Property: no sequence of news lowers an incarnation or makes the local node anything but alive.

const NAMES: [&str; 4] = [LOCAL, "n1", "n2", "n3"];

#[derive(Debug, Clone)]
enum Op {
    Alive { name: usize, port: u16, incarnation: Incarnation, tagged: bool },
    Suspect { name: usize, incarnation: Incarnation },
    Dead { name: usize, incarnation: Incarnation, left: bool },
    Merge(Vec<(usize, u16, Incarnation, State)>),
    Leave,
    Rejoin,
    SetTags,
    Bump,
    Reap,
    Advance(u64),
}

fn any_incarnation() -> impl Strategy<Value = Incarnation> {
    (0u64..3, prop_oneof![0u64..8, Just(u64::MAX)]).prop_map(|(g, i)| inc(g, i))
}

fn any_state() -> impl Strategy<Value = State> {
    prop_oneof![Just(State::Alive), Just(State::Suspect), Just(State::Dead), Just(State::Left)]
}

fn any_op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    prop_oneof![
        4 => (name.clone(), 0u16..2, any_incarnation(), any::<bool>()).prop_map(
            |(name, port, incarnation, tagged)| Op::Alive { name, port, incarnation, tagged }
        ),
        3 => (name.clone(), any_incarnation())
            .prop_map(|(name, incarnation)| Op::Suspect { name, incarnation }),
        3 => (name.clone(), any_incarnation(), any::<bool>())
            .prop_map(|(name, incarnation, left)| Op::Dead { name, incarnation, left }),
        1 => prop::collection::vec((name, 0u16..2, any_incarnation(), any_state()), 0..5)
            .prop_map(Op::Merge),
        1 => Just(Op::Leave),
        1 => Just(Op::Rejoin),
        1 => Just(Op::SetTags),
        1 => Just(Op::Bump),
        1 => Just(Op::Reap),
        2 => (0u64..3000).prop_map(Op::Advance),
    ]
}

proptest! {
    #[test]
    fn news_never_lowers_incarnations_nor_harms_the_local_node(
        ops in prop::collection::vec(any_op(), 0..60)
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut t = MemberTable::new(claim(LOCAL, 0, inc(1, 2)), now);
        let mut left = false;
        let make_claim = |name: usize, port: u16, incarnation, tagged: bool| {
            let mut c = claim(NAMES[name], port, incarnation);
            if tagged {
                c.tags = Tags::from_pairs([("t", "1")]).unwrap();
            }
            c
        };
        for op in ops {
            let before: std::collections::BTreeMap<String, Incarnation> =
                t.iter().map(|m| (m.name.to_string(), m.incarnation)).collect();
            let mut reaped = Vec::new();
            // (outcome, incarnation the news claimed about the local node)
            let mut outcomes: Vec<(Applied, Option<Incarnation>)> = Vec::new();
            let about_local = |name: usize, i| (name == 0).then_some(i);
            match op.clone() {
                Op::Alive { name, port, incarnation, tagged } => outcomes.push((
                    t.apply_alive(make_claim(name, port, incarnation, tagged), now),
                    about_local(name, incarnation),
                )),
                Op::Suspect { name, incarnation } => outcomes.push((
                    t.apply_suspect(NAMES[name], incarnation, now),
                    about_local(name, incarnation),
                )),
                Op::Dead { name, incarnation, left } => outcomes.push((
                    t.apply_dead(NAMES[name], incarnation, left, now),
                    about_local(name, incarnation),
                )),
                Op::Merge(entries) => {
                    let remote = entries
                        .iter()
                        .map(|&(name, port, i, state)| (make_claim(name, port, i, false), state));
                    outcomes.extend(t.merge(remote, now).into_iter().map(|a| (a, None)));
                }
                Op::Leave => {
                    t.leave_local(now);
                    left = true;
                }
                Op::Rejoin => {
                    t.rejoin_local(now);
                    left = false;
                }
                Op::SetTags => drop(t.set_local_tags(Tags::from_pairs([("v", "2")]).unwrap())),
                Op::Bump => drop(t.bump_local()),
                Op::Reap => {
                    reaped = t.reap(now, Duration::from_secs(1), Duration::from_secs(2));
                }
                Op::Advance(ms) => now += Duration::from_millis(ms),
            }
            t.check_invariants();
            let expected_local = if left { State::Left } else { State::Alive };
            prop_assert_eq!(t.local().state, expected_local, "after {:?}", op);
            prop_assert_eq!(
                t.live_count(),
                t.iter().filter(|m| m.is_live()).count()
            );
            for (name, old) in &before {
                match t.get(name) {
                    Some(member) => prop_assert!(
                        member.incarnation >= *old,
                        "{} went from {} to {} after {:?}", name, old, member.incarnation, op
                    ),
                    None => prop_assert!(
                        name != LOCAL && reaped.iter().any(|m| &m.name == name),
                        "{} vanished after {:?}", name, op
                    ),
                }
            }
            for member in &reaped {
                prop_assert!(matches!(member.state, State::Dead | State::Left));
            }
            for (applied, claimed) in &outcomes {
                match applied {
                    Applied::Refuted(claim) => {
                        prop_assert_eq!(&claim.name, LOCAL);
                        prop_assert!(claim.incarnation <= t.local().incarnation);
                        if outcomes.len() == 1 {
                            prop_assert_eq!(claim, &t.local().claim());
                        }
                        if let Some(claimed) = claimed {
                            prop_assert!(
                                claim.incarnation > *claimed
                                    || *claimed == inc(u64::MAX, u64::MAX)
                            );
                        }
                    }
                    Applied::Changed { member, .. } => {
                        prop_assert_ne!(&member.name, LOCAL);
                    }
                    Applied::Conflict { existing, .. } => prop_assert!(existing.is_live()),
                    Applied::Ignored => {}
                }
            }
        }
    }
}

#[test]
fn remove_drops_a_member_and_its_tombstone_but_never_the_local_node() {
    let t0 = Instant::now();
    let mut t = table(t0);
    t.apply_alive(claim("a", 1, inc(1, 0)), t0);
    t.apply_alive(claim("b", 2, inc(1, 0)), t0);
    t.apply_dead("b", inc(1, 0), true, t0);
    assert_eq!(t.live_count(), 2);
    assert_eq!(t.remove("a").map(|m| m.name), Some("a".into()));
    assert_eq!(t.remove("b").map(|m| m.state), Some(State::Left));
    assert!(t.remove(LOCAL).is_none());
    assert!(t.remove("nobody").is_none());
    assert_eq!(t.live_count(), 1);
    assert_eq!(t.len(), 1);
    // The removed tombstone is not reaped again later.
    assert!(t.reap(t0 + Duration::from_secs(10), Duration::ZERO, Duration::ZERO).is_empty());
}
