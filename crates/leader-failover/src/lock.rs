//! The consul-style election: the primary is the node whose session holds a lock key in a
//! replicated key/value store (Consul's `/v1/kv/<key>?acquire=<session>`), and it stays primary
//! only while it can confirm that hold with a linearizable read.
//!
//! Sans-io, like [`MembershipElection`](crate::MembershipElection): [`LockElection`] sends no
//! request and reads no clock. The driver (an agent talking to its `/v1` API) performs each
//! [`LockAction`] from [`poll_action`](LockElection::poll_action), reports the answer with
//! [`handle`](LockElection::handle) as a [`LockEvent`], and calls
//! [`update`](crate::Election::update) at [`next_deadline`](crate::Election::next_deadline).
//!
//! ```text
//!  no session ──CreateSession──► SessionCreated ──► standby ──(key free)──Acquire──► Acquired
//!      ▲                                              ▲  ▲    ▲                            │
//!      └──────── SessionGone (invalidated) ───────────┘  │    └─ AcquireRefused: again  key read
//!                                                        │       when the lock-delay   after it
//!                                                        │       ends (freed + D)      │  │ no read:
//!      lost: a read shows another holder, or no ─────────┘◄── primary ◄─(ours)─────────┘  Confirm
//!      confirmed read for step_down_after                      │ ◄── Confirmed (ours) ────┘
//!                                                              │  Confirm every confirm_interval,
//!                                                              │  Watch (blocking query) all along
//!  resign(): Release, then DestroySession (no lock-delay for the next holder)
//! ```
//!
//! # Failover without idle waits
//!
//! A standby acquires as soon as a read (the watch) shows the key freed. A graceful release
//! sets no lock-delay, so that acquire succeeds; after an invalidation the servers refuse it
//! until the lock-delay ends. Consul's API does not say how long is left, but the delay began
//! before the standby saw the key freed, so it is over at `freed_at + lock_delay` (the
//! standby's own [`lock_delay`](LockElectionConfig::lock_delay): every node of one election
//! is assumed to use the same): the standby tries again exactly then, and only a refusal past
//! that instant falls back to [`retry_interval`](LockElectionConfig::retry_interval). An
//! acquire that succeeds makes the node primary at once when the driver read the key after it
//! ([`LockEvent::Acquired`] with its `key`): the acquire is a write through the servers' log, applied
//! after it was sent, so it proves the hold as a confirm does, and the read gives the fencing
//! token.
//!
//! # The step-down bound
//!
//! The node is primary while `now < s + B`, where `s` is the instant the last `Confirm` that
//! showed its session holding the key (or the successful `Acquire`) was *sent* and `B` is
//! [`step_down_after`](LockElectionConfig::step_down_after). A confirm is a `?consistent` read:
//! the server answers it only after a quorum of servers confirmed its leadership after the read
//! arrived, so the hold was real at some instant after `s`; an acquire is applied from the
//! servers' log after it was sent, which proves the same. Another node can acquire the key only
//! after the session has been invalidated (at `t_inv`, after that instant) and the key's
//! lock-delay `D` has passed: not before `s + D + (t_inv - s)`. Two primaries never coexist if
//! `B <= D + (t_inv - s)`:
//!
//! - when the holder is cut off (crash, partition with a minority of servers), the session is
//!   invalidated only once the servers' failure detector has declared its node failed, at least
//!   the detector's minimum detection time `T` after the cut, which is after `s`: `B < D + T`
//!   suffices;
//! - when the session is invalidated while the holder can still read (its node's health check
//!   failed, the session was destroyed), the holder sees the loss on its next confirm (sent within
//!   [`confirm_interval`](LockElectionConfig::confirm_interval)) or sooner through the watch:
//!   `confirm_interval` plus one read must stay below `D`.
//!
//! The bound is counted on this node's monotonic clock and the lock-delay on the server's; their
//! rates differ by parts per million, which the margin covers.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use membership::{Member, State};

use crate::config::{PRIMARY_VALUE, STANDBY_VALUE};
use crate::{natural_cmp, Election, PrimaryView, Role, RoleChange};

