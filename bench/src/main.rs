//! `chat-bench`: parse the command line, run the workload, print the report;
//! exit with status 1 on an error or a failed check (a soak's verdict).

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = chat_bench::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("chat_bench=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match chat_bench::cli::run(cli) {
        Ok(Some(output)) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(output.text.as_bytes());
            let _ = stdout.flush();
            if output.failures.is_empty() {
                return ExitCode::SUCCESS;
            }
            for failure in &output.failures {
                eprintln!("chat-bench: FAILED: {failure}");
            }
            ExitCode::FAILURE
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
