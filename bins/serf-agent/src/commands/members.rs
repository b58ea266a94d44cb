//! `members`: list the members, filtered by status, name and tags (regexps, on the agent).

use crate::cli::MembersArgs;
use crate::rpc::api::{MemberInfo, MembersResponse};
use crate::rpc::server::percent_encode;

use super::{client, is_json, print_columns, print_json};

pub(super) async fn run(args: MembersArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(status) = &args.status {
        query.push(format!("status={}", percent_encode(status)));
    }
    if let Some(name) = &args.name {
        query.push(format!("name={}", percent_encode(name)));
    }
    for (key, regexp) in &args.tag {
        query.push(format!("tag={}", percent_encode(&format!("{key}={regexp}"))));
    }
    let path = if query.is_empty() { "/v1/members".to_owned() } else { format!("/v1/members?{}", query.join("&")) };
    let response: MembersResponse = client(&args.rpc).get(&path).await?;
    if is_json(args.format) {
        return print_json(&response);
    }
    let role_tag = response.role_tag.as_deref();
    let rows: Vec<Vec<String>> = response
        .members
        .iter()
        .map(|member| {
            let tags = shown_tags(member, role_tag, args.detailed);
            let mut row = vec![member.name.clone(), member.addr.clone(), member.status.clone(), tags.join(",")];
            if args.detailed {
                let (generation, incarnation) = split_incarnation(&member.incarnation);
                row.push(format!(
                    "incarnation={incarnation} generation={generation} protocol={}/{}/{}",
                    member.protocol.min, member.protocol.max, member.protocol.cur
                ));
            }
            row
        })
        .collect();
    print_columns(&rows);
    Ok(())
}

/// The tags as a person reads them. With the election's `role_tag`:
/// - the claim tags (`{role}_since`, `{role}_pref`) are shown only with `-detailed`;
/// - a failed or left member that still carries `role=primary` (the last tags it gossiped) is
///   shown as `role=was-primary`: it is not the primary any more, whatever its tags say;
/// - an eligible node that asked for the role (`-tag role=primary`, gossiped as `role_pref=1`)
///   but does not hold it yet is shown as `role=standby(preferred)`.
fn shown_tags(member: &MemberInfo, role_tag: Option<&str>, detailed: bool) -> Vec<String> {
    let Some(role) = role_tag else {
        return member.tags.iter().map(|(key, value)| format!("{key}={value}")).collect();
    };
    let (since, preferred) = (format!("{role}_since"), format!("{role}_pref"));
    let is_preferred = member.tags.get(&preferred).is_some_and(|value| value == "1");
    let holds_role = matches!(member.status.as_str(), "alive" | "suspect");
    member
        .tags
        .iter()
        .filter(|(key, _)| detailed || (**key != since && **key != preferred))
        .map(|(key, value)| {
            if key != role {
                return format!("{key}={value}");
            }
            match value.as_str() {
                "primary" if !holds_role => format!("{key}=was-primary"),
                "primary" => format!("{key}=primary"),
                other if is_preferred => format!("{key}={other}(preferred)"),
                other => format!("{key}={other}"),
            }
        })
        .collect()
}

/// `generation.incarnation` (the API's form) → (generation, incarnation).
fn split_incarnation(text: &str) -> (&str, &str) {
    text.split_once('.').unwrap_or(("0", text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::api::ProtocolInfo;

    fn member(status: &str, tags: &[(&str, &str)]) -> MemberInfo {
        MemberInfo {
            name: "node0".into(),
            addr: "127.0.0.1:7946".into(),
            status: status.into(),
            tags: tags.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect(),
            incarnation: "1796303779488862.2".into(),
            protocol: ProtocolInfo { min: 1, max: 1, cur: 1 },
        }
    }

    #[test]
    fn claim_tags_are_hidden_unless_detailed() {
        let m = member("alive", &[("dc", "east"), ("role", "primary"), ("role_pref", "1"), ("role_since", "17963")]);
        assert_eq!(shown_tags(&m, Some("role"), false), ["dc=east", "role=primary"]);
        assert_eq!(shown_tags(&m, Some("role"), true), ["dc=east", "role=primary", "role_pref=1", "role_since=17963"]);
        // Without the election, tags are shown as they are.
        assert_eq!(shown_tags(&m, None, false).len(), 4);
    }

    #[test]
    fn a_failed_or_left_member_is_never_shown_as_the_primary() {
        for status in ["failed", "left"] {
            let m = member(status, &[("role", "primary"), ("role_since", "17963")]);
            assert_eq!(shown_tags(&m, Some("role"), false), ["role=was-primary"]);
        }
        let m = member("suspect", &[("role", "primary")]);
        assert_eq!(shown_tags(&m, Some("role"), false), ["role=primary"]);
    }

    #[test]
    fn a_preferred_node_waiting_to_claim_says_so() {
        let m = member("alive", &[("role", "standby"), ("role_pref", "1")]);
        assert_eq!(shown_tags(&m, Some("role"), false), ["role=standby(preferred)"]);
        let m = member("alive", &[("role", "standby")]);
        assert_eq!(shown_tags(&m, Some("role"), false), ["role=standby"]);
    }

    #[test]
    fn incarnations_are_plain_numbers() {
        assert_eq!(split_incarnation("1796303779488862.2"), ("1796303779488862", "2"));
        assert_eq!(split_incarnation("7"), ("0", "7"));
    }
}
