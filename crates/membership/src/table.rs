//! The member table and the SWIM ordering rules that decide which news wins.

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;
use hashbrown::HashTable;

use crate::{AliveClaim, Incarnation, Member, Name, State, Tags};

/// What applying a piece of news did to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applied {
    /// Nothing changed that needs telling (stale, duplicate, or about an unknown node where that
    /// is not news). The member's state is unchanged; a newer incarnation carried by the news may
    /// have been remembered (see the crate docs, "Ordering rules").
    Ignored,
    /// A member was added or its state, incarnation, address or tags changed. The news should be
    /// re-gossiped.
    Changed {
        /// State before, `None` for a new member.
        previous: Option<State>,
        /// The member after the change.
        member: Member,
        /// The tags (or protocol versions) of a known member differ from what was known. With
        /// `previous == Some(member.state)` this is the only visible change (a tags update);
        /// always `false` for a new member.
        tags_changed: bool,
    },
    /// The news was about this node and said it is suspect, dead or older than it is: the local
    /// incarnation was raised and the returned claim must be broadcast to refute it. The local
    /// state is unchanged (alive).
    Refuted(AliveClaim),
    /// An `alive` claim for a live member's name came from a different address; refused, the
    /// table is unchanged.
    Conflict {
        /// The member as known.
        existing: Member,
        /// The refused claim.
        claim: AliveClaim,
    },
}

/// The member table: all members this node knows, including itself and tombstones.
///
/// See the crate docs for the ordering rules every `apply_*` method follows.
///
/// Costs: lookups, every `apply_*`, [`Self::member`] by [`MemberId`] and [`Self::live_count`]
/// are `O(1)`; [`Self::iter`] sorts, `O(n log n)` ([`Self::iter_unordered`] does not);
/// [`Self::reap`] is `O((r + 1) log t)` for `r` members removed out of `t` tombstones.
///
/// Memory: members live in one vector of records, found by name through a hash table of
/// [`MemberId`]s (4 bytes and a control byte per bucket; the names stay in the records); each
/// member's name is one shared allocation (see [`Name`]). That is about 120 bytes per member
/// plus its name: `size_of::<Member>()` for the record, the hash table with its spare buckets,
/// and a little spare room in the vector, which grows by an eighth at a time. The
/// `table_memory` test bounds it.
#[derive(Clone)]
pub struct MemberTable {
    local: MemberId,
    /// Member records by [`MemberId`]; `None` in a slot freed by a removal (listed in `free`).
    slots: Vec<Option<Member>>,
    free: Vec<u32>,
    /// The ids of all members, hashed by name.
    by_name: HashTable<MemberId>,
    index: StateIndex,
}