/// Settings of a [`LockElection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockElectionConfig {
    /// The lock key (default `service/primary/leader`).
    pub key: String,
    /// The name of the session (default `primary election`).
    pub session_name: String,
    /// The session's lock-delay: after the session is invalidated, nobody may acquire the key
    /// for this long (default 1 s; Consul's API default is 15 s). Part of the safety argument:
    /// see [`step_down_after`](Self::step_down_after).
    pub lock_delay: Duration,
    /// A session TTL, renewed every TTL / 2 (default none: the session lives as long as the
    /// node's health checks pass, which is what the agent's election wants).
    pub session_ttl: Option<Duration>,
    /// How often the primary confirms its hold with a linearizable read (default 500 ms).
    pub confirm_interval: Duration,
    /// The step-down bound `B`: a primary that has not confirmed its hold for this long (counted
    /// from when the last successful confirm was sent) stops being primary (default 2 s). Keep it
    /// below the lock-delay plus the servers' minimum failure-detection time (module docs).
    pub step_down_after: Duration,
    /// The wait before trying again after a failed request or a refused acquire (default 250 ms).
    pub retry_interval: Duration,
    /// The gossip tag carrying `primary` / `standby` (default `role`); only used by
    /// [`Election::tags_for`] and to list the eligible members.
    pub role_tag: String,
    /// Destroy a session that holds the key with this node's name as its value but is not this
    /// election's own: the session of a previous run of the same agent, which crashed and
    /// restarted before its node was declared failed (default false).
    pub replace_own_stale_session: bool,
}

impl Default for LockElectionConfig {
    fn default() -> Self {
        Self {
            key: "service/primary/leader".to_owned(),
            session_name: "primary election".to_owned(),
            lock_delay: Duration::from_secs(1),
            session_ttl: None,
            confirm_interval: Duration::from_millis(500),
            step_down_after: Duration::from_secs(2),
            retry_interval: Duration::from_millis(250),
            role_tag: "role".to_owned(),
            replace_own_stale_session: false,
        }
    }
}

/// A bad [`LockElectionConfig`]; [`LockElectionConfig::validate`] names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockConfigError {
    /// The key is empty or starts with `/`.
    #[error("lock key: {key:?} must be non-empty and not start with '/'")]
    Key {
        /// The configured key.
        key: String,
    },
    /// A duration that must be positive is zero.
    #[error("{what}: must be more than 0")]
    Zero {
        /// Which setting.
        what: &'static str,
    },
    /// The confirm interval is not below the step-down bound.
    #[error("confirm interval ({confirm:?}) must be less than the step-down bound ({step_down:?})")]
    ConfirmInterval {
        /// The confirm interval.
        confirm: Duration,
        /// The step-down bound.
        step_down: Duration,
    },
    /// The lock-delay is over Consul's cap of 60 s.
    #[error("lock-delay: {0:?} must be at most 60s")]
    LockDelay(Duration),
    /// The TTL is outside Consul's 10 s to 86400 s.
    #[error("session TTL: {0:?} must be from 10s to 86400s")]
    Ttl(Duration),
}

impl LockElectionConfig {
    /// The configuration, if it is usable.
    pub fn validate(self) -> Result<Self, LockConfigError> {
        if self.key.is_empty() || self.key.starts_with('/') {
            return Err(LockConfigError::Key { key: self.key });
        }
        for (what, value) in [
            ("confirm interval", self.confirm_interval),
            ("step-down bound", self.step_down_after),
            ("retry interval", self.retry_interval),
        ] {
            if value.is_zero() {
                return Err(LockConfigError::Zero { what });
            }
        }
        if self.confirm_interval >= self.step_down_after {
            return Err(LockConfigError::ConfirmInterval {
                confirm: self.confirm_interval,
                step_down: self.step_down_after,
            });
        }
        if self.lock_delay > Duration::from_secs(60) {
            return Err(LockConfigError::LockDelay(self.lock_delay));
        }
        if let Some(ttl) = self.session_ttl {
            if !(Duration::from_secs(10)..=Duration::from_secs(86_400)).contains(&ttl) {
                return Err(LockConfigError::Ttl(ttl));
            }
        }
        Ok(self)
    }
}

/// The lock key as a read showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// The session holding the key, if any.
    pub session: Option<String>,
    /// The key's value as text: the holder's node name, as this election writes it.
    pub holder: Option<String>,
    /// The key's `LockIndex` (how many times it was acquired).
    pub lock_index: u64,
    /// The key's `ModifyIndex`.
    pub modify_index: u64,
}

