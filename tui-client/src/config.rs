//! The command line: [`Cli`] as clap parses it, and the validated
//! [`Config`] the rest of the client uses.

use std::path::PathBuf;
use std::time::Duration;

use chat_protocol::{ConnectOptions, RoomName, ServerUrl, TlsOptions, UserName};
use clap::Parser;

/// Exit codes, the same in every mode.
pub mod exit {
    /// Success: quit from the TUI, end of input in pipe mode, the echo
    /// arrived with `--once`.
    pub const OK: u8 = 0;
    /// Usage: a bad flag, room name, display name or server address; no
    /// terminal for the TUI; stdin not UTF-8 in pipe mode.
    pub const USAGE: u8 = 1;
    /// Could not connect, or the server refused (pipe mode and `--once`).
    pub const CONNECT: u8 = 2;
    /// The connection was lost (pipe mode and `--once`).
    pub const LOST: u8 = 3;
    /// `--once`: the server did not echo the message in time.
    pub const TIMEOUT: u8 = 4;
    /// Ended by a signal: 128 + its number (130 SIGINT, 143 SIGTERM,
    /// 129 SIGHUP).
    pub const SIGNAL_BASE: u8 = 128;
}

const EXIT_CODES: &str = "\
Exit codes:
  0    ok: quit, end of input (--pipe), echo received (--once)
  1    usage: bad flag, room, name or server address; no terminal; stdin not UTF-8
  2    could not connect, or the server refused (--pipe, --once)
  3    the connection was lost (--pipe, --once)
  4    --once: no echo from the server within --timeout
  128+N  ended by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP)

Pipe mode (also chosen when stdin or stdout is not a terminal):
  each stdin line is sent as one message, verbatim (no /commands); every
  event received is printed as one JSON line on stdout. At end of input it
  waits briefly for the echo of the last message, then exits 0.
  Example: echo 'build done' | chat-tui --room ci --name bot

Keys in the terminal UI: /help inside it lists them.";

/// A terminal client for the chat room protocol.
#[derive(Debug, Parser)]
#[allow(clippy::struct_excessive_bools)] // clap flags are bools
#[command(
    name = "chat-tui",
    version,
    about = "A terminal chat client: rooms, scrollback, reconnects; and a pipe mode for scripts",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Room to join (repeat, or separate with commas, to join several).
    /// Without one, a room picker lists the server's active rooms.
    #[arg(
        short,
        long,
        env = "CHAT_ROOM",
        value_delimiter = ',',
        value_name = "ROOM"
    )]
    pub room: Vec<String>,

    /// Server address: ws://, wss://, http:// or https://, or host:port.
    #[arg(
        short,
        long,
        env = "CHAT_SERVER",
        default_value = "ws://127.0.0.1:8000",
        value_name = "URL"
    )]
    pub server: String,

    /// Display name [default: your login name].
    #[arg(short, long, env = "CHAT_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Pipe mode: send each stdin line as a message, print every event as
    /// a JSON line. The default when stdin or stdout is not a terminal.
    #[arg(long, env = "CHAT_PIPE", conflicts_with = "no_pipe")]
    pub pipe: bool,

    /// Run the terminal UI even when stdin is not a terminal (keys are read
    /// from the controlling terminal).
    #[arg(long, env = "CHAT_NO_PIPE")]
    pub no_pipe: bool,

    /// Send one message, wait for the server to echo it, exit 0.
    #[arg(long, env = "CHAT_ONCE", value_name = "TEXT", conflicts_with_all = ["pipe", "no_pipe"])]
    pub once: Option<String>,

    /// Seconds to wait for a connection, and for the echo with --once.
    #[arg(
        long,
        env = "CHAT_TIMEOUT",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub timeout: u64,

    /// Speak only the tutorial's plain protocol (no names, no history),
    /// even if the server offers more.
    #[arg(long, env = "CHAT_PLAIN")]
    pub plain: bool,

    /// Do not capture the mouse (keeps the terminal's own text selection;
    /// no wheel scrolling or clicks).
    #[arg(long, env = "CHAT_NO_MOUSE")]
    pub no_mouse: bool,

    /// Write logs to this file (the UI never logs to the terminal).
    /// RUST_LOG sets the level.
    #[arg(long, env = "CHAT_LOG_FILE", value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// A bearer token, for servers that require one.
    #[arg(long, env = "CHAT_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Trust the CA certificates in this PEM file for wss:// and https://
    /// (a private CA), besides the system's roots.
    #[arg(long, env = "CHAT_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

/// How the client runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMode {
    /// The terminal UI.
    Tui,
    /// stdin lines in, JSON lines out.
    Pipe,
    /// One message, then exit.
    Once(String),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server.
    pub server: ServerUrl,
    /// Rooms to join at start (none: the picker).
    pub rooms: Vec<RoomName>,
    /// The display name.
    pub name: Option<UserName>,
    /// How to run.
    pub mode: RunMode,
    /// Connect timeout, and the echo timeout of `--once`.
    pub timeout: Duration,
    /// Ask for typed events.
    pub events: bool,
    /// Capture the mouse.
    pub mouse: bool,
    /// Where logs go.
    pub log_file: Option<PathBuf>,
    /// Bearer token.
    pub token: Option<String>,
    /// How to trust a TLS server.
    pub tls: TlsOptions,
}

