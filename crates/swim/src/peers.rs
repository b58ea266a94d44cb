//! A set of peers with O(1) insert, remove and uniform random choice, for picking gossip
//! targets and relays without walking the member table.
//!
//! Peers are [`MemberId`]s of the node's member table, so the set costs 8 bytes per peer (its
//! place in the list, and the list entry) and holds no names or addresses: those are read from
//! the table, which always has the current ones. The caller removes a member from the set before
//! the table frees its id.

use membership::MemberId;
use rand::Rng;

/// Marks an id that is not in the set, in `position`.
const ABSENT: u32 = u32::MAX;

#[derive(Debug, Clone, Default)]
pub(crate) struct PeerSet {
    list: Vec<MemberId>,
    /// Position in `list` of each id, by [`MemberId::index`]; [`ABSENT`] if not in the set.
    position: Vec<u32>,
}

impl PeerSet {
    pub(crate) fn insert(&mut self, id: MemberId) {
        if self.contains(id) {
            return;
        }
        if self.position.len() <= id.index() {
            self.position.resize(id.index() + 1, ABSENT);
        }
        self.position[id.index()] = u32::try_from(self.list.len()).expect("fewer than 2^32 peers");
        self.list.push(id);
    }

    pub(crate) fn remove(&mut self, id: MemberId) {
        if !self.contains(id) {
            return;
        }
        let i = self.position[id.index()] as usize;
        self.position[id.index()] = ABSENT;
        self.list.swap_remove(i);
        if let Some(moved) = self.list.get(i) {
            self.position[moved.index()] = i as u32;
        }
        if self.list.is_empty() {
            // A node that lost its whole cluster gives the room back.
            self.list = Vec::new();
            self.position = Vec::new();
        }
    }

    pub(crate) fn contains(&self, id: MemberId) -> bool {
        self.position.get(id.index()).is_some_and(|&p| p != ABSENT)
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.list.iter().copied()
    }

    /// Up to `k` distinct peers chosen uniformly, skipping any in `exclude`.
    pub(crate) fn choose(&self, k: usize, exclude: &[MemberId], rng: &mut impl Rng) -> Vec<MemberId> {
        let mut out: Vec<MemberId> = Vec::with_capacity(k);
        let n = self.list.len();
        if n == 0 || k == 0 {
            return out;
        }
        if n <= k + exclude.len() + 4 {
            // Small set: shuffle indices.
            let mut idx: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                idx.swap(i, rng.random_range(0..=i));
            }
            for i in idx {
                let p = self.list[i];
                if !exclude.contains(&p) {
                    out.push(p);
                    if out.len() == k {
                        break;
                    }
                }
            }
            return out;
        }
        // Large set: rejection sampling, bounded.
        let mut tries = 0;
        while out.len() < k && tries < 8 * k + 16 {
            tries += 1;
            let p = self.list[rng.random_range(0..n)];
            if exclude.contains(&p) || out.contains(&p) {
                continue;
            }
            out.push(p);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use membership::{AliveClaim, Incarnation, MemberTable, Tags};
    use rand::SeedableRng;

    use super::*;

    fn table(n: u16) -> (MemberTable, Vec<MemberId>) {
        let claim = |i: u16| AliveClaim {
            name: format!("n{i}").into(),
            addr: SocketAddr::from(([127, 0, 0, 1], i)),
            incarnation: Incarnation::new(1, 0),
            tags: Tags::default(),
            protocol: crate::convert::PROTOCOL,
        };
        let now = Instant::now();
        let mut table = MemberTable::new(claim(1000), now);
        let ids = (0..n)
            .map(|i| {
                let _ = table.apply_alive(claim(i), now);
                table.id(&format!("n{i}")).unwrap()
            })
            .collect();
        (table, ids)
    }

    #[test]
    fn insert_remove_choose() {
        let (_, ids) = table(50);
        let mut set = PeerSet::default();
        for &id in &ids {
            set.insert(id);
        }
        set.insert(ids[7]);
        set.remove(ids[3]);
        set.remove(ids[49]);
        set.remove(ids[3]);
        assert_eq!(set.len(), 48);
        assert!(!set.contains(ids[3]) && set.contains(ids[7]));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            let got = set.choose(3, &[ids[0]], &mut rng);
            assert_eq!(got.len(), 3);
            assert!(got.iter().all(|&p| p != ids[0] && p != ids[3] && p != ids[49]));
            assert!(got[0] != got[1] && got[1] != got[2] && got[0] != got[2]);
        }
        let mut small = PeerSet::default();
        small.insert(ids[0]);
        small.insert(ids[1]);
        assert_eq!(small.choose(3, &[ids[0]], &mut rng), vec![ids[1]]);
        small.remove(ids[0]);
        small.remove(ids[1]);
        assert_eq!((small.len(), small.list.capacity(), small.position.capacity()), (0, 0, 0));
    }
}
