//! `keys` and `keygen`.

use anyhow::bail;
use gossip_core::Key;

use crate::cli::KeysArgs;
use crate::rpc::api::{KeyRequest, KeysResponse};

use super::{client, is_json, print_columns, print_json};

pub(super) async fn keys(args: KeysArgs) -> anyhow::Result<()> {
    let client = client(&args.rpc);
    let (action, response): (&str, KeysResponse) = if args.list {
        ("list", client.get("/v1/keys").await?)
    } else {
        let (action, key) = match (&args.install, &args.use_key, &args.remove) {
            (Some(key), _, _) => ("install", key),
            (_, Some(key), _) => ("use", key),
            (_, _, Some(key)) => ("remove", key),
            _ => bail!("give one of -install, -use, -remove or -list"),
        };
        if let Err(error) = Key::from_base64(key) {
            bail!("-{action}: not a valid key ({error}); it must be base64 of 16, 24 or 32 bytes");
        }
        (action, client.post(&format!("/v1/keys/{action}"), &KeyRequest { key: key.clone() }).await?)
    };
    if is_json(args.format) {
        print_json(&response)?;
    } else {
        println!(
            "{action}: {} of {} nodes answered, {} with errors",
            response.num_resp, response.num_nodes, response.num_err
        );
        for (node, message) in &response.messages {
            println!("\t{node}: {message}");
        }
        if args.list {
            let rows: Vec<Vec<String>> = response
                .keys
                .iter()
                .map(|(key, count)| vec![key.clone(), format!("[{count}/{}]", response.num_nodes)])
                .collect();
            println!("Keys installed in the cluster:");
            print_columns(&rows);
        }
    }
    if response.num_err > 0 {
        bail!("{action} failed on {} node(s)", response.num_err);
    }
    Ok(())
}

pub(super) fn keygen() -> anyhow::Result<()> {
    let key = Key::generate(&mut rand::rng());
    println!("{}", key.to_base64());
    Ok(())
}
