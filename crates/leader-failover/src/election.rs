//! The serf-style election: the primary is derived from the member list and its tags.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use membership::Member;

use crate::config::{ElectionConfig, PRIMARY_VALUE, STANDBY_VALUE};
use crate::order::Candidate;
use crate::{Election, PrimaryView, Role, RoleChange};

/// The serf-style election: every node derives the primary from its own member list, by the
/// rules in the [crate docs](crate#election-rules).
///
/// Sans-io: it reads no clock, and it keeps no state about other members between updates; its own
/// state is the local claim (role and claim time), the end of the settle period and whether it
/// resigned.
#[derive(Debug, Clone)]
pub struct MembershipElection {
    local: String,
    config: ElectionConfig,
    since_tag: String,
    preferred_tag: String,
    preferred: bool,
    settle_until: Instant,
    settled: bool,
    resigned: bool,
    role: Role,
    /// The local claim time in unix ms, while primary.
    claimed_ms: Option<u64>,
    view: PrimaryView,
    previous_primary: Option<String>,
}

impl MembershipElection {
    /// The election as node `local` sees it, started at `now`.
    ///
    /// `preferred` is set for the node configured `ROLE=primary`: it publishes the preference tag,
    /// which ranks it first (after priority) whenever no member claims the role, and so wins the
    /// first election of a fresh cluster. The role is [`Role::Ineligible`] until an
    /// [`update`](Election::update) shows the local member with an eligible role tag.
    pub fn new(local: &str, config: ElectionConfig, preferred: bool, now: Instant) -> Self {
        Self {
            local: local.to_owned(),
            since_tag: config.since_tag(),
            preferred_tag: config.preferred_tag(),
            settle_until: now.checked_add(config.settle).unwrap_or(now),
            settled: config.settle == Duration::ZERO,
            config,
            preferred,
            resigned: false,
            role: Role::Ineligible,
            claimed_ms: None,
            view: PrimaryView::empty(Role::Ineligible),
            previous_primary: None,
        }
    }

    /// The tags to publish at start, before joining, for a node configured with role
    /// `configured_role`: [`tags_for(Standby)`](Election::tags_for) if that role is eligible (a
    /// node configured `primary` starts as standby too, rule 2), else the configured role itself.
    pub fn initial_tags(&self, configured_role: &str) -> Vec<(String, String)> {
        if self.config.is_eligible_value(configured_role) {
            self.tags_for(Role::Standby)
        } else {
            vec![(self.config.role_tag.clone(), configured_role.to_owned())]
        }
    }

    /// The local node's name.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The configuration.
    pub const fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// Whether this node is the preferred one (configured `ROLE=primary`).
    pub const fn preferred(&self) -> bool {
        self.preferred
    }

    fn is_eligible(&self, member: &Member) -> bool {
        member.is_live() && member.tags.get(&self.config.role_tag).is_some_and(|v| self.config.is_eligible_value(v))
    }

    fn candidate<'a>(&self, member: &'a Member) -> Candidate<'a> {
        let tags = &member.tags;
        let priority = self
            .config
            .priority_tag
            .as_deref()
            .and_then(|tag| tags.get(tag))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        let preferred = tags.get(&self.preferred_tag).is_some_and(|v| v == "1" || v == "true");
        let claim = if member.name == self.local {
            // Our own tags lag behind our decisions: our claim is our state.
            (self.role == Role::Primary).then_some(self.claimed_ms)
        } else {
            (tags.get(&self.config.role_tag) == Some(PRIMARY_VALUE))
                .then(|| tags.get(&self.since_tag).and_then(|v| v.trim().parse().ok()))
        };
        Candidate { name: &member.name, priority, preferred, claim }
    }
}

