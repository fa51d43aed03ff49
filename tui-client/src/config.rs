//! The command line ([`Cli`], as clap parses it), the config file
//! ([`file`]), and the validated [`Config`] the rest of the client uses.
//! Flags and their `CHAT_*` variables override the file, which overrides
//! the defaults.

pub mod file;
pub mod key;

use std::path::PathBuf;
use std::time::Duration;

use chat_protocol::{ConnectOptions, RoomName, ServerUrl, TlsOptions, UserName};
use clap::Parser;

pub use file::NotifyMode;

use crate::clock::TimeFormat;
use crate::theme::Theme;

/// The server when neither a flag nor the config file names one.
pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:8000";

/// Exit codes, the same in every mode.
pub mod exit {
    /// Success: quit from the TUI, end of input in pipe mode, the echo
    /// arrived with `--once`.
    pub const OK: u8 = 0;
    /// Usage: a bad flag, room name, display name, server address or
    /// config file; no terminal for the TUI.
    pub const USAGE: u8 = 1;
    /// Could not connect, or the server refused (pipe mode and `--once`).
    pub const CONNECT: u8 = 2;
    /// The connection was lost (pipe mode and `--once`).
    pub const LOST: u8 = 3;
    /// `--once`: the server did not echo the message in time.
    pub const TIMEOUT: u8 = 4;
    /// `--pipe`: some lines were not delivered (too long, refused, or
    /// never echoed); stderr says how many and why.
    pub const UNDELIVERED: u8 = 5;
    /// Ended by a signal: 128 + its number (130 SIGINT, 143 SIGTERM,
    /// 129 SIGHUP).
    pub const SIGNAL_BASE: u8 = 128;
}

const EXIT_CODES: &str = "\
Exit codes:
  0    ok: quit, end of input (--pipe), echo received (--once)
  1    usage: bad flag, room, name, server address or config file; no terminal
  2    could not connect, or the server refused (--pipe, --once)
  3    the connection was lost (--pipe, --once)
  4    --once: no echo from the server within --timeout
  5    --pipe: some lines were not delivered (stderr says how many, and why)
  128+N  ended by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP)

Pipe mode (also chosen when stdin or stdout is not a terminal):
  each stdin line is sent as one message, verbatim (no /commands; blank
  lines are skipped), paced to the rate the server announces; a line the
  server refuses for rate is sent again. A line too long for the server is
  skipped and reported. Every event received is printed on stdout, one JSON
  line each (--format json) or as safe text (--format text: other people's
  control characters made visible). At end of input it waits until every
  line is echoed, then exits 0; 5 if any line was not delivered.
  Example: echo 'build done' | chat-tui --room ci --name bot

Config file: $XDG_CONFIG_HOME/chat-tui/config.toml (~/.config/chat-tui/config.toml),
  or --config PATH; flags and CHAT_* variables override it. See the README.

Keys in the terminal UI: /help inside it lists them.";

