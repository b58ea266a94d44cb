//! `monitor`: stream the agent's log until interrupted.

use hyper::Method;

use crate::cli::MonitorArgs;
use crate::rpc::server::percent_encode;
use agent_support::logging::LogRecord;

use super::client;

pub(super) async fn run(args: MonitorArgs) -> anyhow::Result<()> {
    let path = format!("/v1/monitor?level={}", percent_encode(&args.log_level));
    let client = client(&args.rpc);
    let stream = client.stream::<()>(Method::GET, &path, None, |line| {
        match serde_json::from_str::<LogRecord>(line) {
            Ok(record) => println!("{} [{}] {}: {}", record.time, record.level, record.target, record.message),
            Err(_) => println!("{line}"),
        }
        Ok(true)
    });
    tokio::select! {
        result = stream => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
