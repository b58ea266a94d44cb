//! `agent`: load the configuration, install logging, run the agent until a signal or a leave.

use std::process::ExitCode;

use crate::cli::AgentArgs;
use crate::config::{ConfigSources, Settings};
use agent_support::logging::Logging;

pub(super) fn run(args: AgentArgs) -> ExitCode {
    let sources = ConfigSources { files: args.config_file, dirs: args.config_dir, flags: args.config };
    let settings = match sources.load().and_then(|config| Settings::from_config(&config)) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let logging = match Logging::init(&settings.log_level) {
        Ok(logging) => logging,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    // As Go programs (Serf) do: every client connection holds a descriptor, and clients that only
    // idle must run out of connection slots (which are reclaimed) before the agent runs out of
    // descriptors.
    let open_files = http_serve::raise_fd_limit();
    tracing::debug!(?open_files, "open-files limit");
    // One thread: an agent's work is small and IO-bound, and a single-threaded runtime keeps the
    // memory of an agent low (one malloc arena, no idle workers). The snapshot writer has its own
    // thread; handlers are child processes.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(crate::agent::run(settings, sources, logging));
    // Handlers and hooks still running are not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}