impl std::fmt::Debug for MemberTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberTable")
            .field("local", self.local_name())
            .field("members", &self.iter().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The hash of a name in the index: fixed, so that nothing about the table depends on the
/// process it runs in.
fn name_hash(name: &str) -> u64 {
    FixedState::with_seed(0x6d65_6d62_6572_7321).hash_one(name)
}

/// Where a member sits in its [`MemberTable`]: stable for as long as the member stays in the
/// table (through every change of state), reused for another member after it is removed
/// ([`MemberTable::reap`], [`MemberTable::remove`]). A compact handle for structures that
/// follow the table, such as a set of peers to choose from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(u32);

impl MemberId {
    /// The slot number, `0..` the largest table size reached: usable as a vector index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl MemberTable {
    /// A table holding only the local node, alive.
    pub fn new(local: AliveClaim, now: Instant) -> Self {
        let member = Member::from_claim(local, State::Alive, now);
        let mut index = StateIndex::default();
        index.add(&member, true);
        let mut table =
            Self { local: MemberId(0), by_name: HashTable::new(), slots: Vec::new(), free: Vec::new(), index };
        table.local = table.insert(member);
        table
    }

    /// The local node.
    pub fn local(&self) -> &Member {
        self.member(self.local).expect("the local node is always in the table")
    }

    /// The local node's [`MemberId`].
    pub fn local_id(&self) -> MemberId {
        self.local
    }

    /// The local node's name.
    pub fn local_name(&self) -> &Name {
        &self.local().name
    }

    /// Look a member up by name.
    pub fn get(&self, name: &str) -> Option<&Member> {
        self.member(self.id(name)?)
    }

    /// The [`MemberId`] of the member called `name`.
    pub fn id(&self, name: &str) -> Option<MemberId> {
        let slots = &self.slots;
        self.by_name.find(name_hash(name), |&id| named(slots, id, name)).copied()
    }

    /// The member called `name`, with the state index to keep in step with it.
    fn get_mut(&mut self, name: &str) -> Option<(&mut Member, &mut StateIndex)> {
        let id = self.id(name)?;
        Some((self.slots[id.index()].as_mut()?, &mut self.index))
    }

    /// The member at `id`, if a member is there (it may be another member than the one `id`
    /// was taken from, if that one has been removed since).
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.slots.get(id.index())?.as_ref()
    }

    /// Whether `name` is in the table (tombstones included).
    pub fn contains(&self, name: &str) -> bool {
        self.id(name).is_some()
    }

    /// All members, tombstones included, in name order. Sorts: `O(n log n)`.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        let mut members: Vec<&Member> = self.iter_unordered().collect();
        members.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        members.into_iter()
    }

    /// All members, tombstones included, in [`MemberId`] order: the same order for the same
    /// history of changes, but not name order. `O(n)`.
    pub fn iter_unordered(&self) -> impl Iterator<Item = &Member> {
        self.slots.iter().flatten()
    }

    /// The dead members (tombstones of failed members, not of members that left), in the order
    /// they were declared dead. `O(d)` for `d` dead members.
    pub fn dead(&self) -> impl Iterator<Item = &Member> {
        self.index.dead.iter().filter_map(|(_, name)| self.get(name))
    }

    /// Number of members in the table (tombstones included).
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether the table is empty: never true (the local node is always present).
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Reserve room for `additional` more members (for example before a push-pull merge of a
    /// large remote state), so that the records grow once.
    pub fn reserve(&mut self, additional: usize) {
        let wanted = (self.len() + additional).saturating_sub(self.slots.len() + self.free.len());
        self.slots.reserve_exact(wanted);
        let slots = &self.slots;
        self.by_name.reserve(additional, |&id| slot_hash(slots, id));
    }

    /// Number of members that are alive or suspect (the local node included): the `n` of the
    /// protocol's log(n) formulas. `O(1)`.
    pub fn live_count(&self) -> usize {
        self.index.live
    }

    /// Apply an `alive` claim: SWIM ordering (alive(i) overrides alive/suspect(j) if i > j,
    /// overrides dead/left if i > j), address-conflict refusal (a live member's name claimed from
    /// another address), refutation when the claim is about the local node with an incarnation
    /// not older than ours but different content.
    ///
    /// - Unknown node: added as alive, `Changed { previous: None, .. }`.
    /// - Local node: refuted (`Refuted`) if the claim is newer than us, or as new with different
    ///   address, tags or protocol versions; otherwise `Ignored`. Once the local node has left,
    ///   always `Ignored`.
    /// - Known member that is alive or suspect, claimed from another address: `Conflict`, at any
    ///   incarnation (a duplicate name, or a restarted node at a new address before its old life
    ///   has been declared dead). A dead or left member may move to a new address.
    /// - Otherwise a strictly newer incarnation wins and the member becomes alive (from dead or
    ///   left: a rejoin); an equal or older one is `Ignored`.
    pub fn apply_alive(&mut self, claim: AliveClaim, now: Instant) -> Applied {
        if claim.name == *self.local_name() {
            let local = self.local();
            let newer = claim.incarnation > local.incarnation
                || (claim.incarnation == local.incarnation && !local.same_content(&claim));
            if local.state == State::Left || !newer {
                return Applied::Ignored;
            }
            return self.refute(claim.incarnation);
        }
        let Some((member, index)) = self.get_mut(&claim.name) else {
            let member = Member::from_claim(claim, State::Alive, now);
            self.index.add(&member, false);
            self.insert(member.clone());
            return Applied::Changed { previous: None, member, tags_changed: false };
        };
        if member.addr != claim.addr && member.is_live() {
            return Applied::Conflict { existing: member.clone(), claim };
        }
        if claim.incarnation <= member.incarnation {
            return Applied::Ignored;
        }
        let previous = member.state;
        let tags_changed = member.tags != claim.tags || member.protocol != claim.protocol;
        member.addr = claim.addr;
        member.incarnation = claim.incarnation;
        member.tags = claim.tags;
        member.protocol = claim.protocol;
        index.transition(member, false, State::Alive, now);
        Applied::Changed { previous: Some(previous), member: member.clone(), tags_changed }
    }

    /// Apply `suspect`: overrides alive(j) if i >= j; ignored for dead/left members or unknown
    /// nodes; refuted when about the local node.
    ///
    /// - Local node: `Refuted` if `incarnation` is not older than ours (and we have not left);
    ///   otherwise `Ignored`.
    /// - Alive member, `incarnation` >= its own: becomes suspect at `incarnation`.
    /// - Suspect member: `Ignored` (no state change, nothing new to gossip), but a newer
    ///   `incarnation` is remembered so that an older refutation cannot clear the suspicion.
    ///   The `swim` crate, which owns the suspicion timers, tells such an independent
    ///   confirmation apart by looking at the member's state itself.
    /// - Dead or left member, unknown node, older incarnation: `Ignored`, nothing stored.
    pub fn apply_suspect(&mut self, name: &str, incarnation: Incarnation, now: Instant) -> Applied {
        if name == self.local_name().as_str() {
            return self.refute_unless_stale(incarnation);
        }
        let Some((member, index)) = self.get_mut(name) else {
            return Applied::Ignored;
        };
        if incarnation < member.incarnation {
            return Applied::Ignored;
        }
        match member.state {
            State::Alive => {
                member.incarnation = incarnation;
                index.transition(member, false, State::Suspect, now);
                Applied::Changed { previous: Some(State::Alive), member: member.clone(), tags_changed: false }
            }
            State::Suspect => {
                member.incarnation = incarnation;
                Applied::Ignored
            }
            State::Dead | State::Left => Applied::Ignored,
        }
    }

    /// Apply `dead` (or `left` when `left` is set): overrides alive and suspect at i >= j; a
    /// `left` overrides `dead` at the same incarnation; refuted when about the local node unless
    /// the local node is leaving (`left` about itself is accepted through [`Self::leave_local`]).
    ///
    /// - Local node: `Refuted` if `incarnation` is not older than ours, `Ignored` if it is older
    ///   or the local node has already left.
    /// - Alive or suspect member, `incarnation` >= its own: becomes dead (or left).
    /// - Dead member and `left`, `incarnation` >= its own: becomes left.
    /// - Otherwise `Ignored`; a dead or left member remembers a newer `incarnation` (a death at
    ///   `i` outranks an `alive` at `i`).
    pub fn apply_dead(&mut self, name: &str, incarnation: Incarnation, left: bool, now: Instant) -> Applied {
        if name == self.local_name().as_str() {
            return self.refute_unless_stale(incarnation);
        }
        let Some((member, index)) = self.get_mut(name) else {
            return Applied::Ignored;
        };
        if incarnation < member.incarnation {
            return Applied::Ignored;
        }
        let previous = member.state;
        member.incarnation = incarnation;
        let next = match (previous, left) {
            (State::Alive | State::Suspect, false) => State::Dead,
            (State::Alive | State::Suspect | State::Dead, true) => State::Left,
            (State::Dead, false) | (State::Left, _) => return Applied::Ignored,
        };
        index.transition(member, false, next, now);
        Applied::Changed { previous: Some(previous), member: member.clone(), tags_changed: false }
    }

    /// Merge a remote member list (push-pull anti-entropy), entry by entry:
    ///
    /// | remote state | applied here as |
    /// |---|---|
    /// | alive   | [`Self::apply_alive`] |
    /// | suspect | [`Self::apply_alive`], then [`Self::apply_suspect`] at the same incarnation |
    /// | dead    | [`Self::apply_suspect`] only: a remote death is never an instant death here; this node's own suspicion timer decides |
    /// | left    | [`Self::apply_dead`] with `left` set |
    ///
    /// So unknown members are learned when the remote sees them live, never as tombstones.
    /// Returns every outcome that is not [`Applied::Ignored`], in order (a remote suspect may give
    /// two: added, then suspected).
    pub fn merge(&mut self, members: impl IntoIterator<Item = (AliveClaim, State)>, now: Instant) -> Vec<Applied> {
        let mut outcomes = Vec::new();
        let mut keep = |applied: Applied| {
            if applied != Applied::Ignored {
                outcomes.push(applied);
            }
        };
        for (claim, state) in members {
            match state {
                State::Alive => keep(self.apply_alive(claim, now)),
                State::Suspect => {
                    let (name, incarnation) = (claim.name.clone(), claim.incarnation);
                    keep(self.apply_alive(claim, now));
                    keep(self.apply_suspect(&name, incarnation, now));
                }
                State::Dead => keep(self.apply_suspect(&claim.name, claim.incarnation, now)),
                State::Left => keep(self.apply_dead(&claim.name, claim.incarnation, true, now)),
            }
        }
        outcomes
    }

    /// Mark the local node as left (graceful leave) and return its incarnation for the `dead`
    /// message with `left` set. From then on news about the local node is ignored, not refuted,
    /// until [`Self::rejoin_local`].
    pub fn leave_local(&mut self, now: Instant) -> Incarnation {
        let (local, index) = self.local_mut_and_index();
        index.transition(local, true, State::Left, now);
        local.incarnation
    }

    /// Make the local node alive again after [`Self::leave_local`] (a no-op on the state if it is
    /// alive), raise its incarnation and return the claim to broadcast.
    pub fn rejoin_local(&mut self, now: Instant) -> AliveClaim {
        let (local, index) = self.local_mut_and_index();
        index.transition(local, true, State::Alive, now);
        local.incarnation = local.incarnation.next();
        local.claim()
    }

    /// Change the local node's tags: raises the local incarnation and returns the claim to
    /// broadcast. After [`Self::leave_local`] the tags are only stored, for the claim of a
    /// rejoin, and `None` is returned: an alive claim newer than the leave would bring the node
    /// back in everyone's view.
    pub fn set_local_tags(&mut self, tags: Tags) -> Option<AliveClaim> {
        let (local, _) = self.local_mut_and_index();
        local.tags = tags;
        if local.state == State::Left {
            return None;
        }
        local.incarnation = local.incarnation.next();
        Some(local.claim())
    }

    /// Raise the local incarnation (for example to re-announce itself after a partition) and
    /// return the claim to broadcast. The state is not changed: after [`Self::leave_local`] use
    /// [`Self::rejoin_local`].
    pub fn bump_local(&mut self) -> AliveClaim {
        let (local, _) = self.local_mut_and_index();
        local.incarnation = local.incarnation.next();
        local.claim()
    }

    /// Remove a member other than the local node from the table at once (Serf's
    /// `force-leave -prune`); returns it. Without a tombstone, old news about it could bring it
    /// back, so callers first mark it left and spread that.
    pub fn remove(&mut self, name: &str) -> Option<Member> {
        if name == self.local_name().as_str() {
            return None;
        }
        let member = self.take(name)?;
        self.index.remove(&member);
        Some(member)
    }

    /// Remove dead members whose state changed more than `dead_ttl` ago and left members older
    /// than `left_ttl`; returns them (the dead first, then the left, oldest first in each). The
    /// local node is never removed.
    pub fn reap(&mut self, now: Instant, dead_ttl: Duration, left_ttl: Duration) -> Vec<Member> {
        let mut reaped = Vec::new();
        for (tombstones, ttl) in [(&mut self.index.dead, dead_ttl), (&mut self.index.left, left_ttl)] {
            // "More than ttl ago": state_changed < now - ttl. Before the clock's origin nothing is.
            let Some(cutoff) = now.checked_sub(ttl) else {
                continue;
            };
            while tombstones.first().is_some_and(|(changed, _)| *changed < cutoff) {
                let Some((_, name)) = tombstones.pop_first() else {
                    break;
                };
                if let Some(member) = take(&mut self.by_name, &mut self.slots, &mut self.free, &name) {
                    reaped.push(member);
                }
            }
        }
        reaped
    }

    /// The earliest moment at which [`Self::reap`] with these TTLs would remove a tombstone, or
    /// `None` when there are none: `O(1)`, for callers that sleep until there is work.
    #[must_use]
    pub fn next_reap(&self, dead_ttl: Duration, left_ttl: Duration) -> Option<Instant> {
        // `reap` removes strictly after the TTL; the nanosecond makes the deadline exact.
        let at = |set: &BTreeSet<(Instant, Name)>, ttl: Duration| {
            set.first().and_then(|(changed, _)| changed.checked_add(ttl)?.checked_add(Duration::from_nanos(1)))
        };
        match (at(&self.index.dead, dead_ttl), at(&self.index.left, left_ttl)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Refute news about the local node at `incarnation`, unless it is older than ours or we have
    /// left.
    fn refute_unless_stale(&mut self, incarnation: Incarnation) -> Applied {
        let local = self.local();
        if local.state == State::Left || incarnation < local.incarnation {
            return Applied::Ignored;
        }
        self.refute(incarnation)
    }

    /// Raise the local incarnation strictly above both ours and `claimed` and return the claim.
    ///
    /// Within our generation that is `claimed + 1`. If `claimed` is of a newer generation than
    /// ours (another process using our name, or a generation source that went backwards), no
    /// incarnation of our generation can win, so we take the claimed generation: the result is
    /// still the smallest incarnation above both.
    fn refute(&mut self, claimed: Incarnation) -> Applied {
        let (local, _) = self.local_mut_and_index();
        local.incarnation = local.incarnation.max(claimed).next();
        Applied::Refuted(local.claim())
    }

    fn local_mut_and_index(&mut self) -> (&mut Member, &mut StateIndex) {
        let local = self.slots[self.local.index()].as_mut().expect("the local node is always in the table");
        (local, &mut self.index)
    }

    /// Store a member not yet in the table (the state index is the caller's business).
    fn insert(&mut self, member: Member) -> MemberId {
        let hash = name_hash(&member.name);
        let id = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(member);
                MemberId(slot)
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    // Grow by an eighth rather than doubling: thousands of tables in one
                    // simulation would otherwise carry up to half their size as spare room.
                    self.slots.reserve_exact(self.slots.len() / 8 + 4);
                }
                let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 members");
                self.slots.push(Some(member));
                MemberId(slot)
            }
        };
        let slots = &self.slots;
        self.by_name.insert_unique(hash, id, |&id| slot_hash(slots, id));
        id
    }

    /// Take a member out of the table (the state index is the caller's business).
    fn take(&mut self, name: &str) -> Option<Member> {
        take(&mut self.by_name, &mut self.slots, &mut self.free, name)
    }

    /// Recompute the index from scratch and compare (tests only).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut index = StateIndex::default();
        for member in self.iter() {
            index.add(member, member.name == *self.local_name());
        }
        assert_eq!(index.live, self.index.live, "live count");
        assert_eq!(index.dead, self.index.dead, "dead tombstones");
        assert_eq!(index.left, self.index.left, "left tombstones");
        assert_eq!(self.local().name, *self.local_name());
        assert_eq!(self.slots.iter().filter(|s| s.is_some()).count(), self.by_name.len(), "records");
        assert_eq!(self.slots.len(), self.by_name.len() + self.free.len(), "free slots");
        for member in self.iter_unordered() {
            let id = self.id(&member.name).expect("every member is indexed");
            assert_eq!(self.member(id).map(|m| &m.name), Some(&member.name), "slot of {}", member.name);
        }
        let names: Vec<&Name> = self.iter().map(|m| &m.name).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "iter is in name order");
    }
}

