//! The terminal's modes: on for the TUI, and always back off again.
//!
//! [`init`] saves the window title (the app sets its own, with the unread
//! count), turns on raw mode, the alternate screen, bracketed paste and
//! (optionally) mouse capture, and installs a panic hook that restores the
//! terminal *before* the panic message is printed, so the message is
//! readable and the shell usable. [`restore`] undoes everything and is safe
//! to call more than once; the runtime calls it on quit, on Ctrl+C, and on
//! SIGTERM/SIGHUP/SIGINT.

use std::io::{self, Write as _, stdout};
use std::sync::Once;

use ratatui::DefaultTerminal;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::Show;
use ratatui::crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};

static PANIC_HOOK: Once = Once::new();

/// Puts the terminal into TUI mode.
///
/// # Errors
///
/// When stdout is not a terminal or a mode cannot be set; the terminal is
/// restored before returning the error.
pub fn init(mouse: bool) -> io::Result<DefaultTerminal> {
    install_panic_hook();
    let setup = || -> io::Result<DefaultTerminal> {
        enable_raw_mode()?;
        // Keep the terminal's title, to give it back on the way out
        // (xterm's title stack; terminals without one ignore this).
        stdout().write_all(b"\x1b[22;0t")?;
        execute!(stdout(), EnterAlternateScreen, EnableBracketedPaste)?;
        if mouse {
            execute!(stdout(), EnableMouseCapture)?;
        }
        Terminal::new(CrosstermBackend::new(stdout()))
    };
    setup().inspect_err(|_| restore())
}

/// Puts the terminal back as it was. Idempotent; errors are ignored (there
/// is nothing better to do with them on the way out).
pub fn restore() {
    let _ = execute!(
        stdout(),
        DisableMouseCapture,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        Show
    );
    let _ = stdout()
        .write_all(b"\x1b[23;0t")
        .and_then(|()| stdout().flush());
    let _ = disable_raw_mode();
}

fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}