/// What the driver must do next; from [`LockElection::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAction {
    /// Create a session (`PUT /v1/session/create`) bound to this node's health (`serfHealth`),
    /// then report [`LockEvent::SessionCreated`] or [`LockEvent::SessionFailed`].
    CreateSession {
        /// Its name.
        name: String,
        /// Its lock-delay.
        lock_delay: Duration,
        /// Its TTL, if any.
        ttl: Option<Duration>,
    },
    /// Acquire the key for `session` with `value` (`PUT /v1/kv/<key>?acquire=<session>`), then
    /// report [`LockEvent::Acquired`] (with the key read right after, see there),
    /// [`LockEvent::AcquireRefused`] (`false`), [`LockEvent::SessionGone`] (the session is
    /// invalid) or [`LockEvent::AcquireFailed`]. A successful acquire starts the step-down bound
    /// when this action is returned: send it at once.
    Acquire {
        /// The session.
        session: String,
        /// The value to write: this node's name.
        value: String,
    },
    /// Read the key with `?consistent`, then report [`LockEvent::Confirmed`] or
    /// [`LockEvent::ConfirmFailed`]. The bound starts when this action is returned: send it at once.
    Confirm,
    /// A blocking read of the key (`?index=<index>`), then [`LockEvent::Watched`] or
    /// [`LockEvent::WatchFailed`].
    Watch {
        /// The index to wait beyond (0: answer at once).
        index: u64,
    },
    /// Renew the session (`PUT /v1/session/renew/<session>`), then [`LockEvent::Renewed`],
    /// [`LockEvent::SessionGone`] (404) or [`LockEvent::RenewFailed`].
    Renew {
        /// The session.
        session: String,
    },
    /// Release the key (`PUT /v1/kv/<key>?release=<session>`): no lock-delay for the next holder.
    Release {
        /// The session.
        session: String,
    },
    /// Destroy a session (`PUT /v1/session/destroy/<session>`).
    DestroySession {
        /// The session.
        session: String,
    },
}

/// The answer to a [`LockAction`], for [`LockElection::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockEvent {
    /// The session was created.
    SessionCreated {
        /// Its ID.
        id: String,
    },
    /// Creating the session failed.
    SessionFailed,
    /// The acquire answered `true`.
    Acquired {
        /// The session it was for.
        session: String,
        /// The key as a read sent after the acquire answered showed it, from a server or agent
        /// that holds that write (Consul's default consistency, or an agent that answers its
        /// own writes); `None` if the driver did not read it. When it shows the session holding
        /// the key, its `ModifyIndex` is the fencing token and the node is primary at once;
        /// otherwise it waits for a `?consistent` confirm.
        key: Option<KeyState>,
    },
    /// The acquire answered `false` (another holder, or the lock-delay).
    AcquireRefused,
    /// The acquire failed (no answer, no leader, ...).
    AcquireFailed,
    /// The server says the session no longer exists (invalidated or destroyed).
    SessionGone {
        /// The session.
        session: String,
    },
    /// The `?consistent` read answered: the key (`None`: it does not exist).
    Confirmed {
        /// The key.
        key: Option<KeyState>,
    },
    /// The `?consistent` read failed (no quorum, timeout, ...).
    ConfirmFailed,
    /// The blocking read answered.
    Watched {
        /// The key (`None`: it does not exist).
        key: Option<KeyState>,
        /// The answer's `X-Consul-Index`.
        index: u64,
    },
    /// The blocking read failed.
    WatchFailed,
    /// The session was renewed.
    Renewed,
    /// Renewing failed (not a 404).
    RenewFailed,
}

/// The lock-based election (module docs); implements [`Election`] so that the agents share
/// the hooks and the web service with the membership election.
#[derive(Debug, Clone)]
pub struct LockElection {
    node: String,
    config: LockElectionConfig,
    session: Option<String>,
    creating: bool,
    acquiring: bool,
    /// When the last acquire was sent: a successful one starts the step-down bound there.
    acquire_sent: Instant,
    /// When a read first showed the key free after it was held: the lock-delay, if any, began
    /// before this instant, so it is over at `freed_at + lock_delay` (same lock-delay assumed).
    freed_at: Option<Instant>,
    watching: bool,
    renewing: bool,
    /// When the confirm in flight was sent.
    confirming: Option<Instant>,
    /// The acquire answered true and no read has shown the hold lost since.
    acquired: bool,
    /// The fencing token of the hold (the key's `ModifyIndex` at the first confirm).
    token: Option<u64>,
    /// When the last confirm that showed the hold was sent.
    confirmed_at: Option<Instant>,
    observed: Option<KeyState>,
    watch_index: u64,
    retry_at: Instant,
    watch_at: Instant,
    next_confirm: Instant,
    next_renew: Option<Instant>,
    stale_destroyed: Option<String>,
    resigned: bool,
    role: Role,
    view: PrimaryView,
    previous_primary: Option<String>,
    actions: VecDeque<LockAction>,
    /// The latest `now` this election was given.
    last_now: Instant,
}

