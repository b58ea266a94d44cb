//! A set of peers with O(1) insert, remove and uniform random choice, for picking gossip
//! targets and relays without walking the member table.

use std::collections::HashMap;
use std::net::SocketAddr;

use rand::Rng;

#[derive(Debug, Clone, Default)]
pub(crate) struct PeerSet {
    list: Vec<(String, SocketAddr)>,
    index: HashMap<String, usize>,
}

impl PeerSet {
    pub(crate) fn insert(&mut self, name: &str, addr: SocketAddr) {
        match self.index.get(name) {
            Some(&i) => self.list[i].1 = addr,
            None => {
                self.index.insert(name.to_owned(), self.list.len());
                self.list.push((name.to_owned(), addr));
            }
        }
    }

    pub(crate) fn remove(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else { return };
        self.list.swap_remove(i);
        if let Some((moved, _)) = self.list.get(i) {
            self.index.insert(moved.clone(), i);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(String, SocketAddr)> {
        self.list.iter()
    }

    /// Up to `k` distinct peers chosen uniformly, skipping any named in `exclude`.
    pub(crate) fn choose(&self, k: usize, exclude: &[&str], rng: &mut impl Rng) -> Vec<(String, SocketAddr)> {
        let mut out: Vec<(String, SocketAddr)> = Vec::with_capacity(k);
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
                let p = &self.list[i];
                if !exclude.contains(&p.0.as_str()) {
                    out.push(p.clone());
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
            let p = &self.list[rng.random_range(0..n)];
            if exclude.contains(&p.0.as_str()) || out.iter().any(|o| o.0 == p.0) {
                continue;
            }
            out.push(p.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], i))
    }

    #[test]
    fn insert_remove_choose() {
        let mut set = PeerSet::default();
        for i in 0..50u16 {
            set.insert(&format!("n{i}"), addr(i));
        }
        set.remove("n3");
        set.remove("n49");
        set.remove("absent");
        assert_eq!(set.len(), 48);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            let got = set.choose(3, &["n0"], &mut rng);
            assert_eq!(got.len(), 3);
            assert!(got.iter().all(|p| p.0 != "n0" && p.0 != "n3" && p.0 != "n49"));
            assert!(got[0].0 != got[1].0 && got[1].0 != got[2].0 && got[0].0 != got[2].0);
        }
        let small: PeerSet = {
            let mut s = PeerSet::default();
            s.insert("a", addr(1));
            s.insert("b", addr(2));
            s
        };
        assert_eq!(small.choose(3, &["a"], &mut rng), vec![("b".to_owned(), addr(2))]);
    }
}
