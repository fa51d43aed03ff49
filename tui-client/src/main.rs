//! `chat-tui`: parse the command line, set up file logging, run the
//! terminal UI or a pipe mode, map the outcome to an exit code.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use chat_tui::app::{App, AppOptions};
use chat_tui::config::{Cli, Config, Environment, RunMode, exit};
use chat_tui::{pipe, runtime, terminal};
use clap::Parser as _;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let env = Environment {
        stdin_tty: std::io::stdin().is_terminal(),
        stdout_tty: std::io::stdout().is_terminal(),
        login: std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok(),
    };
    let config = match Config::from_cli(cli, &env) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("chat-tui: {err}");
            return ExitCode::from(exit::USAGE);
        }
    };
    // Read the local UTC offset while the process has one thread: the
    // `time` crate refuses to (soundly) read it later.
    let utc_offset =
        time::UtcOffset::current_local_offset().map_or(0, time::UtcOffset::whole_seconds);
    if let Err(err) = init_logging(&config) {
        eprintln!("chat-tui: {err:#}");
        return ExitCode::from(exit::USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("chat-tui: cannot start the async runtime: {err}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let code = runtime.block_on(async {
        match &config.mode {
            RunMode::Tui => tui(&config, utc_offset).await,
            RunMode::Pipe => pipe::run(&config).await,
            RunMode::Once(text) => pipe::once(&config, text).await,
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(500));
    ExitCode::from(code)
}

async fn tui(config: &Config, utc_offset: i32) -> u8 {
    let app = App::new(AppOptions {
        server: config.server.to_string(),
        name: config.name.clone(),
        utc_offset,
    });
    let mut term = match terminal::init(config.mouse) {
        Ok(term) => term,
        Err(err) => {
            eprintln!("chat-tui: cannot set up the terminal: {err}");
            return exit::USAGE;
        }
    };
    let ctx = runtime::Context {
        server: config.server.clone(),
        options: config.connect_options(),
    };
    let result = runtime::run(&mut term, app, ctx, &config.rooms).await;
    terminal::restore();
    match result {
        Ok(runtime::Exit::Quit) => exit::OK,
        Ok(runtime::Exit::Signal(n)) => exit::SIGNAL_BASE + n,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "the UI failed");
            eprintln!("chat-tui: {err:#}");
            exit::USAGE
        }
    }
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let Some(path) = &config.log_file else {
        return Ok(());
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log file {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("chat_tui=info,chat_protocol=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
    Ok(())
}
