//! Configuration of the membership election.

use std::time::Duration;

/// The role-tag value of the member holding the primary role (a *claim*).
pub const PRIMARY_VALUE: &str = "primary";
/// The role-tag value of an eligible member that does not hold the role.
pub const STANDBY_VALUE: &str = "standby";

/// How members are told apart and ordered in the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionConfig {
    /// The tag holding a member's role (default `role`). Claim data is published in
    /// `{role_tag}_since` and `{role_tag}_pref`.
    pub role_tag: String,
    /// Role-tag values that make a member eligible (default `primary`, `standby`). The two values
    /// this election publishes, `primary` and `standby`, are always eligible; add others to let
    /// members that publish e.g. `db` take part.
    pub eligible_values: Vec<String>,
    /// Optional tag holding an integer priority: higher is elected first; missing or not an
    /// integer counts as 0 (default: none).
    pub priority_tag: Option<String>,
    /// After start, how long a node waits, seeing no primary, before it may claim the role
    /// (default 5 s). Lets a joining node learn of an existing primary first: set it above the
    /// time a node takes to join and receive the member list (one push-pull), plus the start-up
    /// spread of the nodes of a fresh cluster if the preferred node should win its first
    /// election. It delays only the first claim after start, never a failover.
    pub settle: Duration,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        Self {
            role_tag: "role".to_owned(),
            eligible_values: vec![PRIMARY_VALUE.to_owned(), STANDBY_VALUE.to_owned()],
            priority_tag: None,
            settle: Duration::from_secs(5),
        }
    }
}

/// A bad [`ElectionConfig`]; [`ElectionConfig::validate`] names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The role tag is empty.
    #[error("role tag: must not be empty")]
    EmptyRoleTag,
    /// An eligible value is empty.
    #[error("eligible values: {values:?} contains an empty value")]
    EmptyEligibleValue {
        /// The configured values.
        values: Vec<String>,
    },
    /// The priority tag is empty or is one of the tags the election publishes.
    #[error("priority tag: {tag:?} must be non-empty and differ from the election's tags {reserved:?}")]
    PriorityTag {
        /// The configured tag.
        tag: String,
        /// The tags the election publishes itself.
        reserved: [String; 3],
    },
}

impl ElectionConfig {
    /// The configuration, if it is usable.
    pub fn validate(self) -> Result<Self, ConfigError> {
        if self.role_tag.is_empty() {
            return Err(ConfigError::EmptyRoleTag);
        }
        if self.eligible_values.iter().any(String::is_empty) {
            return Err(ConfigError::EmptyEligibleValue { values: self.eligible_values });
        }
        if let Some(tag) = &self.priority_tag {
            let reserved = [self.role_tag.clone(), self.since_tag(), self.preferred_tag()];
            if tag.is_empty() || reserved.contains(tag) {
                return Err(ConfigError::PriorityTag { tag: tag.clone(), reserved });
            }
        }
        Ok(self)
    }

    /// Whether a member publishing `value` in its role tag is eligible (rule 1).
    pub fn is_eligible_value(&self, value: &str) -> bool {
        value == PRIMARY_VALUE || value == STANDBY_VALUE || self.eligible_values.iter().any(|v| v == value)
    }

    /// The tag holding the claim time of a primary, in unix milliseconds: `{role_tag}_since`.
    pub fn since_tag(&self) -> String {
        format!("{}_since", self.role_tag)
    }

    /// The tag marking the preferred node (`1`): `{role_tag}_pref`.
    pub fn preferred_tag(&self) -> String {
        format!("{}_pref", self.role_tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_name_the_claim_tags() {
        let config = ElectionConfig::default().validate().unwrap();
        assert_eq!(config.since_tag(), "role_since");
        assert_eq!(config.preferred_tag(), "role_pref");
        assert!(config.is_eligible_value("primary") && config.is_eligible_value("standby"));
        assert!(!config.is_eligible_value("web"));
    }

    #[test]
    fn extra_eligible_values_add_to_primary_and_standby() {
        let config = ElectionConfig { eligible_values: vec!["db".into()], ..ElectionConfig::default() };
        assert!(config.is_eligible_value("db") && config.is_eligible_value("standby"));
    }

    #[test]
    fn bad_values_are_named() {
        let err = ElectionConfig { role_tag: String::new(), ..ElectionConfig::default() }.validate().unwrap_err();
        assert_eq!(err, ConfigError::EmptyRoleTag);
        let err = ElectionConfig { priority_tag: Some("role_since".into()), ..ElectionConfig::default() }
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"priority tag: "role_since" must be non-empty and differ from the election's tags ["role", "role_since", "role_pref"]"#
        );
        let err = ElectionConfig { eligible_values: vec!["db".into(), String::new()], ..ElectionConfig::default() }
            .validate()
            .unwrap_err();
        assert_eq!(err.to_string(), r#"eligible values: ["db", ""] contains an empty value"#);
    }
}
