//! One file per command (or per family of commands). Client commands talk to the agent through
//! [`crate::rpc::client::RpcClient`]; `agent` runs [`crate::agent`].

mod agent;
mod cluster;
mod info;
mod keys;
mod members;
mod monitor;
mod primary;
mod query;
mod rtt;
mod tags;

use std::process::ExitCode;

use crate::cli::{Command, Format, RpcArgs};
use crate::rpc::client::RpcClient;

/// Run a parsed command line; errors are printed to stderr and give exit code 1.
pub(crate) fn run(command: Command) -> ExitCode {
    if let Command::Agent(args) = command {
        return agent::run(*args);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_client(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_client(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Agent(_) => unreachable!("handled above"),
        Command::Members(args) => members::run(args).await,
        Command::Join(args) => cluster::join(args).await,
        Command::Leave(args) => cluster::leave(args).await,
        Command::ForceLeave(args) => cluster::force_leave(args).await,
        Command::Event(args) => query::event(args).await,
        Command::Query(args) => query::query(args).await,
        Command::Monitor(args) => monitor::run(args).await,
        Command::Tags(args) => tags::run(args).await,
        Command::Info(args) => info::info(args).await,
        Command::Keys(args) => keys::keys(args).await,
        Command::Keygen => keys::keygen(),
        Command::Rtt(args) => rtt::run(args).await,
        Command::Reachability(args) => query::reachability(args).await,
        Command::Version => info::version(),
        Command::Primary(args) => primary::run(args).await,
    }
}

fn client(args: &RpcArgs) -> RpcClient {
    RpcClient::new(args.rpc_addr.clone(), args.rpc_auth.clone())
}

/// Print a value as pretty JSON.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Print rows as left-aligned columns separated by two spaces (as Serf's columnize).
fn print_columns(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| rows.iter().filter_map(|row| row.get(column)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[column]));
            }
        }
        println!("{}", line.trim_end());
    }
}

fn is_json(format: Format) -> bool {
    format == Format::Json
}
