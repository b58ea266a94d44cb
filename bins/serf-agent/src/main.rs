//! `serf-agent`: a Serf-like gossip agent and the CLI that talks to it. Thin: parsing is in
//! [`cli`], each command in [`commands`], the agent in [`agent`].

mod agent;
mod cli;
mod commands;
mod config;
mod duration;
mod handlers;
mod metrics;
mod primary;
mod rpc;
mod tags;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::normalize_args(std::env::args_os());
    match cli::Cli::try_parse_from(args) {
        Ok(cli) => commands::run(cli.command),
        Err(error) => {
            let code = if error.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
            let _ = error.print();
            code
        }
    }
}
