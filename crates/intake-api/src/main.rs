//! The `intake` binary.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = intake_api::cli::Cli::parse();
    match intake_api::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("intake: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
