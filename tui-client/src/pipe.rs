//! The non-interactive modes, for scripts.
//!
//! * `--pipe` (the default when stdin or stdout is not a terminal): each
//!   stdin line is sent as one message, verbatim (no slash commands; blank
//!   lines are skipped); every event received is printed on stdout
//!   ([`output`]: JSON lines, or safe text with `--format text`).
//! * `--once TEXT`: sends TEXT, exits 0 as soon as the server echoes it
//!   (matched by our own name and the text; in plain mode by the text), or
//!   4 after `--timeout`.
//!
//! A script must never lose a line silently, so pipe mode:
//!
//! * paces itself to the limits the server announces in its welcome
//!   ([`pacer`]), instead of bursting into refusals;
//! * skips a line too long for the server (`max_message_bytes`), says so on
//!   stderr and goes on with the next ([`lines`] never holds more of it
//!   than the limit);
//! * sends again a line the server refused for rate or unavailability
//!   ([`outbox`] works out which one it was);
//! * at the end of input, waits until every line is echoed; a line not
//!   echoed within `--timeout` of the last progress counts as undelivered;
//! * exits 0 only when every line was delivered, else 5 with the count and
//!   the reasons on stderr (2, 3 when it could not connect or lost the
//!   connection).
//!
//! Exit codes are in [`crate::config::exit`].

pub mod lines;
pub mod outbox;
pub mod output;
pub mod pacer;

use std::time::Duration;

use chat_protocol::{
    Client, ClientEvents, ClientMessage, ClientSender, ErrorCode, Limits, Mode, ServerEvent,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use self::lines::{BoundedLines, InputLine};
use self::outbox::Outbox;
use self::output::Printer;
use self::pacer::Pacer;
use crate::config::{Config, exit};

/// How much of a line is read without a limit from the server (plain mode):
/// more than any server takes by default (64 KiB).
pub const READ_CAP: usize = 1024 * 1024;

/// How many lines are read ahead of what is sent.
const READ_AHEAD: usize = 64;

async fn connect(config: &Config) -> Result<(ClientSender, ClientEvents), u8> {
    let Some(room) = config.rooms.first() else {
        eprintln!("chat-tui: no room given: add --room ROOM");
        return Err(exit::USAGE);
    };
    match Client::connect(&config.server, room, &config.connect_options()).await {
        Ok(client) => Ok(client.split()),
        Err(err) if err.is_name_taken() => {
            eprintln!(
                "chat-tui: {err}\n(choose another --name; your own terminals share a name through the key in {})",
                config
                    .key_file
                    .as_ref()
                    .map_or_else(|| "--key-file".to_owned(), |p| p.display().to_string())
            );
            Err(exit::CONNECT)
        }
        Err(err) => {
            eprintln!("chat-tui: {err}");
            Err(exit::CONNECT)
        }
    }
}

/// The connection, its first event read: in typed mode the welcome, which
/// says our name and the server's limits.
struct Session {
    sender: ClientSender,
    mode: Mode,
    me: Option<String>,
    limits: Option<Limits>,
    printer: Printer,
}

impl Session {
    /// Connects, and in typed mode reads the welcome (printed when
    /// `print`).
    async fn open(
        config: &Config,
        utc_offset: i32,
        print: bool,
    ) -> Result<(Self, ClientEvents), u8> {
        let (sender, mut events) = connect(config).await?;
        let mode = events.mode();
        let mut session = Self {
            sender,
            mode,
            me: config.name.as_ref().map(|n| n.as_str().to_owned()),
            limits: None,
            printer: Printer::new(config.format, config.time_format.clone(), utc_offset),
        };
        if mode == Mode::Events {
            match tokio::time::timeout(config.timeout, events.next()).await {
                Ok(Some(Ok(event))) => {
                    if let ServerEvent::Welcome(w) = &event {
                        session.me = Some(w.user.clone());
                        session.limits = w.limits;
                    }
                    if print {
                        session.print(&event)?;
                    }
                }
                Ok(Some(Err(err))) => {
                    eprintln!("chat-tui: connection lost: {err}");
                    return Err(exit::LOST);
                }
                Ok(None) => {
                    eprintln!("chat-tui: connection lost before the welcome");
                    return Err(exit::LOST);
                }
                Err(_) => {
                    eprintln!(
                        "chat-tui: no welcome from the server within {:?}",
                        config.timeout
                    );
                    return Err(exit::LOST);
                }
            }
        }
        Ok((session, events))
    }

    /// Prints an event; `Err` with the exit code when stdout is gone.
    fn print(&self, event: &ServerEvent) -> Result<(), u8> {
        match self.printer.print(event, &mut std::io::stdout().lock()) {
            Ok(()) => Ok(()),
            // The reader went away (`| head`): a normal end.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(exit::OK),
            Err(err) => {
                eprintln!("chat-tui: writing stdout: {err}");
                Err(exit::USAGE)
            }
        }
    }

    /// The largest message text the server takes (by frame size).
    fn fits(&self, text: &str) -> Result<(), usize> {
        let limit = self
            .limits
            .map(|l| usize::try_from(l.max_message_bytes).unwrap_or(usize::MAX))
            .filter(|l| *l > 0);
        let frame = ClientMessage::chat(text).to_json().len();
        match limit {
            Some(limit) if frame > limit => Err(limit),
            _ => Ok(()),
        }
    }

    /// Whether `event` is one of our own chat messages coming back.
    fn own_text<'a>(&self, event: &'a ServerEvent) -> Option<&'a str> {
        match event {
            ServerEvent::Chat(chat)
                if !chat.emote
                    && (self.mode == Mode::Plain || self.me.as_deref() == Some(&chat.user)) =>
            {
                Some(&chat.message)
            }
            _ => None,
        }
    }

    fn track_rename(&mut self, event: &ServerEvent) {
        if let ServerEvent::Nick(n) = event {
            if self.me.as_deref() == Some(n.old.as_str()) {
                self.me = Some(n.user.clone());
            }
        }
    }
}

