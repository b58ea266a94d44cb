//! A node's tags and their size limit.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Maximum encoded size of a node's tags, in bytes (as Serf's 512-byte meta limit).
pub const MAX_TAGS_ENCODED_LEN: usize = 512;

/// A node's tags: sorted key/value pairs whose encoded size is at most
/// [`MAX_TAGS_ENCODED_LEN`].
///
/// The encoded size is a policy measure that does not depend on the wire format:
///
/// ```text
/// encoded_len = 1 + Σ over pairs (key.len() + value.len() + 2)      (lengths in UTF-8 bytes)
/// ```
///
/// that is one byte of header for the map and one length byte in front of every key and every
/// value, as in Serf's msgpack encoding of tags. Empty tags measure 1 byte. Every constructor and
/// mutator checks the limit, so a `Tags` value is always within it.
///
/// Empty tags (the common case) take one pointer and no allocation; non-empty tags are shared
/// between clones (every member record, event and claim about a node holds the same map) and
/// copied only when changed.
///
/// ```
/// use membership::{Tags, TagsError};
///
/// let mut tags = Tags::from_pairs([("role", "web"), ("dc", "east")])?;
/// assert_eq!(tags.get("role"), Some("web"));
/// assert_eq!(tags.encoded_len(), 1 + (4 + 3 + 2) + (2 + 4 + 2));
/// assert!(matches!(
///     tags.insert("blob", "x".repeat(600)),
///     Err(TagsError::TooLarge { .. })
/// ));
/// assert_eq!(tags.len(), 2); // unchanged by the refused insert
/// # Ok::<(), TagsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags(Option<Arc<BTreeMap<String, String>>>);

/// What empty tags show through [`Tags::as_map`].
static EMPTY: BTreeMap<String, String> = BTreeMap::new();

/// Errors building [`Tags`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagsError {
    /// The encoded size is over the limit; nothing was changed.
    #[error("tags encode to {len} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

impl Tags {
    /// Tags holding `map`, if it encodes to at most [`MAX_TAGS_ENCODED_LEN`] bytes.
    pub fn new(map: BTreeMap<String, String>) -> Result<Self, TagsError> {
        check(encoded_len_of(&map))?;
        Ok(Self((!map.is_empty()).then(|| Arc::new(map))))
    }

    /// Tags from key/value pairs (a later duplicate key wins), if they fit the limit.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, TagsError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self::new(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// Set `key` to `value`, returning the previous value. Refused, leaving the tags unchanged,
    /// if the result would be over the limit.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<Option<String>, TagsError> {
        let (key, value) = (key.into(), value.into());
        let removed = self.as_map().get(&key).map_or(0, |old| pair_len(&key, old));
        let len = self.encoded_len() - removed + pair_len(&key, &value);
        check(len)?;
        Ok(Arc::make_mut(self.0.get_or_insert_with(Default::default)).insert(key, value))
    }

    /// Remove `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let map = self.0.as_mut()?;
        if !map.contains_key(key) {
            return None;
        }
        let removed = Arc::make_mut(map).remove(key);
        if map.is_empty() {
            self.0 = None;
        }
        removed
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.as_map().get(key).map(String::as_str)
    }

    /// The pairs, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.as_map().iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.as_map().len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The encoded size (see the type docs for the formula); at most [`MAX_TAGS_ENCODED_LEN`].
    pub fn encoded_len(&self) -> usize {
        encoded_len_of(self.as_map())
    }

    /// The pairs as a map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        self.0.as_deref().unwrap_or(&EMPTY)
    }

    /// The pairs as a map, consuming the tags (copied if other clones share them).
    pub fn into_inner(self) -> BTreeMap<String, String> {
        self.0.map(Arc::unwrap_or_clone).unwrap_or_default()
    }
}

impl TryFrom<BTreeMap<String, String>> for Tags {
    type Error = TagsError;

    fn try_from(map: BTreeMap<String, String>) -> Result<Self, TagsError> {
        Self::new(map)
    }
}

impl From<Tags> for BTreeMap<String, String> {
    fn from(tags: Tags) -> Self {
        tags.into_inner()
    }
}

fn pair_len(key: &str, value: &str) -> usize {
    key.len() + value.len() + 2
}

fn encoded_len_of(map: &BTreeMap<String, String>) -> usize {
    1 + map.iter().map(|(k, v)| pair_len(k, v)).sum::<usize>()
}

fn check(len: usize) -> Result<(), TagsError> {
    if len > MAX_TAGS_ENCODED_LEN {
        return Err(TagsError::TooLarge { len, limit: MAX_TAGS_ENCODED_LEN });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_len_follows_the_formula() {
        assert_eq!(Tags::default().encoded_len(), 1);
        let tags = Tags::from_pairs([("a", "bc"), ("role", "")]).unwrap();
        assert_eq!(tags.encoded_len(), 1 + (1 + 2 + 2) + (4 + 2));
    }

    #[test]
    fn exactly_the_limit_is_accepted_one_more_byte_is_refused() {
        // 1 + (1 + v + 2) = 512  =>  v = 508
        let fits = Tags::from_pairs([("k", "v".repeat(508))]).unwrap();
        assert_eq!(fits.encoded_len(), MAX_TAGS_ENCODED_LEN);
        let err = Tags::from_pairs([("k", "v".repeat(509))]).unwrap_err();
        assert_eq!(err, TagsError::TooLarge { len: 513, limit: 512 });
        assert_eq!(err.to_string(), "tags encode to 513 bytes, more than the limit of 512");
    }

    #[test]
    fn refused_insert_leaves_tags_unchanged() {
        let mut tags = Tags::from_pairs([("k", "v".repeat(500))]).unwrap();
        let before = tags.clone();
        assert!(tags.insert("other", "x".repeat(10)).is_err());
        assert_eq!(tags, before);
    }

    #[test]
    fn insert_replacing_a_value_counts_only_the_new_value() {
        let mut tags = Tags::from_pairs([("k", "v".repeat(508))]).unwrap();
        // Replacing with a value of the same size keeps the tags at the limit.
        assert_eq!(tags.insert("k", "w".repeat(508)).unwrap(), Some("v".repeat(508)));
        assert_eq!(tags.encoded_len(), MAX_TAGS_ENCODED_LEN);
        assert_eq!(tags.remove("k"), Some("w".repeat(508)));
        assert!(tags.is_empty());
    }

    #[test]
    fn empty_tags_allocate_nothing_and_clones_share_the_map() {
        assert_eq!(size_of::<Tags>(), size_of::<usize>());
        let mut tags = Tags::from_pairs([("a", "1")]).unwrap();
        let shared = tags.clone();
        assert!(std::ptr::eq(tags.as_map(), shared.as_map()));
        tags.insert("b", "2").unwrap();
        assert_eq!((tags.len(), shared.len()), (2, 1));
        tags.remove("a");
        tags.remove("b");
        assert_eq!(tags, Tags::default());
        assert!(tags.is_empty() && tags.0.is_none());
        assert_eq!(Tags::new(BTreeMap::new()).unwrap().0, None);
    }

    #[test]
    fn accessors() {
        let tags = Tags::from_pairs([("b", "2"), ("a", "1"), ("b", "3")]).unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags.get("b"), Some("3"));
        assert_eq!(tags.get("c"), None);
        assert_eq!(tags.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "3")]);
        let map: BTreeMap<String, String> = tags.clone().into();
        assert_eq!(Tags::try_from(map).unwrap(), tags);
        assert_eq!(tags.as_map().len(), 2);
        assert_eq!(tags.into_inner().len(), 2);
    }
}