impl LockElection {
    /// The election of node `node`, started at `now`. It asks for a session at once.
    pub fn new(node: impl Into<String>, config: LockElectionConfig, now: Instant) -> Self {
        let mut election = Self {
            node: node.into(),
            config,
            session: None,
            creating: false,
            acquiring: false,
            acquire_sent: now,
            freed_at: None,
            watching: false,
            renewing: false,
            confirming: None,
            acquired: false,
            token: None,
            confirmed_at: None,
            observed: None,
            watch_index: 0,
            retry_at: now,
            watch_at: now,
            next_confirm: now,
            next_renew: None,
            stale_destroyed: None,
            resigned: false,
            role: Role::Standby,
            view: PrimaryView::empty(Role::Standby),
            previous_primary: None,
            actions: VecDeque::new(),
            last_now: now,
        };
        election.step(now);
        election
    }

    /// The configuration.
    pub const fn config(&self) -> &LockElectionConfig {
        &self.config
    }

    /// This election's session, once created.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// The next request to send. Call after [`new`](Self::new), [`handle`](Self::handle),
    /// [`update`](Election::update) and [`resign`](Election::resign), until `None`.
    #[must_use = "every action must be performed and its answer reported"]
    pub fn poll_action(&mut self) -> Option<LockAction> {
        self.actions.pop_front()
    }

    /// Feeds the answer to an action at `now`; returns a change of the local role, if any.
    #[must_use = "a role change must publish tags and run hooks"]
    pub fn handle(&mut self, event: LockEvent, now: Instant) -> Option<RoleChange> {
        match event {
            LockEvent::SessionCreated { id } => {
                self.creating = false;
                self.session = Some(id);
                self.retry_at = now;
                self.next_renew = self.config.session_ttl.map(|ttl| now + ttl / 2);
            }
            LockEvent::SessionFailed => {
                self.creating = false;
                self.retry_at = now + self.config.retry_interval;
            }
            LockEvent::Acquired { session, key } => {
                self.acquiring = false;
                tracing::debug!(node = %self.node, "lock election: acquired");
                if self.session.as_deref() == Some(session.as_str()) {
                    self.acquired = true;
                    match key.as_ref().filter(|key| self.is_ours(Some(key))) {
                        // The acquire applied after it was sent: the hold was real then, as a
                        // confirm's is. Primary at once; the read gave the fencing token.
                        Some(read) => {
                            self.token = Some(read.modify_index);
                            self.confirmed_at = Some(self.acquire_sent);
                            self.next_confirm = self.acquire_sent + self.config.confirm_interval;
                            self.observe(key, now);
                        }
                        // No read (or not showing the hold): a consistent read decides.
                        None => self.next_confirm = now,
                    }
                }
            }
            LockEvent::AcquireRefused => {
                self.acquiring = false;
                // Refused inside the lock-delay: again exactly when it ends, as far as this node
                // can tell; refused past it (another holder, a longer delay): after the interval.
                let delay_over = self.freed_at.map(|at| at + self.config.lock_delay).filter(|end| *end > now);
                self.retry_at = delay_over.unwrap_or(now + self.config.retry_interval);
                tracing::debug!(node = %self.node, retry_in = ?self.retry_at - now, "lock election: acquire refused");
            }
            LockEvent::AcquireFailed => {
                tracing::debug!(node = %self.node, "lock election: acquire failed");
                self.acquiring = false;
                self.retry_at = now + self.config.retry_interval;
            }
            LockEvent::SessionGone { session } => {
                self.acquiring = false;
                self.renewing = false;
                if self.session.as_deref() == Some(session.as_str()) {
                    tracing::info!(node = %self.node, %session, "lock election: the session is gone");
                    self.session = None;
                    self.next_renew = None;
                    self.lose();
                    self.retry_at = now;
                }
            }
            LockEvent::Confirmed { key } => {
                let started = self.confirming.take().unwrap_or(now);
                self.next_confirm = started + self.config.confirm_interval;
                let ours = self.is_ours(key.as_ref());
                match (&key, ours, self.acquired) {
                    (Some(key), true, true) => {
                        self.token.get_or_insert(key.modify_index);
                        self.confirmed_at = Some(started);
                    }
                    (_, false, true) => {
                        tracing::info!(node = %self.node, "lock election: a consistent read shows the lock lost");
                        self.lose();
                        self.retry_at = now;
                    }
                    _ => {}
                }
                self.observe(key, now);
            }
            LockEvent::ConfirmFailed => {
                self.confirming = None;
                self.next_confirm = now + self.config.retry_interval.min(self.config.confirm_interval);
            }
            LockEvent::Watched { key, index } => {
                self.watching = false;
                // An index that went backwards (a restored server) restarts the watch from 0.
                self.watch_index = if index < self.watch_index { 0 } else { index };
                self.watch_at = now;
                let seen = key.as_ref().map_or(index, |key| key.modify_index);
                // A read older than the hold (a lagging server) says nothing about it.
                let current = self.token.is_some_and(|token| seen >= token);
                if self.acquired && current && !self.is_ours(key.as_ref()) {
                    tracing::info!(node = %self.node, "lock election: the watch shows the lock lost");
                    self.lose();
                }
                self.observe(key, now);
                // Freed just now (released, or its session invalidated): acquire at once; a
                // refusal then waits for the lock-delay's end.
                if self.freed_at == Some(now) {
                    tracing::debug!(node = %self.node, index, "lock election: the key is free");
                    self.retry_at = self.retry_at.min(now);
                }
            }
            LockEvent::WatchFailed => {
                self.watching = false;
                self.watch_at = now + self.config.retry_interval;
            }
            LockEvent::Renewed => {
                self.renewing = false;
                self.next_renew = self.config.session_ttl.map(|ttl| now + ttl / 2);
            }
            LockEvent::RenewFailed => {
                self.renewing = false;
                self.next_renew = Some(now + self.config.retry_interval);
            }
        }
        self.step(now);
        self.refresh(now)
    }

