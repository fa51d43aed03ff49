//! The one loop of the terminal UI.
//!
//! `select!` over terminal input (crossterm's `EventStream`), the room
//! tasks' reports, and the signals; each becomes a [`Msg`] for
//! [`App::update`], whose [`Effect`]s are carried out here. After one
//! message it drains whatever else is already queued, then draws once, and
//! only if something changed. Nothing here blocks on the network: the room
//! tasks in [`crate::net`] do that.
//!
//! It also owns what the terminal shows outside the frame: the window
//! title (the unread count, [`App::title`]), the bell and desktop
//! notifications ([`notify`]), and the room logs on disk ([`logs`]).

pub mod logs;
pub mod notify;

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chat_protocol::{ConnectOptions, RoomName, ServerUrl};
use futures_util::StreamExt;
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{Event, EventStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::app::App;
use crate::msg::{Effect, Msg, NetEvent};
use crate::net::{self, RoomCommand, RoomHandle};
use crate::ui;

/// How many queued inputs are handled before a frame is drawn anyway.
const MAX_BATCH: usize = 512;

/// What the runtime needs besides the app.
#[derive(Debug, Clone)]
pub struct Context {
    /// The server.
    pub server: ServerUrl,
    /// Connection options (name, timeout, ...).
    pub options: ConnectOptions,
    /// Ring the bell on a highlight.
    pub bell: bool,
    /// Desktop notifications on a highlight.
    pub desktop: notify::Desktop,
    /// Where room logs go (none: no logs).
    pub log_dir: Option<PathBuf>,
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The user quit.
    Quit,
    /// A signal: its number.
    Signal(u8),
}

struct Runner {
    ctx: Context,
    rooms: HashMap<RoomName, RoomHandle>,
    leaving: Vec<tokio::task::JoinHandle<()>>,
    tx: mpsc::Sender<Msg>,
    /// Messages produced here (e.g. a send that could not be queued).
    local: VecDeque<Msg>,
    /// The room logs' writer, when logging.
    logger: Option<logs::Logger>,
    /// The window title last set.
    title: String,
}

impl Runner {
    /// Carries out effects; returns true on Quit.
    fn apply(&mut self, effects: Vec<Effect>, terminal: &mut DefaultTerminal) -> bool {
        for effect in effects {
            match effect {
                Effect::Join(room) => {
                    let handle = net::spawn(
                        self.ctx.server.clone(),
                        room.clone(),
                        self.ctx.options.clone(),
                        self.tx.clone(),
                    );
                    if let Some(old) = self.rooms.insert(room, handle) {
                        let _ = old.commands.send(RoomCommand::Leave);
                        self.leaving.push(old.task);
                    }
                }
                Effect::Leave(room) => {
                    if let Some(handle) = self.rooms.remove(&room) {
                        let _ = handle.commands.send(RoomCommand::Leave);
                        self.leaving.push(handle.task);
                    }
                }
                Effect::Send {
                    room,
                    local_id,
                    message,
                } => {
                    let sent = self.rooms.get(&room).is_some_and(|h| {
                        h.commands
                            .send(RoomCommand::Send { local_id, message })
                            .is_ok()
                    });
                    if !sent && local_id != 0 {
                        self.local
                            .push_back(Msg::Net(room, NetEvent::NotSent { local_id }));
                    }
                }
                Effect::History { room, request } => {
                    if let Some(handle) = self.rooms.get(&room) {
                        let _ = handle.commands.send(RoomCommand::History(request));
                    }
                }
                Effect::Reconnect(room) => {
                    if let Some(handle) = self.rooms.get(&room) {
                        let _ = handle.commands.send(RoomCommand::Reconnect);
                    }
                }
                Effect::Notify { room, from, text } => {
                    let seq = notify::sequence(
                        self.ctx.bell,
                        self.ctx.desktop,
                        room.as_str(),
                        &from,
                        &text,
                    );
                    if !seq.is_empty() {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(seq.as_bytes()).and_then(|()| out.flush());
                    }
                }
                Effect::Log { room, line } => {
                    if let Some(logger) = &self.logger {
                        logger.log(room, line);
                    }
                }
                Effect::SetName(name) => {
                    self.ctx.options = self.ctx.options.clone().name(name.clone());
                    for handle in self.rooms.values() {
                        let _ = handle.commands.send(RoomCommand::Rename(name.clone()));
                    }
                }
                Effect::FetchRooms => {
                    let server = self.ctx.server.clone();
                    let options = self.ctx.options.clone();
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        let result = chat_protocol::fetch_rooms(&server, &options)
                            .await
                            .map(|list| list.rooms)
                            .map_err(|err| err.to_string());
                        let _ = tx.send(Msg::Rooms(result)).await;
                    });
                }
                Effect::Redraw => full_redraw(terminal),
                Effect::Quit => return true,
            }
        }
        false
    }

    /// Closes every connection, waiting a little for the close frames.
    async fn shutdown(mut self) {
        for (_, handle) in self.rooms.drain() {
            let _ = handle.commands.send(RoomCommand::Leave);
            self.leaving.push(handle.task);
        }
        let all = futures_util::future::join_all(self.leaving);
        let _ = tokio::time::timeout(Duration::from_secs(2), all).await;
        if let Some(logger) = self.logger.take() {
            logger.finish();
        }
    }

    /// Sets the window title when it changed (the unread count).
    fn set_title(&mut self, app: &App) {
        let title = app.title();
        if title != self.title {
            let _ = ratatui::crossterm::execute!(
                std::io::stdout(),
                ratatui::crossterm::terminal::SetTitle(&title)
            );
            self.title = title;
        }
    }
}

