//! The election order (rule 3) and the claim order (rule 4).

use std::cmp::Ordering;

/// Compares names with runs of ASCII digits taken by numeric value: `node2` < `node10`.
///
/// Other bytes compare as bytes. Names that differ only in leading zeros (`node01`, `node1`)
/// fall back to plain byte order, so the order is total and agrees with equality.
///
/// ```
/// use std::cmp::Ordering;
/// use leader_failover::natural_cmp;
///
/// assert_eq!(natural_cmp("node2", "node10"), Ordering::Less);
/// assert_eq!(natural_cmp("db-10-b", "db-9-c"), Ordering::Greater);
/// assert_eq!(natural_cmp("node01", "node1"), Ordering::Less); // "0" < "1" bytewise
/// ```
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a_bytes, b_bytes) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a_bytes.len() && j < b_bytes.len() {
        if a_bytes[i].is_ascii_digit() && b_bytes[j].is_ascii_digit() {
            let a_end = digit_run_end(a_bytes, i);
            let b_end = digit_run_end(b_bytes, j);
            let ordering = numeric_cmp(&a_bytes[i..a_end], &b_bytes[j..b_end]);
            if ordering != Ordering::Equal {
                return ordering;
            }
            (i, j) = (a_end, b_end);
        } else {
            let ordering = a_bytes[i].cmp(&b_bytes[j]);
            if ordering != Ordering::Equal {
                return ordering;
            }
            (i, j) = (i + 1, j + 1);
        }
    }
    (a_bytes.len() - i).cmp(&(b_bytes.len() - j)).then_with(|| a.cmp(b))
}

fn digit_run_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..].iter().position(|b| !b.is_ascii_digit()).map_or(bytes.len(), |len| start + len)
}

/// Compares two runs of ASCII digits by value, whatever their length.
fn numeric_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |digits: &[u8]| -> usize { digits.iter().position(|&d| d != b'0').unwrap_or(digits.len()) };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// An eligible member as the election ranks it.
#[derive(Debug, Clone)]
pub(crate) struct Candidate<'a> {
    pub(crate) name: &'a str,
    pub(crate) priority: i64,
    pub(crate) preferred: bool,
    /// `Some` when the member claims the role: the claim time in unix ms, if readable.
    pub(crate) claim: Option<Option<u64>>,
}

impl Candidate<'_> {
    /// Rule 3: priority descending, then preferred first, then natural name order.
    pub(crate) fn election_cmp(&self, other: &Self) -> Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then_with(|| other.preferred.cmp(&self.preferred))
            .then_with(|| natural_cmp(self.name, other.name))
    }

    /// Rule 4 key among claims: the older claim first, a claim without a time last. Ties keep
    /// the election order (the candidates are sorted by it and the first minimum is taken).
    pub(crate) fn claim_age_key(&self) -> u64 {
        self.claim.flatten().unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        let mut names = vec!["node10", "node2", "node1", "node", "node02b", "node2a", "alpha", "node100"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["alpha", "node", "node1", "node2", "node2a", "node02b", "node10", "node100"]);
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let big = format!("n{}", "9".repeat(40));
        let bigger = format!("n1{}", "0".repeat(40));
        assert_eq!(natural_cmp(&big, &bigger), Ordering::Less);
    }

    #[test]
    fn order_is_total_and_consistent_with_equality() {
        assert_eq!(natural_cmp("a1", "a1"), Ordering::Equal);
        assert_ne!(natural_cmp("a01", "a1"), Ordering::Equal);
        assert_eq!(natural_cmp("a01", "a1"), natural_cmp("a1", "a01").reverse());
        assert_eq!(natural_cmp("", "a"), Ordering::Less);
    }

    proptest::proptest! {
        /// A total order that agrees with equality: sorting and the election depend on it.
        #[test]
        fn natural_order_is_total(a in "[a0-9.-]{0,6}", b in "[a0-9.-]{0,6}", c in "[a0-9.-]{0,6}") {
            proptest::prop_assert_eq!(natural_cmp(&a, &b), natural_cmp(&b, &a).reverse());
            proptest::prop_assert_eq!(natural_cmp(&a, &b) == Ordering::Equal, a == b);
            if natural_cmp(&a, &b) != Ordering::Greater && natural_cmp(&b, &c) != Ordering::Greater {
                proptest::prop_assert_ne!(natural_cmp(&a, &c), Ordering::Greater);
            }
        }
    }

    #[test]
    fn election_order_is_priority_then_preference_then_name() {
        let c = |name, priority, preferred| Candidate { name, priority, preferred, claim: None };
        let mut candidates = [c("node1", 0, false), c("node2", 0, true), c("node3", 5, false), c("node10", 0, false)];
        candidates.sort_by(Candidate::election_cmp);
        let names: Vec<_> = candidates.iter().map(|c| c.name).collect();
        assert_eq!(names, ["node3", "node2", "node1", "node10"]);
    }
}
