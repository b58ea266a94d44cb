//! The serf-style election, driven deterministically: member lists built by hand, a virtual
//! `Instant` and wall clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use leader_failover::{Election, ElectionConfig, MembershipElection, Role, RoleChange};
use membership::{Incarnation, Member, ProtocolRange, State, Tags};

const SETTLE: Duration = Duration::from_secs(3);

fn config() -> ElectionConfig {
    ElectionConfig { settle: SETTLE, ..ElectionConfig::default() }
}

fn wall(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn member<K: Into<String>, V: Into<String>>(
    name: &str,
    state: State,
    tags: impl IntoIterator<Item = (K, V)>,
    now: Instant,
) -> Member {
    Member {
        name: name.into(),
        addr: ([10, 0, 0, 1], 7946).into(),
        incarnation: Incarnation::new(1, 0),
        state,
        tags: Tags::from_pairs(tags).unwrap(),
        protocol: ProtocolRange { min: 1, max: 1, cur: 1 },
        state_changed: now,
    }
}

fn standby(name: &str, now: Instant) -> Member {
    member(name, State::Alive, [("role", "standby")], now)
}

fn preferred_standby(name: &str, now: Instant) -> Member {
    member(name, State::Alive, [("role", "standby"), ("role_pref", "1")], now)
}

fn primary(name: &str, since_ms: u64, now: Instant) -> Member {
    member(name, State::Alive, [("role", "primary".to_owned()), ("role_since", since_ms.to_string())], now)
}

fn with_state(mut member: Member, state: State) -> Member {
    member.state = state;
    member
}

/// An election for `name` that has passed its settle period at `start + SETTLE`.
fn settled(name: &str, preferred: bool, start: Instant) -> MembershipElection {
    MembershipElection::new(name, config(), preferred, start)
}

fn after_settle(start: Instant) -> Instant {
    start + SETTLE
}

/// Which of `names` claim the role when each computes on `members`, fresh and settled.
fn claimants(names: &[&str], members: &[Member], start: Instant) -> Vec<String> {
    names
        .iter()
        .filter_map(|name| {
            let mut election = settled(name, false, start);
            let _ = election.update(members, after_settle(start), wall(10));
            (election.role() == Role::Primary).then(|| (*name).to_owned())
        })
        .collect()
}

#[test]
fn bootstrap_picks_the_preferred_node() {
    let start = Instant::now();
    let members = [standby("node1", start), preferred_standby("node2", start), standby("node3", start)];
    assert_eq!(claimants(&["node1", "node2", "node3"], &members, start), ["node2"]);

    let mut node2 = MembershipElection::new("node2", config(), true, start);
    let change = node2.update(&members, after_settle(start), wall(10)).unwrap();
    assert_eq!(
        change,
        RoleChange {
            from: Role::Ineligible,
            to: Role::Primary,
            primary: Some("node2".into()),
            previous_primary: None,
            fencing_token: None
        }
    );
    let view = node2.view();
    assert_eq!(view.primary.as_deref(), Some("node2"));
    assert_eq!(view.since, Some(wall(10)));
    assert_eq!(view.eligible, ["node2", "node1", "node3"]);
}

#[test]
fn others_wait_for_the_claim_and_then_follow_it() {
    let start = Instant::now();
    let mut node1 = settled("node1", false, start);
    let members = [standby("node1", start), preferred_standby("node2", start)];
    assert_eq!(node1.update(&members, after_settle(start), wall(10)).map(|c| c.to), Some(Role::Standby));
    assert_eq!(node1.view().primary, None, "node2 is next but has not claimed yet");

    let members = [standby("node1", start), primary("node2", 1_000, start)];
    assert_eq!(node1.update(&members, after_settle(start), wall(11)), None);
    assert_eq!(node1.view().primary.as_deref(), Some("node2"));
    assert_eq!(node1.view().since, Some(UNIX_EPOCH + Duration::from_millis(1_000)));
}

#[test]
fn initial_tags_start_eligible_nodes_as_standby() {
    let start = Instant::now();
    let election = MembershipElection::new("node1", config(), true, start);
    assert_eq!(
        election.initial_tags("primary"),
        [("role".to_owned(), "standby".to_owned()), ("role_pref".to_owned(), "1".to_owned())]
    );
    let election = MembershipElection::new("web1", config(), false, start);
    assert_eq!(election.initial_tags("web"), [("role".to_owned(), "web".to_owned())]);
}

#[test]
fn incumbent_keeps_the_role_against_better_ranked_members() {
    let start = Instant::now();
    let config = ElectionConfig { priority_tag: Some("prio".into()), ..config() };
    let members = [
        member("node1", State::Alive, [("role", "standby"), ("role_pref", "1"), ("prio", "9")], start),
        primary("node7", 1_000, start),
    ];
    let mut node1 = MembershipElection::new("node1", config, true, start);
    assert_eq!(node1.update(&members, after_settle(start), wall(10)).map(|c| c.to), Some(Role::Standby));
    assert_eq!(node1.view().primary.as_deref(), Some("node7"));
    assert_eq!(node1.view().eligible, ["node1", "node7"], "node1 is first in line, but node7 holds the role");
}

#[test]
fn failover_goes_to_the_first_in_order_and_names_the_failed_primary() {
    let start = Instant::now();
    let mut node2 = settled("node2", false, start);
    let mut node3 = settled("node3", false, start);
    let t = after_settle(start);
    let before = [primary("node1", 1_000, start), standby("node2", start), standby("node3", start)];
    for election in [&mut node2, &mut node3] {
        assert_eq!(election.update(&before, t, wall(10)).map(|c| c.to), Some(Role::Standby));
    }

    let after =
        [with_state(primary("node1", 1_000, start), State::Dead), standby("node2", start), standby("node3", start)];
    let change = node2.update(&after, t + Duration::from_secs(60), wall(70)).unwrap();
    assert_eq!(
        change,
        RoleChange {
            from: Role::Standby,
            to: Role::Primary,
            primary: Some("node2".into()),
            previous_primary: Some("node1".into()),
            fencing_token: None
        }
    );
    assert_eq!(node3.update(&after, t + Duration::from_secs(60), wall(70)), None);
    assert_eq!(node3.view().primary, None);
    assert_eq!(node3.view().eligible, ["node2", "node3"]);
}

#[test]
fn a_primary_that_left_is_replaced_too() {
    let start = Instant::now();
    let members = [with_state(primary("node1", 1_000, start), State::Left), standby("node2", start)];
    assert_eq!(claimants(&["node2"], &members, start), ["node2"]);
}

#[test]
fn names_are_ordered_by_their_numbers() {
    let start = Instant::now();
    let members =
        [standby("node10", start), standby("node9", start), standby("node2", start), standby("node11", start)];
    assert_eq!(claimants(&["node10", "node9", "node2", "node11"], &members, start), ["node2"]);
}

#[test]
fn priority_tag_ranks_before_preference_and_name() {
    let start = Instant::now();
    let config = ElectionConfig { priority_tag: Some("prio".into()), ..config() };
    let members = [
        member("node1", State::Alive, [("role", "standby"), ("role_pref", "1")], start),
        member("node2", State::Alive, [("role", "standby"), ("prio", "-1")], start),
        member("node3", State::Alive, [("role", "standby"), ("prio", "5")], start),
        member("node4", State::Alive, [("role", "standby"), ("prio", "not a number")], start),
    ];
    let mut node3 = MembershipElection::new("node3", config.clone(), false, start);
    assert_eq!(node3.update(&members, after_settle(start), wall(10)).map(|c| c.to), Some(Role::Primary));
    assert_eq!(node3.view().eligible, ["node3", "node1", "node4", "node2"]);

    let mut node1 = MembershipElection::new("node1", config, true, start);
    assert_eq!(node1.update(&members, after_settle(start), wall(10)).map(|c| c.to), Some(Role::Standby));
}

#[test]
fn returning_old_primary_stays_standby() {
    let start = Instant::now();
    // node1 was primary and preferred; it restarted, publishes standby, and node2 holds the role.
    let members = [preferred_standby("node1", start), primary("node2", 1_000, start)];
    let mut node1 = MembershipElection::new("node1", config(), true, start);
    for t in [start, after_settle(start), after_settle(start) + Duration::from_secs(3600)] {
        let _ = node1.update(&members, t, wall(10));
        assert_eq!(node1.role(), Role::Standby);
        assert_eq!(node1.view().primary.as_deref(), Some("node2"));
    }
}

#[test]
fn of_two_claims_the_older_wins_and_the_younger_steps_down() {
    let start = Instant::now();
    let t = after_settle(start);
    // node1 was alone on its side of a partition and claimed at wall(100).
    let mut node1 = settled("node1", false, start);
    assert_eq!(node1.update(&[standby("node1", start)], t, wall(100)).map(|c| c.to), Some(Role::Primary));

    // The partition heals: node5 has held the role since wall(50).
    let older = primary("node5", wall_ms(50), start);
    let healed = [primary("node1", wall_ms(100), start), older.clone(), standby("node3", start)];
    let change = node1.update(&healed, t + Duration::from_secs(1), wall(101)).unwrap();
    assert_eq!(
        change,
        RoleChange {
            from: Role::Primary,
            to: Role::Standby,
            primary: Some("node5".into()),
            previous_primary: Some("node1".into()),
            fencing_token: None
        }
    );
    assert_eq!(node1.cleared_tags(Role::Standby), ["role_since"]);

    // node5 and a bystander agree.
    let mut node5 = settled("node5", false, start);
    let _ = node5.update(&[older], t, wall(50));
    assert_eq!(node5.role(), Role::Primary);
    assert_eq!(node5.update(&healed, t + Duration::from_secs(1), wall(101)), None);
    let mut node3 = settled("node3", false, start);
    let _ = node3.update(&healed, t, wall(101));
    assert_eq!((node3.role(), node3.view().primary.as_deref()), (Role::Standby, Some("node5")));
}

#[test]
fn a_claim_without_a_readable_time_loses_and_equal_times_fall_back_to_the_order() {
    let start = Instant::now();
    let untimed = member("node1", State::Alive, [("role", "primary")], start);
    let garbled = member("node0", State::Alive, [("role", "primary"), ("role_since", "yesterday")], start);
    let members = [untimed, garbled, primary("node9", 5_000, start), standby("node3", start)];
    let mut node3 = settled("node3", false, start);
    let _ = node3.update(&members, after_settle(start), wall(10));
    assert_eq!(node3.view().primary.as_deref(), Some("node9"));

    let members = [primary("node10", 5_000, start), primary("node9", 5_000, start), standby("node3", start)];
    let _ = node3.update(&members, after_settle(start), wall(10));
    assert_eq!(node3.view().primary.as_deref(), Some("node9"));
}

#[test]
fn settle_period_is_honoured_through_next_deadline() {
    let start = Instant::now();
    let mut node1 = MembershipElection::new("node1", config(), true, start);
    assert_eq!(node1.next_deadline(), Some(start + SETTLE));
    let alone = [preferred_standby("node1", start)];

    assert_eq!(node1.update(&alone, start, wall(0)).map(|c| c.to), Some(Role::Standby));
    assert_eq!(node1.update(&alone, start + SETTLE - Duration::from_millis(1), wall(2)), None);
    assert_eq!(node1.next_deadline(), Some(start + SETTLE));

    let change = node1.update(&alone, node1.next_deadline().unwrap(), wall(3)).unwrap();
    assert_eq!(change.to, Role::Primary);
    assert_eq!(node1.next_deadline(), None);
}

#[test]
fn a_zero_settle_period_claims_at_once() {
    let start = Instant::now();
    let config = ElectionConfig { settle: Duration::ZERO, ..config() };
    let mut node1 = MembershipElection::new("node1", config, false, start);
    assert_eq!(node1.next_deadline(), None);
    assert_eq!(node1.update(&[standby("node1", start)], start, wall(0)).map(|c| c.to), Some(Role::Primary));
}

#[test]
fn a_primary_seen_during_the_settle_period_is_followed_at_once() {
    let start = Instant::now();
    let mut node1 = MembershipElection::new("node1", config(), true, start);
    let members = [preferred_standby("node1", start), primary("node2", 1_000, start)];
    let _ = node1.update(&members, start, wall(0));
    assert_eq!((node1.role(), node1.view().primary.as_deref()), (Role::Standby, Some("node2")));
}

#[test]
fn a_suspect_primary_still_holds_the_role() {
    let start = Instant::now();
    let members = [with_state(primary("node1", 1_000, start), State::Suspect), standby("node2", start)];
    assert!(claimants(&["node2"], &members, start).is_empty());
    let mut node2 = settled("node2", false, start);
    let _ = node2.update(&members, after_settle(start), wall(10));
    assert_eq!(node2.view().primary.as_deref(), Some("node1"));

    // A suspect standby is still next in line.
    let members = [with_state(standby("node1", start), State::Suspect), standby("node2", start)];
    let _ = node2.update(&members, after_settle(start), wall(10));
    assert_eq!(node2.view().eligible, ["node1", "node2"]);
    assert_eq!(node2.role(), Role::Standby);
}

#[test]
fn ineligible_nodes_never_claim() {
    let start = Instant::now();
    let members = [
        member("a-web", State::Alive, [("role", "web")], start),
        member("b-untagged", State::Alive, Vec::<(String, String)>::new(), start),
        standby("node9", start),
    ];
    assert_eq!(claimants(&["a-web", "b-untagged", "node9"], &members, start), ["node9"]);

    let mut web = settled("a-web", false, start);
    assert_eq!(web.update(&members, after_settle(start), wall(10)), None);
    assert_eq!(web.role(), Role::Ineligible);
    assert!(web.tags_for(Role::Ineligible).is_empty());
    assert_eq!(web.view().eligible, ["node9"]);

    // Alone, an ineligible node still does not claim.
    let alone = [member("a-web", State::Alive, [("role", "web")], start)];
    let _ = web.update(&alone, after_settle(start), wall(10));
    assert_eq!((web.role(), web.view().primary), (Role::Ineligible, None));
}

#[test]
fn extra_eligible_values_take_part() {
    let start = Instant::now();
    let config = ElectionConfig { eligible_values: vec!["db".into()], ..config() };
    let members = [member("db1", State::Alive, [("role", "db")], start), standby("node2", start)];
    let mut db1 = MembershipElection::new("db1", config, false, start);
    assert_eq!(db1.update(&members, after_settle(start), wall(10)).map(|c| c.to), Some(Role::Primary));
}

#[test]
fn the_local_claim_is_the_elections_state_not_its_lagging_tag() {
    let start = Instant::now();
    let t = after_settle(start);
    let mut node1 = settled("node1", false, start);
    let _ = node1.update(&[standby("node1", start), standby("node2", start)], t, wall(10));
    assert_eq!(node1.role(), Role::Primary);
    // Our own tag still says standby: we stay primary, and node2 is not elected instead.
    assert_eq!(node1.update(&[standby("node1", start), standby("node2", start)], t, wall(11)), None);
    assert_eq!(node1.view().since, Some(wall(10)));
    // A stale `primary` tag of our own after a restart is not a claim of ours.
    let mut restarted = settled("node2", false, start);
    let members = [standby("node1", start), primary("node2", 1, start)];
    let _ = restarted.update(&members, start, wall(20));
    assert_eq!((restarted.role(), restarted.view().primary), (Role::Standby, None));
}

#[test]
fn leaving_or_resigning_releases_the_role() {
    let start = Instant::now();
    let t = after_settle(start);
    let mut node1 = settled("node1", false, start);
    let _ = node1.update(&[standby("node1", start), standby("node2", start)], t, wall(10));
    assert_eq!(node1.role(), Role::Primary);

    let change = node1.resign().unwrap();
    assert_eq!((change.from, change.to), (Role::Primary, Role::Standby));
    assert_eq!(change.previous_primary.as_deref(), Some("node1"));
    assert_eq!(node1.resign(), None);
    // A resigned node never claims again, even alone.
    let _ = node1.update(&[standby("node1", start)], t + Duration::from_secs(1), wall(11));
    assert_eq!((node1.role(), node1.view().primary), (Role::Standby, None));

    // A primary whose own member has left becomes ineligible (release).
    let mut node2 = settled("node2", false, start);
    let _ = node2.update(&[standby("node2", start)], t, wall(10));
    let left = [with_state(primary("node2", wall_ms(10), start), State::Left)];
    let change = node2.update(&left, t, wall(12)).unwrap();
    assert_eq!((change.from, change.to), (Role::Primary, Role::Ineligible));
}

#[test]
fn tags_for_each_role_and_apply_tags() {
    let start = Instant::now();
    let config = ElectionConfig { settle: Duration::ZERO, ..config() };
    let mut node1 = MembershipElection::new("node1", config, true, start);
    let mut tags = Tags::from_pairs(node1.initial_tags("primary")).unwrap();
    tags.insert("dc", "east").unwrap();

    let _ = node1.update(&[preferred_standby("node1", start)], start, wall_at_ms(1_700_000_000_123));
    assert_eq!(node1.role(), Role::Primary);
    node1.apply_tags(Role::Primary, &mut tags).unwrap();
    assert_eq!(tags.get("role"), Some("primary"));
    assert_eq!(tags.get("role_since"), Some("1700000000123"));
    assert_eq!(tags.get("role_pref"), Some("1"));
    assert_eq!(tags.get("dc"), Some("east"));

    let _ = node1.resign();
    node1.apply_tags(Role::Standby, &mut tags).unwrap();
    assert_eq!(tags.get("role"), Some("standby"));
    assert_eq!(tags.get("role_since"), None);
    assert_eq!(tags.get("dc"), Some("east"));

    // All or nothing when the tags would not fit.
    let mut full = Tags::from_pairs([("blob", "x".repeat(490))]).unwrap();
    let before = full.clone();
    assert!(node1.apply_tags(Role::Standby, &mut full).is_err());
    assert_eq!(full, before);
}

#[test]
fn the_election_is_usable_as_a_trait_object() {
    let start = Instant::now();
    let mut election: Box<dyn Election> = Box::new(MembershipElection::new("node1", config(), false, start));
    let _ = election.update(&[standby("node1", start)], after_settle(start), wall(10));
    assert_eq!(election.role(), Role::Primary);
    assert_eq!(election.tags_for(Role::Primary)[0], ("role".to_owned(), "primary".to_owned()));
}

fn wall_ms(secs: u64) -> u64 {
    wall(secs).duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn wall_at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

mod properties {
    use std::collections::BTreeSet;

    use leader_failover::natural_cmp;
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    struct Spec {
        number: u16,
        state: State,
        /// 0: web (ineligible), 1: standby, 2: primary claim, 3: untagged.
        role: u8,
        preferred: bool,
        priority: Option<i8>,
        since: Option<u16>,
    }

    fn state() -> impl Strategy<Value = State> {
        prop_oneof![4 => Just(State::Alive), 1 => Just(State::Suspect), 1 => Just(State::Dead), 1 => Just(State::Left)]
    }

    fn specs() -> impl Strategy<Value = Vec<Spec>> {
        prop::collection::vec(
            (0u16..40, state(), 0u8..4, any::<bool>(), prop::option::of(-2i8..3), prop::option::of(0u16..5)),
            1..9,
        )
        .prop_map(|raw| {
            let mut seen = BTreeSet::new();
            raw.into_iter()
                .filter(|(number, ..)| seen.insert(*number))
                .map(|(number, state, role, preferred, priority, since)| Spec {
                    number,
                    state,
                    role,
                    preferred,
                    priority,
                    since,
                })
                .collect()
        })
    }

    fn build(specs: &[Spec], now: Instant) -> Vec<Member> {
        specs
            .iter()
            .map(|s| {
                let mut tags = Vec::new();
                match s.role {
                    0 => tags.push(("role".to_owned(), "web".to_owned())),
                    1 => tags.push(("role".to_owned(), "standby".to_owned())),
                    2 => {
                        tags.push(("role".to_owned(), "primary".to_owned()));
                        if let Some(since) = s.since {
                            tags.push(("role_since".to_owned(), since.to_string()));
                        }
                    }
                    _ => {}
                }
                if s.preferred {
                    tags.push(("role_pref".to_owned(), "1".to_owned()));
                }
                if let Some(priority) = s.priority {
                    tags.push(("prio".to_owned(), priority.to_string()));
                }
                member(&format!("node{}", s.number), s.state, tags, now)
            })
            .collect()
    }

    fn prio_config() -> ElectionConfig {
        ElectionConfig { priority_tag: Some("prio".into()), ..config() }
    }

    proptest! {
        /// Every node computing on the same view: at most one claims; when nobody holds a claim
        /// and somebody is eligible, exactly the first in order claims; the other nodes that do
        /// not carry a (stale) claim of their own agree on the primary (none yet, when the
        /// claim is new).
        #[test]
        fn same_view_gives_at_most_one_claimant(specs in specs()) {
            let start = Instant::now();
            let members = build(&specs, start);
            let eligible = |s: &Spec| s.state.is_live() && (s.role == 1 || s.role == 2);
            let mut claimants = Vec::new();
            let mut primaries = BTreeSet::new();
            for spec in specs.iter().filter(|s| eligible(s)) {
                let name = format!("node{}", spec.number);
                let mut election = MembershipElection::new(&name, prio_config(), spec.preferred, start);
                let _ = election.update(&members, after_settle(start), wall(10));
                if election.role() == Role::Primary {
                    claimants.push(name.clone());
                } else if spec.role != 2 {
                    primaries.insert(election.view().primary);
                }
            }
            prop_assert!(claimants.len() <= 1, "claimants: {:?}", claimants);
            prop_assert!(primaries.len() <= 1, "views disagree: {:?}", primaries);

            let any_claim = specs.iter().any(|s| eligible(s) && s.role == 2);
            if !any_claim {
                let mut order: Vec<&Spec> = specs.iter().filter(|s| eligible(s)).collect();
                let name = |s: &Spec| format!("node{}", s.number);
                order.sort_by(|a, b| {
                    b.priority.unwrap_or(0).cmp(&a.priority.unwrap_or(0))
                        .then(b.preferred.cmp(&a.preferred))
                        .then_with(|| natural_cmp(&name(a), &name(b)))
                });
                let expected: Vec<String> = order.first().map(|s| name(s)).into_iter().collect();
                prop_assert_eq!(claimants, expected);
            }
        }

        /// A cluster elects one primary, each side of a partition elects (or keeps) one, and
        /// after the partition heals one round of updates leaves exactly the old primary.
        #[test]
        fn partitions_heal_to_the_oldest_claim(
            nodes in prop::collection::btree_set(0u16..50, 2..7),
            eligible_mask in any::<u8>(),
            side_mask in any::<u8>(),
            preferred in any::<prop::sample::Index>(),
            priorities in prop::collection::vec(prop::option::of(0i8..3), 7),
        ) {
            let names: Vec<String> = nodes.iter().map(|n| format!("node{n}")).collect();
            let preferred = preferred.index(names.len());
            let eligible: Vec<bool> = (0..names.len()).map(|i| i == preferred || eligible_mask & (1 << i) != 0).collect();
            let mut sim = Sim::new(&names, &eligible, preferred, &priorities);
            let all: Vec<usize> = (0..names.len()).collect();

            sim.run(&all, 3);
            let first = sim.primaries(&all);
            prop_assert_eq!(first.len(), 1, "one primary for the whole cluster");
            let first = first[0];
            prop_assert!(sim.agree(&all, first));

            let side_a: Vec<usize> = all.iter().copied().filter(|i| side_mask & (1 << i) != 0).collect();
            let side_b: Vec<usize> = all.iter().copied().filter(|i| side_mask & (1 << i) == 0).collect();
            sim.run(&side_a, 3);
            sim.run(&side_b, 3);
            for side in [&side_a, &side_b] {
                let expected = usize::from(side.iter().any(|&i| eligible[i]));
                prop_assert_eq!(sim.primaries(side).len(), expected, "one primary per side with eligible members");
                if side.contains(&first) {
                    prop_assert_eq!(sim.primaries(side), vec![first], "the side of the old primary keeps it");
                }
            }

            sim.run(&all, 1);
            prop_assert_eq!(sim.primaries(&all), vec![first], "one round after healing, only the oldest claim remains");
            prop_assert!(sim.agree(&all, first));
            sim.run(&all, 2);
            prop_assert_eq!(sim.primaries(&all), vec![first]);
        }
    }

    /// Synchronous rounds: every node of a side updates on the same view (its side alive, the
    /// rest dead), then publishes the tags for its new role.
    struct Sim {
        names: Vec<String>,
        elections: Vec<MembershipElection>,
        tags: Vec<Tags>,
        start: Instant,
        tick: u64,
    }

    impl Sim {
        fn new(names: &[String], eligible: &[bool], preferred: usize, priorities: &[Option<i8>]) -> Self {
            let start = Instant::now();
            let mut elections = Vec::new();
            let mut tags = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let election = MembershipElection::new(name, prio_config(), i == preferred, start);
                let role = if eligible[i] {
                    if i == preferred {
                        "primary"
                    } else {
                        "standby"
                    }
                } else {
                    "web"
                };
                let mut t = Tags::from_pairs(election.initial_tags(role)).unwrap();
                if let Some(priority) = priorities[i] {
                    t.insert("prio", priority.to_string()).unwrap();
                }
                elections.push(election);
                tags.push(t);
            }
            Self { names: names.to_vec(), elections, tags, start, tick: 0 }
        }

        fn view(&self, side: &[usize]) -> Vec<Member> {
            (0..self.names.len())
                .map(|i| {
                    let state = if side.contains(&i) { State::Alive } else { State::Dead };
                    let mut m = member(&self.names[i], state, Vec::<(String, String)>::new(), self.start);
                    m.tags = self.tags[i].clone();
                    m
                })
                .collect()
        }

        fn run(&mut self, side: &[usize], rounds: usize) {
            for _ in 0..rounds {
                self.tick += 1;
                let now = self.start + SETTLE + Duration::from_secs(self.tick);
                let members = self.view(side);
                for &i in side {
                    let _ = self.elections[i].update(&members, now, wall(self.tick));
                    let role = self.elections[i].role();
                    self.elections[i].apply_tags(role, &mut self.tags[i]).unwrap();
                }
            }
        }

        fn primaries(&self, side: &[usize]) -> Vec<usize> {
            side.iter().copied().filter(|&i| self.elections[i].role() == Role::Primary).collect()
        }

        fn agree(&self, side: &[usize], primary: usize) -> bool {
            side.iter().all(|&i| self.elections[i].view().primary.as_deref() == Some(self.names[primary].as_str()))
        }
    }
}