/// Whether the slot `id` holds the member called `name`.
fn named(slots: &[Option<Member>], id: MemberId, name: &str) -> bool {
    slots.get(id.index()).and_then(Option::as_ref).is_some_and(|m| m.name == name)
}

/// The index hash of the member in slot `id` (every indexed slot is occupied).
fn slot_hash(slots: &[Option<Member>], id: MemberId) -> u64 {
    slots.get(id.index()).and_then(Option::as_ref).map_or(0, |m| name_hash(&m.name))
}

/// Remove the member called `name` from the index and free its slot.
fn take(
    by_name: &mut HashTable<MemberId>,
    slots: &mut [Option<Member>],
    free: &mut Vec<u32>,
    name: &str,
) -> Option<Member> {
    let entry = by_name.find_entry(name_hash(name), |&id| named(slots, id, name)).ok()?;
    let (id, _) = entry.remove();
    free.push(id.0);
    slots.get_mut(id.index())?.take()
}

/// Derived views kept in step with every state change, so that `live_count` is `O(1)` and `reap`
/// does not scan the table (the simulator runs thousands of nodes, each with a table of
/// thousands).
#[derive(Debug, Clone, Default)]
struct StateIndex {
    /// Members alive or suspect, the local node included.
    live: usize,
    /// Non-local dead members by (state_changed, name).
    dead: BTreeSet<(Instant, Name)>,
    /// Non-local left members by (state_changed, name).
    left: BTreeSet<(Instant, Name)>,
}

impl StateIndex {
    fn add(&mut self, member: &Member, is_local: bool) {
        match member.state {
            State::Alive | State::Suspect => self.live += 1,
            State::Dead if !is_local => {
                self.dead.insert((member.state_changed, member.name.clone()));
            }
            State::Left if !is_local => {
                self.left.insert((member.state_changed, member.name.clone()));
            }
            State::Dead | State::Left => {}
        }
    }

    fn remove(&mut self, member: &Member) {
        match member.state {
            State::Alive | State::Suspect => self.live -= 1,
            State::Dead => {
                self.dead.remove(&(member.state_changed, member.name.clone()));
            }
            State::Left => {
                self.left.remove(&(member.state_changed, member.name.clone()));
            }
        }
    }

    /// Move `member` to `state` since `now`; nothing happens if it is already in `state`.
    fn transition(&mut self, member: &mut Member, is_local: bool, state: State, now: Instant) {
        if member.state == state {
            return;
        }
        self.remove(member);
        member.state = state;
        member.state_changed = now;
        self.add(member, is_local);
    }
}

#[cfg(test)]
mod tests;
