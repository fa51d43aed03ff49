//! The non-interactive modes, for scripts.
//!
//! * `--pipe` (the default when stdin or stdout is not a terminal): each
//!   stdin line is sent as one message, verbatim (no slash commands); every
//!   event received is printed as one JSON line on stdout
//!   ([`ServerEvent::to_json`]). At the end of input it waits up to
//!   [`ECHO_WAIT`] for the server to echo what was sent, closes, and exits 0.
//! * `--once TEXT`: sends TEXT, exits 0 as soon as the server echoes it
//!   (matched by our own name and the text; in plain mode by the text), or
//!   4 after `--timeout`.
//!
//! Exit codes are in [`crate::config::exit`].

use std::collections::VecDeque;
use std::io::Write as _;
use std::time::Duration;

use chat_protocol::{Client, ClientEvents, ClientSender, Mode, ServerEvent};
use tokio::io::AsyncBufReadExt as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Config, exit};

/// How long pipe mode waits at end of input for the last echoes.
pub const ECHO_WAIT: Duration = Duration::from_secs(3);

async fn connect(config: &Config) -> Result<(ClientSender, ClientEvents), u8> {
    let Some(room) = config.rooms.first() else {
        eprintln!("chat-tui: no room given: add --room ROOM");
        return Err(exit::USAGE);
    };
    match Client::connect(&config.server, room, &config.connect_options()).await {
        Ok(client) => Ok(client.split()),
        Err(err) => {
            eprintln!("chat-tui: {err}");
            Err(exit::CONNECT)
        }
    }
}

/// Tracks which of our messages the server has echoed.
struct Echoes {
    mode: Mode,
    me: Option<String>,
    waiting: VecDeque<String>,
}

impl Echoes {
    /// Notes an event; true when it was the echo of one of ours.
    fn settle(&mut self, event: &ServerEvent) -> bool {
        match event {
            ServerEvent::Welcome(w) => {
                self.me = Some(w.user.clone());
                false
            }
            ServerEvent::Nick(n) if self.me.as_deref() == Some(n.old.as_str()) => {
                self.me = Some(n.user.clone());
                false
            }
            ServerEvent::Chat(chat)
                if !chat.emote
                    && (self.mode == Mode::Plain || self.me.as_deref() == Some(&chat.user)) =>
            {
                if let Some(i) = self.waiting.iter().position(|t| *t == chat.message) {
                    self.waiting.remove(i);
                    return true;
                }
                false
            }
            _ => false,
        }
    }
}

fn print_event(event: &ServerEvent) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", event.to_json())?;
    out.flush()
}

/// `--pipe`: stdin lines in, JSON lines out. Returns the exit code.
pub async fn run(config: &Config) -> u8 {
    let (sender, mut events) = match connect(config).await {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let mut echoes = Echoes {
        mode: events.mode(),
        me: config.name.as_ref().map(|n| n.as_str().to_owned()),
        waiting: VecDeque::new(),
    };
    let (Ok(mut sigterm), Ok(mut sigint)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("chat-tui: cannot install signal handlers");
        return exit::USAGE;
    };
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let deadline = tokio::time::sleep(Duration::from_secs(u64::from(u32::MAX)));
    tokio::pin!(deadline);
    let code = loop {
        if !stdin_open && echoes.waiting.is_empty() {
            break exit::OK;
        }
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if let Err(err) = sender.say(&line).await {
                        eprintln!("chat-tui: connection lost: {err}");
                        break exit::LOST;
                    }
                    echoes.waiting.push_back(line);
                }
                Ok(None) => {
                    stdin_open = false;
                    deadline.as_mut().reset(tokio::time::Instant::now() + ECHO_WAIT);
                }
                Err(err) => {
                    eprintln!("chat-tui: reading stdin: {err}");
                    break exit::USAGE;
                }
            },
            event = events.next() => match event {
                Some(Ok(event)) => {
                    echoes.settle(&event);
                    if let Err(err) = print_event(&event) {
                        if err.kind() == std::io::ErrorKind::BrokenPipe {
                            break exit::OK;
                        }
                        eprintln!("chat-tui: writing stdout: {err}");
                        break exit::USAGE;
                    }
                }
                Some(Err(err)) => {
                    eprintln!("chat-tui: connection lost: {err}");
                    break exit::LOST;
                }
                None => {
                    eprintln!("chat-tui: connection lost");
                    break exit::LOST;
                }
            },
            () = &mut deadline, if !stdin_open => {
                eprintln!(
                    "chat-tui: {} message(s) sent but not echoed within {ECHO_WAIT:?}",
                    echoes.waiting.len()
                );
                break exit::OK;
            }
            _ = sigterm.recv() => break exit::SIGNAL_BASE + 15,
            _ = sigint.recv() => break exit::SIGNAL_BASE + 2,
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), sender.close()).await;
    code
}

/// `--once TEXT`: send, wait for the echo. Returns the exit code.
pub async fn once(config: &Config, text: &str) -> u8 {
    let (sender, mut events) = match connect(config).await {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let mut echoes = Echoes {
        mode: events.mode(),
        me: config.name.as_ref().map(|n| n.as_str().to_owned()),
        waiting: VecDeque::from([text.to_owned()]),
    };
    if let Err(err) = sender.say(text).await {
        eprintln!("chat-tui: connection lost: {err}");
        return exit::LOST;
    }
    let wait = async {
        loop {
            match events.next().await {
                Some(Ok(event)) => {
                    if echoes.settle(&event) {
                        return exit::OK;
                    }
                }
                Some(Err(err)) => {
                    eprintln!("chat-tui: connection lost: {err}");
                    return exit::LOST;
                }
                None => {
                    eprintln!("chat-tui: connection lost before the echo");
                    return exit::LOST;
                }
            }
        }
    };
    let code = if let Ok(code) = tokio::time::timeout(config.timeout, wait).await {
        code
    } else {
        eprintln!(
            "chat-tui: the server did not echo the message within {:?}",
            config.timeout
        );
        exit::TIMEOUT
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), sender.close()).await;
    code
}