    fn is_ours(&self, key: Option<&KeyState>) -> bool {
        match (key.and_then(|key| key.session.as_deref()), self.session.as_deref()) {
            (Some(holder), Some(ours)) => holder == ours,
            _ => false,
        }
    }

    fn lose(&mut self) {
        self.acquired = false;
        self.token = None;
        self.confirmed_at = None;
    }

    /// Takes in the key as a read at `now` showed it.
    fn observe(&mut self, key: Option<KeyState>, now: Instant) {
        let free = key.as_ref().is_none_or(|key| key.session.is_none());
        let was_held = self.observed.as_ref().is_some_and(|key| key.session.is_some());
        if !free {
            self.freed_at = None;
        } else if was_held {
            self.freed_at = Some(now);
        }
        if let Some(KeyState { session: Some(holder), holder: Some(value), .. }) = &key {
            let stale = self.config.replace_own_stale_session
                && *value == self.node
                && self.session.as_deref().is_some_and(|ours| ours != holder)
                && self.stale_destroyed.as_deref() != Some(holder.as_str());
            if stale && !self.resigned {
                tracing::info!(node = %self.node, session = %holder, "lock election: destroying this node's stale session");
                self.stale_destroyed = Some(holder.clone());
                self.actions.push_back(LockAction::DestroySession { session: holder.clone() });
            }
        }
        self.observed = key;
    }

    fn key_free(&self) -> bool {
        self.observed.as_ref().is_none_or(|key| key.session.is_none() || self.is_ours(Some(key)))
    }

    /// Queues the requests that are due at `now`.
    fn step(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if self.resigned {
            return;
        }
        let Some(session) = self.session.clone() else {
            if !self.creating && now >= self.retry_at {
                self.creating = true;
                self.actions.push_back(LockAction::CreateSession {
                    name: self.config.session_name.clone(),
                    lock_delay: self.config.lock_delay,
                    ttl: self.config.session_ttl,
                });
            }
            return;
        };
        if !self.watching && now >= self.watch_at {
            self.watching = true;
            self.actions.push_back(LockAction::Watch { index: self.watch_index });
        }
        if !self.acquired && !self.acquiring && now >= self.retry_at && self.key_free() {
            self.acquiring = true;
            self.acquire_sent = now;
            tracing::debug!(node = %self.node, "lock election: acquire sent");
            self.actions.push_back(LockAction::Acquire { session: session.clone(), value: self.node.clone() });
        }
        if self.acquired && self.confirming.is_none() && now >= self.next_confirm {
            self.confirming = Some(now);
            self.actions.push_back(LockAction::Confirm);
        }
        if !self.renewing && self.next_renew.is_some_and(|at| now >= at) {
            self.renewing = true;
            self.actions.push_back(LockAction::Renew { session });
        }
    }

