//! [`Name`]: a node's name, shared rather than copied.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A node's name: an immutable string behind a reference count.
///
/// A node's name appears in many places at once: the member table's index and record, the
/// events about it, the claims about it, the broadcast queue's key. `Name` makes every copy a
/// pointer to one allocation, so a table of `n` members holds `n` names, not several copies of
/// each. Cloning is a reference-count increment.
///
/// It reads as a `&str` (through [`Deref`], [`Name::as_str`], [`AsRef`], [`Borrow`]), compares
/// with `str`, `&str` and `String`, orders and hashes as the string does, and prints as the string.
///
/// ```
/// use membership::Name;
///
/// let name = Name::from("web-1");
/// let copy = name.clone(); // the same allocation
/// assert_eq!(name, "web-1");
/// assert_eq!(copy.len(), 5);
/// assert!(name.starts_with("web"));
/// assert_eq!(format!("{name} {name:?}"), r#"web-1 "web-1""#);
/// let owned: String = name.into();
/// assert_eq!(owned, "web-1");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Arc<str>);

impl Name {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `self` and `other` share one allocation (not merely equal text).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Default for Name {
    /// The empty name (never a valid node name; a placeholder).
    fn default() -> Self {
        Self::from("")
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Self::from(s.as_str())
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

impl From<Arc<str>> for Name {
    fn from(s: Arc<str>) -> Self {
        Self(s)
    }
}

impl From<&Self> for Name {
    fn from(s: &Self) -> Self {
        s.clone()
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.0.as_ref().to_owned()
    }
}

impl From<&Name> for String {
    fn from(name: &Name) -> Self {
        name.0.as_ref().to_owned()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}
