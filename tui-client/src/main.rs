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
        login: login_name(),
        config_home: std::env::var_os("XDG_CONFIG_HOME").map(Into::into),
        state_home: std::env::var_os("XDG_STATE_HOME").map(Into::into),
        home: std::env::var_os("HOME").map(Into::into),
    };
    let mut config = match Config::load(cli, &env) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("chat-tui: {err}");
            return ExitCode::from(exit::USAGE);
        }
    };
    config.key = person_key(&config);
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
            RunMode::Pipe => pipe::run(&config, utc_offset).await,
            RunMode::Once(text) => pipe::once(&config, text, utc_offset).await,
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
        highlights: config.highlights.clone(),
        time_format: config.time_format.clone(),
        theme: config.theme,
        logging: config.log_dir.is_some(),
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
        bell: config.bell,
        desktop: runtime::notify::desktop(config.notify, &|var| std::env::var(var).ok()),
        log_dir: config.log_dir.clone(),
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

/// `$USER`, `$LOGNAME`, else the name of this process's user in
/// `/etc/passwd`.
fn login_name() -> Option<String> {
    let from_env = |var| std::env::var(var).ok().filter(|v: &String| !v.is_empty());
    from_env("USER")
        .or_else(|| from_env("LOGNAME"))
        .or_else(|| {
            use std::os::unix::fs::MetadataExt as _;
            let uid = std::fs::metadata("/proc/self").ok()?.uid();
            let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
            chat_tui::config::login_from_passwd(&passwd, uid)
        })
}

/// This person's key, from its file (made on first use). Without one the
/// client still works, but its name is its own connection's alone.
fn person_key(config: &Config) -> Option<String> {
    let path = config.key_file.as_ref()?;
    match chat_tui::config::key::load_or_create(path) {
        Ok(key) => Some(key),
        Err(err) => {
            eprintln!(
                "chat-tui: warning: {err}; connecting without a key (your name is held by this connection only)"
            );
            None
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