/// How pipe mode prints events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per line, as the server sent it (text unchanged:
    /// escape sequences included; parse it, do not print it raw).
    #[default]
    Json,
    /// `HH:MM:SS <user> text`, one event per line, with control characters
    /// and escape sequences shown as visible symbols: safe for a terminal.
    Text,
}

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

    /// Server address: ws://, wss://, http:// or https://, or host:port
    /// [default: the config file's, else ws://127.0.0.1:8000].
    #[arg(short, long, env = "CHAT_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// Display name [default: the config file's, else your login name].
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

    /// Seconds to wait for a connection, for the echo with --once, and in
    /// pipe mode for the server to echo before lines count as undelivered.
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

    /// The config file [default: $XDG_CONFIG_HOME/chat-tui/config.toml,
    /// i.e. ~/.config/chat-tui/config.toml; a missing default is fine].
    #[arg(long, env = "CHAT_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Words that highlight a message besides your name (repeat, or
    /// separate with commas): they ring the bell and notify.
    #[arg(
        long,
        env = "CHAT_HIGHLIGHT",
        value_delimiter = ',',
        value_name = "WORD"
    )]
    pub highlight: Vec<String>,

    /// Do not ring the terminal bell on a highlight.
    #[arg(long, env = "CHAT_NO_BELL")]
    pub no_bell: bool,

    /// Desktop notifications on a highlight: auto (by terminal), osc777,
    /// osc9, off [default: the config file's, else auto].
    #[arg(long, env = "CHAT_NOTIFY", value_name = "HOW")]
    pub notify: Option<NotifyMode>,

    /// The message time format (strftime: %H %M %S %I %p %Y %y %m %d %e %a
    /// %A %b %B %%) [default: the config file's, else %H:%M:%S].
    #[arg(long, env = "CHAT_TIME_FORMAT", value_name = "FORMAT")]
    pub time_format: Option<String>,

    /// Keep a plain-text log of every room in this directory, one file per
    /// room (DIR/HOST_PORT/ROOM.log), appended.
    #[arg(long, env = "CHAT_LOG_DIR", value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    /// Pipe mode's output: json (one event per line, text as sent) or text
    /// (readable, control characters made visible: safe for a terminal).
    #[arg(
        long,
        env = "CHAT_FORMAT",
        value_name = "FORMAT",
        default_value = "json"
    )]
    pub format: OutputFormat,

    /// Where your secret key is kept (it lets your terminals share your
    /// name and keeps others from taking it) [default:
    /// $XDG_STATE_HOME/chat-tui/key, i.e. ~/.local/state/chat-tui/key].
    #[arg(long, env = "CHAT_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,
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
    /// Words that highlight a message, besides the user's name.
    pub highlights: Vec<String>,
    /// Ring the bell on a highlight.
    pub bell: bool,
    /// Desktop notifications on a highlight.
    pub notify: NotifyMode,
    /// The message time format.
    pub time_format: TimeFormat,
    /// Where room logs go (none: no logs).
    pub log_dir: Option<PathBuf>,
    /// The colours.
    pub theme: Theme,
    /// Pipe mode's output.
    pub format: OutputFormat,
    /// Where the key lives (none: no home to keep it in).
    pub key_file: Option<PathBuf>,
    /// This person's key (read from `key_file` by `main`).
    pub key: Option<String>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag or variable breaks a rule; the text names it and the rule.
    #[error("{0}")]
    Usage(String),
    /// The config file.
    #[error(transparent)]
    File(#[from] file::FileError),
}

/// What the process knows about its surroundings, for [`Config::load`].
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// stdin is a terminal.
    pub stdin_tty: bool,
    /// stdout is a terminal.
    pub stdout_tty: bool,
    /// The login user name, if any.
    pub login: Option<String>,
    /// `$XDG_CONFIG_HOME`.
    pub config_home: Option<PathBuf>,
    /// `$XDG_STATE_HOME`.
    pub state_home: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
}

/// The login name of `uid` in `/etc/passwd`'s format, for when `$USER`
/// and `$LOGNAME` are unset (e.g. under `env -i`, cron, some containers).
pub fn login_from_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

impl Config {
    /// Reads the config file (the one given with `--config`, or the default
    /// one if it exists) and validates everything.
    ///
    /// # Errors
    ///
    /// [`ConfigError`]: a message for the user naming the flag, or the
    /// file and line, and the rule that was broken.
    pub fn load(cli: Cli, env: &Environment) -> Result<Self, ConfigError> {
        let loaded = match &cli.config {
            Some(path) => file::load(path, false)?,
            None => match file::default_path(env.config_home.as_deref(), env.home.as_deref()) {
                Some(path) => file::load(&path, true)?,
                None => None,
            },
        };
        Self::from_parts(cli, env, loaded.as_ref())
    }