/// What the process knows about its surroundings, for [`Config::from_cli`].
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// stdin is a terminal.
    pub stdin_tty: bool,
    /// stdout is a terminal.
    pub stdout_tty: bool,
    /// The login user name, if any.
    pub login: Option<String>,
}

impl Config {
    /// Validates the command line.
    ///
    /// # Errors
    ///
    /// A message for the user, which names the rule that was broken.
    pub fn from_cli(cli: Cli, env: &Environment) -> Result<Self, String> {
        let server = ServerUrl::parse(&cli.server).map_err(|err| err.to_string())?;
        let rooms = cli
            .room
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| RoomName::new(r.trim()).map_err(|err| format!("--room {r:?}: {err}")))
            .collect::<Result<Vec<_>, _>>()?;
        let name = match cli.name {
            Some(name) => Some(UserName::new(name).map_err(|err| format!("--name: {err}"))?),
            None => env.login.as_deref().and_then(|l| UserName::new(l).ok()),
        };
        let mode = if let Some(text) = cli.once {
            RunMode::Once(text)
        } else if cli.pipe || !(cli.no_pipe || env.stdin_tty && env.stdout_tty) {
            RunMode::Pipe
        } else {
            RunMode::Tui
        };
        if mode != RunMode::Tui && rooms.len() != 1 {
            let flag = if matches!(mode, RunMode::Once(_)) {
                "--once"
            } else if cli.pipe {
                "--pipe"
            } else {
                "pipe mode (stdin or stdout is not a terminal; --no-pipe forces the UI)"
            };
            return Err(format!(
                "{flag} needs exactly one room: add --room ROOM (got {})",
                rooms.len()
            ));
        }
        if mode == RunMode::Tui && !env.stdout_tty {
            return Err("the terminal UI needs stdout to be a terminal; use --pipe".to_owned());
        }
        Ok(Self {
            server,
            rooms,
            name,
            mode,
            timeout: Duration::from_secs(cli.timeout.max(1)),
            events: !cli.plain,
            mouse: !cli.no_mouse,
            log_file: cli.log_file,
            token: cli.token,
            tls: TlsOptions {
                ca_file: cli.ca_file,
            },
        })
    }

    /// The options every connection uses.
    pub fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .events(self.events)
            .timeout(self.timeout)
            .token(self.token.clone())
            .tls(self.tls.clone());
        if let Some(name) = &self.name {
            options = options.name(name.clone());
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str], env: &Environment) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("chat-tui").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_cli(cli, env)
    }

    fn tty() -> Environment {
        Environment {
            stdin_tty: true,
            stdout_tty: true,
            login: Some("alice".into()),
        }
    }

    #[test]
    fn picks_the_mode() {
        let config = parse(&["--room", "lobby"], &tty()).unwrap();
        assert_eq!(config.mode, RunMode::Tui);
        assert_eq!(config.name.unwrap().as_str(), "alice");
        assert_eq!(config.server.to_string(), "ws://127.0.0.1:8000");

        let piped = Environment {
            stdin_tty: false,
            ..tty()
        };
        assert_eq!(parse(&["-r", "lobby"], &piped).unwrap().mode, RunMode::Pipe);
        assert_eq!(
            parse(&["-r", "lobby", "--no-pipe"], &piped).unwrap().mode,
            RunMode::Tui
        );
        assert_eq!(
            parse(&["-r", "lobby", "--once", "hi"], &tty())
                .unwrap()
                .mode,
            RunMode::Once("hi".into())
        );
        let err = parse(&["--pipe"], &tty()).unwrap_err();
        assert!(err.contains("--room"), "{err}");
    }

    #[test]
    fn validates_rooms_names_and_servers() {
        let config = parse(
            &[
                "-r",
                "a,b",
                "--room",
                "c",
                "--server",
                "https://h/x",
                "-n",
                "Zoë",
            ],
            &tty(),
        )
        .unwrap();
        assert_eq!(config.rooms.len(), 3);
        assert_eq!(config.server.to_string(), "wss://h/x");
        let err = parse(&["--room", "no spaces"], &tty()).unwrap_err();
        assert!(err.contains("ASCII letters"), "{err}");
        let err = parse(&["--name", " x"], &tty()).unwrap_err();
        assert!(err.contains("display name"), "{err}");
        let err = parse(&["--server", "ftp://h"], &tty()).unwrap_err();
        assert!(err.contains("ws://"), "{err}");
        let login = Environment {
            login: Some("bad\u{1b}name".into()),
            ..tty()
        };
        assert!(parse(&[], &login).unwrap().name.is_none());
    }
}