impl Election for MembershipElection {
    fn update(&mut self, members: &[Member], now: Instant, wall: SystemTime) -> Option<RoleChange> {
        if now >= self.settle_until {
            self.settled = true;
        }
        let local_eligible = members.iter().any(|m| m.name == self.local && self.is_eligible(m));

        // Rule 1: live eligible members, in rule-3 order.
        let mut candidates: Vec<Candidate<'_>> =
            members.iter().filter(|m| self.is_eligible(m)).map(|m| self.candidate(m)).collect();
        candidates.sort_by(Candidate::election_cmp);

        // Rule 4 among the claims (rule 2: any claim keeps everybody else from claiming).
        let best_claim = candidates.iter().filter(|c| c.claim.is_some()).min_by_key(|c| c.claim_age_key());
        let (role, primary, since_ms) = match best_claim {
            Some(best) => {
                let role = match (local_eligible, best.name == self.local) {
                    (false, _) => Role::Ineligible,
                    (true, true) => Role::Primary,
                    (true, false) => Role::Standby,
                };
                (role, Some(best.name.to_owned()), best.claim.flatten())
            }
            // Rule 3: nobody claims; the first in order takes it once settled.
            None if local_eligible
                && self.settled
                && !self.resigned
                && candidates.first().is_some_and(|c| c.name == self.local) =>
            {
                (Role::Primary, Some(self.local.clone()), Some(unix_ms(wall)))
            }
            None => (if local_eligible { Role::Standby } else { Role::Ineligible }, None, None),
        };
        let eligible = candidates.iter().map(|c| c.name.to_owned()).collect();

        self.claimed_ms = if role == Role::Primary { since_ms } else { None };
        let view = PrimaryView {
            primary,
            since: since_ms.map(from_unix_ms),
            eligible,
            local_role: role,
            fencing_token: None,
            valid_until: None,
        };
        self.set_view(view)
    }

    fn view(&self) -> PrimaryView {
        self.view.clone()
    }

    fn role(&self) -> Role {
        self.role
    }

    fn next_deadline(&self) -> Option<Instant> {
        (!self.settled).then_some(self.settle_until)
    }

    fn resign(&mut self) -> Option<RoleChange> {
        self.resigned = true;
        if self.role != Role::Primary {
            return None;
        }
        self.claimed_ms = None;
        let view = PrimaryView { primary: None, since: None, local_role: Role::Standby, ..self.view.clone() };
        self.set_view(view)
    }

    fn tags_for(&self, role: Role) -> Vec<(String, String)> {
        let value = match role {
            Role::Ineligible => return Vec::new(),
            Role::Primary => PRIMARY_VALUE,
            Role::Standby => STANDBY_VALUE,
        };
        let mut tags = vec![(self.config.role_tag.clone(), value.to_owned())];
        if let (Role::Primary, Some(ms)) = (role, self.claimed_ms) {
            tags.push((self.since_tag.clone(), ms.to_string()));
        }
        if self.preferred {
            tags.push((self.preferred_tag.clone(), "1".to_owned()));
        }
        tags
    }

    fn cleared_tags(&self, role: Role) -> Vec<String> {
        match role {
            Role::Primary => Vec::new(),
            Role::Standby | Role::Ineligible => vec![self.since_tag.clone()],
        }
    }
}

impl MembershipElection {
    /// Installs `view` and the role it holds; returns the change of the local role, if any.
    fn set_view(&mut self, view: PrimaryView) -> Option<RoleChange> {
        if view.primary != self.view.primary {
            if let Some(old) = self.view.primary.take() {
                self.previous_primary = Some(old);
            }
        }
        let (from, to) = (self.role, view.local_role);
        self.role = to;
        self.view = view;
        if from == to {
            return None;
        }
        let change = RoleChange {
            from,
            to,
            primary: self.view.primary.clone(),
            previous_primary: self.previous_primary.clone(),
            fencing_token: None,
        };
        tracing::info!(
            node = %self.local,
            from = %change.from,
            to = %change.to,
            primary = change.primary.as_deref().unwrap_or(""),
            previous_primary = change.previous_primary.as_deref().unwrap_or(""),
            "election: local role changed"
        );
        Some(change)
    }
}

fn unix_ms(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH.checked_add(Duration::from_millis(ms)).unwrap_or(UNIX_EPOCH)
}
