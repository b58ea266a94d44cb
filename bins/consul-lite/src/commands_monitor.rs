//! `consul-lite monitor [-log-level L] [-log-json]`: print the agent's log lines as they are
//! logged (`GET /v1/agent/monitor`), until interrupted or the agent stops.

use crate::cli::MonitorArgs;
use crate::client::{encode_path, Client};

/// Streams until Ctrl-C (exit 0) or the end of the stream.
pub(crate) async fn run(args: MonitorArgs) -> anyhow::Result<()> {
    let mut path = format!("/v1/agent/monitor?loglevel={}", encode_path(&args.log_level));
    if args.log_json {
        path.push_str("&logjson");
    }
    let client = Client::new(&args.client);
    let stream = client.stream_lines(&path, |line| println!("{line}"));
    tokio::select! {
        result = stream => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
