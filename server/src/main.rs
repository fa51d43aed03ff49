//! The `chat-server` binary: flags and environment -> config, logging,
//! the listening socket, and the shutdown signal; everything else is in
//! the library.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: measured with `chat-bench` (see
/// BENCHMARKS.md), an idle connection costs ~2.3 KiB instead of 2.7 to 4.0
/// KiB (glibc fragments around the handshake's short-lived buffers, and
/// varies run to run), and fan-out in many small rooms takes ~25 % less CPU
/// per delivery. Built with `no_thp` so that its arenas are not backed by
/// transparent huge pages: without it an empty server holds 12-17 MiB
/// instead of ~6 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!(%err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{}", chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated as `{:#}` prints them, but
/// without a cause whose text the error before it already shows (some
/// libraries, redis-rs among them, print their source in their own
/// message too).
fn chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !last.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        last = text;
    }
    out
}

async fn serve(cli: cli::Cli) -> anyhow::Result<()> {
    let files = raise_file_limit();
    // One file per connection, and some to spare for everything else.
    let config = cli.config(
        usize::try_from(files.saturating_sub(128))
            .unwrap_or(usize::MAX)
            .max(1),
    )?;
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another server using it? pick another with --addr",
                cli.addr
            )
        })?;
    chat_server::run(listener, config, shutdown_signal())
        .await
        .context("starting the server")
}

/// Every connection is a file descriptor: raise the soft limit to the hard
/// limit so the server holds as many as the system allows.
fn raise_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            info!(
                limit,
                "open-file limit raised to the hard limit (one file per connection)"
            );
            limit
        }
        Err(err) => {
            warn!(%err, "could not raise the open-file limit");
            1024
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            warn!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("Ctrl-C: shutting down"),
        () = terminate => info!("SIGTERM: shutting down"),
    }
}