fn to_msg(event: Event) -> Option<Msg> {
    tracing::trace!(?event, "terminal event");
    match event {
        Event::Key(key) => Some(Msg::Key(key)),
        Event::Paste(text) => Some(Msg::Paste(text)),
        Event::Mouse(mouse) => Some(Msg::Mouse(mouse)),
        Event::Resize(width, height) => Some(Msg::Resize { width, height }),
        Event::FocusGained | Event::FocusLost => None,
    }
}

/// Runs the UI until the user quits or a signal arrives.
///
/// # Errors
///
/// When the terminal cannot be read or drawn.
pub async fn run(
    terminal: &mut DefaultTerminal,
    mut app: App,
    ctx: Context,
    rooms: &[RoomName],
) -> anyhow::Result<Exit> {
    let (tx, mut rx) = mpsc::channel::<Msg>(1024);
    let logger = ctx
        .log_dir
        .as_ref()
        .map(|dir| logs::Logger::start(logs::server_dir(dir, &ctx.server)));
    let mut runner = Runner {
        ctx,
        rooms: HashMap::new(),
        leaving: Vec::new(),
        tx,
        local: VecDeque::new(),
        logger,
        title: String::new(),
    };
    // The terminal is read by a task of its own that forwards into a
    // channel, so that the loop can drain both sources with `try_recv`.
    // (Polling crossterm's stream with `now_or_never` or a zero timeout
    // loses its wake-ups: it keeps the waker of the poll that found it empty.)
    let (term_tx, mut term_rx) = mpsc::channel::<std::io::Result<Msg>>(256);
    let reader = tokio::spawn(read_terminal(term_tx));
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;

    let size = terminal.size().context("reading the terminal size")?;
    app.update(Msg::Resize {
        width: size.width,
        height: size.height,
    });
    let effects = app.start(rooms);
    // Ticks drive the reconnect countdown, and run only while one shows.
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut exit = None;
    if runner.apply(effects, terminal) {
        exit = Some(Exit::Quit);
    }
    terminal.draw(|frame| ui::view(&app, frame))?;
    runner.set_title(&app);

    while exit.is_none() {
        let first = tokio::select! {
            input = term_rx.recv() => match input {
                Some(Ok(msg)) => Some(msg),
                Some(Err(err)) => {
                    reader.abort();
                    return Err(err).context("reading the terminal");
                }
                None => { exit = Some(Exit::Quit); None }
            },
            Some(msg) = rx.recv() => Some(msg),
            _ = ticker.tick(), if app.is_animating() => Some(Msg::Tick {
                now_ms: chat_protocol::unix_millis(),
            }),
            _ = sigterm.recv() => { exit = Some(Exit::Signal(15)); None }
            _ = sighup.recv() => { exit = Some(Exit::Signal(1)); None }
            _ = sigint.recv() => { exit = Some(Exit::Signal(2)); None }
        };
        runner.local.extend(first);
        // Drain what is already queued, then draw once.
        for _ in 0..MAX_BATCH {
            if exit.is_some() {
                break;
            }
            let msg = if let Some(msg) = runner.local.pop_front() {
                msg
            } else if let Ok(msg) = rx.try_recv() {
                msg
            } else if let Ok(input) = term_rx.try_recv() {
                match input {
                    Ok(msg) => msg,
                    Err(err) => {
                        reader.abort();
                        return Err(err).context("reading the terminal");
                    }
                }
            } else {
                break;
            };
            let effects = app.update(msg);
            if runner.apply(effects, terminal) {
                exit = Some(Exit::Quit);
            }
        }
        if app.dirty && exit.is_none() {
            terminal.draw(|frame| ui::view(&app, frame))?;
            app.dirty = false;
            runner.set_title(&app);
        }
    }
    reader.abort();
    runner.shutdown().await;
    Ok(exit.unwrap_or(Exit::Quit))
}

/// Ctrl+L: clears the screen and makes the next draw write every cell.
///
/// Not `Terminal::clear`: ratatui 0.30's asks the terminal where the cursor
/// is (`ESC [ 6 n`) and blocks up to 2 s for the reply on stdin, which the
/// input task reads too. The loop froze, keys typed meanwhile were drawn
/// late, and when the reply was lost the screen was not cleared at all
/// (seen in tmux: PgUp, Ctrl+L, End left the old view on screen).
fn full_redraw(terminal: &mut DefaultTerminal) {
    use ratatui::backend::{Backend as _, ClearType};
    let _ = terminal.backend_mut().clear_region(ClearType::All);
    // Outside `draw` the buffer being drawn into is always blank; this
    // blanks the other one (the last frame) too, so the next draw differs
    // from "nothing" everywhere it shows something.
    terminal.swap_buffers();
}

/// Forwards terminal input until the terminal or the loop goes away.
async fn read_terminal(out: mpsc::Sender<std::io::Result<Msg>>) {
    let mut events = EventStream::new();
    while let Some(event) = events.next().await {
        let input = match event {
            Ok(event) => match to_msg(event) {
                Some(msg) => Ok(msg),
                None => continue,
            },
            Err(err) => Err(err),
        };
        let failed = input.is_err();
        if out.send(input).await.is_err() || failed {
            return;
        }
    }
}