/// An error event that answers one of our chat frames: one that will not
/// come back as an echo.
fn is_refusal(code: ErrorCode) -> bool {
    !matches!(code, ErrorCode::Lagged | ErrorCode::Other)
}

/// What became of the input, for the summary on stderr.
#[derive(Debug, Default)]
struct Tally {
    lines: usize,
    too_long: usize,
    not_utf8: usize,
    not_echoed: usize,
    not_sent: usize,
    refused: usize,
}

impl Tally {
    fn undelivered(&self) -> usize {
        self.too_long + self.not_utf8 + self.not_echoed + self.not_sent + self.refused
    }

    fn summary(&self) -> String {
        let mut reasons = Vec::new();
        for (count, why) in [
            (self.too_long, "too long for the server"),
            (self.not_utf8, "not UTF-8"),
            (self.refused, "refused by the server every time"),
            (self.not_echoed, "sent but never echoed"),
            (self.not_sent, "never sent"),
        ] {
            if count > 0 {
                reasons.push(format!("{count} {why}"));
            }
        }
        let lines = if self.lines == 1 { "line" } else { "lines" };
        format!(
            "{} of {} {lines} NOT delivered: {}",
            self.undelivered(),
            self.lines,
            reasons.join(", ")
        )
    }
}

/// `--pipe`: stdin lines in, events out. Returns the exit code.
#[allow(clippy::too_many_lines)] // one loop, its arms in one place
pub async fn run(config: &Config, utc_offset: i32) -> u8 {
    let (mut session, mut events) = match Session::open(config, utc_offset, true).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let (Ok(mut sigterm), Ok(mut sigint)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("chat-tui: cannot install signal handlers");
        return exit::USAGE;
    };
    let cap = session
        .limits
        .map(|l| usize::try_from(l.max_message_bytes).unwrap_or(usize::MAX))
        .filter(|l| *l > 0)
        .unwrap_or(READ_CAP);
    let mut lines = BoundedLines::new(tokio::io::BufReader::new(tokio::io::stdin()));
    let mut pacer = Pacer::new(session.limits.as_ref(), Instant::now());
    let mut outbox = Outbox::default();
    let mut tally = Tally::default();
    let mut stdin_open = true;
    // The last sign of life: a send, an echo, a refusal.
    let mut progress = Instant::now();
    let stall = config.timeout;
    let code = loop {
        if !stdin_open && outbox.is_done() {
            break exit::OK;
        }
        let send_at = outbox.next().map(|_| match &mut pacer {
            Some(pacer) => pacer.ready_at(Instant::now()),
            None => Instant::now(),
        });
        let waiting = outbox.has_in_flight() || (!stdin_open && !outbox.is_done());
        tokio::select! {
            line = lines.next(cap), if stdin_open && outbox.wants_input(READ_AHEAD) => match line {
                Ok(Some(line)) => {
                    tally.lines += 1;
                    let number = tally.lines;
                    match line {
                        InputLine::Text(text) if text.trim().is_empty() => tally.lines -= 1,
                        InputLine::Text(text) => match session.fits(&text) {
                            Ok(()) => outbox.push(number, text),
                            Err(limit) => {
                                tally.too_long += 1;
                                eprintln!(
                                    "chat-tui: line {number} ({} bytes) is over the server's limit of {limit} bytes: not sent",
                                    text.len()
                                );
                            }
                        },
                        InputLine::TooLong(bytes) => {
                            tally.too_long += 1;
                            eprintln!(
                                "chat-tui: line {number} ({bytes} bytes) is over the server's limit of {cap} bytes: not sent"
                            );
                        }
                        InputLine::NotUtf8 => {
                            tally.not_utf8 += 1;
                            eprintln!("chat-tui: line {number} is not UTF-8 text: not sent");
                        }
                    }
                }
                Ok(None) => {
                    stdin_open = false;
                    progress = Instant::now();
                }
                Err(err) => {
                    eprintln!("chat-tui: reading stdin: {err}");
                    break exit::USAGE;
                }
            },
            () = tokio::time::sleep_until(send_at.unwrap_or_else(Instant::now)), if send_at.is_some() => {
                let Some(line) = outbox.next() else { continue };
                if let Err(err) = session.sender.say(&line.text).await {
                    eprintln!("chat-tui: connection lost: {err}");
                    break exit::LOST;
                }
                outbox.sent();
                if let Some(pacer) = &mut pacer {
                    pacer.take(Instant::now());
                }
                progress = Instant::now();
            }
            event = events.next() => match event {
                Some(Ok(event)) => {
                    if let Some(text) = session.own_text(&event) {
                        if outbox.echoed(text) {
                            progress = Instant::now();
                        }
                    }
                    if let ServerEvent::Error(err) = &event {
                        if is_refusal(err.code) && outbox.has_in_flight() {
                            outbox.refused();
                            if let Some(pacer) = &mut pacer {
                                pacer.refused(Instant::now());
                            }
                            progress = Instant::now();
                        }
                    }
                    session.track_rename(&event);
                    if let Err(code) = session.print(&event) {
                        break code;
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
            () = tokio::time::sleep_until(progress + stall), if waiting => {
                eprintln!("chat-tui: no echo from the server for {stall:?}: giving up on what is still waiting");
                break exit::UNDELIVERED;
            }
            _ = sigterm.recv() => break exit::SIGNAL_BASE + 15,
            _ = sigint.recv() => break exit::SIGNAL_BASE + 2,
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), session.sender.close()).await;
    let (not_echoed, not_sent) = outbox.give_up();
    tally.not_echoed = not_echoed.len();
    tally.not_sent = not_sent.len();
    tally.refused = outbox.refused_lines().len();
    if tally.undelivered() == 0 {
        return code;
    }
    eprintln!("chat-tui: {}", tally.summary());
    if code == exit::OK {
        exit::UNDELIVERED
    } else {
        code
    }
}

/// `--once TEXT`: send, wait for the echo. Returns the exit code.
pub async fn once(config: &Config, text: &str, utc_offset: i32) -> u8 {
    let (mut session, mut events) = match Session::open(config, utc_offset, false).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    if let Err(limit) = session.fits(text) {
        eprintln!(
            "chat-tui: the message ({} bytes) is over the server's limit of {limit} bytes: not sent",
            text.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), session.sender.close()).await;
        return exit::UNDELIVERED;
    }
    if let Err(err) = session.sender.say(text).await {
        eprintln!("chat-tui: connection lost: {err}");
        return exit::LOST;
    }
    let wait = async {
        loop {
            match events.next().await {
                Some(Ok(event)) => {
                    if session.own_text(&event) == Some(text) {
                        return exit::OK;
                    }
                    if let ServerEvent::Error(err) = &event {
                        if is_refusal(err.code) {
                            eprintln!("chat-tui: not delivered: {}", err.message);
                            return exit::UNDELIVERED;
                        }
                    }
                    session.track_rename(&event);
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
    let _ = tokio::time::timeout(Duration::from_secs(1), session.sender.close()).await;
    code
}
