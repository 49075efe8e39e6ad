//! The `stowage` binary: parse the command line, set up logging, dispatch.

use clap::Parser;
use stowage::cli::{Cli, Command};
use stowage::config::{LogFormat, ProcessEnv};

/// mimalloc rather than glibc's malloc: a request makes many small, short-lived allocations
/// across worker threads, where glibc spent a sixth of `/resume/{id}`'s CPU (`bench/`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let format = LogFormat::from_vars(&ProcessEnv);
    stowage::telemetry::init(*format.as_ref().unwrap_or(&LogFormat::Text));
    if let Err(err) = format {
        eprintln!("stowage: {err}");
        return std::process::ExitCode::FAILURE;
    }
    let result = match cli.command.unwrap_or(Command::Serve(Default::default())) {
        Command::Serve(args) => stowage::cli::serve::run(args).await,
        Command::Migrate(args) => stowage::cli::migrate::run(args).await,
        Command::Createuser(args) => stowage::cli::createuser::run(args).await,
        Command::SeedDemo(args) => stowage::cli::seed_demo::run(args).await,
        Command::Collectstatic(args) => stowage::cli::collectstatic::run(args).await,
        Command::Changepassword(args) => stowage::cli::changepassword::run(args).await,
        Command::MarkStaging(args) => stowage::cli::mark_staging::run(args).await,
        Command::MakeStaging(args) => stowage::cli::make_staging::run(args).await,
        Command::CopyMedia(args) => stowage::cli::copy_media::run(args).await,
        Command::CheckMedia(args) => stowage::cli::check_media::run(args).await,
        Command::Doctor(args) => stowage::cli::doctor::run(args).await,
        Command::Downloads(args) => stowage::cli::downloads::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("stowage: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