    /// Validates the command line over the config file `loaded`.
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    #[allow(clippy::too_many_lines)]
    pub fn from_parts(
        cli: Cli,
        env: &Environment,
        loaded: Option<&file::LoadedFile>,
    ) -> Result<Self, ConfigError> {
        let usage = ConfigError::Usage;
        let file = loaded.map(|l| &l.config);
        let server = match (&cli.server, file.and_then(|f| f.server.as_ref())) {
            (Some(flag), _) => ServerUrl::parse(flag).map_err(|err| usage(err.to_string()))?,
            (None, Some(value)) => ServerUrl::parse(value.get_ref()).map_err(|err| {
                loaded.map_or_else(
                    || usage(err.to_string()),
                    |l| l.error(value, "server", err.to_string()).into(),
                )
            })?,
            (None, None) => {
                ServerUrl::parse(DEFAULT_SERVER).map_err(|err| usage(err.to_string()))?
            }
        };
        let mut rooms = cli
            .room
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| RoomName::new(r.trim()).map_err(|err| usage(format!("--room {r:?}: {err}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if rooms.is_empty() {
            if let (Some(l), Some(list)) = (loaded, file.and_then(|f| f.rooms.as_ref())) {
                for room in list {
                    rooms.push(
                        RoomName::new(room.get_ref().trim())
                            .map_err(|err| l.error(room, "rooms", err.to_string()))?,
                    );
                }
            }
        }
        let name = match (cli.name, loaded.zip(file.and_then(|f| f.name.as_ref()))) {
            (Some(name), _) => {
                Some(UserName::new(name).map_err(|err| usage(format!("--name: {err}")))?)
            }
            (None, Some((l, value))) => Some(
                UserName::new(value.get_ref().as_str())
                    .map_err(|err| l.error(value, "name", err.to_string()))?,
            ),
            (None, None) => env.login.as_deref().and_then(|l| UserName::new(l).ok()),
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
            return Err(usage(format!(
                "{flag} needs exactly one room: add --room ROOM (got {})",
                rooms.len()
            )));
        }
        if mode == RunMode::Tui && !env.stdout_tty {
            return Err(usage(
                "the terminal UI needs stdout to be a terminal; use --pipe".to_owned(),
            ));
        }
        let mut highlights: Vec<String> = cli
            .highlight
            .iter()
            .map(|w| w.trim().to_owned())
            .filter(|w| !w.is_empty())
            .collect();
        if highlights.is_empty() {
            highlights = file
                .and_then(|f| f.highlights.as_ref())
                .into_iter()
                .flatten()
                .map(|w| w.get_ref().trim().to_owned())
                .filter(|w| !w.is_empty())
                .collect();
        }
        let time_format = match (&cli.time_format, loaded) {
            (Some(flag), _) => TimeFormat::parse(flag)
                .map_err(|err| usage(format!("--time-format {flag:?}: {err}")))?,
            (None, Some(l)) => l.time_format()?.unwrap_or_default(),
            (None, None) => TimeFormat::default(),
        };
        let theme = loaded
            .map(file::LoadedFile::theme)
            .transpose()?
            .unwrap_or_default();
        let home = env.home.as_deref();
        let log_dir = cli.log_dir.or_else(|| {
            file.and_then(|f| f.log_dir.as_deref())
                .map(|dir| file::expand_home(dir, home))
        });
        let key_file = cli
            .key_file
            .or_else(|| key::default_path(env.state_home.as_deref(), home));
        Ok(Self {
            server,
            rooms,
            name,
            mode,
            timeout: Duration::from_secs(cli.timeout.max(1)),
            events: !cli.plain,
            mouse: !cli.no_mouse && file.and_then(|f| f.mouse).unwrap_or(true),
            log_file: cli.log_file,
            token: cli.token.or_else(|| file.and_then(|f| f.token.clone())),
            tls: TlsOptions {
                ca_file: cli.ca_file,
            },
            highlights,
            bell: !cli.no_bell && file.and_then(|f| f.bell).unwrap_or(true),
            notify: cli
                .notify
                .or_else(|| file.and_then(|f| f.notify))
                .unwrap_or_default(),
            time_format,
            log_dir,
            theme,
            format: cli.format,
            key_file,
            key: None,
        })
    }

    /// The options every connection uses.
    pub fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .events(self.events)
            .timeout(self.timeout)
            .token(self.token.clone())
            .key(self.key.clone())
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
        Config::from_parts(cli, env, None).map_err(|e| e.to_string())
    }

    fn tty() -> Environment {
        Environment {
            stdin_tty: true,
            stdout_tty: true,
            login: Some("alice".into()),
            ..Environment::default()
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

    /// A config file in a fresh temp dir; returns its path.
    fn config_file(name: &str, text: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("chat-tui-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load(args: &[&str], env: &Environment) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("chat-tui").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::load(cli, env).map_err(|e| e.to_string())
    }

    #[test]
    fn the_config_file_sets_defaults_and_flags_override_it() {
        let path = config_file(
            "full",
            r##"# a comment
server = "https://chat.example.org"
name = "zoe"
rooms = ["lobby", "dev"]
highlights = ["deploy", " release "]
time_format = "%H:%M"
bell = false
notify = "osc9"
log_dir = "~/chat-logs"
mouse = false
theme = "mono"

[colors]
marker = "#ff8000"
nick_colors = true
"##,
        );
        let env = Environment {
            home: Some("/home/zoe".into()),
            ..tty()
        };
        let config = load(&["--config", path.to_str().unwrap()], &env).unwrap();
        assert_eq!(config.server.to_string(), "wss://chat.example.org");
        assert_eq!(config.name.unwrap().as_str(), "zoe");
        assert_eq!(config.rooms.len(), 2);
        assert_eq!(config.highlights, ["deploy", "release"]);
        assert_eq!(config.time_format.pattern(), "%H:%M");
        assert!(!config.bell && !config.mouse);
        assert_eq!(config.notify, NotifyMode::Osc9);
        assert_eq!(config.log_dir, Some(PathBuf::from("/home/zoe/chat-logs")));
        assert_eq!(config.theme.marker, ratatui::style::Color::Rgb(255, 128, 0));
        assert!(
            config.theme.nick_colors,
            "[colors] applies over the mono theme"
        );

        let config = load(
            &[
                "--config",
                path.to_str().unwrap(),
                "--server",
                "ws://127.0.0.1:9",
                "-n",
                "ann",
                "-r",
                "ops",
                "--highlight",
                "fire",
                "--time-format",
                "%I:%M %p",
                "--notify",
                "off",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(config.server.to_string(), "ws://127.0.0.1:9");
        assert_eq!(config.name.unwrap().as_str(), "ann");
        assert_eq!(config.rooms.len(), 1);
        assert_eq!(config.highlights, ["fire"]);
        assert_eq!(config.time_format.pattern(), "%I:%M %p");
        assert_eq!(config.notify, NotifyMode::Off);
        let config = load(&["--config", path.to_str().unwrap(), "--no-bell"], &env).unwrap();
        assert!(!config.bell);
    }

    #[test]
    fn a_bad_config_file_names_the_file_and_line() {
        let cases = [
            ("typo", "name = \"zoe\"\n\nsever = \"x\"\n", "line 3"),
            ("type", "bell = \"yes\"\n", "line 1"),
            ("room", "rooms = [\"ok\",\n  \"no spaces\"]\n", "line 2"),
            ("colour", "[colors]\nborder = \"blurple\"\n", "line 2"),
            ("slot", "[colors]\n\nnope = \"red\"\n", "line 3"),
            ("format", "time_format = \"%Q\"\n", "line 1"),
            ("syntax", "name = \"zoe\nx\n", "line 2"),
            ("theme", "theme = \"neon\"\n", "line 1"),
        ];
        for (name, text, line) in cases {
            let path = config_file(name, text);
            let err = load(&["--config", path.to_str().unwrap()], &tty()).unwrap_err();
            assert!(err.contains(line), "{name}: {err}");
            assert!(err.contains("config.toml"), "{name}: names the file: {err}");
        }
    }

    #[test]
    fn the_default_config_file_may_be_missing_a_given_one_may_not() {
        let nowhere = Environment {
            config_home: Some("/nonexistent-chat-tui".into()),
            ..tty()
        };
        assert!(load(&[], &nowhere).is_ok());
        let err = load(&["--config", "/nonexistent-chat-tui/x.toml"], &nowhere).unwrap_err();
        assert!(err.contains("cannot read the config file"), "{err}");
        // The default place is read when it exists.
        let path = config_file("xdg", "name = \"from-xdg\"\n");
        let dir = path.parent().unwrap().parent().unwrap().join("xdg-home");
        std::fs::create_dir_all(dir.join("chat-tui")).unwrap();
        std::fs::copy(&path, dir.join("chat-tui").join("config.toml")).unwrap();
        let env = Environment {
            config_home: Some(dir),
            ..tty()
        };
        assert_eq!(load(&[], &env).unwrap().name.unwrap().as_str(), "from-xdg");
    }

    #[test]
    fn the_login_name_comes_from_passwd_when_the_environment_has_none() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # comment\n\
                      zoe:x:1000:1000:Zoë:/home/zoe:/bin/sh\n";
        assert_eq!(login_from_passwd(passwd, 1000).as_deref(), Some("zoe"));
        assert_eq!(login_from_passwd(passwd, 0).as_deref(), Some("root"));
        assert_eq!(login_from_passwd(passwd, 7), None);
    }
}
