//! `members`: list the members, filtered by status, name and tags (regexps, on the agent).

use crate::cli::MembersArgs;
use crate::rpc::api::MembersResponse;
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
    let rows: Vec<Vec<String>> = response
        .members
        .iter()
        .map(|member| {
            let tags: Vec<String> = member.tags.iter().map(|(key, value)| format!("{key}={value}")).collect();
            let mut row = vec![member.name.clone(), member.addr.clone(), member.status.clone(), tags.join(",")];
            if args.detailed {
                row.push(format!(
                    "incarnation={} protocol={}/{}/{}",
                    member.incarnation, member.protocol.min, member.protocol.max, member.protocol.cur
                ));
            }
            row
        })
        .collect();
    print_columns(&rows);
    Ok(())
}
