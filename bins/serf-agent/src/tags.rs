//! The agent's tags: the user's (flags, config, tags file, `serf-agent tags`) and the election's
//! (role and claim tags), composed and published as one set. One lock serialises every change,
//! so that a `tags -set` and a role change never overwrite each other.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use gossip_core::{SerfHandle, Tags};
use tokio::sync::Mutex;

/// Why a tag change was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TagError {
    /// A tag only the election writes.
    #[error("tag {0:?} is managed by the primary election and cannot be changed by hand")]
    Reserved(String),
    /// A tag without a name.
    #[error("a tag needs a name")]
    EmptyName,
    /// The tags would be too large.
    #[error("{0}")]
    TooLarge(String),
    /// The serf layer refused.
    #[error("cannot publish the tags: {0}")]
    Publish(String),
}

#[derive(Debug, Default)]
struct TagState {
    user: BTreeMap<String, String>,
    election: Vec<(String, String)>,
    cleared: Vec<String>,
}

/// Publishes the composed tags. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct TagPublisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    serf: tokio::sync::OnceCell<SerfHandle>,
    state: Mutex<TagState>,
    reserved: Vec<String>,
    /// The role configured for the election, written to the tags file so a restart keeps it.
    configured_role: Option<(String, String)>,
    tags_file: Option<PathBuf>,
}

impl TagPublisher {
    /// `user`: the user's tags; `election`: the election's initial tags; `reserved`: keys the
    /// user may not change.
    pub(crate) fn new(
        user: BTreeMap<String, String>,
        election: Vec<(String, String)>,
        reserved: Vec<String>,
        configured_role: Option<(String, String)>,
        tags_file: Option<PathBuf>,
    ) -> Self {
        let state = TagState { user, election, cleared: Vec::new() };
        Self {
            inner: Arc::new(Inner {
                serf: tokio::sync::OnceCell::new(),
                state: Mutex::new(state),
                reserved,
                configured_role,
                tags_file,
            }),
        }
    }

    /// Attach the running serf layer (tags are only composed before that).
    pub(crate) fn attach(&self, serf: SerfHandle) {
        let _ = self.inner.serf.set(serf);
    }

    /// The composed tags, as they are (or will be) published.
    pub(crate) async fn composed(&self) -> BTreeMap<String, String> {
        compose(&*self.inner.state.lock().await)
    }

    /// Apply `set` and `delete` to the user's tags, publish, and rewrite the tags file.
    pub(crate) async fn update_user(
        &self,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<BTreeMap<String, String>, TagError> {
        for key in set.keys().chain(delete.iter()) {
            if key.is_empty() {
                return Err(TagError::EmptyName);
            }
            if self.inner.reserved.contains(key) {
                return Err(TagError::Reserved(key.clone()));
            }
        }
        let mut state = self.inner.state.lock().await;
        let mut user = state.user.clone();
        for key in &delete {
            user.remove(key);
        }
        user.extend(set);
        self.replace_locked(&mut state, user).await
    }

    /// Replace the user's tags (SIGHUP); reserved keys in `user` are ignored.
    pub(crate) async fn replace_user(&self, mut user: BTreeMap<String, String>) -> Result<(), TagError> {
        user.retain(|key, _| !self.inner.reserved.contains(key));
        let mut state = self.inner.state.lock().await;
        if state.user == user {
            return Ok(());
        }
        self.replace_locked(&mut state, user).await.map(|_| ())
    }

    async fn replace_locked(
        &self,
        state: &mut TagState,
        user: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, TagError> {
        let previous = std::mem::replace(&mut state.user, user);
        let composed = compose(state);
        if let Err(error) = self.publish(&composed).await {
            state.user = previous;
            return Err(error);
        }
        if let Some(path) = &self.inner.tags_file {
            let mut saved = state.user.clone();
            if let Some((key, value)) = &self.inner.configured_role {
                saved.insert(key.clone(), value.clone());
            }
            if let Err(error) = crate::config::write_tags_file(path, &saved) {
                tracing::error!(path = %path.display(), %error, "cannot write the tags file");
            }
        }
        Ok(composed)
    }

    /// Set the election's tags (after a role change) and publish.
    pub(crate) async fn set_election_tags(
        &self,
        tags: Vec<(String, String)>,
        cleared: Vec<String>,
    ) -> Result<(), TagError> {
        let mut state = self.inner.state.lock().await;
        state.election = tags;
        state.cleared = cleared;
        let composed = compose(&state);
        self.publish(&composed).await
    }

    async fn publish(&self, tags: &BTreeMap<String, String>) -> Result<(), TagError> {
        let tags = Tags::new(tags.clone()).map_err(|error| TagError::TooLarge(error.to_string()))?;
        let Some(serf) = self.inner.serf.get() else { return Ok(()) };
        serf.set_tags(tags).await.map_err(|error| TagError::Publish(error.to_string()))
    }
}

/// User tags, minus the cleared keys, plus the election's.
fn compose(state: &TagState) -> BTreeMap<String, String> {
    let mut tags = state.user.clone();
    for key in &state.cleared {
        tags.remove(key);
    }
    tags.extend(state.election.iter().cloned());
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[tokio::test]
    async fn user_and_election_tags_compose() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tags.json");
        let publisher = TagPublisher::new(
            map(&[("dc", "east")]),
            vec![("role".into(), "standby".into())],
            vec!["role".into(), "role_since".into(), "role_pref".into()],
            Some(("role".into(), "primary".into())),
            Some(file.clone()),
        );
        assert_eq!(publisher.composed().await, map(&[("dc", "east"), ("role", "standby")]));
        let err = publisher.update_user(map(&[("role", "x")]), vec![]).await.unwrap_err();
        assert_eq!(err, TagError::Reserved("role".into()));
        let tags = publisher.update_user(map(&[("rack", "2")]), vec!["dc".into()]).await.unwrap();
        assert_eq!(tags, map(&[("rack", "2"), ("role", "standby")]));
        // The tags file keeps the configured role, not the current one.
        assert_eq!(crate::config::read_tags_file(&file).unwrap(), map(&[("rack", "2"), ("role", "primary")]));
        publisher
            .set_election_tags(vec![("role".into(), "primary".into()), ("role_since".into(), "1".into())], vec![])
            .await
            .unwrap();
        assert_eq!(publisher.composed().await, map(&[("rack", "2"), ("role", "primary"), ("role_since", "1")]));
        publisher.set_election_tags(vec![("role".into(), "standby".into())], vec!["role_since".into()]).await.unwrap();
        assert_eq!(publisher.composed().await, map(&[("rack", "2"), ("role", "standby")]));
        let big = "x".repeat(600);
        assert!(matches!(publisher.update_user(map(&[("big", &big)]), vec![]).await, Err(TagError::TooLarge(_))));
        assert_eq!(publisher.composed().await, map(&[("rack", "2"), ("role", "standby")]));
    }
}