    fn valid_until(&self) -> Option<Instant> {
        match (self.acquired, self.token, self.confirmed_at) {
            (true, Some(_), Some(at)) if !self.resigned => Some(at + self.config.step_down_after),
            _ => None,
        }
    }

    /// Recomputes the role and the view at `now`.
    fn refresh(&mut self, now: Instant) -> Option<RoleChange> {
        let valid_until = self.valid_until().filter(|until| now < *until);
        let role = if valid_until.is_some() { Role::Primary } else { Role::Standby };
        let primary = match role {
            Role::Primary => Some(self.node.clone()),
            _ => self
                .observed
                .as_ref()
                .filter(|key| key.session.is_some() && !self.is_ours(Some(key)))
                .and_then(|key| key.holder.clone()),
        };
        if primary != self.view.primary {
            if let Some(old) = self.view.primary.take() {
                self.previous_primary = Some(old);
            }
        }
        let given_up = self.view.fencing_token;
        self.view = PrimaryView {
            primary,
            since: None,
            eligible: std::mem::take(&mut self.view.eligible),
            local_role: role,
            fencing_token: if role == Role::Primary { self.token } else { None },
            valid_until,
        };
        let from = self.role;
        self.role = role;
        if from == role {
            return None;
        }
        let fencing_token = if role == Role::Primary { self.token } else { given_up };
        let change = RoleChange {
            from,
            to: role,
            primary: self.view.primary.clone(),
            previous_primary: self.previous_primary.clone(),
            fencing_token,
        };
        tracing::info!(
            node = %self.node,
            from = %change.from,
            to = %change.to,
            fencing_token = ?fencing_token,
            "lock election: local role changed"
        );
        Some(change)
    }
}

impl Election for LockElection {
    /// Lists the eligible members (live, role tag `primary` or `standby`) for the view, and
    /// acts on the deadlines due at `now` (retries, confirms, renewals, the step-down bound).
    fn update(&mut self, members: &[Member], now: Instant, _wall: SystemTime) -> Option<RoleChange> {
        let mut eligible: Vec<String> = members
            .iter()
            .filter(|member| matches!(member.state, State::Alive | State::Suspect))
            .filter(|member| {
                member.tags.get(&self.config.role_tag).is_some_and(|v| v == PRIMARY_VALUE || v == STANDBY_VALUE)
            })
            .map(|member| member.name.to_string())
            .collect();
        eligible.sort_by(|a, b| natural_cmp(a, b));
        self.view.eligible = eligible;
        self.step(now);
        self.refresh(now)
    }

    fn view(&self) -> PrimaryView {
        self.view.clone()
    }

    fn role(&self) -> Role {
        self.role
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.resigned {
            return None;
        }
        let mut deadlines = Vec::new();
        match &self.session {
            None => {
                if !self.creating {
                    deadlines.push(self.retry_at);
                }
            }
            Some(_) => {
                if !self.watching {
                    deadlines.push(self.watch_at);
                }
                if !self.acquired && !self.acquiring && self.key_free() {
                    deadlines.push(self.retry_at);
                }
                if self.acquired && self.confirming.is_none() {
                    deadlines.push(self.next_confirm);
                }
                if !self.renewing {
                    deadlines.extend(self.next_renew);
                }
            }
        }
        if self.role == Role::Primary {
            deadlines.extend(self.view.valid_until);
        }
        deadlines.into_iter().min()
    }

    /// Steps down for good: queues [`LockAction::Release`] (when it holds the key) and
    /// [`LockAction::DestroySession`], to be performed in that order, so that the next holder
    /// acquires without waiting for the lock-delay.
    fn resign(&mut self) -> Option<RoleChange> {
        if !self.resigned {
            self.resigned = true;
            // Requests queued and not sent yet (a watch, a confirm) are of no use any more.
            self.actions.clear();
            if let Some(session) = self.session.clone() {
                if self.acquired || self.acquiring || self.is_ours(self.observed.as_ref()) {
                    self.actions.push_back(LockAction::Release { session: session.clone() });
                }
                self.actions.push_back(LockAction::DestroySession { session });
            }
        }
        self.refresh(self.last_now)
    }

    fn tags_for(&self, role: Role) -> Vec<(String, String)> {
        let value = match role {
            Role::Ineligible => return Vec::new(),
            Role::Primary => PRIMARY_VALUE,
            Role::Standby => STANDBY_VALUE,
        };
        vec![(self.config.role_tag.clone(), value.to_owned())]
    }
}
